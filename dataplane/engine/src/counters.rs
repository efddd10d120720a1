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
//!
//! Counter ids ([`counter_ids`]): the numbering of the `(CounterId, u64)`
//! pairs a core sends in `StatsReport`s when the control plane asks with a
//! `StatsRequest`, and what each id means (metric family and label) so the
//! control plane can render `/metrics`. The ids are stable: new counters
//! and new refusal reasons get new ids, an id is never reused.
//!
//! The control plane reaches the counters over the channel only: the
//! channel redeemer's receive task, on the core's thread, reads them
//! through a thread-local [`CoreSnapshot`] the core installs at start
//! ([`install_snapshot`]), so no counter is ever shared across threads.

use std::cell::{Cell, RefCell};
use std::fmt;

use gatehouse_channel::{CoreId, CounterId};

use crate::redeem::ChannelRedeemerStats;

/// Reads the counters of the core whose thread calls it.
pub type CoreSnapshot = Box<dyn Fn() -> Option<CoreStats>>;

thread_local! {
    static SNAPSHOT: RefCell<Option<CoreSnapshot>> = const { RefCell::new(None) };
}

/// Makes `snapshot` the way this thread's channel redeemer reads its
/// core's counters (the core calls it once, before it builds its handler).
pub fn install_snapshot(snapshot: CoreSnapshot) {
    SNAPSHOT.with(|slot| *slot.borrow_mut() = Some(snapshot));
}

/// The counters of the core running on this thread, `None` when no core
/// installed a snapshot here (or the core is gone).
pub fn current_snapshot() -> Option<CoreStats> {
    SNAPSHOT.with(|slot| slot.borrow().as_ref().and_then(|read| read()))
}

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
    pub(crate) handed_off: Cell<u64>,
    pub(crate) adopted: Cell<u64>,
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
            handed_off: self.handed_off.get(),
            adopted: self.adopted.get(),
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
    /// Connections this core accepted and handed to a less loaded core.
    pub handed_off: u64,
    /// Connections another core accepted and handed to this one (counted
    /// in `accepted` too).
    pub adopted: u64,
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
            sum.handed_off += s.handed_off;
            sum.adopted += s.adopted;
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
            handed_off: 0,
            adopted: 0,
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

/// The stable numbering of per-core counters in `StatsReport`s.
///
/// | ids | meaning |
/// |---|---|
/// | 0 | [`ANSWER_LEN`]: pairs in the whole answer, this one included |
/// | 1..=15 | [`CoreStats`] fields, see [`CORE`] |
/// | 32..=38 | [`ChannelRedeemerStats`] fields, see [`CHANNEL`] |
/// | 256 + i | refusals with reason [`REFUSAL_REASONS`]`[i]` |
///
/// One answer to a `StatsRequest` is one or more reports with the
/// request's id; the first pair of the first report is [`ANSWER_LEN`], so
/// the receiver knows when it has every report.
pub mod counter_ids {
    use gatehouse_channel::CounterId;

    /// Pairs in the whole answer (every report of one request id),
    /// counting this one.
    pub const ANSWER_LEN: CounterId = CounterId(0);
    /// The first refusal id; reason `i` of [`REFUSAL_REASONS`] is
    /// `REFUSAL_BASE + i`.
    pub const REFUSAL_BASE: u16 = 256;

