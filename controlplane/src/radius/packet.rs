//! RADIUS framing (RFC 2865 §3 and §5): the 20-byte header, the attribute
//! list and their lengths. No cryptography here: [`super::access`] checks
//! the authenticators.
//!
//! RADIUS travels in UDP datagrams, one packet per datagram, so a decoder
//! never needs more bytes: a datagram is a packet or it is refused. Octets
//! past the header's Length are padding and ignored (RFC 2865 §3); a
//! datagram shorter than its Length is refused.

use std::fmt;

/// Code, Identifier, Length and the 16-byte Authenticator.
pub const HEADER_LEN: usize = 20;

/// Largest packet RFC 2865 §3 allows.
pub const MAX_PACKET_LEN: usize = 4_096;

/// Length of the Request and Response Authenticators.
pub const AUTHENTICATOR_LEN: usize = 16;

/// Largest attribute value: the length octet counts the two header octets.
pub const MAX_ATTRIBUTE_VALUE_LEN: usize = 253;

/// Attribute types this client writes or reads.
pub mod attribute {
    /// User-Name (RFC 2865 §5.1).
    pub const USER_NAME: u8 = 0x01;
    /// User-Password (RFC 2865 §5.2), hidden with the shared secret.
    pub const USER_PASSWORD: u8 = 0x02;
    /// NAS-IP-Address (RFC 2865 §5.4).
    pub const NAS_IP_ADDRESS: u8 = 0x04;
    /// Reply-Message (RFC 2865 §5.18): text for the user.
    pub const REPLY_MESSAGE: u8 = 0x12;
    /// State (RFC 2865 §5.24): opaque, echoed unchanged after a challenge.
    pub const STATE: u8 = 0x18;
    /// NAS-Identifier (RFC 2865 §5.32).
    pub const NAS_IDENTIFIER: u8 = 0x20;
    /// Message-Authenticator (RFC 3579 §3.2): HMAC-MD5 over the packet.
    pub const MESSAGE_AUTHENTICATOR: u8 = 0x50;
}

/// The packet codes of the access exchange (RFC 2865 §3, §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    /// 1: Access-Request, client to server.
    AccessRequest,
    /// 2: Access-Accept.
    AccessAccept,
    /// 3: Access-Reject.
    AccessReject,
    /// 11: Access-Challenge.
    AccessChallenge,
}

impl Code {
    /// The code octet.
    pub fn to_byte(self) -> u8 {
        match self {
            Self::AccessRequest => 0x01,
            Self::AccessAccept => 0x02,
            Self::AccessReject => 0x03,
            Self::AccessChallenge => 0x0b,
        }
    }

    /// The code for an octet, `None` for codes outside the access exchange
    /// (accounting, CoA, Status-Server, ...).
    pub fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            0x01 => Some(Self::AccessRequest),
            0x02 => Some(Self::AccessAccept),
            0x03 => Some(Self::AccessReject),
            0x0b => Some(Self::AccessChallenge),
            _ => None,
        }
    }
}

/// The Identifier octet that matches a response to its request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Identifier(pub u8);

impl fmt::Display for Identifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A Request Authenticator (16 unpredictable octets chosen by the client)
/// or a Response Authenticator (an MD5 checksum computed by the server).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Authenticator(pub [u8; AUTHENTICATOR_LEN]);

/// A structurally valid packet, borrowed from the datagram it came in.
///
/// Invariant: `bytes` is exactly Length octets long (at least
/// [`HEADER_LEN`]) and the attributes after the header fill it exactly,
/// each at least two octets long, so [`Packet::attributes`] cannot fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<'a> {
    bytes: &'a [u8],
}

/// One attribute: its type octet and its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attribute<'a> {
    /// The type octet ([`attribute`] names the ones this client knows).
    pub kind: u8,
    /// The value (0 to 253 octets).
    pub value: &'a [u8],
    /// Offset of the attribute's type octet in the packet.
    pub offset: usize,
}

