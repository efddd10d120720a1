//! Channel benchmarks: the shared-memory channel between the planes
//! (DESIGN.md §3), measured against issue 4's target "channel round trip
//! (core -> control plane -> core) p99 under 20 µs; report messages/s too".
//!
//! Criterion measures means, in the group `channel`:
//! - `channel/encode_decode`: one `RedeemTicket` encoded into a slot buffer
//!   and decoded back (no ring, no thread);
//! - `channel/round_trip_busy_poll`: the core sends a `RedeemTicket` over an
//!   in-process channel, a responder thread (the control plane's stand-in)
//!   answers a `Verdict`, the core receives it; both sides poll `try_recv`;
//! - `channel/round_trip_doorbell`: the same with both sides sleeping on
//!   their eventfd doorbells (`Port::wait`) when their ring is empty: the
//!   real idle path, doorbells rung only for an armed (sleeping) peer.
//!
//! After the criterion groups, a percentile report (not a criterion
//! benchmark, it ignores name filters) times each round trip of both modes
//! into an HDR histogram and prints p50/p99/p99.9/max, then one-way
//! messages per second through one ring with busy polling. Under
//! `cargo test --benches` or `--test` it runs a few hundred round trips
//! only; under `--list` it is skipped.
//!
//! Run: `cargo bench -p gatehouse-bench --bench channel -- --warm-up-time 1
//! --measurement-time 3`.
#![allow(
    clippy::print_stdout,
    reason = "a benchmark reports its percentiles and throughput on stdout"
)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "benchmark inputs are fixed and valid; a failed setup or a silent peer must abort the run"
)]

use std::hint::black_box;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group};
use gatehouse_channel::message::{self, Message, SLOT_BYTES};
use gatehouse_channel::{
    ClientAddr, ControlPort, CorePort, Envelope, Generation, Geometry, Heartbeat, Port,
    PortCounters, RedeemKind, RedeemTicket, RequestId, SessionId, TicketBytes, ToControl, ToCore,
    Verdict, WorkerAddr, in_process,
};
use hdrhistogram::Histogram;

/// The ticket text of every redemption (the length of a real STA ticket).
const TICKET_TEXT: &[u8] = b";40;STA01;ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";
/// Slots per ring: the channel's default.
const SLOTS_PER_RING: u32 = 1_024;
/// The longest a side waits for its peer before the run aborts: a silent
/// peer is a bug, not a measurement.
const PEER_TIMEOUT: Duration = Duration::from_secs(10);
/// One doorbell sleep, after which the sleeper checks its deadline.
const SLEEP_TICK: Duration = Duration::from_millis(100);
/// Empty polls between two deadline checks of a busy-polling side (reading
/// the clock on every poll would slow the poll loop). At each check the
/// poller also yields its core once: on a machine with fewer free cores
/// than spinning threads, a spinner that never yields holds the core its
/// peer needs for a whole scheduler time slice (milliseconds per round
/// trip). Uncontended, most round trips end before the first check.
const POLLS_PER_CHECK: u64 = 256;
/// Timed round trips per mode in the percentile report.
const REPORT_ROUND_TRIPS: u64 = 100_000;
/// Untimed round trips per mode before those.
const REPORT_WARM_UP: u64 = 10_000;
/// Messages through one ring in the one-way throughput measurement.
const THROUGHPUT_MESSAGES: u64 = 2_000_000;
/// Round trips and messages of the report in test mode (`--test`).
const TEST_MODE_COUNT: u64 = 200;
/// The histogram's range in nanoseconds: 1 ns to 60 s, 3 significant digits.
const HISTOGRAM_HIGH_NS: u64 = 60_000_000_000;
/// The target of issue 4.
const TARGET_P99: Duration = Duration::from_micros(20);

/// How a side waits while its inbound ring is empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Idle {
    /// Spin on `try_recv`.
    BusyPoll,
    /// Sleep on the eventfd doorbell (`Port::wait`), rung by the peer only
    /// when this side armed it.
    Doorbell,
}

impl Idle {
    /// The benchmark name of a round trip in this mode.
    fn round_trip_name(self) -> &'static str {
        match self {
            Idle::BusyPoll => "round_trip_busy_poll",
            Idle::Doorbell => "round_trip_doorbell",
        }
    }
}

fn redeem_request() -> ToControl {
    ToControl::RedeemTicket(RedeemTicket {
        kind: RedeemKind::Socks,
        ticket: TicketBytes::new(TICKET_TEXT).unwrap(),
        client: ClientAddr("127.0.0.1:50000".parse().unwrap()),
    })
}

fn allow_verdict(session: u64) -> ToCore {
    ToCore::Verdict(Verdict::Allow {
        worker: WorkerAddr("127.0.0.9:1494".parse().unwrap()),
        session: SessionId(session),
        reconnect_ticket: None,
        worker_ticket: None,
    })
}

