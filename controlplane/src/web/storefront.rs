//! The store front (issue 7 item 4): after the gateway login the home page
//! lists the user's published desktops and applications, each with a
//! launch form; a launch answers an `.ica` file (PROTOCOLS.md §5).
//!
//! ```text
//! GET  /vpns/home.html   the list (catalog entitlement minus what an access policy denies)
//! GET  /cgi/resources    the same list as JSON, with the session's CSRF token, for programs
//! POST /cgi/launch       csrf, resource -> Broker::launch (may power a worker on and wait)
//!                        -> Broker::issue (STA ticket) -> 200 application/x-ica
//! ```
//!
//! Every launch POST carries the session's CSRF token (as `/manageotp`
//! does). A resource the user may not see or launch (not entitled, unknown,
//! or denied by a policy: the broker logs `launch_denied`) answers 403; no
//! worker, a full pool or a power-on that gave up answer 503 with a page
//! saying so; a store or STA failure answers 503 too. No answer carries an
//! internal error text. A successful launch logs one `launch` event
//! (`user`, `resource`, `worker`); the ticket is never logged.
//!
//! The `.ica` file names the gateway as clients reach it (`SSLProxyHost`):
//! `gateway.public_address` when set, else the request's `Host`, else the
//! listen address. With `gateway.session_reliability` on and a worker that
//! registered a CGP address, it carries `CGPAddress=*:PORT`,
//! `CGPSecurityTicket=On` and `SessionReliabilityTTL`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use gatehouse_wire::ica::{IcaError, LaunchParams, launch_file};
use gatehouse_wire::ticket::StaTicket;

use super::cookies;
use super::flow::{page, redirect, session};
use super::pages;
use super::{LOGIN_PAGE, WebClient, WebState};
use crate::broker::catalog::{Refused, Who};
use crate::broker::nfuse::AppEntry;
use crate::broker::{Broker, Chosen, LaunchError};
use crate::config::{GatewaySection, split_host_port};
use crate::login::{Scope, WebSession};
use crate::sta::CgpAddress;

/// The launch form's target.
pub const LAUNCH_PATH: &str = "/cgi/launch";

/// The JSON list's path.
pub const RESOURCES_PATH: &str = "/cgi/resources";

/// The content type of a launch file.
pub const ICA_CONTENT_TYPE: &str = "application/x-ica";

/// The store front's settings and the broker it asks.
#[derive(Debug, Clone)]
pub struct StoreFront {
    broker: Broker,
    public: Option<(String, u16)>,
    listen: SocketAddr,
    reliability_ttl: Option<u32>,
}

impl StoreFront {
    /// The store front over `broker`, with the public address and session
    /// reliability of `gateway` (a validated section: an unusable
    /// `public_address` is ignored).
    pub fn new(broker: Broker, gateway: &GatewaySection) -> Self {
        let reliability_ttl = gateway
            .session_reliability
            .then(|| u32::try_from(gateway.reconnect_window_secs).unwrap_or(u32::MAX));
        Self {
            broker,
            public: gateway.public_host_port().ok().flatten(),
            listen: gateway.listen,
            reliability_ttl,
        }
    }

    /// The broker.
    pub fn broker(&self) -> &Broker {
        &self.broker
    }

    /// The gateway as the client of `headers` reaches it.
    fn gateway(&self, headers: &HeaderMap) -> (String, u16) {
        gateway_of(self.public.as_ref(), self.listen, headers)
    }
}

