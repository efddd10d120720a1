//! End to end: the real `gatehouse run` binary comes up on loopback,
//! generates its certificate into the data directory (and reuses it on the
//! next start), answers `/healthz` and the STA endpoint, and exits 0 on
//! SIGTERM; a SOCKSv5 launch over TLS with an STA ticket reaches an echo
//! worker once; `gatehouse check-config` accepts good files and names the key
//! of a bad one with exit status 64.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a failed test"
)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

const TIMEOUT: Duration = Duration::from_secs(15);

/// A fresh directory under the system temp dir.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gatehouse-run-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A running `gatehouse run` and what its `gatehouse_ready` line said.
struct Gatehouse {
    child: Child,
    gateway: SocketAddr,
    admin: SocketAddr,
    /// Every stderr line up to and including `gatehouse_ready`.
    startup: Vec<String>,
    /// The stderr lines after `gatehouse_ready`.
    later: mpsc::Receiver<String>,
}

impl Gatehouse {
    /// Starts `gatehouse run` in `cwd` with one core and ephemeral ports.
    fn start(cwd: &Path, extra: &[&str]) -> Self {
        Self::start_logging(cwd, "text", extra)
    }

    /// [`Gatehouse::start`] with `--log-format format`.
    fn start_logging(cwd: &Path, format: &str, extra: &[&str]) -> Self {
        Self::start_configured(cwd, "[engine]\ncores = 1\ndrain_secs = 2\n", format, extra)
    }

    /// [`Gatehouse::start_logging`] with the configuration file `toml`.
    fn start_configured(cwd: &Path, toml: &str, format: &str, extra: &[&str]) -> Self {
        let config = cwd.join("small.toml");
        std::fs::write(&config, toml).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
            .current_dir(cwd)
            .args(["--log-format", format])
            .args(["run", "--config"])
            .arg(&config)
            .args(["--gateway-listen", "127.0.0.1:0"])
            .args(["--admin-listen", "127.0.0.1:0"])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the binary starts");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let (later_tx, later) = mpsc::channel();
        thread::spawn(move || {
            let mut startup = Vec::new();
            let mut sent = false;
            for line in BufReader::new(stderr).lines().take(100_000) {
                let Ok(line) = line else { break };
                if sent {
                    let _ = later_tx.send(line);
                } else {
                    startup.push(line.clone());
                    if line.contains("gatehouse_ready") {
                        let _ = tx.send(std::mem::take(&mut startup));
                        sent = true;
                    }
                }
            }
            if !sent {
                let _ = tx.send(startup);
            }
        });
        let startup = rx.recv_timeout(TIMEOUT).expect("the binary logs its start");
        let ready = startup
            .iter()
            .find(|line| line.contains("gatehouse_ready"))
            .unwrap_or_else(|| panic!("no gatehouse_ready in {startup:#?}"));
        let field = |name: &str| -> SocketAddr {
            let text = if format == "json" {
                let event: serde_json::Value = serde_json::from_str(ready).unwrap();
                event["fields"][name].as_str().map(str::to_owned)
            } else {
                ready
                    .split_whitespace()
                    .find_map(|f| f.strip_prefix(&format!("{name}=")))
                    .map(str::to_owned)
            };
            text.and_then(|addr| addr.parse().ok())
                .unwrap_or_else(|| panic!("{name} in {ready}"))
        };
        let (gateway, admin) = (field("gateway"), field("admin"));
        Self {
            child,
            gateway,
            admin,
            startup,
            later,
        }
    }

    fn logged(&self, event: &str) -> bool {
        self.startup.iter().any(|line| line.contains(event))
    }

