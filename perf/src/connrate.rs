//! `connrate`: connections per second with C connections in flight.
//!
//! Each of C tasks (on a multi-threaded tokio runtime) loops until the
//! deadline: connect, optionally send the SOCKS5 preamble of
//! [`crate::socks`], write `size` bytes, read the echo, close. The latency of
//! one connection runs from before `connect` to the last echoed byte.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use gatehouse_wire::Progress;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};

use crate::json::JsonObject;
use crate::latency::{LatencyRecorder, LatencySummary};
use crate::net;
use crate::rr::per_sec;
use crate::socks::{self, PreambleError, SocksHost};
use crate::tally::ErrorTally;

/// Pause after a failed connection, so a dead target is not hammered in a
/// tight loop for the whole run.
const ERROR_BACKOFF: Duration = Duration::from_millis(1);

/// The SOCKS5 CONNECT sent before the echo.
#[derive(Debug, Clone)]
pub struct SocksPreamble {
    /// Domain text (ATYP 3); for a gateway, the ticket text.
    pub host: SocksHost,
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
    /// Runtime threads driving the connections.
    pub threads: NonZeroUsize,
}

/// What happened.
#[derive(Debug, Clone)]
pub struct ConnrateReport {
    /// The run's configuration.
    pub config: ConnrateConfig,
    /// Connections that completed the echo.
    pub completed: u64,
    /// From the start until the last task stopped.
    pub elapsed: Duration,
    /// Latency of completed connections.
    pub latency: LatencySummary,
    /// Failures by phase.
    pub errors: ErrorTally,
}

impl ConnrateReport {
    /// Completed connections per second.
    pub fn connections_per_sec(&self) -> f64 {
        per_sec(self.completed, self.elapsed)
    }

    /// One flat JSON object.
    pub fn to_json(&self) -> String {
        let object = JsonObject::new()
            .str("mode", "connrate")
            .str("target", &self.config.target.to_string())
            .int("concurrency", self.config.concurrency as u64)
            .int("size", self.config.message_size as u64)
            .bool("socks5", self.config.preamble.is_some())
            .num("seconds", self.config.duration.as_secs_f64())
            .int("completed", self.completed)
            .num("conn_per_s", self.connections_per_sec());
        let object = self.latency.write_json(object);
        self.errors.write_json(object).finish()
    }
}

impl fmt::Display for ConnrateReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.config;
        let preamble = match &c.preamble {
            Some(p) => format!(", SOCKS5 CONNECT {:?}:{}", p.host.as_str(), p.port),
            None => String::new(),
        };
        writeln!(
            f,
            "connrate {}: {} in flight, {:.1} s, {}-byte echo{preamble}",
            c.target,
            c.concurrency,
            c.duration.as_secs_f64(),
            c.message_size
        )?;
        writeln!(
            f,
            "  {} connections, {:.0} connections/s",
            self.completed,
            self.connections_per_sec()
        )?;
        writeln!(f, "  latency  {}", self.latency.describe())?;
        write!(f, "  errors   {}", self.errors.describe())
    }
}

/// The phase a connection failed in.
#[derive(Debug)]
enum Failure {
    Connect,
    Preamble,
    Io(io::Error),
    Mismatch,
}

/// Runs the shape on its own runtime; errors only if the runtime cannot start.
pub fn run(config: &ConnrateConfig) -> io::Result<ConnrateReport> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.threads.get())
        .thread_name("gatehouse-load-connrate")
        .enable_all()
        .build()?;
    let shared = Arc::new(config.clone());
    let (recorder, errors, elapsed) = runtime.block_on(async move {
        let start = Instant::now();
        let deadline = start + shared.duration;
        let tasks: Vec<_> = (0..shared.concurrency)
            .map(|index| tokio::spawn(worker(Arc::clone(&shared), index, deadline)))
            .collect();
        let mut recorder = LatencyRecorder::new();
        let mut errors = ErrorTally::default();
        for task in tasks {
            match task.await {
                Ok((r, e)) => {
                    recorder.merge(&r);
                    errors.merge(&e);
                }
                Err(_) => errors.io += 1,
            }
        }
        (recorder, errors, start.elapsed())
    });
    Ok(ConnrateReport {
        config: config.clone(),
        completed: recorder.count(),
        elapsed,
        latency: recorder.summary(),
        errors,
    })
}

