//! The CGP variable-length integer: 1 byte below 128, else 2 bytes
//! `(v & 0x7F) | 0x80, v >> 7`, 15 bits in all.

use super::CgpError;
use crate::Progress;

/// The largest value a varlen holds (15 bits).
pub const VARLEN_MAX: u16 = 0x7FFF;

/// Bit 7 of the first byte: a second byte follows.
const MORE: u8 = 0x80;

/// Reads one varlen from the start of `input`.
///
/// Answers `NeedMore` on an empty input or a lone first byte with bit 7 set,
/// else `Done` with 1 or 2 bytes consumed.
///
/// # Errors
/// [`CgpError::NonCanonicalVarlen`] for a 2-byte form whose second byte is 0
/// (the value fits in one byte, so only the 1-byte form is accepted).
pub fn decode_varlen(input: &[u8]) -> Result<Progress<u16>, CgpError> {
    match *input {
        [] => Ok(Progress::NeedMore { at_least: 1 }),
        [low, ..] if low & MORE == 0 => Ok(Progress::Done {
            value: u16::from(low),
            consumed: 1,
        }),
        [_] => Ok(Progress::NeedMore { at_least: 2 }),
        [low, high, ..] => {
            let value = u16::from(low & !MORE) | (u16::from(high) << 7);
            if high == 0 {
                return Err(CgpError::NonCanonicalVarlen(value));
            }
            Ok(Progress::Done { value, consumed: 2 })
        }
    }
}

/// Appends `value` as a varlen to `out` (1 byte below 128, else 2).
///
/// # Errors
/// [`CgpError::VarlenOverflow`] when `value` exceeds [`VARLEN_MAX`]; `out`
/// is then unchanged.
pub fn encode_varlen(value: usize, out: &mut Vec<u8>) -> Result<(), CgpError> {
    let mut bytes = [0; 2];
    let len = varlen_bytes(value, &mut bytes)?;
    out.extend_from_slice(bytes.get(..len).unwrap_or_default());
    Ok(())
}

/// Writes `value` as a varlen into `bytes`, returning how many bytes it took.
fn varlen_bytes(value: usize, bytes: &mut [u8; 2]) -> Result<usize, CgpError> {
    let value = u16::try_from(value)
        .ok()
        .filter(|v| *v <= VARLEN_MAX)
        .ok_or(CgpError::VarlenOverflow(value))?;
    // Both casts keep the bits the layout asks for: `value` is below 2^15,
    // so `value >> 7` fits in 8 bits.
    let [low, high] = [(value & 0x7F) as u8, (value >> 7) as u8];
    if high == 0 {
        bytes[0] = low;
        Ok(1)
    } else {
        *bytes = [low | MORE, high];
        Ok(2)
    }
}

/// Runs `write`, then inserts the varlen of the bytes it appended in front
/// of them: the `varlen len + bytes` form used throughout CGP.
///
/// # Errors
/// What `write` returns, or [`CgpError::VarlenOverflow`] when it wrote more
/// than [`VARLEN_MAX`] bytes. `out` may hold partial output on error; the
/// public encoders truncate it.
pub(super) fn encode_prefixed(
    out: &mut Vec<u8>,
    write: impl FnOnce(&mut Vec<u8>) -> Result<(), CgpError>,
) -> Result<(), CgpError> {
    let start = out.len();
    write(out)?;
    let mut bytes = [0; 2];
    let len = varlen_bytes(out.len() - start, &mut bytes)?;
    out.splice(start..start, bytes.into_iter().take(len));
    Ok(())
}

/// Appends `varlen len` + `bytes`.
///
/// # Errors
/// [`CgpError::VarlenOverflow`] when `bytes` is longer than [`VARLEN_MAX`].
pub(super) fn encode_bytes(bytes: &[u8], out: &mut Vec<u8>) -> Result<(), CgpError> {
    encode_varlen(bytes.len(), out)?;
    out.extend_from_slice(bytes);
    Ok(())
}
