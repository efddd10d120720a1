//! The versioned messages that travel in ring slots.
//!
//! Two enums, one per direction, so a core cannot send an answer and the
//! control plane cannot send a request: [`ToControl`] (core -> control
//! plane) and [`ToCore`] (control plane -> core). Each message travels in an
//! [`Envelope`] with the sender's generation and a request id.
//!
//! Slot layout (all integers little-endian, `HEADER_BYTES` = 20):
//!
//! ```text
//! offset  size  field
//!      0     2  schema version (SCHEMA_VERSION)
//!      2     2  kind (Kind)
//!      4     2  payload length (<= MAX_PAYLOAD_BYTES)
//!      6     2  reserved, zero
//!      8     4  sender generation
//!     12     8  request id
//!     20     n  payload (per kind, see codec.rs)
//! ```
//!
//! Decoding refuses, with a typed [`MessageError`], an unknown schema
//! version, an unknown kind, a kind that travels the other way, a payload
//! longer than a slot, a field with an unknown value and bytes left over
//! after the payload: a slot is never misread.

mod codec;
#[cfg(test)]
mod tests;

use std::fmt;
use std::net::{IpAddr, SocketAddr};

pub(crate) use codec::encode_parts;
pub use codec::{decode, encode};

use crate::ids::{ClientAddr, CounterId, FlowId, Generation, RequestId, SessionId, WorkerAddr};

/// The schema version this build writes and the only one it reads.
pub const SCHEMA_VERSION: u16 = 0x0003;
/// Bytes in one ring slot.
pub const SLOT_BYTES: usize = 256;
/// Bytes of the fixed header at the start of every slot.
pub const HEADER_BYTES: usize = 20;
/// The largest payload a slot carries.
pub const MAX_PAYLOAD_BYTES: usize = SLOT_BYTES - HEADER_BYTES;
/// The longest ticket text a message carries.
pub const MAX_TICKET_BYTES: usize = 96;
/// The most counters one [`StatsReport`] carries; send several for more.
pub const MAX_COUNTERS: usize = 20;

/// Message kinds, as written in the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum Kind {
    /// [`RedeemTicket`], core -> control plane.
    RedeemTicket = 0x0001,
    /// [`Verdict`], control plane -> core.
    Verdict = 0x0002,
    /// [`SessionOpened`], core -> control plane.
    SessionOpened = 0x0003,
    /// [`SessionClosed`], core -> control plane.
    SessionClosed = 0x0004,
    /// [`KillSession`], control plane -> core.
    KillSession = 0x0005,
    /// [`ToCore::StatsRequest`], control plane -> core.
    StatsRequest = 0x0006,
    /// [`StatsReport`], core -> control plane.
    StatsReport = 0x0007,
    /// [`Heartbeat`], both ways.
    Heartbeat = 0x0008,
    /// [`FlowRequest`], core (connector) -> control plane.
    FlowRequest = 0x0009,
    /// [`FlowVerdict`], control plane -> core.
    FlowVerdict = 0x000A,
    /// [`ToCore::Listen`], control plane -> core.
    Listen = 0x000B,
    /// [`ToCore::Unlisten`], control plane -> core.
    Unlisten = 0x000C,
    /// [`ToCore::CloseFlows`], control plane -> core.
    CloseFlows = 0x000D,
    /// [`FlowClosed`], core -> control plane.
    FlowClosed = 0x000E,
}

impl Kind {
    /// The kind a header value names, if any.
    pub fn from_u16(value: u16) -> Option<Kind> {
        Some(match value {
            0x0001 => Kind::RedeemTicket,
            0x0002 => Kind::Verdict,
            0x0003 => Kind::SessionOpened,
            0x0004 => Kind::SessionClosed,
            0x0005 => Kind::KillSession,
            0x0006 => Kind::StatsRequest,
            0x0007 => Kind::StatsReport,
            0x0008 => Kind::Heartbeat,
            0x0009 => Kind::FlowRequest,
            0x000A => Kind::FlowVerdict,
            0x000B => Kind::Listen,
            0x000C => Kind::Unlisten,
            0x000D => Kind::CloseFlows,
            0x000E => Kind::FlowClosed,
            _ => return None,
        })
    }
}

