//! The configuration of `gatehouse run`: one TOML file, typed, every key
//! documented here and in `gatehouse.example.toml`.
//!
//! Unknown keys are refused (`deny_unknown_fields` everywhere); every error
//! names the key (`gateway.listen: invalid socket address "foo", expected
//! IP:PORT (line 2, column 10)`) and the binary exits with [`EXIT_CONFIG`].
//! [`Config::default`] is the embedded default: with no file at all the
//! gateway comes up on loopback (`127.0.0.1:8443` TLS with a self-signed
//! certificate, internal HTTP on `127.0.0.1:8080`).
//!
//! Relative paths (`data_dir`, `gateway.tls.*`) are taken relative to the
//! working directory of the process, like paths given on the command line;
//! the systemd unit sets the working directory.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use gatehouse_wire::ticket::StaId;
use serde::{Deserialize, Serialize};

use crate::broker::catalog::BrokerSection;
use crate::ldap::LdapSection;
use crate::login::LoginSection;
use crate::policy::PolicySection;
use crate::push::PushSection;
use crate::radius::RadiusSection;
use crate::s2c::ServerToClientSection;
use crate::sta::StaLimits;

/// The exit code of `gatehouse` for a bad configuration (EX_USAGE).
pub const EXIT_CONFIG: u8 = 64;

/// Largest configuration file [`Config::load`] reads.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Directory for state: the embedded database (`gatehouse.db`), the
    /// generated self-signed certificate (`tls/`), the generated OTP key
    /// (`otp.key`). Created on first start. Default
    /// `gatehouse-data` (relative to the working directory).
    pub data_dir: PathBuf,
    /// The gateway listener that clients connect to.
    pub gateway: GatewaySection,
    /// The internal HTTP listener (STA endpoint, REST API, metrics).
    pub admin: AdminSection,
    /// The data-plane engine.
    pub engine: EngineSection,
    /// The Secure Ticket Authority.
    pub sta: StaSection,
    /// Local users and OTP devices.
    pub auth: AuthSection,
    /// The LDAP directory that checks passwords (off unless `ldap.url` is
    /// set). See [`LdapSection`].
    pub ldap: LdapSection,
    /// The RADIUS servers of the RADIUS factor (off unless
    /// `radius.servers` is set). See [`RadiusSection`].
    pub radius: RadiusSection,
    /// Push approval with number matching (off unless `push.enabled`).
    /// See [`PushSection`].
    pub push: PushSection,
    /// The web login flow: schema, sessions, lockouts. See
    /// [`LoginSection`].
    pub login: LoginSection,
    /// The broker: heartbeat and power-on timings and the catalog
    /// (`[[broker.groups]]`, `[[broker.desktops]]`, `[[broker.resources]]`,
    /// `[[broker.assignments]]`). See [`BrokerSection`].
    pub broker: BrokerSection,
    /// Access policies for launches and server-to-client flows
    /// (`[[policy.rules]]`). See [`PolicySection`].
    pub policy: PolicySection,
    /// Server-to-client access: IIP pools and apps
    /// (`[[server_to_client.pools]]`, `[[server_to_client.apps]]`). See
    /// [`ServerToClientSection`].
    pub server_to_client: ServerToClientSection,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("gatehouse-data"),
            gateway: GatewaySection::default(),
            admin: AdminSection::default(),
            engine: EngineSection::default(),
            sta: StaSection::default(),
            auth: AuthSection::default(),
            ldap: LdapSection::default(),
            radius: RadiusSection::default(),
            push: PushSection::default(),
            login: LoginSection::default(),
            broker: BrokerSection::default(),
            policy: PolicySection::default(),
            server_to_client: ServerToClientSection::default(),
        }
    }
}

