//! The store's SSO callback (PROTOCOLS.md §7):
//! `POST /CitrixAuthService/AuthService.asmx`, SOAP 1.1
//! `GetAccessInformation` (`sessionId`, `username`, `domain`) answered with
//! the session's SmartAccess filters: the names of the access policy rules
//! whose user, group, client and time conditions hold
//! ([`crate::policy::Policies::filters`]).
//!
//! Gatehouse decides:
//! - **Where**: on the gateway's web side (the gateway listener, behind
//!   TLS), the address a store is configured to call the gateway back at;
//!   the internal listener does not serve it.
//! - **Which session**: `sessionId` is the session cookie value
//!   (`NSC_AAAC`) the store received with the user's request; `username`
//!   must name the same user (any case; a `DOMAIN\user` form is accepted).
//!   Only a holder of the cookie can ask, so the answer tells nothing the
//!   holder could not see. The client address is not known to the caller,
//!   so a rule with `clients` conditions never holds here.
//! - **The answer** (inside `GetAccessInformationResult`):
//!   `<AccessInformation><User>alice</User><Filters><Filter>rule</Filter>…
//!   </Filters></AccessInformation>`, namespace [`NAMESPACE`].
//! - **Refusals**: a body that is not such a request answers 400, an
//!   unknown or expired session or another user's name 403, both with a
//!   SOAP `Fault` whose `faultstring` is a fixed text (never an internal
//!   error).
//!
//! The parser [`decode`] is sans-IO: bytes in, a request or a typed
//! refusal out, at most [`MAX_DOCUMENT_BYTES`] with no DOCTYPE and only
//! the predefined entities. Every request logs one `access_information`
//! event (`user`, `outcome`, `filters`).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use quick_xml::events::Event;
use quick_xml::reader::Reader;

use super::WebState;
use crate::broker::catalog::Who;
use crate::login::SessionToken;

/// The callback's path.
pub const PATH: &str = "/CitrixAuthService/AuthService.asmx";

/// The namespace of Gatehouse's answer.
pub const NAMESPACE: &str = "urn:gatehouse:authservice";

/// Largest request document.
pub const MAX_DOCUMENT_BYTES: usize = 16 * 1_024;

/// Deepest element nesting read.
pub const MAX_DEPTH: usize = 8;

/// Most elements read.
pub const MAX_ELEMENTS: usize = 64;

/// Longest text of one field.
pub const MAX_FIELD_BYTES: usize = 1_024;

const SOAP_NS: &str = "http://schemas.xmlsoap.org/soap/envelope/";

/// A decoded `GetAccessInformation` request.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessRequest {
    /// `sessionId`: the session cookie value. A secret: `Debug` hides it.
    pub session_id: String,
    /// `username`.
    pub username: String,
    /// `domain`, when given and not empty.
    pub domain: Option<String>,
}

impl std::fmt::Debug for AccessRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessRequest")
            .field("session_id", &"<redacted>")
            .field("username", &self.username)
            .field("domain", &self.domain)
            .finish()
    }
}

/// Why a body is not a `GetAccessInformation` request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthServiceError {
    /// Over [`MAX_DOCUMENT_BYTES`].
    #[error("document of {0} bytes is too large")]
    TooLarge(usize),
    /// Not UTF-8.
    #[error("document is not utf-8")]
    NotUtf8,
    /// Not well-formed XML, or a DOCTYPE or processing instruction.
    #[error("malformed xml at byte {0}")]
    Syntax(u64),
    /// An entity other than the predefined five or a character reference.
    #[error("unknown entity")]
    UnknownEntity,
    /// Too deep, too many elements or too long a field.
    #[error("document too complex")]
    TooComplex,
    /// Not a SOAP `Envelope` with a `Body` holding `GetAccessInformation`.
    #[error("not a GetAccessInformation request")]
    NotGetAccessInformation,
    /// `sessionId` or `username` is missing or empty.
    #[error("missing {0}")]
    Missing(&'static str),
}

