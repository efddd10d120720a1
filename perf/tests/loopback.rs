//! Loopback runs of each shape against the in-process back-ends, about one
//! second each, checking that the reports count what really happened.
#![allow(
    clippy::unwrap_used,
    reason = "test set-up: a failed unwrap is a failed test"
)]

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use gatehouse_perf::connrate::{self, ConnrateConfig, SocksDestination, SocksPreamble};
use gatehouse_perf::idle::{self, IdleConfig};
use gatehouse_perf::rr::{self, RrConfig};
use gatehouse_perf::server::{self, Role, RunningServer};
use gatehouse_perf::socks::SocksHost;
use gatehouse_perf::sta::{StaUrl, TicketPlan};
use gatehouse_perf::stream::{self, StreamConfig};
use gatehouse_perf::tls::TlsOptions;

const ONE_SECOND: Duration = Duration::from_secs(1);
const TWO: NonZeroUsize = NonZeroUsize::MIN.saturating_add(1);

fn start(role: Role) -> RunningServer {
    server::spawn(role, "127.0.0.1:0".parse().unwrap(), TWO).unwrap()
}

fn connrate_config(target: SocketAddr, preamble: Option<SocksPreamble>) -> ConnrateConfig {
    ConnrateConfig {
        target,
        concurrency: 4,
        duration: ONE_SECOND,
        message_size: 1024,
        preamble,
        tls: None,
        threads: TWO,
    }
}

#[test]
fn stream_reports_the_bytes_the_sink_received() {
    let sink = start(Role::Sink);
    let config = StreamConfig {
        target: sink.local_addr(),
        connections: 2,
        duration: ONE_SECOND,
        write_size: 65_536,
    };
    let report = stream::run(&config);
    assert_eq!(report.errors.total(), 0, "{report}");
    assert!(report.all_confirmed(), "{report}");
    assert!(report.sent_bytes > 0);
    // Every byte written was acknowledged by the sink's own count.
    assert_eq!(report.arrived_bytes, report.sent_bytes);
    assert_eq!(
        sink.stats().bytes.load(Ordering::Relaxed),
        report.arrived_bytes
    );
    assert!(report.arrival_window >= ONE_SECOND);
    assert!(report.gbps() > 0.0);
    assert!(report.to_json().contains("\"sink_confirmed\":true"));
}

#[test]
fn rr_measures_round_trips_through_the_echo() {
    let echo = start(Role::Echo);
    let config = RrConfig {
        target: echo.local_addr(),
        connections: 2,
        duration: ONE_SECOND,
        message_size: 1024,
    };
    let report = rr::run(&config);
    assert_eq!(report.errors.total(), 0, "{report}");
    assert!(report.round_trips > 100, "{report}");
    assert_eq!(report.latency.count, report.round_trips);
    assert!(report.latency.p50_us > 0.0 && report.latency.p50_us <= report.latency.p99_us);
    // Each round trip echoes 1 KiB.
    assert_eq!(
        echo.stats().bytes.load(Ordering::Relaxed),
        report.round_trips * 1024
    );
}

#[test]
fn connrate_opens_and_closes_connections_through_the_echo() {
    let echo = start(Role::Echo);
    let report = connrate::run(&connrate_config(echo.local_addr(), None)).unwrap();
    assert_eq!(report.errors.total(), 0, "{report}");
    assert!(report.completed > 50, "{report}");
    assert!(echo.stats().accepted.load(Ordering::Relaxed) >= report.completed);
    assert!(report.latency.p999_us >= report.latency.p50_us);
}

#[test]
fn connrate_speaks_socks5_before_the_echo() {
    let server = FakeSocksEcho::start();
    let preamble = SocksPreamble {
        destination: SocksDestination::Domain(SocksHost::new(";40;STA1;T").unwrap()),
        port: 1494,
    };
    let report = connrate::run(&connrate_config(server.addr, Some(preamble))).unwrap();
    assert_eq!(report.errors.total(), 0, "{report}");
    assert!(report.completed > 10, "{report}");
    assert!(report.to_json().contains("\"socks5\":true"));
}

