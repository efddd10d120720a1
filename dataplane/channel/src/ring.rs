//! The single-producer/single-consumer ring over a raw memory region.
//!
//! The ring knows nothing of mmap or eventfd: it runs on any region of
//! [`ring_bytes`] bytes aligned to [`RING_ALIGN`], so the tests at the
//! bottom run on heap memory (and under Miri where it is installed).
//!
//! ```text
//! offset  size               written by   field
//!      0  128                producer     tail: u64 (next index to publish)
//!    128  128                consumer     head: u64 (next index to read)
//!    256  128                both         armed: u32 (consumer asleep)
//!    384  slots x SLOT_BYTES producer     slot[index & (slots - 1)]
//! ```
//!
//! Indices count up forever (u64); `tail - head` is the fill. The producer
//! owns a slot from the moment `head` shows it free until it stores
//! `tail` (Release); the consumer owns it from its Acquire load of `tail`
//! until it stores `head` (Release). Slots are copied in and out with raw
//! copies, never borrowed, so a misbehaving peer process can garble bytes
//! (which the decoder refuses) but never make this process read out of
//! bounds: indices are masked and fills are checked.
//!
//! Wake-up protocol (Dekker, all SeqCst): a consumer about to sleep stores
//! `armed = 1` then loads `tail`; a producer stores `tail` then loads
//! `armed`. At least one of them sees the other's store: either the consumer
//! sees the new message and stays awake, or the producer sees `armed` and
//! rings the doorbell. The producer clears `armed` with a swap, so a burst
//! rings once.

use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::message::SLOT_BYTES;

/// Alignment of a ring (and of the cache-line padding inside it). 128, not
/// 64: adjacent-line prefetch pulls cache lines in pairs.
pub(crate) const RING_ALIGN: usize = 128;

/// A value alone on its (pair of) cache lines.
#[repr(C, align(128))]
pub(crate) struct CachePadded<T>(pub(crate) T);

#[repr(C)]
struct RingControl {
    tail: CachePadded<AtomicU64>,
    head: CachePadded<AtomicU64>,
    armed: CachePadded<AtomicU32>,
}

const RING_CONTROL_BYTES: usize = size_of::<RingControl>();

/// Bytes of one ring with `slots` slots.
pub(crate) const fn ring_bytes(slots: u32) -> usize {
    RING_CONTROL_BYTES + slots as usize * SLOT_BYTES
}

/// The consumer was asleep; the producer must ring its doorbell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub(crate) struct MustWake(pub(crate) bool);

/// Why a push failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PushError {
    /// Every slot holds an unread message.
    Full,
    /// `head` is ahead of `tail` or further behind than the capacity.
    Corrupt,
}

/// The indices in the ring are impossible: a peer wrote garbage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Corrupt;

/// A ring in some region; the region outlives it (see [`RawRing::new`]).
#[derive(Debug)]
pub(crate) struct RawRing {
    base: NonNull<u8>,
    mask: u64,
    capacity: u64,
}

impl RawRing {
    /// A view of the ring at `base`.
    ///
    /// # Safety
    /// - `base` is aligned to [`RING_ALIGN`] and valid for reads and writes
    ///   of [`ring_bytes`]`(slots)` bytes for as long as the returned value,
    ///   and every producer or consumer built from it, is used;
    /// - the first 384 bytes are zero or were written by this module, and
    ///   nothing but this module touches the region;
    /// - at most one [`Producer`] and one [`Consumer`] use the ring at a time
    ///   (across processes too);
    /// - `slots` is a power of two, at least 2.
    pub(crate) unsafe fn new(base: NonNull<u8>, slots: u32) -> Self {
        debug_assert!(slots.is_power_of_two() && slots >= 2);
        debug_assert_eq!(base.as_ptr().align_offset(RING_ALIGN), 0);
        Self {
            base,
            mask: u64::from(slots) - 1,
            capacity: u64::from(slots),
        }
    }

