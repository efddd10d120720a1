//! The built-in push provider: registered devices long-poll the gateway;
//! a login attempt's push waits in memory for their answer.
//!
//! State (one `parking_lot` mutex, never held across an await): devices
//! by token digest, per user the registered devices, the pending pushes
//! and a wake-up channel for the user's open polls; the pushes by id; the
//! outstanding registration nonces. Every table is bounded
//! ([`PushSettings::max_devices`], [`PushSettings::max_pending`],
//! [`MAX_DEVICES_PER_USER`], [`MAX_PENDING_PER_USER`], [`MAX_NONCES`],
//! [`MAX_POLLS_PER_DEVICE`]) and swept of expired entries at most once a
//! second.
//!
//! A device is *connected* while one of its polls is open or within
//! [`PushSettings::connect_grace`] after one ended. A registration with
//! no poll for [`PushSettings::registration_idle`] is forgotten.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::time::Instant;

use super::protocol::{
    self, AnswerBody, Decision, PushId, PushMessage, RegisterBody, RegisterResponse,
};
use super::secrets::DeviceSecrets;
use super::{AttemptId, MatchNumber, PushError, PushFuture, PushOutcome, PushService, PushTicket};
use crate::auth::names::{DeviceName, UserName};
use crate::auth::totp::TotpSecret;

/// Devices one user may have registered at once; a new one replaces the
/// least recently seen.
pub const MAX_DEVICES_PER_USER: usize = 8;
/// Pushes one user may have pending at once; a new one withdraws the
/// oldest.
pub const MAX_PENDING_PER_USER: usize = 4;
/// Registration nonces outstanding at once; a new one evicts the oldest.
pub const MAX_NONCES: usize = 1_024;
/// How long a registration nonce is valid.
pub const NONCE_TTL: Duration = Duration::from_secs(60);
/// Polls one device may have open at once.
pub const MAX_POLLS_PER_DEVICE: u32 = 2;

const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// How long an answered or expired push stays for its waiter.
const LINGER: Duration = Duration::from_secs(5);

/// The provider's timing and bounds (from [`super::PushSection`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PushSettings {
    /// Push offered at all.
    pub enabled: bool,
    /// How long a push waits for its answer.
    pub wait: Duration,
    /// How long a poll is held open without a push.
    pub poll_hold: Duration,
    /// How long after a poll a device still counts as connected.
    pub connect_grace: Duration,
    /// Most registered devices, all users.
    pub max_devices: usize,
    /// Most pending pushes, all users.
    pub max_pending: usize,
}

impl PushSettings {
    /// How long a registration lives without a poll: twice the poll hold
    /// plus the grace, at least a minute.
    pub fn registration_idle(&self) -> Duration {
        (self.poll_hold * 2 + self.connect_grace).max(Duration::from_secs(60))
    }
}

/// Why a registration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    /// Unknown user or device, wrong proof, unknown or used nonce: one
    /// answer for all.
    #[error("registration refused")]
    Rejected,
    /// [`PushSettings::max_devices`] devices are registered.
    #[error("too many registered devices")]
    Full,
    /// Push is off.
    #[error("push is not enabled")]
    Disabled,
    /// The device secrets could not be read.
    #[error("device secrets unavailable")]
    Unavailable,
    /// The OS random generator failed.
    #[error("cannot draw random bytes from the operating system")]
    Random,
}

/// Why a poll was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PollError {
    /// Unknown, replaced or expired token: register again.
    #[error("unknown device token")]
    Unauthorized,
    /// [`MAX_POLLS_PER_DEVICE`] polls are open.
    #[error("too many open polls")]
    TooManyPolls,
}

/// Why an answer was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    /// Unknown, replaced or expired token.
    #[error("unknown device token")]
    Unauthorized,
    /// No pending push of that id was delivered to this device (unknown,
    /// another user's, already answered, expired or withdrawn).
    #[error("unknown push")]
    UnknownPush,
}

type Key = [u8; 32];

/// The built-in provider. Cheap to clone (one shared state).
#[derive(Clone)]
pub struct BuiltinPush {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for BuiltinPush {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuiltinPush")
            .field("settings", &self.inner.settings)
            .finish_non_exhaustive()
    }
}

struct Inner {
    settings: PushSettings,
    secrets: Arc<dyn DeviceSecrets>,
    state: Mutex<State>,
}

struct State {
    devices: HashMap<Key, Device>,
    users: HashMap<UserName, UserEntry>,
    pushes: HashMap<PushId, Pending>,
    nonces: VecDeque<(Key, Instant)>,
    last_sweep: Instant,
}

