//! The STA over HTTP: the `POST /scripts/ctxsta.dll` endpoint of the
//! internal listener ([`router`]), the client for a remote STA
//! ([`RemoteSta`]), and the [`StaRouter`] that sends a ticket to the STA its
//! `STA_ID` names (PROTOCOLS.md §3; docs/STA.md).
//!
//! Thin glue around [`Sta`] and [`crate::sta::xml`]: this is where the
//! real clock ([`Instant::now`]) and the OS random source ([`os_fill`]) come
//! in. Only `http://` remote STAs are supported for now.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::routing::post;
use bytes::Bytes;
use gatehouse_wire::ticket::{StaId, StaTicket, TicketError};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use parking_lot::Mutex;

use super::xml::{
    ErrorId, ErrorReply, IssuedTicket, MAX_DOCUMENT_BYTES, Request, Response, XmlError,
};
use super::{Fault, Issued, Redeemed, Sta, StaError, StaLimits, TicketData, TicketKind};
use crate::config::StaSection;

/// The path of the STA endpoint.
pub const STA_PATH: &str = "/scripts/ctxsta.dll";

/// The content type of requests and answers.
pub const CONTENT_TYPE: &str = "text/xml; charset=utf-8";

/// An STA shared between the endpoint, the router and the sweeper.
pub type SharedSta = Arc<Mutex<Sta>>;

/// Fills `buf` from the operating system's CSPRNG: the `fill` to give
/// [`Sta::new`] in production.
///
/// If the OS source fails, `buf` is filled with `0xFF`, a byte
/// [`gatehouse_wire::ticket::Ticket::generate`] always rejects, so issuing
/// fails with [`StaError::Random`] instead of producing a guessable ticket.
pub fn os_fill(buf: &mut [u8]) {
    if let Err(error) = getrandom::fill(buf) {
        tracing::error!(%error, "os random source failed; tickets cannot be issued");
        buf.fill(0xFF);
    }
}

/// The axum router serving `POST /scripts/ctxsta.dll` for `sta`.
///
/// A request must have content type `text/xml` or `application/xml`
/// (charset UTF-8 if given) and a body of at most
/// [`MAX_DOCUMENT_BYTES`]. Wrong content type, oversize or malformed bodies
/// get HTTP 400 with a `ResponseError` document; the status of every other
/// answer is [`status_of`].
pub fn router(sta: SharedSta) -> Router {
    Router::new().route(STA_PATH, post(ctxsta)).with_state(sta)
}

/// Runs `request` against `sta` at `now` and builds the answer. Sans-IO:
/// the endpoint calls it under the lock; tests call it directly. Logs one
/// event per decision (`ticket_issued`, `ticket_redeemed`,
/// `ticket_refreshed`, `ticket_revoked` at debug; `ticket_refused` at info
/// with `reason` and `fault`). Tickets are logged masked.
pub fn answer(sta: &mut Sta, request: Request, now: Instant) -> Response {
    let id = sta.id();
    let op = match &request {
        Request::Ticket { .. } => "issue",
        Request::Data(_) => "redeem",
        Request::Refresh(_) => "refresh",
        Request::Revoke(_) => "revoke",
        Request::Id => "id",
    };
    let result = match request {
        Request::Ticket { data, kind } => sta.issue(data, kind, now).map(|issued| {
            tracing::debug!(sta = %id, ticket = %issued.ticket, ?kind, "ticket_issued");
            Response::Ticket(issued.into())
        }),
        Request::Data(ticket) => sta.redeem(&ticket, now).map(|redeemed| {
            tracing::debug!(sta = %id, %ticket, kind = ?redeemed.kind, "ticket_redeemed");
            Response::Data(redeemed)
        }),
        Request::Refresh(ticket) => sta.refresh(&ticket, now).map(|issued| {
            tracing::debug!(sta = %id, %ticket, new = %issued.ticket, "ticket_refreshed");
            Response::Refresh(issued.into())
        }),
        Request::Revoke(ticket) => sta.revoke(&ticket, now).map(|()| {
            tracing::debug!(sta = %id, %ticket, "ticket_revoked");
            Response::Revoke
        }),
        Request::Id => Ok(Response::Id(id)),
    };
    crate::metrics::sta_outcome(op, if result.is_ok() { "ok" } else { "refused" });
    result.unwrap_or_else(|error| {
        tracing::info!(sta = %id, reason = %error, fault = error.fault().as_str(), "ticket_refused");
        Response::Error(ErrorReply::from_sta(error))
    })
}

