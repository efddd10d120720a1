//! The access exchange, sans-IO: an [`AccessRequest`] encodes to a
//! [`PendingAccess`] (the datagram to send, retransmitted unchanged), which
//! judges each datagram that comes back with
//! [`PendingAccess::handle_response`].
//!
//! ```text
//! AccessRequest --encode(secret)--> PendingAccess --handle_response(datagram)--> Response
//!                                        ^   |  refused datagram: keep waiting
//!                                        +---+
//! ```
//!
//! Cryptography: User-Password hidden per RFC 2865 §5.2; the Response
//! Authenticator checked per RFC 2865 §3; Message-Authenticator (HMAC-MD5,
//! RFC 3579 §3.2) written first in every request (the BlastRADIUS
//! mitigation, CVE-2024-3596) and checked in every response that carries
//! one, or required in every response when [`ResponsePolicy`] says so.
//! Nothing of a response is read before its authenticators verify.

use std::fmt;
use std::net::Ipv4Addr;

use hmac::{Hmac, KeyInit, Mac};
use md5::{Digest, Md5};
use subtle::ConstantTimeEq;

use super::packet::{
    AUTHENTICATOR_LEN, Authenticator, Code, DecodeError, HEADER_LEN, Identifier,
    MAX_ATTRIBUTE_VALUE_LEN, MAX_PACKET_LEN, Packet, attribute, push_attribute,
};

/// Longest User-Password before hiding (RFC 2865 §5.2).
pub const MAX_PASSWORD_LEN: usize = 128;

/// The shared secret of a client and a server. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct SharedSecret(Vec<u8>);

impl SharedSecret {
    /// Wraps a secret.
    ///
    /// Errors: [`SecretError::Empty`] (RFC 2865 §3: the secret must not be
    /// empty).
    pub fn new(secret: impl Into<Vec<u8>>) -> Result<Self, SecretError> {
        let secret = secret.into();
        if secret.is_empty() {
            return Err(SecretError::Empty);
        }
        Ok(Self(secret))
    }

    fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SharedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SharedSecret(..)")
    }
}

/// Why a shared secret is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// Zero octets.
    #[error("the shared secret is empty")]
    Empty,
}

/// How the gateway names itself in requests: RFC 2865 §4.1 wants
/// NAS-IP-Address or NAS-Identifier (or both).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NasIdentity {
    /// NAS-Identifier, 1 to 253 octets.
    pub identifier: Option<String>,
    /// NAS-IP-Address.
    pub ip_address: Option<Ipv4Addr>,
}

/// One Access-Request, before encoding.
#[derive(Debug, Clone, Copy)]
pub struct AccessRequest<'a> {
    /// Identifier; a new request (a challenge answer too) takes a new one,
    /// a retransmission reuses the encoded datagram.
    pub identifier: Identifier,
    /// 16 unpredictable octets (RFC 2865 §3: global and temporal
    /// uniqueness); the caller draws them from a CSPRNG.
    pub authenticator: Authenticator,
    /// User-Name, 1 to 253 octets.
    pub user_name: &'a str,
    /// The password, or the answer to a challenge: 0 to 128 octets.
    pub password: &'a [u8],
    /// NAS-Identifier and/or NAS-IP-Address.
    pub nas: &'a NasIdentity,
    /// The State of the Access-Challenge this request answers, unchanged.
    pub state: Option<&'a [u8]>,
}

/// Why a request cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// User-Name must have at least one octet.
    #[error("the user name is empty")]
    UserNameEmpty,
    /// User-Name over 253 octets.
    #[error("the user name has {len} bytes, more than 253")]
    UserNameTooLong {
        /// Its length.
        len: usize,
    },
    /// User-Password over 128 octets.
    #[error("the password has {len} bytes, more than 128")]
    PasswordTooLong {
        /// Its length.
        len: usize,
    },
    /// State empty or over 253 octets.
    #[error("the state has {len} bytes, expected 1 to 253")]
    BadState {
        /// Its length.
        len: usize,
    },
    /// NAS-Identifier empty or over 253 octets.
    #[error("the nas identifier has {len} bytes, expected 1 to 253")]
    BadNasIdentifier {
        /// Its length.
        len: usize,
    },
    /// Neither NAS-Identifier nor NAS-IP-Address.
    #[error("a request needs a nas identifier or a nas ip address")]
    MissingNasIdentity,
}