    /// Whether a counter only goes up (`counter`) or up and down (`gauge`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum MetricKind {
        /// Monotonic since the core started.
        Counter,
        /// A level (open connections).
        Gauge,
    }

    /// What one counter id means in `/metrics`.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct CounterSpec {
        /// The id on the wire.
        pub id: CounterId,
        /// The metric family (`gatehouse_core_…`).
        pub family: &'static str,
        /// Counter or gauge.
        pub kind: MetricKind,
        /// One extra label (name, value) beside `core`, if any.
        pub label: Option<(&'static str, &'static str)>,
        /// The family's help text.
        pub help: &'static str,
    }

    const fn spec(
        id: u16,
        family: &'static str,
        kind: MetricKind,
        label: Option<(&'static str, &'static str)>,
        help: &'static str,
    ) -> CounterSpec {
        CounterSpec {
            id: CounterId(id),
            family,
            kind,
            label,
            help,
        }
    }

    use MetricKind::{Counter, Gauge};

    const ACCEPTS: &str = "Connections accepted and handed to the handler.";
    const REFUSALS: &str = "Connections refused, by reason.";
    const BYTES: &str = "Bytes relayed, by direction (up: client to back end).";
    const ENDS: &str = "Sessions ended, by how.";
    const HANDOFFS: &str =
        "Connections handed to a less loaded core at accept (out) or taken from another core (in).";
    const CHANNEL_EVENTS: &str = "Channel events seen by the core's redeemer, by kind.";

    /// The [`CoreStats`](crate::CoreStats) counters (refusals at accept are
    /// part of the refusal family).
    pub const CORE: &[CounterSpec] = &[
        spec(1, "gatehouse_core_accepts_total", Counter, None, ACCEPTS),
        spec(
            2,
            "gatehouse_core_refusals_total",
            Counter,
            Some(("reason", "max_connections")),
            REFUSALS,
        ),
        spec(
            3,
            "gatehouse_core_refusals_total",
            Counter,
            Some(("reason", "max_pending_handshakes")),
            REFUSALS,
        ),
        spec(
            4,
            "gatehouse_core_accept_errors_total",
            Counter,
            None,
            "accept(2) failures.",
        ),
        spec(
            5,
            "gatehouse_core_active_sessions",
            Gauge,
            None,
            "Connections open now.",
        ),
        spec(
            6,
            "gatehouse_core_pending_handshakes",
            Gauge,
            None,
            "Open connections still in their handshake.",
        ),
        spec(
            7,
            "gatehouse_core_session_ends_total",
            Counter,
            Some(("how", "closed")),
            ENDS,
        ),
        spec(
            8,
            "gatehouse_core_session_ends_total",
            Counter,
            Some(("how", "idle_timeout")),
            ENDS,
        ),
        spec(
            9,
            "gatehouse_core_session_ends_total",
            Counter,
            Some(("how", "drain_cut")),
            ENDS,
        ),
        spec(
            10,
            "gatehouse_core_bytes_total",
            Counter,
            Some(("direction", "up")),
            BYTES,
        ),
        spec(
            11,
            "gatehouse_core_bytes_total",
            Counter,
            Some(("direction", "down")),
            BYTES,
        ),
        spec(
            12,
            "gatehouse_core_session_ends_total",
            Counter,
            Some(("how", "killed")),
            ENDS,
        ),
        spec(
            13,
            "gatehouse_core_reports_dropped_total",
            Counter,
            None,
            "Session reports dropped on a full channel.",
        ),
        spec(
            14,
            "gatehouse_core_handoffs_total",
            Counter,
            Some(("way", "out")),
            HANDOFFS,
        ),
        spec(
            15,
            "gatehouse_core_handoffs_total",
            Counter,
            Some(("way", "in")),
            HANDOFFS,
        ),
    ];

    /// The [`ChannelRedeemerStats`](crate::redeem::ChannelRedeemerStats)
    /// counters.
    pub const CHANNEL: &[CounterSpec] = &[
        spec(
            32,
            "gatehouse_core_channel_events_total",
            Counter,
            Some(("event", "stray_verdict")),
            CHANNEL_EVENTS,
        ),
        spec(
            33,
            "gatehouse_core_channel_events_total",
            Counter,
            Some(("event", "kill")),
            CHANNEL_EVENTS,
        ),
        spec(
            34,
            "gatehouse_core_channel_events_total",
            Counter,
            Some(("event", "stray_kill")),
            CHANNEL_EVENTS,
        ),
        spec(
            35,
            "gatehouse_core_channel_events_total",
            Counter,
            Some(("event", "ignored")),
            CHANNEL_EVENTS,
        ),
        spec(
            36,
            "gatehouse_core_channel_events_total",
            Counter,
            Some(("event", "error")),
            CHANNEL_EVENTS,
        ),
        spec(
            37,
            "gatehouse_core_channel_events_total",
            Counter,
            Some(("event", "reannounced")),
            CHANNEL_EVENTS,
        ),
        spec(
            38,
            "gatehouse_core_channel_events_total",
            Counter,
            Some(("event", "reannounce_dropped")),
            CHANNEL_EVENTS,
        ),
    ];

    /// Handler refusal reasons with a stable id (`REFUSAL_BASE + index`).
    /// Append only. A reason not listed is counted as `other` (index 0).
    pub const REFUSAL_REASONS: &[&str] = &[
        "other",
        "detect_timeout",
        "detect_closed_early",
        "detect_read_error",
        "too_many_bytes",
        "unknown_protocol",
        "unsupported_protocol",
        "tls_not_offered",
        "tls_required",
        "tls_timeout",
        "tls_rejected",
        "tls_closed_early",
        "tls_io",
        "tls_setup",
        "socks_timeout",
        "socks_closed_early",
        "socks_client_io",
        "no_acceptable_method",
        "message_too_long",
        "cgp_timeout",
        "cgp_closed_early",
        "cgp_client_io",
        "cgp_malformed",
        "cgp_no_ticket",
        "cgp_rewrite_failed",
        "cgp_resume",
        "worker_bind_timeout",
        "worker_closed_early",
        "worker_io",
        "worker_malformed",
        "worker_refused_bind",
        "no_worker_ticket",
        "ticket_unknown",
        "ticket_expired",
        "ticket_reused",
        "ticket_malformed",
        "unknown_sta",
        "sta_unreachable",
        "worker_unreachable",
        "policy_denied",
        "control_plane_overloaded",
        "control_plane_internal",
        "control_plane_timeout",
        "control_plane_down",
        "channel_full",
        "pending_full",
        "no_channel",
        "redeem_timeout",
        "backend_refused",
        "backend_timeout",
        "backend_unreachable",
        "address_not_allowed",
        "web_unavailable",
    ];

    /// The id of refusal `reason` (`other`'s for a reason not listed).
    pub fn refusal_id(reason: &str) -> CounterId {
        let index = REFUSAL_REASONS
            .iter()
            .position(|known| *known == reason)
            .unwrap_or(0);
        // The table is far shorter than u16::MAX - REFUSAL_BASE.
        CounterId(REFUSAL_BASE.saturating_add(u16::try_from(index).unwrap_or(0)))
    }

    /// What `id` means; `None` for [`ANSWER_LEN`] and unknown ids (a newer
    /// core's: the control plane skips them).
    pub fn spec_of(id: CounterId) -> Option<CounterSpec> {
        if let Some(index) = id.0.checked_sub(REFUSAL_BASE) {
            let reason = REFUSAL_REASONS.get(usize::from(index))?;
            return Some(CounterSpec {
                id,
                family: "gatehouse_core_refusals_total",
                kind: Counter,
                label: Some(("reason", reason)),
                help: REFUSALS,
            });
        }
        CORE.iter()
            .chain(CHANNEL)
            .find(|spec| spec.id == id)
            .copied()
    }
}