/// `[gateway]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewaySection {
    /// Address and port to listen on. Default `127.0.0.1:8443`; an
    /// appliance uses `0.0.0.0:443`.
    #[serde(with = "socket_addr_text")]
    pub listen: SocketAddr,
    /// Accept SOCKSv5 and CGP without TLS, for deployments behind a
    /// TLS-terminating load balancer. Default `false`. A plaintext listener
    /// takes no `[gateway.tls]`.
    pub plaintext: bool,
    /// How long a new connection may take to send enough bytes to tell its
    /// protocol, in milliseconds (1..=60000). Default 5000.
    pub detect_timeout_ms: u64,
    /// How long a handshake (TLS, SOCKSv5 or CGP up to the ticket) may
    /// take, in milliseconds (1..=300000). Default 10000.
    pub handshake_timeout_ms: u64,
    /// How long after a CGP client's connection breaks its reconnect
    /// ticket still resumes the session, in seconds (1..=86400). Default
    /// 180. Past it the ticket is revoked and a resume is refused.
    pub reconnect_window_secs: u64,
    /// The gateway as clients reach it, `host:port` (a DNS name, an IPv4
    /// address or a bracketed IPv6 address): the `SSLProxyHost` of the
    /// store front's `.ica` files. Default: none, and each file names the
    /// `Host` the client's request reached (port 443 when it has none),
    /// or `listen` when the request has no usable `Host`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_address: Option<String>,
    /// Session reliability: launch files name the worker's CGP port
    /// (`CGPAddress`) and send the ticket inside CGP
    /// (`CGPSecurityTicket=On`, `SessionReliabilityTTL` =
    /// `reconnect_window_secs`) when the worker registered a CGP address.
    /// Default `true`.
    pub session_reliability: bool,
    /// The certificate of the listener.
    pub tls: TlsSection,
}

impl GatewaySection {
    /// `public_address` as host and port, `None` when unset.
    ///
    /// Errors: the value is not `host:port` (the message says why).
    pub fn public_host_port(&self) -> Result<Option<(String, u16)>, String> {
        self.public_address
            .as_deref()
            .map(|text| {
                split_host_port(text).ok_or_else(|| {
                    format!(
                        "invalid address {text:?}, expected host:port (e.g. gw.example.com:443)"
                    )
                })
            })
            .transpose()
    }
}

/// Splits `host:port` (`[v6]:port` for IPv6): a host of letters, digits,
/// `-`, `.`, `_` (or a bracketed IPv6 address) and a port 1 to 65535.
pub fn split_host_port(text: &str) -> Option<(String, u16)> {
    let (host, port) = text.rsplit_once(':')?;
    let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
    let valid = if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        inner.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        !host.is_empty()
            && host.len() <= 253
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
    };
    valid.then(|| (host.to_owned(), port))
}

impl Default for GatewaySection {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            plaintext: false,
            detect_timeout_ms: 5_000,
            handshake_timeout_ms: 10_000,
            reconnect_window_secs: 180,
            public_address: None,
            session_reliability: true,
            tls: TlsSection::default(),
        }
    }
}

/// `[gateway.tls]`: both keys or neither.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSection {
    /// PEM certificate chain. Default: none, and a self-signed ECDSA P-256
    /// certificate is generated into `<data_dir>/tls/gateway.crt` on first
    /// start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert: Option<PathBuf>,
    /// PEM private key of `cert`. Default: none (generated into
    /// `<data_dir>/tls/gateway.key`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
}

/// `[admin]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminSection {
    /// Address and port of the internal HTTP listener. Default
    /// `127.0.0.1:8080`; keep it off public networks.
    #[serde(with = "socket_addr_text")]
    pub listen: SocketAddr,
}

impl Default for AdminSection {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
        }
    }
}

