//! `rr`: request/response ping-pong on N long-lived connections.
//!
//! Each connection has its own thread with blocking I/O (the lowest-latency
//! client there is: the kernel wakes the waiting thread directly). A round
//! trip writes `size` bytes and reads the echo back; its latency goes into a
//! histogram. Connections connect first, then start together.

use std::fmt;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use crate::json::JsonObject;
use crate::latency::{LatencyRecorder, LatencySummary};
use crate::net;
use crate::tally::ErrorTally;

/// What to run.
#[derive(Debug, Clone)]
pub struct RrConfig {
    /// Relay or echo address.
    pub target: SocketAddr,
    /// Connections doing ping-pong in parallel, one thread each.
    pub connections: usize,
    /// How long to run.
    pub duration: Duration,
    /// Bytes per request (the echo returns as many).
    pub message_size: usize,
}

/// What happened.
#[derive(Debug, Clone)]
pub struct RrReport {
    /// The run's configuration.
    pub config: RrConfig,
    /// Completed round trips.
    pub round_trips: u64,
    /// From the common start until the last connection stopped.
    pub elapsed: Duration,
    /// Round-trip latency.
    pub latency: LatencySummary,
    /// Failures by phase.
    pub errors: ErrorTally,
}

impl RrReport {
    /// Completed round trips per second, all connections together.
    pub fn round_trips_per_sec(&self) -> f64 {
        per_sec(self.round_trips, self.elapsed)
    }

    /// One flat JSON object.
    pub fn to_json(&self) -> String {
        let object = JsonObject::new()
            .str("mode", "rr")
            .str("target", &self.config.target.to_string())
            .int("connections", self.config.connections as u64)
            .int("size", self.config.message_size as u64)
            .num("seconds", self.config.duration.as_secs_f64())
            .int("round_trips", self.round_trips)
            .num("rt_per_s", self.round_trips_per_sec());
        let object = self.latency.write_json(object);
        self.errors.write_json(object).finish()
    }
}

impl fmt::Display for RrReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.config;
        writeln!(
            f,
            "rr {}: {} connections, {:.1} s, {}-byte messages",
            c.target,
            c.connections,
            c.duration.as_secs_f64(),
            c.message_size
        )?;
        writeln!(
            f,
            "  {} round trips, {:.0} round trips/s",
            self.round_trips,
            self.round_trips_per_sec()
        )?;
        writeln!(f, "  latency  {}", self.latency.describe())?;
        write!(f, "  errors   {}", self.errors.describe())
    }
}

/// Runs the shape; returns after the duration (plus at most one operation
/// timeout for a stuck connection).
pub fn run(config: &RrConfig) -> RrReport {
    let barrier = Arc::new(Barrier::new(config.connections + 1));
    let workers: Vec<_> = (0..config.connections)
        .map(|index| {
            let barrier = Arc::clone(&barrier);
            let config = config.clone();
            thread::spawn(move || {
                let stream = net::connect(config.target, None);
                barrier.wait();
                let start = Instant::now();
                let mut recorder = LatencyRecorder::new();
                let mut errors = ErrorTally::default();
                match stream {
                    Ok(stream) => {
                        ping_pong(stream, &config, index, start, &mut recorder, &mut errors)
                    }
                    Err(_) => errors.connect += 1,
                }
                (recorder, errors, start.elapsed())
            })
        })
        .collect();
    barrier.wait();

    let mut recorder = LatencyRecorder::new();
    let mut errors = ErrorTally::default();
    let mut elapsed = Duration::ZERO;
    for worker in workers {
        match worker.join() {
            Ok((r, e, took)) => {
                recorder.merge(&r);
                errors.merge(&e);
                elapsed = elapsed.max(took);
            }
            Err(_) => errors.io += 1,
        }
    }
    RrReport {
        config: config.clone(),
        round_trips: recorder.count(),
        elapsed,
        latency: recorder.summary(),
        errors,
    }
}

fn ping_pong(
    mut stream: TcpStream,
    config: &RrConfig,
    index: usize,
    start: Instant,
    recorder: &mut LatencyRecorder,
    errors: &mut ErrorTally,
) {
    if stream.set_nodelay(true).is_err() {
        errors.io += 1;
        return;
    }
    // A per-connection pattern, so an echo from the wrong connection shows.
    let request: Vec<u8> = (0..config.message_size)
        .map(|i| (i + index) as u8)
        .collect();
    let mut response = vec![0; config.message_size];
    let deadline = start + config.duration;
    while Instant::now() < deadline {
        let sent_at = Instant::now();
        if let Err(e) = stream
            .write_all(&request)
            .and_then(|()| stream.read_exact(&mut response))
        {
            errors.count_io(&e);
            return;
        }
        recorder.record(sent_at.elapsed());
        if response != request {
            errors.mismatch += 1;
            return;
        }
    }
}

pub(crate) fn per_sec(count: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 { count as f64 / secs } else { 0.0 }
}
