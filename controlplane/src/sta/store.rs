//! The ticket table of one STA, sans-IO: every operation takes the current
//! time, the random source is injected at construction, nothing here reads a
//! clock, a global RNG or a socket.
//!
//! Life of one ticket (PROTOCOLS.md §3; docs/STA.md):
//!
//! ```text
//!            issue
//!              |
//!              v
//!   +-------- Live --------+-----------------+----------------+
//!   |           |          |                 |                |
//!   | redeem    | redeem   | refresh         | revoke         | lifetime over
//!   | (single-  | (refresh-| (refreshable;   |                |
//!   |  use)     |  able)   |  issues a new   |                |
//!   v           v          |  Live ticket)   v                v
//! Spent       Live         v               Spent            gone
//! (Reused)   (unchanged) Spent (Reused)   (Revoked)     Spent (Expired)
//!   |                      |                 |           for EXPIRED_GRACE,
//!   |                      |                 |           then UnknownTicket
//!   +---- original expiry: swept, then UnknownTicket ----+
//! ```
//!
//! A spent ticket is kept as a tombstone until its original expiry, so a
//! second use is told `Reused` rather than `UnknownTicket`; tombstones are
//! bounded by `max_tickets` too, and past that bound a spent ticket is
//! forgotten at once (a second use then says `UnknownTicket`: still refused).
//!
//! A ticket that expires unredeemed becomes an `Expired` tombstone when
//! the sweep reaches it and stays one for [`EXPIRED_GRACE`], so a late
//! client is told `Expired` however the sweep and the redemption race
//! (within the same tombstone bound).
//!
//! Memory is bounded: at most `max_tickets` live tickets plus `max_tickets`
//! tombstones, and the expiry queues hold at most about twice that (see
//! `compact`).

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::hash::BuildHasher;
use std::time::{Duration, Instant};

use gatehouse_wire::ticket::{StaId, StaTicket, Ticket, TicketVersion};
use siphasher::sip::SipHasher13;

use super::{Issued, Redeemed, StaError, TicketData, TicketKind};

/// Longest lifetime [`Sta::new`] accepts; longer ones are clamped to it.
pub const MAX_TTL: Duration = Duration::from_secs(86_400);

/// Shortest lifetime [`Sta::new`] accepts; shorter ones are raised to it.
pub const MIN_TTL: Duration = Duration::from_secs(1);

/// How many due entries an [`Sta::issue`] sweeps on its way, so that the
/// sweep keeps pace with issuing without a timer and no single call does
/// unbounded work (a full [`Sta::sweep`] runs only when the table is full).
const SWEEP_BATCH: usize = 64;

/// Stale expiry-queue entries tolerated beyond twice the table bound before
/// the queues are compacted.
const COMPACT_SLACK: usize = 1_024;

/// The injected random source (see [`Sta::new`]).
type Fill = Box<dyn FnMut(&mut [u8]) + Send>;

/// Lifetimes and bounds of an [`Sta`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaLimits {
    /// Lifetime of a single-use ticket (default 100 s).
    pub ticket_ttl: Duration,
    /// Lifetime of a refreshable ticket, renewed by each refresh (default
    /// 500 s).
    pub refreshable_ttl: Duration,
    /// Most live tickets at once (default 100 000); [`Sta::issue`] answers
    /// [`StaError::Full`] past it. Tombstones are bounded by the same number.
    pub max_tickets: usize,
}

impl Default for StaLimits {
    fn default() -> Self {
        Self {
            ticket_ttl: Duration::from_secs(100),
            refreshable_ttl: Duration::from_secs(500),
            max_tickets: 100_000,
        }
    }
}

impl StaLimits {
    /// The lifetime of a ticket of `kind`.
    pub fn ttl(&self, kind: TicketKind) -> Duration {
        match kind {
            TicketKind::SingleUse => self.ticket_ttl,
            TicketKind::Refreshable => self.refreshable_ttl,
        }
    }
}

