//! Push approval (PROTOCOLS.md §9, the seed's DualAuthOrPush): a login
//! attempt asks the user's registered device to approve it, with number
//! matching.
//!
//! ```text
//! login page ── request(user, attempt, number) ──► PushService ── push (no number) ──► device poll
//!   shows NN                                        ▲                                   │ user types NN
//!   wait(ticket, 30 s) ◄── Approved / Denied / ─────┘◄──── POST /push/v1/answer {id, approve, NN}
//!                          WrongNumber / TimedOut
//! ```
//!
//! - [`PushService`]: the object-safe trait the login flow calls
//!   (`Arc<dyn PushService>`); [`BuiltinPush`] is the built-in provider.
//! - [`protocol`]: the device protocol (JSON bodies, the registration
//!   proof), sans-IO, shared with `tools/push-device`.
//! - [`router`]: the device endpoints (`/push/v1/...`) to mount into the
//!   gateway's web router.
//! - [`PushSection`]: `[push]` in the configuration.
//! - [`DeviceSecrets`]: where registration finds a device's TOTP secret
//!   ([`StoreSecrets`] for devices in the embedded store).
//!
//! Number matching: the login page shows a two-digit [`MatchNumber`]; the
//! push the device receives does not contain it; the device must send the
//! same number back with its approval, or the attempt ends
//! [`PushOutcome::WrongNumber`] (one try: a wrong number is final). This
//! stops push-fatigue attacks: a user who did not start the login has no
//! number to type.
//!
//! The three failure conditions log their own line (all `warn`):
//! `push_no_device` (no device of the user is registered),
//! `push_device_unreachable` (registered, but none is polling nor polled
//! within the grace), `push_no_response` (no answer before the wait ended).
//!
//! What it refuses to do: answer an attempt with another attempt's
//! approval (push ids are random and single-use), accept a second answer,
//! keep unbounded state, or log a token, nonce or number.

mod config;
pub mod protocol;
mod secrets;
mod service;
mod web;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

pub use config::PushSection;
pub use secrets::{DeviceSecrets, LdapSecrets, SecretFuture, SecretLookupError, StoreSecrets};
pub use service::{
    AnswerError, BuiltinPush, MAX_DEVICES_PER_USER, MAX_NONCES, MAX_PENDING_PER_USER,
    MAX_POLLS_PER_DEVICE, NONCE_TTL, PollError, PushSettings, RegisterError,
};
pub use web::router;

use crate::auth::names::UserName;

/// A boxed future of the [`PushService`] methods (object safety).
pub type PushFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The push factor as the login flow sees it. Object safe: hold an
/// `Arc<dyn PushService>`.
pub trait PushService: Send + Sync {
    /// Sends a push for login `attempt` of `user` to the user's connected
    /// devices. `number` is what the login page shows; the device must
    /// send it back. A new request for the same (user, attempt) replaces
    /// the previous one ("Resend notification"): the old push can no
    /// longer be answered.
    ///
    /// Errors: [`PushError::NoDevice`] (logs `push_no_device`),
    /// [`PushError::DeviceUnreachable`] (logs `push_device_unreachable`),
    /// [`PushError::Busy`], [`PushError::Disabled`]. On any error the
    /// login page offers manual OTP entry.
    fn request<'a>(
        &'a self,
        user: &'a UserName,
        attempt: AttemptId,
        number: MatchNumber,
    ) -> PushFuture<'a, Result<PushTicket, PushError>>;

    /// Waits for the device's answer, at most `timeout` and never past the
    /// ticket's own deadline ([`PushTicket::deadline`], `push.wait_secs`
    /// after the request). Returns the first final outcome once: the
    /// ticket is spent when this returns, whatever it returns (a later
    /// `wait` on it answers [`PushOutcome::TimedOut`] at once, and a late
    /// approval is refused). [`PushOutcome::TimedOut`] logs
    /// `push_no_response`.
    fn wait<'a>(&'a self, ticket: &'a PushTicket, timeout: Duration)
    -> PushFuture<'a, PushOutcome>;

    /// Withdraws a push (the user chose to type an OTP instead): its
    /// answer will be refused. Unknown or spent tickets are ignored.
    fn cancel(&self, ticket: &PushTicket);

    /// The configured wait (`push.wait_secs`): how long the login page
    /// should wait before offering the fallback.
    fn wait_time(&self) -> Duration;
}

