//! User flow: a launch that must not happen. Each way a ticket or its
//! worker can fail gets its SOCKSv5 reply code and one log event that names
//! the reason:
//!
//! | case | reply | event |
//! |---|---|---|
//! | unknown ticket (valid form, never issued) | `02` | `deny` `unknown_ticket` |
//! | reused ticket | `02` | `deny` `reused_ticket` |
//! | expired ticket | `02` | `deny` `expired_ticket` |
//! | unknown STA_ID | `02` | `deny` `unknown_sta` |
//! | worker unreachable (closed port) | `05` | `session_closed` `backend_refused` |
//!
//! A ticket refusal is decided by the control plane (`deny`, with `fault`);
//! an unreachable worker is found by the data-plane core when it connects,
//! after the ticket was redeemed, so its event is the core's
//! `session_closed`. Every client here speaks TLS to the gateway.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a failed test"
)]

use std::net::{SocketAddr, TcpListener};
use std::thread;
use std::time::{Duration, Instant};

use gatehouse_tests::gatehouse::{Gatehouse, count};
use gatehouse_tests::socks::{self, REPLY_CONNECTION_REFUSED, REPLY_NOT_ALLOWED, REPLY_SUCCEEDED};
use gatehouse_tests::vda_sim::VdaSim;

/// A ticket of the right form that no STA issued.
const NEVER_ISSUED: &str = ";40;STA01;NEVER0ISSUED0BY0ANY0STA000000000";

/// Presents `ticket` over TLS; returns the reply code after checking that
/// the gateway closes the connection on a refusal.
fn present(gatehouse: &Gatehouse, ticket: &str) -> u8 {
    let mut stream = socks::connect_tls(gatehouse.gateway(), &gatehouse.tls_client());
    let reply = socks::launch(&mut stream, ticket);
    if reply != REPLY_SUCCEEDED {
        socks::expect_closed(&mut stream);
    }
    reply
}

/// Stops the gateway and asserts that its whole log holds exactly one
/// `deny` event, with `reason` and fault `client`.
fn assert_one_deny(gatehouse: Gatehouse, reason: &str) {
    let events = gatehouse.stop();
    assert_eq!(
        count(&events, "deny", &[("reason", reason), ("fault", "client")]),
        1,
        "one deny event for {reason}"
    );
    assert_eq!(count(&events, "deny", &[]), 1, "no other deny event");
}

#[test]
fn a_ticket_that_was_never_issued_is_refused_with_02() {
    assert_eq!(NEVER_ISSUED.len(), 10 + 32, "the form of a real ticket");
    let mut gatehouse = Gatehouse::start("");
    assert_eq!(present(&gatehouse, NEVER_ISSUED), REPLY_NOT_ALLOWED);
    let deny = gatehouse.wait_for_event("deny", &[("reason", "unknown_ticket")]);
    assert_eq!(deny.field("proto"), Some("socks5"));
    assert!(
        !deny.json.to_string().contains(&NEVER_ISSUED[14..]),
        "the presented secret is not logged"
    );
    assert_one_deny(gatehouse, "unknown_ticket");
}

#[test]
fn a_ticket_used_a_second_time_is_refused_with_02() {
    let sim = VdaSim::start();
    let mut gatehouse = Gatehouse::start("");
    let ticket = gatehouse.issue(sim.ica());

    let mut first = socks::connect_tls(gatehouse.gateway(), &gatehouse.tls_client());
    assert_eq!(socks::launch(&mut first, &ticket), REPLY_SUCCEEDED);
    socks::expect_detect_and_echo(&mut first, b"first use");
    drop(first);

    assert_eq!(present(&gatehouse, &ticket), REPLY_NOT_ALLOWED);
    gatehouse.wait_for_event("deny", &[("reason", "reused_ticket")]);
    assert_one_deny(gatehouse, "reused_ticket");
    assert_eq!(sim.stop().code(), Some(0));
}

#[test]
fn a_ticket_naming_an_unknown_sta_is_refused_with_02() {
    let mut gatehouse = Gatehouse::start("");
    let foreign = ";40;STA09;AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    assert_eq!(present(&gatehouse, foreign), REPLY_NOT_ALLOWED);
    gatehouse.wait_for_event("deny", &[("reason", "unknown_sta")]);
    assert_one_deny(gatehouse, "unknown_sta");
}

#[test]
fn an_expired_ticket_is_refused_with_02() {
    // The shortest lifetime is 1 s. Past it the STA answers `expired`
    // whether or not its sweep has reached the ticket yet (a swept ticket
    // stays an `Expired` tombstone for a grace period).
    let mut gatehouse = Gatehouse::start("[sta]\nticket_ttl_secs = 1\n");
    let nowhere: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let ticket = gatehouse.issue(nowhere);
    let issued = Instant::now();

    let mut stream = socks::connect_tls(gatehouse.gateway(), &gatehouse.tls_client());
    socks::greet(&mut stream);
    sleep_until(issued + Duration::from_millis(1_500));
    assert_eq!(socks::connect(&mut stream, &ticket), REPLY_NOT_ALLOWED);
    socks::expect_closed(&mut stream);

    let deny = gatehouse.wait_for_event("deny", &[]);
    assert_eq!(
        deny.field("reason"),
        Some("expired_ticket"),
        "{}",
        deny.json
    );
    assert_one_deny(gatehouse, "expired_ticket");
}

fn sleep_until(at: Instant) {
    thread::sleep(at.saturating_duration_since(Instant::now()));
}

#[test]
fn a_worker_that_refuses_the_connection_is_reported_with_05() {
    // A loopback port that was just free and has no listener now.
    let closed = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let mut gatehouse = Gatehouse::start("");
    let ticket = gatehouse.issue(closed);
    assert_eq!(present(&gatehouse, &ticket), REPLY_CONNECTION_REFUSED);

    let worker = closed.to_string();
    gatehouse.wait_for_event("ticket_redeemed", &[("worker", &worker)]);
    gatehouse.wait_for_event(
        "session_closed",
        &[("reason", "backend_refused"), ("fault", "worker")],
    );
    let events = gatehouse.stop();
    assert_eq!(
        count(
            &events,
            "session_closed",
            &[("reason", "backend_refused"), ("fault", "worker")]
        ),
        1,
        "one event names the reason"
    );
    assert_eq!(count(&events, "deny", &[]), 0, "the ticket itself was good");
}
