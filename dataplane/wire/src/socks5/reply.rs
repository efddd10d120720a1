//! The reply `05 REP 00 ATYP BND.ADDR BND.PORT` (RFC 1928 §6) and the
//! gateway's reasons for refusing a request.

use std::net::SocketAddr;

use super::request::{Address, decode_message};
use super::{ATYP_DOMAIN, ATYP_IPV4, ATYP_IPV6, SOCKS5_VERSION, Socks5Error, check_version};
use crate::Progress;

/// An RFC 1928 reply code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reply {
    /// `00`: succeeded; the stream is relayed from the next byte on.
    Succeeded,
    /// `01`: general SOCKS server failure.
    GeneralFailure,
    /// `02`: connection not allowed by ruleset.
    NotAllowed,
    /// `03`: network unreachable.
    NetworkUnreachable,
    /// `04`: host unreachable.
    HostUnreachable,
    /// `05`: connection refused.
    ConnectionRefused,
    /// `06`: TTL expired.
    TtlExpired,
    /// `07`: command not supported.
    CommandNotSupported,
    /// `08`: address type not supported.
    AddressTypeNotSupported,
}

impl Reply {
    /// The wire code, `00`..=`08`.
    pub fn code(self) -> u8 {
        match self {
            Reply::Succeeded => 0x00,
            Reply::GeneralFailure => 0x01,
            Reply::NotAllowed => 0x02,
            Reply::NetworkUnreachable => 0x03,
            Reply::HostUnreachable => 0x04,
            Reply::ConnectionRefused => 0x05,
            Reply::TtlExpired => 0x06,
            Reply::CommandNotSupported => 0x07,
            Reply::AddressTypeNotSupported => 0x08,
        }
    }

    /// The reply with this wire code, if RFC 1928 defines it.
    pub fn from_code(code: u8) -> Option<Reply> {
        match code {
            0x00 => Some(Reply::Succeeded),
            0x01 => Some(Reply::GeneralFailure),
            0x02 => Some(Reply::NotAllowed),
            0x03 => Some(Reply::NetworkUnreachable),
            0x04 => Some(Reply::HostUnreachable),
            0x05 => Some(Reply::ConnectionRefused),
            0x06 => Some(Reply::TtlExpired),
            0x07 => Some(Reply::CommandNotSupported),
            0x08 => Some(Reply::AddressTypeNotSupported),
            _ => None,
        }
    }
}

/// Why the gateway refuses a request that decoded (PROTOCOLS.md §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// The STA ticket is unknown, expired or already used.
    TicketRejected,
    /// The worker refused the connection.
    BackendRefused,
    /// No route to the worker.
    BackendUnreachable,
    /// The worker did not answer the connection attempt in time.
    BackendTimeout,
    /// BIND, UDP ASSOCIATE or an unknown command.
    UnsupportedCommand,
    /// An address type the gateway does not carry.
    UnsupportedAddressType,
    /// The core is out of capacity (pending table, connections).
    Overloaded,
    /// A bug or a control-plane failure.
    Internal,
}

impl Refusal {
    /// The reply code the client sees:
    ///
    /// | refusal | reply |
    /// |---|---|
    /// | `TicketRejected` | `02` not allowed |
    /// | `BackendRefused` | `05` connection refused |
    /// | `BackendUnreachable` | `04` host unreachable |
    /// | `BackendTimeout` | `04` host unreachable |
    /// | `UnsupportedCommand` | `07` command not supported |
    /// | `UnsupportedAddressType` | `08` address type not supported |
    /// | `Overloaded`, `Internal` | `01` general failure |
    ///
    /// Gatehouse decides: a connect timeout is `04`, not `06` ("TTL
    /// expired" names an IP-layer event; clients print it verbatim and send
    /// the user hunting for a routing loop).
    pub fn reply(self) -> Reply {
        match self {
            Refusal::TicketRejected => Reply::NotAllowed,
            Refusal::BackendRefused => Reply::ConnectionRefused,
            Refusal::BackendUnreachable | Refusal::BackendTimeout => Reply::HostUnreachable,
            Refusal::UnsupportedCommand => Reply::CommandNotSupported,
            Refusal::UnsupportedAddressType => Reply::AddressTypeNotSupported,
            Refusal::Overloaded | Refusal::Internal => Reply::GeneralFailure,
        }
    }

