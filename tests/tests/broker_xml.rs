//! User flow: the XML broker of the real `gatehouse run`. Two `vda-sim`
//! workers with different loads register over the registration protocol
//! (`--register`); the seed's PowerShell sequence (capabilities ->
//! validate -> app data -> address), then `RequestTicket`, is posted as
//! raw XML over a std `TcpStream`; the address is the least busy worker,
//! `RequestTicket` answers a single-use CTXS1 logon ticket that worker
//! redeems once, and an STA ticket for the address opens a SOCKS5 launch
//! through the gateway to it. A wrong password gets `failed-credentials`;
//! a stopped worker unregisters.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a failed test"
)]

use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gatehouse_tests::bins;
use gatehouse_tests::gatehouse::Gatehouse;
use gatehouse_tests::process::Process;
use gatehouse_tests::socks::{self, REPLY_SUCCEEDED};

const PASSWORD: &str = "Wonderland-1865";
const ENVELOPE: &str = r#"<?xml version="1.0" encoding="utf-8"?><!DOCTYPE NFuseProtocol SYSTEM "NFuse.dtd"><NFuseProtocol version="5.1">"#;
const CATALOG: &str = r#"
[broker]
heartbeat_timeout_secs = 30
[[broker.groups]]
name = "pool"
kind = "shared"
[[broker.desktops]]
worker = "w-busy"
group = "pool"
[[broker.desktops]]
worker = "w-idle"
group = "pool"
[[broker.resources]]
name = "Pool"
display = "Pool Desktop"
kind = "desktop"
group = "pool"
"#;

/// A `vda-sim` registered with the broker at `admin`, stopped by PID.
struct Worker {
    process: Process,
    ica: SocketAddr,
}

impl Worker {
    fn start(admin: SocketAddr, name: &str, load: u32) -> Self {
        let mut child = Command::new(bins::vda_sim())
            .args(["--ica-listen", "127.0.0.1:0", "--announce"])
            .arg("--register")
            .arg(format!("http://{admin}"))
            .args(["--worker-name", name, "--heartbeat-secs", "1"])
            .arg("--load")
            .arg(load.to_string())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("vda-sim starts");
        let stdout = child.stdout.take().unwrap();
        let mut process = Process::new("vda-sim", child, stdout);
        let announce = process.wait_for("announce line", |line| line.starts_with("ica="));
        let ica = announce
            .text
            .split_whitespace()
            .find_map(|part| part.strip_prefix("ica="))
            .and_then(|addr| addr.parse().ok())
            .unwrap();
        Self { process, ica }
    }
}

fn http(admin: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    gatehouse_tests::http::request(admin, method, path, "", body)
}

fn xml(admin: SocketAddr, body: &str) -> String {
    let (status, answer) = http(
        admin,
        "POST",
        "/scripts/wpnbr.dll",
        &format!("{ENVELOPE}{body}</NFuseProtocol>"),
    );
    assert_eq!(status, 200, "{answer}");
    answer
}

fn element<'a>(xml: &'a str, tag: &str) -> &'a str {
    let open = format!("<{tag}");
    let start = xml
        .find(&open)
        .unwrap_or_else(|| panic!("no <{tag}> in {xml}"));
    let start = start + xml[start..].find('>').unwrap() + 1;
    let end = start + xml[start..].find(&format!("</{tag}>")).unwrap();
    &xml[start..end]
}

fn credentials(password: &str) -> String {
    format!(
        r#"<Credentials><UserName>alice</UserName><Password encoding="cleartext">{password}</Password><Domain Type="NT">GATEHOUSE</Domain></Credentials>"#
    )
}

