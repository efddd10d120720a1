//! Shared pieces of the tests that start real servers from the system's
//! packages (slapd, FreeRADIUS): temp directories, free loopback ports,
//! the server binaries (a clear failure when one is missing), and a guard
//! that kills a server by PID when the test ends, passed or failed.
#![allow(dead_code, reason = "each test file uses a part of this module")]

use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long a server may take to come up.
pub(crate) const STARTUP: Duration = Duration::from_secs(15);

/// A fresh directory under the system temp dir, removed on drop.
#[derive(Debug)]
pub(crate) struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates `gatehouse-<label>-<pid>-<n>`.
    pub(crate) fn new(label: &str) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("gatehouse-{label}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|error| panic!("create {}: {error}", path.display()));
        Self { path }
    }

    /// The directory.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// The path of a server binary from a Debian package, or a panic that
/// says which package to install. Never a skip: a missing server is a
/// failed test.
pub(crate) fn require_binary(name: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs =
        std::env::split_paths(&path).chain(["/usr/sbin", "/usr/bin", "/sbin"].map(PathBuf::from));
    for dir in dirs {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "{name} not found: this test needs the Debian package {package} \
         (apt-get install -y {package}; .ci/run installs it)"
    )
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub(crate) fn free_tcp_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// A UDP port on 127.0.0.1 that was free a moment ago.
pub(crate) fn free_udp_port() -> u16 {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.local_addr().unwrap().port()
}

/// A server process started by a test, its output in a log file. Dropping
/// it kills the process by PID (SIGKILL) and reaps it.
#[derive(Debug)]
pub(crate) struct Server {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Server {
    /// Starts `command` with stdout and stderr appended to `log`.
    pub(crate) fn start(name: &str, mut command: Command, log: &Path) -> Self {
        let out = std::fs::File::create(log).unwrap();
        let err = out.try_clone().unwrap();
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|error| panic!("start {name}: {error}"));
        Self {
            name: name.to_owned(),
            child,
            log: log.to_owned(),
        }
    }

    /// The server's PID.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The log so far.
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether the process has exited.
    pub(crate) fn exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// Polls `ready` every 20 ms until it holds; `false` when the process
    /// exits first or [`STARTUP`] passes.
    pub(crate) fn wait_ready(&mut self, mut ready: impl FnMut(&Self) -> bool) -> bool {
        let deadline = Instant::now() + STARTUP;
        while Instant::now() < deadline {
            if ready(self) {
                return true;
            }
            if self.exited() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Panics with the log when not ready.
    pub(crate) fn expect_ready(&mut self, ready: impl FnMut(&Self) -> bool) {
        if !self.wait_ready(ready) {
            panic!(
                "{} (pid {}) did not come up within {STARTUP:?}:\n{}",
                self.name,
                self.pid(),
                self.log()
            );
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // SIGKILL to the child's own PID; then reap it.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether something accepts TCP connections at `addr`.
pub(crate) fn accepts_tcp(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}
