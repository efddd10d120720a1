//! User flow: a launch from the store front, end to end (issue 7). The
//! real `gatehouse run` checks passwords against a real OpenLDAP `slapd`
//! ([`gatehouse_tests::slapd`]); `vda-sim` workers register with its broker
//! (`--register`); the user logs in through the gateway's TLS listener with
//! `curl`, lists her resources (`GET /cgi/resources`), launches one
//! (`POST /cgi/launch`), reads the `.ica` file with `gatehouse_wire::ica`
//! and opens a SOCKS5 launch through the same TLS listener with its ticket;
//! the worker answers with its detect string and echoes.
//!
//! - Shared desktops: three workers with different loads; the launch lands
//!   on the least busy one. An access policy denies `Finance` to the
//!   `contractors` group (alice is a member in the directory): it is not
//!   listed, a forged store-front launch and a forged XML broker
//!   `RequestAddress` are refused with `launch_denied`, and the
//!   AuthService answers the rule as a SmartAccess filter. A SIGHUP with
//!   the rule removed makes it listed and launchable.
//! - Private desktops: assigned on first use; after a restart of gatehouse
//!   (stopped by PID, started on the same data directory) the same desktop
//!   again, though the other one is now less busy.
//! - Power-on: a group whose only worker is off; the hook
//!   (`tools/hypervisor-sim/power-on.sh` behind a wrapper that knows the
//!   broker's URL) starts a `vda-sim` that registers, and the launch
//!   completes. That `vda-sim` is stopped by the PID the hook wrote.
//! - A real browser: headless Chromium logs in, sees the desktop list,
//!   clicks the launch button and the downloaded `launch.ica` file's
//!   ticket opens the worker through a SOCKS5 client.
//!
//! Needs the Debian packages `slapd`, `ldap-utils`, `curl`, `chromium` and
//! `chromium-driver`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a failed test"
)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gatehouse_tests::curl::{Answer, Browser};
use gatehouse_tests::gatehouse::{Gatehouse, count};
use gatehouse_tests::slapd::Slapd;
use gatehouse_tests::socks::{self, REPLY_SUCCEEDED};
use gatehouse_tests::temp::TempDir;
use gatehouse_tests::vda_sim::VdaSim;
use gatehouse_tests::webdriver::Chrome;
use gatehouse_tests::{TIMEOUT, bins};
use gatehouse_wire::ica::{IcaFile, Launch, read_launch};

/// Alice is a contractor; bob is not.
const PEOPLE: &str = "\
dn: uid=alice,ou=people,dc=example,dc=test
objectClass: inetOrgPerson
uid: alice
cn: Alice Liddell
sn: Liddell
userPassword: alice-password

dn: uid=bob,ou=people,dc=example,dc=test
objectClass: inetOrgPerson
uid: bob
cn: Bob
sn: Builder
userPassword: bob-password

dn: cn=contractors,ou=groups,dc=example,dc=test
objectClass: groupOfNames
cn: contractors
member: uid=alice,ou=people,dc=example,dc=test
";

const POLICY: &str = r#"
[policy]
[[policy.rules]]
name = "no-finance-for-contractors"
action = "deny"
resources = ["Finance"]
groups = ["contractors"]
"#;

const SHARED: &str = r#"
[broker]
heartbeat_timeout_secs = 30
[[broker.groups]]
name = "pool"
kind = "shared"
[[broker.desktops]]
worker = "pool-busy"
group = "pool"
[[broker.desktops]]
worker = "pool-idle"
group = "pool"
[[broker.desktops]]
worker = "pool-mid"
group = "pool"
[[broker.resources]]
name = "Pool"
display = "Pool Desktop"
kind = "desktop"
group = "pool"
[[broker.resources]]
name = "Finance"
kind = "desktop"
group = "pool"
"#;

