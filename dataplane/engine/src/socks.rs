//! The SOCKSv5 handler of a gateway launch (PROTOCOLS.md §2): negotiate,
//! read the CONNECT carrying the ticket, redeem it, connect to the worker,
//! and only then answer the client.
//!
//! ```text
//! AwaitGreeting ─05 02 00 02─► reply 05 00 ─────────────────────┐
//!               └─only 02───► reply 05 02 ─► AwaitUserPass ─01 00┤ (contents ignored)
//! AwaitRequest ◄────────────────────────────────────────────────┘
//!   ├─ CONNECT, ATYP 03 ─► redeem(ticket) ─► connect(worker) ─► forward early bytes ─► 05 00 ─► Launch
//!   ├─ BIND / UDP ASSOCIATE / other ─► 07      ├─ refused ─► Refusal's code (02, 01, ...)
//!   ├─ ATYP 01 / 04 ─► 02                      └─ 05 refused, 04 unreachable or timeout
//!   └─ bad ATYP ─► 08, reserved ≠ 00 ─► 01
//! ```
//!
//! Gatehouse decides:
//! - CONNECT to an IPv4 or IPv6 address is refused with `02` (not allowed
//!   by ruleset): the gateway reaches workers only through tickets, never
//!   as an open proxy.
//! - `DST.PORT` is ignored: the worker address comes from the redeemer.
//! - Bytes the client pipelined behind its request are written to the
//!   worker before the success reply, so the relay starts clean.
//! - The back-end socket gets `TCP_NODELAY` (ICA is interactive).
//!
//! Deadlines: [`SocksConfig::deadline`] bounds the whole exchange from the
//! first byte to the success reply; the connect additionally stops after
//! [`SocksConfig::connect_timeout`]. Silence before the request is closed
//! without a reply (no reply exists at that stage); once the request is
//! read, every failure gets its reply code.
//!
//! What this module refuses to do: relay (the caller relays a [`Launch`]),
//! log (the caller logs one event from the [`SocksOutcome`]), and parse the
//! protocol itself (all bytes go through `wire::socks5`).

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use gatehouse_wire::Progress;
use gatehouse_wire::socks5::{
    Address, Command, Method, Refusal, Reply, Socks5Error, decode_greeting, decode_request,
    decode_userpass, encode_method_selection, encode_reply, encode_userpass_status,
};
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use monoio::time::Instant;

use gatehouse_channel::{ClientAddr, SessionId};

use crate::redeem::{RedeemError, Redeemed, TicketRedeemer};
use crate::session::Fault;

/// Default deadline for the whole exchange, greeting to success reply.
pub const DEFAULT_SOCKS_DEADLINE: Duration = Duration::from_secs(10);

/// Default limit for connecting to the worker.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Handshake buffer: the longest message is an RFC 1929 user/password
/// exchange (513 bytes); the rest holds pipelined bytes.
const HANDSHAKE_BUFFER: usize = 1_024;

/// Time allowed to write a reply or the early bytes after the request.
const REPLY_GRACE: Duration = Duration::from_secs(1);

/// The bound address of every reply: the client does not use it.
const UNBOUND: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);

/// How a listener runs the SOCKS handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocksConfig {
    /// Time from the call to the success reply.
    pub deadline: Duration,
    /// Time allowed for the TCP connect to the worker (within `deadline`).
    pub connect_timeout: Duration,
}

impl Default for SocksConfig {
    /// [`DEFAULT_SOCKS_DEADLINE`] and [`DEFAULT_CONNECT_TIMEOUT`].
    fn default() -> Self {
        SocksConfig {
            deadline: DEFAULT_SOCKS_DEADLINE,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        }
    }
}

/// What the handler decided.
#[expect(
    clippy::large_enum_variant,
    reason = "made once per connection and moved straight into the relay"
)]
#[derive(Debug)]
pub enum SocksOutcome<S> {
    /// The success reply is sent: relay `client` and `backend` both ways.
    Relay(Launch<S>),
    /// The client got the refusal's reply (if the stage has one); drop the
    /// stream. `session` is set when the ticket was already redeemed, so
    /// the caller can report that session closed to the control plane.
    Refuse {
        /// Why.
        refused: Refused,
        /// The session the redeemed ticket opened, if it got that far.
        session: Option<SessionId>,
    },
}