/// `[engine]`: the data-plane cores. Mapped by the binary onto the engine's
/// own configuration type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineSection {
    /// Data-plane threads (0..=1024); 0 = one per CPU. Default 0.
    pub cores: usize,
    /// Pin each data-plane thread to its own CPU. Default `false`.
    pub pin: bool,
    /// A core that accepts a connection while another core owns fewer
    /// sessions hands it to that core, once, at accept. Default `true`.
    pub balance_accepts: bool,
    /// I/O driver. Default `auto` (io_uring, falling back to the legacy
    /// driver with a log line when io_uring is unavailable).
    pub driver: Driver,
    /// How bytes are relayed once a session is spliced. Default `auto`.
    pub relay: Relay,
    /// `relay = "auto"`, while a direction still copies (before it proves
    /// bulk and splices): a message within this many milliseconds of the
    /// one before makes the direction hot (an io_uring receive stays
    /// posted with a pooled 16 KiB buffer until it has been quiet for this
    /// to twice this); 0 = never hot (one `recv` + one `send` per message,
    /// no buffer held between messages: least memory for many interactive
    /// sessions). 0..=60000. Default 250.
    pub copy_hot_ms: u32,
    /// Close a session after this many seconds without a byte either way;
    /// 0 = never. Default 0 (ICA and CGP have their own keep-alives).
    pub idle_timeout_secs: u64,
    /// Most concurrent connections per core (>= 1). Default 50000.
    pub max_connections_per_core: u32,
    /// Most connections per core still in detection or handshake, at most
    /// `max_connections_per_core`. Default 4096.
    pub max_pending_handshakes_per_core: u32,
    /// On shutdown, how long established sessions may finish, in seconds
    /// (0..=3600). Default 30.
    pub drain_secs: u64,
    /// Split processes only (`gatehouse dataplane`): how long a new
    /// handshake waits for a control plane that is down (restarting)
    /// before it is refused with SOCKS reply `01` (reason
    /// `control_plane_down`), in milliseconds (0..=10000). Default 0:
    /// refuse at once. Established sessions never wait.
    pub control_plane_wait_ms: u64,
}

impl Default for EngineSection {
    fn default() -> Self {
        Self {
            cores: 0,
            pin: false,
            balance_accepts: true,
            driver: Driver::Auto,
            relay: Relay::Auto,
            copy_hot_ms: 250,
            idle_timeout_secs: 0,
            max_connections_per_core: 50_000,
            max_pending_handshakes_per_core: 4_096,
            drain_secs: 30,
            control_plane_wait_ms: 0,
        }
    }
}

/// `engine.driver`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Driver {
    /// `auto`: io_uring if the kernel allows it, else legacy.
    Auto,
    /// `io-uring`: io_uring or fail to start.
    IoUring,
    /// `legacy`: epoll.
    Legacy,
}

/// `engine.relay`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Relay {
    /// `auto`: `splice` where it works (plaintext both ways), else copy.
    Auto,
    /// `splice`: zero-copy through a pipe; plaintext sessions only.
    Splice,
    /// `copy`: read and write through pooled buffers.
    Copy,
}

/// `[sta]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StaSection {
    /// This gateway's STA ID, written into every ticket it issues: 1 to 16
    /// letters, digits, `_` or `-`. Default `STA01`; every STA of a fleet
    /// needs its own.
    #[serde(with = "sta_id_text")]
    pub id: StaId,
    /// Lifetime of a launch (single-use) ticket in seconds (1..=86400).
    /// Default 100.
    pub ticket_ttl_secs: u64,
    /// Lifetime of a reconnect (refreshable) ticket in seconds (1..=86400),
    /// renewed by each refresh. Default 500.
    pub refreshable_ttl_secs: u64,
    /// Most live tickets at once (1..=10000000); issuing past it fails
    /// until tickets are used or expire. Default 100000.
    pub max_tickets: usize,
    /// Timeout of one call to a remote STA in milliseconds (1..=60000).
    /// Default 2000.
    pub remote_timeout_ms: u64,
    /// Other STAs by STA ID: `STA02 = "http://10.0.0.2:8080/scripts/ctxsta.dll"`.
    /// A ticket naming an ID that is neither `id` nor listed here is
    /// refused. Default: none.
    #[serde(with = "remote_map")]
    pub remote: BTreeMap<StaId, StaUrl>,
}

