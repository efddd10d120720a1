//! Access policies: ordered rules on user, group, client address,
//! resource location and time that allow or deny a resource (`[policy]`).
//!
//! Two kinds of resource are governed: launches of published desktops and
//! applications (the store front, the XML broker) and server-to-client
//! applications (a back-end server reaching a user's client through the
//! connector). Rules are tried in the order of the file; the first rule
//! whose conditions all hold and which covers the target decides. When no
//! rule decides, the kind's default applies: launches are allowed (the
//! catalog's entitlement already limits them), server-to-client flows are
//! denied (a server reaches a laptop only when a rule says so).
//!
//! A condition list left empty holds for everyone; names compare without
//! regard to case. Times are wall-clock in the zone `utc_offset_minutes`
//! east of UTC.
//!
//! The names of the rules whose *subject* conditions (user, group, client,
//! time) hold for a session are its SmartAccess filters
//! ([`Policies::filters`]), which the store answers in
//! `GetAccessInformation`.
//!
//! The evaluation is a pure function of the rules, who asks, what is asked
//! for and the time, so it is tested without sockets or clocks.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use ipnet::IpNet;
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

/// Most rules in `[policy]`.
pub const MAX_RULES: usize = 1_000;

/// What a rule (or a default) does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// The resource may be used.
    Allow,
    /// The resource may not be used (and a launch resource is not listed).
    Deny,
}

impl Action {
    /// `allow` or `deny`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
        }
    }
}

/// Which kind of resource a rule governs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum AppliesTo {
    /// Published desktops and applications (launches).
    #[default]
    Launch,
    /// Server-to-client applications (connector flows).
    ServerToClient,
    /// Both.
    Any,
}

/// A day of the week.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Day {
    /// Monday.
    Mon,
    /// Tuesday.
    Tue,
    /// Wednesday.
    Wed,
    /// Thursday.
    Thu,
    /// Friday.
    Fri,
    /// Saturday.
    Sat,
    /// Sunday.
    Sun,
}

impl Day {
    /// The day of `days_since_epoch` (1970-01-01 was a Thursday).
    fn of_epoch_day(days_since_epoch: i64) -> Self {
        match days_since_epoch.rem_euclid(7) {
            0 => Self::Thu,
            1 => Self::Fri,
            2 => Self::Sat,
            3 => Self::Sun,
            4 => Self::Mon,
            5 => Self::Tue,
            _ => Self::Wed,
        }
    }
}

/// `[[policy.rules]]`: one access rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyRule {
    /// Unique name; shown as a SmartAccess filter and in every decision
    /// log. 1 to 64 characters of letters, digits, `-`, `_`, `.`.
    pub name: String,
    /// `allow` or `deny`.
    pub action: Action,
    /// `launch` (default), `server-to-client` or `any`.
    #[serde(default)]
    pub applies_to: AppliesTo,
    /// Resources (published resource names, or server-to-client app
    /// names) the rule covers; empty: every resource of its kind.
    #[serde(default)]
    pub resources: Vec<String>,
    /// Login names; empty: any user.
    #[serde(default)]
    pub users: Vec<String>,
    /// Directory groups (any one of them); empty: any group.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Client address ranges (CIDR, e.g. `10.0.0.0/8`); empty: any
    /// address. A client whose address is unknown matches only an empty
    /// list.
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub clients: Vec<IpNet>,
    /// Resource locations (server-to-client); empty: any location.
    #[serde(default)]
    pub locations: Vec<String>,
    /// Days of the week (`mon` .. `sun`); empty: every day.
    #[serde(default)]
    pub days: Vec<Day>,
    /// Time of day `HH:MM-HH:MM` (start inclusive, end exclusive; a
    /// window past midnight such as `22:00-06:00` wraps); absent: all day.
    #[serde(default)]
    pub hours: Option<String>,
}

/// `[policy]`: the defaults and the ordered rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicySection {
    /// What a launch gets when no rule decides. Default `allow`.
    pub launch_default: Action,
    /// What a server-to-client flow gets when no rule decides. Default
    /// `deny`.
    pub server_to_client_default: Action,
    /// The zone of `days` and `hours`, in minutes east of UTC (-840 to
    /// 840). Default 0 (UTC).
    pub utc_offset_minutes: i32,
    /// The rules, tried in order.
    pub rules: Vec<PolicyRule>,
}

