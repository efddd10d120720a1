//! The launch file's content, the public address, and the store front
//! through the real socket: the list without what a policy denies, the
//! CSRF check, a forged launch refused, a launch answering an `.ica` file
//! whose ticket the STA knows, the JSON list and the AuthService answer.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gatehouse_wire::ica::{IcaFile, read_launch};
use parking_lot::Mutex;
use tokio::sync::watch;

use super::*;
use crate::auth::names::UserName;
use crate::auth::password::Password;
use crate::broker::catalog::{BrokerSection, Catalog};
use crate::broker::registry::Register;
use crate::broker::{BrokerTimings, LocalDirectory};
use crate::policy::{Policies, PolicySection, SharedPolicies};
use crate::sta::{Sta, StaLimits, WorkerAddr};
use crate::web::tests::{header, state};
use crate::web::{bind, router, serve};
use gatehouse_wire::ticket::StaId;

const TICKET: &str = ";40;STA01;ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";

fn ticket() -> StaTicket {
    TICKET.parse().unwrap()
}

fn read(text: &str) -> gatehouse_wire::ica::Launch {
    read_launch(&IcaFile::decode(text).unwrap()).unwrap()
}

#[test]
fn a_launch_file_names_the_ticket_the_gateway_and_the_cgp_port_with_reliability() {
    let ticket = ticket();
    let cgp = CgpAddress::SameHost { port: 2598 };
    let text = ica_text(&LaunchFile {
        resource: "Pool",
        ticket: &ticket,
        gateway: ("gw.example.test", 443),
        cgp: Some(&cgp),
        reliability_ttl: Some(180),
        logon_ticket: Some("0123456789ABCDEF0123456789ABCDEF"),
    })
    .unwrap();
    assert!(text.contains("Address=;40;STA01;"), "{text}");
    assert!(
        text.contains("SSLProxyHost=gw.example.test:443\r\n"),
        "{text}"
    );
    assert!(text.contains("CGPAddress=*:2598\r\n"), "{text}");
    assert!(text.contains("CGPSecurityTicket=On\r\n"), "{text}");
    assert!(text.contains("SessionReliabilityTTL=180\r\n"), "{text}");
    assert!(
        text.contains("LogonTicket=0123456789ABCDEF0123456789ABCDEF\r\nLogonTicketType=CTXS1\r\n"),
        "{text}"
    );
    let launch = read(&text);
    assert_eq!(launch.name, "Pool");
    assert_eq!(launch.ticket, Some(ticket));
    assert_eq!(launch.gateway, Some(("gw.example.test".to_owned(), 443)));
    assert!(launch.ssl_enable);
    assert!(launch.cgp_security_ticket);
}

#[test]
fn a_launch_file_leaves_cgp_out_without_reliability_or_a_cgp_worker() {
    let ticket = ticket();
    let cgp = CgpAddress::Addr(WorkerAddr::decode("10.0.0.7:2599").unwrap());
    for (cgp, ttl) in [(None, Some(180)), (Some(&cgp), None)] {
        let text = ica_text(&LaunchFile {
            resource: "Pool",
            ticket: &ticket,
            gateway: ("[::1]", 8443),
            cgp,
            reliability_ttl: ttl,
            logon_ticket: None,
        })
        .unwrap();
        assert!(!text.contains("CGPAddress"), "{text}");
        assert!(!text.contains("CGPSecurityTicket"), "{text}");
        assert!(!text.contains("SessionReliabilityTTL"), "{text}");
        assert_eq!(read(&text).gateway, Some(("[::1]".to_owned(), 8443)));
    }
    let with = ica_text(&LaunchFile {
        resource: "Pool",
        ticket: &ticket,
        gateway: ("gw", 443),
        cgp: Some(&cgp),
        reliability_ttl: Some(60),
        logon_ticket: None,
    })
    .unwrap();
    assert!(with.contains("CGPAddress=*:2599\r\n"), "{with}");
}

