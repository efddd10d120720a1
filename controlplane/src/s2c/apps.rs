//! Server-to-client apps: which back-end servers (CIDRs) may reach which
//! client ports. Only TCP is carried; a UDP app is refused at load.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// The transport of an app.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP, the only one carried.
    #[default]
    Tcp,
    /// UDP: accepted by the parser only to be refused with a clear message.
    Udp,
}

/// `[[server_to_client.apps]]`: one server-to-client app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    /// Unique name (1-64 of `A-Z a-z 0-9 - _ .`); the policy's `resources`
    /// name it.
    pub name: String,
    /// Free text for administrators. Default empty.
    #[serde(default)]
    pub description: String,
    /// The back-end servers' address ranges (CIDR) that may connect.
    #[schema(value_type = Vec<String>)]
    pub servers: Vec<IpNet>,
    /// The client ports they may connect to (1-65535).
    pub ports: Vec<u16>,
    /// `tcp` (default). `udp` is refused: only TCP is supported.
    #[serde(default)]
    pub protocol: Protocol,
}

impl AppConfig {
    /// Checks the app at `server_to_client.apps[index]`.
    pub(crate) fn validate(&self, index: usize) -> Result<(), (String, String)> {
        let key = |field: &str| format!("server_to_client.apps[{index}].{field}");
        crate::policy::check_name(key("name"), &self.name)?;
        if self.protocol == Protocol::Udp {
            return Err((
                key("protocol"),
                format!(
                    "app {:?}: udp is not supported, server-to-client apps carry tcp only",
                    self.name
                ),
            ));
        }
        if self.servers.is_empty() {
            return Err((
                key("servers"),
                "at least one server address range (CIDR) is required".into(),
            ));
        }
        if self.ports.is_empty() {
            return Err((key("ports"), "at least one client port is required".into()));
        }
        if self.ports.contains(&0) {
            return Err((
                key("ports"),
                "port 0 is not a port, expected 1-65535".into(),
            ));
        }
        Ok(())
    }

    /// Whether `server` is inside one of the app's server ranges (an
    /// IPv4-mapped IPv6 address counts as IPv4).
    pub fn holds_server(&self, server: IpAddr) -> bool {
        let server = match server {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(server, IpAddr::V4),
            IpAddr::V4(_) => server,
        };
        self.servers.iter().any(|net| net.contains(&server))
    }

    /// Whether `port` is one of the app's client ports.
    pub fn holds_port(&self, port: u16) -> bool {
        self.ports.contains(&port)
    }
}

/// The client ports of every app, sorted, each once: what a connector
/// listens on for each active IIP.
pub fn listen_ports(apps: &[AppConfig]) -> Vec<u16> {
    let mut ports: Vec<u16> = apps.iter().flat_map(|a| a.ports.iter().copied()).collect();
    ports.sort_unstable();
    ports.dedup();
    ports
}
