//! TLS termination on loopback, under both monoio drivers: detection
//! again on the plaintext, resumption, deadlines, split halves.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    reason = "test code: a panic is a failed test"
)]

mod standalone;

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

use gatehouse_engine::detect::{Detection, detect};
use gatehouse_engine::relay::Side;
use gatehouse_engine::tls::{HandshakeError, TlsAcceptor, self_signed};
use gatehouse_wire::detect::Protocol;
use monoio::io::{AsyncReadRent, AsyncReadRentExt, AsyncWriteRentExt};

use standalone::{accept, client_config, connect, join, listen, peer, tls_connect};

fn acceptor() -> (TlsAcceptor, String) {
    let generated = self_signed(&["localhost", "127.0.0.1"]).expect("self-signed");
    let acceptor =
        TlsAcceptor::from_pem(generated.cert_pem.as_bytes(), generated.key_pem.as_bytes())
            .expect("acceptor");
    (acceptor, generated.cert_pem)
}

const TLS13: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];
const TLS12: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS12];

/// Accepts one TLS connection on `listener` and answers `reply` to the
/// SOCKS greeting it expects inside; returns whether it was resumed.
async fn serve_one_greeting(listener: &monoio::net::TcpListener, acceptor: &TlsAcceptor) -> bool {
    let (tcp, _) = accept(listener).await;
    let (outer, replay) = detect(tcp, &Detection::default())
        .await
        .expect("outer detect");
    assert_eq!(outer, Protocol::Tls);
    let tls = acceptor.accept(replay).await.expect("handshake");
    let resumed = tls.resumed();
    let (inner, mut plain) = detect(tls, &Detection::default())
        .await
        .expect("inner detect");
    assert_eq!(inner, Protocol::Socks5);
    let (n, greeting) = plain.read_exact(vec![0u8; 4]).await;
    n.expect("greeting through replay");
    assert_eq!(greeting, b"\x05\x02\x00\x02");
    let (n, _) = plain.write_all(b"\x05\x00".to_vec()).await;
    n.expect("reply");
    let (n, _) = plain.read(Vec::with_capacity(8)).await;
    assert_eq!(n.expect("clean close"), 0, "client closes after the reply");
    resumed
}

fn greet_over_tls(addr: std::net::SocketAddr, config: &Arc<rustls::ClientConfig>) {
    let mut tls = tls_connect(addr, config);
    tls.write_all(b"\x05\x02\x00\x02").unwrap();
    let mut reply = [0u8; 2];
    tls.read_exact(&mut reply).unwrap();
    assert_eq!(reply, [0x05, 0x00]);
    tls.conn.send_close_notify();
    tls.flush().unwrap();
}

