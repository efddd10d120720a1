//! The STA XML protocol, `CtxSTAProtocol` version 4.0 (PROTOCOLS.md §3),
//! both directions: [`Request`] and [`Response`] each `decode` from and
//! `encode` to a whole document. docs/STA.md is the schema; what the public
//! record leaves open (`RequestData`, refresh, revoke, the ID probe, errors,
//! the inner form of `XData`) is Gatehouse's choice, written there.
//!
//! A document arrives whole (an HTTP body), so decoding answers a value or a
//! typed rejection, never "need more". Decoding is strict: one root
//! `CtxSTAProtocol version="4.0"`, no unknown elements, no text between
//! elements, no DOCTYPE (so no entity can be declared or expanded; only the
//! five predefined entities and character references are resolved), at most
//! [`MAX_DOCUMENT_BYTES`], UTF-8 only. Leaf text is unescaped; `Value` text
//! is kept verbatim, the typed leaves (IDs, tickets, versions, numbers,
//! addresses) are trimmed of surrounding whitespace first.
//!
//! Errors never quote element text: the `Ticket` element is a secret.

mod decode;
mod error;

use std::fmt::Write as _;
use std::time::Duration;

use gatehouse_wire::ticket::{StaId, StaTicket};

pub use error::XmlError;

use super::{Issued, Redeemed, StaError, TicketData, TicketKind, XData};

/// Largest document [`Request::decode`] and [`Response::decode`] accept.
pub const MAX_DOCUMENT_BYTES: usize = 64 * 1_024;

/// The `version` attribute of the root element.
pub const PROTOCOL_VERSION: &str = "4.0";

/// The ticket type Gatehouse issues (`AllowedTicketType`).
pub const TICKET_TYPE: &str = "STA-v4";

/// The authority ID type Gatehouse uses (`AllowedAuthorityIDType`).
pub const AUTHORITY_ID_TYPE: &str = "STA-v1";

/// Longest `Message` of an error response.
pub const MAX_MESSAGE_BYTES: usize = 1_024;

/// Longest `name` attribute of a `Value`.
pub const MAX_VALUE_NAME_BYTES: usize = 64;

const ROOT: &str = "CtxSTAProtocol";
const DECLARATION: &str = r#"<?xml version="1.0" encoding="UTF-8"?>"#;

/// `Value` names with a meaning of their own in `TicketData`.
pub const ICA_ADDRESS: &str = "ICAAddress";
/// See [`ICA_ADDRESS`].
pub const CGP_ADDRESS: &str = "CGPAddress";
/// See [`ICA_ADDRESS`].
pub const XDATA: &str = "XData";

/// A request to an STA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `RequestTicket`: issue a ticket for `data`.
    Ticket {
        /// The data the ticket stands for.
        data: TicketData,
        /// `Control/Refreshable`: a reconnect ticket when refreshable.
        kind: TicketKind,
    },
    /// `RequestData`: redeem a ticket.
    Data(StaTicket),
    /// `RequestRefresh`: reissue a refreshable ticket.
    Refresh(StaTicket),
    /// `RequestRevoke`: revoke a ticket.
    Revoke(StaTicket),
    /// `RequestId`: ask the STA for its own ID.
    Id,
}

/// An STA's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// `ResponseTicket`: the issued ticket.
    Ticket(IssuedTicket),
    /// `ResponseData`: the redeemed ticket's data and kind.
    Data(Redeemed),
    /// `ResponseRefresh`: the new ticket replacing the refreshed one.
    Refresh(IssuedTicket),
    /// `ResponseRevoke`: the ticket is revoked.
    Revoke,
    /// `ResponseId`: the STA's own ID.
    Id(StaId),
    /// `ResponseError`: the request was refused.
    Error(ErrorReply),
}

/// A ticket as `ResponseTicket`/`ResponseRefresh` carry it. `lifetime` is
/// `None` when the STA did not say (an STA other than Gatehouse).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedTicket {
    /// The ticket.
    pub ticket: StaTicket,
    /// `Lifetime`, whole seconds.
    pub lifetime: Option<Duration>,
}

