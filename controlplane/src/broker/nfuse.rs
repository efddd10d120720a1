//! The NFuse XML protocol of the XML broker (`POST /scripts/wpnbr.dll`,
//! PROTOCOLS.md §6), sans-IO: [`decode`] turns a whole request body into an
//! [`Envelope`] or a [`Refusal`], [`Response::encode`] writes an answer.
//!
//! Decoding builds a bounded element tree first (at most
//! [`MAX_DOCUMENT_BYTES`], [`MAX_DEPTH`] levels, [`MAX_ELEMENTS`]
//! elements; UTF-8 only; the `<!DOCTYPE NFuseProtocol SYSTEM "NFuse.dtd">`
//! line is accepted before the root but never read, so no entity can be
//! declared; only the five predefined entities and character references
//! resolve), then reads the request from it leniently: NFuse requests carry
//! many elements a broker may ignore (`DesiredDetails`, `Scope`, ...), and
//! unknown children are skipped. What Gatehouse answers:
//!
//! - versions `1.0` to `5.x` are accepted and echoed in the answer's
//!   `version`; a larger or unreadable major version gets
//!   `version-mismatch` in an answer of version [`PROTOCOL_VERSION`];
//! - an error is `<ErrorId>` inside the answer element of the request
//!   (`ResponseAppData` for `RequestAppData`, ...), or inside
//!   `ResponseProtocolError` when the request element is unknown or absent;
//! - `RequestTicket` answers the ICA logon ticket (`LogonTicket=` of the
//!   `.ica` file, type CTXS1) for the worker the `TicketTag` names, in
//!   `Ticket` with `TicketType` `CtxLogon`; the STA ticket for the
//!   worker's address comes from the STA, as for any store;
//! - `RequestReconnectSessionData` answers `SessionData` elements (one per
//!   session the broker launched for the user: `AppName`, `ServerName`,
//!   `ServerAddress`).
//!
//! Errors and `Debug` never show a password.

use std::fmt;
use std::net::IpAddr;

use super::ctx1;
use tree::{Node, parse_tree};

mod tree;

/// Largest request body [`decode`] accepts.
pub const MAX_DOCUMENT_BYTES: usize = 64 * 1_024;

/// Deepest element nesting [`decode`] accepts.
pub const MAX_DEPTH: usize = 16;

/// Most elements in one document.
pub const MAX_ELEMENTS: usize = 1_024;

/// Longest text of one element.
pub const MAX_TEXT_BYTES: usize = 4_096;

/// The root element.
pub const ROOT: &str = "NFuseProtocol";

/// The version answers carry when the request's cannot be echoed.
pub const PROTOCOL_VERSION: &str = "5.1";

/// Highest major version accepted.
pub const MAX_MAJOR: u8 = 5;

/// The capabilities Gatehouse announces.
pub const CAPABILITIES: [&str; 4] = [
    "separate-credentials-validation",
    "launch-reference",
    "user-identity",
    "session-sharing",
];

/// An NFuse protocol version `MAJOR.MINOR`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    /// The major number, 1 to [`MAX_MAJOR`] when accepted.
    pub major: u8,
    /// The minor number.
    pub minor: u8,
}

impl Version {
    /// Parses `M.N` (each 0 to 255, digits only).
    pub fn parse(text: &str) -> Option<Self> {
        let (major, minor) = text.trim().split_once('.')?;
        let number = |part: &str| {
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            part.parse::<u8>().ok()
        };
        Some(Self {
            major: number(major)?,
            minor: number(minor)?,
        })
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// A password from `<Password>`, decoded from `ctx1` if it was; `Debug`
/// never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct NfusePassword(zeroize::Zeroizing<String>);

impl NfusePassword {
    /// Wraps `text`.
    pub fn new(text: String) -> Self {
        Self(zeroize::Zeroizing::new(text))
    }

    /// The password.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for NfusePassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NfusePassword(***)")
    }
}

/// `<Credentials>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// `UserName`, trimmed.
    pub user: String,
    /// `Password` (cleartext or decoded `ctx1`).
    pub password: NfusePassword,
    /// `Domain`, trimmed; `None` when absent or empty.
    pub domain: Option<String>,
}

