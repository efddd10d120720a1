//! The Secure Ticket Authority (STA): issues, redeems, refreshes and revokes
//! the one-time tickets that let a client reach the worker a launch chose
//! (PROTOCOLS.md §3; the exact XML schema is in docs/STA.md).
//!
//! - [`store`]: the sans-IO ticket table ([`Sta`]). Time and randomness are
//!   injected; it never reads a clock or a global RNG.
//! - [`xml`]: the `CtxSTAProtocol` 4.0 codec, both directions (the gateway
//!   answers as an STA and asks remote STAs as a client).
//! - [`http`]: the `POST /scripts/ctxsta.dll` endpoint, the HTTP client for a
//!   remote STA ([`http::RemoteSta`]) and the [`http::StaRouter`] that sends a
//!   ticket to the STA its `STA_ID` names.
//!
//! This module refuses to hand out a ticket secret anywhere but the wire:
//! errors and logs carry the masked form of [`StaTicket`] only.

pub mod http;
pub mod store;
pub mod xml;

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv6Addr;
use std::str::FromStr;
use std::time::Duration;

use gatehouse_wire::ticket::StaTicket;

pub use store::{Sta, StaLimits};

/// Longest host name accepted in a [`WorkerAddr`] (RFC 1035 limit).
pub const MAX_HOST_LEN: usize = 253;

/// Most bytes a [`TicketData`] may hold, counting every name and value
/// (see [`TicketData::size`]). Bounds the memory of the ticket table:
/// `max_tickets` × this.
pub const MAX_TICKET_DATA_BYTES: usize = 4_096;

/// Most entries in [`TicketData::values`].
pub const MAX_EXTRA_VALUES: usize = 32;

/// Whether a ticket is spent by its first redemption or lives until it is
/// refreshed, revoked or expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TicketKind {
    /// A launch ticket: redeemable once, plain lifetime (100 s by default).
    SingleUse,
    /// A reconnect (session reliability) ticket: redeemable any number of
    /// times while alive, reissued by refresh, refreshable lifetime (500 s by
    /// default).
    Refreshable,
}

/// What an STA answers when a ticket is issued or refreshed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    /// The new ticket. Its wire form ([`StaTicket::to_text`]) is the secret.
    pub ticket: StaTicket,
    /// How long the ticket lives from the moment it was issued; a holder of a
    /// refreshable ticket refreshes it before this runs out.
    pub lifetime: Duration,
}

/// What a successful redemption yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redeemed {
    /// The data the ticket was issued with.
    pub data: TicketData,
    /// Whether the ticket was a launch ticket (now spent) or a reconnect
    /// ticket (still alive). A caller that expects one kind must refuse the
    /// other: a reconnect ticket is not a launch ticket.
    pub kind: TicketKind,
}

/// The data a ticket stands for: where the worker is and who the session is
/// for. Set by whoever requests the ticket (the store front), handed back on
/// redemption.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketData {
    /// The worker's ICA address (`ICAAddress`).
    pub ica_address: WorkerAddr,
    /// The worker's CGP (session reliability) address (`CGPAddress`), if the
    /// launch may use CGP.
    pub cgp_address: Option<CgpAddress>,
    /// Connection information (`XData`).
    pub xdata: Option<XData>,
    /// Every other `<Value name="...">` of the request, by name, kept and
    /// handed back unchanged.
    pub values: BTreeMap<String, String>,
}

impl TicketData {
    /// Ticket data with only an ICA address.
    pub fn new(ica_address: WorkerAddr) -> Self {
        Self {
            ica_address,
            cgp_address: None,
            xdata: None,
            values: BTreeMap::new(),
        }
    }

    /// The address to connect for CGP, with `*` resolved to the ICA
    /// address's host; `None` when the ticket carries no CGP address.
    pub fn cgp_target(&self) -> Option<WorkerAddr> {
        match self.cgp_address.as_ref()? {
            CgpAddress::SameHost { port } => Some(WorkerAddr {
                host: self.ica_address.host.clone(),
                port: *port,
            }),
            CgpAddress::Addr(addr) => Some(addr.clone()),
        }
    }

    /// Approximate bytes held: the sum of the lengths of every host, value
    /// and name. Compared against [`MAX_TICKET_DATA_BYTES`].
    pub fn size(&self) -> usize {
        let xdata = self.xdata.as_ref().map_or(0, XData::size);
        let values: usize = self.values.iter().map(|(k, v)| k.len() + v.len()).sum();
        self.ica_address.host.len()
            + self.cgp_address.as_ref().map_or(0, CgpAddress::size)
            + xdata
            + values
    }

    /// Checks the bounds: [`MAX_TICKET_DATA_BYTES`] and [`MAX_EXTRA_VALUES`].
    ///
    /// Errors: [`StaError::DataTooLarge`].
    pub fn check_bounds(&self) -> Result<(), StaError> {
        let bytes = self.size();
        if bytes > MAX_TICKET_DATA_BYTES || self.values.len() > MAX_EXTRA_VALUES {
            return Err(StaError::DataTooLarge { bytes });
        }
        Ok(())
    }
}

/// Connection information carried as `XData`. Every field is optional; the
/// STA stores it and hands it back, it does not interpret it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct XData {
    /// The worker's name or address as the broker knows it.
    pub server: Option<String>,
    /// The user the session is for.
    pub user: Option<String>,
    /// The user's domain.
    pub domain: Option<String>,
    /// The published application or desktop launched.
    pub app: Option<String>,
    /// The protocol the client will use (`ICA`, `CGP`, ...).
    pub protocol: Option<String>,
}

impl XData {
    fn size(&self) -> usize {
        [
            &self.server,
            &self.user,
            &self.domain,
            &self.app,
            &self.protocol,
        ]
        .iter()
        .map(|field| field.as_ref().map_or(0, String::len))
        .sum()
    }
}

