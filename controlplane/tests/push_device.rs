//! Push approval end to end in one process: the device endpoints of the
//! built-in provider served on a loopback listener (plain HTTP, and HTTPS
//! with a self-signed certificate), devices enrolled in a real store, and
//! the real `push-device` binary (built by the test, stopped by PID)
//! registering, long-polling and answering with number matching.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a failed test"
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use gatehouse::auth::devices::OtpDevices;
use gatehouse::auth::names::{DeviceName, UserName};
use gatehouse::auth::otpauth::qr_png;
use gatehouse::auth::seal::OtpKey;
use gatehouse::push::{
    self, AttemptId, BuiltinPush, MatchNumber, PushError, PushOutcome, PushService, PushSettings,
    StoreSecrets,
};
use gatehouse::store::Store;
use gatehouse_tests::server::Server;
use gatehouse_tests::temp::TempDir;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// The `push-device` binary, built with the profile and target directory
/// of this test executable (cargo answers at once when it is fresh).
fn push_device_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().unwrap();
        let profile_dir = exe.parent().and_then(Path::parent).unwrap().to_owned();
        let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") | None => "dev".to_owned(),
            Some(name) => name.to_owned(),
        };
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let mut cargo = Command::new(env!("CARGO"));
        cargo
            .current_dir(workspace)
            .args(["build", "--quiet", "--profile", &profile])
            .args(["-p", "gatehouse-push-device", "--bin", "push-device"])
            .stdin(Stdio::null());
        // Package variables of this test would make build scripts rerun.
        for (name, _) in std::env::vars_os() {
            let Some(name) = name.to_str() else { continue };
            if name.starts_with("CARGO_PKG_")
                || name.starts_with("CARGO_MANIFEST_")
                || name.starts_with("CARGO_BIN_EXE_")
                || [
                    "CARGO_CRATE_NAME",
                    "CARGO_BIN_NAME",
                    "CARGO_PRIMARY_PACKAGE",
                    "CARGO_TARGET_TMPDIR",
                    "CARGO_RUSTC_CURRENT_DIR",
                    "OUT_DIR",
                ]
                .contains(&name)
            {
                cargo.env_remove(name);
            }
        }
        if let Some(target) = profile_dir.parent()
            && target.join("CACHEDIR.TAG").is_file()
        {
            cargo.arg("--target-dir").arg(target);
        }
        let output = cargo.output().unwrap();
        assert!(
            output.status.success(),
            "building push-device failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let bin = profile_dir.join("push-device");
        assert!(bin.is_file(), "{} is missing", bin.display());
        bin
    })
}

fn settings(wait: Duration) -> PushSettings {
    PushSettings {
        enabled: true,
        wait,
        poll_hold: Duration::from_secs(2),
        connect_grace: Duration::from_secs(2),
        max_devices: 100,
        max_pending: 100,
    }
}

/// A gateway's push side: a store with alice's enrolled phone, the
/// service, and its device endpoints on a loopback port.
struct Gateway {
    _dir: TempDir,
    dir: PathBuf,
    service: BuiltinPush,
    url: String,
    ca: Option<PathBuf>,
    uri: String,
}

