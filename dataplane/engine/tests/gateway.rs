//! The gateway handler through a real engine (`Engine::start` with a
//! `GatewayFactory` and the in-memory redeemer): TLS-wrapped and plaintext
//! launches, refusals counted by reason (detection, listener policy, every
//! SOCKS reply code), drain with a live launch. Loopback, both drivers.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a failed test"
)]

mod support;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::time::{Duration, Instant};

use gatehouse_engine::detect::Detection;
use gatehouse_engine::{CoreId, Driver, GatewayConfig, MemoryRedeemer, RelayMode, WorkerAddr};
use gatehouse_wire::detect::DetectConfig;
use gatehouse_wire::socks5::{Address, Command, Reply};
use support::launch::*;
use support::*;

/// Per-core redeemers knowing `tickets`, each usable once.
fn memory(
    tickets: Vec<(&'static [u8], SocketAddr)>,
) -> impl Fn(CoreId) -> MemoryRedeemer + Send + Sync + 'static {
    move |_| {
        let redeemer = MemoryRedeemer::new();
        for (ticket, worker) in &tickets {
            redeemer.insert(*ticket, WorkerAddr(*worker));
        }
        redeemer
    }
}

fn relays_a_tls_wrapped_socks_launch_to_an_echo_worker(driver: Driver) {
    let echo = Echo::start(4);
    let (acceptor, client_config) = tls_pair();
    let engine = start_gateway(
        config(driver, RelayMode::Auto),
        GatewayConfig::tls(acceptor),
        memory(vec![(TICKET, echo.addr)]),
    );
    let mut tls = tls_connect(addr(&engine), &client_config);
    assert_eq!(
        socks_exchange(&mut tls, &connect_ticket(TICKET)),
        Reply::Succeeded
    );
    let payload = pattern(100_000, 1);
    assert!(echo_round(&mut tls, &payload) == payload, "echo differs");
    // Half-close through TLS: close_notify and FIN; the worker's FIN comes
    // back as close_notify and FIN.
    tls.conn.send_close_notify();
    tls.flush().unwrap();
    tls.sock.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    tls.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());

    let stats = wait_for_stats(&engine, |s| s.closed == 1);
    assert_eq!(stats.closed, 1);
    assert_eq!(stats.refusals.total(), 0, "{:?}", stats.refusals);
    assert_eq!((stats.bytes_up, stats.bytes_down), (100_000, 100_000));
    engine.shutdown(Duration::ZERO);
    engine.join().unwrap();
}
under_each_driver!(relays_a_tls_wrapped_socks_launch_to_an_echo_worker);

fn relays_a_plaintext_socks_launch_with_pipelined_bytes(driver: Driver, relay: RelayMode) {
    let echo = Echo::start(4);
    let engine = start_gateway(
        config(driver, relay),
        GatewayConfig::plaintext(),
        memory(vec![(TICKET, echo.addr)]),
    );
    let mut first = connect_ticket(TICKET);
    first.extend_from_slice(b"early|");
    let (mut stream, reply) = plain_launch(addr(&engine), &first);
    assert_eq!(reply, Reply::Succeeded);
    assert_eq!(
        read_n(&mut stream, 6),
        b"early|",
        "pipelined bytes reach the worker"
    );
    let payload = pattern(64 * 1_024, 2);
    assert!(echo_round(&mut stream, &payload) == payload, "echo differs");
    stream.shutdown(Shutdown::Write).unwrap();
    assert!(read_to_end(&mut stream).is_empty());

    let stats = wait_for_stats(&engine, |s| s.closed == 1);
    let relayed = 6 + payload.len() as u64;
    assert_eq!((stats.bytes_up, stats.bytes_down), (relayed, relayed));
    assert_eq!(stats.refusals.total(), 0, "{:?}", stats.refusals);
    engine.shutdown(Duration::ZERO);
    engine.join().unwrap();
}
under_each_driver_and_relay!(relays_a_plaintext_socks_launch_with_pipelined_bytes);

fn counts_detection_timeout_byte_cap_and_unknown_bytes_by_reason(driver: Driver) {
    let gateway = GatewayConfig {
        detection: Detection {
            deadline: Duration::from_millis(200),
            config: DetectConfig {
                max_bytes: 4,
                raw_ica: false,
            },
            ..Detection::default()
        },
        ..GatewayConfig::plaintext()
    };
    let engine = start_gateway(config(driver, RelayMode::Auto), gateway, |_: CoreId| {
        MemoryRedeemer::new()
    });
    let started = Instant::now();
    let mut silent = connect(addr(&engine));
    assert!(sees_close(&mut silent, Duration::from_secs(5)));
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "not before the deadline"
    );

    // "OPT" can only become "OPTIONS " (8 bytes): over the cap of 4.
    let mut long = connect(addr(&engine));
    long.write_all(b"OPT").unwrap();
    assert!(sees_close(&mut long, Duration::from_secs(5)));

    let mut unknown = connect(addr(&engine));
    unknown.write_all(b"\x00\x01\x02").unwrap();
    assert!(sees_close(&mut unknown, Duration::from_secs(5)));

    let stats = wait_for_stats(&engine, |s| s.closed == 3);
    assert_eq!(
        stats.refusals.get("detect_timeout"),
        1,
        "{:?}",
        stats.refusals
    );
    assert_eq!(stats.refusals.get("too_many_bytes"), 1);
    assert_eq!(stats.refusals.get("unknown_protocol"), 1);
    assert_eq!(stats.refusals.total(), 3);
    assert_eq!(stats.pending, 0, "refused handshakes free their slot");
    engine.shutdown(Duration::ZERO);
    engine.join().unwrap();
}
under_each_driver!(counts_detection_timeout_byte_cap_and_unknown_bytes_by_reason);

