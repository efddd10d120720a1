//! The broker: which worker serves a user's launch.
//!
//! - [`registry`]: workers register, heartbeat (readiness and load) and
//!   unregister over Gatehouse's registration protocol
//!   (docs/REGISTRATION.md); silent workers become unavailable.
//! - [`catalog`]: the `[broker]` configuration (delivery groups, desktops,
//!   published resources, permanent assignments) and the pure brokering
//!   decision.
//! - [`power`]: the power hook of a group.
//! - [`nfuse`]: the sans-IO NFuse XML codec and [`ctx1`] passwords.
//! - [`http`]: the routes on the internal listener: `/broker/v1/*` and the
//!   XML broker `POST /scripts/wpnbr.dll`.
//!
//! [`Broker`] holds the shared state: the registry, the run-time
//! assignments (permanent ones persisted in the store, table
//! `broker_assignments`), the ticket tags handed out by `RequestAddress`,
//! and what checks passwords. It refuses to log a password or a ticket.

pub mod catalog;
pub mod ctx1;
pub mod http;
pub mod nfuse;
pub mod power;
pub mod registry;

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use sqlx::Row;
use tokio::sync::watch;

use crate::auth::local::LocalUsers;
use crate::ldap::{DirectoryError, PasswordDirectory};
use crate::policy::{SharedPolicies, Subject, Target, TargetKind, Verdict};
use crate::sta::http::SharedSta;
use crate::sta::{CgpAddress, StaError, TicketData, TicketKind, WorkerAddr, XData};
use crate::store::{Store, StoreError};

use catalog::{Assignments, Catalog, Decision, NewAssignment, Refused, Who};
use nfuse::{AppEntry, ErrorId, SessionEntry};
use registry::{Heartbeat, Register, Registered, Registry, RegistryError, Unregister, WorkerName};

/// Most outstanding ticket tags; the oldest are dropped past it.
pub const MAX_TAGS: usize = 10_000;

/// Timings of a [`Broker`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BrokerTimings {
    /// A worker silent this long is unavailable.
    pub heartbeat_timeout: Duration,
    /// How long a power-on may take, hook and registration together.
    pub power_on_timeout: Duration,
    /// How long a ticket tag stays valid.
    pub ticket_tag_ttl: Duration,
    /// Grace after a launch before a temporary assignment may be released.
    pub temporary_grace: Duration,
}

impl BrokerTimings {
    /// The timings of a `[broker]` section.
    pub fn of(section: &catalog::BrokerSection) -> Self {
        Self {
            heartbeat_timeout: Duration::from_secs(section.heartbeat_timeout_secs),
            power_on_timeout: Duration::from_secs(section.power_on_timeout_secs),
            ticket_tag_ttl: Duration::from_secs(section.ticket_tag_ttl_secs),
            temporary_grace: Duration::from_secs(section.temporary_grace_secs),
        }
    }
}

/// The worker a launch goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chosen {
    /// Its name.
    pub worker: WorkerName,
    /// Its ICA address.
    pub ica: WorkerAddr,
    /// Its CGP address.
    pub cgp: Option<CgpAddress>,
    /// The resource launched (internal name).
    pub resource: String,
}

/// Why a launch failed.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// The decision refused.
    #[error("launch refused: {0}")]
    Refused(Refused),
    /// The power hook failed or the worker did not register in time.
    #[error("power-on failed")]
    Power(#[from] power::PowerError),
    /// The assignment could not be stored.
    #[error("cannot store the assignment")]
    Store(#[source] StoreError),
    /// An access policy denies the resource to the user.
    #[error("denied by {reason}")]
    Denied {
        /// `rule NAME` or `default` ([`Verdict::reason`]).
        reason: String,
    },
}

impl LaunchError {
    /// The NFuse error id answering this failure.
    pub fn error_id(&self) -> ErrorId {
        match self {
            Self::Refused(Refused::Overloaded) => ErrorId::MfServerOverloaded,
            Self::Refused(_) | Self::Power(_) | Self::Denied { .. } => ErrorId::NoServer,
            Self::Store(_) => ErrorId::ServiceUnavailable,
        }
    }
}

#[derive(Debug)]
struct Tag {
    chosen: Chosen,
    user: String,
    expires: Instant,
}

#[derive(Debug)]
struct Temporary {
    user: String,
    resource: String,
    since: Instant,
}

#[derive(Debug)]
struct State {
    registry: Registry,
    permanent: BTreeMap<WorkerName, std::collections::BTreeSet<String>>,
    temporary: BTreeMap<WorkerName, Temporary>,
    tags: HashMap<String, Tag>,
    logons: HashMap<String, Logon>,
}

/// An outstanding logon ticket: who launched what on which worker.
#[derive(Debug)]
struct Logon {
    worker: WorkerName,
    user: String,
    resource: String,
    expires: Instant,
}

/// What a worker learns by redeeming a logon ticket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogonGrant {
    /// The user the session is for.
    pub user: String,
    /// The resource launched.
    pub resource: String,
}