/// The HTTP status an answer is sent with: 200 for every answer an STA
/// gives about a ticket (refusals included: the document says why), 400
/// for a bad request, 503 when the table is full, 500 for an internal
/// failure.
pub fn status_of(response: &Response) -> StatusCode {
    let Response::Error(reply) = response else {
        return StatusCode::OK;
    };
    match reply.id {
        ErrorId::BadRequest
        | ErrorId::UnsupportedVersion
        | ErrorId::UnsupportedTicketType
        | ErrorId::DataTooLarge => StatusCode::BAD_REQUEST,
        ErrorId::Full => StatusCode::SERVICE_UNAVAILABLE,
        ErrorId::Internal | ErrorId::Unspecified => StatusCode::INTERNAL_SERVER_ERROR,
        ErrorId::UnknownTicket
        | ErrorId::ExpiredTicket
        | ErrorId::ReusedTicket
        | ErrorId::RevokedTicket
        | ErrorId::WrongAuthority
        | ErrorId::NotRefreshable => StatusCode::OK,
    }
}

/// Sweeps `sta` every `period`, forever; spawn it next to the endpoint and
/// abort it on shutdown.
pub async fn sweep_every(sta: SharedSta, period: Duration) {
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let removed = sta.lock().sweep(Instant::now());
        if removed > 0 {
            tracing::trace!(removed, "sta_swept");
        }
    }
}

async fn ctxsta(State(sta): State<SharedSta>, headers: HeaderMap, body: Body) -> HttpResponse {
    if !is_xml_content_type(&headers) {
        return bad_request("content type must be text/xml".to_owned());
    }
    let Ok(bytes) = axum::body::to_bytes(body, MAX_DOCUMENT_BYTES).await else {
        return bad_request(format!(
            "body exceeds {MAX_DOCUMENT_BYTES} bytes or was cut short"
        ));
    };
    let request = match Request::decode(&bytes) {
        Ok(request) => request,
        Err(error) => {
            tracing::info!(reason = %error, fault = Fault::Client.as_str(), "sta_request_refused");
            let response = Response::Error(ErrorReply::from_xml(&error));
            return xml_response(StatusCode::BAD_REQUEST, &response);
        }
    };
    let response = answer(&mut sta.lock(), request, Instant::now());
    xml_response(status_of(&response), &response)
}

fn is_xml_content_type(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let mut parts = value.split(';').map(str::trim);
    let media = parts.next().unwrap_or_default();
    let media_ok =
        media.eq_ignore_ascii_case("text/xml") || media.eq_ignore_ascii_case("application/xml");
    let charset_ok = parts.all(|param| match param.split_once('=') {
        Some((key, value)) if key.trim().eq_ignore_ascii_case("charset") => {
            value.trim().trim_matches('"').eq_ignore_ascii_case("utf-8")
        }
        _ => true,
    });
    media_ok && charset_ok
}

fn bad_request(message: String) -> HttpResponse {
    let response = Response::Error(ErrorReply {
        id: ErrorId::BadRequest,
        message,
    });
    xml_response(StatusCode::BAD_REQUEST, &response)
}

fn xml_response(status: StatusCode, response: &Response) -> HttpResponse {
    (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE))],
        response.encode(),
    )
        .into_response()
}

