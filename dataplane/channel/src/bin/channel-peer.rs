//! A scripted channel peer in its own process, for `tests/processes.rs`.
//!
//! ```text
//! channel-peer control DIR NAME CORES SLOTS            serve as the control plane:
//!                                                      answer every RedeemTicket with
//!                                                      Allow { session = request id }
//! channel-peer data DIR NAME CORES SLOTS N [hold]      link, send N redemptions per
//!                                                      core, check the verdicts, print
//!                                                      "ok TOTAL"; with `hold`, keep
//!                                                      beating until killed
//! ```
//!
//! Every run ends by itself within 60 s, so a failed test leaves no
//! orphan behind for long.
// A test helper: it reports on stdout, and a panic is a failed test.
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::os::fd::{AsFd, AsRawFd};
use std::time::{Duration, Instant};

// Every Gatehouse binary runs on mimalloc, this test fixture included, so the
// two-process tests exercise the allocator the planes ship with.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use gatehouse_channel::{
    ControlPort, ControlSide, CorePort, DataSide, Geometry, MonotonicMillis, RedeemKind,
    RedeemTicket, SegmentName, SessionId, TicketBytes, ToControl, ToCore, Verdict, WaitDecision,
    WorkerAddr,
};

const LIFETIME: Duration = Duration::from_secs(60);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    assert!(
        args.len() >= 6,
        "usage: channel-peer ROLE DIR NAME CORES SLOTS ..."
    );
    let name = SegmentName::in_dir(&args[2], &args[3]).expect("segment name");
    let geometry = Geometry::new(args[4].parse().unwrap(), args[5].parse().unwrap()).unwrap();
    match args[1].as_str() {
        "control" => control(&name, geometry),
        "data" => {
            let per_core: u64 = args[6].parse().unwrap();
            let hold = args.get(7).is_some_and(|a| a == "hold");
            data(&name, geometry, per_core, hold);
        }
        other => panic!("unknown role {other}"),
    }
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").unwrap();
    out.flush().unwrap();
}

/// Polls `fds` for readability up to `timeout`.
fn poll(fds: &[i32], timeout: Duration) {
    let mut pollfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: `pollfds` is a valid array of initialized pollfd structs whose
    // descriptors stay open for the call (owned by live ports/listener).
    unsafe { libc::poll(pollfds.as_mut_ptr(), pollfds.len() as libc::nfds_t, ms) };
}

fn control(name: &SegmentName, geometry: Geometry) {
    let side = ControlSide::open_named(name, geometry).unwrap();
    let listener = side.listen().unwrap();
    let mut ports: Vec<ControlPort> = side.take_ports().unwrap();
    say(&format!("ready {}", side.generation().0));
    let started = Instant::now();
    while started.elapsed() < LIFETIME {
        side.beat(MonotonicMillis::now());
        if let Some(linked) = listener.accept().unwrap() {
            say(&format!("linked {}", linked.peer_generation.0));
        }
        for port in &mut ports {
            // Take a request only with room for its answer.
            while port.outbound_room() > 0 {
                let Some(envelope) = port.try_recv().unwrap() else {
                    break;
                };
                if let ToControl::RedeemTicket(_) = envelope.message {
                    let verdict = ToCore::Verdict(Verdict::Allow {
                        worker: WorkerAddr("127.0.0.9:1494".parse().unwrap()),
                        session: SessionId(envelope.request_id.0),
                        reconnect_ticket: None,
                        worker_ticket: None,
                    });
                    port.try_send(envelope.request_id, &verdict).unwrap();
                }
            }
        }
        if ports
            .iter_mut()
            .all(|p| p.prepare_wait() == WaitDecision::Sleep)
        {
            let mut fds: Vec<i32> = ports.iter().map(|p| p.as_raw_fd()).collect();
            fds.push(listener.as_fd().as_raw_fd());
            poll(&fds, Duration::from_millis(20));
        }
        for port in &mut ports {
            port.after_wake().unwrap();
        }
    }
}

fn data(name: &SegmentName, geometry: Geometry, per_core: u64, hold: bool) {
    let side = DataSide::open_named(name, geometry).unwrap();
    let started = Instant::now();
    loop {
        match side.link() {
            Ok(_) => break,
            Err(e) if started.elapsed() > Duration::from_secs(10) => panic!("link: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    say(&format!("linked {}", side.generation().0));
    let mut ports: Vec<CorePort> = side.take_ports().unwrap();
    let mut total = 0;
    for port in &mut ports {
        total += exchange(port, per_core);
    }
    say(&format!("ok {total}"));
    while hold && started.elapsed() < LIFETIME {
        side.beat(MonotonicMillis::now());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends `count` redemptions on `port` and checks every verdict and the
/// one KillSession the test's control plane sends per core.
fn exchange(port: &mut CorePort, count: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut sent = 0;
    let mut verdicts = 0;
    let mut kills = 0;
    while verdicts < count {
        assert!(Instant::now() < deadline, "verdicts stalled at {verdicts}");
        while sent < count {
            let id = port.next_request_id();
            let request = ToControl::RedeemTicket(RedeemTicket {
                kind: RedeemKind::Cgp,
                ticket: TicketBytes::new(format!(";40;STA;{sent:032}").as_bytes()).unwrap(),
                client: gatehouse_channel::ClientAddr("127.0.0.2:5000".parse().unwrap()),
            });
            if port.try_send(id, &request).is_err() {
                break;
            }
            sent += 1;
        }
        match port.try_recv().unwrap() {
            Some(envelope) => match envelope.message {
                ToCore::Verdict(Verdict::Allow { session, .. }) => {
                    assert_eq!(session.0, envelope.request_id.0);
                    verdicts += 1;
                }
                ToCore::KillSession(kill) => {
                    assert_eq!(kill.session, SessionId(77));
                    kills += 1;
                }
                other => panic!("unexpected {other:?}"),
            },
            None => port.wait(Some(Duration::from_millis(50))).unwrap(),
        }
    }
    // The KillSession may trail the verdicts when the peer is the script.
    let until = Instant::now() + Duration::from_millis(200);
    while kills == 0 && Instant::now() < until {
        if let Some(envelope) = port.try_recv().unwrap() {
            if matches!(envelope.message, ToCore::KillSession(_)) {
                kills += 1;
            }
        } else {
            port.wait(Some(Duration::from_millis(20))).unwrap();
        }
    }
    say(&format!("core {} kills {kills}", port.core()));
    verdicts
}
