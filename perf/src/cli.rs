//! The `gatehouse-load` command line (clap), and its conversion into the run
//! configurations of each shape. Parsing lives here, not in the binary, so it
//! is unit-tested.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::connrate::{ConnrateConfig, SocksPreamble};
use crate::idle::IdleConfig;
use crate::rr::RrConfig;
use crate::socks::{ICA_PORT, PreambleError, SocksHost};
use crate::stream::StreamConfig;

/// Longest run any shape accepts, so a typo cannot start a day-long run.
const MAX_SECONDS: f64 = 3_600.0;
/// Largest write or message size accepted (16 MiB).
const MAX_SIZE: usize = 16 * 1024 * 1024;

/// Load generator and back-ends for Gatehouse performance runs.
#[derive(Debug, Parser)]
#[command(name = "gatehouse-load", version, about)]
pub struct Cli {
    /// Print one JSON object on stdout instead of the human report.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Back-end: accept, read and discard; on EOF answer with the byte count.
    Sink(ServeArgs),
    /// Back-end: echo every byte back.
    Echo(ServeArgs),
    /// Bulk: N connections write for S seconds; Gbit/s counted at the sink.
    Stream(StreamArgs),
    /// Connection rate: connect, optional SOCKS5 preamble, echo, close.
    Connrate(ConnrateArgs),
    /// Request/response: ping-pong latency on long-lived connections.
    Rr(RrArgs),
    /// Open many idle connections and hold them (for memory measurements).
    Idle(IdleArgs),
}

/// Arguments of `sink` and `echo`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on, e.g. 127.0.0.1:9000.
    #[arg(long)]
    pub listen: SocketAddr,
    /// Runtime threads (default: available CPUs).
    #[arg(long)]
    pub threads: Option<NonZeroUsize>,
}

/// Arguments of `stream`.
#[derive(Debug, Args)]
pub struct StreamArgs {
    /// Relay or sink address.
    #[arg(long)]
    pub target: SocketAddr,
    /// Connections writing in parallel.
    #[arg(long, default_value = "4")]
    pub connections: NonZeroUsize,
    /// Seconds to write.
    #[arg(long, default_value = "6", value_parser = parse_seconds)]
    pub seconds: Duration,
    /// Bytes per write.
    #[arg(long, default_value = "65536", value_parser = parse_size)]
    pub size: usize,
    /// Also run a sink in this process on this address (then `--target` may
    /// be a relay in front of it, or the same address).
    #[arg(long)]
    pub sink_listen: Option<SocketAddr>,
}

/// Preambles `connrate` can send before its echo.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PreambleKind {
    /// SOCKS5 greeting `05 01 00`, then CONNECT with ATYP 3.
    Socks5,
}

/// Arguments of `connrate`.
#[derive(Debug, Args)]
pub struct ConnrateArgs {
    /// Relay or echo address.
    #[arg(long)]
    pub target: SocketAddr,
    /// Connections in flight.
    #[arg(long, default_value = "16")]
    pub concurrency: NonZeroUsize,
    /// Seconds to run.
    #[arg(long, default_value = "6", value_parser = parse_seconds)]
    pub seconds: Duration,
    /// Bytes echoed per connection.
    #[arg(long, default_value = "1024", value_parser = parse_size)]
    pub size: usize,
    /// Preamble before the echo.
    #[arg(long, value_enum)]
    pub preamble: Option<PreambleKind>,
    /// Domain text of the SOCKS5 CONNECT (for a gateway, the ticket text).
    #[arg(long, default_value = "gatehouse-load")]
    pub socks_host: String,
    /// Port of the SOCKS5 CONNECT.
    #[arg(long, default_value_t = ICA_PORT)]
    pub socks_port: u16,
    /// Runtime threads driving the connections.
    #[arg(long, default_value = "2")]
    pub threads: NonZeroUsize,
}

/// Arguments of `rr`.
#[derive(Debug, Args)]
pub struct RrArgs {
    /// Relay or echo address.
    #[arg(long)]
    pub target: SocketAddr,
    /// Connections doing ping-pong in parallel.
    #[arg(long, default_value = "8")]
    pub connections: NonZeroUsize,
    /// Seconds to run.
    #[arg(long, default_value = "6", value_parser = parse_seconds)]
    pub seconds: Duration,
    /// Bytes per request and response.
    #[arg(long, default_value = "1024", value_parser = parse_size)]
    pub size: usize,
}

/// Arguments of `idle`.
#[derive(Debug, Args)]
pub struct IdleArgs {
    /// Relay or sink address.
    #[arg(long)]
    pub target: SocketAddr,
    /// Connections to open.
    #[arg(long, default_value = "10000")]
    pub connections: NonZeroUsize,
    /// Seconds to hold them open.
    #[arg(long, default_value = "10", value_parser = parse_seconds)]
    pub hold: Duration,
    /// Loopback source addresses to spread over (127.0.0.1..=N; 1 = kernel's choice).
    #[arg(long, default_value = "1")]
    pub sources: u8,
}

impl StreamArgs {
    /// The run configuration.
    pub fn config(&self) -> StreamConfig {
        StreamConfig {
            target: self.target,
            connections: self.connections.get(),
            duration: self.seconds,
            write_size: self.size,
        }
    }
}

impl ConnrateArgs {
    /// The run configuration; fails if the SOCKS host text does not fit.
    pub fn config(&self) -> Result<ConnrateConfig, PreambleError> {
        let preamble = match self.preamble {
            None => None,
            Some(PreambleKind::Socks5) => Some(SocksPreamble {
                host: SocksHost::new(self.socks_host.clone())?,
                port: self.socks_port,
            }),
        };
        Ok(ConnrateConfig {
            target: self.target,
            concurrency: self.concurrency.get(),
            duration: self.seconds,
            message_size: self.size,
            preamble,
            threads: self.threads,
        })
    }
}

impl RrArgs {
    /// The run configuration.
    pub fn config(&self) -> RrConfig {
        RrConfig {
            target: self.target,
            connections: self.connections.get(),
            duration: self.seconds,
            message_size: self.size,
        }
    }
}

impl IdleArgs {
    /// The run configuration.
    pub fn config(&self) -> IdleConfig {
        IdleConfig {
            target: self.target,
            connections: self.connections.get(),
            hold: self.hold,
            sources: self.sources,
        }
    }
}

/// Seconds as a decimal number, more than 0 and at most one hour.
fn parse_seconds(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .parse()
        .map_err(|_| format!("expected seconds, got {text:?}"))?;
    if secs > 0.0 && secs <= MAX_SECONDS {
        Ok(Duration::from_secs_f64(secs))
    } else {
        Err(format!(
            "expected more than 0 and at most {MAX_SECONDS} seconds, got {text}"
        ))
    }
}

/// A byte count from 1 to 16 MiB.
fn parse_size(text: &str) -> Result<usize, String> {
    let size: usize = text
        .parse()
        .map_err(|_| format!("expected a byte count, got {text:?}"))?;
    if (1..=MAX_SIZE).contains(&size) {
        Ok(size)
    } else {
        Err(format!("expected 1 to {MAX_SIZE} bytes, got {size}"))
    }
}

#[cfg(test)]
mod tests;
