//! The internal HTTP listener (`[admin] listen`, `127.0.0.1:8080` by
//! default): `GET /healthz`, the STA endpoint `POST /scripts/ctxsta.dll`
//! (docs/STA.md), `GET /sessions` (the control plane's view of the open
//! sessions, JSON), and the broker's routes: worker registration
//! (`/broker/v1/*`, docs/REGISTRATION.md) and the XML broker
//! `POST /scripts/wpnbr.dll`. `GET /metrics` (Prometheus text,
//! [`crate::metrics`]) and the REST API `/api/v1` ([`crate::api`]) are
//! merged in by the appliance.
//!
//! It is plain HTTP/1.1 and meant for loopback or a management network: the
//! STA endpoint issues tickets to whoever asks.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;

use crate::sessions::SessionTable;
use crate::sta::http::{self as sta_http, SharedSta};

/// The path of the health check.
pub const HEALTHZ_PATH: &str = "/healthz";

/// The path of the session list.
pub const SESSIONS_PATH: &str = "/sessions";

/// The router of the internal listener for `sta`.
///
/// `GET /healthz` answers `200 ok` while the control plane runs; the STA
/// endpoint behaves as [`sta_http::router`] says.
pub fn router(sta: SharedSta) -> Router {
    sta_http::router(sta).route(HEALTHZ_PATH, get(healthz))
}

/// Serves `router` on `listener` until `shutdown` completes, then lets the
/// requests in flight finish.
///
/// Errors: accepting failed in a way axum does not retry.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

/// The router of `GET /sessions`: the open sessions of `sessions` as one
/// JSON object, `{"open": N, "sessions": [{"session": "0x…", "core": 0,
/// "client": "IP:PORT", "worker": "IP:PORT", "opened_at_ms": UNIX_MS}]}`
/// (in no particular order). Merge it into [`router`]'s.
pub fn sessions_router(sessions: Arc<SessionTable>) -> Router {
    Router::new()
        .route(SESSIONS_PATH, get(list_sessions))
        .with_state(sessions)
}

/// The router of the broker's routes (see [`crate::broker::http::router`]).
/// Merge it into [`router`]'s.
pub fn broker_router(broker: crate::broker::Broker) -> Router {
    crate::broker::http::router(broker)
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn list_sessions(State(sessions): State<Arc<SessionTable>>) -> impl IntoResponse {
    let open = sessions.open_sessions();
    let list: Vec<serde_json::Value> = open
        .iter()
        .map(|record| {
            let opened_at_ms = record
                .opened_at
                .duration_since(UNIX_EPOCH)
                .map_or(0, |since| {
                    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
                });
            serde_json::json!({
                "session": record.session.to_string(),
                "core": record.core.0,
                "client": record.client.0.to_string(),
                "worker": record.worker.0.to_string(),
                "opened_at_ms": opened_at_ms,
            })
        })
        .collect();
    let body = serde_json::json!({ "open": list.len(), "sessions": list });
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
}
