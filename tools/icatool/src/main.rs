//! `gatehouse-icatool`: reads and writes `.ica` launch files (PROTOCOLS.md §5).
//!
//! - `gatehouse-icatool show FILE` (or `-` for stdin) prints the launch a file
//!   describes: application name, address (the STA ticket's secret masked
//!   unless `--reveal`), gateway, CGP address and the other launch keys, as a
//!   table or with `--json` as one JSON object.
//! - `gatehouse-icatool make --name N --sta-ticket T --gateway HOST:PORT`
//!   writes the launch file the store would serve to stdout.
//!
//! All parsing and writing is `gatehouse_wire::ica`; this binary only wires
//! it to files, flags and stdout. Errors exit with status 1 and a message on
//! stderr.
#![forbid(unsafe_code)]

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use gatehouse_wire::ica::{self, IcaFile, Launch, LaunchParams, MAX_FILE_LEN};
use gatehouse_wire::ticket::StaTicket;
use serde::Serialize;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Characters of a secret shown before the ellipsis when masked.
const SHOWN_SECRET_CHARS: usize = 4;

#[derive(Debug, Parser)]
#[command(
    name = "gatehouse-icatool",
    version,
    about = "Reads and writes .ica launch files"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the launch an .ica file describes.
    Show {
        /// The .ica file, or `-` for stdin.
        file: PathBuf,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
        /// Print the STA ticket and logon ticket in full instead of masked.
        #[arg(long)]
        reveal: bool,
    },
    /// Write a gateway launch file to stdout.
    Make {
        /// Application or desktop name (`[ApplicationServers]` entry).
        #[arg(long)]
        name: String,
        /// STA ticket text `;VER;STA_ID;TICKET` (the `Address=` value).
        #[arg(long, allow_hyphen_values = true)]
        sta_ticket: StaTicket,
        /// The gateway's public `host:port` (`SSLProxyHost=`).
        #[arg(long, value_parser = parse_gateway)]
        gateway: (String, u16),
        /// `InitialProgram=`; defaults to `#NAME`.
        #[arg(long)]
        initial_program: Option<String>,
        /// `LogonTicket=` issued by the broker.
        #[arg(long)]
        logon_ticket: Option<String>,
        /// `SessionReliabilityTTL=` in seconds.
        #[arg(long)]
        reliability_ttl: Option<u32>,
        /// Write `CGPSecurityTicket=On` (ticket travels in CGP, not SOCKSv5).
        #[arg(long)]
        cgp_security_ticket: bool,
        /// Leave out `CGPAddress=*:2598`.
        #[arg(long)]
        no_cgp: bool,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut out = io::stdout().lock();
    match cli.command {
        Command::Show { file, json, reveal } => {
            let text = read_input(&file)?;
            let ica =
                IcaFile::decode(&text).with_context(|| format!("parsing {}", file.display()))?;
            let launch =
                ica::read_launch(&ica).with_context(|| format!("reading {}", file.display()))?;
            let shown = Shown::new(&launch, reveal);
            if json {
                serde_json::to_writer_pretty(&mut out, &shown)?;
                writeln!(out)?;
            } else {
                shown.write_table(&mut out)?;
            }
        }
        Command::Make {
            name,
            sta_ticket,
            gateway,
            initial_program,
            logon_ticket,
            reliability_ttl,
            cgp_security_ticket,
            no_cgp,
        } => {
            let params = LaunchParams {
                initial_program: initial_program.as_deref(),
                logon_ticket: logon_ticket.as_deref(),
                session_reliability_ttl: reliability_ttl,
                cgp_security_ticket,
                cgp_port: if no_cgp { None } else { Some(ica::CGP_PORT) },
                ..LaunchParams::new(&name, &sta_ticket, &gateway.0, gateway.1)
            };
            let file = ica::launch_file(&params).context("building the launch file")?;
            out.write_all(file.encode().as_bytes())?;
        }
    }
    out.flush()?;
    Ok(())
}

