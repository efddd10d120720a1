//! `stream`: N connections write for S seconds; throughput counted where the
//! bytes arrived.
//!
//! One thread per connection with blocking writes keeps the generator cheap
//! (one `write(2)` per chunk, no event loop). All connections connect first,
//! then start together. At the deadline each half-closes and waits for the
//! sink's 8-byte count of what it received (see [`crate::server`]); the
//! reported rate is those bytes over the time from the start until the last
//! count came back, so bytes still queued in a relay at the deadline are
//! neither lost nor credited early.

use std::fmt;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use crate::json::JsonObject;
use crate::net;
use crate::tally::ErrorTally;

/// How long a connection waits for the sink's count after half-closing.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(5);

/// What to run.
#[derive(Debug, Clone)]
pub struct StreamConfig {
    /// Relay or sink address.
    pub target: SocketAddr,
    /// Connections writing in parallel, one thread each.
    pub connections: usize,
    /// How long to write.
    pub duration: Duration,
    /// Bytes per `write` call.
    pub write_size: usize,
}

/// What happened.
#[derive(Debug, Clone)]
pub struct StreamReport {
    /// The run's configuration.
    pub config: StreamConfig,
    /// Bytes accepted by `write` at the sender.
    pub sent_bytes: u64,
    /// From the common start to the last write's return.
    pub send_window: Duration,
    /// Bytes the sink reported receiving (confirmed connections only).
    pub arrived_bytes: u64,
    /// Connections whose sink count came back.
    pub confirmed: usize,
    /// From the common start to the last sink count.
    pub arrival_window: Duration,
    /// Failures by phase.
    pub errors: ErrorTally,
}

impl StreamReport {
    /// Throughput at the sender in Gbit/s.
    pub fn sent_gbps(&self) -> f64 {
        gbps(self.sent_bytes, self.send_window)
    }

    /// Throughput counted at the sink in Gbit/s (confirmed connections only).
    pub fn arrived_gbps(&self) -> f64 {
        gbps(self.arrived_bytes, self.arrival_window)
    }

    /// Whether every connection's sink count came back.
    pub fn all_confirmed(&self) -> bool {
        self.confirmed == self.config.connections
    }

    /// The headline figure: at the sink when every connection confirmed,
    /// otherwise at the sender (and `sink_confirmed` is false).
    pub fn gbps(&self) -> f64 {
        if self.all_confirmed() {
            self.arrived_gbps()
        } else {
            self.sent_gbps()
        }
    }

    /// One flat JSON object.
    pub fn to_json(&self) -> String {
        let object = JsonObject::new()
            .str("mode", "stream")
            .str("target", &self.config.target.to_string())
            .int("connections", self.config.connections as u64)
            .int("write_size", self.config.write_size as u64)
            .num("seconds", self.config.duration.as_secs_f64())
            .num("gbps", self.gbps())
            .bool("sink_confirmed", self.all_confirmed())
            .int("confirmed_connections", self.confirmed as u64)
            .num("sent_gbps", self.sent_gbps())
            .num("arrived_gbps", self.arrived_gbps())
            .int("sent_bytes", self.sent_bytes)
            .int("arrived_bytes", self.arrived_bytes)
            .num("send_window_s", self.send_window.as_secs_f64())
            .num("arrival_window_s", self.arrival_window.as_secs_f64());
        self.errors.write_json(object).finish()
    }
}

impl fmt::Display for StreamReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.config;
        writeln!(
            f,
            "stream {}: {} connections, {:.1} s, {}-byte writes",
            c.target,
            c.connections,
            c.duration.as_secs_f64(),
            c.write_size
        )?;
        writeln!(
            f,
            "  sent     {:>10.3} GB in {:.2} s  {:>7.2} Gbit/s (at the sender)",
            self.sent_bytes as f64 / 1e9,
            self.send_window.as_secs_f64(),
            self.sent_gbps()
        )?;
        writeln!(
            f,
            "  arrived  {:>10.3} GB in {:.2} s  {:>7.2} Gbit/s (counted at the sink, {}/{} connections confirmed)",
            self.arrived_bytes as f64 / 1e9,
            self.arrival_window.as_secs_f64(),
            self.arrived_gbps(),
            self.confirmed,
            c.connections
        )?;
        write!(f, "  errors   {}", self.errors.describe())
    }
}

