//! Packet framing: `varlen len`, command byte, extensions, body.

use super::reader::Reader;
use super::varlen::{decode_varlen, encode_varlen};
use super::{CgpError, Command, MessageNumber, VARLEN_MAX};
use crate::Progress;

/// Flag byte bit 7: another flag byte follows.
const FLAG_MORE: u8 = 0x80;
/// First flag byte bit 3: a reliability block follows the flag bytes.
const FLAG_RELIABILITY: u8 = 0x08;
/// Reliability block flag: a `u32` message number follows.
const RELIABILITY_TRACK: u8 = 0x01;
/// Reliability block flag: a varlen ack delta follows.
const RELIABILITY_ACK: u8 = 0x02;

/// One framed packet, its body borrowed from the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<'a> {
    /// The command byte.
    pub command: Command,
    /// The header extensions after the command byte (always empty for
    /// BIND_* and DATA_REALTIME*).
    pub extensions: Extensions,
    /// The bytes after the extensions, up to the end of the packet.
    pub body: &'a [u8],
}

/// The header extensions of a packet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Extensions {
    /// The reliability block, if the flags announce one.
    pub reliability: Option<Reliability>,
}

/// The reliability extension: message tracking and acknowledgement.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reliability {
    /// The number of this tracked message; `None` for an untracked one.
    pub track: Option<MessageNumber>,
    /// How many of the peer's tracked messages this acknowledges beyond the
    /// sender's previous acknowledgement (at most [`VARLEN_MAX`]).
    pub ack: Option<u16>,
}

/// Reads one packet from the start of `input`.
///
/// Answers `NeedMore` until the whole packet (as its length says) is in
/// `input`, except that an unknown command byte is rejected as soon as it
/// arrives. On `Done`, `consumed` is the length field plus the packet.
///
/// # Errors
/// [`CgpError::EmptyPacket`], [`CgpError::UnknownCommand`],
/// [`CgpError::NonCanonicalVarlen`], and the extension errors:
/// [`CgpError::NonZeroBindFlags`], [`CgpError::UnknownExtensionFlags`],
/// [`CgpError::UnknownReliabilityFlags`], [`CgpError::Truncated`].
pub fn decode_packet(input: &[u8]) -> Result<Progress<Packet<'_>>, CgpError> {
    decode_packet_of(input, None)
}

/// Appends `packet` to `out`.
///
/// # Errors
/// [`CgpError::ExtensionsNotAllowed`] for a reliability block on BIND_* or
/// DATA_REALTIME*, [`CgpError::VarlenOverflow`] for an ack delta above
/// [`VARLEN_MAX`], [`CgpError::PacketTooLong`]. `out` is then unchanged.
pub fn encode_packet(packet: &Packet<'_>, out: &mut Vec<u8>) -> Result<(), CgpError> {
    let start = out.len();
    encode_packet_with(packet.command, &packet.extensions, out, |out| {
        // Checked before copying, so a huge body fails without a copy.
        let len = packet.body.len();
        if len > usize::from(VARLEN_MAX) {
            return Err(CgpError::PacketTooLong(len));
        }
        out.extend_from_slice(packet.body);
        Ok(())
    })
    .inspect_err(|_| out.truncate(start))
}

/// [`decode_packet`], rejecting any command but `expected` as soon as the
/// command byte arrives.
pub(super) fn decode_packet_of(
    input: &[u8],
    expected: Option<Command>,
) -> Result<Progress<Packet<'_>>, CgpError> {
    let (len, header) = match decode_varlen(input)? {
        Progress::Done { value, consumed } => (usize::from(value), consumed),
        Progress::NeedMore { at_least } => return Ok(Progress::NeedMore { at_least }),
    };
    if len == 0 {
        return Err(CgpError::EmptyPacket);
    }
    let after_header = input.get(header..).unwrap_or_default();
    let Some(&code) = after_header.first() else {
        return Ok(Progress::NeedMore {
            at_least: header + 1,
        });
    };
    let command = Command::from_code(code)?;
    if let Some(expected) = expected.filter(|expected| *expected != command) {
        return Err(CgpError::UnexpectedCommand {
            expected,
            got: command,
        });
    }
    let Some(packet) = after_header.get(..len) else {
        return Ok(Progress::NeedMore {
            at_least: header + len,
        });
    };
    let (extensions, body) = decode_extensions(command, packet.get(1..).unwrap_or_default())?;
    Ok(Progress::Done {
        value: Packet {
            command,
            extensions,
            body,
        },
        consumed: header + len,
    })
}