on_both_drivers! {
    async fn detects_socks5_inside_tls() {
        let (acceptor, cert) = acceptor();
        let (listener, addr) = listen();
        let config = client_config(&cert, TLS13);
        let client = peer(move || greet_over_tls(addr, &config));
        serve_one_greeting(&listener, &acceptor).await;
        join(client).await;
    }

    async fn resumes_tls13_session_with_ticket() {
        let (acceptor, cert) = acceptor();
        let (listener, addr) = listen();
        let config = client_config(&cert, TLS13);
        let client = peer(move || {
            greet_over_tls(addr, &config);
            greet_over_tls(addr, &config);
        });
        assert!(!serve_one_greeting(&listener, &acceptor).await, "first is full");
        assert!(serve_one_greeting(&listener, &acceptor).await, "second resumes");
        join(client).await;
    }

    async fn resumes_tls12_session() {
        let (acceptor, cert) = acceptor();
        let (listener, addr) = listen();
        let config = client_config(&cert, TLS12);
        let client = peer(move || {
            greet_over_tls(addr, &config);
            greet_over_tls(addr, &config);
        });
        assert!(!serve_one_greeting(&listener, &acceptor).await, "first is full");
        assert!(serve_one_greeting(&listener, &acceptor).await, "second resumes");
        join(client).await;
    }

    async fn refuses_stalled_handshake_at_deadline() {
        let (acceptor, _) = acceptor();
        let acceptor = acceptor.with_handshake_deadline(Duration::from_millis(200));
        let (listener, addr) = listen();
        let client = peer(move || {
            let mut stream = connect(addr);
            stream.write_all(b"\x16\x03\x01").unwrap();
            standalone::read_to_end(&mut stream)
        });
        let (tcp, _) = accept(&listener).await;
        let (_, replay) = detect(tcp, &Detection::default()).await.expect("detect");
        let error = acceptor.accept(replay).await.expect_err("timeout");
        assert!(matches!(error, HandshakeError::Timeout(_)), "{error:?}");
        assert_eq!(error.reason(), "tls_timeout");
        join(client).await;
    }

    async fn rejects_malformed_client_hello_with_alert() {
        let (acceptor, _) = acceptor();
        let (listener, addr) = listen();
        let client = peer(move || {
            let mut stream = connect(addr);
            stream.write_all(b"\x16\x03\x01\x00\x04\x02\x00\x00\x00").unwrap();
            standalone::read_to_end(&mut stream)
        });
        let (tcp, _) = accept(&listener).await;
        let (_, replay) = detect(tcp, &Detection::default()).await.expect("detect");
        let error = acceptor.accept(replay).await.expect_err("rejected");
        assert!(matches!(error, HandshakeError::Rejected(_)), "{error:?}");
        drop(error);
        let answer = join(client).await;
        // An alert record: content type 21.
        assert_eq!(answer.first(), Some(&0x15), "{answer:02x?}");
    }

    async fn refuses_client_closing_mid_handshake() {
        let (acceptor, _) = acceptor();
        let (listener, addr) = listen();
        let client = peer(move || {
            let mut stream = connect(addr);
            stream.write_all(b"\x16\x03\x01\x00\x40").unwrap();
        });
        let (tcp, _) = accept(&listener).await;
        let (_, replay) = detect(tcp, &Detection::default()).await.expect("detect");
        let error = acceptor.accept(replay).await.expect_err("closed");
        assert!(matches!(error, HandshakeError::ClosedEarly), "{error:?}");
        join(client).await;
    }

    async fn split_halves_carry_large_transfers_both_ways() {
        // 1 MiB each way through the split TLS halves, echoed by the
        // gateway: exercises record boundaries, partial feeds and flushes.
        const SIZE: usize = 1 << 20;
        let (acceptor, cert) = acceptor();
        let (listener, addr) = listen();
        let config = client_config(&cert, TLS13);
        let client = peer(move || {
            let mut tls = tls_connect(addr, &config);
            let data: Vec<u8> = (0..SIZE).map(|i| (i % 251) as u8).collect();
            tls.write_all(&data).unwrap();
            tls.conn.send_close_notify();
            tls.flush().unwrap();
            let mut back = Vec::new();
            tls.read_to_end(&mut back).unwrap();
            assert_eq!(back.len(), SIZE);
            assert!(back == data, "echo differs");
        });
        let (tcp, _) = accept(&listener).await;
        let (_, replay) = detect(tcp, &Detection::default()).await.expect("detect");
        let tls = acceptor.accept(replay).await.expect("handshake");
        let (reader, writer) = tls.into_split();
        let copied = standalone::copy(reader, writer).await.expect("echo");
        assert_eq!(copied, SIZE as u64);
        join(client).await;
    }
}

#[test]
fn self_signed_pair_builds_an_acceptor() {
    let generated = self_signed(&["gateway.example"]).unwrap();
    assert!(
        generated
            .cert_pem
            .starts_with("-----BEGIN CERTIFICATE-----")
    );
    assert!(generated.key_pem.contains("PRIVATE KEY"));
    assert!(!format!("{generated:?}").contains(&generated.key_pem));
    TlsAcceptor::from_pem(generated.cert_pem.as_bytes(), generated.key_pem.as_bytes()).unwrap();
}

#[test]
fn refuses_pem_without_certificate() {
    let generated = self_signed(&["localhost"]).unwrap();
    let error = TlsAcceptor::from_pem(b"", generated.key_pem.as_bytes()).unwrap_err();
    assert_eq!(error.to_string(), "no certificate in the certificate pem");
}

#[test]
fn refuses_key_that_does_not_match_certificate() {
    let one = self_signed(&["localhost"]).unwrap();
    let other = self_signed(&["localhost"]).unwrap();
    let error =
        TlsAcceptor::from_pem(one.cert_pem.as_bytes(), other.key_pem.as_bytes()).unwrap_err();
    assert!(
        matches!(error, gatehouse_engine::tls::TlsSetupError::Rustls(_)),
        "{error:?}"
    );
}

#[test]
fn names_missing_pem_file() {
    let missing = std::path::Path::new("/nonexistent/gatehouse/cert.pem");
    let error = TlsAcceptor::from_pem_files(missing, missing).unwrap_err();
    assert_eq!(
        error.to_string(),
        "cannot read /nonexistent/gatehouse/cert.pem"
    );
}