    /// Stable snake_case reason for the `reason` log field and metric labels.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::TicketRejected => "ticket_rejected",
            Refusal::BackendRefused => "backend_refused",
            Refusal::BackendUnreachable => "backend_unreachable",
            Refusal::BackendTimeout => "backend_timeout",
            Refusal::UnsupportedCommand => "unsupported_command",
            Refusal::UnsupportedAddressType => "unsupported_address_type",
            Refusal::Overloaded => "overloaded",
            Refusal::Internal => "internal",
        }
    }
}

/// An encoded reply, at most 22 bytes (IPv6), held inline.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct EncodedReply {
    bytes: [u8; 22],
    len: usize,
}

impl EncodedReply {
    /// The bytes to write to the client.
    pub fn as_bytes(&self) -> &[u8] {
        // `len` only grows through `put`, which never passes the array's end.
        self.bytes.get(..self.len).unwrap_or(&self.bytes)
    }

    fn put(&mut self, src: &[u8]) {
        let end = self.len + src.len();
        if let Some(dst) = self.bytes.get_mut(self.len..end) {
            dst.copy_from_slice(src);
            self.len = end;
        }
    }
}

impl std::fmt::Debug for EncodedReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("EncodedReply")
            .field(&format_args!("{:02x?}", self.as_bytes()))
            .finish()
    }
}

/// Encodes `05 REP 00 ATYP BND.ADDR BND.PORT` with an IPv4 or IPv6 address.
///
/// The gateway's success reply names `0.0.0.0:0` (the client does not use
/// the bound address): `05 00 00 01 00 00 00 00 00 00`. Send
/// [`Reply::Succeeded`] only once the back-end connection is up; for a
/// failure pass [`Refusal::reply`] or [`Socks5Error::reply`] and close.
pub fn encode_reply(reply: Reply, bound: SocketAddr) -> EncodedReply {
    let mut out = EncodedReply {
        bytes: [0; 22],
        len: 0,
    };
    out.put(&[SOCKS5_VERSION, reply.code(), 0x00]);
    match bound {
        SocketAddr::V4(v4) => {
            out.put(&[ATYP_IPV4]);
            out.put(&v4.ip().octets());
        }
        SocketAddr::V6(v6) => {
            out.put(&[ATYP_IPV6]);
            out.put(&v6.ip().octets());
        }
    }
    out.put(&bound.port().to_be_bytes());
    out
}

/// The shortest reply [`decode_reply`] accepts: IPv4.
const SHORTEST_REPLY: usize = 10;

/// Decodes a reply `05 REP 00 ATYP BND.ADDR BND.PORT` (client side).
///
/// `Done.consumed` is 10 (IPv4) or 22 (IPv6); after a success reply the
/// relayed stream follows. While incomplete, `NeedMore.at_least` is the
/// shortest reply the bytes so far allow (10 before `ATYP` is known).
///
/// Errors: [`Socks5Error::BadVersion`], [`Socks5Error::UnknownReply`] for
/// a code above `08`, [`Socks5Error::NonZeroReserved`],
/// [`Socks5Error::UnsupportedAddressType`], and
/// [`Socks5Error::DomainInReply`] for ATYP `03`, which RFC 1928 allows but
/// no server this is used against sends.
pub fn decode_reply(input: &[u8]) -> Result<Progress<(Reply, SocketAddr)>, Socks5Error> {
    check_version(input)?;
    if let Some(&code) = input
        .get(1)
        .filter(|&&code| Reply::from_code(code).is_none())
    {
        return Err(Socks5Error::UnknownReply(code));
    }
    let progress = decode_message(input)?;
    if input.get(3) == Some(&ATYP_DOMAIN) {
        return Err(Socks5Error::DomainInReply);
    }
    let (message, consumed) = match progress {
        Progress::Done { value, consumed } => (value, consumed),
        Progress::NeedMore { at_least } => {
            return Ok(Progress::NeedMore {
                at_least: at_least.max(SHORTEST_REPLY),
            });
        }
    };
    let reply = Reply::from_code(message.code).ok_or(Socks5Error::UnknownReply(message.code))?;
    let ip = match message.address {
        Address::Ipv4(ip) => ip.into(),
        Address::Ipv6(ip) => ip.into(),
        Address::Domain(_) => return Err(Socks5Error::DomainInReply),
    };
    Ok(Progress::Done {
        value: (reply, SocketAddr::new(ip, message.port)),
        consumed,
    })
}
