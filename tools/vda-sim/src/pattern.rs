//! The deterministic byte stream a `STREAM <n>` request answers with.
//!
//! Byte `i` of every stream is byte `i % 8` (little-endian) of
//! `splitmix64(i / 8)`. The pattern has no short period, so a lost,
//! duplicated or reordered run of bytes shows up as a mismatch at a known
//! offset, and a reader can check a stream piece by piece without keeping
//! it ([`PatternChecker`]).

/// The pattern byte at `offset` from the start of a stream.
pub fn byte_at(offset: u64) -> u8 {
    let word = splitmix64(offset / 8).to_le_bytes();
    // `offset % 8` is below 8, so the index is in bounds.
    word[(offset % 8) as usize]
}

/// Fills `buf` with the pattern bytes starting at `offset`.
pub fn fill(offset: u64, buf: &mut [u8]) {
    let mut at = offset;
    let mut rest = buf;
    while !rest.is_empty() {
        let word = splitmix64(at / 8).to_le_bytes();
        // `at % 8` is below 8: the word has bytes from `start` on.
        let start = (at % 8) as usize;
        let from_word = word.get(start..).unwrap_or_default();
        let n = from_word.len().min(rest.len());
        let (head, tail) = rest.split_at_mut(n);
        head.copy_from_slice(from_word.get(..n).unwrap_or_default());
        rest = tail;
        at += n as u64;
    }
}

/// The first byte of a received stream that differs from the pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("stream byte at offset {offset} is {got:#04x}, the pattern says {expected:#04x}")]
pub struct Mismatch {
    /// Offset of the byte from the start of the stream.
    pub offset: u64,
    /// The pattern byte.
    pub expected: u8,
    /// The byte received.
    pub got: u8,
}

/// Checks a received stream against the pattern, one piece at a time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PatternChecker {
    offset: u64,
}

impl PatternChecker {
    /// A checker at offset 0.
    pub fn new() -> Self {
        PatternChecker::default()
    }

    /// Checks the next piece of the stream and advances past it.
    ///
    /// # Errors
    /// [`Mismatch`] for the first wrong byte; the checker then stays at the
    /// start of `piece`.
    pub fn feed(&mut self, piece: &[u8]) -> Result<(), Mismatch> {
        let mut expected = [0; 4096];
        let mut at = self.offset;
        for block in piece.chunks(expected.len()) {
            let expected = expected.get_mut(..block.len()).unwrap_or_default();
            fill(at, expected);
            if let Some(i) = block.iter().zip(&*expected).position(|(a, b)| a != b) {
                let offset = at + i as u64;
                return Err(Mismatch {
                    offset,
                    expected: byte_at(offset),
                    got: block.get(i).copied().unwrap_or_default(),
                });
            }
            at += block.len() as u64;
        }
        self.offset = at;
        Ok(())
    }

    /// Bytes checked so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }
}

/// SplitMix64 (Steele, Lea, Flood 2014): a bijective 64-bit mixer.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_matches_byte_at_from_any_offset() {
        let mut buf = [0; 37];
        fill(13, &mut buf);
        for (i, byte) in buf.iter().enumerate() {
            assert_eq!(*byte, byte_at(13 + i as u64));
        }
    }

    #[test]
    fn checker_accepts_the_pattern_in_uneven_pieces() {
        let mut all = vec![0; 10_000];
        fill(0, &mut all);
        let mut checker = PatternChecker::new();
        for piece in all.chunks(977) {
            checker.feed(piece).unwrap();
        }
        assert_eq!(checker.offset(), 10_000);
    }

    #[test]
    fn checker_reports_a_lost_byte_at_its_offset() {
        let mut all = vec![0; 100];
        fill(0, &mut all);
        all.remove(40);
        let mut checker = PatternChecker::new();
        let mismatch = checker.feed(&all).unwrap_err();
        assert_eq!(mismatch.offset, 40);
        assert_eq!(checker.offset(), 0, "a failed piece does not advance");
    }

    #[test]
    fn checker_reports_a_duplicated_run() {
        let mut all = vec![0; 4096];
        fill(0, &mut all);
        let mut checker = PatternChecker::new();
        checker.feed(&all[..2048]).unwrap();
        // Replaying the last 1024 bytes, as a resend of an acknowledged
        // message would, must fail.
        assert!(checker.feed(&all[1024..2048]).is_err());
    }
}
