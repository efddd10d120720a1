//! The CGP handler of a gateway launch (PROTOCOLS.md §4): read the
//! signature and BIND_REQUEST, redeem the security ticket (first connect)
//! or the reconnect ticket (resume), connect the worker's CGP address,
//! forward the preamble, pass the worker's BIND_RESPONSE back, then hand
//! both streams to the relay.
//!
//! ```text
//! AwaitPreamble ─signature + BIND_REQUEST─► reconnect ticket? ─yes─► redeem(CgpReconnect) ─► forward BIND with the worker's ticket
//!                                                             └─no──► security ticket? ─► redeem(Cgp) ─► forward the preamble verbatim
//!                                                                                      └─► refused BIND_RESPONSE (no_ticket)
//! connect(worker) ─► AwaitBindResponse ─► client gets it with the gateway's reconnect ticket ─► CgpLaunch
//!                                     └─ next number 0: passed on as it is, then closed (worker_refused_bind)
//! ```
//!
//! Gatehouse decides:
//! - The client's reconnect ticket is the gateway's (an STA reconnect
//!   ticket from the verdict), never the worker's: the gateway swaps it into
//!   the worker's BIND_RESPONSE, and on a resume swaps the worker's own
//!   ticket (from the verdict) into the BIND_REQUEST it forwards. So a
//!   resume always goes through the STA and the control plane's session
//!   record, and the worker never sees a ticket it did not issue.
//! - A refusal after the BIND_REQUEST is answered with a BIND_RESPONSE
//!   whose session reliability capability says next message number 0 (the
//!   CGP refusal), then the connection is closed. Before a whole
//!   BIND_REQUEST there is no CGP answer to give: the connection is closed.
//! - Bytes the client sent behind its BIND_REQUEST go to the worker right
//!   after the preamble; bytes the worker sent behind its BIND_RESPONSE go
//!   to the client right after it.
//!
//! Deadlines: [`CgpConfig::deadline`] bounds everything from the first byte
//! to the BIND_RESPONSE; the worker connect additionally stops after
//! [`CgpConfig::connect_timeout`].
//!
//! What this module refuses to do: relay, log (the caller logs one event
//! from the [`CgpOutcome`]) and parse CGP itself (all bytes go through
//! `wire::cgp`).

use std::io;
use std::time::Duration;

use gatehouse_channel::{ClientAddr, RedeemKind, SessionId, TicketBytes};
use gatehouse_wire::Progress;
use gatehouse_wire::cgp::{
    BindRequest, BindResponse, CgpError, MessageNumber, VARLEN_MAX, decode_connection_preamble,
    encode_connection_preamble,
};
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use monoio::time::Instant;

use crate::redeem::{RedeemError, Redeemed, TicketRedeemer};
use crate::session::Fault;

/// Default deadline from the first byte to the BIND_RESPONSE.
pub const DEFAULT_CGP_DEADLINE: Duration = Duration::from_secs(10);

/// Default limit for connecting to the worker.
pub const DEFAULT_CGP_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest preamble or BIND_RESPONSE: signature, 2-byte length and
/// the largest packet.
pub const MAX_BIND_BYTES: usize = 7 + 2 + VARLEN_MAX as usize;

/// The first buffer size: a BIND is a few hundred bytes; the buffer grows
/// (up to [`MAX_BIND_BYTES`]) only for larger ones.
const FIRST_BUFFER: usize = 1_024;

/// Time allowed to write the preamble, an answer or a refusal.
const WRITE_GRACE: Duration = Duration::from_secs(1);

/// How a listener runs the CGP handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgpConfig {
    /// Time from the call to the BIND_RESPONSE reaching the client.
    pub deadline: Duration,
    /// Time allowed for the TCP connect to the worker (within `deadline`).
    pub connect_timeout: Duration,
}

impl Default for CgpConfig {
    /// [`DEFAULT_CGP_DEADLINE`] and [`DEFAULT_CGP_CONNECT_TIMEOUT`].
    fn default() -> Self {
        CgpConfig {
            deadline: DEFAULT_CGP_DEADLINE,
            connect_timeout: DEFAULT_CGP_CONNECT_TIMEOUT,
        }
    }
}