/// Decodes a request body.
///
/// Errors: [`AuthServiceError`].
pub fn decode(input: &[u8]) -> Result<AccessRequest, AuthServiceError> {
    if input.len() > MAX_DOCUMENT_BYTES {
        return Err(AuthServiceError::TooLarge(input.len()));
    }
    let text = std::str::from_utf8(input).map_err(|_| AuthServiceError::NotUtf8)?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut reader = Reader::from_str(text);
    let config = reader.config_mut();
    config.expand_empty_elements = true;
    config.check_end_names = true;
    // Local names of the open elements, outermost first.
    let mut path: Vec<String> = Vec::new();
    let mut elements = 0usize;
    let mut seen_request = false;
    let mut fields: [Option<String>; 3] = [None, None, None];
    loop {
        let event = reader
            .read_event()
            .map_err(|_| AuthServiceError::Syntax(reader.error_position()))?;
        match event {
            Event::Start(start) => {
                elements += 1;
                if elements > MAX_ELEMENTS || path.len() >= MAX_DEPTH {
                    return Err(AuthServiceError::TooComplex);
                }
                let name = std::str::from_utf8(start.local_name().as_ref())
                    .map_err(|_| AuthServiceError::NotUtf8)?
                    .to_owned();
                let expected = match path.len() {
                    0 => Some("Envelope"),
                    1 if name == "Header" => None,
                    1 => Some("Body"),
                    _ => None,
                };
                if expected.is_some_and(|e| e != name) {
                    return Err(AuthServiceError::NotGetAccessInformation);
                }
                if path.len() == 2 && path[1] == "Body" && name == "GetAccessInformation" {
                    seen_request = true;
                }
                path.push(name);
            }
            Event::End(_) => {
                path.pop();
            }
            Event::Text(content) => {
                let content = content
                    .xml10_content()
                    .map_err(|_| AuthServiceError::NotUtf8)?;
                append(&path, &mut fields, &content)?;
            }
            Event::CData(data) => {
                let data = data.decode().map_err(|_| AuthServiceError::NotUtf8)?;
                append(&path, &mut fields, &data)?;
            }
            Event::GeneralRef(reference) => {
                let resolved = match reference.resolve_char_ref() {
                    Ok(Some(c)) => c,
                    Ok(None) => match &*reference {
                        b"lt" => '<',
                        b"gt" => '>',
                        b"amp" => '&',
                        b"apos" => '\'',
                        b"quot" => '"',
                        _ => return Err(AuthServiceError::UnknownEntity),
                    },
                    Err(_) => return Err(AuthServiceError::UnknownEntity),
                };
                append(&path, &mut fields, resolved.encode_utf8(&mut [0; 4]))?;
            }
            Event::Decl(_) | Event::Comment(_) => {}
            Event::DocType(_) | Event::PI(_) | Event::Empty(_) => {
                return Err(AuthServiceError::Syntax(reader.buffer_position()));
            }
            Event::Eof => break,
        }
    }
    if !path.is_empty() {
        // A document cut short: its fields may be cut short too.
        return Err(AuthServiceError::Syntax(reader.buffer_position()));
    }
    if !seen_request {
        return Err(AuthServiceError::NotGetAccessInformation);
    }
    let [session_id, username, domain] = fields.map(|f| f.map(|t| t.trim().to_owned()));
    let session_id = session_id
        .filter(|s| !s.is_empty())
        .ok_or(AuthServiceError::Missing("sessionId"))?;
    let username = username
        .filter(|s| !s.is_empty())
        .ok_or(AuthServiceError::Missing("username"))?;
    Ok(AccessRequest {
        session_id,
        username,
        domain: domain.filter(|d| !d.is_empty()),
    })
}

/// Adds text to the field the innermost element names, when it is a field
/// of the request (`Envelope/Body/GetAccessInformation/<field>`).
fn append(
    path: &[String],
    fields: &mut [Option<String>; 3],
    text: &str,
) -> Result<(), AuthServiceError> {
    let [envelope, body, request, field] = path else {
        return Ok(());
    };
    if envelope != "Envelope" || body != "Body" || request != "GetAccessInformation" {
        return Ok(());
    }
    let index = match field.to_ascii_lowercase().as_str() {
        "sessionid" => 0,
        "username" => 1,
        "domain" => 2,
        _ => return Ok(()),
    };
    let slot = fields[index].get_or_insert_with(String::new);
    if slot.len() + text.len() > MAX_FIELD_BYTES {
        return Err(AuthServiceError::TooComplex);
    }
    slot.push_str(text);
    Ok(())
}

