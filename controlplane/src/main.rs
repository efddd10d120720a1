//! `gatehouse`: the appliance binary. It starts the control plane and the
//! data-plane cores (see docs/ARCHITECTURE.md).
#![forbid(unsafe_code)]
#![allow(clippy::print_stderr, reason = "the binary reports fatal errors on stderr")]

use clap::Parser;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Gatehouse remote-access gateway.
#[derive(Debug, Parser)]
#[command(version, about)]
enum Cli {
    /// Run the gateway (control plane and data plane in one process).
    Run,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse() {
        Cli::Run => {
            eprintln!("gatehouse run: the data plane and control plane are not built yet");
            std::process::exit(69);
        }
    }
}
