//! The gateway's login decisions (issue 6 items 1, 2, 4): the password
//! factor (LDAP when `[ldap] url` is set, else the local user directory),
//! then what the `[login] schema` asks (a TOTP code, RADIUS with
//! Access-Challenge), failure counters with lockouts, the logins waiting
//! for their second factor, and the sessions that a success creates.
//!
//! ```text
//! POST /cgi/login ─► address locked? ─► password ─► after_password(schema)
//!                                                   ├─ Done ─────────────► session
//!                                                   ├─ Otp / RadiusPasscode ─► pending ─► POST /cgi/dlge
//!                                                   └─ RadiusSecondPassword (passwd1) ─► Accept/Challenge/Reject
//! POST /cgi/dlge ─► pending (by its cookie) ─► code / RADIUS answer ─► session | page again | failure
//! ```
//!
//! Push approval (`schema = "password+otp-or-push"` with a push service,
//! [`Login::with_push`]): after the password, a user with an OTP device
//! gets a push with a fresh two-digit [`MatchNumber`] that the page shows;
//! a task waits for the device's answer ([`PushService::wait`]) and
//! `GET /cgi/pushwait` ([`Login::push_wait`]) waits on that task at most
//! [`PUSH_POLL`] per request, so the page reloads itself without
//! JavaScript until an outcome:
//!
//! ```text
//! password ok ─► request push ─┬─ sent ─► page "choose NN" ─► /cgi/pushwait ─┬─ approved ─► session
//!                              │                                            ├─ denied / wrong number ─► failure (counted)
//!                              │                                            ├─ pending ─► page again
//!                              │                                            └─ timed out ─┐
//!                              └─ no device / unreachable ──────────────────────────────┴─► fallback page:
//!                                   OTP form (POST /cgi/dlge) + "Resend notification" (POST /cgi/pushresend)
//! ```
//!
//! Decisions (documented in `gatehouse.example.toml` too):
//! - Unknown user, wrong password and a locked user name all get the same
//!   answer ([`Failure::BadCredentials`]) after the same password work: a
//!   locked user is not told so even with the right password (that would
//!   tell a guesser the guess was right). A locked client address is told
//!   so, without any password check: it says nothing about users.
//! - A second-factor failure counts against the user name and the
//!   address like a wrong password; a pending login allows
//!   [`MAX_ANSWERS`] answers (one for a RADIUS Access-Challenge, whose
//!   state the server drops on a reject), then the user starts over.
//! - Every decision logs one `login` event with `user`, `peer`, `factor`,
//!   `outcome` (`success`, `challenge`, `failure`) and `reason`.
//!
//! What it refuses: logging a password, code or cookie value; storing a
//! cookie value (only its SHA-256, [`session`]).

pub mod config;
pub mod devices;
pub mod limits;
pub mod session;

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::task::AbortHandle;

pub use config::{LoginSchema, LoginSection};
pub use devices::{DevicesError, UserDevices};
pub use session::{Scope, SessionError, SessionToken, Sessions, WebSession};

use crate::auth::devices::{OtpDevices, OtpVerdict};
use crate::auth::local::{LocalUserError, LocalUsers};
use crate::auth::names::UserName;
use crate::auth::password::{Password, PasswordError, PasswordHasher, PasswordParams};
use crate::auth::seal::{KeyFileError, OtpKey};
use crate::auth::totp::{TotpCode, TotpParams};
use crate::config::{Config, ConfigError};
use crate::ldap::{DirectoryError, LdapDirectory, PasswordDirectory, UserInfo, VerifyFuture};
use crate::push::{AttemptId, MatchNumber, PushError, PushOutcome, PushService, PushTicket};
use crate::radius::{ChallengeState, RadiusClient, RadiusError, RadiusOutcome};
use crate::store::{Store, StoreError};
use limits::Counters;

/// Answers one pending login accepts before the user must start over.
pub const MAX_ANSWERS: u32 = 3;

/// The prompt of the OTP page.
pub const OTP_PROMPT: &str = "Enter the code from your authenticator";

/// How long one `/cgi/pushwait` request waits for the device's answer
/// before the page is shown again (and reloads itself).
pub const PUSH_POLL: Duration = Duration::from_secs(3);

/// Notifications one pending login may resend.
pub const MAX_RESENDS: u32 = 5;

/// The prompt of a RADIUS passcode page when the server gave none.
pub const RADIUS_PROMPT: &str = "Enter your passcode";

/// The login form (`POST /cgi/login`). Never printed.
#[derive(Clone, Default)]
pub struct LoginForm {
    /// `login`: the user name.
    pub login: String,
    /// `passwd`: the password.
    pub passwd: String,
    /// `passwd1`: the second password (the RADIUS password with
    /// `second_password = true`).
    pub passwd1: String,
}

