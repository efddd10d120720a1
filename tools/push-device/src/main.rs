//! `push-device`: a push-approval device simulator.
//!
//! ```text
//! push-device uri  --qr FILE.png                      # the otpauth URI in a QR code
//! push-device code (--uri URI | --qr FILE) [--at UNIX] # the TOTP code now (or at UNIX)
//! push-device serve --gateway https://127.0.0.1:8443 --ca gateway.crt (--uri URI | --qr FILE)
//!     [--device NAME] (--approve-with NN | --approve-from FILE | --deny) [--approve-wrong] [--once]
//! ```
//!
//! `serve` prints one line per event on stdout (`registered ...`,
//! `push id=... user=...`, `answered id=... outcome=approved|denied|wrong_number|refused_404`)
//! so tests can follow it; it exits 0 after `--once`, 1 on a refused
//! registration or bad input.
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a command-line tool whose output is its interface"
)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, anyhow, bail};
use clap::{Args, Parser, Subcommand};
use gatehouse::auth::otpauth::OtpauthUri;
use gatehouse::auth::totp;
use gatehouse::push::MatchNumber;
use gatehouse_push_device::client::Client;
use gatehouse_push_device::device::{self, Answer, DeviceConfig};
use gatehouse_push_device::qr;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(name = "push-device", about = "A push-approval device simulator")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the otpauth URI a QR code PNG carries.
    Uri {
        /// The QR code PNG.
        #[arg(long)]
        qr: PathBuf,
    },
    /// Print the device's TOTP code.
    Code {
        #[command(flatten)]
        enrol: Enrol,
        /// Unix time to compute the code for (default: now).
        #[arg(long)]
        at: Option<u64>,
    },
    /// Register with the gateway and answer pushes.
    Serve(Serve),
}

#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
struct Enrol {
    /// The otpauth:// URI.
    #[arg(long)]
    uri: Option<String>,
    /// A QR code PNG of the URI.
    #[arg(long)]
    qr: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct Serve {
    /// The gateway's base URL: https://HOST:PORT (or http:// in tests).
    #[arg(long)]
    gateway: String,
    /// PEM file of the CA (or self-signed) certificate to trust.
    #[arg(long)]
    ca: Option<PathBuf>,
    #[command(flatten)]
    enrol: Enrol,
    /// The device name, when the URI has no `device=`.
    #[arg(long)]
    device: Option<String>,
    /// Approve with this two-digit number.
    #[arg(long, group = "answer")]
    approve_with: Option<String>,
    /// Approve with the two-digit number read from this file when a push
    /// arrives (what the login page shows).
    #[arg(long, group = "answer")]
    approve_from: Option<PathBuf>,
    /// Deny every push.
    #[arg(long, group = "answer")]
    deny: bool,
    /// Approve with a number other than the one given (refusal tests).
    #[arg(long)]
    approve_wrong: bool,
    /// Exit after answering one push.
    #[arg(long)]
    once: bool,
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("push-device: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Uri { qr } => {
            println!("{}", read_qr(&qr)?);
            Ok(())
        }
        Command::Code { enrol, at } => {
            let uri = enrol.uri()?;
            let now = match at {
                Some(at) => at,
                None => SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs(),
            };
            println!("{}", totp::code_at(&uri.secret, now, uri.params));
            Ok(())
        }
        Command::Serve(serve) => serve.run(),
    }
}

impl Enrol {
    fn uri(&self) -> anyhow::Result<OtpauthUri> {
        let text = match (&self.uri, &self.qr) {
            (Some(text), _) => text.clone(),
            (None, Some(path)) => read_qr(path)?,
            (None, None) => bail!("give --uri or --qr"),
        };
        OtpauthUri::parse(text.trim()).context("otpauth uri")
    }
}

impl Serve {
    fn run(self) -> anyhow::Result<()> {
        let uri = self.enrol.uri()?;
        let device = self
            .device
            .clone()
            .or_else(|| uri.device.clone())
            .ok_or_else(|| anyhow!("the uri has no device=, give --device"))?;
        let answer = match (&self.approve_with, &self.approve_from, self.deny) {
            (Some(n), None, false) => Answer::ApproveWith(
                MatchNumber::parse(n).map_err(|e| anyhow!("--approve-with: {e}"))?,
            ),
            (None, Some(path), false) => Answer::ApproveFrom(path.clone()),
            (None, None, true) => Answer::Deny,
            _ => bail!("give one of --approve-with, --approve-from, --deny"),
        };
        let config = DeviceConfig {
            user: uri.account.clone(),
            device,
            secret: uri.secret.clone(),
            answer,
            wrong: self.approve_wrong,
            once: self.once,
        };
        let client = Client::new(&self.gateway, self.ca.as_deref())?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(device::serve(&client, &config, |line| println!("{line}")))?;
        Ok(())
    }
}

fn read_qr(path: &PathBuf) -> anyhow::Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
    Ok(qr::decode_png(&bytes)?)
}
