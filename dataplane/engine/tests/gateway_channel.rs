//! The gateway with the channel-backed redeemer, through a real engine and
//! an in-process channel, against a fake control plane on a plain thread:
//! a redeemed launch and its reports, denials, a silent control plane, a
//! full ring, a full pending table, a kill order. Loopback, both drivers.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a failed test"
)]

mod support;

use std::net::{Shutdown, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use gatehouse_channel::{
    ClientAddr, ControlPort, ControlSide, DataSide, DenyReason, Geometry, KillSession, RedeemKind,
    RedeemTicket, RequestId, SessionId, ToControl, ToCore, Verdict, WorkerAddr, in_process,
};
use gatehouse_engine::{
    ChannelRedeemerConfig, Driver, EngineHandle, GatewayConfig, GatewayFactory, RelayMode,
};
use gatehouse_wire::socks5::Reply;
use support::launch::*;
use support::*;

/// What the fake control plane answers to a redemption (`None`: silence).
type Answer = Box<dyn Fn(&RedeemTicket) -> Option<Verdict> + Send>;

/// A control plane stand-in serving one core's port on its own thread,
/// with the port's blocking `wait`. Records every message it receives.
struct FakeControl {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    seen: mpsc::Receiver<ToControl>,
}

impl FakeControl {
    fn start(mut port: ControlPort, answer: Answer, kill_on_open: bool) -> FakeControl {
        let stop = Arc::new(AtomicBool::new(false));
        let (seen_tx, seen) = mpsc::channel();
        let stopping = stop.clone();
        let thread = thread::spawn(move || {
            let give_up = Instant::now() + Duration::from_secs(60);
            while !stopping.load(Ordering::SeqCst) && Instant::now() < give_up {
                port.wait(Some(Duration::from_millis(20))).unwrap();
                while let Some(envelope) = port.try_recv().unwrap() {
                    let _ = seen_tx.send(envelope.message.clone());
                    match &envelope.message {
                        ToControl::RedeemTicket(redeem) => {
                            if let Some(verdict) = answer(redeem) {
                                port.try_send(envelope.request_id, &ToCore::Verdict(verdict))
                                    .unwrap();
                            }
                        }
                        ToControl::SessionOpened(opened) if kill_on_open => {
                            let kill = ToCore::KillSession(KillSession {
                                session: opened.session,
                            });
                            port.try_send(RequestId(0), &kill).unwrap();
                        }
                        _ => {}
                    }
                }
            }
        });
        FakeControl {
            stop,
            thread: Some(thread),
            seen,
        }
    }

    /// The next message that `pick` accepts, within 5 s.
    fn expect<T>(&self, what: &str, pick: impl Fn(ToControl) -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.seen.recv_timeout(left) {
                Ok(message) => {
                    if let Some(found) = pick(message) {
                        return found;
                    }
                }
                Err(_) => panic!("the control plane never saw {what}"),
            }
        }
    }
}

impl Drop for FakeControl {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
    }
}

/// An engine whose one core redeems over an in-process channel of `slots`
/// slots per ring; returns the control side's port for core 0.
struct Rig {
    engine: EngineHandle,
    control_port: Option<ControlPort>,
    _sides: (ControlSide, DataSide),
}

fn rig(driver: Driver, slots: u32, redeem: ChannelRedeemerConfig) -> Rig {
    let (control, data) = in_process(Geometry::new(1, slots).unwrap()).unwrap();
    let ports = data.take_ports().unwrap();
    let factory = GatewayFactory::with_channel(GatewayConfig::plaintext(), ports, redeem);
    let engine = start(config(driver, RelayMode::Auto), factory);
    let control_port = control.take_ports().unwrap().pop();
    Rig {
        engine,
        control_port,
        _sides: (control, data),
    }
}

fn allow_to(worker: SocketAddr) -> Answer {
    Box::new(move |_| {
        Some(Verdict::Allow {
            worker: WorkerAddr(worker),
            session: SessionId(42),
            reconnect_ticket: None,
            worker_ticket: None,
        })
    })
}