impl fmt::Debug for LoginForm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginForm")
            .field("login", &self.login)
            .finish_non_exhaustive()
    }
}

/// Why a login did not (yet) succeed, as the user is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Unknown user, wrong password, or a locked user name.
    BadCredentials,
    /// Too many failures from the client's address.
    AddressLocked,
    /// The code or passcode was not accepted.
    BadCode,
    /// The code was accepted before.
    ReplayedCode,
    /// The pending login is unknown or too old.
    Expired,
    /// A directory, RADIUS server or the store could not answer.
    Unavailable,
    /// Too many logins are waiting for their second factor.
    Busy,
    /// `password+otp`, no device, and `enrol_without_device = false`.
    NoDevice,
    /// The push was denied on the device.
    PushDenied,
    /// The device approved with another number than the page showed.
    WrongNumber,
}

impl Failure {
    /// The message on the page.
    pub fn message(self) -> &'static str {
        match self {
            Self::BadCredentials => {
                "Incorrect user name or password, or too many failed attempts. Try again later if this persists."
            }
            Self::AddressLocked => "Too many failed attempts from your address. Try again later.",
            Self::BadCode => "The code was not accepted.",
            Self::ReplayedCode => "This code was already used. Wait for the next one.",
            Self::Expired => "Your logon took too long or was interrupted. Log on again.",
            Self::Unavailable => "The logon service is unavailable. Try again later.",
            Self::Busy => "The gateway is busy. Try again in a moment.",
            Self::NoDevice => {
                "No authenticator is registered for your account. Ask your administrator."
            }
            Self::PushDenied => "The logon was denied on your device.",
            Self::WrongNumber => {
                "The number chosen on your device did not match the number shown. The logon was refused."
            }
        }
    }

    /// The `reason` field of the `login` event.
    pub fn reason(self) -> &'static str {
        match self {
            Self::BadCredentials => "bad_credentials",
            Self::AddressLocked => "address_locked",
            Self::BadCode => "bad_code",
            Self::ReplayedCode => "replayed_code",
            Self::Expired => "expired",
            Self::Unavailable => "unavailable",
            Self::Busy => "busy",
            Self::NoDevice => "no_device",
            Self::PushDenied => "push_denied",
            Self::WrongNumber => "wrong_number",
        }
    }
}

/// What a login step yields.
#[derive(Debug)]
pub enum LoginReply {
    /// Logged in: set the cookie.
    Session {
        /// The `NSC_AAAC` value.
        token: SessionToken,
        /// What the session may do.
        scope: Scope,
    },
    /// A second factor is due: show `prompt`, post the answer to
    /// `/cgi/dlge` with the pending cookie `pending`.
    Challenge {
        /// The pending login's cookie value.
        pending: String,
        /// What to ask (untrusted text from RADIUS: escape it).
        prompt: String,
        /// Why the page is shown again, if it is.
        error: Option<Failure>,
    },
    /// A push was sent: show `number` ("choose NN on your device") and
    /// wait at `/cgi/pushwait` with the pending cookie `pending`.
    Push {
        /// The pending login's cookie value.
        pending: String,
        /// The number the device must send back.
        number: MatchNumber,
    },
    /// No push answer (or none could be sent): the OTP form posting to
    /// `/cgi/dlge`, and "Resend notification" posting to `/cgi/pushresend`.
    PushFallback {
        /// The pending login's cookie value.
        pending: String,
        /// Why no push is waiting, if that is news.
        notice: Option<PushNotice>,
        /// Why the page is shown again after a code, if it is.
        error: Option<Failure>,
    },
    /// Back to the login page with this message.
    Failed(Failure),
}

/// Why the fallback page is shown instead of waiting for a push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushNotice {
    /// The device did not answer within `push.wait_secs`.
    NoAnswer,
    /// None of the user's devices is registered for push.
    NoDevice,
    /// The user's devices are registered but not connected.
    Unreachable,
    /// The push service is off, busy or failed.
    Unavailable,
    /// [`MAX_RESENDS`] notifications were resent.
    ResendLimit,
}

impl PushNotice {
    /// The message on the fallback page.
    pub fn message(self) -> &'static str {
        match self {
            Self::NoAnswer => "Your device did not answer in time.",
            Self::NoDevice => "No device is registered for notifications.",
            Self::Unreachable => "Your device could not be reached.",
            Self::Unavailable => "Notifications are unavailable right now.",
            Self::ResendLimit => "No more notifications can be sent for this logon.",
        }
    }

    /// The `reason` field of the `login` event.
    pub fn reason(self) -> &'static str {
        match self {
            Self::NoAnswer => "push_timed_out",
            Self::NoDevice => "push_no_device",
            Self::Unreachable => "push_unreachable",
            Self::Unavailable => "push_unavailable",
            Self::ResendLimit => "push_resend_limit",
        }
    }

    fn of(error: PushError) -> Self {
        match error {
            PushError::NoDevice => Self::NoDevice,
            PushError::DeviceUnreachable => Self::Unreachable,
            PushError::Busy | PushError::Disabled | PushError::Random => Self::Unavailable,
        }
    }
}