/// Who asks: `ClientName` and `ClientAddress`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientInfo {
    /// `ClientName`.
    pub name: Option<String>,
    /// `ClientAddress` when it is an IP address.
    pub address: Option<IpAddr>,
}

/// The request element of an envelope, without its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestKind {
    /// `RequestCapabilities`.
    Capabilities,
    /// `RequestValidateCredentials`.
    ValidateCredentials,
    /// `RequestAppData`.
    AppData,
    /// `RequestAddress`.
    Address,
    /// `RequestTicket`.
    Ticket,
    /// `RequestReconnectSessionData`.
    ReconnectSessionData,
    /// `RequestServerFarmData`.
    ServerFarmData,
}

impl RequestKind {
    fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "RequestCapabilities" => Self::Capabilities,
            "RequestValidateCredentials" => Self::ValidateCredentials,
            "RequestAppData" => Self::AppData,
            "RequestAddress" => Self::Address,
            "RequestTicket" => Self::Ticket,
            "RequestReconnectSessionData" => Self::ReconnectSessionData,
            "RequestServerFarmData" => Self::ServerFarmData,
            _ => return None,
        })
    }

    /// The answer element's name (`ResponseAppData` for `RequestAppData`).
    pub fn response_name(self) -> &'static str {
        match self {
            Self::Capabilities => "ResponseCapabilities",
            Self::ValidateCredentials => "ResponseValidateCredentials",
            Self::AppData => "ResponseAppData",
            Self::Address => "ResponseAddress",
            Self::Ticket => "ResponseTicket",
            Self::ReconnectSessionData => "ResponseReconnectSessionData",
            Self::ServerFarmData => "ResponseServerFarmData",
        }
    }

    /// A log label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Capabilities => "capabilities",
            Self::ValidateCredentials => "validate_credentials",
            Self::AppData => "app_data",
            Self::Address => "address",
            Self::Ticket => "ticket",
            Self::ReconnectSessionData => "reconnect_session_data",
            Self::ServerFarmData => "server_farm_data",
        }
    }
}

/// A decoded request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `RequestCapabilities`.
    Capabilities,
    /// `RequestValidateCredentials`.
    ValidateCredentials {
        /// The credentials to check.
        credentials: Credentials,
    },
    /// `RequestAppData`: the user's published resources.
    AppData {
        /// The user's credentials (absent: refused as `failed-credentials`).
        credentials: Option<Credentials>,
        /// Who asks.
        client: ClientInfo,
        /// `ServerType` values (empty = any).
        server_types: Vec<String>,
        /// `ClientType` values (empty = any).
        client_types: Vec<String>,
    },
    /// `RequestAddress`: choose a worker for `app`.
    Address {
        /// `Name/AppName` (or `Name/InName`).
        app: String,
        /// The user's credentials.
        credentials: Option<Credentials>,
        /// Who asks.
        client: ClientInfo,
        /// `ServerAddress addresstype` (`dns-port`, `dot`, ...), if given.
        address_type: Option<String>,
    },
    /// `RequestTicket`: a logon ticket for the worker an earlier
    /// `RequestAddress` chose.
    Ticket {
        /// The user's credentials.
        credentials: Option<Credentials>,
        /// `TicketTag` from `ResponseAddress`.
        tag: String,
        /// `TimetoLive` in seconds, if given.
        ttl_secs: Option<u32>,
    },
    /// `RequestReconnectSessionData`: the user's sessions.
    ReconnectSessionData {
        /// The user's credentials.
        credentials: Option<Credentials>,
        /// Who asks.
        client: ClientInfo,
    },
    /// `RequestServerFarmData`.
    ServerFarmData,
}

