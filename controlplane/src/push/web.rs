//! The device endpoints of the built-in provider (see [`super::protocol`]
//! for the exchange). Mounted by the gateway's web router; devices reach
//! them over HTTPS at the gateway address.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;

use super::protocol::{
    self, ANSWER_PATH, AnswerResponse, CHALLENGE_PATH, ChallengeResponse, ErrorBody,
    MAX_BODY_BYTES, POLL_PATH, REGISTER_PATH,
};
use super::service::{AnswerError, BuiltinPush, PollError, RegisterError};

/// The router of `/push/v1/challenge`, `/push/v1/register`,
/// `/push/v1/poll` and `/push/v1/answer`, bodies limited to
/// [`MAX_BODY_BYTES`]. Every answer is JSON (or 204 with no body).
pub fn router(service: BuiltinPush) -> Router {
    Router::new()
        .route(CHALLENGE_PATH, post(challenge))
        .route(REGISTER_PATH, post(register))
        .route(POLL_PATH, get(poll))
        .route(ANSWER_PATH, post(answer))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(service)
}

async fn challenge(State(service): State<BuiltinPush>) -> Response {
    match service.challenge() {
        Ok(nonce) => json(StatusCode::OK, &ChallengeResponse { nonce }),
        Err(error) => register_error(&error),
    }
}

async fn register(State(service): State<BuiltinPush>, body: Bytes) -> Response {
    let body = match protocol::parse_register(&body) {
        Ok(body) => body,
        Err(error) => return error_json(StatusCode::BAD_REQUEST, &error.to_string()),
    };
    match service.register(&body).await {
        Ok(answer) => json(StatusCode::OK, &answer),
        Err(error) => register_error(&error),
    }
}

async fn poll(State(service): State<BuiltinPush>, headers: HeaderMap) -> Response {
    let Some(token) = bearer(&headers) else {
        return error_json(
            StatusCode::UNAUTHORIZED,
            "missing or malformed authorization",
        );
    };
    match service.poll(token).await {
        Ok(Some(push)) => json(StatusCode::OK, &push),
        Ok(None) => StatusCode::NO_CONTENT.into_response(),
        Err(error @ PollError::Unauthorized) => {
            error_json(StatusCode::UNAUTHORIZED, &error.to_string())
        }
        Err(error @ PollError::TooManyPolls) => {
            error_json(StatusCode::TOO_MANY_REQUESTS, &error.to_string())
        }
    }
}

async fn answer(State(service): State<BuiltinPush>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(token) = bearer(&headers) else {
        return error_json(
            StatusCode::UNAUTHORIZED,
            "missing or malformed authorization",
        );
    };
    let body = match protocol::parse_answer(&body) {
        Ok(body) => body,
        Err(error) => return error_json(StatusCode::BAD_REQUEST, &error.to_string()),
    };
    match service.answer(token, &body) {
        Ok(outcome) => json(
            StatusCode::OK,
            &AnswerResponse {
                outcome: outcome.as_str().to_owned(),
            },
        ),
        Err(error @ AnswerError::Unauthorized) => {
            error_json(StatusCode::UNAUTHORIZED, &error.to_string())
        }
        Err(error @ AnswerError::UnknownPush) => {
            error_json(StatusCode::NOT_FOUND, &error.to_string())
        }
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    protocol::parse_bearer(value).ok()
}

fn register_error(error: &RegisterError) -> Response {
    let status = match error {
        RegisterError::Rejected => StatusCode::FORBIDDEN,
        RegisterError::Full | RegisterError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        RegisterError::Disabled => StatusCode::NOT_FOUND,
        RegisterError::Random => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error_json(status, &error.to_string())
}

fn error_json(status: StatusCode, message: &str) -> Response {
    json(
        status,
        &ErrorBody {
            error: message.to_owned(),
        },
    )
}

fn json<T: Serialize>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => (status, [(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}