/// What the login needs once the password is accepted: the schema's
/// state machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Nothing: log in.
    Done,
    /// A TOTP code (page).
    Otp,
    /// A RADIUS passcode (page).
    RadiusPasscode,
    /// RADIUS with `passwd1` now.
    RadiusSecondPassword,
}

/// The step after the password for `schema`.
pub fn after_password(schema: LoginSchema, second_password: bool) -> Next {
    match (schema, second_password) {
        (LoginSchema::Password, _) => Next::Done,
        (LoginSchema::PasswordOtp | LoginSchema::PasswordOtpOrPush, _) => Next::Otp,
        (LoginSchema::PasswordRadius, false) => Next::RadiusPasscode,
        (LoginSchema::PasswordRadius, true) => Next::RadiusSecondPassword,
    }
}

/// What a pending login waits for.
#[derive(Debug, Clone)]
enum Awaiting {
    Otp,
    RadiusPasscode,
    RadiusChallenge(ChallengeState),
}

#[derive(Debug, Clone)]
struct Pending {
    user: UserInfo,
    awaiting: Awaiting,
    prompt: String,
    expires: Instant,
    answers: u32,
    /// Set when the login offers push: the attempt every push of it names.
    push_attempt: Option<AttemptId>,
    /// The push in flight, if one is.
    push: Option<PushWait>,
    resends: u32,
}

/// A sent push and the task waiting for its answer.
#[derive(Debug, Clone)]
struct PushWait {
    number: MatchNumber,
    ticket: PushTicket,
    outcome: watch::Receiver<Option<PushOutcome>>,
    task: AbortHandle,
}

/// The logins waiting for their second factor, by their cookie value:
/// at most `max`, each for `ttl`.
#[derive(Debug)]
struct PendingLogins {
    max: usize,
    ttl: Duration,
    map: Mutex<HashMap<String, Pending>>,
}

impl PendingLogins {
    fn insert(&self, id: String, mut pending: Pending, now: Instant) -> bool {
        let mut map = self.map.lock();
        if map.len() >= self.max {
            map.retain(|_, p| p.expires > now);
            if map.len() >= self.max {
                return false;
            }
        }
        pending.expires = now + self.ttl;
        map.insert(id, pending);
        true
    }

    fn put_back(&self, id: String, pending: Pending) {
        self.map.lock().insert(id, pending);
    }

    fn take(&self, id: &str, now: Instant) -> Option<Pending> {
        self.map.lock().remove(id).filter(|p| p.expires > now)
    }

    fn peek(&self, id: &str, now: Instant) -> Option<Pending> {
        self.map.lock().get(id).filter(|p| p.expires > now).cloned()
    }
}