/// A launch ready to relay.
#[derive(Debug)]
pub struct Launch<S> {
    /// The client stream, positioned after the request. If it is a
    /// [`Replay`](crate::replay::Replay) it may still hold replayed bytes,
    /// which belong to the worker like any later byte.
    pub client: S,
    /// The connected worker; the early bytes are already written to it.
    pub backend: TcpStream,
    /// The redemption that allowed this launch.
    pub redeemed: Redeemed,
    /// Client bytes already written to the worker (count them as upstream).
    pub forwarded: usize,
}

/// Why the handler refused a client.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// The client did not finish before [`SocksConfig::deadline`].
    #[error("socks handshake not finished within {0:?}")]
    Timeout(Duration),
    /// The client closed before its request was complete.
    #[error("client closed during the socks handshake")]
    ClosedEarly,
    /// Reading from or writing to the client failed.
    #[error("client i/o failed during the socks handshake")]
    ClientIo(#[source] io::Error),
    /// A message did not fit the handshake buffer (impossible for valid
    /// SOCKSv5; kept so no input can make the handler misbehave).
    #[error("socks message longer than the handshake buffer")]
    TooLong,
    /// A message `wire::socks5` rejects; the reply is [`Socks5Error::reply`].
    #[error("malformed socks message")]
    Malformed(#[source] Socks5Error),
    /// The greeting offers neither no-auth nor user/password (`05 FF` sent).
    #[error("greeting offers no acceptable method")]
    NoAcceptableMethod,
    /// CONNECT to an IP address: the gateway connects by ticket only (`02`).
    #[error("connect by ip address is not allowed, only by ticket")]
    AddressNotAllowed,
    /// The redeemer gave no verdict before the deadline (`01`).
    #[error("no verdict for the ticket within the deadline")]
    RedeemTimeout,
    /// The redeemer refused the ticket; the reply is
    /// [`RedeemError::refusal`]'s (`02` for a rejected ticket, `01` for an
    /// overloaded core or a silent control plane).
    #[error("ticket not redeemed")]
    Redeem(#[source] RedeemError),
    /// A refusal of the request: unsupported command (`07`), a connect
    /// timeout (`04`), an internal inconsistency (`01`).
    #[error("request refused: {}", .0.reason())]
    Request(Refusal),
    /// Connecting to the worker, or writing the early bytes to it, failed.
    #[error("worker connection failed: {}", .refusal.reason())]
    Connect {
        /// `BackendRefused` (`05`) or `BackendUnreachable` (`04`).
        refusal: Refusal,
        /// The socket error.
        #[source]
        source: io::Error,
    },
}

impl Refused {
    /// Stable snake_case reason for the `reason` log field and metric labels.
    pub fn reason(&self) -> &'static str {
        match self {
            Refused::Timeout(_) => "socks_timeout",
            Refused::ClosedEarly => "socks_closed_early",
            Refused::ClientIo(_) => "socks_client_io",
            Refused::TooLong => "message_too_long",
            Refused::Malformed(error) => error.reason(),
            Refused::NoAcceptableMethod => "no_acceptable_method",
            Refused::AddressNotAllowed => "address_not_allowed",
            Refused::RedeemTimeout => "redeem_timeout",
            Refused::Redeem(error) => error.reason(),
            Refused::Request(refusal) | Refused::Connect { refusal, .. } => refusal.reason(),
        }
    }

    /// Who is at fault.
    pub fn fault(&self) -> Fault {
        match self {
            Refused::RedeemTimeout => Fault::ControlPlane,
            Refused::Redeem(error) => error.fault(),
            Refused::Request(refusal) | Refused::Connect { refusal, .. } => match refusal {
                Refusal::TicketRejected
                | Refusal::UnsupportedCommand
                | Refusal::UnsupportedAddressType => Fault::Client,
                Refusal::BackendRefused | Refusal::BackendUnreachable | Refusal::BackendTimeout => {
                    Fault::Worker
                }
                Refusal::Overloaded | Refusal::Internal => Fault::Internal,
            },
            Refused::Timeout(_)
            | Refused::ClosedEarly
            | Refused::ClientIo(_)
            | Refused::TooLong
            | Refused::Malformed(_)
            | Refused::NoAcceptableMethod
            | Refused::AddressNotAllowed => Fault::Client,
        }
    }

    /// The RFC 1928 reply this refusal earns (sent before closing), if any.
    pub fn reply(&self) -> Option<Reply> {
        match self {
            Refused::Malformed(error) => error.reply(),
            Refused::AddressNotAllowed => Some(Reply::NotAllowed),
            Refused::RedeemTimeout => Some(Reply::GeneralFailure),
            Refused::Redeem(error) => Some(error.refusal().reply()),
            Refused::Request(refusal) | Refused::Connect { refusal, .. } => Some(refusal.reply()),
            Refused::Timeout(_)
            | Refused::ClosedEarly
            | Refused::ClientIo(_)
            | Refused::TooLong
            | Refused::NoAcceptableMethod => None,
        }
    }
}

/// Runs the server side of a SOCKSv5 launch on `client` (a stream that
/// detection classified as SOCKSv5, plain or inside TLS).
///
/// `peer` is passed to the redeemer. Returns [`SocksOutcome::Relay`] after
/// the success reply, or [`SocksOutcome::Refuse`] after the refusal's reply
/// (see the module docs for which stage answers what). Never panics on
/// client input.
pub async fn serve<S, R>(
    mut client: S,
    peer: ClientAddr,
    redeemer: &R,
    config: &SocksConfig,
) -> SocksOutcome<S>
where
    S: AsyncReadRent + AsyncWriteRent,
    R: TicketRedeemer,
{
    let deadline = Instant::now() + config.deadline;
    let mut exchange = Exchange::new();
    let negotiated = monoio::time::timeout_at(deadline, exchange.negotiate(&mut client)).await;
    let request_len = match negotiated {
        Ok(Ok(len)) => len,
        Ok(Err(refused)) => return refuse(refused, None),
        Err(_elapsed) => return refuse(Refused::Timeout(config.deadline), None),
    };
    let redeemed = match exchange.redeem(request_len, peer, redeemer, deadline).await {
        Ok(redeemed) => redeemed,
        Err(refused) => return exchange.answer_refusal(client, refused, None).await,
    };
    exchange.inbox.consume(request_len);
    let session = Some(redeemed.session());
    let connect_deadline = deadline.min(Instant::now() + config.connect_timeout);
    let mut backend = match connect(redeemed.worker().0, connect_deadline).await {
        Ok(backend) => backend,
        Err(refused) => return exchange.answer_refusal(client, refused, session).await,
    };
    // A server-to-client flow: the verdict's worker ticket is the
    // rendezvous preamble naming the flow, written before any client byte.
    if let Some(preamble) = redeemed.worker_ticket()
        && let Err(refused) = write_preamble(&mut backend, preamble.as_bytes()).await
    {
        return exchange.answer_refusal(client, refused, session).await;
    }
    let forwarded = match exchange.inbox.forward(&mut backend).await {
        Ok(forwarded) => forwarded,
        Err(refused) => return exchange.answer_refusal(client, refused, session).await,
    };
    let success = encode_reply(Reply::Succeeded, UNBOUND);
    if let Err(refused) = exchange.send(&mut client, success.as_bytes()).await {
        return refuse(refused, session);
    }
    SocksOutcome::Relay(Launch {
        client,
        backend,
        redeemed,
        forwarded,
    })
}

/// Writes the rendezvous preamble to the connector within [`REPLY_GRACE`].
async fn write_preamble(backend: &mut TcpStream, preamble: &[u8]) -> Result<(), Refused> {
    let writing = backend.write_all(preamble.to_vec());
    let result = match monoio::time::timeout(REPLY_GRACE, writing).await {
        Ok((result, _)) => result.map(|_| ()),
        Err(_elapsed) => Err(io::Error::from(io::ErrorKind::TimedOut)),
    };
    result.map_err(|source| Refused::Connect {
        refusal: Refusal::BackendRefused,
        source,
    })
}

fn refuse<S>(refused: Refused, session: Option<SessionId>) -> SocksOutcome<S> {
    SocksOutcome::Refuse { refused, session }
}

/// Connects to the worker before `deadline`.
async fn connect(worker: SocketAddr, deadline: Instant) -> Result<TcpStream, Refused> {
    match monoio::time::timeout_at(deadline, TcpStream::connect_addr(worker)).await {
        Ok(Ok(stream)) => {
            // Best effort: a relay without NODELAY still works, only slower.
            let _ = stream.set_nodelay(true);
            Ok(stream)
        }
        Ok(Err(source)) => {
            let refusal = match source.kind() {
                io::ErrorKind::ConnectionRefused => Refusal::BackendRefused,
                io::ErrorKind::TimedOut => Refusal::BackendTimeout,
                _ => Refusal::BackendUnreachable,
            };
            Err(Refused::Connect { refusal, source })
        }
        Err(_elapsed) => Err(Refused::Request(Refusal::BackendTimeout)),
    }
}

/// The buffers of one exchange: bytes from the client, bytes to it.
struct Exchange {
    inbox: Inbox,
    /// Reused for every reply (replies are at most 22 bytes).
    outbox: Vec<u8>,
}

impl Exchange {
    fn new() -> Exchange {
        Exchange {
            inbox: Inbox::new(),
            outbox: Vec::with_capacity(32),
        }
    }

    /// Method negotiation, optional RFC 1929 exchange, then reads a whole
    /// request; returns its length (it stays at the front of the inbox).
    async fn negotiate<S>(&mut self, client: &mut S) -> Result<usize, Refused>
    where
        S: AsyncReadRent + AsyncWriteRent,
    {
        let greeting = match self.inbox.await_message(client, decode_greeting).await? {
            Ok((greeting, consumed)) => {
                self.inbox.consume(consumed);
                greeting
            }
            Err(error @ Socks5Error::NoMethods) => {
                let refusal = encode_method_selection(Method::NoAcceptable);
                self.send(client, &refusal).await?;
                return Err(Refused::Malformed(error));
            }
            Err(error) => return Err(Refused::Malformed(error)),
        };
        let method = greeting.select();
        self.send(client, &encode_method_selection(method)).await?;
        match method {
            Method::NoAuth => {}
            Method::NoAcceptable => return Err(Refused::NoAcceptableMethod),
            Method::UserPass => {
                // The ticket in the request is the credential: any
                // user/password pair passes.
                let decoded = self
                    .inbox
                    .await_message(client, |input| {
                        decode_userpass(input).map(|p| p.map(|_| ()))
                    })
                    .await?;
                match decoded {
                    Ok(((), consumed)) => self.inbox.consume(consumed),
                    Err(error) => {
                        self.send(client, &encode_userpass_status(false)).await?;
                        return Err(Refused::Malformed(error));
                    }
                }
                self.send(client, &encode_userpass_status(true)).await?;
            }
        }
        let decoded = self
            .inbox
            .await_message(client, |input| decode_request(input).map(|p| p.map(|_| ())))
            .await?;
        match decoded {
            Ok(((), consumed)) => Ok(consumed),
            Err(error) => {
                if let Some(reply) = error.reply() {
                    self.send(client, encode_reply(reply, UNBOUND).as_bytes())
                        .await?;
                }
                Err(Refused::Malformed(error))
            }
        }
    }

    /// Checks the request at the front of the inbox and redeems its ticket.
    async fn redeem<R: TicketRedeemer>(
        &self,
        request_len: usize,
        peer: ClientAddr,
        redeemer: &R,
        deadline: Instant,
    ) -> Result<Redeemed, Refused> {
        let pending = self.inbox.pending();
        // `negotiate` saw this exact prefix decode, so this is `Done`.
        let Some((request, consumed)) = decode_request(pending).ok().and_then(Progress::done)
        else {
            return Err(Refused::Request(Refusal::Internal));
        };
        if consumed != request_len {
            return Err(Refused::Request(Refusal::Internal));
        }
        if request.command != Command::Connect {
            return Err(Refused::Request(Refusal::UnsupportedCommand));
        }
        let ticket = match request.address {
            Address::Domain(ticket) => ticket,
            Address::Ipv4(_) | Address::Ipv6(_) => return Err(Refused::AddressNotAllowed),
        };
        match monoio::time::timeout_at(deadline, redeemer.redeem(ticket, peer)).await {
            Ok(Ok(redeemed)) => Ok(redeemed),
            Ok(Err(error)) => Err(Refused::Redeem(error)),
            Err(_elapsed) => Err(Refused::RedeemTimeout),
        }
    }

    /// Sends the refusal's reply (if it has one) within [`REPLY_GRACE`],
    /// then half-closes; errors on the way are moot, the client is going.
    async fn answer_refusal<S: AsyncWriteRent>(
        &mut self,
        mut client: S,
        refused: Refused,
        session: Option<SessionId>,
    ) -> SocksOutcome<S> {
        if let Some(reply) = refused.reply() {
            let reply = encode_reply(reply, UNBOUND);
            let _ = self.send(&mut client, reply.as_bytes()).await;
            let _ = monoio::time::timeout(REPLY_GRACE, client.shutdown()).await;
        }
        refuse(refused, session)
    }

    /// Writes `bytes` to the client within [`REPLY_GRACE`].
    async fn send<S: AsyncWriteRent>(
        &mut self,
        client: &mut S,
        bytes: &[u8],
    ) -> Result<(), Refused> {
        let mut buf = std::mem::take(&mut self.outbox);
        buf.clear();
        buf.extend_from_slice(bytes);
        let writing = async {
            let (result, buf) = client.write_all(buf).await;
            (result.and(Ok(())), buf)
        };
        let (result, buf) = match monoio::time::timeout(REPLY_GRACE, writing).await {
            Ok(done) => done,
            Err(_elapsed) => return Err(Refused::Timeout(REPLY_GRACE)),
        };
        self.outbox = buf;
        result.map_err(Refused::ClientIo)?;
        client.flush().await.map_err(Refused::ClientIo)
    }
}

/// Bytes read from the client and not yet consumed by a decoder.
struct Inbox {
    buf: Vec<u8>,
    /// Bytes of `buf` already consumed.
    start: usize,
}

impl Inbox {
    fn new() -> Inbox {
        Inbox {
            buf: Vec::with_capacity(HANDSHAKE_BUFFER),
            start: 0,
        }
    }

    fn pending(&self) -> &[u8] {
        self.buf.get(self.start..).unwrap_or_default()
    }

    fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.buf.len());
    }

    /// Reads until `decode` answers for the pending bytes: `Ok(Ok(value,
    /// consumed))`, or `Ok(Err(error))` for a rejected message (the caller
    /// decides the reply). I/O problems are `Err`.
    async fn await_message<S, T, D>(
        &mut self,
        client: &mut S,
        decode: D,
    ) -> Result<Result<(T, usize), Socks5Error>, Refused>
    where
        S: AsyncReadRent,
        D: Fn(&[u8]) -> Result<Progress<T>, Socks5Error>,
    {
        loop {
            match decode(self.pending()) {
                Ok(Progress::Done { value, consumed }) => return Ok(Ok((value, consumed))),
                Ok(Progress::NeedMore { at_least }) => self.fill(client, at_least).await?,
                Err(error) => return Ok(Err(error)),
            }
        }
    }

    /// Reads until at least `at_least` bytes are pending.
    async fn fill<S: AsyncReadRent>(
        &mut self,
        client: &mut S,
        at_least: usize,
    ) -> Result<(), Refused> {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        while self.buf.len() < at_least {
            if at_least > self.buf.capacity() {
                return Err(Refused::TooLong);
            }
            let filled = self.buf.len();
            let buf = std::mem::take(&mut self.buf);
            let (result, slice) = client.read(buf.slice_mut(filled..)).await;
            self.buf = slice.into_inner();
            match result {
                Ok(0) => return Err(Refused::ClosedEarly),
                Ok(_) => {}
                Err(error) => return Err(Refused::ClientIo(error)),
            }
        }
        Ok(())
    }

    /// Writes the pending bytes (pipelined behind the request) to the
    /// worker within [`REPLY_GRACE`]; returns how many.
    async fn forward(&mut self, backend: &mut TcpStream) -> Result<usize, Refused> {
        let pending = self.pending().len();
        if pending == 0 {
            return Ok(0);
        }
        let buf = std::mem::take(&mut self.buf);
        let start = self.start;
        let writing = backend.write_all(monoio::buf::IoBuf::slice(buf, start..));
        let result = match monoio::time::timeout(REPLY_GRACE, writing).await {
            Ok((result, slice)) => {
                self.buf = slice.into_inner();
                self.start = self.buf.len();
                result
            }
            Err(_elapsed) => Err(io::Error::from(io::ErrorKind::TimedOut)),
        };
        result.map(|_| pending).map_err(|source| Refused::Connect {
            refusal: Refusal::BackendRefused,
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_channel::DenyReason;

    fn io_error() -> io::Error {
        io::Error::from(io::ErrorKind::ConnectionRefused)
    }

    #[test]
    fn maps_each_refusal_to_its_reply_and_fault() {
        let cases = [
            (
                Refused::Redeem(RedeemError::Denied(DenyReason::UnknownTicket)),
                Some(0x02),
                Fault::Client,
            ),
            (
                Refused::Connect {
                    refusal: Refusal::BackendRefused,
                    source: io_error(),
                },
                Some(0x05),
                Fault::Worker,
            ),
            (
                Refused::Connect {
                    refusal: Refusal::BackendUnreachable,
                    source: io_error(),
                },
                Some(0x04),
                Fault::Worker,
            ),
            (
                Refused::Request(Refusal::BackendTimeout),
                Some(0x04),
                Fault::Worker,
            ),
            (
                Refused::Request(Refusal::UnsupportedCommand),
                Some(0x07),
                Fault::Client,
            ),
            (
                Refused::Malformed(Socks5Error::UnsupportedAddressType(0x09)),
                Some(0x08),
                Fault::Client,
            ),
            (Refused::AddressNotAllowed, Some(0x02), Fault::Client),
            (Refused::RedeemTimeout, Some(0x01), Fault::ControlPlane),
            (
                Refused::Redeem(RedeemError::ChannelFull),
                Some(0x01),
                Fault::Internal,
            ),
            (
                Refused::Redeem(RedeemError::ControlPlaneTimeout(Duration::ZERO)),
                Some(0x01),
                Fault::ControlPlane,
            ),
            (Refused::Timeout(Duration::ZERO), None, Fault::Client),
            (Refused::ClosedEarly, None, Fault::Client),
            (Refused::NoAcceptableMethod, None, Fault::Client),
        ];
        for (refused, code, fault) in cases {
            assert_eq!(refused.reply().map(Reply::code), code, "{refused:?}");
            assert_eq!(refused.fault(), fault, "{refused:?}");
        }
    }

    #[test]
    fn reasons_are_snake_case() {
        let all = [
            Refused::Timeout(Duration::ZERO),
            Refused::ClosedEarly,
            Refused::ClientIo(io_error()),
            Refused::TooLong,
            Refused::Malformed(Socks5Error::NonZeroReserved(1)),
            Refused::NoAcceptableMethod,
            Refused::AddressNotAllowed,
            Refused::RedeemTimeout,
            Refused::Redeem(RedeemError::Denied(DenyReason::Reused)),
            Refused::Request(Refusal::UnsupportedCommand),
        ];
        for refused in all {
            let reason = refused.reason();
            assert!(
                reason.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{reason}"
            );
        }
    }
}
