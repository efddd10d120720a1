//! Latency recording (hdrhistogram, nanoseconds) and the percentile summary
//! that the reports print in microseconds.

use std::time::Duration;

use hdrhistogram::Histogram;

use crate::json::JsonObject;

/// Slowest latency tracked exactly; slower samples are clamped to it.
const MAX_TRACKED_NS: u64 = 60_000_000_000;
/// Three significant digits: 0.1 % error at every magnitude.
const SIGNIFICANT_DIGITS: u8 = 3;

/// Records latencies of one worker; merge the workers' recorders at the end.
#[derive(Debug, Clone)]
pub struct LatencyRecorder {
    histogram: Histogram<u64>,
}

impl Default for LatencyRecorder {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyRecorder {
    /// An empty recorder tracking 1 ns to 60 s with three significant digits.
    pub fn new() -> Self {
        #[allow(
            clippy::expect_used,
            reason = "the bounds are constants that hdrhistogram accepts"
        )]
        let histogram = Histogram::new_with_bounds(1, MAX_TRACKED_NS, SIGNIFICANT_DIGITS)
            .expect("1 ns..60 s with 3 digits is a valid histogram");
        Self { histogram }
    }

    /// Records one sample; zero is recorded as 1 ns, anything above 60 s as 60 s.
    pub fn record(&mut self, latency: Duration) {
        let ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.histogram
            .saturating_record(ns.clamp(1, MAX_TRACKED_NS));
    }

    /// Adds every sample of `other` into this recorder.
    pub fn merge(&mut self, other: &LatencyRecorder) {
        #[allow(
            clippy::expect_used,
            reason = "both histograms have the same constant bounds"
        )]
        self.histogram
            .add(&other.histogram)
            .expect("histograms with equal bounds always add");
    }

    /// Number of samples recorded.
    pub fn count(&self) -> u64 {
        self.histogram.len()
    }

    /// Percentiles and mean of the samples so far; all zero when empty.
    pub fn summary(&self) -> LatencySummary {
        let h = &self.histogram;
        if h.is_empty() {
            return LatencySummary::default();
        }
        let us = |ns: u64| ns as f64 / 1_000.0;
        LatencySummary {
            count: h.len(),
            mean_us: h.mean() / 1_000.0,
            p50_us: us(h.value_at_quantile(0.50)),
            p99_us: us(h.value_at_quantile(0.99)),
            p999_us: us(h.value_at_quantile(0.999)),
            max_us: us(h.max()),
        }
    }
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LatencySummary {
    /// Samples behind the figures.
    pub count: u64,
    /// Arithmetic mean.
    pub mean_us: f64,
    /// Median.
    pub p50_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// Largest sample.
    pub max_us: f64,
}

impl LatencySummary {
    /// Appends `p50_us`, `p99_us`, `p999_us`, `max_us` and `mean_us`.
    pub fn write_json(&self, object: JsonObject) -> JsonObject {
        object
            .num("p50_us", self.p50_us)
            .num("p99_us", self.p99_us)
            .num("p999_us", self.p999_us)
            .num("max_us", self.max_us)
            .num("mean_us", self.mean_us)
    }

    /// One line for human reports.
    pub fn describe(&self) -> String {
        format!(
            "p50 {:.1} µs, p99 {:.1} µs, p999 {:.1} µs, max {:.1} µs (mean {:.1} µs)",
            self.p50_us, self.p99_us, self.p999_us, self.max_us, self.mean_us
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn near(actual: f64, expected: f64) -> bool {
        (actual - expected).abs() <= expected * 0.002
    }

    #[test]
    fn summarises_a_uniform_spread_of_latencies() {
        let mut recorder = LatencyRecorder::new();
        for us in 1..=1_000 {
            recorder.record(Duration::from_micros(us));
        }
        let s = recorder.summary();
        assert_eq!(s.count, 1_000);
        assert!(near(s.p50_us, 500.0), "p50 {}", s.p50_us);
        assert!(near(s.p99_us, 990.0), "p99 {}", s.p99_us);
        assert!(near(s.p999_us, 999.0), "p999 {}", s.p999_us);
        assert!(near(s.max_us, 1_000.0), "max {}", s.max_us);
        assert!(near(s.mean_us, 500.5), "mean {}", s.mean_us);
    }

    #[test]
    fn summarises_an_empty_recorder_as_zeros() {
        assert_eq!(LatencyRecorder::new().summary(), LatencySummary::default());
    }

    #[test]
    fn merges_samples_from_several_workers() {
        let mut a = LatencyRecorder::new();
        let mut b = LatencyRecorder::new();
        a.record(Duration::from_micros(10));
        b.record(Duration::from_micros(30));
        b.record(Duration::from_micros(30));
        a.merge(&b);
        assert_eq!(a.count(), 3);
        assert!(near(a.summary().p50_us, 30.0));
    }

    #[test]
    fn clamps_samples_outside_the_tracked_range() {
        let mut recorder = LatencyRecorder::new();
        recorder.record(Duration::ZERO);
        recorder.record(Duration::from_secs(3_600));
        let s = recorder.summary();
        assert_eq!(s.count, 2);
        assert!(near(s.max_us, 60_000_000.0), "max {}", s.max_us);
    }
}