/// The answer for `user` with SmartAccess `filters`.
pub fn encode_result(user: &str, filters: &[String]) -> String {
    let mut out = String::with_capacity(512);
    out.push_str(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\
<soap:Envelope xmlns:soap=\"",
    );
    out.push_str(SOAP_NS);
    out.push_str("\"><soap:Body><GetAccessInformationResponse xmlns=\"");
    out.push_str(NAMESPACE);
    out.push_str("\"><GetAccessInformationResult><AccessInformation><User>");
    out.push_str(&escape(user));
    out.push_str("</User><Filters>");
    for filter in filters {
        out.push_str("<Filter>");
        out.push_str(&escape(filter));
        out.push_str("</Filter>");
    }
    out.push_str(
        "</Filters></AccessInformation></GetAccessInformationResult>\
</GetAccessInformationResponse></soap:Body></soap:Envelope>",
    );
    out
}

/// A SOAP 1.1 fault: `code` is `Client` or `Server`, `reason` a fixed
/// text.
pub fn encode_fault(code: &str, reason: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\
<soap:Envelope xmlns:soap=\"{SOAP_NS}\"><soap:Body><soap:Fault>\
<faultcode>soap:{}</faultcode><faultstring>{}</faultstring>\
</soap:Fault></soap:Body></soap:Envelope>",
        escape(code),
        escape(reason)
    )
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// Whether `given` (`user` or `DOMAIN\user`) names `user`.
pub fn names_user(given: &str, user: &str) -> bool {
    let bare = given.rsplit_once('\\').map_or(given, |(_, name)| name);
    bare.eq_ignore_ascii_case(user)
}

/// `POST /CitrixAuthService/AuthService.asmx`.
pub async fn get_access_information(State(state): State<Arc<WebState>>, body: Bytes) -> Response {
    let request = match decode(&body) {
        Ok(request) => request,
        Err(error) => {
            tracing::info!(outcome = "malformed", error = %error, "access_information");
            return soap(
                StatusCode::BAD_REQUEST,
                encode_fault("Client", "not a GetAccessInformation request"),
            );
        }
    };
    let session = match SessionToken::from_cookie(&request.session_id) {
        Some(token) => match state.login.sessions().find(&token).await {
            Ok(found) => found,
            Err(error) => {
                tracing::warn!(error = %error, "web_session_lookup_failed");
                return soap(
                    StatusCode::SERVICE_UNAVAILABLE,
                    encode_fault("Server", "try again later"),
                );
            }
        },
        None => None,
    };
    let Some(session) = session.filter(|s| names_user(&request.username, &s.user)) else {
        tracing::info!(
            user = request.username,
            outcome = "unknown_session",
            "access_information"
        );
        return soap(
            StatusCode::FORBIDDEN,
            encode_fault("Client", "unknown session"),
        );
    };
    let who = Who {
        user: session.user.clone(),
        groups: session.groups.clone(),
        client_ip: None,
    };
    let filters = state
        .store
        .as_ref()
        .map(|store| store.broker().filters(&who))
        .unwrap_or_default();
    tracing::info!(
        user = session.user,
        outcome = "ok",
        filters = filters.join(","),
        "access_information"
    );
    soap(StatusCode::OK, encode_result(&session.user, &filters))
}

fn soap(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/xml; charset=utf-8"),
    );
    response
}

/// Fuzz entry point: [`decode`] on arbitrary bytes must not panic.
pub mod fuzz {
    /// Decodes `data` as a `GetAccessInformation` request; must not panic.
    pub fn request(data: &[u8]) {
        let _ = super::decode(data);
    }
}

#[cfg(test)]
mod tests;