/// A worker's `host:port`: a DNS name, an IPv4 address or a bracketed IPv6
/// address, and a non-zero port. Resolution happens when connecting.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WorkerAddr {
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// TCP port, never 0.
    pub port: u16,
}

impl WorkerAddr {
    /// Parses `host:port` (`[v6]:port` for IPv6).
    ///
    /// Errors: [`AddrError`] naming what is wrong (no port, port not a
    /// non-zero `u16`, empty or over-long host, a host byte outside
    /// letters, digits, `.`, `-` and `_`, a bad bracketed IPv6 address).
    pub fn decode(text: &str) -> Result<Self, AddrError> {
        let (host, port) = split_host_port(text)?;
        if host == "*" {
            return Err(AddrError::BadHost);
        }
        Ok(Self {
            host: host.to_owned(),
            port,
        })
    }
}

impl fmt::Display for WorkerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl FromStr for WorkerAddr {
    type Err = AddrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::decode(s)
    }
}

/// The `CGPAddress` value: `host:port`, or `*:port` meaning "the host of the
/// ICA address" (the form `.ica` files use).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CgpAddress {
    /// `*:port`.
    SameHost {
        /// TCP port, never 0.
        port: u16,
    },
    /// An explicit address.
    Addr(WorkerAddr),
}

impl CgpAddress {
    /// Parses `*:port` or `host:port`. Errors as [`WorkerAddr::decode`].
    pub fn decode(text: &str) -> Result<Self, AddrError> {
        let (host, port) = split_host_port(text)?;
        if host == "*" {
            return Ok(Self::SameHost { port });
        }
        Ok(Self::Addr(WorkerAddr {
            host: host.to_owned(),
            port,
        }))
    }

    fn size(&self) -> usize {
        match self {
            Self::SameHost { .. } => 1,
            Self::Addr(addr) => addr.host.len(),
        }
    }
}

impl fmt::Display for CgpAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::SameHost { port } => write!(f, "*:{port}"),
            Self::Addr(addr) => addr.fmt(f),
        }
    }
}

/// Why a `host:port` text was refused. The address is not secret, but the
/// error leaves it out; the caller names the field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AddrError {
    /// No `:port` suffix.
    #[error("missing :port")]
    MissingPort,
    /// The port is not a number from 1 to 65535.
    #[error("port is not a number from 1 to 65535")]
    BadPort,
    /// The host is empty, too long, or has a byte outside letters, digits,
    /// `.`, `-`, `_`.
    #[error("host is empty, longer than 253 bytes or not a name or ip address")]
    BadHost,
}

/// Why the STA refused an operation. Never contains a ticket secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StaError {
    /// No such ticket (never issued here, swept after expiry, or forgotten
    /// because the tombstone table was full).
    #[error("unknown ticket")]
    UnknownTicket,
    /// The ticket's lifetime is over.
    #[error("ticket expired")]
    Expired,
    /// The ticket was already redeemed (single-use) or refreshed into a new
    /// one (refreshable).
    #[error("ticket already used")]
    Reused,
    /// The ticket was revoked.
    #[error("ticket revoked")]
    Revoked,
    /// The ticket names another STA.
    #[error("ticket names another sta")]
    WrongAuthority,
    /// The table already holds `max_tickets` live tickets.
    #[error("ticket table full")]
    Full,
    /// Refresh of a single-use ticket.
    #[error("ticket is not refreshable")]
    NotRefreshable,
    /// The ticket data exceeds [`MAX_TICKET_DATA_BYTES`] or
    /// [`MAX_EXTRA_VALUES`].
    #[error("ticket data of {bytes} bytes or too many values exceeds the limit")]
    DataTooLarge {
        /// Bytes the data holds, per [`TicketData::size`].
        bytes: usize,
    },
    /// The random source failed; no ticket was issued.
    #[error("random source failed")]
    Random,
}

/// Who is to blame for a refusal: a log field and a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    /// The client presented a bad, unknown or spent ticket.
    Client,
    /// The control plane (or a remote STA it asked) could not answer.
    ControlPlane,
}

impl Fault {
    /// The label used in logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Client => "client",
            Self::ControlPlane => "control_plane",
        }
    }
}

impl StaError {
    /// Who is at fault when this error refuses a ticket.
    pub fn fault(self) -> Fault {
        match self {
            Self::Full | Self::Random | Self::DataTooLarge { .. } => Fault::ControlPlane,
            Self::UnknownTicket
            | Self::Expired
            | Self::Reused
            | Self::Revoked
            | Self::WrongAuthority
            | Self::NotRefreshable => Fault::Client,
        }
    }
}

fn split_host_port(text: &str) -> Result<(&str, u16), AddrError> {
    let (host, port_text) = text.rsplit_once(':').ok_or(AddrError::MissingPort)?;
    // `u16::from_str` also takes a leading `+`; a port is digits only.
    let port = match port_text.parse::<u16>() {
        Ok(port) if port != 0 && port_text.bytes().all(|b| b.is_ascii_digit()) => port,
        _ => return Err(AddrError::BadPort),
    };
    if let Some(inner) = host.strip_prefix('[') {
        let inner = inner.strip_suffix(']').ok_or(AddrError::BadHost)?;
        inner.parse::<Ipv6Addr>().map_err(|_| AddrError::BadHost)?;
        return Ok((inner, port));
    }
    let valid_char = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_');
    if host == "*"
        || (!host.is_empty() && host.len() <= MAX_HOST_LEN && host.bytes().all(valid_char))
    {
        Ok((host, port))
    } else {
        Err(AddrError::BadHost)
    }
}

#[cfg(test)]
pub(crate) mod tests;
