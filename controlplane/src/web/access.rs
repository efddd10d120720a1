//! The access client's endpoints on the gateway's web side (server-to-client,
//! DESIGN.md §2B), authenticated by the web session cookie (`NSC_AAAC`)
//! of the normal login (`POST /cgi/login`):
//!
//! ```text
//! POST /access/v1/connect     lease the IIP -> {"iip","pool","sticky"} | 409 {"error","reason"}
//! GET  /access/v1/control     JSON lines: {"iip":..} first, then {"flow","port","ticket"};
//!                             {} every 15 s as a keep-alive
//! POST /access/v1/fqdn        {"fqdn": "pc1.corp.example"} registers the machine name
//! POST /access/v1/disconnect  releases the IIP (listeners unbound, flows closed)
//! GET  /access/v1/resolve?name=  {"name","iip"} | 404; only for callers inside an
//!                             app's server range (the back-end servers)
//! ```
//!
//! `/cgi/logout` releases the IIP too ([`release_on_logout`]), and a
//! control connection that stays lost for `client_grace_secs` does.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Body;
use axum::extract::{Extension, Request, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use hyper::body::Frame;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::mpsc;

use super::WebClient;
use super::cookies::{self, SESSION};
use crate::login::Login;
use crate::login::session::{Scope, SessionToken};
use crate::s2c::decide::UserContext;
use crate::s2c::service::{ClientEvent, ConnectError, ServerToClient};

/// How often the control stream sends a keep-alive line.
pub const KEEPALIVE: Duration = Duration::from_secs(15);

/// What the access endpoints share.
#[derive(Debug, Clone)]
pub struct AccessState {
    /// The login sessions (the cookie's user).
    pub login: Arc<Login>,
    /// Leases, flows and names.
    pub s2c: ServerToClient,
}

/// The access routes over `state`.
pub fn router(state: AccessState) -> Router {
    Router::new()
        .route("/access/v1/connect", post(connect))
        .route("/access/v1/control", get(control))
        .route("/access/v1/fqdn", post(fqdn))
        .route("/access/v1/disconnect", post(disconnect))
        .route("/access/v1/resolve", get(resolve))
        .with_state(state)
}

/// Middleware for the whole web router: a `/cgi/logout` releases the
/// session user's IIP (before the logout ends the session).
pub async fn release_on_logout(
    State(state): State<AccessState>,
    request: Request,
    next: Next,
) -> Response {
    if request.uri().path() == "/cgi/logout"
        && let Some(user) = user_of(&state, request.headers()).await
        && let Err(error) = state.s2c.disconnect(&user, SystemTime::now()).await
    {
        tracing::warn!(user, error = %crate::error_chain(&error), "s2c_release_failed");
    }
    next.run(request).await
}

/// The full-scope session user of the request's cookie.
async fn user_of(state: &AccessState, headers: &HeaderMap) -> Option<String> {
    session_of(state, headers).await.map(|session| session.user)
}

/// The full (not enrol-only) web session of the request's cookie.
async fn session_of(
    state: &AccessState,
    headers: &HeaderMap,
) -> Option<crate::login::session::WebSession> {
    let token = SessionToken::from_cookie(cookies::get(headers, SESSION)?)?;
    match state.login.sessions().find(&token).await {
        Ok(Some(session)) if session.scope == Scope::Full => Some(session),
        Ok(_) => None,
        Err(error) => {
            tracing::warn!(error = %error, "web_session_lookup_failed");
            None
        }
    }
}

fn json_response(status: StatusCode, value: serde_json::Value) -> Response {
    let mut body = serde_json::to_vec(&value).unwrap_or_default();
    body.push(b'\n');
    (
        status,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

fn unauthorized() -> Response {
    json_response(
        StatusCode::UNAUTHORIZED,
        json!({"error": "log in first (POST /cgi/login)", "reason": "no_session"}),
    )
}

/// `POST /access/v1/connect`.
async fn connect(
    State(state): State<AccessState>,
    Extension(client): Extension<WebClient>,
    headers: HeaderMap,
) -> Response {
    let Some(session) = session_of(&state, &headers).await else {
        return unauthorized();
    };
    let user = session.user;
    let context = UserContext {
        // The directory groups the login found: pools and rules by group.
        groups: session.groups,
        client: client.peer.map(|peer| peer.ip()),
    };
    match state.s2c.connect(&user, context, SystemTime::now()).await {
        Ok(leased) => json_response(
            StatusCode::OK,
            json!({
                "iip": leased.lease.iip.to_string(),
                "pool": leased.lease.pool,
                "sticky": leased.sticky,
            }),
        ),
        Err(ConnectError::Lease(error)) => json_response(
            StatusCode::CONFLICT,
            json!({"error": error.to_string(), "reason": error.reason()}),
        ),
        Err(error @ ConnectError::Store(_)) => json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": crate::error_chain(&error), "reason": "store"}),
        ),
    }
}

/// `GET /access/v1/control`: the long-lived event stream.
async fn control(State(state): State<AccessState>, headers: HeaderMap) -> Response {
    let Some(user) = user_of(&state, &headers).await else {
        return unauthorized();
    };
    let Some(lease) = state.s2c.lease_of(&user).filter(|l| l.is_active()) else {
        return json_response(
            StatusCode::CONFLICT,
            json!({"error": "no active lease: POST /access/v1/connect first", "reason": "no_lease"}),
        );
    };
    let (id, events) = state.s2c.attach_client(&user);
    tracing::info!(user, iip = %lease.iip, "s2c_client_attached");
    let first = format!("{}\n", json!({"iip": lease.iip.to_string()}));
    let mut keepalive = tokio::time::interval(KEEPALIVE);
    keepalive.reset();
    let body = ControlBody {
        first: Some(Bytes::from(first)),
        events,
        keepalive,
        _guard: Detach {
            s2c: state.s2c.clone(),
            user,
            id,
        },
    };
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/x-ndjson"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        Body::new(body),
    )
        .into_response()
}

/// `{"fqdn": ...}`.
#[derive(Debug, Deserialize)]
struct FqdnForm {
    fqdn: String,
}

/// `POST /access/v1/fqdn`.
async fn fqdn(State(state): State<AccessState>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(user) = user_of(&state, &headers).await else {
        return unauthorized();
    };
    let Ok(form) = crate::json::from_object::<FqdnForm>(&body) else {
        return json_response(
            StatusCode::BAD_REQUEST,
            json!({"error": "expected {\"fqdn\": \"host.example\"}", "reason": "bad_request"}),
        );
    };
    match state.s2c.register_fqdn(&user, &form.fqdn) {
        Ok(()) => json_response(
            StatusCode::OK,
            json!({"fqdn": form.fqdn.trim_end_matches('.').to_ascii_lowercase()}),
        ),
        Err(message) => json_response(
            StatusCode::BAD_REQUEST,
            json!({"error": message, "reason": "bad_fqdn"}),
        ),
    }
}

/// `POST /access/v1/disconnect`.
async fn disconnect(State(state): State<AccessState>, headers: HeaderMap) -> Response {
    let Some(user) = user_of(&state, &headers).await else {
        return unauthorized();
    };
    match state.s2c.disconnect(&user, SystemTime::now()).await {
        Ok(released) => json_response(StatusCode::OK, json!({"released": released.is_some()})),
        Err(error) => json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": crate::error_chain(&error), "reason": "store"}),
        ),
    }
}

