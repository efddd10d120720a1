//! Requests waiting for an answer, per core, each with a deadline.
//!
//! Sans-IO: the caller passes deadlines and "now" (any ordered time type,
//! `Instant` by default) and drives expiry from its own timer
//! ([`PendingTable::next_deadline`] says when). Bounded: a full table
//! refuses a new request (the engine refuses the handshake), it never
//! grows. Insert, complete and expire cost O(log n) (a hash map by id and
//! an ordered set by deadline, both at most `capacity` entries).
//!
//! Keep the capacity at or below the ring's slot count so that the answers
//! to every pending request fit the answer ring at once.

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

use crate::ids::RequestId;

/// Why [`PendingTable::insert`] refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RejectReason {
    /// `capacity` requests are already waiting.
    #[error("pending table is full")]
    Full,
    /// The id is already waiting (ids must be unique).
    #[error("request id is already pending")]
    Duplicate,
}

/// A refused insertion, handing the value back.
#[derive(Debug)]
pub struct Rejected<T> {
    /// Why.
    pub reason: RejectReason,
    /// The value that was not stored.
    pub value: T,
}

/// What the table has seen since it was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PendingCounters {
    /// Requests stored.
    pub inserted: u64,
    /// Refused because the table was full.
    pub refused_full: u64,
    /// Answers matched to a waiting request.
    pub completed: u64,
    /// Requests whose deadline passed.
    pub expired: u64,
    /// Answers for ids not waiting (unknown, already expired or answered):
    /// dropped.
    pub unknown_answers: u64,
}

/// Requests keyed by [`RequestId`], each with a deadline of type `D`.
#[derive(Debug)]
pub struct PendingTable<T, D = Instant> {
    capacity: usize,
    entries: HashMap<RequestId, (D, T)>,
    deadlines: BTreeSet<(D, RequestId)>,
    counters: PendingCounters,
}

impl<T, D: Ord + Copy> PendingTable<T, D> {
    /// An empty table that holds at most `capacity` requests.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            capacity,
            entries: HashMap::with_capacity(capacity),
            deadlines: BTreeSet::new(),
            counters: PendingCounters::default(),
        }
    }

    /// Stores `value` until `complete(id)` or until `deadline` passes.
    /// Refuses (handing `value` back) when full or when `id` is waiting.
    pub fn insert(&mut self, id: RequestId, deadline: D, value: T) -> Result<(), Rejected<T>> {
        if self.entries.contains_key(&id) {
            return Err(Rejected {
                reason: RejectReason::Duplicate,
                value,
            });
        }
        if self.entries.len() >= self.capacity {
            self.counters.refused_full += 1;
            return Err(Rejected {
                reason: RejectReason::Full,
                value,
            });
        }
        self.entries.insert(id, (deadline, value));
        self.deadlines.insert((deadline, id));
        self.counters.inserted += 1;
        Ok(())
    }

    /// Takes the request an answer with `id` belongs to. `None` (counted
    /// in `unknown_answers`) if nothing waits under `id`: drop the answer.
    pub fn complete(&mut self, id: RequestId) -> Option<T> {
        match self.entries.remove(&id) {
            Some((deadline, value)) => {
                self.deadlines.remove(&(deadline, id));
                self.counters.completed += 1;
                Some(value)
            }
            None => {
                self.counters.unknown_answers += 1;
                None
            }
        }
    }

    /// Removes and yields, earliest first, every request whose deadline is
    /// at or before `now`. Entries not yet yielded when the iterator is
    /// dropped stay in the table.
    pub fn expire(&mut self, now: D) -> Expired<'_, T, D> {
        Expired { table: self, now }
    }

    /// Removes every request, in no particular order, without counting
    /// them as expired (for example when no answer can come any more).
    pub fn drain(&mut self) -> impl Iterator<Item = (RequestId, T)> + '_ {
        self.deadlines.clear();
        self.entries.drain().map(|(id, (_, value))| (id, value))
    }

    /// The earliest deadline, to arm a timer.
    pub fn next_deadline(&self) -> Option<D> {
        self.deadlines.first().map(|&(deadline, _)| deadline)
    }

    /// Requests waiting.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// No request waiting.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The bound given at creation.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// What the table has seen.
    pub fn counters(&self) -> PendingCounters {
        self.counters
    }
}

/// Iterator returned by [`PendingTable::expire`].
#[derive(Debug)]
pub struct Expired<'a, T, D> {
    table: &'a mut PendingTable<T, D>,
    now: D,
}

