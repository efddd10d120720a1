//! Byte layout of the header and of each payload; safe code only.
//!
//! Payloads (little-endian; `addr` = family `04` + 4 octets + port, or
//! family `06` + 16 octets + port + flowinfo u32 + scope id u32;
//! `ticket` = length u8 + bytes; an optional ticket (`reconnect`, `worker
//! ticket`) = `00`, or `01` + ticket):
//!
//! ```text
//! RedeemTicket   redeem kind u8, ticket, client addr
//! Verdict        01 worker addr, session u64, reconnect, worker ticket   (allow)
//!                02 reason u8                                            (deny)
//! SessionOpened  session u64, client addr, worker addr, worker ticket
//! SessionClosed  session u64, bytes up u64, bytes down u64, duration ms u64
//! KillSession    session u64
//! StatsRequest   (empty)
//! StatsReport    count u8, count x (counter id u16, value u64)
//! Heartbeat      generation u32
//! FlowRequest    local addr, server addr, rendezvous addr
//! FlowVerdict    01 flow u64                                             (allow)
//!                02 reason u8                                            (deny)
//! Listen         addr
//! Unlisten       addr
//! CloseFlows     ip (family 04 + 4 octets, or 06 + 16 octets)
//! FlowClosed     flow u64, bytes to client u64, bytes to server u64, duration ms u64
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use gatehouse_wire::Progress;

use super::{
    DenyReason, Envelope, FlowClosed, FlowDenyReason, FlowRequest, FlowVerdict, HEADER_BYTES,
    Heartbeat, KillSession, Kind, MAX_PAYLOAD_BYTES, Message, MessageError, RedeemKind,
    RedeemTicket, SCHEMA_VERSION, SLOT_BYTES, SessionClosed, SessionOpened, StatsReport,
    TicketBytes, ToControl, ToCore, Verdict,
};
use crate::ids::{ClientAddr, CounterId, FlowId, Generation, RequestId, SessionId, WorkerAddr};

const FAMILY_V4: u8 = 0x04;
const FAMILY_V6: u8 = 0x06;
const VERDICT_ALLOW: u8 = 0x01;
const VERDICT_DENY: u8 = 0x02;
const TICKET_ABSENT: u8 = 0x00;
const TICKET_PRESENT: u8 = 0x01;

/// Writes `envelope` into a slot and returns the bytes used (header +
/// payload). Infallible: every message fits a slot by construction
/// (tickets and reports are bounded by their types).
pub fn encode<M: Message>(envelope: &Envelope<M>, out: &mut [u8; SLOT_BYTES]) -> usize {
    encode_parts(
        envelope.generation,
        envelope.request_id,
        &envelope.message,
        out,
    )
}

/// [`encode`] for a borrowed message.
pub(crate) fn encode_parts<M: Message>(
    generation: Generation,
    request_id: RequestId,
    message: &M,
    out: &mut [u8; SLOT_BYTES],
) -> usize {
    let (header, payload) = out.split_at_mut(HEADER_BYTES);
    let len = message.encode_payload(payload);
    // Payload encoders never exceed MAX_PAYLOAD_BYTES (tested for the
    // largest message of each kind), so the length fits a u16.
    let len_u16 = u16::try_from(len).unwrap_or(u16::MAX);
    header[0..2].copy_from_slice(&SCHEMA_VERSION.to_le_bytes());
    header[2..4].copy_from_slice(&(message.kind() as u16).to_le_bytes());
    header[4..6].copy_from_slice(&len_u16.to_le_bytes());
    header[6..8].copy_from_slice(&[0, 0]);
    header[8..12].copy_from_slice(&generation.0.to_le_bytes());
    header[12..20].copy_from_slice(&request_id.0.to_le_bytes());
    HEADER_BYTES + len
}