impl From<Issued> for IssuedTicket {
    fn from(issued: Issued) -> Self {
        Self {
            ticket: issued.ticket,
            lifetime: Some(issued.lifetime),
        }
    }
}

/// `ResponseError`: a stable error id and a human message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorReply {
    /// `ErrorId`.
    pub id: ErrorId,
    /// `Message` (at most [`MAX_MESSAGE_BYTES`]; never a ticket secret).
    pub message: String,
}

impl ErrorReply {
    /// The reply for an STA refusal; the message is the error's text.
    pub fn from_sta(error: StaError) -> Self {
        Self {
            id: ErrorId::from(error),
            message: error.to_string(),
        }
    }

    /// The reply for an undecodable request.
    pub fn from_xml(error: &XmlError) -> Self {
        let id = match error {
            XmlError::UnsupportedVersion { .. } => ErrorId::UnsupportedVersion,
            XmlError::UnsupportedTicketType | XmlError::UnsupportedAuthorityIdType => {
                ErrorId::UnsupportedTicketType
            }
            _ => ErrorId::BadRequest,
        };
        Self {
            id,
            message: error.to_string(),
        }
    }
}

/// The `ErrorId` values (docs/STA.md lists them with their HTTP status).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorId {
    /// `unknown-ticket`.
    UnknownTicket,
    /// `expired-ticket`.
    ExpiredTicket,
    /// `reused-ticket`.
    ReusedTicket,
    /// `revoked-ticket`.
    RevokedTicket,
    /// `wrong-authority`: the ticket names another STA.
    WrongAuthority,
    /// `not-refreshable`.
    NotRefreshable,
    /// `sta-full`: the ticket table is full; try later.
    Full,
    /// `data-too-large`.
    DataTooLarge,
    /// `bad-request`: the document is malformed, too large, or of the wrong
    /// content type.
    BadRequest,
    /// `unsupported-version`: the root's `version` is not 4.0.
    UnsupportedVersion,
    /// `unsupported-ticket-type`: none of the allowed ticket or authority ID
    /// types is one Gatehouse issues.
    UnsupportedTicketType,
    /// `internal`: the STA failed (e.g. its random source).
    Internal,
    /// Any id this version does not know (decoding only; encodes as
    /// `unspecified`).
    Unspecified,
}

impl ErrorId {
    /// The text of the `ErrorId` element.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UnknownTicket => "unknown-ticket",
            Self::ExpiredTicket => "expired-ticket",
            Self::ReusedTicket => "reused-ticket",
            Self::RevokedTicket => "revoked-ticket",
            Self::WrongAuthority => "wrong-authority",
            Self::NotRefreshable => "not-refreshable",
            Self::Full => "sta-full",
            Self::DataTooLarge => "data-too-large",
            Self::BadRequest => "bad-request",
            Self::UnsupportedVersion => "unsupported-version",
            Self::UnsupportedTicketType => "unsupported-ticket-type",
            Self::Internal => "internal",
            Self::Unspecified => "unspecified",
        }
    }

    /// Parses an `ErrorId` text; unknown text is [`ErrorId::Unspecified`].
    pub fn decode(text: &str) -> Self {
        const KNOWN: [ErrorId; 12] = [
            ErrorId::UnknownTicket,
            ErrorId::ExpiredTicket,
            ErrorId::ReusedTicket,
            ErrorId::RevokedTicket,
            ErrorId::WrongAuthority,
            ErrorId::NotRefreshable,
            ErrorId::Full,
            ErrorId::DataTooLarge,
            ErrorId::BadRequest,
            ErrorId::UnsupportedVersion,
            ErrorId::UnsupportedTicketType,
            ErrorId::Internal,
        ];
        KNOWN
            .into_iter()
            .find(|id| id.as_str() == text)
            .unwrap_or(Self::Unspecified)
    }

    /// The STA refusal this id reports, if it is one; `None` for request and
    /// internal errors.
    pub fn sta_error(self) -> Option<StaError> {
        Some(match self {
            Self::UnknownTicket => StaError::UnknownTicket,
            Self::ExpiredTicket => StaError::Expired,
            Self::ReusedTicket => StaError::Reused,
            Self::RevokedTicket => StaError::Revoked,
            Self::WrongAuthority => StaError::WrongAuthority,
            Self::NotRefreshable => StaError::NotRefreshable,
            Self::Full => StaError::Full,
            Self::DataTooLarge
            | Self::BadRequest
            | Self::UnsupportedVersion
            | Self::UnsupportedTicketType
            | Self::Internal
            | Self::Unspecified => return None,
        })
    }
}