/// What the handler decided.
#[expect(
    clippy::large_enum_variant,
    reason = "made once per connection and moved straight into the relay"
)]
#[derive(Debug)]
pub enum CgpOutcome<S> {
    /// The client has the worker's BIND_RESPONSE: relay both ways.
    Relay(CgpLaunch<S>),
    /// The client got the refusal (if the stage has one); drop the stream.
    /// `session` is set when the ticket was already redeemed, so the caller
    /// can report that session closed to the control plane.
    Refuse {
        /// Why.
        refused: Refused,
        /// The session the redeemed ticket opened, if it got that far.
        session: Option<SessionId>,
    },
}

/// A bound CGP session ready to relay.
#[derive(Debug)]
pub struct CgpLaunch<S> {
    /// The client stream, positioned after the BIND_REQUEST and whatever
    /// followed it in the same reads (already forwarded).
    pub client: S,
    /// The connected worker, positioned after its BIND_RESPONSE and
    /// whatever followed it in the same reads (already passed on).
    pub backend: TcpStream,
    /// The redemption that allowed this launch.
    pub redeemed: Redeemed,
    /// Whether the client resumed a session with a reconnect ticket.
    pub resumed: bool,
    /// The reconnect ticket the worker's BIND_RESPONSE carried, for the
    /// control plane's session record (the client got the gateway's).
    pub worker_ticket: Option<TicketBytes>,
    /// Bytes written to the worker so far (preamble included).
    pub bytes_up: usize,
    /// Bytes written to the client so far (BIND_RESPONSE included).
    pub bytes_down: usize,
}