impl Default for PolicySection {
    fn default() -> Self {
        Self {
            launch_default: Action::Allow,
            server_to_client_default: Action::Deny,
            utc_offset_minutes: 0,
            rules: Vec::new(),
        }
    }
}

impl PolicySection {
    /// Checks names, hours and the offset. Errors name the key, e.g.
    /// `policy.rules[2].hours`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if !(-840..=840).contains(&self.utc_offset_minutes) {
            return Err((
                "policy.utc_offset_minutes".into(),
                format!("{} is outside -840..=840 minutes", self.utc_offset_minutes),
            ));
        }
        if self.rules.len() > MAX_RULES {
            return Err((
                "policy.rules".into(),
                format!("{} rules, at most {MAX_RULES}", self.rules.len()),
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (index, rule) in self.rules.iter().enumerate() {
            let key = |field: &str| format!("policy.rules[{index}].{field}");
            check_name(key("name"), &rule.name)?;
            if !seen.insert(rule.name.to_ascii_lowercase()) {
                return Err((key("name"), format!("duplicate rule name {:?}", rule.name)));
            }
            if let Some(hours) = &rule.hours {
                Hours::parse(hours).map_err(|message| (key("hours"), message))?;
            }
        }
        Ok(())
    }
}

/// `Ok` when `name` is a [`valid_name`]; otherwise the (key, message) pair
/// the configuration checks report for `key`.
pub(crate) fn check_name(key: String, name: &str) -> Result<(), (String, String)> {
    if valid_name(name) {
        return Ok(());
    }
    Err((
        key,
        format!("invalid name {name:?}: 1 to 64 letters, digits, '-', '_' or '.'"),
    ))
}

/// A rule name: 1 to 64 of `[A-Za-z0-9._-]`.
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A time-of-day window in minutes since midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Hours {
    start: u32,
    end: u32,
}

impl Hours {
    /// Parses `HH:MM-HH:MM`.
    fn parse(text: &str) -> Result<Self, String> {
        let bad = || format!("invalid hours {text:?}, expected HH:MM-HH:MM");
        let (start, end) = text.split_once('-').ok_or_else(bad)?;
        let minute = |part: &str| -> Option<u32> {
            let (h, m) = part.trim().split_once(':')?;
            if h.len() != 2 || m.len() != 2 {
                return None;
            }
            let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
            (h < 24 && m < 60).then_some(h * 60 + m)
        };
        let (start, end) = (minute(start).ok_or_else(bad)?, minute(end).ok_or_else(bad)?);
        if start == end {
            return Err(format!("empty hours {text:?}: start equals end"));
        }
        Ok(Self { start, end })
    }

    fn contains(self, minute: u32) -> bool {
        if self.start < self.end {
            (self.start..self.end).contains(&minute)
        } else {
            minute >= self.start || minute < self.end
        }
    }
}

/// Who asks.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// The login name.
    pub user: &'a str,
    /// The user's directory groups.
    pub groups: &'a [String],
    /// The client's address, when known.
    pub client: Option<IpAddr>,
}

/// The kind of a [`Target`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    /// A published desktop or application.
    Launch,
    /// A server-to-client application.
    ServerToClient,
}

/// What is asked for.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// Its kind.
    pub kind: TargetKind,
    /// The resource's (or app's) name.
    pub resource: &'a str,
    /// Its resource location, when it has one.
    pub location: Option<&'a str>,
}

/// A decision and what made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Allowed or denied.
    pub action: Action,
    /// The rule that decided; `None`: the kind's default.
    pub rule: Option<String>,
}

impl Verdict {
    /// Whether the target may be used.
    pub fn allowed(&self) -> bool {
        self.action == Action::Allow
    }

    /// For the logs: `rule NAME` or `default`.
    pub fn reason(&self) -> String {
        match &self.rule {
            Some(name) => format!("rule {name}"),
            None => "default".into(),
        }
    }
}