/// How a push ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    /// The device approved with the number the login page showed.
    Approved,
    /// The device denied the login.
    Denied,
    /// The device approved with a different number: refused, and final.
    WrongNumber,
    /// No answer in time (or the push was withdrawn or replaced).
    TimedOut,
}

impl PushOutcome {
    /// `approved`, `denied`, `wrong_number`, `timed_out`: the name in logs
    /// and in the device protocol.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Approved => "approved",
            Self::Denied => "denied",
            Self::WrongNumber => "wrong_number",
            Self::TimedOut => "timed_out",
        }
    }
}

/// Why no push was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    /// The user has no device registered for push.
    #[error("no device is registered for push")]
    NoDevice,
    /// Devices are registered but none is connected (no poll open and
    /// none within `push.connect_grace_secs`).
    #[error("no registered device is reachable")]
    DeviceUnreachable,
    /// Too many pushes are pending (`push.max_pending`).
    #[error("too many pushes are pending")]
    Busy,
    /// Push is not enabled (`push.enabled = false`).
    #[error("push is not enabled")]
    Disabled,
    /// The operating system's random generator failed.
    #[error("cannot draw random bytes from the operating system")]
    Random,
}

/// The two-digit number of number matching, `00` to `99`: shown on the
/// login page, typed on the device. Compared in constant time.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct MatchNumber(u8);

/// A number that is not two ASCII digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a match number is two digits")]
pub struct MatchNumberError;

impl MatchNumber {
    /// A uniformly random number from the OS CSPRNG.
    ///
    /// Errors: [`PushError::Random`].
    pub fn random() -> Result<Self, PushError> {
        // Rejection sampling: 200 is a multiple of 100.
        for _ in 0..64 {
            let mut byte = [0_u8; 1];
            getrandom::fill(&mut byte).map_err(|_| PushError::Random)?;
            if byte[0] < 200 {
                return Ok(Self(byte[0] % 100));
            }
        }
        Err(PushError::Random)
    }

    /// The number `value` (0 to 99).
    ///
    /// Errors: [`MatchNumberError`] above 99.
    pub fn new(value: u8) -> Result<Self, MatchNumberError> {
        if value > 99 {
            return Err(MatchNumberError);
        }
        Ok(Self(value))
    }

    /// Parses exactly two ASCII digits (`"07"`, not `"7"`).
    ///
    /// Errors: [`MatchNumberError`].
    pub fn parse(text: &str) -> Result<Self, MatchNumberError> {
        match text.as_bytes() {
            [a, b] if a.is_ascii_digit() && b.is_ascii_digit() => {
                Ok(Self((a - b'0') * 10 + (b - b'0')))
            }
            _ => Err(MatchNumberError),
        }
    }

    /// The value, 0 to 99.
    pub fn value(self) -> u8 {
        self.0
    }

    /// Constant-time equality.
    pub fn ct_eq(self, other: Self) -> bool {
        subtle::ConstantTimeEq::ct_eq(&self.0, &other.0).into()
    }
}

impl fmt::Display for MatchNumber {
    /// Two digits, e.g. `07`: what the login page shows.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}", self.0)
    }
}

impl fmt::Debug for MatchNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Only the login page and the user should see it.
        f.write_str("MatchNumber(..)")
    }
}

/// The login attempt a push belongs to: 128 random bits chosen by the
/// login flow (or any unique id it already has, via [`AttemptId::from_bytes`]).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct AttemptId([u8; 16]);

