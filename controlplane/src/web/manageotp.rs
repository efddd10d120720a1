//! `/manageotp` (issue 6 item 3): a logged-in user lists, adds, tests and
//! removes TOTP devices. Every POST carries the session's CSRF token
//! (checked in constant time); the QR code PNG of a new device is served
//! once per enrolment id, to the session that added it only, for
//! [`QR_TTL`].

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::cookies;
use super::flow::{page, redirect, session};
use super::pages;
use super::{LOGIN_PAGE, QrImage, WebState};
use crate::auth::devices::{OtpError, OtpVerdict};
use crate::auth::names::{DeviceName, UserName};
use crate::auth::otpauth::qr_png;
use crate::auth::totp::{TotpCode, TotpParams};
use crate::login::{DevicesError, WebSession, session::random_token};

/// How long a new device's QR code stays available.
pub const QR_TTL: Duration = Duration::from_secs(600);

/// `GET /manageotp`.
pub async fn show(State(state): State<Arc<WebState>>, headers: HeaderMap) -> Response {
    let Some(session) = session(&state, &headers).await else {
        return redirect(LOGIN_PAGE, &[]);
    };
    listing(&state, &session, None, None).await
}

async fn listing(
    state: &WebState,
    session: &WebSession,
    error: Option<&str>,
    info: Option<&str>,
) -> Response {
    let Ok(user) = UserName::new(&session.user) else {
        return redirect(LOGIN_PAGE, &[]);
    };
    let devices: Vec<String> = match state.login.devices().list(&user, &session.dn).await {
        Ok(devices) => devices.into_iter().map(|d| d.as_str().to_owned()).collect(),
        Err(error) => {
            tracing::warn!(user = %user, error = %error, "manageotp_list_failed");
            return page(
                StatusCode::SERVICE_UNAVAILABLE,
                pages::manage(
                    &[],
                    &session.token.csrf(),
                    Some("Your authenticators cannot be read right now. Try again later."),
                    None,
                ),
                &[],
            );
        }
    };
    page(
        StatusCode::OK,
        pages::manage(&devices, &session.token.csrf(), error, info),
        &[],
    )
}

