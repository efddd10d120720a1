//! CGP, the Common Gateway Protocol that carries session reliability
//! (`shared/design/PROTOCOLS.md` §4; workers listen on port 2598).
//!
//! The engine calls [`decode_connection_preamble`] on the first bytes of a
//! connection that [`crate::detect`] classified as CGP: it checks the
//! signature, reads the first BIND_REQUEST and hands back the security ticket
//! (first connect) or the reconnect ticket (resume) for redemption. The
//! worker simulator in `tools/` uses the rest ([`Frame`], [`BindResponse`],
//! the channel and data messages) to speak the server side.
//!
//! What this module refuses to do: keep state (acknowledgement windows,
//! retransmission buffers and message counters belong to the callers),
//! interpret ticket text (see [`crate::ticket`]), and accept ambiguous input:
//! a value has exactly one encoding it accepts (see the decisions below), so
//! the gateway and the worker cannot read one packet two ways.
//!
//! # Byte layouts
//!
//! Integers are little-endian. `varlen` is 1 byte for values below 128, else
//! 2 bytes `(v & 0x7F) | 0x80, v >> 7` (15 bits, at most 32 767).
//! Layouts marked *(Gatehouse decides)* fill gaps in the public record.
//!
//! ```text
//! connection  = 1A 43 47 50 2F 30 31 ("\x1aCGP/01") BIND_REQUEST-packet ...
//! packet      = varlen len, u8 command, extensions, body   (len = 1 + |extensions| + |body|, >= 1)
//! extensions  = BIND_REQUEST, BIND_RESPONSE:      exactly one flags byte, 00
//!               DATA_REALTIME, DATA_REALTIME_WITH_ACK: none
//!               every other command:               flag bytes [reliability block]
//! flag bytes  = bit 7: another flag byte follows; first byte bit 3 (0x08): a
//!               reliability block follows the flag bytes; every other bit is
//!               reserved and must be 0 (continuation bytes carry no flags yet)
//! reliability = u8 flags (0x01 track, 0x02 ack, others reserved = 0),
//!               [u32 message number if track], [varlen ack delta if ack]
//! ```
//!
//! *(Gatehouse decides)* a tracked message carries its own `u32` message
//! number (the first tracked message of a session is number 1, so
//! `nextMessageNumber = 0` can mean "refused"); an ack delta is the number of
//! the peer's tracked messages newly acknowledged since the sender's previous
//! acknowledgement (acknowledgements are cumulative).
//!
//! Bodies, after the extensions:
//!
//! ```text
//! BIND_REQUEST (01), BIND_RESPONSE (02):
//!   00 00 (reserved), varlen nCaps, nCaps x capability
//! capability  = varlen len, u16 serviceId, u16 capId, 00 00, body
//!               (len counts the 6 header bytes + body; serviceId 0 = core)
//! FINISH_REQUEST (03):          u16 reason                 (Gatehouse decides)
//! FINISH_RESPONSE (04), NOP (05): empty
//! CHANNEL_OPEN_REQUEST (06):    u16 channel, u16 service, varlen len + params
//! CHANNEL_OPEN_RESPONSE (07):   u16 channel, u16 status (0 = opened)
//! CHANNEL_CLOSE (08):           u16 channel, u16 reason (0 = normal)
//! DATA (09), DATA_REALTIME (0A): u16 channel, payload (rest of the packet)
//! DATA_REALTIME_WITH_ACK (0B):  varlen ack delta, u16 channel, payload
//! ```
//!
//! Core capability bodies (service 0):
//!
//! ```text
//! 1 services binding     varlen n, n x (varlen len + service name, u16 service id)
//! 2 endpoint address     varlen len + address text
//! 3 channel monitoring   u16 interval seconds (0 = off)
//! 4 compression          u8 algorithm bitmask (0 = none)
//! 5 session reliability  u8 min version, u8 max version, u8 ack algorithms,
//!                        u32 nextMessageNumber, u8 reconnectFlags (0x01 = ticket
//!                        present, others reserved = 0),
//!                        [u8 ticket version (2), varlen len + reconnect ticket],
//!                        varlen n, n x (varlen len + CHANNEL_OPEN_REQUEST body)
//! 6 security ticket      u8 type (0 = STA ticket), varlen len + ticket text
//! 7 keep-alives          u16 interval seconds (0 = off)
//! 9 reliability params   u16 timeout seconds, u16 window (tracked messages in flight)
//! ```
//!
//! Every field choice above except the signature, the varlen, the packet
//! header, the command codes, the capability header and the order of the
//! security-ticket and session-reliability fields is *Gatehouse decides*.
//!
//! # Decisions
//!
//! - A 2-byte varlen whose value is below 128 (second byte 0) is rejected
//!   ([`CgpError::NonCanonicalVarlen`]): one value, one encoding.
//! - Reserved bytes and reserved flag bits must be zero; they are rejected
//!   otherwise, not ignored, so nothing hides in them.
//! - Bodies are parsed exactly: a known capability or message with bytes left
//!   over is rejected ([`CgpError::TrailingBytes`]).
//! - Unknown capabilities (non-core service, or a core id not listed above)
//!   are kept as [`Capability::Unknown`] and re-encode byte for byte. A
//!   known core capability may appear at most once per BIND
//!   ([`CgpError::DuplicateCapability`]): the gateway and the worker must
//!   read the same ticket.
//! - The stream decoders reject a zero or non-canonical packet length and an
//!   unknown or unexpected command byte as soon as they arrive; all other
//!   checks run once the packet is complete.
//!
//! Decoders never allocate in proportion to a claimed count or length:
//! lists grow one decoded element at a time, and every element consumes
//! input.

