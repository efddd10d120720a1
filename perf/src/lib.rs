//! The load-test harness `gatehouse-load` and the peer comparisons driven by
//! `perf/compare.sh`.
#![forbid(unsafe_code)]