fn a_tls_listener_takes_only_tls_and_a_plaintext_listener_offers_none(driver: Driver) {
    let echo = Echo::start(4);
    let (acceptor, client_config) = tls_pair();
    let tls_engine = start_gateway(
        config(driver, RelayMode::Auto),
        GatewayConfig::tls(acceptor),
        memory(vec![(TICKET, echo.addr)]),
    );
    // Plaintext SOCKS on a TLS listener: closed without a method selection.
    let mut plain = connect(addr(&tls_engine));
    plain.write_all(b"\x05\x02\x00\x02").unwrap();
    assert!(read_to_end(&mut plain).is_empty(), "no answer in plaintext");
    // CGP outside TLS, too.
    let mut cgp = connect(addr(&tls_engine));
    cgp.write_all(b"\x1aCGP/01").unwrap();
    assert!(sees_close(&mut cgp, Duration::from_secs(5)));
    // HTTP inside TLS: recognised, not served here.
    let mut http = tls_connect(addr(&tls_engine), &client_config);
    http.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let _ = http.read_to_end(&mut answer);
    assert!(answer.is_empty(), "no http answer");
    let stats = wait_for_stats(&tls_engine, |s| s.closed == 3);
    assert_eq!(
        stats.refusals.get("tls_required"),
        2,
        "{:?}",
        stats.refusals
    );
    assert_eq!(stats.refusals.get("unsupported_protocol"), 1);
    tls_engine.shutdown(Duration::ZERO);
    tls_engine.join().unwrap();

    let plain_engine = start_gateway(
        config(driver, RelayMode::Auto),
        GatewayConfig::plaintext(),
        memory(vec![(TICKET, echo.addr)]),
    );
    let mut tls = tls_connect(addr(&plain_engine), &client_config);
    assert!(
        tls.write_all(b"\x05\x01\x00")
            .and_then(|()| tls.flush())
            .is_err()
    );
    // CGP is served on a plaintext listener: a malformed BIND is refused.
    let mut cgp = connect(addr(&plain_engine));
    cgp.write_all(b"\x1aCGP/01\x05\x01bind").unwrap();
    assert!(sees_close(&mut cgp, Duration::from_secs(5)));
    let mut http = connect(addr(&plain_engine));
    http.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    assert!(sees_close(&mut http, Duration::from_secs(5)));
    let stats = wait_for_stats(&plain_engine, |s| s.closed == 3);
    assert_eq!(
        stats.refusals.get("tls_not_offered"),
        1,
        "{:?}",
        stats.refusals
    );
    assert_eq!(stats.refusals.get("cgp_malformed"), 1);
    assert_eq!(stats.refusals.get("unsupported_protocol"), 1);
    assert_eq!(echo.accepted(), 0, "nothing reached a worker");
    plain_engine.shutdown(Duration::ZERO);
    plain_engine.join().unwrap();
}
under_each_driver!(a_tls_listener_takes_only_tls_and_a_plaintext_listener_offers_none);

fn answers_each_socks_refusal_with_its_reply_code(driver: Driver) {
    let engine = start_gateway(
        config(driver, RelayMode::Auto),
        GatewayConfig::plaintext(),
        memory(vec![(b"ticket-to-a-closed-port", closed_port())]),
    );
    let cases: [(Vec<u8>, Reply, &str); 5] = [
        (connect_ticket(TICKET), Reply::NotAllowed, "ticket_unknown"),
        (
            connect_ticket(b"ticket-to-a-closed-port"),
            Reply::ConnectionRefused,
            "backend_refused",
        ),
        (
            request(Command::Bind, Address::Domain(TICKET)),
            Reply::CommandNotSupported,
            "unsupported_command",
        ),
        (
            request(Command::UdpAssociate, Address::Ipv4([0, 0, 0, 0].into())),
            Reply::CommandNotSupported,
            "unsupported_command",
        ),
        (
            b"\x05\x01\x00\x09\x00\x00\x00\x00\x05\xd6".to_vec(),
            Reply::AddressTypeNotSupported,
            "unsupported_address_type",
        ),
    ];
    for (request, expected, reason) in &cases {
        let (mut stream, reply) = plain_launch(addr(&engine), request);
        assert_eq!(reply, *expected, "{reason}");
        assert!(
            read_to_end(&mut stream).is_empty(),
            "closed after the reply"
        );
    }
    let stats = wait_for_stats(&engine, |s| s.closed == 5);
    assert_eq!(
        stats.refusals.get("ticket_unknown"),
        1,
        "{:?}",
        stats.refusals
    );
    assert_eq!(stats.refusals.get("backend_refused"), 1);
    assert_eq!(stats.refusals.get("unsupported_command"), 2);
    assert_eq!(stats.refusals.get("unsupported_address_type"), 1);
    assert_eq!(stats.refusals.total(), 5);
    engine.shutdown(Duration::ZERO);
    engine.join().unwrap();
}
under_each_driver!(answers_each_socks_refusal_with_its_reply_code);