mod bind;
mod channel;
mod message;
mod packet;
mod reader;
mod varlen;

#[cfg(test)]
mod tests;

pub use bind::{
    BindRequest, BindResponse, Capability, CapabilityId, ChannelMonitoring, Compression,
    KeepAlives, RECONNECT_TICKET_VERSION, ReconnectInfo, ReconnectTicket, ReliabilityParams,
    SESSION_RELIABILITY_VERSION, SecurityTicket, ServiceBinding, SessionReliability,
    TCP_PROXY_SERVICE, TicketKind,
};
pub use channel::{
    ChannelClose, ChannelOpenRequest, ChannelOpenResponse, Data, DataRealtimeWithAck, OpenStatus,
    Reason,
};
pub use message::{FinishRequest, Frame, Message};
pub use packet::{Extensions, Packet, Reliability, decode_packet, encode_packet};
pub use varlen::{VARLEN_MAX, decode_varlen, encode_varlen};

use crate::Progress;

/// The 7 bytes that open every CGP connection: `"\x1aCGP/01"`.
pub const CGP_SIGNATURE: [u8; 7] = [0x1A, 0x43, 0x47, 0x50, 0x2F, 0x30, 0x31];

/// Why a CGP decoder or encoder refused its input.
///
/// Every variant is the peer's fault when it comes from a decoder, and the
/// caller's when it comes from an encoder.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CgpError {
    /// The connection does not start with [`CGP_SIGNATURE`].
    #[error("bad signature: the connection does not start with \\x1aCGP/01")]
    BadSignature,
    /// The command byte is not one of the commands of [`Command`].
    #[error("unknown command {0:#04x}")]
    UnknownCommand(u8),
    /// A packet of a known command arrived where another one must.
    #[error("expected a {expected:?} packet, got {got:?}")]
    UnexpectedCommand {
        /// The command the decoder was asked for.
        expected: Command,
        /// The command that arrived.
        got: Command,
    },
    /// A packet length of zero: a packet holds at least its command byte.
    #[error("zero-length packet")]
    EmptyPacket,
    /// A value to encode does not fit in a varlen.
    #[error("value {0} does not fit in a varlen (at most 32767)")]
    VarlenOverflow(usize),
    /// A 2-byte varlen holds a value that fits in 1 byte.
    #[error("non-canonical varlen: two bytes for value {0}")]
    NonCanonicalVarlen(u16),
    /// A BIND packet's single flags byte is not zero.
    #[error("{command:?} flags byte must be 0, got {flags:#04x}")]
    NonZeroBindFlags {
        /// BIND_REQUEST or BIND_RESPONSE.
        command: Command,
        /// The flags byte received.
        flags: u8,
    },
    /// An extension flag byte sets a reserved bit.
    #[error("reserved extension flag bits set in {0:#04x}")]
    UnknownExtensionFlags(u8),
    /// A reliability block sets a reserved flag bit.
    #[error("reserved reliability flag bits set in {0:#04x}")]
    UnknownReliabilityFlags(u8),
    /// A session reliability capability sets a reserved reconnect flag bit.
    #[error("reserved reconnect flag bits set in {0:#04x}")]
    UnknownReconnectFlags(u8),
    /// Extensions were given for a command that carries none or only the
    /// zero flags byte (BIND_*, DATA_REALTIME*).
    #[error("{0:?} packets carry no extensions")]
    ExtensionsNotAllowed(Command),
    /// A complete packet (or capability) ends inside a field.
    #[error("truncated {0}")]
    Truncated(&'static str),
    /// A complete packet (or capability) has bytes after its last field.
    #[error("{count} trailing bytes after {field}")]
    TrailingBytes {
        /// What was complete before the extra bytes.
        field: &'static str,
        /// How many bytes were left over.
        count: usize,
    },
    /// Reserved bytes that must be zero are not.
    #[error("non-zero reserved bytes in {0}")]
    NonZeroReserved(&'static str),
    /// A capability's `len` is below its 6 header bytes or runs past the
    /// end of the packet.
    #[error("capability length {len} does not fit: needs 6 to {available} bytes")]
    CapabilityLengthMismatch {
        /// The length the capability claims.
        len: u16,
        /// The bytes left in the packet after the length field.
        available: usize,
    },
    /// A known core capability appears twice in one BIND.
    #[error("core capability {0} appears more than once")]
    DuplicateCapability(u16),
    /// [`Capability::Unknown`] names a core capability this module knows;
    /// encode it with its own variant.
    #[error("core capability {0} must use its own variant, not Unknown")]
    MisfiledCapability(u16),
    /// A packet to encode is longer than a varlen length can say.
    #[error("packet of {0} bytes exceeds the 32767-byte maximum")]
    PacketTooLong(usize),
}

/// A CGP command, the byte after a packet's length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Command {
    /// 01: the client's capabilities and tickets; first packet of a connection.
    BindRequest = 0x01,
    /// 02: the server's answer to the bind.
    BindResponse = 0x02,
    /// 03: a side asks to end the session.
    FinishRequest = 0x03,
    /// 04: the other side agrees to end the session.
    FinishResponse = 0x04,
    /// 05: no operation (carries extensions, e.g. a bare acknowledgement).
    Nop = 0x05,
    /// 06: open a channel to a bound service.
    ChannelOpenRequest = 0x06,
    /// 07: the answer to a channel open.
    ChannelOpenResponse = 0x07,
    /// 08: close a channel.
    ChannelClose = 0x08,
    /// 09: reliable channel data (tracked, acknowledged, resent on resume).
    Data = 0x09,
    /// 0A: real-time channel data, not tracked.
    DataRealtime = 0x0A,
    /// 0B: real-time channel data carrying an acknowledgement.
    DataRealtimeWithAck = 0x0B,
}