/// Reads one message of direction `M` from the start of `input`.
///
/// Answers `NeedMore` while `input` is a valid prefix shorter than the
/// header or the announced payload; `Done` with the bytes used; or a
/// [`MessageError`]. Checks run in header order: version, reserved bytes,
/// kind, payload length; then the payload must be read exactly.
pub fn decode<M: Message>(input: &[u8]) -> Result<Progress<Envelope<M>>, MessageError> {
    let Some(header) = input.get(..HEADER_BYTES) else {
        return Ok(Progress::NeedMore {
            at_least: HEADER_BYTES,
        });
    };
    let mut r = Reader::new(header);
    let version = r.u16("version")?;
    if version != SCHEMA_VERSION {
        return Err(MessageError::UnknownVersion(version));
    }
    let kind_raw = r.u16("kind")?;
    let len = usize::from(r.u16("payload length")?);
    if r.u16("reserved")? != 0 {
        return Err(MessageError::Reserved);
    }
    let generation = Generation(r.u32("generation")?);
    let request_id = RequestId(r.u64("request id")?);
    let kind = Kind::from_u16(kind_raw).ok_or(MessageError::UnknownKind(kind_raw))?;
    if len > MAX_PAYLOAD_BYTES {
        return Err(MessageError::Oversize(len));
    }
    let total = HEADER_BYTES + len;
    let Some(payload) = input.get(HEADER_BYTES..total) else {
        return Ok(Progress::NeedMore { at_least: total });
    };
    let message = M::decode_payload(kind, payload)?;
    Ok(Progress::Done {
        value: Envelope {
            generation,
            request_id,
            message,
        },
        consumed: total,
    })
}

impl Message for ToControl {
    fn kind(&self) -> Kind {
        match self {
            ToControl::RedeemTicket(_) => Kind::RedeemTicket,
            ToControl::SessionOpened(_) => Kind::SessionOpened,
            ToControl::SessionClosed(_) => Kind::SessionClosed,
            ToControl::StatsReport(_) => Kind::StatsReport,
            ToControl::Heartbeat(_) => Kind::Heartbeat,
            ToControl::FlowRequest(_) => Kind::FlowRequest,
            ToControl::FlowClosed(_) => Kind::FlowClosed,
        }
    }

    fn encode_payload(&self, out: &mut [u8]) -> usize {
        let mut w = Writer::new(out);
        match self {
            ToControl::RedeemTicket(m) => {
                w.u8(m.kind as u8);
                w.ticket(&m.ticket);
                w.addr(m.client.0);
            }
            ToControl::SessionOpened(m) => {
                w.u64(m.session.0);
                w.addr(m.client.0);
                w.addr(m.worker.0);
                w.optional_ticket(m.worker_ticket.as_ref());
            }
            ToControl::SessionClosed(m) => {
                w.u64(m.session.0);
                w.u64(m.bytes_up);
                w.u64(m.bytes_down);
                w.u64(m.duration_ms);
            }
            ToControl::StatsReport(m) => {
                let counters = m.counters();
                // At most MAX_COUNTERS (20): fits a u8.
                w.u8(u8::try_from(counters.len()).unwrap_or(u8::MAX));
                for &(id, value) in counters {
                    w.u16(id.0);
                    w.u64(value);
                }
            }
            ToControl::Heartbeat(m) => w.u32(m.generation.0),
            ToControl::FlowRequest(m) => {
                w.addr(m.local);
                w.addr(m.server);
                w.addr(m.rendezvous);
            }
            ToControl::FlowClosed(m) => {
                w.u64(m.flow.0);
                w.u64(m.bytes_to_client);
                w.u64(m.bytes_to_server);
                w.u64(m.duration_ms);
            }
        }
        w.pos
    }

    fn decode_payload(kind: Kind, payload: &[u8]) -> Result<Self, MessageError> {
        let mut r = Reader::new(payload);
        let message = match kind {
            Kind::RedeemTicket => {
                let kind = r.redeem_kind()?;
                let ticket = r.ticket()?;
                let client = ClientAddr(r.addr()?);
                ToControl::RedeemTicket(RedeemTicket {
                    kind,
                    ticket,
                    client,
                })
            }
            Kind::SessionOpened => ToControl::SessionOpened(SessionOpened {
                session: SessionId(r.u64("session")?),
                client: ClientAddr(r.addr()?),
                worker: WorkerAddr(r.addr()?),
                worker_ticket: r.optional_ticket("worker ticket flag")?,
            }),
            Kind::SessionClosed => ToControl::SessionClosed(SessionClosed {
                session: SessionId(r.u64("session")?),
                bytes_up: r.u64("bytes up")?,
                bytes_down: r.u64("bytes down")?,
                duration_ms: r.u64("duration")?,
            }),
            Kind::StatsReport => {
                let count = usize::from(r.u8("counter count")?);
                if count > super::MAX_COUNTERS {
                    return Err(MessageError::TooManyCounters(count));
                }
                let mut report = StatsReport::new();
                for _ in 0..count {
                    let id = CounterId(r.u16("counter id")?);
                    let value = r.u64("counter value")?;
                    report
                        .push(id, value)
                        .map_err(|_| MessageError::TooManyCounters(count))?;
                }
                ToControl::StatsReport(report)
            }
            Kind::Heartbeat => ToControl::Heartbeat(Heartbeat {
                generation: Generation(r.u32("generation")?),
            }),
            Kind::FlowRequest => ToControl::FlowRequest(FlowRequest {
                local: r.addr()?,
                server: r.addr()?,
                rendezvous: r.addr()?,
            }),
            Kind::FlowClosed => ToControl::FlowClosed(FlowClosed {
                flow: FlowId(r.u64("flow")?),
                bytes_to_client: r.u64("bytes to client")?,
                bytes_to_server: r.u64("bytes to server")?,
                duration_ms: r.u64("duration")?,
            }),
            Kind::Verdict
            | Kind::KillSession
            | Kind::StatsRequest
            | Kind::FlowVerdict
            | Kind::Listen
            | Kind::Unlisten
            | Kind::CloseFlows => {
                return Err(MessageError::WrongDirection(kind));
            }
        };
        r.finish()?;
        Ok(message)
    }
}

