//! Pools, leases, apps and the flow decision with plain values; the
//! service over a store in a temporary directory.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::decide::{DenyReason, FlowDecision, FlowQuery, UserContext, decide};
use super::pools::{LeaseError, LeaseTable, known_users, status};
use super::service::{ConnectorCommand, ServerToClient};
use super::*;
use crate::policy::{Policies, PolicySection, SharedPolicies};
use crate::store::Store;

const DAY: Duration = Duration::from_secs(86_400);

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
}

fn section(text: &str) -> ServerToClientSection {
    toml::from_str(text).unwrap()
}

fn pool(name: &str, cidr: &str) -> PoolConfig {
    PoolConfig {
        name: name.into(),
        location: "hq".into(),
        cidr: cidr.parse().unwrap(),
        connectors: vec!["c1".into()],
        users: Vec::new(),
        groups: Vec::new(),
    }
}

fn table(cidr: &str) -> LeaseTable {
    LeaseTable::new(vec![pool("p", cidr)], 15 * DAY)
}

fn ip(text: &str) -> Ipv4Addr {
    text.parse().unwrap()
}

fn validate(text: &str) -> Result<(), (String, String)> {
    section(text).validate()
}

const APPS: &str = r#"
[[apps]]
name = "vnc"
servers = ["127.0.9.0/24"]
ports = [5900, 5901]
[[apps]]
name = "ssh"
servers = ["127.0.8.0/24"]
ports = [22]
"#;

fn policies(text: &str) -> Policies {
    let section: PolicySection = toml::from_str(text).unwrap();
    section.validate().unwrap();
    Policies::new(section)
}

fn allow_all() -> Policies {
    policies("server_to_client_default = \"allow\"\n")
}

fn query(server: &str, iip: &str, port: u16) -> FlowQuery<'static> {
    FlowQuery {
        connector: "c1",
        server: server.parse().unwrap(),
        iip: ip(iip),
        port,
    }
}

fn denied(decision: &FlowDecision) -> String {
    match decision {
        FlowDecision::Deny { reason, .. } => reason.detail(),
        FlowDecision::Allow(allowed) => panic!("allowed: {allowed:?}"),
    }
}

#[test]
fn defaults_are_fifteen_days_and_nothing_configured() {
    let section = ServerToClientSection::default();
    assert_eq!(section.stickiness_days, 15);
    assert!(section.pools.is_empty() && section.apps.is_empty());
    assert_eq!(section.validate(), Ok(()));
}

#[test]
fn udp_app_is_refused_naming_the_protocol_key() {
    let (key, message) = validate(
        "[[apps]]\nname = \"x\"\nservers = [\"10.0.0.0/8\"]\nports = [1]\nprotocol = \"udp\"\n",
    )
    .unwrap_err();
    assert_eq!(
        key,
        "apps[0].protocol".replace("apps", "server_to_client.apps")
    );
    assert!(message.contains("udp is not supported"), "{message}");
    assert!(message.contains("tcp only"), "{message}");
}

#[test]
fn bad_pools_and_apps_are_refused_with_their_key() {
    let cases = [
        (
            "[[pools]]\nname = \"a b\"\nlocation = \"l\"\ncidr = \"10.0.0.0/24\"\n",
            "server_to_client.pools[0].name",
        ),
        (
            "[[pools]]\nname = \"a\"\nlocation = \"l\"\ncidr = \"10.0.0.1/24\"\n",
            "server_to_client.pools[0].cidr",
        ),
        (
            "[[pools]]\nname = \"a\"\nlocation = \"l\"\ncidr = \"10.0.0.0/4\"\n",
            "server_to_client.pools[0].cidr",
        ),
        (
            "[[pools]]\nname = \"a\"\nlocation = \"l\"\ncidr = \"10.0.0.0/16\"\n[[pools]]\nname = \"b\"\nlocation = \"l\"\ncidr = \"10.0.3.0/24\"\n",
            "server_to_client.pools[1].cidr",
        ),
        (
            "[[pools]]\nname = \"a\"\nlocation = \"l\"\ncidr = \"10.0.0.0/24\"\n[[pools]]\nname = \"A\"\nlocation = \"l\"\ncidr = \"10.1.0.0/24\"\n",
            "server_to_client.pools[1].name",
        ),
        (
            "[[apps]]\nname = \"x\"\nservers = []\nports = [1]\n",
            "server_to_client.apps[0].servers",
        ),
        (
            "[[apps]]\nname = \"x\"\nservers = [\"10.0.0.0/8\"]\nports = []\n",
            "server_to_client.apps[0].ports",
        ),
        (
            "[[apps]]\nname = \"x\"\nservers = [\"10.0.0.0/8\"]\nports = [0]\n",
            "server_to_client.apps[0].ports",
        ),
        (
            "stickiness_days = 4000\n",
            "server_to_client.stickiness_days",
        ),
    ];
    for (text, key) in cases {
        let (got, message) = validate(text).unwrap_err();
        assert_eq!(got, key, "{text}: {message}");
    }
}

