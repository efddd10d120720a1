//! Loopback runs of each shape against the in-process back-ends, about one
//! second each, checking that the reports count what really happened.
#![allow(
    clippy::unwrap_used,
    reason = "test set-up: a failed unwrap is a failed test"
)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use gatehouse_perf::connrate::{self, ConnrateConfig, SocksPreamble};
use gatehouse_perf::idle::{self, IdleConfig};
use gatehouse_perf::rr::{self, RrConfig};
use gatehouse_perf::server::{self, Role, RunningServer};
use gatehouse_perf::socks::SocksHost;
use gatehouse_perf::stream::{self, StreamConfig};

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
        host: SocksHost::new(";40;STA1;T").unwrap(),
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
    };
    let mut announced = 0;
    let report = idle::run(&config, |opened| announced = opened);
    assert_eq!(
        (report.opened, announced, report.still_open),
        (200, 200, 200),
        "{report}"
    );
    assert_eq!(sink.stats().accepted.load(Ordering::Relaxed), 200);
    assert_eq!(report.errors.total(), 0);
}

/// A port nothing listens on: bind, read the port, close.
fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// A SOCKS5 server that answers no-auth and success, then echoes; it stops
/// accepting when dropped.
struct FakeSocksEcho {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl FakeSocksEcho {
    fn start() -> Self {
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
                        thread::spawn(move || serve_socks_echo(conn));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(1)),
                }
            }
        });
        Self { addr, stop }
    }
}

impl Drop for FakeSocksEcho {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve_socks_echo(mut conn: TcpStream) {
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
        assert_eq!(&rest[..rest.len() - 2], b";40;STA1;T");
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
