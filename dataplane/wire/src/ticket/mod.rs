//! STA tickets: the text `;VER;STA_ID;TICKET` (PROTOCOLS.md §3).
//!
//! A client presents this text as the SOCKSv5 domain name or in a CGP
//! security-ticket capability; the store writes it into the `.ica` file's
//! `Address=` line. It always arrives whole, so [`StaTicket::decode`] answers
//! with a value or a typed rejection, never "need more".
//!
//! The grammar, strict (no whitespace, no trailing bytes, no port suffix):
//!
//! ```text
//! sta-ticket = ";" version ";" sta-id ";" ticket
//! version    = "10" / "20" / "22" / "40"
//! sta-id     = 0*16( ALPHA / DIGIT / "_" / "-" )    ; Gatehouse decides the charset
//! ticket     = 32( %x41-5A / DIGIT )                ; uppercase A-Z and 0-9
//! ```
//!
//! The `TICKET` part is a secret: [`Ticket`] compares in constant time, its
//! `Debug` and every error message of this module leave it out, and only
//! functions documented as exposing it ([`Ticket::as_str`],
//! [`StaTicket::encode`], [`StaTicket::to_text`]) hand it out. The `Display`
//! of [`StaTicket`] is masked as well, so `%ticket` in a log line is safe.
//!
//! Callers: the SOCKSv5 and CGP front ends (decode), the STA (generate,
//! compare), the store (encode into an `.ica` file).

use std::fmt;
use std::str::FromStr;

use subtle::ConstantTimeEq;

/// Most characters an STA ID may have.
pub const MAX_STA_ID_LEN: usize = 16;

/// Exact length of the secret part of an STA ticket.
pub const TICKET_LEN: usize = 32;

/// Longest valid ticket text: `;` + 2-digit version + `;` + STA ID + `;` + ticket.
pub const MAX_TEXT_LEN: usize = 1 + 2 + 1 + MAX_STA_ID_LEN + 1 + TICKET_LEN;

/// The characters a [`Ticket`] is made of, in the order [`Ticket::generate`] maps
/// random bytes onto them.
const TICKET_ALPHABET: &[u8; 36] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

/// Field separator of the ticket text.
const SEPARATOR: u8 = b';';

/// How many characters of the secret `Debug`/`Display` show before the ellipsis.
const SHOWN_SECRET_CHARS: usize = 4;

/// Ticket text version, the `VER` field.
///
/// Only [`TicketVersion::V40`] tickets may be used with session reliability
/// (CGP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TicketVersion {
    /// `10`.
    V10,
    /// `20`.
    V20,
    /// `22`.
    V22,
    /// `40`, the version session reliability needs.
    V40,
}

impl TicketVersion {
    /// Every version, oldest first.
    pub const ALL: [TicketVersion; 4] = [Self::V10, Self::V20, Self::V22, Self::V40];

    /// The two digits written in the `VER` field.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::V10 => "10",
            Self::V20 => "20",
            Self::V22 => "22",
            Self::V40 => "40",
        }
    }

    /// Whether a ticket of this version may be redeemed over CGP (session
    /// reliability); true for [`TicketVersion::V40`] only.
    pub fn supports_reliability(self) -> bool {
        self == Self::V40
    }

    /// Parses the `VER` field.
    ///
    /// Errors: [`TicketError::UnknownVersion`] for two digits that name no
    /// version, [`TicketError::BadVersionField`] for anything else.
    pub fn decode(field: &[u8]) -> Result<Self, TicketError> {
        match field {
            b"10" => Ok(Self::V10),
            b"20" => Ok(Self::V20),
            b"22" => Ok(Self::V22),
            b"40" => Ok(Self::V40),
            &[tens @ b'0'..=b'9', ones @ b'0'..=b'9'] => Err(TicketError::UnknownVersion(
                (tens - b'0') * 10 + (ones - b'0'),
            )),
            _ => Err(TicketError::BadVersionField { len: field.len() }),
        }
    }
}

impl fmt::Display for TicketVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TicketVersion {
    type Err = TicketError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::decode(s.as_bytes())
    }
}

