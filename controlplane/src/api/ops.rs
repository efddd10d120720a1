//! The resources that are not configuration sections: sessions (list,
//! kill), workers (the broker's registry; forget), listeners (read),
//! users' OTP devices (list, remove), reload, tokens and the audit log.

use std::time::UNIX_EPOCH;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use gatehouse_channel::{KillSession, SessionId, ToCore};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::audit::AuditEntry;
use super::error::ErrorBody;
use super::sections::parse_body;
use super::token::{Role, TokenInfo, TokenName};
use super::{Api, ApiError, Caller};
use crate::auth::names::{DeviceName, UserName};
use crate::broker::registry::Unregister;
use crate::login::devices::UserDevices;
use crate::sessions::SessionRecord;

/// An open session as the cores reported it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Session {
    /// The session id, `0x` and 16 hex digits.
    pub id: String,
    /// The data-plane core that relays it.
    pub core: u16,
    /// The client, `IP:PORT`.
    pub client: String,
    /// The worker, `IP:PORT`.
    pub worker: String,
    /// When it opened, Unix milliseconds.
    pub opened_at_ms: u64,
}

impl From<&SessionRecord> for Session {
    fn from(record: &SessionRecord) -> Self {
        Self {
            id: record.session.to_string(),
            core: record.core.0,
            client: record.client.0.to_string(),
            worker: record.worker.0.to_string(),
            opened_at_ms: record
                .opened_at
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        }
    }
}

/// Parses a session id as listed (`0x…` hex, or decimal).
fn session_id(text: &str) -> Option<SessionId> {
    let parsed = match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    };
    parsed.map(SessionId)
}

/// [`session_id`] for the fuzz target.
#[doc(hidden)]
pub fn fuzz_session_id(text: &str) -> Option<u64> {
    session_id(text).map(|id| id.0)
}

/// The open sessions.
#[utoipa::path(get, path = "/api/v1/sessions", tag = "sessions",
    responses((status = 200, body = Vec<Session>), (status = 401, body = ErrorBody)))]
pub async fn list_sessions(State(api): State<Api>) -> Json<Vec<Session>> {
    let mut list: Vec<Session> = api
        .sessions
        .open_sessions()
        .iter()
        .map(Session::from)
        .collect();
    list.sort_by(|a, b| a.id.cmp(&b.id));
    Json(list)
}

/// One open session.
#[utoipa::path(get, path = "/api/v1/sessions/{id}", tag = "sessions",
    params(("id" = String, Path, description = "The session id (0x…)")),
    responses((status = 200, body = Session), (status = 404, body = ErrorBody)))]
pub async fn get_session(
    State(api): State<Api>,
    Path(id): Path<String>,
) -> Result<Json<Session>, ApiError> {
    session_id(&id)
        .and_then(|session| api.sessions.get(session))
        .map(|record| Json(Session::from(&record)))
        .ok_or_else(|| ApiError::not_found("session", &id))
}

/// Kill a session (admin): its core cuts the relay; answers the session
/// as it was.
#[utoipa::path(delete, path = "/api/v1/sessions/{id}", tag = "sessions",
    params(("id" = String, Path, description = "The session id (0x…)")),
    responses((status = 200, body = Session), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn kill_session(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<Session>, ApiError> {
    let record = session_id(&id)
        .and_then(|session| api.sessions.get(session))
        .ok_or_else(|| ApiError::not_found("session", &id))?;
    let sent = crate::metrics::global().hub().send_to_core(
        record.core,
        ToCore::KillSession(KillSession {
            session: record.session,
        }),
    );
    if !sent {
        return Err(ApiError::unavailable(format!(
            "core {} has no channel task",
            record.core.0
        )));
    }
    let session = Session::from(&record);
    api.audit_ok(
        &caller,
        "kill",
        "sessions",
        &session.id,
        super::json(&session),
        None,
    )
    .await;
    Ok(Json(session))
}

/// A worker in the broker's registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Worker {
    /// Its registration name.
    pub worker: String,
    /// The protocol version it registered with.
    pub version: u32,
    /// Its ICA address.
    pub ica: String,
    /// Its CGP address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgp: Option<String>,
    /// Whether it said it is ready.
    pub ready: bool,
    /// Registered, ready and heard of within the heartbeat timeout.
    pub available: bool,
    /// Sessions it reported.
    pub sessions: u32,
    /// Its load index (0 to 10000).
    pub load: u32,
    /// Most sessions it takes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_sessions: Option<u32>,
}

fn workers(api: &Api) -> Vec<Worker> {
    let json = api.broker.workers_json();
    serde_json::from_value::<Vec<Worker>>(json["workers"].clone()).unwrap_or_default()
}

/// The registered workers.
#[utoipa::path(get, path = "/api/v1/workers", tag = "workers",
    responses((status = 200, body = Vec<Worker>), (status = 401, body = ErrorBody)))]
