//! `gatehouse-load`: the load generator and back-ends for Gatehouse
//! performance runs (see `perf/README.md`). Reports go to stdout, human text
//! or one JSON object with `--json`; progress and fatal errors go to stderr.
//!
//! Exit codes: 0 when a report was produced and at least one operation
//! succeeded, 2 when a run completed nothing, 1 on a setup error.
#![forbid(unsafe_code)]
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "the binary's output is its report"
)]

use std::num::NonZeroUsize;
use std::process::ExitCode;

use clap::Parser;
use gatehouse_perf::cli::{Cli, Command};
use gatehouse_perf::server::{self, Role};
use gatehouse_perf::{connrate, idle, rr, stream};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("gatehouse-load: {error:#}");
            ExitCode::from(1)
        }
    }
}

/// Runs the subcommand; `Ok(false)` from a shape means it completed nothing.
fn run(cli: &Cli) -> anyhow::Result<ExitCode> {
    let json = cli.json;
    let emit = |human: String, machine: String| {
        if json {
            println!("{machine}");
        } else {
            println!("{human}");
        }
    };
    let worked = match &cli.command {
        Command::Sink(args) | Command::Echo(args) => {
            let role = if matches!(cli.command, Command::Sink(_)) {
                Role::Sink
            } else {
                Role::Echo
            };
            let threads = args.threads.unwrap_or_else(available_cpus);
            let stats = server::serve_until_signal(role, args.listen, threads, |addr| {
                eprintln!("gatehouse-load {}: listening on {addr}", role.name());
            })?;
            emit(stats.describe(role), stats.to_json(role));
            true
        }
        Command::Stream(args) => {
            let sink = match args.sink_listen {
                Some(addr) => Some(server::spawn(Role::Sink, addr, available_cpus())?),
                None => None,
            };
            let report = stream::run(&args.config());
            drop(sink);
            emit(report.to_string(), report.to_json());
            report.sent_bytes > 0
        }
        Command::Connrate(args) => {
            let report = connrate::run(&args.config()?)?;
            emit(report.to_string(), report.to_json());
            report.completed > 0
        }
        Command::Rr(args) => {
            let report = rr::run(&args.config());
            emit(report.to_string(), report.to_json());
            report.round_trips > 0
        }
        Command::Idle(args) => {
            let report = idle::run(&args.config(), |opened| {
                eprintln!("ready: {opened} connections open");
            });
            emit(report.to_string(), report.to_json());
            report.opened > 0
        }
    };
    Ok(if worked {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

fn available_cpus() -> NonZeroUsize {
    std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN)
}