/// What a response must carry beyond RFC 2865.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponsePolicy {
    /// Refuse a response without Message-Authenticator. Servers patched for
    /// BlastRADIUS (FreeRADIUS 3.2.5 and later) always send one; older ones
    /// (Debian 12's FreeRADIUS 3.2.1) send none in Accept and Reject.
    pub require_message_authenticator: bool,
}

/// The verdict of a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseKind {
    /// Access-Accept.
    Accept,
    /// Access-Reject.
    Reject,
    /// Access-Challenge: ask the user, answer with a new request carrying
    /// the State.
    Challenge,
}

/// An authenticated response to a [`PendingAccess`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Accept, Reject or Challenge.
    pub kind: ResponseKind,
    /// The Reply-Message attributes joined in order (RFC 2865 §5.18 allows
    /// several), as text (invalid UTF-8 replaced). Untrusted text: escape
    /// it before showing it.
    pub reply_message: Option<String>,
    /// The State attribute (at most one allowed).
    pub state: Option<Vec<u8>>,
}

/// Why a datagram is not an acceptable answer to a [`PendingAccess`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    /// Not a RADIUS packet.
    #[error("malformed packet: {0}")]
    Malformed(#[from] DecodeError),
    /// Answers another request (a late answer to an earlier one, or noise).
    #[error("identifier {got} does not match the request's {expected}")]
    IdentifierMismatch {
        /// The request's identifier.
        expected: Identifier,
        /// The response's.
        got: Identifier,
    },
    /// The Response Authenticator does not verify: a forged packet or a
    /// different shared secret.
    #[error("response authenticator mismatch (forged response or wrong shared secret)")]
    AuthenticatorMismatch,
    /// The Message-Authenticator does not verify.
    #[error("message-authenticator mismatch (forged response or wrong shared secret)")]
    MessageAuthenticatorMismatch,
    /// No Message-Authenticator, and the policy requires one.
    #[error(
        "response without message-authenticator (a server not patched for blastradius; see require_message_authenticator)"
    )]
    MessageAuthenticatorMissing,
    /// A Message-Authenticator whose value is not 16 octets, or more than
    /// one.
    #[error("invalid message-authenticator attribute")]
    BadMessageAuthenticator,
    /// A code other than Accept, Reject or Challenge.
    #[error("unexpected packet code {0}")]
    UnexpectedCode(u8),
    /// More than one State, or an empty one.
    #[error("invalid state attribute")]
    BadState,
}

/// An encoded Access-Request waiting for its answer. Retransmit
/// [`PendingAccess::datagram`] unchanged (same identifier and
/// authenticator, RFC 2865 §2.5 and §4.1); feed every datagram that comes
/// back to [`PendingAccess::handle_response`] until one is accepted.
#[derive(Clone)]
pub struct PendingAccess {
    datagram: Vec<u8>,
    identifier: Identifier,
    authenticator: Authenticator,
}

impl fmt::Debug for PendingAccess {
    // The datagram holds the hidden password: leave it out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingAccess")
            .field("identifier", &self.identifier)
            .field("len", &self.datagram.len())
            .finish_non_exhaustive()
    }
}