impl Command {
    /// Every command, in code order.
    pub const ALL: [Command; 11] = [
        Command::BindRequest,
        Command::BindResponse,
        Command::FinishRequest,
        Command::FinishResponse,
        Command::Nop,
        Command::ChannelOpenRequest,
        Command::ChannelOpenResponse,
        Command::ChannelClose,
        Command::Data,
        Command::DataRealtime,
        Command::DataRealtimeWithAck,
    ];

    /// The command's byte on the wire.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The command for a byte on the wire.
    ///
    /// # Errors
    /// [`CgpError::UnknownCommand`] for any byte outside `0x01..=0x0B`.
    pub fn from_code(code: u8) -> Result<Command, CgpError> {
        Command::ALL
            .into_iter()
            .find(|command| command.code() == code)
            .ok_or(CgpError::UnknownCommand(code))
    }
}

impl TryFrom<u8> for Command {
    type Error = CgpError;

    fn try_from(code: u8) -> Result<Self, Self::Error> {
        Command::from_code(code)
    }
}

/// A channel number, chosen by the side that opens the channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelId(pub u16);

/// A service number: in a capability header 0 means core CGP; in a channel
/// open it is the id a services-binding capability gave the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceId(pub u16);

impl ServiceId {
    /// The service of the core capabilities.
    pub const CORE: ServiceId = ServiceId(0);
}

