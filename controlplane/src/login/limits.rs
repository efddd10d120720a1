//! Failure counters with lockout windows, per user name and per client
//! address (issue 6 item 4). In memory: a restart forgets them (a lockout
//! is a brake on guessing, not a record).
//!
//! A key is locked once it has `max_failures` failures within `window`
//! (counted from its first failure); the lock lasts `lockout` from the
//! failure that set it. Keys are whatever the user typed (unknown users
//! are counted exactly like known ones, so counting reveals nothing). The
//! table holds at most [`MAX_KEYS`] keys: when full, stale keys go first,
//! then unlocked ones.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Most keys one [`Counters`] table holds.
pub const MAX_KEYS: usize = 100_000;

/// One table of failure counters.
#[derive(Debug)]
pub struct Counters<K> {
    max_failures: u32,
    window: Duration,
    lockout: Duration,
    entries: Mutex<HashMap<K, Entry>>,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    first: Instant,
    locked_until: Option<Instant>,
}

impl Entry {
    fn stale(&self, now: Instant, window: Duration) -> bool {
        self.locked_until.is_none_or(|until| until <= now)
            && now.saturating_duration_since(self.first) >= window
    }
}

impl<K: Hash + Eq + Clone> Counters<K> {
    /// A table locking a key after `max_failures` failures within
    /// `window`, for `lockout`.
    pub fn new(max_failures: u32, window: Duration, lockout: Duration) -> Self {
        Self {
            max_failures: max_failures.max(1),
            window,
            lockout,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// How long `key` stays locked at `now` (`None`: not locked).
    pub fn locked(&self, key: &K, now: Instant) -> Option<Duration> {
        let entries = self.entries.lock();
        entries
            .get(key)
            .and_then(|entry| entry.locked_until)
            .filter(|until| *until > now)
            .map(|until| until - now)
    }

    /// Counts a failure of `key` at `now`; whether `key` is now locked.
    pub fn fail(&self, key: &K, now: Instant) -> bool {
        let mut entries = self.entries.lock();
        if !entries.contains_key(key) && entries.len() >= MAX_KEYS {
            let window = self.window;
            entries.retain(|_, entry| !entry.stale(now, window));
            if entries.len() >= MAX_KEYS {
                entries.retain(|_, entry| entry.locked_until.is_some_and(|until| until > now));
            }
        }
        let entry = entries.entry(key.clone()).or_insert(Entry {
            failures: 0,
            first: now,
            locked_until: None,
        });
        if entry.stale(now, self.window) {
            *entry = Entry {
                failures: 0,
                first: now,
                locked_until: None,
            };
        }
        entry.failures = entry.failures.saturating_add(1);
        if entry.failures >= self.max_failures && entry.locked_until.is_none_or(|u| u <= now) {
            entry.locked_until = Some(now + self.lockout);
        }
        entry.locked_until.is_some_and(|until| until > now)
    }

    /// Forgets the failures of `key` (a successful login).
    pub fn clear(&self, key: &K) {
        self.entries.lock().remove(key);
    }

    /// How many keys are tracked.
    pub fn len(&self) -> usize {
        self.entries.lock().len()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Counters<String> {
        Counters::new(3, Duration::from_secs(60), Duration::from_secs(120))
    }

    #[test]
    fn a_key_is_locked_at_the_threshold_and_released_after_the_lockout() {
        let counters = table();
        let key = "alice".to_owned();
        let t0 = Instant::now();
        assert!(!counters.fail(&key, t0));
        assert!(!counters.fail(&key, t0 + Duration::from_secs(1)));
        assert_eq!(counters.locked(&key, t0 + Duration::from_secs(1)), None);
        assert!(counters.fail(&key, t0 + Duration::from_secs(2)));
        assert_eq!(
            counters.locked(&key, t0 + Duration::from_secs(2)),
            Some(Duration::from_secs(120))
        );
        assert!(
            counters
                .locked(&key, t0 + Duration::from_secs(121))
                .is_some()
        );
        assert_eq!(counters.locked(&key, t0 + Duration::from_secs(122)), None);
    }

    #[test]
    fn failures_outside_the_window_start_a_new_count() {
        let counters = table();
        let key = "bob".to_owned();
        let t0 = Instant::now();
        counters.fail(&key, t0);
        counters.fail(&key, t0 + Duration::from_secs(1));
        assert!(!counters.fail(&key, t0 + Duration::from_secs(61)));
        assert_eq!(counters.locked(&key, t0 + Duration::from_secs(61)), None);
    }

    #[test]
    fn a_success_clears_the_count_and_keys_are_independent() {
        let counters = table();
        let t0 = Instant::now();
        counters.fail(&"a".to_owned(), t0);
        counters.fail(&"a".to_owned(), t0);
        counters.clear(&"a".to_owned());
        assert!(!counters.fail(&"a".to_owned(), t0));
        assert!(!counters.fail(&"b".to_owned(), t0));
        assert_eq!(counters.len(), 2);
    }
}
