//! `connrate`: connections per second with C connections in flight.
//!
//! Each of C tasks (on a multi-threaded tokio runtime) loops until the
//! deadline: connect, optionally send the SOCKS5 preamble of
//! [`crate::socks`], write `size` bytes, read the echo, close. The latency of
//! one connection runs from before `connect` to the last echoed byte.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use gatehouse_wire::Progress;
use rustls::HandshakeKind;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};

use crate::json::JsonObject;
use crate::latency::{LatencyRecorder, LatencySummary};
use crate::net;
use crate::rr::per_sec;
use crate::socks::{self, PreambleError, SocksHost};
use crate::sta::{self, StaError, TicketBatch, TicketPlan};
use crate::tally::ErrorTally;
use crate::tls::{TlsClient, TlsOptions, TlsSetupError};

/// Pause after a failed connection, so a dead target is not hammered in a
/// tight loop for the whole run.
const ERROR_BACKOFF: Duration = Duration::from_millis(1);

/// What the SOCKS5 CONNECT asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SocksDestination {
    /// A fixed domain text (ATYP 3), the same on every connection.
    Domain(SocksHost),
    /// A fixed IP address (ATYP 1 or 4), for a plain SOCKS5 server.
    Ip(IpAddr),
    /// A fresh ticket per connection (ATYP 3), fetched from an STA before the
    /// timed part; the run ends early if they run out.
    Tickets(TicketPlan),
}

impl SocksDestination {
    fn kind(&self) -> &'static str {
        match self {
            SocksDestination::Domain(_) => "domain",
            SocksDestination::Ip(_) => "ip",
            SocksDestination::Tickets(_) => "tickets",
        }
    }
}

/// The SOCKS5 CONNECT sent before the echo.
#[derive(Debug, Clone)]
pub struct SocksPreamble {
    /// What CONNECT names.
    pub destination: SocksDestination,
    /// Destination port in CONNECT.
    pub port: u16,
}

/// What to run.
#[derive(Debug, Clone)]
pub struct ConnrateConfig {
    /// Relay or echo address.
    pub target: SocketAddr,
    /// Connections in flight at any time.
    pub concurrency: usize,
    /// How long to run.
    pub duration: Duration,
    /// Bytes echoed per connection.
    pub message_size: usize,
    /// Optional SOCKS5 preamble before the echo.
    pub preamble: Option<SocksPreamble>,
    /// Optional TLS handshake first (before the preamble).
    pub tls: Option<TlsOptions>,
    /// Runtime threads driving the connections.
    pub threads: NonZeroUsize,
}

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum ConnrateError {
    /// The tokio runtime could not start.
    #[error("cannot start the runtime")]
    Runtime(#[source] io::Error),
    /// The TLS client could not be set up.
    #[error("tls set-up failed")]
    Tls(#[from] TlsSetupError),
    /// Tickets could not be fetched.
    #[error("fetching tickets failed")]
    Tickets(#[from] StaError),
    /// The STA handed out no ticket.
    #[error("the sta handed out no ticket")]
    NoTickets,
}

/// SOCKS5 CONNECT refusals, by reply code.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplyCodes {
    counts: BTreeMap<u8, u64>,
}

impl ReplyCodes {
    /// Counts one reply with `code`.
    pub fn record(&mut self, code: u8) {
        *self.counts.entry(code).or_default() += 1;
    }

    /// Adds another count into this one.
    pub fn merge(&mut self, other: &ReplyCodes) {
        for (code, n) in &other.counts {
            *self.counts.entry(*code).or_default() += n;
        }
    }

    /// All refusals.
    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }

    /// Refusals with `code`.
    pub fn count(&self, code: u8) -> u64 {
        self.counts.get(&code).copied().unwrap_or(0)
    }

    /// E.g. `0` or `5 (0x02 4, 0x05 1)`.
    pub fn describe(&self) -> String {
        if self.counts.is_empty() {
            return "0".to_owned();
        }
        let parts: Vec<String> = self
            .counts
            .iter()
            .map(|(code, n)| format!("{code:#04x} {n}"))
            .collect();
        format!("{} ({})", self.total(), parts.join(", "))
    }
}

/// How the tickets of a `--sta-url` run were had and spent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TicketStats {
    /// Tickets fetched before the timed part.
    pub fetched: usize,
    /// Tickets handed to connections.
    pub used: usize,
    /// How long fetching took.
    pub fetch_time: Duration,
    /// Whether connections stopped early because none were left.
    pub exhausted: bool,
}

