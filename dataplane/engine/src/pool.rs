//! Per-core pool of relay buffers.
//!
//! Each buffer is a `Vec<u8>` with [`BUF_SIZE`] bytes of capacity (one TLS
//! record), so it moves in and out of monoio's owned-buffer reads and
//! writes without copying or allocating. A session takes a buffer per copy
//! direction and gives it back when the direction ends; the free list keeps
//! at most `keep` buffers so a burst does not pin memory forever.
//!
//! A buffer that is inside an in-flight operation when its session is
//! cancelled belongs to the driver until the kernel completes; it is freed
//! then instead of returning here, which is rare and harmless.

use std::cell::RefCell;

/// Capacity of every pooled buffer: one TLS record of plaintext.
pub const BUF_SIZE: usize = 16 * 1_024;

/// A core's free list of relay buffers. Not `Send`: one per core.
#[derive(Debug)]
pub struct BufPool {
    free: RefCell<Vec<Vec<u8>>>,
    keep: usize,
}

impl BufPool {
    /// A pool that keeps at most `keep` idle buffers.
    pub fn new(keep: usize) -> Self {
        Self {
            free: RefCell::new(Vec::with_capacity(keep)),
            keep,
        }
    }

    /// An empty buffer (length 0) with [`BUF_SIZE`] capacity, from the free
    /// list when it has one, else freshly allocated.
    pub fn take(&self) -> PooledBuf<'_> {
        let buf = self
            .free
            .borrow_mut()
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(BUF_SIZE));
        PooledBuf {
            pool: self,
            buf: Some(buf),
        }
    }

    /// Idle buffers on the free list now.
    pub fn idle(&self) -> usize {
        self.free.borrow().len()
    }

    fn give(&self, mut buf: Vec<u8>) {
        let mut free = self.free.borrow_mut();
        // A buffer that some caller grew or shrank is not ours to keep.
        if buf.capacity() == BUF_SIZE && free.len() < self.keep {
            buf.clear();
            free.push(buf);
        }
    }
}

/// A buffer on loan from a [`BufPool`]; returns to the pool when dropped.
///
/// Move the bytes into an operation with [`PooledBuf::lend`] and put them
/// back with [`PooledBuf::restore`] when the operation hands them back.
#[derive(Debug)]
pub struct PooledBuf<'p> {
    pool: &'p BufPool,
    buf: Option<Vec<u8>>,
}

impl PooledBuf<'_> {
    /// Takes the vector out for an owned-buffer operation. Returns an empty
    /// vector if it is already lent (a caller bug, not a panic).
    pub fn lend(&mut self) -> Vec<u8> {
        self.buf.take().unwrap_or_default()
    }

    /// Puts the vector back after the operation returned it.
    pub fn restore(&mut self, buf: Vec<u8>) {
        self.buf = Some(buf);
    }
}

impl Drop for PooledBuf<'_> {
    fn drop(&mut self) {
        if let Some(buf) = self.buf.take() {
            self.pool.give(buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returned_buffers_are_reused_empty() {
        let pool = BufPool::new(4);
        {
            let mut loan = pool.take();
            let mut buf = loan.lend();
            buf.extend_from_slice(b"hello");
            loan.restore(buf);
        }
        assert_eq!(pool.idle(), 1);
        let mut loan = pool.take();
        let buf = loan.lend();
        assert!(buf.is_empty());
        assert_eq!(buf.capacity(), BUF_SIZE);
    }

    #[test]
    fn keeps_no_more_than_its_limit() {
        let pool = BufPool::new(2);
        let loans: Vec<_> = (0..5).map(|_| pool.take()).collect();
        drop(loans);
        assert_eq!(pool.idle(), 2);
    }

    #[test]
    fn a_lent_buffer_that_never_returns_is_not_counted() {
        let pool = BufPool::new(2);
        let mut loan = pool.take();
        let buf = loan.lend();
        drop(loan);
        drop(buf);
        assert_eq!(pool.idle(), 0);
    }
}