/// The ticket table of one STA.
///
/// Call order: any, from one owner (wrap it in a `parking_lot::Mutex` to
/// share). Every operation takes `now`; a `now` earlier than one already
/// seen is treated as the latest seen, so time never runs backwards inside.
/// Call [`Sta::sweep`] now and then (the HTTP glue does it every few
/// seconds); [`Sta::issue`] also sweeps a little on each call.
pub struct Sta {
    id: StaId,
    limits: StaLimits,
    fill: Fill,
    // Keyed by the secret, hashed with SipHash-1-3 under a random key, and
    // the candidates compared with `Ticket`'s constant-time `==`. Why that
    // closes the timing side channel:
    // - The bucket a lookup probes depends on H_k(guess). Without the 128-bit
    //   key k (drawn from the CSPRNG below) an attacker cannot relate which
    //   guesses land near which stored ticket to the stored ticket's
    //   characters: SipHash is a PRF. Its running time depends only on the
    //   input length, which is fixed (32).
    // - Within a bucket, hashbrown first compares 7 bits of the same keyed
    //   hash (same argument), then calls `Ticket::eq`, which takes the same
    //   time wherever the first differing byte is (`subtle`).
    // So there is no oracle telling how many leading characters of a guess
    // are right, unlike an ordered map or a `memcmp` on the secret.
    tickets: HashMap<Ticket, Slot, KeyedHash>,
    // One FIFO per kind. The lifetime of a kind is fixed and `now` never
    // goes backwards, so each queue is sorted by deadline: the sweep pops
    // from the front. An entry whose ticket left the table early (forgotten
    // tombstone, expired on lookup) stays until popped or compacted away.
    single_use_expiry: VecDeque<Deadline>,
    refreshable_expiry: VecDeque<Deadline>,
    // Ends of the `Expired` tombstones' grace. Filled as the sweep pops the
    // two queues above, so sorted to within one sweep's span.
    expired_grace: VecDeque<Deadline>,
    live: usize,
    spent: usize,
    latest: Option<Instant>,
}

impl fmt::Debug for Sta {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sta")
            .field("id", &self.id)
            .field("limits", &self.limits)
            .field("live", &self.live)
            .field("tombstones", &self.spent)
            .field("queued", &self.queued())
            .finish_non_exhaustive()
    }
}

impl Sta {
    /// A new, empty STA answering for `id`.
    ///
    /// `fill` must fill its argument with bytes from a CSPRNG (the OS RNG in
    /// production, see [`crate::sta::http::os_fill`]; a seeded generator in
    /// tests). It draws the ticket secrets and the hash key. Lifetimes are
    /// clamped to [`MIN_TTL`]..=[`MAX_TTL`] and `max_tickets` to at least 1.
    pub fn new(id: StaId, limits: StaLimits, fill: impl FnMut(&mut [u8]) + Send + 'static) -> Self {
        let mut fill: Fill = Box::new(fill);
        let (mut k0, mut k1) = ([0; 8], [0; 8]);
        fill(&mut k0);
        fill(&mut k1);
        let hasher = KeyedHash {
            k0: u64::from_le_bytes(k0),
            k1: u64::from_le_bytes(k1),
        };
        let limits = StaLimits {
            ticket_ttl: limits.ticket_ttl.clamp(MIN_TTL, MAX_TTL),
            refreshable_ttl: limits.refreshable_ttl.clamp(MIN_TTL, MAX_TTL),
            max_tickets: limits.max_tickets.max(1),
        };
        Self {
            id,
            limits,
            fill,
            tickets: HashMap::with_hasher(hasher),
            single_use_expiry: VecDeque::new(),
            refreshable_expiry: VecDeque::new(),
            expired_grace: VecDeque::new(),
            live: 0,
            spent: 0,
            latest: None,
        }
    }

    /// The STA ID this STA answers for.
    pub fn id(&self) -> StaId {
        self.id
    }

    /// The lifetimes and bounds in force (after clamping).
    pub fn limits(&self) -> &StaLimits {
        &self.limits
    }