impl Message for ToCore {
    fn kind(&self) -> Kind {
        match self {
            ToCore::Verdict(_) => Kind::Verdict,
            ToCore::KillSession(_) => Kind::KillSession,
            ToCore::StatsRequest => Kind::StatsRequest,
            ToCore::Heartbeat(_) => Kind::Heartbeat,
            ToCore::FlowVerdict(_) => Kind::FlowVerdict,
            ToCore::Listen(_) => Kind::Listen,
            ToCore::Unlisten(_) => Kind::Unlisten,
            ToCore::CloseFlows(_) => Kind::CloseFlows,
        }
    }

    fn encode_payload(&self, out: &mut [u8]) -> usize {
        let mut w = Writer::new(out);
        match self {
            ToCore::Verdict(Verdict::Allow {
                worker,
                session,
                reconnect_ticket,
                worker_ticket,
            }) => {
                w.u8(VERDICT_ALLOW);
                w.addr(worker.0);
                w.u64(session.0);
                w.optional_ticket(reconnect_ticket.as_ref());
                w.optional_ticket(worker_ticket.as_ref());
            }
            ToCore::Verdict(Verdict::Deny { reason }) => {
                w.u8(VERDICT_DENY);
                w.u8(*reason as u8);
            }
            ToCore::KillSession(m) => w.u64(m.session.0),
            ToCore::StatsRequest => {}
            ToCore::Heartbeat(m) => w.u32(m.generation.0),
            ToCore::FlowVerdict(FlowVerdict::Allow { flow }) => {
                w.u8(VERDICT_ALLOW);
                w.u64(flow.0);
            }
            ToCore::FlowVerdict(FlowVerdict::Deny { reason }) => {
                w.u8(VERDICT_DENY);
                w.u8(*reason as u8);
            }
            ToCore::Listen(addr) | ToCore::Unlisten(addr) => w.addr(*addr),
            ToCore::CloseFlows(ip) => w.ip(*ip),
        }
        w.pos
    }

    fn decode_payload(kind: Kind, payload: &[u8]) -> Result<Self, MessageError> {
        let mut r = Reader::new(payload);
        let message = match kind {
            Kind::Verdict => match r.u8("verdict")? {
                VERDICT_ALLOW => {
                    let worker = WorkerAddr(r.addr()?);
                    let session = SessionId(r.u64("session")?);
                    let reconnect_ticket = r.optional_ticket("reconnect ticket flag")?;
                    let worker_ticket = r.optional_ticket("worker ticket flag")?;
                    ToCore::Verdict(Verdict::Allow {
                        worker,
                        session,
                        reconnect_ticket,
                        worker_ticket,
                    })
                }
                VERDICT_DENY => ToCore::Verdict(Verdict::Deny {
                    reason: r.deny_reason()?,
                }),
                other => return Err(unknown("verdict", other)),
            },
            Kind::KillSession => ToCore::KillSession(KillSession {
                session: SessionId(r.u64("session")?),
            }),
            Kind::StatsRequest => ToCore::StatsRequest,
            Kind::Heartbeat => ToCore::Heartbeat(Heartbeat {
                generation: Generation(r.u32("generation")?),
            }),
            Kind::FlowVerdict => match r.u8("flow verdict")? {
                VERDICT_ALLOW => ToCore::FlowVerdict(FlowVerdict::Allow {
                    flow: FlowId(r.u64("flow")?),
                }),
                VERDICT_DENY => ToCore::FlowVerdict(FlowVerdict::Deny {
                    reason: r.flow_deny_reason()?,
                }),
                other => return Err(unknown("flow verdict", other)),
            },
            Kind::Listen => ToCore::Listen(r.addr()?),
            Kind::Unlisten => ToCore::Unlisten(r.addr()?),
            Kind::CloseFlows => ToCore::CloseFlows(r.ip()?),
            Kind::RedeemTicket
            | Kind::SessionOpened
            | Kind::SessionClosed
            | Kind::StatsReport
            | Kind::FlowRequest
            | Kind::FlowClosed => {
                return Err(MessageError::WrongDirection(kind));
            }
        };
        r.finish()?;
        Ok(message)
    }
}