impl State {
    fn assignments(&self) -> Assignments {
        Assignments {
            permanent: self.permanent.clone(),
            temporary: self
                .temporary
                .iter()
                .map(|(k, v)| (k.clone(), v.user.clone()))
                .collect(),
        }
    }
}

/// The broker; cheap to clone.
#[derive(Clone)]
pub struct Broker {
    inner: Arc<Inner>,
}

struct Inner {
    /// Swapped whole by [`Broker::replace_catalog`] (the REST API).
    catalog: parking_lot::RwLock<Arc<Catalog>>,
    timings: BrokerTimings,
    state: Mutex<State>,
    changed: watch::Sender<u64>,
    sta: SharedSta,
    directory: Arc<dyn PasswordDirectory>,
    store: Option<Store>,
    policies: SharedPolicies,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("timings", &self.inner.timings)
            .finish_non_exhaustive()
    }
}

/// The local user directory as the broker's password check.
pub use crate::login::LocalDirectory;

/// Why [`Broker::from_config`] failed.
#[derive(Debug, thiserror::Error)]
pub enum BrokerStartError {
    /// The store could not be opened or read.
    #[error("broker store failed")]
    Store(#[from] StoreError),
    /// The LDAP settings are unusable.
    #[error("invalid ldap settings")]
    Ldap(#[from] crate::config::ConfigError),
    /// The password hasher could not be built.
    #[error("cannot build the password hasher")]
    Hasher(#[from] crate::auth::password::PasswordError),
}

impl Broker {
    /// The broker of `config`: its `[broker]` catalog, assignments kept in
    /// `store` (the control plane's one handle), passwords checked by LDAP
    /// when `ldap.url` is set, else by the local user directory; launches
    /// decided by `policies` (built once from `[policy]` and shared with
    /// the store front and the reload).
    ///
    /// Errors: [`BrokerStartError`].
    pub async fn from_config(
        config: &crate::config::Config,
        sta: SharedSta,
        store: Store,
        policies: SharedPolicies,
    ) -> Result<Self, BrokerStartError> {
        let directory: Arc<dyn PasswordDirectory> = match config.ldap.settings()? {
            Some(settings) => Arc::new(crate::ldap::LdapDirectory::new(settings)),
            None => {
                let hasher = crate::auth::password::PasswordHasher::new(
                    crate::auth::password::PasswordParams::OWASP,
                )?;
                Arc::new(LocalDirectory(LocalUsers::new(
                    store.clone(),
                    Arc::new(hasher),
                )))
            }
        };
        Ok(Self::with_policies(
            Catalog::new(config.broker.clone()),
            BrokerTimings::of(&config.broker),
            sta,
            directory,
            Some(store),
            policies,
        )
        .await?)
    }

    /// A broker over `catalog`, issuing tickets from `sta` and checking
    /// passwords with `directory`; permanent assignments are loaded from and
    /// stored in `store` (kept in memory only without one). No access
    /// policy: every entitled launch is allowed.
    ///
    /// Errors: [`StoreError`] when the stored assignments cannot be read.
    pub async fn new(
        catalog: Catalog,
        timings: BrokerTimings,
        sta: SharedSta,
        directory: Arc<dyn PasswordDirectory>,
        store: Option<Store>,
    ) -> Result<Self, StoreError> {
        Self::with_policies(
            catalog,
            timings,
            sta,
            directory,
            store,
            SharedPolicies::default(),
        )
        .await
    }

    /// [`Broker::new`] with launches decided by `policies` as well: a
    /// denied resource is not listed and its launch is refused.
    ///
    /// Errors: [`StoreError`] when the stored assignments cannot be read.
    pub async fn with_policies(
        catalog: Catalog,
        timings: BrokerTimings,
        sta: SharedSta,
        directory: Arc<dyn PasswordDirectory>,
        store: Option<Store>,
        policies: SharedPolicies,
    ) -> Result<Self, StoreError> {
        let mut permanent: BTreeMap<WorkerName, std::collections::BTreeSet<String>> =
            BTreeMap::new();
        if let Some(store) = &store {
            let rows = sqlx::query("SELECT desktop, user_name FROM broker_assignments")
                .fetch_all(store.pool())
                .await?;
            for row in rows {
                let desktop: String = row.try_get(0)?;
                let user: String = row.try_get(1)?;
                let Ok(desktop) = WorkerName::new(&desktop) else {
                    return Err(StoreError::Corrupt {
                        what: "broker_assignments.desktop",
                    });
                };
                permanent.entry(desktop).or_default().insert(user);
            }
        }
        tracing::info!(
            groups = catalog.section().groups.len(),
            desktops = catalog.section().desktops.len(),
            resources = catalog.section().resources.len(),
            stored_assignments = permanent.len(),
            "broker_started"
        );
        let (changed, _) = watch::channel(0);
        Ok(Self {
            inner: Arc::new(Inner {
                catalog: parking_lot::RwLock::new(Arc::new(catalog)),
                timings,
                state: Mutex::new(State {
                    registry: Registry::new(timings.heartbeat_timeout),
                    permanent,
                    temporary: BTreeMap::new(),
                    tags: HashMap::new(),
                    logons: HashMap::new(),
                }),
                changed,
                sta,
                directory,
                store,
                policies,
            }),
        })
    }

    /// The access policies launches are decided by.
    pub fn policies(&self) -> &SharedPolicies {
        &self.inner.policies
    }

    /// The access policies' decision on `who` launching `resource` (its
    /// configured name) now.
    pub fn verdict(&self, who: &Who, resource: &str) -> Verdict {
        self.inner.policies.current().evaluate(
            &subject(who),
            &Target {
                kind: TargetKind::Launch,
                resource,
                location: None,
            },
            SystemTime::now(),
        )
    }

    /// The SmartAccess filters of `who` now: the names of the policy rules
    /// whose user, group, client and time conditions hold.
    pub fn filters(&self, who: &Who) -> Vec<String> {
        self.inner
            .policies
            .current()
            .filters(&subject(who), SystemTime::now())
    }

    /// The catalog in force.
    pub fn catalog(&self) -> Arc<Catalog> {
        self.inner.catalog.read().clone()
    }

    /// Puts `catalog` in force for the decisions that follow (a decision
    /// under way keeps the catalog it started with). Assignments and the
    /// registry are kept.
    pub fn replace_catalog(&self, catalog: Catalog) {
        tracing::info!(
            groups = catalog.section().groups.len(),
            desktops = catalog.section().desktops.len(),
            resources = catalog.section().resources.len(),
            "broker_catalog_replaced"
        );
        *self.inner.catalog.write() = Arc::new(catalog);
    }

    /// Handles a registration.
    ///
    /// Errors: [`RegistryError`].
    pub fn register(&self, message: &Register) -> Result<WorkerName, RegistryError> {
        let outcome = self
            .inner
            .state
            .lock()
            .registry
            .register(message, Instant::now());
        match &outcome {
            Ok((name, how)) => {
                tracing::info!(
                    worker = %name,
                    version = message.version,
                    ica = %message.ica,
                    again = *how == Registered::Again,
                    "worker_registered"
                );
                self.inner.changed.send_modify(|n| *n += 1);
            }
            Err(error) => {
                tracing::warn!(error = %error, version = message.version, "worker_refused")
            }
        }
        outcome.map(|(name, _)| name)
    }

    /// Handles a heartbeat; releases the worker's temporary assignment when
    /// it reports no session past the grace period.
    ///
    /// Errors: [`RegistryError`].
    pub fn heartbeat(&self, message: &Heartbeat) -> Result<WorkerName, RegistryError> {
        let now = Instant::now();
        let mut state = self.inner.state.lock();
        let name = state.registry.heartbeat(message, now)?;
        if message.sessions == 0
            && state.temporary.get(&name).is_some_and(|t| {
                now.saturating_duration_since(t.since) >= self.inner.timings.temporary_grace
            })
        {
            state.temporary.remove(&name);
            tracing::info!(worker = %name, "temporary_assignment_released");
        }
        drop(state);
        self.inner.changed.send_modify(|n| *n += 1);
        Ok(name)
    }

    /// Handles an unregistration; whether the worker was known.
    ///
    /// Errors: [`RegistryError`].
    pub fn unregister(&self, message: &Unregister) -> Result<bool, RegistryError> {
        let known = self.inner.state.lock().registry.unregister(message)?;
        tracing::info!(worker = %message.worker, known, "worker_unregistered");
        Ok(known)
    }

    /// The registry as JSON (for `GET /broker/v1/workers`).
    pub fn workers_json(&self) -> serde_json::Value {
        let now = Instant::now();
        let state = self.inner.state.lock();
        let list: Vec<serde_json::Value> = state
            .registry
            .workers()
            .map(|w| {
                serde_json::json!({
                    "worker": w.name.as_str(),
                    "version": w.version,
                    "ica": w.ica.to_string(),
                    "cgp": w.cgp.as_ref().map(ToString::to_string),
                    "ready": w.ready,
                    "available": state.registry.is_available(w, now),
                    "sessions": w.sessions,
                    "load": w.load,
                    "max_sessions": w.max_sessions,
                })
            })
            .collect();
        serde_json::json!({ "workers": list })
    }

    /// Checks `user`'s password with the directory.
    ///
    /// Errors: [`ErrorId::FailedCredentials`] for a wrong password or
    /// unknown user, [`ErrorId::ServiceUnavailable`] when the directory is
    /// down.
    pub async fn authenticate(
        &self,
        user: &str,
        password: &str,
        client_ip: Option<IpAddr>,
    ) -> Result<Who, ErrorId> {
        match self.inner.directory.verify(user, password).await {
            Ok(info) => Ok(Who {
                user: info.login,
                groups: info.groups.into_iter().map(|g| g.name).collect(),
                client_ip,
            }),
            Err(DirectoryError::Rejected) => {
                tracing::info!(user, "broker_credentials_refused");
                Err(ErrorId::FailedCredentials)
            }
            Err(DirectoryError::Unavailable(error)) => {
                tracing::warn!(user, error = %error, "broker_directory_unavailable");
                Err(ErrorId::ServiceUnavailable)
            }
        }
    }

    /// The resources `who` may launch: those the catalog entitles them to,
    /// minus those an access policy denies them now.
    pub fn resources(&self, who: &Who) -> Vec<AppEntry> {
        let policies = self.inner.policies.current();
        let subject = subject(who);
        let now = SystemTime::now();
        self.catalog()
            .visible(who)
            .into_iter()
            .filter(|r| {
                let target = Target {
                    kind: TargetKind::Launch,
                    resource: &r.name,
                    location: None,
                };
                policies.evaluate(&subject, &target, now).allowed()
            })
            .map(|r| AppEntry {
                name: r.name.clone(),
                display: r.display.clone().unwrap_or_else(|| r.name.clone()),
                desktop: r.kind == catalog::ResourceKind::Desktop,
                description: r.description.clone(),
            })
            .collect()
    }

    /// Chooses the worker for `who` launching `resource`: decides, records
    /// the assignment, powers the worker on and waits for it if needed.
    ///
    /// Errors: [`LaunchError`].
    /// An access policy is checked first: a denied launch logs
    /// `launch_denied` (`user`, `resource`, `rule`) and fails with
    /// [`LaunchError::Denied`].
    pub async fn launch(&self, who: &Who, resource: &str) -> Result<Chosen, LaunchError> {
        let catalog = self.catalog();
        let configured = catalog
            .resource(resource)
            .map_or(resource, |r| r.name.as_str());
        let verdict = self.verdict(who, configured);
        if !verdict.allowed() {
            crate::metrics::broker_decision("denied");
            tracing::info!(
                user = %who.user,
                resource = configured,
                rule = verdict.rule.as_deref().unwrap_or("default"),
                "launch_denied"
            );
            return Err(LaunchError::Denied {
                reason: verdict.reason(),
            });
        }
        let decision = {
            let state = self.inner.state.lock();
            let snapshot = state.registry.snapshot(Instant::now());
            catalog.decide(&snapshot, &state.assignments(), who, resource)
        };
        let resource_name = catalog
            .resource(resource)
            .map_or_else(|| resource.to_owned(), |r| r.name.clone());
        let (worker, assign, power) = match decision {
            Decision::Refuse(refused) => {
                crate::metrics::broker_decision("refuse");
                tracing::info!(user = %who.user, resource, reason = %refused, "launch_refused");
                return Err(LaunchError::Refused(refused));
            }
            Decision::Launch { worker, assign } => {
                crate::metrics::broker_decision("launch");
                (worker, assign, None)
            }
            Decision::PowerOn {
                worker,
                group,
                assign,
            } => {
                crate::metrics::broker_decision("power_on");
                (worker, assign, Some(group))
            }
        };
        if let Some(assign) = &assign {
            self.record(assign, &resource_name).await?;
        }
        if let Some(group) = power {
            self.power_on(&group, &worker).await?;
        }
        let state = self.inner.state.lock();
        let view = state
            .registry
            .get(&worker)
            .ok_or(LaunchError::Refused(Refused::NoDesktop))?;
        let chosen = Chosen {
            worker: worker.clone(),
            ica: view.ica.clone(),
            cgp: view.cgp.clone(),
            resource: resource_name,
        };
        tracing::info!(
            user = %who.user,
            resource = %chosen.resource,
            worker = %worker,
            ica = %chosen.ica,
            load = view.load,
            "launch_brokered"
        );
        Ok(chosen)
    }

    async fn record(&self, assign: &NewAssignment, resource: &str) -> Result<(), LaunchError> {
        match assign {
            NewAssignment::Permanent { desktop, user } => {
                if let Some(store) = &self.inner.store {
                    sqlx::query(
                        "INSERT INTO broker_assignments (desktop, user_name, created_at) \
                         VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                    )
                    .bind(desktop.as_str())
                    .bind(user)
                    .bind(unix_now())
                    .execute(store.pool())
                    .await
                    .map_err(|e| LaunchError::Store(StoreError::Query(e)))?;
                }
                self.inner
                    .state
                    .lock()
                    .permanent
                    .entry(desktop.clone())
                    .or_default()
                    .insert(user.clone());
                tracing::info!(desktop = %desktop, user, "desktop_assigned");
            }
            NewAssignment::Temporary { desktop, user } => {
                self.inner.state.lock().temporary.insert(
                    desktop.clone(),
                    Temporary {
                        user: user.clone(),
                        resource: resource.to_owned(),
                        since: Instant::now(),
                    },
                );
            }
        }
        Ok(())
    }

    async fn power_on(&self, group: &str, worker: &WorkerName) -> Result<(), LaunchError> {
        let deadline = Instant::now() + self.inner.timings.power_on_timeout;
        let catalog = self.catalog();
        let Some(group) = catalog.group(group) else {
            return Err(LaunchError::Refused(Refused::NoDesktop));
        };
        let mut changed = self.inner.changed.subscribe();
        tracing::info!(worker = %worker, group = %group.name, "power_on_requested");
        if let Err(error) =
            power::power_on(group, worker, self.inner.timings.power_on_timeout).await
        {
            tracing::warn!(worker = %worker, error = %error, "power_on_failed");
            return Err(error.into());
        }
        loop {
            {
                let state = self.inner.state.lock();
                if let Some(w) = state.registry.get(worker)
                    && state.registry.is_available(w, Instant::now())
                {
                    tracing::info!(worker = %worker, "power_on_completed");
                    return Ok(());
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, changed.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => {
                    tracing::warn!(worker = %worker, "power_on_timeout");
                    return Err(power::PowerError::Timeout(worker.clone()).into());
                }
            }
        }
    }

    /// A ticket tag for `chosen`, valid for `user` for the tag TTL.
    pub fn tag(&self, chosen: &Chosen, user: &str) -> String {
        let mut bytes = [0u8; 16];
        crate::sta::http::os_fill(&mut bytes);
        let tag = data_encoding::HEXUPPER.encode(&bytes);
        let now = Instant::now();
        let mut state = self.inner.state.lock();
        state.tags.retain(|_, t| t.expires > now);
        if state.tags.len() >= MAX_TAGS {
            return tag;
        }
        state.tags.insert(
            tag.clone(),
            Tag {
                chosen: chosen.clone(),
                user: user.to_ascii_lowercase(),
                expires: now + self.inner.timings.ticket_tag_ttl,
            },
        );
        tag
    }

    /// The permanent assignments made on first use (persisted in the
    /// store; the configuration's own are in the catalog): desktop -> its
    /// users (lowercase), by desktop name.
    pub fn assigned(&self) -> Vec<(WorkerName, Vec<String>)> {
        self.inner
            .state
            .lock()
            .permanent
            .iter()
            .map(|(desktop, users)| (desktop.clone(), users.iter().cloned().collect()))
            .collect()
    }

    /// Undoes the first-use assignment of `desktop` to `user` (only an
    /// administrator does): removed from the store, then from the running
    /// state; the next launch of `user` brokers afresh. `Ok(false)` when
    /// there was none.
    ///
    /// Errors: the store failed (nothing changed).
    pub async fn unassign(&self, desktop: &WorkerName, user: &str) -> Result<bool, StoreError> {
        let user = user.to_ascii_lowercase();
        let held = self
            .inner
            .state
            .lock()
            .permanent
            .get(desktop)
            .is_some_and(|users| users.contains(&user));
        if !held {
            return Ok(false);
        }
        if let Some(store) = &self.inner.store {
            sqlx::query("DELETE FROM broker_assignments WHERE desktop = $1 AND user_name = $2")
                .bind(desktop.as_str())
                .bind(&user)
                .execute(store.pool())
                .await
                .map_err(StoreError::Query)?;
        }
        let mut state = self.inner.state.lock();
        if let Some(users) = state.permanent.get_mut(desktop) {
            users.remove(&user);
            if users.is_empty() {
                state.permanent.remove(desktop);
            }
        }
        tracing::info!(desktop = %desktop, user, "desktop_unassigned");
        Ok(true)
    }

    /// A single-use logon ticket (`LogonTicket=` of the `.ica` file, type
    /// CTXS1) for `who`'s launch of `chosen`: 32 uppercase hex digits from
    /// the OS's CSPRNG, valid for the ticket tag TTL. The worker redeems
    /// it with [`Broker::redeem_logon`] (`POST /broker/v1/logon`) to learn
    /// who logs on. `None` when [`MAX_TAGS`] tickets are outstanding (the
    /// file then goes without one).
    pub fn logon_ticket(&self, chosen: &Chosen, who: &Who) -> Option<String> {
        let mut bytes = [0u8; 16];
        crate::sta::http::os_fill(&mut bytes);
        let ticket = data_encoding::HEXUPPER.encode(&bytes);
        let now = Instant::now();
        let mut state = self.inner.state.lock();
        state.logons.retain(|_, l| l.expires > now);
        if state.logons.len() >= MAX_TAGS {
            tracing::warn!(user = %who.user, "logon_tickets_full");
            return None;
        }
        state.logons.insert(
            ticket.clone(),
            Logon {
                worker: chosen.worker.clone(),
                user: who.user.clone(),
                resource: chosen.resource.clone(),
                expires: now + self.inner.timings.ticket_tag_ttl,
            },
        );
        Some(ticket)
    }

    /// Redeems a logon ticket presented by `worker`: the grant once, if
    /// the ticket is outstanding, unexpired and was issued for that
    /// worker; `None` otherwise. The ticket is spent either way, so a
    /// guess costs the ticket it hit. Logs `logon_ticket_redeemed` or
    /// `logon_ticket_refused`.
    pub fn redeem_logon(&self, worker: &WorkerName, ticket: &str) -> Option<LogonGrant> {
        let logon = self.inner.state.lock().logons.remove(ticket);
        match logon {
            Some(l) if l.expires > Instant::now() && l.worker == *worker => {
                tracing::info!(worker = %worker, user = %l.user, resource = %l.resource, "logon_ticket_redeemed");
                Some(LogonGrant {
                    user: l.user,
                    resource: l.resource,
                })
            }
            Some(_) => {
                tracing::info!(worker = %worker, reason = "expired_or_other_worker", "logon_ticket_refused");
                None
            }
            None => {
                tracing::info!(worker = %worker, reason = "unknown", "logon_ticket_refused");
                None
            }
        }
    }

    /// The logon ticket (CTXS1, see [`Broker::logon_ticket`]) for the
    /// worker `tag` names, if `tag` is valid for `who`: what the XML
    /// broker's `RequestTicket` (`TicketType` `CtxLogon`) answers. The tag
    /// is spent. The caller gets the STA ticket for the worker's address
    /// from the STA (`/scripts/ctxsta.dll`), as a store does.
    ///
    /// Errors: [`ErrorId::NoServer`] (unknown, spent, expired or another
    /// user's tag) and [`ErrorId::ServiceUnavailable`] (too many logon
    /// tickets outstanding).
    pub fn logon_for_tag(&self, tag: &str, who: &Who) -> Result<String, ErrorId> {
        let user = who.user.as_str();
        let chosen = {
            let mut state = self.inner.state.lock();
            let valid = state
                .tags
                .get(tag)
                .is_some_and(|t| t.expires > Instant::now() && t.user == user.to_ascii_lowercase());
            // A tag is spent by the ticket it buys.
            match state.tags.remove(tag) {
                Some(t) if valid => t.chosen,
                Some(t) => {
                    state.tags.insert(tag.to_owned(), t);
                    return Err(ErrorId::NoServer);
                }
                None => return Err(ErrorId::NoServer),
            }
        };
        let ticket = self
            .logon_ticket(&chosen, who)
            .ok_or(ErrorId::ServiceUnavailable)?;
        tracing::info!(worker = %chosen.worker, user = %who.user, "broker_logon_ticket_issued");
        Ok(ticket)
    }

    /// Issues a single-use STA ticket for `chosen`, for `who`.
    ///
    /// Errors: [`StaError`].
    pub fn issue(&self, chosen: &Chosen, who: &Who) -> Result<crate::sta::Issued, StaError> {
        let mut data = TicketData::new(chosen.ica.clone());
        data.cgp_address = chosen.cgp.clone();
        data.xdata = Some(XData {
            server: Some(chosen.worker.to_string()),
            user: Some(who.user.clone()),
            domain: None,
            app: Some(chosen.resource.clone()),
            protocol: Some(if chosen.cgp.is_some() { "CGP" } else { "ICA" }.to_owned()),
        });
        let issued = self
            .inner
            .sta
            .lock()
            .issue(data, TicketKind::SingleUse, Instant::now())?;
        tracing::info!(worker = %chosen.worker, user = %who.user, "broker_ticket_issued");
        Ok(issued)
    }

    /// The sessions the broker launched for `user` on shared desktops that
    /// still hold them.
    pub fn sessions(&self, user: &str) -> Vec<SessionEntry> {
        let user = user.to_ascii_lowercase();
        let state = self.inner.state.lock();
        state
            .temporary
            .iter()
            .filter(|(_, t)| t.user == user)
            .filter_map(|(worker, t)| {
                let w = state.registry.get(worker)?;
                Some(SessionEntry {
                    app: t.resource.clone(),
                    server: worker.to_string(),
                    address: w.ica.to_string(),
                })
            })
            .collect()
    }

    /// The heartbeat period a worker is told to keep: a third of the
    /// timeout, at least one second.
    pub fn heartbeat_interval_secs(&self) -> u64 {
        (self.inner.timings.heartbeat_timeout.as_secs() / 3).max(1)
    }

    /// The farm name.
    pub fn farm_name(&self) -> String {
        self.catalog().section().farm_name.clone()
    }
}

/// The policy subject of `who`.
fn subject(who: &Who) -> Subject<'_> {
    Subject {
        user: &who.user,
        groups: &who.groups,
        client: who.client_ip,
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests;
