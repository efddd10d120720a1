//! The REST API `/api/v1` on the internal listener (docs/API.md): JSON in
//! and out, an OpenAPI 3.1 document generated from these handlers at
//! `GET /api/v1/openapi.json`, bearer tokens with a role, and an audit log
//! of every change.
//!
//! - [`token`]: API tokens (`gh_…`, stored as SHA-256) and [`token::Role`];
//! - [`audit`]: the audit log (table `audit_log`, event `api_change`);
//! - [`overlay`]: configuration sections the API edits
//!   ([`overlay::SectionResource`]) and the running configuration;
//! - [`sections`]: delivery groups, desktops, resources, assignments, STA
//!   servers;
//! - [`ops`]: sessions (kill), workers, listeners, OTP devices, reload,
//!   tokens, audit;
//! - [`error`]: the error body `{"code", "message", "field"}`;
//! - [`cli`]: `gatehouse api-token create|list|revoke`;
//! - [`fuzz`]: the fuzz entry point of the request parsing.
//!
//! Every route but the OpenAPI document needs `Authorization: Bearer
//! TOKEN`. A read-only token may only GET; its writes are refused with 403
//! `forbidden_role` and audited. Refused writes of admin tokens are
//! audited with their error code as the outcome.

pub mod audit;
pub mod cli;
pub mod error;
pub mod ops;
pub mod overlay;
pub mod sections;
pub mod token;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{Method, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use utoipa::OpenApi;

pub use error::{ApiError, ErrorBody};

use crate::broker::Broker;
use crate::reload::Reloader;
use crate::sessions::SessionTable;
use crate::store::Store;
use audit::{AuditLog, Change};
use overlay::LiveConfig;
use token::{Role, Tokens};

/// The prefix of every route.
pub const PREFIX: &str = "/api/v1";

/// The path of the OpenAPI document (no token needed).
pub const OPENAPI_PATH: &str = "/api/v1/openapi.json";

/// A reloader shared by SIGHUP and `POST /api/v1/reload`.
pub type SharedReloader = Arc<parking_lot::Mutex<Reloader>>;

/// The API's shared state; cheap to clone.
#[derive(Debug, Clone)]
pub struct Api(Arc<Inner>);

/// What the handlers reach through [`Api`].
#[derive(Debug)]
pub struct Inner {
    /// The tokens.
    pub tokens: Tokens,
    /// The audit log.
    pub audit: AuditLog,
    /// The store.
    pub store: Store,
    /// The session table.
    pub sessions: Arc<SessionTable>,
    /// The broker.
    pub broker: Broker,
    /// The running configuration.
    pub live: LiveConfig,
    /// The bound internal listener (set once bound).
    pub admin_addr: std::sync::OnceLock<SocketAddr>,
    /// The bound gateway listener (set once the cores run in this process).
    pub gateway_addr: std::sync::OnceLock<SocketAddr>,
    /// Set once the gateway runs (`None`: reload unavailable).
    /// Where users' OTP devices live (the login flow's: the store, or the
    /// users' LDAP attribute); `None`: the store.
    pub devices: Option<crate::login::devices::UserDevices>,
    pub reloader: parking_lot::Mutex<Option<SharedReloader>>,
}

impl std::ops::Deref for Api {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl Api {
    /// The API over these parts.
    pub fn new(inner: Inner) -> Self {
        Self(Arc::new(inner))
    }

    /// Lets `POST /api/v1/reload` use `reloader`.
    pub fn set_reloader(&self, reloader: SharedReloader) {
        *self.reloader.lock() = Some(reloader);
    }

