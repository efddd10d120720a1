//! Reload on SIGHUP with the real `gatehouse run`: a configuration that
//! does not load is refused and the running one stays; a new certificate
//! on disk is presented to new TLS connections while an established
//! session keeps relaying. The second certificate comes from the real
//! `openssl` (Debian package `openssl`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a failed test"
)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use gatehouse_tests::gatehouse::Gatehouse;
use gatehouse_tests::socks::{self, REPLY_NOT_ALLOWED, REPLY_SUCCEEDED, ReadWrite};
use gatehouse_tests::vda_sim::VdaSim;
use rustix::process::Signal;

/// Writes a fresh self-signed ECDSA certificate for `localhost` and its key
/// over `cert` and `key`.
fn openssl_self_signed(cert: &Path, key: &Path) {
    let dir = cert.parent().unwrap();
    let (new_cert, new_key) = (dir.join("next.crt"), dir.join("next.key"));
    let status = Command::new("openssl")
        .args(["req", "-x509", "-nodes", "-days", "2", "-newkey", "ec"])
        .args([
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-subj",
            "/CN=localhost",
        ])
        .args(["-addext", "subjectAltName=DNS:localhost"])
        // webpki refuses a CA certificate as the server's own.
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&new_key)
        .arg("-out")
        .arg(&new_cert)
        .output()
        .unwrap_or_else(|error| panic!("openssl is missing (install openssl): {error}"));
    assert!(status.status.success(), "openssl: {status:?}");
    // Rename into place: the gateway never reads a half-written file.
    std::fs::rename(&new_key, key).unwrap();
    std::fs::rename(&new_cert, cert).unwrap();
}

/// Sends `payload` and expects the worker's echo.
fn echo(stream: &mut impl ReadWrite, payload: &[u8]) {
    stream.write_all(payload).unwrap();
    let mut echoed = vec![0u8; payload.len()];
    stream.read_exact(&mut echoed).unwrap();
    assert_eq!(echoed, payload, "the worker's echo");
}

/// A TLS handshake with `gateway` for a client trusting only `tls`'s
/// roots: `Err` with the client's error when it fails.
fn handshake(gateway: SocketAddr, tls: &Arc<rustls::ClientConfig>) -> Result<(), String> {
    let mut tcp = socks::connect_plain(gateway);
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut connection = rustls::ClientConnection::new(tls.clone(), name).unwrap();
    while connection.is_handshaking() {
        connection
            .complete_io(&mut tcp)
            .map_err(|error| format!("handshake with {gateway}: {error}"))?;
    }
    Ok(())
}

#[test]
fn sighup_presents_a_new_certificate_to_new_connections_while_a_session_keeps_relaying() {
    let sim = VdaSim::start();
    let mut gatehouse = Gatehouse::start("");
    let trusts_a = gatehouse.tls_client();
    let ticket = gatehouse.issue(sim.ica());
    let mut session = socks::connect_tls(gatehouse.gateway(), &trusts_a);
    assert_eq!(socks::launch(&mut session, &ticket), REPLY_SUCCEEDED);
    socks::expect_detect_and_echo(&mut session, b"before the reload");

    // A configuration that does not load: refused, the old one stays.
    let cert = gatehouse.certificate();
    let key = cert.with_file_name("gateway.key");
    let config = cert.ancestors().nth(3).unwrap().join("gatehouse.toml");
    let good = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("{good}\n[gateway]\nno_such_key = 1\n")).unwrap();
    gatehouse.signal(Signal::HUP);
    let failed = gatehouse.wait_for_event("config_reload_failed", &[]);
    assert!(
        failed.field("error").unwrap().contains("no_such_key"),
        "{}",
        failed.json
    );
    handshake(gatehouse.gateway(), &trusts_a).expect("still certificate A");

    // Certificate B on disk, the configuration fixed: SIGHUP applies it.
    std::fs::write(&config, &good).unwrap();
    let cert_a = cert.with_file_name("a.crt");
    std::fs::copy(&cert, &cert_a).unwrap();
    openssl_self_signed(&cert, &key);
    let trusts_b = socks::trusting(&cert);
    gatehouse.signal(Signal::HUP);
    let reloaded = gatehouse.wait_for_event("config_reloaded", &[("restart_needed", "")]);
    assert_eq!(
        reloaded.json["fields"]["certificate_replaced"].as_bool(),
        Some(true),
        "{}",
        reloaded.json
    );

    // The established session keeps relaying over its old handshake.
    echo(&mut session, b"after the reload");
    // New connections see certificate B, and only B.
    handshake(gatehouse.gateway(), &trusts_b).expect("new connections present B");
    // A fresh client (no session to resume: resumption skips the
    // certificate) trusting only A is refused.
    let fresh_a = socks::trusting(&cert_a);
    let refused = handshake(gatehouse.gateway(), &fresh_a);
    assert!(refused.is_err(), "A is gone for new connections");
    let second = gatehouse.issue(sim.ica());
    let mut fresh = socks::connect_tls(gatehouse.gateway(), &trusts_b);
    assert_eq!(socks::launch(&mut fresh, &second), REPLY_SUCCEEDED);
    socks::expect_detect_and_echo(&mut fresh, b"a new session on B");
    echo(&mut session, b"the old one still runs");
    drop(fresh);
    drop(session);
    gatehouse.stop();
    assert_eq!(sim.stop().code(), Some(0));
}

#[test]
fn sighup_applies_a_new_remote_sta_map_to_the_next_redemption() {
    let sim = VdaSim::start();
    let remote = Gatehouse::start("[sta]\nid = \"STA02\"\n");
    let mut gateway = Gatehouse::start("");
    let tls = gateway.tls_client();

    // STA02 is unknown: refused.
    let first = remote.issue(sim.ica());
    let mut stream = socks::connect_tls(gateway.gateway(), &tls);
    assert_eq!(socks::launch(&mut stream, &first), REPLY_NOT_ALLOWED);
    socks::expect_closed(&mut stream);
    gateway.wait_for_event("deny", &[("reason", "unknown_sta")]);

    // Add STA02 to the map and reload: the next ticket is redeemed there.
    let config = gateway
        .certificate()
        .ancestors()
        .nth(3)
        .unwrap()
        .join("gatehouse.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!("[sta.remote]\nSTA02 = \"{}\"\n", remote.sta_url()));
    std::fs::write(&config, text).unwrap();
    gateway.signal(Signal::HUP);
    let reloaded = gateway.wait_for_event("config_reloaded", &[("restart_needed", "")]);
    assert_eq!(
        reloaded.json["fields"]["sta_remotes_replaced"].as_bool(),
        Some(true),
        "{}",
        reloaded.json
    );
    let second = remote.issue(sim.ica());
    let mut stream = socks::connect_tls(gateway.gateway(), &tls);
    assert_eq!(socks::launch(&mut stream, &second), REPLY_SUCCEEDED);
    socks::expect_detect_and_echo(&mut stream, b"through the reloaded map");
    drop(stream);
    gateway.stop();
    remote.stop();
    assert_eq!(sim.stop().code(), Some(0));
}

#[test]
fn the_appliance_configuration_in_deploy_passes_check_config() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/gatehouse.toml");
    let output = Command::new(gatehouse_tests::bins::gatehouse())
        .arg("check-config")
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}: {}",
        file.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout), "ok\n");
}
