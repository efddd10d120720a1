//! User flow: a launch. A client gets a ticket from the STA over the XML
//! endpoint and reaches the worker (`vda-sim`) through the gateway with a
//! SOCKSv5 CONNECT carrying the ticket: over TLS with a rustls client that
//! trusts only the certificate the gateway generated, and with the real
//! `curl` on a plaintext listener (curl cannot speak TLS to a SOCKS proxy).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a failed test"
)]

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use gatehouse_tests::TIMEOUT;
use gatehouse_tests::gatehouse::{Gatehouse, count};
use gatehouse_tests::socks::{self, ICA_DETECT, REPLY_SUCCEEDED};
use gatehouse_tests::vda_sim::VdaSim;

#[test]
fn a_ticket_from_the_xml_endpoint_opens_a_socks_launch_over_tls_to_the_worker() {
    let sim = VdaSim::start();
    let mut gatehouse = Gatehouse::start("");
    assert!(gatehouse.tls(), "the gateway listener is TLS by default");
    let ticket = gatehouse.issue(sim.ica());
    assert!(ticket.starts_with(";40;STA01;"), "{ticket}");

    let mut stream = socks::connect_tls(gatehouse.gateway(), &gatehouse.tls_client());
    assert_eq!(socks::launch(&mut stream, &ticket), REPLY_SUCCEEDED);
    socks::expect_detect_and_echo(&mut stream, b"hello through the gateway");
    // The relay keeps going: a second, larger round trip.
    let bulk: Vec<u8> = (0..64 * 1_024).map(|i| (i % 251) as u8).collect();
    stream.write_all(&bulk).unwrap();
    let mut echoed = vec![0u8; bulk.len()];
    stream.read_exact(&mut echoed).unwrap();
    assert!(echoed == bulk, "64 KiB come back unchanged");

    let worker = sim.ica().to_string();
    let redeemed = gatehouse.wait_for_event(
        "ticket_redeemed",
        &[("proto", "socks5"), ("worker", &worker)],
    );
    let masked = redeemed.field("ticket").unwrap();
    assert!(
        !masked.contains(&ticket[10..]),
        "the secret is never logged"
    );
    stream.conn.send_close_notify();
    stream.flush().unwrap();
    drop(stream);

    let events = gatehouse.stop();
    assert_eq!(count(&events, "ticket_redeemed", &[]), 1);
    assert_eq!(count(&events, "deny", &[]), 0);
    assert_eq!(sim.stop().code(), Some(0));
}

#[test]
fn curl_launches_through_a_plaintext_listener_and_sees_the_worker() {
    let curl = which_curl();
    let sim = VdaSim::start();
    let mut gatehouse = Gatehouse::start("[gateway]\nplaintext = true\n");
    assert!(!gatehouse.tls(), "plaintext = true turns TLS off");
    let ticket = gatehouse.issue(sim.ica());

    // curl refuses ';' in a URL's host name, but `--connect-to` takes the
    // ticket as the host to connect to, and `--socks5-hostname` hands that
    // name to the proxy unresolved: the CONNECT's ATYP 03 text. The telnet
    // scheme sends stdin and prints what arrives, byte for byte.
    let mut child = Command::new(curl)
        .args(["--silent", "--show-error", "--max-time", "3"])
        .arg("--socks5-hostname")
        .arg(gatehouse.gateway().to_string())
        .arg("--connect-to")
        .arg(format!("::{ticket}:{}", socks::ICA_PORT))
        .arg("telnet://worker.invalid:1494")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"hello from curl\n")
        .unwrap();
    // curl holds the session until --max-time (exit 28); bound it anyway.
    let deadline = Instant::now() + TIMEOUT;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("curl did not exit within {TIMEOUT:?}");
        }
        thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        matches!(output.status.code(), Some(0 | 28)),
        "curl: {:?} {stderr}",
        output.status
    );
    let mut expected = ICA_DETECT.to_vec();
    expected.extend_from_slice(b"hello from curl\n");
    assert_eq!(
        output.stdout, expected,
        "curl got the worker's detect string, then its echo ({stderr})"
    );

    let worker = sim.ica().to_string();
    gatehouse.wait_for_event(
        "ticket_redeemed",
        &[("proto", "socks5"), ("worker", &worker)],
    );
    let events = gatehouse.stop();
    assert_eq!(count(&events, "ticket_redeemed", &[]), 1);
    assert_eq!(sim.stop().code(), Some(0));
}

/// The `curl` command; fails the test (never skips it) when missing.
fn which_curl() -> &'static str {
    let found = Command::new("curl")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    assert!(
        found,
        "the `curl` command is missing: install the Debian package `curl` \
         (`.ci/run` does)"
    );
    "curl"
}
