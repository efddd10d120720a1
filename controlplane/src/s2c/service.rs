//! [`ServerToClient`]: the lease table, the apps and the policies behind
//! one handle, with the store written through and every decision logged.
//!
//! Call order: [`ServerToClient::open`] once (reads the stored leases),
//! then `connect` / `disconnect` from the access-client endpoints and
//! `decide` from the connector's flow requests, in any order and from any
//! task. The table is behind a `parking_lot` mutex held only for the
//! in-memory step (never across an `.await`); the store write follows, and
//! a failed write undoes the in-memory step.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gatehouse_channel::{FlowClosed, FlowDenyReason, FlowId, FlowRequest, FlowVerdict};
use parking_lot::{Mutex, RwLock};
use serde::Serialize;
use tokio::sync::{broadcast, mpsc};

use super::ServerToClientSection;
use super::apps::{AppConfig, listen_ports};
use super::decide::{DenyReason, FlowDecision, FlowQuery, UserContext, decide};
use super::leases;
use super::pools::{Lease, LeaseError, LeaseTable, Leased, PoolConfig, PoolStatus, status};
use crate::policy::SharedPolicies;
use crate::sta::http::SharedSta;
use crate::sta::{TicketData, TicketKind, WorkerAddr};
use crate::store::{Store, StoreError};

/// The ticket value that names the flow a rendezvous ticket is for.
pub const FLOW_VALUE: &str = "GatehouseFlow";

/// Events queued per access client before a slow one misses flows.
const CLIENT_BACKLOG: usize = 256;

/// Most flows allowed and not yet reported closed; one more is refused
/// (`overloaded`), so cores that never report cannot grow the table.
pub const MAX_OPEN_FLOWS: usize = 100_000;

/// What an access client's control connection is told (one JSON line
/// each).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum ClientEvent {
    /// Connect local `port` to a data connection for `flow`, presenting
    /// `ticket` as the SOCKS5 CONNECT domain.
    Flow {
        /// The flow id.
        flow: u64,
        /// The client port the server connected to.
        port: u16,
        /// The one-time STA ticket of the data connection.
        ticket: String,
    },
}

/// A flow the control plane allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FlowRecord {
    /// The connector (lowercase) that relays it.
    connector: String,
    user: String,
    app: String,
    server: SocketAddr,
    local: SocketAddr,
}

/// An access client's control connection.
#[derive(Debug)]
struct ClientSlot {
    id: u64,
    events: mpsc::Sender<ClientEvent>,
}

/// Commands for the connectors, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectorCommand {
    /// Accept back-end connections on these addresses (an IIP x every app
    /// port).
    Listen(Vec<SocketAddr>),
    /// Stop accepting on these addresses.
    Unlisten(Vec<SocketAddr>),
    /// Close every flow relayed to this IIP (its user logged out).
    CloseFlows(Ipv4Addr),
}

/// A [`ConnectorCommand`] about the IIPs of one pool, and the connectors
/// that own that pool (the only ones it goes to).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectorOrder {
    /// What to do.
    pub command: ConnectorCommand,
    /// The pool's `connectors`; empty: every connector owns it.
    pub owners: Arc<[String]>,
}

impl ConnectorOrder {
    /// Whether the connector named `connector` owns the order's pool (see
    /// [`PoolConfig::owned_by`]).
    pub fn is_for(&self, connector: &str) -> bool {
        self.owners.is_empty()
            || self
                .owners
                .iter()
                .any(|owner| owner.eq_ignore_ascii_case(connector))
    }
}

/// Why a connect failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// No IIP: no pool, or the pool is exhausted.
    #[error(transparent)]
    Lease(#[from] LeaseError),
    /// The store refused the lease.
    #[error("cannot store the lease")]
    Store(#[source] StoreError),
}

/// The server-to-client state of a control plane; cheap to clone.
#[derive(Debug, Clone)]
pub struct ServerToClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The apps and their client ports; replaced whole by
    /// [`ServerToClient::replace_apps`].
    apps: RwLock<Arc<Apps>>,
    policies: SharedPolicies,
    store: Store,
    table: Mutex<LeaseTable>,
    contexts: Mutex<HashMap<String, UserContext>>,
    commands: broadcast::Sender<ConnectorOrder>,
    clients: Mutex<HashMap<String, ClientSlot>>,
    flows: Mutex<HashMap<FlowId, FlowRecord>>,
    next_id: AtomicU64,
    connector_name: String,
    client_grace: Duration,
    /// Registered machine names (lowercase) -> their user.
    names: Mutex<HashMap<String, String>>,
}

