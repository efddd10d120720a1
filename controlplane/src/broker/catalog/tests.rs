use std::collections::BTreeMap;

use super::*;
use crate::sta::WorkerAddr;

const CATALOG: &str = r#"
[[groups]]
name = "pool"
kind = "shared"

[[groups]]
name = "solo"
kind = "shared"
exclusive = true

[[groups]]
name = "vdi"
kind = "private"
power_on_command = ["hv", "on", "{worker}"]

[[groups]]
name = "fixed"
kind = "private"
assign_on_first_use = false

[[desktops]]
worker = "p1"
group = "pool"
[[desktops]]
worker = "p2"
group = "pool"
[[desktops]]
worker = "p3"
group = "pool"
[[desktops]]
worker = "s1"
group = "solo"
[[desktops]]
worker = "s2"
group = "solo"
[[desktops]]
worker = "v1"
group = "vdi"
[[desktops]]
worker = "v2"
group = "vdi"
[[desktops]]
worker = "f1"
group = "fixed"
[[desktops]]
worker = "f2"
group = "fixed"

[[resources]]
name = "Pool"
display = "Pool Desktop"
kind = "desktop"
group = "pool"

[[resources]]
name = "Solo"
kind = "desktop"
group = "solo"

[[resources]]
name = "Notepad"
kind = "app"
group = "pool"
groups = ["editors"]

[[resources]]
name = "Mine"
kind = "desktop"
group = "vdi"

[[resources]]
name = "Fixed"
kind = "desktop"
group = "fixed"
users = ["alice", "bob", "kiosk"]

[[assignments]]
desktop = "f1"
users = ["Alice", "bob"]

[[assignments]]
desktop = "f2"
client_ip = "10.0.0.9"
"#;

fn catalog() -> Catalog {
    let section: BrokerSection = toml::from_str(CATALOG).unwrap();
    section.validate().unwrap();
    Catalog::new(section)
}

fn name(text: &str) -> WorkerName {
    WorkerName::new(text).unwrap()
}

fn up(load: u32, sessions: u32) -> WorkerView {
    WorkerView {
        ica: WorkerAddr::decode("127.0.0.1:1494").unwrap(),
        cgp: None,
        available: true,
        full: false,
        sessions,
        load,
    }
}

fn workers(list: &[(&str, WorkerView)]) -> BTreeMap<WorkerName, WorkerView> {
    list.iter().map(|(n, v)| (name(n), v.clone())).collect()
}

fn who(user: &str) -> Who {
    Who {
        user: user.to_owned(),
        groups: Vec::new(),
        client_ip: None,
    }
}

fn launch(worker: &str, assign: Option<NewAssignment>) -> Decision {
    Decision::Launch {
        worker: name(worker),
        assign,
    }
}

fn temp(worker: &str, user: &str) -> Option<NewAssignment> {
    Some(NewAssignment::Temporary {
        desktop: name(worker),
        user: user.to_owned(),
    })
}

fn perm(worker: &str, user: &str) -> Option<NewAssignment> {
    Some(NewAssignment::Permanent {
        desktop: name(worker),
        user: user.to_owned(),
    })
}

#[test]
fn a_shared_launch_goes_to_the_least_busy_worker_and_is_assigned_for_the_session() {
    let snapshot = workers(&[("p1", up(700, 7)), ("p2", up(100, 9)), ("p3", up(400, 1))]);
    let decision = catalog().decide(&snapshot, &Assignments::default(), &who("Carol"), "Pool");
    assert_eq!(decision, launch("p2", temp("p2", "carol")));
}

#[test]
fn equal_loads_are_broken_by_sessions_then_by_name() {
    let snapshot = workers(&[("p1", up(100, 3)), ("p2", up(100, 2)), ("p3", up(100, 2))]);
    let decision = catalog().decide(&snapshot, &Assignments::default(), &who("c"), "Pool");
    assert_eq!(decision, launch("p2", temp("p2", "c")));
}

#[test]
fn the_display_name_finds_the_resource_too() {
    let snapshot = workers(&[("p1", up(0, 0))]);
    let decision = catalog().decide(
        &snapshot,
        &Assignments::default(),
        &who("c"),
        "Pool Desktop",
    );
    assert_eq!(decision, launch("p1", temp("p1", "c")));
}

#[test]
fn unavailable_and_full_workers_are_never_chosen() {
    let mut stale = up(0, 0);
    stale.available = false;
    let mut full = up(1, 0);
    full.full = true;
    let snapshot = workers(&[("p1", stale), ("p2", full), ("p3", up(9_000, 40))]);
    let decision = catalog().decide(&snapshot, &Assignments::default(), &who("c"), "Pool");
    assert_eq!(decision, launch("p3", temp("p3", "c")));
}

