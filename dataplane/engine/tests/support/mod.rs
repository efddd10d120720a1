//! Shared pieces of the engine's loopback tests: engines under a chosen
//! driver, an echo back end, a scripted back end, bounded socket helpers.
#![allow(
    dead_code,
    unreachable_pub,
    reason = "each test binary uses a different subset of the helpers"
)]

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

pub mod launch;

use gatehouse_engine::{
    CoreStats, Driver, Engine, EngineConfig, EngineHandle, Forward, HandlerFactory, RelayMode,
};

/// Upper bound on any single blocking socket call in the tests.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Generates one `#[test]` per driver: `name::io_uring`, `name::legacy`.
#[macro_export]
macro_rules! under_each_driver {
    ($case:ident) => {
        mod $case {
            #[test]
            fn io_uring() {
                super::$case(gatehouse_engine::Driver::IoUring)
            }
            #[test]
            fn legacy() {
                super::$case(gatehouse_engine::Driver::Legacy)
            }
        }
    };
}

/// Generates one `#[test]` per driver and relay mode.
#[macro_export]
macro_rules! under_each_driver_and_relay {
    ($case:ident) => {
        mod $case {
            use gatehouse_engine::{Driver, RelayMode};
            #[test]
            fn io_uring_splice() {
                super::$case(Driver::IoUring, RelayMode::Splice)
            }
            #[test]
            fn io_uring_copy() {
                super::$case(Driver::IoUring, RelayMode::Copy)
            }
            #[test]
            fn legacy_splice() {
                super::$case(Driver::Legacy, RelayMode::Splice)
            }
            #[test]
            fn legacy_copy() {
                super::$case(Driver::Legacy, RelayMode::Copy)
            }
        }
    };
}

/// Logs to the test's captured output (`RUST_LOG` filters, default info).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .with_ansi(false)
        .try_init();
}

/// A one-core config for `driver` and `relay`, tuned by `tweak`.
pub fn config(driver: Driver, relay: RelayMode) -> EngineConfig {
    EngineConfig {
        cores: std::num::NonZeroUsize::new(1),
        driver,
        relay,
        ..EngineConfig::default()
    }
}

/// Starts an engine on 127.0.0.1:0 with `factory`.
pub fn start<F: HandlerFactory>(config: EngineConfig, factory: F) -> EngineHandle {
    init_logging();
    let listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let engine = Engine::start(config.clone(), &[listen], factory).expect("engine starts");
    assert_eq!(
        engine.driver(),
        config.driver,
        "the engine runs the driver the test asked for"
    );
    engine
}

/// Starts a forwarding engine to `to`.
pub fn start_forward(config: EngineConfig, to: SocketAddr) -> EngineHandle {
    start(config, Forward::new(to))
}

/// The listen address of a started engine.
pub fn addr(engine: &EngineHandle) -> SocketAddr {
    engine.local_addrs()[0]
}

/// Connects with the test timeouts set.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("connects");
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

/// Reads exactly `n` bytes.
pub fn read_n(stream: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    stream
        .read_exact(&mut buf)
        .expect("reads the expected bytes");
    buf
}

/// Reads until end of stream (bounded by the socket's read timeout).
pub fn read_to_end(stream: &mut TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    stream
        .read_to_end(&mut buf)
        .expect("reads to end of stream");
    buf
}

/// True when the peer closed: end of stream or reset, within `within`.
pub fn sees_close(stream: &mut TcpStream, within: Duration) -> bool {
    stream.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 1_024];
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            // A signal delivered to this thread is not a close.
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false;
            }
            Err(_) => return true,
        }
    }
    false
}

/// A deterministic, non-repeating-looking byte pattern.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    let mut x: u32 = 0x9E37_79B9 ^ u32::from(seed);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

/// Polls the engine's counters until `done` holds (at most 5 s).
pub fn wait_for_stats(engine: &EngineHandle, done: impl Fn(&CoreStats) -> bool) -> CoreStats {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let total = CoreStats::total(&engine.stats().expect("cores answer"));
        if done(&total) || Instant::now() > deadline {
            return total;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// An echo back end: every connection gets its bytes back; end of stream
/// is answered with end of stream. Serves at most `max_conns` connections.
pub struct Echo {
    pub addr: SocketAddr,
    pub accepted: Arc<AtomicUsize>,
}

impl Echo {
    pub fn start(max_conns: usize) -> Echo {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        thread::spawn(move || {
            for stream in listener.incoming().take(max_conns) {
                let Ok(mut stream) = stream else { continue };
                count.fetch_add(1, Ordering::SeqCst);
                thread::spawn(move || {
                    stream
                        .set_read_timeout(Some(Duration::from_secs(30)))
                        .unwrap();
                    let mut buf = vec![0u8; 64 * 1_024];
                    loop {
                        match stream.read(&mut buf) {
                            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                if stream.write_all(&buf[..n]).is_err() {
                                    break;
                                }
                            }
                        }
                    }
                    let _ = stream.shutdown(Shutdown::Write);
                });
            }
        });
        Echo { addr, accepted }
    }

    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// A back end the test drives by hand: accept one connection at a time.
pub struct Scripted {
    pub addr: SocketAddr,
    listener: TcpListener,
}

impl Scripted {
    pub fn start() -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        Scripted {
            addr: listener.local_addr().unwrap(),
            listener,
        }
    }

    /// The next connection, within `IO_TIMEOUT`.
    pub fn accept(&self) -> TcpStream {
        let deadline = Instant::now() + IO_TIMEOUT;
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    stream.set_nonblocking(false).unwrap();
                    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
                    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
                    return stream;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                    thread::sleep(Duration::from_millis(2));
                }
                Err(e) => panic!("back end accept failed: {e}"),
            }
        }
    }
}