/// Why the handler refused a client.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// The exchange did not finish before [`CgpConfig::deadline`].
    #[error("cgp bind not finished within {0:?}")]
    Timeout(Duration),
    /// The client closed before its BIND_REQUEST was complete.
    #[error("client closed during the cgp preamble")]
    ClosedEarly,
    /// Reading from or writing to the client failed.
    #[error("client i/o failed during the cgp bind")]
    ClientIo(#[source] io::Error),
    /// The preamble is longer than a CGP packet can be.
    #[error("cgp preamble longer than {MAX_BIND_BYTES} bytes")]
    TooLong,
    /// The signature or BIND_REQUEST is malformed.
    #[error("malformed cgp preamble")]
    Malformed(#[source] CgpError),
    /// The BIND_REQUEST carries neither a security ticket nor a reconnect
    /// ticket.
    #[error("bind request carries no ticket")]
    NoTicket,
    /// The redeemer gave no verdict before the deadline.
    #[error("no verdict for the ticket within the deadline")]
    RedeemTimeout,
    /// The redeemer refused the ticket.
    #[error("ticket not redeemed")]
    Redeem(#[source] RedeemError),
    /// A resume was allowed without the worker's reconnect ticket to
    /// forward: the control plane never learnt it.
    #[error("resume allowed without the worker's reconnect ticket")]
    NoWorkerTicket,
    /// Connecting to the worker failed or timed out.
    #[error("worker connection failed")]
    Connect(#[source] io::Error),
    /// The worker did not answer the BIND in time.
    #[error("worker did not answer the bind in time")]
    WorkerTimeout,
    /// The worker closed before its BIND_RESPONSE was complete.
    #[error("worker closed before its bind response")]
    WorkerClosed,
    /// Reading from or writing to the worker failed.
    #[error("worker i/o failed during the cgp bind")]
    WorkerIo(#[source] io::Error),
    /// The worker's BIND_RESPONSE is malformed or too long.
    #[error("malformed bind response from the worker")]
    WorkerMalformed(#[source] CgpError),
    /// The worker refused the bind (next message number 0); the client got
    /// the worker's answer.
    #[error("the worker refused the bind")]
    WorkerRefused,
    /// Re-encoding a BIND with a swapped ticket failed (a ticket too long
    /// for the packet).
    #[error("cannot re-encode the bind with the swapped reconnect ticket")]
    Rewrite(#[source] CgpError),
}

impl Refused {
    /// Stable snake_case reason for the `reason` log field and counters.
    pub fn reason(&self) -> &'static str {
        match self {
            Refused::Timeout(_) => "cgp_timeout",
            Refused::ClosedEarly => "cgp_closed_early",
            Refused::ClientIo(_) => "cgp_client_io",
            Refused::TooLong => "message_too_long",
            Refused::Malformed(_) => "cgp_malformed",
            Refused::NoTicket => "cgp_no_ticket",
            Refused::RedeemTimeout => "redeem_timeout",
            Refused::Redeem(error) => error.reason(),
            Refused::NoWorkerTicket => "no_worker_ticket",
            Refused::Connect(error) => match error.kind() {
                io::ErrorKind::ConnectionRefused => "backend_refused",
                io::ErrorKind::TimedOut => "backend_timeout",
                _ => "backend_unreachable",
            },
            Refused::WorkerTimeout => "worker_bind_timeout",
            Refused::WorkerClosed => "worker_closed_early",
            Refused::WorkerIo(_) => "worker_io",
            Refused::WorkerMalformed(_) => "worker_malformed",
            Refused::WorkerRefused => "worker_refused_bind",
            Refused::Rewrite(_) => "cgp_rewrite_failed",
        }
    }

    /// Who is at fault.
    pub fn fault(&self) -> Fault {
        match self {
            Refused::Timeout(_)
            | Refused::ClosedEarly
            | Refused::ClientIo(_)
            | Refused::TooLong
            | Refused::Malformed(_)
            | Refused::NoTicket => Fault::Client,
            Refused::RedeemTimeout | Refused::NoWorkerTicket => Fault::ControlPlane,
            Refused::Redeem(error) => error.fault(),
            Refused::Connect(_)
            | Refused::WorkerTimeout
            | Refused::WorkerClosed
            | Refused::WorkerIo(_)
            | Refused::WorkerMalformed(_)
            | Refused::WorkerRefused => Fault::Worker,
            Refused::Rewrite(_) => Fault::Internal,
        }
    }

    /// Whether the client is owed a refused BIND_RESPONSE: every refusal
    /// after a whole BIND_REQUEST, except when the worker's own answer
    /// already went to the client or the client is gone.
    pub fn answers_with_refused_bind(&self) -> bool {
        match self {
            Refused::NoTicket
            | Refused::RedeemTimeout
            | Refused::Redeem(_)
            | Refused::NoWorkerTicket
            | Refused::Connect(_)
            | Refused::WorkerTimeout
            | Refused::WorkerClosed
            | Refused::WorkerIo(_)
            | Refused::WorkerMalformed(_)
            | Refused::Rewrite(_) => true,
            Refused::Timeout(_)
            | Refused::ClosedEarly
            | Refused::ClientIo(_)
            | Refused::TooLong
            | Refused::Malformed(_)
            | Refused::WorkerRefused => false,
        }
    }
}

/// The ticket a BIND_REQUEST presents and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Presented<'a> {
    /// Security ticket ([`RedeemKind::Cgp`]) or reconnect ticket
    /// ([`RedeemKind::CgpReconnect`]).
    pub kind: RedeemKind,
    /// The ticket bytes as sent.
    pub ticket: &'a [u8],
}

/// Which ticket `bind` presents: the reconnect ticket of its session
/// reliability capability if it has one (a resume), else its STA security
/// ticket (a first connect), else none.
pub fn presented<'a>(bind: &BindRequest<'a>) -> Option<Presented<'a>> {
    if let Some(info) = bind.reconnect() {
        return Some(Presented {
            kind: RedeemKind::CgpReconnect,
            ticket: info.ticket,
        });
    }
    bind.security_ticket().map(|ticket| Presented {
        kind: RedeemKind::Cgp,
        ticket,
    })
}

/// The preamble to forward to the worker for the client's `preamble`
/// bytes (signature + BIND_REQUEST): verbatim for a first connect; for a
/// resume, re-encoded with `worker_ticket` in place of the client's
/// reconnect ticket.
///
/// # Errors
/// [`Refused::Malformed`] if `preamble` does not decode,
/// [`Refused::Rewrite`] if the re-encoded BIND does not fit a packet.
pub fn forwarded_preamble(
    preamble: &[u8],
    worker_ticket: Option<&[u8]>,
    out: &mut Vec<u8>,
) -> Result<(), Refused> {
    let Some(worker_ticket) = worker_ticket else {
        out.extend_from_slice(preamble);
        return Ok(());
    };
    let (mut bind, _) = match decode_connection_preamble(preamble).map_err(Refused::Malformed)? {
        Progress::Done { value, consumed } => (value, consumed),
        Progress::NeedMore { .. } => return Err(Refused::Malformed(CgpError::Truncated("bind"))),
    };
    if !bind.replace_reconnect_ticket(worker_ticket) {
        return Err(Refused::NoWorkerTicket);
    }
    encode_connection_preamble(&bind, out).map_err(Refused::Rewrite)
}

/// The client's copy of the worker's `response` bytes (one BIND_RESPONSE
/// packet), with `gateway_ticket` in place of the worker's reconnect ticket
/// when both are there; verbatim otherwise. Returns the worker's ticket.
///
/// # Errors
/// [`Refused::WorkerMalformed`] if `response` does not decode,
/// [`Refused::Rewrite`] if the re-encoded BIND does not fit a packet.
pub fn client_response<'a>(
    response: &'a [u8],
    gateway_ticket: Option<&[u8]>,
    out: &mut Vec<u8>,
) -> Result<ResponseSeen<'a>, Refused> {
    let decoded = match BindResponse::decode(response).map_err(Refused::WorkerMalformed)? {
        Progress::Done { value, .. } => value,
        Progress::NeedMore { .. } => {
            return Err(Refused::WorkerMalformed(CgpError::Truncated("bind")));
        }
    };
    let refused = decoded.next_message_number() == Some(MessageNumber::REFUSED);
    let worker_ticket = decoded.reconnect().map(|info| info.ticket);
    // The copy borrows the gateway's ticket for a shorter lifetime.
    let mut bind: BindResponse<'_> = decoded;
    match gateway_ticket {
        Some(ticket) if !refused && bind.replace_reconnect_ticket(ticket) => {
            bind.encode(out).map_err(Refused::Rewrite)?;
        }
        _ => out.extend_from_slice(response),
    }
    Ok(ResponseSeen {
        refused,
        worker_ticket,
    })
}

