//! The CGP listener: the server side of session reliability
//! (PROTOCOLS.md §4), as a worker on port 2598 would speak it.
//!
//! Per connection: read the signature and BIND_REQUEST; a BIND without a
//! reconnect ticket opens a new session (the security ticket is not
//! checked: the gateway redeemed it), one with a reconnect ticket resumes
//! the session parked or attached under it. The BIND_RESPONSE carries the
//! sim's next expected message number (0 = refused), the session's
//! reconnect ticket (a fresh 32-character ticket per session, the same
//! across resumes) and the reliability parameters; on a resume every kept
//! message from the client's next number on follows, in order. A BIND
//! without the session reliability capability is refused too: the sim only
//! serves resumable sessions. Channel opens re-presented in a resume BIND
//! are ignored: channels belong to the session and survive the resume.
//!
//! When a connection breaks, its session is parked for the reliability TTL;
//! FINISH_REQUEST, a protocol error or the output bound end it. One log
//! event per session step: `session_opened`, `session_resumed`,
//! `session_detached`, `session_closed` (with bytes), `bind_refused`.

mod session;
mod table;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use gatehouse_wire::Progress;
use gatehouse_wire::cgp::{BindResponse, MessageNumber, VARLEN_MAX, decode_connection_preamble};
use gatehouse_wire::ticket::Ticket;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::timeout;

pub use table::RandomSource;

use self::session::{Session, SessionError};
use self::table::{Table, Takeover};
use crate::pump::{Endpoint, Pump, PumpError, Pumped, Until};
use crate::stopped;

/// How long a client has to send its signature and BIND_REQUEST.
const PREAMBLE_DEADLINE: Duration = Duration::from_secs(10);

/// The longest preamble: signature, 2-byte length, the largest packet.
const MAX_PREAMBLE: usize = 7 + 2 + VARLEN_MAX as usize;

/// How long a finished session may take to flush its FINISH_RESPONSE.
const FINISH_FLUSH: Duration = Duration::from_secs(2);

/// What the CGP connection tasks share.
#[derive(Debug)]
pub(crate) struct CgpService {
    table: Table,
    max_unacked: usize,
}

impl CgpService {
    /// A service whose parked sessions live `ttl` and whose sessions keep
    /// at most `max_unacked` bytes of unacknowledged output.
    pub(crate) fn new(ttl: Duration, max_unacked: usize, random: RandomSource) -> Self {
        CgpService {
            table: Table::new(ttl, random),
            max_unacked,
        }
    }
}

/// Accepts CGP connections until `stop`, then waits for them to end.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    service: Arc<CgpService>,
    mut stop: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    connections.spawn(serve(stream, peer, service.clone(), stop.clone()));
                }
                Err(error) => {
                    tracing::warn!(proto = "cgp", %error, "accept_failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            () = stopped(&mut stop) => break,
        }
        while connections.try_join_next().is_some() {}
    }
    while connections.join_next().await.is_some() {}
    for session in service.table.drain_parked().await {
        log_closed(&session, "shutdown", None);
    }
}

/// Ends parked sessions past the TTL, until `stop`.
pub(crate) async fn sweep_loop(service: Arc<CgpService>, mut stop: watch::Receiver<bool>) {
    let period = (service.table.ttl() / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
    let mut ticker = tokio::time::interval(period);
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                for session in service.table.sweep().await {
                    log_closed(&session, "expired", None);
                }
            }
            () = stopped(&mut stop) => break,
        }
    }
}

/// The parts of a BIND_REQUEST the sim acts on, owned.
#[derive(Debug)]
struct Hello {
    /// The session reliability capability's next number, if present.
    client_next: Option<MessageNumber>,
    /// The reconnect ticket bytes, if present.
    reconnect: Option<Vec<u8>>,
}