    /// Records a successful change (see [`AuditLog::record`]); a store
    /// failure is logged there and does not undo the change.
    pub async fn audit_ok(
        &self,
        caller: &Caller,
        action: &str,
        resource: &str,
        name: &str,
        before: Option<serde_json::Value>,
        after: Option<serde_json::Value>,
    ) {
        let _ = self
            .audit
            .record(Change {
                who: &caller.name,
                action,
                resource,
                name,
                before,
                after,
                outcome: "ok",
            })
            .await;
    }
}

/// `value` as JSON for the audit log.
pub fn json<T: Serialize>(value: &T) -> Option<serde_json::Value> {
    serde_json::to_value(value).ok()
}

/// Who is calling: the token's name and role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The token's name.
    pub name: String,
    /// Its role.
    pub role: Role,
}

impl Caller {
    /// Refuses a read-only caller.
    ///
    /// Errors: [`ApiError::forbidden_role`].
    pub fn require_admin(&self) -> Result<(), ApiError> {
        match self.role {
            Role::Admin => Ok(()),
            Role::ReadOnly => Err(ApiError::forbidden_role()),
        }
    }
}

/// The OpenAPI document of the API.
#[derive(Debug, OpenApi)]
#[openapi(
    info(title = "Gatehouse API", version = "1", description = "The Gatehouse control plane's REST API (docs/API.md)."),
    paths(
        ops::list_sessions, ops::get_session, ops::kill_session,
        ops::list_workers, ops::get_worker, ops::forget_worker,
        ops::list_listeners,
        ops::list_first_use, ops::undo_first_use,
        ops::list_devices, ops::remove_device,
        ops::reload,
        ops::list_tokens, ops::create_token, ops::revoke_token,
        ops::list_audit,
        sections::groups::list, sections::groups::get, sections::groups::create,
        sections::groups::replace, sections::groups::delete,
        sections::desktops::list, sections::desktops::get, sections::desktops::create,
        sections::desktops::replace, sections::desktops::delete,
        sections::resources::list, sections::resources::get, sections::resources::create,
        sections::resources::replace, sections::resources::delete,
        sections::assignments::list, sections::assignments::get, sections::assignments::create,
        sections::assignments::replace, sections::assignments::delete,
        sections::sta_servers::list, sections::sta_servers::get, sections::sta_servers::create,
        sections::sta_servers::replace, sections::sta_servers::delete,
        sections::policies::list, sections::policies::get, sections::policies::create,
        sections::policies::replace, sections::policies::delete,
        sections::s2c_apps::list, sections::s2c_apps::get, sections::s2c_apps::create,
        sections::s2c_apps::replace, sections::s2c_apps::delete,
        sections::iip_pools::list, sections::iip_pools::get, sections::iip_pools::create,
        sections::iip_pools::replace, sections::iip_pools::delete,
        ops::list_pool_status, ops::list_leases,
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
)]
pub struct ApiDoc;

/// Adds the bearer scheme to the document.
#[derive(Debug)]
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The document as JSON.
pub fn openapi_json() -> String {
    ApiDoc::openapi()
        .to_json()
        .unwrap_or_else(|_| "{}".to_owned())
}

/// The API's routes (full paths under [`PREFIX`]) over `api`, behind the
/// token check. Merge it into the internal listener's router.
pub fn router(api: Api) -> Router {
    let routes = Router::new()
        .route("/api/v1/sessions", get(ops::list_sessions))
        .route(
            "/api/v1/sessions/{id}",
            get(ops::get_session).delete(ops::kill_session),
        )
        .route("/api/v1/workers", get(ops::list_workers))
        .route(
            "/api/v1/workers/{name}",
            get(ops::get_worker).delete(ops::forget_worker),
        )
        .route("/api/v1/listeners", get(ops::list_listeners))
        .route("/api/v1/first-use-assignments", get(ops::list_first_use))
        .route(
            "/api/v1/first-use-assignments/{desktop}/{user}",
            axum::routing::delete(ops::undo_first_use),
        )
        .route("/api/v1/users/{user}/otp-devices", get(ops::list_devices))
        .route(
            "/api/v1/users/{user}/otp-devices/{device}",
            axum::routing::delete(ops::remove_device),
        )
        .route("/api/v1/reload", axum::routing::post(ops::reload))
        .route(
            "/api/v1/tokens",
            get(ops::list_tokens).post(ops::create_token),
        )
        .route(
            "/api/v1/tokens/{name}",
            axum::routing::delete(ops::revoke_token),
        )
        .route("/api/v1/audit", get(ops::list_audit))
        .merge(sections::groups::routes())
        .merge(sections::desktops::routes())
        .merge(sections::resources::routes())
        .merge(sections::assignments::routes())
        .merge(sections::sta_servers::routes())
        .merge(sections::policies::routes())
        .merge(sections::s2c_apps::routes())
        .merge(sections::iip_pools::routes())
        .route("/api/v1/iip-pool-status", get(ops::list_pool_status))
        .route("/api/v1/iip-leases", get(ops::list_leases))
        .route_layer(middleware::from_fn_with_state(api.clone(), authorize))
        .with_state(api);
    let document = openapi_json();
    routes.route(
        OPENAPI_PATH,
        get(move || async move { ([(header::CONTENT_TYPE, "application/json")], document) }),
    )
}

