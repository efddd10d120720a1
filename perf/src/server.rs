//! The back-ends of a run: `sink` (read and discard) and `echo` (send every
//! byte back), on a multi-threaded tokio runtime.
//!
//! The sink counts what arrived: when a connection's sender half-closes, the
//! sink answers with the number of bytes it read on that connection as a
//! big-endian `u64`, then closes. `stream` reads that answer, so its
//! throughput is bytes that reached the sink, through whatever relay sat in
//! between (the relay must propagate half-close, as TCP relays do).
//!
//! Reads go into one scratch buffer per runtime thread, so an idle sink
//! connection holds no buffer at all (10,000 idle sessions stay cheap).

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;

use crate::json::JsonObject;
use crate::net;

/// Size of each runtime thread's sink scratch buffer.
const SINK_READ_SIZE: usize = 256 * 1024;
/// Size of each echo connection's buffer.
const ECHO_BUFFER_SIZE: usize = 16 * 1024;
/// How long in-flight connections get to finish when a server stops.
const STOP_GRACE: Duration = Duration::from_millis(500);

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0; SINK_READ_SIZE]);
}

/// What a back-end does with the bytes it receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Read and discard; on EOF answer with the byte count, then close.
    Sink,
    /// Write every byte back; close after the peer closes.
    Echo,
}

/// Counters of one server, shared with its connection tasks.
#[derive(Debug, Default)]
pub struct ServerStats {
    /// Connections accepted.
    pub accepted: AtomicU64,
    /// Bytes read from all connections.
    pub bytes: AtomicU64,
}

impl ServerStats {
    /// One line for human reports.
    pub fn describe(&self, role: Role) -> String {
        format!(
            "{} stopped: {} connections accepted, {} bytes read",
            role.name(),
            self.accepted.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed)
        )
    }

    /// A JSON object with `mode`, `accepted` and `bytes`.
    pub fn to_json(&self, role: Role) -> String {
        JsonObject::new()
            .str("mode", role.name())
            .int("accepted", self.accepted.load(Ordering::Relaxed))
            .int("bytes", self.bytes.load(Ordering::Relaxed))
            .finish()
    }
}

impl Role {
    /// `sink` or `echo`.
    pub fn name(self) -> &'static str {
        match self {
            Role::Sink => "sink",
            Role::Echo => "echo",
        }
    }
}

/// A server running on its own runtime in the background; stops when dropped.
#[derive(Debug)]
pub struct RunningServer {
    local_addr: SocketAddr,
    stats: Arc<ServerStats>,
    runtime: Option<Runtime>,
}

impl RunningServer {
    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The live counters.
    pub fn stats(&self) -> &ServerStats {
        &self.stats
    }

    /// Stops accepting and closes every connection (after a short grace).
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(STOP_GRACE);
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Binds `listen` now (so a bind error is returned here) and serves in the
/// background on `threads` runtime threads until the handle is stopped.
pub fn spawn(role: Role, listen: SocketAddr, threads: NonZeroUsize) -> io::Result<RunningServer> {
    let runtime = runtime(threads)?;
    let std_listener = net::listen(listen)?;
    let local_addr = std_listener.local_addr()?;
    let stats = Arc::new(ServerStats::default());
    let listener = {
        let _entered = runtime.enter();
        TcpListener::from_std(std_listener)?
    };
    runtime.spawn(accept_loop(role, listener, Arc::clone(&stats)));
    Ok(RunningServer {
        local_addr,
        stats,
        runtime: Some(runtime),
    })
}

/// Serves in the foreground until SIGINT or SIGTERM, then returns the counters.
/// `on_ready` is called with the bound address once the listener is up.
pub fn serve_until_signal(
    role: Role,
    listen: SocketAddr,
    threads: NonZeroUsize,
    on_ready: impl FnOnce(SocketAddr),
) -> io::Result<Arc<ServerStats>> {
    let server = spawn(role, listen, threads)?;
    let Some(runtime) = server.runtime.as_ref() else {
        return Err(io::Error::other("server runtime missing"));
    };
    on_ready(server.local_addr);
    runtime.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        io::Result::Ok(())
    })?;
    let stats = Arc::clone(&server.stats);
    server.stop();
    Ok(stats)
}

fn runtime(threads: NonZeroUsize) -> io::Result<Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.get())
        .thread_name("gatehouse-load-server")
        .enable_all()
        .build()
}

async fn accept_loop(role: Role, listener: TcpListener, stats: Arc<ServerStats>) {
    loop {
        match listener.accept().await {
            Ok((stream, _peer)) => {
                stats.accepted.fetch_add(1, Ordering::Relaxed);
                let stats = Arc::clone(&stats);
                match role {
                    Role::Sink => tokio::spawn(sink(stream, stats)),
                    Role::Echo => tokio::spawn(echo(stream, stats)),
                };
            }
            // Out of descriptors or a connection reset before accept: back off
            // briefly instead of spinning, and keep serving.
            Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
}

async fn sink(mut stream: TcpStream, stats: Arc<ServerStats>) {
    let mut received: u64 = 0;
    loop {
        if stream.readable().await.is_err() {
            return;
        }
        // Drain everything that is ready into this thread's scratch buffer;
        // no await while the buffer is borrowed.
        loop {
            match SCRATCH.with_borrow_mut(|buf| stream.try_read(buf)) {
                Ok(0) => {
                    let _ = tokio::time::timeout(net::OP_TIMEOUT, async {
                        stream.write_all(&received.to_be_bytes()).await?;
                        stream.shutdown().await
                    })
                    .await;
                    return;
                }
                Ok(n) => {
                    received += n as u64;
                    stats.bytes.fetch_add(n as u64, Ordering::Relaxed);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => return,
            }
        }
    }
}

async fn echo(mut stream: TcpStream, stats: Arc<ServerStats>) {
    let _ = stream.set_nodelay(true);
    let mut buf = vec![0; ECHO_BUFFER_SIZE];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                stats.bytes.fetch_add(n as u64, Ordering::Relaxed);
                if stream.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}