/// `GET /access/v1/resolve?name=`.
async fn resolve(
    State(state): State<AccessState>,
    Extension(client): Extension<WebClient>,
    uri: Uri,
) -> Response {
    let name = form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .find(|(key, _)| key == "name")
        .map(|(_, value)| value.into_owned())
        .unwrap_or_default();
    let allowed = client
        .peer
        .is_some_and(|peer| state.s2c.may_resolve(peer.ip()));
    if !allowed {
        return json_response(
            StatusCode::FORBIDDEN,
            json!({"error": "only servers of a server-to-client app may resolve", "reason": "forbidden"}),
        );
    }
    match state.s2c.resolve(&name) {
        Some(iip) => json_response(
            StatusCode::OK,
            json!({"name": name, "iip": iip.to_string()}),
        ),
        None => json_response(
            StatusCode::NOT_FOUND,
            json!({"error": "no connected client registered this name", "reason": "nxdomain"}),
        ),
    }
}

/// The control stream's body: the first line, then events and keep-alives.
struct ControlBody {
    first: Option<Bytes>,
    events: mpsc::Receiver<ClientEvent>,
    keepalive: tokio::time::Interval,
    _guard: Detach,
}

impl hyper::body::Body for ControlBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Some(first) = self.first.take() {
            return Poll::Ready(Some(Ok(Frame::data(first))));
        }
        match self.events.poll_recv(cx) {
            Poll::Ready(Some(event)) => {
                let mut line = serde_json::to_vec(&event).unwrap_or_default();
                line.push(b'\n');
                return Poll::Ready(Some(Ok(Frame::data(Bytes::from(line)))));
            }
            // Replaced by a newer control connection: end this one.
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => {}
        }
        match self.keepalive.poll_tick(cx) {
            Poll::Ready(_) => Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"{}\n"))))),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Detaches the control connection when its response is dropped (the
/// client went away) and, unless the client comes back within the grace
/// period, releases the IIP.
struct Detach {
    s2c: ServerToClient,
    user: String,
    id: u64,
}

impl Drop for Detach {
    fn drop(&mut self) {
        if !self.s2c.detach_client(&self.user, self.id) {
            return;
        }
        tracing::info!(user = %self.user, "s2c_client_detached");
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let s2c = self.s2c.clone();
        let user = std::mem::take(&mut self.user);
        runtime.spawn(async move {
            tokio::time::sleep(s2c.client_grace()).await;
            if s2c.client_attached(&user) {
                return;
            }
            match s2c.disconnect(&user, SystemTime::now()).await {
                Ok(Some(lease)) => {
                    tracing::info!(user, iip = %lease.iip, "s2c_client_lost");
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(user, error = %crate::error_chain(&error), "s2c_release_failed");
                }
            }
        });
    }
}
