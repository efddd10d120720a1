//! The device: register, long-poll, answer.
//!
//! Registration answers the gateway's nonce with the HMAC proof of
//! `gatehouse::push::protocol`; a 401 on a poll or an answer (the gateway
//! restarted, or the token was replaced) registers again. Connection
//! failures are retried every [`RETRY`].

use std::path::PathBuf;
use std::time::Duration;

use gatehouse::auth::totp::TotpSecret;
use gatehouse::push::MatchNumber;
use gatehouse::push::protocol::{
    self, ANSWER_PATH, AnswerBody, AnswerResponse, CHALLENGE_PATH, ChallengeResponse, Decision,
    POLL_PATH, PushMessage, REGISTER_PATH, RegisterBody, RegisterResponse,
};
use hyper::{Method, StatusCode};

use crate::client::{Client, ClientError};

/// Pause after a failed connection before trying again.
pub const RETRY: Duration = Duration::from_millis(500);

/// Time allowed for a request that is not a poll.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How the device answers a push.
#[derive(Debug, Clone)]
pub enum Answer {
    /// Approve with this number.
    ApproveWith(MatchNumber),
    /// Approve with the number written to this file (a test writes what
    /// the login page shows); waits for the file while the push is valid.
    ApproveFrom(PathBuf),
    /// Deny.
    Deny,
}

/// What the device is and does.
#[derive(Debug, Clone)]
pub struct DeviceConfig {
    /// The account (the URI's).
    pub user: String,
    /// The device name (the URI's `device=`).
    pub device: String,
    /// The TOTP secret.
    pub secret: TotpSecret,
    /// How to answer.
    pub answer: Answer,
    /// Approve with a number other than the one given (to test refusal).
    pub wrong: bool,
    /// Exit after answering one push.
    pub once: bool,
}

/// Why the device stopped.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// The gateway refused the registration (unknown device or secret).
    #[error("registration refused: {0}")]
    Refused(String),
    /// The gateway answered something that is not the protocol.
    #[error("unexpected answer from the gateway: {0}")]
    Protocol(String),
    /// The number file never held two digits.
    #[error("no number in {0} before the push expired")]
    NoNumber(PathBuf),
}

