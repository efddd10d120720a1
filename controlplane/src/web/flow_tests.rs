//! The login flow and `/manageotp` through the real socket: PROXY header,
//! hyper, the router, the store; a small client with a cookie jar.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

use super::tests::{header, state};
use super::*;
use crate::auth::local::LocalUsers;
use crate::auth::names::UserName;
use crate::auth::otpauth::OtpauthUri;
use crate::auth::password::Password;
use crate::auth::totp::{self, TotpParams};
use crate::login::{LoginSchema, LoginSection};

struct Server {
    path: PathBuf,
    dir: PathBuf,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    users: LocalUsers,
}

impl Server {
    async fn start(section: LoginSection) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "gatehouse-flow-{}-{}",
            std::process::id(),
            getrandom::u64().unwrap()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self::start_in(dir, section).await
    }

    async fn start_in(dir: PathBuf, section: LoginSection) -> Self {
        let path = dir.join("web.sock");
        let listener = bind(&path).unwrap();
        let (state, users) = state(&dir, section).await;
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(serve(listener, router(state), stopped));
        Self {
            path,
            dir,
            stop,
            task,
            users,
        }
    }

    async fn add_user(&self, name: &str, password: &str) {
        self.users
            .add(
                &UserName::new(name).unwrap(),
                &Password::new(password.to_owned()).unwrap(),
            )
            .await
            .unwrap();
    }

    fn client(&self, last: u8) -> Client {
        Client {
            path: self.path.clone(),
            peer: SocketAddr::from(([198, 51, 100, last], 50_000)),
            jar: BTreeMap::new(),
        }
    }

    async fn stop(self) -> PathBuf {
        self.stop.send(true).unwrap();
        self.task.await.unwrap();
        self.dir
    }
}

#[derive(Debug)]
struct Answer {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Answer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn location(&self) -> Option<&str> {
        self.head
            .lines()
            .find_map(|line| line.strip_prefix("location: "))
    }

    fn set_cookies(&self) -> Vec<&str> {
        self.head
            .lines()
            .filter_map(|line| line.strip_prefix("set-cookie: "))
            .collect()
    }
}

struct Client {
    path: PathBuf,
    peer: SocketAddr,
    jar: BTreeMap<String, String>,
}

impl Client {
    async fn get(&mut self, path: &str) -> Answer {
        self.send("GET", path, None).await
    }

    async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Answer {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        self.send("POST", path, Some(body)).await
    }

    async fn send(&mut self, method: &str, path: &str, body: Option<String>) -> Answer {
        let mut request = header(self.peer, true);
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n");
        if !self.jar.is_empty() {
            let cookies: Vec<String> = self.jar.iter().map(|(k, v)| format!("{k}={v}")).collect();
            head.push_str(&format!("Cookie: {}\r\n", cookies.join("; ")));
        }
        let body = body.unwrap_or_default();
        if method == "POST" {
            head.push_str(&format!(
                "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        head.push_str("\r\n");
        request.extend_from_slice(head.as_bytes());
        request.extend_from_slice(body.as_bytes());
        let raw = exchange_bytes(&self.path, &request).await;
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("no head in {:?}", String::from_utf8_lossy(&raw)));
        let head = String::from_utf8_lossy(&raw[..split]).into_owned();
        let status = head[9..12].parse().unwrap();
        let answer = Answer {
            status,
            head,
            body: raw[split + 4..].to_vec(),
        };
        for cookie in answer.set_cookies() {
            let pair = cookie.split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            if value.is_empty() || cookie.contains("Max-Age=0") {
                self.jar.remove(name);
            } else {
                self.jar.insert(name.to_owned(), value.to_owned());
            }
        }
        answer
    }

    async fn log_on(&mut self, login: &str, password: &str) -> Answer {
        self.post(
            "/cgi/login",
            &[("login", login), ("passwd", password), ("passwd1", "")],
        )
        .await
    }
}

async fn exchange_bytes(path: &Path, bytes: &[u8]) -> Vec<u8> {
    use tokio::io::AsyncWriteExt;
    let mut stream = UnixStream::connect(path).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .unwrap()
        .unwrap();
    answer
}

fn code_now(uri: &str) -> String {
    let uri = OtpauthUri::parse(uri).unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    format!(
        "{:06}",
        totp::code_at(&uri.secret, now, TotpParams::GATEWAY).value()
    )
}

fn between<'a>(text: &'a str, start: &str, end: &str) -> &'a str {
    let from = text
        .find(start)
        .unwrap_or_else(|| panic!("{start} in {text}"))
        + start.len();
    let len = text[from..].find(end).unwrap();
    &text[from..from + len]
}