    /// The next line after start-up that contains every one of `needles`
    /// (bounded wait).
    fn wait_for_log(&self, needles: &[&str]) -> String {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .later
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no log line with {needles:?}"));
            if needles.iter().all(|needle| line.contains(needle)) {
                return line;
            }
        }
    }

    /// Asks the STA endpoint for a launch ticket to `ica`; returns its text.
    fn issue(&self, ica: SocketAddr) -> String {
        let body = REQUEST_TICKET.replace("127.0.0.1:1494", &ica.to_string());
        let (status, issued) = http(self.admin, "POST", "/scripts/ctxsta.dll", &body);
        assert_eq!(status, 200, "{issued}");
        format!(
            ";{};{};{}",
            element(&issued, "TicketVersion"),
            element(&issued, "AuthorityID"),
            element(&issued, "Ticket")
        )
    }

    /// SIGTERM, then the exit status (bounded wait).
    fn terminate(self) -> ExitStatus {
        self.signal("TERM");
        self.wait_exit()
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name} works");
    }

    fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// The exit status (bounded wait).
    fn wait_exit(mut self) -> ExitStatus {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("gatehouse run did not exit within {TIMEOUT:?}");
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Gatehouse {
    fn drop(&mut self) {
        // Only reached with the child still running when a test failed.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 exchange; returns the status and the body.
fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: text/xml\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").expect("an http answer");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("a status code");
    (status, body.to_owned())
}

/// The text between `<tag>` and `</tag>`.
fn element<'a>(xml: &'a str, tag: &str) -> &'a str {
    let open = format!("<{tag}>");
    let start = xml
        .find(&open)
        .unwrap_or_else(|| panic!("<{tag}> in {xml}"))
        + open.len();
    let end = xml[start..].find(&format!("</{tag}>")).unwrap() + start;
    &xml[start..end]
}

const REQUEST_TICKET: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<CtxSTAProtocol version="4.0"><RequestTicket>
<AllowedTicketType>STA-v4</AllowedTicketType>
<TicketData><Value name="ICAAddress">127.0.0.1:1494</Value></TicketData>
</RequestTicket></CtxSTAProtocol>"#;

fn request_data(authority: &str, ticket: &str, version: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><CtxSTAProtocol version="4.0"><RequestData><AuthorityID>{authority}</AuthorityID><Ticket>{ticket}</Ticket><TicketVersion>{version}</TicketVersion></RequestData></CtxSTAProtocol>"#
    )
}