/// Registers and answers pushes until `config.once` is satisfied (or
/// forever). `report` receives one line per event: `registered ...`,
/// `push id=... user=...`, `answered id=... outcome=...`,
/// `retry reason=...`.
///
/// Errors: [`DeviceError`].
pub async fn serve(
    client: &Client,
    config: &DeviceConfig,
    mut report: impl FnMut(String),
) -> Result<(), DeviceError> {
    let mut token: Option<(String, u64)> = None;
    loop {
        let (current, poll_secs) = match &token {
            Some(t) => t.clone(),
            None => match register(client, config).await {
                Ok(t) => {
                    report(format!(
                        "registered user={} device={}",
                        config.user, config.device
                    ));
                    token = Some(t.clone());
                    t
                }
                Err(Step::Retry(reason)) => {
                    report(format!("retry reason={reason}"));
                    tokio::time::sleep(RETRY).await;
                    continue;
                }
                Err(Step::Fatal(error)) => return Err(error),
            },
        };
        let timeout = Duration::from_secs(poll_secs.saturating_add(10));
        let reply = client
            .send(Method::GET, POLL_PATH, Some(&current), None, timeout)
            .await;
        let reply = match reply {
            Ok(reply) => reply,
            Err(error) => {
                report(format!("retry reason={}", squash(&error)));
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        match reply.status {
            StatusCode::NO_CONTENT => continue,
            StatusCode::UNAUTHORIZED => {
                token = None;
                continue;
            }
            StatusCode::OK => {}
            other => {
                report(format!("retry reason=poll_status_{}", other.as_u16()));
                tokio::time::sleep(RETRY).await;
                continue;
            }
        }
        let push: PushMessage = serde_json::from_slice(&reply.body)
            .map_err(|e| DeviceError::Protocol(e.to_string()))?;
        report(format!("push id={} user={}", push.id, push.user));
        let body = decide(config, &push).await?;
        let reply = client
            .send(
                Method::POST,
                ANSWER_PATH,
                Some(&current),
                serde_json::to_vec(&body).ok(),
                REQUEST_TIMEOUT,
            )
            .await;
        let outcome = match reply {
            Ok(reply) if reply.status == StatusCode::OK => {
                serde_json::from_slice::<AnswerResponse>(&reply.body)
                    .map(|a| a.outcome)
                    .unwrap_or_else(|_| "malformed".to_owned())
            }
            Ok(reply) => format!("refused_{}", reply.status.as_u16()),
            Err(error) => format!("failed_{}", squash(&error)),
        };
        report(format!("answered id={} outcome={outcome}", push.id));
        if config.once {
            return Ok(());
        }
    }
}

enum Step {
    Retry(String),
    Fatal(DeviceError),
}

async fn register(client: &Client, config: &DeviceConfig) -> Result<(String, u64), Step> {
    let retry = |e: ClientError| Step::Retry(squash(&e));
    let reply = client
        .send(Method::POST, CHALLENGE_PATH, None, None, REQUEST_TIMEOUT)
        .await
        .map_err(retry)?;
    if reply.status != StatusCode::OK {
        return Err(Step::Retry(format!(
            "challenge_status_{}",
            reply.status.as_u16()
        )));
    }
    let challenge: ChallengeResponse = serde_json::from_slice(&reply.body)
        .map_err(|e| Step::Fatal(DeviceError::Protocol(e.to_string())))?;
    let body = RegisterBody {
        proof: protocol::register_proof(
            &config.secret,
            &challenge.nonce,
            &config.user,
            &config.device,
        ),
        user: config.user.clone(),
        device: config.device.clone(),
        nonce: challenge.nonce,
    };
    let reply = client
        .send(
            Method::POST,
            REGISTER_PATH,
            None,
            serde_json::to_vec(&body).ok(),
            REQUEST_TIMEOUT,
        )
        .await
        .map_err(retry)?;
    match reply.status {
        StatusCode::OK => {
            let answer: RegisterResponse = serde_json::from_slice(&reply.body)
                .map_err(|e| Step::Fatal(DeviceError::Protocol(e.to_string())))?;
            Ok((answer.token, answer.poll_secs))
        }
        StatusCode::FORBIDDEN => Err(Step::Fatal(DeviceError::Refused(
            String::from_utf8_lossy(&reply.body).into_owned(),
        ))),
        other => Err(Step::Retry(format!("register_status_{}", other.as_u16()))),
    }
}

async fn decide(config: &DeviceConfig, push: &PushMessage) -> Result<AnswerBody, DeviceError> {
    let number = match &config.answer {
        Answer::Deny => {
            return Ok(AnswerBody {
                id: push.id.clone(),
                decision: Decision::Deny,
                number: None,
            });
        }
        Answer::ApproveWith(number) => *number,
        Answer::ApproveFrom(path) => read_number(path, push.expires_in_secs.max(1)).await?,
    };
    let number = if config.wrong {
        MatchNumber::new((number.value() + 1) % 100).unwrap_or(number)
    } else {
        number
    };
    Ok(AnswerBody {
        id: push.id.clone(),
        decision: Decision::Approve,
        number: Some(number.to_string()),
    })
}

async fn read_number(path: &PathBuf, wait_secs: u64) -> Result<MatchNumber, DeviceError> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait_secs);
    loop {
        if let Ok(text) = tokio::fs::read_to_string(path).await {
            if let Ok(number) = MatchNumber::parse(text.trim()) {
                return Ok(number);
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(DeviceError::NoNumber(path.clone()));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An error as one token for a `key=value` report line.
fn squash(error: &dyn std::fmt::Display) -> String {
    error
        .to_string()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}