#[test]
fn connrate_counts_refused_connections_instead_of_failing() {
    let addr = closed_port();
    let began = Instant::now();
    let report = connrate::run(&connrate_config(addr, None)).unwrap();
    assert_eq!(report.completed, 0);
    assert!(report.errors.connect > 0, "{report}");
    assert!(began.elapsed() < Duration::from_secs(5));
}

#[test]
fn stream_counts_a_refused_connect_and_confirms_nothing() {
    let config = StreamConfig {
        target: closed_port(),
        connections: 2,
        duration: Duration::from_millis(200),
        write_size: 1024,
    };
    let report = stream::run(&config);
    assert_eq!(report.errors.connect, 2);
    assert_eq!((report.sent_bytes, report.confirmed), (0, 0));
    assert!(!report.all_confirmed());
}

#[test]
fn idle_holds_connections_open_at_the_sink() {
    let sink = start(Role::Sink);
    let config = IdleConfig {
        target: sink.local_addr(),
        connections: 200,
        hold: Duration::from_millis(300),
        sources: 2,
        ping: 0,
    };
    let mut announced = 0;
    let report = idle::run(&config, |opened| announced = opened);
    assert_eq!(
        (report.opened, announced, report.still_open),
        (200, 200, 200),
        "{report}"
    );
    assert_eq!(sink.stats().accepted.load(Ordering::Relaxed), 200);
    assert_eq!(sink.stats().bytes.load(Ordering::Relaxed), 0);
    assert_eq!(report.errors.total(), 0);
}

#[test]
fn idle_with_a_ping_sends_it_once_per_connection() {
    let sink = start(Role::Sink);
    let config = IdleConfig {
        target: sink.local_addr(),
        connections: 50,
        hold: Duration::from_millis(300),
        sources: 1,
        ping: 1_024,
    };
    let report = idle::run(&config, |_| {});
    assert_eq!((report.opened, report.still_open), (50, 50), "{report}");
    assert_eq!(report.errors.total(), 0);
    assert_eq!(sink.stats().bytes.load(Ordering::Relaxed), 50 * 1_024);
}

/// A port nothing listens on: bind, read the port, close.
fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// A SOCKS5 server that answers no-auth and success, then echoes; it sends
/// each CONNECT's domain text to `hosts` and stops accepting when dropped.
struct FakeSocksEcho {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    hosts: mpsc::Receiver<Vec<u8>>,
}

impl FakeSocksEcho {
    fn start() -> Self {
        let (sender, hosts) = mpsc::channel();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(30);
            while !stopping.load(Ordering::Relaxed) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let sender = sender.clone();
                        thread::spawn(move || serve_socks_echo(conn, &sender));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(1)),
                }
            }
        });
        Self { addr, stop, hosts }
    }
}

