//! The rendezvous preamble: the first bytes the gateway writes on a data
//! connection it opens to a connector's rendezvous listener, naming the
//! server-to-client flow the connection carries (DESIGN.md §2B).
//!
//! ```text
//! offset  size  field
//!      0     4  magic "GHRV"
//!      4     1  version 0x01
//!      5     8  flow id, big-endian
//! ```
//!
//! The connector reads it, pairs the connection with the back-end server's
//! connection parked under that flow id, and relays the bytes that follow.
//! [`decode`] answers done / need more / a typed rejection; the first byte
//! that cannot belong to a preamble rejects at once.

use crate::Progress;

/// The magic that opens a preamble.
pub const MAGIC: [u8; 4] = *b"GHRV";
/// The version this build writes and reads.
pub const VERSION: u8 = 0x01;
/// Bytes in a preamble.
pub const PREAMBLE_BYTES: usize = 13;

/// A flow id as the preamble carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Preamble {
    /// The flow the connection carries.
    pub flow: u64,
}

/// Why a preamble was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PreambleError {
    /// The bytes do not open with the magic.
    #[error("not a rendezvous preamble")]
    BadMagic,
    /// A version this build does not speak.
    #[error("unsupported rendezvous version {0:#04x}")]
    UnknownVersion(u8),
}

impl Preamble {
    /// The preamble's bytes.
    pub fn encode(&self) -> [u8; PREAMBLE_BYTES] {
        let mut out = [0; PREAMBLE_BYTES];
        out[..4].copy_from_slice(&MAGIC);
        out[4] = VERSION;
        out[5..].copy_from_slice(&self.flow.to_be_bytes());
        out
    }
}

/// Reads a preamble from the start of `input`.
///
/// Errors: [`PreambleError::BadMagic`] as soon as a byte of the magic
/// differs, [`PreambleError::UnknownVersion`].
pub fn decode(input: &[u8]) -> Result<Progress<Preamble>, PreambleError> {
    let magic_seen = input.len().min(MAGIC.len());
    if input[..magic_seen] != MAGIC[..magic_seen] {
        return Err(PreambleError::BadMagic);
    }
    if let Some(&version) = input.get(4)
        && version != VERSION
    {
        return Err(PreambleError::UnknownVersion(version));
    }
    let Some(flow) = input.get(5..PREAMBLE_BYTES) else {
        return Ok(Progress::NeedMore {
            at_least: PREAMBLE_BYTES,
        });
    };
    let mut bytes = [0; 8];
    bytes.copy_from_slice(flow);
    Ok(Progress::Done {
        value: Preamble {
            flow: u64::from_be_bytes(bytes),
        },
        consumed: PREAMBLE_BYTES,
    })
}

/// Entry points for the fuzz targets in `fuzz/`.
#[cfg(any(fuzzing, test))]
pub mod fuzz {
    use super::{PREAMBLE_BYTES, Preamble, decode};
    use crate::Progress;

    /// Decodes arbitrary bytes; a decoded preamble must encode back to the
    /// bytes it consumed.
    pub fn preamble(data: &[u8]) {
        if let Ok(Progress::Done { value, consumed }) = decode(data) {
            assert_eq!(consumed, PREAMBLE_BYTES);
            assert_eq!(
                &Preamble { flow: value.flow }.encode()[..],
                &data[..consumed]
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_the_documented_bytes() {
        let bytes = Preamble { flow: 0x0102 }.encode();
        assert_eq!(&bytes, b"GHRV\x01\x00\x00\x00\x00\x00\x00\x01\x02");
    }

    #[test]
    fn every_prefix_needs_more_then_the_same_answer_forever() {
        let mut bytes = Preamble { flow: u64::MAX - 5 }.encode().to_vec();
        for len in 0..PREAMBLE_BYTES {
            assert_eq!(
                decode(&bytes[..len]),
                Ok(Progress::NeedMore {
                    at_least: PREAMBLE_BYTES
                })
            );
        }
        let done = Ok(Progress::Done {
            value: Preamble { flow: u64::MAX - 5 },
            consumed: PREAMBLE_BYTES,
        });
        assert_eq!(decode(&bytes), done);
        bytes.extend_from_slice(b"payload after the preamble");
        assert_eq!(decode(&bytes), done);
    }

    #[test]
    fn rejects_a_wrong_magic_at_its_first_byte() {
        assert_eq!(decode(b"X"), Err(PreambleError::BadMagic));
        assert_eq!(decode(b"GHRX"), Err(PreambleError::BadMagic));
        assert_eq!(decode(b"\x05\x01\x00"), Err(PreambleError::BadMagic));
    }

    #[test]
    fn rejects_an_unknown_version() {
        assert_eq!(
            decode(b"GHRV\x02"),
            Err(PreambleError::UnknownVersion(0x02))
        );
    }

    #[test]
    fn fuzz_entry_accepts_arbitrary_bytes() {
        for data in [
            &b""[..],
            b"GHRV",
            b"GHRV\x01\x00\x00\x00\x00\x00\x00\x00\x07",
            b"\xff\xff",
        ] {
            fuzz::preamble(data);
        }
    }
}
