//! The broker's access-policy decisions: a resource denied to one of the
//! user's directory groups is neither listed nor launchable, with the
//! deciding rule named; other users keep it; the filters name the rules
//! whose subject conditions hold; a replaced policy set decides the next
//! launch.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use super::*;
use crate::auth::local::LocalUsers;
use crate::auth::password::{PasswordHasher, PasswordParams};
use crate::policy::{Policies, PolicySection};
use crate::sta::{Sta, StaLimits};

const CATALOG: &str = r#"
[[groups]]
name = "pool"
kind = "shared"
[[desktops]]
worker = "w-1"
group = "pool"
[[resources]]
name = "Pool"
kind = "desktop"
group = "pool"
[[resources]]
name = "Finance"
display = "Finance Desktop"
kind = "desktop"
group = "pool"
"#;

const POLICY: &str = r#"
[[rules]]
name = "no-finance-for-contractors"
action = "deny"
resources = ["Finance"]
groups = ["Contractors"]
[[rules]]
name = "office"
action = "allow"
resources = ["none"]
clients = ["10.0.0.0/8"]
"#;

/// A temporary directory removed when dropped.
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn broker(policy: &str) -> (Broker, TempDir) {
    let dir = std::env::temp_dir().join(format!(
        "gatehouse-broker-{}-{}",
        std::process::id(),
        getrandom::u64().unwrap()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let store = Store::open(&dir).await.unwrap();
    let hasher = PasswordHasher::new(PasswordParams {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    })
    .unwrap();
    let users = LocalUsers::new(store.clone(), Arc::new(hasher));
    let sta = Arc::new(Mutex::new(Sta::new(
        "STA01".parse().unwrap(),
        StaLimits::default(),
        crate::sta::http::os_fill,
    )));
    let section: catalog::BrokerSection = toml::from_str(CATALOG).unwrap();
    let policy: PolicySection = toml::from_str(policy).unwrap();
    policy.validate().unwrap();
    let broker = Broker::with_policies(
        Catalog::new(section.clone()),
        BrokerTimings {
            power_on_timeout: Duration::from_secs(1),
            ..BrokerTimings::of(&section)
        },
        sta,
        Arc::new(LocalDirectory(users)),
        Some(store),
        SharedPolicies::new(Policies::new(policy)),
    )
    .await
    .unwrap();
    broker
        .register(&Register {
            version: 1,
            worker: "w-1".to_owned(),
            ica: "127.0.0.1:1494".to_owned(),
            cgp: None,
            ready: true,
            sessions: 0,
            load: 0,
            max_sessions: None,
        })
        .unwrap();
    (broker, TempDir(dir))
}

fn who(user: &str, groups: &[&str], client: Option<&str>) -> Who {
    Who {
        user: user.to_owned(),
        groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        client_ip: client.map(|c| c.parse().unwrap()),
    }
}

fn names(broker: &Broker, who: &Who) -> Vec<String> {
    broker.resources(who).into_iter().map(|e| e.name).collect()
}

#[tokio::test]
async fn a_resource_denied_to_a_group_is_neither_listed_nor_launchable() {
    let (broker, _dir) = broker(POLICY).await;
    let contractor = who("alice", &["staff", "contractors"], None);
    assert_eq!(names(&broker, &contractor), ["Pool"]);
    // By internal or display name, a forged launch is refused.
    for name in ["Finance", "Finance Desktop"] {
        match broker.launch(&contractor, name).await {
            Err(LaunchError::Denied { reason }) => {
                assert_eq!(reason, "rule no-finance-for-contractors");
            }
            other => panic!("{name}: {other:?}"),
        }
    }
    assert_eq!(
        broker
            .launch(&contractor, "Finance")
            .await
            .unwrap_err()
            .error_id(),
        ErrorId::NoServer
    );
    let chosen = broker.launch(&contractor, "Pool").await.unwrap();
    assert_eq!(chosen.worker.as_str(), "w-1");

    let employee = who("bob", &["staff"], None);
    assert_eq!(names(&broker, &employee), ["Pool", "Finance"]);
    assert!(broker.launch(&employee, "Finance").await.is_ok());
}

#[tokio::test]
async fn the_filters_name_the_rules_whose_subject_conditions_hold() {
    let (broker, _dir) = broker(POLICY).await;
    assert_eq!(
        broker.filters(&who("alice", &["contractors"], Some("10.1.2.3"))),
        ["no-finance-for-contractors", "office"]
    );
    assert_eq!(
        broker.filters(&who("bob", &[], Some("192.0.2.1"))),
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn replaced_policies_decide_the_next_launch() {
    let (broker, _dir) = broker(POLICY).await;
    let contractor = who("alice", &["contractors"], None);
    assert!(!broker.verdict(&contractor, "Finance").allowed());
    broker.policies().replace(Policies::default());
    assert_eq!(names(&broker, &contractor), ["Pool", "Finance"]);
    assert!(broker.launch(&contractor, "Finance").await.is_ok());
}

#[tokio::test]
async fn a_logon_ticket_is_redeemed_once_by_the_worker_it_was_issued_for() {
    let (broker, _dir) = broker(POLICY).await;
    let bob = who("bob", &["staff"], None);
    let chosen = broker.launch(&bob, "Pool").await.unwrap();
    let ticket = broker.logon_ticket(&chosen, &bob).unwrap();
    assert_eq!(ticket.len(), 32);
    assert!(
        ticket
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_lowercase())
    );
    let other = WorkerName::new("w-2").unwrap();
    // Another worker spends it without learning anything.
    assert_eq!(broker.redeem_logon(&other, &ticket), None);
    assert_eq!(broker.redeem_logon(&chosen.worker, &ticket), None);

    let ticket = broker.logon_ticket(&chosen, &bob).unwrap();
    assert_eq!(
        broker.redeem_logon(&chosen.worker, &ticket),
        Some(LogonGrant {
            user: "bob".into(),
            resource: "Pool".into(),
        })
    );
    assert_eq!(broker.redeem_logon(&chosen.worker, &ticket), None);
    assert_eq!(broker.redeem_logon(&chosen.worker, "0123"), None);
}

#[tokio::test]
async fn an_administrator_undoes_a_first_use_assignment_in_the_store_and_the_running_state() {
    let (broker, _dir) = broker(POLICY).await;
    let w1 = WorkerName::new("w-1").unwrap();
    assert!(broker.assigned().is_empty());
    broker
        .record(
            &NewAssignment::Permanent {
                desktop: w1.clone(),
                user: "bob".into(),
            },
            "Pool",
        )
        .await
        .unwrap();
    assert_eq!(broker.assigned(), [(w1.clone(), vec!["bob".to_string()])]);
    let stored = || async {
        let store = broker.inner.store.as_ref().unwrap();
        sqlx::query("SELECT COUNT(*) FROM broker_assignments")
            .fetch_one(store.pool())
            .await
            .unwrap()
            .get::<i64, _>(0)
    };
    assert_eq!(stored().await, 1);
    assert!(!broker.unassign(&w1, "carol").await.unwrap());
    assert!(broker.unassign(&w1, "BOB").await.unwrap());
    assert!(broker.assigned().is_empty());
    assert_eq!(stored().await, 0, "gone from the store too");
    assert!(!broker.unassign(&w1, "bob").await.unwrap());
}

#[tokio::test]
async fn a_ticket_tag_buys_one_logon_ticket_for_its_own_user() {
    let (broker, _dir) = broker(POLICY).await;
    let bob = who("bob", &["staff"], None);
    let carol = who("carol", &["staff"], None);
    let chosen = broker.launch(&bob, "Pool").await.unwrap();
    let tag = broker.tag(&chosen, &bob.user);
    // Another user's tag buys nothing and stays valid for its owner.
    assert_eq!(broker.logon_for_tag(&tag, &carol), Err(ErrorId::NoServer));
    let ticket = broker.logon_for_tag(&tag, &bob).unwrap();
    assert_eq!(
        broker.logon_for_tag(&tag, &bob),
        Err(ErrorId::NoServer),
        "a tag is spent"
    );
    assert_eq!(
        broker.redeem_logon(&chosen.worker, &ticket),
        Some(LogonGrant {
            user: "bob".into(),
            resource: "Pool".into(),
        })
    );
}
