//! The catalog (delivery groups, desktops, published resources, permanent
//! assignments: the `[broker]` tables of the configuration) and the
//! brokering decision, a pure function of the catalog, a registry
//! snapshot, the assignments and who asks (seed 004's rules):
//!
//! - a delivery group is *private* or *shared*; each desktop is backed by
//!   one worker and belongs to one group; a published resource (desktop or
//!   application) is served by one group;
//! - in a private group a desktop may be assigned permanently to one or
//!   more users or to one client IP address; several desktops may carry
//!   the same user; a user without one gets a free desktop assigned on
//!   first use when the group allows it (the group does not change);
//!   only an administrator undoes an assignment;
//! - in a shared group any desktop serves; the least busy available one
//!   is chosen (lowest load index, then fewest sessions, then name) and
//!   assigned to the user for the session (temporarily); in an
//!   `exclusive` shared group a desktop temporarily assigned to another
//!   user is not chosen;
//! - when no desktop is available and the group has a power hook, the
//!   decision is to power one on (the broker then waits for it to
//!   register).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::registry::{WorkerName, WorkerView};

/// `[broker]`: the broker's settings and its catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerSection {
    /// Seconds without a heartbeat after which a worker is unavailable.
    /// Default 30.
    pub heartbeat_timeout_secs: u64,
    /// Seconds the broker waits for a powered-on worker to register before
    /// it gives up with `no-server`. Default 120.
    pub power_on_timeout_secs: u64,
    /// Seconds a `TicketTag` from `ResponseAddress` stays valid for
    /// `RequestTicket`. Default 300.
    pub ticket_tag_ttl_secs: u64,
    /// Seconds after a launch before a temporary (shared group) assignment
    /// is released once the worker reports no session. Default 120.
    pub temporary_grace_secs: u64,
    /// The farm name (`RequestServerFarmData`). Default `Gatehouse`.
    pub farm_name: String,
    /// `[[broker.groups]]`: the delivery groups.
    pub groups: Vec<GroupConfig>,
    /// `[[broker.desktops]]`: one per worker.
    pub desktops: Vec<DesktopConfig>,
    /// `[[broker.resources]]`: published desktops and applications.
    pub resources: Vec<ResourceConfig>,
    /// `[[broker.assignments]]`: permanent assignments in private groups.
    pub assignments: Vec<AssignmentConfig>,
}

impl Default for BrokerSection {
    fn default() -> Self {
        Self {
            heartbeat_timeout_secs: 30,
            power_on_timeout_secs: 120,
            ticket_tag_ttl_secs: 300,
            temporary_grace_secs: 120,
            farm_name: "Gatehouse".to_owned(),
            groups: Vec::new(),
            desktops: Vec::new(),
            resources: Vec::new(),
            assignments: Vec::new(),
        }
    }
}

/// Private or shared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum GroupKind {
    /// Desktops assigned permanently to users or a client address.
    Private,
    /// Any desktop serves any entitled user, temporarily.
    Shared,
}

/// `[[broker.groups]]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupConfig {
    /// The group's name.
    pub name: String,
    /// `private` or `shared`.
    pub kind: GroupKind,
    /// Private groups: assign a free desktop to a user without one on first
    /// use. Default true.
    #[serde(default = "yes")]
    pub assign_on_first_use: bool,
    /// Shared groups: one user per desktop at a time. Default false.
    #[serde(default)]
    pub exclusive: bool,
    /// Power hook: a command (argv; `{worker}` and `{group}` are replaced)
    /// run to power a desktop's worker on.
    #[serde(default)]
    pub power_on_command: Vec<String>,
    /// Power hook: an `http://` URL POSTed `{"worker":..,"group":..}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power_on_url: Option<String>,
}

fn yes() -> bool {
    true
}

/// `[[broker.desktops]]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DesktopConfig {
    /// The worker backing it (its registration name).
    #[schema(value_type = String)]
    pub worker: WorkerName,
    /// Its delivery group.
    pub group: String,
}

/// Desktop or application.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ResourceKind {
    /// A published desktop.
    Desktop,
    /// A published application.
    App,
}

