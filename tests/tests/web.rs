//! User flow: a browser opens the gateway. The data plane detects HTTP
//! inside TLS on the gateway listener and forwards the connection to the
//! control plane's web side with the client's address (PROXY v2 header);
//! `GET /` redirects to the login page, which is served. The real `curl`
//! is the client, trusting only the certificate the gateway generated.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a failed test"
)]

use std::io::{Read, Write};
use std::process::{Command, Stdio};

use gatehouse_tests::gatehouse::{Gatehouse, count};
use gatehouse_tests::socks;

fn curl(gatehouse: &Gatehouse, path: &str) -> String {
    let port = gatehouse.gateway().port();
    let output = Command::new("curl")
        .args(["--silent", "--show-error", "--include", "--max-time", "20"])
        .arg("--cacert")
        .arg(gatehouse.certificate())
        .args(["--resolve", &format!("localhost:{port}:127.0.0.1")])
        .arg(format!("https://localhost:{port}{path}"))
        .stdin(Stdio::null())
        .output()
        .expect("curl runs (.ci/run installs it)");
    assert!(
        output.status.success(),
        "curl {path}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn a_browser_is_sent_from_the_root_to_the_login_page_over_tls() {
    let mut gatehouse = Gatehouse::start("");
    let root = curl(&gatehouse, "/");
    assert!(root.starts_with("HTTP/1.1 302"), "{root}");
    assert!(
        root.to_ascii_lowercase()
            .contains("location: /vpn/index.html"),
        "{root}"
    );
    let page = curl(&gatehouse, "/vpn/index.html");
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    for field in [r#"name="login""#, r#"name="passwd""#, r#"name="passwd1""#] {
        assert!(page.contains(field), "the login form has {field}: {page}");
    }
    assert!(page.contains(r#"action="/cgi/login""#), "{page}");

    let request = gatehouse.wait_for_event("web_request", &[("path", "/vpn/index.html")]);
    let peer = request.field("peer").unwrap();
    assert!(
        peer.starts_with("127.0.0.1:"),
        "the control plane sees the client's address, not the core's: {peer}"
    );
    assert_eq!(request.json["fields"]["tls"].as_bool(), Some(true));
    assert_eq!(request.json["fields"]["status"].as_u64(), Some(200));
    let events = gatehouse.stop();
    assert_eq!(count(&events, "web_request", &[]), 2);
    assert_eq!(
        count(&events, "session_closed", &[("proto", "http+tls")]),
        2
    );
}

#[test]
fn plain_http_on_a_tls_listener_is_refused() {
    let mut gatehouse = Gatehouse::start("");
    let mut stream = socks::connect_plain(gatehouse.gateway());
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    assert!(answer.is_empty(), "no answer in plaintext");
    gatehouse.wait_for_event("session_closed", &[("reason", "tls_required")]);
    let events = gatehouse.stop();
    assert_eq!(count(&events, "web_request", &[]), 0);
}