impl Request {
    /// Which request this is.
    pub fn kind(&self) -> RequestKind {
        match self {
            Self::Capabilities => RequestKind::Capabilities,
            Self::ValidateCredentials { .. } => RequestKind::ValidateCredentials,
            Self::AppData { .. } => RequestKind::AppData,
            Self::Address { .. } => RequestKind::Address,
            Self::Ticket { .. } => RequestKind::Ticket,
            Self::ReconnectSessionData { .. } => RequestKind::ReconnectSessionData,
            Self::ServerFarmData => RequestKind::ServerFarmData,
        }
    }
}

/// A decoded document: its version and its request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The root's `version`.
    pub version: Version,
    /// The request.
    pub request: Request,
}

/// The `<ErrorId>` values of PROTOCOLS.md §6.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorId {
    /// Wrong user name or password, or none given.
    FailedCredentials,
    /// The account is locked.
    AccountLockedOut,
    /// The password has expired.
    ExpiredCredentials,
    /// No worker can serve the request (none registered, unknown resource,
    /// power-on gave up).
    NoServer,
    /// Every worker that could serve is full.
    MfServerOverloaded,
    /// The protocol version is not supported.
    VersionMismatch,
    /// The broker cannot answer now (directory or store down).
    ServiceUnavailable,
    /// Anything else (a malformed request).
    Unspecified,
}

impl ErrorId {
    /// The wire text.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FailedCredentials => "failed-credentials",
            Self::AccountLockedOut => "account-locked-out",
            Self::ExpiredCredentials => "expired-credentials",
            Self::NoServer => "no-server",
            Self::MfServerOverloaded => "mfserver-overloaded",
            Self::VersionMismatch => "version-mismatch",
            Self::ServiceUnavailable => "service-unavailable",
            Self::Unspecified => "unspecified",
        }
    }

    /// Parses the wire text.
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "failed-credentials" => Self::FailedCredentials,
            "account-locked-out" => Self::AccountLockedOut,
            "expired-credentials" => Self::ExpiredCredentials,
            "no-server" => Self::NoServer,
            "mfserver-overloaded" => Self::MfServerOverloaded,
            "version-mismatch" => Self::VersionMismatch,
            "service-unavailable" => Self::ServiceUnavailable,
            "unspecified" => Self::Unspecified,
            _ => return None,
        })
    }
}

/// Why a document was refused. Never quotes a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NfuseError {
    /// Larger than [`MAX_DOCUMENT_BYTES`].
    #[error("document of {0} bytes exceeds the limit")]
    TooLarge(usize),
    /// Not UTF-8, or a declaration naming another encoding.
    #[error("document is not utf-8")]
    NotUtf8,
    /// Not well-formed XML.
    #[error("xml syntax error at byte {0}")]
    Syntax(u64),
    /// Deeper than [`MAX_DEPTH`] or more than [`MAX_ELEMENTS`] elements, or
    /// a text longer than [`MAX_TEXT_BYTES`].
    #[error("document exceeds the nesting, element or text limits")]
    TooComplex,
    /// An entity reference other than the predefined five.
    #[error("unknown entity reference")]
    UnknownEntity,
    /// The root is not `NFuseProtocol`, or there is none.
    #[error("root element is not NFuseProtocol")]
    WrongRoot,
    /// The root's `version` is missing or not `M.N`.
    #[error("missing or unreadable protocol version")]
    BadVersion,
    /// A version Gatehouse does not speak.
    #[error("unsupported protocol version {0}")]
    UnsupportedVersion(Version),
    /// The root has no request element, or an unknown one.
    #[error("unknown or missing request element")]
    UnknownRequest,
    /// A required element is missing or empty.
    #[error("missing {0}")]
    Missing(&'static str),
    /// A `Password encoding` other than `cleartext` and `ctx1`.
    #[error("unsupported password encoding")]
    PasswordEncoding,
    /// A `ctx1` password that does not decode.
    #[error("bad ctx1 password: {0}")]
    Ctx1(#[from] ctx1::Ctx1Error),
    /// A number that does not parse.
    #[error("{0} is not a number")]
    BadNumber(&'static str),
}

impl NfuseError {
    /// The `ErrorId` this refusal answers with.
    pub fn error_id(&self) -> ErrorId {
        match self {
            Self::UnsupportedVersion(_) => ErrorId::VersionMismatch,
            Self::PasswordEncoding | Self::Ctx1(_) => ErrorId::FailedCredentials,
            _ => ErrorId::Unspecified,
        }
    }
}

/// A refused document: the error, and as much of the envelope as was read
/// (to answer in the request's own element and version).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Why.
    pub error: NfuseError,
    /// The request element, when the root held a known one.
    pub kind: Option<RequestKind>,
    /// The version, when readable and supported.
    pub version: Option<Version>,
}

impl Refusal {
    /// The error answer for this refusal.
    pub fn response(&self) -> Response {
        Response::Error {
            kind: self.kind,
            id: self.error.error_id(),
        }
    }
}

/// One published resource in `ResponseAppData`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppEntry {
    /// `InName`: the internal name.
    pub name: String,
    /// `FName`: the display name.
    pub display: String,
    /// Whether it is a desktop (`Settings appisdesktop`).
    pub desktop: bool,
    /// `Description`, if any.
    pub description: Option<String>,
}