fn unknown(field: &'static str, value: u8) -> MessageError {
    MessageError::UnknownValue {
        field,
        value: u16::from(value),
    }
}

/// Appends to a payload buffer at least `MAX_PAYLOAD_BYTES` long. The
/// largest message is well under that (tested), so writes stay in bounds.
struct Writer<'a> {
    out: &'a mut [u8],
    pos: usize,
}

impl<'a> Writer<'a> {
    fn new(out: &'a mut [u8]) -> Self {
        Self { out, pos: 0 }
    }

    fn bytes(&mut self, bytes: &[u8]) {
        self.out[self.pos..self.pos + bytes.len()].copy_from_slice(bytes);
        self.pos += bytes.len();
    }

    fn u8(&mut self, v: u8) {
        self.bytes(&[v]);
    }

    fn u16(&mut self, v: u16) {
        self.bytes(&v.to_le_bytes());
    }

    fn u32(&mut self, v: u32) {
        self.bytes(&v.to_le_bytes());
    }

    fn u64(&mut self, v: u64) {
        self.bytes(&v.to_le_bytes());
    }

    fn ticket(&mut self, ticket: &TicketBytes) {
        let text = ticket.as_bytes();
        // TicketBytes holds at most MAX_TICKET_BYTES (96): fits a u8.
        self.u8(u8::try_from(text.len()).unwrap_or(u8::MAX));
        self.bytes(text);
    }

    fn optional_ticket(&mut self, ticket: Option<&TicketBytes>) {
        match ticket {
            Some(ticket) => {
                self.u8(TICKET_PRESENT);
                self.ticket(ticket);
            }
            None => self.u8(TICKET_ABSENT),
        }
    }

    fn ip(&mut self, ip: IpAddr) {
        match ip {
            IpAddr::V4(v4) => {
                self.u8(FAMILY_V4);
                self.bytes(&v4.octets());
            }
            IpAddr::V6(v6) => {
                self.u8(FAMILY_V6);
                self.bytes(&v6.octets());
            }
        }
    }

    fn addr(&mut self, addr: SocketAddr) {
        match addr {
            SocketAddr::V4(a) => {
                self.u8(FAMILY_V4);
                self.bytes(&a.ip().octets());
                self.u16(a.port());
            }
            SocketAddr::V6(a) => {
                self.u8(FAMILY_V6);
                self.bytes(&a.ip().octets());
                self.u16(a.port());
                self.u32(a.flowinfo());
                self.u32(a.scope_id());
            }
        }
    }
}

