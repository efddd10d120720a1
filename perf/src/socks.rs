//! The client side of the SOCKS5 preamble that `connrate --preamble socks5`
//! sends before its echo (RFC 1928, as PROTOCOLS.md §2 describes ICA clients).
//!
//! ```text
//! client                          gateway
//!   05 01 00              ->                 greeting: one method, no-auth
//!                         <-  05 00          method choice
//!   05 01 00 03 len host port ->             CONNECT, ATYP 3 (domain = ticket text)
//!                         <-  05 00 00 atyp addr port
//! ```
//!
//! A plain SOCKS5 server (dante) gets CONNECT with ATYP 1 or 4 instead: an IP
//! address and port ([`encode_connect_ip`]).
//!
//! Encoders build the two requests; decoders answer done, need-more or a typed
//! rejection, like every parser in `gatehouse-wire`.

use std::net::IpAddr;

use gatehouse_wire::Progress;

/// SOCKS protocol version 5.
pub const SOCKS5_VERSION: u8 = 0x05;
/// Authentication method "no authentication required".
pub const METHOD_NO_AUTH: u8 = 0x00;
/// Command CONNECT.
pub const CMD_CONNECT: u8 = 0x01;
/// Address type IPv4 (4 bytes).
pub const ATYP_IPV4: u8 = 0x01;
/// Address type domain name (length byte, then the name).
pub const ATYP_DOMAIN: u8 = 0x03;
/// Address type IPv6 (16 bytes).
pub const ATYP_IPV6: u8 = 0x04;
/// Reply code "succeeded".
pub const REPLY_SUCCEEDED: u8 = 0x00;
/// The ICA port, which clients put in CONNECT.
pub const ICA_PORT: u16 = 1494;

/// The greeting: version 5, one method, no-auth.
pub const GREETING: [u8; 3] = [SOCKS5_VERSION, 0x01, METHOD_NO_AUTH];

/// Why a preamble could not be built or was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PreambleError {
    /// The CONNECT host text is empty.
    #[error("socks host text is empty")]
    EmptyHost,
    /// The CONNECT host text does not fit the one-byte length of ATYP 3.
    #[error("socks host text is {0} bytes, more than 255")]
    HostTooLong(usize),
    /// The server's answer does not start with version 5.
    #[error("server answered version {0:#04x}, not socks5")]
    BadVersion(u8),
    /// The server chose a method other than no-auth.
    #[error("server chose method {0:#04x}, not no-auth")]
    MethodRefused(u8),
    /// The server refused CONNECT with this reply code.
    #[error("server refused connect with reply {0:#04x}")]
    Refused(u8),
    /// The server's reply carries an address type RFC 1928 does not define.
    #[error("server reply has unknown address type {0:#04x}")]
    BadAddressType(u8),
}

/// The domain text sent in CONNECT (ATYP 3): 1 to 255 bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocksHost(String);

impl SocksHost {
    /// Checks the length; the content is sent as given (a ticket text may hold
    /// any bytes a client would put there).
    pub fn new(text: impl Into<String>) -> Result<Self, PreambleError> {
        let text = text.into();
        match text.len() {
            0 => Err(PreambleError::EmptyHost),
            n if n > 255 => Err(PreambleError::HostTooLong(n)),
            _ => Ok(Self(text)),
        }
    }

    /// The text as sent.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Encodes CONNECT with ATYP 3: `05 01 00 03 <len> <host> <port:u16be>`.
pub fn encode_connect(host: &SocksHost, port: u16) -> Vec<u8> {
    let name = host.0.as_bytes();
    let mut out = Vec::with_capacity(7 + name.len());
    out.extend_from_slice(&[SOCKS5_VERSION, CMD_CONNECT, 0x00, ATYP_DOMAIN]);
    // SocksHost::new guarantees 1..=255 bytes.
    out.push(u8::try_from(name.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(name);
    out.extend_from_slice(&port.to_be_bytes());
    out
}

/// Encodes CONNECT with an IP address: ATYP 1
/// `05 01 00 01 <a.b.c.d> <port:u16be>`, or ATYP 4 with 16 bytes for IPv6.
pub fn encode_connect_ip(ip: IpAddr, port: u16) -> Vec<u8> {
    let mut out = Vec::with_capacity(22);
    out.extend_from_slice(&[SOCKS5_VERSION, CMD_CONNECT, 0x00]);
    match ip {
        IpAddr::V4(v4) => {
            out.push(ATYP_IPV4);
            out.extend_from_slice(&v4.octets());
        }
        IpAddr::V6(v6) => {
            out.push(ATYP_IPV6);
            out.extend_from_slice(&v6.octets());
        }
    }
    out.extend_from_slice(&port.to_be_bytes());
    out
}

/// Decodes the method choice `05 00`; any other method is a rejection.
pub fn decode_method_choice(input: &[u8]) -> Result<Progress<()>, PreambleError> {
    let Some(&version) = input.first() else {
        return Ok(Progress::NeedMore { at_least: 2 });
    };
    if version != SOCKS5_VERSION {
        return Err(PreambleError::BadVersion(version));
    }
    match input.get(1) {
        None => Ok(Progress::NeedMore { at_least: 2 }),
        Some(&METHOD_NO_AUTH) => Ok(Progress::Done {
            value: (),
            consumed: 2,
        }),
        Some(&method) => Err(PreambleError::MethodRefused(method)),
    }
}

/// Decodes the CONNECT reply `05 REP 00 ATYP BND.ADDR BND.PORT`; done only
/// when REP is `00`, with `consumed` the full reply length.
pub fn decode_connect_reply(input: &[u8]) -> Result<Progress<()>, PreambleError> {
    // Fixed head: VER REP RSV ATYP.
    if let Some(&version) = input.first()
        && version != SOCKS5_VERSION
    {
        return Err(PreambleError::BadVersion(version));
    }
    if let Some(&reply) = input.get(1)
        && reply != REPLY_SUCCEEDED
    {
        return Err(PreambleError::Refused(reply));
    }
    let Some(&atyp) = input.get(3) else {
        return Ok(Progress::NeedMore { at_least: 4 });
    };
    let address_len = match atyp {
        ATYP_IPV4 => 4,
        ATYP_IPV6 => 16,
        ATYP_DOMAIN => match input.get(4) {
            Some(&len) => 1 + usize::from(len),
            None => return Ok(Progress::NeedMore { at_least: 5 }),
        },
        other => return Err(PreambleError::BadAddressType(other)),
    };
    let total = 4 + address_len + 2;
    if input.len() < total {
        Ok(Progress::NeedMore { at_least: total })
    } else {
        Ok(Progress::Done {
            value: (),
            consumed: total,
        })
    }
}

#[cfg(test)]
mod tests;
