//! Criterion micro-benchmarks for Gatehouse; the benches live in `benches/`:
//! `wire` (the connection-setup parsers) and `channel` (the shared-memory
//! channel between the planes: slot codec, round trips, and a p50/p99/p99.9
//! and messages/s report).
//!
//! Run them with `cargo bench -p gatehouse-bench`, or one of them with
//! `cargo bench -p gatehouse-bench --bench channel`.
#![forbid(unsafe_code)]