/// The `(CounterId, u64)` pairs of one core's answer to a stats request,
/// [`counter_ids::ANSWER_LEN`] first: every [`counter_ids::CORE`] and
/// [`counter_ids::CHANNEL`] counter, then each refusal reason seen (an
/// unlisted reason adds to `other`).
pub fn answer_pairs(stats: &CoreStats, channel: &ChannelRedeemerStats) -> Vec<(CounterId, u64)> {
    let core = [
        stats.accepted,
        stats.refused_max_connections,
        stats.refused_max_pending_handshakes,
        stats.accept_errors,
        stats.active,
        stats.pending,
        stats.closed,
        stats.idle_timeouts,
        stats.drain_cuts,
        stats.bytes_up,
        stats.bytes_down,
        stats.kills,
        stats.reports_dropped,
        stats.handed_off,
        stats.adopted,
    ];
    let chan = [
        channel.stray_verdicts,
        channel.kills,
        channel.stray_kills,
        channel.ignored,
        channel.channel_errors,
        channel.reannounced,
        channel.reannounce_dropped,
    ];
    let mut refusals: Vec<(CounterId, u64)> = Vec::new();
    for (reason, count) in stats.refusals.iter() {
        let id = counter_ids::refusal_id(reason);
        match refusals.iter_mut().find(|(seen, _)| *seen == id) {
            Some(entry) => entry.1 = entry.1.wrapping_add(count),
            None => refusals.push((id, count)),
        }
    }
    let mut pairs = Vec::with_capacity(1 + core.len() + chan.len() + refusals.len());
    pairs.push((counter_ids::ANSWER_LEN, 0));
    pairs.extend(counter_ids::CORE.iter().map(|s| s.id).zip(core));
    pairs.extend(counter_ids::CHANNEL.iter().map(|s| s.id).zip(chan));
    pairs.extend(refusals);
    let len = pairs.len() as u64;
    pairs[0].1 = len;
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answer_pairs_start_with_their_count_and_name_every_counter() {
        let counters = CoreCounters::default();
        bump(&counters.accepted, 3);
        bump(&counters.bytes_up, 10);
        counters.handler_refused("ticket_unknown");
        counters.handler_refused("ticket_unknown");
        counters.handler_refused("a_reason_nobody_listed");
        let pairs = answer_pairs(
            &counters.snapshot(CoreId(1)),
            &ChannelRedeemerStats::default(),
        );
        assert_eq!(pairs[0], (counter_ids::ANSWER_LEN, pairs.len() as u64));
        for (id, _) in &pairs[1..] {
            assert!(counter_ids::spec_of(*id).is_some(), "{id:?} has a meaning");
        }
        let find = |id| pairs.iter().find(|(seen, _)| *seen == id).map(|p| p.1);
        assert_eq!(find(CounterId(1)), Some(3));
        assert_eq!(find(CounterId(10)), Some(10));
        assert_eq!(find(counter_ids::refusal_id("ticket_unknown")), Some(2));
        assert_eq!(find(counter_ids::refusal_id("other")), Some(1));
    }

    #[test]
    fn counter_ids_are_unique() {
        let mut ids: Vec<u16> = counter_ids::CORE
            .iter()
            .chain(counter_ids::CHANNEL)
            .map(|s| s.id.0)
            .collect();
        ids.extend((0..counter_ids::REFUSAL_REASONS.len()).map(|i| 256 + i as u16));
        let count = ids.len();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), count);
        let mut reasons = counter_ids::REFUSAL_REASONS.to_vec();
        reasons.sort_unstable();
        reasons.dedup();
        assert_eq!(reasons.len(), counter_ids::REFUSAL_REASONS.len());
    }

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
