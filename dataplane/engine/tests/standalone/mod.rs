//! Shared pieces of the tests that drive the gateway modules (detection,
//! TLS, SOCKS) on a bare monoio runtime, without an engine: runtimes for
//! both drivers, blocking peers on their own threads, a copy relay, TLS
//! client configs. (`support` is the engine-level counterpart.)
#![allow(
    dead_code,
    reason = "each test binary uses a different subset of the helpers"
)]

use std::future::Future;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream as StdTcpStream};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::{TcpListener, TcpStream};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// Upper bound for any blocking read or write in a test peer.
pub(crate) const PEER_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs `future` on an io_uring runtime with timers.
pub(crate) fn run_io_uring<F: Future>(future: F) -> F::Output {
    monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .enable_timer()
        .build()
        .expect("io_uring runtime (is io_uring available?)")
        .block_on(future)
}

/// Runs `future` on a legacy (epoll) runtime with timers.
pub(crate) fn run_legacy<F: Future>(future: F) -> F::Output {
    monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
        .expect("legacy runtime")
        .block_on(future)
}

/// Declares each `async fn name() { .. }` twice: as `io_uring::name` and
/// `legacy::name`, each on its own runtime.
#[macro_export]
macro_rules! on_both_drivers {
    ($(async fn $name:ident() $body:block)*) => {
        mod io_uring {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[test]
                fn $name() {
                    $crate::standalone::run_io_uring(async $body)
                }
            )*
        }
        mod legacy {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[test]
                fn $name() {
                    $crate::standalone::run_legacy(async $body)
                }
            )*
        }
    };
}

/// A monoio listener on an ephemeral loopback port.
pub(crate) fn listen() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = listener.local_addr().expect("listener address");
    (listener, addr)
}

/// Accepts one connection, bounded in time.
pub(crate) async fn accept(listener: &TcpListener) -> (TcpStream, SocketAddr) {
    monoio::time::timeout(PEER_TIMEOUT, listener.accept())
        .await
        .expect("accept in time")
        .expect("accept")
}

/// A blocking client socket with read/write timeouts.
pub(crate) fn connect(addr: SocketAddr) -> StdTcpStream {
    let stream = StdTcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(PEER_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(PEER_TIMEOUT)).unwrap();
    stream
}

/// Runs a blocking peer on its own thread.
pub(crate) fn peer<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> JoinHandle<T> {
    std::thread::spawn(f)
}

/// Reads until EOF (bounded by the socket's read timeout).
pub(crate) fn read_to_end(stream: &mut impl Read) -> Vec<u8> {
    let mut out = Vec::new();
    stream.read_to_end(&mut out).expect("read to end");
    out
}

/// A worker stand-in: accepts one connection and echoes until EOF, then
/// half-closes. Returns the address and the bytes it echoed.
pub(crate) fn echo_backend() -> (SocketAddr, JoinHandle<Vec<u8>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind backend");
    let addr = listener.local_addr().unwrap();
    let handle = peer(move || {
        let (mut stream, _) = listener.accept().expect("backend accept");
        stream.set_read_timeout(Some(PEER_TIMEOUT)).unwrap();
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = stream.read(&mut buf).expect("backend read");
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
            stream.write_all(&buf[..n]).expect("backend write");
        }
        stream.shutdown(std::net::Shutdown::Write).ok();
        seen
    });
    (addr, handle)
}

/// Copies `reader` into `writer` until EOF, then shuts `writer` down.
pub(crate) async fn copy<R: AsyncReadRent, W: AsyncWriteRent>(
    mut reader: R,
    mut writer: W,
) -> std::io::Result<u64> {
    let mut buf = Vec::with_capacity(16 * 1024);
    let mut total = 0u64;
    loop {
        buf.clear();
        let (result, back) = reader.read(buf).await;
        buf = back;
        let n = result?;
        if n == 0 {
            writer.shutdown().await?;
            return Ok(total);
        }
        let (result, back) = writer.write_all(buf).await;
        buf = back;
        result?;
        total += n as u64;
    }
}

/// A rustls client configuration trusting exactly `cert_pem`.
pub(crate) fn client_config(
    cert_pem: &str,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    let cert = CertificateDer::from_pem_slice(cert_pem.as_bytes()).expect("cert pem");
    roots.add(cert).expect("add root");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// A blocking TLS client connection to `addr` for `localhost`.
pub(crate) fn tls_connect(
    addr: SocketAddr,
    config: &Arc<rustls::ClientConfig>,
) -> rustls::StreamOwned<rustls::ClientConnection, StdTcpStream> {
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let connection =
        rustls::ClientConnection::new(Arc::clone(config), name).expect("client connection");
    rustls::StreamOwned::new(connection, connect(addr))
}

/// Waits for a peer thread without blocking the runtime: the io_uring
/// driver closes sockets and finishes cancelled operations only while the
/// runtime runs, and the peer may be waiting for exactly that.
pub(crate) async fn join<T>(handle: JoinHandle<T>) -> T {
    let started = std::time::Instant::now();
    while !handle.is_finished() {
        assert!(started.elapsed() < 2 * PEER_TIMEOUT, "peer thread stuck");
        monoio::time::sleep(Duration::from_millis(2)).await;
    }
    handle.join().expect("peer thread panicked")
}