struct Device {
    user: UserName,
    name: DeviceName,
    last_seen: Instant,
    polls: u32,
}

struct UserEntry {
    devices: Vec<Key>,
    pushes: Vec<PushId>,
    wake: watch::Sender<u64>,
}

struct Pending {
    user: UserName,
    attempt: AttemptId,
    number: MatchNumber,
    deadline: Instant,
    delivered: Vec<Key>,
    outcome: watch::Sender<Option<PushOutcome>>,
}

impl BuiltinPush {
    /// A provider with `settings`, finding device secrets in `secrets`.
    pub fn new(settings: PushSettings, secrets: Arc<dyn DeviceSecrets>) -> Self {
        Self {
            inner: Arc::new(Inner {
                settings,
                secrets,
                state: Mutex::new(State {
                    devices: HashMap::new(),
                    users: HashMap::new(),
                    pushes: HashMap::new(),
                    nonces: VecDeque::new(),
                    last_sweep: Instant::now(),
                }),
            }),
        }
    }

    /// The settings.
    pub fn settings(&self) -> &PushSettings {
        &self.inner.settings
    }

    /// A fresh single-use registration nonce, valid for [`NONCE_TTL`].
    ///
    /// Errors: [`RegisterError::Disabled`], [`RegisterError::Random`].
    pub fn challenge(&self) -> Result<String, RegisterError> {
        if !self.inner.settings.enabled {
            return Err(RegisterError::Disabled);
        }
        let nonce = protocol::random_token().ok_or(RegisterError::Random)?;
        let now = Instant::now();
        let mut state = self.inner.state.lock();
        state.sweep(now, &self.inner.settings);
        if state.nonces.len() >= MAX_NONCES {
            state.nonces.pop_front();
        }
        state
            .nonces
            .push_back((protocol::digest(&nonce), now + NONCE_TTL));
        Ok(nonce)
    }

