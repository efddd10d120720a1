//! Per-core counters.
//!
//! Each core owns its [`CoreCounters`]: plain `Cell`s, touched only by the
//! core's thread, so the hot path pays no atomic or lock. A [`CoreStats`]
//! snapshot crosses threads on request (see `EngineControl::stats`).

use std::cell::Cell;

use gatehouse_channel::CoreId;

/// Why a core closed a connection right after accepting it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// The core already holds `max_connections_per_core` connections.
    MaxConnections,
    /// The core already holds `max_pending_handshakes_per_core` connections
    /// that have not finished their handshake.
    MaxPendingHandshakes,
}

impl Refusal {
    /// The `reason` field of the refusal's log event.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MaxConnections => "max_connections",
            Self::MaxPendingHandshakes => "max_pending_handshakes",
        }
    }
}

/// The live counters of one core. Only that core's thread touches them.
#[derive(Debug, Default)]
pub(crate) struct CoreCounters {
    pub(crate) accepted: Cell<u64>,
    pub(crate) refused_max_connections: Cell<u64>,
    pub(crate) refused_max_pending: Cell<u64>,
    pub(crate) accept_errors: Cell<u64>,
    pub(crate) active: Cell<u64>,
    pub(crate) pending: Cell<u64>,
    pub(crate) closed: Cell<u64>,
    pub(crate) idle_timeouts: Cell<u64>,
    pub(crate) drain_cuts: Cell<u64>,
    pub(crate) bytes_up: Cell<u64>,
    pub(crate) bytes_down: Cell<u64>,
}

pub(crate) fn bump(cell: &Cell<u64>, by: u64) {
    cell.set(cell.get().wrapping_add(by));
}

pub(crate) fn drop_one(cell: &Cell<u64>) {
    cell.set(cell.get().saturating_sub(1));
}

impl CoreCounters {
    pub(crate) fn refused(&self, reason: Refusal) {
        match reason {
            Refusal::MaxConnections => bump(&self.refused_max_connections, 1),
            Refusal::MaxPendingHandshakes => bump(&self.refused_max_pending, 1),
        }
    }

    pub(crate) fn snapshot(&self, core: CoreId) -> CoreStats {
        CoreStats {
            core,
            accepted: self.accepted.get(),
            refused_max_connections: self.refused_max_connections.get(),
            refused_max_pending_handshakes: self.refused_max_pending.get(),
            accept_errors: self.accept_errors.get(),
            active: self.active.get(),
            pending: self.pending.get(),
            closed: self.closed.get(),
            idle_timeouts: self.idle_timeouts.get(),
            drain_cuts: self.drain_cuts.get(),
            bytes_up: self.bytes_up.get(),
            bytes_down: self.bytes_down.get(),
        }
    }
}

/// A copy of one core's counters at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoreStats {
    /// The core the numbers belong to.
    pub core: CoreId,
    /// Connections accepted and handed to the handler.
    pub accepted: u64,
    /// Connections closed at accept: the core was at `max_connections_per_core`.
    pub refused_max_connections: u64,
    /// Connections closed at accept: too many handshakes in progress.
    pub refused_max_pending_handshakes: u64,
    /// `accept(2)` failures (descriptor exhaustion and the like).
    pub accept_errors: u64,
    /// Connections open now.
    pub active: u64,
    /// Open connections that have not finished their handshake.
    pub pending: u64,
    /// Sessions ended (each logged one `session_closed` event).
    pub closed: u64,
    /// Sessions ended by the idle timeout.
    pub idle_timeouts: u64,
    /// Sessions cut at the drain deadline.
    pub drain_cuts: u64,
    /// Bytes relayed client → back end.
    pub bytes_up: u64,
    /// Bytes relayed back end → client.
    pub bytes_down: u64,
}

impl CoreStats {
    /// Sums the counters of several cores (the `core` of the result is the
    /// first core's, or 0 for an empty input).
    pub fn total(stats: &[CoreStats]) -> CoreStats {
        let mut sum = CoreStats {
            core: stats.first().map_or(CoreId(0), |s| s.core),
            ..CoreStats::zero()
        };
        for s in stats {
            sum.accepted += s.accepted;
            sum.refused_max_connections += s.refused_max_connections;
            sum.refused_max_pending_handshakes += s.refused_max_pending_handshakes;
            sum.accept_errors += s.accept_errors;
            sum.active += s.active;
            sum.pending += s.pending;
            sum.closed += s.closed;
            sum.idle_timeouts += s.idle_timeouts;
            sum.drain_cuts += s.drain_cuts;
            sum.bytes_up += s.bytes_up;
            sum.bytes_down += s.bytes_down;
        }
        sum
    }

    fn zero() -> CoreStats {
        CoreStats {
            core: CoreId(0),
            accepted: 0,
            refused_max_connections: 0,
            refused_max_pending_handshakes: 0,
            accept_errors: 0,
            active: 0,
            pending: 0,
            closed: 0,
            idle_timeouts: 0,
            drain_cuts: 0,
            bytes_up: 0,
            bytes_down: 0,
        }
    }
}
