//! The API's error answer: `{"code", "message", "field"?}` with its HTTP
//! status. Codes are stable snake_case; `field` names the offending field
//! of a validation error (dotted, as the configuration key).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::store::StoreError;

/// The JSON body of every error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, ToSchema)]
pub struct ErrorBody {
    /// Stable snake_case code, e.g. `validation_failed`, `not_found`.
    pub code: String,
    /// A human-readable message.
    pub message: String,
    /// The offending field (validation errors only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// The code of an error answer, attached to the response so the audit
/// middleware can record why a write was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorCode(pub &'static str);

/// An error answer of the API.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The stable code.
    pub code: &'static str,
    /// The message.
    pub message: String,
    /// The offending field, for validation errors.
    pub field: Option<String>,
}

impl ApiError {
    /// 400 `validation_failed` naming `field`.
    pub fn validation(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code: "validation_failed",
            message: message.into(),
            field: Some(field.into()),
        }
    }

    /// 400 `bad_request`: the body or a parameter is not understood.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 401 `unauthorized`: no token or an unknown one.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid api token is required (authorization: bearer TOKEN)",
        )
    }

    /// 403 `forbidden_role`: the token's role may not do this.
    pub fn forbidden_role() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "forbidden_role",
            "this token's role may only read",
        )
    }

    /// 404 `not_found` for `what` `name`.
    pub fn not_found(what: &str, name: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} {name} does not exist"),
        )
    }

    /// 409 `conflict` for `what` `name`.
    pub fn conflict(what: &str, name: &str) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("{what} {name} already exists"),
        )
    }

    /// 503 `unavailable`: the control plane cannot do this now.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }

    /// 500 `internal`: the store failed (logged by the caller).
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field: None,
        }
    }

    /// The JSON body.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            code: self.code.to_owned(),
            message: self.message.clone(),
            field: self.field.clone(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match &error {
            StoreError::NotFound { what, name } => Self::not_found(what, name),
            StoreError::AlreadyExists { what, name } => Self::conflict(what, name),
            _ => {
                tracing::error!(error = %crate::error_chain(&error), "api_store_failed");
                Self::internal("the store failed")
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body())).into_response();
        response.extensions_mut().insert(ErrorCode(self.code));
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_errors_name_their_field() {
        let body =
            serde_json::to_value(ApiError::validation("broker.groups", "bad").body()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"code": "validation_failed", "message": "bad", "field": "broker.groups"})
        );
    }

    #[test]
    fn other_errors_carry_no_field() {
        let body = serde_json::to_value(ApiError::forbidden_role().body()).unwrap();
        assert_eq!(body["code"], "forbidden_role");
        assert!(body.get("field").is_none());
    }
}
