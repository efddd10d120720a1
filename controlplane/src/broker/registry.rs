//! The worker registry: which workers (VDAs) registered with the broker,
//! where they listen, whether they are ready, their load, and when they
//! were last heard of. The protocol is Gatehouse's own, JSON over HTTP on
//! the internal listener (docs/REGISTRATION.md); this module is its
//! sans-IO core: messages in, state out, time injected.
//!
//! A worker is *available* when it registered, said it is ready, and its
//! last message is younger than the heartbeat timeout; one that stops
//! heartbeating becomes unavailable without being forgotten (a late
//! heartbeat brings it back). Workers of every supported version coexist.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::sta::{CgpAddress, WorkerAddr};

/// The registration protocol versions this broker speaks. Version 1:
/// register, heartbeat, unregister. Version 2 adds `max_sessions`.
pub const SUPPORTED_VERSIONS: [u32; 2] = [1, 2];

/// Most workers the registry holds; registrations past it are refused.
pub const MAX_WORKERS: usize = 10_000;

/// Longest worker name, in bytes.
pub const MAX_WORKER_NAME: usize = 64;

/// A worker's name: 1 to [`MAX_WORKER_NAME`] bytes of letters, digits,
/// `.`, `-`, `_`. The catalog's desktops name their worker with it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct WorkerName(String);

impl WorkerName {
    /// Checks `text`.
    ///
    /// Errors: [`RegistryError::BadName`].
    pub fn new(text: &str) -> Result<Self, RegistryError> {
        let valid = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_');
        if text.is_empty() || text.len() > MAX_WORKER_NAME || !text.bytes().all(valid) {
            return Err(RegistryError::BadName);
        }
        Ok(Self(text.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for WorkerName {
    type Error = RegistryError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(&value)
    }
}

impl From<WorkerName> for String {
    fn from(name: WorkerName) -> Self {
        name.0
    }
}

impl std::fmt::Display for WorkerName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// `POST /broker/v1/register`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Register {
    /// The protocol version the worker speaks.
    pub version: u32,
    /// The worker's name.
    pub worker: String,
    /// Its ICA listener, `host:port`.
    pub ica: String,
    /// Its CGP listener, `host:port` or `*:port`.
    #[serde(default)]
    pub cgp: Option<String>,
    /// Whether it accepts sessions now (default true).
    #[serde(default = "yes")]
    pub ready: bool,
    /// Sessions it runs.
    #[serde(default)]
    pub sessions: u32,
    /// Its load index, 0 (idle) to 10000 (full).
    #[serde(default)]
    pub load: u32,
    /// Version 2: most sessions it takes; full workers are not chosen.
    #[serde(default)]
    pub max_sessions: Option<u32>,
}

fn yes() -> bool {
    true
}

/// `POST /broker/v1/heartbeat`: the readiness and load report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {
    /// The protocol version.
    pub version: u32,
    /// The worker's name.
    pub worker: String,
    /// Whether it accepts sessions now (default true).
    #[serde(default = "yes")]
    pub ready: bool,
    /// Sessions it runs.
    #[serde(default)]
    pub sessions: u32,
    /// Its load index, 0 to 10000.
    #[serde(default)]
    pub load: u32,
}

/// `POST /broker/v1/unregister`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Unregister {
    /// The protocol version.
    pub version: u32,
    /// The worker's name.
    pub worker: String,
}

/// Highest load index.
pub const MAX_LOAD: u32 = 10_000;

/// Why a message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// A version not in [`SUPPORTED_VERSIONS`].
    #[error("unsupported registration version {0}, supported versions are 1 and 2")]
    UnsupportedVersion(u32),
    /// The worker name is empty, too long or has a forbidden byte.
    #[error("worker name must be 1 to 64 letters, digits, '.', '-' or '_'")]
    BadName,
    /// The ICA or CGP address does not parse.
    #[error("bad {0} address")]
    BadAddress(&'static str),
    /// A load index above [`MAX_LOAD`].
    #[error("load must be 0 to 10000")]
    BadLoad,
    /// A heartbeat of a worker that is not registered: register again.
    #[error("unknown worker, register first")]
    UnknownWorker,
    /// [`MAX_WORKERS`] workers are registered.
    #[error("registry full")]
    Full,
}

impl RegistryError {
    /// The error code of the JSON answer (docs/REGISTRATION.md).
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnsupportedVersion(_) => "unsupported-version",
            Self::BadName | Self::BadAddress(_) | Self::BadLoad => "bad-request",
            Self::UnknownWorker => "unknown-worker",
            Self::Full => "registry-full",
        }
    }
}

/// What the registry knows of one worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerState {
    /// Its name.
    pub name: WorkerName,
    /// The protocol version it registered with.
    pub version: u32,
    /// Its ICA listener.
    pub ica: WorkerAddr,
    /// Its CGP listener.
    pub cgp: Option<CgpAddress>,
    /// Whether it said it is ready.
    pub ready: bool,
    /// Sessions it reported.
    pub sessions: u32,
    /// Its load index.
    pub load: u32,
    /// Most sessions it takes (version 2).
    pub max_sessions: Option<u32>,
    /// When it was last heard of.
    pub last_seen: Instant,
}