impl From<StaError> for ErrorId {
    fn from(error: StaError) -> Self {
        match error {
            StaError::UnknownTicket => Self::UnknownTicket,
            StaError::Expired => Self::ExpiredTicket,
            StaError::Reused => Self::ReusedTicket,
            StaError::Revoked => Self::RevokedTicket,
            StaError::WrongAuthority => Self::WrongAuthority,
            StaError::Full => Self::Full,
            StaError::NotRefreshable => Self::NotRefreshable,
            StaError::DataTooLarge { .. } => Self::DataTooLarge,
            StaError::Random => Self::Internal,
        }
    }
}

impl Request {
    /// Decodes a whole request document.
    ///
    /// Errors: [`XmlError`] naming the first thing wrong.
    pub fn decode(input: &[u8]) -> Result<Self, XmlError> {
        decode::request(input)
    }

    /// Encodes the request as a whole document (UTF-8). **Exposes the
    /// secret** of a ticket it carries.
    pub fn encode(&self) -> String {
        document(|out| match self {
            Self::Ticket { data, kind } => {
                out.push_str("<RequestTicket>");
                leaf(out, "AllowedTicketType", TICKET_TYPE);
                leaf(out, "AllowedAuthorityIDType", AUTHORITY_ID_TYPE);
                encode_ticket_data(out, data);
                encode_control(out, *kind);
                out.push_str("</RequestTicket>");
            }
            Self::Data(ticket) => encode_ticket_ref(out, "RequestData", ticket),
            Self::Refresh(ticket) => encode_ticket_ref(out, "RequestRefresh", ticket),
            Self::Revoke(ticket) => encode_ticket_ref(out, "RequestRevoke", ticket),
            Self::Id => out.push_str("<RequestId></RequestId>"),
        })
    }
}

impl Response {
    /// Decodes a whole response document.
    ///
    /// Errors: [`XmlError`] naming the first thing wrong.
    pub fn decode(input: &[u8]) -> Result<Self, XmlError> {
        decode::response(input)
    }

    /// Encodes the response as a whole document (UTF-8). **Exposes the
    /// secret** of a ticket it carries.
    pub fn encode(&self) -> String {
        document(|out| match self {
            Self::Ticket(issued) => encode_issued(out, "ResponseTicket", issued),
            Self::Refresh(issued) => encode_issued(out, "ResponseRefresh", issued),
            Self::Data(redeemed) => {
                out.push_str("<ResponseData>");
                encode_ticket_data(out, &redeemed.data);
                encode_control(out, redeemed.kind);
                out.push_str("</ResponseData>");
            }
            Self::Revoke => out.push_str("<ResponseRevoke></ResponseRevoke>"),
            Self::Id(id) => {
                out.push_str("<ResponseId>");
                leaf(out, "AuthorityID", id.as_str());
                out.push_str("</ResponseId>");
            }
            Self::Error(reply) => {
                out.push_str("<ResponseError>");
                leaf(out, "ErrorId", reply.id.as_str());
                leaf(out, "Message", truncate(&reply.message, MAX_MESSAGE_BYTES));
                out.push_str("</ResponseError>");
            }
        })
    }
}

