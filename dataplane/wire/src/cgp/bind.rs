//! BIND_REQUEST and BIND_RESPONSE: capability lists, including the security
//! ticket and the session reliability (reconnect) capability.

use super::channel::ChannelOpenRequest;
use super::packet::{Extensions, decode_packet_of, encode_packet_with};
use super::reader::Reader;
use super::varlen::{encode_bytes, encode_prefixed, encode_varlen};
use super::{CgpError, Command, MessageNumber, ServiceId};
use crate::Progress;

/// The service a gateway launch binds: TCP proxying to the ICA stack.
pub const TCP_PROXY_SERVICE: &[u8] = b"Citrix.TcpProxyService";

/// The session reliability version Gatehouse speaks (min = max = 1).
pub const SESSION_RELIABILITY_VERSION: u8 = 1;

/// The reconnect ticket version the session reliability capability carries.
pub const RECONNECT_TICKET_VERSION: u8 = 2;

/// Reconnect flag: a reconnect ticket follows.
const RECONNECT_TICKET_PRESENT: u8 = 0x01;

/// A capability id within its service; the constants are the core ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CapabilityId(pub u16);

impl CapabilityId {
    /// 1: services the client binds to (names and ids).
    pub const SERVICES_BINDING: CapabilityId = CapabilityId(1);
    /// 2: the address the client connected to.
    pub const ENDPOINT_ADDRESS: CapabilityId = CapabilityId(2);
    /// 3: channel monitoring.
    pub const CHANNEL_MONITORING: CapabilityId = CapabilityId(3);
    /// 4: compression.
    pub const COMPRESSION: CapabilityId = CapabilityId(4);
    /// 5: session reliability (message numbers, reconnect ticket).
    pub const SESSION_RELIABILITY: CapabilityId = CapabilityId(5);
    /// 6: security ticket (the STA ticket of a first connect).
    pub const SECURITY_TICKET: CapabilityId = CapabilityId(6);
    /// 7: keep-alives.
    pub const KEEP_ALIVES: CapabilityId = CapabilityId(7);
    /// 9: reliability parameters.
    pub const RELIABILITY_PARAMS: CapabilityId = CapabilityId(9);

    /// Whether this is a core id with its own [`Capability`] variant.
    pub fn is_known_core(self) -> bool {
        matches!(self.0, 1..=7 | 9)
    }
}

/// One capability block of a BIND_REQUEST or BIND_RESPONSE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Capability<'a> {
    /// Core 1: the services the client binds, with the ids channel opens use.
    ServicesBinding(Vec<ServiceBinding<'a>>),
    /// Core 2: the address text the client connected to.
    EndpointAddress(&'a [u8]),
    /// Core 3: channel monitoring.
    ChannelMonitoring(ChannelMonitoring),
    /// Core 4: compression.
    Compression(Compression),
    /// Core 5: session reliability.
    SessionReliability(SessionReliability<'a>),
    /// Core 6: the security ticket.
    SecurityTicket(SecurityTicket<'a>),
    /// Core 7: keep-alives.
    KeepAlives(KeepAlives),
    /// Core 9: reliability parameters.
    ReliabilityParams(ReliabilityParams),
    /// Any other capability, kept verbatim. `service` 0 with an id that
    /// [`CapabilityId::is_known_core`] is refused by the encoder.
    Unknown {
        /// The service the capability belongs to.
        service: ServiceId,
        /// The capability id within that service.
        id: CapabilityId,
        /// The body after the 6-byte header.
        body: &'a [u8],
    },
}

/// One entry of the services-binding capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceBinding<'a> {
    /// The service name, e.g. [`TCP_PROXY_SERVICE`].
    pub name: &'a [u8],
    /// The id channel opens use for this service.
    pub service: ServiceId,
}

/// Channel monitoring parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelMonitoring {
    /// Seconds between channel probes; 0 turns monitoring off.
    pub interval_seconds: u16,
}

/// Compression offer or choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compression {
    /// Bitmask of algorithms; 0 means none.
    pub algorithms: u8,
}