/// `[[broker.resources]]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResourceConfig {
    /// The internal name (`InName`, what `RequestAddress` names).
    pub name: String,
    /// The display name (`FName`); default the name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display: Option<String>,
    /// `desktop` or `app`.
    pub kind: ResourceKind,
    /// The delivery group that serves it.
    pub group: String,
    /// Users entitled (case-insensitive). With `groups` empty too: every
    /// authenticated user.
    #[serde(default)]
    pub users: Vec<String>,
    /// Directory groups entitled (case-insensitive).
    #[serde(default)]
    pub groups: Vec<String>,
    /// A description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// `[[broker.assignments]]`: a permanent assignment of one desktop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignmentConfig {
    /// The desktop's worker.
    #[schema(value_type = String)]
    pub desktop: WorkerName,
    /// The users (one or more), or empty with `client_ip`.
    #[serde(default)]
    pub users: Vec<String>,
    /// A client address instead of users.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub client_ip: Option<IpAddr>,
}

impl BrokerSection {
    /// Checks names, references and ranges.
    ///
    /// Errors: `(key, message)` of the first problem.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let err = |key: &str, message: String| Err((format!("broker.{key}"), message));
        for (key, value, max) in [
            (
                "heartbeat_timeout_secs",
                self.heartbeat_timeout_secs,
                86_400,
            ),
            ("power_on_timeout_secs", self.power_on_timeout_secs, 86_400),
            ("ticket_tag_ttl_secs", self.ticket_tag_ttl_secs, 86_400),
            ("temporary_grace_secs", self.temporary_grace_secs, 86_400),
        ] {
            if value == 0 || value > max {
                return err(key, format!("{value} is out of range, expected 1 to {max}"));
            }
        }
        let mut groups = BTreeMap::new();
        for group in &self.groups {
            if group.name.is_empty() || groups.insert(group.name.as_str(), group).is_some() {
                return err(
                    "groups",
                    format!("duplicate or empty group name {:?}", group.name),
                );
            }
            if !group.power_on_command.is_empty() && group.power_on_url.is_some() {
                return err(
                    "groups",
                    format!(
                        "group {}: power_on_command and power_on_url are exclusive",
                        group.name
                    ),
                );
            }
            if let Some(url) = &group.power_on_url
                && !url.starts_with("http://")
            {
                return err(
                    "groups",
                    format!("group {}: power_on_url must be http://", group.name),
                );
            }
        }
        let mut desktops = BTreeMap::new();
        for desktop in &self.desktops {
            let Some(group) = groups.get(desktop.group.as_str()) else {
                return err(
                    "desktops",
                    format!(
                        "desktop {}: unknown group {:?}",
                        desktop.worker, desktop.group
                    ),
                );
            };
            if desktops.insert(&desktop.worker, *group).is_some() {
                return err(
                    "desktops",
                    format!("worker {} backs two desktops", desktop.worker),
                );
            }
        }
        let mut resources = BTreeSet::new();
        for resource in &self.resources {
            if resource.name.is_empty() || !resources.insert(resource.name.as_str()) {
                return err(
                    "resources",
                    format!("duplicate or empty resource name {:?}", resource.name),
                );
            }
            if !groups.contains_key(resource.group.as_str()) {
                return err(
                    "resources",
                    format!(
                        "resource {}: unknown group {:?}",
                        resource.name, resource.group
                    ),
                );
            }
        }
        for assignment in &self.assignments {
            let Some(group) = desktops.get(&assignment.desktop) else {
                return err(
                    "assignments",
                    format!("unknown desktop {}", assignment.desktop),
                );
            };
            if group.kind != GroupKind::Private {
                return err(
                    "assignments",
                    format!("desktop {} is not in a private group", assignment.desktop),
                );
            }
            if assignment.users.is_empty() == assignment.client_ip.is_none() {
                return err(
                    "assignments",
                    format!(
                        "desktop {}: give users or client_ip, not both",
                        assignment.desktop
                    ),
                );
            }
        }
        Ok(())
    }
}

/// Who asks for a launch or a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Who {
    /// The login name.
    pub user: String,
    /// The user's directory groups.
    pub groups: Vec<String>,
    /// The client's address, when known.
    pub client_ip: Option<IpAddr>,
}

/// The assignments made at run time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Assignments {
    /// Permanent assignments made on first use (persisted): desktop ->
    /// users, lowercase.
    pub permanent: BTreeMap<WorkerName, BTreeSet<String>>,
    /// Temporary (session) assignments in shared groups: desktop -> user,
    /// lowercase.
    pub temporary: BTreeMap<WorkerName, String>,
}