/// The number of a tracked message (session reliability).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageNumber(pub u32);

impl MessageNumber {
    /// In a BIND_RESPONSE: the server refuses to resume the session.
    pub const REFUSED: MessageNumber = MessageNumber(0);
}

/// Checks the connection signature.
///
/// Answers `NeedMore { at_least: 7 }` while the input is a shorter prefix of
/// [`CGP_SIGNATURE`], and `Done { consumed: 7 }` once it holds all of it.
///
/// # Errors
/// [`CgpError::BadSignature`] as soon as one byte differs.
pub fn decode_signature(input: &[u8]) -> Result<Progress<()>, CgpError> {
    let available = input.len().min(CGP_SIGNATURE.len());
    if input.get(..available) != CGP_SIGNATURE.get(..available) {
        return Err(CgpError::BadSignature);
    }
    if available < CGP_SIGNATURE.len() {
        return Ok(Progress::NeedMore {
            at_least: CGP_SIGNATURE.len(),
        });
    }
    Ok(Progress::Done {
        value: (),
        consumed: CGP_SIGNATURE.len(),
    })
}

/// Writes [`CGP_SIGNATURE`] to `out`.
pub fn encode_signature(out: &mut Vec<u8>) {
    out.extend_from_slice(&CGP_SIGNATURE);
}

/// Reads what a client sends first: the signature and its BIND_REQUEST.
///
/// On `Done`, `consumed` is 7 plus the BIND_REQUEST packet's length: the
/// bytes to forward to the worker verbatim. Anything after them belongs to
/// the next packet.
///
/// # Errors
/// [`CgpError::BadSignature`], [`CgpError::UnexpectedCommand`] when the first
/// packet is not a BIND_REQUEST, and every error of [`BindRequest::decode`].
pub fn decode_connection_preamble(input: &[u8]) -> Result<Progress<BindRequest<'_>>, CgpError> {
    let signature_len = match decode_signature(input)? {
        Progress::Done { consumed, .. } => consumed,
        Progress::NeedMore { at_least } => return Ok(Progress::NeedMore { at_least }),
    };
    let rest = input.get(signature_len..).unwrap_or_default();
    Ok(match BindRequest::decode(rest)? {
        Progress::Done { value, consumed } => Progress::Done {
            value,
            consumed: signature_len + consumed,
        },
        Progress::NeedMore { at_least } => Progress::NeedMore {
            at_least: signature_len + at_least,
        },
    })
}

/// Writes the signature and `bind` as a BIND_REQUEST packet to `out`.
///
/// # Errors
/// Every error of [`BindRequest::encode`]; `out` is then left as it was.
pub fn encode_connection_preamble(
    bind: &BindRequest<'_>,
    out: &mut Vec<u8>,
) -> Result<(), CgpError> {
    let start = out.len();
    encode_signature(out);
    bind.encode(out).inspect_err(|_| out.truncate(start))
}

/// Entry points for the fuzz targets in `fuzz/fuzz_targets/cgp_*.rs`.
///
/// Each runs one decoder on arbitrary bytes and asserts its contract:
/// `consumed <= len`, `NeedMore.at_least > len`, and a decoded value
/// re-encodes to bytes that decode to the same value. The unit tests run
/// them on arbitrary bytes too.
#[cfg(any(fuzzing, test))]
#[allow(clippy::unwrap_used, clippy::expect_used)]
pub mod fuzz {
    use super::*;

    fn check_progress<T>(progress: &Progress<T>, len: usize) {
        match progress {
            Progress::Done { consumed, .. } => assert!(*consumed <= len),
            Progress::NeedMore { at_least } => assert!(*at_least > len),
        }
    }

    /// Fuzzes [`decode_signature`].
    pub fn signature(data: &[u8]) {
        if let Ok(progress) = decode_signature(data) {
            check_progress(&progress, data.len());
            if progress.done().is_some() {
                assert!(data.starts_with(&CGP_SIGNATURE));
            }
        }
    }

