//! SOCKSv5 as ICA clients speak it: RFC 1928 with RFC 1929 user/password
//! sub-negotiation (PROTOCOLS.md §2).
//!
//! A gateway launch goes, server side (the engine calls these in order):
//!
//! ```text
//! client                                  gateway
//!   05 02 00 02          -> decode_greeting, Greeting::select
//!                        <- encode_method_selection      05 00
//!  [01 ulen u plen p     -> decode_userpass              only if 02 was selected
//!                        <- encode_userpass_status       01 00]
//!   05 01 00 03 len ;40;STA;TICKET port
//!                        -> decode_request
//!                        <- encode_reply                 05 00 00 01 0.0.0.0 0
//!   raw ICA both ways, the worker speaks first
//! ```
//!
//! The client side (the load tool, simulators, tests) uses the mirror
//! encoders [`encode_greeting`], [`encode_userpass`], [`encode_request`] and
//! [`decode_reply`].
//!
//! Gatehouse decides:
//! - The reserved byte of requests and replies must be `00` (RFC 1928 §4, §6
//!   say it is set to `X'00'`); anything else is [`Socks5Error::NonZeroReserved`].
//!   ICA clients and curl send `00`, so a non-zero byte marks a
//!   client that is not one of them.
//! - RFC 1929 user names and passwords may be empty: the gateway ignores
//!   their contents (the STA ticket is the credential) and some clients send
//!   an empty password.
//! - Which error still earns a SOCKS reply: see [`Socks5Error::reply`].
//! - A back-end timeout is reported as `04` (host unreachable), not `06`
//!   (TTL expired), which names an IP-layer event: see [`Refusal::reply`].
//!
//! `Debug` never prints a domain name or a password: in a gateway launch the
//! domain is the STA ticket, a bearer credential.
//!
//! What this module refuses to do: GSSAPI (method `01`), and any I/O. BIND
//! and UDP ASSOCIATE decode, so the engine can answer them with `07`.

mod auth;
mod greeting;
mod reply;
mod request;

#[cfg(fuzzing)]
pub mod fuzz;
#[cfg(test)]
mod tests;

pub use auth::{UserPass, decode_userpass, encode_userpass, encode_userpass_status};
pub use greeting::{Greeting, Method, decode_greeting, encode_greeting, encode_method_selection};
pub use reply::{EncodedReply, Refusal, Reply, decode_reply, encode_reply};
pub use request::{Address, Command, Request, decode_request, encode_request};

/// The protocol version byte of every RFC 1928 message.
pub const SOCKS5_VERSION: u8 = 0x05;
/// The version byte of the RFC 1929 user/password sub-negotiation.
pub const USERPASS_VERSION: u8 = 0x01;
/// Address type: IPv4, 4 bytes.
pub const ATYP_IPV4: u8 = 0x01;
/// Address type: a domain name, one length byte then the name.
pub const ATYP_DOMAIN: u8 = 0x03;
/// Address type: IPv6, 16 bytes.
pub const ATYP_IPV6: u8 = 0x04;

/// Why a SOCKSv5 message was refused (decoders) or cannot be written
/// (encoders). Decoder errors are the peer's fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Socks5Error {
    /// A greeting, request or reply whose version byte is not `05`.
    #[error("unsupported socks version {0:#04x}")]
    BadVersion(u8),
    /// A greeting with `NMETHODS = 0`.
    #[error("greeting offers no authentication method")]
    NoMethods,
    /// A user/password sub-negotiation whose version byte is not `01`.
    #[error("unsupported user/password sub-negotiation version {0:#04x}")]
    BadUserPassVersion(u8),
    /// A domain address of length 0.
    #[error("empty domain name")]
    EmptyDomain,
    /// An address type other than `01`, `03`, `04`.
    #[error("unsupported address type {0:#04x}")]
    UnsupportedAddressType(u8),
    /// A reserved byte that is not `00`.
    #[error("reserved byte is {0:#04x}, not 0x00")]
    NonZeroReserved(u8),
    /// A reply code above `08` (client side).
    #[error("unknown reply code {0:#04x}")]
    UnknownReply(u8),
    /// A reply that names its bound address as a domain (client side):
    /// [`decode_reply`] answers with a socket address only.
    #[error("reply names a domain as bound address")]
    DomainInReply,
    /// An encoder was given a field longer than its one length byte allows.
    #[error("{field} is {len} bytes, longer than 255")]
    FieldTooLong {
        /// Which field: `"username"`, `"password"` or `"domain"`.
        field: &'static str,
        /// Its length in bytes.
        len: usize,
    },
}

impl Socks5Error {
    /// The RFC 1928 reply the gateway sends before it closes, if any.
    ///
    /// Gatehouse decides: a reply only where the client is at the request
    /// stage and its message was SOCKSv5 but unacceptable:
    /// `UnsupportedAddressType` -> `08`, `NonZeroReserved` and `EmptyDomain`
    /// -> `01`. Everything else is `None`, close without a reply:
    /// - `BadVersion`: the peer does not speak SOCKSv5, a reply means nothing to it.
    /// - `NoMethods`: greeting stage, where no reply exists; the engine may
    ///   answer [`encode_method_selection`]`(`[`Method::NoAcceptable`]`)`.
    /// - `BadUserPassVersion`: auth stage; the engine may answer
    ///   [`encode_userpass_status`]`(false)`.
    /// - `UnknownReply`, `DomainInReply`, `FieldTooLong`: client side or
    ///   encoder errors, nothing to answer.
    pub fn reply(&self) -> Option<Reply> {
        match self {
            Socks5Error::UnsupportedAddressType(_) => Some(Reply::AddressTypeNotSupported),
            Socks5Error::NonZeroReserved(_) | Socks5Error::EmptyDomain => {
                Some(Reply::GeneralFailure)
            }
            Socks5Error::BadVersion(_)
            | Socks5Error::NoMethods
            | Socks5Error::BadUserPassVersion(_)
            | Socks5Error::UnknownReply(_)
            | Socks5Error::DomainInReply
            | Socks5Error::FieldTooLong { .. } => None,
        }
    }

    /// Stable snake_case reason for the `reason` log field and metric labels.
    pub fn reason(&self) -> &'static str {
        match self {
            Socks5Error::BadVersion(_) => "bad_version",
            Socks5Error::NoMethods => "no_methods",
            Socks5Error::BadUserPassVersion(_) => "bad_userpass_version",
            Socks5Error::EmptyDomain => "empty_domain",
            Socks5Error::UnsupportedAddressType(_) => "unsupported_address_type",
            Socks5Error::NonZeroReserved(_) => "non_zero_reserved",
            Socks5Error::UnknownReply(_) => "unknown_reply",
            Socks5Error::DomainInReply => "domain_in_reply",
            Socks5Error::FieldTooLong { .. } => "field_too_long",
        }
    }
}

/// Checks a version byte, if present.
fn check_version(input: &[u8]) -> Result<(), Socks5Error> {
    match input.first() {
        Some(&SOCKS5_VERSION) | None => Ok(()),
        Some(&other) => Err(Socks5Error::BadVersion(other)),
    }
}

/// Appends a length-prefixed field (RFC 1928 domain, RFC 1929 name or password).
fn push_short_field(
    field: &'static str,
    bytes: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), Socks5Error> {
    let len = u8::try_from(bytes.len()).map_err(|_| Socks5Error::FieldTooLong {
        field,
        len: bytes.len(),
    })?;
    out.push(len);
    out.extend_from_slice(bytes);
    Ok(())
}