    fn control(&self) -> &RingControl {
        // SAFETY: by `new`'s contract `base` is aligned and valid for the
        // control block, whose bytes are zero or left by this module: valid
        // atomics. Atomics may be shared and mutated through `&`, by other
        // threads and processes alike.
        unsafe { self.base.cast::<RingControl>().as_ref() }
    }

    fn slot(&self, index: u64) -> *mut u8 {
        // Masked: below `capacity`, which came from a u32.
        let slot = (index & self.mask) as usize;
        // SAFETY: `slot < capacity`, so the offset plus SLOT_BYTES is at most
        // `ring_bytes(capacity)`, inside the region (`new`'s contract).
        unsafe {
            self.base
                .as_ptr()
                .add(RING_CONTROL_BYTES + slot * SLOT_BYTES)
        }
    }

    /// Messages published and not yet read (a snapshot).
    pub(crate) fn fill(&self) -> u64 {
        let c = self.control();
        let tail = c.tail.0.load(Ordering::Acquire);
        tail.wrapping_sub(c.head.0.load(Ordering::Acquire))
    }

    /// Drops every unread message and clears `armed`.
    ///
    /// Only for a ring whose producer and consumer are both known to be
    /// absent except the caller (at attach, with the peer gone): it writes
    /// the consumer's index.
    pub(crate) fn reset_unshared(&self) {
        let c = self.control();
        let tail = c.tail.0.load(Ordering::Acquire);
        c.head.0.store(tail, Ordering::Release);
        c.armed.0.store(0, Ordering::Release);
    }
}

/// The writing end of a ring.
#[derive(Debug)]
pub(crate) struct Producer {
    ring: RawRing,
    tail: u64,
    cached_head: u64,
}

// SAFETY: a Producer is the ring's only writer of `tail` and of free slots;
// it is neither Clone nor Sync, so moving it to another thread keeps that
// single-producer discipline. The region's lifetime is the owner's
// responsibility (RawRing::new) and does not depend on the thread.
unsafe impl Send for Producer {}

impl Producer {
    /// Takes the writing end, resuming at the tail stored in the ring (a
    /// restarted producer continues where its predecessor published).
    ///
    /// # Safety
    /// No other `Producer` of this ring is used while this one is, in this
    /// process or another (the slot protocol gives a free slot to one
    /// writer only).
    pub(crate) unsafe fn new(ring: RawRing) -> Self {
        let c = ring.control();
        let tail = c.tail.0.load(Ordering::Acquire);
        let cached_head = c.head.0.load(Ordering::Acquire);
        Self {
            ring,
            tail,
            cached_head,
        }
    }

    /// Messages published and not yet read by the consumer (a snapshot).
    pub(crate) fn backlog(&self) -> u64 {
        self.ring.fill()
    }

    /// Copies `bytes` (at most `SLOT_BYTES`; longer is cut) into the next
    /// slot and publishes it. Never blocks: a full ring is `Full`.
    pub(crate) fn try_push(&mut self, bytes: &[u8]) -> Result<MustWake, PushError> {
        self.publish(bytes)?;
        Ok(self.take_wake())
    }

    /// Copies `bytes` into the next slot and stores `tail` (SeqCst, the
    /// producer's half of the wake-up protocol).
    fn publish(&mut self, bytes: &[u8]) -> Result<(), PushError> {
        debug_assert!(bytes.len() <= SLOT_BYTES);
        let len = bytes.len().min(SLOT_BYTES);
        let c = self.ring.control();
        if self.tail.wrapping_sub(self.cached_head) >= self.ring.capacity {
            self.cached_head = c.head.0.load(Ordering::Acquire);
            let fill = self.tail.wrapping_sub(self.cached_head);
            if fill > self.ring.capacity {
                return Err(PushError::Corrupt);
            }
            if fill == self.ring.capacity {
                return Err(PushError::Full);
            }
        }
        let slot = self.ring.slot(self.tail);
        // SAFETY: `slot` is valid for SLOT_BYTES >= len bytes (RawRing::slot).
        // The consumer released this slot (its head is past `tail -
        // capacity`, Acquire above or earlier) and will not read it before
        // our Release store of `tail` below, so nobody else accesses it.
        // `bytes` is a Rust slice, not part of the region: no overlap.
        unsafe { ptr::copy_nonoverlapping(bytes.as_ptr(), slot, len) };
        self.tail = self.tail.wrapping_add(1);
        c.tail.0.store(self.tail, Ordering::SeqCst);
        Ok(())
    }

