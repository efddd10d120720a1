//! The request `05 CMD 00 ATYP DST.ADDR DST.PORT` (RFC 1928 §4, §5), and
//! the address codec it shares with the reply.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::{
    ATYP_DOMAIN, ATYP_IPV4, ATYP_IPV6, SOCKS5_VERSION, Socks5Error, check_version, push_short_field,
};
use crate::Progress;

/// The `CMD` of a request. Every code decodes, so the engine can answer
/// what it does not support with `07`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    /// `01`: open a TCP connection; the only command the gateway carries.
    Connect,
    /// `02`: accept one inbound connection.
    Bind,
    /// `03`: relay UDP.
    UdpAssociate,
    /// Any other code (never `01`..=`03` when decoded).
    Other(u8),
}

impl Command {
    /// The wire code.
    pub fn code(self) -> u8 {
        match self {
            Command::Connect => 0x01,
            Command::Bind => 0x02,
            Command::UdpAssociate => 0x03,
            Command::Other(code) => code,
        }
    }

    /// The command with this wire code; `01`..=`03` get their own variant.
    pub fn from_code(code: u8) -> Command {
        match code {
            0x01 => Command::Connect,
            0x02 => Command::Bind,
            0x03 => Command::UdpAssociate,
            other => Command::Other(other),
        }
    }
}

/// A destination or bound address, borrowing a domain from the input.
///
/// `Debug` shows a domain's length, never its bytes: in a gateway launch the
/// domain is the STA ticket `;VER;STA_ID;TICKET`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub enum Address<'a> {
    /// ATYP `01`.
    Ipv4(Ipv4Addr),
    /// ATYP `03`: 1 to 255 bytes, not checked for any character set (an ICA
    /// client puts the STA ticket text here; [`crate::ticket`] parses it).
    Domain(&'a [u8]),
    /// ATYP `04`.
    Ipv6(Ipv6Addr),
}

impl Address<'_> {
    /// The `ATYP` code: `01`, `03` or `04`.
    pub fn atyp(&self) -> u8 {
        match self {
            Address::Ipv4(_) => ATYP_IPV4,
            Address::Domain(_) => ATYP_DOMAIN,
            Address::Ipv6(_) => ATYP_IPV6,
        }
    }
}

impl std::fmt::Debug for Address<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Address::Ipv4(ip) => f.debug_tuple("Ipv4").field(ip).finish(),
            Address::Domain(name) => write!(f, "Domain(<{} bytes>)", name.len()),
            Address::Ipv6(ip) => f.debug_tuple("Ipv6").field(ip).finish(),
        }
    }
}

/// A decoded request, borrowing a domain address from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request<'a> {
    /// What the client asks for; the gateway carries only [`Command::Connect`].
    pub command: Command,
    /// `DST.ADDR`.
    pub address: Address<'a>,
    /// `DST.PORT`; ICA uses 1494, CGP 2598.
    pub port: u16,
}

/// Decodes a request `05 CMD 00 ATYP DST.ADDR DST.PORT`.
///
/// Call after the method negotiation (and the RFC 1929 exchange, if
/// selected). `Done.consumed` is the request's length (10 for IPv4,
/// `7 + len` for a domain, 22 for IPv6); the bytes after it are the start of
/// the ICA stream. Every `CMD` decodes; the caller refuses what it does not
/// carry. While incomplete, `NeedMore.at_least` is the shortest request the
/// bytes so far allow (8, a one-byte domain, before `ATYP` is known).
///
/// Errors, each as soon as the byte that shows it arrives:
/// [`Socks5Error::BadVersion`], [`Socks5Error::NonZeroReserved`],
/// [`Socks5Error::UnsupportedAddressType`], [`Socks5Error::EmptyDomain`].
pub fn decode_request(input: &[u8]) -> Result<Progress<Request<'_>>, Socks5Error> {
    Ok(decode_message(input)?.map(|message| Request {
        command: Command::from_code(message.code),
        address: message.address,
        port: message.port,
    }))
}