/// Keep-alive parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeepAlives {
    /// Seconds of silence before a keep-alive (NOP); 0 turns them off.
    pub interval_seconds: u16,
}

/// Reliability parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReliabilityParams {
    /// Seconds a broken session is kept for a reconnect.
    pub timeout_seconds: u16,
    /// Tracked messages that may be in flight without an acknowledgement.
    pub window: u16,
}

/// The kind of a security ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TicketKind(pub u8);

impl TicketKind {
    /// An STA ticket, text `;VER;STA_ID;TICKET`.
    pub const STA: TicketKind = TicketKind(0);
}

/// The security ticket capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecurityTicket<'a> {
    /// What kind of ticket `ticket` is.
    pub kind: TicketKind,
    /// The ticket text as sent (parsed by [`crate::ticket`]).
    pub ticket: &'a [u8],
}

/// The session reliability capability.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionReliability<'a> {
    /// The lowest session reliability version the sender speaks.
    pub min_version: u8,
    /// The highest session reliability version the sender speaks.
    pub max_version: u8,
    /// Bitmask of acknowledgement algorithms ([`SessionReliability::ACK_DELTA`]).
    pub ack_algorithms: u8,
    /// The next message number the sender expects from its peer (last
    /// received + 1); in a BIND_RESPONSE [`MessageNumber::REFUSED`] refuses
    /// the resume.
    pub next_message_number: MessageNumber,
    /// The reconnect ticket: the client's to resume, the server's new one
    /// in a response.
    pub reconnect_ticket: Option<ReconnectTicket<'a>>,
    /// Channel opens re-presented on a resume.
    pub channels: Vec<ChannelOpenRequest<'a>>,
}

impl SessionReliability<'_> {
    /// Ack algorithm bit: cumulative acks as varlen deltas.
    pub const ACK_DELTA: u8 = 0x01;
}

/// A reconnect ticket with its version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReconnectTicket<'a> {
    /// The ticket version ([`RECONNECT_TICKET_VERSION`]).
    pub version: u8,
    /// The ticket bytes.
    pub ticket: &'a [u8],
}

/// What a resume needs from a BIND: the reconnect ticket and the message
/// number the sender expects next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReconnectInfo<'a> {
    /// The reconnect ticket bytes.
    pub ticket: &'a [u8],
    /// The reconnect ticket version.
    pub ticket_version: u8,
    /// The next message number the sender expects.
    pub next_message_number: MessageNumber,
}

/// The client's BIND_REQUEST: its capabilities, in the order sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BindRequest<'a> {
    /// The capability blocks.
    pub capabilities: Vec<Capability<'a>>,
}

/// The server's BIND_RESPONSE: its capabilities, in the order sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BindResponse<'a> {
    /// The capability blocks.
    pub capabilities: Vec<Capability<'a>>,
}

impl<'a> BindRequest<'a> {
    /// Reads one BIND_REQUEST packet from the start of `input`.
    ///
    /// # Errors
    /// [`CgpError::UnexpectedCommand`] for any other known command, the
    /// errors of [`super::decode_packet`] and of [`BindRequest::decode_body`].
    pub fn decode(input: &'a [u8]) -> Result<Progress<Self>, CgpError> {
        decode_bind(input, Command::BindRequest, |capabilities| BindRequest {
            capabilities,
        })
    }

    /// Reads the body of a BIND_REQUEST packet (after its flags byte).
    ///
    /// # Errors
    /// [`CgpError::NonZeroReserved`], [`CgpError::Truncated`],
    /// [`CgpError::TrailingBytes`], [`CgpError::CapabilityLengthMismatch`],
    /// [`CgpError::DuplicateCapability`], [`CgpError::UnknownReconnectFlags`],
    /// [`CgpError::NonCanonicalVarlen`].
    pub fn decode_body(body: &'a [u8]) -> Result<Self, CgpError> {
        decode_capabilities(body).map(|capabilities| BindRequest { capabilities })
    }

