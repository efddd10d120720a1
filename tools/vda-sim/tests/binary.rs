//! The real `vda-sim` binary: `--announce` with port 0, ICA and CGP
//! through the announced ports, and a clean exit (status 0) on SIGTERM and
//! SIGINT sent to its PID.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers: a panic is a failed test"
)]

mod support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gatehouse_vda_sim::cgp_client::PROXY_SERVICE_ID;
use gatehouse_vda_sim::pattern::PatternChecker;
use gatehouse_vda_sim::service::ServiceRequest;
use gatehouse_vda_sim::{BindOutcome, CgpClient, CgpConnection, Event, ICA_DETECT};
use gatehouse_wire::cgp::{ChannelId, Reason};
use support::{STA_TICKET, cut, run};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Kills the child if a test fails before it was stopped.
struct Sim {
    child: Child,
    ica: SocketAddr,
    cgp: SocketAddr,
}

impl Drop for Sim {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn start() -> Sim {
    let mut child = Command::new(env!("CARGO_BIN_EXE_vda-sim"))
        .args([
            "--ica-listen",
            "127.0.0.1:0",
            "--cgp-listen",
            "127.0.0.1:0",
            "--announce",
            "--reliability-ttl",
            "30",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let mut ica = None;
    let mut cgp = None;
    for part in line.split_whitespace() {
        match part.split_once('=') {
            Some(("ica", addr)) => ica = Some(addr.parse().unwrap()),
            Some(("cgp", addr)) => cgp = Some(addr.parse().unwrap()),
            _ => panic!("unexpected announce part {part:?} in {line:?}"),
        }
    }
    Sim {
        child,
        ica: ica.expect("announce names the ICA address"),
        cgp: cgp.expect("announce names the CGP address"),
    }
}

/// Sends `signal` to the sim by PID and waits (bounded) for its exit code.
fn stop(mut sim: Sim, signal: &str) -> Option<i32> {
    let status = Command::new("kill")
        .args([format!("-{signal}"), sim.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{signal} works");
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Some(status) = sim.child.try_wait().unwrap() {
            return status.code();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("vda-sim did not exit within 15 s of SIG{signal}");
}

#[test]
fn serves_ica_and_a_resumed_cgp_stream_then_exits_cleanly_on_sigterm() {
    let sim = start();
    let (ica, cgp) = (sim.ica, sim.cgp);
    run(async move {
        let mut stream = TcpStream::connect(ica).await.unwrap();
        let mut detect = [0; 6];
        stream.read_exact(&mut detect).await.unwrap();
        assert_eq!(detect, ICA_DETECT);
        stream.write_all(b"ping").await.unwrap();
        let mut echo = [0; 4];
        stream.read_exact(&mut echo).await.unwrap();
        assert_eq!(&echo, b"ping");

        let total = 1_000_000;
        let channel = ChannelId(5);
        let mut client = CgpClient::default();
        let tcp = TcpStream::connect(cgp).await.unwrap();
        let (connection, outcome) = CgpConnection::connect(tcp, &mut client, STA_TICKET)
            .await
            .unwrap();
        assert_eq!(outcome, BindOutcome::Opened);
        let mut connection = Some(connection);
        client.open_channel(channel, PROXY_SERVICE_ID, b"").unwrap();
        let mut request = Vec::new();
        ServiceRequest::Stream { len: total }.encode(&mut request);
        client.send(channel, &request).unwrap();
        let mut checker = PatternChecker::new();
        let mut resumed = false;
        loop {
            let event = connection.as_mut().unwrap().next_event(&mut client).await;
            match event.unwrap() {
                Some(Event::ChannelOpened { .. }) => {}
                Some(Event::Data { payload, .. }) => checker.feed(&payload).unwrap(),
                Some(Event::ChannelClosed { reason, .. }) => {
                    assert_eq!(reason, Reason::NORMAL);
                    break;
                }
                other => panic!("unexpected {other:?}"),
            }
            if !resumed && checker.offset() >= total / 2 {
                resumed = true;
                cut(connection.take().unwrap().into_inner());
                client.connection_lost();
                let tcp = TcpStream::connect(cgp).await.unwrap();
                let (again, outcome) = CgpConnection::resume(tcp, &mut client).await.unwrap();
                assert!(matches!(outcome, BindOutcome::Resumed { .. }));
                connection = Some(again);
            }
        }
        assert!(resumed);
        assert_eq!(checker.offset(), total);
    });
    assert_eq!(stop(sim, "TERM"), Some(0), "clean exit on SIGTERM");
}

#[test]
fn exits_cleanly_on_sigint_with_a_connection_open() {
    let sim = start();
    let ica = sim.ica;
    let held = std::net::TcpStream::connect(ica).unwrap();
    assert_eq!(stop(sim, "INT"), Some(0), "clean exit on SIGINT");
    drop(held);
}

#[test]
fn refuses_to_start_without_a_listener() {
    let status = Command::new(env!("CARGO_BIN_EXE_vda-sim"))
        .arg("--announce")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(2), "clap usage error");
}
