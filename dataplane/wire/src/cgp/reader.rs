//! A bounds-checked reader over a complete packet or capability body.
//!
//! Inside a complete packet a short field is malformed input, not "need
//! more": every read answers [`CgpError::Truncated`] naming the field.

use super::CgpError;
use super::varlen::decode_varlen;
use crate::Progress;

/// Reads fields front to back from a borrowed, complete body.
#[derive(Debug)]
pub(super) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader over all of `body`.
    pub(super) fn new(body: &'a [u8]) -> Self {
        Reader { rest: body }
    }

    /// The next `len` bytes.
    pub(super) fn bytes(&mut self, len: usize, field: &'static str) -> Result<&'a [u8], CgpError> {
        let (head, tail) = self
            .rest
            .split_at_checked(len)
            .ok_or(CgpError::Truncated(field))?;
        self.rest = tail;
        Ok(head)
    }

    /// The next `N` bytes as an array.
    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], CgpError> {
        let (head, tail) = self
            .rest
            .split_first_chunk::<N>()
            .ok_or(CgpError::Truncated(field))?;
        self.rest = tail;
        Ok(*head)
    }

    pub(super) fn u8(&mut self, field: &'static str) -> Result<u8, CgpError> {
        self.array::<1>(field).map(|[byte]| byte)
    }

    pub(super) fn u16(&mut self, field: &'static str) -> Result<u16, CgpError> {
        self.array(field).map(u16::from_le_bytes)
    }

    pub(super) fn u32(&mut self, field: &'static str) -> Result<u32, CgpError> {
        self.array(field).map(u32::from_le_bytes)
    }

    /// `N` reserved bytes, which must all be zero.
    pub(super) fn reserved<const N: usize>(&mut self, field: &'static str) -> Result<(), CgpError> {
        if self.array::<N>(field)? == [0; N] {
            Ok(())
        } else {
            Err(CgpError::NonZeroReserved(field))
        }
    }

    /// A varlen.
    pub(super) fn varlen(&mut self, field: &'static str) -> Result<u16, CgpError> {
        match decode_varlen(self.rest)? {
            Progress::Done { value, consumed } => {
                self.rest = self.rest.get(consumed..).unwrap_or_default();
                Ok(value)
            }
            Progress::NeedMore { .. } => Err(CgpError::Truncated(field)),
        }
    }

    /// A `varlen len` followed by that many bytes.
    pub(super) fn prefixed(&mut self, field: &'static str) -> Result<&'a [u8], CgpError> {
        let len = self.varlen(field)?;
        self.bytes(usize::from(len), field)
    }

    /// Everything not read yet, leaving the reader empty.
    pub(super) fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.rest)
    }

    /// How many bytes are left.
    pub(super) fn remaining(&self) -> usize {
        self.rest.len()
    }

    /// Succeeds only if every byte was read.
    pub(super) fn finish(self, field: &'static str) -> Result<(), CgpError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(CgpError::TrailingBytes {
                field,
                count: self.rest.len(),
            })
        }
    }
}