#[test]
fn a_shared_group_of_full_workers_is_overloaded() {
    let mut full = up(1, 0);
    full.full = true;
    let snapshot = workers(&[("p1", full.clone()), ("p2", full)]);
    let decision = catalog().decide(&snapshot, &Assignments::default(), &who("c"), "Pool");
    assert_eq!(decision, Decision::Refuse(Refused::Overloaded));
}

#[test]
fn a_shared_group_without_workers_and_without_a_hook_has_no_desktop() {
    let decision = catalog().decide(&BTreeMap::new(), &Assignments::default(), &who("c"), "Pool");
    assert_eq!(decision, Decision::Refuse(Refused::NoDesktop));
}

#[test]
fn a_user_with_a_session_on_a_shared_desktop_goes_back_to_it() {
    let snapshot = workers(&[("p1", up(0, 0)), ("p2", up(900, 1))]);
    let mut assignments = Assignments::default();
    assignments.temporary.insert(name("p2"), "dave".to_owned());
    let decision = catalog().decide(&snapshot, &assignments, &who("Dave"), "Pool");
    assert_eq!(decision, launch("p2", temp("p2", "dave")));
}

#[test]
fn an_exclusive_shared_desktop_held_by_another_user_is_skipped() {
    let snapshot = workers(&[("s1", up(0, 1)), ("s2", up(500, 0))]);
    let mut assignments = Assignments::default();
    assignments.temporary.insert(name("s1"), "erin".to_owned());
    let decision = catalog().decide(&snapshot, &assignments, &who("frank"), "Solo");
    assert_eq!(decision, launch("s2", temp("s2", "frank")));
    assignments.temporary.insert(name("s2"), "gina".to_owned());
    let decision = catalog().decide(&snapshot, &assignments, &who("frank"), "Solo");
    assert_eq!(decision, Decision::Refuse(Refused::NoDesktop));
}

#[test]
fn a_non_exclusive_shared_desktop_serves_several_users_at_once() {
    let snapshot = workers(&[("p1", up(0, 1))]);
    let mut assignments = Assignments::default();
    assignments.temporary.insert(name("p1"), "erin".to_owned());
    let decision = catalog().decide(&snapshot, &assignments, &who("frank"), "Pool");
    assert_eq!(decision, launch("p1", temp("p1", "frank")));
}

#[test]
fn an_unknown_resource_is_refused() {
    let decision = catalog().decide(&BTreeMap::new(), &Assignments::default(), &who("c"), "Nope");
    assert_eq!(decision, Decision::Refuse(Refused::UnknownResource));
}

#[test]
fn a_resource_limited_to_a_group_needs_membership_in_any_case() {
    let snapshot = workers(&[("p1", up(0, 0))]);
    let decision = catalog().decide(&snapshot, &Assignments::default(), &who("c"), "Notepad");
    assert_eq!(decision, Decision::Refuse(Refused::NotEntitled));
    let mut editor = who("c");
    editor.groups = vec!["Editors".to_owned()];
    let decision = catalog().decide(&snapshot, &Assignments::default(), &editor, "Notepad");
    assert_eq!(decision, launch("p1", temp("p1", "c")));
}

#[test]
fn the_visible_list_follows_entitlements() {
    let catalog = catalog();
    let names = |who: &Who| -> Vec<String> {
        catalog
            .visible(who)
            .iter()
            .map(|r| r.name.clone())
            .collect()
    };
    assert_eq!(names(&who("zed")), ["Pool", "Solo", "Mine"]);
    let mut editor = who("ALICE");
    editor.groups = vec!["editors".to_owned()];
    assert_eq!(names(&editor), ["Pool", "Solo", "Notepad", "Mine", "Fixed"]);
}

#[test]
fn a_private_desktop_is_assigned_on_first_use_to_the_least_busy_free_one() {
    let snapshot = workers(&[("v1", up(300, 0)), ("v2", up(100, 0))]);
    let decision = catalog().decide(&snapshot, &Assignments::default(), &who("Hal"), "Mine");
    assert_eq!(decision, launch("v2", perm("v2", "hal")));
}

#[test]
fn an_assigned_private_desktop_is_reused_without_a_new_assignment() {
    let snapshot = workers(&[("v1", up(900, 0)), ("v2", up(100, 0))]);
    let mut assignments = Assignments::default();
    assignments
        .permanent
        .insert(name("v1"), ["hal".to_owned()].into());
    let decision = catalog().decide(&snapshot, &assignments, &who("HAL"), "Mine");
    assert_eq!(decision, launch("v1", None));
}

#[test]
fn a_desktop_assigned_to_someone_else_is_not_free() {
    let snapshot = workers(&[("v1", up(0, 0)), ("v2", up(900, 0))]);
    let mut assignments = Assignments::default();
    assignments
        .permanent
        .insert(name("v1"), ["ivy".to_owned()].into());
    let decision = catalog().decide(&snapshot, &assignments, &who("hal"), "Mine");
    assert_eq!(decision, launch("v2", perm("v2", "hal")));
}