/// What [`client_response`] saw in the worker's BIND_RESPONSE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseSeen<'a> {
    /// The worker refused the bind (next message number 0).
    pub refused: bool,
    /// The worker's reconnect ticket, if it sent one.
    pub worker_ticket: Option<&'a [u8]>,
}

/// The BIND_RESPONSE that refuses a bind: one session reliability
/// capability with next message number 0.
pub fn refused_bind_response(out: &mut Vec<u8>) {
    // One fixed-size capability: always encodes.
    let _ = BindResponse::refused().encode(out);
}

/// Runs the gateway side of a CGP bind on `client` (a stream that detection
/// classified as CGP, plain or inside TLS).
///
/// `peer` is passed to the redeemer. Returns [`CgpOutcome::Relay`] once the
/// client has the worker's BIND_RESPONSE, or [`CgpOutcome::Refuse`] after
/// the refusal (see the module docs). Never panics on client or worker
/// input.
pub async fn serve<S, R>(
    mut client: S,
    peer: ClientAddr,
    redeemer: &R,
    config: &CgpConfig,
) -> CgpOutcome<S>
where
    S: AsyncReadRent + AsyncWriteRent,
    R: TicketRedeemer,
{
    let deadline = Instant::now() + config.deadline;
    let mut inbox = Inbox::new();
    let read = monoio::time::timeout_at(deadline, read_preamble(&mut inbox, &mut client)).await;
    let preamble_len = match read {
        Ok(Ok(len)) => len,
        Ok(Err(refused)) => return refuse(refused, None),
        Err(_elapsed) => return refuse(Refused::Timeout(config.deadline), None),
    };
    let bound = bind(&mut inbox, preamble_len, peer, redeemer, config, deadline).await;
    let (redeemed, resumed, mut backend, bytes_up) = match bound {
        Ok(bound) => bound,
        Err((refused, session)) => return answer_refusal(client, refused, session).await,
    };
    let session = Some(redeemed.session());
    let answered = monoio::time::timeout_at(
        deadline,
        answer(&mut backend, &mut client, redeemed.reconnect_ticket()),
    )
    .await;
    let (worker_ticket, bytes_down) = match answered {
        Ok(Ok(answered)) => answered,
        Ok(Err(refused)) => return answer_refusal(client, refused, session).await,
        Err(_elapsed) => return answer_refusal(client, Refused::WorkerTimeout, session).await,
    };
    CgpOutcome::Relay(CgpLaunch {
        client,
        backend,
        redeemed,
        resumed,
        worker_ticket,
        bytes_up,
        bytes_down,
    })
}