impl Gateway {
    async fn start(wait: Duration, tls: bool) -> Self {
        let dir = TempDir::new("push");
        let path = dir.path().to_owned();
        let store = Store::open(&path).await.unwrap();
        let key = OtpKey::from_bytes([0x11; 32]);
        let devices = OtpDevices::new(store.clone(), key.clone(), "Gatehouse");
        let enrolment = devices
            .add(
                &UserName::new("alice").unwrap(),
                &DeviceName::new("phone").unwrap(),
            )
            .await
            .unwrap();
        let service = BuiltinPush::new(settings(wait), Arc::new(StoreSecrets::new(store, key)));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = push::router(service.clone());
        let (acceptor, ca) = if tls {
            let generated = gatehouse_engine::tls::self_signed(&["127.0.0.1"]).unwrap();
            let ca = path.join("gateway.crt");
            std::fs::write(&ca, &generated.cert_pem).unwrap();
            let certs: Vec<CertificateDer<'static>> =
                CertificateDer::pem_slice_iter(generated.cert_pem.as_bytes())
                    .collect::<Result<_, _>>()
                    .unwrap();
            let key = PrivateKeyDer::from_pem_slice(generated.key_pem.as_bytes()).unwrap();
            let config = rustls::ServerConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
            (Some(TlsAcceptor::from(Arc::new(config))), Some(ca))
        } else {
            (None, None)
        };
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let router = router.clone();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let service = TowerToHyperService::new(router);
                    let http = hyper::server::conn::http1::Builder::new();
                    match acceptor {
                        Some(acceptor) => {
                            if let Ok(tls) = acceptor.accept(tcp).await {
                                let _ = http.serve_connection(TokioIo::new(tls), service).await;
                            }
                        }
                        None => {
                            let _ = http.serve_connection(TokioIo::new(tcp), service).await;
                        }
                    }
                });
            }
        });
        let scheme = if tls { "https" } else { "http" };
        Self {
            _dir: dir,
            dir: path,
            service,
            url: format!("{scheme}://127.0.0.1:{}", addr.port()),
            ca,
            uri: enrolment.uri.to_string(),
        }
    }

    /// Starts `push-device serve` with `answer` arguments; returns once it
    /// has registered.
    async fn device(&self, name: &str, args: &[&str]) -> Server {
        let mut command = Command::new(push_device_binary());
        command.args(["serve", "--gateway", &self.url, "--uri", &self.uri]);
        if let Some(ca) = &self.ca {
            command.arg("--ca").arg(ca);
        }
        command.args(args);
        let log = self.dir.join(format!("{name}.log"));
        let mut device = Server::start(name, command, &log);
        let ready = tokio::task::block_in_place(|| {
            device.wait_ready(|d| d.log().contains("registered user=alice device=phone"))
        });
        assert!(ready, "push-device did not register:\n{}", device.log());
        device
    }
}

fn alice() -> UserName {
    UserName::new("alice").unwrap()
}