#[test]
fn a_resource_name_the_file_cannot_hold_is_an_error_not_a_file() {
    let ticket = ticket();
    for name in ["WFClient", "evil]\r\n[x", ""] {
        let file = LaunchFile {
            resource: name,
            ticket: &ticket,
            gateway: ("gw", 443),
            cgp: None,
            reliability_ttl: None,
            logon_ticket: None,
        };
        assert!(ica_text(&file).is_err(), "{name:?}");
    }
}

#[test]
fn the_public_address_wins_then_the_host_header_then_the_listen_address() {
    let listen: SocketAddr = "0.0.0.0:8443".parse().unwrap();
    let mut headers = HeaderMap::new();
    let public = ("gw.example.test".to_owned(), 443);
    assert_eq!(gateway_of(Some(&public), listen, &headers), public);
    assert_eq!(
        gateway_of(None, listen, &headers),
        ("0.0.0.0".to_owned(), 8443)
    );
    headers.insert(header::HOST, HeaderValue::from_static("localhost:9443"));
    assert_eq!(
        gateway_of(None, listen, &headers),
        ("localhost".to_owned(), 9443)
    );
    headers.insert(header::HOST, HeaderValue::from_static("gw.example.test"));
    assert_eq!(
        gateway_of(None, listen, &headers),
        ("gw.example.test".to_owned(), 443)
    );
    headers.insert(header::HOST, HeaderValue::from_static("bad host\"x"));
    let v6: SocketAddr = "[::1]:8443".parse().unwrap();
    assert_eq!(gateway_of(None, v6, &headers), ("[::1]".to_owned(), 8443));
}

const CATALOG: &str = r#"
[[groups]]
name = "pool"
kind = "shared"
[[desktops]]
worker = "w-1"
group = "pool"
[[resources]]
name = "Pool"
display = "Pool <Desktop>"
kind = "desktop"
group = "pool"
[[resources]]
name = "Finance"
kind = "desktop"
group = "pool"
"#;

const POLICY: &str = r#"
[[rules]]
name = "no-finance-for-alice"
action = "deny"
resources = ["Finance"]
users = ["alice"]
[[rules]]
name = "everyone"
action = "allow"
resources = ["nothing-matches"]
"#;