/// Why a slot was refused by [`decode`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// The header names a schema version this build does not speak.
    #[error("unsupported schema version {0}")]
    UnknownVersion(u16),
    /// The header names no known kind.
    #[error("unknown message kind {0:#06x}")]
    UnknownKind(u16),
    /// The kind is known but travels in the other direction.
    #[error("message kind {0:?} does not travel in this direction")]
    WrongDirection(Kind),
    /// The payload length is larger than a slot can hold.
    #[error("payload length {0} exceeds the slot payload of {MAX_PAYLOAD_BYTES} bytes")]
    Oversize(usize),
    /// The reserved header bytes are not zero.
    #[error("reserved header bytes are not zero")]
    Reserved,
    /// The payload ended inside a field.
    #[error("payload ends inside {0}")]
    Truncated(&'static str),
    /// The payload is longer than its message.
    #[error("{0} bytes left over after the message")]
    Trailing(usize),
    /// A field holds a value with no meaning.
    #[error("unknown {field} value {value:#x}")]
    UnknownValue {
        /// The field's name.
        field: &'static str,
        /// The value found.
        value: u16,
    },
    /// A ticket longer than [`MAX_TICKET_BYTES`].
    #[error("ticket of {0} bytes exceeds {MAX_TICKET_BYTES}")]
    TicketTooLong(usize),
    /// A stats report with more than [`MAX_COUNTERS`] counters.
    #[error("{0} counters exceed the report limit of {MAX_COUNTERS}")]
    TooManyCounters(usize),
}

/// A message with its header fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope<M> {
    /// The sender's generation; the channel fills it in on send.
    pub generation: Generation,
    /// Correlates answers with requests; [`RequestId`]`(0)` when unused.
    pub request_id: RequestId,
    /// The message.
    pub message: M,
}

/// The messages of one direction. Implemented by [`ToControl`] and
/// [`ToCore`]; the channel's ports are generic over it.
pub trait Message: Sized {
    /// The kind written in the header.
    fn kind(&self) -> Kind;
    /// Writes the payload into `out` (at least [`MAX_PAYLOAD_BYTES`] long)
    /// and returns its length; never more than [`MAX_PAYLOAD_BYTES`].
    fn encode_payload(&self, out: &mut [u8]) -> usize;
    /// Reads the whole payload of a message of `kind`.
    fn decode_payload(kind: Kind, payload: &[u8]) -> Result<Self, MessageError>;
}

/// Ticket text (an STA ticket such as `;40;STA01;ABC...`), at most
/// [`MAX_TICKET_BYTES`], stored inline so a message never allocates.
///
/// `Debug` shows the length only: tickets are credentials.
#[derive(Clone, Copy)]
pub struct TicketBytes {
    len: u8,
    bytes: [u8; MAX_TICKET_BYTES],
}

impl TicketBytes {
    /// Copies `text`; refuses more than [`MAX_TICKET_BYTES`].
    pub fn new(text: &[u8]) -> Result<Self, MessageError> {
        let len = u8::try_from(text.len())
            .ok()
            .filter(|&len| usize::from(len) <= MAX_TICKET_BYTES)
            .ok_or(MessageError::TicketTooLong(text.len()))?;
        let mut bytes = [0; MAX_TICKET_BYTES];
        bytes[..text.len()].copy_from_slice(text);
        Ok(Self { len, bytes })
    }

    /// The ticket text.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl PartialEq for TicketBytes {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for TicketBytes {}

impl fmt::Debug for TicketBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TicketBytes({} bytes)", self.len)
    }
}

/// How the client presented the ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum RedeemKind {
    /// SOCKSv5 CONNECT whose domain is the STA ticket.
    Socks = 0x01,
    /// CGP BIND_REQUEST with a security ticket (first connect).
    Cgp = 0x02,
    /// CGP BIND_REQUEST with a reconnect ticket (session reliability).
    CgpReconnect = 0x03,
}

