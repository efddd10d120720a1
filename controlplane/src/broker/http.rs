//! The broker's routes on the internal listener:
//!
//! - `POST /broker/v1/register`, `POST /broker/v1/heartbeat`,
//!   `POST /broker/v1/unregister`, `GET /broker/v1/workers`,
//!   `POST /broker/v1/logon`: the registration protocol
//!   (docs/REGISTRATION.md), JSON.
//! - `POST /scripts/wpnbr.dll`: the XML broker (NFuse, [`super::nfuse`]).
//!   Every decodable or refused document gets HTTP 200 with an NFuse
//!   answer (errors travel as `<ErrorId>`); a body over the size limit
//!   gets 413.

use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::routing::{get, post};
use serde::de::DeserializeOwned;

use super::Broker;
use super::catalog::Who;
use super::nfuse::{self, Credentials, ErrorId, Request, RequestKind, Response};
use super::registry::{Heartbeat, Register, RegistryError, SUPPORTED_VERSIONS, Unregister};

/// The XML broker's path.
pub const XML_PATH: &str = "/scripts/wpnbr.dll";

/// Registration paths.
pub const REGISTER_PATH: &str = "/broker/v1/register";
/// Heartbeat path.
pub const HEARTBEAT_PATH: &str = "/broker/v1/heartbeat";
/// Unregistration path.
pub const UNREGISTER_PATH: &str = "/broker/v1/unregister";
/// Logon ticket redemption path (a worker learns who logs on).
pub const LOGON_PATH: &str = "/broker/v1/logon";
/// Worker list path.
pub const WORKERS_PATH: &str = "/broker/v1/workers";

/// Largest registration body.
pub const MAX_JSON_BYTES: usize = 16 * 1_024;

/// The content type of XML answers.
pub const XML_CONTENT_TYPE: &str = "text/xml; charset=utf-8";

/// The router of every broker route for `broker`.
pub fn router(broker: Broker) -> Router {
    Router::new()
        .route(XML_PATH, post(xml))
        .route(REGISTER_PATH, post(register))
        .route(HEARTBEAT_PATH, post(heartbeat))
        .route(UNREGISTER_PATH, post(unregister))
        .route(WORKERS_PATH, get(workers))
        .route(LOGON_PATH, post(logon))
        .layer(DefaultBodyLimit::max(nfuse::MAX_DOCUMENT_BYTES))
        .with_state(broker)
}

/// `POST /broker/v1/logon`: `{"version": 1, "worker": NAME, "ticket":
/// LOGON_TICKET}` -> 200 `{"user", "resource"}` once; 404
/// `{"error": "unknown-ticket"}` for a spent, expired, unknown or another
/// worker's ticket; 400 for a body that does not parse or a version other
/// than 1.
async fn logon(State(broker): State<Broker>, body: Bytes) -> HttpResponse {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Logon {
        version: u32,
        worker: String,
        ticket: String,
    }
    let bad = |message: String| {
        json(
            StatusCode::BAD_REQUEST,
            serde_json::json!({ "error": "bad-request", "message": message }),
        )
    };
    let request: Logon = match crate::json::from_object(&body) {
        Ok(request) => request,
        Err(error) => return bad(error.to_string()),
    };
    if request.version != 1 {
        return bad(format!(
            "unsupported version {}; this broker speaks 1",
            request.version
        ));
    }
    let Ok(worker) = super::registry::WorkerName::new(&request.worker) else {
        return bad("invalid worker name".to_owned());
    };
    match broker.redeem_logon(&worker, &request.ticket) {
        Some(grant) => json(
            StatusCode::OK,
            serde_json::json!({ "user": grant.user, "resource": grant.resource }),
        ),
        None => json(
            StatusCode::NOT_FOUND,
            serde_json::json!({ "error": "unknown-ticket" }),
        ),
    }
}

async fn xml(State(broker): State<Broker>, body: Bytes) -> HttpResponse {
    let answer = answer(&broker, &body).await;
    ([(header::CONTENT_TYPE, XML_CONTENT_TYPE)], answer).into_response()
}

/// Answers one NFuse request body: the whole answer document. Logs one
/// `xml_request` event per request (kind, outcome; never a password).
pub async fn answer(broker: &Broker, body: &[u8]) -> String {
    let started = Instant::now();
    let envelope = match nfuse::decode(body) {
        Ok(envelope) => envelope,
        Err(refusal) => {
            tracing::info!(
                kind = refusal.kind.map_or("unknown", RequestKind::as_str),
                error = %refusal.error,
                outcome = refusal.error.error_id().as_str(),
                "xml_request"
            );
            let version = refusal
                .version
                .map_or_else(|| nfuse::PROTOCOL_VERSION.to_owned(), |v| v.to_string());
            return refusal.response().encode(&version);
        }
    };
    let kind = envelope.request.kind();
    let response = match respond(broker, envelope.request).await {
        Ok(response) => response,
        Err(id) => Response::Error {
            kind: Some(kind),
            id,
        },
    };
    let outcome = match &response {
        Response::Error { id, .. } => id.as_str(),
        _ => "ok",
    };
    tracing::info!(
        kind = kind.as_str(),
        version = %envelope.version,
        outcome,
        elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        "xml_request"
    );
    response.encode(&envelope.version.to_string())
}

async fn who(
    broker: &Broker,
    credentials: Option<Credentials>,
    client: Option<std::net::IpAddr>,
) -> Result<Who, ErrorId> {
    let credentials = credentials.ok_or(ErrorId::FailedCredentials)?;
    broker
        .authenticate(&credentials.user, credentials.password.expose(), client)
        .await
}