/// Why the login service could not be built from the configuration.
#[derive(Debug, thiserror::Error)]
pub enum LoginSetupError {
    /// `[ldap]` or `[radius]` is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The OTP key file.
    #[error(transparent)]
    Key(#[from] KeyFileError),
    /// The password hasher.
    #[error("cannot set up password hashing")]
    Hasher(#[from] PasswordError),
    /// The RADIUS client.
    #[error(transparent)]
    Radius(#[from] RadiusError),
    /// The store.
    #[error("cannot open the store")]
    Store(#[from] StoreError),
}

/// The local user directory as a [`PasswordDirectory`] (its users have no
/// groups). A name or password the directory cannot hold still costs one
/// Argon2 verification, so timing tells nothing.
#[derive(Debug, Clone)]
pub struct LocalDirectory(pub LocalUsers);

impl PasswordDirectory for LocalDirectory {
    fn verify<'a>(&'a self, login: &'a str, password: &'a str) -> VerifyFuture<'a> {
        Box::pin(async move {
            // A name or password the directory cannot hold still costs one
            // Argon2 verification, against a name no one can have.
            let name = UserName::new(login).ok();
            let password = Password::new(password.to_owned()).ok();
            let (checked, real) = match (&name, &password) {
                (Some(name), Some(password)) => (self.0.verify(name, password).await, true),
                _ => {
                    let placeholder = UserName::new("gatehouse invalid login")
                        .map_err(|_| DirectoryError::Rejected)?;
                    let password =
                        Password::new("x".to_owned()).map_err(|_| DirectoryError::Rejected)?;
                    (self.0.verify(&placeholder, &password).await, false)
                }
            };
            match checked {
                Ok(()) if real => Ok(UserInfo {
                    dn: String::new(),
                    login: login.to_owned(),
                    name: login.to_owned(),
                    groups: Vec::new(),
                }),
                Ok(()) | Err(LocalUserError::Rejected) => Err(DirectoryError::Rejected),
                Err(error) => {
                    tracing::warn!(error = %error, "local_directory_failed");
                    Err(DirectoryError::Rejected)
                }
            }
        })
    }
}

/// The local user directory as the password factor.
pub fn local_directory(users: LocalUsers) -> Arc<dyn PasswordDirectory> {
    Arc::new(LocalDirectory(users))
}

/// The login service: factors, counters, pending logins and sessions.
pub struct Login {
    schema: LoginSchema,
    config: LoginSection,
    directory: Arc<dyn PasswordDirectory>,
    devices: UserDevices,
    radius: Option<RadiusClient>,
    sessions: Sessions,
    users: Counters<String>,
    addresses: Counters<IpAddr>,
    pending: PendingLogins,
    issuer: String,
    push: Option<Arc<dyn PushService>>,
}

impl fmt::Debug for Login {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Login")
            .field("schema", &self.schema)
            .field("devices", &self.devices)
            .field("push", &self.push.is_some())
            .finish_non_exhaustive()
    }
}

impl Login {
    /// The login service of `config` over `store`: LDAP when `[ldap] url`
    /// is set, else the local users in `store`; RADIUS when configured.
    ///
    /// Errors: [`LoginSetupError`].
    pub fn from_config(config: &Config, store: Store) -> Result<Self, LoginSetupError> {
        let key = OtpKey::load_or_generate(config.auth.otp_key_file.as_deref(), &config.data_dir)?;
        let issuer = config.auth.issuer.clone();
        let store_devices = OtpDevices::new(store.clone(), key.clone(), &issuer);
        let (directory, devices): (Arc<dyn PasswordDirectory>, UserDevices) =
            match config.ldap.settings()? {
                Some(settings) => {
                    let ldap = Arc::new(LdapDirectory::new(settings));
                    (
                        ldap.clone(),
                        UserDevices::Ldap {
                            directory: ldap,
                            key,
                            replay: store_devices,
                            issuer: issuer.clone(),
                        },
                    )
                }
                None => {
                    let hasher = Arc::new(PasswordHasher::new(PasswordParams::OWASP)?);
                    (
                        local_directory(LocalUsers::new(store.clone(), hasher)),
                        UserDevices::Store(store_devices),
                    )
                }
            };
        let radius = config
            .radius
            .settings()?
            .map(RadiusClient::new)
            .transpose()?;
        if config.login.schema == LoginSchema::PasswordOtpOrPush && !config.push.enabled {
            // No push service: the second factor is the OTP code.
            tracing::warn!(
                schema = config.login.schema.as_str(),
                fallback = "otp",
                "login_push_unavailable"
            );
        }
        Ok(Self::new(
            config.login.clone(),
            directory,
            devices,
            radius,
            store,
            &issuer,
        ))
    }

    /// The service from its parts (tests build it with a fake directory).
    /// Without [`Login::with_push`], `password+otp-or-push` asks for the
    /// OTP code.
    pub fn new(
        config: LoginSection,
        directory: Arc<dyn PasswordDirectory>,
        devices: UserDevices,
        radius: Option<RadiusClient>,
        store: Store,
        issuer: &str,
    ) -> Self {
        let window = Duration::from_secs(config.failure_window_secs);
        let lockout = Duration::from_secs(config.lockout_secs);
        Self {
            schema: config.schema,
            directory,
            devices,
            radius,
            sessions: Sessions::new(
                store,
                Duration::from_secs(config.session_idle_secs),
                Duration::from_secs(config.session_absolute_secs),
            ),
            users: Counters::new(config.user_max_failures, window, lockout),
            addresses: Counters::new(config.ip_max_failures, window, lockout),
            pending: PendingLogins {
                max: config.max_pending,
                ttl: Duration::from_secs(config.pending_secs),
                map: Mutex::new(HashMap::new()),
            },
            issuer: issuer.to_owned(),
            config,
            push: None,
        }
    }

    /// The same service offering push approval through `push` when the
    /// schema is `password+otp-or-push`.
    #[must_use]
    pub fn with_push(mut self, push: Arc<dyn PushService>) -> Self {
        self.push = Some(push);
        self
    }

    /// The sessions.
    pub fn sessions(&self) -> &Sessions {
        &self.sessions
    }