/// A POST's session and form, after the CSRF check.
async fn checked(
    state: &WebState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(WebSession, Vec<(String, String)>), Response> {
    let Some(session) = session(state, headers).await else {
        return Err(redirect(LOGIN_PAGE, &[]));
    };
    let fields = cookies::form(body);
    if !session.token.csrf_matches(cookies::field(&fields, "csrf")) {
        tracing::info!(user = session.user, reason = "csrf", "manageotp_refused");
        return Err(page(
            StatusCode::FORBIDDEN,
            pages::manage(
                &[],
                &session.token.csrf(),
                Some("The form was out of date. Open Manage authenticators again."),
                None,
            ),
            &[],
        ));
    }
    Ok((session, fields))
}

/// `POST /manageotp/add` (`csrf`, `device`).
pub async fn add(State(state): State<Arc<WebState>>, headers: HeaderMap, body: Bytes) -> Response {
    let (session, fields) = match checked(&state, &headers, &body).await {
        Ok(checked) => checked,
        Err(response) => return response,
    };
    let Ok(user) = UserName::new(&session.user) else {
        return redirect(LOGIN_PAGE, &[]);
    };
    let Ok(device) = DeviceName::new(cookies::field(&fields, "device").trim()) else {
        return listing(
            &state,
            &session,
            Some("Device names are 1 to 64 characters without # @ = & or ,."),
            None,
        )
        .await;
    };
    let enrolment = match state.login.devices().add(&user, &session.dn, &device).await {
        Ok(enrolment) => enrolment,
        Err(DevicesError::Otp(OtpError::AlreadyExists(_))) => {
            return listing(
                &state,
                &session,
                Some("You already have a device of that name."),
                None,
            )
            .await;
        }
        Err(error) => {
            tracing::warn!(user = %user, error = %error, "manageotp_add_failed");
            return listing(
                &state,
                &session,
                Some("The device could not be added."),
                None,
            )
            .await;
        }
    };
    let uri = enrolment.uri.to_string();
    let png = match qr_png(&uri) {
        Ok(png) => png,
        Err(error) => {
            tracing::warn!(error = %error, "manageotp_qr_failed");
            Vec::new()
        }
    };
    let Ok(id) = random_token() else {
        return listing(
            &state,
            &session,
            Some("The device could not be added."),
            None,
        )
        .await;
    };
    state.put_qr(
        id.clone(),
        QrImage {
            session: session.token.hash(),
            png,
            expires: Instant::now() + QR_TTL,
        },
    );
    page(
        StatusCode::OK,
        pages::enrolled(device.as_str(), &format!("/manageotp/qr/{id}"), &uri),
        &[],
    )
}

/// `GET /manageotp/qr/{id}`: the PNG, to its session only.
pub async fn qr(
    State(state): State<Arc<WebState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let Some(session) = session(&state, &headers).await else {
        return StatusCode::NOT_FOUND.into_response();
    };
    match state.qr(&id, &session.token.hash()) {
        Some(png) if !png.is_empty() => {
            let mut response = (StatusCode::OK, png).into_response();
            let headers = response.headers_mut();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("image/png"));
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

/// `POST /manageotp/test` (`csrf`, `code`).
pub async fn test(State(state): State<Arc<WebState>>, headers: HeaderMap, body: Bytes) -> Response {
    let (session, fields) = match checked(&state, &headers, &body).await {
        Ok(checked) => checked,
        Err(response) => return response,
    };
    let Ok(user) = UserName::new(&session.user) else {
        return redirect(LOGIN_PAGE, &[]);
    };
    let Ok(code) = TotpCode::parse(cookies::field(&fields, "code").trim(), TotpParams::GATEWAY)
    else {
        return listing(&state, &session, Some("A code is 6 digits."), None).await;
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let verdict = state
        .login
        .devices()
        .verify(&user, &session.dn, code, now)
        .await;
    let (result, error, info) = match verdict {
        Ok(OtpVerdict::Accept { device, .. }) => (
            "accept",
            None,
            Some(format!("OTP verification successful ({device}).")),
        ),
        Ok(OtpVerdict::Replay { .. }) => (
            "replay",
            Some("This code was already used. Wait for the next one."),
            None,
        ),
        Ok(OtpVerdict::Reject) => ("reject", Some("The code was not accepted."), None),
        Err(error) => {
            tracing::warn!(error = %error, "manageotp_test_failed");
            ("error", Some("The code cannot be checked right now."), None)
        }
    };
    tracing::info!(user = %user, result, "manageotp_test");
    listing(&state, &session, error, info.as_deref()).await
}

/// `POST /manageotp/remove` (`csrf`, `device`).
pub async fn remove(
    State(state): State<Arc<WebState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (session, fields) = match checked(&state, &headers, &body).await {
        Ok(checked) => checked,
        Err(response) => return response,
    };
    let Ok(user) = UserName::new(&session.user) else {
        return redirect(LOGIN_PAGE, &[]);
    };
    let Ok(device) = DeviceName::new(cookies::field(&fields, "device")) else {
        return listing(&state, &session, Some("No such device."), None).await;
    };
    match state
        .login
        .devices()
        .remove(&user, &session.dn, &device)
        .await
    {
        Ok(()) => listing(&state, &session, None, Some("The device was removed.")).await,
        Err(DevicesError::Otp(OtpError::NotFound(_))) => {
            listing(&state, &session, Some("No such device."), None).await
        }
        Err(error) => {
            tracing::warn!(user = %user, error = %error, "manageotp_remove_failed");
            listing(
                &state,
                &session,
                Some("The device could not be removed."),
                None,
            )
            .await
        }
    }
}
