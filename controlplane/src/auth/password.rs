//! Password hashing: Argon2id (RFC 9106) PHC strings
//! (`$argon2id$v=19$m=19456,t=2,p=1$SALT$HASH`), 16-byte random salts,
//! 32-byte outputs.
//!
//! Parameters ([`PasswordParams::OWASP`]): 19 MiB of memory, 2 passes, 1
//! lane: the first Argon2id configuration of the OWASP Password Storage
//! Cheat Sheet, about 20–40 ms per hash on one server core in a release
//! build. A stored hash keeps its own parameters, so raising them later
//! only affects new hashes.
//!
//! Unknown users: [`PasswordHasher::verify`] with no stored hash checks
//! the password against a dummy hash made with the same parameters, so an
//! unknown user costs the same work as a known one and gets the same
//! [`PasswordError::Mismatch`].

use std::fmt;
use std::sync::OnceLock;

use argon2::password_hash::phc::PasswordHash;
use argon2::{Algorithm, Argon2, Params, PasswordHasher as _, PasswordVerifier as _, Version};
use zeroize::Zeroizing;

/// Longest password accepted, in bytes (a bound on hashing work).
pub const MAX_PASSWORD_BYTES: usize = 1_024;

/// Salt length in bytes (RFC 9106 §3.1 recommends 16).
pub const SALT_BYTES: usize = 16;

/// Hash output length in bytes.
pub const OUTPUT_BYTES: usize = 32;

/// A password as typed: 1 to [`MAX_PASSWORD_BYTES`] bytes, wiped on drop,
/// never printed.
#[derive(Clone)]
pub struct Password(Zeroizing<String>);

/// Argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordParams {
    /// Memory in KiB (at least 8 per lane).
    pub memory_kib: u32,
    /// Passes over memory (at least 1).
    pub iterations: u32,
    /// Lanes (at least 1).
    pub parallelism: u32,
}

/// Hashes and verifies passwords with one set of parameters.
pub struct PasswordHasher {
    argon2: Argon2<'static>,
    params: PasswordParams,
    /// The PHC string unknown users are checked against; made on first
    /// need.
    dummy: OnceLock<String>,
}

/// Why hashing or verifying failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    /// The password is empty or longer than [`MAX_PASSWORD_BYTES`].
    #[error("a password is 1 to {MAX_PASSWORD_BYTES} bytes")]
    Length,
    /// Wrong password, or no such user: one answer for both.
    #[error("invalid user name or password")]
    Mismatch,
    /// The stored hash is not an Argon2 PHC string (the password was
    /// still checked against the dummy hash).
    #[error("stored password hash is not an argon2 phc string")]
    StoredHash,
    /// Parameters out of range, or the hash function failed.
    #[error("argon2 failed: {0}")]
    Argon2(String),
    /// The OS random generator failed.
    #[error("cannot draw random bytes from the operating system")]
    Random,
}

impl Password {
    /// Checks the length and takes the password.
    ///
    /// Errors: [`PasswordError::Length`].
    pub fn new(text: String) -> Result<Self, PasswordError> {
        let text = Zeroizing::new(text);
        if text.is_empty() || text.len() > MAX_PASSWORD_BYTES {
            return Err(PasswordError::Length);
        }
        Ok(Self(text))
    }

    /// The password bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(..)")
    }
}

impl PasswordParams {
    /// 19 MiB, 2 passes, 1 lane (OWASP Password Storage Cheat Sheet).
    pub const OWASP: Self = Self {
        memory_kib: 19 * 1_024,
        iterations: 2,
        parallelism: 1,
    };
}

impl Default for PasswordParams {
    fn default() -> Self {
        Self::OWASP
    }
}

impl PasswordHasher {
    /// A hasher for `params`.
    ///
    /// Errors: [`PasswordError::Argon2`] for parameters out of range.
    pub fn new(params: PasswordParams) -> Result<Self, PasswordError> {
        let argon2_params = Params::new(
            params.memory_kib,
            params.iterations,
            params.parallelism,
            Some(OUTPUT_BYTES),
        )
        .map_err(|e| PasswordError::Argon2(e.to_string()))?;
        Ok(Self {
            argon2: Argon2::new(Algorithm::Argon2id, Version::V0x13, argon2_params),
            params,
            dummy: OnceLock::new(),
        })
    }

    /// The parameters of new hashes.
    pub fn params(&self) -> PasswordParams {
        self.params
    }

    /// Hashes `password` with a fresh random salt. CPU-heavy: call it off
    /// the async runtime (`spawn_blocking`).
    ///
    /// Errors: [`PasswordError::Random`], [`PasswordError::Argon2`].
    pub fn hash(&self, password: &Password) -> Result<String, PasswordError> {
        let mut salt = [0_u8; SALT_BYTES];
        getrandom::fill(&mut salt).map_err(|_| PasswordError::Random)?;
        self.hash_with_salt(password.as_bytes(), &salt)
    }