    /// The device store.
    pub fn devices(&self) -> &UserDevices {
        &self.devices
    }

    /// The gateway's name in authenticator apps.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// How long a pending login lives (the pending cookie's Max-Age).
    pub fn pending_ttl(&self) -> Duration {
        Duration::from_secs(self.config.pending_secs)
    }

    /// `POST /cgi/login` from `peer`.
    pub async fn start(&self, form: &LoginForm, peer: Option<SocketAddr>) -> LoginReply {
        let now = Instant::now();
        let ip = peer.map(|p| p.ip());
        let log = Decision {
            user: &form.login,
            peer,
        };
        if let Some(ip) = ip
            && self.addresses.locked(&ip, now).is_some()
        {
            return log.failed("password", Failure::AddressLocked);
        }
        let key = counter_key(&form.login);
        let user_locked = self.users.locked(&key, now).is_some();
        let verified = self.directory.verify(&form.login, &form.passwd).await;
        let info = match verified {
            Ok(info) if !user_locked => info,
            Ok(_) => {
                // Locked: the same answer as a wrong password.
                self.count_failure(&key, ip, now);
                return log.failed_because("password", Failure::BadCredentials, "user_locked");
            }
            Err(DirectoryError::Rejected) => {
                self.count_failure(&key, ip, now);
                return log.failed("password", Failure::BadCredentials);
            }
            Err(DirectoryError::Unavailable(error)) => {
                tracing::warn!(error = %error, "login_directory_unavailable");
                return log.failed("password", Failure::Unavailable);
            }
        };
        match after_password(self.schema, self.config.second_password) {
            Next::Done => {
                self.succeed(&log, "password", &key, &info, Scope::Full)
                    .await
            }
            Next::Otp => {
                let Ok(name) = UserName::new(&info.login) else {
                    return log.failed("otp", Failure::BadCredentials);
                };
                match self.devices.list(&name, &info.dn).await {
                    Ok(list) if list.is_empty() => {
                        if self.config.enrol_without_device {
                            self.succeed(&log, "password", &key, &info, Scope::Enrol)
                                .await
                        } else {
                            log.failed("otp", Failure::NoDevice)
                        }
                    }
                    Ok(_)
                        if self.schema == LoginSchema::PasswordOtpOrPush && self.push.is_some() =>
                    {
                        self.ask_push(&log, info, now).await
                    }
                    Ok(_) => self.ask(&log, "otp", info, Awaiting::Otp, OTP_PROMPT.to_owned(), now),
                    Err(error) => {
                        tracing::warn!(error = %error, "login_devices_unavailable");
                        log.failed("otp", Failure::Unavailable)
                    }
                }
            }
            Next::RadiusPasscode => self.ask(
                &log,
                "radius",
                info,
                Awaiting::RadiusPasscode,
                RADIUS_PROMPT.to_owned(),
                now,
            ),
            Next::RadiusSecondPassword => {
                let Some(radius) = &self.radius else {
                    return log.failed("second_password", Failure::Unavailable);
                };
                let outcome = radius
                    .authenticate(&info.login, form.passwd1.as_bytes())
                    .await;
                match outcome {
                    Ok(RadiusOutcome::Accept { .. }) => {
                        self.succeed(&log, "second_password", &key, &info, Scope::Full)
                            .await
                    }
                    Ok(RadiusOutcome::Reject { .. }) => {
                        self.count_failure(&key, ip, now);
                        log.failed("second_password", Failure::BadCredentials)
                    }
                    Ok(RadiusOutcome::Challenge { prompt, state }) => {
                        let prompt = non_empty(prompt);
                        self.ask(
                            &log,
                            "second_password",
                            info,
                            Awaiting::RadiusChallenge(state),
                            prompt,
                            now,
                        )
                    }
                    Err(error) => {
                        tracing::warn!(error = %error, "login_radius_unavailable");
                        log.failed("second_password", Failure::Unavailable)
                    }
                }
            }
        }
    }