/// The token check, the role check for writes, and the audit of refused
/// writes.
async fn authorize(State(api): State<Api>, mut request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .map(str::to_owned);
    let info = match presented {
        Some(token) => match api.tokens.authenticate(&token).await {
            Ok(info) => info,
            Err(error) => return ApiError::from(error).into_response(),
        },
        None => None,
    };
    let Some(info) = info else {
        tracing::info!(path = request.uri().path(), "api_unauthorized");
        return ApiError::unauthorized().into_response();
    };
    let write = !matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    let caller = Caller {
        name: info.name,
        role: info.role,
    };
    let (action, resource, name) = describe(request.method(), request.uri().path());
    if write && caller.role == Role::ReadOnly {
        let refused = ApiError::forbidden_role();
        refuse(&api, &caller, action, &resource, &name, refused.code).await;
        return refused.into_response();
    }
    request.extensions_mut().insert(caller.clone());
    let response = next.run(request).await;
    if write && !response.status().is_success() {
        let code = response
            .extensions()
            .get::<error::ErrorCode>()
            .map_or("refused", |c| c.0);
        refuse(&api, &caller, action, &resource, &name, code).await;
    }
    response
}

async fn refuse(api: &Api, caller: &Caller, action: &str, resource: &str, name: &str, code: &str) {
    let _ = api
        .audit
        .record(Change {
            who: &caller.name,
            action,
            resource,
            name,
            before: None,
            after: None,
            outcome: code,
        })
        .await;
}

/// The audit action, resource and key of a write to `path`.
fn describe(method: &Method, path: &str) -> (&'static str, String, String) {
    let rest = path.strip_prefix("/api/v1/").unwrap_or(path);
    let (resource, name) = match rest.split_once('/') {
        Some((resource, name)) => (resource.to_owned(), name.to_owned()),
        None => (rest.to_owned(), String::new()),
    };
    let action = match (method, resource.as_str()) {
        (&Method::POST, "reload") => "reload",
        (&Method::DELETE, "sessions") => "kill",
        (&Method::DELETE, "tokens") => "revoke",
        (&Method::POST, _) => "create",
        (&Method::PUT | &Method::PATCH, _) => "update",
        (&Method::DELETE, _) => "delete",
        _ => "other",
    };
    // Bounded: the path comes from the network.
    let clip = |mut s: String| {
        if let Some((end, _)) = s.char_indices().nth(200) {
            s.truncate(end);
        }
        s
    };
    (action, clip(resource), clip(name))
}

/// Fuzz entry points: each takes arbitrary bytes and must not panic. The
/// libFuzzer targets call these.
pub mod fuzz {
    use super::sections::{StaServer, parse_body};
    use super::*;
    use crate::broker::catalog::{AssignmentConfig, DesktopConfig, GroupConfig, ResourceConfig};

    /// Parses `data` as every request body the API takes, and as a path
    /// (audit description, session id, token name, role); whatever parses
    /// as an item encodes and parses back to the same item.
    pub fn request(data: &[u8]) {
        round_trip::<GroupConfig>(data);
        round_trip::<DesktopConfig>(data);
        round_trip::<ResourceConfig>(data);
        round_trip::<AssignmentConfig>(data);
        round_trip::<StaServer>(data);
        round_trip::<ops::NewToken>(data);
        let Ok(text) = std::str::from_utf8(data) else {
            return;
        };
        for method in [Method::GET, Method::POST, Method::PUT, Method::DELETE] {
            let (_, resource, name) = describe(&method, text);
            assert!(resource.chars().count() <= 200 && name.chars().count() <= 200);
        }
        let _ = ops::fuzz_session_id(text);
        let _ = token::TokenName::new(text);
        let _ = Role::parse(text);
    }

    fn round_trip<T>(data: &[u8])
    where
        T: serde::de::DeserializeOwned + Serialize + PartialEq + std::fmt::Debug,
    {
        if let Ok(item) = parse_body::<T>(data) {
            let text = serde_json::to_vec(&item).unwrap_or_default();
            let again = parse_body::<T>(&text).ok();
            assert_eq!(again.as_ref(), Some(&item), "body round trip");
        }
    }
}

/// Now, Unix seconds.
pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A temporary directory removed on drop (tests).
#[cfg(test)]
#[derive(Debug)]
pub(crate) struct TestDir(std::path::PathBuf);

#[cfg(test)]
impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A fresh store in a temporary directory named after `name`; the
/// directory goes when the [`TestDir`] drops.
#[cfg(test)]
pub(crate) async fn test_store(name: &str) -> (Store, TestDir) {
    let dir =
        std::env::temp_dir().join(format!("gatehouse-api-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    (Store::open(&dir).await.unwrap(), TestDir(dir))
}

#[cfg(test)]
mod tests;