/// Waits (bounded) until `GET /broker/v1/workers` satisfies `done`.
fn wait_for_workers(admin: SocketAddr, what: &str, done: impl Fn(&serde_json::Value) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, body) = http(admin, "GET", "/broker/v1/workers", "");
        assert_eq!(status, 200, "{body}");
        let list: serde_json::Value = serde_json::from_str(&body).unwrap();
        if done(&list) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: {list}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn add_user(gatehouse: &Gatehouse) {
    let data = gatehouse
        .certificate()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .to_owned();
    let mut child = Command::new(bins::gatehouse())
        .args(["user", "add", "alice", "--password-stdin", "--data-dir"])
        .arg(&data)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{PASSWORD}").unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("gatehouse user add did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_seeds_xml_sequence_reaches_the_least_busy_registered_worker_through_the_gateway() {
    let gatehouse = Gatehouse::start(CATALOG);
    let admin = gatehouse.admin();
    add_user(&gatehouse);
    let busy = Worker::start(admin, "w-busy", 800);
    let idle = Worker::start(admin, "w-idle", 100);
    wait_for_workers(admin, "both workers register", |list| {
        list["workers"]
            .as_array()
            .is_some_and(|w| w.len() == 2 && w.iter().all(|w| w["available"] == true))
    });

    let capabilities = xml(admin, "<RequestCapabilities></RequestCapabilities>");
    assert!(!capabilities.contains("error"), "{capabilities}");
    assert!(capabilities.contains("<CapabilityId>"), "{capabilities}");

    let wrong = xml(
        admin,
        &format!(
            "<RequestValidateCredentials>{}</RequestValidateCredentials>",
            credentials("wrong")
        ),
    );
    assert!(
        wrong.contains("<ErrorId>failed-credentials</ErrorId>"),
        "{wrong}"
    );
    let creds = credentials(PASSWORD);
    let validated = xml(
        admin,
        &format!("<RequestValidateCredentials>{creds}</RequestValidateCredentials>"),
    );
    assert!(!validated.contains("ErrorId"), "{validated}");

    let client =
        r#"<ClientName>PC1</ClientName><ClientAddress addresstype="dot">127.0.0.1</ClientAddress>"#;
    let app_data = xml(
        admin,
        &format!(
            r#"<RequestAppData><Scope traverse="subtree"></Scope><DesiredDetails>rade-offline-mode</DesiredDetails><ServerType>all</ServerType><ClientType>ica30</ClientType><ClientType>content</ClientType>{creds}{client}</RequestAppData>"#
        ),
    );
    let app = app_data
        .split("<FName>")
        .nth(1)
        .unwrap()
        .split("</FName>")
        .next()
        .unwrap();
    assert_eq!(app, "Pool Desktop");

    let address = xml(
        admin,
        &format!(
            r#"<RequestAddress><Name><AppName>{app}</AppName></Name>{client}<ServerAddress addresstype="dns-port"></ServerAddress>{creds}<ClientType>ica30</ClientType></RequestAddress>"#
        ),
    );
    assert_eq!(
        element(&address, "ServerAddress"),
        idle.ica.to_string(),
        "{address}"
    );
    let tag = element(&address, "TicketTag");

    let ticket = xml(
        admin,
        &format!(
            "<RequestTicket>{creds}<TicketType>CtxLogon</TicketType><TicketTag>{tag}</TicketTag></RequestTicket>"
        ),
    );
    // The logon ticket (CTXS1) for the chosen worker; the tag is spent.
    assert_eq!(element(&ticket, "TicketType"), "CtxLogon", "{ticket}");
    let logon = element(&ticket, "Ticket").to_owned();
    assert!(
        logon.len() == 32
            && logon
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_lowercase()),
        "{ticket}"
    );
    let again = xml(
        admin,
        &format!(
            "<RequestTicket>{creds}<TicketType>CtxLogon</TicketType><TicketTag>{tag}</TicketTag></RequestTicket>"
        ),
    );
    assert_eq!(
        element(&again, "ErrorId"),
        "no-server",
        "a tag buys one ticket: {again}"
    );

    // The store's part: the STA ticket for the address, then the launch
    // through the gateway.
    let sta_ticket = gatehouse_tests::sta::issue(admin, idle.ica);
    let mut stream = socks::connect_tls(gatehouse.gateway(), &gatehouse.tls_client());
    assert_eq!(socks::launch(&mut stream, &sta_ticket), REPLY_SUCCEEDED);
    socks::expect_detect_and_echo(&mut stream, b"brokered");
    drop(stream);

    // The worker learns who logs on from the logon ticket, once; another
    // worker presenting it learns nothing.
    let redeem = |worker: &str| {
        let body = format!(r#"{{"version":1,"worker":"{worker}","ticket":"{logon}"}}"#);
        http(admin, "POST", "/broker/v1/logon", &body)
    };
    let (status, grant) = redeem("w-idle");
    assert_eq!(status, 200, "{grant}");
    let grant: serde_json::Value = serde_json::from_str(&grant).unwrap();
    assert_eq!(grant["user"], "alice", "{grant}");
    assert_eq!(redeem("w-idle").0, 404, "a logon ticket is single-use");
    // Fields by position (serde would read them) are refused.
    let (status, answer) = http(admin, "POST", "/broker/v1/logon", r#"[1,"w-idle","x"]"#);
    assert_eq!(status, 400, "{answer}");
    assert!(answer.contains("expected a JSON object"), "{answer}");

    let Worker { mut process, .. } = idle;
    assert_eq!(process.stop().code(), Some(0));
    wait_for_workers(admin, "the stopped worker unregisters", |list| {
        list["workers"]
            .as_array()
            .is_some_and(|w| w.len() == 1 && w[0]["worker"] == "w-busy")
    });
    let Worker { mut process, .. } = busy;
    assert_eq!(process.stop().code(), Some(0));
    drop(gatehouse);
}
