//! Per-core counters.
//!
//! Each core owns its [`CoreCounters`]: plain `Cell`s, touched only by the
//! core's thread, so the hot path pays no atomic or lock. A [`CoreStats`]
//! snapshot crosses threads on request (see `EngineControl::stats`).
//!
//! Handler refusals are counted by their `reason` (the same word as the
//! `session_closed` event's) in a small fixed-size table
//! ([`RefusalCounts`]): the vocabulary is fixed by the handlers, so the
//! table never grows, and a snapshot stays `Copy`.

use std::cell::{Cell, RefCell};
use std::fmt;

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
    pub(crate) kills: Cell<u64>,
    pub(crate) reports_dropped: Cell<u64>,
    pub(crate) refusals: RefCell<RefusalCounts>,
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
            kills: self.kills.get(),
            reports_dropped: self.reports_dropped.get(),
            refusals: *self.refusals.borrow(),
        }
    }

    /// Counts a handler refusal under its `reason`.
    pub(crate) fn handler_refused(&self, reason: &'static str) {
        self.refusals.borrow_mut().add(reason, 1);
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
    /// Sessions ended by a kill order from the control plane.
    pub kills: u64,
    /// Session reports (opened, closed) dropped on a full channel.
    pub reports_dropped: u64,
    /// Connections a handler refused, by `reason` (detection, TLS, SOCKS,
    /// ticket redemption): see [`RefusalCounts::get`].
    pub refusals: RefusalCounts,
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
            sum.kills += s.kills;
            sum.reports_dropped += s.reports_dropped;
            for (reason, count) in s.refusals.iter() {
                sum.refusals.add(reason, count);
            }
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
            kills: 0,
            reports_dropped: 0,
            refusals: RefusalCounts::default(),
        }
    }
}

/// Distinct refusal reasons a [`RefusalCounts`] tells apart; any further
/// reason is counted under [`RefusalCounts::OTHER`].
pub const MAX_REFUSAL_REASONS: usize = 48;

/// Refusal counts by reason: a fixed-size table, `Copy`, in the order the
/// reasons first occurred.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct RefusalCounts {
    len: usize,
    entries: [(&'static str, u64); MAX_REFUSAL_REASONS],
}

impl RefusalCounts {
    /// The reason counted when the table is full (a handler grew its
    /// vocabulary past [`MAX_REFUSAL_REASONS`]).
    pub const OTHER: &'static str = "other";

    /// The count for `reason` (0 if never seen).
    pub fn get(&self, reason: &str) -> u64 {
        self.iter()
            .find(|(seen, _)| *seen == reason)
            .map_or(0, |(_, count)| count)
    }

    /// Every reason seen, with its count.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        self.entries.iter().take(self.len).copied()
    }

    /// The sum over every reason.
    pub fn total(&self) -> u64 {
        self.iter().map(|(_, count)| count).sum()
    }

    /// Adds `by` to `reason`'s count.
    pub(crate) fn add(&mut self, reason: &'static str, by: u64) {
        let len = self.len;
        if let Some(entry) = self.entries[..len].iter_mut().find(|(r, _)| *r == reason) {
            entry.1 = entry.1.wrapping_add(by);
            return;
        }
        // Keep the last slot for OTHER so an overflow is still counted.
        let reason = if len + 1 < MAX_REFUSAL_REASONS {
            reason
        } else {
            Self::OTHER
        };
        if reason == Self::OTHER {
            if let Some(entry) = self.entries[..len].iter_mut().find(|(r, _)| *r == reason) {
                entry.1 = entry.1.wrapping_add(by);
                return;
            }
        }
        if let Some(slot) = self.entries.get_mut(len) {
            *slot = (reason, by);
            self.len += 1;
        }
    }
}

impl Default for RefusalCounts {
    fn default() -> Self {
        RefusalCounts {
            len: 0,
            entries: [("", 0); MAX_REFUSAL_REASONS],
        }
    }
}

impl fmt::Debug for RefusalCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_refusals_by_reason() {
        let mut counts = RefusalCounts::default();
        counts.add("detect_timeout", 1);
        counts.add("too_many_bytes", 2);
        counts.add("detect_timeout", 1);
        assert_eq!(counts.get("detect_timeout"), 2);
        assert_eq!(counts.get("too_many_bytes"), 2);
        assert_eq!(counts.get("ticket_unknown"), 0);
        assert_eq!(counts.total(), 4);
    }

    #[test]
    fn reasons_past_the_table_size_count_as_other() {
        let names: Vec<&'static str> = (0..MAX_REFUSAL_REASONS + 10)
            .map(|i| &*Box::leak(format!("reason_{i}").into_boxed_str()))
            .collect();
        let mut counts = RefusalCounts::default();
        for name in &names {
            counts.add(name, 1);
        }
        assert_eq!(counts.total(), names.len() as u64, "nothing is lost");
        assert_eq!(counts.get(RefusalCounts::OTHER), 11);
        assert_eq!(counts.iter().count(), MAX_REFUSAL_REASONS);
    }
}