async fn respond(broker: &Broker, request: Request) -> Result<Response, ErrorId> {
    Ok(match request {
        Request::Capabilities => Response::Capabilities,
        Request::ServerFarmData => Response::ServerFarmData {
            farm: broker.farm_name(),
        },
        Request::ValidateCredentials { credentials } => {
            who(broker, Some(credentials), None).await?;
            Response::ValidateCredentials
        }
        Request::AppData {
            credentials,
            client,
            server_types,
            client_types,
        } => {
            let who = who(broker, credentials, client.address).await?;
            let served = |wanted: &[String], ours: &[&str]| {
                wanted.is_empty()
                    || wanted
                        .iter()
                        .any(|w| ours.iter().any(|o| w.eq_ignore_ascii_case(o)))
            };
            if served(&server_types, &["all", "win32"]) && served(&client_types, &["all", "ica30"])
            {
                Response::AppData(broker.resources(&who))
            } else {
                Response::AppData(Vec::new())
            }
        }
        Request::Address {
            app,
            credentials,
            client,
            address_type,
        } => {
            let who = who(broker, credentials, client.address).await?;
            let chosen = broker.launch(&who, &app).await.map_err(|e| e.error_id())?;
            let is_ip = chosen.ica.host.parse::<std::net::IpAddr>().is_ok();
            let with_port = address_type.as_deref().is_none_or(|t| t.ends_with("-port"));
            let (address, address_type) = match (with_port, is_ip) {
                (true, true) => (chosen.ica.to_string(), "dot-port"),
                (true, false) => (chosen.ica.to_string(), "dns-port"),
                (false, true) => (chosen.ica.host.clone(), "dot"),
                (false, false) => (chosen.ica.host.clone(), "dns"),
            };
            let tag = broker.tag(&chosen, &who.user);
            Response::Address {
                address,
                address_type,
                server: chosen.worker.to_string(),
                cgp: chosen.cgp.as_ref().map(ToString::to_string),
                tag,
            }
        }
        Request::Ticket {
            credentials, tag, ..
        } => {
            let who = who(broker, credentials, None).await?;
            Response::Ticket {
                ticket: broker.logon_for_tag(&tag, &who)?,
            }
        }
        Request::ReconnectSessionData {
            credentials,
            client,
        } => {
            let who = who(broker, credentials, client.address).await?;
            Response::ReconnectSessionData(broker.sessions(&who.user))
        }
    })
}

fn json(status: StatusCode, value: serde_json::Value) -> HttpResponse {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

fn refuse(error: &RegistryError) -> HttpResponse {
    let status = match error {
        RegistryError::UnknownWorker => StatusCode::NOT_FOUND,
        RegistryError::Full => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_REQUEST,
    };
    json(
        status,
        serde_json::json!({
            "error": error.code(),
            "message": error.to_string(),
            "supported_versions": SUPPORTED_VERSIONS,
        }),
    )
}

/// Reads a registration message: the version first (so a newer worker's
/// unknown fields get `unsupported-version`, not a parse error), then the
/// message strictly.
fn message<T: DeserializeOwned>(body: &[u8]) -> Result<T, Box<HttpResponse>> {
    let bad = |message: String| {
        Box::new(json(
            StatusCode::BAD_REQUEST,
            serde_json::json!({
                "error": "bad-request",
                "message": message,
                "supported_versions": SUPPORTED_VERSIONS,
            }),
        ))
    };
    if body.len() > MAX_JSON_BYTES {
        return Err(bad("body too large".to_owned()));
    }
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| bad("body is not json".to_owned()))?;
    let version = value
        .get("version")
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| bad("missing or non-numeric version".to_owned()))?;
    let version = u32::try_from(version).unwrap_or(u32::MAX);
    if !SUPPORTED_VERSIONS.contains(&version) {
        return Err(Box::new(refuse(&RegistryError::UnsupportedVersion(
            version,
        ))));
    }
    serde_json::from_value(value).map_err(|e| bad(e.to_string()))
}

async fn register(State(broker): State<Broker>, body: Bytes) -> HttpResponse {
    let message: Register = match message(&body) {
        Ok(m) => m,
        Err(answer) => return *answer,
    };
    match broker.register(&message) {
        Ok(name) => json(
            StatusCode::OK,
            serde_json::json!({
                "version": message.version,
                "worker": name.as_str(),
                "heartbeat_secs": broker.heartbeat_interval_secs(),
            }),
        ),
        Err(error) => refuse(&error),
    }
}

async fn heartbeat(State(broker): State<Broker>, body: Bytes) -> HttpResponse {
    let message: Heartbeat = match message(&body) {
        Ok(m) => m,
        Err(answer) => return *answer,
    };
    match broker.heartbeat(&message) {
        Ok(name) => json(
            StatusCode::OK,
            serde_json::json!({ "version": message.version, "worker": name.as_str() }),
        ),
        Err(error) => refuse(&error),
    }
}

async fn unregister(State(broker): State<Broker>, body: Bytes) -> HttpResponse {
    let message: Unregister = match message(&body) {
        Ok(m) => m,
        Err(answer) => return *answer,
    };
    match broker.unregister(&message) {
        Ok(known) => json(
            StatusCode::OK,
            serde_json::json!({ "version": message.version, "known": known }),
        ),
        Err(error) => refuse(&error),
    }
}

async fn workers(State(broker): State<Broker>) -> HttpResponse {
    json(StatusCode::OK, broker.workers_json())
}