/// The compiled `[policy]` section.
#[derive(Debug, Clone)]
pub struct Policies {
    section: PolicySection,
    hours: Vec<Option<Hours>>,
}

impl Default for Policies {
    fn default() -> Self {
        Self::new(PolicySection::default())
    }
}

impl Policies {
    /// Compiles `section`; call [`PolicySection::validate`] first (a rule
    /// with hours that do not parse never matches).
    pub fn new(section: PolicySection) -> Self {
        let hours = section
            .rules
            .iter()
            .map(|rule| rule.hours.as_deref().and_then(|h| Hours::parse(h).ok()))
            .collect();
        Self { section, hours }
    }

    /// The section it was built from.
    pub fn section(&self) -> &PolicySection {
        &self.section
    }

    /// The decision for `subject` asking for `target` at `now`: the first
    /// rule that covers the target and whose conditions hold, else the
    /// kind's default.
    pub fn evaluate(&self, subject: &Subject<'_>, target: &Target<'_>, now: SystemTime) -> Verdict {
        let clock = Clock::at(now, self.section.utc_offset_minutes);
        for (index, rule) in self.section.rules.iter().enumerate() {
            if self.covers(rule, target) && self.holds(index, rule, subject, clock) {
                return Verdict {
                    action: rule.action,
                    rule: Some(rule.name.clone()),
                };
            }
        }
        let action = match target.kind {
            TargetKind::Launch => self.section.launch_default,
            TargetKind::ServerToClient => self.section.server_to_client_default,
        };
        Verdict { action, rule: None }
    }

    /// The SmartAccess filters of a session: the names of the rules whose
    /// user, group, client and time conditions hold for `subject` at `now`
    /// (whatever their resources or action), in rule order.
    pub fn filters(&self, subject: &Subject<'_>, now: SystemTime) -> Vec<String> {
        let clock = Clock::at(now, self.section.utc_offset_minutes);
        self.section
            .rules
            .iter()
            .enumerate()
            .filter(|(index, rule)| self.holds(*index, rule, subject, clock))
            .map(|(_, rule)| rule.name.clone())
            .collect()
    }

    fn covers(&self, rule: &PolicyRule, target: &Target<'_>) -> bool {
        let kind = match (rule.applies_to, target.kind) {
            (AppliesTo::Any, _)
            | (AppliesTo::Launch, TargetKind::Launch)
            | (AppliesTo::ServerToClient, TargetKind::ServerToClient) => true,
            (AppliesTo::Launch, TargetKind::ServerToClient)
            | (AppliesTo::ServerToClient, TargetKind::Launch) => false,
        };
        kind && (rule.resources.is_empty()
            || rule
                .resources
                .iter()
                .any(|r| r.eq_ignore_ascii_case(target.resource)))
            && (rule.locations.is_empty()
                || target.location.is_some_and(|location| {
                    rule.locations
                        .iter()
                        .any(|l| l.eq_ignore_ascii_case(location))
                }))
    }

    fn holds(&self, index: usize, rule: &PolicyRule, subject: &Subject<'_>, clock: Clock) -> bool {
        let user = rule.users.is_empty()
            || rule
                .users
                .iter()
                .any(|u| u.eq_ignore_ascii_case(subject.user));
        let group = rule.groups.is_empty()
            || rule
                .groups
                .iter()
                .any(|g| subject.groups.iter().any(|s| s.eq_ignore_ascii_case(g)));
        let client = rule.clients.is_empty()
            || subject
                .client
                .is_some_and(|ip| rule.clients.iter().any(|net| net_contains(net, ip)));
        let day = rule.days.is_empty() || rule.days.contains(&clock.day);
        let hours = match (&rule.hours, self.hours.get(index).copied().flatten()) {
            (None, _) => true,
            (Some(_), Some(window)) => window.contains(clock.minute),
            (Some(_), None) => false,
        };
        user && group && client && day && hours
    }
}

/// The running policies, shared by everything that decides (store front,
/// XML broker, server-to-client flows) and replaced as a whole by a reload
/// or an API change: a decision in flight keeps the snapshot it started
/// with, the next one sees the new rules.
#[derive(Debug, Clone, Default)]
pub struct SharedPolicies(Arc<RwLock<Arc<Policies>>>);