impl AttemptId {
    /// A fresh random id.
    ///
    /// Errors: [`PushError::Random`].
    pub fn random() -> Result<Self, PushError> {
        let mut bytes = [0_u8; 16];
        getrandom::fill(&mut bytes).map_err(|_| PushError::Random)?;
        Ok(Self(bytes))
    }

    /// An id from the login flow's own 16 bytes.
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// A short, non-secret tag for logs (the first 4 bytes in hex).
    pub fn tag(&self) -> String {
        self.0.iter().take(4).map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Debug for AttemptId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AttemptId({}..)", self.tag())
    }
}

/// A sent push: what [`PushService::wait`] and [`PushService::cancel`]
/// take. Its id is random (128 bits) and never reused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushTicket {
    pub(crate) id: protocol::PushId,
    user: UserName,
    attempt: AttemptId,
    deadline: Instant,
    devices: usize,
}

impl PushTicket {
    /// The user asked.
    pub fn user(&self) -> &UserName {
        &self.user
    }

    /// The login attempt that asked.
    pub fn attempt(&self) -> AttemptId {
        self.attempt
    }

    /// When the push stops accepting answers.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// How many connected devices it was offered to.
    pub fn devices(&self) -> usize {
        self.devices
    }
}

/// Fuzz entry points for the parsers of device input; each takes
/// arbitrary bytes and must not panic. The libFuzzer targets call these.
pub mod fuzz {
    use super::protocol;

    /// Parses `data` as a `POST /push/v1/register` body; whatever parses
    /// must serialize and parse back to the same value.
    pub fn register_body(data: &[u8]) {
        if let Ok(body) = protocol::parse_register(data) {
            let text = serde_json::to_vec(&body).unwrap_or_default();
            assert_eq!(
                protocol::parse_register(&text).ok(),
                Some(body),
                "register round trip"
            );
        }
    }

    /// Parses `data` as a `POST /push/v1/answer` body; whatever parses
    /// must serialize and parse back to the same value.
    pub fn answer_body(data: &[u8]) {
        if let Ok(body) = protocol::parse_answer(data) {
            let text = serde_json::to_vec(&body).unwrap_or_default();
            assert_eq!(
                protocol::parse_answer(&text).ok(),
                Some(body),
                "answer round trip"
            );
        }
    }

    /// Parses `data` as an `Authorization` header value (`Bearer TOKEN`)
    /// and as a push id and a match number.
    pub fn device_fields(data: &[u8]) {
        let Ok(text) = std::str::from_utf8(data) else {
            return;
        };
        let _ = protocol::parse_bearer(text);
        if let Ok(id) = protocol::PushId::parse(text) {
            assert_eq!(id.to_string(), text, "push id round trip");
        }
        if let Ok(number) = super::MatchNumber::parse(text) {
            assert_eq!(number.to_string(), text, "match number round trip");
        }
    }

    #[cfg(test)]
    mod tests {
        use proptest::prelude::*;

        use super::*;

        proptest! {
            #[test]
            fn device_input_parsers_survive_arbitrary_bytes(data in proptest::collection::vec(any::<u8>(), 0..512)) {
                register_body(&data);
                answer_body(&data);
                device_fields(&data);
            }

            #[test]
            fn answer_parser_survives_answer_shaped_json(
                id in "[A-Za-z0-9_-]{0,30}",
                decision in "(approve|deny|[a-z]{0,8})",
                number in "[0-9a-z]{0,3}",
            ) {
                let text = format!(r#"{{"id":"{id}","decision":"{decision}","number":"{number}"}}"#);
                answer_body(text.as_bytes());
            }
        }

        #[test]
        fn fuzz_entry_points_accept_valid_inputs() {
            register_body(br#"{"user":"alice","device":"phone","nonce":"AAAA","proof":"BBBB"}"#);
            answer_body(br#"{"id":"AAAAAAAAAAAAAAAAAAAAAA","decision":"approve","number":"07"}"#);
            device_fields(b"Bearer abc");
            device_fields(b"42");
        }
    }
}

#[cfg(test)]
mod tests;