impl AccessRequest<'_> {
    /// Encodes the request: Message-Authenticator first, then User-Name,
    /// User-Password (hidden), NAS-IP-Address, NAS-Identifier, State.
    ///
    /// Errors: [`EncodeError`] for a value out of its RFC range.
    pub fn encode(&self, secret: &SharedSecret) -> Result<PendingAccess, EncodeError> {
        let user = self.user_name.as_bytes();
        if user.is_empty() {
            return Err(EncodeError::UserNameEmpty);
        }
        if user.len() > MAX_ATTRIBUTE_VALUE_LEN {
            return Err(EncodeError::UserNameTooLong { len: user.len() });
        }
        if self.nas.identifier.is_none() && self.nas.ip_address.is_none() {
            return Err(EncodeError::MissingNasIdentity);
        }
        let hidden = hide_password(self.password, secret, &self.authenticator)?;

        let mut out = Vec::with_capacity(HEADER_LEN + 64 + hidden.len());
        out.push(Code::AccessRequest.to_byte());
        out.push(self.identifier.0);
        out.extend_from_slice(&[0, 0]); // Length, filled in below
        out.extend_from_slice(&self.authenticator.0);
        let mac_at = out.len() + 2;
        push_attribute(
            &mut out,
            attribute::MESSAGE_AUTHENTICATOR,
            &[0; AUTHENTICATOR_LEN],
        );
        push_attribute(&mut out, attribute::USER_NAME, user);
        push_attribute(&mut out, attribute::USER_PASSWORD, &hidden);
        if let Some(ip) = self.nas.ip_address {
            push_attribute(&mut out, attribute::NAS_IP_ADDRESS, &ip.octets());
        }
        if let Some(name) = &self.nas.identifier {
            let len = name.len();
            if len == 0 || len > MAX_ATTRIBUTE_VALUE_LEN {
                return Err(EncodeError::BadNasIdentifier { len });
            }
            push_attribute(&mut out, attribute::NAS_IDENTIFIER, name.as_bytes());
        }
        if let Some(state) = self.state {
            let len = state.len();
            if len == 0 || len > MAX_ATTRIBUTE_VALUE_LEN {
                return Err(EncodeError::BadState { len });
            }
            push_attribute(&mut out, attribute::STATE, state);
        }
        // At most 20 + 18 + 255 + 130 + 6 + 255 + 255 < 4096.
        debug_assert!(out.len() <= MAX_PACKET_LEN);
        let len = out.len() as u16;
        out[2..4].copy_from_slice(&len.to_be_bytes());
        // RFC 3579 §3.2: HMAC-MD5 over the packet with the
        // Message-Authenticator zeroed; the Request Authenticator is in place.
        let mac = message_authenticator(secret, &out);
        out[mac_at..mac_at + AUTHENTICATOR_LEN].copy_from_slice(&mac);
        Ok(PendingAccess {
            datagram: out,
            identifier: self.identifier,
            authenticator: self.authenticator,
        })
    }
}

impl PendingAccess {
    /// The datagram to send (and to resend on timeout).
    pub fn datagram(&self) -> &[u8] {
        &self.datagram
    }

    /// The request's identifier.
    pub fn identifier(&self) -> Identifier {
        self.identifier
    }

    /// Judges one datagram from the server. In order: framing, identifier,
    /// Response Authenticator (RFC 2865 §3), Message-Authenticator (RFC 3579
    /// §3.2), code, then the attributes.
    ///
    /// Errors: [`ResponseError`]; the request is still pending, a caller
    /// keeps waiting for a valid answer until its timeout.
    pub fn handle_response(
        &self,
        datagram: &[u8],
        secret: &SharedSecret,
        policy: ResponsePolicy,
    ) -> Result<Response, ResponseError> {
        let packet = Packet::decode(datagram)?;
        if packet.identifier() != self.identifier {
            return Err(ResponseError::IdentifierMismatch {
                expected: self.identifier,
                got: packet.identifier(),
            });
        }
        let bytes = packet.as_bytes();
        let expected = response_authenticator(bytes, &self.authenticator, secret);
        if !bool::from(expected.ct_eq(&packet.authenticator().0)) {
            return Err(ResponseError::AuthenticatorMismatch);
        }
        self.check_message_authenticator(&packet, secret, policy)?;
        let kind = match Code::from_byte(packet.code()) {
            Some(Code::AccessAccept) => ResponseKind::Accept,
            Some(Code::AccessReject) => ResponseKind::Reject,
            Some(Code::AccessChallenge) => ResponseKind::Challenge,
            Some(Code::AccessRequest) | None => {
                return Err(ResponseError::UnexpectedCode(packet.code()));
            }
        };
        let mut reply: Option<Vec<u8>> = None;
        let mut state = None;
        for attr in packet.attributes() {
            match attr.kind {
                attribute::REPLY_MESSAGE => {
                    let text = reply.get_or_insert_with(Vec::new);
                    if !text.is_empty() {
                        text.push(b'\n');
                    }
                    text.extend_from_slice(attr.value);
                }
                attribute::STATE => {
                    if state.is_some() || attr.value.is_empty() {
                        return Err(ResponseError::BadState);
                    }
                    state = Some(attr.value.to_vec());
                }
                _ => {}
            }
        }
        Ok(Response {
            kind,
            reply_message: reply.map(|bytes| String::from_utf8_lossy(&bytes).into_owned()),
            state,
        })
    }