/// The gateway as clients reach it (`SSLProxyHost`): `public` when set,
/// else the `Host` of `headers` (port 443 when it names none), else
/// `listen`.
pub fn gateway_of(
    public: Option<&(String, u16)>,
    listen: SocketAddr,
    headers: &HeaderMap,
) -> (String, u16) {
    if let Some(public) = public {
        return public.clone();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .and_then(|host| split_host_port(host).or_else(|| split_host_port(&format!("{host}:443"))));
    host.unwrap_or_else(|| {
        let ip = match listen.ip() {
            IpAddr::V6(v6) => format!("[{v6}]"),
            IpAddr::V4(v4) => v4.to_string(),
        };
        (ip, listen.port())
    })
}

/// What a launch file is made of; [`ica_text`] writes it.
#[derive(Debug, Clone, Copy)]
pub struct LaunchFile<'a> {
    /// The resource's name (the application section's name).
    pub resource: &'a str,
    /// The STA ticket (`Address=`).
    pub ticket: &'a StaTicket,
    /// The gateway's host and port (`SSLProxyHost=`).
    pub gateway: (&'a str, u16),
    /// The worker's CGP address, when it registered one.
    pub cgp: Option<&'a CgpAddress>,
    /// `SessionReliabilityTTL` when session reliability is on.
    pub reliability_ttl: Option<u32>,
    /// `LogonTicket=` (type CTXS1) the worker redeems with the broker.
    pub logon_ticket: Option<&'a str>,
}

/// The `.ica` text of `file`: `CGPAddress`, `CGPSecurityTicket=On` and
/// `SessionReliabilityTTL` only when session reliability is on and the
/// worker has a CGP address.
///
/// Errors: [`IcaError`] for a resource name or gateway host the file
/// cannot hold.
pub fn ica_text(file: &LaunchFile<'_>) -> Result<String, IcaError> {
    let (host, port) = file.gateway;
    let mut params = LaunchParams::new(file.resource, file.ticket, host, port);
    params.logon_ticket = file.logon_ticket;
    let cgp_port = file.cgp.map(|cgp| match cgp {
        CgpAddress::SameHost { port } => *port,
        CgpAddress::Addr(addr) => addr.port,
    });
    match (file.reliability_ttl, cgp_port) {
        (Some(ttl), Some(port)) => {
            params.cgp_port = Some(port);
            params.cgp_security_ticket = true;
            params.session_reliability_ttl = Some(ttl);
        }
        _ => params.cgp_port = None,
    }
    Ok(launch_file(&params)?.encode())
}

/// Who a session is, for the broker: its user and groups, and the client
/// address of the request.
pub fn who(session: &WebSession, client: &WebClient) -> Who {
    Who {
        user: session.user.clone(),
        groups: session.groups.clone(),
        client_ip: client.peer.map(|peer| peer.ip()),
    }
}

/// `GET /vpns/home.html`: the welcome, the launch forms, the links.
pub async fn home(
    State(state): State<Arc<WebState>>,
    Extension(client): Extension<WebClient>,
    headers: HeaderMap,
) -> Response {
    let Some(session) = session(&state, &headers).await else {
        return redirect(LOGIN_PAGE, &[]);
    };
    let enrol = session.scope == Scope::Enrol;
    let entries = match (&state.store, enrol) {
        (Some(store), false) => Some(entries(store.broker(), &who(&session, &client))),
        _ => None,
    };
    page(
        StatusCode::OK,
        pages::home(
            &session.display_name,
            enrol,
            entries.as_deref(),
            &session.token.csrf(),
        ),
        &[],
    )
}

/// `GET /cgi/resources`: `{"user", "csrf", "resources": [{"name",
/// "display", "desktop", "description"}]}`; 401 without a session, 403
/// for an enrol-only session.
pub async fn resources(
    State(state): State<Arc<WebState>>,
    Extension(client): Extension<WebClient>,
    headers: HeaderMap,
) -> Response {
    let Some(session) = session(&state, &headers).await else {
        return json(
            StatusCode::UNAUTHORIZED,
            serde_json::json!({"error": "no-session"}),
        );
    };
    if session.scope == Scope::Enrol {
        return json(
            StatusCode::FORBIDDEN,
            serde_json::json!({"error": "enrol-only"}),
        );
    }
    let list = state
        .store
        .as_ref()
        .map(|store| entries(store.broker(), &who(&session, &client)))
        .unwrap_or_default();
    let list: Vec<serde_json::Value> = list
        .iter()
        .map(|e| {
            serde_json::json!({
                "name": e.name,
                "display": e.display,
                "desktop": e.desktop,
                "description": e.description,
            })
        })
        .collect();
    json(
        StatusCode::OK,
        serde_json::json!({
            "user": session.user,
            "csrf": session.token.csrf(),
            "resources": list,
        }),
    )
}

/// `POST /cgi/launch` (`csrf`, `resource`): the `.ica` file, or a page
/// saying why not.
pub async fn launch(
    State(state): State<Arc<WebState>>,
    Extension(client): Extension<WebClient>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(session) = session(&state, &headers).await else {
        return redirect(LOGIN_PAGE, &[]);
    };
    let fields = cookies::form(&body);
    if !session.token.csrf_matches(cookies::field(&fields, "csrf")) {
        tracing::info!(user = session.user, reason = "csrf", "launch_refused");
        return refusal(
            StatusCode::FORBIDDEN,
            "The page was out of date. Open your applications again.",
        );
    }
    if session.scope == Scope::Enrol {
        return refusal(
            StatusCode::FORBIDDEN,
            "Register an authenticator and log on again first.",
        );
    }
    let Some(store) = &state.store else {
        return refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            "No applications are published here.",
        );
    };
    let resource = cookies::field(&fields, "resource");
    let who = who(&session, &client);
    let chosen = match store.broker().launch(&who, resource).await {
        Ok(chosen) => chosen,
        Err(error) => return launch_failed(&error),
    };
    answer_file(store, &who, &chosen, &headers)
}