impl Default for StaSection {
    fn default() -> Self {
        let limits = StaLimits::default();
        Self {
            id: default_sta_id(),
            ticket_ttl_secs: limits.ticket_ttl.as_secs(),
            refreshable_ttl_secs: limits.refreshable_ttl.as_secs(),
            max_tickets: limits.max_tickets,
            remote_timeout_ms: 2_000,
            remote: BTreeMap::new(),
        }
    }
}

impl StaSection {
    /// The lifetimes and bound for [`crate::sta::Sta::new`].
    pub fn limits(&self) -> StaLimits {
        StaLimits {
            ticket_ttl: Duration::from_secs(self.ticket_ttl_secs),
            refreshable_ttl: Duration::from_secs(self.refreshable_ttl_secs),
            max_tickets: self.max_tickets,
        }
    }
}

/// `[auth]`: the gateway's own factors (local users, TOTP devices).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSection {
    /// The gateway's name in authenticator apps: the issuer of the
    /// `otpauth://` URIs of new OTP devices. 1 to 64 characters, no control
    /// characters. Default `Gatehouse`.
    pub issuer: String,
    /// File holding the 32-byte key (64 hex digits) that seals OTP secrets
    /// at rest. Default: none, and a key is generated into
    /// `<data_dir>/otp.key` (mode 0600) on first use. Losing the key makes
    /// every registered device unusable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub otp_key_file: Option<PathBuf>,
}

impl Default for AuthSection {
    fn default() -> Self {
        Self {
            issuer: "Gatehouse".to_owned(),
            otp_key_file: None,
        }
    }
}

/// The URL of a remote STA: `http://host[:port]/path`, validated when the
/// configuration is read. Only `http` for now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct StaUrl(String);

impl StaUrl {
    /// Validates a remote STA URL.
    ///
    /// Errors: a message saying what is expected.
    pub fn parse(text: &str) -> Result<Self, String> {
        let expected =
            || format!("invalid sta url {text:?}, expected http://host[:port]/scripts/ctxsta.dll");
        let uri: axum::http::Uri = text.parse().map_err(|_| expected())?;
        if uri.scheme_str() != Some("http") || uri.host().is_none_or(str::is_empty) {
            return Err(expected());
        }
        Ok(Self(text.to_owned()))
    }

    /// The URL as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for StaUrl {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        Self::parse(&text)
    }
}

impl From<StaUrl> for String {
    fn from(url: StaUrl) -> Self {
        url.0
    }
}

impl fmt::Display for StaUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where the gateway's certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsFiles {
    /// Configured files.
    Configured {
        /// PEM certificate chain.
        cert: PathBuf,
        /// PEM private key.
        key: PathBuf,
    },
    /// Generated (self-signed ECDSA P-256) into the data directory if
    /// missing.
    SelfSigned {
        /// `<data_dir>/tls/gateway.crt`.
        cert: PathBuf,
        /// `<data_dir>/tls/gateway.key`.
        key: PathBuf,
    },
}

/// A configuration that cannot be used. The message names the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_CONFIG_BYTES`].
    #[error("{} is larger than {MAX_CONFIG_BYTES} bytes", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// Not valid TOML.
    #[error("invalid toml at line {line}, column {column}: {message}")]
    Syntax {
        /// 1-based line.
        line: usize,
        /// 1-based column (in characters).
        column: usize,
        /// The parser's message.
        message: String,
    },
    /// A key that does not exist, or a value of the wrong type or form.
    #[error("{key}: {message}{}", location.map(|(l, c)| format!(" (line {l}, column {c})")).unwrap_or_default())]
    Key {
        /// The dotted key, e.g. `gateway.listen`.
        key: String,
        /// What is wrong and what is expected.
        message: String,
        /// Line and column of the value, when known.
        location: Option<(usize, usize)>,
    },
    /// A value of the right form that is not allowed (out of range,
    /// inconsistent with another key).
    #[error("{key}: {message}")]
    Invalid {
        /// The dotted key.
        key: String,
        /// What is wrong and what is expected.
        message: String,
    },
}

