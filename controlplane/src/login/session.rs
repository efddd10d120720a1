//! Web sessions: the `NSC_AAAC` cookie value (256 bits from the OS
//! random generator), its SHA-256 in the store, idle and absolute
//! timeouts, and the per-session CSRF token derived from the cookie.

use std::time::Duration;

use data_encoding::{BASE64URL_NOPAD, HEXLOWER};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::store::{Store, StoreError, WebSessionRecord};

/// Random bytes in a session cookie (and a pending-login cookie).
pub const TOKEN_BYTES: usize = 32;

/// Characters of a token as sent (base64url without padding).
pub const TOKEN_CHARS: usize = 43;

/// A session cookie value: never logged, wiped on drop.
#[derive(Clone)]
pub struct SessionToken(Zeroizing<String>);

impl std::fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionToken(..)")
    }
}

impl SessionToken {
    /// A fresh token from the OS random generator.
    ///
    /// Errors: the generator failed.
    pub fn generate() -> Result<Self, getrandom::Error> {
        Ok(Self(Zeroizing::new(random_token()?)))
    }

    /// A token as received in a cookie; `None` unless it has the shape of
    /// one (43 base64url characters).
    pub fn from_cookie(value: &str) -> Option<Self> {
        (value.len() == TOKEN_CHARS
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
        .then(|| Self(Zeroizing::new(value.to_owned())))
    }

    /// The cookie value.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// What the store keys the session by: lowercase hex SHA-256.
    pub fn hash(&self) -> String {
        HEXLOWER.encode(Sha256::digest(self.0.as_bytes()).as_slice())
    }

    /// The session's CSRF token: derived from the cookie (which pages
    /// cannot read: HttpOnly), so it needs no storage.
    pub fn csrf(&self) -> String {
        let mut hasher = Sha256::new();
        hasher.update(b"gatehouse csrf\0");
        hasher.update(self.0.as_bytes());
        HEXLOWER.encode(&hasher.finalize().as_slice()[..16])
    }

    /// Whether `given` is this session's CSRF token (constant time).
    pub fn csrf_matches(&self, given: &str) -> bool {
        let expected = self.csrf();
        expected.len() == given.len() && bool::from(expected.as_bytes().ct_eq(given.as_bytes()))
    }
}

/// 256 random bits, base64url without padding.
///
/// Errors: the OS generator failed.
pub fn random_token() -> Result<String, getrandom::Error> {
    let mut bytes = Zeroizing::new([0u8; TOKEN_BYTES]);
    getrandom::fill(bytes.as_mut())?;
    Ok(BASE64URL_NOPAD.encode(bytes.as_ref()))
}

/// What a session may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Everything a logged-in user may do.
    Full,
    /// Only register an OTP device (`/manageotp`), then log on again.
    Enrol,
}

impl Scope {
    fn as_str(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::Enrol => "enrol",
        }
    }
}

/// A live session, as a request sees it.
#[derive(Debug, Clone)]
pub struct WebSession {
    /// The cookie value it was found by.
    pub token: SessionToken,
    /// The login name.
    pub user: String,
    /// The name to show.
    pub display_name: String,
    /// The LDAP DN ('' for the local directory).
    pub dn: String,
    /// What it may do.
    pub scope: Scope,
    /// The directory groups the user had at login (empty for the local
    /// directory); launches and SmartAccess filters are decided on them.
    pub groups: Vec<String>,
}

/// The session table in the store, with its timeouts.
#[derive(Debug, Clone)]
pub struct Sessions {
    store: Store,
    idle: Duration,
    absolute: Duration,
}

impl Sessions {
    /// Sessions in `store` ending after `idle` without a request or
    /// `absolute` after the login.
    pub fn new(store: Store, idle: Duration, absolute: Duration) -> Self {
        Self {
            store,
            idle,
            absolute,
        }
    }