/// How a connection ended.
#[derive(Debug)]
enum End {
    Finished,
    Failed(SessionError),
    Lost(&'static str),
    Takeover(Takeover),
    Shutdown,
}

async fn serve(
    mut stream: TcpStream,
    peer: SocketAddr,
    service: Arc<CgpService>,
    mut stop: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let (hello, leftover) = match timeout(PREAMBLE_DEADLINE, read_preamble(&mut stream)).await {
        Ok(Ok(read)) => read,
        Ok(Err(reason)) => {
            tracing::info!(%peer, proto = "cgp", reason, fault = "client", "bind_refused");
            return;
        }
        Err(_) => {
            let reason = "preamble_timeout";
            tracing::info!(%peer, proto = "cgp", reason, fault = "client", "bind_refused");
            return;
        }
    };
    let Some((mut session, takeover)) = admit(&mut stream, peer, &service, hello).await else {
        return;
    };
    let ttl = u16::try_from(service.table.ttl().as_secs()).unwrap_or(u16::MAX);
    session.queue_bind_response(ttl);
    let mut pump = Pump::new(stream);
    let end = run(&mut pump, &mut session, &leftover, takeover, &mut stop).await;
    match end {
        End::Finished => {
            service.table.remove(session.ticket()).await;
            log_closed(&session, "finished", None);
        }
        End::Failed(error) => {
            service.table.remove(session.ticket()).await;
            log_closed(&session, &error.to_string(), Some("client"));
        }
        End::Shutdown => {
            service.table.remove(session.ticket()).await;
            log_closed(&session, "shutdown", None);
        }
        End::Lost(reason) => {
            tracing::info!(session = session.id, %peer, proto = "cgp", reason, "session_detached");
            service.table.park(session).await;
        }
        End::Takeover(reply) => {
            let reason = "taken_over";
            tracing::info!(session = session.id, %peer, proto = "cgp", reason, "session_detached");
            if let Err(session) = reply.send(session) {
                // The resume gave up waiting: keep the session for the next.
                service.table.park(session).await;
            }
        }
    }
}

/// Drives the session on this connection until it ends.
async fn run(
    pump: &mut Pump<TcpStream>,
    session: &mut Session,
    leftover: &[u8],
    mut takeover: mpsc::Receiver<Takeover>,
    stop: &mut watch::Receiver<bool>,
) -> End {
    // The BIND_RESPONSE is queued first, so it precedes any answer to
    // packets the client sent right behind its BIND_REQUEST.
    if let Err(error) = Endpoint::handle_input(session, leftover) {
        return End::Failed(error);
    }
    loop {
        if let Some(failure) = session.take_failure() {
            return End::Failed(failure);
        }
        if session.is_finished() {
            let _ = timeout(FINISH_FLUSH, pump.run(session, Until::Flushed)).await;
            return End::Finished;
        }
        tokio::select! {
            result = pump.run(session, Until::Received) => match result {
                Ok(Pumped::Received | Pumped::Flushed) => {}
                Ok(Pumped::Closed) => return End::Lost("closed"),
                Err(PumpError::Io(_)) => return End::Lost("io_error"),
                Err(PumpError::Endpoint(error)) => return End::Failed(error),
            },
            Some(reply) = takeover.recv() => return End::Takeover(reply),
            () = stopped(stop) => return End::Shutdown,
        }
    }
}

/// Opens or resumes the session the BIND asks for, or answers a refusal
/// and returns `None`.
async fn admit(
    stream: &mut TcpStream,
    peer: SocketAddr,
    service: &CgpService,
    hello: Hello,
) -> Option<(Box<Session>, mpsc::Receiver<Takeover>)> {
    let Some(client_next) = hello.client_next else {
        refuse(stream, peer, "no_session_reliability", "client").await;
        return None;
    };
    let Some(ticket) = hello.reconnect else {
        let (mut session, takeover) = match service.table.open(service.max_unacked).await {
            Ok(opened) => opened,
            Err(_) => {
                refuse(stream, peer, "random_source_failed", "internal").await;
                return None;
            }
        };
        if session.attach(client_next).is_err() {
            service.table.remove(session.ticket()).await;
            refuse(stream, peer, "bad_first_message_number", "client").await;
            return None;
        }
        tracing::info!(session = session.id, %peer, proto = "cgp", "session_opened");
        return Some((session, takeover));
    };
    let Ok(ticket) = Ticket::decode(&ticket) else {
        refuse(stream, peer, "malformed_reconnect_ticket", "client").await;
        return None;
    };
    let (mut session, takeover) = match service.table.resume(&ticket).await {
        Ok(resumed) => resumed,
        Err(refusal) => {
            refuse(stream, peer, refusal.label(), "client").await;
            return None;
        }
    };
    match session.attach(client_next) {
        Ok(resent) => {
            session.counters.resumes += 1;
            tracing::info!(session = session.id, %peer, proto = "cgp", resent, "session_resumed");
            Some((session, takeover))
        }
        Err(error) => {
            service.table.remove(session.ticket()).await;
            refuse(stream, peer, "resume_number_mismatch", "client").await;
            log_closed(&session, &error.to_string(), Some("client"));
            None
        }
    }
}

/// Answers BIND_RESPONSE with next message number 0 and no ticket.
async fn refuse(stream: &mut TcpStream, peer: SocketAddr, reason: &str, fault: &str) {
    tracing::info!(%peer, proto = "cgp", reason, fault, "bind_refused");
    let mut out = Vec::new();
    // Invariant: one fixed-size capability always encodes.
    let _ = BindResponse::refused().encode(&mut out);
    let _ = tokio::io::AsyncWriteExt::write_all(stream, &out).await;
    let _ = tokio::io::AsyncWriteExt::shutdown(stream).await;
}

/// Reads the signature and BIND_REQUEST; returns what the sim needs and
/// the bytes after the preamble.
async fn read_preamble(stream: &mut TcpStream) -> Result<(Hello, Vec<u8>), &'static str> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0; 4096];
    loop {
        match decode_connection_preamble(&buf) {
            Ok(Progress::Done { value, consumed }) => {
                let reliability = value.session_reliability();
                let hello = Hello {
                    client_next: reliability.map(|reliability| reliability.next_message_number),
                    reconnect: value.reconnect().map(|info| info.ticket.to_vec()),
                };
                return Ok((hello, buf.get(consumed..).unwrap_or_default().to_vec()));
            }
            Ok(Progress::NeedMore { .. }) => {}
            Err(_) => return Err("malformed_preamble"),
        }
        if buf.len() >= MAX_PREAMBLE {
            return Err("preamble_too_long");
        }
        match stream.read(&mut chunk).await {
            Ok(0) => return Err("closed_before_bind"),
            Ok(n) => buf.extend_from_slice(chunk.get(..n).unwrap_or_default()),
            Err(_) => return Err("io_error"),
        }
    }
}

/// Logs the end of a session with its byte counts.
fn log_closed(session: &Session, reason: &str, fault: Option<&str>) {
    let counters = session.counters;
    tracing::info!(
        session = session.id,
        proto = "cgp",
        reason,
        fault = fault.unwrap_or("none"),
        bytes_up = counters.bytes_up,
        bytes_down = counters.bytes_down,
        resumes = counters.resumes,
        duration_ms = session.opened_at().elapsed().as_millis() as u64,
        "session_closed"
    );
}
