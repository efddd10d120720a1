//! Round trip core -> control plane -> core over the in-process channel,
//! two threads. Run: `cargo run --release -p gatehouse-channel --example
//! roundtrip [ROUND_TRIPS]`.
//!
//! Prints latency percentiles for three ways of waiting (eventfd doorbells
//! rung only for a sleeping peer, doorbells rung on every send, busy
//! polling) and one-way messages per second with busy polling.
// An example binary: it reports on stdout, and panics on setup failure.
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use gatehouse_channel::{
    ClientAddr, ControlPort, CorePort, Geometry, Heartbeat, RedeemKind, RedeemTicket, SessionId,
    TicketBytes, ToControl, ToCore, Verdict, WakePolicy, WorkerAddr, in_process,
};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Waiting {
    Doorbell(WakePolicy),
    /// Poll for a few microseconds, then sleep on the doorbell.
    SpinThenDoorbell(Duration),
    Spin,
}

impl Waiting {
    /// Waits for the next message on `port` the way `self` says.
    fn idle<Tx: gatehouse_channel::message::Message, Rx: gatehouse_channel::message::Message>(
        self,
        port: &mut gatehouse_channel::Port<Tx, Rx>,
    ) {
        match self {
            Waiting::Doorbell(_) => port.wait(None).unwrap(),
            Waiting::SpinThenDoorbell(spin) => {
                let until = Instant::now() + spin;
                while Instant::now() < until {
                    if port.inbound_backlog() > 0 {
                        return;
                    }
                    std::hint::spin_loop();
                }
                port.wait(None).unwrap();
            }
            Waiting::Spin => std::hint::spin_loop(),
        }
    }
}

fn request() -> ToControl {
    ToControl::RedeemTicket(RedeemTicket {
        kind: RedeemKind::Socks,
        ticket: TicketBytes::new(b";40;STA01;ABCDEFGHIJKLMNOPQRSTUVWXYZ012345").unwrap(),
        client: ClientAddr("127.0.0.1:50000".parse().unwrap()),
    })
}

fn verdict(session: u64) -> ToCore {
    ToCore::Verdict(Verdict::Allow {
        worker: WorkerAddr("127.0.0.9:1494".parse().unwrap()),
        session: SessionId(session),
        reconnect_ticket: None,
        worker_ticket: None,
    })
}

fn ports() -> (CorePort, ControlPort) {
    let (control, data) = in_process(Geometry::new(1, 1_024).unwrap()).unwrap();
    let core = data.take_ports().unwrap().remove(0);
    let cp = control.take_ports().unwrap().remove(0);
    (core, cp)
}

/// The control plane: answers every redemption until a heartbeat arrives.
fn serve(mut cp: ControlPort, waiting: Waiting) -> ControlPort {
    loop {
        match cp.try_recv().unwrap() {
            Some(envelope) => match envelope.message {
                ToControl::Heartbeat(_) => return cp,
                _ => {
                    let answer = verdict(envelope.request_id.0);
                    while cp.try_send(envelope.request_id, &answer).is_err() {
                        std::hint::spin_loop();
                    }
                }
            },
            None => waiting.idle(&mut cp),
        }
    }
}

fn round_trips(n: usize, waiting: Waiting) -> (Vec<Duration>, u64, u64) {
    let (mut core, mut cp) = ports();
    if let Waiting::Doorbell(policy) = waiting {
        core.set_wake_policy(policy);
        cp.set_wake_policy(policy);
    }
    let server = std::thread::spawn(move || serve(cp, waiting));
    let message = request();
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let id = core.next_request_id();
        let started = Instant::now();
        core.try_send(id, &message).unwrap();
        loop {
            match core.try_recv().unwrap() {
                Some(answer) => {
                    assert_eq!(answer.request_id, id);
                    break;
                }
                None => waiting.idle(&mut core),
            }
        }
        samples.push(started.elapsed());
    }
    let stop = ToControl::Heartbeat(Heartbeat {
        generation: core.generation(),
    });
    let id = core.next_request_id();
    core.try_send(id, &stop).unwrap();
    let cp = server.join().unwrap();
    (
        samples,
        core.counters().doorbells_rung,
        cp.counters().doorbells_rung,
    )
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn report(label: &str, n: usize, waiting: Waiting) {
    let (mut samples, core_rings, cp_rings) = round_trips(n, waiting);
    samples.sort();
    println!(
        "{label:<28} p50 {:>7.2} us  p99 {:>7.2} us  p99.9 {:>8.2} us  max {:>9.2} us  doorbells core/cp {core_rings}/{cp_rings}",
        percentile(&samples, 0.50).as_secs_f64() * 1e6,
        percentile(&samples, 0.99).as_secs_f64() * 1e6,
        percentile(&samples, 0.999).as_secs_f64() * 1e6,
        samples[samples.len() - 1].as_secs_f64() * 1e6,
    );
}

/// One-way throughput: the core sends `n` messages as fast as the ring
/// takes them; the control plane thread spins on `try_recv` or sleeps on
/// its doorbell when the ring is empty.
fn throughput(n: u64, waiting: Waiting) {
    let (mut core, mut cp) = ports();
    let label = match waiting {
        Waiting::Doorbell(WakePolicy::WhenArmed) => "eventfd, ring when armed",
        Waiting::Doorbell(WakePolicy::Always) => "eventfd, ring always",
        Waiting::SpinThenDoorbell(_) => "spin 5 us, then eventfd",
        Waiting::Spin => "busy polling",
    };
    if let Waiting::Doorbell(policy) = waiting {
        core.set_wake_policy(policy);
    }
    let receiver = std::thread::spawn(move || {
        let mut got = 0;
        while got < n {
            if cp.try_recv().unwrap().is_some() {
                got += 1;
            } else {
                waiting.idle(&mut cp);
            }
        }
    });
    let message = request();
    let started = Instant::now();
    for _ in 0..n {
        let id = core.next_request_id();
        while core.try_send(id, &message).is_err() {
            std::hint::spin_loop();
        }
    }
    receiver.join().unwrap();
    let elapsed = started.elapsed();
    println!(
        "one-way, {label:<24} {:>6.2} M messages/s ({n} in {elapsed:.2?}, {} doorbells, {} sends refused full)",
        n as f64 / elapsed.as_secs_f64() / 1e6,
        core.counters().doorbells_rung,
        core.counters().refused_full,
    );
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().unwrap())
        .unwrap_or(100_000);
    println!("{n} round trips core -> control plane -> core, two threads, 256-byte slots");
    report(
        "eventfd, ring when armed",
        n,
        Waiting::Doorbell(WakePolicy::WhenArmed),
    );
    report(
        "eventfd, ring always",
        n,
        Waiting::Doorbell(WakePolicy::Always),
    );
    report(
        "spin 5 us, then eventfd",
        n,
        Waiting::SpinThenDoorbell(Duration::from_micros(5)),
    );
    report("busy polling", n, Waiting::Spin);
    for waiting in [
        Waiting::Doorbell(WakePolicy::WhenArmed),
        Waiting::Doorbell(WakePolicy::Always),
        Waiting::Spin,
    ] {
        throughput(10 * n as u64, waiting);
    }
}