struct Store {
    path: PathBuf,
    dir: PathBuf,
    sta: crate::sta::http::SharedSta,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Store {
    async fn start() -> Self {
        let dir = std::env::temp_dir().join(format!(
            "gatehouse-store-{}-{}",
            std::process::id(),
            getrandom::u64().unwrap()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("web.sock");
        let listener = bind(&path).unwrap();
        let (web, users) = state(&dir, crate::login::LoginSection::default()).await;
        users
            .add(
                &UserName::new("alice").unwrap(),
                &Password::new("correct horse".to_owned()).unwrap(),
            )
            .await
            .unwrap();
        let sta = Arc::new(Mutex::new(Sta::new(
            "STA01".parse::<StaId>().unwrap(),
            StaLimits::default(),
            crate::sta::http::os_fill,
        )));
        let section: BrokerSection = toml::from_str(CATALOG).unwrap();
        let policy: PolicySection = toml::from_str(POLICY).unwrap();
        policy.validate().unwrap();
        let broker = Broker::with_policies(
            Catalog::new(section.clone()),
            BrokerTimings::of(&section),
            sta.clone(),
            Arc::new(LocalDirectory(users)),
            None,
            SharedPolicies::new(Policies::new(policy)),
        )
        .await
        .unwrap();
        broker
            .register(&Register {
                version: 1,
                worker: "w-1".to_owned(),
                ica: "127.0.0.1:1494".to_owned(),
                cgp: Some("*:2598".to_owned()),
                ready: true,
                sessions: 0,
                load: 10,
                max_sessions: None,
            })
            .unwrap();
        let gateway = GatewaySection {
            public_address: Some("gw.example.test:443".to_owned()),
            ..GatewaySection::default()
        };
        let web = Arc::try_unwrap(web)
            .unwrap()
            .with_store(StoreFront::new(broker, &gateway));
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(serve(listener, router(Arc::new(web)), stopped));
        Self {
            path,
            dir,
            sta,
            stop,
            task,
        }
    }

    async fn stop(self) {
        self.stop.send(true).unwrap();
        self.task.await.unwrap();
        std::fs::remove_dir_all(&self.dir).unwrap();
    }
}

#[derive(Debug)]
struct Answer {
    status: u16,
    head: String,
    body: String,
}

/// One request over the socket with `jar`'s cookies; stores new cookies.
async fn send(
    path: &Path,
    jar: &mut BTreeMap<String, String>,
    method: &str,
    target: &str,
    body: &str,
    content_type: &str,
) -> Answer {
    let mut request = header(SocketAddr::from(([203, 0, 113, 9], 40_000)), true);
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n");
    if !jar.is_empty() {
        let cookies: Vec<String> = jar.iter().map(|(k, v)| format!("{k}={v}")).collect();
        head.push_str(&format!("Cookie: {}\r\n", cookies.join("; ")));
    }
    if method == "POST" {
        head.push_str(&format!(
            "Content-Type: {content_type}\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    head.push_str("\r\n");
    request.extend_from_slice(head.as_bytes());
    request.extend_from_slice(body.as_bytes());
    let mut stream = tokio::net::UnixStream::connect(path).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stream, &request)
        .await
        .unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(
        Duration::from_secs(10),
        tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut raw),
    )
    .await
    .unwrap()
    .unwrap();
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    for line in head.lines() {
        if let Some(cookie) = line.strip_prefix("set-cookie: ") {
            let (name, value) = cookie.split(';').next().unwrap().split_once('=').unwrap();
            if !value.is_empty() {
                jar.insert(name.to_owned(), value.to_owned());
            }
        }
    }
    Answer {
        status: head[9..12].parse().unwrap(),
        head: head.to_owned(),
        body: body.to_owned(),
    }
}

fn form(fields: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish()
}

const FORM: &str = "application/x-www-form-urlencoded";

#[tokio::test]
async fn the_store_lists_launches_and_refuses_what_a_policy_denies() {
    let store = Store::start().await;
    let mut jar = BTreeMap::new();
    let login = form(&[
        ("login", "alice"),
        ("passwd", "correct horse"),
        ("passwd1", ""),
    ]);
    let answer = send(&store.path, &mut jar, "POST", "/cgi/login", &login, FORM).await;
    assert_eq!(answer.status, 302, "{answer:?}");

    let home = send(&store.path, &mut jar, "GET", "/vpns/home.html", "", FORM).await;
    assert_eq!(home.status, 200);
    assert!(
        home.body.contains("data-resource=\"Pool\""),
        "{}",
        home.body
    );
    assert!(home.body.contains("Pool &lt;Desktop&gt;"), "{}", home.body);
    assert!(
        !home.body.contains("Finance"),
        "denied, not listed: {}",
        home.body
    );

    let list = send(&store.path, &mut jar, "GET", RESOURCES_PATH, "", FORM).await;
    assert_eq!(list.status, 200);
    let list: serde_json::Value = serde_json::from_str(&list.body).unwrap();
    let names: Vec<&str> = list["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Pool"]);
    let csrf = list["csrf"].as_str().unwrap().to_owned();

    let stale = form(&[("csrf", "0"), ("resource", "Pool")]);
    let answer = send(&store.path, &mut jar, "POST", LAUNCH_PATH, &stale, FORM).await;
    assert_eq!(answer.status, 403, "{answer:?}");

    let forged = form(&[("csrf", &csrf), ("resource", "Finance")]);
    let answer = send(&store.path, &mut jar, "POST", LAUNCH_PATH, &forged, FORM).await;
    assert_eq!(answer.status, 403, "{answer:?}");
    assert!(
        answer.body.contains("You may not launch"),
        "{}",
        answer.body
    );
    let unknown = form(&[("csrf", &csrf), ("resource", "Nope")]);
    let answer = send(&store.path, &mut jar, "POST", LAUNCH_PATH, &unknown, FORM).await;
    assert_eq!(answer.status, 403, "{answer:?}");

    let launch = form(&[("csrf", &csrf), ("resource", "Pool")]);
    let answer = send(&store.path, &mut jar, "POST", LAUNCH_PATH, &launch, FORM).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert!(
        answer.head.contains("content-type: application/x-ica"),
        "{}",
        answer.head
    );
    let file = read(&answer.body);
    assert_eq!(file.gateway, Some(("gw.example.test".to_owned(), 443)));
    assert!(file.cgp_security_ticket, "the worker has CGP");
    let ticket = file.ticket.unwrap();
    let redeemed = store.sta.lock().redeem(&ticket, Instant::now());
    assert!(redeemed.is_ok(), "the STA knows the ticket: {redeemed:?}");

    // The AuthService answers the session's SmartAccess filters.
    let session = jar["NSC_AAAC"].clone();
    let soap = format!(
        "<?xml version=\"1.0\"?><soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\">\
<soap:Body><GetAccessInformation xmlns=\"http://citrix.com/authservice/\"><sessionId>{session}</sessionId>\
<username>EXAMPLE\\ALICE</username><domain>EXAMPLE</domain></GetAccessInformation></soap:Body></soap:Envelope>"
    );
    let mut anonymous = BTreeMap::new();
    let answer = send(
        &store.path,
        &mut anonymous,
        "POST",
        crate::web::authservice::PATH,
        &soap,
        "text/xml",
    )
    .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert!(
        answer.body.contains(
            "<Filters><Filter>no-finance-for-alice</Filter><Filter>everyone</Filter></Filters>"
        ),
        "{}",
        answer.body
    );
    let wrong = soap.replace(&session, &"A".repeat(43));
    let answer = send(
        &store.path,
        &mut anonymous,
        "POST",
        crate::web::authservice::PATH,
        &wrong,
        "text/xml",
    )
    .await;
    assert_eq!(answer.status, 403, "{answer:?}");
    assert!(
        answer
            .body
            .contains("<faultstring>unknown session</faultstring>")
    );
    let answer = send(
        &store.path,
        &mut anonymous,
        "POST",
        crate::web::authservice::PATH,
        "<nope/>",
        "text/xml",
    )
    .await;
    assert_eq!(answer.status, 400, "{answer:?}");
    store.stop().await;
}

#[tokio::test]
async fn without_a_session_the_store_sends_to_log_on() {
    let store = Store::start().await;
    let mut jar = BTreeMap::new();
    let answer = send(&store.path, &mut jar, "GET", RESOURCES_PATH, "", FORM).await;
    assert_eq!(answer.status, 401);
    let launch = form(&[("csrf", "x"), ("resource", "Pool")]);
    let answer = send(&store.path, &mut jar, "POST", LAUNCH_PATH, &launch, FORM).await;
    assert_eq!(answer.status, 302);
    assert!(
        answer.head.contains("location: /vpn/index.html"),
        "{}",
        answer.head
    );
    store.stop().await;
}

#[test]
fn the_public_address_must_be_a_host_and_a_port() {
    for good in ["gw.example.test:443", "192.0.2.1:8443", "[2001:db8::1]:443"] {
        let mut config = crate::config::Config::default();
        config.gateway.public_address = Some(good.to_owned());
        assert_eq!(
            config.validate().map_err(|e| e.to_string()),
            Ok(()),
            "{good}"
        );
    }
    for bad in [
        "gw.example.test",
        "gw:0",
        "gw:99999",
        "[::1:443",
        "gw x:443",
        ":443",
    ] {
        let mut config = crate::config::Config::default();
        config.gateway.public_address = Some(bad.to_owned());
        let error = config.validate().unwrap_err().to_string();
        assert!(
            error.starts_with("gateway.public_address"),
            "{bad}: {error}"
        );
    }
}