/// Reads a payload front to back; every read names its field on failure.
struct Reader<'a> {
    input: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(input: &'a [u8]) -> Self {
        Self { input }
    }

    fn take<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], MessageError> {
        let (head, rest) = self
            .input
            .split_first_chunk::<N>()
            .ok_or(MessageError::Truncated(field))?;
        self.input = rest;
        Ok(*head)
    }

    fn slice(&mut self, len: usize, field: &'static str) -> Result<&'a [u8], MessageError> {
        if self.input.len() < len {
            return Err(MessageError::Truncated(field));
        }
        let (head, rest) = self.input.split_at(len);
        self.input = rest;
        Ok(head)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, MessageError> {
        Ok(self.take::<1>(field)?[0])
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, MessageError> {
        self.take(field).map(u16::from_le_bytes)
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, MessageError> {
        self.take(field).map(u32::from_le_bytes)
    }

    fn u64(&mut self, field: &'static str) -> Result<u64, MessageError> {
        self.take(field).map(u64::from_le_bytes)
    }

    fn optional_ticket(&mut self, flag: &'static str) -> Result<Option<TicketBytes>, MessageError> {
        match self.u8(flag)? {
            TICKET_ABSENT => Ok(None),
            TICKET_PRESENT => self.ticket().map(Some),
            other => Err(unknown(flag, other)),
        }
    }

    fn ticket(&mut self) -> Result<TicketBytes, MessageError> {
        let len = usize::from(self.u8("ticket length")?);
        let text = self.slice(len, "ticket")?;
        TicketBytes::new(text)
    }

    fn ip(&mut self) -> Result<IpAddr, MessageError> {
        match self.u8("address family")? {
            FAMILY_V4 => Ok(IpAddr::V4(Ipv4Addr::from(self.take::<4>("ipv4 address")?))),
            FAMILY_V6 => Ok(IpAddr::V6(Ipv6Addr::from(self.take::<16>("ipv6 address")?))),
            other => Err(unknown("address family", other)),
        }
    }

    fn flow_deny_reason(&mut self) -> Result<FlowDenyReason, MessageError> {
        Ok(match self.u8("flow deny reason")? {
            0x01 => FlowDenyReason::NoLease,
            0x02 => FlowDenyReason::ConnectorNotOwner,
            0x03 => FlowDenyReason::ServerNotInApp,
            0x04 => FlowDenyReason::PortNotInApp,
            0x05 => FlowDenyReason::PolicyDeny,
            0x06 => FlowDenyReason::ClientAbsent,
            0x07 => FlowDenyReason::Overloaded,
            0x08 => FlowDenyReason::Internal,
            other => return Err(unknown("flow deny reason", other)),
        })
    }

    fn addr(&mut self) -> Result<SocketAddr, MessageError> {
        match self.u8("address family")? {
            FAMILY_V4 => {
                let ip = Ipv4Addr::from(self.take::<4>("ipv4 address")?);
                let port = self.u16("port")?;
                Ok(SocketAddr::V4(SocketAddrV4::new(ip, port)))
            }
            FAMILY_V6 => {
                let ip = Ipv6Addr::from(self.take::<16>("ipv6 address")?);
                let port = self.u16("port")?;
                let flowinfo = self.u32("flowinfo")?;
                let scope_id = self.u32("scope id")?;
                Ok(SocketAddr::V6(SocketAddrV6::new(
                    ip, port, flowinfo, scope_id,
                )))
            }
            other => Err(unknown("address family", other)),
        }
    }

    fn redeem_kind(&mut self) -> Result<RedeemKind, MessageError> {
        match self.u8("redeem kind")? {
            0x01 => Ok(RedeemKind::Socks),
            0x02 => Ok(RedeemKind::Cgp),
            0x03 => Ok(RedeemKind::CgpReconnect),
            other => Err(unknown("redeem kind", other)),
        }
    }

    fn deny_reason(&mut self) -> Result<DenyReason, MessageError> {
        Ok(match self.u8("deny reason")? {
            0x01 => DenyReason::UnknownTicket,
            0x02 => DenyReason::Expired,
            0x03 => DenyReason::Reused,
            0x04 => DenyReason::UnknownSta,
            0x05 => DenyReason::StaUnreachable,
            0x06 => DenyReason::WorkerUnreachable,
            0x07 => DenyReason::Overloaded,
            0x08 => DenyReason::PolicyDenied,
            0x09 => DenyReason::Malformed,
            0x0A => DenyReason::Internal,
            other => return Err(unknown("deny reason", other)),
        })
    }

    /// Every payload byte must belong to the message.
    fn finish(self) -> Result<(), MessageError> {
        match self.input.len() {
            0 => Ok(()),
            n => Err(MessageError::Trailing(n)),
        }
    }
}

/// Compile-time check that the largest payload fits a slot:
/// RedeemTicket = 1 + (1 + 96) + 27; Allow = 1 + 27 + 8 + 2 x (1 + 1 + 96)
/// = 232; SessionOpened = 8 + 2 x 27 + 1 + (1 + 96); StatsReport = 1 + 20 x 10.
const _: () = {
    const ADDR_MAX: usize = 1 + 16 + 2 + 4 + 4;
    const TICKET_MAX: usize = 1 + super::MAX_TICKET_BYTES;
    assert!(1 + TICKET_MAX + ADDR_MAX <= MAX_PAYLOAD_BYTES);
    assert!(1 + ADDR_MAX + 8 + 2 * (1 + TICKET_MAX) <= MAX_PAYLOAD_BYTES);
    const REPORT_MAX: usize = 1 + super::MAX_COUNTERS * 10;
    assert!(REPORT_MAX <= MAX_PAYLOAD_BYTES);
    assert!(8 + 2 * ADDR_MAX + 1 + TICKET_MAX <= MAX_PAYLOAD_BYTES);
    assert!(3 * ADDR_MAX <= MAX_PAYLOAD_BYTES);
    assert!(4 * 8 <= MAX_PAYLOAD_BYTES);
};
