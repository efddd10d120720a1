//! The device protocol of the built-in push provider, sans-IO: paths, JSON
//! bodies, ids, tokens and the registration proof. Shared by the gateway
//! ([`crate::push::router`]) and `tools/push-device`.
//!
//! ```text
//! POST /push/v1/challenge                      -> 200 {"nonce"}                 (single-use, 60 s)
//! POST /push/v1/register {user, device, nonce, proof}
//!                                              -> 200 {"token", "poll_secs"} | 403 | 503
//! GET  /push/v1/poll     Authorization: Bearer TOKEN
//!                                              -> 200 {push} | 204 (hold ended) | 401 | 429
//! POST /push/v1/answer   Authorization: Bearer TOKEN {id, decision, number}
//!                                              -> 200 {"outcome"} | 401 | 404 (unknown or spent)
//! ```
//!
//! Registration proves possession of the device's TOTP secret without
//! spending a TOTP step: `proof = base64url(HMAC-SHA-256(secret,
//! "gatehouse-push-register-v1" 0 nonce 0 user 0 device))`, over a nonce
//! the gateway issued, used once. The answer is a bearer token (256
//! random bits) held in memory only: after a gateway restart polls get 401
//! and the device registers again. Every body is at most
//! [`MAX_BODY_BYTES`]; unknown JSON fields are ignored.

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::auth::totp::TotpSecret;

/// `POST`: a registration nonce.
pub const CHALLENGE_PATH: &str = "/push/v1/challenge";
/// `POST`: register a device.
pub const REGISTER_PATH: &str = "/push/v1/register";
/// `GET`: long-poll for a push.
pub const POLL_PATH: &str = "/push/v1/poll";
/// `POST`: answer a push.
pub const ANSWER_PATH: &str = "/push/v1/answer";

/// Largest request body the device endpoints read.
pub const MAX_BODY_BYTES: usize = 4_096;

/// Bytes of a push id.
pub const PUSH_ID_BYTES: usize = 16;
/// Bytes of a device token and of a nonce.
pub const TOKEN_BYTES: usize = 32;

const PROOF_LABEL: &[u8] = b"gatehouse-push-register-v1";
const B64: data_encoding::Encoding = data_encoding::BASE64URL_NOPAD;

/// Device input that is not protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// Longer than [`MAX_BODY_BYTES`].
    #[error("body is longer than {MAX_BODY_BYTES} bytes")]
    TooLong,
    /// Not the JSON shape expected.
    #[error("malformed body: {0}")]
    Json(String),
    /// Not `Bearer TOKEN`.
    #[error("malformed authorization")]
    Authorization,
    /// Not a base64url value of the right length.
    #[error("malformed {0}")]
    Encoding(&'static str),
}

/// The id of one push: [`PUSH_ID_BYTES`] random bytes, base64url.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PushId([u8; PUSH_ID_BYTES]);

impl PushId {
    /// A fresh random id, or `None` when the OS generator fails.
    pub fn random() -> Option<Self> {
        let mut bytes = [0_u8; PUSH_ID_BYTES];
        getrandom::fill(&mut bytes).ok()?;
        Some(Self(bytes))
    }

    /// Parses the base64url form.
    ///
    /// Errors: [`ProtocolError::Encoding`].
    pub fn parse(text: &str) -> Result<Self, ProtocolError> {
        decode_fixed(text, "push id").map(Self)
    }
}

impl fmt::Display for PushId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&B64.encode(&self.0))
    }
}

impl fmt::Debug for PushId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PushId({self})")
    }
}

/// Random bytes in base64url: a token or a nonce ([`TOKEN_BYTES`]).
pub fn random_token() -> Option<String> {
    let mut bytes = [0_u8; TOKEN_BYTES];
    getrandom::fill(&mut bytes).ok()?;
    Some(B64.encode(&bytes))
}

/// The SHA-256 of a token or nonce's text: what the gateway keeps and
/// looks up, so a lookup's timing says nothing about the token.
pub fn digest(text: &str) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(text.as_bytes()).into()
}

/// `POST /push/v1/challenge` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChallengeResponse {
    /// A single-use nonce for [`RegisterBody::nonce`].
    pub nonce: String,
}

