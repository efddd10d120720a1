//! The raw ICA listener: the sim speaks first with the ICA detect string
//! ([`crate::ICA_DETECT`]), then runs the [`crate::service`] mini-protocol
//! on the connection's bytes (echo, or `STREAM <n>\n` then a half-close).
//!
//! One log event per connection, `ica_closed`, with the mode, the bytes
//! each way and the reason.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use gatehouse_wire::Progress;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::service::{ServiceError, ServiceRequest};
use crate::{ICA_DETECT, pattern, stopped};

/// Read and write buffer size.
const CHUNK: usize = 64 * 1024;

/// Accepts ICA connections until `stop`, then waits for them to end.
pub(crate) async fn accept_loop(listener: TcpListener, mut stop: watch::Receiver<bool>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    connections.spawn(serve(stream, peer, stop.clone()));
                }
                Err(error) => {
                    tracing::warn!(proto = "ica", %error, "accept_failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            () = stopped(&mut stop) => break,
        }
        while connections.try_join_next().is_some() {}
    }
    while connections.join_next().await.is_some() {}
}

/// Bytes each way on one connection.
#[derive(Debug, Default)]
struct Counters {
    up: u64,
    down: u64,
    mode: &'static str,
}

async fn serve(mut stream: TcpStream, peer: SocketAddr, mut stop: watch::Receiver<bool>) {
    let started = Instant::now();
    let _ = stream.set_nodelay(true);
    let mut counters = Counters {
        mode: "detecting",
        ..Counters::default()
    };
    let outcome = tokio::select! {
        outcome = converse(&mut stream, &mut counters) => outcome,
        () = stopped(&mut stop) => Err(Ended::Shutdown),
    };
    let (reason, fault, detail) = match &outcome {
        Ok(()) => ("done", "none", String::new()),
        Err(Ended::Shutdown) => ("shutdown", "none", String::new()),
        Err(Ended::BadRequest(error)) => ("bad_stream_request", "client", error.to_string()),
        Err(Ended::Io(error)) => ("io_error", "client", error.to_string()),
    };
    tracing::info!(
        %peer,
        proto = "ica",
        mode = counters.mode,
        reason,
        fault,
        detail,
        bytes_up = counters.up,
        bytes_down = counters.down,
        duration_ms = started.elapsed().as_millis() as u64,
        "ica_closed"
    );
}

/// Why a conversation ended early.
#[derive(Debug)]
enum Ended {
    Shutdown,
    BadRequest(ServiceError),
    Io(std::io::Error),
}

impl From<std::io::Error> for Ended {
    fn from(error: std::io::Error) -> Self {
        Ended::Io(error)
    }
}

async fn converse(stream: &mut TcpStream, counters: &mut Counters) -> Result<(), Ended> {
    stream.write_all(&ICA_DETECT).await?;
    counters.down += ICA_DETECT.len() as u64;
    let mut first = Vec::new();
    let mut chunk = vec![0; CHUNK];
    let mut client_done = false;
    let request = loop {
        match ServiceRequest::decode(&first).map_err(Ended::BadRequest)? {
            Progress::Done { value, consumed } => break (value, consumed),
            Progress::NeedMore { .. } => {}
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            // End of input with a prefix of the verb pending: echo it.
            client_done = true;
            break (ServiceRequest::Echo, 0);
        }
        counters.up += n as u64;
        first.extend_from_slice(chunk.get(..n).unwrap_or_default());
    };
    let (mut reader, mut writer) = stream.split();
    match request {
        (ServiceRequest::Echo, _) => {
            counters.mode = "echo";
            writer.write_all(&first).await?;
            counters.down += first.len() as u64;
            if !client_done {
                let (up, down) = echo(&mut reader, &mut writer, &mut chunk).await?;
                counters.up += up;
                counters.down += down;
            }
            writer.shutdown().await?;
        }
        (ServiceRequest::Stream { len }, _) => {
            counters.mode = "stream";
            let (sent, drained) = tokio::join!(
                async {
                    stream_pattern(&mut writer, len).await?;
                    writer.shutdown().await
                },
                drain(&mut reader, client_done)
            );
            sent?;
            counters.down += len;
            counters.up += drained?;
        }
    }
    Ok(())
}

/// Copies the client's bytes back until it ends its direction.
async fn echo(
    reader: &mut ReadHalf<'_>,
    writer: &mut WriteHalf<'_>,
    chunk: &mut [u8],
) -> std::io::Result<(u64, u64)> {
    let mut total = 0;
    loop {
        let n = reader.read(chunk).await?;
        if n == 0 {
            return Ok((total, total));
        }
        writer.write_all(chunk.get(..n).unwrap_or_default()).await?;
        total += n as u64;
    }
}

/// Writes `len` pattern bytes.
async fn stream_pattern(writer: &mut WriteHalf<'_>, len: u64) -> std::io::Result<()> {
    let mut chunk = vec![0; CHUNK];
    let mut sent = 0;
    while sent < len {
        // Bounded by CHUNK, so the cast cannot truncate.
        let size = (len - sent).min(CHUNK as u64) as usize;
        let piece = chunk.get_mut(..size).unwrap_or_default();
        pattern::fill(sent, piece);
        writer.write_all(piece).await?;
        sent += size as u64;
    }
    Ok(())
}

/// Reads and discards until the client ends its direction.
async fn drain(reader: &mut ReadHalf<'_>, already_done: bool) -> std::io::Result<u64> {
    if already_done {
        return Ok(0);
    }
    let mut chunk = vec![0; CHUNK];
    let mut total = 0;
    loop {
        let n = reader.read(&mut chunk).await?;
        if n == 0 {
            return Ok(total);
        }
        total += n as u64;
    }
}