/// The identity of the STA that issued a ticket, the `STA_ID` field.
///
/// 0 to [`MAX_STA_ID_LEN`] characters, each an ASCII letter, digit, `_` or
/// `-` (Gatehouse decides this charset; it keeps the ID safe in URLs, logs,
/// config keys and the ticket text, which uses `;` as separator). Case is
/// kept and significant. Not a secret. Stored inline, so it is `Copy`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StaId {
    /// Invariant: `len <= MAX_STA_ID_LEN` and `bytes[..len]` are valid STA ID
    /// characters (ASCII); the rest are zero.
    len: u8,
    bytes: [u8; MAX_STA_ID_LEN],
}

impl StaId {
    /// Validates an STA ID.
    ///
    /// Errors: [`TicketError::StaIdTooLong`] past [`MAX_STA_ID_LEN`] bytes,
    /// [`TicketError::StaIdBadChar`] for a byte outside the charset.
    pub fn decode(field: &[u8]) -> Result<Self, TicketError> {
        if field.len() > MAX_STA_ID_LEN {
            return Err(TicketError::StaIdTooLong { len: field.len() });
        }
        let mut bytes = [0; MAX_STA_ID_LEN];
        for (at, (&byte, slot)) in field.iter().zip(bytes.iter_mut()).enumerate() {
            if !is_sta_id_char(byte) {
                return Err(TicketError::StaIdBadChar { at, byte });
            }
            *slot = byte;
        }
        Ok(Self {
            // Cannot truncate: checked against MAX_STA_ID_LEN (16) above.
            len: field.len() as u8,
            bytes,
        })
    }

    /// The ID as text.
    pub fn as_str(&self) -> &str {
        let used = &self.bytes[..usize::from(self.len)];
        // Invariant: `used` is ASCII (checked in `decode`), so this never
        // falls back.
        std::str::from_utf8(used).unwrap_or_default()
    }

    /// Whether the ID is the empty string (allowed by the grammar).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl fmt::Debug for StaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("StaId").field(&self.as_str()).finish()
    }
}

impl fmt::Display for StaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for StaId {
    type Err = TicketError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::decode(s.as_bytes())
    }
}

impl TryFrom<&str> for StaId {
    type Error = TicketError;

    fn try_from(s: &str) -> Result<Self, Self::Error> {
        Self::decode(s.as_bytes())
    }
}

/// The secret part of an STA ticket: exactly [`TICKET_LEN`] characters from
/// `A-Z` and `0-9` (about 165 bits when generated by [`Ticket::generate`]).
///
/// `==` runs in constant time (`subtle`). `Debug` shows only the first four
/// characters. There is deliberately no `Display` and no `Ord`. `Hash` is
/// implemented so that an STA can key a map by ticket; pair it with a keyed
/// hasher (the std `HashMap` default) so bucket timing says nothing useful.
#[derive(Clone)]
pub struct Ticket([u8; TICKET_LEN]);

impl Ticket {
    /// Validates the secret part of a ticket.
    ///
    /// Errors: [`TicketError::TicketLength`] unless exactly [`TICKET_LEN`]
    /// bytes, [`TicketError::TicketBadChar`] for a byte outside `A-Z0-9`
    /// (the error names the position, not the byte).
    pub fn decode(field: &[u8]) -> Result<Self, TicketError> {
        let Ok(bytes) = <[u8; TICKET_LEN]>::try_from(field) else {
            return Err(TicketError::TicketLength { len: field.len() });
        };
        if let Some(at) = bytes.iter().position(|b| !is_ticket_char(*b)) {
            return Err(TicketError::TicketBadChar { at });
        }
        Ok(Self(bytes))
    }

