//! A server from the system's packages (slapd, FreeRADIUS) or a tool under
//! test whose output goes to a log file, read whole at any time; the
//! binaries (a failed test naming the package when one is missing); free
//! loopback ports.
//!
//! [`Server`] is for children whose readiness and evidence are in a log
//! that is complete the moment the child answered (a server prints what
//! it received before it replies). [`crate::process::Process`] is for
//! children read line by line as they write.
//!
//! Stopping is the same as [`crate::process::Process`]: SIGTERM to the
//! child's PID, a bounded wait ([`TIMEOUT`]), then SIGKILL and a wait.

use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::TIMEOUT;
use crate::process::terminate;

/// How often readiness is polled.
const POLL: Duration = Duration::from_millis(20);

/// A child process whose stdout and stderr go to one log file. Dropping
/// it stops the process by PID.
#[derive(Debug)]
pub struct Server {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Server {
    /// Starts `command` with stdin closed and stdout and stderr written to
    /// `log` (created or truncated). `name` appears in panic messages.
    pub fn start(name: &str, mut command: Command, log: &Path) -> Self {
        let out = std::fs::File::create(log)
            .unwrap_or_else(|error| panic!("create {}: {error}", log.display()));
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

    /// The child's PID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether the process has exited.
    pub fn exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// Polls `ready` every 20 ms until it holds; `false` when the process
    /// exits first or [`TIMEOUT`] passes.
    pub fn wait_ready(&mut self, mut ready: impl FnMut(&Self) -> bool) -> bool {
        let deadline = Instant::now() + TIMEOUT;
        while Instant::now() < deadline {
            if ready(self) {
                return true;
            }
            if self.exited() {
                return false;
            }
            std::thread::sleep(POLL);
        }
        false
    }

    /// Like [`Server::wait_ready`]; panics with the log when not ready.
    pub fn expect_ready(&mut self, ready: impl FnMut(&Self) -> bool) {
        if !self.wait_ready(ready) {
            panic!(
                "{} (pid {}) did not come up within {TIMEOUT:?}:\n{}",
                self.name,
                self.pid(),
                self.log()
            );
        }
    }

    /// SIGTERM, then the exit status; past [`TIMEOUT`], SIGKILL and a
    /// panic with the log.
    pub fn stop(&mut self) -> ExitStatus {
        terminate(&mut self.child).unwrap_or_else(|| {
            panic!(
                "{}: no exit within {TIMEOUT:?} of SIGTERM; killed\n{}",
                self.name,
                self.log()
            )
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Still running only when a test failed before stopping it.
        let _ = terminate(&mut self.child);
    }
}

/// The path of a binary from a Debian package: on `PATH`, else in
/// `/usr/sbin`, `/usr/bin`, `/sbin` or `/bin` (daemons live off a non-root
/// `PATH`). Panics naming `package` when it is missing: a missing server
/// is a failed test, never a skipped one.
pub fn system_binary(name: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let fixed = ["/usr/sbin", "/usr/bin", "/sbin", "/bin"].map(PathBuf::from);
    std::env::split_paths(&path)
        .chain(fixed)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{name} not found: this test needs the Debian package {package} \
                 (apt-get install -y {package}; .ci/run installs it)"
            )
        })
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_tcp_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// A UDP port on 127.0.0.1 that was free a moment ago.
pub fn free_udp_port() -> u16 {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.local_addr().unwrap().port()
}

/// Whether something accepts TCP connections at `addr` (200 ms bound).
pub fn accepts_tcp(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}
