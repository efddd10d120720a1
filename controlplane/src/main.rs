//! `gatehouse`: the appliance binary. It starts the control plane and the
//! data-plane cores (see docs/ARCHITECTURE.md).
//!
//! Subcommands: `run` (the gateway; control plane still to come) and
//! `forward` (a plain TCP forwarder on the data-plane cores). Logs go to
//! stderr through `tracing` (`RUST_LOG` filters, default `info`).
#![forbid(unsafe_code)]
#![allow(
    clippy::print_stderr,
    reason = "the binary reports fatal errors on stderr"
)]

mod forward;
mod signals;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit status for a bad configuration (sysexits `EX_CONFIG`... `EX_USAGE`).
const EXIT_CONFIG: u8 = 64;
/// Exit status for a feature that is not built yet (`EX_UNAVAILABLE`).
const EXIT_UNAVAILABLE: u8 = 69;

/// Gatehouse remote-access gateway.
#[derive(Debug, Parser)]
#[command(version, about)]
enum Cli {
    /// Run the gateway (control plane and data plane in one process).
    Run,
    /// Forward TCP connections to one back end on the data-plane cores.
    Forward(forward::ForwardArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let outcome = match cli {
        Cli::Run => {
            eprintln!("gatehouse run: the data plane and control plane are not built yet");
            return ExitCode::from(EXIT_UNAVAILABLE);
        }
        Cli::Forward(args) => forward::run(args),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gatehouse: {e:#}");
            if e.downcast_ref::<gatehouse_engine::EngineError>()
                .is_some_and(|e| matches!(e, gatehouse_engine::EngineError::Config(_)))
            {
                ExitCode::from(EXIT_CONFIG)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn init_logging() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