    /// Creates a session for `user`, a member of the directory `groups`;
    /// returns its cookie value.
    ///
    /// Errors: [`SessionError`].
    pub async fn create(
        &self,
        user: &str,
        display_name: &str,
        dn: &str,
        groups: &[String],
        scope: Scope,
    ) -> Result<SessionToken, SessionError> {
        let token = SessionToken::generate().map_err(SessionError::Random)?;
        self.store
            .insert_web_session(&WebSessionRecord {
                token_hash: token.hash(),
                user_name: user.to_owned(),
                display_name: display_name.to_owned(),
                dn: dn.to_owned(),
                scope: scope.as_str().to_owned(),
                groups: groups.to_vec(),
                created_at: 0,
                last_seen: 0,
            })
            .await
            .map_err(SessionError::Store)?;
        Ok(token)
    }

    /// The live session of `token` (refreshing its idle timer), or `None`
    /// when unknown or expired (an expired one is deleted).
    ///
    /// Errors: [`SessionError::Store`].
    pub async fn find(&self, token: &SessionToken) -> Result<Option<WebSession>, SessionError> {
        let (created_after, seen_after) = self.limits();
        let record = self
            .store
            .touch_web_session(&token.hash(), created_after, seen_after)
            .await
            .map_err(SessionError::Store)?;
        Ok(record.map(|record| WebSession {
            token: token.clone(),
            user: record.user_name,
            display_name: record.display_name,
            dn: record.dn,
            scope: if record.scope == "full" {
                Scope::Full
            } else {
                Scope::Enrol
            },
            groups: record.groups,
        }))
    }

    /// Ends the session of `token`; whether there was one.
    ///
    /// Errors: [`SessionError::Store`].
    pub async fn end(&self, token: &SessionToken) -> Result<bool, SessionError> {
        self.store
            .delete_web_session(&token.hash())
            .await
            .map_err(SessionError::Store)
    }

    /// Deletes expired sessions; how many.
    ///
    /// Errors: [`SessionError::Store`].
    pub async fn sweep(&self) -> Result<u64, SessionError> {
        let (created_after, seen_after) = self.limits();
        self.store
            .sweep_web_sessions(created_after, seen_after)
            .await
            .map_err(SessionError::Store)
    }

    fn limits(&self) -> (i64, i64) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        let secs = |d: Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
        (
            now.saturating_sub(secs(self.absolute)),
            now.saturating_sub(secs(self.idle)),
        )
    }
}

/// How often [`sweep_every`] deletes expired sessions.
pub const SWEEP_PERIOD: Duration = Duration::from_secs(60);

/// Deletes expired sessions every `period`, forever (abort the task to
/// stop it). Logs `web_sessions_swept` when it deleted any.
pub async fn sweep_every(sessions: Sessions, period: Duration) {
    let mut ticker = tokio::time::interval(period);
    loop {
        ticker.tick().await;
        match sessions.sweep().await {
            Ok(0) => {}
            Ok(count) => tracing::info!(count, "web_sessions_swept"),
            Err(error) => tracing::warn!(error = %error, "web_sessions_sweep_failed"),
        }
    }
}

/// Why a session operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The OS random generator failed.
    #[error("no randomness for a session token: {0}")]
    Random(getrandom::Error),
    /// The store failed.
    #[error("session store failed")]
    Store(#[source] StoreError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_carry_256_random_bits_and_only_their_hash_is_a_key() {
        let a = SessionToken::generate().unwrap();
        let b = SessionToken::generate().unwrap();
        assert_eq!(a.as_str().len(), TOKEN_CHARS);
        assert_ne!(a.as_str(), b.as_str());
        assert_eq!(a.hash().len(), 64);
        assert!(!a.hash().contains(a.as_str()));
        assert!(SessionToken::from_cookie(a.as_str()).is_some());
        assert!(SessionToken::from_cookie("short").is_none());
        assert!(SessionToken::from_cookie(&"!".repeat(TOKEN_CHARS)).is_none());
        assert_eq!(format!("{a:?}"), "SessionToken(..)");
    }

    #[test]
    fn the_csrf_token_is_per_session_and_checked_exactly() {
        let a = SessionToken::generate().unwrap();
        let b = SessionToken::generate().unwrap();
        assert!(a.csrf_matches(&a.csrf()));
        assert!(!a.csrf_matches(&b.csrf()));
        assert!(!a.csrf_matches(""));
        assert!(!a.csrf_matches(&a.csrf()[..31]));
    }
}