impl WorkerState {
    /// Whether it reported as many sessions as it takes, or full load.
    pub fn is_full(&self) -> bool {
        self.load >= MAX_LOAD || self.max_sessions.is_some_and(|max| self.sessions >= max)
    }
}

/// A worker as the decision core sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerView {
    /// Its ICA listener.
    pub ica: WorkerAddr,
    /// Its CGP listener.
    pub cgp: Option<CgpAddress>,
    /// Registered, ready and heard of within the timeout.
    pub available: bool,
    /// Full ([`WorkerState::is_full`]).
    pub full: bool,
    /// Sessions reported.
    pub sessions: u32,
    /// Load index.
    pub load: u32,
}

/// The registry.
#[derive(Debug)]
pub struct Registry {
    workers: BTreeMap<WorkerName, WorkerState>,
    timeout: Duration,
}

/// What a registration changed, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registered {
    /// A worker not known before.
    New,
    /// A known worker registered again (restart, new addresses).
    Again,
}

impl Registry {
    /// An empty registry; a worker silent for `timeout` is unavailable.
    pub fn new(timeout: Duration) -> Self {
        Self {
            workers: BTreeMap::new(),
            timeout,
        }
    }

    /// The heartbeat timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Registers (or re-registers) a worker.
    ///
    /// Errors: [`RegistryError::UnsupportedVersion`],
    /// [`RegistryError::BadName`], [`RegistryError::BadAddress`],
    /// [`RegistryError::BadLoad`], [`RegistryError::Full`].
    pub fn register(
        &mut self,
        message: &Register,
        now: Instant,
    ) -> Result<(WorkerName, Registered), RegistryError> {
        check_version(message.version)?;
        let name = WorkerName::new(&message.worker)?;
        let ica = WorkerAddr::decode(&message.ica).map_err(|_| RegistryError::BadAddress("ica"))?;
        let cgp = match &message.cgp {
            None => None,
            Some(text) => {
                Some(CgpAddress::decode(text).map_err(|_| RegistryError::BadAddress("cgp"))?)
            }
        };
        if message.load > MAX_LOAD {
            return Err(RegistryError::BadLoad);
        }
        let known = self.workers.contains_key(&name);
        if !known && self.workers.len() >= MAX_WORKERS {
            return Err(RegistryError::Full);
        }
        let state = WorkerState {
            name: name.clone(),
            version: message.version,
            ica,
            cgp,
            ready: message.ready,
            sessions: message.sessions,
            load: message.load,
            // Version 1 has no session limit, whatever it sent.
            max_sessions: message.max_sessions.filter(|_| message.version >= 2),
            last_seen: now,
        };
        self.workers.insert(name.clone(), state);
        Ok((
            name,
            if known {
                Registered::Again
            } else {
                Registered::New
            },
        ))
    }

    /// Records a heartbeat (readiness and load).
    ///
    /// Errors: [`RegistryError::UnsupportedVersion`],
    /// [`RegistryError::BadName`], [`RegistryError::BadLoad`],
    /// [`RegistryError::UnknownWorker`].
    pub fn heartbeat(
        &mut self,
        message: &Heartbeat,
        now: Instant,
    ) -> Result<WorkerName, RegistryError> {
        check_version(message.version)?;
        let name = WorkerName::new(&message.worker)?;
        if message.load > MAX_LOAD {
            return Err(RegistryError::BadLoad);
        }
        let state = self
            .workers
            .get_mut(&name)
            .ok_or(RegistryError::UnknownWorker)?;
        state.ready = message.ready;
        state.sessions = message.sessions;
        state.load = message.load;
        state.last_seen = now;
        Ok(name)
    }

    /// Forgets a worker; whether it was known.
    ///
    /// Errors: [`RegistryError::UnsupportedVersion`],
    /// [`RegistryError::BadName`].
    pub fn unregister(&mut self, message: &Unregister) -> Result<bool, RegistryError> {
        check_version(message.version)?;
        let name = WorkerName::new(&message.worker)?;
        Ok(self.workers.remove(&name).is_some())
    }

    /// Whether `state` counts as available at `now`.
    pub fn is_available(&self, state: &WorkerState, now: Instant) -> bool {
        state.ready && now.saturating_duration_since(state.last_seen) <= self.timeout
    }

    /// One worker.
    pub fn get(&self, name: &WorkerName) -> Option<&WorkerState> {
        self.workers.get(name)
    }

    /// Every worker, by name.
    pub fn workers(&self) -> impl Iterator<Item = &WorkerState> {
        self.workers.values()
    }

    /// The decision core's view at `now`.
    pub fn snapshot(&self, now: Instant) -> BTreeMap<WorkerName, WorkerView> {
        self.workers
            .iter()
            .map(|(name, state)| {
                (
                    name.clone(),
                    WorkerView {
                        ica: state.ica.clone(),
                        cgp: state.cgp.clone(),
                        available: self.is_available(state, now),
                        full: state.is_full(),
                        sessions: state.sessions,
                        load: state.load,
                    },
                )
            })
            .collect()
    }
}