impl TicketStats {
    /// Tickets fetched per second.
    pub fn fetched_per_sec(&self) -> f64 {
        per_sec(self.fetched as u64, self.fetch_time)
    }
}

/// What happened.
#[derive(Debug, Clone)]
pub struct ConnrateReport {
    /// The run's configuration.
    pub config: ConnrateConfig,
    /// Connections that completed the echo.
    pub completed: u64,
    /// From the start of the timed part until the last task stopped.
    pub elapsed: Duration,
    /// Latency of completed connections.
    pub latency: LatencySummary,
    /// Failures by phase (SOCKS refusals count as `preamble`).
    pub errors: ErrorTally,
    /// SOCKS5 CONNECT replies other than `00`, by code.
    pub refusals: ReplyCodes,
    /// TLS handshakes that resumed a session.
    pub tls_resumed: u64,
    /// Tickets of a `--sta-url` run.
    pub tickets: Option<TicketStats>,
}

impl ConnrateReport {
    /// Completed connections per second.
    pub fn connections_per_sec(&self) -> f64 {
        per_sec(self.completed, self.elapsed)
    }

    /// One flat JSON object.
    pub fn to_json(&self) -> String {
        let destination = self
            .config
            .preamble
            .as_ref()
            .map_or("none", |p| p.destination.kind());
        let object = JsonObject::new()
            .str("mode", "connrate")
            .str("target", &self.config.target.to_string())
            .int("concurrency", self.config.concurrency as u64)
            .int("size", self.config.message_size as u64)
            .bool("socks5", self.config.preamble.is_some())
            .str("socks_destination", destination)
            .bool("tls", self.config.tls.is_some())
            .num("seconds", self.config.duration.as_secs_f64())
            .num("elapsed_s", self.elapsed.as_secs_f64())
            .int("completed", self.completed)
            .num("conn_per_s", self.connections_per_sec())
            .int("tls_resumed", self.tls_resumed)
            .int("socks_refused", self.refusals.total())
            .str("socks_refused_codes", &self.refusals.describe());
        let object = match &self.tickets {
            Some(t) => object
                .int("tickets_fetched", t.fetched as u64)
                .int("tickets_used", t.used as u64)
                .num("tickets_fetch_s", t.fetch_time.as_secs_f64())
                .num("tickets_per_s", t.fetched_per_sec())
                .bool("tickets_exhausted", t.exhausted),
            None => object,
        };
        let object = self.latency.write_json(object);
        self.errors.write_json(object).finish()
    }
}

impl fmt::Display for ConnrateReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.config;
        let tls = match &c.tls {
            Some(t) => format!(", TLS as {:?}", t.server_name),
            None => String::new(),
        };
        let preamble = match &c.preamble {
            Some(p) => match &p.destination {
                SocksDestination::Domain(host) => {
                    format!(", SOCKS5 CONNECT {:?}:{}", host.as_str(), p.port)
                }
                SocksDestination::Ip(ip) => format!(", SOCKS5 CONNECT {ip}:{}", p.port),
                SocksDestination::Tickets(plan) => format!(
                    ", SOCKS5 CONNECT <ticket from {}>:{} (worker {})",
                    plan.sta.addr, p.port, plan.worker
                ),
            },
            None => String::new(),
        };
        writeln!(
            f,
            "connrate {}: {} in flight, {:.1} s, {}-byte echo{tls}{preamble}",
            c.target,
            c.concurrency,
            c.duration.as_secs_f64(),
            c.message_size
        )?;
        if let Some(t) = &self.tickets {
            writeln!(
                f,
                "  tickets  {} fetched in {:.2} s ({:.0}/s), {} used{}",
                t.fetched,
                t.fetch_time.as_secs_f64(),
                t.fetched_per_sec(),
                t.used,
                if t.exhausted {
                    ", ran out: the run ended early"
                } else {
                    ""
                }
            )?;
        }
        writeln!(
            f,
            "  {} connections in {:.2} s, {:.0} connections/s",
            self.completed,
            self.elapsed.as_secs_f64(),
            self.connections_per_sec()
        )?;
        if c.tls.is_some() {
            writeln!(f, "  tls      {} handshakes resumed", self.tls_resumed)?;
        }
        writeln!(f, "  latency  {}", self.latency.describe())?;
        write!(f, "  errors   {}", self.errors.describe())?;
        if self.refusals.total() > 0 {
            write!(
                f,
                "\n  socks refusals by reply code: {}",
                self.refusals.describe()
            )?;
        }
        Ok(())
    }
}

