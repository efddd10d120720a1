//! Metrics: `GET /metrics` on the internal listener, Prometheus text
//! format 0.0.4, written by hand (docs/LOGS.md lists the families).
//!
//! Two sources:
//!
//! - **Per-core counters** stay on their core (plain `Cell`s). A scrape
//!   sends `StatsRequest` to every core over the channel and waits, for at
//!   most [`SCRAPE_DEADLINE`], for the answers (one or more `StatsReport`s
//!   with the request's id; the first pair says how many pairs the answer
//!   holds, see `gatehouse_engine::counter_ids`). A core that does not
//!   answer in time is shown with `gatehouse_core_up{core} 0` and no other
//!   sample: the scrape never blocks on it. The round trip of each answer
//!   feeds `gatehouse_channel_stats_rtt_seconds`, and the depth of each
//!   core's rings, read by its channel task when the request leaves,
//!   `gatehouse_channel_depth`.
//! - **Control-plane counters** (tickets issued and redeemed, logins,
//!   broker decisions) live in [`Metrics`], fed through the free functions
//!   ([`login_outcome`], [`broker_decision`], [`sta_outcome`],
//!   [`redeem_outcome`]) on the process-wide [`global`] instance. They are
//!   off the data path: a `parking_lot` mutex per family.
//!
//! The channel tasks find the hub through [`Metrics::hub`]: each registers
//! its core ([`StatsHub::register`]) and forwards `StatsReport`s to
//! [`StatsHub::report`].

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use gatehouse_channel::{CoreId, CounterId, RequestId, StatsReport, ToCore};
use gatehouse_engine::counter_ids::{self, MetricKind};
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};

/// The path of the metrics endpoint.
pub const METRICS_PATH: &str = "/metrics";

/// How long a scrape waits for the cores' answers.
pub const SCRAPE_DEADLINE: Duration = Duration::from_millis(500);

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Upper bounds (seconds) of the round-trip histogram's buckets.
pub const RTT_BUCKETS: [f64; 12] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
];

/// The process-wide metrics.
pub fn global() -> &'static Metrics {
    static GLOBAL: LazyLock<Metrics> = LazyLock::new(Metrics::default);
    &GLOBAL
}

/// Counts one login attempt's outcome for `factor` (`password`, `ldap`,
/// `radius`, `totp`, …) on the [`global`] metrics: `outcome` is a stable
/// word (`success`, `bad_credentials`, `locked`, `error`, …).
pub fn login_outcome(factor: &str, outcome: &str) {
    global().login_outcome(factor, outcome);
}

/// Counts one broker decision (`assigned`, `no_worker`, `denied`, …) on the
/// [`global`] metrics.
pub fn broker_decision(decision: &str) {
    global().broker_decision(decision);
}

/// Counts one STA request: `op` is `issue`, `redeem`, `refresh` or
/// `revoke`, `outcome` is `ok` or `refused`.
pub fn sta_outcome(op: &str, outcome: &str) {
    global().sta_outcome(op, outcome);
}

/// Counts one redemption a core asked for: `proto` is `socks5`, `cgp` or
/// `cgp_reconnect`, `outcome` is `allowed` or the refusal's reason.
pub fn redeem_outcome(proto: &str, outcome: &str) {
    global().redeem_outcome(proto, outcome);
}

/// Counters keyed by label values.
type Family = Mutex<BTreeMap<Vec<String>, u64>>;

fn add(family: &Family, labels: &[&str]) {
    let key = labels.iter().map(|l| (*l).to_owned()).collect();
    *family.lock().entry(key).or_insert(0) += 1;
}

/// The control plane's metrics and the hub that gathers the cores'.
#[derive(Debug, Default)]
pub struct Metrics {
    logins: Family,
    broker: Family,
    sta: Family,
    redeems: Family,
    hub: StatsHub,
}

impl Metrics {
    /// See [`login_outcome`].
    pub fn login_outcome(&self, factor: &str, outcome: &str) {
        add(&self.logins, &[factor, outcome]);
    }

    /// See [`broker_decision`].
    pub fn broker_decision(&self, decision: &str) {
        add(&self.broker, &[decision]);
    }

    /// See [`sta_outcome`].
    pub fn sta_outcome(&self, op: &str, outcome: &str) {
        add(&self.sta, &[op, outcome]);
    }

    /// See [`redeem_outcome`].
    pub fn redeem_outcome(&self, proto: &str, outcome: &str) {
        add(&self.redeems, &[proto, outcome]);
    }