fn a_launch_redeemed_over_the_channel_reaches_its_worker_and_is_reported(driver: Driver) {
    let echo = Echo::start(4);
    let mut rig = rig(driver, 64, ChannelRedeemerConfig::default());
    let control = FakeControl::start(rig.control_port.take().unwrap(), allow_to(echo.addr), false);

    let (mut stream, reply) = plain_launch(addr(&rig.engine), &connect_ticket(TICKET));
    assert_eq!(reply, Reply::Succeeded);
    let client = ClientAddr(stream.local_addr().unwrap());
    let payload = pattern(1_000, 3);
    assert!(echo_round(&mut stream, &payload) == payload);
    stream.shutdown(Shutdown::Write).unwrap();
    assert!(read_to_end(&mut stream).is_empty());

    let redeem = control.expect("the redemption", |m| match m {
        ToControl::RedeemTicket(r) => Some(r),
        _ => None,
    });
    assert_eq!(redeem.kind, RedeemKind::Socks);
    assert_eq!(redeem.ticket.as_bytes(), TICKET);
    assert_eq!(redeem.client, client);
    let opened = control.expect("the session opening", |m| match m {
        ToControl::SessionOpened(o) => Some(o),
        _ => None,
    });
    assert_eq!(
        (opened.session, opened.worker),
        (SessionId(42), WorkerAddr(echo.addr))
    );
    let closed = control.expect("the session closing", |m| match m {
        ToControl::SessionClosed(c) => Some(c),
        _ => None,
    });
    assert_eq!(closed.session, SessionId(42));
    assert_eq!((closed.bytes_up, closed.bytes_down), (1_000, 1_000));

    let stats = wait_for_stats(&rig.engine, |s| s.closed == 1);
    assert_eq!(stats.refusals.total(), 0, "{:?}", stats.refusals);
    assert_eq!(stats.reports_dropped, 0);
    rig.engine.shutdown(Duration::ZERO);
}
under_each_driver!(a_launch_redeemed_over_the_channel_reaches_its_worker_and_is_reported);

fn denied_tickets_get_their_reply_codes_and_reasons(driver: Driver) {
    let mut rig = rig(driver, 64, ChannelRedeemerConfig::default());
    let cases: [(&[u8], DenyReason, Reply, &str); 5] = [
        (
            b"unknown",
            DenyReason::UnknownTicket,
            Reply::NotAllowed,
            "ticket_unknown",
        ),
        (
            b"expired",
            DenyReason::Expired,
            Reply::NotAllowed,
            "ticket_expired",
        ),
        (
            b"reused",
            DenyReason::Reused,
            Reply::NotAllowed,
            "ticket_reused",
        ),
        (
            b"no-such-sta",
            DenyReason::UnknownSta,
            Reply::NotAllowed,
            "unknown_sta",
        ),
        (
            b"worker-down",
            DenyReason::WorkerUnreachable,
            Reply::HostUnreachable,
            "worker_unreachable",
        ),
    ];
    let answer: Answer = Box::new(move |redeem| {
        let reason = cases
            .iter()
            .find(|(ticket, ..)| *ticket == redeem.ticket.as_bytes())
            .map_or(DenyReason::Internal, |case| case.1);
        Some(Verdict::Deny { reason })
    });
    let _control = FakeControl::start(rig.control_port.take().unwrap(), answer, false);
    for (ticket, _, expected, reason) in &cases {
        let (mut stream, reply) = plain_launch(addr(&rig.engine), &connect_ticket(ticket));
        assert_eq!(reply, *expected, "{reason}");
        assert!(read_to_end(&mut stream).is_empty());
    }
    let stats = wait_for_stats(&rig.engine, |s| s.closed == 5);
    for (_, _, _, reason) in &cases {
        assert_eq!(
            stats.refusals.get(reason),
            1,
            "{reason}: {:?}",
            stats.refusals
        );
    }
    rig.engine.shutdown(Duration::ZERO);
}
under_each_driver!(denied_tickets_get_their_reply_codes_and_reasons);

