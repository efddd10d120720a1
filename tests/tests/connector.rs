//! User flow: server-to-client access through a separate connector
//! process. `gatehouse run` serves the segment of connector `east`
//! (`[[server_to_client.connectors]]`); `gatehouse connector --shm ...
//! --name east` attaches to it. alice's pool is owned by `east`, bob's by
//! `west` (not running), so the gateway's own cores take no connector
//! role. A back-end server reaches alice's local service through IIP:port,
//! bound in the connector process; bob's IIP is bound by nobody. The
//! connector is killed with SIGKILL: the control plane logs
//! `connector_gone` with the flow it lost, the port refuses; a new
//! connector process re-links, is told the listen set again, and the same
//! IIP:port carries a new flow. IIPs are loopback addresses in
//! 127.77.20.0/24 and 127.77.21.0/24, servers in 127.0.9.0/24.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a failed test"
)]

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use gatehouse_tests::access::{AccessClient, connect_from, echo_service, exchange, refused_soon};
use gatehouse_tests::bins;
use gatehouse_tests::gatehouse::{Event, Gatehouse, count};
use gatehouse_tests::process::Process;
use rustix::process::Signal;

const PASSWORD: &str = "correct horse battery";
/// The app port the servers connect to (on an IIP).
const VNC: u16 = 5900;

fn config(shm: &str) -> String {
    format!(
        r#"
[server_to_client]
[[server_to_client.connectors]]
name = "east"
shm = "{shm}"
[[server_to_client.pools]]
name = "east-office"
location = "east"
cidr = "127.77.20.0/29"
connectors = ["east"]
users = ["alice"]
[[server_to_client.pools]]
name = "west-office"
location = "west"
cidr = "127.77.21.0/29"
connectors = ["west"]
users = ["bob"]
[[server_to_client.apps]]
name = "vnc"
servers = ["127.0.9.0/24"]
ports = [{VNC}]

[policy]
server_to_client_default = "allow"
"#
    )
}

/// A segment name of this test alone; its files are removed on drop
/// (after the processes, which are declared later and dropped first).
struct Shm(String);

impl Shm {
    fn new() -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.subsec_nanos());
        Self(format!("gatehouse-e2e-conn-{}-{nanos}", std::process::id()))
    }
}

impl Drop for Shm {
    fn drop(&mut self) {
        let path = PathBuf::from("/dev/shm").join(&self.0);
        let _ = std::fs::remove_file(&path);
        let _ = std::fs::remove_file(format!("{}.link", path.display()));
    }
}

/// A running `gatehouse connector`, stopped by PID when dropped.
struct Connector {
    process: Process,
}