    /// The hub the channel tasks register with.
    pub fn hub(&self) -> &StatsHub {
        &self.hub
    }

    /// Gathers the cores' counters (at most `deadline`) and renders every
    /// family in the text format.
    pub async fn scrape(&self, deadline: Duration) -> String {
        let gathered = self.hub.gather(deadline).await;
        self.render(&gathered)
    }

    /// Renders `gathered` and the control-plane families.
    pub fn render(&self, gathered: &[CoreAnswer]) -> String {
        let mut out = Exposition::default();
        render_cores(&mut out, gathered);
        out.family(
            "gatehouse_channel_stats_rtt_seconds",
            "histogram",
            "Round trip of a stats request to a core and its answer.",
        );
        self.hub
            .rtt
            .render(&mut out, "gatehouse_channel_stats_rtt_seconds");
        let families: [(&str, &str, &Family, &[&str]); 4] = [
            (
                "gatehouse_sta_requests_total",
                "STA requests (issue, redeem, refresh, revoke) by outcome.",
                &self.sta,
                &["op", "outcome"],
            ),
            (
                "gatehouse_ticket_redemptions_total",
                "Ticket redemptions asked by the cores, by protocol and outcome.",
                &self.redeems,
                &["proto", "outcome"],
            ),
            (
                "gatehouse_logins_total",
                "Login attempts by factor and outcome.",
                &self.logins,
                &["factor", "outcome"],
            ),
            (
                "gatehouse_broker_decisions_total",
                "Broker decisions by outcome.",
                &self.broker,
                &["decision"],
            ),
        ];
        for (name, help, family, names) in families {
            out.family(name, "counter", help);
            for (values, count) in family.lock().iter() {
                let labels: Vec<(&str, &str)> = names
                    .iter()
                    .copied()
                    .zip(values.iter().map(String::as_str))
                    .collect();
                out.sample(name, &labels, *count as f64);
            }
        }
        out.text
    }
}

/// The per-core families, from the answers gathered.
fn render_cores(out: &mut Exposition, gathered: &[CoreAnswer]) {
    out.family(
        "gatehouse_core_up",
        "gauge",
        "1 when the core answered this scrape's stats request in time, 0 when stale.",
    );
    for answer in gathered {
        let core = answer.core.0.to_string();
        let up = if answer.pairs.is_some() { 1.0 } else { 0.0 };
        out.sample("gatehouse_core_up", &[("core", &core)], up);
    }
    out.family(
        "gatehouse_channel_depth",
        "gauge",
        "Messages waiting in a core's rings when the stats request left.",
    );
    for answer in gathered {
        let core = answer.core.0.to_string();
        for (direction, depth) in [
            ("to_control", answer.depth_to_control),
            ("to_core", answer.depth_to_core),
        ] {
            out.sample(
                "gatehouse_channel_depth",
                &[("core", &core), ("direction", direction)],
                depth as f64,
            );
        }
    }
    // family -> (kind, help, samples)
    let mut families: BTreeMap<&str, (MetricKind, &str, Vec<String>)> = BTreeMap::new();
    for answer in gathered {
        let Some(pairs) = &answer.pairs else { continue };
        let core = answer.core.0.to_string();
        for &(id, value) in pairs {
            let Some(spec) = counter_ids::spec_of(id) else {
                continue;
            };
            let mut labels = vec![("core", core.as_str())];
            labels.extend(spec.label);
            let entry = families
                .entry(spec.family)
                .or_insert_with(|| (spec.kind, spec.help, Vec::new()));
            entry
                .2
                .push(sample_line(spec.family, &labels, value as f64));
        }
    }
    // Families with no sample yet still get their header.
    for spec in counter_ids::CORE.iter().chain(counter_ids::CHANNEL) {
        families
            .entry(spec.family)
            .or_insert_with(|| (spec.kind, spec.help, Vec::new()));
    }
    for (name, (kind, help, lines)) in families {
        let kind = match kind {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
        };
        out.family(name, kind, help);
        for line in lines {
            out.text.push_str(&line);
        }
    }
}

/// Text exposition being written.
#[derive(Debug, Default)]
struct Exposition {
    text: String,
}

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.text.push_str(&sample_line(name, labels, value));
    }
}

/// One sample line, `name{a="x",b="y"} value\n`.
fn sample_line(name: &str, labels: &[(&str, &str)], value: f64) -> String {
    let mut line = String::from(name);
    if !labels.is_empty() {
        line.push('{');
        for (i, (label, value)) in labels.iter().enumerate() {
            if i > 0 {
                line.push(',');
            }
            let _ = write!(line, "{label}=\"{}\"", escape_label(value));
        }
        line.push('}');
    }
    let _ = writeln!(line, " {}", format_value(value));
    line
}