fn otp() -> LoginSection {
    LoginSection {
        schema: LoginSchema::PasswordOtp,
        ..LoginSection::default()
    }
}

#[tokio::test]
async fn a_password_login_sets_a_protected_cookie_and_reaches_the_home_page() {
    let server = Server::start(LoginSection::default()).await;
    server.add_user("alice", "correct horse").await;
    let mut client = server.client(1);
    let answer = client.log_on("alice", "correct horse").await;
    assert_eq!(answer.status, 302, "{answer:?}");
    assert_eq!(answer.location(), Some("/cgi/setclient?cvpn"));
    let cookie = answer
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("NSC_AAAC="))
        .unwrap()
        .to_owned();
    for attribute in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    assert_eq!(client.jar["NSC_AAAC"].len(), 43, "256 bits in base64url");
    let answer = client.get("/cgi/setclient?cvpn").await;
    assert_eq!(answer.location(), Some("/vpns/cvpnpage.html"));
    let answer = client.get("/vpns/cvpnpage.html").await;
    assert_eq!(answer.location(), Some(HOME_PAGE));
    let home = client.get(HOME_PAGE).await;
    assert_eq!(home.status, 200);
    let text = home.text();
    assert!(text.contains("<span id=\"user\">alice</span>"), "{text}");
    assert!(text.contains("href=\"/manageotp\""), "{text}");
    assert!(text.contains("href=\"/cgi/logout\""), "{text}");
    server.stop().await;
}

#[tokio::test]
async fn a_wrong_password_and_an_unknown_user_get_the_same_4001_page() {
    let server = Server::start(LoginSection::default()).await;
    server.add_user("alice", "correct horse").await;
    let mut client = server.client(2);
    let wrong = client.log_on("alice", "wrong").await;
    let unknown = client.log_on("nobody", "wrong").await;
    for answer in [&wrong, &unknown] {
        assert_eq!(answer.status, 200);
        assert!(
            answer
                .set_cookies()
                .iter()
                .any(|c| c.starts_with("NSC_VPNERR=4001")),
            "{answer:?}"
        );
        assert!(!answer.head.contains("NSC_AAAC="), "{answer:?}");
    }
    assert_eq!(wrong.body, unknown.body);
    assert!(wrong.text().contains("Incorrect user name or password"));
    assert!(wrong.text().contains("action=\"/cgi/login\""));
    // Nothing to see without a session.
    let home = client.get(HOME_PAGE).await;
    assert_eq!(home.location(), Some(LOGIN_PAGE));
    server.stop().await;
}

#[tokio::test]
async fn a_user_name_is_locked_after_repeated_failures_without_saying_so() {
    let server = Server::start(LoginSection {
        user_max_failures: 3,
        ..LoginSection::default()
    })
    .await;
    server.add_user("alice", "correct horse").await;
    let mut client = server.client(3);
    let mut pages = Vec::new();
    for _ in 0..3 {
        pages.push(client.log_on("alice", "wrong").await.body);
    }
    let locked = client.log_on("alice", "correct horse").await;
    assert_eq!(locked.status, 200);
    assert_eq!(locked.body, pages[0], "same page as a wrong password");
    assert!(!client.jar.contains_key("NSC_AAAC"));
    // Another user from elsewhere is unaffected.
    server.add_user("bob", "battery staple").await;
    let answer = server.client(4).log_on("bob", "battery staple").await;
    assert_eq!(answer.status, 302);
    server.stop().await;
}