    /// Appends this BIND_REQUEST as a packet to `out`.
    ///
    /// # Errors
    /// [`CgpError::DuplicateCapability`], [`CgpError::MisfiledCapability`],
    /// [`CgpError::VarlenOverflow`] for a field longer than a varlen says,
    /// [`CgpError::PacketTooLong`]. `out` is then unchanged.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), CgpError> {
        encode_bind(Command::BindRequest, &self.capabilities, out)
    }

    /// The STA ticket of the security ticket capability, if there is one of
    /// kind [`TicketKind::STA`].
    pub fn security_ticket(&self) -> Option<&'a [u8]> {
        self.capabilities
            .iter()
            .find_map(|capability| match capability {
                Capability::SecurityTicket(SecurityTicket { kind, ticket })
                    if *kind == TicketKind::STA =>
                {
                    Some(*ticket)
                }
                _ => None,
            })
    }

    /// The session reliability capability, if present.
    pub fn session_reliability(&self) -> Option<&SessionReliability<'a>> {
        session_reliability(&self.capabilities)
    }

    /// The resume request: the reconnect ticket and the client's next
    /// expected message number, if the client sent a reconnect ticket.
    pub fn reconnect(&self) -> Option<ReconnectInfo<'a>> {
        reconnect(&self.capabilities)
    }

    /// Replaces the reconnect ticket of the session reliability capability
    /// with `ticket`, keeping its version and everything else; `false`
    /// (and nothing changed) when the BIND carries no reconnect ticket.
    /// A gateway uses it to swap the ticket it handed the client for the
    /// worker's own.
    pub fn replace_reconnect_ticket(&mut self, ticket: &'a [u8]) -> bool {
        replace_reconnect_ticket(&mut self.capabilities, ticket)
    }
}

impl BindResponse<'static> {
    /// The BIND_RESPONSE that refuses a bind: one session reliability
    /// capability with next message number [`MessageNumber::REFUSED`] and no
    /// reconnect ticket.
    pub fn refused() -> Self {
        BindResponse {
            capabilities: vec![Capability::SessionReliability(SessionReliability {
                min_version: SESSION_RELIABILITY_VERSION,
                max_version: SESSION_RELIABILITY_VERSION,
                ack_algorithms: SessionReliability::ACK_DELTA,
                next_message_number: MessageNumber::REFUSED,
                reconnect_ticket: None,
                channels: Vec::new(),
            })],
        }
    }
}

impl<'a> BindResponse<'a> {
    /// Reads one BIND_RESPONSE packet from the start of `input`.
    ///
    /// # Errors
    /// As [`BindRequest::decode`], with BIND_RESPONSE expected.
    pub fn decode(input: &'a [u8]) -> Result<Progress<Self>, CgpError> {
        decode_bind(input, Command::BindResponse, |capabilities| BindResponse {
            capabilities,
        })
    }

    /// Reads the body of a BIND_RESPONSE packet (after its flags byte).
    ///
    /// # Errors
    /// As [`BindRequest::decode_body`].
    pub fn decode_body(body: &'a [u8]) -> Result<Self, CgpError> {
        decode_capabilities(body).map(|capabilities| BindResponse { capabilities })
    }

