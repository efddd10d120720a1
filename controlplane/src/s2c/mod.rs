//! Server-to-client access (DESIGN.md §2B, seed 000): client internal IP
//! (IIP) pools, server-to-client apps, and the flow decision a connector
//! asks for when a back-end server opens a TCP connection to IIP:port.
//!
//! - [`pools`]: the `[[server_to_client.pools]]` and the lease table (lease
//!   on connect, release on disconnect, stickiness, exhaustion, never one
//!   IIP to two users at once). Sans-IO: every operation takes `now`.
//! - [`apps`]: the `[[server_to_client.apps]]` (server CIDRs, client ports,
//!   TCP only).
//! - [`decide`]: lease -> user -> apps -> access policy -> Allow / Deny with
//!   a reason; a pure function.
//! - [`leases`]: the leases kept in the store (`iip_leases`), whose primary
//!   key on the IIP makes double leasing impossible even for a fleet.
//! - [`service`]: [`service::ServerToClient`], the async front the web side
//!   and the channel task call; it logs every decision.
//! - [`dns`]: the DNS responder for the machine names clients register
//!   (`dns_listen`), with its sans-IO codec.
//!
//! What it refuses: UDP apps (refused at load, naming the key), a lease
//! for a user no pool serves, a second user on a leased IIP.

pub mod apps;
pub mod decide;
pub mod dns;
pub mod leases;
pub mod pools;
pub mod service;

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

pub use apps::{AppConfig, Protocol};
pub use pools::PoolConfig;

/// Most pools and most apps in the configuration (each).
pub const MAX_ENTRIES: usize = 1_000;

/// `[server_to_client]`: stickiness, pools and apps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerToClientSection {
    /// How long after a release a user still gets their previous IIP back
    /// (and no one else gets it), in days (0..=3650). Default 15.
    pub stickiness_days: u32,
    /// The connector name of the connector role `gatehouse run` plays on
    /// its own cores (what pools' `connectors` name); the cores take the
    /// role only when a pool may be owned by it. Default `gateway`.
    pub connector_name: String,
    /// How long an access client's lost control connection keeps its lease
    /// (and listeners) before the IIP is released, in seconds (1..=86400).
    /// Default 60.
    pub client_grace_secs: u64,
    /// Where the DNS responder for registered client names listens (UDP,
    /// e.g. `127.0.0.1:5353`); absent: no responder (names still resolve
    /// with `GET /access/v1/resolve`). Default absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_listen: Option<std::net::SocketAddr>,
    /// `[[server_to_client.pools]]`: the IIP pools.
    pub pools: Vec<PoolConfig>,
    /// `[[server_to_client.apps]]`: the server-to-client apps.
    pub apps: Vec<AppConfig>,
    /// `[[server_to_client.connectors]]`: the `gatehouse connector`
    /// processes this control plane serves, each on its own segment.
    pub connectors: Vec<ConnectorEntry>,
}

/// One `[[server_to_client.connectors]]`: a `gatehouse connector --shm SHM
/// --name NAME` process. The control plane creates the segment, accepts
/// the connector's link on `SHM.link`, and routes to it the listen orders
/// of the pools it owns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectorEntry {
    /// The connector's name (what pools' `connectors` name); 1 to 64 of
    /// `[A-Za-z0-9._-]`, not `connector_name`.
    pub name: String,
    /// The shared-memory segment: `NAME` under `/dev/shm`, or `DIR/NAME`
    /// (as `gatehouse connector --shm` names it).
    pub shm: String,
    /// The connector's cores (the segment's ring pairs, 1..=256); its
    /// `--cores` must be the same. Default 1.
    #[serde(default = "one_core")]
    pub cores: usize,
}

fn one_core() -> usize {
    1
}

impl Default for ServerToClientSection {
    fn default() -> Self {
        Self {
            stickiness_days: 15,
            connector_name: "gateway".to_owned(),
            client_grace_secs: 60,
            dns_listen: None,
            pools: Vec::new(),
            apps: Vec::new(),
            connectors: Vec::new(),
        }
    }
}

