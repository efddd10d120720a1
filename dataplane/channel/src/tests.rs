//! Channel tests that touch the OS (memfd, eventfd, `/dev/shm`, unix
//! sockets): not for Miri. Both planes run in this process; the
//! two-process tests are in `tests/processes.rs`.

use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::*;

fn geometry(cores: u16, slots: u32) -> Geometry {
    Geometry::new(cores, slots).unwrap()
}

fn redeem(i: u8) -> ToControl {
    ToControl::RedeemTicket(RedeemTicket {
        kind: RedeemKind::Socks,
        ticket: TicketBytes::new(format!(";40;STA01;TICKET{i:03}").as_bytes()).unwrap(),
        client: ClientAddr(format!("127.0.0.{i}:40000").parse().unwrap()),
    })
}

fn allow(session: u64) -> ToCore {
    ToCore::Verdict(Verdict::Allow {
        worker: WorkerAddr("127.0.0.9:1494".parse().unwrap()),
        session: SessionId(session),
        reconnect_ticket: None,
        worker_ticket: None,
    })
}

fn closed(seq: u64) -> ToControl {
    ToControl::SessionClosed(SessionClosed {
        session: SessionId(seq),
        bytes_up: seq,
        bytes_down: !seq,
        duration_ms: 1,
    })
}

/// A fresh directory (under /dev/shm when present) removed on drop.
struct ShmDir(PathBuf);