/// What the launch tests do with a [`Browser`] beyond plain requests.
trait StoreBrowser {
    fn log_on(&self, gatehouse: &Gatehouse, user: &str, password: &str);
    fn resources(&self, gatehouse: &Gatehouse) -> (Vec<String>, String);
    fn launch(&self, gatehouse: &Gatehouse, csrf: &str, resource: &str) -> Answer;
    fn launch_file(&self, gatehouse: &Gatehouse, csrf: &str, resource: &str) -> Launch;
    fn session(&self) -> String;
}

impl StoreBrowser for Browser {
    fn log_on(&self, gatehouse: &Gatehouse, user: &str, password: &str) {
        let answer = self.request(
            gatehouse,
            "/cgi/login",
            &[("login", user), ("passwd", password), ("passwd1", "")],
            None,
        );
        assert_eq!(answer.status, 302, "{answer:?}");
        assert!(answer.head.contains("NSC_AAAC="), "{answer:?}");
    }

    /// `GET /cgi/resources`: the names listed and the CSRF token.
    fn resources(&self, gatehouse: &Gatehouse) -> (Vec<String>, String) {
        let answer = self.request(gatehouse, "/cgi/resources", &[], None);
        assert_eq!(answer.status, 200, "{answer:?}");
        let json: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
        let names = json["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap().to_owned())
            .collect();
        (names, json["csrf"].as_str().unwrap().to_owned())
    }

    fn launch(&self, gatehouse: &Gatehouse, csrf: &str, resource: &str) -> Answer {
        self.request(
            gatehouse,
            "/cgi/launch",
            &[("csrf", csrf), ("resource", resource)],
            None,
        )
    }

    /// Launches `resource` and reads the `.ica` file.
    fn launch_file(&self, gatehouse: &Gatehouse, csrf: &str, resource: &str) -> Launch {
        let answer = self.launch(gatehouse, csrf, resource);
        assert_eq!(answer.status, 200, "{answer:?}");
        assert!(
            answer.head.contains("content-type: application/x-ica"),
            "{answer:?}"
        );
        let launch = read_launch(&IcaFile::decode(&answer.body).unwrap()).unwrap();
        assert_eq!(launch.name, resource);
        assert!(launch.ssl_enable);
        let port = gatehouse.gateway().port();
        assert_eq!(launch.gateway, Some(("localhost".to_owned(), port)));
        launch
    }

    /// The session cookie's value.
    fn session(&self) -> String {
        let jar = std::fs::read_to_string(self.jar()).unwrap();
        jar.lines()
            .find_map(|line| {
                let fields: Vec<&str> = line.split('\t').collect();
                (fields.len() == 7 && fields[5] == "NSC_AAAC").then(|| fields[6].to_owned())
            })
            .unwrap_or_else(|| panic!("no session cookie in {jar}"))
    }
}

/// Opens a SOCKS5 launch through the gateway's TLS listener with the
/// ticket of `launch`; asserts the worker speaks first and echoes; the
/// session stays open while the answer lives.
fn connect_through_gateway(gatehouse: &Gatehouse, launch: &Launch) -> socks::TlsStream {
    let ticket = launch.ticket.as_ref().expect("the address is a ticket");
    let mut stream = socks::connect_tls(gatehouse.gateway(), &gatehouse.tls_client());
    assert_eq!(
        socks::launch(&mut stream, &ticket.to_text()),
        REPLY_SUCCEEDED
    );
    socks::expect_detect_and_echo(&mut stream, b"hello from the store front");
    stream
}

/// The `worker` field of the last `launch` event for `resource`.
fn launched_on(gatehouse: &mut Gatehouse, resource: &str) -> String {
    let event = gatehouse.wait_for_event("launch", &[("resource", resource)]);
    event.field("worker").unwrap().to_owned()
}

/// Waits (bounded) until the broker lists `names` as available.
fn wait_for_workers(admin: SocketAddr, names: &[&str]) {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let (status, body) = http(admin, "GET", "/broker/v1/workers", "");
        assert_eq!(status, 200, "{body}");
        let list: serde_json::Value = serde_json::from_str(&body).unwrap();
        let available =
            |name: &&str| {
                list["workers"].as_array().unwrap().iter().any(|w| {
                    w["worker"] == **name && w["available"] == serde_json::Value::Bool(true)
                })
            };
        if names.iter().all(available) {
            return;
        }
        assert!(Instant::now() < deadline, "workers {names:?}: {list}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn http(admin: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    gatehouse_tests::http::request(admin, method, path, "", body)
}

#[test]
fn a_shared_desktop_launches_on_the_least_busy_worker_and_a_denied_one_never() {
    let slapd = Slapd::start(PEOPLE);
    let mut gatehouse =
        Gatehouse::start(&format!("{}{SHARED}{POLICY}", slapd.gatehouse_ldap_table()));
    let admin = gatehouse.admin();
    let busy = VdaSim::start_registered(admin, "pool-busy", 7_000);
    let idle = VdaSim::start_registered(admin, "pool-idle", 100);
    let mid = VdaSim::start_registered(admin, "pool-mid", 4_000);
    wait_for_workers(admin, &["pool-busy", "pool-idle", "pool-mid"]);

    let alice = Browser::new();
    alice.log_on(&gatehouse, "alice", "alice-password");
    let home = alice.request(&gatehouse, "/vpns/home.html", &[], None);
    assert!(home.body.contains("data-resource=\"Pool\""), "{home:?}");
    assert!(!home.body.contains("Finance"), "{home:?}");
    let (names, csrf) = alice.resources(&gatehouse);
    assert_eq!(names, ["Pool"], "Finance is denied to contractors");

    let launch = alice.launch_file(&gatehouse, &csrf, "Pool");
    assert!(launch.cgp_security_ticket, "session reliability is on");
    assert_eq!(
        launch.cgp_address.as_deref(),
        Some(format!("*:{}", idle.cgp().port()).as_str())
    );
    let mut running = connect_through_gateway(&gatehouse, &launch);
    assert_eq!(launched_on(&mut gatehouse, "Pool"), "pool-idle");
    let idle_ica = idle.ica().to_string();
    gatehouse.wait_for_event("ticket_redeemed", &[("worker", &idle_ica)]);
    // The worker learns who logs on from the file's logon ticket, once.
    let logon = launch
        .logon_ticket
        .clone()
        .expect("a LogonTicket in the file");
    let body = format!(r#"{{"version":1,"worker":"pool-idle","ticket":"{logon}"}}"#);
    let (status, answer) = http(admin, "POST", "/broker/v1/logon", &body);
    assert_eq!(status, 200, "{answer}");
    assert!(answer.contains(r#""user":"alice""#), "{answer}");
    let (status, _) = http(admin, "POST", "/broker/v1/logon", &body);
    assert_eq!(status, 404, "a logon ticket is single-use");

    // Forged: the denied resource through the store front and the XML broker.
    let forged = alice.launch(&gatehouse, &csrf, "Finance");
    assert_eq!(forged.status, 403, "{forged:?}");
    assert!(
        !forged.body.contains("contractors"),
        "no internals: {forged:?}"
    );
    gatehouse.wait_for_event(
        "launch_denied",
        &[
            ("user", "alice"),
            ("resource", "Finance"),
            ("rule", "no-finance-for-contractors"),
        ],
    );
    let (_, answer) = http(
        admin,
        "POST",
        "/scripts/wpnbr.dll",
        r#"<?xml version="1.0" encoding="utf-8"?><!DOCTYPE NFuseProtocol SYSTEM "NFuse.dtd"><NFuseProtocol version="5.1"><RequestAddress><Name><AppName>Finance</AppName></Name><ClientName>WKS</ClientName><ClientAddress addresstype="dot">127.0.0.1</ClientAddress><ServerAddress addresstype="dot-port" /><Flags /><Credentials><UserName>alice</UserName><Password encoding="cleartext">alice-password</Password><Domain type="NT">EXAMPLE</Domain></Credentials></RequestAddress></NFuseProtocol>"#,
    );
    assert!(answer.contains("no-server"), "{answer}");
    let (_, answer) = http(
        admin,
        "POST",
        "/scripts/wpnbr.dll",
        r#"<?xml version="1.0" encoding="utf-8"?><NFuseProtocol version="5.1"><RequestAppData><Scope traverse="subtree" /><DesiredDetails>defaults</DesiredDetails><ServerType>all</ServerType><ClientType>ica30</ClientType><Credentials><UserName>alice</UserName><Password encoding="cleartext">alice-password</Password><Domain type="NT">EXAMPLE</Domain></Credentials></RequestAppData></NFuseProtocol>"#,
    );
    assert!(answer.contains("<InName>Pool</InName>"), "{answer}");
    assert!(!answer.contains("Finance"), "{answer}");

    // The store's SSO callback names the rule as a SmartAccess filter.
    let soap = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><soap:Envelope \
         xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\"><soap:Body>\
         <GetAccessInformation><sessionId>{}</sessionId><username>alice</username>\
         <domain>EXAMPLE</domain></GetAccessInformation></soap:Body></soap:Envelope>",
        alice.session()
    );
    let store = Browser::new();
    let access = store.request(
        &gatehouse,
        "/CitrixAuthService/AuthService.asmx",
        &[],
        Some(&soap),
    );
    assert_eq!(access.status, 200, "{access:?}");
    assert!(
        access
            .body
            .contains("<Filter>no-finance-for-contractors</Filter>"),
        "{access:?}"
    );

    // Bob is no contractor: Finance is his.
    let bob = Browser::new();
    bob.log_on(&gatehouse, "bob", "bob-password");
    assert_eq!(bob.resources(&gatehouse).0, ["Pool", "Finance"]);

    // SIGHUP without the rule: new launches see the new policies, and the
    // session launched before keeps flowing.
    let config = gatehouse.config_path();
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace(POLICY, "")).unwrap();
    gatehouse.signal(rustix::process::Signal::HUP);
    gatehouse.wait_for_event("config_reloaded", &[]);
    assert_eq!(alice.resources(&gatehouse).0, ["Pool", "Finance"]);
    let finance = alice.launch_file(&gatehouse, &csrf, "Finance");
    drop(connect_through_gateway(&gatehouse, &finance));
    {
        use std::io::{Read, Write};
        running.write_all(b"still here").unwrap();
        let mut echoed = [0u8; 10];
        running.read_exact(&mut echoed).unwrap();
        assert_eq!(&echoed, b"still here", "the earlier session kept flowing");
    }
    drop(running);

    let events = gatehouse.stop();
    let reloaded = events
        .iter()
        .find(|e| e.message() == "config_reloaded")
        .unwrap();
    assert_eq!(reloaded.json["fields"]["policies_replaced"], true);
    assert_eq!(count(&events, "launch", &[("user", "alice")]), 2);
    assert_eq!(count(&events, "launch_denied", &[("user", "alice")]), 2);
    for sim in [busy, idle, mid] {
        sim.stop();
    }
    slapd.stop();
}

/// A process started by the power hook, known by the PID file it wrote;
/// SIGTERM (then SIGKILL) by that PID when dropped.
struct PidFile(PathBuf);

impl Drop for PidFile {
    fn drop(&mut self) {
        let Some(pid) = std::fs::read_to_string(&self.0)
            .ok()
            .and_then(|text| text.trim().parse::<i32>().ok())
            .and_then(rustix::process::Pid::from_raw)
        else {
            return;
        };
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        let deadline = Instant::now() + TIMEOUT;
        // Gone, or a zombie waiting for whoever reaps orphans.
        let running = || {
            rustix::process::test_kill_process(pid).is_ok()
                && !std::fs::read_to_string(format!("/proc/{}/stat", pid.as_raw_nonzero()))
                    .is_ok_and(|stat| stat.contains(") Z "))
        };
        while running() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
}

fn private_config(hook: &Path) -> String {
    format!(
        r#"
[broker]
heartbeat_timeout_secs = 30
power_on_timeout_secs = 20
[[broker.groups]]
name = "vdi"
kind = "private"
assign_on_first_use = true
[[broker.groups]]
name = "cold"
kind = "shared"
power_on_command = ["/bin/sh", "{}", "{{worker}}"]
[[broker.desktops]]
worker = "vdi-1"
group = "vdi"
[[broker.desktops]]
worker = "vdi-2"
group = "vdi"
[[broker.desktops]]
worker = "cold-1"
group = "cold"
[[broker.resources]]
name = "Private"
kind = "desktop"
group = "vdi"
[[broker.resources]]
name = "Cold"
kind = "desktop"
group = "cold"
"#,
        hook.display()
    )
}

#[test]
fn a_private_desktop_stays_assigned_across_a_restart_and_a_cold_one_is_powered_on() {
    let slapd = Slapd::start(PEOPLE);
    // The hook wrapper: the broker's URL is known only once gatehouse runs.
    let hypervisor = TempDir::new("hypervisor");
    let url_file = hypervisor.path().join("broker-url");
    let state = hypervisor.path().join("state");
    let power_on =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tools/hypervisor-sim/power-on.sh");
    let hook = hypervisor.path().join("hook.sh");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\nexec /bin/sh '{}' \"$1\" \"$(cat '{}')\" '{}' '{}'\n",
            power_on.display(),
            url_file.display(),
            state.display(),
            bins::vda_sim().display()
        ),
    )
    .unwrap();
    let cold_pid = PidFile(state.join("cold-1.pid"));

    let mut gatehouse = Gatehouse::start(&format!(
        "{}{}",
        slapd.gatehouse_ldap_table(),
        private_config(&hook)
    ));
    let vdi1 = VdaSim::start_registered(gatehouse.admin(), "vdi-1", 5_000);
    let vdi2 = VdaSim::start_registered(gatehouse.admin(), "vdi-2", 100);
    wait_for_workers(gatehouse.admin(), &["vdi-1", "vdi-2"]);
    let alice = Browser::new();
    alice.log_on(&gatehouse, "alice", "alice-password");
    let (names, csrf) = alice.resources(&gatehouse);
    assert_eq!(names, ["Private", "Cold"]);
    let launch = alice.launch_file(&gatehouse, &csrf, "Private");
    connect_through_gateway(&gatehouse, &launch);
    // Logged in this order: the assignment, then the launch.
    gatehouse.wait_for_event(
        "desktop_assigned",
        &[("desktop", "vdi-2"), ("user", "alice")],
    );
    assert_eq!(
        launched_on(&mut gatehouse, "Private"),
        "vdi-2",
        "least busy free one"
    );

    // Restart on the same data directory; the workers come back with the
    // loads swapped, so only the stored assignment picks vdi-2 again.
    let (_, dir) = gatehouse.stop_keeping_data();
    vdi1.stop();
    vdi2.stop();
    let mut gatehouse = Gatehouse::restart_in(dir);
    let admin = gatehouse.admin();
    let vdi1 = VdaSim::start_registered(admin, "vdi-1", 100);
    let vdi2 = VdaSim::start_registered(admin, "vdi-2", 5_000);
    wait_for_workers(admin, &["vdi-1", "vdi-2"]);
    let (names, csrf) = alice.resources(&gatehouse);
    assert_eq!(
        names,
        ["Private", "Cold"],
        "the session survived the restart"
    );
    let launch = alice.launch_file(&gatehouse, &csrf, "Private");
    connect_through_gateway(&gatehouse, &launch);
    assert_eq!(
        launched_on(&mut gatehouse, "Private"),
        "vdi-2",
        "the same desktop"
    );
    let vdi2_ica = vdi2.ica().to_string();
    gatehouse.wait_for_event("ticket_redeemed", &[("worker", &vdi2_ica)]);

    // Bob gets the other one.
    let bob = Browser::new();
    bob.log_on(&gatehouse, "bob", "bob-password");
    let (_, bob_csrf) = bob.resources(&gatehouse);
    let launch = bob.launch_file(&gatehouse, &bob_csrf, "Private");
    connect_through_gateway(&gatehouse, &launch);
    assert_eq!(launched_on(&mut gatehouse, "Private"), "vdi-1");

    // Only an administrator undoes an assignment: through the REST API.
    let token = gatehouse.admin_api_token("launch-test");
    let (status, body) = gatehouse.api(&token, "GET", "/api/v1/first-use-assignments");
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains(r#"{"desktop":"vdi-1","users":["bob"]}"#),
        "{body}"
    );
    assert!(
        body.contains(r#"{"desktop":"vdi-2","users":["alice"]}"#),
        "{body}"
    );
    let (status, body) = gatehouse.api(&token, "DELETE", "/api/v1/first-use-assignments/vdi-1/bob");
    assert_eq!(status, 200, "{body}");
    let (_, body) = gatehouse.api(&token, "GET", "/api/v1/first-use-assignments");
    assert!(!body.contains("bob"), "{body}");
    gatehouse.wait_for_event(
        "desktop_unassigned",
        &[("desktop", "vdi-1"), ("user", "bob")],
    );

    // Cold: nothing runs; the hook powers cold-1 on, it registers, the
    // launch completes in the same request.
    std::fs::write(&url_file, format!("http://{admin}")).unwrap();
    let launch = alice.launch_file(&gatehouse, &csrf, "Cold");
    connect_through_gateway(&gatehouse, &launch);
    assert_eq!(launched_on(&mut gatehouse, "Cold"), "cold-1");
    let events = gatehouse.stop();
    assert_eq!(
        count(&events, "power_on_requested", &[("worker", "cold-1")]),
        1
    );
    assert_eq!(
        count(&events, "power_on_completed", &[("worker", "cold-1")]),
        1
    );
    drop(cold_pid);
    vdi1.stop();
    vdi2.stop();
    slapd.stop();
}

#[test]
fn chromium_logs_on_sees_its_desktops_and_downloads_an_ica_file_whose_ticket_opens_the_worker() {
    let slapd = Slapd::start(PEOPLE);
    let mut gatehouse =
        Gatehouse::start(&format!("{}{SHARED}{POLICY}", slapd.gatehouse_ldap_table()));
    let worker = VdaSim::start_registered(gatehouse.admin(), "pool-idle", 0);
    wait_for_workers(gatehouse.admin(), &["pool-idle"]);
    let downloads = TempDir::new("downloads");
    let chrome = Chrome::start_downloading(&gatehouse.certificate(), downloads.path());
    chrome.goto(&format!("https://{}/", gatehouse.gateway()));
    chrome.wait_until("the login page", TIMEOUT, |_, html| {
        html.contains("action=\"/cgi/login\"")
    });
    chrome.type_into("#login", "alice");
    chrome.type_into("#passwd", "alice-password");
    chrome.click("button[type=submit]");
    let (_, html) = chrome.wait_until("the home page", TIMEOUT, |url, _| {
        url.ends_with("/vpns/home.html")
    });
    assert!(html.contains("Pool Desktop"), "{html}");
    assert!(!html.contains("Finance"), "denied to contractors: {html}");

    chrome.click("button[data-resource=\"Pool\"]");
    let file = downloads.path().join("launch.ica");
    let deadline = Instant::now() + TIMEOUT;
    while !file.is_file() {
        assert!(
            Instant::now() < deadline,
            "no launch.ica downloaded: {:?}",
            std::fs::read_dir(downloads.path())
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let text = std::fs::read_to_string(&file).unwrap();
    let launch = read_launch(&IcaFile::decode(&text).unwrap()).unwrap();
    assert_eq!(
        launch.gateway,
        Some(("127.0.0.1".to_owned(), gatehouse.gateway().port()))
    );
    connect_through_gateway(&gatehouse, &launch);
    assert_eq!(launched_on(&mut gatehouse, "Pool"), "pool-idle");
    drop(chrome);
    gatehouse.stop();
    worker.stop();
    slapd.stop();
}