    /// Registers a device that proved it holds its TOTP secret (see
    /// [`protocol`]); the same (user, device) registered again replaces
    /// the old token.
    ///
    /// Errors: [`RegisterError`]; unknown user, unknown device, bad proof
    /// and bad nonce are all [`RegisterError::Rejected`].
    pub async fn register(&self, body: &RegisterBody) -> Result<RegisterResponse, RegisterError> {
        let settings = &self.inner.settings;
        if !settings.enabled {
            return Err(RegisterError::Disabled);
        }
        let refuse = |reason: &'static str| {
            tracing::warn!(reason, "push_register_refused");
            RegisterError::Rejected
        };
        let nonce_key = protocol::digest(&body.nonce);
        let nonce_ok = {
            let now = Instant::now();
            let mut state = self.inner.state.lock();
            let found = state.nonces.iter().position(|(k, until)| {
                *until > now && bool::from(subtle::ConstantTimeEq::ct_eq(&k[..], &nonce_key[..]))
            });
            if let Some(index) = found {
                state.nonces.remove(index);
            }
            found.is_some()
        };
        if !nonce_ok {
            return Err(refuse("nonce"));
        }
        let (Ok(user), Ok(device)) = (UserName::new(&body.user), DeviceName::new(&body.device))
        else {
            return Err(refuse("name"));
        };
        let secret = match self.inner.secrets.secret(&user, &device).await {
            Ok(secret) => secret,
            Err(error) => {
                tracing::warn!(user = %user, error = %error, "push_register_unavailable");
                return Err(RegisterError::Unavailable);
            }
        };
        // Unknown devices are checked against a dummy secret: same work.
        let dummy = TotpSecret::from_bytes(&[0_u8; 20]).ok();
        let proven = match (&secret, &dummy) {
            (Some(s), _) => {
                protocol::verify_proof(s, &body.nonce, &body.user, &body.device, &body.proof)
            }
            (None, Some(d)) => {
                let _ =
                    protocol::verify_proof(d, &body.nonce, &body.user, &body.device, &body.proof);
                false
            }
            (None, None) => false,
        };
        if !proven {
            tracing::warn!(user = %user, device = %device, reason = "proof", "push_register_refused");
            return Err(RegisterError::Rejected);
        }
        let token = protocol::random_token().ok_or(RegisterError::Random)?;
        let key = protocol::digest(&token);
        let now = Instant::now();
        let mut state = self.inner.state.lock();
        state.sweep(now, settings);
        // The same device again: its old token ends.
        let old: Vec<Key> = state
            .users
            .get(&user)
            .map(|e| {
                e.devices
                    .iter()
                    .filter(|k| state.devices.get(*k).is_some_and(|d| d.name == device))
                    .copied()
                    .collect()
            })
            .unwrap_or_default();
        for k in old {
            state.remove_device(&k);
        }
        let count = state.users.get(&user).map_or(0, |e| e.devices.len());
        if count >= MAX_DEVICES_PER_USER {
            let oldest = state.users.get(&user).and_then(|e| {
                e.devices
                    .iter()
                    .min_by_key(|k| state.devices.get(*k).map(|d| d.last_seen))
                    .copied()
            });
            if let Some(k) = oldest {
                state.remove_device(&k);
            }
        }
        if state.devices.len() >= settings.max_devices {
            tracing::warn!(user = %user, device = %device, max = settings.max_devices, "push_register_full");
            return Err(RegisterError::Full);
        }
        state.devices.insert(
            key,
            Device {
                user: user.clone(),
                name: device.clone(),
                last_seen: now,
                polls: 0,
            },
        );
        let entry = state
            .users
            .entry(user.clone())
            .or_insert_with(UserEntry::new);
        entry.devices.push(key);
        entry.wake.send_modify(|g| *g = g.wrapping_add(1));
        tracing::info!(user = %user, device = %device, "push_device_registered");
        Ok(RegisterResponse {
            token,
            poll_secs: settings.poll_hold.as_secs(),
        })
    }

    /// A device's long poll: the next push for its user not yet delivered
    /// to it, or `None` after [`PushSettings::poll_hold`].
    ///
    /// Errors: [`PollError`].
    pub async fn poll(&self, token: &str) -> Result<Option<PushMessage>, PollError> {
        let key = protocol::digest(token);
        let now = Instant::now();
        let hold_until = now + self.inner.settings.poll_hold;
        let _guard = {
            let mut state = self.inner.state.lock();
            state.sweep(now, &self.inner.settings);
            let device = state.devices.get_mut(&key).ok_or(PollError::Unauthorized)?;
            if device.polls >= MAX_POLLS_PER_DEVICE {
                return Err(PollError::TooManyPolls);
            }
            device.polls += 1;
            device.last_seen = now;
            PollGuard {
                inner: Arc::clone(&self.inner),
                key,
            }
        };
        loop {
            let mut wake = {
                let now = Instant::now();
                let mut state = self.inner.state.lock();
                let State {
                    devices,
                    users,
                    pushes,
                    ..
                } = &mut *state;
                let device = devices.get(&key).ok_or(PollError::Unauthorized)?;
                let entry = users.get(&device.user).ok_or(PollError::Unauthorized)?;
                let wake = entry.wake.subscribe();
                for id in &entry.pushes {
                    let Some(push) = pushes.get_mut(id) else {
                        continue;
                    };
                    if push.outcome.borrow().is_some()
                        || push.deadline <= now
                        || push.delivered.contains(&key)
                    {
                        continue;
                    }
                    push.delivered.push(key);
                    tracing::info!(user = %device.user, device = %device.name, attempt = %push.attempt.tag(), "push_delivered");
                    return Ok(Some(PushMessage {
                        id: id.to_string(),
                        user: device.user.to_string(),
                        device: device.name.to_string(),
                        expires_in_secs: push.deadline.saturating_duration_since(now).as_secs(),
                    }));
                }
                wake
            };
            match tokio::time::timeout_at(hold_until, wake.changed()).await {
                Ok(Ok(())) => continue,
                Ok(Err(_)) => return Err(PollError::Unauthorized),
                Err(_) => return Ok(None),
            }
        }
    }

    /// A device's answer to a push delivered to it. Approve with the
    /// push's number is [`PushOutcome::Approved`]; with any other number
    /// or none, [`PushOutcome::WrongNumber`]; deny is
    /// [`PushOutcome::Denied`]. The first answer is final.
    ///
    /// Errors: [`AnswerError`].
    pub fn answer(&self, token: &str, body: &AnswerBody) -> Result<PushOutcome, AnswerError> {
        let key = protocol::digest(token);
        let now = Instant::now();
        let mut state = self.inner.state.lock();
        let State {
            devices, pushes, ..
        } = &mut *state;
        let device = devices.get_mut(&key).ok_or(AnswerError::Unauthorized)?;
        device.last_seen = now;
        let refuse = |reason: &'static str| {
            tracing::warn!(user = %device.user, device = %device.name, reason, "push_answer_refused");
            AnswerError::UnknownPush
        };
        let Ok(id) = PushId::parse(&body.id) else {
            return Err(refuse("malformed"));
        };
        let Some(push) = pushes.get_mut(&id) else {
            return Err(refuse("unknown"));
        };
        if push.user != device.user || !push.delivered.contains(&key) {
            return Err(refuse("not_delivered"));
        }
        if push.outcome.borrow().is_some() {
            return Err(refuse("answered"));
        }
        if push.deadline <= now {
            return Err(refuse("expired"));
        }
        let outcome = match body.decision {
            Decision::Deny => PushOutcome::Denied,
            Decision::Approve => {
                let given = body.number.as_deref().map(MatchNumber::parse);
                match given {
                    Some(Ok(number)) if number.ct_eq(push.number) => PushOutcome::Approved,
                    _ => PushOutcome::WrongNumber,
                }
            }
        };
        push.outcome.send_replace(Some(outcome));
        if outcome == PushOutcome::WrongNumber {
            // Someone approved without the login page's number: the
            // push-fatigue signal.
            tracing::warn!(user = %device.user, device = %device.name, attempt = %push.attempt.tag(), outcome = outcome.as_str(), "push_answered");
            return Ok(outcome);
        }
        tracing::info!(user = %device.user, device = %device.name, attempt = %push.attempt.tag(), outcome = outcome.as_str(), "push_answered");
        Ok(outcome)
    }

    /// How many of `user`'s registered devices count as connected now.
    pub fn connected_devices(&self, user: &UserName) -> usize {
        let now = Instant::now();
        let state = self.inner.state.lock();
        state.connected(user, now, &self.inner.settings)
    }

    fn request_now(
        &self,
        user: &UserName,
        attempt: AttemptId,
        number: MatchNumber,
    ) -> Result<PushTicket, PushError> {
        let settings = &self.inner.settings;
        if !settings.enabled {
            return Err(PushError::Disabled);
        }
        let now = Instant::now();
        let mut state = self.inner.state.lock();
        state.sweep(now, settings);
        let registered = state.users.get(user).map_or(0, |e| e.devices.len());
        if registered == 0 {
            tracing::warn!(user = %user, attempt = %attempt.tag(), "push_no_device");
            return Err(PushError::NoDevice);
        }
        let connected = state.connected(user, now, settings);
        if connected == 0 {
            tracing::warn!(user = %user, attempt = %attempt.tag(), registered, "push_device_unreachable");
            return Err(PushError::DeviceUnreachable);
        }
        // "Resend notification": the attempt's earlier push ends.
        let earlier: Vec<PushId> = state
            .users
            .get(user)
            .map(|e| {
                e.pushes
                    .iter()
                    .filter(|id| state.pushes.get(*id).is_some_and(|p| p.attempt == attempt))
                    .copied()
                    .collect()
            })
            .unwrap_or_default();
        for id in earlier {
            state.remove_push(&id);
        }
        while state
            .users
            .get(user)
            .is_some_and(|e| e.pushes.len() >= MAX_PENDING_PER_USER)
        {
            let oldest = state
                .users
                .get(user)
                .and_then(|e| e.pushes.first().copied());
            match oldest {
                Some(id) => state.remove_push(&id),
                None => break,
            }
        }
        if state.pushes.len() >= settings.max_pending {
            tracing::warn!(user = %user, attempt = %attempt.tag(), max = settings.max_pending, "push_busy");
            return Err(PushError::Busy);
        }
        let id = PushId::random().ok_or(PushError::Random)?;
        let deadline = now + settings.wait;
        state.pushes.insert(
            id,
            Pending {
                user: user.clone(),
                attempt,
                number,
                deadline,
                delivered: Vec::new(),
                outcome: watch::Sender::new(None),
            },
        );
        if let Some(entry) = state.users.get_mut(user) {
            entry.pushes.push(id);
            entry.wake.send_modify(|g| *g = g.wrapping_add(1));
        }
        tracing::info!(user = %user, attempt = %attempt.tag(), devices = connected, "push_sent");
        Ok(PushTicket {
            id,
            user: user.clone(),
            attempt,
            deadline: deadline.into_std(),
            devices: connected,
        })
    }

    async fn wait_for(&self, ticket: &PushTicket, timeout: Duration) -> PushOutcome {
        let receiver = {
            let state = self.inner.state.lock();
            state.pushes.get(&ticket.id).map(|p| p.outcome.subscribe())
        };
        let Some(mut receiver) = receiver else {
            tracing::debug!(user = %ticket.user, attempt = %ticket.attempt.tag(), "push_wait_spent");
            return PushOutcome::TimedOut;
        };
        let deadline = Instant::from_std(ticket.deadline);
        let until = (Instant::now() + timeout).min(deadline);
        // The value is read again under the lock below; this only waits.
        let _ = tokio::time::timeout_at(until, receiver.wait_for(Option::is_some)).await;
        let outcome = {
            let mut state = self.inner.state.lock();
            let outcome = state
                .pushes
                .get(&ticket.id)
                .and_then(|p| *p.outcome.borrow());
            state.remove_push(&ticket.id);
            outcome
        };
        match outcome {
            Some(outcome) => {
                tracing::info!(user = %ticket.user, attempt = %ticket.attempt.tag(), outcome = outcome.as_str(), "push_outcome");
                outcome
            }
            None => {
                tracing::warn!(user = %ticket.user, attempt = %ticket.attempt.tag(), "push_no_response");
                PushOutcome::TimedOut
            }
        }
    }
}