    /// [`Producer::try_push`] that leaves `armed` as it is: publishes
    /// without taking the wake-up. `Ok(true)` when the consumer was armed,
    /// so the message waits for a later [`Producer::take_wake`] (or the
    /// next `try_push`, which sees `armed` and rings).
    pub(crate) fn try_push_quiet(&mut self, bytes: &[u8]) -> Result<bool, PushError> {
        self.publish(bytes)?;
        Ok(self.ring.control().armed.0.load(Ordering::SeqCst) != 0)
    }

    /// Takes the wake-up owed to an armed consumer (after
    /// [`Producer::try_push_quiet`]): `MustWake(true)` when it was still
    /// armed, and is now disarmed, so the caller rings.
    pub(crate) fn take_wake(&mut self) -> MustWake {
        let c = self.ring.control();
        MustWake(c.armed.0.load(Ordering::SeqCst) != 0 && c.armed.0.swap(0, Ordering::SeqCst) != 0)
    }
}

/// The reading end of a ring.
#[derive(Debug)]
pub(crate) struct Consumer {
    ring: RawRing,
    head: u64,
    cached_tail: u64,
}

// SAFETY: a Consumer is the ring's only writer of `head` and only reader of
// published slots; it is neither Clone nor Sync, so moving it to another
// thread keeps the single-consumer discipline.
unsafe impl Send for Consumer {}

impl Consumer {
    /// Takes the reading end, resuming at the head stored in the ring.
    ///
    /// # Safety
    /// No other `Consumer` of this ring is used while this one is, in this
    /// process or another.
    pub(crate) unsafe fn new(ring: RawRing) -> Self {
        let head = ring.control().head.0.load(Ordering::Acquire);
        Self {
            ring,
            head,
            cached_tail: head,
        }
    }

    /// Copies the next message's slot into `out`. `Ok(false)`: empty.
    pub(crate) fn try_pop(&mut self, out: &mut [u8; SLOT_BYTES]) -> Result<bool, Corrupt> {
        if self.head == self.cached_tail {
            self.cached_tail = self.ring.control().tail.0.load(Ordering::Acquire);
            let fill = self.cached_tail.wrapping_sub(self.head);
            if fill > self.ring.capacity {
                self.cached_tail = self.head;
                return Err(Corrupt);
            }
            if fill == 0 {
                return Ok(false);
            }
        }
        let slot = self.ring.slot(self.head);
        // SAFETY: `slot` is valid for SLOT_BYTES (RawRing::slot). The
        // producer published it (Acquire load of `tail` above or earlier)
        // and will not write it again before our Release store of `head`.
        // `out` is a Rust array, not part of the region: no overlap.
        unsafe { ptr::copy_nonoverlapping(slot, out.as_mut_ptr(), SLOT_BYTES) };
        self.head = self.head.wrapping_add(1);
        self.ring
            .control()
            .head
            .0
            .store(self.head, Ordering::Release);
        Ok(true)
    }

    /// Announces that the consumer is about to sleep on its doorbell.
    /// `true`: the ring is still empty, sleep (the next push rings).
    /// `false`: a message arrived meanwhile; `armed` is cleared, do not
    /// sleep.
    pub(crate) fn arm(&mut self) -> bool {
        let c = self.ring.control();
        c.armed.0.store(1, Ordering::SeqCst);
        let tail = c.tail.0.load(Ordering::SeqCst);
        if tail == self.head {
            true
        } else {
            c.armed.0.store(0, Ordering::SeqCst);
            false
        }
    }

    /// Messages published and not yet read (a snapshot).
    pub(crate) fn backlog(&self) -> u64 {
        self.ring.fill()
    }

    /// Clears `armed` after a wake-up (spurious or not).
    pub(crate) fn disarm(&self) {
        self.ring.control().armed.0.store(0, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests;