fn a_redeemed_session_whose_worker_refuses_is_reported_closed(driver: Driver) {
    let mut rig = rig(driver, 64, ChannelRedeemerConfig::default());
    let control = FakeControl::start(
        rig.control_port.take().unwrap(),
        allow_to(closed_port()),
        false,
    );
    let (mut stream, reply) = plain_launch(addr(&rig.engine), &connect_ticket(TICKET));
    assert_eq!(reply, Reply::ConnectionRefused);
    assert!(read_to_end(&mut stream).is_empty());
    let closed = control.expect("the session closing", |m| match m {
        ToControl::SessionOpened(_) => panic!("a session that never relayed was reported open"),
        ToControl::SessionClosed(c) => Some(c),
        _ => None,
    });
    assert_eq!(closed.session, SessionId(42));
    assert_eq!((closed.bytes_up, closed.bytes_down), (0, 0));
    let stats = wait_for_stats(&rig.engine, |s| s.closed == 1);
    assert_eq!(
        stats.refusals.get("backend_refused"),
        1,
        "{:?}",
        stats.refusals
    );
    rig.engine.shutdown(Duration::ZERO);
}
under_each_driver!(a_redeemed_session_whose_worker_refuses_is_reported_closed);

fn a_silent_control_plane_gets_01_after_the_deadline(driver: Driver) {
    let deadline = Duration::from_millis(300);
    let redeem = ChannelRedeemerConfig {
        deadline,
        ..ChannelRedeemerConfig::default()
    };
    let mut rig = rig(driver, 64, redeem);
    let control = FakeControl::start(rig.control_port.take().unwrap(), Box::new(|_| None), false);
    let asked = Instant::now();
    let (mut stream, reply) = plain_launch(addr(&rig.engine), &connect_ticket(TICKET));
    assert_eq!(reply, Reply::GeneralFailure);
    let waited = asked.elapsed();
    assert!(waited >= deadline, "not before the deadline: {waited:?}");
    assert!(waited < Duration::from_secs(3), "soon after it: {waited:?}");
    assert!(read_to_end(&mut stream).is_empty());
    control.expect("the redemption", |m| match m {
        ToControl::RedeemTicket(r) => Some(r),
        _ => None,
    });
    let stats = wait_for_stats(&rig.engine, |s| s.closed == 1);
    assert_eq!(
        stats.refusals.get("control_plane_timeout"),
        1,
        "{:?}",
        stats.refusals
    );
    rig.engine.shutdown(Duration::ZERO);
}
under_each_driver!(a_silent_control_plane_gets_01_after_the_deadline);

/// Starts a launch on its own thread (its reply comes later).
fn launch_in_background(listen: SocketAddr) -> JoinHandle<Reply> {
    thread::spawn(move || plain_launch(listen, &connect_ticket(TICKET)).1)
}

/// Waits until `port`'s inbound ring holds `n` messages.
fn wait_for_backlog(port: &ControlPort, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while port.inbound_backlog() < n {
        assert!(
            Instant::now() < deadline,
            "the core never sent {n} requests"
        );
        thread::sleep(Duration::from_millis(5));
    }
}

fn a_full_request_ring_gets_01_at_once(driver: Driver) {
    let deadline = Duration::from_secs(1);
    let redeem = ChannelRedeemerConfig {
        deadline,
        ..ChannelRedeemerConfig::default()
    };
    // Two slots and nobody reading them: the third redemption finds no room.
    let rig = rig(driver, 2, redeem);
    let port = rig.control_port.as_ref().unwrap();
    let listen = addr(&rig.engine);
    let first = launch_in_background(listen);
    wait_for_backlog(port, 1);
    let second = launch_in_background(listen);
    wait_for_backlog(port, 2);

    let asked = Instant::now();
    let (_stream, reply) = plain_launch(listen, &connect_ticket(TICKET));
    assert_eq!(reply, Reply::GeneralFailure);
    assert!(asked.elapsed() < deadline, "refused without waiting");
    assert_eq!(first.join().unwrap(), Reply::GeneralFailure);
    assert_eq!(second.join().unwrap(), Reply::GeneralFailure);

    let stats = wait_for_stats(&rig.engine, |s| s.closed == 3);
    assert_eq!(
        stats.refusals.get("channel_full"),
        1,
        "{:?}",
        stats.refusals
    );
    assert_eq!(stats.refusals.get("control_plane_timeout"), 2);
    rig.engine.shutdown(Duration::ZERO);
}
under_each_driver!(a_full_request_ring_gets_01_at_once);

