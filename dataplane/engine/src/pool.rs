//! Per-core pool of relay buffers.
//!
//! Each buffer is a `Vec<u8>` with [`BUF_SIZE`] bytes of capacity (one TLS
//! record), so it moves in and out of monoio's owned-buffer reads and
//! writes without copying or allocating. A session takes a buffer per copy
//! direction and gives it back when the direction ends; the free list keeps
//! at most `keep` buffers so a burst does not pin memory forever.
//!
//! Nor does a burst pin resident memory: past the first [`RESIDENT`] free
//! buffers (kept ready, no page faults on reuse), a returned buffer's
//! pages go back to the kernel (`madvise(MADV_DONTNEED)`) before it joins
//! the free list or is freed. Freeing alone would not do it: the allocator
//! keeps freed pages resident until its thread allocates again, and an
//! idle core does not. So 10,000 sessions that were all busy at once and
//! went quiet cost what 10,000 sessions that never were cost, plus at most
//! `RESIDENT` buffers per core.
//!
//! A buffer that is inside an in-flight operation when its session is
//! cancelled belongs to the driver until the kernel completes; it is freed
//! then instead of returning here, which is rare and harmless.

use std::cell::RefCell;
use std::sync::OnceLock;

/// Capacity of every pooled buffer: one TLS record of plaintext.
pub const BUF_SIZE: usize = 16 * 1_024;

/// Free buffers a pool keeps resident; the rest of its free list holds no
/// pages until used again.
pub const RESIDENT: usize = 16;

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
        buf.clear();
        if free.len() >= RESIDENT {
            discard_pages(&mut buf);
        }
        // A buffer that some caller grew or shrank is not ours to keep.
        if buf.capacity() == BUF_SIZE && free.len() < self.keep {
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

/// Gives the whole pages inside `buf`'s capacity back to the kernel: they
/// read as zeros when next touched, and hold no memory until then. `buf`
/// must be empty (its bytes are not kept).
#[allow(unsafe_code)]
fn discard_pages(buf: &mut Vec<u8>) {
    static PAGE: OnceLock<usize> = OnceLock::new();
    let page = *PAGE.get_or_init(|| {
        // SAFETY: sysconf reads a system constant; no memory is involved.
        let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        usize::try_from(size)
            .ok()
            .filter(|&s| s > 0)
            .unwrap_or(4_096)
    });
    buf.clear();
    let start = buf.as_mut_ptr() as usize;
    let end = start + buf.capacity();
    let first = start.next_multiple_of(page);
    let last = end - end % page;
    if last > first {
        // SAFETY: [first, last) lies inside the allocation `buf` owns
        // exclusively (its capacity) and is page-aligned. The heap is
        // private anonymous memory, for which MADV_DONTNEED only makes the
        // pages read as zeros when next touched; the buffer is empty, so no
        // byte of it is relied on, and the allocator keeps nothing inside
        // a block it has handed out. A failure leaves the pages as they
        // were, which is harmless.
        let _ = unsafe {
            libc::madvise(
                first as *mut libc::c_void,
                last - first,
                libc::MADV_DONTNEED,
            )
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pages of `buf`'s capacity resident in memory (`mincore`).
    #[allow(unsafe_code)]
    fn resident_pages(buf: &Vec<u8>) -> usize {
        // SAFETY: sysconf reads a system constant.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        let start = (buf.as_ptr() as usize).next_multiple_of(page);
        let end = buf.as_ptr() as usize + buf.capacity();
        let pages = (end - start) / page;
        let mut vec = vec![0_u8; pages];
        // SAFETY: the range is page-aligned and inside `buf`'s allocation;
        // `vec` has one byte per page, as mincore writes.
        let rc =
            unsafe { libc::mincore(start as *mut libc::c_void, pages * page, vec.as_mut_ptr()) };
        assert_eq!(rc, 0);
        vec.iter().filter(|&&b| b & 1 == 1).count()
    }

    #[test]
    fn past_the_resident_few_returned_buffers_give_their_pages_back() {
        let pool = BufPool::new(RESIDENT + 8);
        let mut loans: Vec<_> = (0..RESIDENT + 4).map(|_| pool.take()).collect();
        let mut bufs: Vec<Vec<u8>> = loans.iter_mut().map(PooledBuf::lend).collect();
        for buf in &mut bufs {
            buf.resize(BUF_SIZE, 0xa5);
            assert!(resident_pages(buf) >= 3, "written pages are resident");
        }
        for (loan, buf) in loans.iter_mut().zip(bufs) {
            loan.restore(buf);
        }
        drop(loans);
        assert_eq!(pool.idle(), RESIDENT + 4);
        let free = pool.free.borrow();
        let (kept, discarded) = free.split_at(RESIDENT);
        assert!(
            kept.iter().all(|b| resident_pages(b) >= 3),
            "the first few stay resident"
        );
        assert!(
            discarded.iter().all(|b| resident_pages(b) == 0),
            "the rest hold no pages"
        );
        drop(free);
        // A discarded buffer is an ordinary buffer again when taken.
        let mut loan = pool.take();
        let mut buf = loan.lend();
        assert_eq!((buf.len(), buf.capacity()), (0, BUF_SIZE));
        buf.extend_from_slice(&[7; BUF_SIZE]);
        assert!(buf.iter().all(|&b| b == 7));
        loan.restore(buf);
    }

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
