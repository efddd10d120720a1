//! User flow: log on to the gateway's web side with the real `gatehouse
//! run`, through the TLS gateway listener, with the real `curl` keeping
//! cookies in a jar: the local user directory (`gatehouse user add`), a
//! TOTP code from the real `oathtool`, lockout, logout, and a session that
//! outlives a restart of the gateway.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a failed test"
)]

use std::process::{Command, Stdio};

use gatehouse_tests::curl::{Answer, Browser};
use gatehouse_tests::gatehouse::{Gatehouse, count};

/// What the login tests do with a [`Browser`] beyond plain requests.
trait LoginBrowser {
    fn log_on(&self, gatehouse: &Gatehouse, login: &str, password: &str) -> Answer;
    fn download(&self, gatehouse: &Gatehouse, path: &str, file: &std::path::Path);
}

impl LoginBrowser for Browser {
    fn log_on(&self, gatehouse: &Gatehouse, login: &str, password: &str) -> Answer {
        self.post(
            gatehouse,
            "/cgi/login",
            &[("login", login), ("passwd", password), ("passwd1", "")],
        )
    }

    /// Saves the body of `GET path` (binary) to `file`.
    fn download(&self, gatehouse: &Gatehouse, path: &str, file: &std::path::Path) {
        let port = gatehouse.gateway().port();
        let output = Command::new("curl")
            .args(["--silent", "--show-error", "--fail", "--max-time", "20"])
            .arg("--cacert")
            .arg(gatehouse.certificate())
            .args(["--resolve", &format!("localhost:{port}:127.0.0.1")])
            .arg("--cookie")
            .arg(self.jar())
            .arg("--output")
            .arg(file)
            .arg(format!("https://localhost:{port}{path}"))
            .stdin(Stdio::null())
            .output()
            .expect("curl runs");
        assert!(
            output.status.success(),
            "curl {path}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

fn add_user(gatehouse: &Gatehouse, name: &str, password: &str) {
    let (code, _) = gatehouse.user_command(&["add", name], &format!("{password}\n"));
    assert_eq!(code, Some(0), "gatehouse user add {name}");
}

/// Follows the redirects of a successful login to the home page.
fn follow_to_home(gatehouse: &Gatehouse, browser: &Browser, login: &Answer) -> Answer {
    assert_eq!(login.status, 302, "{login:?}");
    assert_eq!(login.location(), Some("/cgi/setclient?cvpn"));
    let setclient = browser.get(gatehouse, "/cgi/setclient?cvpn");
    assert_eq!(
        setclient.location(),
        Some("/vpns/cvpnpage.html"),
        "{setclient:?}"
    );
    let portal = browser.get(gatehouse, "/vpns/cvpnpage.html");
    assert_eq!(portal.location(), Some("/vpns/home.html"), "{portal:?}");
    browser.get(gatehouse, "/vpns/home.html")
}

fn oathtool(secret: &str) -> String {
    let output = Command::new("oathtool")
        .args(["--totp", "--base32", secret])
        .stdin(Stdio::null())
        .output()
        .expect("oathtool runs (.ci/run installs oathtool)");
    assert!(output.status.success());
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

#[test]
fn a_local_user_logs_on_with_a_password_reaches_the_home_page_and_logs_off() {
    let mut gatehouse = Gatehouse::start("");
    add_user(&gatehouse, "alice", "correct horse battery");
    let browser = Browser::new();
    let login = browser.log_on(&gatehouse, "alice", "correct horse battery");
    assert!(browser.has_cookie("NSC_AAAC"), "{login:?}");
    let cookie = login
        .head
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie: nsc_aaac="))
        .unwrap();
    for attribute in ["HttpOnly", "Secure", "SameSite=Strict"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    let home = follow_to_home(&gatehouse, &browser, &login);
    assert_eq!(home.status, 200, "{home:?}");
    assert!(
        home.body.contains("<span id=\"user\">alice</span>"),
        "{home:?}"
    );
    let event = gatehouse.wait_for_event("login", &[("user", "alice"), ("outcome", "success")]);
    assert_eq!(event.field("factor"), Some("password"));
    assert!(event.field("peer").unwrap().starts_with("127.0.0.1:"));

    let logout = browser.get(&gatehouse, "/cgi/logout");
    assert!(logout.body.contains("You are logged off"), "{logout:?}");
    assert!(!browser.has_cookie("NSC_AAAC"));
    let home = browser.get(&gatehouse, "/vpns/home.html");
    assert_eq!(home.location(), Some("/vpn/index.html"), "{home:?}");
    gatehouse.stop();
}

#[test]
fn a_wrong_password_is_answered_with_4001_and_the_login_page() {
    let mut gatehouse = Gatehouse::start("");
    add_user(&gatehouse, "alice", "correct horse battery");
    let browser = Browser::new();
    let answer = browser.log_on(&gatehouse, "alice", "wrong");
    assert_eq!(answer.status, 200);
    assert!(browser.has_cookie("NSC_VPNERR"), "{answer:?}");
    assert!(answer.head.contains("NSC_VPNERR=4001"), "{answer:?}");
    assert!(
        answer.body.contains("Incorrect user name or password"),
        "{answer:?}"
    );
    assert!(answer.body.contains("action=\"/cgi/login\""));
    assert!(!browser.has_cookie("NSC_AAAC"));
    gatehouse.wait_for_event(
        "login",
        &[
            ("user", "alice"),
            ("outcome", "failure"),
            ("reason", "bad_credentials"),
        ],
    );
    gatehouse.stop();
}

#[test]
fn password_and_an_oathtool_code_log_on_once_and_the_same_code_is_refused() {
    let gatehouse = Gatehouse::start("[login]\nschema = \"password+otp\"\n");
    add_user(&gatehouse, "alice", "correct horse battery");
    let (code, uri) = gatehouse.user_command(&["otp", "add", "alice", "phone"], "");
    assert_eq!(code, Some(0));
    let secret = uri
        .trim()
        .split(['?', '&'])
        .find_map(|part| part.strip_prefix("secret="))
        .unwrap_or_else(|| panic!("a secret in {uri}"))
        .to_owned();

    let browser = Browser::new();
    let challenge = browser.log_on(&gatehouse, "alice", "correct horse battery");
    assert_eq!(challenge.status, 200, "{challenge:?}");
    assert!(
        challenge
            .body
            .contains("Enter the code from your authenticator"),
        "{challenge:?}"
    );
    let otp = oathtool(&secret);
    let login = browser.post(&gatehouse, "/cgi/dlge", &[("response", &otp)]);
    let home = follow_to_home(&gatehouse, &browser, &login);
    assert_eq!(home.status, 200, "{home:?}");

    let again = Browser::new();
    again.log_on(&gatehouse, "alice", "correct horse battery");
    let replay = again.post(&gatehouse, "/cgi/dlge", &[("response", &otp)]);
    assert_eq!(replay.status, 200);
    assert!(replay.body.contains("already used"), "{replay:?}");
    assert!(!again.has_cookie("NSC_AAAC"));
    let events = gatehouse.stop();
    assert_eq!(
        count(
            &events,
            "login",
            &[("factor", "otp"), ("outcome", "success")]
        ),
        1
    );
    assert_eq!(count(&events, "login", &[("reason", "replayed_code")]), 1);
}

#[test]
fn a_user_name_is_locked_after_repeated_failures() {
    let gatehouse = Gatehouse::start("[login]\nuser_max_failures = 3\n");
    add_user(&gatehouse, "alice", "correct horse battery");
    let browser = Browser::new();
    let mut bodies = Vec::new();
    for _ in 0..3 {
        bodies.push(browser.log_on(&gatehouse, "alice", "wrong").body);
    }
    let locked = browser.log_on(&gatehouse, "alice", "correct horse battery");
    assert_eq!(locked.status, 200);
    assert_eq!(locked.body, bodies[0], "the same page as a wrong password");
    assert!(!browser.has_cookie("NSC_AAAC"));
    let events = gatehouse.stop();
    assert_eq!(count(&events, "login", &[("reason", "user_locked")]), 1);
}

#[test]
fn a_session_outlives_a_restart_of_the_gateway() {
    let gatehouse = Gatehouse::start("");
    add_user(&gatehouse, "alice", "correct horse battery");
    let browser = Browser::new();
    let login = browser.log_on(&gatehouse, "alice", "correct horse battery");
    assert_eq!(login.status, 302, "{login:?}");
    let (_, dir) = gatehouse.stop_keeping_data();
    let gatehouse = Gatehouse::restart_in(dir);
    let home = browser.get(&gatehouse, "/vpns/home.html");
    assert_eq!(home.status, 200, "{home:?}");
    assert!(home.body.contains("alice"));
    browser.get(&gatehouse, "/cgi/logout");
    let home = browser.get(&gatehouse, "/vpns/home.html");
    assert_eq!(home.location(), Some("/vpn/index.html"));
    gatehouse.stop();
}

fn between<'a>(text: &'a str, start: &str, end: &str) -> &'a str {
    let from = text
        .find(start)
        .unwrap_or_else(|| panic!("{start} in {text}"))
        + start.len();
    let len = text[from..].find(end).unwrap();
    &text[from..from + len]
}

#[test]
fn a_device_registered_at_manageotp_by_its_qr_code_logs_on_with_oathtool() {
    let gatehouse = Gatehouse::start("[login]\nschema = \"password+otp\"\n");
    add_user(&gatehouse, "alice", "correct horse battery");
    // No device yet: a session that may only register one.
    let browser = Browser::new();
    let login = browser.log_on(&gatehouse, "alice", "correct horse battery");
    let home = follow_to_home(&gatehouse, &browser, &login);
    assert!(home.body.contains("Register an authenticator"), "{home:?}");
    let manage = browser.get(&gatehouse, "/manageotp");
    let csrf = between(&manage.body, "name=\"csrf\" value=\"", "\"").to_owned();
    let added = browser.post(
        &gatehouse,
        "/manageotp/add",
        &[("csrf", &csrf), ("device", "phone")],
    );
    assert_eq!(added.status, 200, "{added:?}");
    let qr = between(&added.body, "<img id=\"qr\" src=\"", "\"").to_owned();
    let shown = between(&added.body, "<code id=\"uri\">", "</code>").replace("&amp;", "&");
    let png = browser.dir().join("qr.png");
    browser.download(&gatehouse, &qr, &png);
    let output = Command::new("zbarimg")
        .args(["--quiet", "--raw"])
        .arg(&png)
        .stdin(Stdio::null())
        .output()
        .expect("zbarimg runs (.ci/run installs zbar-tools)");
    assert!(output.status.success(), "zbarimg decodes the QR code");
    let decoded = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    assert_eq!(decoded, shown, "the QR code carries the URI shown");
    assert!(decoded.starts_with("otpauth://totp/"), "{decoded}");
    let secret = decoded
        .split(['?', '&'])
        .find_map(|part| part.strip_prefix("secret="))
        .unwrap()
        .to_owned();
    browser.get(&gatehouse, "/cgi/logout");

    let challenge = browser.log_on(&gatehouse, "alice", "correct horse battery");
    assert!(
        challenge
            .body
            .contains("Enter the code from your authenticator")
    );
    let login = browser.post(&gatehouse, "/cgi/dlge", &[("response", &oathtool(&secret))]);
    let home = follow_to_home(&gatehouse, &browser, &login);
    assert!(home.body.contains("Your applications"), "{home:?}");
    gatehouse.stop();
}