impl Config {
    /// Reads, parses and validates the file at `path`.
    ///
    /// Errors: [`ConfigError`], naming the key.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let read_error = |source| ConfigError::Read {
            path: path.to_owned(),
            source,
        };
        let len = std::fs::metadata(path).map_err(read_error)?.len();
        if len > MAX_CONFIG_BYTES {
            return Err(ConfigError::TooLarge {
                path: path.to_owned(),
            });
        }
        let text = std::fs::read_to_string(path).map_err(read_error)?;
        Self::from_toml(&text)
    }

    /// Parses and validates a configuration text. Keys not given take their
    /// defaults.
    ///
    /// Errors: [`ConfigError::Syntax`], [`ConfigError::Key`],
    /// [`ConfigError::Invalid`].
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let deserializer = toml::Deserializer::parse(text).map_err(|error| {
            let (line, column) = error
                .span()
                .map_or((1, 1), |span| line_column(text, span.start));
            ConfigError::Syntax {
                line,
                column,
                message: error.message().to_owned(),
            }
        })?;
        let config: Self = serde_path_to_error::deserialize(deserializer).map_err(|error| {
            let key = match error.path().to_string() {
                path if path == "." => "(top level)".to_owned(),
                path => path,
            };
            let inner = error.into_inner();
            ConfigError::Key {
                key,
                message: readable(inner.message()),
                location: inner.span().map(|span| line_column(text, span.start)),
            }
        })?;
        config.validate()?;
        Ok(config)
    }

    /// The configuration as TOML (every key; unset optional paths left out).
    pub fn to_toml(&self) -> String {
        // Serializing these plain structs cannot fail; an empty string would
        // be refused by nothing, so fall back to it rather than panic.
        toml::to_string(self).unwrap_or_default()
    }

    /// Checks the rules a well-typed value must also follow (ranges, pairs
    /// of keys). [`Config::load`] calls it; call it again after applying
    /// command-line overrides.
    ///
    /// Errors: [`ConfigError::Invalid`] naming the first bad key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: String| {
            Err(ConfigError::Invalid {
                key: key.to_owned(),
                message,
            })
        };
        if self.data_dir.as_os_str().is_empty() {
            return invalid("data_dir", "must not be empty".to_owned());
        }
        let gateway = &self.gateway;
        in_range(
            "gateway.detect_timeout_ms",
            gateway.detect_timeout_ms,
            1,
            60_000,
        )?;
        in_range(
            "gateway.handshake_timeout_ms",
            gateway.handshake_timeout_ms,
            1,
            300_000,
        )?;
        in_range(
            "gateway.reconnect_window_secs",
            gateway.reconnect_window_secs,
            1,
            86_400,
        )?;
        if let Err(message) = gateway.public_host_port() {
            return invalid("gateway.public_address", message);
        }
        match (&gateway.tls.cert, &gateway.tls.key) {
            (Some(_), None) => {
                return invalid(
                    "gateway.tls.key",
                    "required when gateway.tls.cert is set".to_owned(),
                );
            }
            (None, Some(_)) => {
                return invalid(
                    "gateway.tls.cert",
                    "required when gateway.tls.key is set".to_owned(),
                );
            }
            (Some(_), Some(_)) if gateway.plaintext => {
                return invalid(
                    "gateway.tls",
                    "a plaintext listener takes no certificate".to_owned(),
                );
            }
            _ => {}
        }
        if self.admin.listen == gateway.listen && gateway.listen.port() != 0 {
            return invalid(
                "admin.listen",
                format!("same address as gateway.listen ({})", gateway.listen),
            );
        }
        let engine = &self.engine;
        in_range("engine.cores", engine.cores as u64, 0, 1_024)?;
        in_range(
            "engine.max_connections_per_core",
            u64::from(engine.max_connections_per_core),
            1,
            u64::from(u32::MAX),
        )?;
        in_range(
            "engine.max_pending_handshakes_per_core",
            u64::from(engine.max_pending_handshakes_per_core),
            1,
            u64::from(engine.max_connections_per_core),
        )?;
        in_range("engine.drain_secs", engine.drain_secs, 0, 3_600)?;
        in_range(
            "engine.copy_hot_ms",
            u64::from(engine.copy_hot_ms),
            0,
            60_000,
        )?;
        in_range(
            "engine.control_plane_wait_ms",
            engine.control_plane_wait_ms,
            0,
            10_000,
        )?;
        let sta = &self.sta;
        if sta.id.is_empty() {
            return invalid("sta.id", "must not be empty".to_owned());
        }
        in_range("sta.ticket_ttl_secs", sta.ticket_ttl_secs, 1, 86_400)?;
        in_range(
            "sta.refreshable_ttl_secs",
            sta.refreshable_ttl_secs,
            1,
            86_400,
        )?;
        in_range("sta.max_tickets", sta.max_tickets as u64, 1, 10_000_000)?;
        in_range("sta.remote_timeout_ms", sta.remote_timeout_ms, 1, 60_000)?;
        for id in sta.remote.keys() {
            let key = format!("sta.remote.{id}");
            if id.is_empty() {
                return invalid(&key, "the sta id must not be empty".to_owned());
            }
            if *id == sta.id {
                return invalid(&key, "is this gateway's own sta.id".to_owned());
            }
        }
        let issuer = &self.auth.issuer;
        if issuer.is_empty() || issuer.chars().count() > 64 || issuer.chars().any(char::is_control)
        {
            return invalid(
                "auth.issuer",
                format!(
                    "invalid issuer {issuer:?}, expected 1 to 64 characters without control characters"
                ),
            );
        }
        self.ldap.validate()?;
        self.radius.validate()?;
        self.push.validate()?;
        self.login.validate(&self.radius)?;
        self.broker
            .validate()
            .map_err(|(key, message)| ConfigError::Invalid { key, message })?;
        self.policy
            .validate()
            .map_err(|(key, message)| ConfigError::Invalid { key, message })?;
        self.server_to_client
            .validate()
            .map_err(|(key, message)| ConfigError::Invalid { key, message })?;
        Ok(())
    }

    /// Where the gateway certificate and key are read from.
    pub fn tls_files(&self) -> TlsFiles {
        match (&self.gateway.tls.cert, &self.gateway.tls.key) {
            (Some(cert), Some(key)) => TlsFiles::Configured {
                cert: cert.clone(),
                key: key.clone(),
            },
            _ => {
                let dir = self.data_dir.join("tls");
                TlsFiles::SelfSigned {
                    cert: dir.join("gateway.crt"),
                    key: dir.join("gateway.key"),
                }
            }
        }
    }
}

