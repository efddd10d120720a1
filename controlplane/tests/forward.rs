//! End to end: the real `gatehouse forward` binary relays bytes and exits
//! with status 0 on SIGTERM (and SIGINT) after draining.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a failed test"
)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(10);

/// An echo server for at most `max` connections.
fn echo(max: usize) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming().take(max) {
            let Ok(mut stream) = stream else { continue };
            thread::spawn(move || {
                stream.set_read_timeout(Some(TIMEOUT)).unwrap();
                let mut buf = [0u8; 16 * 1_024];
                while let Ok(n @ 1..) = stream.read(&mut buf) {
                    if stream.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = stream.shutdown(Shutdown::Write);
            });
        }
    });
    addr
}

/// The running binary and the address it listens on (from its log).
struct Forwarder {
    child: Child,
    listen: SocketAddr,
}

fn start_forwarder(to: SocketAddr, extra: &[&str]) -> Forwarder {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args([
            "forward",
            "--listen",
            "127.0.0.1:0",
            "--to",
            &to.to_string(),
            "--cores",
            "1",
        ])
        .args(extra)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines().take(10_000) {
            let Ok(line) = line else { break };
            if line.contains("forward_ready") {
                let listen = line
                    .split_whitespace()
                    .find_map(|field| field.strip_prefix("listen="))
                    .and_then(|addr| addr.parse::<SocketAddr>().ok());
                let _ = tx.send(listen);
            }
        }
    });
    let listen = rx
        .recv_timeout(TIMEOUT)
        .expect("the binary logs forward_ready")
        .expect("forward_ready names the listen address");
    Forwarder { child, listen }
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{name} works");
}

fn wait_exit(child: &mut Child, within: Duration) -> ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("gatehouse forward did not exit within {within:?}");
        }
        thread::sleep(Duration::from_millis(20));
    }
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, TIMEOUT).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream
}

fn relays_bytes_and_exits_zero_on_sigterm(driver: &str, relay: &str) {
    let backend = echo(4);
    let mut forwarder = start_forwarder(backend, &["--driver", driver, "--relay", relay]);
    let mut client = connect(forwarder.listen);
    let message: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    client.write_all(&message).unwrap();
    let mut back = vec![0u8; message.len()];
    client.read_exact(&mut back).unwrap();
    assert!(
        back == message,
        "bytes come back unchanged through the binary"
    );
    drop(client);
    signal(&forwarder.child, "TERM");
    let status = wait_exit(&mut forwarder.child, TIMEOUT);
    assert_eq!(status.code(), Some(0), "clean exit on SIGTERM");
}

#[test]
fn relays_bytes_and_exits_zero_on_sigterm_under_io_uring() {
    relays_bytes_and_exits_zero_on_sigterm("io-uring", "splice");
}

#[test]
fn relays_bytes_and_exits_zero_on_sigterm_under_legacy() {
    relays_bytes_and_exits_zero_on_sigterm("legacy", "copy");
}

#[test]
fn sigint_drains_an_open_session_then_exits_zero() {
    let backend = echo(4);
    let mut forwarder = start_forwarder(backend, &["--drain-deadline", "0.3"]);
    let mut client = connect(forwarder.listen);
    client.write_all(b"hello").unwrap();
    let mut back = [0u8; 5];
    client.read_exact(&mut back).unwrap();
    signal(&forwarder.child, "INT");
    // The session is cut at the drain deadline: the client sees the close.
    let mut rest = Vec::new();
    let _ = client.read_to_end(&mut rest);
    let status = wait_exit(&mut forwarder.child, TIMEOUT);
    assert_eq!(status.code(), Some(0), "clean exit after the drain");
}

#[test]
fn a_bad_flag_value_exits_with_the_config_status() {
    let status = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args([
            "forward",
            "--listen",
            "127.0.0.1:0",
            "--to",
            "127.0.0.1:9",
            "--idle-timeout",
            "0",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(64));
}