    /// Fuzzes [`decode_varlen`] and [`encode_varlen`].
    pub fn varlen(data: &[u8]) {
        if let Ok(progress) = decode_varlen(data) {
            check_progress(&progress, data.len());
            if let Some((value, consumed)) = progress.done() {
                let mut out = Vec::new();
                encode_varlen(usize::from(value), &mut out).expect("decoded value fits");
                assert_eq!(out, data[..consumed]);
            }
        }
    }

    /// Fuzzes [`decode_packet`] and [`encode_packet`].
    pub fn packet(data: &[u8]) {
        if let Ok(progress) = decode_packet(data) {
            check_progress(&progress, data.len());
            if let Some((packet, _)) = progress.done() {
                let mut out = Vec::new();
                encode_packet(&packet, &mut out).expect("decoded packet encodes");
                let (again, consumed) = decode_packet(&out).unwrap().done().unwrap();
                assert_eq!(again, packet);
                assert_eq!(consumed, out.len());
            }
        }
    }

    /// Fuzzes [`Frame::decode`] and [`Frame::encode`] (every command).
    pub fn frame(data: &[u8]) {
        if let Ok(progress) = Frame::decode(data) {
            check_progress(&progress, data.len());
            if let Some((frame, _)) = progress.done() {
                let mut out = Vec::new();
                frame.encode(&mut out).expect("decoded frame encodes");
                let (again, _) = Frame::decode(&out).unwrap().done().unwrap();
                assert_eq!(again, frame);
            }
        }
    }

    /// Fuzzes [`BindRequest::decode`] and [`BindRequest::encode`].
    pub fn bind_request(data: &[u8]) {
        if let Ok(progress) = BindRequest::decode(data) {
            check_progress(&progress, data.len());
            if let Some((bind, consumed)) = progress.done() {
                let mut out = Vec::new();
                bind.encode(&mut out).expect("decoded bind encodes");
                let (again, _) = BindRequest::decode(&out).unwrap().done().unwrap();
                assert_eq!(again, bind);
                // BIND packets have one encoding per value.
                assert_eq!(out, data[..consumed]);
            }
        }
    }

    /// Fuzzes [`BindResponse::decode`] and [`BindResponse::encode`].
    pub fn bind_response(data: &[u8]) {
        if let Ok(progress) = BindResponse::decode(data) {
            check_progress(&progress, data.len());
            if let Some((bind, consumed)) = progress.done() {
                let mut out = Vec::new();
                bind.encode(&mut out).expect("decoded bind encodes");
                let (again, _) = BindResponse::decode(&out).unwrap().done().unwrap();
                assert_eq!(again, bind);
                assert_eq!(out, data[..consumed]);
            }
        }
    }

    /// Fuzzes the channel bodies: open request, open response, close.
    pub fn channel(data: &[u8]) {
        if let Ok(open) = ChannelOpenRequest::decode_body(data) {
            let mut out = Vec::new();
            open.encode_body(&mut out).expect("decoded open encodes");
            assert_eq!(out, data);
        }
        if let Ok(response) = ChannelOpenResponse::decode_body(data) {
            let mut out = Vec::new();
            response.encode_body(&mut out);
            assert_eq!(out, data);
        }
        if let Ok(close) = ChannelClose::decode_body(data) {
            let mut out = Vec::new();
            close.encode_body(&mut out);
            assert_eq!(out, data);
        }
    }

    /// Fuzzes the data bodies: DATA / DATA_REALTIME and DATA_REALTIME_WITH_ACK.
    pub fn data(data: &[u8]) {
        if let Ok(message) = Data::decode_body(data) {
            let mut out = Vec::new();
            message.encode_body(&mut out);
            assert_eq!(out, data);
        }
        if let Ok(message) = DataRealtimeWithAck::decode_body(data) {
            let mut out = Vec::new();
            message.encode_body(&mut out).expect("decoded ack encodes");
            assert_eq!(out, data);
        }
    }

    /// Fuzzes [`decode_connection_preamble`] and [`encode_connection_preamble`].
    pub fn preamble(data: &[u8]) {
        if let Ok(progress) = decode_connection_preamble(data) {
            check_progress(&progress, data.len());
            if let Some((bind, consumed)) = progress.done() {
                let mut out = Vec::new();
                encode_connection_preamble(&bind, &mut out).expect("decoded bind encodes");
                assert_eq!(out, data[..consumed]);
            }
        }
    }
}