    /// `POST /cgi/dlge`: `response` to the pending login `pending` from
    /// `peer`.
    pub async fn answer(
        &self,
        pending: &str,
        response: &str,
        peer: Option<SocketAddr>,
    ) -> LoginReply {
        let now = Instant::now();
        let ip = peer.map(|p| p.ip());
        let Some(mut state) = self.pending.take(pending, now) else {
            let log = Decision { user: "", peer };
            return log.failed("challenge", Failure::Expired);
        };
        let login = state.user.login.clone();
        let log = Decision { user: &login, peer };
        let key = counter_key(&login);
        // A code typed instead: the push in flight is withdrawn.
        self.stop_push(&mut state);
        let factor = match state.awaiting {
            Awaiting::Otp => "otp",
            Awaiting::RadiusPasscode | Awaiting::RadiusChallenge(_) => "radius",
        };
        if let Some(ip) = ip
            && self.addresses.locked(&ip, now).is_some()
        {
            return log.failed(factor, Failure::AddressLocked);
        }
        let verdict: Result<Verdict, Failure> = match &state.awaiting {
            Awaiting::Otp => self.check_code(&state.user, response).await,
            Awaiting::RadiusPasscode | Awaiting::RadiusChallenge(_) => match &self.radius {
                None => Err(Failure::Unavailable),
                Some(radius) => {
                    let outcome = match &state.awaiting {
                        Awaiting::RadiusChallenge(challenge) => {
                            radius
                                .answer_challenge(&login, response.as_bytes(), challenge)
                                .await
                        }
                        _ => radius.authenticate(&login, response.as_bytes()).await,
                    };
                    match outcome {
                        Ok(RadiusOutcome::Accept { .. }) => Ok(Verdict::Accept),
                        Ok(RadiusOutcome::Reject { .. }) => Ok(Verdict::Wrong(Failure::BadCode)),
                        Ok(RadiusOutcome::Challenge { prompt, state }) => {
                            Ok(Verdict::Again(non_empty(prompt), state))
                        }
                        Err(error) => {
                            tracing::warn!(error = %error, "login_radius_unavailable");
                            Err(Failure::Unavailable)
                        }
                    }
                }
            },
        };
        match verdict {
            Ok(Verdict::Accept) => {
                self.succeed(&log, factor, &key, &state.user, Scope::Full)
                    .await
            }
            Ok(Verdict::Again(prompt, challenge)) => {
                state.awaiting = Awaiting::RadiusChallenge(challenge);
                state.prompt.clone_from(&prompt);
                let id = match session::random_token() {
                    Ok(id) => id,
                    Err(_) => return log.failed(factor, Failure::Unavailable),
                };
                self.pending.put_back(id.clone(), state);
                log.emit(factor, "challenge", "next_challenge");
                LoginReply::Challenge {
                    pending: id,
                    prompt,
                    error: None,
                }
            }
            Ok(Verdict::Wrong(failure)) => {
                let locked = self.count_failure(&key, ip, now);
                state.answers += 1;
                // A rejected answer to an Access-Challenge ends the server's
                // state: the user starts over.
                let final_answer = matches!(state.awaiting, Awaiting::RadiusChallenge(_));
                if state.answers >= MAX_ANSWERS || locked || final_answer {
                    return log.failed_because(factor, Failure::BadCode, failure.reason());
                }
                log.failed(factor, failure);
                let prompt = state.prompt.clone();
                let offers_push = state.push_attempt.is_some();
                self.pending.put_back(pending.to_owned(), state);
                if offers_push {
                    return LoginReply::PushFallback {
                        pending: pending.to_owned(),
                        notice: None,
                        error: Some(failure),
                    };
                }
                LoginReply::Challenge {
                    pending: pending.to_owned(),
                    prompt,
                    error: Some(failure),
                }
            }
            Err(failure) => log.failed(factor, failure),
        }
    }

    async fn check_code(&self, user: &UserInfo, response: &str) -> Result<Verdict, Failure> {
        let Ok(code) = TotpCode::parse(response.trim(), TotpParams::GATEWAY) else {
            return Ok(Verdict::Wrong(Failure::BadCode));
        };
        let name = UserName::new(&user.login).map_err(|_| Failure::BadCredentials)?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        match self.devices.verify(&name, &user.dn, code, now).await {
            Ok(OtpVerdict::Accept { .. }) => Ok(Verdict::Accept),
            Ok(OtpVerdict::Replay { .. }) => Ok(Verdict::Wrong(Failure::ReplayedCode)),
            Ok(OtpVerdict::Reject) => Ok(Verdict::Wrong(Failure::BadCode)),
            Err(error) => {
                tracing::warn!(error = %error, "login_devices_unavailable");
                Err(Failure::Unavailable)
            }
        }
    }

    fn ask(
        &self,
        log: &Decision<'_>,
        factor: &str,
        user: UserInfo,
        awaiting: Awaiting,
        prompt: String,
        now: Instant,
    ) -> LoginReply {
        let Ok(id) = session::random_token() else {
            return log.failed(factor, Failure::Unavailable);
        };
        let pending = Pending {
            user,
            awaiting,
            prompt: prompt.clone(),
            expires: now,
            answers: 0,
            push_attempt: None,
            push: None,
            resends: 0,
        };
        if !self.pending.insert(id.clone(), pending, now) {
            return log.failed(factor, Failure::Busy);
        }
        log.emit(factor, "challenge", "second_factor_due");
        LoginReply::Challenge {
            pending: id,
            prompt,
            error: None,
        }
    }