/// Appends `05 CMD 00 ATYP DST.ADDR DST.PORT` (client side).
///
/// Errors: [`Socks5Error::EmptyDomain`] or [`Socks5Error::FieldTooLong`]
/// for a domain of 0 or more than 255 bytes; `out` is then left as it was.
pub fn encode_request(
    command: Command,
    address: &Address<'_>,
    port: u16,
    out: &mut Vec<u8>,
) -> Result<(), Socks5Error> {
    let start = out.len();
    out.extend_from_slice(&[SOCKS5_VERSION, command.code(), 0x00]);
    let written = push_address(address, port, out);
    if written.is_err() {
        out.truncate(start);
    }
    written
}

/// `05 CODE 00 ATYP ADDR PORT`: the shape requests and replies share.
#[derive(Debug)]
pub(super) struct Message<'a> {
    /// `CMD` of a request, `REP` of a reply; checked by the caller.
    pub(super) code: u8,
    pub(super) address: Address<'a>,
    pub(super) port: u16,
}

/// The shortest message: a one-byte domain, `05 C 00 03 01 x P P`.
const SHORTEST_MESSAGE: usize = 8;

/// Decodes the shared shape; the caller has checked or will check `code`.
pub(super) fn decode_message(input: &[u8]) -> Result<Progress<Message<'_>>, Socks5Error> {
    check_version(input)?;
    if let Some(&reserved) = input.get(2).filter(|&&reserved| reserved != 0x00) {
        return Err(Socks5Error::NonZeroReserved(reserved));
    }
    let Some(&atyp) = input.get(3) else {
        return Ok(Progress::NeedMore {
            at_least: SHORTEST_MESSAGE,
        });
    };
    let (address_at, address_len) = match atyp {
        ATYP_IPV4 => (4, 4),
        ATYP_IPV6 => (4, 16),
        ATYP_DOMAIN => match input.get(4) {
            None => {
                return Ok(Progress::NeedMore {
                    at_least: SHORTEST_MESSAGE,
                });
            }
            Some(0) => return Err(Socks5Error::EmptyDomain),
            Some(&len) => (5, usize::from(len)),
        },
        other => return Err(Socks5Error::UnsupportedAddressType(other)),
    };
    let port_at = address_at + address_len;
    let total = port_at + 2;
    let (Some(&code), Some(raw), Some(&[hi, lo])) = (
        input.get(1),
        input.get(address_at..port_at),
        input.get(port_at..total),
    ) else {
        return Ok(Progress::NeedMore { at_least: total });
    };
    // `raw` has exactly the length `atyp` calls for, so the first two arms
    // are the only ones an IPv4 or IPv6 address can take.
    let address = match (atyp, <[u8; 4]>::try_from(raw), <[u8; 16]>::try_from(raw)) {
        (ATYP_IPV4, Ok(octets), _) => Address::Ipv4(Ipv4Addr::from(octets)),
        (ATYP_IPV6, _, Ok(octets)) => Address::Ipv6(Ipv6Addr::from(octets)),
        _ => Address::Domain(raw),
    };
    Ok(Progress::Done {
        value: Message {
            code,
            address,
            port: u16::from_be_bytes([hi, lo]),
        },
        consumed: total,
    })
}

/// Appends `ATYP ADDR PORT`.
fn push_address(address: &Address<'_>, port: u16, out: &mut Vec<u8>) -> Result<(), Socks5Error> {
    out.push(address.atyp());
    match address {
        Address::Ipv4(ip) => out.extend_from_slice(&ip.octets()),
        Address::Ipv6(ip) => out.extend_from_slice(&ip.octets()),
        Address::Domain([]) => return Err(Socks5Error::EmptyDomain),
        Address::Domain(name) => push_short_field("domain", name, out)?,
    }
    out.extend_from_slice(&port.to_be_bytes());
    Ok(())
}
