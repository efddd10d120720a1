//! User flow: server-to-client access (seed 000) with the real `gatehouse
//! run` (its cores also play the connector role) and the real
//! `access-client`: a user logs in and is leased an IIP; a back-end server
//! bound to an address inside an app's server range connects to IIP:port
//! and exchanges bytes with a service on the client; servers outside the
//! range, ports outside the app and users the policy denies are reset and
//! logged; logout releases the IIP and closes the flows; a control
//! connection lost for less than `client_grace_secs` keeps the IIP, one
//! lost for longer releases it; stickiness; and leases that survive a
//! restart. IIPs are loopback addresses
//! (127.77.0.0/16), servers 127.0.8.0/24 and 127.0.9.0/24.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a failed test"
)]

use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

use gatehouse_tests::TIMEOUT;
use gatehouse_tests::access::{
    AccessClient, assert_refused, connect_from, echo_service, exchange, refused_soon,
};
use gatehouse_tests::curl::Browser;
use gatehouse_tests::gatehouse::{Gatehouse, count};

const PASSWORD: &str = "correct horse battery";
/// The app port the servers connect to (on an IIP, so no clash with
/// anything on 127.0.0.1).
const VNC: u16 = 5900;
/// A port of another app (servers in 127.0.8.0/24 only).
const SSH: u16 = 5901;

fn config(cidr: &str, stickiness_days: u32) -> String {
    format!(
        r#"
[server_to_client]
stickiness_days = {stickiness_days}
dns_listen = "127.0.0.1:0"
[[server_to_client.pools]]
name = "hq"
location = "headquarters"
cidr = "{cidr}"
[[server_to_client.apps]]
name = "vnc"
servers = ["127.0.9.0/24"]
ports = [{VNC}]
[[server_to_client.apps]]
name = "ssh"
servers = ["127.0.8.0/24"]
ports = [{SSH}]

[policy]
server_to_client_default = "deny"
[[policy.rules]]
name = "no-mallory"
action = "deny"
applies_to = "server-to-client"
users = ["mallory"]
[[policy.rules]]
name = "hq-servers"
action = "allow"
applies_to = "server-to-client"
locations = ["headquarters"]
"#
    )
}

fn add_user(gatehouse: &Gatehouse, name: &str) {
    let (code, _) = gatehouse.user_command(&["add", name], &format!("{PASSWORD}\n"));
    assert_eq!(code, Some(0), "gatehouse user add {name}");
}

/// `user`'s access client on `gatehouse`, registering `USER-pc.corp.example`
/// and forwarding the vnc port to `forward`.
fn access_client(gatehouse: &Gatehouse, user: &str, forward: Option<SocketAddr>) -> AccessClient {
    AccessClient::start(
        gatehouse.gateway(),
        &gatehouse.certificate(),
        user,
        PASSWORD,
        forward.map(|service| (VNC, service)),
        Some(&format!("{user}-pc.corp.example")),
    )
}

/// The DNS responder's address, from its `s2c_dns_listening` event.
fn dns_addr(gatehouse: &Gatehouse) -> SocketAddr {
    gatehouse
        .events()
        .iter()
        .find(|event| event.message() == "s2c_dns_listening")
        .and_then(|event| event.field("addr")?.parse().ok())
        .expect("the dns responder logged its address")
}

/// Asks `dns` for the A record of `name`: the response code and the
/// address, if one came.
fn resolve(dns: SocketAddr, name: &str) -> (u8, Option<[u8; 4]>) {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut query = vec![0xbe, 0xef, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.') {
        query.push(u8::try_from(label.len()).unwrap());
        query.extend_from_slice(label.as_bytes());
    }
    query.extend_from_slice(&[0, 0, 1, 0, 1]);
    socket.send_to(&query, dns).unwrap();
    let mut reply = [0; 512];
    let len = socket.recv(&mut reply).unwrap();
    assert_eq!(
        &reply[..2],
        &[0xbe, 0xef],
        "the answer carries the query id"
    );
    let answers = u16::from_be_bytes([reply[6], reply[7]]);
    let address = (answers == 1).then(|| reply[len - 4..len].try_into().unwrap());
    (reply[3] & 0x0f, address)
}