fn check_version(version: u32) -> Result<(), RegistryError> {
    if SUPPORTED_VERSIONS.contains(&version) {
        Ok(())
    } else {
        Err(RegistryError::UnsupportedVersion(version))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn register(name: &str, version: u32) -> Register {
        Register {
            version,
            worker: name.to_owned(),
            ica: "127.0.0.1:1494".to_owned(),
            cgp: Some("*:2598".to_owned()),
            ready: true,
            sessions: 0,
            load: 0,
            max_sessions: Some(1),
        }
    }

    #[test]
    fn a_registered_worker_is_available_until_its_heartbeats_stop() {
        let t0 = Instant::now();
        let mut registry = Registry::new(Duration::from_secs(10));
        let (name, how) = registry.register(&register("w1", 1), t0).unwrap();
        assert_eq!(how, Registered::New);
        assert!(registry.snapshot(t0)[&name].available);
        assert!(registry.snapshot(t0 + Duration::from_secs(10))[&name].available);
        assert!(!registry.snapshot(t0 + Duration::from_secs(11))[&name].available);
        let beat = Heartbeat {
            version: 1,
            worker: "w1".to_owned(),
            ready: true,
            sessions: 3,
            load: 500,
        };
        registry
            .heartbeat(&beat, t0 + Duration::from_secs(11))
            .unwrap();
        let view = &registry.snapshot(t0 + Duration::from_secs(12))[&name];
        assert!(view.available);
        assert_eq!((view.sessions, view.load), (3, 500));
    }

    #[test]
    fn an_unknown_version_is_refused_naming_the_supported_ones() {
        let mut registry = Registry::new(Duration::from_secs(10));
        let error = registry
            .register(&register("w1", 3), Instant::now())
            .unwrap_err();
        assert_eq!(error, RegistryError::UnsupportedVersion(3));
        assert_eq!(error.code(), "unsupported-version");
        assert!(error.to_string().contains("1 and 2"), "{error}");
    }

    #[test]
    fn version_1_and_version_2_workers_coexist_and_only_2_has_a_session_limit() {
        let now = Instant::now();
        let mut registry = Registry::new(Duration::from_secs(10));
        let mut old = register("old", 1);
        old.sessions = 5;
        let mut new = register("new", 2);
        new.sessions = 1;
        registry.register(&old, now).unwrap();
        registry.register(&new, now).unwrap();
        let snapshot = registry.snapshot(now);
        assert!(!snapshot[&WorkerName::new("old").unwrap()].full);
        assert!(snapshot[&WorkerName::new("new").unwrap()].full);
    }

    #[test]
    fn heartbeats_of_unknown_workers_ask_for_a_registration() {
        let mut registry = Registry::new(Duration::from_secs(10));
        let beat = Heartbeat {
            version: 1,
            worker: "ghost".to_owned(),
            ready: true,
            sessions: 0,
            load: 0,
        };
        assert_eq!(
            registry.heartbeat(&beat, Instant::now()),
            Err(RegistryError::UnknownWorker)
        );
    }

    #[test]
    fn a_worker_not_ready_is_unavailable_and_unregister_forgets_it() {
        let now = Instant::now();
        let mut registry = Registry::new(Duration::from_secs(10));
        let mut message = register("w1", 1);
        message.ready = false;
        let (name, _) = registry.register(&message, now).unwrap();
        assert!(!registry.snapshot(now)[&name].available);
        let bye = Unregister {
            version: 1,
            worker: "w1".to_owned(),
        };
        assert!(registry.unregister(&bye).unwrap());
        assert!(!registry.unregister(&bye).unwrap());
        assert!(registry.snapshot(now).is_empty());
    }

    #[test]
    fn bad_names_addresses_and_loads_are_refused() {
        let now = Instant::now();
        let mut registry = Registry::new(Duration::from_secs(10));
        let mut message = register("bad name", 1);
        assert_eq!(
            registry.register(&message, now),
            Err(RegistryError::BadName)
        );
        message.worker = "w1".to_owned();
        message.ica = "nowhere".to_owned();
        assert_eq!(
            registry.register(&message, now),
            Err(RegistryError::BadAddress("ica"))
        );
        message.ica = "127.0.0.1:1494".to_owned();
        message.cgp = Some("x:0".to_owned());
        assert_eq!(
            registry.register(&message, now),
            Err(RegistryError::BadAddress("cgp"))
        );
        message.cgp = None;
        message.load = MAX_LOAD + 1;
        assert_eq!(
            registry.register(&message, now),
            Err(RegistryError::BadLoad)
        );
        assert!(WorkerName::new(&"a".repeat(65)).is_err());
    }

    #[test]
    fn registering_again_replaces_the_addresses() {
        let now = Instant::now();
        let mut registry = Registry::new(Duration::from_secs(10));
        registry.register(&register("w1", 1), now).unwrap();
        let mut again = register("w1", 1);
        again.ica = "127.0.0.2:1495".to_owned();
        let (name, how) = registry.register(&again, now).unwrap();
        assert_eq!(how, Registered::Again);
        assert_eq!(registry.get(&name).unwrap().ica.port, 1495);
    }
}
