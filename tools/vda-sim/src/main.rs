//! `vda-sim`: a worker (VDA) simulator for Gatehouse's tests and load runs.
//!
//! ```text
//! vda-sim [--ica-listen ADDR] [--cgp-listen ADDR] [--announce]
//!         [--reliability-ttl SECS] [--max-unacked BYTES]
//!         [--register URL --worker-name NAME [--heartbeat-secs N]
//!          [--load N] [--sessions N] [--max-sessions N]]
//! ```
//!
//! All behaviour lives in the `gatehouse_vda_sim` library; this binary
//! parses flags, installs the tracing subscriber (`RUST_LOG`, default
//! `info`, on stderr), prints the announce line, and stops on SIGINT or
//! SIGTERM with exit status 0. Bad flags exit 2 (clap); a listener that
//! cannot bind exits 1.
#![forbid(unsafe_code)]
#![allow(
    clippy::print_stdout,
    reason = "the --announce line on stdout is this binary's interface"
)]

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use gatehouse_vda_sim::register::Registration;
use gatehouse_vda_sim::{DEFAULT_MAX_UNACKED, Sim, SimConfig};
use tokio::signal::unix::{SignalKind, signal};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const AFTER_HELP: &str = "\
ICA mode: on accept the sim sends 7F 7F 49 43 41 00 (\"\\x7f\\x7fICA\\0\"). If the
client's first bytes are `STREAM <n>\\n` (decimal n), it sends n bytes of the
deterministic pattern (byte i = byte i%8, little-endian, of splitmix64(i/8))
and half-closes, discarding what the client sends; otherwise it echoes every
byte and half-closes when the client does.

CGP mode: the client sends \"\\x1aCGP/01\" and a BIND_REQUEST with the session
reliability capability (the security ticket is not checked). The sim answers
BIND_RESPONSE with its next expected message number and a reconnect ticket.
Each channel (CHANNEL_OPEN_REQUEST, any service id; answer status 0) runs the
same echo / `STREAM <n>\\n` protocol over its DATA payloads; a stream ends
with CHANNEL_CLOSE. Sim output is tracked (message numbers from 1) and kept
until acknowledged (NOP ack deltas); past --max-unacked the session is
dropped. The sim generates stream data, and acknowledges the client's
messages, only while its unacknowledged output is below a quarter of
--max-unacked: a client that paces its sends on its own unacknowledged output
never reaches the bound. A BIND carrying the reconnect ticket and nextMessageNumber (last
received + 1) within --reliability-ttl of the disconnect resumes: the sim
resends every message from that number on. Unknown or expired tickets get
next message number 0.

--register URL (the broker's internal listener, http://HOST:PORT) with
--worker-name NAME registers the bound addresses with a Gatehouse broker
(docs/REGISTRATION.md), heartbeats every --heartbeat-secs with the fixed
--load and --sessions, and unregisters on SIGINT/SIGTERM.

--announce prints `ica=ADDR cgp=ADDR` (bound listeners only) on one stdout
line once listening, so port 0 can be used.";

/// A worker (VDA) simulator: ICA echo/stream and CGP with session reliability.
#[derive(Debug, Parser)]
#[command(name = "vda-sim", version, after_help = AFTER_HELP)]
struct Cli {
    /// Raw ICA listener address (e.g. 127.0.0.1:1494; port 0 = any).
    #[arg(long, value_name = "ADDR", required_unless_present = "cgp_listen")]
    ica_listen: Option<SocketAddr>,
    /// CGP listener address (2598 in production; port 0 = any).
    #[arg(long, value_name = "ADDR")]
    cgp_listen: Option<SocketAddr>,
    /// Print the bound addresses as one line on stdout after binding.
    #[arg(long)]
    announce: bool,
    /// Seconds a CGP session waits for a resume after its connection breaks.
    #[arg(long, value_name = "SECS", default_value_t = 180)]
    reliability_ttl: u64,
    /// Bound on a CGP session's unacknowledged output, in bytes (at least 65536).
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_UNACKED)]
    max_unacked: usize,
    /// Register with the broker at this URL (http://HOST:PORT).
    #[arg(long, value_name = "URL", requires = "worker_name")]
    register: Option<String>,
    /// The worker name to register under.
    #[arg(long, value_name = "NAME", requires = "register")]
    worker_name: Option<String>,
    /// Seconds between heartbeats.
    #[arg(long, value_name = "N", default_value_t = 5)]
    heartbeat_secs: u64,
    /// The load index to report (0 to 10000).
    #[arg(long, value_name = "N", default_value_t = 0)]
    load: u32,
    /// The session count to report.
    #[arg(long, value_name = "N", default_value_t = 0)]
    sessions: u32,
    /// Most sessions (registers with protocol version 2).
    #[arg(long, value_name = "N")]
    max_sessions: Option<u32>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    runtime.block_on(serve(cli))
}

async fn serve(cli: Cli) -> anyhow::Result<()> {
    let config = SimConfig {
        ica_listen: cli.ica_listen,
        cgp_listen: cli.cgp_listen,
        reliability_ttl: Duration::from_secs(cli.reliability_ttl),
        max_unacked: cli.max_unacked,
    };
    let mut terminate =
        signal(SignalKind::terminate()).context("cannot install the SIGTERM handler")?;
    let mut interrupt =
        signal(SignalKind::interrupt()).context("cannot install the SIGINT handler")?;
    let sim = Sim::bind(config).await?;
    tracing::info!(listening = %sim.announce(), "vda_sim_started");
    if cli.announce {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{}", sim.announce()).context("cannot write the announce line")?;
        stdout.flush().context("cannot write the announce line")?;
    }
    let (stop_registration, registration_stopped) = tokio::sync::watch::channel(false);
    let registration = match (cli.register, cli.worker_name) {
        (Some(url), Some(worker)) => Some(tokio::spawn(
            Registration {
                url,
                worker,
                heartbeat: Duration::from_secs(cli.heartbeat_secs.max(1)),
                load: cli.load,
                sessions: cli.sessions,
                max_sessions: cli.max_sessions,
            }
            .run(sim.ica_addr(), sim.cgp_addr(), registration_stopped),
        )),
        _ => None,
    };
    sim.run(async {
        tokio::select! {
            _ = terminate.recv() => tracing::info!(signal = "SIGTERM", "vda_sim_stopping"),
            _ = interrupt.recv() => tracing::info!(signal = "SIGINT", "vda_sim_stopping"),
        }
    })
    .await;
    let _ = stop_registration.send(true);
    if let Some(task) = registration {
        let _ = tokio::time::timeout(Duration::from_secs(6), task).await;
    }
    tracing::info!("vda_sim_stopped");
    Ok(())
}