    /// Appends this BIND_RESPONSE as a packet to `out`.
    ///
    /// # Errors
    /// As [`BindRequest::encode`]; `out` is then unchanged.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), CgpError> {
        encode_bind(Command::BindResponse, &self.capabilities, out)
    }

    /// The session reliability capability, if present.
    pub fn session_reliability(&self) -> Option<&SessionReliability<'a>> {
        session_reliability(&self.capabilities)
    }

    /// The server's next expected message number
    /// ([`MessageNumber::REFUSED`] refuses a resume), if it answered with a
    /// session reliability capability.
    pub fn next_message_number(&self) -> Option<MessageNumber> {
        self.session_reliability()
            .map(|reliability| reliability.next_message_number)
    }

    /// The reconnect ticket the server hands the client, with the server's
    /// next expected message number.
    pub fn reconnect(&self) -> Option<ReconnectInfo<'a>> {
        reconnect(&self.capabilities)
    }

    /// As [`BindRequest::replace_reconnect_ticket`]: a gateway hands the
    /// client its own ticket in place of the worker's.
    pub fn replace_reconnect_ticket(&mut self, ticket: &'a [u8]) -> bool {
        replace_reconnect_ticket(&mut self.capabilities, ticket)
    }
}

fn replace_reconnect_ticket<'a>(capabilities: &mut [Capability<'a>], ticket: &'a [u8]) -> bool {
    capabilities
        .iter_mut()
        .find_map(|capability| match capability {
            Capability::SessionReliability(SessionReliability {
                reconnect_ticket: Some(present),
                ..
            }) => {
                present.ticket = ticket;
                Some(())
            }
            _ => None,
        })
        .is_some()
}

impl Capability<'_> {
    /// The service and capability id this block is sent under.
    pub fn key(&self) -> (ServiceId, CapabilityId) {
        let core = |id| (ServiceId::CORE, id);
        match self {
            Capability::ServicesBinding(_) => core(CapabilityId::SERVICES_BINDING),
            Capability::EndpointAddress(_) => core(CapabilityId::ENDPOINT_ADDRESS),
            Capability::ChannelMonitoring(_) => core(CapabilityId::CHANNEL_MONITORING),
            Capability::Compression(_) => core(CapabilityId::COMPRESSION),
            Capability::SessionReliability(_) => core(CapabilityId::SESSION_RELIABILITY),
            Capability::SecurityTicket(_) => core(CapabilityId::SECURITY_TICKET),
            Capability::KeepAlives(_) => core(CapabilityId::KEEP_ALIVES),
            Capability::ReliabilityParams(_) => core(CapabilityId::RELIABILITY_PARAMS),
            Capability::Unknown { service, id, .. } => (*service, *id),
        }
    }
}

fn session_reliability<'c, 'a>(
    capabilities: &'c [Capability<'a>],
) -> Option<&'c SessionReliability<'a>> {
    capabilities.iter().find_map(|capability| match capability {
        Capability::SessionReliability(reliability) => Some(reliability),
        _ => None,
    })
}

fn reconnect<'a>(capabilities: &[Capability<'a>]) -> Option<ReconnectInfo<'a>> {
    let reliability = session_reliability(capabilities)?;
    let ticket = reliability.reconnect_ticket?;
    Some(ReconnectInfo {
        ticket: ticket.ticket,
        ticket_version: ticket.version,
        next_message_number: reliability.next_message_number,
    })
}

fn decode_bind<'a, T>(
    input: &'a [u8],
    command: Command,
    wrap: impl FnOnce(Vec<Capability<'a>>) -> T,
) -> Result<Progress<T>, CgpError> {
    Ok(match decode_packet_of(input, Some(command))? {
        Progress::Done { value, consumed } => Progress::Done {
            value: wrap(decode_capabilities(value.body)?),
            consumed,
        },
        Progress::NeedMore { at_least } => Progress::NeedMore { at_least },
    })
}

fn encode_bind(
    command: Command,
    capabilities: &[Capability<'_>],
    out: &mut Vec<u8>,
) -> Result<(), CgpError> {
    let start = out.len();
    encode_packet_with(command, &Extensions::default(), out, |out| {
        encode_capabilities(capabilities, out)
    })
    .inspect_err(|_| out.truncate(start))
}

/// Parses the capability list of a BIND body: reserved, count, blocks.
pub(super) fn decode_capabilities(body: &[u8]) -> Result<Vec<Capability<'_>>, CgpError> {
    let mut reader = Reader::new(body);
    reader.reserved::<2>("bind reserved bytes")?;
    let count = reader.varlen("capability count")?;
    // Grows one decoded block at a time: each block consumes at least 7
    // bytes, so `count` alone cannot make this allocate.
    let mut capabilities = Vec::new();
    for _ in 0..count {
        capabilities.push(decode_capability(&mut reader)?);
    }
    reader.finish("capability list")?;
    check_unique(&capabilities)?;
    Ok(capabilities)
}