/// Loads and validates the configuration file at `path`; see
/// [`Config::load`].
///
/// Errors: [`ConfigError`].
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    Config::load(path)
}

/// What `gatehouse check-config FILE` runs: `Ok` for a usable file, else
/// the error to print before exiting with [`EXIT_CONFIG`].
///
/// Errors: [`ConfigError`].
pub fn check_config(path: &Path) -> Result<(), ConfigError> {
    Config::load(path).map(drop)
}

pub(crate) fn in_range(key: &str, value: u64, min: u64, max: u64) -> Result<(), ConfigError> {
    if (min..=max).contains(&value) {
        return Ok(());
    }
    Err(ConfigError::Invalid {
        key: key.to_owned(),
        message: format!("{value} is out of range, expected {min} to {max}"),
    })
}

/// A password or shared secret written in the configuration: serialized
/// as the plain string, never shown by `Debug`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Reads a secret from the file at `path` (`radius.secret_file`,
/// `ldap.bind_password_file`): the whole file less one trailing line end.
/// Called when a client is built, not by [`Config::validate`], so a
/// `check-config` on another machine does not need the file.
///
/// Errors: [`ConfigError::Read`], [`ConfigError::TooLarge`] (past
/// [`MAX_CONFIG_BYTES`]),
/// [`ConfigError::Invalid`] naming `key` for an empty secret.
pub fn read_secret_file(key: &str, path: &Path) -> Result<Secret, ConfigError> {
    let read_error = |source| ConfigError::Read {
        path: path.to_owned(),
        source,
    };
    if std::fs::metadata(path).map_err(read_error)?.len() > MAX_CONFIG_BYTES {
        return Err(ConfigError::TooLarge {
            path: path.to_owned(),
        });
    }
    let text = std::fs::read_to_string(path).map_err(read_error)?;
    let text = text
        .strip_suffix('\n')
        .map(|rest| rest.strip_suffix('\r').unwrap_or(rest))
        .unwrap_or(&text);
    if text.is_empty() {
        return Err(ConfigError::Invalid {
            key: key.to_owned(),
            message: format!("{} is empty", path.display()),
        });
    }
    Ok(Secret::new(text))
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |at| at + 1);
    let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
    (line, column)
}

