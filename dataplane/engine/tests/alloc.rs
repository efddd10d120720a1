//! No heap allocation per relayed read or write in the steady state.
//!
//! This test binary installs a counting global allocator. Each case's core
//! thread is tagged (its handler factory runs there) and counts into its
//! own slot, so parallel cases do not mix. After a warm-up, relaying four
//! times more bytes must not add allocations: a per-read allocation would
//! add over a thousand.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a failed test"
)]

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use gatehouse_engine::{CoreId, Driver, Forward, HandlerFactory, RelayMode};
use support::*;

struct Counting;

const SLOTS: usize = 8;
static COUNTS: [AtomicU64; SLOTS] = [const { AtomicU64::new(0) }; SLOTS];

thread_local! {
    /// 0: not counted; n: counts into COUNTS[n].
    static SLOT: Cell<usize> = const { Cell::new(0) };
}

fn note_allocation() {
    let slot = SLOT.try_with(Cell::get).unwrap_or(0);
    if slot != 0 {
        COUNTS[slot].fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: delegates every call to the system allocator unchanged; the
// counting touches only a const-initialised thread-local and atomics, which
// never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation();
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// `Forward`, but tags the core thread that builds it.
#[derive(Debug, Clone)]
struct Counted {
    slot: usize,
    inner: Forward,
}

impl HandlerFactory for Counted {
    type Handler = Forward;

    fn build(&self, core: CoreId) -> Forward {
        SLOT.with(|slot| slot.set(self.slot));
        self.inner.build(core)
    }
}

const CHUNK: usize = 64 * 1_024;

/// Sends `chunks` chunks of `size` bytes through the echo path and reads
/// each back.
fn relay_chunks(client: &mut std::net::TcpStream, chunks: usize, size: usize) {
    let data = pattern(size, 3);
    for _ in 0..chunks {
        client.write_all(&data).unwrap();
        assert!(read_n(client, size) == data);
    }
}

fn relaying_more_bytes_allocates_nothing_more(driver: Driver, relay: RelayMode, slot: usize) {
    relaying_more_allocates_nothing_more(driver, relay, slot, CHUNK);
}

/// Small messages keep `relay = "auto"` in its copy phase (io_uring
/// receives and sends through a pooled buffer) instead of splice.
fn relaying_more_messages_allocates_nothing_more(driver: Driver, slot: usize) {
    relaying_more_allocates_nothing_more(driver, RelayMode::Auto, slot, 1_024);
}

fn relaying_more_allocates_nothing_more(
    driver: Driver,
    relay: RelayMode,
    slot: usize,
    size: usize,
) {
    let echo = Echo::start(2);
    let factory = Counted {
        slot,
        inner: Forward::new(echo.addr),
    };
    let engine = start(config(driver, relay), factory);
    let mut client = connect(addr(&engine));
    relay_chunks(&mut client, 16, size); // warm-up: 16 messages each way
    let warm = COUNTS[slot].load(Ordering::Relaxed);
    relay_chunks(&mut client, 64, size); // 64 more
    let after_4 = COUNTS[slot].load(Ordering::Relaxed);
    relay_chunks(&mut client, 256, size); // 256 more
    let after_20 = COUNTS[slot].load(Ordering::Relaxed);
    assert!(warm > 0, "the counter sees the core thread's allocations");
    assert!(
        after_4 - warm <= 4 && after_20 - after_4 <= 4,
        "{driver} {relay} ({size}-byte messages): allocations grew with messages relayed: \
         warm {warm}, +64 messages {}, +256 messages {}",
        after_4 - warm,
        after_20 - after_4
    );
    drop(client);
    engine.shutdown(Duration::ZERO);
    engine.join().unwrap();
}

#[test]
fn splice_relay_allocates_nothing_per_read_under_io_uring() {
    relaying_more_bytes_allocates_nothing_more(Driver::IoUring, RelayMode::Splice, 1);
}

#[test]
fn copy_relay_allocates_nothing_per_read_under_io_uring() {
    relaying_more_bytes_allocates_nothing_more(Driver::IoUring, RelayMode::Copy, 2);
}

#[test]
fn splice_relay_allocates_nothing_per_read_under_legacy() {
    relaying_more_bytes_allocates_nothing_more(Driver::Legacy, RelayMode::Splice, 3);
}

#[test]
fn copy_relay_allocates_nothing_per_read_under_legacy() {
    relaying_more_bytes_allocates_nothing_more(Driver::Legacy, RelayMode::Copy, 4);
}

#[test]
fn auto_relay_copy_phase_allocates_nothing_per_message_under_io_uring() {
    relaying_more_messages_allocates_nothing_more(Driver::IoUring, 5);
}

#[test]
fn auto_relay_copy_phase_allocates_nothing_per_message_under_legacy() {
    relaying_more_messages_allocates_nothing_more(Driver::Legacy, 6);
}

#[test]
fn auto_relay_allocates_nothing_per_read_in_bulk_under_io_uring() {
    relaying_more_bytes_allocates_nothing_more(Driver::IoUring, RelayMode::Auto, 7);
}