impl ServerToClientSection {
    /// Checks names, CIDRs, ports and protocols. Errors name the key, e.g.
    /// `server_to_client.apps[1].protocol`, and say what is expected.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.stickiness_days > 3_650 {
            return Err((
                "server_to_client.stickiness_days".into(),
                format!("{} is outside 0..=3650 days", self.stickiness_days),
            ));
        }
        if !(1..=86_400).contains(&self.client_grace_secs) {
            return Err((
                "server_to_client.client_grace_secs".into(),
                format!("{} is outside 1..=86400 seconds", self.client_grace_secs),
            ));
        }
        crate::policy::check_name(
            "server_to_client.connector_name".into(),
            &self.connector_name,
        )?;
        if self.pools.len() > MAX_ENTRIES || self.apps.len() > MAX_ENTRIES {
            return Err((
                "server_to_client".into(),
                format!("at most {MAX_ENTRIES} pools and {MAX_ENTRIES} apps"),
            ));
        }
        let mut names = BTreeSet::new();
        for (index, pool) in self.pools.iter().enumerate() {
            pool.validate(index)?;
            if !names.insert(pool.name.to_ascii_lowercase()) {
                return Err((
                    format!("server_to_client.pools[{index}].name"),
                    format!("duplicate pool name {:?}", pool.name),
                ));
            }
            for (other_index, other) in self.pools.iter().enumerate().take(index) {
                if pool.cidr.contains(&other.cidr.network())
                    || other.cidr.contains(&pool.cidr.network())
                {
                    return Err((
                        format!("server_to_client.pools[{index}].cidr"),
                        format!(
                            "{} overlaps server_to_client.pools[{other_index}].cidr {}",
                            pool.cidr, other.cidr
                        ),
                    ));
                }
            }
        }
        self.validate_connectors()?;
        let mut names = BTreeSet::new();
        for (index, app) in self.apps.iter().enumerate() {
            app.validate(index)?;
            if !names.insert(app.name.to_ascii_lowercase()) {
                return Err((
                    format!("server_to_client.apps[{index}].name"),
                    format!("duplicate app name {:?}", app.name),
                ));
            }
        }
        Ok(())
    }
}

impl ServerToClientSection {
    /// Checks `[[server_to_client.connectors]]`: valid and unique names
    /// other than `connector_name`, valid and unique segments, cores
    /// within the channel's limit.
    fn validate_connectors(&self) -> Result<(), (String, String)> {
        if self.connectors.len() > MAX_CONNECTORS {
            return Err((
                "server_to_client.connectors".into(),
                format!("at most {MAX_CONNECTORS} connectors"),
            ));
        }
        let mut names = BTreeSet::new();
        let mut segments = BTreeSet::new();
        for (index, connector) in self.connectors.iter().enumerate() {
            let key = |field: &str| format!("server_to_client.connectors[{index}].{field}");
            crate::policy::check_name(key("name"), &connector.name)?;
            if connector.name.eq_ignore_ascii_case(&self.connector_name) {
                return Err((
                    key("name"),
                    format!(
                        "{:?} is the gateway's own connector (server_to_client.connector_name)",
                        connector.name
                    ),
                ));
            }
            if !names.insert(connector.name.to_ascii_lowercase()) {
                return Err((
                    key("name"),
                    format!("duplicate connector name {:?}", connector.name),
                ));
            }
            let segment = crate::split::segment_name(&connector.shm)
                .map_err(|error| (key("shm"), error.source.to_string()))?;
            if !segments.insert(segment.segment_path()) {
                return Err((
                    key("shm"),
                    format!("segment {:?} is another connector's", connector.shm),
                ));
            }
            if !(1..=usize::from(gatehouse_channel::MAX_CORES)).contains(&connector.cores) {
                return Err((
                    key("cores"),
                    format!(
                        "{} is outside 1..={}",
                        connector.cores,
                        gatehouse_channel::MAX_CORES
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The connector entry named `name` (ASCII case ignored).
    pub fn connector(&self, name: &str) -> Option<&ConnectorEntry> {
        self.connectors
            .iter()
            .find(|connector| connector.name.eq_ignore_ascii_case(name))
    }

    /// Whether the gateway's own cores play the connector role: some pool
    /// may be owned by `connector_name` (a pool naming no connector is
    /// anyone's).
    pub fn gateway_is_connector(&self) -> bool {
        self.pools
            .iter()
            .any(|pool| pool.owned_by(&self.connector_name))
    }
}

/// Most `[[server_to_client.connectors]]`.
pub const MAX_CONNECTORS: usize = 64;

/// Whether `name` may name a pool, an app or a connector: 1 to 64 of
/// `[A-Za-z0-9._-]` (the policy's rule-name alphabet).
pub fn valid_name(name: &str) -> bool {
    crate::policy::valid_name(name)
}

#[cfg(test)]
mod tests;
