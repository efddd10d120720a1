//! The channel redeemer on one runtime, the control plane's port driven by
//! hand from the same thread (no engine).

use std::io::Write;
use std::net::SocketAddr;

use gatehouse_channel::{ControlPort, Geometry, WorkerAddr, in_process};

use super::*;

fn client() -> ClientAddr {
    ClientAddr(SocketAddr::from(([127, 0, 0, 1], 50_000)))
}

fn run<F: Future>(future: F) -> F::Output {
    monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
        .expect("legacy runtime")
        .block_on(future)
}

/// The next message the core sent, polling for at most a second.
async fn next_request(port: &mut ControlPort) -> Envelope<ToControl> {
    for _ in 0..200 {
        if let Some(envelope) = port.try_recv().unwrap() {
            return envelope;
        }
        monoio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("the core sent nothing");
}

#[test]
fn a_late_allow_for_an_abandoned_redemption_releases_the_session() {
    run(async {
        let (control, data) = in_process(Geometry::new(1, 8).unwrap()).unwrap();
        let port = data.take_ports().unwrap().pop().unwrap();
        let mut control_port = control.take_ports().unwrap().pop().unwrap();
        let redeemer = ChannelRedeemer::start(port, ChannelRedeemerConfig::default()).unwrap();

        // The handler gives up before the verdict (its own deadline).
        let gave_up = monoio::time::timeout(
            Duration::from_millis(20),
            redeemer.redeem(b";40;STA01;TICKET", client()),
        )
        .await;
        assert!(gave_up.is_err());
        let request = next_request(&mut control_port).await;
        let allow = ToCore::Verdict(Verdict::Allow {
            worker: WorkerAddr(SocketAddr::from(([127, 0, 0, 1], 1494))),
            session: SessionId(7),
            reconnect_ticket: None,
            worker_ticket: None,
        });
        control_port.try_send(request.request_id, &allow).unwrap();

        let released = next_request(&mut control_port).await;
        assert_eq!(
            released.message,
            ToControl::SessionClosed(SessionClosed {
                session: SessionId(7),
                bytes_up: 0,
                bytes_down: 0,
                duration_ms: 0,
            })
        );
        assert_eq!(redeemer.stats().stray_verdicts, 1);
    });
}

#[test]
fn a_ticket_too_long_for_a_message_is_denied_without_asking() {
    run(async {
        let (control, data) = in_process(Geometry::new(1, 8).unwrap()).unwrap();
        let port = data.take_ports().unwrap().pop().unwrap();
        let control_port = control.take_ports().unwrap().pop().unwrap();
        let redeemer = ChannelRedeemer::start(port, ChannelRedeemerConfig::default()).unwrap();
        let long = vec![b'A'; 200];
        assert_eq!(
            redeemer.redeem(&long, client()).await,
            Err(RedeemError::Denied(DenyReason::Malformed))
        );
        assert_eq!(control_port.inbound_backlog(), 0);
    });
}

#[test]
fn a_core_without_a_port_refuses_every_ticket() {
    run(async {
        let redeemer = ChannelRedeemer::unavailable();
        assert_eq!(
            redeemer.redeem(b"T", client()).await,
            Err(RedeemError::NoChannel)
        );
        let closed = SessionReport::Closed(SessionClosed {
            session: SessionId(1),
            bytes_up: 0,
            bytes_down: 0,
            duration_ms: 0,
        });
        assert_eq!(redeemer.report(closed), Err(ReportDropped));
    });
}

#[test]
fn a_kill_order_fires_only_the_watched_session() {
    run(async {
        let (control, data) = in_process(Geometry::new(1, 8).unwrap()).unwrap();
        let port = data.take_ports().unwrap().pop().unwrap();
        let mut control_port = control.take_ports().unwrap().pop().unwrap();
        let redeemer = ChannelRedeemer::start(port, ChannelRedeemerConfig::default()).unwrap();
        let watched = redeemer.until_killed(SessionId(1));
        let other = ToCore::KillSession(KillSession {
            session: SessionId(2),
        });
        control_port.try_send(RequestId(0), &other).unwrap();
        let kill = ToCore::KillSession(KillSession {
            session: SessionId(1),
        });
        control_port.try_send(RequestId(0), &kill).unwrap();
        monoio::time::timeout(Duration::from_secs(1), watched)
            .await
            .expect("killed");
        let stats = redeemer.stats();
        assert_eq!((stats.kills, stats.stray_kills), (1, 1));
        assert!(
            redeemer.shared.as_ref().unwrap().kills.borrow().is_empty(),
            "a finished watch unregisters"
        );
    });
}

#[test]
fn a_kill_order_before_the_relay_starts_ends_the_session_when_it_does() {
    run(async {
        let (control, data) = in_process(Geometry::new(1, 8).unwrap()).unwrap();
        let port = data.take_ports().unwrap().pop().unwrap();
        let mut control_port = control.take_ports().unwrap().pop().unwrap();
        let redeemer = ChannelRedeemer::start(port, ChannelRedeemerConfig::default()).unwrap();
        // The order arrives while the session is between its verdict and
        // its success reply: nothing watches it yet.
        let kill = ToCore::KillSession(KillSession {
            session: SessionId(7),
        });
        control_port.try_send(RequestId(0), &kill).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while redeemer.stats().stray_kills == 0 {
            assert!(std::time::Instant::now() < deadline, "the order arrives");
            monoio::time::sleep(Duration::from_millis(5)).await;
        }
        let watched = redeemer.until_killed(SessionId(7));
        monoio::time::timeout(Duration::from_millis(100), watched)
            .await
            .expect("the early order ends the session at once");
        let stats = redeemer.stats();
        assert_eq!((stats.kills, stats.stray_kills), (1, 0));
        // The order was used up: the next watch of that id is not killed.
        let again = redeemer.until_killed(SessionId(7));
        assert!(
            monoio::time::timeout(Duration::from_millis(50), again)
                .await
                .is_err()
        );
    });
}

fn gated(gate: &ControlPlaneGate, wait: Duration) -> ChannelRedeemerConfig {
    ChannelRedeemerConfig {
        gate: Some(gate.clone()),
        control_plane_wait: wait,
        ..ChannelRedeemerConfig::default()
    }
}

fn opened(session: u64) -> SessionOpened {
    SessionOpened {
        session: SessionId(session),
        client: client(),
        worker: WorkerAddr(SocketAddr::from(([127, 0, 0, 1], 1494))),
        worker_ticket: None,
    }
}

#[test]
fn a_closed_gate_refuses_at_once_without_asking() {
    run(async {
        let (control, data) = in_process(Geometry::new(1, 8).unwrap()).unwrap();
        let port = data.take_ports().unwrap().pop().unwrap();
        let control_port = control.take_ports().unwrap().pop().unwrap();
        let gate = ControlPlaneGate::closed();
        let redeemer = ChannelRedeemer::start(port, gated(&gate, Duration::ZERO)).unwrap();
        let started = Instant::now();
        let refused = redeemer.redeem(b";40;STA01;TICKET", client()).await;
        assert_eq!(refused, Err(RedeemError::ControlPlaneDown));
        assert!(started.elapsed() < Duration::from_millis(5), "at once");
        assert_eq!(control_port.inbound_backlog(), 0, "nothing was sent");
        assert_eq!(RedeemError::ControlPlaneDown.reason(), "control_plane_down");
        assert_eq!(RedeemError::ControlPlaneDown.refusal().reply().code(), 0x01);
    });
}

#[test]
fn a_closed_gate_holds_a_redemption_until_it_opens_within_the_bound() {
    run(async {
        let (control, data) = in_process(Geometry::new(1, 8).unwrap()).unwrap();
        let port = data.take_ports().unwrap().pop().unwrap();
        let mut control_port = control.take_ports().unwrap().pop().unwrap();
        let gate = ControlPlaneGate::closed();
        let redeemer =
            ChannelRedeemer::start(port, gated(&gate, Duration::from_millis(500))).unwrap();
        let opener = gate.clone();
        monoio::spawn(async move {
            monoio::time::sleep(Duration::from_millis(30)).await;
            opener.open(Generation(3));
        });
        let answer = async {
            let request = next_request(&mut control_port).await;
            let allow = ToCore::Verdict(Verdict::Allow {
                worker: WorkerAddr(SocketAddr::from(([127, 0, 0, 1], 1494))),
                session: SessionId(9),
                reconnect_ticket: None,
                worker_ticket: None,
            });
            control_port.try_send(request.request_id, &allow).unwrap();
        };
        let (redeemed, ()) = monoio::join!(redeemer.redeem(b";40;STA01;TICKET", client()), answer);
        assert_eq!(redeemed.unwrap().session(), SessionId(9));

        // Closed again, and it stays closed past the bound: refused.
        gate.close();
        let started = Instant::now();
        let refused = redeemer.redeem(b";40;STA01;TICKET", client()).await;
        assert_eq!(refused, Err(RedeemError::ControlPlaneDown));
        assert!(started.elapsed() >= Duration::from_millis(500));
    });
}

#[test]
fn a_redemption_in_flight_fails_fast_when_the_gate_closes() {
    run(async {
        let (control, data) = in_process(Geometry::new(1, 8).unwrap()).unwrap();
        let port = data.take_ports().unwrap().pop().unwrap();
        let mut control_port = control.take_ports().unwrap().pop().unwrap();
        let gate = ControlPlaneGate::closed();
        gate.open(Generation(1));
        let redeemer = ChannelRedeemer::start(port, gated(&gate, Duration::ZERO)).unwrap();
        let closer = gate.clone();
        monoio::spawn(async move {
            monoio::time::sleep(Duration::from_millis(30)).await;
            closer.close();
        });
        let started = Instant::now();
        let refused = redeemer.redeem(b";40;STA01;TICKET", client()).await;
        assert_eq!(refused, Err(RedeemError::ControlPlaneDown));
        assert!(
            started.elapsed() < ChannelRedeemerConfig::DEFAULT_DEADLINE / 4,
            "well before the verdict deadline"
        );
        let request = next_request(&mut control_port).await;
        assert!(matches!(request.message, ToControl::RedeemTicket(_)));
        assert!(
            redeemer
                .shared
                .as_ref()
                .unwrap()
                .pending
                .borrow()
                .is_empty()
        );
    });
}

#[test]
fn a_new_control_plane_generation_hears_every_live_session_again() {
    run(async {
        let (control, data) = in_process(Geometry::new(1, 64).unwrap()).unwrap();
        let port = data.take_ports().unwrap().pop().unwrap();
        let doorbell = port.doorbell().try_clone_to_owned().unwrap();
        let mut control_port = control.take_ports().unwrap().pop().unwrap();
        let gate = ControlPlaneGate::closed();
        gate.open(Generation(1));
        let redeemer = ChannelRedeemer::start(port, gated(&gate, Duration::ZERO)).unwrap();
        for session in 1..=3 {
            redeemer
                .report(SessionReport::Opened(opened(session)))
                .unwrap();
        }
        let closed = SessionClosed {
            session: SessionId(2),
            bytes_up: 1,
            bytes_down: 1,
            duration_ms: 1,
        };
        redeemer.report(SessionReport::Closed(closed)).unwrap();
        for _ in 0..4 {
            next_request(&mut control_port).await;
        }

        // The supervisor opens the gate on a new generation and rings.
        gate.open(Generation(2));
        std::fs::File::from(doorbell)
            .write_all(&1_u64.to_ne_bytes())
            .unwrap();
        let mut again = vec![
            next_request(&mut control_port).await.message,
            next_request(&mut control_port).await.message,
        ];
        again.sort_by_key(|message| match message {
            ToControl::SessionOpened(opened) => opened.session.0,
            _ => u64::MAX,
        });
        assert_eq!(
            again,
            vec![
                ToControl::SessionOpened(opened(1)),
                ToControl::SessionOpened(opened(3))
            ]
        );
        monoio::time::sleep(Duration::from_millis(20)).await;
        assert!(control_port.try_recv().unwrap().is_none(), "once");
        assert_eq!(redeemer.stats().reannounced, 2);
    });
}

#[test]
fn a_stats_request_is_answered_with_every_counter_under_its_request_id() {
    run(async {
        let (control, data) = in_process(Geometry::new(1, 8).unwrap()).unwrap();
        let port = data.take_ports().unwrap().pop().unwrap();
        let mut control_port = control.take_ports().unwrap().pop().unwrap();
        let _redeemer = ChannelRedeemer::start(port, ChannelRedeemerConfig::default()).unwrap();

        control_port
            .try_send(RequestId(77), &ToCore::StatsRequest)
            .unwrap();
        let mut pairs = Vec::new();
        let mut expected = None;
        let mut reports = 0;
        while expected != Some(pairs.len() as u64) {
            let envelope = next_request(&mut control_port).await;
            assert_eq!(envelope.request_id, RequestId(77));
            let ToControl::StatsReport(report) = envelope.message else {
                panic!("expected a stats report, got {:?}", envelope.message);
            };
            reports += 1;
            pairs.extend_from_slice(report.counters());
            expected = Some(pairs[0].1);
            assert_eq!(pairs[0].0, crate::counter_ids::ANSWER_LEN);
        }
        assert!(
            reports >= 2,
            "more than MAX_COUNTERS pairs take several reports"
        );
        let accepts = pairs
            .iter()
            .find(|(id, _)| *id == gatehouse_channel::CounterId(1));
        assert_eq!(accepts, Some(&(gatehouse_channel::CounterId(1), 0)));
    });
}

/// Whether `port`'s doorbell has been rung since the last look (reads,
/// and so resets, the non-blocking eventfd).
fn rung(port: &ControlPort) -> bool {
    use std::io::Read;
    let mut bell = std::fs::File::from(port.doorbell().try_clone_to_owned().unwrap());
    let mut count = [0_u8; 8];
    match bell.read(&mut count) {
        Ok(_) => true,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => false,
        Err(e) => panic!("doorbell read failed: {e}"),
    }
}

#[test]
fn a_session_report_wakes_a_sleeping_control_plane_within_the_report_delay() {
    run(async {
        let (control, data) = in_process(Geometry::new(1, 64).unwrap()).unwrap();
        let port = data.take_ports().unwrap().pop().unwrap();
        let mut control_port = control.take_ports().unwrap().pop().unwrap();
        let redeemer = ChannelRedeemer::start(port, ChannelRedeemerConfig::default()).unwrap();
        assert_eq!(control_port.prepare_wait(), WaitDecision::Sleep);

        let closed = SessionClosed {
            session: SessionId(3),
            bytes_up: 1,
            bytes_down: 2,
            duration_ms: 3,
        };
        redeemer.report(SessionReport::Closed(closed)).unwrap();
        redeemer
            .report(SessionReport::Closed(SessionClosed {
                session: SessionId(4),
                ..closed
            }))
            .unwrap();
        assert!(!rung(&control_port), "a report alone does not ring at once");

        let mut waited = Duration::ZERO;
        while !rung(&control_port) {
            assert!(waited < Duration::from_secs(1), "the report never rang");
            monoio::time::sleep(Duration::from_millis(1)).await;
            waited += Duration::from_millis(1);
        }
        control_port.after_wake().unwrap();
        let first = next_request(&mut control_port).await;
        assert_eq!(first.message, ToControl::SessionClosed(closed));
        let second = next_request(&mut control_port).await;
        assert!(matches!(second.message, ToControl::SessionClosed(c) if c.session == SessionId(4)));
    });
}

#[test]
fn a_redemption_rings_for_the_reports_before_it() {
    run(async {
        let (control, data) = in_process(Geometry::new(1, 64).unwrap()).unwrap();
        let port = data.take_ports().unwrap().pop().unwrap();
        let mut control_port = control.take_ports().unwrap().pop().unwrap();
        let redeemer = ChannelRedeemer::start(port, ChannelRedeemerConfig::default()).unwrap();
        assert_eq!(control_port.prepare_wait(), WaitDecision::Sleep);

        redeemer.report(SessionReport::Opened(opened(5))).unwrap();
        assert!(!rung(&control_port));
        let pending = monoio::time::timeout(
            Duration::from_millis(1),
            redeemer.redeem(b";40;STA01;TICKET", client()),
        )
        .await;
        assert!(pending.is_err(), "nobody answers");
        assert!(rung(&control_port), "the redemption rang");
        control_port.after_wake().unwrap();
        assert!(matches!(
            next_request(&mut control_port).await.message,
            ToControl::SessionOpened(o) if o.session == SessionId(5)
        ));
        assert!(matches!(
            next_request(&mut control_port).await.message,
            ToControl::RedeemTicket(_)
        ));
    });
}

#[test]
fn a_report_with_a_worker_ticket_rings_at_once() {
    run(async {
        let (control, data) = in_process(Geometry::new(1, 64).unwrap()).unwrap();
        let port = data.take_ports().unwrap().pop().unwrap();
        let mut control_port = control.take_ports().unwrap().pop().unwrap();
        let redeemer = ChannelRedeemer::start(port, ChannelRedeemerConfig::default()).unwrap();
        assert_eq!(control_port.prepare_wait(), WaitDecision::Sleep);
        let mut cgp = opened(6);
        cgp.worker_ticket = Some(TicketBytes::new(b";40;STA01;WORKER").unwrap());
        redeemer.report(SessionReport::Opened(cgp)).unwrap();
        assert!(rung(&control_port), "a resume may need it on another core");
    });
}

#[test]
fn a_core_that_stops_rings_for_the_reports_it_deferred() {
    run(async {
        let (control, data) = in_process(Geometry::new(1, 64).unwrap()).unwrap();
        let port = data.take_ports().unwrap().pop().unwrap();
        let mut control_port = control.take_ports().unwrap().pop().unwrap();
        let redeemer = ChannelRedeemer::start(port, ChannelRedeemerConfig::default()).unwrap();
        assert_eq!(control_port.prepare_wait(), WaitDecision::Sleep);
        redeemer.report(SessionReport::Opened(opened(7))).unwrap();
        assert!(!rung(&control_port));
        drop(redeemer);
        assert!(rung(&control_port), "dropping the redeemer rang");
    });
}