/// A new assignment the broker must record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NewAssignment {
    /// Permanent (assign on first use): persist it.
    Permanent {
        /// The desktop.
        desktop: WorkerName,
        /// The user, lowercase.
        user: String,
    },
    /// Temporary, for the session.
    Temporary {
        /// The desktop.
        desktop: WorkerName,
        /// The user, lowercase.
        user: String,
    },
}

/// The decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Launch on `worker` now.
    Launch {
        /// The worker.
        worker: WorkerName,
        /// The assignment to record.
        assign: Option<NewAssignment>,
    },
    /// Power `worker` on through the group's hook, wait for it to register,
    /// then launch there.
    PowerOn {
        /// The worker.
        worker: WorkerName,
        /// The group (its hook).
        group: String,
        /// The assignment to record.
        assign: Option<NewAssignment>,
    },
    /// No launch.
    Refuse(Refused),
}

/// Why no launch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// No such resource.
    #[error("unknown resource")]
    UnknownResource,
    /// The user is not entitled to it.
    #[error("not entitled to the resource")]
    NotEntitled,
    /// No desktop can serve (none registered and none to power on, or no
    /// free desktop to assign).
    #[error("no desktop available")]
    NoDesktop,
    /// Every desktop that could serve is full.
    #[error("every desktop is full")]
    Overloaded,
}

/// The catalog, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Catalog {
    section: BrokerSection,
}

impl Catalog {
    /// The catalog of a validated section.
    pub fn new(section: BrokerSection) -> Self {
        Self { section }
    }

    /// The section.
    pub fn section(&self) -> &BrokerSection {
        &self.section
    }

    /// A group by name.
    pub fn group(&self, name: &str) -> Option<&GroupConfig> {
        self.section.groups.iter().find(|g| g.name == name)
    }

    /// The group of a desktop.
    pub fn group_of(&self, worker: &WorkerName) -> Option<&GroupConfig> {
        let desktop = self.section.desktops.iter().find(|d| &d.worker == worker)?;
        self.group(&desktop.group)
    }

    /// A resource by internal or display name.
    pub fn resource(&self, name: &str) -> Option<&ResourceConfig> {
        self.section
            .resources
            .iter()
            .find(|r| r.name == name)
            .or_else(|| {
                self.section
                    .resources
                    .iter()
                    .find(|r| r.display.as_deref() == Some(name))
            })
    }

    /// Whether `who` may see and launch `resource`.
    pub fn entitled(&self, resource: &ResourceConfig, who: &Who) -> bool {
        if resource.users.is_empty() && resource.groups.is_empty() {
            return true;
        }
        resource
            .users
            .iter()
            .any(|u| u.eq_ignore_ascii_case(&who.user))
            || resource
                .groups
                .iter()
                .any(|g| who.groups.iter().any(|mine| mine.eq_ignore_ascii_case(g)))
    }

    /// The resources `who` is entitled to, in configuration order.
    pub fn visible(&self, who: &Who) -> Vec<&ResourceConfig> {
        self.section
            .resources
            .iter()
            .filter(|r| self.entitled(r, who))
            .collect()
    }