fn format_value(value: f64) -> String {
    if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else {
        format!("{value}")
    }
}

/// Escapes a label value: backslash, double quote and newline.
pub fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn escape_help(value: &str) -> String {
    value.replace('\\', "\\\\").replace('\n', "\\n")
}

/// A fixed-bucket histogram of durations.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; RTT_BUCKETS.len()],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, value: Duration) {
        let seconds = value.as_secs_f64();
        for (bound, bucket) in RTT_BUCKETS.iter().zip(&self.buckets) {
            if seconds <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(value.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    fn render(&self, out: &mut Exposition, name: &str) {
        let bucket = format!("{name}_bucket");
        for (bound, count) in RTT_BUCKETS.iter().zip(&self.buckets) {
            let le = format!("{bound}");
            out.sample(
                &bucket,
                &[("le", &le)],
                count.load(Ordering::Relaxed) as f64,
            );
        }
        let count = self.count.load(Ordering::Relaxed) as f64;
        out.sample(&bucket, &[("le", "+Inf")], count);
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        out.sample(&format!("{name}_sum"), &[], sum);
        out.sample(&format!("{name}_count"), &[], count);
    }
}

/// One core's answer to a scrape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreAnswer {
    /// The core.
    pub core: CoreId,
    /// Its counters, `None` when it did not answer in time (stale).
    pub pairs: Option<Vec<(CounterId, u64)>>,
    /// Messages waiting core → control plane when the request left.
    pub depth_to_control: u64,
    /// Messages waiting control plane → core when the request left.
    pub depth_to_core: u64,
}

/// A core's channel task as the hub knows it.
#[derive(Debug)]
struct CoreLink {
    token: u64,
    requests: mpsc::UnboundedSender<(RequestId, ToCore)>,
    depth_to_control: Arc<AtomicU64>,
    depth_to_core: Arc<AtomicU64>,
}

/// A registered core as one scrape sees it.
#[derive(Debug)]
struct LinkView {
    core: CoreId,
    requests: mpsc::UnboundedSender<(RequestId, ToCore)>,
    depth_to_control: Arc<AtomicU64>,
    depth_to_core: Arc<AtomicU64>,
}

/// An answer being assembled.
#[derive(Debug)]
struct Gathering {
    core: CoreId,
    sent: Instant,
    pairs: Vec<(CounterId, u64)>,
    done: Option<oneshot::Sender<Vec<(CounterId, u64)>>>,
}

/// Sends stats requests to the cores' channel tasks and assembles the
/// answers.
#[derive(Debug)]
pub struct StatsHub {
    cores: Mutex<BTreeMap<u16, CoreLink>>,
    pending: Mutex<HashMap<RequestId, Gathering>>,
    next: AtomicU64,
    rtt: Histogram,
}

impl Default for StatsHub {
    fn default() -> Self {
        Self {
            cores: Mutex::new(BTreeMap::new()),
            pending: Mutex::new(HashMap::new()),
            // Far from the cores' own request ids, for readable traces.
            next: AtomicU64::new(1 << 48),
            rtt: Histogram::default(),
        }
    }
}

/// A channel task's registration with the hub; unregisters on drop.
#[derive(Debug)]
pub struct Registration<'a> {
    hub: &'a StatsHub,
    core: CoreId,
    token: u64,
    /// The stats requests to send to the core, in order.
    pub requests: mpsc::UnboundedReceiver<(RequestId, ToCore)>,
    depth_to_control: Arc<AtomicU64>,
    depth_to_core: Arc<AtomicU64>,
}

impl Registration<'_> {
    /// Records the rings' depths as a request leaves.
    pub fn record_depth(&self, to_control: u64, to_core: u64) {
        self.depth_to_control.store(to_control, Ordering::Relaxed);
        self.depth_to_core.store(to_core, Ordering::Relaxed);
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        let mut cores = self.hub.cores.lock();
        if cores
            .get(&self.core.0)
            .is_some_and(|l| l.token == self.token)
        {
            cores.remove(&self.core.0);
        }
    }
}