impl<T, D: Ord + Copy> Iterator for Expired<'_, T, D> {
    type Item = (RequestId, T);

    fn next(&mut self) -> Option<Self::Item> {
        let &(deadline, id) = self.table.deadlines.first()?;
        if deadline > self.now {
            return None;
        }
        self.table.deadlines.pop_first();
        let (_, value) = self.table.entries.remove(&id)?;
        self.table.counters.expired += 1;
        Some((id, value))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn table(capacity: usize) -> PendingTable<&'static str, u64> {
        PendingTable::with_capacity(capacity)
    }

    #[test]
    fn completes_a_waiting_request_once() {
        let mut t = table(4);
        t.insert(RequestId(1), 100, "a").unwrap();
        assert_eq!(t.complete(RequestId(1)), Some("a"));
        assert_eq!(t.complete(RequestId(1)), None);
        assert_eq!(t.counters().completed, 1);
        assert_eq!(t.counters().unknown_answers, 1);
        assert!(t.is_empty());
        assert_eq!(t.next_deadline(), None);
    }

    #[test]
    fn refuses_when_full_and_hands_the_value_back() {
        let mut t = table(2);
        t.insert(RequestId(1), 10, "a").unwrap();
        t.insert(RequestId(2), 10, "b").unwrap();
        let rejected = t.insert(RequestId(3), 10, "c").unwrap_err();
        assert_eq!(rejected.reason, RejectReason::Full);
        assert_eq!(rejected.value, "c");
        assert_eq!(t.counters().refused_full, 1);
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn refuses_a_duplicate_id() {
        let mut t = table(2);
        t.insert(RequestId(1), 10, "a").unwrap();
        let rejected = t.insert(RequestId(1), 20, "b").unwrap_err();
        assert_eq!(rejected.reason, RejectReason::Duplicate);
        assert_eq!(t.complete(RequestId(1)), Some("a"));
    }

    #[test]
    fn expires_in_deadline_order_up_to_now_only() {
        let mut t = table(8);
        t.insert(RequestId(1), 30, "late").unwrap();
        t.insert(RequestId(2), 10, "early").unwrap();
        t.insert(RequestId(3), 20, "middle").unwrap();
        assert_eq!(t.next_deadline(), Some(10));
        let gone: Vec<_> = t.expire(20).collect();
        assert_eq!(
            gone,
            vec![(RequestId(2), "early"), (RequestId(3), "middle")]
        );
        assert_eq!(t.counters().expired, 2);
        assert_eq!(
            t.complete(RequestId(2)),
            None,
            "answer after expiry is dropped"
        );
        assert_eq!(t.counters().unknown_answers, 1);
        assert_eq!(t.next_deadline(), Some(30));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn drain_empties_the_table() {
        let mut t = table(8);
        t.insert(RequestId(1), 30, "a").unwrap();
        t.insert(RequestId(2), 10, "b").unwrap();
        assert_eq!(t.drain().count(), 2);
        assert!(t.is_empty());
        assert_eq!(t.next_deadline(), None);
        t.insert(RequestId(1), 5, "c").unwrap();
    }

    proptest! {
        #[test]
        fn never_holds_more_than_its_capacity_and_loses_nothing(
            ops in proptest::collection::vec((0_u8..3, 0_u64..16, 0_u64..100), 0..300)
        ) {
            let mut t: PendingTable<u64, u64> = PendingTable::with_capacity(5);
            let mut model = HashMap::new();
            let mut now = 0;
            for (op, id, time) in ops {
                match op {
                    0 => {
                        let ok = t.insert(RequestId(id), now + time, id).is_ok();
                        prop_assert_eq!(ok, !model.contains_key(&id) && model.len() < 5);
                        if ok {
                            model.insert(id, now + time);
                        }
                    }
                    1 => {
                        prop_assert_eq!(t.complete(RequestId(id)), model.remove(&id).map(|_| id));
                    }
                    _ => {
                        now += time;
                        for (id, value) in t.expire(now) {
                            prop_assert_eq!(id.0, value);
                            let deadline = model.remove(&value);
                            prop_assert!(deadline.is_some_and(|d| d <= now));
                        }
                        prop_assert!(model.values().all(|&d| d > now));
                    }
                }
                prop_assert!(t.len() <= 5);
                prop_assert_eq!(t.len(), model.len());
            }
        }
    }
}
