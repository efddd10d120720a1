//! Per-core limits and the idle timeout, on loopback, under both drivers.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a failed test"
)]

mod support;

use std::io::{Read, Write};
use std::thread;
use std::time::{Duration, Instant};

use gatehouse_engine::{
    Conn, CoreId, Driver, Fault, Handler, HandlerFactory, RelayMode, Session, SessionEnd,
};
use monoio::io::AsyncReadRent;
use support::*;

fn an_idle_session_is_closed_after_the_timeout(driver: Driver) {
    let echo = Echo::start(4);
    let mut config = config(driver, RelayMode::Auto);
    config.idle_timeout = Duration::from_millis(300);
    let engine = start_forward(config, echo.addr);
    let mut client = connect(addr(&engine));
    client.write_all(b"ping").unwrap();
    assert_eq!(read_n(&mut client, 4), b"ping");
    let quiet = Instant::now();
    assert!(
        sees_close(&mut client, Duration::from_secs(5)),
        "the session is closed"
    );
    let waited = quiet.elapsed();
    assert!(
        waited >= Duration::from_millis(250),
        "not before the timeout: {waited:?}"
    );
    let stats = wait_for_stats(&engine, |s| s.closed == 1);
    assert_eq!((stats.idle_timeouts, stats.active), (1, 0));
    engine.shutdown(Duration::ZERO);
    engine.join().unwrap();
}
under_each_driver!(an_idle_session_is_closed_after_the_timeout);

fn a_session_that_keeps_talking_outlives_the_idle_timeout(driver: Driver) {
    let echo = Echo::start(4);
    let mut config = config(driver, RelayMode::Auto);
    config.idle_timeout = Duration::from_millis(300);
    let engine = start_forward(config, echo.addr);
    let mut client = connect(addr(&engine));
    for round in 0..12u8 {
        client.write_all(&[round]).unwrap();
        assert_eq!(
            read_n(&mut client, 1),
            [round],
            "still open at round {round}"
        );
        thread::sleep(Duration::from_millis(100));
    }
    let stats = engine.stats().unwrap();
    assert_eq!(stats[0].idle_timeouts, 0);
    engine.shutdown(Duration::ZERO);
    engine.join().unwrap();
}
under_each_driver!(a_session_that_keeps_talking_outlives_the_idle_timeout);

fn connections_over_the_limit_are_closed_at_once(driver: Driver) {
    let echo = Echo::start(8);
    let mut config = config(driver, RelayMode::Auto);
    config.max_connections_per_core = 2;
    let engine = start_forward(config, echo.addr);
    let mut first = connect(addr(&engine));
    let mut second = connect(addr(&engine));
    for client in [&mut first, &mut second] {
        client.write_all(b"hi").unwrap();
        assert_eq!(read_n(client, 2), b"hi");
    }
    let mut third = connect(addr(&engine));
    let asked = Instant::now();
    assert!(sees_close(&mut third, Duration::from_secs(5)), "refused");
    assert!(asked.elapsed() < Duration::from_secs(2), "refused at once");
    let stats = wait_for_stats(&engine, |s| s.refused_max_connections == 1);
    assert_eq!(stats.refused_max_connections, 1);
    assert_eq!(stats.accepted, 2, "a refused connection is not a session");

    drop(first);
    let stats = wait_for_stats(&engine, |s| s.active == 1);
    assert_eq!(stats.active, 1);
    let mut fourth = connect(addr(&engine));
    fourth.write_all(b"ok").unwrap();
    assert_eq!(
        read_n(&mut fourth, 2),
        b"ok",
        "a freed slot is usable again"
    );
    engine.shutdown(Duration::ZERO);
    engine.join().unwrap();
}
under_each_driver!(connections_over_the_limit_are_closed_at_once);

/// A handler whose handshake never finishes: it reads until the client
/// closes and never calls `Session::established`.
#[derive(Debug, Clone)]
struct Stalls;

impl HandlerFactory for Stalls {
    type Handler = Stalls;

    fn build(&self, _core: CoreId) -> Stalls {
        Stalls
    }
}

impl Handler for Stalls {
    async fn handle(&self, mut conn: Conn, _session: &Session) -> SessionEnd {
        let mut buf = Vec::with_capacity(64);
        for _ in 0..1_000 {
            let (read, back) = conn.stream.read(buf).await;
            buf = back;
            buf.clear();
            if !matches!(read, Ok(n) if n > 0) {
                break;
            }
        }
        SessionEnd::Refused {
            reason: "stalled",
            fault: Fault::Client,
        }
    }
}

fn handshakes_over_the_limit_are_closed_at_once(driver: Driver) {
    let mut config = config(driver, RelayMode::Auto);
    config.max_pending_handshakes_per_core = 1;
    let engine = start(config, Stalls);
    let first = connect(addr(&engine));
    let stats = wait_for_stats(&engine, |s| s.pending == 1);
    assert_eq!(stats.pending, 1);
    let mut second = connect(addr(&engine));
    assert!(sees_close(&mut second, Duration::from_secs(5)), "refused");
    let stats = wait_for_stats(&engine, |s| s.refused_max_pending_handshakes == 1);
    assert_eq!(stats.refused_max_pending_handshakes, 1);
    assert_eq!(stats.refused_max_connections, 0);
    drop(first);
    let stats = wait_for_stats(&engine, |s| s.pending == 0 && s.closed == 1);
    assert_eq!((stats.pending, stats.active), (0, 0));
    let mut third = connect(addr(&engine));
    third.write_all(b"x").unwrap();
    third
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut byte = [0u8; 1];
    assert!(
        third.read(&mut byte).is_err(),
        "a freed pending slot admits the next handshake (held open, not closed)"
    );
    engine.shutdown(Duration::ZERO);
    engine.join().unwrap();
}
under_each_driver!(handshakes_over_the_limit_are_closed_at_once);
