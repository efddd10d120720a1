//! The launch file the store serves, and reading one back (PROTOCOLS.md §5).

use std::fmt;

use super::{IcaError, IcaFile};
use crate::ticket::StaTicket;

/// Section naming the file's encoding.
pub const ENCODING: &str = "Encoding";
/// Section of client-wide settings.
pub const WF_CLIENT: &str = "WFClient";
/// Section listing the launch's application (one `Name=` line).
pub const APPLICATION_SERVERS: &str = "ApplicationServers";
/// Port of CGP (session reliability) on the worker.
pub const CGP_PORT: u16 = 2598;

/// What a launch file says; see [`launch_file`] for the file it becomes.
///
/// Build with [`LaunchParams::new`] and override the optional fields.
#[derive(Debug, Clone, Copy)]
pub struct LaunchParams<'a> {
    /// The application or desktop name: an `[ApplicationServers]` key and
    /// the name of its own section. Must not be `Encoding`, `WFClient` or
    /// `ApplicationServers`.
    pub name: &'a str,
    /// The STA ticket the client presents to the gateway (`Address=`).
    pub address: &'a StaTicket,
    /// The gateway's public host: DNS name, IPv4 address or bracketed IPv6
    /// address (`[::1]`) (`SSLProxyHost=host:port`).
    pub gateway_host: &'a str,
    /// The gateway's public TLS port, usually 443.
    pub gateway_port: u16,
    /// `InitialProgram=`; `None` writes `#` + `name` (a published app).
    pub initial_program: Option<&'a str>,
    /// `LogonTicket=` (with `LogonTicketType=CTXS1`), if the broker issued one.
    pub logon_ticket: Option<&'a str>,
    /// `SessionReliabilityTTL=` in seconds, if session reliability is on.
    pub session_reliability_ttl: Option<u32>,
    /// Writes `CGPSecurityTicket=On`: the client sends the ticket inside CGP
    /// instead of SOCKSv5.
    pub cgp_security_ticket: bool,
    /// `CGPAddress=*:port`; `None` leaves CGP out. Default [`CGP_PORT`].
    pub cgp_port: Option<u16>,
    /// More `key=value` pairs for the application's section, written last;
    /// a key given here replaces the default of the same name.
    pub extra: &'a [(&'a str, &'a str)],
}

impl<'a> LaunchParams<'a> {
    /// Parameters with the defaults: no initial program override, no logon
    /// ticket, no reliability TTL, ticket over SOCKSv5, `CGPAddress=*:2598`,
    /// no extra keys.
    pub fn new(
        name: &'a str,
        address: &'a StaTicket,
        gateway_host: &'a str,
        gateway_port: u16,
    ) -> Self {
        Self {
            name,
            address,
            gateway_host,
            gateway_port,
            initial_program: None,
            logon_ticket: None,
            session_reliability_ttl: None,
            cgp_security_ticket: false,
            cgp_port: Some(CGP_PORT),
            extra: &[],
        }
    }
}

/// Builds the launch file for `params`:
///
/// ```text
/// [Encoding]            InputEncoding=UTF-8
/// [WFClient]            Version=2, RemoveICAFile=yes
/// [ApplicationServers]  <name>=
/// [<name>]              Address=;40;STA_ID;TICKET, InitialProgram=#<name>,
///                       CGPAddress=*:2598, SSLEnable=On, SSLProxyHost=host:port,
///                       TransportDriver=TCP/IP, WinStationDriver=ICA 3.0,
///                       then when set: LogonTicket, LogonTicketType=CTXS1,
///                       SessionReliabilityTTL, CGPSecurityTicket=On, extras
/// ```
///
/// Errors: [`IcaError::ReservedName`], [`IcaError::BadGatewayHost`], or the
/// [`IcaFile::set`] error of a name or value that cannot be written.
pub fn launch_file(params: &LaunchParams<'_>) -> Result<IcaFile, IcaError> {
    let name = params.name;
    if [ENCODING, WF_CLIENT, APPLICATION_SERVERS]
        .iter()
        .any(|reserved| reserved.eq_ignore_ascii_case(name))
    {
        return Err(IcaError::ReservedName);
    }
    if !is_host(params.gateway_host) {
        return Err(IcaError::BadGatewayHost);
    }
    let mut file = IcaFile::new();
    file.set(ENCODING, "InputEncoding", "UTF-8")?;
    file.set(WF_CLIENT, "Version", "2")?;
    file.set(WF_CLIENT, "RemoveICAFile", "yes")?;
    file.set(APPLICATION_SERVERS, name, "")?;
    file.set(name, "Address", &params.address.to_text())?;
    match params.initial_program {
        Some(program) => file.set(name, "InitialProgram", program)?,
        None => file.set(name, "InitialProgram", &format!("#{name}"))?,
    }
    if let Some(port) = params.cgp_port {
        file.set(name, "CGPAddress", &format!("*:{port}"))?;
    }
    file.set(name, "SSLEnable", "On")?;
    let proxy = format!("{}:{}", params.gateway_host, params.gateway_port);
    file.set(name, "SSLProxyHost", &proxy)?;
    file.set(name, "TransportDriver", "TCP/IP")?;
    file.set(name, "WinStationDriver", "ICA 3.0")?;
    if let Some(logon) = params.logon_ticket {
        file.set(name, "LogonTicket", logon)?;
        file.set(name, "LogonTicketType", "CTXS1")?;
    }
    if let Some(ttl) = params.session_reliability_ttl {
        file.set(name, "SessionReliabilityTTL", &ttl.to_string())?;
    }
    if params.cgp_security_ticket {
        file.set(name, "CGPSecurityTicket", "On")?;
    }
    for (key, value) in params.extra {
        file.set(name, key, value)?;
    }
    Ok(file)
}

