//! Server-to-client access from both ends: the user's real
//! `access-client` (package `gatehouse-access-client`) and the back-end
//! servers that connect to its IIP.
//!
//! - [`AccessClient`] runs `access-client` against a gateway (TLS, trusting
//!   one CA file), logged in as a user, optionally forwarding an app port
//!   to a local service and registering a machine name; it follows the
//!   client's stdout lines (`iip=...`, `control iip=...`, `released`, ...).
//! - [`echo_service`] is the service on the client's side.
//! - [`connect_from`] is a back-end server's connection from a chosen
//!   loopback source address to `IIP:port`; [`refused_soon`] checks that
//!   nothing listens there; [`exchange`] and [`assert_refused`] look at
//!   what a connection carries.
//!
//! Every wait is bounded by [`TIMEOUT`]; IIPs and servers are loopback
//! addresses (127.0.0.0/8).

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use rustix::process::Signal;
use socket2::{Domain, Socket, Type};

use crate::TIMEOUT;
use crate::bins;
use crate::process::Process;

/// Most connections one [`echo_service`] accepts.
const ECHO_CONNECTIONS: usize = 64;

/// A running `access-client`, stopped by PID when dropped (SIGTERM: it
/// releases its IIP and logs out).
#[derive(Debug)]
pub struct AccessClient {
    process: Process,
}

impl AccessClient {
    /// Starts `access-client` against the gateway at `gateway` (TLS, the
    /// certificate must chain to `ca`, checked for the name `localhost`),
    /// logging in as `user` with `password`. `forward` `(port, addr)`
    /// sends the flows for app port `port` to `addr` (else to
    /// `127.0.0.1:port`); `fqdn` registers the machine name. Does not wait:
    /// see [`AccessClient::leased`] and [`AccessClient::connected`].
    pub fn start(
        gateway: SocketAddr,
        ca: &Path,
        user: &str,
        password: &str,
        forward: Option<(u16, SocketAddr)>,
        fqdn: Option<&str>,
    ) -> Self {
        let mut command = Command::new(bins::access_client());
        command
            .args(["--gateway", &gateway.to_string()])
            .arg("--ca")
            .arg(ca)
            .args(["--server-name", "localhost", "--user", user])
            .env("ACCESS_PASSWORD", password)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if let Some(fqdn) = fqdn {
            command.args(["--fqdn", fqdn]);
        }
        if let Some((port, service)) = forward {
            command.args(["--forward", &format!("{port}={service}")]);
        }
        let mut child = command.spawn().expect("access-client starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        Self {
            process: Process::new(&format!("access-client {user}"), child, stdout),
        }
    }

    /// Waits (bounded) for the next lease line; the IIP and whether it was
    /// sticky.
    pub fn leased(&mut self) -> (String, bool) {
        let line = self
            .process
            .wait_for("iip= line", |l| l.starts_with("iip="));
        let iip = line.text["iip=".len()..]
            .split(' ')
            .next()
            .unwrap_or_default()
            .to_owned();
        (iip, line.text.ends_with("sticky=true"))
    }

    /// Waits (bounded) for the next lease and then its control connection
    /// (`control iip=IP`: flows can come); the IIP.
    pub fn connected(&mut self) -> String {
        let (iip, _) = self.leased();
        let control = format!("control iip={iip}");
        self.process.wait_for(&control, |l| l.starts_with(&control));
        iip
    }

    /// Waits (bounded) for the next line starting with `prefix`; the line.
    pub fn wait_for(&mut self, prefix: &str) -> String {
        self.process
            .wait_for(prefix, |line| line.starts_with(prefix))
            .text
    }

    /// Sends `signal` to the client by PID (TERM: release and exit; KILL:
    /// vanish without a release; STOP/CONT: freeze and resume).
    pub fn signal(&self, signal: Signal) {
        self.process.signal(signal);
    }
}

/// An echo service on the client side, on `127.0.0.1` (at most 64
/// connections, each on a thread of its own); its address.
pub fn echo_service() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the echo service");
    let addr = listener.local_addr().expect("the echo service's address");
    thread::spawn(move || {
        for stream in listener.incoming().take(ECHO_CONNECTIONS) {
            let Ok(mut stream) = stream else { continue };
            thread::spawn(move || {
                let mut buf = [0; 16 * 1024];
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 || stream.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// A back-end server's connection from `server_ip` (a loopback address)
/// to `iip:port`, retried every 50 ms while it is refused (nothing listens
/// yet), for at most [`TIMEOUT`]; reads on it time out after [`TIMEOUT`].
/// Panics on any other error, or when still refused at the deadline.
pub fn connect_from(server_ip: &str, iip: &str, port: u16) -> TcpStream {
    let target: SocketAddr = format!("{iip}:{port}").parse().expect("an IIP");
    let local: SocketAddr = format!("{server_ip}:0").parse().expect("a server IP");
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        socket.bind(&local.into()).unwrap();
        match socket.connect_timeout(&target.into(), Duration::from_secs(2)) {
            Ok(()) => {
                let stream: TcpStream = socket.into();
                stream.set_read_timeout(Some(TIMEOUT)).unwrap();
                return stream;
            }
            Err(error) if Instant::now() < deadline => {
                assert_eq!(error.kind(), ErrorKind::ConnectionRefused, "{error}");
                thread::sleep(Duration::from_millis(50));
            }
            Err(error) => panic!("{server_ip} -> {target}: {error}"),
        }
    }
}

/// Whether nothing listens on `iip:port`, now or within [`TIMEOUT`]
/// (polled every 50 ms while connections are still accepted).
pub fn refused_soon(iip: &str, port: u16) -> bool {
    let target: SocketAddr = format!("{iip}:{port}").parse().expect("an IIP");
    let deadline = Instant::now() + TIMEOUT;
    while Instant::now() < deadline {
        match TcpStream::connect_timeout(&target, Duration::from_secs(1)) {
            Err(error) if error.kind() == ErrorKind::ConnectionRefused => return true,
            _ => thread::sleep(Duration::from_millis(50)),
        }
    }
    false
}

/// Sends `message` on `stream` and reads as many bytes back (the echo);
/// panics on an error or a read timeout.
pub fn exchange(stream: &mut TcpStream, message: &[u8]) -> Vec<u8> {
    stream.write_all(message).unwrap();
    let mut echoed = vec![0; message.len()];
    stream.read_exact(&mut echoed).unwrap();
    echoed
}

/// Asserts that `stream` ends without delivering data (reset, aborted or
/// closed).
pub fn assert_refused(stream: &mut TcpStream) {
    let mut buf = [0; 16];
    match stream.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("a refused flow delivered {n} bytes"),
        Err(error) => assert!(
            matches!(
                error.kind(),
                ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted
            ),
            "{error}"
        ),
    }
}