#[test]
fn the_config_file_refuses_a_udp_app_with_exit_message_naming_the_key() {
    let error = crate::config::Config::from_toml(
        "[[server_to_client.apps]]\nname = \"x\"\nservers = [\"10.0.0.0/8\"]\nports = [1]\nprotocol = \"udp\"\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        error.starts_with("server_to_client.apps[0].protocol: "),
        "{error}"
    );
}

#[test]
fn pool_capacity_skips_network_and_broadcast_addresses() {
    assert_eq!(pool("p", "127.77.0.0/24").capacity(), 254);
    assert_eq!(pool("p", "127.77.0.0/31").capacity(), 2);
    assert_eq!(pool("p", "127.77.0.5/32").capacity(), 1);
    assert!(!pool("p", "127.77.0.0/24").holds(ip("127.77.0.0")));
    assert!(pool("p", "127.77.0.0/24").holds(ip("127.77.0.1")));
    assert!(!pool("p", "127.77.0.0/24").holds(ip("127.77.0.255")));
}

#[test]
fn leases_the_lowest_free_address_and_the_same_one_while_active() {
    let mut table = table("127.77.0.0/24");
    let alice = table.lease("Alice", &[], at(0)).unwrap();
    assert_eq!(alice.lease.iip, ip("127.77.0.1"));
    assert_eq!(alice.lease.user, "alice");
    assert!(!alice.sticky);
    let bob = table.lease("bob", &[], at(1)).unwrap();
    assert_eq!(bob.lease.iip, ip("127.77.0.2"));
    let again = table.lease("alice", &[], at(2)).unwrap();
    assert_eq!(again.lease.iip, ip("127.77.0.1"));
    assert_eq!(table.active(ip("127.77.0.1")).unwrap().user, "alice");
}

#[test]
fn a_user_back_within_the_stickiness_window_gets_the_same_address() {
    let mut table = table("127.77.0.0/24");
    table.lease("alice", &[], at(0)).unwrap();
    assert!(table.release("alice", at(10)).is_some());
    assert!(table.active(ip("127.77.0.1")).is_none());
    // Someone else in between does not take alice's sticky address.
    assert_eq!(
        table.lease("bob", &[], at(20)).unwrap().lease.iip,
        ip("127.77.0.2")
    );
    let back = table.lease("alice", &[], at(10) + 14 * DAY).unwrap();
    assert_eq!(back.lease.iip, ip("127.77.0.1"));
    assert!(back.sticky);
}

#[test]
fn an_address_released_past_the_window_goes_to_another_user() {
    let mut table = LeaseTable::new(vec![pool("p", "127.77.0.1/32")], 15 * DAY);
    table.lease("alice", &[], at(0)).unwrap();
    table.release("alice", at(10)).unwrap();
    assert_eq!(
        table.lease("bob", &[], at(10) + 14 * DAY),
        Err(LeaseError::Exhausted {
            pool: "p".into(),
            capacity: 1
        })
    );
    let bob = table.lease("bob", &[], at(10) + 15 * DAY).unwrap();
    assert_eq!(bob.lease.iip, ip("127.77.0.1"));
    assert_eq!(bob.reclaimed.unwrap().user, "alice");
    assert!(table.of_user("alice").is_none());
    // alice now gets the exhaustion error, a login-time refusal.
    let error = table.lease("alice", &[], at(20) + 15 * DAY).unwrap_err();
    assert_eq!(
        error.to_string(),
        "client ip pool p is exhausted: all 1 addresses are leased"
    );
}