    /// Issues a ticket of `kind` for `data`: version `40`, this STA's ID, 32
    /// characters from the CSPRNG; it lives `limits.ttl(kind)` from `now`.
    ///
    /// Errors: [`StaError::DataTooLarge`] past the data bounds,
    /// [`StaError::Full`] with `max_tickets` live tickets (after sweeping),
    /// [`StaError::Random`] if the random source is broken.
    pub fn issue(
        &mut self,
        data: TicketData,
        kind: TicketKind,
        now: Instant,
    ) -> Result<Issued, StaError> {
        let now = self.observe(now);
        data.check_bounds()?;
        self.sweep_up_to(now, SWEEP_BATCH);
        if self.live >= self.limits.max_tickets {
            self.sweep(now);
            if self.live >= self.limits.max_tickets {
                return Err(StaError::Full);
            }
        }
        let secret = self.generate()?;
        let lifetime = self.limits.ttl(kind);
        self.insert_live(secret.clone(), data, kind, now);
        Ok(Issued {
            ticket: StaTicket {
                version: TicketVersion::V40,
                sta_id: self.id,
                ticket: secret,
            },
            lifetime,
        })
    }

    /// Redeems a ticket: answers the data it was issued with.
    ///
    /// A single-use ticket is spent by this call (a second redeem says
    /// [`StaError::Reused`]). A refreshable ticket is *not* spent: redeeming
    /// it is how a session-reliability reconnect finds its worker, and a
    /// reconnect may be retried; it keeps its expiry (only
    /// [`Sta::refresh`] extends it) and dies on refresh or revoke. The
    /// ticket's version field is not checked: the secret identifies it.
    ///
    /// Errors: [`StaError::WrongAuthority`], [`StaError::UnknownTicket`],
    /// [`StaError::Expired`], [`StaError::Reused`], [`StaError::Revoked`].
    pub fn redeem(&mut self, ticket: &StaTicket, now: Instant) -> Result<Redeemed, StaError> {
        let now = self.observe(now);
        let live = self.find_live(ticket, now)?;
        match live.kind {
            TicketKind::Refreshable => Ok(Redeemed {
                data: (*live.data).clone(),
                kind: TicketKind::Refreshable,
            }),
            TicketKind::SingleUse => {
                let data = self
                    .spend(&ticket.ticket, SpentBy::Redeem)
                    // Invariant: found live just above; `spend` returns its data.
                    .ok_or(StaError::UnknownTicket)?;
                Ok(Redeemed {
                    data,
                    kind: TicketKind::SingleUse,
                })
            }
        }
    }

    /// Reissues a refreshable ticket: a new secret with the same data and a
    /// fresh `refreshable_ttl`; the old ticket dies (using it again says
    /// [`StaError::Reused`]).
    ///
    /// Errors: those of [`Sta::redeem`], [`StaError::NotRefreshable`] for a
    /// single-use ticket (which stays unspent), [`StaError::Random`] (the old
    /// ticket stays alive).
    pub fn refresh(&mut self, ticket: &StaTicket, now: Instant) -> Result<Issued, StaError> {
        let now = self.observe(now);
        if self.find_live(ticket, now)?.kind != TicketKind::Refreshable {
            return Err(StaError::NotRefreshable);
        }
        let secret = self.generate()?;
        let data = self
            .spend(&ticket.ticket, SpentBy::Refresh)
            // Invariant: found live above; `spend` returns its data.
            .ok_or(StaError::UnknownTicket)?;
        self.insert_live(secret.clone(), data, TicketKind::Refreshable, now);
        Ok(Issued {
            ticket: StaTicket {
                version: TicketVersion::V40,
                sta_id: self.id,
                ticket: secret,
            },
            lifetime: self.limits.refreshable_ttl,
        })
    }

    /// Revokes a live ticket of either kind (a session ended, a launch was
    /// cancelled); later use says [`StaError::Revoked`] until its original
    /// expiry.
    ///
    /// Errors: those of [`Sta::redeem`].
    pub fn revoke(&mut self, ticket: &StaTicket, now: Instant) -> Result<(), StaError> {
        let now = self.observe(now);
        self.find_live(ticket, now)?;
        self.spend(&ticket.ticket, SpentBy::Revoke);
        Ok(())
    }