fn refuse<S>(refused: Refused, session: Option<SessionId>) -> CgpOutcome<S> {
    CgpOutcome::Refuse { refused, session }
}

/// Reads until a whole preamble is in `inbox`; returns its length.
async fn read_preamble<S: AsyncReadRent>(
    inbox: &mut Inbox,
    client: &mut S,
) -> Result<usize, Refused> {
    loop {
        match decode_connection_preamble(inbox.bytes()) {
            Ok(Progress::Done { consumed, .. }) => return Ok(consumed),
            Ok(Progress::NeedMore { at_least }) => {
                inbox
                    .fill(client, at_least)
                    .await
                    .map_err(|error| match error {
                        FillError::Closed => Refused::ClosedEarly,
                        FillError::TooLong => Refused::TooLong,
                        FillError::Io(error) => Refused::ClientIo(error),
                    })?;
            }
            Err(error) => return Err(Refused::Malformed(error)),
        }
    }
}

/// Redeems the presented ticket, connects the worker and forwards the
/// preamble (and whatever followed it). Returns the grant, whether it is a
/// resume, the worker stream and the bytes written to it.
async fn bind<R: TicketRedeemer>(
    inbox: &mut Inbox,
    preamble_len: usize,
    peer: ClientAddr,
    redeemer: &R,
    config: &CgpConfig,
    deadline: Instant,
) -> Result<(Redeemed, bool, TcpStream, usize), (Refused, Option<SessionId>)> {
    let (preamble, early) = inbox.bytes().split_at(preamble_len);
    let (kind, ticket) = match decode_connection_preamble(preamble) {
        Ok(Progress::Done { value, .. }) => match presented(&value) {
            Some(presented) => (presented.kind, presented.ticket),
            None => return Err((Refused::NoTicket, None)),
        },
        Ok(Progress::NeedMore { .. }) => {
            return Err((Refused::Malformed(CgpError::Truncated("bind")), None));
        }
        Err(error) => return Err((Refused::Malformed(error), None)),
    };
    let redeemed =
        match monoio::time::timeout_at(deadline, redeemer.redeem_as(kind, ticket, peer)).await {
            Ok(Ok(redeemed)) => redeemed,
            Ok(Err(error)) => return Err((Refused::Redeem(error), None)),
            Err(_elapsed) => return Err((Refused::RedeemTimeout, None)),
        };
    let session = Some(redeemed.session());
    let resumed = kind == RedeemKind::CgpReconnect;
    let worker_ticket = match (resumed, redeemed.worker_ticket()) {
        (false, _) => None,
        (true, Some(ticket)) => Some(ticket.as_bytes()),
        (true, None) => return Err((Refused::NoWorkerTicket, session)),
    };
    let mut out = Vec::with_capacity(preamble.len() + early.len() + 64);
    if let Err(refused) = forwarded_preamble(preamble, worker_ticket, &mut out) {
        return Err((refused, session));
    }
    out.extend_from_slice(early);
    let connect_deadline = deadline.min(Instant::now() + config.connect_timeout);
    let mut backend = match connect(redeemed.worker().0, connect_deadline).await {
        Ok(backend) => backend,
        Err(refused) => return Err((refused, session)),
    };
    let written = out.len();
    if let Err(error) = write_within(&mut backend, out).await {
        return Err((Refused::WorkerIo(error), session));
    }
    Ok((redeemed, resumed, backend, written))
}