#[test]
fn a_powered_off_private_desktop_is_powered_on_through_the_hook() {
    let decision = catalog().decide(
        &BTreeMap::new(),
        &Assignments::default(),
        &who("hal"),
        "Mine",
    );
    assert_eq!(
        decision,
        Decision::PowerOn {
            worker: name("v1"),
            group: "vdi".to_owned(),
            assign: perm("v1", "hal"),
        }
    );
}

#[test]
fn the_assigned_desktop_is_powered_on_rather_than_another_assigned() {
    let snapshot = workers(&[("v1", up(0, 0))]);
    let mut assignments = Assignments::default();
    assignments
        .permanent
        .insert(name("v2"), ["hal".to_owned()].into());
    let decision = catalog().decide(&snapshot, &assignments, &who("hal"), "Mine");
    assert_eq!(
        decision,
        Decision::PowerOn {
            worker: name("v2"),
            group: "vdi".to_owned(),
            assign: None,
        }
    );
}

#[test]
fn a_stale_worker_is_powered_on_when_none_is_unregistered() {
    let mut stale = up(0, 0);
    stale.available = false;
    let snapshot = workers(&[("v1", stale.clone()), ("v2", stale)]);
    let decision = catalog().decide(&snapshot, &Assignments::default(), &who("hal"), "Mine");
    assert!(matches!(decision, Decision::PowerOn { worker, .. } if worker == name("v1")));
}

#[test]
fn when_every_private_desktop_is_taken_there_is_no_desktop() {
    let snapshot = workers(&[("v1", up(0, 0)), ("v2", up(0, 0))]);
    let mut assignments = Assignments::default();
    assignments
        .permanent
        .insert(name("v1"), ["a".to_owned()].into());
    assignments
        .permanent
        .insert(name("v2"), ["b".to_owned()].into());
    let decision = catalog().decide(&snapshot, &assignments, &who("hal"), "Mine");
    assert_eq!(decision, Decision::Refuse(Refused::NoDesktop));
}

#[test]
fn configured_assignments_name_one_or_more_users() {
    let snapshot = workers(&[("f1", up(0, 0)), ("f2", up(0, 0))]);
    for user in ["alice", "Bob"] {
        let decision = catalog().decide(&snapshot, &Assignments::default(), &who(user), "Fixed");
        assert_eq!(decision, launch("f1", None), "{user}");
    }
}

#[test]
fn a_client_address_assignment_serves_whoever_sits_there() {
    let snapshot = workers(&[("f1", up(0, 0)), ("f2", up(0, 0))]);
    let mut kiosk = who("kiosk");
    kiosk.client_ip = Some("10.0.0.9".parse().unwrap());
    let decision = catalog().decide(&snapshot, &Assignments::default(), &kiosk, "Fixed");
    assert_eq!(decision, launch("f2", None));
    kiosk.client_ip = Some("10.0.0.10".parse().unwrap());
    let decision = catalog().decide(&snapshot, &Assignments::default(), &kiosk, "Fixed");
    assert_eq!(
        decision,
        Decision::Refuse(Refused::NoDesktop),
        "no first use in this group"
    );
}

#[test]
fn an_assigned_desktop_that_is_down_without_a_hook_is_no_desktop() {
    let decision = catalog().decide(
        &BTreeMap::new(),
        &Assignments::default(),
        &who("alice"),
        "Fixed",
    );
    assert_eq!(decision, Decision::Refuse(Refused::NoDesktop));
}

#[test]
fn validation_names_the_broken_reference() {
    let bad = |text: &str| {
        let section: BrokerSection = toml::from_str(text).unwrap();
        section.validate().unwrap_err()
    };
    let (key, message) = bad("[[desktops]]\nworker = \"w\"\ngroup = \"nope\"\n");
    assert_eq!(key, "broker.desktops");
    assert!(message.contains("unknown group"), "{message}");
    let (key, _) = bad(
        "[[groups]]\nname = \"g\"\nkind = \"shared\"\n[[desktops]]\nworker = \"w\"\ngroup = \"g\"\n[[assignments]]\ndesktop = \"w\"\nusers = [\"a\"]\n",
    );
    assert_eq!(key, "broker.assignments");
    let (key, _) = bad(
        "[[groups]]\nname = \"g\"\nkind = \"private\"\n[[groups]]\nname = \"g\"\nkind = \"shared\"\n",
    );
    assert_eq!(key, "broker.groups");
    let (key, _) = bad("heartbeat_timeout_secs = 0\n");
    assert_eq!(key, "broker.heartbeat_timeout_secs");
    let (key, _) = bad(
        "[[groups]]\nname = \"g\"\nkind = \"private\"\npower_on_command = [\"x\"]\npower_on_url = \"http://h/\"\n",
    );
    assert_eq!(key, "broker.groups");
}