impl ShmDir {
    fn new() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let base = if std::path::Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = base.join(format!("ghc-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn name(&self) -> SegmentName {
        SegmentName::in_dir(&self.0, "seg").unwrap()
    }
}

impl Drop for ShmDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn a_core_request_gets_its_verdict_in_process() {
    let (control, data) = in_process(geometry(2, 8)).unwrap();
    let mut cores = data.take_ports().unwrap();
    let mut cps = control.take_ports().unwrap();
    let id = cores[1].next_request_id();
    cores[1].try_send(id, &redeem(1)).unwrap();
    assert!(
        cps[0].try_recv().unwrap().is_none(),
        "core 0's ring is empty"
    );
    let request = cps[1].try_recv().unwrap().unwrap();
    assert_eq!(request.request_id, id);
    assert_eq!(request.generation, data.generation());
    assert_eq!(request.message, redeem(1));
    cps[1].try_send(request.request_id, &allow(5)).unwrap();
    let answer = cores[1].try_recv().unwrap().unwrap();
    assert_eq!(answer.request_id, id);
    assert_eq!(answer.message, allow(5));
    assert_eq!(cores[1].counters().sent, 1);
    assert_eq!(cores[1].counters().received, 1);
}

#[test]
fn a_full_ring_refuses_the_send_and_counts_it() {
    let (control, data) = in_process(geometry(1, 2)).unwrap();
    let mut core = data.take_ports().unwrap().remove(0);
    let mut cp = control.take_ports().unwrap().remove(0);
    core.try_send(RequestId(1), &redeem(1)).unwrap();
    core.try_send(RequestId(2), &redeem(2)).unwrap();
    assert_eq!(core.outbound_backlog(), 2);
    assert_eq!(
        core.try_send(RequestId(3), &redeem(3)),
        Err(SendError::Full)
    );
    assert_eq!(core.counters().refused_full, 1);
    assert_eq!(cp.try_recv().unwrap().unwrap().request_id, RequestId(1));
    core.try_send(RequestId(3), &redeem(3)).unwrap();
    assert_eq!(cp.inbound_backlog(), 2);
    assert_eq!(cp.try_recv().unwrap().unwrap().request_id, RequestId(2));
    assert_eq!(cp.try_recv().unwrap().unwrap().request_id, RequestId(3));
    assert!(cp.try_recv().unwrap().is_none());
}

#[test]
fn a_doorbell_wakes_a_poller_blocked_on_it() {
    let (control, data) = in_process(geometry(1, 8)).unwrap();
    let mut core = data.take_ports().unwrap().remove(0);
    let mut cp = control.take_ports().unwrap().remove(0);
    assert_eq!(cp.prepare_wait(), WaitDecision::Sleep);
    let poller = std::thread::spawn(move || {
        let mut fds = [libc::pollfd {
            fd: cp.doorbell().as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        let started = Instant::now();
        // SAFETY: (test) one valid pollfd, the doorbell is open (cp lives).
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 1, 5_000) };
        let waited = started.elapsed();
        cp.after_wake().unwrap();
        (n, waited, cp.try_recv().unwrap())
    });
    std::thread::sleep(Duration::from_millis(50));
    core.try_send(RequestId(7), &redeem(7)).unwrap();
    let (n, waited, got) = poller.join().unwrap();
    assert_eq!(n, 1, "poll saw the doorbell");
    assert!(waited < Duration::from_secs(4), "woken, not timed out");
    assert_eq!(got.unwrap().request_id, RequestId(7));
    assert_eq!(core.counters().doorbells_rung, 1);
}

#[test]
fn a_busy_consumer_costs_the_producer_no_doorbell() {
    let (control, data) = in_process(geometry(1, 64)).unwrap();
    let mut core = data.take_ports().unwrap().remove(0);
    let mut cp = control.take_ports().unwrap().remove(0);
    for i in 0..10 {
        core.try_send(RequestId(i), &redeem(1)).unwrap();
    }
    assert_eq!(core.counters().doorbells_rung, 0);
    while cp.try_recv().unwrap().is_some() {}
    // Armed once: a burst rings once.
    assert_eq!(cp.prepare_wait(), WaitDecision::Sleep);
    for i in 0..10 {
        core.try_send(RequestId(i), &redeem(1)).unwrap();
    }
    assert_eq!(core.counters().doorbells_rung, 1);
    core.set_wake_policy(WakePolicy::Always);
    core.try_send(RequestId(11), &redeem(1)).unwrap();
    assert_eq!(core.counters().doorbells_rung, 2);
}

#[test]
fn a_deferred_send_wakes_a_sleeping_peer_only_when_flushed() {
    let (control, data) = in_process(geometry(1, 64)).unwrap();
    let mut core = data.take_ports().unwrap().remove(0);
    let mut cp = control.take_ports().unwrap().remove(0);
    // An awake peer: nothing is owed, flushing rings nothing.
    core.try_send_deferred(RequestId(0), &closed(1)).unwrap();
    assert!(!core.wake_owed());
    assert!(!core.flush_wake());
    assert_eq!(cp.try_recv().unwrap().unwrap().request_id, RequestId(0));
    // A sleeping peer stays asleep until the flush.
    assert_eq!(cp.prepare_wait(), WaitDecision::Sleep);
    core.try_send_deferred(RequestId(1), &closed(2)).unwrap();
    core.try_send_deferred(RequestId(2), &closed(3)).unwrap();
    assert!(core.wake_owed());
    assert_eq!(core.counters().doorbells_rung, 0);
    assert!(!doorbell::wait(cp.doorbell(), Some(Duration::ZERO)).unwrap());
    assert!(core.flush_wake());
    assert!(!core.wake_owed());
    assert!(!core.flush_wake(), "one ring for the burst");
    assert_eq!(core.counters().doorbells_rung, 1);
    assert!(doorbell::wait(cp.doorbell(), Some(Duration::ZERO)).unwrap());
    cp.after_wake().unwrap();
    assert_eq!(cp.try_recv().unwrap().unwrap().request_id, RequestId(1));
    assert_eq!(cp.try_recv().unwrap().unwrap().request_id, RequestId(2));
    assert!(cp.try_recv().unwrap().is_none());
}

#[test]
fn a_send_after_deferred_ones_rings_once_for_all_of_them() {
    let (control, data) = in_process(geometry(1, 64)).unwrap();
    let mut core = data.take_ports().unwrap().remove(0);
    let mut cp = control.take_ports().unwrap().remove(0);
    assert_eq!(cp.prepare_wait(), WaitDecision::Sleep);
    core.try_send_deferred(RequestId(1), &closed(1)).unwrap();
    core.try_send(RequestId(2), &redeem(2)).unwrap();
    assert!(!core.wake_owed(), "the ordinary send took the wake-up");
    assert_eq!(core.counters().doorbells_rung, 1);
    assert!(!core.flush_wake());
    cp.wait(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(cp.try_recv().unwrap().unwrap().request_id, RequestId(1));
    assert_eq!(cp.try_recv().unwrap().unwrap().request_id, RequestId(2));
}

#[test]
fn a_deferred_send_to_a_full_ring_is_refused() {
    let (_control, data) = in_process(geometry(1, 2)).unwrap();
    let mut core = data.take_ports().unwrap().remove(0);
    core.try_send_deferred(RequestId(1), &closed(1)).unwrap();
    core.try_send_deferred(RequestId(2), &closed(2)).unwrap();
    assert_eq!(
        core.try_send_deferred(RequestId(3), &closed(3)),
        Err(SendError::Full)
    );
    assert_eq!(core.counters().refused_full, 1);
}

#[test]
fn ports_are_handed_out_once() {
    let (control, _data) = in_process(geometry(3, 8)).unwrap();
    let ports = control.take_ports().unwrap();
    assert_eq!(ports.len(), 3);
    assert_eq!(ports[2].core(), CoreId(2));
    assert_eq!(control.take_ports().unwrap_err(), PortsTaken);
}

#[test]
fn a_million_messages_cross_between_threads_in_order_with_doorbells() {
    const TOTAL: u64 = 1_000_000;
    let (control, data) = in_process(geometry(1, 1_024)).unwrap();
    let mut core = data.take_ports().unwrap().remove(0);
    let mut cp = control.take_ports().unwrap().remove(0);
    let deadline = Instant::now() + Duration::from_secs(120);
    let producer = std::thread::spawn(move || {
        let mut seq = 0;
        while seq < TOTAL {
            match core.try_send(RequestId(seq), &closed(seq)) {
                Ok(()) => seq += 1,
                Err(SendError::Full) => {
                    assert!(Instant::now() < deadline, "consumer stalled");
                    std::thread::yield_now();
                }
                Err(e) => panic!("{e}"),
            }
        }
        core.counters()
    });
    let mut expected = 0;
    while expected < TOTAL {
        match cp.try_recv().unwrap() {
            Some(envelope) => {
                assert_eq!(envelope.request_id, RequestId(expected));
                assert_eq!(envelope.message, closed(expected));
                expected += 1;
            }
            None => {
                assert!(Instant::now() < deadline, "producer stalled");
                cp.wait(Some(Duration::from_millis(100))).unwrap();
            }
        }
    }
    let sent = producer.join().unwrap();
    assert_eq!(sent.sent, TOTAL);
    assert!(cp.try_recv().unwrap().is_none());
    assert_eq!(cp.counters().received, TOTAL);
}

#[test]
fn in_process_sides_have_no_link() {
    let (control, data) = in_process(geometry(1, 8)).unwrap();
    assert!(matches!(control.listen(), Err(LinkError::NotNamed)));
    assert!(matches!(data.link(), Err(LinkError::NotNamed)));
}

#[test]
fn named_sides_link_and_ring_each_other() {
    let dir = ShmDir::new();
    let control = ControlSide::open_named(&dir.name(), geometry(2, 16)).unwrap();
    let data = DataSide::open_named(&dir.name(), geometry(2, 16)).unwrap();
    let listener = control.listen().unwrap();
    let linker = std::thread::spawn(move || {
        let linked = data.link().unwrap();
        (data, linked)
    });
    let accepted = listener
        .accept_timeout(Duration::from_secs(5))
        .unwrap()
        .unwrap();
    let (data, linked) = linker.join().unwrap();
    assert_eq!(accepted.peer_generation, data.generation());
    assert_eq!(linked.peer_generation, control.generation());
    assert_eq!(accepted.peer_pid, std::process::id());

    let mut cp = control.take_ports().unwrap().remove(1);
    let mut core = data.take_ports().unwrap().remove(1);
    // The link rang every doorbell once; clear that first.
    cp.after_wake().unwrap();
    core.after_wake().unwrap();
    assert_eq!(cp.prepare_wait(), WaitDecision::Sleep);
    core.try_send(RequestId(1), &redeem(1)).unwrap();
    cp.wait(Some(Duration::from_secs(5))).unwrap();
    let request = cp.try_recv().unwrap().unwrap();
    assert_eq!(core.counters().doorbells_rung, 1);
    assert_eq!(core.prepare_wait(), WaitDecision::Sleep);
    cp.try_send(request.request_id, &allow(1)).unwrap();
    assert_eq!(cp.counters().doorbells_rung, 1);
    let started = Instant::now();
    core.wait(Some(Duration::from_secs(5))).unwrap();
    assert!(started.elapsed() < Duration::from_secs(4));
    assert_eq!(core.try_recv().unwrap().unwrap().message, allow(1));
}

#[test]
fn a_data_plane_without_a_listener_is_told_so() {
    let dir = ShmDir::new();
    let data = DataSide::open_named(&dir.name(), geometry(1, 8)).unwrap();
    assert!(matches!(data.link(), Err(LinkError::NoListener(_))));
}

#[test]
fn a_second_attachment_of_the_same_plane_is_refused() {
    let dir = ShmDir::new();
    let _first = ControlSide::open_named(&dir.name(), geometry(1, 8)).unwrap();
    let second = ControlSide::open_named(&dir.name(), geometry(1, 8));
    assert!(matches!(
        second,
        Err(AttachError::SideBusy {
            plane: Plane::Control,
            ..
        })
    ));
    assert!(DataSide::open_named(&dir.name(), geometry(1, 8)).is_ok());
}

#[test]
fn another_layout_is_refused_while_the_peer_lives_and_replaced_when_alone() {
    let dir = ShmDir::new();
    let control = ControlSide::open_named(&dir.name(), geometry(2, 8)).unwrap();
    let err = DataSide::open_named(&dir.name(), geometry(1, 8)).unwrap_err();
    assert!(matches!(
        err,
        AttachError::Layout {
            source: LayoutError::Geometry { .. },
            ..
        }
    ));
    drop(control);
    let data = DataSide::open_named(&dir.name(), geometry(1, 8)).unwrap();
    assert_eq!(data.geometry(), geometry(1, 8));
    assert_eq!(data.generation(), Generation(1), "a new segment");
}

#[test]
fn messages_of_a_restarted_sender_are_dropped() {
    let dir = ShmDir::new();
    let control = ControlSide::open_named(&dir.name(), geometry(1, 8)).unwrap();
    let mut cp = control.take_ports().unwrap().remove(0);
    let first = DataSide::open_named(&dir.name(), geometry(1, 8)).unwrap();
    let mut core = first.take_ports().unwrap().remove(0);
    core.try_send(RequestId(1), &redeem(1)).unwrap();
    drop(core);
    drop(first);
    let second = DataSide::open_named(&dir.name(), geometry(1, 8)).unwrap();
    assert_eq!(second.generation(), Generation(2));
    let mut core = second.take_ports().unwrap().remove(0);
    let id = core.next_request_id();
    core.try_send(id, &redeem(2)).unwrap();
    let got = cp.try_recv().unwrap().unwrap();
    assert_eq!(got.message, redeem(2));
    assert_eq!(got.request_id, id);
    assert_eq!(cp.counters().dropped_stale, 1);
}

#[test]
fn a_side_attaching_alone_drops_what_the_dead_left_unread() {
    let dir = ShmDir::new();
    {
        let control = ControlSide::open_named(&dir.name(), geometry(1, 8)).unwrap();
        let data = DataSide::open_named(&dir.name(), geometry(1, 8)).unwrap();
        let mut core = data.take_ports().unwrap().remove(0);
        let mut cp = control.take_ports().unwrap().remove(0);
        core.try_send(RequestId(1), &redeem(1)).unwrap();
        cp.try_send(RequestId(9), &ToCore::StatsRequest).unwrap();
        assert_eq!(cp.inbound_backlog(), 1);
    }
    let control = ControlSide::open_named(&dir.name(), geometry(1, 8)).unwrap();
    let cp = control.take_ports().unwrap().remove(0);
    assert_eq!(cp.inbound_backlog(), 0);
    assert_eq!(cp.outbound_backlog(), 0);
}

#[test]
fn the_peer_is_seen_attach_detach_and_restart() {
    let dir = ShmDir::new();
    let control = ControlSide::open_named(&dir.name(), geometry(1, 8)).unwrap();
    let mut watch = PeerWatch::new(Duration::from_secs(5));
    let now = MonotonicMillis::now;
    assert_eq!(watch.observe(control.peer(), now()), PeerStatus::Absent);

    let data = DataSide::open_named(&dir.name(), geometry(1, 8)).unwrap();
    assert_eq!(control.peer().process, ProcessPresence::Alive);
    assert_eq!(control.peer().pid, std::process::id());
    assert_eq!(
        watch.observe(control.peer(), now()),
        PeerStatus::Alive {
            generation: Generation(1)
        }
    );
    data.beat(now());
    drop(data);
    assert_eq!(control.peer().process, ProcessPresence::Dead);
    assert_eq!(watch.observe(control.peer(), now()), PeerStatus::Absent);

    let data = DataSide::open_named(&dir.name(), geometry(1, 8)).unwrap();
    assert_eq!(
        watch.observe(control.peer(), now()),
        PeerStatus::Restarted {
            previous: Generation(1),
            current: Generation(2)
        }
    );
    // Silent beyond the timeout: gone, even though its process lives.
    let later = MonotonicMillis(now().0 + 60_000);
    assert!(matches!(
        watch.observe(control.peer(), later),
        PeerStatus::Gone { .. }
    ));
    data.beat(later);
    assert!(matches!(
        watch.observe(control.peer(), later),
        PeerStatus::Alive { .. }
    ));
}

#[test]
fn in_process_liveness_uses_heartbeats_only() {
    let (control, data) = in_process(geometry(1, 8)).unwrap();
    assert_eq!(control.peer().process, ProcessPresence::Unknown);
    assert_eq!(data.peer().generation, control.generation());
    drop(data);
    assert!(!control.peer().attached);
}

#[cfg(feature = "tokio")]
#[test]
fn an_async_port_awaits_what_a_thread_sends() {
    let (control, data) = in_process(geometry(1, 128)).unwrap();
    let mut core = data.take_ports().unwrap().remove(0);
    let cp = control.take_ports().unwrap().remove(0);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let mut cp = AsyncPort::new(cp).unwrap();
        let sender = std::thread::spawn(move || {
            for i in 0..100_u64 {
                std::thread::sleep(Duration::from_micros(200));
                while core.try_send(RequestId(i), &closed(i)).is_err() {
                    std::thread::yield_now();
                }
            }
            core
        });
        for i in 0..100_u64 {
            let envelope = tokio::time::timeout(Duration::from_secs(5), cp.recv())
                .await
                .expect("woken within 5 s")
                .unwrap();
            assert_eq!(envelope.request_id, RequestId(i));
            cp.try_send(envelope.request_id, &allow(i)).unwrap();
        }
        let core = sender.join().unwrap();
        assert!(core.counters().doorbells_rung > 0);
        assert_eq!(cp.port().counters().received, 100);
    });
}