/// One core's ring pair over a fresh in-process (memfd) channel.
fn ports() -> (CorePort, ControlPort) {
    let (control, data) = in_process(Geometry::new(1, SLOTS_PER_RING).unwrap()).unwrap();
    let core = data.take_ports().unwrap().remove(0);
    let cp = control.take_ports().unwrap().remove(0);
    (core, cp)
}

/// The next message on `port`, waiting the way `idle` says. Panics when
/// the peer stays silent for about [`PEER_TIMEOUT`]. The clock is read only
/// while the ring is empty, and then only every [`POLLS_PER_CHECK`] polls
/// when busy polling (which also yields the core there).
fn receive<Tx: Message, Rx: Message>(port: &mut Port<Tx, Rx>, idle: Idle) -> Envelope<Rx> {
    let mut empty_polls: u64 = 0;
    let mut silent_since: Option<Instant> = None;
    loop {
        if let Some(envelope) = port.try_recv().expect("channel receive failed") {
            return envelope;
        }
        empty_polls += 1;
        if idle == Idle::Doorbell || empty_polls % POLLS_PER_CHECK == 0 {
            let since = *silent_since.get_or_insert_with(Instant::now);
            assert!(
                since.elapsed() < PEER_TIMEOUT,
                "peer silent for {PEER_TIMEOUT:?}"
            );
            if idle == Idle::BusyPoll {
                thread::yield_now();
            }
        }
        match idle {
            Idle::BusyPoll => std::hint::spin_loop(),
            Idle::Doorbell => port.wait(Some(SLEEP_TICK)).expect("doorbell wait failed"),
        }
    }
}

/// Publishes `message`, spinning while the ring is full (the bench's
/// consumer drains it; yielding the core every [`POLLS_PER_CHECK`]
/// refusals); panics after about [`PEER_TIMEOUT`] of a full ring.
fn send<Tx: Message, Rx: Message>(port: &mut Port<Tx, Rx>, id: RequestId, message: &Tx) {
    let mut refused: u64 = 0;
    let mut full_since: Option<Instant> = None;
    while port.try_send(id, message).is_err() {
        refused += 1;
        if refused % POLLS_PER_CHECK == 0 {
            let since = *full_since.get_or_insert_with(Instant::now);
            assert!(
                since.elapsed() < PEER_TIMEOUT,
                "ring full for {PEER_TIMEOUT:?}"
            );
            thread::yield_now();
        }
        std::hint::spin_loop();
    }
}

/// The control plane's stand-in on its own thread: answers every
/// `RedeemTicket` with an allow verdict under the same request id, until a
/// `Heartbeat` tells it to stop.
struct Responder {
    thread: JoinHandle<ControlPort>,
}

impl Responder {
    /// Starts answering on `cp`, and makes one untimed round trip through
    /// `core` so the thread is known to be serving before timing starts.
    fn start(mut cp: ControlPort, core: &mut CorePort, idle: Idle) -> Responder {
        let thread = thread::Builder::new()
            .name("control-plane".to_owned())
            .spawn(move || {
                loop {
                    let envelope = receive(&mut cp, idle);
                    match envelope.message {
                        ToControl::RedeemTicket(_) => {
                            let answer = allow_verdict(envelope.request_id.0);
                            send(&mut cp, envelope.request_id, &answer);
                        }
                        ToControl::Heartbeat(_) => return cp,
                        other => panic!("unexpected message {other:?}"),
                    }
                }
            })
            .unwrap();
        round_trip(core, &redeem_request(), idle);
        Responder { thread }
    }

    /// Tells the responder to stop and takes its port back.
    fn stop(self, core: &mut CorePort) -> ControlPort {
        let stop = ToControl::Heartbeat(Heartbeat {
            generation: core.generation(),
        });
        let id = core.next_request_id();
        send(core, id, &stop);
        self.thread.join().unwrap()
    }
}

/// One redemption: send `request`, wait for its verdict.
fn round_trip(core: &mut CorePort, request: &ToControl, idle: Idle) {
    let id = core.next_request_id();
    send(core, id, request);
    let answer = receive(core, idle);
    assert_eq!(answer.request_id, id, "verdict answers another request");
}

fn bench_encode_decode(c: &mut Criterion) {
    let envelope = Envelope {
        generation: Generation(1),
        request_id: RequestId(42),
        message: redeem_request(),
    };
    let mut slot = [0_u8; SLOT_BYTES];
    let len = message::encode(&envelope, &mut slot);
    let decoded = message::decode::<ToControl>(&slot).unwrap().done().unwrap();
    assert_eq!(decoded, (envelope.clone(), len), "slot does not round-trip");

    let mut group = c.benchmark_group("channel");
    group.bench_function("encode_decode", |b| {
        b.iter(|| {
            message::encode(black_box(&envelope), &mut slot);
            message::decode::<ToControl>(black_box(&slot))
        })
    });
    group.finish();
}

