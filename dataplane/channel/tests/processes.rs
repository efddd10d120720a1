//! The planes in separate processes over a named segment: this test
//! process plays one plane, `channel-peer` (src/bin) the other.
//!
//! Not for Miri (processes, mmap, sockets): the whole file is gated.
#![cfg(not(miri))]
// Test code: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::os::fd::{AsFd, AsRawFd};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use gatehouse_channel::{
    ClientAddr, ControlPort, ControlSide, CorePort, DataSide, Generation, Geometry, KillSession,
    LinkListener, MonotonicMillis, PeerStatus, PeerWatch, ProcessPresence, RedeemKind,
    RedeemTicket, RequestId, SegmentName, SessionId, TicketBytes, ToControl, ToCore, Verdict,
    WaitDecision, WorkerAddr,
};

const PEER: &str = env!("CARGO_BIN_EXE_channel-peer");

/// A fresh directory under /dev/shm (or the temp dir), removed on drop.
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
        let dir = base.join(format!("ghp-{}-{n}", std::process::id()));
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

/// A child `channel-peer`, killed on drop, its stdout lines on a channel.
struct Peer {
    child: Child,
    lines: Receiver<String>,
    history: Vec<String>,
}

impl Peer {
    fn spawn(dir: &ShmDir, args: &[&str]) -> Self {
        let mut child = Command::new(PEER)
            .arg(args[0])
            .arg(&dir.0)
            .arg("seg")
            .args(&args[1..])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines,
            history: Vec::new(),
        }
    }

    /// Waits up to 10 s for a line starting with `prefix`, meanwhile
    /// running `between` (to serve the peer).
    fn expect_line(&mut self, prefix: &str, mut between: impl FnMut()) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            between();
            if let Ok(line) = self.lines.recv_timeout(Duration::from_millis(1)) {
                self.history.push(line.clone());
                if line.starts_with(prefix) {
                    return line;
                }
            }
        }
        panic!("no line starting with {prefix:?}");
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn geometry() -> Geometry {
    Geometry::new(2, 64).unwrap()
}

/// This process as the control plane: answers redemptions like the
/// script does, and sends one KillSession{77} per core before its first
/// verdict.
struct Control {
    side: ControlSide,
    listener: LinkListener,
    ports: Vec<ControlPort>,
    killed: Vec<bool>,
    watch: PeerWatch,
    seen: Vec<PeerStatus>,
}

impl Control {
    fn new(dir: &ShmDir) -> Self {
        let side = ControlSide::open_named(&dir.name(), geometry()).unwrap();
        let listener = side.listen().unwrap();
        let ports = side.take_ports().unwrap();
        Self {
            killed: vec![false; ports.len()],
            side,
            listener,
            ports,
            // Long, so that noticing a death quickly proves the side lock
            // (not the heartbeat timeout) reported it.
            watch: PeerWatch::new(Duration::from_secs(5)),
            seen: Vec::new(),
        }
    }

    /// One turn: beat, observe the peer, accept a link, answer, wait a bit.
    fn serve(&mut self) {
        let now = MonotonicMillis::now();
        self.side.beat(now);
        let status = self.watch.observe(self.side.peer(), now);
        if self.seen.last() != Some(&status) {
            self.seen.push(status);
        }
        self.listener.accept().unwrap();
        for (core, port) in self.ports.iter_mut().enumerate() {
            // Take a request only with room for its answer (and a kill).
            while port.outbound_room() >= 2 {
                let Some(envelope) = port.try_recv().unwrap() else {
                    break;
                };
                let ToControl::RedeemTicket(_) = envelope.message else {
                    continue;
                };
                if !self.killed[core] {
                    self.killed[core] = true;
                    let kill = ToCore::KillSession(KillSession {
                        session: SessionId(77),
                    });
                    port.try_send(RequestId(0), &kill).unwrap();
                }
                let verdict = ToCore::Verdict(Verdict::Allow {
                    worker: WorkerAddr("127.0.0.9:1494".parse().unwrap()),
                    session: SessionId(envelope.request_id.0),
                    reconnect_ticket: None,
                    worker_ticket: None,
                });
                port.try_send(envelope.request_id, &verdict).unwrap();
            }
        }
        let mut fds = vec![self.listener.as_fd().as_raw_fd()];
        let mut sleep = true;
        for port in &mut self.ports {
            fds.push(port.as_raw_fd());
            sleep &= port.prepare_wait() == WaitDecision::Sleep;
        }
        if sleep {
            poll(&fds, 5);
        }
        for port in &mut self.ports {
            port.after_wake().unwrap();
        }
    }
}

fn poll(fds: &[i32], ms: i32) {
    let mut pollfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // SAFETY: (test) valid pollfd array; descriptors owned by live objects.
    unsafe { libc::poll(pollfds.as_mut_ptr(), pollfds.len() as libc::nfds_t, ms) };
}