/// Reads the worker's BIND_RESPONSE and writes the client's copy (with the
/// gateway's reconnect ticket) and whatever followed it. Returns the
/// worker's reconnect ticket and the bytes written to the client.
async fn answer<S: AsyncWriteRent>(
    backend: &mut TcpStream,
    client: &mut S,
    gateway_ticket: Option<&TicketBytes>,
) -> Result<(Option<TicketBytes>, usize), Refused> {
    let mut inbox = Inbox::new();
    let response_len = loop {
        match BindResponse::decode(inbox.bytes()) {
            Ok(Progress::Done { consumed, .. }) => break consumed,
            Ok(Progress::NeedMore { at_least }) => {
                inbox
                    .fill(backend, at_least)
                    .await
                    .map_err(|error| match error {
                        FillError::Closed => Refused::WorkerClosed,
                        FillError::TooLong => {
                            Refused::WorkerMalformed(CgpError::PacketTooLong(at_least))
                        }
                        FillError::Io(error) => Refused::WorkerIo(error),
                    })?;
            }
            Err(error) => return Err(Refused::WorkerMalformed(error)),
        }
    };
    let (response, after) = inbox.bytes().split_at(response_len);
    let mut out = Vec::with_capacity(response.len() + after.len() + 64);
    let seen = client_response(
        response,
        gateway_ticket.map(TicketBytes::as_bytes),
        &mut out,
    )?;
    // A worker ticket longer than a channel message can carry cannot be
    // kept: the session works, a resume of it will be refused.
    let worker_ticket = seen
        .worker_ticket
        .and_then(|ticket| TicketBytes::new(ticket).ok());
    let refused = seen.refused;
    out.extend_from_slice(after);
    let written = out.len();
    write_within(client, out).await.map_err(Refused::ClientIo)?;
    if refused {
        let _ = monoio::time::timeout(WRITE_GRACE, client.shutdown()).await;
        return Err(Refused::WorkerRefused);
    }
    Ok((worker_ticket, written))
}

/// Sends the refused BIND_RESPONSE if the refusal earns one, within
/// [`WRITE_GRACE`], then half-closes; errors are moot, the client is going.
async fn answer_refusal<S: AsyncWriteRent>(
    mut client: S,
    refused: Refused,
    session: Option<SessionId>,
) -> CgpOutcome<S> {
    if refused.answers_with_refused_bind() {
        let mut out = Vec::with_capacity(32);
        refused_bind_response(&mut out);
        if write_within(&mut client, out).await.is_ok() {
            let _ = monoio::time::timeout(WRITE_GRACE, client.shutdown()).await;
        }
    }
    refuse(refused, session)
}

/// Connects to the worker before `deadline`.
async fn connect(worker: std::net::SocketAddr, deadline: Instant) -> Result<TcpStream, Refused> {
    match monoio::time::timeout_at(deadline, TcpStream::connect_addr(worker)).await {
        Ok(Ok(stream)) => {
            // Best effort: a relay without NODELAY still works, only slower.
            let _ = stream.set_nodelay(true);
            Ok(stream)
        }
        Ok(Err(source)) => Err(Refused::Connect(source)),
        Err(_elapsed) => Err(Refused::Connect(io::Error::from(io::ErrorKind::TimedOut))),
    }
}

/// Writes `bytes` and flushes within [`WRITE_GRACE`].
async fn write_within<W: AsyncWriteRent>(stream: &mut W, bytes: Vec<u8>) -> io::Result<()> {
    let writing = async {
        let (result, _) = stream.write_all(bytes).await;
        result?;
        stream.flush().await
    };
    match monoio::time::timeout(WRITE_GRACE, writing).await {
        Ok(result) => result,
        Err(_elapsed) => Err(io::Error::from(io::ErrorKind::TimedOut)),
    }
}

/// Why [`Inbox::fill`] stopped.
#[derive(Debug)]
enum FillError {
    Closed,
    TooLong,
    Io(io::Error),
}

/// Bytes read from one side during the bind, up to [`MAX_BIND_BYTES`].
struct Inbox {
    buf: Vec<u8>,
}

impl Inbox {
    fn new() -> Inbox {
        Inbox {
            buf: Vec::with_capacity(FIRST_BUFFER),
        }
    }

    fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Reads until at least `at_least` bytes are held.
    async fn fill<S: AsyncReadRent>(
        &mut self,
        stream: &mut S,
        at_least: usize,
    ) -> Result<(), FillError> {
        if at_least > MAX_BIND_BYTES {
            return Err(FillError::TooLong);
        }
        while self.buf.len() < at_least {
            if self.buf.capacity() < at_least {
                self.buf.reserve(at_least - self.buf.len());
            }
            let filled = self.buf.len();
            let buf = std::mem::take(&mut self.buf);
            let (result, slice) = stream.read(buf.slice_mut(filled..)).await;
            self.buf = slice.into_inner();
            match result {
                Ok(0) => return Err(FillError::Closed),
                Ok(_) => {}
                Err(error) => return Err(FillError::Io(error)),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
