//! The flow decision: may the back-end server at `server` open a TCP
//! connection to `iip:port` through `connector`?
//!
//! In order: the IIP must hold an active lease in a pool the connector
//! owns (`no_lease`, `connector_not_owner`); an app must hold the server
//! (`server_not_in_app`) and, among those, one must hold the port
//! (`port_not_in_app`); the access policy must allow the lease's user one
//! of those apps in the pool's location (`policy_deny`). The first app, in
//! file order, that the policy allows is the flow's app.

use std::net::{IpAddr, Ipv4Addr};
use std::time::SystemTime;

use super::apps::AppConfig;
use super::pools::LeaseTable;
use crate::policy::{Policies, Subject, Target, TargetKind};

/// A connection a connector asks about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowQuery<'a> {
    /// The connector's name.
    pub connector: &'a str,
    /// The back-end server's address.
    pub server: IpAddr,
    /// The IIP it connected to.
    pub iip: Ipv4Addr,
    /// The client port it connected to.
    pub port: u16,
}

/// Why a flow is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DenyReason {
    /// No active lease holds the IIP.
    NoLease,
    /// The IIP's pool is not owned by the asking connector.
    ConnectorNotOwner,
    /// No app holds the server's address.
    ServerNotInApp,
    /// The apps that hold the server do not hold the port.
    PortNotInApp,
    /// The access policy denies; the deciding rule (`None`: the default).
    PolicyDeny {
        /// The rule that denied.
        rule: Option<String>,
    },
}

impl DenyReason {
    /// The stable word for logs and the channel (`policy_deny`, ...).
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::NoLease => "no_lease",
            Self::ConnectorNotOwner => "connector_not_owner",
            Self::ServerNotInApp => "server_not_in_app",
            Self::PortNotInApp => "port_not_in_app",
            Self::PolicyDeny { .. } => "policy_deny",
        }
    }

    /// The word with its detail: `policy_deny rule=NAME` (or
    /// `rule=default`); the others as [`DenyReason::as_str`].
    pub fn detail(&self) -> String {
        match self {
            Self::PolicyDeny { rule } => {
                format!("policy_deny rule={}", rule.as_deref().unwrap_or("default"))
            }
            other => other.as_str().to_owned(),
        }
    }
}

/// An allowed flow: who it reaches and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allowed {
    /// The lease's user.
    pub user: String,
    /// The pool of the IIP.
    pub pool: String,
    /// The pool's resource location.
    pub location: String,
    /// The app that allowed it.
    pub app: String,
    /// The rule that allowed it (`None`: the default).
    pub rule: Option<String>,
}

/// The decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlowDecision {
    /// Relay the flow to the user's client.
    Allow(Allowed),
    /// Reset the server's connection.
    Deny {
        /// Why.
        reason: DenyReason,
        /// The lease's user, when there was one.
        user: Option<String>,
    },
}

/// What is known of the lease's user when their client connected.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserContext {
    /// Their directory groups.
    pub groups: Vec<String>,
    /// Their client's address (the access client's, as the gateway saw it).
    pub client: Option<IpAddr>,
}

/// Decides `query` at `now`; `context` is the lease user's
/// [`UserContext`].
pub fn decide(
    leases: &LeaseTable,
    apps: &[AppConfig],
    policies: &Policies,
    context: &UserContext,
    query: &FlowQuery<'_>,
    now: SystemTime,
) -> FlowDecision {
    let deny = |reason, user: Option<&str>| FlowDecision::Deny {
        reason,
        user: user.map(str::to_owned),
    };
    let Some(lease) = leases.active(query.iip) else {
        return deny(DenyReason::NoLease, None);
    };
    let user = Some(lease.user.as_str());
    let Some(pool) = leases.pool(&lease.pool) else {
        return deny(DenyReason::NoLease, user);
    };
    if !pool.owned_by(query.connector) {
        return deny(DenyReason::ConnectorNotOwner, user);
    }
    let serving: Vec<&AppConfig> = apps
        .iter()
        .filter(|app| app.holds_server(query.server))
        .collect();
    if serving.is_empty() {
        return deny(DenyReason::ServerNotInApp, user);
    }
    let candidates: Vec<&AppConfig> = serving
        .into_iter()
        .filter(|app| app.holds_port(query.port))
        .collect();
    let mut first_denial = None;
    for app in &candidates {
        let subject = Subject {
            user: &lease.user,
            groups: &context.groups,
            client: context.client,
        };
        let target = Target {
            kind: TargetKind::ServerToClient,
            resource: &app.name,
            location: Some(&pool.location),
        };
        let verdict = policies.evaluate(&subject, &target, now);
        if verdict.allowed() {
            return FlowDecision::Allow(Allowed {
                user: lease.user.clone(),
                pool: pool.name.clone(),
                location: pool.location.clone(),
                app: app.name.clone(),
                rule: verdict.rule,
            });
        }
        first_denial.get_or_insert(verdict.rule);
    }
    match first_denial {
        Some(rule) => deny(DenyReason::PolicyDeny { rule }, user),
        None => deny(DenyReason::PortNotInApp, user),
    }
}