    /// Draws a fresh ticket from `fill`, which must fill its argument with
    /// bytes from a CSPRNG (the caller owns the RNG; this crate has none).
    ///
    /// Each character comes from one random byte by rejection sampling:
    /// bytes `>= 252` (7 × 36) are dropped, the rest map to
    /// `ALPHABET[byte % 36]`, so every character is uniform over `A-Z0-9`.
    ///
    /// Errors: [`GenerateError`] if `fill` yields only rejected bytes for
    /// 4 096 bytes in a row (a broken RNG; never happens with a real one).
    pub fn generate(fill: &mut impl FnMut(&mut [u8])) -> Result<Self, GenerateError> {
        // 252 is the largest multiple of 36 that fits in a byte.
        const ACCEPT_BELOW: u8 = 252;
        // Each draw expects ~0.5 rejected bytes; 64 draws of 64 bytes without
        // 32 accepted ones means the source is broken.
        const MAX_DRAWS: usize = 64;
        let mut out = [0; TICKET_LEN];
        let mut filled = 0;
        let mut pool = [0; 64];
        for _ in 0..MAX_DRAWS {
            fill(&mut pool);
            for &byte in pool.iter().filter(|b| **b < ACCEPT_BELOW) {
                let Some(slot) = out.get_mut(filled) else {
                    break;
                };
                *slot = TICKET_ALPHABET[usize::from(byte % 36)];
                filled += 1;
            }
            if filled == TICKET_LEN {
                return Ok(Self(out));
            }
        }
        Err(GenerateError)
    }

    /// The secret as text. **Exposes the secret**: use it only to put the
    /// ticket on the wire or in an `.ica` file, never in a log.
    pub fn as_str(&self) -> &str {
        // Invariant: the bytes are ASCII (checked in `decode`, produced from
        // the alphabet in `generate`), so this never falls back.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl PartialEq for Ticket {
    /// Constant-time comparison: the time taken does not depend on where the
    /// two tickets first differ.
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl Eq for Ticket {}

impl std::hash::Hash for Ticket {
    /// Hashes the bytes, consistent with `==` (equal exactly when the bytes are).
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl ConstantTimeEq for Ticket {
    fn ct_eq(&self, other: &Self) -> subtle::Choice {
        self.0.ct_eq(&other.0)
    }
}

impl fmt::Debug for Ticket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ticket(\"{}\")", Masked(self))
    }
}

impl FromStr for Ticket {
    type Err = TicketError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::decode(s.as_bytes())
    }
}

impl TryFrom<&str> for Ticket {
    type Error = TicketError;

    fn try_from(s: &str) -> Result<Self, Self::Error> {
        Self::decode(s.as_bytes())
    }
}

/// A whole STA ticket: `;VER;STA_ID;TICKET`.
///
/// `Debug` and `Display` mask the secret (`;40;STA01;ABCD…`); use
/// [`StaTicket::encode`] or [`StaTicket::to_text`] for the wire form.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StaTicket {
    /// The `VER` field.
    pub version: TicketVersion,
    /// The STA that issued the ticket and must redeem it.
    pub sta_id: StaId,
    /// The secret.
    pub ticket: Ticket,
}

impl StaTicket {
    /// Parses the full ticket text, as received in a SOCKSv5 domain field, a
    /// CGP security-ticket capability or an `.ica` `Address=` value.
    ///
    /// Strict: exactly the grammar in the module docs, no surrounding
    /// whitespace (see [`StaTicket::decode_ica_address`] for the tolerant
    /// variant). Errors: [`TicketError::Malformed`] without a leading `;` or
    /// without exactly three fields, else the error of the first bad field.
    pub fn decode(text: &[u8]) -> Result<Self, TicketError> {
        let Some((&SEPARATOR, fields)) = text.split_first() else {
            return Err(TicketError::Malformed);
        };
        let mut fields = fields.splitn(4, |b| *b == SEPARATOR);
        let (Some(version), Some(sta_id), Some(ticket), None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err(TicketError::Malformed);
        };
        Ok(Self {
            version: TicketVersion::decode(version)?,
            sta_id: StaId::decode(sta_id)?,
            ticket: Ticket::decode(ticket)?,
        })
    }

    /// Parses the value of an `.ica` `Address=` line that holds a ticket:
    /// like [`StaTicket::decode`], but tolerates surrounding ASCII
    /// whitespace and a leading `Address=` key (the whole line).
    pub fn decode_ica_address(value: &str) -> Result<Self, TicketError> {
        let value = value.trim_ascii();
        let value = value.strip_prefix("Address=").unwrap_or(value);
        Self::decode(value.trim_ascii().as_bytes())
    }