/// Why a datagram is not a RADIUS packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Fewer than 20 octets.
    #[error("datagram of {len} bytes is shorter than the 20-byte header")]
    TooShort {
        /// Octets received.
        len: usize,
    },
    /// Length field below 20 or above 4096.
    #[error("length field {length} is outside 20..=4096")]
    BadLength {
        /// The Length field.
        length: usize,
    },
    /// The datagram is shorter than its Length field.
    #[error("length field {length} is longer than the {received}-byte datagram")]
    Truncated {
        /// The Length field.
        length: usize,
        /// Octets received.
        received: usize,
    },
    /// An attribute with a length octet below 2.
    #[error("attribute at offset {offset} has length {length}, below 2")]
    AttributeTooShort {
        /// Offset of the attribute's type octet.
        offset: usize,
        /// Its length octet.
        length: u8,
    },
    /// An attribute that runs past the packet's Length, or a lone type
    /// octet at the end.
    #[error("attribute at offset {offset} runs past the end of the packet")]
    AttributeOverrun {
        /// Offset of the attribute's type octet.
        offset: usize,
    },
}

impl<'a> Packet<'a> {
    /// Checks the framing of one datagram: header, Length (20..=4096, not
    /// past the datagram) and that the attributes tile the rest exactly.
    /// Octets past Length are ignored.
    ///
    /// Errors: [`DecodeError`]; nothing is checked cryptographically.
    pub fn decode(datagram: &'a [u8]) -> Result<Self, DecodeError> {
        let header = datagram.get(..HEADER_LEN).ok_or(DecodeError::TooShort {
            len: datagram.len(),
        })?;
        let length = usize::from(u16::from_be_bytes([header[2], header[3]]));
        if !(HEADER_LEN..=MAX_PACKET_LEN).contains(&length) {
            return Err(DecodeError::BadLength { length });
        }
        let bytes = datagram.get(..length).ok_or(DecodeError::Truncated {
            length,
            received: datagram.len(),
        })?;
        let mut offset = HEADER_LEN;
        while offset < length {
            let Some(&attr_len) = bytes.get(offset + 1) else {
                return Err(DecodeError::AttributeOverrun { offset });
            };
            if attr_len < 2 {
                return Err(DecodeError::AttributeTooShort {
                    offset,
                    length: attr_len,
                });
            }
            let end = offset + usize::from(attr_len);
            if end > length {
                return Err(DecodeError::AttributeOverrun { offset });
            }
            offset = end;
        }
        Ok(Self { bytes })
    }

    /// The code octet (not necessarily one [`Code`] knows).
    pub fn code(&self) -> u8 {
        self.bytes[0]
    }

    /// The Identifier.
    pub fn identifier(&self) -> Identifier {
        Identifier(self.bytes[1])
    }

    /// The Authenticator field as received.
    pub fn authenticator(&self) -> Authenticator {
        let mut out = [0; AUTHENTICATOR_LEN];
        out.copy_from_slice(&self.bytes[4..HEADER_LEN]);
        Authenticator(out)
    }

    /// The packet, `Length` octets (padding cut off).
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The attributes in order.
    pub fn attributes(&self) -> Attributes<'a> {
        Attributes {
            bytes: self.bytes,
            offset: HEADER_LEN,
        }
    }
}

/// Iterator over a [`Packet`]'s attributes.
#[derive(Debug, Clone)]
pub struct Attributes<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Iterator for Attributes<'a> {
    type Item = Attribute<'a>;

    fn next(&mut self) -> Option<Self::Item> {
        // `Packet::decode` checked that the attributes tile the packet, so
        // `get` only returns `None` at the end.
        let offset = self.offset;
        let kind = *self.bytes.get(offset)?;
        let len = usize::from(*self.bytes.get(offset + 1)?);
        let value = self.bytes.get(offset + 2..offset + len)?;
        self.offset = offset + len;
        Some(Attribute {
            kind,
            value,
            offset,
        })
    }
}

/// Appends one attribute. The caller checked `value.len() <=`
/// [`MAX_ATTRIBUTE_VALUE_LEN`].
pub(super) fn push_attribute(out: &mut Vec<u8>, kind: u8, value: &[u8]) {
    debug_assert!(value.len() <= MAX_ATTRIBUTE_VALUE_LEN);
    out.push(kind);
    // Fits: at most 253 + 2.
    out.push((value.len() + 2) as u8);
    out.extend_from_slice(value);
}
