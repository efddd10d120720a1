//! The SOCKSv5 handler on loopback, under both monoio drivers: launches
//! relayed to an echo worker (plain, inside TLS, and driven by curl) and
//! every refusal code.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    reason = "test code: a panic is a failed test"
)]

mod standalone;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream as StdTcpStream};
use std::time::Duration;

use gatehouse_channel::{DenyReason, RedeemKind};
use gatehouse_engine::detect::{Detection, detect};
use gatehouse_engine::redeem::{MemoryRedeemer, RedeemError, Redeemed, TicketRedeemer};
use gatehouse_engine::relay::Side;
use gatehouse_engine::replay::Replay;
use gatehouse_engine::socks::{Launch, Refused, SocksConfig, SocksOutcome, serve};
use gatehouse_engine::tls::{TlsAcceptor, self_signed};
use gatehouse_engine::{ClientAddr, SessionId, WorkerAddr};
use gatehouse_wire::detect::Protocol;
use gatehouse_wire::socks5::{
    Address, Command, Method, Refusal, Reply, decode_reply, encode_greeting, encode_request,
};
use monoio::net::{TcpListener, TcpStream};

use standalone::{accept, connect, copy, echo_backend, join, listen, peer, read_to_end};

const TICKET: &[u8] = b";40;STA01;ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";

/// The bytes of a CONNECT request for `address`.
fn request(command: Command, address: Address<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    encode_request(command, &address, 1494, &mut out).unwrap();
    out
}

/// Client side up to the reply: no-auth greeting, `request` (plus any
/// pipelined bytes in the same write); returns the stream and the reply.
fn handshake(addr: SocketAddr, request: &[u8]) -> (StdTcpStream, Reply) {
    let mut stream = connect(addr);
    let mut greeting = Vec::new();
    encode_greeting(&[Method::NoAuth, Method::UserPass], &mut greeting);
    stream.write_all(&greeting).unwrap();
    let mut selection = [0u8; 2];
    stream.read_exact(&mut selection).unwrap();
    assert_eq!(selection, [0x05, 0x00]);
    stream.write_all(request).unwrap();
    let mut reply = [0u8; 10];
    stream.read_exact(&mut reply).unwrap();
    let (reply, bound) = decode_reply(&reply).unwrap().done().unwrap().0;
    assert_eq!(bound, SocketAddr::from(([0, 0, 0, 0], 0)));
    (stream, reply)
}

/// Client side of a refused request: the reply, then the gateway closes.
fn refused_reply(addr: SocketAddr, request: Vec<u8>) -> (Reply, Vec<u8>) {
    let (mut stream, reply) = handshake(addr, &request);
    (reply, read_to_end(&mut stream))
}

/// Gateway side on a plaintext listener: accept, detect, SOCKS.
async fn gateway<R: TicketRedeemer>(
    listener: &TcpListener,
    redeemer: &R,
    config: &SocksConfig,
) -> SocksOutcome<Replay<TcpStream>> {
    let (tcp, peer_addr) = accept(listener).await;
    let (protocol, replay) = detect(tcp, &Detection::default()).await.expect("detect");
    assert_eq!(protocol, Protocol::Socks5);
    serve(replay, ClientAddr(peer_addr), redeemer, config).await
}

/// Relays a launch both ways until both directions are closed.
async fn relay<S: Side>(launch: Launch<S>) -> (std::io::Result<u64>, std::io::Result<u64>) {
    let (client_read, client_write) = launch.client.into_split();
    let (backend_read, backend_write) = Side::into_split(launch.backend);
    monoio::join!(
        copy(client_read, backend_write),
        copy(backend_read, client_write)
    )
}

fn expect_launch<S>(outcome: SocksOutcome<S>) -> Launch<S> {
    match outcome {
        SocksOutcome::Relay(launch) => launch,
        SocksOutcome::Refuse { refused, .. } => panic!("refused: {refused:?}"),
    }
}