fn encode_ticket_data(out: &mut String, data: &TicketData) {
    out.push_str("<TicketData>");
    value(out, ICA_ADDRESS, &data.ica_address.to_string());
    if let Some(cgp) = &data.cgp_address {
        value(out, CGP_ADDRESS, &cgp.to_string());
    }
    if let Some(xdata) = &data.xdata {
        value(out, XDATA, &encode_xdata(xdata));
    }
    for (name, text) in &data.values {
        // The reserved names are carried by the typed fields above.
        if ![ICA_ADDRESS, CGP_ADDRESS, XDATA].contains(&name.as_str()) {
            value(out, name, text);
        }
    }
    out.push_str("</TicketData>");
}

fn encode_xdata(xdata: &XData) -> String {
    let mut out = String::from("<XData>");
    let fields = [
        ("Server", &xdata.server),
        ("User", &xdata.user),
        ("Domain", &xdata.domain),
        ("App", &xdata.app),
        ("Protocol", &xdata.protocol),
    ];
    for (name, field) in fields {
        if let Some(text) = field {
            leaf(&mut out, name, text);
        }
    }
    out.push_str("</XData>");
    out
}

fn encode_control(out: &mut String, kind: TicketKind) {
    if kind == TicketKind::Refreshable {
        out.push_str("<Control><Refreshable>true</Refreshable></Control>");
    }
}

fn encode_ticket_ref(out: &mut String, element: &str, ticket: &StaTicket) {
    let _ = write!(out, "<{element}>");
    encode_ticket_fields(out, ticket);
    let _ = write!(out, "</{element}>");
}

fn encode_issued(out: &mut String, element: &str, issued: &IssuedTicket) {
    let _ = write!(out, "<{element}>");
    encode_ticket_fields(out, &issued.ticket);
    if let Some(lifetime) = issued.lifetime {
        leaf(out, "Lifetime", &lifetime.as_secs().to_string());
    }
    let _ = write!(out, "</{element}>");
}

fn encode_ticket_fields(out: &mut String, ticket: &StaTicket) {
    leaf(out, "AuthorityID", ticket.sta_id.as_str());
    leaf(out, "Ticket", ticket.ticket.as_str());
    leaf(out, "TicketVersion", ticket.version.as_str());
}

fn document(body: impl FnOnce(&mut String)) -> String {
    let mut out = String::with_capacity(512);
    out.push_str(DECLARATION);
    let _ = write!(out, r#"<{ROOT} version="{PROTOCOL_VERSION}">"#);
    body(&mut out);
    let _ = write!(out, "</{ROOT}>");
    out
}

fn leaf(out: &mut String, name: &str, text: &str) {
    let _ = write!(out, "<{name}>");
    escape_into(out, text);
    let _ = write!(out, "</{name}>");
}

fn value(out: &mut String, name: &str, text: &str) {
    out.push_str(r#"<Value name=""#);
    escape_into(out, name);
    out.push_str(r#"">"#);
    escape_into(out, text);
    out.push_str("</Value>");
}

/// Escapes the five XML specials, and CR (which an XML reader would
/// otherwise normalize away), for text and attribute values alike.
fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\r' => out.push_str("&#13;"),
            c => out.push(c),
        }
    }
}

fn truncate(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests;

/// Entry points for the fuzz targets.
#[cfg(fuzzing)]
pub mod fuzz {
    use super::{Request, Response};

    /// Decodes arbitrary bytes as a request; whatever decodes must encode to
    /// a document that decodes to the same value.
    pub fn request(data: &[u8]) {
        let Ok(request) = Request::decode(data) else {
            return;
        };
        let again = Request::decode(request.encode().as_bytes());
        assert_eq!(again, Ok(request), "request round trip");
    }

    /// The same for responses (the gateway reads them from remote STAs).
    pub fn response(data: &[u8]) {
        let Ok(response) = Response::decode(data) else {
            return;
        };
        let again = Response::decode(response.encode().as_bytes());
        assert_eq!(again, Ok(response), "response round trip");
    }
}