/// The phase a connection failed in.
#[derive(Debug)]
enum Failure {
    Connect,
    Tls,
    Preamble,
    Refused(u8),
    Io(io::Error),
    Mismatch,
}

/// What every connection task shares.
#[derive(Debug)]
struct Shared {
    config: ConnrateConfig,
    tls: Option<TlsClient>,
    tickets: Option<TicketBatch>,
}

/// What one connection task counted.
#[derive(Debug, Default)]
struct WorkerTally {
    latency: LatencyRecorder,
    errors: ErrorTally,
    refusals: ReplyCodes,
    tls_resumed: u64,
}

impl WorkerTally {
    fn merge(&mut self, other: &WorkerTally) {
        self.latency.merge(&other.latency);
        self.errors.merge(&other.errors);
        self.refusals.merge(&other.refusals);
        self.tls_resumed += other.tls_resumed;
    }
}

/// Runs the shape on its own runtime: sets up TLS, fetches tickets (if the
/// preamble asks for them; untimed), then runs the timed part.
pub fn run(config: &ConnrateConfig) -> Result<ConnrateReport, ConnrateError> {
    let tls = config.tls.as_ref().map(TlsClient::new).transpose()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.threads.get())
        .thread_name("gatehouse-load-connrate")
        .enable_all()
        .build()
        .map_err(ConnrateError::Runtime)?;
    runtime.block_on(async move {
        let tickets = match &config.preamble {
            Some(SocksPreamble {
                destination: SocksDestination::Tickets(plan),
                ..
            }) => {
                let batch = sta::fetch(plan).await?;
                if batch.is_empty() {
                    return Err(ConnrateError::NoTickets);
                }
                Some(batch)
            }
            _ => None,
        };
        let shared = Arc::new(Shared {
            config: config.clone(),
            tls,
            tickets,
        });
        let start = Instant::now();
        let deadline = start + shared.config.duration;
        let tasks: Vec<_> = (0..shared.config.concurrency)
            .map(|index| tokio::spawn(worker(Arc::clone(&shared), index, deadline)))
            .collect();
        let mut total = WorkerTally::default();
        for task in tasks {
            match task.await {
                Ok(tally) => total.merge(&tally),
                Err(_) => total.errors.io += 1,
            }
        }
        let elapsed = start.elapsed();
        let tickets = shared.tickets.as_ref().map(|batch| TicketStats {
            fetched: batch.len(),
            used: batch.used(),
            fetch_time: batch.elapsed,
            exhausted: batch.exhausted(),
        });
        Ok(ConnrateReport {
            config: config.clone(),
            completed: total.latency.count(),
            elapsed,
            latency: total.latency.summary(),
            errors: total.errors,
            refusals: total.refusals,
            tls_resumed: total.tls_resumed,
            tickets,
        })
    })
}

async fn worker(shared: Arc<Shared>, index: usize, deadline: Instant) -> WorkerTally {
    let config = &shared.config;
    let mut tally = WorkerTally::default();
    let request: Vec<u8> = (0..config.message_size)
        .map(|i| (i + index) as u8)
        .collect();
    let mut response = vec![0; config.message_size];
    // The CONNECT of a fixed destination is built once.
    let fixed_connect = config.preamble.as_ref().and_then(|p| match &p.destination {
        SocksDestination::Domain(host) => Some(socks::encode_connect(host, p.port)),
        SocksDestination::Ip(ip) => Some(socks::encode_connect_ip(*ip, p.port)),
        SocksDestination::Tickets(_) => None,
    });
    while Instant::now() < deadline {
        let ticket_connect;
        let connect = match (&config.preamble, &shared.tickets) {
            (None, _) => None,
            (Some(p), Some(batch)) if fixed_connect.is_none() => match batch.take() {
                Some(ticket) => {
                    ticket_connect = socks::encode_connect(ticket, p.port);
                    Some(ticket_connect.as_slice())
                }
                None => break,
            },
            (Some(_), _) => fixed_connect.as_deref(),
        };
        let began = Instant::now();
        let outcome = match timeout(net::CONNECT_TIMEOUT, TcpStream::connect(config.target)).await {
            Ok(Ok(stream)) => {
                let exchange = session(stream, &shared, connect, &request, &mut response);
                match timeout(net::OP_TIMEOUT, exchange).await {
                    Ok(outcome) => outcome,
                    Err(_) => Err(Failure::Io(io::ErrorKind::TimedOut.into())),
                }
            }
            Ok(Err(_)) | Err(_) => Err(Failure::Connect),
        };
        match outcome {
            Ok(resumed) => {
                tally.latency.record(began.elapsed());
                tally.tls_resumed += u64::from(resumed);
            }
            Err(failure) => {
                match failure {
                    Failure::Connect => tally.errors.connect += 1,
                    Failure::Tls => tally.errors.tls += 1,
                    Failure::Preamble => tally.errors.preamble += 1,
                    Failure::Refused(code) => {
                        tally.errors.preamble += 1;
                        tally.refusals.record(code);
                    }
                    Failure::Io(e) => tally.errors.count_io(&e),
                    Failure::Mismatch => tally.errors.mismatch += 1,
                }
                tokio::time::sleep(ERROR_BACKOFF).await;
            }
        }
    }
    tally
}