impl PushService for BuiltinPush {
    fn request<'a>(
        &'a self,
        user: &'a UserName,
        attempt: AttemptId,
        number: MatchNumber,
    ) -> PushFuture<'a, Result<PushTicket, PushError>> {
        Box::pin(async move { self.request_now(user, attempt, number) })
    }

    fn wait<'a>(
        &'a self,
        ticket: &'a PushTicket,
        timeout: Duration,
    ) -> PushFuture<'a, PushOutcome> {
        Box::pin(self.wait_for(ticket, timeout))
    }

    fn cancel(&self, ticket: &PushTicket) {
        let mut state = self.inner.state.lock();
        if state.pushes.contains_key(&ticket.id) {
            state.remove_push(&ticket.id);
            tracing::info!(user = %ticket.user, attempt = %ticket.attempt.tag(), "push_cancelled");
        }
    }

    fn wait_time(&self) -> Duration {
        self.inner.settings.wait
    }
}

impl UserEntry {
    fn new() -> Self {
        Self {
            devices: Vec::new(),
            pushes: Vec::new(),
            wake: watch::Sender::new(0),
        }
    }
}

impl State {
    fn connected(&self, user: &UserName, now: Instant, settings: &PushSettings) -> usize {
        self.users.get(user).map_or(0, |e| {
            e.devices
                .iter()
                .filter_map(|k| self.devices.get(k))
                .filter(|d| {
                    d.polls > 0
                        || now.saturating_duration_since(d.last_seen) <= settings.connect_grace
                })
                .count()
        })
    }