pub async fn list_workers(State(api): State<Api>) -> Json<Vec<Worker>> {
    Json(workers(&api))
}

/// One registered worker.
#[utoipa::path(get, path = "/api/v1/workers/{name}", tag = "workers",
    params(("name" = String, Path, description = "The worker's name")),
    responses((status = 200, body = Worker), (status = 404, body = ErrorBody)))]
pub async fn get_worker(
    State(api): State<Api>,
    Path(name): Path<String>,
) -> Result<Json<Worker>, ApiError> {
    workers(&api)
        .into_iter()
        .find(|w| w.worker == name)
        .map(Json)
        .ok_or_else(|| ApiError::not_found("worker", &name))
}

/// Forget a worker (admin): it is unavailable until it registers again.
#[utoipa::path(delete, path = "/api/v1/workers/{name}", tag = "workers",
    params(("name" = String, Path, description = "The worker's name")),
    responses((status = 200, body = Worker), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn forget_worker(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Json<Worker>, ApiError> {
    let before = workers(&api)
        .into_iter()
        .find(|w| w.worker == name)
        .ok_or_else(|| ApiError::not_found("worker", &name))?;
    api.broker
        .unregister(&Unregister {
            version: before.version,
            worker: name.clone(),
        })
        .map_err(|error| ApiError::validation("name", error.to_string()))?;
    api.audit_ok(
        &caller,
        "delete",
        "workers",
        &name,
        super::json(&before),
        None,
    )
    .await;
    Ok(Json(before))
}

/// A permanent assignment the broker made on first use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FirstUseAssignment {
    /// The desktop (its worker's name).
    pub desktop: String,
    /// Its users, lowercase.
    pub users: Vec<String>,
}

/// The assignments the broker made on first use (the configuration's own
/// are `/assignments`).
#[utoipa::path(get, path = "/api/v1/first-use-assignments", tag = "assignments",
    responses((status = 200, body = Vec<FirstUseAssignment>), (status = 401, body = ErrorBody)))]
pub async fn list_first_use(State(api): State<Api>) -> Json<Vec<FirstUseAssignment>> {
    Json(
        api.broker
            .assigned()
            .into_iter()
            .map(|(desktop, users)| FirstUseAssignment {
                desktop: desktop.to_string(),
                users,
            })
            .collect(),
    )
}

/// Undo a first-use assignment of a desktop to a user (admin); the user's
/// next launch brokers afresh.
#[utoipa::path(delete, path = "/api/v1/first-use-assignments/{desktop}/{user}", tag = "assignments",
    params(("desktop" = String, Path, description = "The desktop (worker name)"),
        ("user" = String, Path, description = "The user")),
    responses((status = 200, body = FirstUseAssignment), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn undo_first_use(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    Path((desktop, user)): Path<(String, String)>,
) -> Result<Json<FirstUseAssignment>, ApiError> {
    let key = format!("{desktop}/{user}");
    let name = crate::broker::registry::WorkerName::new(&desktop)
        .map_err(|_| ApiError::not_found("first-use assignment", &key))?;
    if !api.broker.unassign(&name, &user).await? {
        return Err(ApiError::not_found("first-use assignment", &key));
    }
    let before = FirstUseAssignment {
        desktop,
        users: vec![user.to_ascii_lowercase()],
    };
    api.audit_ok(
        &caller,
        "delete",
        "first-use-assignments",
        &key,
        super::json(&before),
        None,
    )
    .await;
    Ok(Json(before))
}

/// An IIP pool's size against the users who may draw from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PoolState {
    /// The pool.
    pub name: String,
    /// Its resource location.
    pub location: String,
    /// Addresses it can lease.
    pub capacity: u64,
    /// Users who may draw from it (the users it names, or every local user
    /// when it names none; directory group members are not counted).
    pub users: u64,
    /// Addresses bound to a user (active or sticky).
    pub leased: u64,
    /// Fewer than three addresses per user (also logged at start as
    /// `s2c_pool_undersized`).
    pub undersized: bool,
}

