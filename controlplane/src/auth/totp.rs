//! RFC 6238 TOTP on top of RFC 4226 HOTP, sans-IO: every function takes the
//! secret and the time (Unix seconds) and returns a code or a verdict; none
//! reads a clock or touches the store.
//!
//! The gateway's parameters are [`TotpParams::GATEWAY`]: HMAC-SHA-1, 6
//! digits, 30 s steps, and [`verify`] accepts the current step and one step
//! either side (clock drift). SHA-256, SHA-512 and 8 digits exist so the RFC
//! 6238 Appendix B vectors can be checked and so `tools/push-device` can read
//! any `otpauth://` URI.
//!
//! Replay (RFC 6238 §5.2): the caller passes the highest step it already
//! accepted for the device; a code that only matches that step or an earlier
//! one is answered [`TotpVerdict::Replay`]. The store keeps that step
//! ([`crate::store::Store::record_accepted_step`]).
//!
//! Codes are compared in constant time (`subtle`), and every step of the
//! window (and every device in [`verify_any`]) is computed before the
//! verdict is chosen, so timing does not say which step or device matched.

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use subtle::{Choice, ConstantTimeEq};
use zeroize::Zeroizing;

/// Bytes of a secret made by [`TotpSecret::generate`] (160 bits, RFC 4226
/// §4 R6 recommends it).
pub const SECRET_BYTES: usize = 20;

/// Shortest secret accepted from outside, in bytes (80 bits, what common
/// authenticator apps still issue).
pub const MIN_SECRET_BYTES: usize = 10;

/// Longest secret accepted from outside, in bytes.
pub const MAX_SECRET_BYTES: usize = 128;

/// Steps accepted either side of the current one.
pub const WINDOW_STEPS: u64 = 1;

/// The HMAC hash of a TOTP generator (RFC 6238 §1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// HMAC-SHA-1: the gateway's, and the default of `otpauth://` URIs.
    Sha1,
    /// HMAC-SHA-256.
    Sha256,
    /// HMAC-SHA-512.
    Sha512,
}

impl Algorithm {
    /// The name used in `otpauth://` URIs: `SHA1`, `SHA256`, `SHA512`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sha1 => "SHA1",
            Self::Sha256 => "SHA256",
            Self::Sha512 => "SHA512",
        }
    }

    /// Parses [`Algorithm::as_str`]'s names, ignoring ASCII case.
    pub fn from_name(text: &str) -> Option<Self> {
        [Self::Sha1, Self::Sha256, Self::Sha512]
            .into_iter()
            .find(|a| a.as_str().eq_ignore_ascii_case(text))
    }
}

/// The parameters of a TOTP generator: hash, digits (6 to 8) and step
/// length (1 to 3600 s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TotpParams {
    algorithm: Algorithm,
    digits: u8,
    period_secs: u64,
}

/// Parameters out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamsError {
    /// Digits outside 6..=8.
    #[error("digits must be 6, 7 or 8, not {0}")]
    Digits(u64),
    /// Period outside 1..=3600.
    #[error("period must be 1 to 3600 seconds, not {0}")]
    Period(u64),
}

impl TotpParams {
    /// SHA-1, 6 digits, 30 s: what the gateway issues and accepts.
    pub const GATEWAY: Self = Self {
        algorithm: Algorithm::Sha1,
        digits: 6,
        period_secs: 30,
    };

    /// Checks and builds parameters.
    ///
    /// Errors: [`ParamsError`] for digits outside 6..=8 or a period outside
    /// 1..=3600 seconds.
    pub fn new(algorithm: Algorithm, digits: u64, period_secs: u64) -> Result<Self, ParamsError> {
        let digits = match digits {
            6..=8 => digits as u8,
            _ => return Err(ParamsError::Digits(digits)),
        };
        if !(1..=3_600).contains(&period_secs) {
            return Err(ParamsError::Period(period_secs));
        }
        Ok(Self {
            algorithm,
            digits,
            period_secs,
        })
    }

    /// The hash.
    pub fn algorithm(self) -> Algorithm {
        self.algorithm
    }

    /// Digits of a code.
    pub fn digits(self) -> u8 {
        self.digits
    }

    /// Step length in seconds.
    pub fn period_secs(self) -> u64 {
        self.period_secs
    }

    /// The step that contains `unix_secs` (RFC 6238 §4.2, T0 = 0).
    pub fn step_at(self, unix_secs: u64) -> TimeStep {
        TimeStep(unix_secs / self.period_secs)
    }
}

/// A TOTP time step: `floor(unix_secs / period)`, the HOTP counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimeStep(pub u64);