/// Appends a BIND body: reserved, count, blocks.
pub(super) fn encode_capabilities(
    capabilities: &[Capability<'_>],
    out: &mut Vec<u8>,
) -> Result<(), CgpError> {
    check_unique(capabilities)?;
    out.extend_from_slice(&[0, 0]);
    encode_varlen(capabilities.len(), out)?;
    capabilities
        .iter()
        .try_for_each(|capability| encode_capability(capability, out))
}

/// Refuses a known core capability that appears twice.
fn check_unique(capabilities: &[Capability<'_>]) -> Result<(), CgpError> {
    let mut seen: u16 = 0;
    for capability in capabilities {
        let (service, CapabilityId(id)) = capability.key();
        if service != ServiceId::CORE || !CapabilityId(id).is_known_core() {
            continue;
        }
        // Known core ids are 1..=9, so the shift stays inside a u16.
        let bit = 1u16 << id;
        if seen & bit != 0 {
            return Err(CgpError::DuplicateCapability(id));
        }
        seen |= bit;
    }
    Ok(())
}

fn decode_capability<'a>(reader: &mut Reader<'a>) -> Result<Capability<'a>, CgpError> {
    let len = reader.varlen("capability length")?;
    let available = reader.remaining();
    if len < 6 || usize::from(len) > available {
        return Err(CgpError::CapabilityLengthMismatch { len, available });
    }
    let mut block = Reader::new(reader.bytes(usize::from(len), "capability")?);
    let service = ServiceId(block.u16("capability service id")?);
    let id = CapabilityId(block.u16("capability id")?);
    block.reserved::<2>("capability header")?;
    if service != ServiceId::CORE || !id.is_known_core() {
        return Ok(Capability::Unknown {
            service,
            id,
            body: block.rest(),
        });
    }
    let capability = match id {
        CapabilityId::SERVICES_BINDING => {
            let count = block.varlen("services binding count")?;
            let mut services = Vec::new();
            for _ in 0..count {
                services.push(ServiceBinding {
                    name: block.prefixed("service name")?,
                    service: ServiceId(block.u16("service id")?),
                });
            }
            Capability::ServicesBinding(services)
        }
        CapabilityId::ENDPOINT_ADDRESS => {
            Capability::EndpointAddress(block.prefixed("endpoint address")?)
        }
        CapabilityId::CHANNEL_MONITORING => Capability::ChannelMonitoring(ChannelMonitoring {
            interval_seconds: block.u16("channel monitoring interval")?,
        }),
        CapabilityId::COMPRESSION => Capability::Compression(Compression {
            algorithms: block.u8("compression algorithms")?,
        }),
        CapabilityId::SESSION_RELIABILITY => {
            Capability::SessionReliability(decode_session_reliability(&mut block)?)
        }
        CapabilityId::SECURITY_TICKET => Capability::SecurityTicket(SecurityTicket {
            kind: TicketKind(block.u8("security ticket type")?),
            ticket: block.prefixed("security ticket")?,
        }),
        CapabilityId::KEEP_ALIVES => Capability::KeepAlives(KeepAlives {
            interval_seconds: block.u16("keep-alive interval")?,
        }),
        _ => Capability::ReliabilityParams(ReliabilityParams {
            timeout_seconds: block.u16("reliability timeout")?,
            window: block.u16("reliability window")?,
        }),
    };
    block.finish("capability body")?;
    Ok(capability)
}