#[test]
fn allowed_servers_reach_the_client_and_others_are_refused_and_logged() {
    let mut gatehouse = Gatehouse::start(&config("127.77.1.0/29", 15));
    add_user(&gatehouse, "alice");
    add_user(&gatehouse, "mallory");
    let service = echo_service();
    let mut alice = access_client(&gatehouse, "alice", Some(service));
    let (iip, sticky) = alice.leased();
    assert_eq!(iip, "127.77.1.1");
    assert!(!sticky);
    alice.wait_for("fqdn=alice-pc.corp.example");
    // Flows reach a client once its control connection is up.
    alice.wait_for("control iip=127.77.1.1");
    // The registered machine name resolves to the IIP at the DNS responder.
    let dns = dns_addr(&gatehouse);
    assert_eq!(
        resolve(dns, "Alice-PC.corp.example"),
        (0, Some([127, 77, 1, 1]))
    );
    assert_eq!(resolve(dns, "nobody.corp.example"), (3, None));
    gatehouse.wait_for_event("s2c_leased", &[("user", "alice"), ("iip", &iip)]);

    // Allowed: a vnc server reaches the client's service, both ways.
    let mut flow = connect_from("127.0.9.5", &iip, VNC);
    assert_eq!(exchange(&mut flow, b"hello client"), b"hello client");
    let big = vec![0x5a; 256 * 1024];
    assert_eq!(exchange(&mut flow, &big), big);
    gatehouse.wait_for_event(
        "s2c_flow_allowed",
        &[("user", "alice"), ("app", "vnc"), ("rule", "hq-servers")],
    );

    // A server outside every app's range.
    let mut outside = connect_from("127.0.7.5", &iip, VNC);
    assert_refused(&mut outside);
    gatehouse.wait_for_event("s2c_flow_denied", &[("reason", "server_not_in_app")]);

    // A vnc server on the ssh port (the connector listens on it for ssh).
    let mut wrong_port = connect_from("127.0.9.5", &iip, SSH);
    assert_refused(&mut wrong_port);
    gatehouse.wait_for_event("s2c_flow_denied", &[("reason", "port_not_in_app")]);

    // A user the policy denies.
    let mut mallory = access_client(&gatehouse, "mallory", None);
    let (mallory_iip, _) = mallory.leased();
    mallory.wait_for("control iip=");
    assert_eq!(mallory_iip, "127.77.1.2");
    let mut denied = connect_from("127.0.9.5", &mallory_iip, VNC);
    assert_refused(&mut denied);
    gatehouse.wait_for_event(
        "s2c_flow_denied",
        &[
            ("reason", "policy_deny"),
            ("detail", "policy_deny rule=no-mallory"),
            ("user", "mallory"),
        ],
    );

    // Logout: the IIP is released, its listeners go, its flows close.
    alice.signal(rustix::process::Signal::TERM);
    alice.wait_for("released");
    gatehouse.wait_for_event("s2c_released", &[("user", "alice"), ("iip", &iip)]);
    assert_refused(&mut flow);
    assert!(
        refused_soon(&iip, VNC),
        "{iip}:{VNC} still accepts after logout"
    );
    assert_eq!(resolve(dns, "alice-pc.corp.example"), (3, None));
    let events = gatehouse.stop();
    assert!(count(&events, "s2c_flow_closed", &[]) >= 1);
    assert!(count(&events, "s2c_flows_closed", &[("iip", &iip)]) >= 1);
    // Every server-to-client event of the run is in the catalogue.
    let catalogue =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/LOGS.md")).unwrap();
    for event in &events {
        let name = event.message();
        if name.starts_with("s2c_") {
            assert!(
                catalogue.contains(&format!("| `{name}` |")),
                "{name} is not in docs/LOGS.md"
            );
        }
    }
}