#[test]
fn exchanges_messages_with_a_data_plane_in_another_process() {
    let dir = ShmDir::new();
    let mut control = Control::new(&dir);
    let mut peer = Peer::spawn(&dir, &["data", "2", "64", "1000"]);
    let ok = peer.expect_line("ok", || control.serve());
    assert_eq!(ok, "ok 2000");
    let status = peer.child.wait().unwrap();
    assert!(status.success());
    let mut lines = peer.history.clone();
    lines.extend(peer.lines.try_iter());
    assert!(lines.contains(&"core 0 kills 1".to_owned()), "{lines:?}");
    assert!(lines.contains(&"core 1 kills 1".to_owned()), "{lines:?}");
    assert_eq!(control.ports[0].counters().received, 1_000);
    assert_eq!(control.ports[1].counters().sent, 1_001);
}

#[test]
fn notices_a_killed_data_plane_at_once_and_serves_its_successor() {
    let dir = ShmDir::new();
    let mut control = Control::new(&dir);
    let mut first = Peer::spawn(&dir, &["data", "2", "64", "10", "hold"]);
    first.expect_line("ok 20", || control.serve());
    let alive = PeerStatus::Alive {
        generation: Generation(1),
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while control.seen.last() != Some(&alive) {
        assert!(Instant::now() < deadline, "{:?}", control.seen);
        control.serve();
    }

    first.kill();
    let killed = Instant::now();
    while !matches!(control.seen.last(), Some(PeerStatus::Gone { .. })) {
        assert!(killed.elapsed() < Duration::from_secs(1), "death unnoticed");
        control.serve();
    }
    let noticed = killed.elapsed();
    assert_eq!(control.side.peer().process, ProcessPresence::Dead);
    // The side lock, not the 5 s heartbeat timeout, told us.
    assert!(noticed < Duration::from_secs(1), "took {noticed:?}");

    control.killed = vec![false; 2];
    let mut second = Peer::spawn(&dir, &["data", "2", "64", "10"]);
    second.expect_line("ok 20", || control.serve());
    assert!(second.child.wait().unwrap().success());
    assert!(
        control.seen.contains(&PeerStatus::Restarted {
            previous: Generation(1),
            current: Generation(2)
        }),
        "{:?}",
        control.seen
    );
}

fn redeem(n: u64) -> ToControl {
    ToControl::RedeemTicket(RedeemTicket {
        kind: RedeemKind::Socks,
        ticket: TicketBytes::new(format!(";40;STA;{n:032}").as_bytes()).unwrap(),
        client: ClientAddr("127.0.0.3:6000".parse().unwrap()),
    })
}

/// Waits up to `limit` for the verdict of `id` on `port`.
fn verdict_for(port: &mut CorePort, id: RequestId, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        match port.try_recv().unwrap() {
            Some(e) if e.request_id == id => {
                assert!(matches!(e.message, ToCore::Verdict(Verdict::Allow { .. })));
                return true;
            }
            Some(_) => {}
            None => port.wait(Some(Duration::from_millis(5))).unwrap(),
        }
    }
    false
}

fn link(data: &DataSide) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Err(e) = data.link() {
        assert!(Instant::now() < deadline, "link: {e}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn a_data_plane_keeps_its_rings_across_a_control_plane_restart() {
    let dir = ShmDir::new();
    let data = DataSide::open_named(&dir.name(), geometry()).unwrap();
    let mut port = data.take_ports().unwrap().remove(0);
    let mut watch = PeerWatch::new(Duration::from_secs(5));

    let mut first = Peer::spawn(&dir, &["control", "2", "64"]);
    first.expect_line("ready 1", || {});
    link(&data);
    let id = port.next_request_id();
    port.try_send(id, &redeem(1)).unwrap();
    assert!(verdict_for(&mut port, id, Duration::from_secs(5)));
    data.beat(MonotonicMillis::now());
    assert_eq!(
        watch.observe(data.peer(), MonotonicMillis::now()),
        PeerStatus::Alive {
            generation: Generation(1)
        }
    );

    first.kill();
    let killed = Instant::now();
    assert!(matches!(
        watch.observe(data.peer(), MonotonicMillis::now()),
        PeerStatus::Gone { .. }
    ));
    // Sent into the gap: it waits in the ring for the next control plane.
    let during_gap = port.next_request_id();
    port.try_send(during_gap, &redeem(2)).unwrap();
    assert!(!verdict_for(
        &mut port,
        during_gap,
        Duration::from_millis(50)
    ));

    let mut second = Peer::spawn(&dir, &["control", "2", "64"]);
    second.expect_line("ready 2", || {});
    assert_eq!(
        watch.observe(data.peer(), MonotonicMillis::now()),
        PeerStatus::Restarted {
            previous: Generation(1),
            current: Generation(2)
        }
    );
    link(&data);
    assert!(verdict_for(&mut port, during_gap, Duration::from_secs(5)));
    let gap = killed.elapsed();
    let id = port.next_request_id();
    port.try_send(id, &redeem(3)).unwrap();
    assert!(verdict_for(&mut port, id, Duration::from_secs(5)));
    assert_eq!(port.counters().dropped_stale, 0);
    eprintln!("control plane restart: request in the gap answered {gap:?} after the kill");
}
