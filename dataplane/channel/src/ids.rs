//! Identities and addresses that travel in channel messages.
//!
//! Each is a newtype so that swapping two arguments (a session id for a
//! request id, a client address for a worker address) does not compile.

use std::fmt;
use std::net::SocketAddr;

/// A data-plane core: the index of its ring pair in the segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CoreId(pub u16);

/// A spliced session, allocated by the control plane in a verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub u64);

/// A server-to-client flow (a back-end server's connection through a
/// connector), allocated by the control plane in a flow verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowId(pub u64);

/// Correlates an answer with its request on one ring pair.
///
/// The side that asks allocates it with [`RequestIds`], which puts the
/// asking side's generation in the top bits, so an answer meant for a
/// previous incarnation of that side never matches a new pending request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u64);

/// How many times a side has attached to a segment; bumped on every attach.
///
/// Zero means "never attached". Every message carries its sender's
/// generation; a receiver drops messages from an older incarnation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Generation(pub u32);

/// One per-core counter in a stats report (the engine owns the numbering).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CounterId(pub u16);

/// The client's address as the data plane accepted it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientAddr(pub SocketAddr);

/// The worker (desktop) address a verdict sends the session to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WorkerAddr(pub SocketAddr);

/// Milliseconds on the host's monotonic clock (`CLOCK_MONOTONIC`).
///
/// The clock is shared by every process of the host, so heartbeats written
/// by one plane are comparable with the other plane's reading of "now".
/// Sans-IO code takes it as an argument; only [`MonotonicMillis::now`] reads
/// the clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MonotonicMillis(pub u64);

impl MonotonicMillis {
    /// Reads `CLOCK_MONOTONIC`.
    pub fn now() -> Self {
        // libc rather than rustix: rustix's vDSO lookup crashes under
        // valgrind, which the channel's tests run under.
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec for the call and
        // CLOCK_MONOTONIC is always available on Linux; the return value is
        // 0 then, and on the impossible failure `ts` stays zero.
        let _ = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        // The monotonic clock counts from boot: never negative.
        let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
        let nanos = u64::try_from(ts.tv_nsec).unwrap_or(0);
        Self(secs.saturating_mul(1_000).saturating_add(nanos / 1_000_000))
    }

    /// Milliseconds from `earlier` to `self`, zero if `earlier` is later.
    pub fn since(self, earlier: MonotonicMillis) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

impl fmt::Display for CoreId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#018x}", self.0)
    }
}

impl fmt::Display for FlowId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#018x}", self.0)
    }
}

impl fmt::Display for Generation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Bits of a [`RequestId`] that count requests within one generation.
const SEQUENCE_BITS: u32 = 40;
const SEQUENCE_MASK: u64 = (1 << SEQUENCE_BITS) - 1;
const GENERATION_MASK: u64 = 0xFF_FFFF;

/// Allocates request ids for one ring pair: the low 24 bits of the
/// generation above a 40-bit sequence.
///
/// The sequence wraps after 2^40 requests (12 days at one million a second),
/// far beyond any deadline, so a wrapped id never meets a live pending entry.
#[derive(Debug, Clone)]
pub struct RequestIds {
    prefix: u64,
    next: u64,
}

impl RequestIds {
    /// Starts the sequence at zero for `generation`.
    pub fn new(generation: Generation) -> Self {
        Self {
            prefix: (u64::from(generation.0) & GENERATION_MASK) << SEQUENCE_BITS,
            next: 0,
        }
    }

    /// The next id; never repeats within 2^40 calls.
    pub fn allocate(&mut self) -> RequestId {
        let id = RequestId(self.prefix | (self.next & SEQUENCE_MASK));
        self.next = self.next.wrapping_add(1);
        id
    }

    /// The generation bits an id was allocated under (low 24 bits).
    pub fn generation_bits(id: RequestId) -> u32 {
        // Masked to 24 bits: always fits.
        u32::try_from((id.0 >> SEQUENCE_BITS) & GENERATION_MASK).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_of_different_generations_never_collide() {
        let mut old = RequestIds::new(Generation(1));
        let mut new = RequestIds::new(Generation(2));
        let a: Vec<_> = (0..1_000).map(|_| old.allocate()).collect();
        let b: Vec<_> = (0..1_000).map(|_| new.allocate()).collect();
        assert!(a.iter().all(|id| !b.contains(id)));
        assert_eq!(RequestIds::generation_bits(a[5]), 1);
        assert_eq!(RequestIds::generation_bits(b[5]), 2);
    }

    #[test]
    fn request_ids_count_up_from_the_generation_prefix() {
        let mut ids = RequestIds::new(Generation(3));
        assert_eq!(ids.allocate(), RequestId(3 << 40));
        assert_eq!(ids.allocate(), RequestId((3 << 40) | 1));
    }

    #[cfg(not(miri))]
    #[test]
    fn monotonic_clock_does_not_go_back() {
        let a = MonotonicMillis::now();
        let b = MonotonicMillis::now();
        assert!(b >= a);
        assert_eq!(a.since(b), 0);
    }
}