    fn desktops_of<'a>(&'a self, group: &'a str) -> impl Iterator<Item = &'a WorkerName> + 'a {
        self.section
            .desktops
            .iter()
            .filter(move |d| d.group == group)
            .map(|d| &d.worker)
    }

    fn statically_assigned(&self, desktop: &WorkerName) -> Option<&AssignmentConfig> {
        self.section
            .assignments
            .iter()
            .find(|a| &a.desktop == desktop)
    }

    /// The brokering decision for `who` launching `resource` (by internal
    /// or display name).
    pub fn decide(
        &self,
        workers: &BTreeMap<WorkerName, WorkerView>,
        assignments: &Assignments,
        who: &Who,
        resource: &str,
    ) -> Decision {
        let Some(resource) = self.resource(resource) else {
            return Decision::Refuse(Refused::UnknownResource);
        };
        if !self.entitled(resource, who) {
            return Decision::Refuse(Refused::NotEntitled);
        }
        let Some(group) = self.group(&resource.group) else {
            return Decision::Refuse(Refused::UnknownResource);
        };
        let user = who.user.to_ascii_lowercase();
        match group.kind {
            GroupKind::Shared => {
                let candidates: Vec<&WorkerName> = self
                    .desktops_of(&group.name)
                    .filter(|d| {
                        !group.exclusive
                            || assignments
                                .temporary
                                .get(*d)
                                .is_none_or(|holder| *holder == user)
                    })
                    .collect();
                // A desktop already serving this user comes first (session
                // sharing), if it can take the launch.
                let mine: Vec<&WorkerName> = candidates
                    .iter()
                    .copied()
                    .filter(|d| assignments.temporary.get(*d) == Some(&user))
                    .collect();
                let temporary = |worker: &WorkerName| {
                    Some(NewAssignment::Temporary {
                        desktop: worker.clone(),
                        user: user.clone(),
                    })
                };
                if let Some(worker) = least_busy(workers, &mine) {
                    return Decision::Launch {
                        assign: temporary(worker),
                        worker: worker.clone(),
                    };
                }
                choose(workers, group, &candidates, temporary)
            }
            GroupKind::Private => {
                let assigned: Vec<&WorkerName> = self
                    .desktops_of(&group.name)
                    .filter(|d| self.assigned_to(d, assignments, who, &user))
                    .collect();
                if !assigned.is_empty() {
                    return choose(workers, group, &assigned, |_| None);
                }
                if !group.assign_on_first_use {
                    return Decision::Refuse(Refused::NoDesktop);
                }
                let free: Vec<&WorkerName> = self
                    .desktops_of(&group.name)
                    .filter(|d| {
                        self.statically_assigned(d).is_none()
                            && assignments.permanent.get(*d).is_none_or(BTreeSet::is_empty)
                    })
                    .collect();
                choose(workers, group, &free, |worker| {
                    Some(NewAssignment::Permanent {
                        desktop: worker.clone(),
                        user: user.clone(),
                    })
                })
            }
        }
    }

    fn assigned_to(
        &self,
        desktop: &WorkerName,
        assignments: &Assignments,
        who: &Who,
        user: &str,
    ) -> bool {
        let by_config = self.statically_assigned(desktop).is_some_and(|a| {
            a.users.iter().any(|u| u.eq_ignore_ascii_case(user))
                || (a.client_ip.is_some() && a.client_ip == who.client_ip)
        });
        by_config
            || assignments
                .permanent
                .get(desktop)
                .is_some_and(|users| users.contains(user))
    }
}

/// Launch on the least busy available candidate; else power one on; else
/// refuse (overloaded when some are up but full).
fn choose(
    workers: &BTreeMap<WorkerName, WorkerView>,
    group: &GroupConfig,
    candidates: &[&WorkerName],
    assign: impl Fn(&WorkerName) -> Option<NewAssignment>,
) -> Decision {
    if let Some(worker) = least_busy(workers, candidates) {
        return Decision::Launch {
            worker: worker.clone(),
            assign: assign(worker),
        };
    }
    let has_hook = !group.power_on_command.is_empty() || group.power_on_url.is_some();
    if has_hook {
        // Prefer a worker never heard of (powered off) to a stale one.
        let off = candidates
            .iter()
            .find(|d| !workers.contains_key(**d))
            .or_else(|| {
                candidates
                    .iter()
                    .find(|d| workers.get(**d).is_some_and(|w| !w.available))
            });
        if let Some(worker) = off {
            return Decision::PowerOn {
                worker: (*worker).clone(),
                group: group.name.clone(),
                assign: assign(worker),
            };
        }
    }
    let some_full = candidates
        .iter()
        .any(|d| workers.get(*d).is_some_and(|w| w.available && w.full));
    Decision::Refuse(if some_full {
        Refused::Overloaded
    } else {
        Refused::NoDesktop
    })
}

fn least_busy<'a>(
    workers: &BTreeMap<WorkerName, WorkerView>,
    candidates: &[&'a WorkerName],
) -> Option<&'a WorkerName> {
    candidates
        .iter()
        .copied()
        .filter_map(|name| {
            let view = workers.get(name)?;
            (view.available && !view.full).then_some((view.load, view.sessions, name))
        })
        .min()
        .map(|(_, _, name)| name)
}

#[cfg(test)]
mod tests;