/// A shared TOTP secret (raw bytes, wiped on drop, never printed).
#[derive(Clone)]
pub struct TotpSecret(Zeroizing<Vec<u8>>);

/// A secret that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// Not RFC 4648 base32.
    #[error("secret is not base32")]
    NotBase32,
    /// Too short or too long.
    #[error("secret must be {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} bytes, not {0}")]
    Length(usize),
    /// The operating system's random generator failed.
    #[error("cannot draw random bytes from the operating system")]
    Random,
}

impl TotpSecret {
    /// A new [`SECRET_BYTES`]-byte secret from the OS CSPRNG.
    ///
    /// Errors: [`SecretError::Random`].
    pub fn generate() -> Result<Self, SecretError> {
        let mut bytes = Zeroizing::new(vec![0_u8; SECRET_BYTES]);
        getrandom::fill(&mut bytes).map_err(|_| SecretError::Random)?;
        Ok(Self(bytes))
    }

    /// A secret from raw bytes.
    ///
    /// Errors: [`SecretError::Length`] outside
    /// [`MIN_SECRET_BYTES`]..=[`MAX_SECRET_BYTES`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SecretError> {
        if !(MIN_SECRET_BYTES..=MAX_SECRET_BYTES).contains(&bytes.len()) {
            return Err(SecretError::Length(bytes.len()));
        }
        Ok(Self(Zeroizing::new(bytes.to_vec())))
    }

    /// A secret from RFC 4648 base32, any letter case, `=` padding
    /// optional (authenticator apps show it either way).
    ///
    /// Errors: [`SecretError::NotBase32`], [`SecretError::Length`].
    pub fn from_base32(text: &str) -> Result<Self, SecretError> {
        let trimmed = text.trim_end_matches('=');
        if trimmed.len() > MAX_SECRET_BYTES * 2 {
            return Err(SecretError::Length(trimmed.len() * 5 / 8));
        }
        let upper = Zeroizing::new(trimmed.to_ascii_uppercase());
        let bytes = Zeroizing::new(
            data_encoding::BASE32_NOPAD
                .decode(upper.as_bytes())
                .map_err(|_| SecretError::NotBase32)?,
        );
        Self::from_bytes(&bytes)
    }

    /// RFC 4648 base32, upper case, without padding: the `secret=` of an
    /// `otpauth://` URI.
    pub fn to_base32(&self) -> String {
        data_encoding::BASE32_NOPAD.encode(&self.0)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TotpSecret(..)")
    }
}

impl PartialEq for TotpSecret {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_slice().ct_eq(other.0.as_slice()).into()
    }
}

impl Eq for TotpSecret {}

/// A code as the user typed it: exactly the parameters' number of ASCII
/// digits (surrounding whitespace ignored).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TotpCode {
    value: u32,
    digits: u8,
}

/// A code that is not a code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodeError {
    /// Not all digits, or the wrong number of them.
    #[error("a code is {0} digits")]
    Form(u8),
}

impl TotpCode {
    /// Parses a typed code of `params.digits()` digits.
    ///
    /// Errors: [`CodeError::Form`] for anything else.
    pub fn parse(text: &str, params: TotpParams) -> Result<Self, CodeError> {
        let text = text.trim();
        let wrong = || CodeError::Form(params.digits);
        if text.len() != usize::from(params.digits) || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(wrong());
        }
        let value = text.parse().map_err(|_| wrong())?;
        Ok(Self {
            value,
            digits: params.digits,
        })
    }

    /// The numeric value.
    pub fn value(self) -> u32 {
        self.value
    }
}

impl fmt::Display for TotpCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:0width$}",
            self.value,
            width = usize::from(self.digits)
        )
    }
}

impl fmt::Debug for TotpCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A code is a short-lived credential: keep it out of logs.
        f.write_str("TotpCode(..)")
    }
}

/// What [`verify`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TotpVerdict {
    /// The code matches `step`, later than any accepted before: record
    /// `step` as accepted, then let the user in.
    Accept {
        /// The matched step.
        step: TimeStep,
    },
    /// The code matches only `step`, which is not later than the last
    /// accepted one: a reused code.
    Replay {
        /// The matched step.
        step: TimeStep,
    },
    /// No step of the window matches.
    Reject,
}

/// One device for [`verify_any`].
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    /// The device's secret.
    pub secret: &'a TotpSecret,
    /// The highest step accepted for it so far.
    pub last_accepted: Option<TimeStep>,
}

/// What [`verify_any`] decided, with the index of the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnyVerdict {
    /// Device `index` accepts the code at `step`.
    Accept {
        /// Index into the candidates.
        index: usize,
        /// The matched step.
        step: TimeStep,
    },
    /// No device accepts it, and device `index` matched an already used
    /// step.
    Replay {
        /// Index into the candidates.
        index: usize,
        /// The matched step.
        step: TimeStep,
    },
    /// No device matches.
    Reject,
}