fn answer_file(store: &StoreFront, who: &Who, chosen: &Chosen, headers: &HeaderMap) -> Response {
    let issued = match store.broker().issue(chosen, who) {
        Ok(issued) => issued,
        Err(error) => {
            tracing::warn!(user = %who.user, error = %error, "launch_ticket_failed");
            return refusal(
                StatusCode::SERVICE_UNAVAILABLE,
                "The launch could not be prepared. Try again later.",
            );
        }
    };
    let (host, port) = store.gateway(headers);
    let logon = store.broker().logon_ticket(chosen, who);
    let text = ica_text(&LaunchFile {
        logon_ticket: logon.as_deref(),
        resource: &chosen.resource,
        ticket: &issued.ticket,
        gateway: (&host, port),
        cgp: chosen.cgp.as_ref(),
        reliability_ttl: store.reliability_ttl,
    });
    let text = match text {
        Ok(text) => text,
        Err(error) => {
            tracing::warn!(resource = %chosen.resource, error = %error, "launch_file_failed");
            return refusal(
                StatusCode::SERVICE_UNAVAILABLE,
                "The launch could not be prepared. Try again later.",
            );
        }
    };
    tracing::info!(
        user = %who.user,
        resource = %chosen.resource,
        worker = %chosen.worker,
        "launch"
    );
    let mut response = (StatusCode::OK, text).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(ICA_CONTENT_TYPE),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"launch.ica\""),
    );
    response
}

/// The page answering a failed launch: never the error's text.
fn launch_failed(error: &LaunchError) -> Response {
    match error {
        LaunchError::Denied { .. }
        | LaunchError::Refused(Refused::NotEntitled | Refused::UnknownResource) => {
            refusal(StatusCode::FORBIDDEN, "You may not launch this resource.")
        }
        LaunchError::Refused(Refused::Overloaded) => refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            "Every desktop for this resource is busy. Try again later.",
        ),
        LaunchError::Refused(Refused::NoDesktop) => refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            "No desktop is available for this resource.",
        ),
        LaunchError::Power(_) => refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            "The desktop did not start in time. Try again later.",
        ),
        LaunchError::Store(_) => refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            "The launch could not be prepared. Try again later.",
        ),
    }
}

fn refusal(status: StatusCode, message: &str) -> Response {
    page(status, pages::launch_error(message), &[])
}

/// The resources `who` sees.
fn entries(broker: &Broker, who: &Who) -> Vec<AppEntry> {
    broker.resources(who)
}

fn json(status: StatusCode, value: serde_json::Value) -> Response {
    let mut response = (status, value.to_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests;
