//! CGP session reliability in the control plane: one record per resumable
//! CGP session, from its first connect until its reconnect window passes
//! (DESIGN.md §3, PROTOCOLS.md §3–§4, docs/STA.md "Reconnect tickets").
//!
//! ```text
//! first connect ─ launch ticket redeemed ─► issue reconnect ticket R0 (gateway STA) ─► begin(R0)
//!   core reports SessionOpened(worker ticket W) ─► opened     core reports SessionClosed ─► closed
//! resume(R) ─ claim(R) ─► redeem + refresh the STA ticket behind it ─► resumed(R1): R is spent
//! keeper, every second ─► due(): refresh STA tickets at half their lifetime;
//!                         revoke and forget sessions disconnected longer than the window
//! ```
//!
//! Gatehouse decides:
//! - The client holds the gateway's reconnect ticket (an STA refreshable
//!   ticket from the gateway's own STA); the worker's own reconnect ticket
//!   stays here and is swapped in by the core on a resume.
//! - A resume spends the ticket it presents: the session's STA ticket is
//!   refreshed (the old one dies) and the client gets the new one in the
//!   BIND_RESPONSE. A ticket presented again is refused as reused.
//! - While the session lives the keeper refreshes the STA ticket before it
//!   expires, so a session connected for longer than a ticket lifetime can
//!   still resume. The client cannot learn a ticket mid-connection, so the
//!   ticket it holds (the one handed out at its last bind) stays the key of
//!   the session here even after the STA ticket behind it was refreshed.
//! - A session whose client stays away longer than the window is over: its
//!   STA ticket is revoked and its record dropped, so a resume is refused.
//!
//! The table is keyed by the ticket text in a `HashMap` with a random
//! SipHash key (std's `RandomState`), as the STA's own table is: timing a
//! lookup tells an attacker nothing about how close a guess is.
//!
//! Sans-IO: every method takes `now`; [`crate::redeem`] makes the STA calls
//! and logs.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use gatehouse_channel::{SessionId, TicketBytes};
use parking_lot::Mutex;

/// The default reconnect window (`gateway.reconnect_window_secs`).
pub const DEFAULT_RECONNECT_WINDOW: Duration = Duration::from_secs(180);

/// How often the keeper looks at the table.
pub const KEEPER_PERIOD: Duration = Duration::from_secs(1);

/// One resumable session.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    /// The ticket the client holds (handed out at its last bind).
    client_ticket: String,
    /// The STA ticket behind it now (equal to `client_ticket` until the
    /// keeper refreshes it).
    sta_ticket: String,
    /// When `sta_ticket` was issued, and how long it lives.
    issued_at: Instant,
    lifetime: Duration,
    /// The worker's CGP address.
    worker: SocketAddr,
    /// The worker's own reconnect ticket, once a core reported it.
    worker_ticket: Option<TicketBytes>,
    /// The session id of the session's current (or last) connection.
    session: SessionId,
    /// When the current connection ended; `None` while connected (or not
    /// yet opened).
    disconnected_at: Option<Instant>,
}

/// A session found by its reconnect ticket, taken out of the table by
/// [`ReconnectTable::claim`] for a resume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    /// The key to give back to [`ReconnectTable::resumed`] or
    /// [`ReconnectTable::restore`].
    pub key: u64,
    /// The STA ticket behind the presented one: redeem and refresh this.
    pub sta_ticket: String,
    /// The worker's CGP address.
    pub worker: SocketAddr,
    /// The worker's own reconnect ticket, if known.
    pub worker_ticket: Option<TicketBytes>,
}

/// Work for the keeper.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Due {
    /// Refresh `sta_ticket` and report it with [`ReconnectTable::refreshed`].
    Refresh {
        /// The session's key.
        key: u64,
        /// The STA ticket to refresh.
        sta_ticket: String,
    },
    /// The session is over (its record is already gone): revoke `sta_ticket`.
    Revoke {
        /// The session's last session id, for the log.
        session: SessionId,
        /// The STA ticket to revoke.
        sta_ticket: String,
    },
}