/// RFC 4226 HOTP: the `params.digits()`-digit value for `counter`
/// (`params.period_secs()` is not used).
pub fn hotp(secret: &TotpSecret, counter: u64, params: TotpParams) -> u32 {
    let message = counter.to_be_bytes();
    let key = secret.as_bytes();
    let digest: Zeroizing<Vec<u8>> = Zeroizing::new(match params.algorithm {
        Algorithm::Sha1 => mac::<Hmac<sha1::Sha1>>(key, &message),
        Algorithm::Sha256 => mac::<Hmac<sha2::Sha256>>(key, &message),
        Algorithm::Sha512 => mac::<Hmac<sha2::Sha512>>(key, &message),
    });
    truncate(&digest) % 10_u32.pow(u32::from(params.digits))
}

/// The code for the step containing `unix_secs`.
pub fn code_at(secret: &TotpSecret, unix_secs: u64, params: TotpParams) -> TotpCode {
    TotpCode {
        value: hotp(secret, params.step_at(unix_secs).0, params),
        digits: params.digits,
    }
}

/// Checks `code` against the steps around `unix_secs` (± [`WINDOW_STEPS`]).
/// `last_accepted` is the highest step accepted for this device before;
/// the verdict prefers the latest matching step after it.
pub fn verify(
    secret: &TotpSecret,
    code: TotpCode,
    unix_secs: u64,
    params: TotpParams,
    last_accepted: Option<TimeStep>,
) -> TotpVerdict {
    let now = params.step_at(unix_secs).0;
    let mut accept: Option<TimeStep> = None;
    let mut replay: Option<TimeStep> = None;
    let digits_match = Choice::from(u8::from(code.digits == params.digits));
    // Every step of the window is computed and compared before any branch
    // on the result.
    let window = now.saturating_sub(WINDOW_STEPS)..=now.saturating_add(WINDOW_STEPS);
    let matches: Vec<(TimeStep, Choice)> = window
        .map(|step| {
            let expected = hotp(secret, step, params);
            (TimeStep(step), expected.ct_eq(&code.value) & digits_match)
        })
        .collect();
    for (step, matched) in matches {
        if !bool::from(matched) {
            continue;
        }
        if last_accepted.is_some_and(|last| step <= last) {
            replay = Some(step);
        } else {
            accept = Some(step);
        }
    }
    match (accept, replay) {
        (Some(step), _) => TotpVerdict::Accept { step },
        (None, Some(step)) => TotpVerdict::Replay { step },
        (None, None) => TotpVerdict::Reject,
    }
}

/// [`verify`] over several devices of one user. Every device is checked
/// (no early exit); the first accepting device wins, else the first that
/// saw a replay.
pub fn verify_any(
    candidates: &[Candidate<'_>],
    code: TotpCode,
    unix_secs: u64,
    params: TotpParams,
) -> AnyVerdict {
    let verdicts: Vec<TotpVerdict> = candidates
        .iter()
        .map(|c| verify(c.secret, code, unix_secs, params, c.last_accepted))
        .collect();
    let accepted = verdicts.iter().enumerate().find_map(|(index, v)| match v {
        TotpVerdict::Accept { step } => Some(AnyVerdict::Accept { index, step: *step }),
        _ => None,
    });
    let replayed = verdicts.iter().enumerate().find_map(|(index, v)| match v {
        TotpVerdict::Replay { step } => Some(AnyVerdict::Replay { index, step: *step }),
        _ => None,
    });
    accepted.or(replayed).unwrap_or(AnyVerdict::Reject)
}

fn mac<M: Mac + KeyInit>(key: &[u8], message: &[u8]) -> Vec<u8> {
    #[expect(clippy::expect_used, reason = "not input-dependent")]
    // Invariant: HMAC takes keys of any length (RFC 2104 §2 hashes long keys
    // and pads short ones), so `new_from_slice` cannot fail.
    let mut mac = <M as KeyInit>::new_from_slice(key).expect("hmac accepts any key length");
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

/// RFC 4226 §5.3 dynamic truncation of an HMAC value (20, 32 or 64 bytes).
fn truncate(digest: &[u8]) -> u32 {
    let offset = usize::from(digest.last().copied().unwrap_or(0) & 0x0f);
    let mut word = [0_u8; 4];
    if let Some(bytes) = digest.get(offset..offset + 4) {
        word.copy_from_slice(bytes);
    }
    u32::from_be_bytes(word) & 0x7fff_ffff
}

#[cfg(test)]
mod tests;