/// Why a call to a remote STA failed.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The configured URL is not `http://host[:port]/path`.
    #[error("sta url {url:?} is not http://host[:port]/path")]
    BadUrl {
        /// The URL as given.
        url: String,
    },
    /// Connecting or sending failed.
    #[error("request to the remote sta failed")]
    Transport(#[source] hyper_util::client::legacy::Error),
    /// No complete answer within the timeout.
    #[error("the remote sta did not answer within {0:?}")]
    Timeout(Duration),
    /// Reading the answer failed or it exceeded [`MAX_DOCUMENT_BYTES`].
    #[error("reading the remote sta's answer failed or it exceeded the size limit")]
    Body(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The answer is not an STA document.
    #[error("the remote sta answered http {status} with an invalid document")]
    Xml {
        /// The HTTP status of the answer.
        status: u16,
        /// Why the document was refused.
        #[source]
        source: XmlError,
    },
    /// The remote STA refused the ticket.
    #[error("the remote sta refused: {0}")]
    Refused(StaError),
    /// The remote STA refused the request itself.
    #[error("the remote sta rejected the request: {} ({message})", id.as_str())]
    Rejected {
        /// Its `ErrorId`.
        id: ErrorId,
        /// Its `Message`.
        message: String,
    },
    /// The answer does not fit the request (e.g. `ResponseId` to
    /// `RequestData`), or a ticket it issued names another STA.
    #[error("the remote sta's answer does not match the request")]
    Mismatch,
}

/// A client for one remote STA. Cheap to clone (the connection pool is
/// shared). Every call is bounded by the timeout given to [`RemoteSta::new`].
#[derive(Debug, Clone)]
pub struct RemoteSta {
    url: Uri,
    timeout: Duration,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl RemoteSta {
    /// A client for the STA at `url` (`http://host[:port]/scripts/ctxsta.dll`).
    ///
    /// Errors: [`RemoteError::BadUrl`] unless the scheme is `http` and a
    /// host is given.
    pub fn new(url: &str, timeout: Duration) -> Result<Self, RemoteError> {
        let bad = || RemoteError::BadUrl {
            url: url.to_owned(),
        };
        let uri: Uri = url.parse().map_err(|_| bad())?;
        if uri.scheme_str() != Some("http") || uri.host().is_none_or(str::is_empty) {
            return Err(bad());
        }
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(timeout));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Ok(Self {
            url: uri,
            timeout,
            client,
        })
    }

    /// The STA's URL.
    pub fn url(&self) -> &Uri {
        &self.url
    }

    /// Sends `request` and decodes the answer, whatever its HTTP status.
    ///
    /// Errors: [`RemoteError::Transport`], [`RemoteError::Timeout`],
    /// [`RemoteError::Body`], [`RemoteError::Xml`].
    pub async fn call(&self, request: &Request) -> Result<Response, RemoteError> {
        tokio::time::timeout(self.timeout, self.call_untimed(request))
            .await
            .map_err(|_| RemoteError::Timeout(self.timeout))?
    }

    /// Asks the remote STA to issue a ticket. A missing `Lifetime` in the
    /// answer is taken as the PROTOCOLS.md §3 default for `kind`.
    ///
    /// Errors: those of [`RemoteSta::call`], [`RemoteError::Refused`],
    /// [`RemoteError::Rejected`], [`RemoteError::Mismatch`].
    pub async fn issue(&self, data: TicketData, kind: TicketKind) -> Result<Issued, RemoteError> {
        match self.call(&Request::Ticket { data, kind }).await? {
            Response::Ticket(issued) => Ok(with_default_lifetime(issued, kind)),
            other => Err(refusal(other)),
        }
    }

    /// Redeems `ticket` at the remote STA.
    ///
    /// Errors: as [`RemoteSta::issue`].
    pub async fn redeem(&self, ticket: &StaTicket) -> Result<Redeemed, RemoteError> {
        match self.call(&Request::Data(ticket.clone())).await? {
            Response::Data(redeemed) => Ok(redeemed),
            other => Err(refusal(other)),
        }
    }

    /// Refreshes `ticket` at the remote STA; the answer's ticket must come
    /// from the same STA.
    ///
    /// Errors: as [`RemoteSta::issue`].
    pub async fn refresh(&self, ticket: &StaTicket) -> Result<Issued, RemoteError> {
        match self.call(&Request::Refresh(ticket.clone())).await? {
            Response::Refresh(issued) if issued.ticket.sta_id == ticket.sta_id => {
                Ok(with_default_lifetime(issued, TicketKind::Refreshable))
            }
            Response::Refresh(_) => Err(RemoteError::Mismatch),
            other => Err(refusal(other)),
        }
    }

    /// Revokes `ticket` at the remote STA.
    ///
    /// Errors: as [`RemoteSta::issue`].
    pub async fn revoke(&self, ticket: &StaTicket) -> Result<(), RemoteError> {
        match self.call(&Request::Revoke(ticket.clone())).await? {
            Response::Revoke => Ok(()),
            other => Err(refusal(other)),
        }
    }

    /// Asks the remote STA for its ID (`RequestId`).
    ///
    /// Errors: as [`RemoteSta::issue`].
    pub async fn probe_id(&self) -> Result<StaId, RemoteError> {
        match self.call(&Request::Id).await? {
            Response::Id(id) => Ok(id),
            other => Err(refusal(other)),
        }
    }

    async fn call_untimed(&self, request: &Request) -> Result<Response, RemoteError> {
        let http_request = hyper::Request::post(self.url.clone())
            .header(header::CONTENT_TYPE, CONTENT_TYPE)
            .body(Full::new(Bytes::from(request.encode())))
            // Invariant: the URI was validated in `new` and the header is a
            // constant, so building cannot fail; map it anyway.
            .map_err(|_| RemoteError::BadUrl {
                url: self.url.to_string(),
            })?;
        let answer = self
            .client
            .request(http_request)
            .await
            .map_err(RemoteError::Transport)?;
        let status = answer.status().as_u16();
        let body = Limited::new(answer.into_body(), MAX_DOCUMENT_BYTES)
            .collect()
            .await
            .map_err(RemoteError::Body)?
            .to_bytes();
        Response::decode(&body).map_err(|source| RemoteError::Xml { status, source })
    }
}

fn with_default_lifetime(issued: IssuedTicket, kind: TicketKind) -> Issued {
    Issued {
        lifetime: issued
            .lifetime
            .unwrap_or_else(|| StaLimits::default().ttl(kind)),
        ticket: issued.ticket,
    }
}

/// The error for an answer that is not the one expected.
fn refusal(response: Response) -> RemoteError {
    match response {
        Response::Error(reply) => match reply.id.sta_error() {
            Some(error) => RemoteError::Refused(error),
            None => RemoteError::Rejected {
                id: reply.id,
                message: reply.message,
            },
        },
        _ => RemoteError::Mismatch,
    }
}

/// The remote STA clients of a `[sta]` section.
fn remotes_of(config: &StaSection) -> Result<HashMap<StaId, RemoteSta>, RemoteError> {
    let timeout = Duration::from_millis(config.remote_timeout_ms);
    config
        .remote
        .iter()
        .map(|(id, url)| Ok((*id, RemoteSta::new(url.as_str(), timeout)?)))
        .collect()
}

/// Where [`StaRouter::route`] sends a ticket.
#[derive(Debug, Clone)]
pub enum Route {
    /// This gateway's own STA.
    Local,
    /// A configured remote STA (a clone sharing its connection pool).
    Remote(Box<RemoteSta>),
    /// No STA is configured for the ID: refuse.
    Unknown,
}

/// Why [`StaRouter`] could not redeem, refresh or revoke a ticket.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    /// The ticket text is not `;VER;STA_ID;TICKET`.
    #[error("malformed ticket")]
    Malformed(#[source] TicketError),
    /// The ticket names an STA this gateway does not know.
    #[error("no sta is configured for id {0:?}")]
    UnknownSta(StaId),
    /// The STA (local or remote) refused the ticket.
    #[error(transparent)]
    Refused(StaError),
    /// A remote STA could not be asked.
    #[error("remote sta {sta}")]
    Remote {
        /// The STA's ID.
        sta: StaId,
        /// What failed.
        #[source]
        source: RemoteError,
    },
}

impl RouteError {
    /// Who is at fault: the client for a bad, unknown or refused ticket; the
    /// control plane when an STA could not answer or is full.
    pub fn fault(&self) -> Fault {
        match self {
            Self::Malformed(_) | Self::UnknownSta(_) => Fault::Client,
            Self::Refused(error) => error.fault(),
            Self::Remote { .. } => Fault::ControlPlane,
        }
    }
}

impl From<(StaId, RemoteError)> for RouteError {
    fn from((sta, error): (StaId, RemoteError)) -> Self {
        match error {
            RemoteError::Refused(error) => Self::Refused(error),
            source => Self::Remote { sta, source },
        }
    }
}

/// Sends a ticket to the STA its `STA_ID` names: the local STA for its own
/// ID, a configured remote STA over HTTP, or a refusal
/// ([`RouteError::UnknownSta`]). Cheap to clone.
///
/// [`StaRouter::redeem`] answers a reconnect ticket as well as a launch
/// ticket: a caller that expects one kind must check [`Redeemed::kind`]
/// (a SOCKS launch must refuse [`TicketKind::Refreshable`]).
#[derive(Debug, Clone)]
pub struct StaRouter {
    local: SharedSta,
    local_id: StaId,
    /// Swapped whole by [`StaRouter::replace_remotes`] (a reload); clones
    /// of the router share it.
    remotes: Arc<parking_lot::RwLock<Arc<HashMap<StaId, RemoteSta>>>>,
}

impl StaRouter {
    /// A router over `local` and `remotes` (by STA ID). A remote entry with
    /// the local STA's ID is never used.
    pub fn new(local: SharedSta, remotes: HashMap<StaId, RemoteSta>) -> Self {
        let local_id = local.lock().id();
        Self {
            local,
            local_id,
            remotes: Arc::new(parking_lot::RwLock::new(Arc::new(remotes))),
        }
    }

    /// A router over `local` and the `[sta.remote]` map of the config, each
    /// remote bounded by `sta.remote_timeout_ms`.
    ///
    /// Errors: [`RemoteError::BadUrl`] for a URL the config validation
    /// should already have refused.
    pub fn from_config(local: SharedSta, config: &StaSection) -> Result<Self, RemoteError> {
        Ok(Self::new(local, remotes_of(config)?))
    }

    /// Replaces the remote STAs with the `[sta.remote]` map of `config`
    /// (each bounded by its `remote_timeout_ms`), for every clone of this
    /// router; a redemption already under way finishes with the old entry.
    ///
    /// Errors: [`RemoteError::BadUrl`]; the old map stays.
    pub fn replace_remotes(&self, config: &StaSection) -> Result<(), RemoteError> {
        let remotes = Arc::new(remotes_of(config)?);
        *self.remotes.write() = remotes;
        Ok(())
    }

    /// The local STA.
    pub fn local(&self) -> &SharedSta {
        &self.local
    }

    /// Where a ticket naming `sta_id` goes.
    pub fn route(&self, sta_id: StaId) -> Route {
        if sta_id == self.local_id {
            return Route::Local;
        }
        self.remotes
            .read()
            .get(&sta_id)
            .map_or(Route::Unknown, |remote| {
                Route::Remote(Box::new(remote.clone()))
            })
    }

    /// Parses `text` (`;VER;STA_ID;TICKET`) and redeems it at its STA.
    ///
    /// Errors: [`RouteError`].
    pub async fn redeem(&self, text: &[u8]) -> Result<Redeemed, RouteError> {
        let ticket = StaTicket::decode(text).map_err(RouteError::Malformed)?;
        match self.route(ticket.sta_id) {
            Route::Local => Ok(self.local.lock().redeem(&ticket, Instant::now())?),
            Route::Remote(remote) => Ok(remote
                .redeem(&ticket)
                .await
                .map_err(|e| (ticket.sta_id, e))?),
            Route::Unknown => Err(RouteError::UnknownSta(ticket.sta_id)),
        }
    }

    /// Parses `text` and refreshes it at its STA.
    ///
    /// Errors: [`RouteError`].
    pub async fn refresh(&self, text: &[u8]) -> Result<Issued, RouteError> {
        let ticket = StaTicket::decode(text).map_err(RouteError::Malformed)?;
        match self.route(ticket.sta_id) {
            Route::Local => Ok(self.local.lock().refresh(&ticket, Instant::now())?),
            Route::Remote(remote) => Ok(remote
                .refresh(&ticket)
                .await
                .map_err(|e| (ticket.sta_id, e))?),
            Route::Unknown => Err(RouteError::UnknownSta(ticket.sta_id)),
        }
    }

    /// Parses `text` and revokes it at its STA.
    ///
    /// Errors: [`RouteError`].
    pub async fn revoke(&self, text: &[u8]) -> Result<(), RouteError> {
        let ticket = StaTicket::decode(text).map_err(RouteError::Malformed)?;
        match self.route(ticket.sta_id) {
            Route::Local => Ok(self.local.lock().revoke(&ticket, Instant::now())?),
            Route::Remote(remote) => Ok(remote
                .revoke(&ticket)
                .await
                .map_err(|e| (ticket.sta_id, e))?),
            Route::Unknown => Err(RouteError::UnknownSta(ticket.sta_id)),
        }
    }
}

impl From<StaError> for RouteError {
    fn from(error: StaError) -> Self {
        Self::Refused(error)
    }
}

#[cfg(test)]
mod tests;