/// The resumable CGP sessions of this control plane. Shared by the
/// per-core channel tasks and the keeper; every method takes the lock
/// briefly and does no I/O.
#[derive(Debug)]
pub struct ReconnectTable {
    window: Duration,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    next_key: u64,
    entries: HashMap<u64, Entry>,
    by_ticket: HashMap<String, u64>,
    by_session: HashMap<SessionId, u64>,
}

impl ReconnectTable {
    /// An empty table whose sessions may stay disconnected for `window`.
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// The reconnect window.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// How many resumable sessions there are.
    pub fn len(&self) -> usize {
        self.inner.lock().entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Records a first connect: `session` to `worker`, whose client gets
    /// `ticket` (issued now, living `lifetime`).
    pub fn begin(
        &self,
        session: SessionId,
        worker: SocketAddr,
        ticket: String,
        lifetime: Duration,
        now: Instant,
    ) {
        let mut inner = self.inner.lock();
        let key = inner.next_key;
        inner.next_key += 1;
        inner.by_ticket.insert(ticket.clone(), key);
        inner.by_session.insert(session, key);
        inner.entries.insert(
            key,
            Entry {
                client_ticket: ticket.clone(),
                sta_ticket: ticket,
                issued_at: now,
                lifetime,
                worker,
                worker_ticket: None,
                session,
                disconnected_at: None,
            },
        );
    }

    /// A core reported `session` open with the worker's reconnect ticket.
    /// Returns whether `session` is a resumable session's connection.
    pub fn opened(&self, session: SessionId, worker_ticket: Option<TicketBytes>) -> bool {
        let mut inner = self.inner.lock();
        let Some(key) = inner.by_session.get(&session).copied() else {
            return false;
        };
        let Some(entry) = inner.entries.get_mut(&key) else {
            return false;
        };
        if entry.session != session {
            return false;
        }
        if worker_ticket.is_some() {
            entry.worker_ticket = worker_ticket;
        }
        entry.disconnected_at = None;
        true
    }

    /// A core reported `session` closed: if it is its session's current
    /// connection, the reconnect window starts now.
    pub fn closed(&self, session: SessionId, now: Instant) -> bool {
        let mut inner = self.inner.lock();
        let Some(key) = inner.by_session.remove(&session) else {
            return false;
        };
        match inner.entries.get_mut(&key) {
            Some(entry) if entry.session == session => {
                entry.disconnected_at = Some(now);
                true
            }
            _ => false,
        }
    }

    /// Takes the session whose client holds `ticket` out of the ticket map
    /// for a resume, so a second resume with the same ticket cannot find
    /// it. `None` when no session has that ticket (unknown, spent, or the
    /// session is over).
    pub fn claim(&self, ticket: &[u8]) -> Option<Claimed> {
        let text = std::str::from_utf8(ticket).ok()?;
        let mut inner = self.inner.lock();
        let key = inner.by_ticket.remove(text)?;
        let entry = inner.entries.get(&key)?;
        Some(Claimed {
            key,
            sta_ticket: entry.sta_ticket.clone(),
            worker: entry.worker,
            worker_ticket: entry.worker_ticket,
        })
    }

    /// A claimed resume succeeded: the client gets `ticket` (the refreshed
    /// STA ticket, issued now, living `lifetime`) and the new connection is
    /// `session`. `false` if the session ended meanwhile.
    pub fn resumed(
        &self,
        key: u64,
        session: SessionId,
        ticket: String,
        lifetime: Duration,
        now: Instant,
    ) -> bool {
        let mut inner = self.inner.lock();
        let Some(entry) = inner.entries.get_mut(&key) else {
            return false;
        };
        let old_session = entry.session;
        entry.client_ticket = ticket.clone();
        entry.sta_ticket = ticket.clone();
        entry.issued_at = now;
        entry.lifetime = lifetime;
        entry.session = session;
        // Connected once the core reports it open; until then the window
        // keeps counting from the break.
        inner.by_ticket.insert(ticket, key);
        inner.by_session.remove(&old_session);
        inner.by_session.insert(session, key);
        true
    }

    /// A claimed resume failed for a passing reason (the STA did not
    /// answer): the client may try its ticket again.
    pub fn restore(&self, key: u64) {
        let mut inner = self.inner.lock();
        if let Some(ticket) = inner.entries.get(&key).map(|e| e.client_ticket.clone()) {
            inner.by_ticket.insert(ticket, key);
        }
    }

    /// Forgets a session whose ticket the STA no longer honours (expired or
    /// revoked); returns its last session id.
    pub fn forget(&self, key: u64) -> Option<SessionId> {
        let mut inner = self.inner.lock();
        let entry = inner.entries.remove(&key)?;
        inner.by_ticket.remove(&entry.client_ticket);
        inner.by_session.remove(&entry.session);
        Some(entry.session)
    }

    /// The keeper refreshed `old` into `new` (issued now, living
    /// `lifetime`). The client's ticket stays the key (see the module
    /// docs). Ignored when the session moved on meanwhile (a resume
    /// refreshed it first, or it ended).
    pub fn refreshed(&self, key: u64, old: &str, new: String, lifetime: Duration, now: Instant) {
        let mut inner = self.inner.lock();
        if let Some(entry) = inner.entries.get_mut(&key)
            && entry.sta_ticket == old
        {
            entry.sta_ticket = new;
            entry.issued_at = now;
            entry.lifetime = lifetime;
        }
    }

    /// What the keeper must do now: refresh STA tickets past half their
    /// lifetime, and end sessions disconnected for longer than the window
    /// (they are removed here; revoke their tickets).
    pub fn due(&self, now: Instant) -> Vec<Due> {
        let mut inner = self.inner.lock();
        let mut due = Vec::new();
        let mut over = Vec::new();
        for (&key, entry) in &inner.entries {
            let away = entry
                .disconnected_at
                .is_some_and(|at| now.saturating_duration_since(at) >= self.window);
            if away {
                over.push(key);
            } else if now.saturating_duration_since(entry.issued_at) >= entry.lifetime / 2 {
                due.push(Due::Refresh {
                    key,
                    sta_ticket: entry.sta_ticket.clone(),
                });
            }
        }
        for key in over {
            if let Some(entry) = inner.entries.remove(&key) {
                inner.by_ticket.remove(&entry.client_ticket);
                inner.by_session.remove(&entry.session);
                due.push(Due::Revoke {
                    session: entry.session,
                    sta_ticket: entry.sta_ticket,
                });
            }
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIFETIME: Duration = Duration::from_secs(500);
    const WINDOW: Duration = Duration::from_secs(180);

    fn worker() -> SocketAddr {
        "127.0.0.1:2598".parse().unwrap()
    }

    fn worker_ticket() -> TicketBytes {
        TicketBytes::new(b"WORKER").unwrap()
    }

    fn table_with_one(now: Instant) -> ReconnectTable {
        let table = ReconnectTable::new(WINDOW);
        table.begin(SessionId(1), worker(), "R0".to_owned(), LIFETIME, now);
        assert!(table.opened(SessionId(1), Some(worker_ticket())));
        table
    }

    #[test]
    fn a_resume_claims_the_ticket_once_and_hands_out_a_new_one() {
        let now = Instant::now();
        let table = table_with_one(now);
        let claimed = table.claim(b"R0").unwrap();
        assert_eq!(claimed.sta_ticket, "R0");
        assert_eq!(claimed.worker, worker());
        assert_eq!(claimed.worker_ticket, Some(worker_ticket()));
        assert_eq!(table.claim(b"R0"), None, "a ticket resumes once");
        assert!(table.resumed(claimed.key, SessionId(2), "R1".to_owned(), LIFETIME, now));
        assert_eq!(table.claim(b"R0"), None);
        let again = table.claim(b"R1").unwrap();
        assert_eq!(again.key, claimed.key);
        assert_eq!(again.worker_ticket, Some(worker_ticket()));
    }

    #[test]
    fn an_unknown_or_foreign_ticket_finds_nothing() {
        let table = table_with_one(Instant::now());
        assert_eq!(table.claim(b"R9"), None);
        assert_eq!(table.claim(b""), None);
        assert_eq!(table.claim(&[0xFF, 0xFE]), None);
    }

    #[test]
    fn a_restored_claim_can_be_tried_again() {
        let table = table_with_one(Instant::now());
        let claimed = table.claim(b"R0").unwrap();
        table.restore(claimed.key);
        assert!(table.claim(b"R0").is_some());
    }

    #[test]
    fn a_session_away_longer_than_the_window_is_revoked_and_forgotten() {
        let start = Instant::now();
        let table = table_with_one(start);
        assert!(table.closed(SessionId(1), start));
        assert!(
            table
                .due(start + WINDOW - Duration::from_secs(1))
                .is_empty()
        );
        let due = table.due(start + WINDOW);
        assert_eq!(
            due,
            vec![Due::Revoke {
                session: SessionId(1),
                sta_ticket: "R0".to_owned()
            }]
        );
        assert!(table.is_empty());
        assert_eq!(table.claim(b"R0"), None);
    }

    #[test]
    fn a_connected_session_is_never_ended_by_the_window() {
        let start = Instant::now();
        let table = table_with_one(start);
        let later = start + WINDOW * 10;
        let due = table.due(later);
        assert!(matches!(due.as_slice(), [Due::Refresh { .. }]), "{due:?}");
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn the_keeper_refreshes_at_half_life_and_the_clients_ticket_still_resumes() {
        let start = Instant::now();
        let table = table_with_one(start);
        assert!(
            table
                .due(start + LIFETIME / 2 - Duration::from_secs(1))
                .is_empty()
        );
        let half = start + LIFETIME / 2;
        let due = table.due(half);
        let [Due::Refresh { key, sta_ticket }] = due.as_slice() else {
            panic!("expected one refresh, got {due:?}");
        };
        assert_eq!(sta_ticket, "R0");
        table.refreshed(*key, "R0", "R0b".to_owned(), LIFETIME, half);
        assert!(table.due(half + Duration::from_secs(1)).is_empty());
        let claimed = table.claim(b"R0").unwrap();
        assert_eq!(
            claimed.sta_ticket, "R0b",
            "the STA ticket behind it moved on"
        );
    }

    #[test]
    fn a_refresh_that_lost_the_race_with_a_resume_is_ignored() {
        let now = Instant::now();
        let table = table_with_one(now);
        let claimed = table.claim(b"R0").unwrap();
        assert!(table.resumed(claimed.key, SessionId(2), "R1".to_owned(), LIFETIME, now));
        table.refreshed(claimed.key, "R0", "R0b".to_owned(), LIFETIME, now);
        assert_eq!(table.claim(b"R1").unwrap().sta_ticket, "R1");
    }

    #[test]
    fn only_the_current_connection_opens_and_closes_a_session() {
        let now = Instant::now();
        let table = table_with_one(now);
        let claimed = table.claim(b"R0").unwrap();
        assert!(table.resumed(claimed.key, SessionId(2), "R1".to_owned(), LIFETIME, now));
        // The old connection's close arrives late: no window starts.
        assert!(!table.closed(SessionId(1), now));
        assert!(table.opened(SessionId(2), None));
        assert_eq!(
            table.claim(b"R1").unwrap().worker_ticket,
            Some(worker_ticket()),
            "a report without a worker ticket keeps the known one"
        );
        assert!(!table.opened(SessionId(9), None));
    }

    #[test]
    fn forgetting_a_session_drops_every_way_to_it() {
        let table = table_with_one(Instant::now());
        let claimed = table.claim(b"R0").unwrap();
        assert_eq!(table.forget(claimed.key), Some(SessionId(1)));
        table.restore(claimed.key);
        assert_eq!(table.claim(b"R0"), None);
        assert!(!table.closed(SessionId(1), Instant::now()));
        assert!(table.is_empty());
    }
}