#[derive(Debug, Default)]
struct ConnectionResult {
    sent: u64,
    last_write: Duration,
    arrived: Option<(u64, Duration)>,
    errors: ErrorTally,
}

/// Runs the shape; returns when every connection finished (at most the
/// duration plus the write and confirmation timeouts).
pub fn run(config: &StreamConfig) -> StreamReport {
    let barrier = Arc::new(Barrier::new(config.connections + 1));
    let chunk: Arc<[u8]> = (0..config.write_size).map(|i| i as u8).collect();
    let workers: Vec<_> = (0..config.connections)
        .map(|_| {
            let barrier = Arc::clone(&barrier);
            let chunk = Arc::clone(&chunk);
            let (target, duration) = (config.target, config.duration);
            thread::spawn(move || {
                let stream = net::connect(target, None);
                // Everyone connects first, then the clock starts for all.
                let start = wait_for_start(&barrier);
                match stream {
                    Ok(stream) => write_then_confirm(stream, &chunk, start, duration),
                    Err(_) => ConnectionResult {
                        errors: ErrorTally {
                            connect: 1,
                            ..ErrorTally::default()
                        },
                        ..ConnectionResult::default()
                    },
                }
            })
        })
        .collect();
    wait_for_start(&barrier);

    let mut report = StreamReport {
        config: config.clone(),
        sent_bytes: 0,
        send_window: Duration::ZERO,
        arrived_bytes: 0,
        confirmed: 0,
        arrival_window: Duration::ZERO,
        errors: ErrorTally::default(),
    };
    for worker in workers {
        let result = worker.join().unwrap_or_else(|_| ConnectionResult {
            errors: ErrorTally {
                io: 1,
                ..ErrorTally::default()
            },
            ..ConnectionResult::default()
        });
        report.sent_bytes += result.sent;
        report.send_window = report.send_window.max(result.last_write);
        if let Some((bytes, at)) = result.arrived {
            report.arrived_bytes += bytes;
            report.confirmed += 1;
            report.arrival_window = report.arrival_window.max(at);
        }
        report.errors.merge(&result.errors);
    }
    report
}

/// The start instant, taken by each thread right after the barrier opens.
fn wait_for_start(barrier: &Barrier) -> Instant {
    barrier.wait();
    Instant::now()
}

fn write_then_confirm(
    mut stream: TcpStream,
    chunk: &[u8],
    start: Instant,
    duration: Duration,
) -> ConnectionResult {
    let mut result = ConnectionResult::default();
    let deadline = start + duration;
    while Instant::now() < deadline {
        match stream.write(chunk) {
            Ok(0) => {
                result.errors.io += 1;
                break;
            }
            Ok(n) => result.sent += n as u64,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                result.errors.count_io(&e);
                break;
            }
        }
    }
    result.last_write = start.elapsed();
    if stream.shutdown(Shutdown::Write).is_err() {
        result.errors.io += 1;
        return result;
    }
    let mut count = [0; 8];
    let confirmed = stream
        .set_read_timeout(Some(CONFIRM_TIMEOUT))
        .and_then(|()| stream.read_exact(&mut count));
    match confirmed {
        Ok(()) => result.arrived = Some((u64::from_be_bytes(count), start.elapsed())),
        Err(e) => result.errors.count_io(&e),
    }
    result
}

fn gbps(bytes: u64, window: Duration) -> f64 {
    let secs = window.as_secs_f64();
    if secs > 0.0 {
        bytes as f64 * 8.0 / secs / 1e9
    } else {
        0.0
    }
}