    fn check_message_authenticator(
        &self,
        packet: &Packet<'_>,
        secret: &SharedSecret,
        policy: ResponsePolicy,
    ) -> Result<(), ResponseError> {
        let mut found = None;
        for attr in packet.attributes() {
            if attr.kind != attribute::MESSAGE_AUTHENTICATOR {
                continue;
            }
            if found.is_some() || attr.value.len() != AUTHENTICATOR_LEN {
                return Err(ResponseError::BadMessageAuthenticator);
            }
            found = Some(attr);
        }
        let Some(attr) = found else {
            if policy.require_message_authenticator {
                return Err(ResponseError::MessageAuthenticatorMissing);
            }
            return Ok(());
        };
        // RFC 3579 §3.2: for a response, the HMAC is over the packet with
        // the Request Authenticator in the authenticator field and the
        // Message-Authenticator value zeroed.
        let mut copy = packet.as_bytes().to_vec();
        copy[4..HEADER_LEN].copy_from_slice(&self.authenticator.0);
        let value_at = attr.offset + 2;
        copy[value_at..value_at + AUTHENTICATOR_LEN].fill(0);
        let expected = message_authenticator(secret, &copy);
        if bool::from(expected.ct_eq(attr.value)) {
            Ok(())
        } else {
            Err(ResponseError::MessageAuthenticatorMismatch)
        }
    }
}

/// Hides a User-Password (RFC 2865 §5.2): pad with zeros to a multiple of
/// 16 octets (16 for an empty password), then XOR each 16-octet block with
/// MD5(secret + previous block), the first previous block being the Request
/// Authenticator.
///
/// Errors: [`EncodeError::PasswordTooLong`] past 128 octets.
pub fn hide_password(
    password: &[u8],
    secret: &SharedSecret,
    authenticator: &Authenticator,
) -> Result<Vec<u8>, EncodeError> {
    if password.len() > MAX_PASSWORD_LEN {
        return Err(EncodeError::PasswordTooLong {
            len: password.len(),
        });
    }
    let padded_len = password.len().div_ceil(16).max(1) * 16;
    let mut out = password.to_vec();
    out.resize(padded_len, 0);
    let mut previous = authenticator.0;
    for block in out.chunks_exact_mut(16) {
        let key = md5_of(&[secret.as_bytes(), &previous]);
        for (byte, k) in block.iter_mut().zip(key) {
            *byte ^= k;
        }
        previous.copy_from_slice(block);
    }
    Ok(out)
}

/// The inverse of [`hide_password`], as a server computes it; trailing
/// zero padding is left in place. `hidden` must be a multiple of 16 octets
/// (a shorter last block is left as received).
pub fn reveal_password(
    hidden: &[u8],
    secret: &SharedSecret,
    authenticator: &Authenticator,
) -> Vec<u8> {
    let mut out = hidden.to_vec();
    let mut previous = authenticator.0;
    for block in out.chunks_exact_mut(16) {
        let key = md5_of(&[secret.as_bytes(), &previous]);
        previous.copy_from_slice(block);
        for (byte, k) in block.iter_mut().zip(key) {
            *byte ^= k;
        }
    }
    out
}

/// RFC 2865 §3: MD5(Code + Identifier + Length + Request Authenticator +
/// Attributes + Secret), over `packet` with the request's authenticator in
/// place of the one received.
pub fn response_authenticator(
    packet: &[u8],
    request: &Authenticator,
    secret: &SharedSecret,
) -> [u8; AUTHENTICATOR_LEN] {
    let head = packet.get(..4).unwrap_or_default();
    let attributes = packet.get(HEADER_LEN..).unwrap_or_default();
    md5_of(&[head, &request.0, attributes, secret.as_bytes()])
}

/// RFC 3579 §3.2: HMAC-MD5 keyed with the secret over `packet` as given
/// (the caller zeroed the Message-Authenticator value).
pub fn message_authenticator(secret: &SharedSecret, packet: &[u8]) -> [u8; AUTHENTICATOR_LEN] {
    // HMAC takes keys of any length, so this constructor cannot fail.
    let Ok(mut mac) = <Hmac<Md5> as KeyInit>::new_from_slice(secret.as_bytes()) else {
        return [0; AUTHENTICATOR_LEN];
    };
    mac.update(packet);
    mac.finalize().into_bytes().into()
}

fn md5_of(parts: &[&[u8]]) -> [u8; AUTHENTICATOR_LEN] {
    let mut hasher = Md5::new();
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize().into()
}
