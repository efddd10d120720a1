//! The control plane's view of spliced sessions: what the cores reported
//! over the channel (`SessionOpened`, `SessionClosed`), kept for the REST
//! API and `gatehousectl` to come.
//!
//! Open sessions are held until a core reports them closed; the most recent
//! [`RECENTLY_CLOSED`] closed ones are kept with their byte counts. Both are
//! bounded: open sessions by the cores' connection limits, closed ones by
//! the constant. Session ids come from [`SessionIds`].

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use gatehouse_channel::{ClientAddr, CoreId, Generation, SessionId, WorkerAddr};
use parking_lot::Mutex;

/// How many closed sessions [`SessionTable::recently_closed`] remembers.
pub const RECENTLY_CLOSED: usize = 1_024;

/// Bits of a [`SessionId`] that count sessions within one generation.
const SEQUENCE_BITS: u32 = 40;
const SEQUENCE_MASK: u64 = (1 << SEQUENCE_BITS) - 1;
const GENERATION_MASK: u64 = 0xFF_FFFF;

/// Allocates session ids: the low 24 bits of the control plane's channel
/// generation above a 40-bit sequence, so ids from a restarted control
/// plane (a new generation on the same segment) never meet live ones.
#[derive(Debug)]
pub struct SessionIds {
    prefix: u64,
    next: AtomicU64,
}

impl SessionIds {
    /// Starts the sequence at 1 for `generation` (so no id is 0).
    pub fn new(generation: Generation) -> Self {
        Self {
            prefix: (u64::from(generation.0) & GENERATION_MASK) << SEQUENCE_BITS,
            next: AtomicU64::new(1),
        }
    }

    /// The next id; unique for 2^40 - 1 calls.
    pub fn allocate(&self) -> SessionId {
        let sequence = self.next.fetch_add(1, Ordering::Relaxed) & SEQUENCE_MASK;
        SessionId(self.prefix | sequence)
    }
}

/// One session as the cores reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionRecord {
    /// The session.
    pub session: SessionId,
    /// The core that splices it.
    pub core: CoreId,
    /// The client.
    pub client: ClientAddr,
    /// The worker it reaches.
    pub worker: WorkerAddr,
    /// When the core reported it open (wall clock, for display).
    pub opened_at: SystemTime,
    /// Bytes client -> worker; known at close (zero while open).
    pub bytes_up: u64,
    /// Bytes worker -> client; known at close (zero while open).
    pub bytes_down: u64,
    /// From splice start to close; known at close (zero while open).
    pub duration: Duration,
}

/// Open and recently closed sessions. Shared between the per-core channel
/// tasks (and, later, the REST API); every method takes the lock briefly.
#[derive(Debug, Default)]
pub struct SessionTable {
    inner: Mutex<Tables>,
}

#[derive(Debug, Default)]
struct Tables {
    open: HashMap<SessionId, SessionRecord>,
    closed: VecDeque<SessionRecord>,
}

impl SessionTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a session a core reported open. A second report for the
    /// same id replaces the first.
    pub fn open(&self, record: SessionRecord) {
        self.inner.lock().open.insert(record.session, record);
    }

    /// Moves `session` to the recently closed list with its counts and
    /// returns the final record; `None` if it was not open (never reported,
    /// or reported by a previous generation).
    pub fn close(
        &self,
        session: SessionId,
        bytes_up: u64,
        bytes_down: u64,
        duration: Duration,
    ) -> Option<SessionRecord> {
        let mut tables = self.inner.lock();
        let mut record = tables.open.remove(&session)?;
        record.bytes_up = bytes_up;
        record.bytes_down = bytes_down;
        record.duration = duration;
        if tables.closed.len() == RECENTLY_CLOSED {
            tables.closed.pop_front();
        }
        tables.closed.push_back(record);
        Some(record)
    }

    /// The open session `session`, if any.
    pub fn get(&self, session: SessionId) -> Option<SessionRecord> {
        self.inner.lock().open.get(&session).copied()
    }

    /// How many sessions are open.
    pub fn open_count(&self) -> usize {
        self.inner.lock().open.len()
    }

    /// Every open session, in no particular order.
    pub fn open_sessions(&self) -> Vec<SessionRecord> {
        self.inner.lock().open.values().copied().collect()
    }

    /// The last closed sessions, oldest first (at most [`RECENTLY_CLOSED`]).
    pub fn recently_closed(&self) -> Vec<SessionRecord> {
        self.inner.lock().closed.iter().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;

    fn record(session: SessionId) -> SessionRecord {
        let addr: SocketAddr = "127.0.0.1:1494".parse().unwrap();
        SessionRecord {
            session,
            core: CoreId(0),
            client: ClientAddr("127.0.0.1:50000".parse().unwrap()),
            worker: WorkerAddr(addr),
            opened_at: SystemTime::now(),
            bytes_up: 0,
            bytes_down: 0,
            duration: Duration::ZERO,
        }
    }

    #[test]
    fn session_ids_carry_the_generation_and_never_repeat() {
        let first = SessionIds::new(Generation(1));
        let second = SessionIds::new(Generation(2));
        let a = first.allocate();
        let b = first.allocate();
        let c = second.allocate();
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.0 >> SEQUENCE_BITS, 1);
        assert_eq!(c.0 >> SEQUENCE_BITS, 2);
        assert_ne!(a.0, 0);
    }

    #[test]
    fn closing_moves_a_session_to_the_recent_list_with_its_bytes() {
        let table = SessionTable::new();
        table.open(record(SessionId(7)));
        assert_eq!(table.open_count(), 1);
        let closed = table
            .close(SessionId(7), 10, 20, Duration::from_millis(5))
            .unwrap();
        assert_eq!((closed.bytes_up, closed.bytes_down), (10, 20));
        assert_eq!(table.open_count(), 0);
        assert_eq!(table.recently_closed(), vec![closed]);
        assert!(table.close(SessionId(7), 1, 1, Duration::ZERO).is_none());
    }

    #[test]
    fn recent_list_is_bounded() {
        let table = SessionTable::new();
        for id in 0..(RECENTLY_CLOSED as u64 + 10) {
            table.open(record(SessionId(id)));
            table.close(SessionId(id), 0, 0, Duration::ZERO);
        }
        let closed = table.recently_closed();
        assert_eq!(closed.len(), RECENTLY_CLOSED);
        assert_eq!(closed[0].session, SessionId(10));
    }
}