fn expect_refusal<S>(outcome: SocksOutcome<S>) -> (Refused, Option<SessionId>) {
    match outcome {
        SocksOutcome::Relay(_) => panic!("relayed a launch that should be refused"),
        SocksOutcome::Refuse { refused, session } => (refused, session),
    }
}

/// A redeemer that never answers.
struct SilentRedeemer;

impl TicketRedeemer for SilentRedeemer {
    async fn redeem_as(
        &self,
        _kind: RedeemKind,
        _ticket: &[u8],
        _client: ClientAddr,
    ) -> Result<Redeemed, RedeemError> {
        std::future::pending().await
    }
}

/// A listener whose accept queue is full, so a new SYN gets no answer.
fn unresponsive_worker() -> (socket2::Socket, Vec<StdTcpStream>, SocketAddr) {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket
        .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    socket.listen(0).unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..16 {
        match StdTcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(stream) => fillers.push(stream),
            Err(_) => return (socket, fillers, addr),
        }
    }
    panic!("accept queue never filled");
}

/// A loopback port with nothing listening.
fn closed_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

fn short(deadline_ms: u64) -> SocksConfig {
    SocksConfig {
        deadline: Duration::from_millis(deadline_ms),
        ..SocksConfig::default()
    }
}

on_both_drivers! {
    async fn relays_launch_to_worker_after_redeeming_ticket() {
        let (backend_addr, backend) = echo_backend();
        let redeemer = MemoryRedeemer::new();
        redeemer.insert(TICKET, WorkerAddr(backend_addr));
        let (listener, addr) = listen();
        let client = peer(move || {
            // The request and 5 early bytes arrive in one write.
            let mut first = request(Command::Connect, Address::Domain(TICKET));
            first.extend_from_slice(b"early");
            let (mut stream, reply) = handshake(addr, &first);
            assert_eq!(reply, Reply::Succeeded);
            stream.write_all(b" and late").unwrap();
            stream.shutdown(std::net::Shutdown::Write).unwrap();
            read_to_end(&mut stream)
        });
        let launch = expect_launch(gateway(&listener, &redeemer, &SocksConfig::default()).await);
        assert_eq!(launch.redeemed.worker(), WorkerAddr(backend_addr));
        assert_eq!(launch.redeemed.session(), SessionId(1));
        assert_eq!(launch.forwarded, 5);
        assert!(redeemer.is_empty(), "the ticket is used up");
        let (up, down) = relay(launch).await;
        assert_eq!(up.unwrap(), 9);
        assert_eq!(down.unwrap(), 14);
        assert_eq!(join(client).await, b"early and late");
        assert_eq!(join(backend).await, b"early and late");
    }

    async fn accepts_userpass_only_greeting_and_ignores_credentials() {
        let (backend_addr, backend) = echo_backend();
        let redeemer = MemoryRedeemer::new();
        redeemer.insert(TICKET, WorkerAddr(backend_addr));
        let (listener, addr) = listen();
        let client = peer(move || {
            let mut stream = connect(addr);
            stream.write_all(b"\x05\x01\x02").unwrap();
            let mut answer = [0u8; 2];
            stream.read_exact(&mut answer).unwrap();
            assert_eq!(answer, [0x05, 0x02]);
            stream.write_all(b"\x01\x04user\x00").unwrap();
            stream.read_exact(&mut answer).unwrap();
            assert_eq!(answer, [0x01, 0x00]);
            stream.write_all(&request(Command::Connect, Address::Domain(TICKET))).unwrap();
            let mut reply = [0u8; 10];
            stream.read_exact(&mut reply).unwrap();
            assert_eq!(reply, [0x05, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0]);
            stream.write_all(b"ping").unwrap();
            stream.shutdown(std::net::Shutdown::Write).unwrap();
            read_to_end(&mut stream)
        });
        let launch = expect_launch(gateway(&listener, &redeemer, &SocksConfig::default()).await);
        let (up, down) = relay(launch).await;
        assert_eq!((up.unwrap(), down.unwrap()), (4, 4));
        assert_eq!(join(client).await, b"ping");
        join(backend).await;
    }

    async fn relays_launch_inside_tls() {
        let generated = self_signed(&["localhost"]).unwrap();
        let acceptor =
            TlsAcceptor::from_pem(generated.cert_pem.as_bytes(), generated.key_pem.as_bytes())
                .unwrap();
        let config = standalone::client_config(&generated.cert_pem, &[&rustls::version::TLS13]);
        let (backend_addr, backend) = echo_backend();
        let redeemer = MemoryRedeemer::new();
        redeemer.insert(TICKET, WorkerAddr(backend_addr));
        let (listener, addr) = listen();
        let client = peer(move || {
            let mut tls = standalone::tls_connect(addr, &config);
            // Greeting and request pipelined in one record, as a client may.
            let mut first = b"\x05\x02\x00\x02".to_vec();
            first.extend(request(Command::Connect, Address::Domain(TICKET)));
            tls.write_all(&first).unwrap();
            let mut answer = [0u8; 12];
            tls.read_exact(&mut answer).unwrap();
            assert_eq!(answer, [5, 0, 5, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
            let payload: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
            tls.write_all(&payload).unwrap();
            tls.conn.send_close_notify();
            tls.flush().unwrap();
            let mut back = Vec::new();
            tls.read_to_end(&mut back).unwrap();
            assert!(back == payload, "echo through tls differs");
        });
        let (tcp, peer_addr) = accept(&listener).await;
        let (outer, replay) = detect(tcp, &Detection::default()).await.unwrap();
        assert_eq!(outer, Protocol::Tls);
        let tls = acceptor.accept(replay).await.unwrap();
        let (inner, plain) = detect(tls, &Detection::default()).await.unwrap();
        assert_eq!(inner, Protocol::Socks5);
        let outcome = serve(plain, ClientAddr(peer_addr), &redeemer, &SocksConfig::default()).await;
        let (up, down) = relay(expect_launch(outcome)).await;
        assert_eq!((up.unwrap(), down.unwrap()), (100_000, 100_000));
        join(client).await;
        assert_eq!(join(backend).await.len(), 100_000);
    }

    async fn relays_curl_through_socks5_hostname() {
        if std::process::Command::new("curl").arg("--version").output().is_err() {
            eprintln!("curl not installed: the curl launch is covered by the other tests only");
            return;
        }
        let backend_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let backend_addr = backend_listener.local_addr().unwrap();
        let backend = peer(move || {
            let (mut stream, _) = backend_listener.accept().unwrap();
            stream.set_read_timeout(Some(standalone::PEER_TIMEOUT)).unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.ends_with(b"\r\n\r\n") {
                let n = stream.read(&mut buf).unwrap();
                assert!(n > 0, "request cut short");
                request.extend_from_slice(&buf[..n]);
            }
            stream
                .write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello")
                .unwrap();
            String::from_utf8(request).unwrap()
        });
        let redeemer = MemoryRedeemer::new();
        redeemer.insert(&b"ticket-curl"[..], WorkerAddr(backend_addr));
        let (listener, addr) = listen();
        let client = peer(move || {
            std::process::Command::new("curl")
                .args(["-s", "--max-time", "5", "--socks5-hostname"])
                .arg(addr.to_string())
                .arg("http://ticket-curl:1494/")
                .output()
                .unwrap()
        });
        let launch = expect_launch(gateway(&listener, &redeemer, &SocksConfig::default()).await);
        // curl and the backend close in either order: only the bytes matter.
        let _ = relay(launch).await;
        let output = join(client).await;
        assert!(output.status.success(), "curl failed: {output:?}");
        assert_eq!(output.stdout, b"hello");
        assert!(join(backend).await.starts_with("GET / HTTP/1.1\r\nHost: ticket-curl:1494\r\n"));
    }

    async fn replies_02_to_unknown_ticket() {
        let redeemer = MemoryRedeemer::new();
        let (listener, addr) = listen();
        let client = peer(move || {
            refused_reply(addr, request(Command::Connect, Address::Domain(TICKET)))
        });
        let (refused, session) =
            expect_refusal(gateway(&listener, &redeemer, &SocksConfig::default()).await);
        assert!(
            matches!(refused, Refused::Redeem(RedeemError::Denied(DenyReason::UnknownTicket))),
            "{refused:?}"
        );
        assert_eq!((refused.reason(), refused.fault().as_str()), ("ticket_unknown", "client"));
        assert_eq!(session, None);
        assert_eq!(join(client).await, (Reply::NotAllowed, Vec::new()));
    }

    async fn replies_02_to_reused_ticket() {
        let (backend_addr, backend) = echo_backend();
        let redeemer = MemoryRedeemer::new();
        redeemer.insert(TICKET, WorkerAddr(backend_addr));
        let (listener, addr) = listen();
        let client = peer(move || {
            let (first, reply) = handshake(addr, &request(Command::Connect, Address::Domain(TICKET)));
            assert_eq!(reply, Reply::Succeeded);
            drop(first);
            refused_reply(addr, request(Command::Connect, Address::Domain(TICKET)))
        });
        let first = expect_launch(gateway(&listener, &redeemer, &SocksConfig::default()).await);
        drop(first);
        let (refused, _) = expect_refusal(gateway(&listener, &redeemer, &SocksConfig::default()).await);
        assert_eq!(refused.reply(), Some(Reply::NotAllowed), "{refused:?}");
        assert_eq!(join(client).await.0, Reply::NotAllowed);
        join(backend).await;
    }

    async fn replies_05_when_worker_refuses() {
        let redeemer = MemoryRedeemer::new();
        redeemer.insert(TICKET, WorkerAddr(closed_port()));
        let (listener, addr) = listen();
        let client = peer(move || {
            refused_reply(addr, request(Command::Connect, Address::Domain(TICKET)))
        });
        let (refused, session) =
            expect_refusal(gateway(&listener, &redeemer, &SocksConfig::default()).await);
        assert!(
            matches!(refused, Refused::Connect { refusal: Refusal::BackendRefused, .. }),
            "{refused:?}"
        );
        assert_eq!((refused.reason(), refused.fault().as_str()), ("backend_refused", "worker"));
        assert_eq!(session, Some(SessionId(1)), "the redeemed session is reported");
        assert_eq!(join(client).await, (Reply::ConnectionRefused, Vec::new()));
    }

    async fn replies_04_when_worker_connect_times_out() {
        let (_worker, _fillers, worker_addr) = unresponsive_worker();
        let redeemer = MemoryRedeemer::new();
        redeemer.insert(TICKET, WorkerAddr(worker_addr));
        let (listener, addr) = listen();
        let client = peer(move || {
            refused_reply(addr, request(Command::Connect, Address::Domain(TICKET)))
        });
        let config = SocksConfig {
            connect_timeout: Duration::from_millis(300),
            ..SocksConfig::default()
        };
        let started = std::time::Instant::now();
        let (refused, _) = expect_refusal(gateway(&listener, &redeemer, &config).await);
        assert!(matches!(refused, Refused::Request(Refusal::BackendTimeout)), "{refused:?}");
        assert_eq!(refused.reason(), "backend_timeout");
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert_eq!(join(client).await, (Reply::HostUnreachable, Vec::new()));
    }

    async fn replies_07_to_bind() {
        let redeemer = MemoryRedeemer::new();
        let (listener, addr) = listen();
        let client = peer(move || refused_reply(addr, request(Command::Bind, Address::Domain(TICKET))));
        let (refused, _) = expect_refusal(gateway(&listener, &redeemer, &SocksConfig::default()).await);
        assert_eq!(refused.reason(), "unsupported_command");
        assert_eq!(join(client).await.0, Reply::CommandNotSupported);
    }

    async fn replies_07_to_udp_associate() {
        let redeemer = MemoryRedeemer::new();
        let (listener, addr) = listen();
        let client = peer(move || {
            refused_reply(addr, request(Command::UdpAssociate, Address::Ipv4([0, 0, 0, 0].into())))
        });
        let (refused, _) = expect_refusal(gateway(&listener, &redeemer, &SocksConfig::default()).await);
        assert_eq!(refused.reason(), "unsupported_command");
        assert_eq!(join(client).await.0, Reply::CommandNotSupported);
    }

    async fn replies_08_to_unknown_address_type() {
        let redeemer = MemoryRedeemer::new();
        let (listener, addr) = listen();
        let client = peer(move || refused_reply(addr, b"\x05\x01\x00\x09\x00\x00\x00\x00\x05\xd6".to_vec()));
        let (refused, _) = expect_refusal(gateway(&listener, &redeemer, &SocksConfig::default()).await);
        assert_eq!(refused.reason(), "unsupported_address_type");
        assert_eq!(join(client).await, (Reply::AddressTypeNotSupported, Vec::new()));
    }

    async fn replies_02_to_connect_by_ip_address() {
        let redeemer = MemoryRedeemer::new();
        let (listener, addr) = listen();
        let client = peer(move || {
            refused_reply(addr, request(Command::Connect, Address::Ipv4([127, 0, 0, 1].into())))
        });
        let (refused, _) = expect_refusal(gateway(&listener, &redeemer, &SocksConfig::default()).await);
        assert!(matches!(refused, Refused::AddressNotAllowed), "{refused:?}");
        assert_eq!(join(client).await.0, Reply::NotAllowed);
    }

    async fn replies_01_when_redeemer_gives_no_verdict_in_time() {
        let (listener, addr) = listen();
        let client = peer(move || {
            refused_reply(addr, request(Command::Connect, Address::Domain(TICKET)))
        });
        let (refused, _) = expect_refusal(gateway(&listener, &SilentRedeemer, &short(300)).await);
        assert!(matches!(refused, Refused::RedeemTimeout), "{refused:?}");
        assert_eq!(refused.fault().as_str(), "control_plane");
        assert_eq!(join(client).await.0, Reply::GeneralFailure);
    }

    async fn answers_ff_to_greeting_without_usable_method() {
        let redeemer = MemoryRedeemer::new();
        let (listener, addr) = listen();
        let client = peer(move || {
            let mut stream = connect(addr);
            stream.write_all(b"\x05\x01\x01").unwrap();
            read_to_end(&mut stream)
        });
        let (refused, _) = expect_refusal(gateway(&listener, &redeemer, &SocksConfig::default()).await);
        assert!(matches!(refused, Refused::NoAcceptableMethod), "{refused:?}");
        assert_eq!(join(client).await, [0x05, 0xff]);
    }

    async fn closes_silent_client_at_deadline_without_reply() {
        let redeemer = MemoryRedeemer::new();
        let (listener, addr) = listen();
        let client = peer(move || {
            let mut stream = connect(addr);
            stream.write_all(b"\x05\x01\x00").unwrap();
            read_to_end(&mut stream)
        });
        let (refused, _) = expect_refusal(gateway(&listener, &redeemer, &short(300)).await);
        assert!(matches!(refused, Refused::Timeout(_)), "{refused:?}");
        assert_eq!(refused.reason(), "socks_timeout");
        assert_eq!(join(client).await, [0x05, 0x00], "method selection only");
    }

    async fn closes_client_that_hangs_up_mid_request() {
        let redeemer = MemoryRedeemer::new();
        let (listener, addr) = listen();
        let client = peer(move || {
            let mut stream = connect(addr);
            stream.write_all(b"\x05\x01\x00").unwrap();
            // Read the method selection first: closing with it unread would
            // make the kernel answer a reset instead of a clean hang-up.
            let mut selection = [0u8; 2];
            stream.read_exact(&mut selection).unwrap();
            stream.write_all(b"\x05\x01\x00\x03\x10;40").unwrap();
        });
        let (refused, _) = expect_refusal(gateway(&listener, &redeemer, &SocksConfig::default()).await);
        assert!(matches!(refused, Refused::ClosedEarly), "{refused:?}");
        join(client).await;
    }
}
