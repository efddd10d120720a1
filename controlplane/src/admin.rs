//! The internal HTTP listener (`[admin] listen`, `127.0.0.1:8080` by
//! default): `GET /healthz` and the STA endpoint `POST /scripts/ctxsta.dll`
//! (docs/STA.md). The REST API and `/metrics` will join them here.
//!
//! It is plain HTTP/1.1 and meant for loopback or a management network: the
//! STA endpoint issues tickets to whoever asks.

use std::future::Future;
use std::io;

use axum::Router;
use axum::routing::get;
use tokio::net::TcpListener;

use crate::sta::http::{self as sta_http, SharedSta};

/// The path of the health check.
pub const HEALTHZ_PATH: &str = "/healthz";

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

async fn healthz() -> &'static str {
    "ok\n"
}