impl SharedPolicies {
    /// Shares `policies`.
    pub fn new(policies: Policies) -> Self {
        Self(Arc::new(RwLock::new(Arc::new(policies))))
    }

    /// The current snapshot.
    pub fn current(&self) -> Arc<Policies> {
        self.0.read().clone()
    }

    /// Replaces the rules for every later decision.
    pub fn replace(&self, policies: Policies) {
        *self.0.write() = Arc::new(policies);
    }
}

/// Whether `net` holds `ip`, treating an IPv4-mapped IPv6 address as IPv4.
fn net_contains(net: &IpNet, ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    };
    net.contains(&ip)
}

/// The local day and minute of the day.
#[derive(Debug, Clone, Copy)]
struct Clock {
    day: Day,
    minute: u32,
}

impl Clock {
    fn at(now: SystemTime, offset_minutes: i32) -> Self {
        let secs = match now.duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 2),
            Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX / 2),
        };
        let local = secs.saturating_add(i64::from(offset_minutes) * 60);
        let day = local.div_euclid(86_400);
        let minute = u32::try_from(local.rem_euclid(86_400) / 60).unwrap_or(0);
        Self {
            day: Day::of_epoch_day(day),
            minute,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    // 2026-11-23 is a Monday.
    fn monday_at(hour: u64, minute: u64) -> SystemTime {
        let midnight = 1_795_392_000; // 2026-11-23T00:00:00Z
        UNIX_EPOCH + Duration::from_secs(midnight + hour * 3600 + minute * 60)
    }

    fn rule(name: &str, action: Action) -> PolicyRule {
        PolicyRule {
            name: name.into(),
            action,
            applies_to: AppliesTo::Launch,
            resources: Vec::new(),
            users: Vec::new(),
            groups: Vec::new(),
            clients: Vec::new(),
            locations: Vec::new(),
            days: Vec::new(),
            hours: None,
        }
    }

    fn section(rules: Vec<PolicyRule>) -> PolicySection {
        PolicySection {
            rules,
            ..PolicySection::default()
        }
    }

    const NO_GROUPS: &[String] = &[];

    fn alice(client: &str) -> Subject<'static> {
        Subject {
            user: "alice",
            groups: NO_GROUPS,
            client: client.parse().ok(),
        }
    }

    fn launch(resource: &str) -> Target<'_> {
        Target {
            kind: TargetKind::Launch,
            resource,
            location: None,
        }
    }

    #[test]
    fn the_epoch_day_of_the_test_clock_is_a_monday() {
        let clock = Clock::at(monday_at(9, 30), 0);
        assert_eq!(clock.day, Day::Mon);
        assert_eq!(clock.minute, 9 * 60 + 30);
        let tokyo = Clock::at(monday_at(20, 0), 9 * 60);
        assert_eq!((tokyo.day, tokyo.minute), (Day::Tue, 5 * 60));
        let before_epoch = Clock::at(UNIX_EPOCH - Duration::from_secs(60), 0);
        assert_eq!(
            (before_epoch.day, before_epoch.minute),
            (Day::Wed, 23 * 60 + 59)
        );
    }

    #[test]
    fn with_no_rules_launches_are_allowed_and_flows_denied() {
        let policies = Policies::default();
        let now = monday_at(12, 0);
        assert!(
            policies
                .evaluate(&alice("10.0.0.1"), &launch("Desk"), now)
                .allowed()
        );
        let flow = Target {
            kind: TargetKind::ServerToClient,
            resource: "ssh",
            location: Some("dc1"),
        };
        let verdict = policies.evaluate(&alice("10.0.0.1"), &flow, now);
        assert_eq!(
            verdict,
            Verdict {
                action: Action::Deny,
                rule: None
            }
        );
        assert_eq!(verdict.reason(), "default");
    }

    #[test]
    fn the_first_matching_rule_decides() {
        let mut deny = rule("no-finance-desk", Action::Deny);
        deny.resources = vec!["finance".into()];
        deny.clients = vec!["192.0.2.0/24".parse().unwrap()];
        let allow = rule("all", Action::Allow);
        let policies = Policies::new(section(vec![deny, allow]));
        let now = monday_at(12, 0);
        let outside = policies.evaluate(&alice("192.0.2.7"), &launch("FINANCE"), now);
        assert_eq!(outside.rule.as_deref(), Some("no-finance-desk"));
        assert!(!outside.allowed());
        let inside = policies.evaluate(&alice("10.1.1.1"), &launch("finance"), now);
        assert_eq!(inside.rule.as_deref(), Some("all"));
        assert!(inside.allowed());
        let other = policies.evaluate(&alice("192.0.2.7"), &launch("Desk"), now);
        assert_eq!(other.rule.as_deref(), Some("all"));
    }

    #[test]
    fn users_and_groups_compare_without_case_and_any_group_matches() {
        let mut deny = rule("contractors", Action::Deny);
        deny.groups = vec!["Contractors".into()];
        let policies = Policies::new(section(vec![deny]));
        let groups = vec!["staff".to_string(), "CONTRACTORS".to_string()];
        let bob = Subject {
            user: "Bob",
            groups: &groups,
            client: None,
        };
        let now = monday_at(12, 0);
        assert!(!policies.evaluate(&bob, &launch("x"), now).allowed());
        assert!(
            policies
                .evaluate(&alice("10.0.0.1"), &launch("x"), now)
                .allowed()
        );

        let mut only_bob = rule("bob", Action::Deny);
        only_bob.users = vec!["bob".into()];
        let policies = Policies::new(section(vec![only_bob]));
        assert!(!policies.evaluate(&bob, &launch("x"), now).allowed());
    }

    #[test]
    fn an_unknown_client_address_matches_only_rules_without_client_ranges() {
        let mut deny = rule("lan-only", Action::Deny);
        deny.clients = vec!["10.0.0.0/8".parse().unwrap()];
        let policies = Policies::new(section(vec![deny]));
        let unknown = Subject {
            user: "alice",
            groups: NO_GROUPS,
            client: None,
        };
        assert!(
            policies
                .evaluate(&unknown, &launch("x"), monday_at(1, 0))
                .allowed()
        );
        let mapped = Subject {
            user: "alice",
            groups: NO_GROUPS,
            client: Some("::ffff:10.2.3.4".parse().unwrap()),
        };
        assert!(
            !policies
                .evaluate(&mapped, &launch("x"), monday_at(1, 0))
                .allowed()
        );
    }

    #[test]
    fn hours_and_days_limit_a_rule_and_windows_wrap_past_midnight() {
        let mut office = rule("office", Action::Allow);
        office.applies_to = AppliesTo::ServerToClient;
        office.days = vec![Day::Mon, Day::Tue];
        office.hours = Some("08:00-18:00".into());
        let mut night = rule("night", Action::Deny);
        night.hours = Some("22:00-06:00".into());
        let policies = Policies::new(section(vec![office, night]));
        let flow = Target {
            kind: TargetKind::ServerToClient,
            resource: "rdp",
            location: None,
        };
        let who = alice("10.0.0.1");
        assert!(policies.evaluate(&who, &flow, monday_at(8, 0)).allowed());
        assert!(!policies.evaluate(&who, &flow, monday_at(18, 0)).allowed());
        assert!(!policies.evaluate(&who, &flow, monday_at(7, 59)).allowed());
        // Wednesday 09:00: not an office day.
        let wednesday = monday_at(9, 0) + Duration::from_secs(2 * 86_400);
        assert!(!policies.evaluate(&who, &flow, wednesday).allowed());
        // The night rule covers launches only.
        assert!(
            !policies
                .evaluate(&who, &launch("x"), monday_at(23, 0))
                .allowed()
        );
        assert!(
            !policies
                .evaluate(&who, &launch("x"), monday_at(5, 59))
                .allowed()
        );
        assert!(
            policies
                .evaluate(&who, &launch("x"), monday_at(6, 0))
                .allowed()
        );
    }

    #[test]
    fn a_rule_with_locations_covers_only_targets_in_them() {
        let mut allow = rule("dc1-ssh", Action::Allow);
        allow.applies_to = AppliesTo::Any;
        allow.locations = vec!["DC1".into()];
        let policies = Policies::new(section(vec![allow]));
        let who = alice("10.0.0.1");
        let at = |location| Target {
            kind: TargetKind::ServerToClient,
            resource: "ssh",
            location,
        };
        let now = monday_at(12, 0);
        assert!(policies.evaluate(&who, &at(Some("dc1")), now).allowed());
        assert!(!policies.evaluate(&who, &at(Some("dc2")), now).allowed());
        assert!(!policies.evaluate(&who, &at(None), now).allowed());
    }

    #[test]
    fn filters_name_every_rule_whose_subject_conditions_hold() {
        let mut lan = rule("lan", Action::Allow);
        lan.clients = vec!["10.0.0.0/8".parse().unwrap()];
        let mut finance = rule("finance-deny", Action::Deny);
        finance.resources = vec!["finance".into()];
        let mut bob = rule("bob-only", Action::Allow);
        bob.users = vec!["bob".into()];
        let policies = Policies::new(section(vec![lan, finance, bob]));
        assert_eq!(
            policies.filters(&alice("10.9.9.9"), monday_at(12, 0)),
            vec!["lan".to_string(), "finance-deny".to_string()]
        );
        assert_eq!(
            policies.filters(&alice("192.0.2.1"), monday_at(12, 0)),
            vec!["finance-deny".to_string()]
        );
    }

    #[test]
    fn a_replaced_policy_set_decides_later_evaluations_only() {
        let shared = SharedPolicies::default();
        let before = shared.current();
        shared.replace(Policies::new(section(vec![rule("none", Action::Deny)])));
        let now = monday_at(12, 0);
        assert!(
            before
                .evaluate(&alice("10.0.0.1"), &launch("x"), now)
                .allowed()
        );
        assert!(
            !shared
                .current()
                .evaluate(&alice("10.0.0.1"), &launch("x"), now)
                .allowed()
        );
    }

    #[test]
    fn validation_names_the_key_of_a_bad_rule() {
        let mut bad_hours = rule("x", Action::Allow);
        bad_hours.hours = Some("8-18".into());
        let err = section(vec![rule("ok", Action::Deny), bad_hours]).validate();
        assert_eq!(err.unwrap_err().0, "policy.rules[1].hours");
        let err = section(vec![rule("a b", Action::Deny)]).validate();
        assert_eq!(err.unwrap_err().0, "policy.rules[0].name");
        let err = section(vec![rule("dup", Action::Deny), rule("DUP", Action::Allow)]).validate();
        assert!(err.unwrap_err().1.contains("duplicate"));
        let mut empty = rule("e", Action::Deny);
        empty.hours = Some("10:00-10:00".into());
        assert!(section(vec![empty]).validate().is_err());
        let offset = PolicySection {
            utc_offset_minutes: 900,
            ..PolicySection::default()
        };
        assert_eq!(
            offset.validate().unwrap_err().0,
            "policy.utc_offset_minutes"
        );
        assert!(PolicySection::default().validate().is_ok());
    }

    #[test]
    fn the_section_parses_from_toml_with_defaults() {
        let text = r#"
            utc_offset_minutes = 60
            [[rules]]
            name = "lan"
            action = "deny"
            applies_to = "server-to-client"
            clients = ["10.0.0.0/8", "fd00::/8"]
            days = ["mon", "fri"]
            hours = "08:00-18:00"
        "#;
        let section: PolicySection = toml::from_str(text).unwrap();
        assert_eq!(section.launch_default, Action::Allow);
        assert_eq!(section.server_to_client_default, Action::Deny);
        assert_eq!(section.rules[0].applies_to, AppliesTo::ServerToClient);
        assert_eq!(section.rules[0].clients.len(), 2);
        assert!(section.validate().is_ok());
        assert!(
            toml::from_str::<PolicySection>("[[rules]]\nname = \"x\"\naction = \"maybe\"").is_err()
        );
        assert!(toml::from_str::<PolicySection>("colour = 1").is_err());
    }
}
