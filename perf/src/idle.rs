//! `idle`: open many connections, send nothing (or `ping` bytes each, right
//! after it opens: a session that was active and went quiet), hold them,
//! then check how many the relay kept open. `perf/idle_memory.sh` reads the relay's RSS and
//! descriptor count while they are held.
//!
//! Connections open one after another from one thread (loopback connects
//! complete in the kernel, so this is quick) and are held as plain blocking
//! sockets: the generator itself stays small. With `sources > 1`, connection
//! `i` binds to `127.0.0.(1 + i % sources)` so more than one ephemeral port
//! range is available.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use crate::json::JsonObject;
use crate::net;
use crate::tally::ErrorTally;

/// Stop opening after this many failures in a row: the target is gone or the
/// descriptor limit is reached, and more attempts only add time.
const MAX_FAILURES_IN_A_ROW: u32 = 100;
/// Stop opening after this long, whatever the count: connects that each wait
/// for their timeout would otherwise add up to hours.
const OPEN_DEADLINE: Duration = Duration::from_secs(120);

/// What to run.
#[derive(Debug, Clone)]
pub struct IdleConfig {
    /// Relay or sink address.
    pub target: SocketAddr,
    /// Connections to open.
    pub connections: usize,
    /// How long to hold them after the last one opened.
    pub hold: Duration,
    /// Number of loopback source addresses (1 = let the kernel choose).
    pub sources: u8,
    /// Bytes each connection sends right after it opens (0: none).
    pub ping: usize,
}

/// What happened.
#[derive(Debug, Clone)]
pub struct IdleReport {
    /// The run's configuration.
    pub config: IdleConfig,
    /// Connections that opened.
    pub opened: usize,
    /// Time to open them.
    pub open_time: Duration,
    /// Connections still open (not closed or reset by the peer) after the hold.
    pub still_open: usize,
    /// Failures by phase.
    pub errors: ErrorTally,
}

impl IdleReport {
    /// One flat JSON object.
    pub fn to_json(&self) -> String {
        let object = JsonObject::new()
            .str("mode", "idle")
            .str("target", &self.config.target.to_string())
            .int("connections", self.config.connections as u64)
            .int("ping", self.config.ping as u64)
            .int("opened", self.opened as u64)
            .num("open_s", self.open_time.as_secs_f64())
            .num("hold_s", self.config.hold.as_secs_f64())
            .int("still_open", self.still_open as u64);
        self.errors.write_json(object).finish()
    }
}

impl fmt::Display for IdleReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "idle {}: opened {}/{} connections in {:.2} s, held {:.1} s, {} still open",
            self.config.target,
            self.opened,
            self.config.connections,
            self.open_time.as_secs_f64(),
            self.config.hold.as_secs_f64(),
            self.still_open
        )?;
        write!(f, "  errors   {}", self.errors.describe())
    }
}

/// Opens the connections, calls `on_open(opened)` once they are open, holds
/// them for the configured time, then checks and closes them.
pub fn run(config: &IdleConfig, on_open: impl FnOnce(usize)) -> IdleReport {
    let began = Instant::now();
    let mut streams = Vec::with_capacity(config.connections);
    let mut errors = ErrorTally::default();
    let mut failures_in_a_row = 0;
    let ping = vec![0x5a_u8; config.ping];
    for i in 0..config.connections {
        if began.elapsed() > OPEN_DEADLINE {
            break;
        }
        match net::connect(config.target, source_for(i, config.sources)) {
            Ok(mut stream) => {
                if !ping.is_empty() && stream.write_all(&ping).is_err() {
                    errors.io += 1;
                }
                streams.push(stream);
                failures_in_a_row = 0;
            }
            Err(_) => {
                errors.connect += 1;
                failures_in_a_row += 1;
                if failures_in_a_row >= MAX_FAILURES_IN_A_ROW {
                    break;
                }
            }
        }
    }
    let open_time = began.elapsed();
    on_open(streams.len());
    thread::sleep(config.hold);
    let still_open = streams.iter().filter(|s| is_open(s)).count();
    IdleReport {
        config: config.clone(),
        opened: streams.len(),
        open_time,
        still_open,
        errors,
    }
}

/// The source address of connection `index` when spreading over `sources`
/// loopback addresses; `None` lets the kernel choose.
pub fn source_for(index: usize, sources: u8) -> Option<IpAddr> {
    if sources <= 1 {
        return None;
    }
    let host = 1 + (index % usize::from(sources)) as u8;
    Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, host)))
}

/// Open means: no EOF and no error waiting; unexpected data also counts as
/// open (the peer is still there).
fn is_open(mut stream: &TcpStream) -> bool {
    if stream.set_nonblocking(true).is_err() {
        return false;
    }
    let mut byte = [0; 1];
    match stream.read(&mut byte) {
        Ok(0) => false,
        Ok(_) => true,
        Err(e) => e.kind() == io::ErrorKind::WouldBlock,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreads_connections_over_loopback_sources_round_robin() {
        let hosts: Vec<_> = (0..5).map(|i| source_for(i, 3)).collect();
        let ip = |h| Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, h)));
        assert_eq!(hosts, vec![ip(1), ip(2), ip(3), ip(1), ip(2)]);
    }

    #[test]
    fn leaves_the_source_to_the_kernel_with_one_source() {
        assert_eq!(source_for(7, 1), None);
        assert_eq!(source_for(7, 0), None);
    }
}
