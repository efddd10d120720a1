//! Criterion micro-benchmarks for Gatehouse; the benches live in `benches/`.
//!
//! Run them with `cargo bench -p gatehouse-bench`.
#![forbid(unsafe_code)]