#[tokio::test]
async fn a_client_address_is_locked_after_repeated_failures_and_told_so() {
    let server = Server::start(LoginSection {
        ip_max_failures: 2,
        ..LoginSection::default()
    })
    .await;
    server.add_user("alice", "correct horse").await;
    let mut client = server.client(5);
    client.log_on("x", "y").await;
    client.log_on("z", "y").await;
    let answer = client.log_on("alice", "correct horse").await;
    assert!(
        answer
            .text()
            .contains("Too many failed attempts from your address"),
        "{answer:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn password_and_otp_go_through_the_challenge_page_and_refuse_a_reused_code() {
    let server = Server::start(otp()).await;
    server.add_user("alice", "correct horse").await;
    // No device yet: an enrol-only session, which registers one.
    let mut client = server.client(6);
    let answer = client.log_on("alice", "correct horse").await;
    assert_eq!(answer.status, 302, "{answer:?}");
    let home = client.get(HOME_PAGE).await.text();
    assert!(home.contains("Register an authenticator"), "{home}");
    let manage = client.get("/manageotp").await.text();
    let csrf = between(&manage, "name=\"csrf\" value=\"", "\"").to_owned();
    let added = client
        .post("/manageotp/add", &[("csrf", &csrf), ("device", "phone")])
        .await;
    assert_eq!(added.status, 200);
    let text = added.text();
    let uri = between(&text, "<code id=\"uri\">", "</code>").replace("&amp;", "&");
    assert!(uri.starts_with("otpauth://totp/"), "{uri}");
    client.get("/cgi/logout").await;

    let mut client = server.client(6);
    let challenge = client.log_on("alice", "correct horse").await;
    assert_eq!(challenge.status, 200);
    let text = challenge.text();
    assert!(
        text.contains("Enter the code from your authenticator"),
        "{text}"
    );
    assert!(text.contains("action=\"/cgi/dlge\""), "{text}");
    assert!(client.jar.contains_key(cookies::PENDING));
    let wrong = client.post("/cgi/dlge", &[("response", "12345x")]).await;
    assert!(
        wrong.text().contains("The code was not accepted"),
        "{wrong:?}"
    );
    let code = code_now(&uri);
    let done = client.post("/cgi/dlge", &[("response", &code)]).await;
    assert_eq!(done.status, 302, "{done:?}");
    assert_eq!(done.location(), Some("/cgi/setclient?cvpn"));
    assert!(!client.jar.contains_key(cookies::PENDING));
    let home = client.get(HOME_PAGE).await.text();
    assert!(home.contains("Your applications"), "{home}");

    let mut other = server.client(7);
    other.log_on("alice", "correct horse").await;
    let replay = other.post("/cgi/dlge", &[("response", &code)]).await;
    assert!(replay.text().contains("already used"), "{replay:?}");
    assert!(!other.jar.contains_key("NSC_AAAC"));
    server.stop().await;
}

#[tokio::test]
async fn an_answer_without_a_pending_login_goes_back_to_the_login_page() {
    let server = Server::start(otp()).await;
    let mut client = server.client(8);
    let answer = client.post("/cgi/dlge", &[("response", "123456")]).await;
    assert_eq!(answer.status, 200);
    assert!(answer.text().contains("Log on again"), "{answer:?}");
    assert!(answer.head.contains("NSC_VPNERR=4001"));
    server.stop().await;
}

#[tokio::test]
async fn manageotp_needs_the_csrf_token_and_serves_the_qr_code_to_its_session_only() {
    let server = Server::start(LoginSection::default()).await;
    server.add_user("alice", "correct horse").await;
    server.add_user("bob", "battery staple").await;
    let mut alice = server.client(9);
    alice.log_on("alice", "correct horse").await;
    let mut bob = server.client(10);
    bob.log_on("bob", "battery staple").await;

    let refused = alice
        .post("/manageotp/add", &[("csrf", "nope"), ("device", "phone")])
        .await;
    assert_eq!(refused.status, 403);
    let bob_page = bob.get("/manageotp").await.text();
    let bob_csrf = between(&bob_page, "name=\"csrf\" value=\"", "\"").to_owned();
    let crossed = alice
        .post(
            "/manageotp/add",
            &[("csrf", &bob_csrf), ("device", "phone")],
        )
        .await;
    assert_eq!(crossed.status, 403, "another session's token is refused");

    let page = alice.get("/manageotp").await.text();
    assert!(page.contains("No authenticator is registered"), "{page}");
    let csrf = between(&page, "name=\"csrf\" value=\"", "\"").to_owned();
    let added = alice
        .post("/manageotp/add", &[("csrf", &csrf), ("device", "phone")])
        .await
        .text();
    let qr = between(&added, "<img id=\"qr\" src=\"", "\"").to_owned();
    let uri = between(&added, "<code id=\"uri\">", "</code>").replace("&amp;", "&");
    let png = alice.get(&qr).await;
    assert_eq!(png.status, 200);
    assert!(png.head.contains("content-type: image/png"), "{}", png.head);
    assert!(png.body.starts_with(b"\x89PNG"));
    assert_eq!(bob.get(&qr).await.status, 404, "not for another session");

    let page = alice.get("/manageotp").await.text();
    assert!(
        page.contains("<span class=\"device\">phone</span>"),
        "{page}"
    );
    let duplicate = alice
        .post("/manageotp/add", &[("csrf", &csrf), ("device", "phone")])
        .await
        .text();
    assert!(duplicate.contains("already have a device"), "{duplicate}");
    let tested = alice
        .post(
            "/manageotp/test",
            &[("csrf", &csrf), ("code", &code_now(&uri))],
        )
        .await
        .text();
    assert!(
        tested.contains("OTP verification successful (phone)"),
        "{tested}"
    );
    let removed = alice
        .post("/manageotp/remove", &[("csrf", &csrf), ("device", "phone")])
        .await
        .text();
    assert!(removed.contains("The device was removed"), "{removed}");
    assert!(
        removed.contains("No authenticator is registered"),
        "{removed}"
    );
    server.stop().await;
}

#[tokio::test]
async fn logout_ends_the_session_and_a_restart_does_not() {
    let server = Server::start(LoginSection::default()).await;
    server.add_user("alice", "correct horse").await;
    let mut client = server.client(11);
    client.log_on("alice", "correct horse").await;
    let saved = client.jar.clone();
    let dir = server.stop().await;
    // A new control plane over the same store.
    let server = Server::start_in(dir, LoginSection::default()).await;
    let mut client = server.client(11);
    client.jar = saved.clone();
    assert_eq!(client.get(HOME_PAGE).await.status, 200);
    let answer = client.get("/cgi/logout").await;
    assert!(answer.text().contains("You are logged off"));
    assert!(!client.jar.contains_key("NSC_AAAC"));
    client.jar = saved;
    assert_eq!(client.get(HOME_PAGE).await.location(), Some(LOGIN_PAGE));
    let dir = server.stop().await;
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn an_oversized_form_is_refused() {
    let server = Server::start(LoginSection::default()).await;
    let mut client = server.client(12);
    let big = "a".repeat(MAX_BODY_BYTES + 1);
    let answer = client.log_on(&big, "x").await;
    assert_eq!(answer.status, 413, "{}", answer.head);
    server.stop().await;
}

#[tokio::test]
async fn the_push_wait_and_resend_without_a_pending_login_send_back_to_log_on() {
    let server = Server::start(LoginSection::default()).await;
    let mut client = server.client(7);
    for answer in [
        client.get("/cgi/pushwait").await,
        client.post("/cgi/pushresend", &[("x", "")]).await,
    ] {
        assert_eq!(answer.status, 200, "{answer:?}");
        assert!(answer.text().contains("took too long"), "{answer:?}");
        assert!(answer.text().contains("action=\"/cgi/login\""));
        assert!(
            answer
                .set_cookies()
                .iter()
                .any(|c| c.starts_with("NSC_VPNERR=4001")),
            "{answer:?}"
        );
    }
    server.stop().await;
}
