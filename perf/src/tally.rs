//! Counting failures instead of panicking on them.
//!
//! A load run that loses a connection keeps going; the report says how many
//! operations failed and in which phase, so a relay that drops connections
//! shows up in the numbers rather than as a crash of the load tool.

use std::io;

use crate::json::JsonObject;

/// Failures of one run, by the phase they happened in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ErrorTally {
    /// TCP connect failed or timed out.
    pub connect: u64,
    /// The TLS handshake failed.
    pub tls: u64,
    /// The SOCKS5 preamble was refused, malformed or cut short.
    pub preamble: u64,
    /// A read or write failed, or the peer closed early.
    pub io: u64,
    /// A read or write took longer than the operation timeout.
    pub timeout: u64,
    /// Echoed bytes differed from what was sent.
    pub mismatch: u64,
}

impl ErrorTally {
    /// Total of all phases.
    pub fn total(&self) -> u64 {
        self.connect + self.tls + self.preamble + self.io + self.timeout + self.mismatch
    }

    /// Counts an I/O error of a read or write as `timeout` or `io`.
    pub fn count_io(&mut self, error: &io::Error) {
        if is_timeout(error) {
            self.timeout += 1;
        } else {
            self.io += 1;
        }
    }

    /// Adds another tally into this one.
    pub fn merge(&mut self, other: &ErrorTally) {
        self.connect += other.connect;
        self.tls += other.tls;
        self.preamble += other.preamble;
        self.io += other.io;
        self.timeout += other.timeout;
        self.mismatch += other.mismatch;
    }

    /// Appends `errors` and one `errors_<phase>` field per phase.
    pub fn write_json(&self, object: JsonObject) -> JsonObject {
        object
            .int("errors", self.total())
            .int("errors_connect", self.connect)
            .int("errors_tls", self.tls)
            .int("errors_preamble", self.preamble)
            .int("errors_io", self.io)
            .int("errors_timeout", self.timeout)
            .int("errors_mismatch", self.mismatch)
    }

    /// One line for human reports, e.g. `0` or `3 (connect 1, io 2)`.
    pub fn describe(&self) -> String {
        let phases = [
            ("connect", self.connect),
            ("tls", self.tls),
            ("preamble", self.preamble),
            ("io", self.io),
            ("timeout", self.timeout),
            ("mismatch", self.mismatch),
        ];
        let parts: Vec<String> = phases
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(name, n)| format!("{name} {n}"))
            .collect();
        if parts.is_empty() {
            "0".to_owned()
        } else {
            format!("{} ({})", self.total(), parts.join(", "))
        }
    }
}

/// Whether an I/O error is a socket timeout (blocking sockets report
/// `WouldBlock` or `TimedOut` when `SO_RCVTIMEO`/`SO_SNDTIMEO` expire).
pub fn is_timeout(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_only_the_phases_that_failed() {
        let tally = ErrorTally {
            connect: 1,
            io: 2,
            ..ErrorTally::default()
        };
        assert_eq!(tally.describe(), "3 (connect 1, io 2)");
        assert_eq!(ErrorTally::default().describe(), "0");
    }

    #[test]
    fn counts_socket_timeouts_apart_from_other_io_errors() {
        let mut tally = ErrorTally::default();
        tally.count_io(&io::Error::from(io::ErrorKind::WouldBlock));
        tally.count_io(&io::Error::from(io::ErrorKind::ConnectionReset));
        assert_eq!((tally.timeout, tally.io), (1, 1));
    }

    #[test]
    fn merges_phase_by_phase() {
        let mut a = ErrorTally {
            connect: 1,
            ..ErrorTally::default()
        };
        a.merge(&ErrorTally {
            connect: 2,
            mismatch: 1,
            ..ErrorTally::default()
        });
        assert_eq!((a.connect, a.mismatch, a.total()), (3, 1, 4));
    }
}