fn decode_session_reliability<'a>(
    block: &mut Reader<'a>,
) -> Result<SessionReliability<'a>, CgpError> {
    let min_version = block.u8("session reliability min version")?;
    let max_version = block.u8("session reliability max version")?;
    let ack_algorithms = block.u8("session reliability ack algorithms")?;
    let next_message_number = MessageNumber(block.u32("next message number")?);
    let flags = block.u8("reconnect flags")?;
    if flags & !RECONNECT_TICKET_PRESENT != 0 {
        return Err(CgpError::UnknownReconnectFlags(flags));
    }
    let reconnect_ticket = if flags & RECONNECT_TICKET_PRESENT != 0 {
        Some(ReconnectTicket {
            version: block.u8("reconnect ticket version")?,
            ticket: block.prefixed("reconnect ticket")?,
        })
    } else {
        None
    };
    let count = block.varlen("re-presented channel count")?;
    let mut channels = Vec::new();
    for _ in 0..count {
        let body = block.prefixed("re-presented channel open")?;
        channels.push(ChannelOpenRequest::decode_body(body)?);
    }
    Ok(SessionReliability {
        min_version,
        max_version,
        ack_algorithms,
        next_message_number,
        reconnect_ticket,
        channels,
    })
}

fn encode_capability(capability: &Capability<'_>, out: &mut Vec<u8>) -> Result<(), CgpError> {
    let (service, id) = capability.key();
    if let Capability::Unknown { .. } = capability
        && service == ServiceId::CORE
        && id.is_known_core()
    {
        return Err(CgpError::MisfiledCapability(id.0));
    }
    encode_prefixed(out, |out| {
        out.extend_from_slice(&service.0.to_le_bytes());
        out.extend_from_slice(&id.0.to_le_bytes());
        out.extend_from_slice(&[0, 0]);
        encode_capability_body(capability, out)
    })
}

fn encode_capability_body(capability: &Capability<'_>, out: &mut Vec<u8>) -> Result<(), CgpError> {
    match capability {
        Capability::ServicesBinding(services) => {
            encode_varlen(services.len(), out)?;
            for binding in services {
                encode_bytes(binding.name, out)?;
                out.extend_from_slice(&binding.service.0.to_le_bytes());
            }
        }
        Capability::EndpointAddress(address) => encode_bytes(address, out)?,
        Capability::ChannelMonitoring(monitoring) => {
            out.extend_from_slice(&monitoring.interval_seconds.to_le_bytes());
        }
        Capability::Compression(compression) => out.push(compression.algorithms),
        Capability::SessionReliability(reliability) => {
            encode_session_reliability(reliability, out)?
        }
        Capability::SecurityTicket(ticket) => {
            out.push(ticket.kind.0);
            encode_bytes(ticket.ticket, out)?;
        }
        Capability::KeepAlives(keep_alives) => {
            out.extend_from_slice(&keep_alives.interval_seconds.to_le_bytes());
        }
        Capability::ReliabilityParams(params) => {
            out.extend_from_slice(&params.timeout_seconds.to_le_bytes());
            out.extend_from_slice(&params.window.to_le_bytes());
        }
        Capability::Unknown { body, .. } => out.extend_from_slice(body),
    }
    Ok(())
}

fn encode_session_reliability(
    reliability: &SessionReliability<'_>,
    out: &mut Vec<u8>,
) -> Result<(), CgpError> {
    out.extend_from_slice(&[
        reliability.min_version,
        reliability.max_version,
        reliability.ack_algorithms,
    ]);
    out.extend_from_slice(&reliability.next_message_number.0.to_le_bytes());
    match reliability.reconnect_ticket {
        Some(ticket) => {
            out.extend_from_slice(&[RECONNECT_TICKET_PRESENT, ticket.version]);
            encode_bytes(ticket.ticket, out)?;
        }
        None => out.push(0),
    }
    encode_varlen(reliability.channels.len(), out)?;
    reliability
        .channels
        .iter()
        .try_for_each(|channel| encode_prefixed(out, |out| channel.encode_body(out)))
}