/// serde's "unknown field `x`, expected ..." says "field"; the user wrote a
/// key.
fn readable(message: &str) -> String {
    if let Some(rest) = message.strip_prefix("unknown field ") {
        if let Some((_, expected)) = rest.split_once(", ") {
            return format!("unknown key, {expected}");
        }
        return "unknown key".to_owned();
    }
    message.to_owned()
}

fn default_sta_id() -> StaId {
    #[expect(clippy::expect_used, reason = "a constant, not input")]
    // Invariant: "STA01" is five letters and digits, a valid STA ID.
    StaId::decode(b"STA01").expect("STA01 is a valid sta id")
}

/// `SocketAddr` as `"IP:PORT"` with an error that quotes the value.
mod socket_addr_text {
    use std::net::SocketAddr;

    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub(super) fn serialize<S: Serializer>(
        addr: &SocketAddr,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_str(addr)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<SocketAddr, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(|_| {
            D::Error::custom(format!(
                "invalid socket address {text:?}, expected IP:PORT such as 127.0.0.1:8443 or [::1]:8443"
            ))
        })
    }
}

/// `StaId` as a string.
mod sta_id_text {
    use gatehouse_wire::ticket::StaId;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub(super) fn serialize<S: Serializer>(id: &StaId, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(id.as_str())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<StaId, D::Error> {
        let text = String::deserialize(deserializer)?;
        StaId::decode(text.as_bytes())
            .map_err(|error| D::Error::custom(format!("invalid sta id {text:?}: {error}")))
    }
}

/// `[sta.remote]`: STA ID keys, URL values.
mod remote_map {
    use std::collections::BTreeMap;

    use gatehouse_wire::ticket::StaId;
    use serde::ser::SerializeMap;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    use super::StaUrl;

    pub(super) fn serialize<S: Serializer>(
        map: &BTreeMap<StaId, StaUrl>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let mut out = serializer.serialize_map(Some(map.len()))?;
        for (id, url) in map {
            out.serialize_entry(id.as_str(), url.as_str())?;
        }
        out.end()
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<BTreeMap<StaId, StaUrl>, D::Error> {
        let raw = BTreeMap::<String, StaUrl>::deserialize(deserializer)?;
        raw.into_iter()
            .map(|(key, url)| {
                let id = StaId::decode(key.as_bytes()).map_err(|error| {
                    D::Error::custom(format!("invalid sta id {key:?}: {error}"))
                })?;
                Ok((id, url))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