    /// Forgets every tombstone whose lifetime ended at or before `now`, and
    /// turns every ticket that expired unredeemed into an `Expired`
    /// tombstone for [`EXPIRED_GRACE`]. Returns how many entries left the
    /// table. Amortized O(1) per
    /// issued ticket: each queue entry is popped once.
    pub fn sweep(&mut self, now: Instant) -> usize {
        let now = self.observe(now);
        self.sweep_up_to(now, usize::MAX)
    }

    /// Live tickets (issued, not spent, not yet swept).
    pub fn live(&self) -> usize {
        self.live
    }

    /// Tombstones of spent tickets kept to answer [`StaError::Reused`].
    pub fn tombstones(&self) -> usize {
        self.spent
    }

    /// Entries in the expiry queues, stale ones included (for tests and
    /// metrics: bounded by about `4 × max_tickets`).
    pub fn queued(&self) -> usize {
        self.single_use_expiry.len() + self.refreshable_expiry.len() + self.expired_grace.len()
    }

    fn observe(&mut self, now: Instant) -> Instant {
        let now = self.latest.map_or(now, |latest| latest.max(now));
        self.latest = Some(now);
        now
    }

    fn generate(&mut self) -> Result<Ticket, StaError> {
        let secret = Ticket::generate(&mut self.fill).map_err(|_| StaError::Random)?;
        // Two equal secrets from a working CSPRNG have probability ~2^-165;
        // seeing one means the source repeats itself, so refuse to issue.
        if self.tickets.contains_key(&secret) {
            return Err(StaError::Random);
        }
        Ok(secret)
    }

    fn insert_live(&mut self, secret: Ticket, data: TicketData, kind: TicketKind, now: Instant) {
        // Cannot overflow in practice (the lifetime is at most a day and an
        // `Instant` counts from boot); if it did, the ticket is born expired,
        // which refuses rather than grants.
        let expires_at = now.checked_add(self.limits.ttl(kind)).unwrap_or(now);
        let queue = match kind {
            TicketKind::SingleUse => &mut self.single_use_expiry,
            TicketKind::Refreshable => &mut self.refreshable_expiry,
        };
        queue.push_back(Deadline {
            at: expires_at,
            secret: secret.clone(),
        });
        self.tickets.insert(
            secret,
            Slot::Live(Live {
                data: Box::new(data),
                kind,
                expires_at,
            }),
        );
        self.live += 1;
        self.compact_if_needed();
    }

    /// The live entry for `ticket`, or why there is none. Forgets an entry
    /// found past its lifetime.
    fn find_live(&mut self, ticket: &StaTicket, now: Instant) -> Result<&Live, StaError> {
        if ticket.sta_id != self.id {
            return Err(StaError::WrongAuthority);
        }
        let expired = match self.tickets.get(&ticket.ticket) {
            None => return Err(StaError::UnknownTicket),
            Some(slot) => slot.expires_at() <= now,
        };
        if expired {
            self.forget(&ticket.ticket);
            return Err(StaError::Expired);
        }
        match self.tickets.get(&ticket.ticket) {
            Some(Slot::Live(live)) => Ok(live),
            Some(Slot::Spent { by, .. }) => Err(by.error()),
            None => Err(StaError::UnknownTicket),
        }
    }

    /// Turns a live ticket into a tombstone (or forgets it when the
    /// tombstones are at their bound) and hands back its data.
    fn spend(&mut self, secret: &Ticket, by: SpentBy) -> Option<TicketData> {
        let keep_tombstone = self.spent < self.limits.max_tickets;
        let slot = self.tickets.get_mut(secret)?;
        let Slot::Live(live) = slot else {
            return None;
        };
        let expires_at = live.expires_at;
        self.live -= 1;
        if keep_tombstone {
            let Slot::Live(live) = std::mem::replace(slot, Slot::Spent { expires_at, by }) else {
                return None;
            };
            self.spent += 1;
            Some(*live.data)
        } else {
            match self.tickets.remove(secret) {
                Some(Slot::Live(live)) => Some(*live.data),
                _ => None,
            }
        }
    }

    fn forget(&mut self, secret: &Ticket) {
        match self.tickets.remove(secret) {
            Some(Slot::Live(_)) => self.live -= 1,
            Some(Slot::Spent { .. }) => self.spent -= 1,
            None => {}
        }
    }

