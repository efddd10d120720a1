//! The login endpoints of PROTOCOLS.md §7 over [`crate::login::Login`]:
//! `/cgi/login`, `/cgi/dlge`, `/cgi/pushwait`, `/cgi/pushresend`, `/cgi/setclient`, `/vpns/cvpnpage.html`
//! and `/cgi/logout` (the home page is the store front's,
//! [`super::storefront`]).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::cookies::{self, ERROR, LOGIN_FAILED, PENDING, SESSION};
use super::pages;
use super::{HOME_PAGE, LOGIN_PAGE, WebClient, WebState};
use crate::login::{LoginForm, LoginReply, SessionToken, WebSession};

/// Where a successful login is sent first (the seed's "set client").
pub const SETCLIENT: &str = "/cgi/setclient?cvpn";

/// Where the push page reloads itself while it waits for the device.
pub const PUSH_WAIT: &str = "/cgi/pushwait";

/// A page with the headers every page of the flow carries.
pub fn page(status: StatusCode, html: String, cookies: &[HeaderValue]) -> Response {
    let mut response = (status, axum::response::Html(html)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'; frame-ancestors 'none'; form-action 'self'"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    for cookie in cookies {
        headers.append(header::SET_COOKIE, cookie.clone());
    }
    response
}

/// A 302 to `location`, setting `cookies`.
pub fn redirect(location: &'static str, cookies: &[HeaderValue]) -> Response {
    let mut response = (StatusCode::FOUND, [(header::LOCATION, location)]).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    for cookie in cookies {
        headers.append(header::SET_COOKIE, cookie.clone());
    }
    response
}

/// The live session of the request's `NSC_AAAC` cookie, if any.
pub async fn session(state: &WebState, headers: &HeaderMap) -> Option<WebSession> {
    let token = SessionToken::from_cookie(cookies::get(headers, SESSION)?)?;
    match state.login.sessions().find(&token).await {
        Ok(found) => found,
        Err(error) => {
            tracing::warn!(error = %error, "web_session_lookup_failed");
            None
        }
    }
}

/// `GET /vpn/index.html`.
pub async fn login_page(headers: HeaderMap) -> Response {
    let clear: Vec<HeaderValue> = cookies::get(&headers, ERROR)
        .map(|_| cookies::set(ERROR, "", "/", Some(0)))
        .into_iter()
        .collect();
    page(StatusCode::OK, pages::login(None, None), &clear)
}

/// `POST /cgi/login`.
pub async fn login(
    State(state): State<Arc<WebState>>,
    Extension(client): Extension<WebClient>,
    body: Bytes,
) -> Response {
    let fields = cookies::form(&body);
    let form = LoginForm {
        login: cookies::field(&fields, "login").to_owned(),
        passwd: cookies::field(&fields, "passwd").to_owned(),
        passwd1: cookies::field(&fields, "passwd1").to_owned(),
    };
    let reply = state.login.start(&form, client.peer).await;
    answer(&state, reply)
}

/// `POST /cgi/dlge`.
pub async fn dlge(
    State(state): State<Arc<WebState>>,
    Extension(client): Extension<WebClient>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let fields = cookies::form(&body);
    let response = cookies::field(&fields, "response");
    let pending = cookies::get(&headers, PENDING).unwrap_or("");
    let reply = state.login.answer(pending, response, client.peer).await;
    answer(&state, reply)
}

/// `GET|POST /cgi/pushwait`: the push page again while the device has
/// not answered (each request waits at most [`crate::login::PUSH_POLL`]),
/// then the home page, a failure, or the fallback page.
pub async fn push_wait(
    State(state): State<Arc<WebState>>,
    Extension(client): Extension<WebClient>,
    headers: HeaderMap,
) -> Response {
    let pending = cookies::get(&headers, PENDING).unwrap_or("");
    let reply = state.login.push_wait(pending, client.peer).await;
    answer(&state, reply)
}

/// `POST /cgi/pushresend`: "Resend notification".
pub async fn push_resend(
    State(state): State<Arc<WebState>>,
    Extension(client): Extension<WebClient>,
    headers: HeaderMap,
) -> Response {
    let pending = cookies::get(&headers, PENDING).unwrap_or("");
    let reply = state.login.resend_push(pending, client.peer).await;
    answer(&state, reply)
}

fn answer(state: &WebState, reply: LoginReply) -> Response {
    let clear_pending = cookies::set(PENDING, "", "/cgi", Some(0));
    let pending_cookie = |pending: &str| {
        cookies::set(
            PENDING,
            pending,
            "/cgi",
            Some(state.login.pending_ttl().as_secs()),
        )
    };
    match reply {
        LoginReply::Push { pending, number } => page(
            StatusCode::OK,
            pages::push(&number.to_string(), PUSH_WAIT),
            &[pending_cookie(&pending)],
        ),
        LoginReply::PushFallback {
            pending,
            notice,
            error,
        } => page(
            StatusCode::OK,
            pages::push_fallback(
                crate::login::OTP_PROMPT,
                notice.map(|n| n.message()),
                error.map(|e| e.message()),
            ),
            &[pending_cookie(&pending)],
        ),
        LoginReply::Session { token, .. } => redirect(
            SETCLIENT,
            &[
                cookies::set(SESSION, token.as_str(), "/", None),
                clear_pending,
                cookies::set(ERROR, "", "/", Some(0)),
            ],
        ),
        LoginReply::Challenge {
            pending,
            prompt,
            error,
        } => page(
            StatusCode::OK,
            pages::challenge(&prompt, error.map(|e| e.message())),
            &[cookies::set(
                PENDING,
                &pending,
                "/cgi",
                Some(state.login.pending_ttl().as_secs()),
            )],
        ),
        LoginReply::Failed(failure) => page(
            StatusCode::OK,
            pages::login(Some(failure.message()), None),
            &[cookies::set(ERROR, LOGIN_FAILED, "/", None), clear_pending],
        ),
    }
}

/// `GET /cgi/setclient`: on to the portal page, or back to log on.
pub async fn setclient(State(state): State<Arc<WebState>>, headers: HeaderMap) -> Response {
    match session(&state, &headers).await {
        Some(_) => redirect("/vpns/cvpnpage.html", &[]),
        None => redirect(LOGIN_PAGE, &[]),
    }
}

/// `GET /vpns/cvpnpage.html`: on to the home page.
pub async fn cvpnpage(State(state): State<Arc<WebState>>, headers: HeaderMap) -> Response {
    match session(&state, &headers).await {
        Some(_) => redirect(HOME_PAGE, &[]),
        None => redirect(LOGIN_PAGE, &[]),
    }
}

/// `GET /cgi/logout`: ends the session and clears its cookie.
pub async fn logout(
    State(state): State<Arc<WebState>>,
    Extension(client): Extension<WebClient>,
    headers: HeaderMap,
) -> Response {
    let token = cookies::get(&headers, SESSION).and_then(SessionToken::from_cookie);
    let mut ended = false;
    if let Some(token) = &token {
        match state.login.sessions().end(token).await {
            Ok(found) => ended = found,
            Err(error) => tracing::warn!(error = %error, "web_logout_failed"),
        }
        state.forget_qr(&token.hash());
    }
    let peer = client.peer.map(|p| p.to_string()).unwrap_or_default();
    tracing::info!(peer, ended, "logout");
    page(
        StatusCode::OK,
        pages::login(None, Some("You are logged off.")),
        &[cookies::set(SESSION, "", "/", Some(0))],
    )
}