/// The server-to-client apps in force and the client ports they open.
#[derive(Debug)]
struct Apps {
    apps: Vec<AppConfig>,
    ports: Vec<u16>,
}

impl Apps {
    fn new(apps: Vec<AppConfig>) -> Arc<Self> {
        Arc::new(Self {
            ports: listen_ports(&apps),
            apps,
        })
    }
}

/// Commands a slow connector task may fall behind by before it misses some.
const COMMAND_BACKLOG: usize = 4_096;

impl ServerToClient {
    /// Builds the state from `section`, reading the stored leases (rows of
    /// pools that are gone are deleted).
    ///
    /// Errors: [`StoreError`].
    pub async fn open(
        section: &ServerToClientSection,
        policies: SharedPolicies,
        store: Store,
    ) -> Result<Self, StoreError> {
        let stickiness = Duration::from_secs(u64::from(section.stickiness_days) * 86_400);
        let mut table = LeaseTable::new(section.pools.clone(), stickiness);
        let stored = leases::load(&store).await?;
        let restored = stored.len();
        for dropped in table.restore(stored) {
            tracing::info!(iip = %dropped.iip, pool = %dropped.pool, user = %dropped.user, "s2c_lease_dropped");
            leases::delete(&store, dropped.iip).await?;
        }
        tracing::info!(
            leases = restored,
            pools = section.pools.len(),
            apps = section.apps.len(),
            "s2c_started"
        );
        let (commands, _) = broadcast::channel(COMMAND_BACKLOG);
        Ok(Self {
            inner: Arc::new(Inner {
                apps: RwLock::new(Apps::new(section.apps.clone())),
                policies,
                store,
                table: Mutex::new(table),
                contexts: Mutex::new(HashMap::new()),
                commands,
                clients: Mutex::new(HashMap::new()),
                flows: Mutex::new(HashMap::new()),
                // Flow ids of an earlier run never match this run's.
                next_id: AtomicU64::new(
                    SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map_or(1, |d| u64::try_from(d.as_micros()).unwrap_or(1)),
                ),
                connector_name: section.connector_name.clone(),
                client_grace: Duration::from_secs(section.client_grace_secs),
                names: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// Whether any pool is configured.
    pub fn enabled(&self) -> bool {
        !self.inner.table.lock().pools().is_empty()
    }

    /// Receives every later [`ConnectorOrder`]; a connector keeps those
    /// [`ConnectorOrder::is_for`] it.
    pub fn subscribe(&self) -> broadcast::Receiver<ConnectorOrder> {
        self.inner.commands.subscribe()
    }

    /// The addresses connectors should listen on now: every active IIP x
    /// every app port (for a connector that starts after the leases).
    pub fn listening(&self) -> Vec<SocketAddr> {
        self.listening_where(|_| true)
    }

    /// [`ServerToClient::listening`] for the connector named `connector`:
    /// the active IIPs of the pools it owns, x every app port. What a
    /// connector that (re)links is told first.
    pub fn listening_for(&self, connector: &str) -> Vec<SocketAddr> {
        self.listening_where(|pool| pool.owned_by(connector))
    }

    fn listening_where(&self, owned: impl Fn(&PoolConfig) -> bool) -> Vec<SocketAddr> {
        let table = self.inner.table.lock();
        table
            .iter()
            .filter(|lease| lease.is_active())
            .filter(|lease| table.pool(&lease.pool).is_some_and(&owned))
            .flat_map(|lease| self.addresses(lease.iip))
            .collect()
    }

    /// Sends `command` about the IIPs of the pool named `pool` in `table`
    /// to the connectors that own it. A pool `table` does not know goes
    /// to no one.
    fn order(&self, table: &LeaseTable, pool: &str, command: ConnectorCommand) {
        let Some(pool) = table.pool(pool) else {
            return;
        };
        // No receiver yet (no connector) is fine: a connector that links
        // is first told `listening_for` it.
        let _ = self.inner.commands.send(ConnectorOrder {
            command,
            owners: pool.connectors.clone().into(),
        });
    }

    /// Forgets the allowed flows of `connector` (its process is gone:
    /// nothing will report them); returns how many there were.
    pub fn close_connector_flows(&self, connector: &str) -> usize {
        let connector = connector.to_ascii_lowercase();
        let mut flows = self.inner.flows.lock();
        let before = flows.len();
        flows.retain(|_, record| record.connector != connector);
        before - flows.len()
    }

    /// Leases an IIP to `user` at `now` (see [`LeaseTable::lease`]),
    /// stores it, remembers `context` for flow decisions, and tells the
    /// connectors to listen on it. Logs `s2c_leased` or `s2c_lease_refused`.
    ///
    /// Errors: [`ConnectError`].
    pub async fn connect(
        &self,
        user: &str,
        context: UserContext,
        now: SystemTime,
    ) -> Result<Leased, ConnectError> {
        let (leased, before) = {
            let mut table = self.inner.table.lock();
            let before = table.clone();
            match table.lease(user, &context.groups, now) {
                Ok(leased) => (leased, before),
                Err(error) => {
                    tracing::warn!(user, reason = error.reason(), error = %error, "s2c_lease_refused");
                    return Err(error.into());
                }
            }
        };
        if let Err(error) = leases::save(&self.inner.store, &leased.lease).await {
            *self.inner.table.lock() = before;
            tracing::warn!(user, reason = "store", error = %crate::error_chain(&error), "s2c_lease_refused");
            return Err(ConnectError::Store(error));
        }
        let lease = &leased.lease;
        tracing::info!(
            user = %lease.user,
            iip = %lease.iip,
            pool = %lease.pool,
            sticky = leased.sticky,
            reclaimed_from = leased.reclaimed.as_ref().map_or("", |l| l.user.as_str()),
            "s2c_leased"
        );
        self.inner
            .contexts
            .lock()
            .insert(lease.user.clone(), context);
        let table = self.inner.table.lock();
        self.order(
            &table,
            &lease.pool,
            ConnectorCommand::Listen(self.addresses(lease.iip)),
        );
        drop(table);
        Ok(leased)
    }

    /// Releases `user`'s active lease at `now` (it stays theirs for the
    /// stickiness window), stores the release, and tells the connectors to
    /// stop listening on it and close its flows. The released lease, or
    /// `None` when the user had no active one. Logs `s2c_released`.
    ///
    /// Errors: [`StoreError`] (the in-memory release stands).
    pub async fn disconnect(
        &self,
        user: &str,
        now: SystemTime,
    ) -> Result<Option<Lease>, StoreError> {
        let released = self.inner.table.lock().release(user, now);
        let Some(lease) = released else {
            return Ok(None);
        };
        self.inner.contexts.lock().remove(&lease.user);
        {
            let table = self.inner.table.lock();
            self.order(
                &table,
                &lease.pool,
                ConnectorCommand::Unlisten(self.addresses(lease.iip)),
            );
            self.order(&table, &lease.pool, ConnectorCommand::CloseFlows(lease.iip));
        }
        tracing::info!(user = %lease.user, iip = %lease.iip, pool = %lease.pool, "s2c_released");
        leases::save(&self.inner.store, &lease).await?;
        Ok(Some(lease))
    }

    /// The lease (active or sticky) of `user`.
    pub fn lease_of(&self, user: &str) -> Option<Lease> {
        self.inner.table.lock().of_user(user).cloned()
    }

    /// Decides a flow (see [`decide`]) and logs it: `s2c_flow_allowed`
    /// (user, app, rule) or `s2c_flow_denied` (reason).
    pub fn decide(&self, query: &FlowQuery<'_>, now: SystemTime) -> FlowDecision {
        let policies = self.inner.policies.current();
        let table = self.inner.table.lock();
        let context = table
            .active(query.iip)
            .and_then(|lease| self.inner.contexts.lock().get(&lease.user).cloned())
            .unwrap_or_default();
        let apps = self.inner.apps.read().clone();
        let decision = decide(&table, &apps.apps, &policies, &context, query, now);
        drop(table);
        match &decision {
            FlowDecision::Allow(allowed) => tracing::info!(
                connector = query.connector,
                server = %query.server,
                iip = %query.iip,
                port = query.port,
                user = %allowed.user,
                app = %allowed.app,
                location = %allowed.location,
                rule = allowed.rule.as_deref().unwrap_or("default"),
                "s2c_flow_allowed"
            ),
            FlowDecision::Deny { reason, user } => tracing::info!(
                connector = query.connector,
                server = %query.server,
                iip = %query.iip,
                port = query.port,
                user = user.as_deref().unwrap_or(""),
                reason = reason.as_str(),
                detail = %reason.detail(),
                "s2c_flow_denied"
            ),
        }
        decision
    }

    /// Every pool's size against its known users (see
    /// [`super::pools::known_users`]) at `now`.
    pub fn status(&self, local_users: u64, now: SystemTime) -> Vec<PoolStatus> {
        status(&self.inner.table.lock(), local_users, now)
    }

    /// Logs `s2c_pool_undersized` (warn) for every pool smaller than three
    /// times its known users; returns those pools.
    pub fn warn_undersized(&self, local_users: u64, now: SystemTime) -> Vec<PoolStatus> {
        let undersized: Vec<PoolStatus> = self
            .status(local_users, now)
            .into_iter()
            .filter(|pool| pool.undersized)
            .collect();
        for pool in &undersized {
            tracing::warn!(
                pool = %pool.name,
                capacity = pool.capacity,
                users = pool.users,
                recommended = pool.users.saturating_mul(super::pools::ADDRESSES_PER_USER),
                "s2c_pool_undersized"
            );
        }
        undersized
    }

    /// How long a lost control connection keeps its lease active.
    pub fn client_grace(&self) -> Duration {
        self.inner.client_grace
    }

    /// Whether `server` may resolve registered names: it is inside one of
    /// the apps' server ranges.
    pub fn may_resolve(&self, server: IpAddr) -> bool {
        self.inner
            .apps
            .read()
            .apps
            .iter()
            .any(|app| app.holds_server(server))
    }

    /// Registers `fqdn` (checked with [`valid_fqdn`]) as `user`'s machine
    /// name; a name registered by another user moves. Logs
    /// `s2c_fqdn_registered`.
    ///
    /// Errors: the name is not a host name (the message says why).
    pub fn register_fqdn(&self, user: &str, fqdn: &str) -> Result<(), String> {
        if !valid_fqdn(fqdn) {
            return Err(format!("invalid host name {fqdn:?}"));
        }
        let user = user.to_ascii_lowercase();
        let name = fqdn.trim_end_matches('.').to_ascii_lowercase();
        let iip = self.lease_of(&user).map(|lease| lease.iip);
        tracing::info!(user = %user, fqdn = %name, iip = ?iip, "s2c_fqdn_registered");
        self.inner.names.lock().insert(name, user);
        Ok(())
    }

    /// The IIP of the active lease of the user who registered `fqdn`.
    pub fn resolve(&self, fqdn: &str) -> Option<Ipv4Addr> {
        let name = fqdn.trim_end_matches('.').to_ascii_lowercase();
        let user = self.inner.names.lock().get(&name).cloned()?;
        self.lease_of(&user)
            .filter(Lease::is_active)
            .map(|lease| lease.iip)
    }

    /// The name of the in-process connector (`gatehouse run`).
    pub fn connector_name(&self) -> &str {
        &self.inner.connector_name
    }

    /// Attaches `user`'s control connection (replacing an earlier one);
    /// returns its id (for [`ServerToClient::detach_client`]) and the
    /// events to stream.
    pub fn attach_client(&self, user: &str) -> (u64, mpsc::Receiver<ClientEvent>) {
        let (events, receiver) = mpsc::channel(CLIENT_BACKLOG);
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        self.inner
            .clients
            .lock()
            .insert(user.to_ascii_lowercase(), ClientSlot { id, events });
        (id, receiver)
    }

    /// Detaches the control connection `id` of `user`; whether it was
    /// still the current one (a newer one is left alone).
    pub fn detach_client(&self, user: &str, id: u64) -> bool {
        let mut clients = self.inner.clients.lock();
        let user = user.to_ascii_lowercase();
        if clients.get(&user).is_some_and(|slot| slot.id == id) {
            clients.remove(&user);
            return true;
        }
        false
    }

    /// Whether `user` has a control connection attached.
    pub fn client_attached(&self, user: &str) -> bool {
        self.inner
            .clients
            .lock()
            .contains_key(&user.to_ascii_lowercase())
    }

    /// Answers a connector's flow request: [`ServerToClient::decide`], then
    /// for an allowed flow a one-time ticket at the local `sta` whose
    /// worker address is the connector core's rendezvous listener, handed
    /// to the user's access client. `connector` names the asking
    /// connector. Logs as `decide` does, plus `s2c_flow_refused` when the
    /// client cannot take an allowed flow.
    pub fn flow_request(
        &self,
        connector: &str,
        request: &FlowRequest,
        sta: &SharedSta,
        now: SystemTime,
    ) -> FlowVerdict {
        let iip = match request.local.ip() {
            IpAddr::V4(v4) => v4,
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => v4,
                None => {
                    return FlowVerdict::Deny {
                        reason: FlowDenyReason::NoLease,
                    };
                }
            },
        };
        let query = FlowQuery {
            connector,
            server: request.server.ip(),
            iip,
            port: request.local.port(),
        };
        let allowed = match self.decide(&query, now) {
            FlowDecision::Allow(allowed) => allowed,
            FlowDecision::Deny { reason, .. } => {
                return FlowVerdict::Deny {
                    reason: deny_reason(&reason),
                };
            }
        };
        if self.inner.flows.lock().len() >= MAX_OPEN_FLOWS {
            tracing::warn!(user = %allowed.user, server = %request.server, reason = "overloaded", "s2c_flow_refused");
            return FlowVerdict::Deny {
                reason: FlowDenyReason::Overloaded,
            };
        }
        // Random, so a process that can reach a rendezvous listener cannot
        // guess a parked flow; the counter only if the OS source fails.
        let mut random = [0_u8; 8];
        let flow = match getrandom::fill(&mut random) {
            Ok(()) => FlowId(u64::from_le_bytes(random)),
            Err(_) => FlowId(self.inner.next_id.fetch_add(1, Ordering::Relaxed)),
        };
        let refuse = |reason: FlowDenyReason, why: &str| {
            tracing::info!(
                flow = %flow,
                user = %allowed.user,
                server = %request.server,
                reason = reason.as_str(),
                error = why,
                "s2c_flow_refused"
            );
            FlowVerdict::Deny { reason }
        };
        let events = self
            .inner
            .clients
            .lock()
            .get(&allowed.user)
            .map(|slot| slot.events.clone());
        let Some(events) = events else {
            return refuse(FlowDenyReason::ClientAbsent, "no control connection");
        };
        let mut data = TicketData::new(WorkerAddr {
            host: request.rendezvous.ip().to_string(),
            port: request.rendezvous.port(),
        });
        data.values
            .insert(FLOW_VALUE.to_owned(), flow.0.to_string());
        let issued = sta
            .lock()
            .issue(data, TicketKind::SingleUse, std::time::Instant::now());
        let ticket = match issued {
            Ok(issued) => issued.ticket.to_text(),
            Err(error) => return refuse(FlowDenyReason::Internal, &error.to_string()),
        };
        let event = ClientEvent::Flow {
            flow: flow.0,
            port: request.local.port(),
            ticket,
        };
        if events.try_send(event).is_err() {
            return refuse(FlowDenyReason::ClientAbsent, "control connection backlog");
        }
        self.inner.flows.lock().insert(
            flow,
            FlowRecord {
                connector: connector.to_ascii_lowercase(),
                user: allowed.user,
                app: allowed.app,
                server: request.server,
                local: request.local,
            },
        );
        FlowVerdict::Allow { flow }
    }

    /// Records the end of a flow a core reported; logs `s2c_flow_ended`.
    pub fn flow_closed(&self, closed: &FlowClosed) {
        let record = self.inner.flows.lock().remove(&closed.flow);
        if let Some(record) = record {
            tracing::info!(
                flow = %closed.flow,
                user = %record.user,
                app = %record.app,
                server = %record.server,
                local = %record.local,
                bytes_to_client = closed.bytes_to_client,
                bytes_to_server = closed.bytes_to_server,
                duration_ms = closed.duration_ms,
                "s2c_flow_ended"
            );
        }
    }

    /// Flows allowed and not reported closed.
    pub fn open_flows(&self) -> usize {
        self.inner.flows.lock().len()
    }

    fn addresses(&self, iip: Ipv4Addr) -> Vec<SocketAddr> {
        self.inner
            .apps
            .read()
            .ports
            .iter()
            .map(|port| SocketAddr::from((iip, *port)))
            .collect()
    }

    /// The IIP pools in force.
    pub fn pools(&self) -> Vec<PoolConfig> {
        self.inner.table.lock().pools().to_vec()
    }

    /// The server-to-client apps in force.
    pub fn apps(&self) -> Vec<AppConfig> {
        self.inner.apps.read().apps.clone()
    }

    /// Every lease the table holds (active, or released and still sticky
    /// or not yet reclaimed), by IIP.
    pub fn leases(&self) -> Vec<Lease> {
        let mut leases: Vec<Lease> = self.inner.table.lock().iter().cloned().collect();
        leases.sort_by_key(|lease| lease.iip);
        leases
    }

    /// Puts `pools` (already validated with their section) in force: the
    /// leases inside a pool that still exists under the same name and
    /// holds their address are kept; the others end — their listeners
    /// close, their flows are cut, their rows leave the store.
    ///
    /// Errors: the store failed deleting an ended lease (the new pools are
    /// in force; the row is dropped at the next start).
    pub async fn replace_pools(&self, pools: Vec<PoolConfig>) -> Result<(), StoreError> {
        let (dropped, before) = {
            let mut table = self.inner.table.lock();
            let mut next = LeaseTable::new(pools, table.stickiness());
            let dropped = next.restore(table.iter().cloned().collect());
            (dropped, std::mem::replace(&mut *table, next))
        };
        for lease in &dropped {
            tracing::info!(iip = %lease.iip, pool = %lease.pool, user = %lease.user, "s2c_lease_dropped");
            if lease.is_active() {
                // The owners of the pool the lease was in (it may be gone).
                self.order(
                    &before,
                    &lease.pool,
                    ConnectorCommand::Unlisten(self.addresses(lease.iip)),
                );
                self.order(
                    &before,
                    &lease.pool,
                    ConnectorCommand::CloseFlows(lease.iip),
                );
            }
        }
        for lease in &dropped {
            leases::delete(&self.inner.store, lease.iip).await?;
        }
        tracing::info!(
            pools = self.inner.table.lock().pools().len(),
            leases_dropped = dropped.len(),
            "s2c_pools_replaced"
        );
        Ok(())
    }

    /// Puts `apps` (already validated with their section) in force for the
    /// next flow decision; the connectors stop listening on client ports no
    /// app uses any more and start on new ones, for every active lease.
    /// Flows under way are not cut.
    pub fn replace_apps(&self, apps: Vec<AppConfig>) {
        let next = Apps::new(apps);
        let before = std::mem::replace(&mut *self.inner.apps.write(), next.clone());
        let gone: Vec<u16> = before
            .ports
            .iter()
            .copied()
            .filter(|port| !next.ports.contains(port))
            .collect();
        let new: Vec<u16> = next
            .ports
            .iter()
            .copied()
            .filter(|port| !before.ports.contains(port))
            .collect();
        let at = |iip: Ipv4Addr, ports: &[u16]| -> Vec<SocketAddr> {
            ports
                .iter()
                .map(|port| SocketAddr::from((iip, *port)))
                .collect()
        };
        {
            // One order per lease: its pool decides who gets it.
            let table = self.inner.table.lock();
            for lease in table.iter().filter(|lease| lease.is_active()) {
                if !gone.is_empty() {
                    let command = ConnectorCommand::Unlisten(at(lease.iip, &gone));
                    self.order(&table, &lease.pool, command);
                }
                if !new.is_empty() {
                    let command = ConnectorCommand::Listen(at(lease.iip, &new));
                    self.order(&table, &lease.pool, command);
                }
            }
        }
        tracing::info!(
            apps = next.apps.len(),
            ports_added = new.len(),
            ports_removed = gone.len(),
            "s2c_apps_replaced"
        );
    }
}

/// Whether `name` is a host name: 1 to 253 characters, dot-separated
/// labels of 1 to 63 letters, digits and `-` (not at either end); one
/// trailing dot allowed.
pub fn valid_fqdn(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    (1..=253).contains(&name.len())
        && name.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// The channel's reason for a decision's.
fn deny_reason(reason: &DenyReason) -> FlowDenyReason {
    match reason {
        DenyReason::NoLease => FlowDenyReason::NoLease,
        DenyReason::ConnectorNotOwner => FlowDenyReason::ConnectorNotOwner,
        DenyReason::ServerNotInApp => FlowDenyReason::ServerNotInApp,
        DenyReason::PortNotInApp => FlowDenyReason::PortNotInApp,
        DenyReason::PolicyDeny { .. } => FlowDenyReason::PolicyDeny,
    }
}

/// The flow a redeemed ticket's data names (a rendezvous ticket), if any.
pub fn flow_of(data: &TicketData) -> Option<FlowId> {
    data.values
        .get(FLOW_VALUE)
        .and_then(|value| value.parse().ok())
        .map(FlowId)
}

impl LeaseError {
    /// The stable word for logs and the API: `no_pool` or `pool_exhausted`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NoPool { .. } => "no_pool",
            Self::Exhausted { .. } => "pool_exhausted",
        }
    }
}