    fn sweep_up_to(&mut self, now: Instant, budget: usize) -> usize {
        let mut removed = 0;
        let mut popped = 0;
        for which in [
            Some(TicketKind::SingleUse),
            Some(TicketKind::Refreshable),
            None,
        ] {
            while popped < budget {
                let queue = match which {
                    Some(TicketKind::SingleUse) => &mut self.single_use_expiry,
                    Some(TicketKind::Refreshable) => &mut self.refreshable_expiry,
                    None => &mut self.expired_grace,
                };
                let Some(front) = queue.front() else { break };
                if front.at > now {
                    break;
                }
                let Some(Deadline { at, secret }) = queue.pop_front() else {
                    break;
                };
                popped += 1;
                // The entry is this ticket only if the deadlines agree (a
                // stale queue entry may outlive its ticket).
                let unredeemed = match self.tickets.get(&secret) {
                    Some(slot) if slot.expires_at() == at => matches!(slot, Slot::Live(_)),
                    _ => continue,
                };
                if unredeemed && self.spend(&secret, SpentBy::Expiry).is_some() {
                    // `spend` kept a tombstone: give it its grace.
                    if let Some(Slot::Spent { expires_at, .. }) = self.tickets.get_mut(&secret) {
                        *expires_at = at + EXPIRED_GRACE;
                        self.expired_grace.push_back(Deadline {
                            at: at + EXPIRED_GRACE,
                            secret,
                        });
                        continue;
                    }
                }
                if self.tickets.contains_key(&secret) {
                    self.forget(&secret);
                }
                removed += 1;
            }
        }
        removed
    }

    /// Drops stale queue entries once the queues hold more than twice the
    /// table bound. The table holds at most `2 × max_tickets` entries, each
    /// with one queue entry, so a compaction frees at least half the queue:
    /// it runs at most once per `2 × max_tickets` inserts (amortized O(1)).
    fn compact_if_needed(&mut self) {
        let bound = 4 * self.limits.max_tickets + COMPACT_SLACK;
        if self.queued() <= bound {
            return;
        }
        let tickets = &self.tickets;
        let current = |d: &Deadline| {
            tickets
                .get(&d.secret)
                .is_some_and(|slot| slot.expires_at() == d.at)
        };
        self.single_use_expiry.retain(current);
        self.refreshable_expiry.retain(current);
        self.expired_grace.retain(current);
    }
}

/// One table entry.
enum Slot {
    Live(Live),
    /// A spent ticket kept until its original expiry to answer `Reused`.
    Spent {
        expires_at: Instant,
        by: SpentBy,
    },
}

impl Slot {
    fn expires_at(&self) -> Instant {
        match self {
            Self::Live(live) => live.expires_at,
            Self::Spent { expires_at, .. } => *expires_at,
        }
    }
}

struct Live {
    // Boxed so that a tombstone (`Slot::Spent`) does not take the room of
    // the whole data in the table.
    data: Box<TicketData>,
    kind: TicketKind,
    expires_at: Instant,
}

#[derive(Clone, Copy)]
enum SpentBy {
    Redeem,
    Refresh,
    Revoke,
    Expiry,
}

impl SpentBy {
    fn error(self) -> StaError {
        match self {
            Self::Redeem | Self::Refresh => StaError::Reused,
            Self::Revoke => StaError::Revoked,
            Self::Expiry => StaError::Expired,
        }
    }
}

/// How long a ticket that expired unredeemed is still reported as
/// `Expired` (rather than `UnknownTicket`) after its lifetime.
pub const EXPIRED_GRACE: Duration = Duration::from_secs(120);

struct Deadline {
    at: Instant,
    secret: Ticket,
}

/// SipHash-1-3 under a key drawn from the STA's CSPRNG (see the comment on
/// `Sta::tickets`).
#[derive(Clone)]
struct KeyedHash {
    k0: u64,
    k1: u64,
}

impl BuildHasher for KeyedHash {
    type Hasher = SipHasher13;

    fn build_hasher(&self) -> SipHasher13 {
        SipHasher13::new_with_keys(self.k0, self.k1)
    }
}

#[cfg(test)]
mod tests;