    /// The password is right and the user has a device: push, or the
    /// fallback page when no push could be sent.
    async fn ask_push(&self, log: &Decision<'_>, user: UserInfo, now: Instant) -> LoginReply {
        let (Ok(id), Ok(attempt)) = (session::random_token(), AttemptId::random()) else {
            return log.failed("push", Failure::Unavailable);
        };
        let mut pending = Pending {
            user,
            awaiting: Awaiting::Otp,
            prompt: OTP_PROMPT.to_owned(),
            expires: now,
            answers: 0,
            push_attempt: Some(attempt),
            push: None,
            resends: 0,
        };
        let sent = self.send_push(&mut pending).await;
        if !self.pending.insert(id.clone(), pending.clone(), now) {
            self.stop_push(&mut pending);
            return log.failed("push", Failure::Busy);
        }
        self.push_reply(log, id, sent, "push_sent")
    }

    fn push_reply(
        &self,
        log: &Decision<'_>,
        pending: String,
        sent: Result<MatchNumber, PushNotice>,
        reason: &str,
    ) -> LoginReply {
        match sent {
            Ok(number) => {
                log.emit("push", "challenge", reason);
                LoginReply::Push { pending, number }
            }
            Err(notice) => {
                log.emit("push", "challenge", notice.reason());
                LoginReply::PushFallback {
                    pending,
                    notice: Some(notice),
                    error: None,
                }
            }
        }
    }

    /// Sends a push with a fresh number for `pending`'s attempt and starts
    /// the task that waits for its answer.
    async fn send_push(&self, pending: &mut Pending) -> Result<MatchNumber, PushNotice> {
        let (Some(service), Some(attempt)) = (&self.push, pending.push_attempt) else {
            return Err(PushNotice::Unavailable);
        };
        let name = UserName::new(&pending.user.login).map_err(|_| PushNotice::NoDevice)?;
        let number = MatchNumber::random().map_err(PushNotice::of)?;
        let ticket = service
            .request(&name, attempt, number)
            .await
            .map_err(PushNotice::of)?;
        let (sender, outcome) = watch::channel(None);
        let waiter = Arc::clone(service);
        let waited = ticket.clone();
        let task = tokio::spawn(async move {
            let outcome = waiter.wait(&waited, waiter.wait_time()).await;
            let _ = sender.send(Some(outcome));
        });
        pending.push = Some(PushWait {
            number,
            ticket,
            outcome,
            task: task.abort_handle(),
        });
        Ok(number)
    }

    /// Withdraws `pending`'s push in flight, if any.
    fn stop_push(&self, pending: &mut Pending) {
        if let Some(wait) = pending.push.take() {
            wait.task.abort();
            if let Some(service) = &self.push {
                service.cancel(&wait.ticket);
            }
        }
    }

    /// `GET /cgi/pushwait`: waits at most [`PUSH_POLL`] for the answer to
    /// the push of pending login `pending` from `peer`.
    pub async fn push_wait(&self, pending: &str, peer: Option<SocketAddr>) -> LoginReply {
        let Some(state) = self.pending.peek(pending, Instant::now()) else {
            let log = Decision { user: "", peer };
            return log.failed("push", Failure::Expired);
        };
        let Some(wait) = state.push else {
            return LoginReply::PushFallback {
                pending: pending.to_owned(),
                notice: state.push_attempt.map(|_| PushNotice::NoAnswer),
                error: None,
            };
        };
        let mut receiver = wait.outcome.clone();
        // The value is read again below; this only waits.
        let _ = tokio::time::timeout(PUSH_POLL, receiver.wait_for(Option::is_some)).await;
        let outcome = *receiver.borrow();
        let now = Instant::now();
        let Some(outcome) = outcome else {
            // Still waiting (or replaced by a resend): the page again.
            return match self.pending.peek(pending, now) {
                Some(Pending {
                    push: Some(current),
                    ..
                }) => LoginReply::Push {
                    pending: pending.to_owned(),
                    number: current.number,
                },
                Some(_) => LoginReply::PushFallback {
                    pending: pending.to_owned(),
                    notice: Some(PushNotice::NoAnswer),
                    error: None,
                },
                None => Decision { user: "", peer }.failed("push", Failure::Expired),
            };
        };
        let Some(mut state) = self.pending.take(pending, now) else {
            return Decision { user: "", peer }.failed("push", Failure::Expired);
        };
        if state.push.as_ref().map(|p| &p.ticket) != Some(&wait.ticket) {
            // A resend replaced this push while we waited.
            let reply = match &state.push {
                Some(current) => LoginReply::Push {
                    pending: pending.to_owned(),
                    number: current.number,
                },
                None => LoginReply::PushFallback {
                    pending: pending.to_owned(),
                    notice: Some(PushNotice::NoAnswer),
                    error: None,
                },
            };
            self.pending.put_back(pending.to_owned(), state);
            return reply;
        }
        state.push = None;
        let login = state.user.login.clone();
        let log = Decision { user: &login, peer };
        let key = counter_key(&login);
        match outcome {
            PushOutcome::Approved => {
                self.succeed(&log, "push", &key, &state.user, Scope::Full)
                    .await
            }
            PushOutcome::Denied => {
                self.count_failure(&key, peer.map(|p| p.ip()), now);
                log.failed("push", Failure::PushDenied)
            }
            PushOutcome::WrongNumber => {
                self.count_failure(&key, peer.map(|p| p.ip()), now);
                log.failed("push", Failure::WrongNumber)
            }
            PushOutcome::TimedOut => {
                self.pending.put_back(pending.to_owned(), state);
                log.emit("push", "challenge", PushNotice::NoAnswer.reason());
                LoginReply::PushFallback {
                    pending: pending.to_owned(),
                    notice: Some(PushNotice::NoAnswer),
                    error: None,
                }
            }
        }
    }