async fn worker(
    config: Arc<ConnrateConfig>,
    index: usize,
    deadline: Instant,
) -> (LatencyRecorder, ErrorTally) {
    let mut recorder = LatencyRecorder::new();
    let mut errors = ErrorTally::default();
    let request: Vec<u8> = (0..config.message_size)
        .map(|i| (i + index) as u8)
        .collect();
    let mut response = vec![0; config.message_size];
    while Instant::now() < deadline {
        let began = Instant::now();
        let outcome = match timeout(net::CONNECT_TIMEOUT, TcpStream::connect(config.target)).await {
            Ok(Ok(stream)) => {
                let exchange = one_exchange(stream, &config, &request, &mut response);
                match timeout(net::OP_TIMEOUT, exchange).await {
                    Ok(outcome) => outcome,
                    Err(_) => Err(Failure::Io(io::ErrorKind::TimedOut.into())),
                }
            }
            Ok(Err(_)) | Err(_) => Err(Failure::Connect),
        };
        match outcome {
            Ok(()) => recorder.record(began.elapsed()),
            Err(failure) => {
                match failure {
                    Failure::Connect => errors.connect += 1,
                    Failure::Preamble => errors.preamble += 1,
                    Failure::Io(e) => errors.count_io(&e),
                    Failure::Mismatch => errors.mismatch += 1,
                }
                tokio::time::sleep(ERROR_BACKOFF).await;
            }
        }
    }
    (recorder, errors)
}

/// Preamble (if any), echo, close (by dropping the stream).
async fn one_exchange(
    mut stream: TcpStream,
    config: &ConnrateConfig,
    request: &[u8],
    response: &mut [u8],
) -> Result<(), Failure> {
    stream.set_nodelay(true).map_err(Failure::Io)?;
    let mut already = 0;
    if let Some(preamble) = &config.preamble {
        let leftover = socks_preamble(&mut stream, preamble).await?;
        // Bytes the server sent right after its reply belong to the echo.
        already = leftover.len().min(response.len());
        response[..already].copy_from_slice(&leftover[..already]);
    }
    stream.write_all(request).await.map_err(Failure::Io)?;
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
async fn socks_preamble(
    stream: &mut TcpStream,
    preamble: &SocksPreamble,
) -> Result<Vec<u8>, Failure> {
    let mut buf = Vec::with_capacity(64);
    stream
        .write_all(&socks::GREETING)
        .await
        .map_err(Failure::Io)?;
    let consumed = read_until_done(stream, &mut buf, socks::decode_method_choice).await?;
    buf.drain(..consumed);
    let connect = socks::encode_connect(&preamble.host, preamble.port);
    stream.write_all(&connect).await.map_err(Failure::Io)?;
    let consumed = read_until_done(stream, &mut buf, socks::decode_connect_reply).await?;
    buf.drain(..consumed);
    Ok(buf)
}

async fn read_until_done(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    decode: fn(&[u8]) -> Result<Progress<()>, PreambleError>,
) -> Result<usize, Failure> {
    let mut chunk = [0; 512];
    loop {
        match decode(buf).map_err(|_| Failure::Preamble)? {
            Progress::Done { consumed, .. } => return Ok(consumed),
            Progress::NeedMore { .. } => {
                let n = stream.read(&mut chunk).await.map_err(Failure::Io)?;
                if n == 0 {
                    return Err(Failure::Preamble);
                }
                buf.extend_from_slice(&chunk[..n]);
            }
        }
    }
}