/// Every IIP pool's capacity, users, leases and the undersized warning.
#[utoipa::path(get, path = "/api/v1/iip-pool-status", tag = "server-to-client",
    responses((status = 200, body = Vec<PoolState>), (status = 401, body = ErrorBody)))]
pub async fn list_pool_status(State(api): State<Api>) -> Result<Json<Vec<PoolState>>, ApiError> {
    let Some(s2c) = api.live.s2c() else {
        return Ok(Json(Vec::new()));
    };
    let local_users = api.store.list_users().await?.len() as u64;
    Ok(Json(
        s2c.status(local_users, std::time::SystemTime::now())
            .into_iter()
            .map(|p| PoolState {
                name: p.name,
                location: p.location,
                capacity: p.capacity,
                users: p.users,
                leased: p.leased,
                undersized: p.undersized,
            })
            .collect(),
    ))
}

/// A client IP lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LeaseView {
    /// The IIP.
    pub iip: String,
    /// Its pool.
    pub pool: String,
    /// Its user.
    pub user: String,
    /// When it was leased (ms since the epoch).
    pub leased_at_ms: u64,
    /// When it was released (ms since the epoch); absent while the user is
    /// connected.
    pub released_at_ms: Option<u64>,
    /// Whether the user is connected with it.
    pub active: bool,
}

/// Every lease (active, or released and still held for stickiness).
#[utoipa::path(get, path = "/api/v1/iip-leases", tag = "server-to-client",
    responses((status = 200, body = Vec<LeaseView>), (status = 401, body = ErrorBody)))]
pub async fn list_leases(State(api): State<Api>) -> Json<Vec<LeaseView>> {
    let ms = |at: std::time::SystemTime| {
        at.duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    };
    Json(
        api.live
            .s2c()
            .map(|s2c| s2c.leases())
            .unwrap_or_default()
            .into_iter()
            .map(|lease| LeaseView {
                iip: lease.iip.to_string(),
                active: lease.is_active(),
                pool: lease.pool,
                user: lease.user,
                leased_at_ms: ms(lease.leased_at),
                released_at_ms: lease.released_at.map(ms),
            })
            .collect(),
    )
}

/// A listener of the gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Listener {
    /// `gateway` or `admin`.
    pub name: String,
    /// The address, `IP:PORT`: as bound, or as configured when this
    /// process does not run it (a split control plane's gateway).
    pub address: String,
    /// `tls`, `plaintext` or `http` (the internal listener).
    pub transport: String,
}

/// The listeners (read only).
#[utoipa::path(get, path = "/api/v1/listeners", tag = "listeners",
    responses((status = 200, body = Vec<Listener>), (status = 401, body = ErrorBody)))]
pub async fn list_listeners(State(api): State<Api>) -> Json<Vec<Listener>> {
    let config = api.live.snapshot();
    Json(vec![
        Listener {
            name: "gateway".to_owned(),
            address: api
                .gateway_addr
                .get()
                .copied()
                .unwrap_or(config.gateway.listen)
                .to_string(),
            transport: if config.gateway.plaintext {
                "plaintext"
            } else {
                "tls"
            }
            .to_owned(),
        },
        Listener {
            name: "admin".to_owned(),
            address: api
                .admin_addr
                .get()
                .copied()
                .unwrap_or(config.admin.listen)
                .to_string(),
            transport: "http".to_owned(),
        },
    ])
}

/// A user's OTP device (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OtpDevice {
    /// The device's name.
    pub name: String,
    /// When it was added, Unix seconds (absent for devices kept in the
    /// user's LDAP entry, which records no time).
    pub created_at: Option<u64>,
}

fn user_name(text: &str) -> Result<UserName, ApiError> {
    UserName::new(text).map_err(|e| ApiError::validation("user", e.to_string()))
}