/// Appends a packet whose body `write_body` appends: length, command,
/// extensions, body. May leave partial output on error.
pub(super) fn encode_packet_with(
    command: Command,
    extensions: &Extensions,
    out: &mut Vec<u8>,
    write_body: impl FnOnce(&mut Vec<u8>) -> Result<(), CgpError>,
) -> Result<(), CgpError> {
    let start = out.len();
    out.push(command.code());
    encode_extensions(command, extensions, out)?;
    write_body(out)?;
    let len = out.len() - start;
    if len > usize::from(VARLEN_MAX) {
        return Err(CgpError::PacketTooLong(len));
    }
    let mut header = Vec::with_capacity(2);
    encode_varlen(len, &mut header)?;
    out.splice(start..start, header);
    Ok(())
}

/// Splits the extensions of a `command` packet off `rest` (the bytes after
/// the command byte), returning them and the body.
fn decode_extensions(command: Command, rest: &[u8]) -> Result<(Extensions, &[u8]), CgpError> {
    let mut reader = Reader::new(rest);
    let mut extensions = Extensions::default();
    match command {
        Command::BindRequest | Command::BindResponse => {
            let flags = reader.u8("bind flags byte")?;
            if flags != 0 {
                return Err(CgpError::NonZeroBindFlags { command, flags });
            }
        }
        Command::DataRealtime | Command::DataRealtimeWithAck => {}
        _ => {
            let first = reader.u8("extension flags")?;
            if first & !(FLAG_MORE | FLAG_RELIABILITY) != 0 {
                return Err(CgpError::UnknownExtensionFlags(first));
            }
            // Honour the chain; no continuation byte defines a flag yet.
            let mut flags = first;
            while flags & FLAG_MORE != 0 {
                flags = reader.u8("extension flags")?;
                if flags & !FLAG_MORE != 0 {
                    return Err(CgpError::UnknownExtensionFlags(flags));
                }
            }
            if first & FLAG_RELIABILITY != 0 {
                extensions.reliability = Some(decode_reliability(&mut reader)?);
            }
        }
    }
    Ok((extensions, reader.rest()))
}

fn decode_reliability(reader: &mut Reader<'_>) -> Result<Reliability, CgpError> {
    let flags = reader.u8("reliability flags")?;
    if flags & !(RELIABILITY_TRACK | RELIABILITY_ACK) != 0 {
        return Err(CgpError::UnknownReliabilityFlags(flags));
    }
    let track = if flags & RELIABILITY_TRACK != 0 {
        Some(MessageNumber(reader.u32("tracked message number")?))
    } else {
        None
    };
    let ack = if flags & RELIABILITY_ACK != 0 {
        Some(reader.varlen("ack delta")?)
    } else {
        None
    };
    Ok(Reliability { track, ack })
}

fn encode_extensions(
    command: Command,
    extensions: &Extensions,
    out: &mut Vec<u8>,
) -> Result<(), CgpError> {
    match (command, extensions.reliability) {
        (
            Command::BindRequest
            | Command::BindResponse
            | Command::DataRealtime
            | Command::DataRealtimeWithAck,
            Some(_),
        ) => Err(CgpError::ExtensionsNotAllowed(command)),
        (Command::BindRequest | Command::BindResponse, None) => {
            out.push(0);
            Ok(())
        }
        (Command::DataRealtime | Command::DataRealtimeWithAck, None) => Ok(()),
        (_, None) => {
            out.push(0);
            Ok(())
        }
        (_, Some(reliability)) => {
            out.push(FLAG_RELIABILITY);
            let mut flags = 0;
            if reliability.track.is_some() {
                flags |= RELIABILITY_TRACK;
            }
            if reliability.ack.is_some() {
                flags |= RELIABILITY_ACK;
            }
            out.push(flags);
            if let Some(MessageNumber(number)) = reliability.track {
                out.extend_from_slice(&number.to_le_bytes());
            }
            if let Some(ack) = reliability.ack {
                encode_varlen(usize::from(ack), out)?;
            }
            Ok(())
        }
    }
}