impl StatsHub {
    /// Registers the channel task of `core` (replacing an older one): the
    /// task sends what arrives on [`Registration::requests`] to the core.
    pub fn register(&self, core: CoreId) -> Registration<'_> {
        let (tx, rx) = mpsc::unbounded_channel();
        let token = self.next.fetch_add(1, Ordering::Relaxed);
        let depth_to_control = Arc::new(AtomicU64::new(0));
        let depth_to_core = Arc::new(AtomicU64::new(0));
        self.cores.lock().insert(
            core.0,
            CoreLink {
                token,
                requests: tx,
                depth_to_control: depth_to_control.clone(),
                depth_to_core: depth_to_core.clone(),
            },
        );
        Registration {
            hub: self,
            core,
            token,
            requests: rx,
            depth_to_control,
            depth_to_core,
        }
    }

    /// Sends `message` (e.g. a `KillSession`) to the channel task of
    /// `core`, which forwards it to the core in order with the stats
    /// requests; false when no task of that core is registered.
    pub fn send_to_core(&self, core: CoreId, message: ToCore) -> bool {
        let id = RequestId(self.next.fetch_add(1, Ordering::Relaxed));
        self.cores
            .lock()
            .get(&core.0)
            .is_some_and(|link| link.requests.send((id, message)).is_ok())
    }

    /// Takes one `StatsReport` from `core` for request `id`; reports nobody
    /// waits for (late, or from another process's request) are dropped.
    pub fn report(&self, core: CoreId, id: RequestId, report: &StatsReport) {
        let mut pending = self.pending.lock();
        let Some(gathering) = pending.get_mut(&id) else {
            return;
        };
        if gathering.core != core {
            return;
        }
        gathering.pairs.extend_from_slice(report.counters());
        let expected = gathering
            .pairs
            .first()
            .filter(|(first, _)| *first == counter_ids::ANSWER_LEN)
            .map(|(_, len)| *len);
        let complete = match expected {
            Some(len) => gathering.pairs.len() as u64 >= len,
            // Not led by its length: take it as it is.
            None => true,
        };
        if complete && let Some(gathering) = pending.remove(&id) {
            self.rtt.observe(gathering.sent.elapsed());
            if let Some(done) = gathering.done {
                let _ = done.send(gathering.pairs);
            }
        }
    }

    /// Asks every registered core for its counters and waits at most
    /// `deadline` for all answers; late cores come back with `pairs: None`.
    pub async fn gather(&self, deadline: Duration) -> Vec<CoreAnswer> {
        let links: Vec<LinkView> = self
            .cores
            .lock()
            .iter()
            .map(|(core, link)| LinkView {
                core: CoreId(*core),
                requests: link.requests.clone(),
                depth_to_control: link.depth_to_control.clone(),
                depth_to_core: link.depth_to_core.clone(),
            })
            .collect();
        let mut waits = Vec::with_capacity(links.len());
        for LinkView { core, requests, .. } in &links {
            let id = RequestId(self.next.fetch_add(1, Ordering::Relaxed));
            let (done, answer) = oneshot::channel();
            self.pending.lock().insert(
                id,
                Gathering {
                    core: *core,
                    sent: Instant::now(),
                    pairs: Vec::new(),
                    done: Some(done),
                },
            );
            let _ = requests.send((id, ToCore::StatsRequest));
            waits.push((id, answer));
        }
        let until = tokio::time::Instant::now() + deadline;
        let mut answers = Vec::with_capacity(links.len());
        for (link, (id, answer)) in links.iter().zip(waits) {
            let core = &link.core;
            let pairs = tokio::time::timeout_at(until, answer)
                .await
                .ok()
                .and_then(Result::ok);
            if pairs.is_none() {
                self.pending.lock().remove(&id);
                tracing::debug!(core = core.0, "stats_core_stale");
            }
            answers.push(CoreAnswer {
                core: *core,
                pairs,
                depth_to_control: link.depth_to_control.load(Ordering::Relaxed),
                depth_to_core: link.depth_to_core.load(Ordering::Relaxed),
            });
        }
        answers
    }
}

/// The router of `GET /metrics` on the [`global`] metrics. Merge it into
/// the admin router.
pub fn router() -> Router {
    Router::new().route(METRICS_PATH, get(serve_metrics))
}

async fn serve_metrics() -> impl IntoResponse {
    let text = global().scrape(SCRAPE_DEADLINE).await;
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], text)
}

/// The router of `GET /metrics` on `metrics` instead of the [`global`]
/// instance (its hub only sees the channel tasks registered with it).
pub fn router_for(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route(METRICS_PATH, get(serve_metrics_of))
        .with_state(metrics)
}

async fn serve_metrics_of(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    let text = metrics.scrape(SCRAPE_DEADLINE).await;
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], text)
}

#[cfg(test)]
mod tests;