/// Waits (bounded) until `device`'s log contains `needle`.
async fn log_shows(device: &Server, needle: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if device.log().contains(needle) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_device_approves_with_the_number_the_login_page_shows() {
    let gateway = Gateway::start(Duration::from_secs(20), false).await;
    let shown = gateway.dir.join("number");
    let device = gateway
        .device("approve", &["--approve-from", shown.to_str().unwrap()])
        .await;
    let number = MatchNumber::random().unwrap();
    let ticket = gateway
        .service
        .request(&alice(), AttemptId::random().unwrap(), number)
        .await
        .unwrap();
    // The user reads the number off the login page and types it.
    std::fs::write(&shown, number.to_string()).unwrap();
    let outcome = gateway.service.wait(&ticket, Duration::from_secs(20)).await;
    assert_eq!(outcome, PushOutcome::Approved, "{}", device.log());
    assert!(
        log_shows(&device, "outcome=approved").await,
        "{}",
        device.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_number_is_refused() {
    let gateway = Gateway::start(Duration::from_secs(20), false).await;
    let device = gateway
        .device("wrong", &["--approve-with", "42", "--approve-wrong"])
        .await;
    let ticket = gateway
        .service
        .request(
            &alice(),
            AttemptId::random().unwrap(),
            MatchNumber::new(42).unwrap(),
        )
        .await
        .unwrap();
    let outcome = gateway.service.wait(&ticket, Duration::from_secs(20)).await;
    assert_eq!(outcome, PushOutcome::WrongNumber, "{}", device.log());
    assert!(
        log_shows(&device, "outcome=wrong_number").await,
        "{}",
        device.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denial_from_the_device_denies_the_login() {
    let gateway = Gateway::start(Duration::from_secs(20), false).await;
    let device = gateway.device("deny", &["--deny"]).await;
    let ticket = gateway
        .service
        .request(
            &alice(),
            AttemptId::random().unwrap(),
            MatchNumber::new(5).unwrap(),
        )
        .await
        .unwrap();
    let outcome = gateway.service.wait(&ticket, Duration::from_secs(20)).await;
    assert_eq!(outcome, PushOutcome::Denied, "{}", device.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_answer_within_the_configured_wait_times_out() {
    let gateway = Gateway::start(Duration::from_secs(1), false).await;
    // The user never types the number.
    let never = gateway.dir.join("never");
    let device = gateway
        .device("silent", &["--approve-from", never.to_str().unwrap()])
        .await;
    let ticket = gateway
        .service
        .request(
            &alice(),
            AttemptId::random().unwrap(),
            MatchNumber::new(9).unwrap(),
        )
        .await
        .unwrap();
    let start = Instant::now();
    let outcome = gateway
        .service
        .wait(&ticket, gateway.service.wait_time())
        .await;
    assert_eq!(outcome, PushOutcome::TimedOut, "{}", device.log());
    let waited = start.elapsed();
    assert!(waited < Duration::from_secs(5), "waited {waited:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_device_becomes_unreachable_and_an_unregistered_user_has_none() {
    let gateway = Gateway::start(Duration::from_secs(20), false).await;
    let result = gateway
        .service
        .request(
            &alice(),
            AttemptId::random().unwrap(),
            MatchNumber::new(1).unwrap(),
        )
        .await;
    assert_eq!(result, Err(PushError::NoDevice));
    let device = gateway.device("stopped", &["--deny"]).await;
    drop(device);
    // The poll ends with the process; the 2 s grace passes.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let result = gateway
        .service
        .request(
            &alice(),
            AttemptId::random().unwrap(),
            MatchNumber::new(1).unwrap(),
        )
        .await;
    assert_eq!(result, Err(PushError::DeviceUnreachable));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_device_enrols_from_the_qr_code_and_approves_over_https() {
    let gateway = Gateway::start(Duration::from_secs(20), true).await;
    let qr = gateway.dir.join("qr.png");
    std::fs::write(&qr, qr_png(&gateway.uri).unwrap()).unwrap();
    let decoded = Command::new(push_device_binary())
        .args(["uri", "--qr"])
        .arg(&qr)
        .output()
        .unwrap();
    assert!(decoded.status.success());
    assert_eq!(String::from_utf8_lossy(&decoded.stdout).trim(), gateway.uri);

    let mut command = Command::new(push_device_binary());
    command
        .args(["serve", "--gateway", &gateway.url, "--qr"])
        .arg(&qr)
        .arg("--ca")
        .arg(gateway.ca.as_ref().unwrap())
        .args(["--approve-with", "17", "--once"]);
    let log = gateway.dir.join("https.log");
    let mut device = Server::start("https", command, &log);
    let ready = tokio::task::block_in_place(|| {
        device.wait_ready(|d| d.log().contains("registered user=alice device=phone"))
    });
    assert!(
        ready,
        "push-device did not register over https:\n{}",
        device.log()
    );
    let ticket = gateway
        .service
        .request(
            &alice(),
            AttemptId::random().unwrap(),
            MatchNumber::new(17).unwrap(),
        )
        .await
        .unwrap();
    let outcome = gateway.service.wait(&ticket, Duration::from_secs(20)).await;
    assert_eq!(outcome, PushOutcome::Approved, "{}", device.log());
}

#[test]
fn the_device_prints_the_code_the_gateway_accepts() {
    let secret =
        gatehouse::auth::totp::TotpSecret::from_base32("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ").unwrap();
    let uri =
        gatehouse::auth::otpauth::OtpauthUri::gateway("Gatehouse", "alice", secret, Some("phone"));
    let output = Command::new(push_device_binary())
        .args(["code", "--uri", &uri.to_string(), "--at", "59"])
        .output()
        .unwrap();
    assert!(output.status.success());
    // RFC 6238 Appendix B, SHA-1 at T = 59: 94287082, 6 digits.
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "287082");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_with_the_wrong_secret_cannot_register() {
    let gateway = Gateway::start(Duration::from_secs(20), false).await;
    let forged = gatehouse::auth::otpauth::OtpauthUri::gateway(
        "Gatehouse",
        "alice",
        gatehouse::auth::totp::TotpSecret::from_bytes(&[9; 20]).unwrap(),
        Some("phone"),
    );
    let output = tokio::task::spawn_blocking({
        let url = gateway.url.clone();
        move || {
            Command::new(push_device_binary())
                .args([
                    "serve",
                    "--gateway",
                    &url,
                    "--uri",
                    &forged.to_string(),
                    "--deny",
                ])
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("registration refused"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(gateway.service.connected_devices(&alice()), 0);
}

/// One raw HTTP/1.1 request; returns the status code and the body.
async fn raw(
    url: &str,
    method: &str,
    path: &str,
    auth: Option<&str>,
    body: &[u8],
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(auth) = auth {
        head.push_str(&format!("Authorization: {auth}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_endpoints_refuse_bad_device_input_with_typed_statuses() {
    use gatehouse::push::protocol::{self, RegisterBody};
    let gateway = Gateway::start(Duration::from_secs(20), false).await;
    let url = gateway.url.as_str();
    let unknown = format!("Bearer {}", protocol::random_token().unwrap());

    assert_eq!(raw(url, "GET", protocol::POLL_PATH, None, b"").await.0, 401);
    assert_eq!(
        raw(url, "GET", protocol::POLL_PATH, Some("Basic eA=="), b"")
            .await
            .0,
        401
    );
    assert_eq!(
        raw(url, "GET", protocol::POLL_PATH, Some(&unknown), b"")
            .await
            .0,
        401
    );
    assert_eq!(
        raw(url, "POST", protocol::REGISTER_PATH, None, b"{not json")
            .await
            .0,
        400
    );
    let huge = vec![b' '; protocol::MAX_BODY_BYTES + 1];
    assert_eq!(
        raw(url, "POST", protocol::REGISTER_PATH, None, &huge)
            .await
            .0,
        413
    );

    // A forged proof is 403, with the same body as an unknown device.
    let (status, nonce) = raw(url, "POST", protocol::CHALLENGE_PATH, None, b"").await;
    assert_eq!(status, 200);
    let nonce: protocol::ChallengeResponse = serde_json::from_str(&nonce).unwrap();
    let forged = RegisterBody {
        user: "alice".into(),
        device: "phone".into(),
        proof: "AAAA".into(),
        nonce: nonce.nonce,
    };
    let (status, refused) = raw(
        url,
        "POST",
        protocol::REGISTER_PATH,
        None,
        &serde_json::to_vec(&forged).unwrap(),
    )
    .await;
    assert_eq!(
        (status, refused.as_str()),
        (403, r#"{"error":"registration refused"}"#)
    );

    // A registered device: an unknown push is 404, a bad body 400, and a
    // poll with nothing to deliver 204 after the hold.
    let secret = gatehouse::auth::otpauth::OtpauthUri::parse(&gateway.uri)
        .unwrap()
        .secret;
    let nonce = gateway.service.challenge().unwrap();
    let token = gateway
        .service
        .register(&RegisterBody {
            user: "alice".into(),
            device: "phone".into(),
            proof: protocol::register_proof(&secret, &nonce, "alice", "phone"),
            nonce,
        })
        .await
        .unwrap()
        .token;
    let auth = format!("Bearer {token}");
    let answer = format!(
        r#"{{"id":"{}","decision":"approve","number":"01"}}"#,
        protocol::PushId::random().unwrap()
    );
    let (status, _) = raw(
        url,
        "POST",
        protocol::ANSWER_PATH,
        Some(&auth),
        answer.as_bytes(),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = raw(url, "POST", protocol::ANSWER_PATH, Some(&auth), b"[]").await;
    assert_eq!(status, 400);
    let (status, _) = raw(url, "GET", protocol::POLL_PATH, Some(&auth), b"").await;
    assert_eq!(status, 204);
}