#[test]
fn no_address_is_ever_leased_to_two_users_at_once() {
    let mut table = table("127.77.0.0/28");
    let mut now = 0;
    // A bounded pseudo-random sequence of leases and releases.
    let mut seed: u32 = 7;
    for _ in 0..2_000 {
        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let user = format!("u{}", (seed >> 16) % 30);
        now += u64::from((seed >> 8) % 5) * 86_400;
        if seed % 3 == 0 {
            table.release(&user, at(now));
        } else {
            let _ = table.lease(&user, &[], at(now));
        }
        let mut seen = BTreeSet::new();
        for lease in table.iter() {
            assert!(seen.insert(lease.user.clone()), "{} twice", lease.user);
            assert!(table.pools()[0].holds(lease.iip));
        }
    }
}

#[test]
fn users_draw_from_the_first_pool_that_serves_them() {
    let mut eng = pool("eng", "127.77.1.0/24");
    eng.groups = vec!["Engineering".into()];
    let mut named = pool("named", "127.77.2.0/24");
    named.users = vec!["carol".into()];
    let mut table = LeaseTable::new(vec![eng, named], DAY);
    let groups = vec!["engineering".to_owned()];
    assert_eq!(
        table.lease("alice", &groups, at(0)).unwrap().lease.pool,
        "eng"
    );
    assert_eq!(
        table.lease("Carol", &[], at(0)).unwrap().lease.pool,
        "named"
    );
    assert_eq!(
        table.lease("dave", &[], at(0)),
        Err(LeaseError::NoPool {
            user: "dave".into()
        })
    );
}

#[test]
fn restore_skips_leases_of_unknown_pools_and_duplicates() {
    let mut source = table("127.77.0.0/24");
    let a = source.lease("alice", &[], at(0)).unwrap().lease;
    let mut other_pool = a.clone();
    other_pool.pool = "gone".into();
    let mut twice = a.clone();
    twice.user = "bob".into();
    let mut table = table("127.77.0.0/24");
    let dropped = table.restore(vec![a.clone(), other_pool.clone(), twice.clone()]);
    assert_eq!(dropped, vec![other_pool, twice]);
    assert_eq!(table.active(a.iip), Some(&a));
}

#[test]
fn undersized_pools_are_flagged_against_three_addresses_per_user() {
    let mut small = pool("small", "127.77.0.0/30");
    small.users = vec!["a".into(), "b".into()];
    assert_eq!(known_users(&small, 100), 2);
    let everyone = pool("all", "127.78.0.0/24");
    assert_eq!(known_users(&everyone, 100), 100);
    let table = LeaseTable::new(vec![small, everyone], DAY);
    let report = status(&table, 100, at(0));
    assert!(report[0].undersized, "{report:?}");
    assert_eq!(report[0].capacity, 2);
    assert!(report[1].undersized, "254 < 300: {report:?}");
    let report = status(&table, 84, at(0));
    assert!(!report[1].undersized, "254 >= 252: {report:?}");
}

fn leased_table() -> LeaseTable {
    let mut table = table("127.77.0.0/24");
    table.lease("alice", &[], at(0)).unwrap();
    table
}

fn decide_with(policies: &Policies, q: &FlowQuery<'_>) -> FlowDecision {
    let apps = section(APPS).apps;
    decide(
        &leased_table(),
        &apps,
        policies,
        &UserContext::default(),
        q,
        at(5),
    )
}

#[test]
fn a_server_in_an_app_reaching_one_of_its_ports_is_allowed_by_policy() {
    let decision = decide_with(&allow_all(), &query("127.0.9.5", "127.77.0.1", 5901));
    let FlowDecision::Allow(allowed) = decision else {
        panic!("{decision:?}");
    };
    assert_eq!(allowed.user, "alice");
    assert_eq!(allowed.app, "vnc");
    assert_eq!(allowed.location, "hq");
    assert_eq!(allowed.rule, None);
}

