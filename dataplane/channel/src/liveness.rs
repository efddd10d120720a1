//! Peer liveness: is the other plane there, and is it the same incarnation?
//!
//! Each side writes into its record in the segment: a generation bumped on
//! every attach, an `attached` flag cleared on a clean detach, and a
//! heartbeat (monotonic milliseconds) refreshed by [`crate::Side::beat`].
//! A named segment adds the kernel's view: the peer's side lock, released
//! the instant its process dies.
//!
//! [`PeerWatch`] turns successive [`PeerSnapshot`]s into a [`PeerStatus`]
//! (sans-IO: the caller passes the time). What to do with each status:
//!
//! ```text
//!  Absent ----attach----> Alive <---------------------+
//!    ^                      |  silent > timeout        | beats again
//!    | clean detach         v  or process dead         |
//!    +------------------- Gone ------------------------+
//!                           | new generation attaches
//!                           v
//!                       Restarted (once) --> Alive
//! ```
//!
//! - data plane sees the control plane `Gone`: refuse new handshakes fast
//!   (their redemptions could not be answered); established sessions are
//!   untouched. On `Restarted`, link again (named segments); answers of the
//!   old generation are dropped by the ports, pending requests time out.
//! - control plane sees the data plane `Restarted` or `Gone`: every session
//!   it recorded for the old generation is over; reconcile.

use std::time::Duration;

use crate::ids::{Generation, MonotonicMillis};

/// Whether the peer's process holds its side lock (named segments only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessPresence {
    /// The peer's side lock is held: its process is alive.
    Alive,
    /// Nobody holds the peer's side lock: its process is gone.
    Dead,
    /// No lock to ask (both planes in one process).
    Unknown,
}

/// The peer's record, read at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerSnapshot {
    /// Zero if the peer never attached.
    pub generation: Generation,
    /// False after the peer detached cleanly.
    pub attached: bool,
    /// The peer's last heartbeat.
    pub heartbeat: MonotonicMillis,
    /// The peer's process id as it recorded it (0 if never attached).
    pub pid: u32,
    /// The kernel's view of the peer process.
    pub process: ProcessPresence,
}

/// What a [`PeerWatch`] concludes from a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerStatus {
    /// The peer never attached, or detached cleanly.
    Absent,
    /// The same incarnation as last time, beating.
    Alive {
        /// Its generation.
        generation: Generation,
    },
    /// A new incarnation is alive (reported once): drop everything tied to
    /// `previous`.
    Restarted {
        /// The incarnation seen before.
        previous: Generation,
        /// The one attached now.
        current: Generation,
    },
    /// Attached on record, but its process is gone or it has been silent
    /// longer than the timeout.
    Gone {
        /// The incarnation that went silent.
        generation: Generation,
        /// Milliseconds since its last heartbeat.
        silent_ms: u64,
    },
}

/// Tracks one peer across snapshots. Call [`PeerWatch::observe`] from a
/// periodic task (for example every 100 ms, beating first).
#[derive(Debug, Clone)]
pub struct PeerWatch {
    timeout_ms: u64,
    seen: Option<Generation>,
}

impl PeerWatch {
    /// A watch that declares the peer gone after `timeout` without a
    /// heartbeat (make it several beat intervals).
    pub fn new(timeout: Duration) -> Self {
        Self {
            timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            seen: None,
        }
    }

    /// The generation last seen alive, if any.
    pub fn last_seen(&self) -> Option<Generation> {
        self.seen
    }

    /// Classifies `snapshot` taken at `now`.
    pub fn observe(&mut self, snapshot: PeerSnapshot, now: MonotonicMillis) -> PeerStatus {
        if snapshot.generation.0 == 0 || !snapshot.attached {
            return PeerStatus::Absent;
        }
        let silent_ms = now.since(snapshot.heartbeat);
        if snapshot.process == ProcessPresence::Dead || silent_ms > self.timeout_ms {
            return PeerStatus::Gone {
                generation: snapshot.generation,
                silent_ms,
            };
        }
        let current = snapshot.generation;
        match self.seen.replace(current) {
            Some(previous) if previous != current => PeerStatus::Restarted { previous, current },
            _ => PeerStatus::Alive {
                generation: current,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(generation: u32, heartbeat: u64, process: ProcessPresence) -> PeerSnapshot {
        PeerSnapshot {
            generation: Generation(generation),
            attached: true,
            heartbeat: MonotonicMillis(heartbeat),
            pid: 1,
            process,
        }
    }

    #[test]
    fn a_peer_that_never_attached_is_absent() {
        let mut watch = PeerWatch::new(Duration::from_millis(500));
        let mut s = snap(0, 0, ProcessPresence::Unknown);
        s.attached = false;
        assert_eq!(watch.observe(s, MonotonicMillis(10)), PeerStatus::Absent);
    }

    #[test]
    fn a_beating_peer_is_alive_and_a_silent_one_gone() {
        let mut watch = PeerWatch::new(Duration::from_millis(500));
        let alive = PeerStatus::Alive {
            generation: Generation(1),
        };
        assert_eq!(
            watch.observe(
                snap(1, 1_000, ProcessPresence::Unknown),
                MonotonicMillis(1_400)
            ),
            alive
        );
        assert_eq!(
            watch.observe(
                snap(1, 1_000, ProcessPresence::Unknown),
                MonotonicMillis(1_501)
            ),
            PeerStatus::Gone {
                generation: Generation(1),
                silent_ms: 501
            }
        );
        assert_eq!(
            watch.observe(
                snap(1, 1_600, ProcessPresence::Unknown),
                MonotonicMillis(1_700)
            ),
            alive
        );
    }

    #[test]
    fn a_dead_process_is_gone_at_once() {
        let mut watch = PeerWatch::new(Duration::from_secs(60));
        assert!(matches!(
            watch.observe(
                snap(3, 1_000, ProcessPresence::Dead),
                MonotonicMillis(1_000)
            ),
            PeerStatus::Gone { .. }
        ));
    }

    #[test]
    fn a_new_generation_is_reported_as_a_restart_once() {
        let mut watch = PeerWatch::new(Duration::from_millis(500));
        let _ = watch.observe(snap(1, 0, ProcessPresence::Alive), MonotonicMillis(0));
        assert!(matches!(
            watch.observe(snap(1, 0, ProcessPresence::Dead), MonotonicMillis(10)),
            PeerStatus::Gone { .. }
        ));
        assert_eq!(
            watch.observe(snap(2, 20, ProcessPresence::Alive), MonotonicMillis(30)),
            PeerStatus::Restarted {
                previous: Generation(1),
                current: Generation(2)
            }
        );
        assert_eq!(
            watch.observe(snap(2, 40, ProcessPresence::Alive), MonotonicMillis(50)),
            PeerStatus::Alive {
                generation: Generation(2)
            }
        );
        assert_eq!(watch.last_seen(), Some(Generation(2)));
    }

    #[test]
    fn a_clean_detach_is_absence_not_death() {
        let mut watch = PeerWatch::new(Duration::from_millis(500));
        let mut s = snap(4, 0, ProcessPresence::Dead);
        s.attached = false;
        assert_eq!(
            watch.observe(s, MonotonicMillis(10_000)),
            PeerStatus::Absent
        );
    }
}
