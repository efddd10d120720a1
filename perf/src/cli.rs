//! The `gatehouse-load` command line (clap), and its conversion into the run
//! configurations of each shape. Parsing lives here, not in the binary, so it
//! is unit-tested.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::connrate::{ConnrateConfig, SocksDestination, SocksPreamble};
use crate::idle::IdleConfig;
use crate::rr::RrConfig;
use crate::socks::{ICA_PORT, PreambleError, SocksHost};
use crate::sta::{self, StaUrl, TicketPlan};
use crate::stream::StreamConfig;
use crate::tls::{DEFAULT_SERVER_NAME, TlsOptions};

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
    /// CONNECT to this IP address (ATYP 1 or 4) instead of a domain text:
    /// for a plain SOCKS5 server in front of the echo.
    #[arg(long, conflicts_with_all = ["socks_host", "sta_url"])]
    pub socks_ip: Option<IpAddr>,
    /// Port of the SOCKS5 CONNECT.
    #[arg(long, default_value_t = ICA_PORT)]
    pub socks_port: u16,
    /// STA endpoint (`http://IP:PORT/scripts/ctxsta.dll`): fetch tickets
    /// before the timed part and CONNECT with a fresh one per connection.
    #[arg(long, requires_all = ["worker", "preamble"], conflicts_with = "socks_host")]
    pub sta_url: Option<StaUrl>,
    /// `ICAAddress` of the fetched tickets: the worker the gateway connects
    /// (`host:port`, e.g. an echo back-end).
    #[arg(long, requires = "sta_url")]
    pub worker: Option<String>,
    /// Tickets to fetch (1 to 2,000,000); a run that spends them all ends early.
    #[arg(long, default_value_t = sta::DEFAULT_TICKETS, value_parser = parse_tickets, requires = "sta_url")]
    pub tickets: usize,
    /// Parallel keep-alive HTTP connections fetching tickets.
    #[arg(long, default_value = "4", requires = "sta_url")]
    pub sta_connections: NonZeroUsize,
    /// Requests written at once on each of those connections (1 to 256).
    #[arg(long, default_value_t = sta::DEFAULT_PIPELINE, value_parser = parse_pipeline, requires = "sta_url")]
    pub sta_pipeline: usize,
    /// TLS handshake first (then the preamble, if any, inside TLS).
    #[arg(long)]
    pub tls: bool,
    /// PEM certificates to trust (e.g. `<data_dir>/tls/gateway.crt`).
    #[arg(long, requires = "tls", conflicts_with = "tls_insecure")]
    pub tls_ca: Option<PathBuf>,
    /// Accept any server certificate (handshake signatures still checked).
    #[arg(long, requires = "tls")]
    pub tls_insecure: bool,
    /// Server name sent (SNI) and verified.
    #[arg(long, default_value = DEFAULT_SERVER_NAME, requires = "tls")]
    pub tls_server_name: String,
    /// Make every handshake a full one (no session resumption).
    #[arg(long, requires = "tls")]
    pub tls_no_resumption: bool,
    /// Runtime threads driving the connections.
    #[arg(long, default_value = "2")]
    pub threads: NonZeroUsize,
}

/// Why `connrate`'s arguments do not make a run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The SOCKS host text does not fit ATYP 3.
    #[error("bad --socks-host")]
    Preamble(#[from] PreambleError),
    /// `--socks-ip` without `--preamble socks5`.
    #[error("--socks-ip needs --preamble socks5")]
    NeedsPreamble,
    /// `--tls` without something to trust.
    #[error("--tls needs --tls-ca FILE or --tls-insecure")]
    NoTrust,
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
    /// Bytes each connection sends right after it opens (0: send nothing).
    #[arg(long, default_value = "0", value_parser = parse_ping)]
    pub ping: usize,
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
    /// The run configuration; fails if the SOCKS host text does not fit,
    /// `--socks-ip` comes without a preamble, or `--tls` trusts nothing.
    pub fn config(&self) -> Result<ConnrateConfig, ConfigError> {
        let preamble = match self.preamble {
            None if self.socks_ip.is_some() => return Err(ConfigError::NeedsPreamble),
            None => None,
            Some(PreambleKind::Socks5) => {
                let destination = match (&self.sta_url, &self.worker, self.socks_ip) {
                    (Some(sta), Some(worker), _) => SocksDestination::Tickets(TicketPlan {
                        sta: sta.clone(),
                        worker: worker.clone(),
                        count: self.tickets,
                        connections: self.sta_connections.get(),
                        pipeline: self.sta_pipeline,
                    }),
                    (_, _, Some(ip)) => SocksDestination::Ip(ip),
                    _ => SocksDestination::Domain(SocksHost::new(self.socks_host.clone())?),
                };
                Some(SocksPreamble {
                    destination,
                    port: self.socks_port,
                })
            }
        };
        let tls = if self.tls {
            if self.tls_ca.is_none() && !self.tls_insecure {
                return Err(ConfigError::NoTrust);
            }
            Some(TlsOptions {
                ca: self.tls_ca.clone(),
                insecure: self.tls_insecure,
                server_name: self.tls_server_name.clone(),
                resumption: !self.tls_no_resumption,
            })
        } else {
            None
        };
        Ok(ConnrateConfig {
            target: self.target,
            concurrency: self.concurrency.get(),
            duration: self.seconds,
            message_size: self.size,
            preamble,
            tls,
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
            ping: self.ping,
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

/// A ticket count from 1 to [`sta::MAX_TICKETS`].
fn parse_tickets(text: &str) -> Result<usize, String> {
    let count: usize = text
        .parse()
        .map_err(|_| format!("expected a ticket count, got {text:?}"))?;
    if (1..=sta::MAX_TICKETS).contains(&count) {
        Ok(count)
    } else {
        Err(format!(
            "expected 1 to {} tickets, got {count}",
            sta::MAX_TICKETS
        ))
    }
}

/// Requests per write, 1 to [`sta::MAX_PIPELINE`].
fn parse_pipeline(text: &str) -> Result<usize, String> {
    let depth: usize = text
        .parse()
        .map_err(|_| format!("expected a request count, got {text:?}"))?;
    if (1..=sta::MAX_PIPELINE).contains(&depth) {
        Ok(depth)
    } else {
        Err(format!(
            "expected 1 to {} requests, got {depth}",
            sta::MAX_PIPELINE
        ))
    }
}

/// A byte count from 1 to 16 MiB.
/// Like [`parse_size`], 0 included.
fn parse_ping(text: &str) -> Result<usize, String> {
    match text {
        "0" => Ok(0),
        _ => parse_size(text),
    }
}

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
