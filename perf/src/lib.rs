//! The load-test harness behind `gatehouse-load` and `perf/compare.sh`.
//!
//! It drives the three reference shapes of `PERFORMANCE.md` through a relay
//! (or directly at a back-end) and reports what arrived: [`stream`] (bulk
//! throughput, counted at the sink), [`connrate`] (connect, optional SOCKS5
//! preamble, 1 KiB echo, close) and [`rr`] (ping-pong latency). [`idle`]
//! holds many idle connections open for memory measurements, and [`server`]
//! provides the back-ends (`sink`, `echo`) so a comparison needs no other tool.
//! `connrate` can speak TLS first ([`tls`]) and can spend a fresh STA ticket
//! per connection, fetched in bulk before the timed part ([`sta`]).
//!
//! It refuses to run unbounded: every loop ends at a deadline and every socket
//! operation has a timeout; failures are counted in an [`tally::ErrorTally`],
//! never panicked on. It only talks to the addresses it is given (the scripts
//! use loopback). Reports render as human text or as one flat JSON object
//! ([`json`]) that `perf/compare.sh` reads with `sed`.
//!
//! Callers: the `gatehouse-load` binary and this crate's loopback tests.
#![forbid(unsafe_code)]

pub mod cli;
pub mod connrate;
pub mod idle;
pub mod json;
pub mod latency;
pub mod rr;
pub mod server;
pub mod socks;
pub mod sta;
pub mod stream;
pub mod tally;
pub mod tls;

mod net;