    /// `POST /cgi/pushresend`: a new push (with a new number) for the same
    /// attempt of pending login `pending`; the earlier one can no longer
    /// be answered.
    pub async fn resend_push(&self, pending: &str, peer: Option<SocketAddr>) -> LoginReply {
        let Some(mut state) = self.pending.take(pending, Instant::now()) else {
            let log = Decision { user: "", peer };
            return log.failed("push", Failure::Expired);
        };
        let login = state.user.login.clone();
        let log = Decision { user: &login, peer };
        if state.push_attempt.is_none() {
            let prompt = state.prompt.clone();
            self.pending.put_back(pending.to_owned(), state);
            return LoginReply::Challenge {
                pending: pending.to_owned(),
                prompt,
                error: None,
            };
        }
        self.stop_push(&mut state);
        let sent = if state.resends >= MAX_RESENDS {
            Err(PushNotice::ResendLimit)
        } else {
            state.resends += 1;
            self.send_push(&mut state).await
        };
        self.pending.put_back(pending.to_owned(), state);
        self.push_reply(&log, pending.to_owned(), sent, "push_resent")
    }

    async fn succeed(
        &self,
        log: &Decision<'_>,
        factor: &str,
        key: &str,
        user: &UserInfo,
        scope: Scope,
    ) -> LoginReply {
        let groups: Vec<String> = user.groups.iter().map(|g| g.name.clone()).collect();
        match self
            .sessions
            .create(&user.login, &user.name, &user.dn, &groups, scope)
            .await
        {
            Ok(token) => {
                self.users.clear(&key.to_owned());
                let reason = match scope {
                    Scope::Full => "ok",
                    Scope::Enrol => "enrol_only",
                };
                log.emit(factor, "success", reason);
                LoginReply::Session { token, scope }
            }
            Err(error) => {
                tracing::warn!(error = %error, "login_session_failed");
                log.failed(factor, Failure::Unavailable)
            }
        }
    }

    fn count_failure(&self, key: &str, ip: Option<IpAddr>, now: Instant) -> bool {
        let user_locked = self.users.fail(&key.to_owned(), now);
        let ip_locked = ip.is_some_and(|ip| self.addresses.fail(&ip, now));
        user_locked || ip_locked
    }
}

enum Verdict {
    Accept,
    Again(String, ChallengeState),
    Wrong(Failure),
}

/// One `login` event per decision.
struct Decision<'a> {
    user: &'a str,
    peer: Option<SocketAddr>,
}

impl Decision<'_> {
    fn emit(&self, factor: &str, outcome: &str, reason: &str) {
        let peer = self.peer.map(|p| p.to_string()).unwrap_or_default();
        crate::metrics::login_outcome(factor, outcome);
        tracing::info!(user = self.user, peer, factor, outcome, reason, "login");
    }

    fn failed(&self, factor: &str, failure: Failure) -> LoginReply {
        self.failed_because(factor, failure, failure.reason())
    }

    fn failed_because(&self, factor: &str, failure: Failure, reason: &str) -> LoginReply {
        self.emit(factor, "failure", reason);
        LoginReply::Failed(failure)
    }
}

/// Failure counters are per name as typed, case-insensitively (LDAP
/// matches names that way).
fn counter_key(login: &str) -> String {
    login.to_lowercase()
}

fn non_empty(prompt: String) -> String {
    if prompt.trim().is_empty() {
        RADIUS_PROMPT.to_owned()
    } else {
        prompt
    }
}

#[cfg(test)]
mod tests;