fn drain_lets_an_active_socks_launch_finish(driver: Driver) {
    let echo = Echo::start(4);
    let (acceptor, client_config) = tls_pair();
    let engine = start_gateway(
        config(driver, RelayMode::Auto),
        GatewayConfig::tls(acceptor),
        memory(vec![(TICKET, echo.addr)]),
    );
    let listen = addr(&engine);
    let mut tls = tls_connect(listen, &client_config);
    assert_eq!(
        socks_exchange(&mut tls, &connect_ticket(TICKET)),
        Reply::Succeeded
    );
    assert_eq!(echo_round(&mut tls, b"before"), b"before");

    engine.shutdown(Duration::from_secs(10));
    if let Ok(mut late) = std::net::TcpStream::connect_timeout(&listen, IO_TIMEOUT) {
        let _ = late.write_all(b"\x05\x01\x00");
        assert!(
            sees_close(&mut late, Duration::from_secs(5)),
            "a late connection is not served"
        );
    }
    assert_eq!(
        echo_round(&mut tls, b"during"),
        b"during",
        "the launch lives on"
    );
    drop(tls);
    let stopping = Instant::now();
    let stats = engine.join().unwrap();
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "the core exits when its last session ends"
    );
    assert_eq!(stats[0].drain_cuts, 0);
    assert_eq!(stats[0].closed, 1);
    assert_eq!(echo.accepted(), 1);
}
under_each_driver!(drain_lets_an_active_socks_launch_finish);

fn forwards_http_to_the_web_socket_behind_a_proxy_header(driver: Driver) {
    use gatehouse_engine::WebForward;
    use gatehouse_wire::proxy;
    use std::os::unix::net::UnixListener;

    let dir = std::env::temp_dir().join(format!(
        "gatehouse-engine-web-{}-{driver:?}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let socket = dir.join("web.sock");
    let _ = std::fs::remove_file(&socket);
    let listener = UnixListener::bind(&socket).unwrap();
    // The web side: reads the header and the request, answers, closes.
    let web = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut got = Vec::new();
        let mut chunk = [0; 256];
        let request = b"GET / HTTP/1.1\r\n\r\n";
        let header = loop {
            let n = stream.read(&mut chunk).unwrap();
            assert!(n > 0, "closed before the request");
            got.extend_from_slice(&chunk[..n]);
            if let Ok(gatehouse_wire::Progress::Done { value, consumed }) = proxy::decode(&got) {
                if got.len() >= consumed + request.len() {
                    assert_eq!(&got[consumed..], request);
                    break value;
                }
            }
        };
        stream
            .write_all(b"HTTP/1.1 204 No Content\r\n\r\n")
            .unwrap();
        header
    });
    let mut gateway = GatewayConfig::plaintext();
    gateway.web = Some(WebForward::new(socket.clone()));
    let engine = start_gateway(config(driver, RelayMode::Auto), gateway, memory(vec![]));
    let mut client = connect(addr(&engine));
    client.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    let mut answer = Vec::new();
    client.read_to_end(&mut answer).unwrap();
    assert_eq!(answer, b"HTTP/1.1 204 No Content\r\n\r\n");
    let header = web.join().unwrap();
    let addresses = header.addresses.expect("a PROXY header with addresses");
    assert_eq!(addresses.source, client.local_addr().unwrap());
    assert_eq!(addresses.destination, addr(&engine));
    assert!(!header.tls);
    engine.shutdown(Duration::ZERO);
    engine.join().unwrap();

    // Without the web side listening: refused, counted.
    std::fs::remove_file(&socket).unwrap();
    let mut gateway = GatewayConfig::plaintext();
    gateway.web = Some(WebForward::new(socket));
    let engine = start_gateway(config(driver, RelayMode::Auto), gateway, memory(vec![]));
    let mut client = connect(addr(&engine));
    client.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    assert!(sees_close(&mut client, Duration::from_secs(5)));
    let stats = wait_for_stats(&engine, |s| s.closed == 1);
    assert_eq!(stats.refusals.get("web_unavailable"), 1);
    engine.shutdown(Duration::ZERO);
    engine.join().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}
under_each_driver!(forwards_http_to_the_web_socket_behind_a_proxy_header);