    /// Checks `password` against `stored` (a PHC string), or, for an
    /// unknown user (`None`), against the dummy hash so the work done is
    /// the same. CPU-heavy: call it off the async runtime.
    ///
    /// Errors: [`PasswordError::Mismatch`] for a wrong password or an
    /// unknown user; [`PasswordError::StoredHash`] for a stored value that
    /// is not a PHC string.
    pub fn verify(&self, password: &Password, stored: Option<&str>) -> Result<(), PasswordError> {
        let parsed = stored.map(PasswordHash::new);
        let target = match &parsed {
            Some(Ok(hash)) => Some(hash.clone()),
            Some(Err(_)) | None => PasswordHash::new(self.dummy()).ok(),
        };
        let matched = target.is_some_and(|hash| {
            self.argon2
                .verify_password(password.as_bytes(), &hash)
                .is_ok()
        });
        match parsed {
            Some(Ok(_)) if matched => Ok(()),
            Some(Err(_)) => Err(PasswordError::StoredHash),
            _ => Err(PasswordError::Mismatch),
        }
    }

    fn hash_with_salt(&self, password: &[u8], salt: &[u8]) -> Result<String, PasswordError> {
        self.argon2
            .hash_password_with_salt(password, salt)
            .map(|hash| hash.to_string())
            .map_err(|e| PasswordError::Argon2(e.to_string()))
    }

    fn dummy(&self) -> &str {
        self.dummy.get_or_init(|| {
            // A fixed input: nobody knows a password for it that matters,
            // and it is never stored. Failure leaves an empty string, which
            // does not parse, so verification still answers Mismatch.
            self.hash_with_salt(b"gatehouse dummy password", b"gatehouse-dummy-salt")
                .unwrap_or_default()
        })
    }
}

impl fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordHasher")
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    /// Cheap parameters: unit tests check behaviour, not cost.
    const FAST: PasswordParams = PasswordParams {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };

    fn password(text: &str) -> Password {
        Password::new(text.to_owned()).unwrap()
    }

    #[test]
    fn hashes_to_an_argon2id_phc_string_that_verifies() {
        let hasher = PasswordHasher::new(FAST).unwrap();
        let hash = hasher.hash(&password("correct horse")).unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{hash}");
        assert_eq!(
            hasher.verify(&password("correct horse"), Some(&hash)),
            Ok(())
        );
        assert_eq!(
            hasher.verify(&password("correct horsf"), Some(&hash)),
            Err(PasswordError::Mismatch)
        );
    }

    #[test]
    fn default_parameters_are_owasp_argon2id() {
        let hasher = PasswordHasher::new(PasswordParams::default()).unwrap();
        let hash = hasher.hash(&password("pw")).unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert_eq!(hasher.verify(&password("pw"), Some(&hash)), Ok(()));
    }

    #[test]
    fn same_password_hashes_differently_each_time() {
        let hasher = PasswordHasher::new(FAST).unwrap();
        let a = hasher.hash(&password("pw")).unwrap();
        let b = hasher.hash(&password("pw")).unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn a_hash_made_with_other_parameters_still_verifies() {
        let old = PasswordHasher::new(FAST)
            .unwrap()
            .hash(&password("pw"))
            .unwrap();
        let new = PasswordHasher::new(PasswordParams {
            memory_kib: 128,
            ..FAST
        })
        .unwrap();
        assert_eq!(new.verify(&password("pw"), Some(&old)), Ok(()));
    }

    #[test]
    fn unknown_user_gets_the_wrong_password_answer() {
        let hasher = PasswordHasher::new(FAST).unwrap();
        assert_eq!(
            hasher.verify(&password("pw"), None),
            Err(PasswordError::Mismatch)
        );
        // Not even the dummy's own password opens it.
        assert_eq!(
            hasher.verify(&password("gatehouse dummy password"), None),
            Err(PasswordError::Mismatch)
        );
        assert_eq!(
            hasher.verify(&password("pw"), Some("not a phc string")),
            Err(PasswordError::StoredHash)
        );
    }

    #[test]
    fn unknown_user_costs_as_much_as_a_wrong_password() {
        let hasher = PasswordHasher::new(PasswordParams {
            memory_kib: 2_048,
            iterations: 2,
            parallelism: 1,
        })
        .unwrap();
        let stored = hasher.hash(&password("right")).unwrap();
        let fastest = |stored: Option<&str>| {
            (0..5)
                .map(|_| {
                    let start = Instant::now();
                    let _ = hasher.verify(&password("wrong"), stored);
                    start.elapsed()
                })
                .min()
                .unwrap_or(Duration::ZERO)
        };
        let _ = fastest(None); // makes the dummy
        let known = fastest(Some(&stored));
        let unknown = fastest(None);
        // The same Argon2 work either way; a missing check would be orders
        // of magnitude faster.
        assert!(
            unknown * 3 > known && known * 3 > unknown,
            "known {known:?}, unknown {unknown:?}"
        );
    }

    #[test]
    fn refuses_empty_and_oversized_passwords() {
        assert_eq!(
            Password::new(String::new()).err(),
            Some(PasswordError::Length)
        );
        assert!(Password::new("x".repeat(1_025)).is_err());
        assert!(Password::new("x".repeat(1_024)).is_ok());
        assert_eq!(format!("{:?}", password("secret")), "Password(..)");
    }
}