/// A local user's OTP devices.
#[utoipa::path(get, path = "/api/v1/users/{user}/otp-devices", tag = "otp-devices",
    params(("user" = String, Path, description = "The user's login name")),
    responses((status = 200, body = Vec<OtpDevice>), (status = 400, body = ErrorBody)))]
pub async fn list_devices(
    State(api): State<Api>,
    Path(user): Path<String>,
) -> Result<Json<Vec<OtpDevice>>, ApiError> {
    let user = user_name(&user)?;
    if let Some(devices @ UserDevices::Ldap { .. }) = &api.devices {
        // The devices live in the user's directory entry.
        let dn = ldap_entry(devices, &user).await?;
        let names = devices.list(&user, &dn).await.map_err(devices_error)?;
        return Ok(Json(
            names
                .into_iter()
                .map(|name| OtpDevice {
                    name: name.to_string(),
                    created_at: None,
                })
                .collect(),
        ));
    }
    let devices = api.store.list_devices(&user).await?;
    Ok(Json(
        devices
            .iter()
            .map(|d| OtpDevice {
                name: d.name.to_string(),
                created_at: Some(
                    d.created_at
                        .duration_since(UNIX_EPOCH)
                        .map_or(0, |t| t.as_secs()),
                ),
            })
            .collect(),
    ))
}

/// The directory entry of `user` (404 when the directory does not know
/// the user).
async fn ldap_entry(devices: &UserDevices, user: &UserName) -> Result<String, ApiError> {
    devices
        .entry_of(user)
        .await
        .map_err(devices_error)?
        .ok_or_else(|| ApiError::not_found("user", user.as_str()))
}

/// A device store failure as an API error: an unknown device is 404, a
/// directory that cannot be asked 503.
fn devices_error(error: crate::login::devices::DevicesError) -> ApiError {
    use crate::auth::devices::OtpError;
    use crate::login::devices::DevicesError;
    match error {
        DevicesError::Otp(OtpError::NotFound(device)) => {
            ApiError::not_found("otp device", device.as_str())
        }
        other => ApiError::unavailable(crate::error_chain(&other)),
    }
}

/// Remove a user's OTP device (admin).
#[utoipa::path(delete, path = "/api/v1/users/{user}/otp-devices/{device}", tag = "otp-devices",
    params(("user" = String, Path, description = "The user's login name"),
        ("device" = String, Path, description = "The device's name")),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn remove_device(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    Path((user, device)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let user = user_name(&user)?;
    let device =
        DeviceName::new(&device).map_err(|e| ApiError::validation("device", e.to_string()))?;
    match &api.devices {
        Some(devices @ UserDevices::Ldap { .. }) => {
            let dn = ldap_entry(devices, &user).await?;
            devices
                .remove(&user, &dn, &device)
                .await
                .map_err(devices_error)?;
        }
        _ => api.store.delete_device(&user, &device).await?,
    }
    let key = format!("{user}/{device}");
    let before = serde_json::json!({"user": user.as_str(), "device": device.as_str()});
    api.audit_ok(
        &caller,
        "delete",
        "otp-devices",
        &key,
        super::json(&before),
        None,
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}

/// What a reload applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Reloaded {
    /// The gateway certificate was read again and replaced.
    pub certificate_replaced: bool,
    /// The remote STA map was replaced.
    pub sta_remotes_replaced: bool,
    /// Changed keys that need a restart.
    pub restart_needed: Vec<String>,
}

/// Reload the configuration (admin), as SIGHUP does.
#[utoipa::path(post, path = "/api/v1/reload", tag = "reload",
    responses((status = 200, body = Reloaded), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn reload(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Reloaded>, ApiError> {
    let Some(reloader) = api.reloader.lock().clone() else {
        return Err(ApiError::unavailable("this process cannot reload"));
    };
    let outcome = tokio::task::spawn_blocking(move || reloader.lock().reload())
        .await
        .map_err(|_| ApiError::internal("the reload task failed"))?;
    match outcome {
        Ok(applied) => {
            let answer = Reloaded {
                certificate_replaced: applied.certificate_replaced,
                sta_remotes_replaced: applied.sta_remotes_replaced,
                restart_needed: applied
                    .restart_needed
                    .iter()
                    .map(|k| (*k).to_owned())
                    .collect(),
            };
            tracing::info!(
                certificate_replaced = answer.certificate_replaced,
                sta_remotes_replaced = answer.sta_remotes_replaced,
                restart_needed = answer.restart_needed.join(","),
                "config_reloaded"
            );
            api.audit_ok(&caller, "reload", "reload", "", None, super::json(&answer))
                .await;
            Ok(Json(answer))
        }
        Err(error) => {
            let message = crate::error_chain(&error);
            tracing::error!(error = %message, "config_reload_failed");
            Err(ApiError {
                status: StatusCode::CONFLICT,
                code: "reload_failed",
                message,
                field: None,
            })
        }
    }
}

/// A token to create.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// Its name: 1 to 64 of `A-Z a-z 0-9 . _ -`.
    pub name: String,
    /// Its role.
    pub role: Role,
}

/// A created token: the only time its secret is shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CreatedToken {
    /// The token (`gh_…`), for `Authorization: Bearer`.
    pub token: String,
    /// What is kept of it.
    #[serde(flatten)]
    pub info: TokenInfo,
}

/// The API tokens (admin).
#[utoipa::path(get, path = "/api/v1/tokens", tag = "tokens",
    responses((status = 200, body = Vec<TokenInfo>), (status = 403, body = ErrorBody)))]