#[test]
fn the_same_user_gets_the_same_address_back_and_leases_survive_a_restart() {
    // One address, sticky for 15 days.
    let gatehouse = Gatehouse::start(&config("127.77.2.1/32", 15));
    add_user(&gatehouse, "alice");
    add_user(&gatehouse, "bob");
    let mut alice = access_client(&gatehouse, "alice", None);
    assert_eq!(alice.leased(), ("127.77.2.1".to_owned(), false));
    alice.signal(rustix::process::Signal::TERM);
    alice.wait_for("released");
    drop(alice);

    // Within the window no one else gets alice's address: a login-time
    // error naming the exhausted pool.
    let mut bob = access_client(&gatehouse, "bob", None);
    let lost = bob.wait_for("control_lost");
    assert!(lost.contains("409") && lost.contains("exhausted"), "{lost}");
    drop(bob);

    let mut alice = access_client(&gatehouse, "alice", None);
    assert_eq!(alice.leased(), ("127.77.2.1".to_owned(), true));
    drop(alice);

    // Restart: alice's lease (still active: her client vanished without a
    // release) is kept, so bob still cannot have the address.
    let (_, dir) = gatehouse.stop_keeping_data();
    let gatehouse = Gatehouse::restart_in(dir);
    let mut bob = access_client(&gatehouse, "bob", None);
    let lost = bob.wait_for("control_lost");
    assert!(lost.contains("exhausted"), "{lost}");
    drop(bob);
    let mut alice = access_client(&gatehouse, "alice", None);
    assert_eq!(alice.leased().0, "127.77.2.1");

    // The REST API shows the lease and the pool's warning: one address
    // for two users is under three per user.
    let token = gatehouse.admin_api_token("s2c-test");
    let (status, leases) = gatehouse.api(&token, "GET", "/api/v1/iip-leases");
    assert_eq!(status, 200, "{leases}");
    let leases: serde_json::Value = serde_json::from_str(&leases).unwrap();
    assert_eq!(leases[0]["iip"], "127.77.2.1");
    assert_eq!(leases[0]["user"], "alice");
    assert_eq!(leases[0]["active"], true);
    let (_, pools) = gatehouse.api(&token, "GET", "/api/v1/iip-pool-status");
    let pools: serde_json::Value = serde_json::from_str(&pools).unwrap();
    assert_eq!(pools[0]["capacity"], 1, "{pools}");
    assert_eq!(pools[0]["undersized"], true, "{pools}");
}

#[test]
fn an_address_released_past_the_window_goes_to_another_user() {
    // stickiness_days = 0: the window is over at the release.
    let gatehouse = Gatehouse::start(&config("127.77.3.1/32", 0));
    add_user(&gatehouse, "alice");
    add_user(&gatehouse, "bob");
    let mut alice = access_client(&gatehouse, "alice", None);
    assert_eq!(alice.leased().0, "127.77.3.1");
    alice.signal(rustix::process::Signal::TERM);
    alice.wait_for("released");
    let mut bob = access_client(&gatehouse, "bob", None);
    assert_eq!(bob.leased(), ("127.77.3.1".to_owned(), false));
    let events = gatehouse.stop();
    assert_eq!(
        count(
            &events,
            "s2c_leased",
            &[("user", "bob"), ("reclaimed_from", "alice")]
        ),
        1
    );
}