/// TLS handshake (if configured), then [`one_exchange`]; `Ok(true)` when
/// the TLS session was resumed.
async fn session(
    stream: TcpStream,
    shared: &Shared,
    connect: Option<&[u8]>,
    request: &[u8],
    response: &mut [u8],
) -> Result<bool, Failure> {
    stream.set_nodelay(true).map_err(Failure::Io)?;
    match &shared.tls {
        None => {
            one_exchange(stream, connect, request, response).await?;
            Ok(false)
        }
        Some(tls) => {
            let stream = tls
                .connector
                .connect(tls.server_name.clone(), stream)
                .await
                .map_err(|_| Failure::Tls)?;
            let resumed = stream.get_ref().1.handshake_kind() == Some(HandshakeKind::Resumed);
            one_exchange(stream, connect, request, response).await?;
            Ok(resumed)
        }
    }
}

/// Preamble (if any), echo, close (by dropping the stream).
async fn one_exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    connect: Option<&[u8]>,
    request: &[u8],
    response: &mut [u8],
) -> Result<(), Failure> {
    let mut already = 0;
    if let Some(connect) = connect {
        let leftover = socks_preamble(&mut stream, connect).await?;
        // Bytes the server sent right after its reply belong to the echo.
        already = leftover.len().min(response.len());
        response[..already].copy_from_slice(&leftover[..already]);
    }
    stream.write_all(request).await.map_err(Failure::Io)?;
    stream.flush().await.map_err(Failure::Io)?;
    stream
        .read_exact(&mut response[already..])
        .await
        .map_err(Failure::Io)?;
    if response == request {
        Ok(())
    } else {
        Err(Failure::Mismatch)
    }
}

/// Greeting, method choice, CONNECT, reply; returns bytes read past the reply.
async fn socks_preamble<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    connect: &[u8],
) -> Result<Vec<u8>, Failure> {
    let mut buf = Vec::with_capacity(64);
    stream
        .write_all(&socks::GREETING)
        .await
        .map_err(Failure::Io)?;
    stream.flush().await.map_err(Failure::Io)?;
    let consumed = read_until_done(stream, &mut buf, socks::decode_method_choice).await?;
    buf.drain(..consumed);
    stream.write_all(connect).await.map_err(Failure::Io)?;
    stream.flush().await.map_err(Failure::Io)?;
    let consumed = read_until_done(stream, &mut buf, socks::decode_connect_reply).await?;
    buf.drain(..consumed);
    Ok(buf)
}

async fn read_until_done<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    decode: fn(&[u8]) -> Result<Progress<()>, PreambleError>,
) -> Result<usize, Failure> {
    let mut chunk = [0; 512];
    loop {
        match decode(buf) {
            Ok(Progress::Done { consumed, .. }) => return Ok(consumed),
            Ok(Progress::NeedMore { .. }) => {
                let n = stream.read(&mut chunk).await.map_err(Failure::Io)?;
                if n == 0 {
                    return Err(Failure::Preamble);
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            Err(PreambleError::Refused(code)) => return Err(Failure::Refused(code)),
            Err(_) => return Err(Failure::Preamble),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_refusals_by_reply_code() {
        let mut a = ReplyCodes::default();
        a.record(0x02);
        a.record(0x02);
        let mut b = ReplyCodes::default();
        b.record(0x05);
        a.merge(&b);
        assert_eq!((a.total(), a.count(0x02), a.count(0x05)), (3, 2, 1));
        assert_eq!(a.describe(), "3 (0x02 2, 0x05 1)");
        assert_eq!(ReplyCodes::default().describe(), "0");
    }
}