impl Connector {
    /// Starts connector `east` on `shm` with the gateway's configuration
    /// (its bind events at debug) and waits for `connector_ready`.
    fn start(gatehouse: &Gatehouse, shm: &Shm) -> Self {
        let mut child = Command::new(bins::gatehouse())
            .args(["--log-format", "json", "connector", "--shm", &shm.0])
            .args(["--name", "east", "--config"])
            .arg(gatehouse.config_path())
            .env("RUST_LOG", "info,gatehouse_engine::connector=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("gatehouse connector starts");
        let stderr = child.stderr.take().unwrap();
        let mut connector = Self {
            process: Process::new("gatehouse connector", child, stderr),
        };
        let ready = connector.wait_for("connector_ready", &[("name", "east")]);
        assert_eq!(ready.json["fields"]["cores"], 1, "{}", ready.json);
        connector
    }

    /// The first event named `message` with `fields`, already read or
    /// still to come (bounded wait).
    fn wait_for(&mut self, message: &str, fields: &[(&str, &str)]) -> Event {
        if let Some(seen) = self.events().into_iter().find(|e| e.is(message, fields)) {
            return seen;
        }
        let what = format!("{message} with {fields:?}");
        let line = self.process.wait_for(&what, |line| {
            Event::parse(line, Instant::now()).is_some_and(|e| e.is(message, fields))
        });
        Event::parse(&line.text, line.at).unwrap()
    }

    fn events(&self) -> Vec<Event> {
        self.process
            .lines()
            .iter()
            .filter_map(|line| Event::parse(&line.text, line.at))
            .collect()
    }
}

/// `user`'s access client on `gatehouse`, forwarding the vnc port to
/// `forward`.
fn access_client(gatehouse: &Gatehouse, user: &str, forward: SocketAddr) -> AccessClient {
    AccessClient::start(
        gatehouse.gateway(),
        &gatehouse.certificate(),
        user,
        PASSWORD,
        Some((VNC, forward)),
        None,
    )
}

/// A back-end server's connection from 127.0.9.5 to `iip:VNC`.
fn connect_backend(iip: &str) -> TcpStream {
    connect_from("127.0.9.5", iip, VNC)
}

#[test]
fn a_connector_process_carries_its_pools_flows_and_a_restarted_one_takes_over() {
    let shm = Shm::new();
    let mut gatehouse = Gatehouse::start(&config(&shm.0));
    // Logged before `gatehouse_ready`, so already read.
    assert_eq!(
        count(
            &gatehouse.events(),
            "connector_serving",
            &[("name", "east")]
        ),
        1
    );
    for user in ["alice", "bob"] {
        let (code, _) = gatehouse.user_command(&["add", user], &format!("{PASSWORD}\n"));
        assert_eq!(code, Some(0), "gatehouse user add {user}");
    }
    let mut connector = Connector::start(&gatehouse, &shm);
    gatehouse.wait_for_event("connector_linked", &[("name", "east")]);

    // alice's IIP (east's pool) is bound in the connector process.
    let service = echo_service();
    let mut alice = access_client(&gatehouse, "alice", service);
    let iip = alice.connected();
    assert!(iip.starts_with("127.77.20."), "{iip}");
    let bound = format!("{iip}:{VNC}");
    connector.wait_for("s2c_listening", &[("addr", &bound)]);
    let mut flow = connect_backend(&iip);
    assert_eq!(exchange(&mut flow, b"hello client"), b"hello client");
    let big = vec![0x5a; 128 * 1024];
    assert_eq!(exchange(&mut flow, &big), big);
    gatehouse.wait_for_event(
        "s2c_flow_allowed",
        &[("user", "alice"), ("connector", "east")],
    );
    connector.wait_for("s2c_flow_relaying", &[("iip", &iip)]);

    // bob's IIP (west's pool) is bound by nobody: not by east, not by the
    // gateway's own cores.
    let mut bob = access_client(&gatehouse, "bob", service);
    let bob_iip = bob.connected();
    assert!(bob_iip.starts_with("127.77.21."), "{bob_iip}");
    assert!(refused_soon(&bob_iip, VNC), "{bob_iip}:{VNC} accepts");

    // kill -9: the control plane lets the connector go with its flow; the
    // port refuses (the gateway's cores never bound it).
    connector.process.signal(Signal::KILL);
    let gone = gatehouse.wait_for_event("connector_gone", &[("name", "east")]);
    assert_eq!(
        gone.json["fields"]["flows_closed"].as_u64(),
        Some(1),
        "{}",
        gone.json
    );
    assert!(
        refused_soon(&iip, VNC),
        "{bound} accepts with its connector dead"
    );
    let mut buf = [0; 16];
    assert!(
        !matches!(flow.read(&mut buf), Ok(n) if n > 0),
        "the flow ended with its connector"
    );
    drop(connector);

    // A new connector process re-links and is told the listen set again.
    let mut connector = Connector::start(&gatehouse, &shm);
    gatehouse.wait_for_event("connector_linked", &[("name", "east")]);
    connector.wait_for("s2c_listening", &[("addr", &bound)]);
    let mut again = connect_backend(&iip);
    assert_eq!(exchange(&mut again, b"hello again"), b"hello again");
    assert!(
        !connector
            .events()
            .iter()
            .any(|e| e.is("s2c_listening", &[("addr", &format!("{bob_iip}:{VNC}"))])),
        "east bound west's address"
    );
    drop(again);
    drop(alice);
    drop(bob);
    assert_eq!(
        connector.process.stop().code(),
        Some(0),
        "exit 0 on SIGTERM"
    );
    let events = gatehouse.stop();
    assert_eq!(
        count(&events, "s2c_connector_started", &[]),
        0,
        "the gateway's cores took the connector role"
    );
    assert_eq!(count(&events, "connector_linked", &[("name", "east")]), 2);
    // The connector events are in the catalogue.
    let catalogue =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/LOGS.md")).unwrap();
    for name in [
        "connector_ready",
        "connector_serving",
        "connector_linked",
        "connector_gone",
    ] {
        assert!(
            catalogue.contains(&format!("| `{name}` |")),
            "{name} is not in docs/LOGS.md"
        );
    }
}