/// Core -> control plane: redeem this ticket for a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedeemTicket {
    /// How the ticket arrived.
    pub kind: RedeemKind,
    /// The ticket text as the client sent it.
    pub ticket: TicketBytes,
    /// Who presented it.
    pub client: ClientAddr,
}

/// Control plane -> core: the answer to a [`RedeemTicket`].
// Tickets are stored inline so that a message never allocates; a deny is
// rare next to an allow, so the size difference costs nothing.
#[expect(
    clippy::large_enum_variant,
    reason = "inline tickets: messages never allocate"
)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Connect the client to `worker` as `session`.
    Allow {
        /// The worker's ICA or CGP address.
        worker: WorkerAddr,
        /// The session id the core reports opened/closed under.
        session: SessionId,
        /// CGP: the gateway's reconnect ticket for the session (an STA
        /// reconnect ticket), which the core hands the client in the
        /// worker's BIND_RESPONSE in place of the worker's own.
        reconnect_ticket: Option<TicketBytes>,
        /// CGP resume: the worker's own reconnect ticket for the session,
        /// which the core puts in the BIND_REQUEST it forwards in place of
        /// the client's.
        worker_ticket: Option<TicketBytes>,
    },
    /// Refuse the client.
    Deny {
        /// Why, for the protocol reply code and the log.
        reason: DenyReason,
    },
}

/// Why a redemption was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum DenyReason {
    /// The STA does not know the ticket.
    UnknownTicket = 0x01,
    /// The ticket outlived its lifetime.
    Expired = 0x02,
    /// A single-use ticket was already redeemed.
    Reused = 0x03,
    /// The ticket names an STA_ID the gateway has no route for.
    UnknownSta = 0x04,
    /// The STA named by the ticket did not answer.
    StaUnreachable = 0x05,
    /// The worker cannot be reached.
    WorkerUnreachable = 0x06,
    /// The control plane sheds load.
    Overloaded = 0x07,
    /// An access policy refuses the client.
    PolicyDenied = 0x08,
    /// The ticket text is not a ticket.
    Malformed = 0x09,
    /// A control-plane fault.
    Internal = 0x0A,
}

/// Core -> control plane: a verdict's session is spliced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionOpened {
    /// From the verdict.
    pub session: SessionId,
    /// The client.
    pub client: ClientAddr,
    /// The worker connected.
    pub worker: WorkerAddr,
    /// CGP: the reconnect ticket the worker's BIND_RESPONSE carried (the
    /// client got the verdict's instead); `None` for SOCKS.
    pub worker_ticket: Option<TicketBytes>,
}

/// Core -> control plane: a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionClosed {
    /// From the verdict.
    pub session: SessionId,
    /// Bytes client -> worker.
    pub bytes_up: u64,
    /// Bytes worker -> client.
    pub bytes_down: u64,
    /// From splice start to close.
    pub duration_ms: u64,
}

/// Control plane -> core: end this session now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KillSession {
    /// The session to end.
    pub session: SessionId,
}

/// Core -> control plane: per-core counters (answer to
/// [`ToCore::StatsRequest`], same request id).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct StatsReport {
    len: u8,
    counters: [(CounterId, u64); MAX_COUNTERS],
}

impl StatsReport {
    /// An empty report.
    pub fn new() -> Self {
        Self {
            len: 0,
            counters: [(CounterId(0), 0); MAX_COUNTERS],
        }
    }

    /// A report of `counters`; refuses more than [`MAX_COUNTERS`].
    pub fn from_counters(counters: &[(CounterId, u64)]) -> Result<Self, MessageError> {
        let mut report = Self::new();
        for &(id, value) in counters {
            report
                .push(id, value)
                .map_err(|_| MessageError::TooManyCounters(counters.len()))?;
        }
        Ok(report)
    }

    /// Appends one counter; `Err` with the pair back when the report is full.
    pub fn push(&mut self, id: CounterId, value: u64) -> Result<(), (CounterId, u64)> {
        let index = usize::from(self.len);
        match self.counters.get_mut(index) {
            Some(slot) => {
                *slot = (id, value);
                self.len += 1;
                Ok(())
            }
            None => Err((id, value)),
        }
    }