#[test]
fn the_web_logout_releases_the_address_and_the_api_refuses_without_a_session() {
    let mut gatehouse = Gatehouse::start(&config("127.77.4.0/30", 15));
    add_user(&gatehouse, "carol");
    let web = Browser::new();
    // A POST with an empty body, or with `body` as it is.
    let post = |path: &str, body: &str| {
        let answer = web.request(&gatehouse, path, &[], Some(body));
        (answer.status, answer.body)
    };
    let (status, body) = post("/access/v1/connect", "");
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("no_session"), "{body}");
    let login = web.post(
        &gatehouse,
        "/cgi/login",
        &[("login", "carol"), ("passwd", PASSWORD)],
    );
    assert_eq!(login.status, 302, "{login:?}");
    let (status, body) = post("/access/v1/connect", "");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""iip":"127.77.4.1""#), "{body}");
    let (status, body) = post("/access/v1/fqdn", r#"{"fqdn":"not a name"}"#);
    assert_eq!(status, 400, "{body}");
    // A JSON array is no form, even one serde could read by position.
    let (status, body) = post("/access/v1/fqdn", r#"["pc1.corp.example"]"#);
    assert_eq!(status, 400, "{body}");
    // Only servers of an app may resolve names; the test runs on 127.0.0.1.
    let resolve = web.get(&gatehouse, "/access/v1/resolve?name=x");
    assert_eq!(resolve.status, 403, "{resolve:?}");
    let logout = web.get(&gatehouse, "/cgi/logout");
    assert_eq!(logout.status, 200, "{logout:?}");
    gatehouse.wait_for_event("s2c_released", &[("user", "carol"), ("iip", "127.77.4.1")]);
}

#[test]
fn a_lost_control_connection_keeps_the_address_for_the_grace_period_then_releases_it() {
    const GRACE: Duration = Duration::from_secs(2);
    let tables = config("127.77.4.0/30", 15).replacen(
        "[server_to_client]\n",
        &format!(
            "[server_to_client]\nclient_grace_secs = {}\n",
            GRACE.as_secs()
        ),
        1,
    );
    let mut gatehouse = Gatehouse::start(&tables);
    add_user(&gatehouse, "alice");
    let service = echo_service();
    let mut alice = access_client(&gatehouse, "alice", Some(service));
    let (iip, _) = alice.leased();
    alice.wait_for("control iip=");

    // The client dies without a logout: its control connection ends, the
    // lease stays while the grace period runs.
    alice.signal(rustix::process::Signal::KILL);
    drop(alice);
    gatehouse.wait_for_event("s2c_client_detached", &[("user", "alice")]);
    let detached = Instant::now();

    // It comes back within the grace period: same address, flows reach it,
    // and past the grace period nothing is released.
    let mut alice = access_client(&gatehouse, "alice", Some(service));
    assert_eq!(
        alice.leased().0,
        iip,
        "the address is kept through a short loss"
    );
    alice.wait_for("control iip=");
    assert!(
        detached.elapsed() < GRACE,
        "the client took {:?} to come back (grace {GRACE:?}): the test proves nothing",
        detached.elapsed()
    );
    thread::sleep(GRACE + Duration::from_secs(1));
    let mut flow = connect_from("127.0.9.5", &iip, VNC);
    assert_eq!(exchange(&mut flow, b"still here"), b"still here");
    // Read the log up to this flow's decision (logged after the grace
    // period ran out).
    gatehouse.wait_for_event("s2c_flow_allowed", &[("user", "alice")]);
    let events = gatehouse.events();
    assert_eq!(
        count(&events, "s2c_client_lost", &[]),
        0,
        "released despite the return"
    );
    assert_eq!(
        count(&events, "s2c_released", &[]),
        0,
        "released despite the return"
    );

    // It dies again and stays away: released after the grace period, not
    // before; its listeners and flows go.
    alice.signal(rustix::process::Signal::KILL);
    drop(alice);
    gatehouse.wait_for_event("s2c_client_detached", &[("user", "alice")]);
    let gone = Instant::now();
    let released = gatehouse.wait_for_event("s2c_released", &[("user", "alice"), ("iip", &iip)]);
    let waited = released.at.saturating_duration_since(gone);
    assert!(
        waited + Duration::from_millis(200) >= GRACE,
        "released {waited:?} after the loss, before the {GRACE:?} grace period"
    );
    gatehouse.wait_for_event("s2c_client_lost", &[("user", "alice"), ("iip", &iip)]);
    assert_refused(&mut flow);
    assert!(
        refused_soon(&iip, VNC),
        "{iip}:{VNC} still accepts after the grace period"
    );
}
