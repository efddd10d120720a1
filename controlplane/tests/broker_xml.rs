//! The XML broker and the registration protocol in process: a broker over
//! a real store and local user directory, served on a loopback listener,
//! driven with raw HTTP. The seed's PowerShell sequence (capabilities ->
//! validate -> app data -> address) is replayed as raw XML, then the
//! logon ticket, which the chosen worker redeems once; assignments survive a broker restart; a powered-off desktop is
//! powered on through a command hook and launched once it registers.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a failed test"
)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use gatehouse::admin;
use gatehouse::auth::local::LocalUsers;
use gatehouse::auth::names::UserName;
use gatehouse::auth::password::{Password, PasswordHasher, PasswordParams};
use gatehouse::broker::catalog::{BrokerSection, Catalog};
use gatehouse::broker::{Broker, BrokerTimings, LocalDirectory, ctx1, http};
use gatehouse::sta::http::{SharedSta, os_fill};
use gatehouse::sta::{Sta, StaLimits};
use gatehouse::store::Store;
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const ENVELOPE: &str = r#"<?xml version="1.0" encoding="utf-8"?><!DOCTYPE NFuseProtocol SYSTEM "NFuse.dtd"><NFuseProtocol version="5.1">"#;
const PASSWORD: &str = "Wonderland-1865";

fn temp_dir(label: &str) -> PathBuf {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "gatehouse-broker-{label}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn catalog(hook_dir: &Path, hook_url: Option<SocketAddr>) -> Catalog {
    let url = hook_url.map_or_else(String::new, |addr| {
        format!(
            "[[groups]]\nname = \"warm\"\nkind = \"shared\"\npower_on_url = \"http://{addr}/power\"\n\
             [[desktops]]\nworker = \"h1\"\ngroup = \"warm\"\n\
             [[resources]]\nname = \"Warm\"\nkind = \"desktop\"\ngroup = \"warm\"\n"
        )
    });
    let text = format!(
        r#"
[[groups]]
name = "pool"
kind = "shared"
[[groups]]
name = "vdi"
kind = "private"
[[groups]]
name = "cold"
kind = "shared"
power_on_command = ["touch", "{}/{{worker}}.on"]
[[groups]]
name = "dead"
kind = "shared"
power_on_command = ["true"]

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
worker = "v1"
group = "vdi"
[[desktops]]
worker = "c1"
group = "cold"
[[desktops]]
worker = "d1"
group = "dead"

[[resources]]
name = "Pool"
display = "Pool Desktop"
kind = "desktop"
group = "pool"
[[resources]]
name = "Mine"
kind = "desktop"
group = "vdi"
[[resources]]
name = "Cold"
kind = "desktop"
group = "cold"
[[resources]]
name = "Dead"
kind = "desktop"
group = "dead"
[[resources]]
name = "Secret"
kind = "app"
group = "pool"
users = ["root"]
{url}"#,
        hook_dir.display()
    );
    let section: BrokerSection = toml::from_str(&text).unwrap();
    section.validate().unwrap();
    Catalog::new(section)
}

struct Fixture {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Fixture {
    async fn start(dir: &Path, power_on_secs: u64) -> Self {
        Self::start_with(dir, power_on_secs, 30, None).await
    }

    async fn start_with(
        dir: &Path,
        power_on_secs: u64,
        heartbeat_secs: u64,
        hook_url: Option<SocketAddr>,
    ) -> Self {
        let store = Store::open(&dir.join("data")).await.unwrap();
        let hasher = PasswordHasher::new(PasswordParams {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        })
        .unwrap();
        let users = LocalUsers::new(store.clone(), Arc::new(hasher));
        for name in ["alice", "bob"] {
            let name = UserName::new(name).unwrap();
            let _ = users
                .add(&name, &Password::new(PASSWORD.to_owned()).unwrap())
                .await;
        }
        let sta: SharedSta = Arc::new(Mutex::new(Sta::new(
            "STA01".parse().unwrap(),
            StaLimits::default(),
            os_fill,
        )));
        let timings = BrokerTimings {
            heartbeat_timeout: Duration::from_secs(heartbeat_secs),
            power_on_timeout: Duration::from_secs(power_on_secs),
            ticket_tag_ttl: Duration::from_secs(60),
            temporary_grace: Duration::from_secs(60),
        };
        let broker = Broker::new(
            catalog(dir, hook_url),
            timings,
            sta,
            Arc::new(LocalDirectory(users)),
            Some(store),
        )
        .await
        .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let server = tokio::spawn(admin::serve(listener, http::router(broker), async move {
            let _ = stopped.await;
        }));
        Self {
            addr,
            stop: Some(stop),
            server,
        }
    }

    async fn shutdown(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(5), &mut self.server)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }

    async fn xml(&self, body: &str) -> String {
        let (status, answer) = post(
            self.addr,
            http::XML_PATH,
            "text/xml",
            &format!("{ENVELOPE}{body}</NFuseProtocol>"),
        )
        .await;
        assert_eq!(status, 200, "{answer}");
        answer
    }

    async fn register(&self, worker: &str, ica: &str, load: u32) {
        let body = format!(
            r#"{{"version":1,"worker":"{worker}","ica":"{ica}","cgp":"*:2598","sessions":0,"load":{load}}}"#
        );
        let (status, answer) =
            post(self.addr, http::REGISTER_PATH, "application/json", &body).await;
        assert_eq!(status, 200, "{answer}");
    }
}

async fn post(addr: SocketAddr, path: &str, content_type: &str, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_string(&mut answer))
        .await
        .unwrap()
        .unwrap();
    let status = answer.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = answer.split_once("\r\n\r\n").unwrap().1.to_owned();
    (status, body)
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

fn credentials(user: &str, password: &str) -> String {
    format!(
        r#"<Credentials><UserName>{user}</UserName><Password encoding="cleartext">{password}</Password><Domain Type="NT">GATEHOUSE</Domain></Credentials>"#
    )
}

const CLIENT: &str =
    r#"<ClientName>PC1</ClientName><ClientAddress addresstype="dot">127.0.0.1</ClientAddress>"#;