    /// The counters in the order pushed.
    pub fn counters(&self) -> &[(CounterId, u64)] {
        &self.counters[..usize::from(self.len)]
    }
}

impl Default for StatsReport {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for StatsReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StatsReport")
            .field("counters", &self.counters())
            .finish()
    }
}

/// Both ways: "I am alive, this is my generation". Optional: liveness is
/// also written into the segment (see `liveness`); a heartbeat message
/// proves the peer's receive loop runs, not only its process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat {
    /// The sender's generation.
    pub generation: Generation,
}

/// Core (connector role) -> control plane: a back-end server connected to
/// a listener; may it reach the client?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowRequest {
    /// The listener's address the server connected to (IIP:port).
    pub local: SocketAddr,
    /// The back-end server's address.
    pub server: SocketAddr,
    /// The core's rendezvous listener, where the gateway will bring the
    /// client's data connection for this flow.
    pub rendezvous: SocketAddr,
}

/// Control plane -> core: the answer to a [`FlowRequest`] (same request
/// id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowVerdict {
    /// Park the server's connection as `flow` until the client's data
    /// connection names it at the rendezvous listener.
    Allow {
        /// The flow's id (the rendezvous preamble names it).
        flow: FlowId,
    },
    /// Reset the server's connection.
    Deny {
        /// Why, for the log.
        reason: FlowDenyReason,
    },
}

/// Why a flow was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FlowDenyReason {
    /// No active lease holds the IIP.
    NoLease = 0x01,
    /// The IIP's pool is not owned by this connector.
    ConnectorNotOwner = 0x02,
    /// No server-to-client app holds the server's address.
    ServerNotInApp = 0x03,
    /// The apps holding the server do not hold the port.
    PortNotInApp = 0x04,
    /// The access policy denies.
    PolicyDeny = 0x05,
    /// The user's access client is not connected to take the flow.
    ClientAbsent = 0x06,
    /// The control plane sheds load.
    Overloaded = 0x07,
    /// A control-plane fault.
    Internal = 0x08,
}

impl FlowDenyReason {
    /// The stable snake_case word for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoLease => "no_lease",
            Self::ConnectorNotOwner => "connector_not_owner",
            Self::ServerNotInApp => "server_not_in_app",
            Self::PortNotInApp => "port_not_in_app",
            Self::PolicyDeny => "policy_deny",
            Self::ClientAbsent => "client_absent",
            Self::Overloaded => "overloaded",
            Self::Internal => "internal",
        }
    }
}

/// Core -> control plane: a relayed flow ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowClosed {
    /// From the verdict.
    pub flow: FlowId,
    /// Bytes server -> client.
    pub bytes_to_client: u64,
    /// Bytes client -> server.
    pub bytes_to_server: u64,
    /// From pairing to close.
    pub duration_ms: u64,
}

/// Everything a core sends to the control plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToControl {
    /// Ask for a verdict.
    RedeemTicket(RedeemTicket),
    /// A session started splicing.
    SessionOpened(SessionOpened),
    /// A session ended.
    SessionClosed(SessionClosed),
    /// Counters, answering a stats request.
    StatsReport(StatsReport),
    /// Liveness.
    Heartbeat(Heartbeat),
    /// Connector: ask for a flow verdict.
    FlowRequest(FlowRequest),
    /// Connector: a flow ended.
    FlowClosed(FlowClosed),
}

/// Everything the control plane sends to a core.
#[expect(
    clippy::large_enum_variant,
    reason = "inline tickets: messages never allocate"
)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToCore {
    /// The answer to a redemption (same request id).
    Verdict(Verdict),
    /// End a session.
    KillSession(KillSession),
    /// Ask for a [`StatsReport`].
    StatsRequest,
    /// Liveness.
    Heartbeat(Heartbeat),
    /// Connector: the answer to a flow request (same request id).
    FlowVerdict(FlowVerdict),
    /// Connector: accept back-end connections on this address (IIP:port).
    Listen(SocketAddr),
    /// Connector: stop accepting on this address.
    Unlisten(SocketAddr),
    /// Connector: close every flow to this IIP (parked or relaying).
    CloseFlows(IpAddr),
}