pub async fn list_tokens(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Vec<TokenInfo>>, ApiError> {
    caller.require_admin()?;
    Ok(Json(api.tokens.list().await?))
}

/// Create a token (admin); the answer holds its secret, shown once.
#[utoipa::path(post, path = "/api/v1/tokens", tag = "tokens", request_body = NewToken,
    responses((status = 201, body = CreatedToken), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create_token(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    let new: NewToken = parse_body(&body)?;
    let name = TokenName::new(&new.name).map_err(|m| ApiError::validation("name", m))?;
    let (secret, info) = api.tokens.create(&name, new.role).await?;
    api.audit_ok(
        &caller,
        "create",
        "tokens",
        name.as_str(),
        None,
        super::json(&info),
    )
    .await;
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            token: secret.expose().to_owned(),
            info,
        }),
    ))
}

/// Revoke a token (admin); not the one making the request.
#[utoipa::path(delete, path = "/api/v1/tokens/{name}", tag = "tokens",
    params(("name" = String, Path, description = "The token's name")),
    responses((status = 200, body = TokenInfo), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn revoke_token(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Json<TokenInfo>, ApiError> {
    if name == caller.name {
        // An administrator does not lock themselves out by accident.
        return Err(ApiError {
            status: StatusCode::CONFLICT,
            code: "own_token",
            message: "a token cannot revoke itself: use another admin token or \
                      `gatehouse api-token revoke`"
                .to_owned(),
            field: None,
        });
    }
    let before = api
        .tokens
        .get(&name)
        .await?
        .ok_or_else(|| ApiError::not_found("token", &name))?;
    api.tokens.revoke(&name).await?;
    api.audit_ok(
        &caller,
        "revoke",
        "tokens",
        &name,
        super::json(&before),
        None,
    )
    .await;
    Ok(Json(before))
}

/// `?limit=N` of the audit log.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct AuditQuery {
    /// How many entries, newest first (1 to 1000, default 100).
    pub limit: Option<u32>,
}

/// The latest audit entries, newest first.
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", params(("limit" = Option<u32>, Query, minimum = 1, maximum = 1000,
        description = "How many entries, newest first (default 100)")),
    responses((status = 200, body = Vec<AuditEntry>), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody)))]
pub async fn list_audit(
    State(api): State<Api>,
    Query(query): Query<AuditQuery>,
) -> Result<Json<Vec<AuditEntry>>, ApiError> {
    let limit = query.limit.unwrap_or(100);
    if !(1..=super::audit::MAX_LIMIT).contains(&limit) {
        return Err(ApiError::validation("limit", "expected 1 to 1000"));
    }
    Ok(Json(api.audit.latest(limit).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_parse_as_listed_or_decimal() {
        assert_eq!(session_id("0x0000000000000010"), Some(SessionId(16)));
        assert_eq!(session_id("16"), Some(SessionId(16)));
        assert_eq!(session_id("0xzz"), None);
        assert_eq!(session_id(""), None);
    }
}
