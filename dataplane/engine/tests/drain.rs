//! Graceful shutdown: stop accepting, let sessions finish, cut them at the
//! deadline. Loopback, both drivers.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a failed test"
)]

mod support;

use std::io::Write;
use std::time::{Duration, Instant};

use gatehouse_engine::{Driver, RelayMode};
use support::*;

fn drain_lets_an_open_session_finish_and_accepts_nothing_new(driver: Driver) {
    let echo = Echo::start(8);
    let engine = start_forward(config(driver, RelayMode::Auto), echo.addr);
    let listen = addr(&engine);
    let mut client = connect(listen);
    client.write_all(b"before").unwrap();
    assert_eq!(read_n(&mut client, 6), b"before");

    engine.shutdown(Duration::from_secs(10));

    // No new session: the connection is refused, or closed unforwarded.
    if let Ok(mut late) = std::net::TcpStream::connect_timeout(&listen, IO_TIMEOUT) {
        let _ = late.write_all(b"late");
        assert!(
            sees_close(&mut late, Duration::from_secs(5)),
            "a late connection is not served"
        );
    }
    assert_eq!(echo.accepted(), 1, "the back end saw no new connection");

    client.write_all(b"during").unwrap();
    assert_eq!(
        read_n(&mut client, 6),
        b"during",
        "the open session still works"
    );
    drop(client);
    let stopping = Instant::now();
    let stats = engine.join().unwrap();
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "the core exits when its last session ends, not at the deadline"
    );
    assert_eq!(stats[0].drain_cuts, 0);
    assert_eq!(stats[0].closed, 1);
}
under_each_driver!(drain_lets_an_open_session_finish_and_accepts_nothing_new);

fn drain_cuts_sessions_still_open_at_the_deadline(driver: Driver) {
    let echo = Echo::start(8);
    let engine = start_forward(config(driver, RelayMode::Auto), echo.addr);
    let mut client = connect(addr(&engine));
    client.write_all(b"hold").unwrap();
    assert_eq!(read_n(&mut client, 4), b"hold");

    let asked = Instant::now();
    engine.shutdown(Duration::from_millis(300));
    assert!(
        sees_close(&mut client, Duration::from_secs(5)),
        "the session is cut"
    );
    let cut_after = asked.elapsed();
    assert!(
        cut_after >= Duration::from_millis(250),
        "not before the deadline: {cut_after:?}"
    );
    let stats = engine.join().unwrap();
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "the core exits soon after the cut"
    );
    assert_eq!(stats[0].drain_cuts, 1);
    assert_eq!(stats[0].active, 0);
}
under_each_driver!(drain_cuts_sessions_still_open_at_the_deadline);

fn a_second_shutdown_shortens_the_drain(driver: Driver) {
    let echo = Echo::start(8);
    let engine = start_forward(config(driver, RelayMode::Auto), echo.addr);
    let mut client = connect(addr(&engine));
    client.write_all(b"hold").unwrap();
    assert_eq!(read_n(&mut client, 4), b"hold");
    let asked = Instant::now();
    engine.shutdown(Duration::from_secs(60));
    engine.shutdown(Duration::ZERO);
    assert!(sees_close(&mut client, Duration::from_secs(5)));
    engine.join().unwrap();
    assert!(asked.elapsed() < Duration::from_secs(3));
}
under_each_driver!(a_second_shutdown_shortens_the_drain);