/// One session in `ResponseReconnectSessionData`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionEntry {
    /// The resource launched.
    pub app: String,
    /// The worker's name.
    pub server: String,
    /// The worker's ICA address.
    pub address: String,
}

/// An answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// `ResponseCapabilities` with [`CAPABILITIES`].
    Capabilities,
    /// An empty `ResponseValidateCredentials`: the credentials are good.
    ValidateCredentials,
    /// `ResponseAppData`.
    AppData(Vec<AppEntry>),
    /// `ResponseAddress`.
    Address {
        /// `ServerAddress` text.
        address: String,
        /// Its `addresstype`.
        address_type: &'static str,
        /// The worker's name (`ServerName`).
        server: String,
        /// `CGPAddress` (`*:2598` form or `host:port`), if the worker speaks
        /// CGP.
        cgp: Option<String>,
        /// `TicketTag` for `RequestTicket`.
        tag: String,
    },
    /// `ResponseTicket`.
    Ticket {
        /// The logon ticket (32 uppercase hex digits, CTXS1).
        ticket: String,
    },
    /// `ResponseReconnectSessionData`.
    ReconnectSessionData(Vec<SessionEntry>),
    /// `ResponseServerFarmData` with `ServerFarmName`.
    ServerFarmData {
        /// The farm's name.
        farm: String,
    },
    /// An error in the request's answer element (or
    /// `ResponseProtocolError`).
    Error {
        /// The request answered, when known.
        kind: Option<RequestKind>,
        /// The error.
        id: ErrorId,
    },
}