/// `POST /push/v1/register` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterBody {
    /// The account of the device's `otpauth://` URI.
    pub user: String,
    /// The device name (`device=` of the URI).
    pub device: String,
    /// The nonce from the challenge.
    pub nonce: String,
    /// [`register_proof`] over the other fields.
    pub proof: String,
}

/// `POST /push/v1/register` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterResponse {
    /// The bearer token for poll and answer.
    pub token: String,
    /// How long the gateway holds a poll open, in seconds.
    pub poll_secs: u64,
}

/// A push as the device receives it (`GET /push/v1/poll`, 200). It does
/// not carry the number: the user reads it on the login page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushMessage {
    /// The push id to answer.
    pub id: String,
    /// The user logging in.
    pub user: String,
    /// The device it was delivered to.
    pub device: String,
    /// Seconds left to answer.
    pub expires_in_secs: u64,
}

/// The user's decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// Allow the login (with the number).
    Approve,
    /// Refuse the login.
    Deny,
}

/// `POST /push/v1/answer` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnswerBody {
    /// The push id.
    pub id: String,
    /// Approve or deny.
    pub decision: Decision,
    /// The two digits the user typed (required to approve).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<String>,
}

/// `POST /push/v1/answer` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnswerResponse {
    /// `approved`, `denied` or `wrong_number`.
    pub outcome: String,
}

/// Any refusal's body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong, lowercase.
    pub error: String,
}

/// Parses a register body.
///
/// Errors: [`ProtocolError::TooLong`], [`ProtocolError::Json`].
pub fn parse_register(body: &[u8]) -> Result<RegisterBody, ProtocolError> {
    parse_json(body)
}

/// Parses an answer body.
///
/// Errors: [`ProtocolError::TooLong`], [`ProtocolError::Json`].
pub fn parse_answer(body: &[u8]) -> Result<AnswerBody, ProtocolError> {
    parse_json(body)
}

/// The token of an `Authorization: Bearer TOKEN` value (scheme
/// case-insensitive; the token base64url of [`TOKEN_BYTES`]).
///
/// Errors: [`ProtocolError::Authorization`].
pub fn parse_bearer(value: &str) -> Result<&str, ProtocolError> {
    let (scheme, token) = value.split_once(' ').ok_or(ProtocolError::Authorization)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(ProtocolError::Authorization);
    }
    let token = token.trim();
    decode_fixed::<TOKEN_BYTES>(token, "token").map_err(|_| ProtocolError::Authorization)?;
    Ok(token)
}

/// The registration proof (see the module documentation).
pub fn register_proof(secret: &TotpSecret, nonce: &str, user: &str, device: &str) -> String {
    B64.encode(&proof_bytes(secret, nonce, user, device))
}

/// Whether `proof` is [`register_proof`] of the rest, compared in constant
/// time.
pub fn verify_proof(
    secret: &TotpSecret,
    nonce: &str,
    user: &str,
    device: &str,
    proof: &str,
) -> bool {
    let expected = proof_bytes(secret, nonce, user, device);
    let given = B64.decode(proof.as_bytes()).unwrap_or_default();
    expected.as_slice().ct_eq(given.as_slice()).into()
}

fn proof_bytes(secret: &TotpSecret, nonce: &str, user: &str, device: &str) -> Vec<u8> {
    let Ok(mut mac) = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret.as_bytes()) else {
        // HMAC takes keys of any length; unreachable, and an empty proof
        // matches nothing.
        return Vec::new();
    };
    for part in [PROOF_LABEL, nonce.as_bytes(), user.as_bytes()] {
        mac.update(part);
        mac.update(&[0]);
    }
    mac.update(device.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

fn parse_json<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, ProtocolError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(ProtocolError::TooLong);
    }
    crate::json::from_object(body).map_err(|e| ProtocolError::Json(e.to_string()))
}

fn decode_fixed<const N: usize>(text: &str, what: &'static str) -> Result<[u8; N], ProtocolError> {
    if text.len() > N * 2 {
        return Err(ProtocolError::Encoding(what));
    }
    let bytes = B64
        .decode(text.as_bytes())
        .map_err(|_| ProtocolError::Encoding(what))?;
    let array: [u8; N] = bytes
        .try_into()
        .map_err(|_| ProtocolError::Encoding(what))?;
    // Only the canonical spelling (no stray trailing bits).
    if B64.encode(&array) != text {
        return Err(ProtocolError::Encoding(what));
    }
    Ok(array)
}