async fn address(fixture: &Fixture, user: &str, app: &str) -> String {
    fixture
        .xml(&format!(
            r#"<RequestAddress><Name><AppName>{app}</AppName></Name>{CLIENT}<ServerAddress addresstype="dns-port"></ServerAddress>{}<ClientType>ica30</ClientType></RequestAddress>"#,
            credentials(user, PASSWORD)
        ))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seeds_request_sequence_replayed_as_raw_xml_reaches_the_least_busy_worker() {
    let dir = temp_dir("seed");
    let fixture = Fixture::start(&dir, 5).await;
    fixture.register("p1", "127.0.0.1:20001", 500).await;
    fixture.register("p2", "127.0.0.1:20002", 100).await;
    fixture.register("p3", "127.0.0.1:20003", 900).await;
    let creds = credentials("alice", PASSWORD);

    let capabilities = fixture
        .xml("<RequestCapabilities></RequestCapabilities>")
        .await;
    assert!(!capabilities.contains("error"), "{capabilities}");
    assert!(capabilities.contains("<CapabilityId>separate-credentials-validation</CapabilityId>"));

    let validated = fixture
        .xml(&format!(
            "<RequestValidateCredentials>{creds}</RequestValidateCredentials>"
        ))
        .await;
    assert!(!validated.contains("ErrorId"), "{validated}");
    assert!(validated.contains("<ResponseValidateCredentials></ResponseValidateCredentials>"));

    let app_data = fixture
        .xml(&format!(
            r#"<RequestAppData><Scope traverse="subtree"></Scope><DesiredDetails>rade-offline-mode</DesiredDetails><ServerType>all</ServerType><ClientType>ica30</ClientType><ClientType>content</ClientType>{creds}{CLIENT}</RequestAppData>"#
        ))
        .await;
    // The script takes the text between the first <FName> and </FName>.
    let first = app_data
        .split("<FName>")
        .nth(1)
        .unwrap()
        .split("</FName>")
        .next()
        .unwrap();
    assert_eq!(first, "Pool Desktop");
    assert!(
        !app_data.contains("Secret"),
        "entitlements hide the app: {app_data}"
    );

    let answer = address(&fixture, "alice", first).await;
    assert_eq!(
        element(&answer, "ServerAddress"),
        "127.0.0.1:20002",
        "{answer}"
    );
    assert!(answer.contains(r#"addresstype="dot-port""#), "{answer}");
    assert_eq!(element(&answer, "ServerName"), "p2");
    assert_eq!(element(&answer, "CGPAddress"), "*:2598");
    let tag = element(&answer, "TicketTag").to_owned();

    // bob cannot spend alice's tag.
    let stolen = fixture
        .xml(&format!(
            "<RequestTicket>{}<TicketTag>{tag}</TicketTag></RequestTicket>",
            credentials("bob", PASSWORD)
        ))
        .await;
    assert!(stolen.contains("<ErrorId>no-server</ErrorId>"), "{stolen}");

    let ticket = fixture
        .xml(&format!(
            "<RequestTicket>{creds}<TicketType>CtxLogon</TicketType><TicketTag>{tag}</TicketTag><TimetoLive>200</TimetoLive></RequestTicket>"
        ))
        .await;
    // The logon ticket (CTXS1) for p2, which p2 redeems once to learn who
    // logs on.
    assert_eq!(element(&ticket, "TicketType"), "CtxLogon", "{ticket}");
    let logon = element(&ticket, "Ticket").to_owned();
    assert_eq!(logon.len(), 32, "{ticket}");
    let body = format!(r#"{{"version":1,"worker":"p2","ticket":"{logon}"}}"#);
    let (status, grant) = post(fixture.addr, "/broker/v1/logon", "application/json", &body).await;
    assert_eq!(status, 200, "{grant}");
    assert!(grant.contains(r#""user":"alice""#), "{grant}");
    let (status, _) = post(fixture.addr, "/broker/v1/logon", "application/json", &body).await;
    assert_eq!(status, 404, "single use");

    // The tag is spent by the ticket it bought.
    let again = fixture
        .xml(&format!(
            "<RequestTicket>{creds}<TicketTag>{tag}</TicketTag></RequestTicket>"
        ))
        .await;
    assert!(again.contains("<ErrorId>no-server</ErrorId>"), "{again}");

    let sessions = fixture
        .xml(&format!(
            "<RequestReconnectSessionData>{creds}</RequestReconnectSessionData>"
        ))
        .await;
    assert_eq!(element(&sessions, "ServerName"), "p2", "{sessions}");
    fixture.shutdown().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_failed_credentials_and_ctx1_passwords_work() {
    let dir = temp_dir("creds");
    let fixture = Fixture::start(&dir, 5).await;
    let wrong = fixture
        .xml(&format!(
            "<RequestValidateCredentials>{}</RequestValidateCredentials>",
            credentials("alice", "nope")
        ))
        .await;
    assert!(
        wrong.contains("<ResponseValidateCredentials><ErrorId>failed-credentials</ErrorId></ResponseValidateCredentials>"),
        "{wrong}"
    );
    let unknown = fixture
        .xml(&format!(
            "<RequestAppData>{}</RequestAppData>",
            credentials("mallory", PASSWORD)
        ))
        .await;
    assert!(
        unknown.contains("<ErrorId>failed-credentials</ErrorId>"),
        "{unknown}"
    );
    let ctx1 = fixture
        .xml(&format!(
            r#"<RequestValidateCredentials><Credentials><UserName>alice</UserName><Password encoding="ctx1">{}</Password></Credentials></RequestValidateCredentials>"#,
            ctx1::encode(PASSWORD)
        ))
        .await;
    assert!(!ctx1.contains("ErrorId"), "{ctx1}");
    let newer = post(
        fixture.addr,
        http::XML_PATH,
        "text/xml",
        r#"<NFuseProtocol version="6.0"><RequestCapabilities/></NFuseProtocol>"#,
    )
    .await
    .1;
    assert!(
        newer.contains("<ErrorId>version-mismatch</ErrorId>"),
        "{newer}"
    );
    let garbage = post(fixture.addr, http::XML_PATH, "text/xml", "<<<")
        .await
        .1;
    assert!(
        garbage.contains("<ErrorId>unspecified</ErrorId>"),
        "{garbage}"
    );
    fixture.shutdown().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_refuses_unknown_versions_and_unknown_workers_clearly() {
    let dir = temp_dir("reg");
    let fixture = Fixture::start(&dir, 5).await;
    let (status, body) = post(
        fixture.addr,
        http::REGISTER_PATH,
        "application/json",
        r#"{"version":9,"worker":"w","ica":"127.0.0.1:1","shiny_new_field":true}"#,
    )
    .await;
    assert_eq!(status, 400);
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["error"], "unsupported-version");
    assert_eq!(body["supported_versions"], serde_json::json!([1, 2]));
    let (status, body) = post(
        fixture.addr,
        http::HEARTBEAT_PATH,
        "application/json",
        r#"{"version":1,"worker":"ghost","sessions":0,"load":0}"#,
    )
    .await;
    assert_eq!(status, 404, "{body}");
    // A version 2 worker with a session limit next to a version 1 worker.
    let (status, _) = post(
        fixture.addr,
        http::REGISTER_PATH,
        "application/json",
        r#"{"version":2,"worker":"p1","ica":"127.0.0.1:20001","sessions":1,"load":0,"max_sessions":1}"#,
    )
    .await;
    assert_eq!(status, 200);
    fixture.register("p2", "127.0.0.1:20002", 5_000).await;
    let answer = address(&fixture, "alice", "Pool").await;
    assert_eq!(
        element(&answer, "ServerName"),
        "p2",
        "the full v2 worker is skipped"
    );
    let (status, _) = post(
        fixture.addr,
        http::UNREGISTER_PATH,
        "application/json",
        r#"{"version":1,"worker":"p2"}"#,
    )
    .await;
    assert_eq!(status, 200);
    let answer = address(&fixture, "alice", "Pool").await;
    assert!(
        answer.contains("<ErrorId>mfserver-overloaded</ErrorId>"),
        "{answer}"
    );
    fixture.shutdown().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_desktop_assigned_on_first_use_stays_assigned_after_a_restart() {
    let dir = temp_dir("private");
    let fixture = Fixture::start(&dir, 5).await;
    fixture.register("v1", "127.0.0.1:20011", 0).await;
    let answer = address(&fixture, "alice", "Mine").await;
    assert_eq!(element(&answer, "ServerName"), "v1", "{answer}");
    let taken = address(&fixture, "bob", "Mine").await;
    assert!(taken.contains("<ErrorId>no-server</ErrorId>"), "{taken}");
    fixture.shutdown().await;

    let fixture = Fixture::start(&dir, 5).await;
    fixture.register("v1", "127.0.0.1:20011", 0).await;
    let again = address(&fixture, "alice", "Mine").await;
    assert_eq!(element(&again, "ServerName"), "v1", "{again}");
    let taken = address(&fixture, "bob", "Mine").await;
    assert!(taken.contains("<ErrorId>no-server</ErrorId>"), "{taken}");
    fixture.shutdown().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_powered_off_desktop_is_powered_on_and_launched_once_it_registers() {
    let dir = temp_dir("power");
    let fixture = Arc::new(Fixture::start(&dir, 10).await);
    let marker = dir.join("c1.on");
    let registrar = {
        let fixture = fixture.clone();
        tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(10);
            while !marker.exists() {
                assert!(Instant::now() < deadline, "the hook never ran");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            fixture.register("c1", "127.0.0.1:20021", 0).await;
        })
    };
    let answer = address(&fixture, "alice", "Cold").await;
    assert_eq!(
        element(&answer, "ServerAddress"),
        "127.0.0.1:20021",
        "{answer}"
    );
    registrar.await.unwrap();
    Arc::into_inner(fixture).unwrap().shutdown().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_power_on_that_never_registers_gives_up_with_no_server() {
    let dir = temp_dir("dead");
    let fixture = Fixture::start(&dir, 1).await;
    let started = Instant::now();
    let answer = address(&fixture, "alice", "Dead").await;
    assert!(answer.contains("<ErrorId>no-server</ErrorId>"), "{answer}");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(10),
        "{waited:?}"
    );
    fixture.shutdown().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_stops_heartbeating_is_not_chosen_after_the_timeout() {
    let dir = temp_dir("silent");
    let fixture = Fixture::start_with(&dir, 5, 1, None).await;
    fixture.register("p1", "127.0.0.1:20001", 0).await;
    let answer = address(&fixture, "alice", "Pool").await;
    assert_eq!(element(&answer, "ServerName"), "p1", "{answer}");
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    let answer = address(&fixture, "alice", "Pool").await;
    assert!(answer.contains("<ErrorId>no-server</ErrorId>"), "{answer}");
    let (status, _) = post(
        fixture.addr,
        http::HEARTBEAT_PATH,
        "application/json",
        r#"{"version":1,"worker":"p1","sessions":1,"load":10}"#,
    )
    .await;
    assert_eq!(status, 200);
    let answer = address(&fixture, "alice", "Pool").await;
    assert_eq!(
        element(&answer, "ServerName"),
        "p1",
        "a late heartbeat revives it"
    );
    fixture.shutdown().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_power_hook_is_posted_the_worker_and_the_launch_waits_for_it() {
    let dir = temp_dir("hook");
    let hook = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_addr = hook.local_addr().unwrap();
    let fixture = Arc::new(Fixture::start_with(&dir, 10, 30, Some(hook_addr)).await);
    let hypervisor = {
        let fixture = fixture.clone();
        tokio::spawn(async move {
            let (mut stream, _) = hook.accept().await.unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !String::from_utf8_lossy(&request).contains("\"group\"") {
                let n = stream.read(&mut buf).await.unwrap();
                assert!(n > 0, "the hook request ended early");
                request.extend_from_slice(&buf[..n]);
            }
            stream
                .write_all(
                    b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                )
                .await
                .unwrap();
            drop(stream);
            fixture.register("h1", "127.0.0.1:20031", 0).await;
            String::from_utf8(request).unwrap()
        })
    };
    let answer = address(&fixture, "alice", "Warm").await;
    assert_eq!(element(&answer, "ServerName"), "h1", "{answer}");
    let request = hypervisor.await.unwrap();
    assert!(request.starts_with("POST /power HTTP/1.1\r\n"), "{request}");
    assert!(
        request.contains(r#"{"group":"warm","worker":"h1"}"#),
        "{request}"
    );
    Arc::into_inner(fixture).unwrap().shutdown().await;
    std::fs::remove_dir_all(&dir).unwrap();
}