fn bench_round_trips(c: &mut Criterion) {
    let mut group = c.benchmark_group("channel");
    for idle in [Idle::BusyPoll, Idle::Doorbell] {
        let (mut core, cp) = ports();
        let mut cp = Some(cp);
        let request = redeem_request();
        group.bench_function(idle.round_trip_name(), |b| {
            // The responder lives for one batch: it neither spins nor holds
            // a core while criterion analyses between benchmarks.
            b.iter_custom(|iters| {
                let responder = Responder::start(cp.take().unwrap(), &mut core, idle);
                let started = Instant::now();
                for _ in 0..iters {
                    round_trip(&mut core, &request, idle);
                }
                let elapsed = started.elapsed();
                cp = Some(responder.stop(&mut core));
                elapsed
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_encode_decode, bench_round_trips);

/// What one mode's percentile run measured.
struct RoundTrips {
    nanos: Histogram<u64>,
    core: PortCounters,
    control: PortCounters,
}

/// `warm_up` untimed then `count` timed round trips over a fresh channel,
/// each recorded in nanoseconds.
fn timed_round_trips(idle: Idle, warm_up: u64, count: u64) -> RoundTrips {
    let (mut core, cp) = ports();
    let responder = Responder::start(cp, &mut core, idle);
    let request = redeem_request();
    for _ in 0..warm_up {
        round_trip(&mut core, &request, idle);
    }
    let mut nanos = Histogram::<u64>::new_with_bounds(1, HISTOGRAM_HIGH_NS, 3).unwrap();
    for _ in 0..count {
        let started = Instant::now();
        round_trip(&mut core, &request, idle);
        let elapsed = started.elapsed();
        nanos.saturating_record(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX));
    }
    let cp = responder.stop(&mut core);
    RoundTrips {
        nanos,
        core: core.counters(),
        control: cp.counters(),
    }
}

/// Microseconds, for printing.
fn micros(nanos: u64) -> f64 {
    Duration::from_nanos(nanos).as_secs_f64() * 1e6
}

fn report_round_trips(idle: Idle, warm_up: u64, count: u64) {
    let run = timed_round_trips(idle, warm_up, count);
    let p99 = run.nanos.value_at_quantile(0.99);
    let verdict = if Duration::from_nanos(p99) < TARGET_P99 {
        "met"
    } else {
        "missed"
    };
    println!(
        "channel/{:<22} {} round trips: p50 {:.2} µs  p99 {:.2} µs  p99.9 {:.2} µs  max {:.2} µs  \
         (target p99 < {} µs: {verdict}; doorbells rung core/control {}/{})",
        idle.round_trip_name(),
        run.nanos.len(),
        micros(run.nanos.value_at_quantile(0.50)),
        micros(p99),
        micros(run.nanos.value_at_quantile(0.999)),
        micros(run.nanos.max()),
        TARGET_P99.as_micros(),
        run.core.doorbells_rung,
        run.control.doorbells_rung,
    );
}

/// One-way throughput: the core publishes `count` redemptions as fast as
/// the ring takes them while a receiver thread busy-polls them off.
fn report_throughput(count: u64) {
    let (mut core, mut cp) = ports();
    let receiver = thread::Builder::new()
        .name("control-plane".to_owned())
        .spawn(move || {
            for _ in 0..count {
                receive(&mut cp, Idle::BusyPoll);
            }
        })
        .unwrap();
    let request = redeem_request();
    let started = Instant::now();
    for _ in 0..count {
        let id = core.next_request_id();
        send(&mut core, id, &request);
    }
    receiver.join().unwrap();
    let elapsed = started.elapsed();
    let counters = core.counters();
    println!(
        "channel/{:<22} {count} messages in {elapsed:.2?}: {:.2} M messages/s, \
         {:.1} ns/message ({} sends refused full, {} doorbells rung)",
        "one_way_busy_poll",
        count as f64 / elapsed.as_secs_f64() / 1e6,
        elapsed.as_secs_f64() * 1e9 / count as f64,
        counters.refused_full,
        counters.doorbells_rung,
    );
}

/// The percentile report: criterion gives means, the target is a p99.
fn percentile_report() {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| args.iter().any(|arg| arg == name);
    if flag("--list") {
        return;
    }
    // Criterion's own rule: without `--bench` (cargo test) or with
    // `--test`, run briefly to check the code works.
    let test_mode = !flag("--bench") || flag("--test");
    let (warm_up, count, messages) = if test_mode {
        (TEST_MODE_COUNT, TEST_MODE_COUNT, TEST_MODE_COUNT)
    } else {
        (REPORT_WARM_UP, REPORT_ROUND_TRIPS, THROUGHPUT_MESSAGES)
    };
    println!(
        "\nchannel percentiles: core -> control plane -> core, two threads, in-process memfd \
         channel, {SLOT_BYTES}-byte slots, {SLOTS_PER_RING} slots per ring, {warm_up} warm-up \
         round trips"
    );
    for idle in [Idle::Doorbell, Idle::BusyPoll] {
        report_round_trips(idle, warm_up, count);
    }
    report_throughput(messages);
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    percentile_report();
}
