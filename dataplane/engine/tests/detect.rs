//! Detection on real loopback connections, under both monoio drivers.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    reason = "test code: a panic is a failed test"
)]

mod standalone;

use std::io::Write;
use std::time::Duration;

use gatehouse_engine::detect::{Detection, Refused, detect};
use gatehouse_wire::detect::{DetectConfig, Protocol};
use monoio::io::AsyncReadRent;

use standalone::{accept, connect, listen, peer};

/// Sends `chunks` with a pause between them, then half-closes; the
/// gateway side detects and must read back every byte through the replay.
async fn detect_sent(
    chunks: &'static [&'static [u8]],
    detection: Detection,
) -> (Protocol, Vec<u8>) {
    let (listener, addr) = listen();
    let client = peer(move || {
        let mut stream = connect(addr);
        for chunk in chunks {
            stream.write_all(chunk).unwrap();
            std::thread::sleep(Duration::from_millis(30));
        }
        stream.shutdown(std::net::Shutdown::Write).unwrap();
        // Hold the socket until the gateway is done reading.
        standalone::read_to_end(&mut stream)
    });
    let (stream, _) = accept(&listener).await;
    let (protocol, mut replay) = detect(stream, &detection).await.expect("detected");
    let mut seen = Vec::new();
    loop {
        let (n, buf) = replay.read(Vec::with_capacity(7)).await;
        let n = n.expect("read through replay");
        if n == 0 {
            break;
        }
        seen.extend_from_slice(&buf);
    }
    drop(replay);
    standalone::join(client).await;
    (protocol, seen)
}

async fn refusal_for(send: &'static [u8], hold: bool, detection: Detection) -> Refused {
    let (listener, addr) = listen();
    let client = peer(move || {
        let mut stream = connect(addr);
        stream.write_all(send).unwrap();
        if hold {
            // Keep the connection open and silent until the gateway closes it.
            standalone::read_to_end(&mut stream);
        }
    });
    let (stream, _) = accept(&listener).await;
    let refused = detect(stream, &detection).await.expect_err("refused");
    standalone::join(client).await;
    refused
}

fn with_raw_ica() -> Detection {
    Detection {
        config: DetectConfig {
            raw_ica: true,
            ..DetectConfig::default()
        },
        ..Detection::default()
    }
}

fn with_deadline(deadline: Duration) -> Detection {
    Detection {
        deadline,
        ..Detection::default()
    }
}

on_both_drivers! {
    async fn detects_tls_and_replays_every_byte() {
        const HELLO: &[u8] = b"\x16\x03\x01\x00\x05hello, then more";
        let (protocol, seen) = detect_sent(&[HELLO], Detection::default()).await;
        assert_eq!(protocol, Protocol::Tls);
        assert_eq!(seen, HELLO);
    }

    async fn detects_cgp_sent_in_pieces() {
        let (protocol, seen) =
            detect_sent(&[b"\x1aCG", b"P/0", b"1\x05\x01bind"], Detection::default()).await;
        assert_eq!(protocol, Protocol::Cgp);
        assert_eq!(seen, b"\x1aCGP/01\x05\x01bind");
    }

    async fn detects_socks5_greeting() {
        let (protocol, seen) = detect_sent(&[b"\x05\x02\x00\x02"], Detection::default()).await;
        assert_eq!(protocol, Protocol::Socks5);
        assert_eq!(seen, b"\x05\x02\x00\x02");
    }

    async fn detects_http_request_line() {
        const REST: &[u8] = b"T /vpn/index.html HTTP/1.1\r\nHost: x\r\n\r\n";
        let (protocol, seen) = detect_sent(&[b"GE", REST], Detection::default()).await;
        assert_eq!(protocol, Protocol::Http);
        assert_eq!(seen, [&b"GE"[..], REST].concat());
    }

    async fn detects_raw_ica_when_enabled() {
        let (protocol, seen) = detect_sent(&[b"\x7f\x7fICA\x00rest"], with_raw_ica()).await;
        assert_eq!(protocol, Protocol::RawIca);
        assert_eq!(seen, b"\x7f\x7fICA\x00rest");
    }

    async fn refuses_raw_ica_when_disabled() {
        let refused = refusal_for(b"\x7f\x7fICA\x00", false, Detection::default()).await;
        assert!(matches!(refused, Refused::UnknownProtocol), "{refused:?}");
        assert_eq!(refused.reason(), "unknown_protocol");
    }

    async fn refuses_unknown_first_bytes() {
        let refused = refusal_for(b"\x00\x01\x02", false, Detection::default()).await;
        assert!(matches!(refused, Refused::UnknownProtocol), "{refused:?}");
    }

    async fn refuses_silent_client_at_deadline() {
        let started = std::time::Instant::now();
        let refused = refusal_for(b"", true, with_deadline(Duration::from_millis(200))).await;
        assert!(matches!(refused, Refused::Timeout(_)), "{refused:?}");
        assert_eq!(refused.reason(), "detect_timeout");
        assert!(started.elapsed() >= Duration::from_millis(200));
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    async fn refuses_partial_signature_at_deadline() {
        let refused = refusal_for(b"\x1aCGP", true, with_deadline(Duration::from_millis(200))).await;
        assert!(matches!(refused, Refused::Timeout(_)), "{refused:?}");
    }

    async fn refuses_prefix_longer_than_byte_cap_without_waiting() {
        let detection = Detection {
            config: DetectConfig {
                max_bytes: 4,
                raw_ica: false,
            },
            ..Detection::default()
        };
        let started = std::time::Instant::now();
        // "OPT" can only become "OPTIONS " (8 bytes): over the cap of 4.
        let refused = refusal_for(b"OPT", true, detection).await;
        assert!(
            matches!(refused, Refused::TooManyBytes { at_least: 8, max: 4 }),
            "{refused:?}"
        );
        assert_eq!(refused.reason(), "too_many_bytes");
        assert!(started.elapsed() < Duration::from_secs(4));
    }

    async fn refuses_client_that_closes_before_detection() {
        let refused = refusal_for(b"\x1aC", false, Detection::default()).await;
        assert!(matches!(refused, Refused::ClosedEarly { read: 2 }), "{refused:?}");
        assert_eq!(refused.reason(), "detect_closed_early");
    }
}