impl Drop for FakeSocksEcho {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve_socks_echo(mut conn: TcpStream, hosts: &mpsc::Sender<Vec<u8>>) {
    let _ = (|| -> std::io::Result<()> {
        conn.set_nonblocking(false)?;
        conn.set_read_timeout(Some(Duration::from_secs(3)))?;
        let mut greeting = [0; 3];
        conn.read_exact(&mut greeting)?;
        assert_eq!(greeting, [0x05, 0x01, 0x00]);
        conn.write_all(&[0x05, 0x00])?;
        let mut head = [0; 5];
        conn.read_exact(&mut head)?;
        assert_eq!(head[..4], [0x05, 0x01, 0x00, 0x03]);
        let mut rest = vec![0; usize::from(head[4]) + 2];
        conn.read_exact(&mut rest)?;
        assert!(rest.starts_with(b";40;STA1;T"), "{rest:?}");
        let _ = hosts.send(rest[..rest.len() - 2].to_vec());
        assert_eq!(rest[rest.len() - 2..], [0x05, 0xd6]);
        conn.write_all(&[0x05, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0])?;
        let mut buf = [0; 4096];
        loop {
            let n = conn.read(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            conn.write_all(&buf[..n])?;
        }
    })();
}

#[test]
fn connrate_spends_one_fresh_ticket_per_connection_and_stops_when_they_run_out() {
    let sta = FakeSta::start();
    let server = FakeSocksEcho::start();
    let plan = TicketPlan {
        sta: StaUrl::parse(&format!("http://{}/scripts/ctxsta.dll", sta.addr)).unwrap(),
        worker: "127.0.0.1:1494".to_owned(),
        count: 300,
        connections: 2,
        pipeline: 16,
    };
    let preamble = SocksPreamble {
        destination: SocksDestination::Tickets(plan),
        port: 1494,
    };
    let mut config = connrate_config(server.addr, Some(preamble));
    config.duration = Duration::from_secs(20);
    let began = Instant::now();
    let report = connrate::run(&config).unwrap();
    // 300 connections end the run long before its 20 s.
    assert!(began.elapsed() < Duration::from_secs(15), "{report}");
    assert_eq!(report.errors.total(), 0, "{report}");
    assert_eq!(report.completed, 300, "{report}");
    let tickets = report.tickets.unwrap();
    assert_eq!((tickets.fetched, tickets.used), (300, 300));
    assert!(tickets.exhausted);
    assert_eq!(sta.issued.load(Ordering::Relaxed), 300);
    assert!(report.to_json().contains("\"tickets_exhausted\":true"));
    let hosts: Vec<Vec<u8>> = server.hosts.try_iter().collect();
    let distinct: HashSet<&Vec<u8>> = hosts.iter().collect();
    assert_eq!((hosts.len(), distinct.len()), (300, 300));
}

#[test]
fn connrate_fails_to_start_when_the_sta_refuses_tickets() {
    let sta = FakeSta::start_refusing();
    let plan = TicketPlan {
        sta: StaUrl::parse(&format!("http://{}/scripts/ctxsta.dll", sta.addr)).unwrap(),
        worker: "127.0.0.1:1494".to_owned(),
        count: 100,
        connections: 2,
        pipeline: 1,
    };
    let preamble = SocksPreamble {
        destination: SocksDestination::Tickets(plan),
        port: 1494,
    };
    let error = connrate::run(&connrate_config(closed_port(), Some(preamble))).unwrap_err();
    let text = format!("{error:?}");
    assert!(text.contains("sta-full"), "{text}");
}

#[test]
fn connrate_speaks_tls_and_resumes_sessions() {
    let server = TlsEcho::start();
    let mut config = connrate_config(server.addr, None);
    config.tls = Some(TlsOptions {
        ca: Some(server.cert_path.clone()),
        insecure: false,
        server_name: "localhost".to_owned(),
        resumption: true,
    });
    let report = connrate::run(&config).unwrap();
    assert_eq!(report.errors.total(), 0, "{report}");
    assert!(report.completed > 10, "{report}");
    assert!(report.tls_resumed > 0, "{report}");
    assert!(report.to_json().contains("\"tls\":true"));

    // Another name than the certificate's fails the handshake, counted.
    let mut wrong = config.clone();
    wrong.duration = Duration::from_millis(300);
    if let Some(tls) = wrong.tls.as_mut() {
        tls.server_name = "elsewhere.example".to_owned();
    }
    let report = connrate::run(&wrong).unwrap();
    assert_eq!(report.completed, 0, "{report}");
    assert!(report.errors.tls > 0, "{report}");

    // ... unless verification is off.
    if let Some(tls) = wrong.tls.as_mut() {
        tls.insecure = true;
        tls.ca = None;
    }
    let report = connrate::run(&wrong).unwrap();
    assert_eq!(report.errors.total(), 0, "{report}");
    assert!(report.completed > 0, "{report}");
}

/// An STA answering every request on a keep-alive connection with a fresh
/// ticket (or with `sta-full`); it stops accepting when dropped.
struct FakeSta {
    addr: SocketAddr,
    issued: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl FakeSta {
    fn start() -> Self {
        Self::spawn(false)
    }

    fn start_refusing() -> Self {
        Self::spawn(true)
    }

    fn spawn(refuse: bool) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let issued = Arc::new(AtomicU64::new(0));
        let (stopping, counter) = (Arc::clone(&stop), Arc::clone(&issued));
        thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(30);
            while !stopping.load(Ordering::Relaxed) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let counter = Arc::clone(&counter);
                        thread::spawn(move || serve_sta(conn, &counter, refuse));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(1)),
                }
            }
        });
        Self { addr, issued, stop }
    }
}