#[test]
fn flows_are_denied_with_their_reason() {
    let allow = allow_all();
    let cases = [
        (query("127.0.9.5", "127.77.0.2", 5900), "no_lease"),
        (query("127.0.7.5", "127.77.0.1", 5900), "server_not_in_app"),
        (query("127.0.9.5", "127.77.0.1", 22), "port_not_in_app"),
        (
            query("::ffff:127.0.8.1", "127.77.0.1", 5900),
            "port_not_in_app",
        ),
    ];
    for (q, reason) in cases {
        assert_eq!(denied(&decide_with(&allow, &q)), reason, "{q:?}");
    }
    let mut q = query("127.0.9.5", "127.77.0.1", 5900);
    q.connector = "c2";
    assert_eq!(denied(&decide_with(&allow, &q)), "connector_not_owner");
    // The default for server-to-client flows is deny.
    let q = query("127.0.9.5", "127.77.0.1", 5900);
    assert_eq!(
        denied(&decide_with(&Policies::default(), &q)),
        "policy_deny rule=default"
    );
}

#[test]
fn the_policy_decides_by_user_app_and_location() {
    let rules = policies(
        r#"
[[rules]]
name = "no-bob"
action = "deny"
applies_to = "server-to-client"
users = ["alice"]
resources = ["vnc"]
[[rules]]
name = "hq-ssh"
action = "allow"
applies_to = "any"
locations = ["HQ"]
"#,
    );
    let vnc = query("127.0.9.5", "127.77.0.1", 5900);
    assert_eq!(
        denied(&decide_with(&rules, &vnc)),
        "policy_deny rule=no-bob"
    );
    let ssh = query("127.0.8.5", "127.77.0.1", 22);
    let FlowDecision::Allow(allowed) = decide_with(&rules, &ssh) else {
        panic!("ssh denied");
    };
    assert_eq!(allowed.rule.as_deref(), Some("hq-ssh"));
    assert_eq!(DenyReason::NoLease.as_str(), "no_lease");
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir =
        std::env::temp_dir().join(format!("gatehouse-s2c-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

const SERVICE: &str = r#"
stickiness_days = 1
[[pools]]
name = "p"
location = "hq"
cidr = "127.77.0.0/30"
[[apps]]
name = "vnc"
servers = ["127.0.9.0/24"]
ports = [5900, 5901]
"#;

async fn service(dir: &std::path::Path) -> ServerToClient {
    let store = Store::open(dir).await.unwrap();
    let policies = SharedPolicies::new(allow_all());
    ServerToClient::open(&section(SERVICE), policies, store)
        .await
        .unwrap()
}

#[tokio::test]
async fn leases_survive_a_restart_and_stay_sticky() {
    let dir = temp_dir("restart");
    let s2c = service(&dir).await;
    let mut commands = s2c.subscribe();
    let alice = s2c
        .connect("alice", UserContext::default(), at(0))
        .await
        .unwrap();
    assert_eq!(alice.lease.iip, ip("127.77.0.1"));
    let listen: Vec<SocketAddr> = vec![
        "127.77.0.1:5900".parse().unwrap(),
        "127.77.0.1:5901".parse().unwrap(),
    ];
    assert_eq!(
        commands.recv().await.unwrap().command,
        ConnectorCommand::Listen(listen.clone())
    );
    assert_eq!(s2c.listening(), listen);
    s2c.disconnect("alice", at(10)).await.unwrap().unwrap();
    assert_eq!(
        commands.recv().await.unwrap().command,
        ConnectorCommand::Unlisten(listen)
    );
    assert_eq!(
        commands.recv().await.unwrap().command,
        ConnectorCommand::CloseFlows(ip("127.77.0.1"))
    );
    s2c.connect("bob", UserContext::default(), at(20))
        .await
        .unwrap();
    drop(s2c);
    let s2c = service(&dir).await;
    // bob's lease is still active after the restart.
    let q = FlowQuery {
        connector: "any",
        server: IpAddr::from([127, 0, 9, 1]),
        iip: ip("127.77.0.2"),
        port: 5900,
    };
    assert!(matches!(s2c.decide(&q, at(30)), FlowDecision::Allow(_)));
    // alice's sticky lease too: carol cannot have it within the day.
    let error = s2c
        .connect("carol", UserContext::default(), at(40))
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "client ip pool p is exhausted: all 2 addresses are leased"
    );
    let back = s2c
        .connect("alice", UserContext::default(), at(50))
        .await
        .unwrap();
    assert!(back.sticky);
    assert_eq!(back.lease.iip, ip("127.77.0.1"));
    s2c.disconnect("alice", at(60)).await.unwrap();
    let carol = s2c
        .connect("carol", UserContext::default(), at(60) + DAY)
        .await
        .unwrap();
    assert_eq!(carol.lease.iip, ip("127.77.0.1"));
    drop(s2c);
    let s2c = service(&dir).await;
    assert_eq!(s2c.lease_of("carol").unwrap().iip, ip("127.77.0.1"));
    assert!(s2c.lease_of("alice").is_none());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn the_store_refuses_a_second_row_for_one_address() {
    let dir = temp_dir("unique");
    let s2c = service(&dir).await;
    let alice = s2c
        .connect("alice", UserContext::default(), at(0))
        .await
        .unwrap();
    let store = Store::open(&dir).await.unwrap();
    let inserted = sqlx::query(
        "INSERT INTO iip_leases (iip, pool, user_name, leased_at) VALUES ($1, 'p', 'mallory', 0)",
    )
    .bind(alice.lease.iip.to_string())
    .execute(store.pool())
    .await;
    assert!(inserted.is_err(), "a second user on {}", alice.lease.iip);
    let _ = std::fs::remove_dir_all(&dir);
}

fn local_sta() -> crate::sta::http::SharedSta {
    let mut next = 0_u8;
    std::sync::Arc::new(parking_lot::Mutex::new(crate::sta::Sta::new(
        "STA01".parse().unwrap(),
        crate::sta::StaLimits::default(),
        move |buf: &mut [u8]| {
            for byte in buf {
                next = next.wrapping_add(7);
                *byte = next;
            }
        },
    )))
}

#[tokio::test]
async fn an_allowed_flow_becomes_a_ticket_to_the_rendezvous_on_the_client_stream() {
    use gatehouse_channel::{FlowClosed, FlowDenyReason, FlowRequest, FlowVerdict};
    use gatehouse_wire::ticket::StaTicket;

    let dir = temp_dir("flow");
    let s2c = service(&dir).await;
    let sta = local_sta();
    let request = FlowRequest {
        local: "127.77.0.1:5900".parse().unwrap(),
        server: "127.0.9.5:40000".parse().unwrap(),
        rendezvous: "127.0.0.1:41000".parse().unwrap(),
    };
    // No lease yet.
    assert_eq!(
        s2c.flow_request("c1", &request, &sta, at(0)),
        FlowVerdict::Deny {
            reason: FlowDenyReason::NoLease
        }
    );
    s2c.connect("alice", UserContext::default(), at(0))
        .await
        .unwrap();
    // Leased, but no control connection to take the flow.
    assert_eq!(
        s2c.flow_request("c1", &request, &sta, at(1)),
        FlowVerdict::Deny {
            reason: FlowDenyReason::ClientAbsent
        }
    );
    let (id, mut events) = s2c.attach_client("Alice");
    let FlowVerdict::Allow { flow } = s2c.flow_request("c1", &request, &sta, at(2)) else {
        panic!("allowed flow refused");
    };
    let service::ClientEvent::Flow {
        flow: told,
        port,
        ticket,
    } = events.recv().await.unwrap();
    assert_eq!((told, port), (flow.0, 5900));
    assert_eq!(s2c.open_flows(), 1);
    // The ticket redeems at the local STA to the rendezvous and names the flow.
    let ticket = StaTicket::decode(ticket.as_bytes()).unwrap();
    let redeemed = sta
        .lock()
        .redeem(&ticket, std::time::Instant::now())
        .unwrap();
    assert_eq!(redeemed.data.ica_address.to_string(), "127.0.0.1:41000");
    assert_eq!(service::flow_of(&redeemed.data), Some(flow));
    s2c.flow_closed(&FlowClosed {
        flow,
        bytes_to_client: 1,
        bytes_to_server: 2,
        duration_ms: 3,
    });
    assert_eq!(s2c.open_flows(), 0);
    // A newer control connection replaces this one; detaching the old one
    // leaves the new one attached.
    let (_newer, _events) = s2c.attach_client("alice");
    assert!(!s2c.detach_client("alice", id));
    assert!(s2c.client_attached("alice"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn registered_names_resolve_to_active_leases_only() {
    let dir = temp_dir("names");
    let s2c = service(&dir).await;
    assert!(s2c.register_fqdn("alice", "not a name").is_err());
    s2c.register_fqdn("alice", "PC1.corp.example.").unwrap();
    assert_eq!(s2c.resolve("pc1.corp.example"), None);
    s2c.connect("alice", UserContext::default(), at(0))
        .await
        .unwrap();
    assert_eq!(s2c.resolve("pc1.CORP.example"), Some(ip("127.77.0.1")));
    s2c.disconnect("alice", at(1)).await.unwrap();
    assert_eq!(s2c.resolve("pc1.corp.example"), None);
    assert!(s2c.may_resolve("127.0.9.9".parse().unwrap()));
    assert!(!s2c.may_resolve("127.0.0.1".parse().unwrap()));
    assert!(service::valid_fqdn("a-b.c1.example"));
    assert!(!service::valid_fqdn("-a.example"));
    assert!(!service::valid_fqdn(&"a".repeat(64)));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn replaced_apps_decide_the_next_flow_and_move_the_listeners_of_active_leases() {
    let dir = temp_dir("replace-apps");
    let s2c = service(&dir).await;
    s2c.connect("alice", UserContext::default(), at(0))
        .await
        .unwrap();
    let mut commands = s2c.subscribe();
    let ssh: ServerToClientSection = section(
        r#"
        [[apps]]
        name = "ssh"
        servers = ["127.0.8.0/24"]
        ports = [22, 5901]
        "#,
    );
    s2c.replace_apps(ssh.apps.clone());
    assert_eq!(s2c.apps(), ssh.apps);
    assert_eq!(
        commands.recv().await.unwrap().command,
        ConnectorCommand::Unlisten(vec!["127.77.0.1:5900".parse().unwrap()])
    );
    assert_eq!(
        commands.recv().await.unwrap().command,
        ConnectorCommand::Listen(vec!["127.77.0.1:22".parse().unwrap()])
    );
    let mut listening = s2c.listening();
    listening.sort();
    assert_eq!(
        listening,
        [
            "127.77.0.1:22".parse::<SocketAddr>().unwrap(),
            "127.77.0.1:5901".parse().unwrap()
        ]
    );
    let vnc = FlowQuery {
        connector: "any",
        server: IpAddr::from([127, 0, 9, 1]),
        iip: ip("127.77.0.1"),
        port: 5901,
    };
    assert!(!matches!(s2c.decide(&vnc, at(1)), FlowDecision::Allow(_)));
    let ssh_flow = FlowQuery {
        server: IpAddr::from([127, 0, 8, 1]),
        port: 22,
        ..vnc
    };
    assert!(matches!(
        s2c.decide(&ssh_flow, at(1)),
        FlowDecision::Allow(_)
    ));
    assert_eq!(s2c.leases().len(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn replaced_pools_keep_the_leases_they_still_hold_and_end_the_others() {
    let dir = temp_dir("replace-pools");
    let s2c = service(&dir).await;
    s2c.connect("alice", UserContext::default(), at(0))
        .await
        .unwrap();
    s2c.connect("bob", UserContext::default(), at(0))
        .await
        .unwrap();
    let mut commands = s2c.subscribe();
    // The pool shrinks to 127.77.0.0/31... kept under its name: alice's
    // 127.77.0.1 stays, bob's 127.77.0.2 ends.
    let mut pools = section(SERVICE).pools;
    pools[0].cidr = "127.77.0.0/31".parse().unwrap();
    s2c.replace_pools(pools).await.unwrap();
    assert_eq!(
        commands.recv().await.unwrap().command,
        ConnectorCommand::Unlisten(vec![
            "127.77.0.2:5900".parse().unwrap(),
            "127.77.0.2:5901".parse().unwrap()
        ])
    );
    assert_eq!(
        commands.recv().await.unwrap().command,
        ConnectorCommand::CloseFlows(ip("127.77.0.2"))
    );
    let leases = s2c.leases();
    assert_eq!(leases.len(), 1);
    assert_eq!(leases[0].user, "alice");
    drop(s2c);
    let s2c = service(&dir).await;
    assert!(s2c.lease_of("bob").is_none(), "gone from the store");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn connectors_need_valid_unique_names_and_segments_other_than_the_gateways() {
    let ok = section(
        "[[connectors]]\nname = \"east\"\nshm = \"gh-east\"\n[[connectors]]\nname = \"west\"\nshm = \"/run/gh/west\"\ncores = 2\n",
    );
    assert_eq!(ok.validate(), Ok(()));
    assert_eq!(ok.connectors[0].cores, 1, "one core by default");
    assert_eq!(ok.connector("WEST").map(|c| c.cores), Some(2));
    let refused = |entries: &str| {
        let text = format!("[[connectors]]\nname = \"east\"\nshm = \"gh-east\"\n{entries}");
        section(&text).validate().unwrap_err()
    };
    let (key, message) = refused("[[connectors]]\nname = \"East\"\nshm = \"gh-2\"\n");
    assert_eq!(key, "server_to_client.connectors[1].name");
    assert!(message.contains("duplicate"), "{message}");
    let (key, message) = refused("[[connectors]]\nname = \"w\"\nshm = \"/dev/shm/gh-east\"\n");
    assert_eq!(key, "server_to_client.connectors[1].shm");
    assert!(message.contains("another connector"), "{message}");
    let (key, _) = refused("[[connectors]]\nname = \"gateway\"\nshm = \"gh-2\"\n");
    assert_eq!(key, "server_to_client.connectors[1].name");
    let (key, _) = refused("[[connectors]]\nname = \"a b\"\nshm = \"gh-2\"\n");
    assert_eq!(key, "server_to_client.connectors[1].name");
    let (key, _) = refused("[[connectors]]\nname = \"w\"\nshm = \"a b\"\n");
    assert_eq!(key, "server_to_client.connectors[1].shm");
    let (key, _) = refused("[[connectors]]\nname = \"w\"\nshm = \"gh-2\"\ncores = 0\n");
    assert_eq!(key, "server_to_client.connectors[1].cores");
    let unknown: Result<ServerToClientSection, _> =
        toml::from_str("[[connectors]]\nname = \"w\"\nshm = \"x\"\nsite = \"y\"\n");
    assert!(unknown.is_err(), "unknown keys are refused");
}

#[test]
fn the_gateway_plays_the_connector_only_for_pools_it_may_own() {
    let mut section = section(SERVICE);
    section.pools[0].connectors = vec!["east".into()];
    assert!(!section.gateway_is_connector(), "east's pool only");
    section.pools[0].connectors = vec!["east".into(), "Gateway".into()];
    assert!(section.gateway_is_connector());
    section.pools[0].connectors.clear();
    assert!(
        section.gateway_is_connector(),
        "a pool naming nobody is anyone's"
    );
    section.pools.clear();
    assert!(!section.gateway_is_connector());
}

#[test]
fn an_order_goes_to_the_connectors_that_own_its_pool() {
    let order = |owners: &[&str]| service::ConnectorOrder {
        command: ConnectorCommand::CloseFlows(ip("127.77.0.1")),
        owners: owners.iter().map(|o| (*o).to_owned()).collect(),
    };
    assert!(order(&[]).is_for("anyone"));
    assert!(order(&["east", "west"]).is_for("WEST"));
    assert!(!order(&["east"]).is_for("west"));
}

#[tokio::test]
async fn the_listen_set_of_a_connector_holds_only_its_pools_leases() {
    let dir = temp_dir("listening-for");
    let s2c = service(&dir).await;
    let mut pools = s2c.pools();
    pools[0].connectors = vec!["east".into()];
    s2c.replace_pools(pools).await.unwrap();
    s2c.connect("alice", UserContext::default(), at(0))
        .await
        .unwrap();
    assert_eq!(s2c.listening_for("east").len(), 2);
    assert_eq!(s2c.listening_for("EAST"), s2c.listening());
    assert!(s2c.listening_for("west").is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}