/// What a client needs from a launch file, as [`read_launch`] finds it.
///
/// `Debug` redacts `address` when it holds a ticket, and `logon_ticket`.
#[derive(Clone, PartialEq, Eq)]
pub struct Launch {
    /// The first key of `[ApplicationServers]`.
    pub name: String,
    /// The raw `Address=` value (a ticket text or `host[:port]`). **Holds
    /// the ticket secret** when `ticket` is `Some`.
    pub address: String,
    /// `address` parsed, when it is an STA ticket (starts with `;`).
    pub ticket: Option<StaTicket>,
    /// `SSLProxyHost=` as host (brackets kept for IPv6) and port (443 when
    /// the value has none).
    pub gateway: Option<(String, u16)>,
    /// Whether `SSLEnable=` is on (`On`, `Yes`, `True` or `1`, any case).
    pub ssl_enable: bool,
    /// The raw `CGPAddress=` value, e.g. `*:2598`.
    pub cgp_address: Option<String>,
    /// `InitialProgram=`.
    pub initial_program: Option<String>,
    /// `LogonTicket=`. **A secret.**
    pub logon_ticket: Option<String>,
    /// `SessionReliabilityTTL=` in seconds.
    pub session_reliability_ttl: Option<u32>,
    /// Whether `CGPSecurityTicket=` is on.
    pub cgp_security_ticket: bool,
}

impl fmt::Debug for Launch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let address = if self.ticket.is_some() {
            "<redacted>"
        } else {
            self.address.as_str()
        };
        f.debug_struct("Launch")
            .field("name", &self.name)
            .field("address", &address)
            .field("ticket", &self.ticket)
            .field("gateway", &self.gateway)
            .field("ssl_enable", &self.ssl_enable)
            .field("cgp_address", &self.cgp_address)
            .field("initial_program", &self.initial_program)
            .field(
                "logon_ticket",
                &self.logon_ticket.as_ref().map(|_| "<redacted>"),
            )
            .field("session_reliability_ttl", &self.session_reliability_ttl)
            .field("cgp_security_ticket", &self.cgp_security_ticket)
            .finish()
    }
}

/// Reads the launch of a served file: the first `[ApplicationServers]`
/// entry and the keys of its section. Other entries and unknown keys are
/// ignored.
///
/// Errors: [`IcaError::NoApplication`], [`IcaError::MissingAppSection`],
/// [`IcaError::MissingKey`] (`Address`), [`IcaError::BadTicket`] for an
/// address starting with `;` that is no valid ticket,
/// [`IcaError::BadHostPort`] (`SSLProxyHost`), [`IcaError::BadNumber`]
/// (`SessionReliabilityTTL`).
pub fn read_launch(file: &IcaFile) -> Result<Launch, IcaError> {
    let Some((name, _)) = file.entries(APPLICATION_SERVERS).next() else {
        return Err(IcaError::NoApplication);
    };
    if !file.sections().any(|s| s.eq_ignore_ascii_case(name)) {
        return Err(IcaError::MissingAppSection);
    }
    let get = |key| file.get(name, key);
    let address = get("Address").ok_or(IcaError::MissingKey { key: "Address" })?;
    let ticket = if address.starts_with(';') {
        Some(StaTicket::decode_ica_address(address).map_err(IcaError::BadTicket)?)
    } else {
        None
    };
    let gateway = get("SSLProxyHost")
        .map(|value| {
            split_host_port(value, 443).ok_or(IcaError::BadHostPort {
                key: "SSLProxyHost",
            })
        })
        .transpose()?;
    let session_reliability_ttl = get("SessionReliabilityTTL")
        .map(|value| {
            value.parse().map_err(|_| IcaError::BadNumber {
                key: "SessionReliabilityTTL",
            })
        })
        .transpose()?;
    Ok(Launch {
        name: name.to_owned(),
        address: address.to_owned(),
        ticket,
        gateway,
        ssl_enable: get("SSLEnable").is_some_and(is_on),
        cgp_address: get("CGPAddress").map(str::to_owned),
        initial_program: get("InitialProgram").map(str::to_owned),
        logon_ticket: get("LogonTicket").map(str::to_owned),
        session_reliability_ttl,
        cgp_security_ticket: get("CGPSecurityTicket").is_some_and(is_on),
    })
}

/// Whether a flag value means "on".
fn is_on(value: &str) -> bool {
    ["on", "yes", "true", "1"]
        .iter()
        .any(|on| on.eq_ignore_ascii_case(value))
}

/// Whether `host` is a DNS name or IPv4 address (letters, digits, `.`, `-`,
/// `_`) or a bracketed IPv6 address, at most 255 bytes.
fn is_host(host: &str) -> bool {
    if host.is_empty() || host.len() > 255 {
        return false;
    }
    match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => {
            !v6.is_empty()
                && v6
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        }
        None => host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_'),
    }
}

/// Splits `host[:port]` (host as [`is_host`] allows), using `default_port`
/// when there is no port.
fn split_host_port(value: &str, default_port: u16) -> Option<(String, u16)> {
    // The host ends at the last ':' unless that ':' is inside IPv6 brackets.
    let (host, port) = match value.rsplit_once(':') {
        Some((host, port)) if !port.contains(']') => (host, port.parse().ok()?),
        _ => (value, default_port),
    };
    is_host(host).then(|| (host.to_owned(), port))
}