impl Drop for FakeSta {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve_sta(mut conn: TcpStream, issued: &AtomicU64, refuse: bool) {
    let _ = (|| -> std::io::Result<()> {
        conn.set_nonblocking(false)?;
        conn.set_read_timeout(Some(Duration::from_secs(3)))?;
        let mut buf = Vec::new();
        let mut chunk = [0; 8192];
        loop {
            // One request: head, then Content-Length bytes.
            let (head_end, length) = loop {
                if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..at]).to_ascii_lowercase();
                    assert!(
                        head.starts_with("post /scripts/ctxsta.dll http/1.1"),
                        "{head}"
                    );
                    let length: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .unwrap()
                        .trim()
                        .parse()
                        .unwrap();
                    break (at + 4, length);
                }
                let n = conn.read(&mut chunk)?;
                if n == 0 {
                    return Ok(());
                }
                buf.extend_from_slice(&chunk[..n]);
            };
            while buf.len() < head_end + length {
                let n = conn.read(&mut chunk)?;
                if n == 0 {
                    return Ok(());
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let body = String::from_utf8_lossy(&buf[head_end..head_end + length]).into_owned();
            assert!(
                body.contains(r#"<Value name="ICAAddress">127.0.0.1:1494</Value>"#),
                "{body}"
            );
            buf.drain(..head_end + length);
            let (status, answer) = if refuse {
                (
                    "503 Service Unavailable",
                    "<CtxSTAProtocol version=\"4.0\"><ResponseError><ErrorId>sta-full</ErrorId></ResponseError></CtxSTAProtocol>".to_owned(),
                )
            } else {
                let n = issued.fetch_add(1, Ordering::Relaxed);
                (
                    "200 OK",
                    format!(
                        "<CtxSTAProtocol version=\"4.0\"><ResponseTicket><AuthorityID>STA1</AuthorityID><Ticket>T{n:08}</Ticket><TicketVersion>40</TicketVersion></ResponseTicket></CtxSTAProtocol>"
                    ),
                )
            };
            let wire = format!(
                "HTTP/1.1 {status}\r\ncontent-type: text/xml\r\ncontent-length: {}\r\n\r\n{answer}",
                answer.len()
            );
            conn.write_all(wire.as_bytes())?;
        }
    })();
}

/// A TLS echo server (tokio-rustls) with a fresh self-signed certificate
/// for `localhost`, written to a temporary PEM file; stops when dropped.
struct TlsEcho {
    addr: SocketAddr,
    cert_path: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl TlsEcho {
    fn start() -> Self {
        use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let cert_path = std::env::temp_dir().join(format!(
            "gatehouse-perf-loopback-{}-{}.pem",
            std::process::id(),
            addr.port()
        ));
        std::fs::write(&cert_path, certified.cert.pem()).unwrap();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            certified.signing_key.serialize_der(),
        ));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![certified.cert.der().clone()], key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let serve = async {
                    loop {
                        let Ok((tcp, _)) = listener.accept().await else {
                            continue;
                        };
                        let acceptor = acceptor.clone();
                        tokio::spawn(async move {
                            let Ok(mut tls) = acceptor.accept(tcp).await else {
                                return;
                            };
                            let mut buf = [0; 4096];
                            while let Ok(n) = tls.read(&mut buf).await {
                                if n == 0 || tls.write_all(&buf[..n]).await.is_err() {
                                    return;
                                }
                                let _ = tls.flush().await;
                            }
                        });
                    }
                };
                tokio::select! {
                    () = serve => {}
                    _ = stopped => {}
                    () = tokio::time::sleep(Duration::from_secs(30)) => {}
                }
            });
        });
        Self {
            addr,
            cert_path,
            stop: Some(stop),
        }
    }
}

impl Drop for TlsEcho {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = std::fs::remove_file(&self.cert_path);
    }
}