#[test]
fn run_serves_health_and_the_sta_then_exits_zero_on_sigterm_and_reuses_its_certificate() {
    let cwd = temp_dir("serve");
    let data = cwd.join("data");
    let gatehouse = Gatehouse::start(&cwd, &["--data-dir", data.to_str().unwrap()]);
    assert!(
        gatehouse.logged("certificate_generated"),
        "first start generates"
    );
    assert!(gatehouse.gateway.ip().is_loopback());
    let cert = std::fs::read(data.join("tls/gateway.crt")).unwrap();
    assert!(cert.starts_with(b"-----BEGIN CERTIFICATE-----"));
    let key_mode = std::fs::metadata(data.join("tls/gateway.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(key_mode & 0o777, 0o600, "the key is private");

    assert_eq!(
        http(gatehouse.admin, "GET", "/healthz", ""),
        (200, "ok\n".to_owned())
    );

    let (status, issued) = http(
        gatehouse.admin,
        "POST",
        "/scripts/ctxsta.dll",
        REQUEST_TICKET,
    );
    assert_eq!(status, 200, "{issued}");
    let (authority, ticket, version) = (
        element(&issued, "AuthorityID"),
        element(&issued, "Ticket"),
        element(&issued, "TicketVersion"),
    );
    assert_eq!((authority, version), ("STA01", "40"));
    assert_eq!(ticket.len(), 32);

    let redeem = request_data(authority, ticket, version);
    let (status, redeemed) = http(gatehouse.admin, "POST", "/scripts/ctxsta.dll", &redeem);
    assert_eq!(status, 200);
    assert!(
        redeemed.contains(r#"<Value name="ICAAddress">127.0.0.1:1494</Value>"#),
        "{redeemed}"
    );
    let (status, again) = http(gatehouse.admin, "POST", "/scripts/ctxsta.dll", &redeem);
    assert_eq!(status, 200);
    assert_eq!(element(&again, "ErrorId"), "reused-ticket");

    assert_eq!(
        gatehouse.terminate().code(),
        Some(0),
        "clean exit on SIGTERM"
    );

    let again = Gatehouse::start(&cwd, &["--data-dir", data.to_str().unwrap()]);
    assert!(
        !again.logged("certificate_generated"),
        "second start reuses: {:#?}",
        again.startup
    );
    assert_eq!(std::fs::read(data.join("tls/gateway.crt")).unwrap(), cert);
    assert_eq!(
        http(again.admin, "GET", "/healthz", "").0,
        200,
        "second start serves"
    );
    assert_eq!(again.terminate().code(), Some(0));
    std::fs::remove_dir_all(&cwd).unwrap();
}

#[test]
fn run_without_a_data_dir_flag_uses_gatehouse_data_in_the_working_directory() {
    let cwd = temp_dir("default-dir");
    let gatehouse = Gatehouse::start(&cwd, &[]);
    assert!(cwd.join("gatehouse-data/tls/gateway.crt").is_file());
    assert!(cwd.join("gatehouse-data/tls/gateway.key").is_file());
    assert_eq!(gatehouse.terminate().code(), Some(0));
    std::fs::remove_dir_all(&cwd).unwrap();
}

#[test]
fn run_logs_one_json_object_per_line_with_log_format_json() {
    let cwd = temp_dir("json");
    let gatehouse = Gatehouse::start_logging(&cwd, "json", &[]);
    for line in &gatehouse.startup {
        let event: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(event["fields"]["message"].is_string(), "{line}");
    }
    assert_eq!(http(gatehouse.admin, "GET", "/healthz", "").0, 200);
    assert_eq!(gatehouse.terminate().code(), Some(0));
    std::fs::remove_dir_all(&cwd).unwrap();
}

fn gatehouse(args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + TIMEOUT;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("gatehouse {args:?} did not exit within {TIMEOUT:?}");
        }
        thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn check(text: &str, name: &str) -> Output {
    let dir = temp_dir(name);
    let file = dir.join("gatehouse.toml");
    std::fs::write(&file, text).unwrap();
    let output = gatehouse(&["check-config", file.to_str().unwrap()]);
    std::fs::remove_dir_all(&dir).unwrap();
    output
}

#[test]
fn check_config_accepts_a_good_file_and_the_example() {
    let output = check("[gateway]\nlisten = \"0.0.0.0:443\"\n", "good");
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&output.stdout), "ok\n");

    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/gatehouse.example.toml");
    let output = gatehouse(&["check-config", example]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn check_config_names_an_unknown_key_and_exits_64() {
    let output = check("[gateway]\nlissten = \"127.0.0.1:8443\"\n", "unknown");
    assert_eq!(output.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("gateway.lissten"), "{stderr}");
    assert!(stderr.contains("unknown key"), "{stderr}");
    assert!(output.stdout.is_empty());
}

#[test]
fn check_config_names_a_bad_value_and_exits_64() {
    let output = check("[gateway]\nlisten = \"nope\"\n", "bad-value");
    assert_eq!(output.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("gateway.listen"), "{stderr}");
    assert!(stderr.contains("expected IP:PORT"), "{stderr}");

    let output = check("[sta]\nticket_ttl_secs = 0\n", "out-of-range");
    assert_eq!(output.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("sta.ticket_ttl_secs"), "{stderr}");
}

#[test]
fn check_config_of_a_missing_file_exits_64() {
    let output = gatehouse(&["check-config", "/nonexistent/gatehouse.toml"]);
    assert_eq!(output.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&output.stderr).contains("/nonexistent/gatehouse.toml"));
}

#[test]
fn run_refuses_a_bad_config_with_the_key_named_and_exit_64() {
    let dir = temp_dir("run-bad");
    let file = dir.join("gatehouse.toml");
    std::fs::write(&file, "[engine]\ndriver = \"fast\"\n").unwrap();
    let output = gatehouse(&["run", "--config", file.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("engine.driver"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn run_refuses_a_bad_listen_flag_with_exit_64() {
    let output = gatehouse(&["run", "--gateway-listen", "nowhere"]);
    assert_eq!(output.status.code(), Some(64));
}

/// An echo server on loopback for at most `max` connections.
fn echo(max: usize) -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming().take(max) {
            let Ok(mut stream) = stream else { continue };
            thread::spawn(move || {
                stream.set_read_timeout(Some(TIMEOUT)).unwrap();
                let mut buf = [0u8; 16 * 1_024];
                while let Ok(n @ 1..) = stream.read(&mut buf) {
                    if stream.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// A rustls client that trusts only the gateway's generated certificate.
fn trusting(cert_pem: &[u8]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(cert_pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// TLS to the gateway as `localhost`, then a SOCKSv5 CONNECT whose domain
/// is `ticket`. Returns the reply code and the stream.
fn socks_launch(gateway: SocketAddr, tls: &Arc<rustls::ClientConfig>, ticket: &str) -> (u8, Tls) {
    let tcp = TcpStream::connect_timeout(&gateway, TIMEOUT).unwrap();
    tcp.set_read_timeout(Some(TIMEOUT)).unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let connection = rustls::ClientConnection::new(tls.clone(), name).unwrap();
    let mut stream = rustls::StreamOwned::new(connection, tcp);
    // Greeting: version 5, one method, "no authentication".
    stream.write_all(&[0x05, 0x01, 0x00]).unwrap();
    let mut choice = [0u8; 2];
    stream.read_exact(&mut choice).unwrap();
    assert_eq!(choice, [0x05, 0x00]);
    // CONNECT, ATYP 0x03 (domain) = the ticket, port 1494.
    let mut request = vec![0x05, 0x01, 0x00, 0x03, u8::try_from(ticket.len()).unwrap()];
    request.extend_from_slice(ticket.as_bytes());
    request.extend_from_slice(&1_494u16.to_be_bytes());
    stream.write_all(&request).unwrap();
    // Reply with an IPv4 bound address: 10 bytes.
    let mut reply = [0u8; 10];
    stream.read_exact(&mut reply).unwrap();
    assert_eq!(reply[0], 0x05);
    (reply[1], stream)
}

#[test]
fn a_socks_launch_over_tls_with_a_ticket_reaches_the_worker_once() {
    let cwd = temp_dir("launch");
    let data = cwd.join("data");
    let gatehouse = Gatehouse::start(&cwd, &["--data-dir", data.to_str().unwrap()]);
    let tls = trusting(&std::fs::read(data.join("tls/gateway.crt")).unwrap());
    let worker = echo(4);

    let ticket = gatehouse.issue(worker);
    let (reply, mut stream) = socks_launch(gatehouse.gateway, &tls, &ticket);
    assert_eq!(reply, 0x00, "SOCKS success");
    stream.write_all(b"hello through the gateway").unwrap();
    let mut echoed = [0u8; 25];
    stream.read_exact(&mut echoed).unwrap();
    assert_eq!(&echoed, b"hello through the gateway");
    let redeemed = gatehouse.wait_for_log(&["ticket_redeemed"]);
    assert!(redeemed.contains(&format!("worker={worker}")), "{redeemed}");
    assert!(!redeemed.contains(&ticket), "the secret is never logged");
    drop(stream);

    // The same ticket a second time is refused, with one deny event.
    let (reply, _stream) = socks_launch(gatehouse.gateway, &tls, &ticket);
    assert_ne!(reply, 0x00, "a reused ticket is refused");
    gatehouse.wait_for_log(&["deny", "reason=\"reused_ticket\"", "fault=\"client\""]);

    // A ticket naming an STA this gateway does not know.
    let unknown = ";40;STA09;AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let (reply, _stream) = socks_launch(gatehouse.gateway, &tls, unknown);
    assert_ne!(reply, 0x00, "an unknown sta is refused");
    gatehouse.wait_for_log(&["deny", "reason=\"unknown_sta\""]);

    assert_eq!(gatehouse.terminate().code(), Some(0));
    std::fs::remove_dir_all(&cwd).unwrap();
}

#[test]
fn sigterm_drains_open_sessions_and_a_second_signal_cuts_them() {
    let cwd = temp_dir("drain");
    let data = cwd.join("data");
    let mut gatehouse = Gatehouse::start_configured(
        &cwd,
        "[engine]\ncores = 1\ndrain_secs = 60\n",
        "text",
        &["--data-dir", data.to_str().unwrap()],
    );
    let tls = trusting(&std::fs::read(data.join("tls/gateway.crt")).unwrap());
    let ticket = gatehouse.issue(echo(1));
    let (reply, mut stream) = socks_launch(gatehouse.gateway, &tls, &ticket);
    assert_eq!(reply, 0x00);

    gatehouse.signal("TERM");
    gatehouse.wait_for_log(&["shutdown_requested", "SIGTERM"]);
    thread::sleep(Duration::from_millis(300));
    assert!(gatehouse.running(), "an open session is drained, not cut");
    stream.write_all(b"still here").unwrap();
    let mut echoed = [0u8; 10];
    stream.read_exact(&mut echoed).unwrap();
    assert_eq!(&echoed, b"still here");

    gatehouse.signal("INT");
    gatehouse.wait_for_log(&["shutdown_cut"]);
    // Well within the 60 s drain.
    assert_eq!(gatehouse.wait_exit().code(), Some(0));
    std::fs::remove_dir_all(&cwd).unwrap();
}