    fn remove_push(&mut self, id: &PushId) {
        if let Some(push) = self.pushes.remove(id) {
            if let Some(entry) = self.users.get_mut(&push.user) {
                entry.pushes.retain(|p| p != id);
            }
            self.drop_user_if_empty(&push.user);
        }
    }

    fn remove_device(&mut self, key: &Key) {
        if let Some(device) = self.devices.remove(key) {
            if let Some(entry) = self.users.get_mut(&device.user) {
                entry.devices.retain(|k| k != key);
                // Its open polls re-check and end.
                entry.wake.send_modify(|g| *g = g.wrapping_add(1));
            }
            self.drop_user_if_empty(&device.user);
        }
    }

    /// Forgets a user with no devices and no pushes. Polls of removed
    /// devices still waiting on the user's wake-up channel see it close
    /// and end with [`PollError::Unauthorized`].
    fn drop_user_if_empty(&mut self, user: &UserName) {
        if self
            .users
            .get(user)
            .is_some_and(|e| e.devices.is_empty() && e.pushes.is_empty())
        {
            self.users.remove(user);
        }
    }

    fn sweep(&mut self, now: Instant, settings: &PushSettings) {
        if now.saturating_duration_since(self.last_sweep) < SWEEP_EVERY {
            return;
        }
        self.last_sweep = now;
        self.nonces.retain(|(_, until)| *until > now);
        let stale_pushes: Vec<PushId> = self
            .pushes
            .iter()
            .filter(|(_, p)| p.deadline + LINGER <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in stale_pushes {
            self.remove_push(&id);
        }
        let idle = settings.registration_idle();
        let stale_devices: Vec<Key> = self
            .devices
            .iter()
            .filter(|(_, d)| d.polls == 0 && now.saturating_duration_since(d.last_seen) > idle)
            .map(|(k, _)| *k)
            .collect();
        for key in stale_devices {
            if let Some(d) = self.devices.get(&key) {
                tracing::info!(user = %d.user, device = %d.name, "push_device_expired");
            }
            self.remove_device(&key);
        }
    }
}

/// Ends a poll's count on its device, however the poll ends (including
/// the client going away and the handler future being dropped).
struct PollGuard {
    inner: Arc<Inner>,
    key: Key,
}

impl Drop for PollGuard {
    fn drop(&mut self) {
        let mut state = self.inner.state.lock();
        if let Some(device) = state.devices.get_mut(&self.key) {
            device.polls = device.polls.saturating_sub(1);
            device.last_seen = Instant::now();
        }
    }
}