impl Response {
    /// The whole document, with `version` on the root.
    pub fn encode(&self, version: &str) -> String {
        let mut out = String::with_capacity(512);
        out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n");
        out.push_str("<!DOCTYPE NFuseProtocol SYSTEM \"NFuse.dtd\">\r\n");
        out.push_str("<NFuseProtocol version=\"");
        escape_into(&mut out, version);
        out.push_str("\">");
        match self {
            Self::Capabilities => {
                out.push_str("<ResponseCapabilities>");
                for id in CAPABILITIES {
                    leaf(&mut out, "CapabilityId", id);
                }
                out.push_str("</ResponseCapabilities>");
            }
            Self::ValidateCredentials => {
                out.push_str("<ResponseValidateCredentials></ResponseValidateCredentials>");
            }
            Self::AppData(apps) => {
                out.push_str("<ResponseAppData><AppDataSet>");
                for app in apps {
                    out.push_str("<AppData>");
                    leaf(&mut out, "InName", &app.name);
                    leaf(&mut out, "FName", &app.display);
                    out.push_str("<Details><Settings appisdesktop=\"");
                    out.push_str(if app.desktop { "true" } else { "false" });
                    out.push_str("\"></Settings>");
                    if let Some(description) = &app.description {
                        leaf(&mut out, "Description", description);
                    }
                    out.push_str("</Details>");
                    leaf(&mut out, "ServerType", "win32");
                    leaf(&mut out, "ClientType", "ica30");
                    out.push_str("</AppData>");
                }
                out.push_str("</AppDataSet></ResponseAppData>");
            }
            Self::Address {
                address,
                address_type,
                server,
                cgp,
                tag,
            } => {
                out.push_str("<ResponseAddress><ServerAddress addresstype=\"");
                out.push_str(address_type);
                out.push_str("\">");
                escape_into(&mut out, address);
                out.push_str("</ServerAddress>");
                leaf(&mut out, "ServerType", "win32");
                leaf(&mut out, "ConnectionType", "tcp");
                leaf(&mut out, "ClientType", "ica30");
                leaf(&mut out, "ServerName", server);
                if let Some(cgp) = cgp {
                    leaf(&mut out, "CGPAddress", cgp);
                }
                leaf(&mut out, "TicketTag", tag);
                out.push_str("</ResponseAddress>");
            }
            Self::Ticket { ticket } => {
                out.push_str("<ResponseTicket>");
                leaf(&mut out, "Ticket", ticket);
                leaf(&mut out, "TicketType", "CtxLogon");
                out.push_str("</ResponseTicket>");
            }
            Self::ReconnectSessionData(sessions) => {
                out.push_str("<ResponseReconnectSessionData>");
                for session in sessions {
                    out.push_str("<SessionData>");
                    leaf(&mut out, "AppName", &session.app);
                    leaf(&mut out, "ServerName", &session.server);
                    leaf(&mut out, "ServerAddress", &session.address);
                    out.push_str("</SessionData>");
                }
                out.push_str("</ResponseReconnectSessionData>");
            }
            Self::ServerFarmData { farm } => {
                out.push_str("<ResponseServerFarmData><ServerFarmData>");
                leaf(&mut out, "ServerFarmName", farm);
                out.push_str("</ServerFarmData></ResponseServerFarmData>");
            }
            Self::Error { kind, id } => {
                let element = kind.map_or("ResponseProtocolError", RequestKind::response_name);
                out.push('<');
                out.push_str(element);
                out.push('>');
                leaf(&mut out, "ErrorId", id.as_str());
                out.push_str("</");
                out.push_str(element);
                out.push('>');
            }
        }
        out.push_str("</NFuseProtocol>\r\n");
        out
    }
}

/// Decodes a request body.
///
/// Errors: a [`Refusal`] carrying the [`NfuseError`] and what was read of
/// the envelope.
pub fn decode(input: &[u8]) -> Result<Envelope, Refusal> {
    let refuse = |error, kind, version| Refusal {
        error,
        kind,
        version,
    };
    let root = parse_tree(input).map_err(|error| refuse(error, None, None))?;
    if root.name != ROOT {
        return Err(refuse(NfuseError::WrongRoot, None, None));
    }
    let request_node = root.children.first();
    let kind = request_node.and_then(|node| RequestKind::from_name(&node.name));
    let version = root
        .attr("version")
        .and_then(Version::parse)
        .ok_or_else(|| refuse(NfuseError::BadVersion, kind, None))?;
    if version.major == 0 || version.major > MAX_MAJOR {
        return Err(refuse(NfuseError::UnsupportedVersion(version), kind, None));
    }
    let (Some(node), Some(kind)) = (request_node, kind) else {
        return Err(refuse(NfuseError::UnknownRequest, None, Some(version)));
    };
    let request =
        read_request(node, kind).map_err(|error| refuse(error, Some(kind), Some(version)))?;
    Ok(Envelope { version, request })
}