fn a_full_pending_table_gets_01_at_once(driver: Driver) {
    let deadline = Duration::from_secs(1);
    let redeem = ChannelRedeemerConfig {
        deadline,
        max_pending: 1,
        ..ChannelRedeemerConfig::default()
    };
    let rig = rig(driver, 64, redeem);
    let port = rig.control_port.as_ref().unwrap();
    let listen = addr(&rig.engine);
    let first = launch_in_background(listen);
    wait_for_backlog(port, 1);

    let asked = Instant::now();
    let (_stream, reply) = plain_launch(listen, &connect_ticket(TICKET));
    assert_eq!(reply, Reply::GeneralFailure);
    assert!(asked.elapsed() < deadline, "refused without waiting");
    assert_eq!(first.join().unwrap(), Reply::GeneralFailure);
    let stats = wait_for_stats(&rig.engine, |s| s.closed == 2);
    assert_eq!(
        stats.refusals.get("pending_full"),
        1,
        "{:?}",
        stats.refusals
    );
    assert_eq!(stats.refusals.get("control_plane_timeout"), 1);
    assert_eq!(port.inbound_backlog(), 1, "the refused one was never sent");
    rig.engine.shutdown(Duration::ZERO);
}
under_each_driver!(a_full_pending_table_gets_01_at_once);

fn a_kill_order_ends_the_relay_within_a_second(driver: Driver) {
    let echo = Echo::start(4);
    let mut rig = rig(driver, 64, ChannelRedeemerConfig::default());
    let control = FakeControl::start(rig.control_port.take().unwrap(), allow_to(echo.addr), true);
    let (mut stream, reply) = plain_launch(addr(&rig.engine), &connect_ticket(TICKET));
    assert_eq!(reply, Reply::Succeeded);
    let opened_at = Instant::now();
    assert!(
        sees_close(&mut stream, Duration::from_secs(5)),
        "the killed session is closed"
    );
    assert!(
        opened_at.elapsed() < Duration::from_secs(1),
        "within a second"
    );
    let closed = control.expect("the session closing", |m| match m {
        ToControl::SessionClosed(c) => Some(c),
        _ => None,
    });
    assert_eq!(closed.session, SessionId(42));
    let stats = wait_for_stats(&rig.engine, |s| s.closed == 1);
    assert_eq!(stats.kills, 1);
    rig.engine.shutdown(Duration::ZERO);
}
under_each_driver!(a_kill_order_ends_the_relay_within_a_second);

fn a_session_cut_at_the_drain_deadline_is_still_reported_closed(driver: Driver) {
    let echo = Echo::start(4);
    let mut rig = rig(driver, 64, ChannelRedeemerConfig::default());
    let control = FakeControl::start(rig.control_port.take().unwrap(), allow_to(echo.addr), false);
    let (mut stream, reply) = plain_launch(addr(&rig.engine), &connect_ticket(TICKET));
    assert_eq!(reply, Reply::Succeeded);
    assert_eq!(echo_round(&mut stream, b"12345"), b"12345");
    rig.engine.shutdown(Duration::from_millis(100));
    assert!(sees_close(&mut stream, Duration::from_secs(5)), "cut");
    let closed = control.expect("the session closing", |m| match m {
        ToControl::SessionClosed(c) => Some(c),
        _ => None,
    });
    assert_eq!((closed.bytes_up, closed.bytes_down), (5, 5));
    let stats = rig.engine.join().unwrap();
    assert_eq!(stats[0].drain_cuts, 1);
}
under_each_driver!(a_session_cut_at_the_drain_deadline_is_still_reported_closed);