    /// Appends the wire form `;VER;STA_ID;TICKET` to `out`. **Exposes the
    /// secret.** Appends at most [`MAX_TEXT_LEN`] bytes.
    pub fn encode(&self, out: &mut String) {
        out.reserve(MAX_TEXT_LEN);
        out.push(char::from(SEPARATOR));
        out.push_str(self.version.as_str());
        out.push(char::from(SEPARATOR));
        out.push_str(self.sta_id.as_str());
        out.push(char::from(SEPARATOR));
        out.push_str(self.ticket.as_str());
    }

    /// The wire form `;VER;STA_ID;TICKET` as a new string. **Exposes the
    /// secret.**
    pub fn to_text(&self) -> String {
        let mut out = String::with_capacity(MAX_TEXT_LEN);
        self.encode(&mut out);
        out
    }
}

impl fmt::Display for StaTicket {
    /// The masked form `;40;STA01;ABCD…`, safe for logs; not parseable.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            ";{};{};{}",
            self.version,
            self.sta_id,
            Masked(&self.ticket)
        )
    }
}

impl FromStr for StaTicket {
    type Err = TicketError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::decode(s.as_bytes())
    }
}

impl TryFrom<&str> for StaTicket {
    type Error = TicketError;

    fn try_from(s: &str) -> Result<Self, Self::Error> {
        Self::decode(s.as_bytes())
    }
}

/// Why a ticket text (or one of its fields) was rejected. Never contains the
/// secret or any byte of the ticket field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TicketError {
    /// No leading `;`, or not exactly three `;`-separated fields after it.
    #[error("malformed sta ticket: expected ;VER;STA_ID;TICKET")]
    Malformed,
    /// The version field is two digits but no known version.
    #[error("unknown sta ticket version {0:02}")]
    UnknownVersion(u8),
    /// The version field is not two digits.
    #[error("sta ticket version field of {len} bytes is not two digits")]
    BadVersionField {
        /// Length of the version field.
        len: usize,
    },
    /// The STA ID is longer than [`MAX_STA_ID_LEN`].
    #[error("sta id of {len} bytes is longer than 16")]
    StaIdTooLong {
        /// Length of the STA ID field.
        len: usize,
    },
    /// The STA ID holds a byte outside letters, digits, `_` and `-`.
    #[error("sta id byte {byte:#04x} at {at} is not a letter, digit, '_' or '-'")]
    StaIdBadChar {
        /// Offset in the STA ID field.
        at: usize,
        /// The offending byte (the STA ID is not secret).
        byte: u8,
    },
    /// The ticket field is not exactly [`TICKET_LEN`] bytes.
    #[error("ticket of {len} bytes, expected 32")]
    TicketLength {
        /// Length of the ticket field.
        len: usize,
    },
    /// The ticket field holds a byte outside `A-Z0-9`; the byte itself is not
    /// reported because it is part of the secret.
    #[error("ticket byte at {at} is not an uppercase letter or digit")]
    TicketBadChar {
        /// Offset in the ticket field.
        at: usize,
    },
}

/// The random source given to [`Ticket::generate`] produced nothing usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("random source yielded only rejected bytes; is it broken?")]
pub struct GenerateError;

/// Displays the first [`SHOWN_SECRET_CHARS`] characters of a ticket and `…`.
struct Masked<'a>(&'a Ticket);

impl fmt::Display for Masked<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = self.0.as_str().get(..SHOWN_SECRET_CHARS).unwrap_or("");
        write!(f, "{shown}…")
    }
}

fn is_sta_id_char(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-'
}

fn is_ticket_char(byte: u8) -> bool {
    byte.is_ascii_uppercase() || byte.is_ascii_digit()
}

#[cfg(test)]
mod tests;

/// Entry points for the fuzz targets in `fuzz/`.
#[cfg(fuzzing)]
pub mod fuzz {
    use super::StaTicket;

    /// Decodes arbitrary bytes as ticket text; whatever decodes must be
    /// exactly the input when encoded again (the grammar has one spelling per
    /// value) and decode to the same value.
    pub fn ticket(data: &[u8]) {
        let Ok(ticket) = StaTicket::decode(data) else {
            return;
        };
        let text = ticket.to_text();
        assert_eq!(text.as_bytes(), data, "ticket text has one spelling");
        assert_eq!(StaTicket::decode(text.as_bytes()), Ok(ticket));
        assert!(text.len() <= super::MAX_TEXT_LEN);
    }
}