fn read_request(node: &Node, kind: RequestKind) -> Result<Request, NfuseError> {
    Ok(match kind {
        RequestKind::Capabilities => Request::Capabilities,
        RequestKind::ServerFarmData => Request::ServerFarmData,
        RequestKind::ValidateCredentials => Request::ValidateCredentials {
            credentials: credentials(node)?.ok_or(NfuseError::Missing("Credentials"))?,
        },
        RequestKind::AppData => Request::AppData {
            credentials: credentials(node)?,
            client: client(node),
            server_types: node.texts("ServerType"),
            client_types: node.texts("ClientType"),
        },
        RequestKind::Address => {
            let name = node.child("Name").ok_or(NfuseError::Missing("Name"))?;
            let app = name
                .child("AppName")
                .or_else(|| name.child("InName"))
                .map(|n| n.text.trim().to_owned())
                .filter(|text| !text.is_empty())
                .ok_or(NfuseError::Missing("AppName"))?;
            Request::Address {
                app,
                credentials: credentials(node)?,
                client: client(node),
                address_type: node
                    .child("ServerAddress")
                    .and_then(|n| n.attr("addresstype"))
                    .map(str::to_owned),
            }
        }
        RequestKind::Ticket => {
            let tag = node
                .child("TicketTag")
                .map(|n| n.text.trim().to_owned())
                .filter(|text| !text.is_empty())
                .ok_or(NfuseError::Missing("TicketTag"))?;
            let ttl_secs = match node.child("TimetoLive") {
                None => None,
                Some(n) => Some(
                    n.text
                        .trim()
                        .parse::<u32>()
                        .map_err(|_| NfuseError::BadNumber("TimetoLive"))?,
                ),
            };
            Request::Ticket {
                credentials: credentials(node)?,
                tag,
                ttl_secs,
            }
        }
        RequestKind::ReconnectSessionData => Request::ReconnectSessionData {
            credentials: credentials(node)?,
            client: client(node),
        },
    })
}

fn credentials(node: &Node) -> Result<Option<Credentials>, NfuseError> {
    let Some(creds) = node.child("Credentials") else {
        return Ok(None);
    };
    let user = creds
        .child("UserName")
        .map(|n| n.text.trim().to_owned())
        .filter(|text| !text.is_empty())
        .ok_or(NfuseError::Missing("UserName"))?;
    let password_node = creds
        .child("Password")
        .ok_or(NfuseError::Missing("Password"))?;
    let encoding = password_node.attr("encoding").unwrap_or("cleartext");
    let password = if encoding.eq_ignore_ascii_case("cleartext") {
        password_node.text.clone()
    } else if encoding.eq_ignore_ascii_case("ctx1") {
        ctx1::decode(password_node.text.trim())?
    } else {
        return Err(NfuseError::PasswordEncoding);
    };
    let domain = creds
        .child("Domain")
        .map(|n| n.text.trim().to_owned())
        .filter(|text| !text.is_empty());
    Ok(Some(Credentials {
        user,
        password: NfusePassword::new(password),
        domain,
    }))
}

fn client(node: &Node) -> ClientInfo {
    ClientInfo {
        name: node
            .child("ClientName")
            .map(|n| n.text.trim().to_owned())
            .filter(|text| !text.is_empty()),
        address: node
            .child("ClientAddress")
            .and_then(|n| n.text.trim().parse().ok()),
    }
}

fn leaf(out: &mut String, name: &str, text: &str) {
    out.push('<');
    out.push_str(name);
    out.push('>');
    escape_into(out, text);
    out.push_str("</");
    out.push_str(name);
    out.push('>');
}

fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() && !matches!(c, '\t' | '\n' | '\r') => {}
            c => out.push(c),
        }
    }
}

/// Fuzz entry points: arbitrary bytes must never panic.
pub mod fuzz {
    use super::{Response, decode};

    /// Decodes `data` as a request; whatever decodes or is refused yields an
    /// answer document that itself parses as an NFuse tree.
    pub fn request(data: &[u8]) {
        let answer = match decode(data) {
            Ok(envelope) => Response::Error {
                kind: Some(envelope.request.kind()),
                id: super::ErrorId::Unspecified,
            }
            .encode(&envelope.version.to_string()),
            Err(refusal) => refusal.response().encode(super::PROTOCOL_VERSION),
        };
        assert!(
            super::tree::parse_tree(answer.as_bytes()).is_ok(),
            "every answer is well-formed"
        );
    }
}

#[cfg(test)]
mod tests;