/// Reads `path` (or stdin for `-`) as UTF-8, refusing more than the
/// `.ica` size cap.
fn read_input(path: &PathBuf) -> anyhow::Result<String> {
    let source: Box<dyn Read> = if path.as_os_str() == "-" {
        Box::new(io::stdin().lock())
    } else {
        Box::new(File::open(path).with_context(|| format!("opening {}", path.display()))?)
    };
    let mut bytes = Vec::new();
    // One byte past the cap is enough to know the input is too large.
    source
        .take(MAX_FILE_LEN as u64 + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading {}", path.display()))?;
    if bytes.len() > MAX_FILE_LEN {
        bail!("{} is larger than {MAX_FILE_LEN} bytes", path.display());
    }
    String::from_utf8(bytes).with_context(|| format!("{} is not UTF-8", path.display()))
}

/// Parses `host:port` for `--gateway`; the host is checked by `launch_file`.
fn parse_gateway(value: &str) -> Result<(String, u16), String> {
    let Some((host, port)) = value.rsplit_once(':') else {
        return Err("expected host:port".to_owned());
    };
    let port = port.parse().map_err(|_| format!("bad port {port:?}"))?;
    Ok((host.to_owned(), port))
}

/// A launch as the tool prints it, secrets masked unless revealed.
#[derive(Debug, Serialize)]
struct Shown {
    name: String,
    address: String,
    sta_id: Option<String>,
    ticket_version: Option<&'static str>,
    gateway: Option<Gateway>,
    ssl_enable: bool,
    cgp_address: Option<String>,
    initial_program: Option<String>,
    logon_ticket: Option<String>,
    session_reliability_ttl: Option<u32>,
    cgp_security_ticket: bool,
    revealed: bool,
}

#[derive(Debug, Serialize)]
struct Gateway {
    host: String,
    port: u16,
}

impl Shown {
    fn new(launch: &Launch, reveal: bool) -> Self {
        let address = match (&launch.ticket, reveal) {
            (Some(ticket), true) => ticket.to_text(),
            // StaTicket's Display masks the secret.
            (Some(ticket), false) => ticket.to_string(),
            (None, _) => launch.address.clone(),
        };
        let logon_ticket = launch.logon_ticket.as_deref().map(|secret| {
            if reveal {
                secret.to_owned()
            } else {
                mask(secret)
            }
        });
        Self {
            name: launch.name.clone(),
            address,
            sta_id: launch.ticket.as_ref().map(|t| t.sta_id.to_string()),
            ticket_version: launch.ticket.as_ref().map(|t| t.version.as_str()),
            gateway: launch.gateway.as_ref().map(|(host, port)| Gateway {
                host: host.clone(),
                port: *port,
            }),
            ssl_enable: launch.ssl_enable,
            cgp_address: launch.cgp_address.clone(),
            initial_program: launch.initial_program.clone(),
            logon_ticket,
            session_reliability_ttl: launch.session_reliability_ttl,
            cgp_security_ticket: launch.cgp_security_ticket,
            revealed: reveal,
        }
    }

    /// Writes one `field  value` row per known field; absent ones show `-`.
    fn write_table(&self, out: &mut impl Write) -> io::Result<()> {
        let on_off = |on: bool| if on { "on" } else { "off" }.to_owned();
        let or_dash = |value: Option<String>| value.unwrap_or_else(|| "-".to_owned());
        let rows = [
            ("name", self.name.clone()),
            ("address", self.address.clone()),
            ("sta id", or_dash(self.sta_id.clone())),
            (
                "ticket version",
                or_dash(self.ticket_version.map(str::to_owned)),
            ),
            (
                "gateway",
                or_dash(
                    self.gateway
                        .as_ref()
                        .map(|g| format!("{}:{}", g.host, g.port)),
                ),
            ),
            ("tls", on_off(self.ssl_enable)),
            ("cgp address", or_dash(self.cgp_address.clone())),
            ("initial program", or_dash(self.initial_program.clone())),
            ("logon ticket", or_dash(self.logon_ticket.clone())),
            (
                "reliability ttl",
                or_dash(self.session_reliability_ttl.map(|s| format!("{s} s"))),
            ),
            ("cgp ticket", on_off(self.cgp_security_ticket)),
        ];
        for (field, value) in rows {
            writeln!(out, "{field:<16} {value}")?;
        }
        Ok(())
    }
}

/// The first few characters of a secret and `…`; only `…` for a secret too
/// short to spare them.
fn mask(secret: &str) -> String {
    if secret.chars().count() <= 2 * SHOWN_SECRET_CHARS {
        return "…".to_owned();
    }
    let shown: String = secret.chars().take(SHOWN_SECRET_CHARS).collect();
    format!("{shown}…")
}
