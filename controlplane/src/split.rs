//! `gatehouse controlplane` and `gatehouse dataplane`: the two planes as
//! separate processes over a named shared-memory segment (DESIGN.md §3),
//! so that an operator can restart the control plane without cutting a
//! single established session.
//!
//! Both read the same configuration and compute the same channel geometry
//! (`engine.cores`). Either may start first; the segment (`/dev/shm/NAME`)
//! and the control plane's link socket (`NAME.link`) come and go with them
//! (`gatehouse_channel`'s `named` and `link` modules).
//!
//! The control plane ([`run_control_plane`]) is [`ControlPlane`] (STA,
//! admin listener with `/sessions`, redeem service, session table) on the
//! control side of the segment, plus two tasks:
//! - the link task accepts data planes on `NAME.link`. Before it links a
//!   data plane of a generation other than the one whose sessions the table
//!   holds, it closes those sessions ([`Reconciler`]): a new data plane has
//!   sent nothing yet (its gate opens only after the link), so nothing of
//!   its own is lost.
//! - the watch task beats every [`WATCH_PERIOD`] and observes the data
//!   plane: when its process is gone (or it detached), every session of the
//!   table is closed, logged once (`data_plane_gone`, `sessions_closed`).
//!   A data plane that is only silent keeps its sessions.
//!
//! When the data plane's cores also play the connector role
//! (`server_to_client.connector_name` may own a pool), the [`Reconciler`]
//! publishes which data plane is linked ([`Reconciler::link_state`]) and
//! the port tasks serve that connector role by it
//! ([`crate::redeem::ConnectorRole`]): no orders while no data plane is
//! linked, and the whole listen set again on every link, so a restarted
//! data plane listens on the IIPs leased before it came.
//!
//! The data plane ([`run_data_plane`]) is the engine on the data side of
//! the segment, plus a supervisor thread that beats every
//! [`SUPERVISE_PERIOD`], watches the control plane and keeps the cores'
//! [`ControlPlaneGate`]:
//!
//! ```text
//!  closed --control plane alive, link ok--> open(generation) + ring the cores
//!    ^                                           |
//!    +-- process dead / silent / detached -------+   (logged once: control_plane_down)
//!    +-- a new generation attached: close, link again
//! ```
//!
//! While the gate is closed a new handshake is refused at once (SOCKS `01`,
//! reason `control_plane_down`) or waits up to
//! `engine.control_plane_wait_ms`; relaying sessions never look at it.
//! Opening the gate on a new generation rings every core, which then sends
//! `SessionOpened` again for each session it relays, so a fresh control
//! plane's table matches reality.

use std::fs::File;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use gatehouse_channel::{
    AttachError, ControlSide, DEFAULT_SEGMENT_DIR, DataSide, Generation, LinkError, LinkListener,
    MonotonicMillis, NameError, PeerStatus, PeerWatch, ProcessPresence, SegmentName,
};
use gatehouse_engine::ControlPlaneGate;
use parking_lot::Mutex;
use rustix::event::{PollFd, PollFlags, Timespec};
use tokio::sync::watch;

use crate::appliance::{
    self, ControlPlane, RunError, Signals, create_data_dir, drain_on_signal, geometry, log_stopped,
    prepare_data_dir, resolve_cores,
};
use crate::config::Config;
use crate::redeem::{ConnectorRole, LinkState};
use crate::sessions::SessionTable;

/// How often the data plane's supervisor beats and looks at the control
/// plane: the longest a dead control plane goes unnoticed.
pub const SUPERVISE_PERIOD: Duration = Duration::from_millis(10);

/// How often the control plane beats and looks at the data plane.
pub const WATCH_PERIOD: Duration = Duration::from_millis(50);

/// How long one wait of the link task for a data plane lasts (it then
/// looks again, so an abort takes effect within this).
const LINK_POLL: Duration = Duration::from_millis(100);

/// A control plane whose process lives but that has not beaten for this
/// long is treated as down (new handshakes refused).
pub const CONTROL_SILENCE: Duration = Duration::from_secs(1);

/// A data plane silent this long is reported (its sessions are kept while
/// its process lives: a link can hold its supervisor for
/// `gatehouse_channel::LINK_TIMEOUT`).
pub const DATA_SILENCE: Duration = Duration::from_secs(5);

/// A `--shm` value that names no segment.
#[derive(Debug, thiserror::Error)]
#[error("--shm {text:?}: {source}")]
pub struct ShmError {
    /// The value given.
    pub text: String,
    /// What is wrong with it.
    #[source]
    pub source: NameError,
}

/// The segment `--shm` names: `NAME` under `/dev/shm`, or `DIR/NAME` for
/// another directory (a tmpfs keeps it in memory).
///
/// Errors: [`ShmError`] (the name allows `A-Z a-z 0-9 . _ -`, 1 to 64
/// bytes, no leading dot).
pub fn segment_name(text: &str) -> Result<SegmentName, ShmError> {
    let named = match text.rsplit_once('/') {
        Some((dir, name)) => SegmentName::in_dir(if dir.is_empty() { "/" } else { dir }, name),
        None => SegmentName::in_dir(DEFAULT_SEGMENT_DIR, text),
    };
    named.map_err(|source| ShmError {
        text: text.to_owned(),
        source,
    })
}

/// Runs the control plane alone on segment `shm` until SIGTERM/SIGINT.
/// Builds its own runtime; blocks the calling thread.
///
/// Errors: [`RunError`] (configuration, admin bind, segment attach or
/// link socket); a start failure stops whatever had started.
pub fn run_control_plane(config: Config, shm: SegmentName) -> Result<(), RunError> {
    let fixed = config.clone();
    let loader: crate::reload::Loader = Arc::new(move || fixed.validate().map(|()| fixed.clone()));
    run_control_plane_reloadable(config, shm, loader)
}

/// [`run_control_plane`], reloading with `loader` on SIGHUP (see
/// [`crate::reload`]): the remote STA map is applied; the certificate
/// belongs to the data plane ([`run_data_plane_reloadable`]).
///
/// Errors: as [`run_control_plane`].
pub fn run_control_plane_reloadable(
    config: Config,
    shm: SegmentName,
    loader: crate::reload::Loader,
) -> Result<(), RunError> {
    config.validate()?;
    appliance::runtime()?.block_on(serve_control(config, shm, loader))
}

/// Runs the data-plane cores alone on segment `shm` until SIGTERM/SIGINT
/// and the drain that follows. Builds its own runtime (for signals and the
/// drain); blocks the calling thread.
///
/// Errors: [`RunError`] (configuration, certificate, segment attach,
/// engine start).
pub fn run_data_plane(config: Config, shm: SegmentName) -> Result<(), RunError> {
    let fixed = config.clone();
    let loader: crate::reload::Loader = Arc::new(move || fixed.validate().map(|()| fixed.clone()));
    run_data_plane_reloadable(config, shm, loader)
}

/// [`run_data_plane`], reloading with `loader` on SIGHUP (see
/// [`crate::reload`]): the TLS certificate is applied to new connections.
///
/// Errors: as [`run_data_plane`].
pub fn run_data_plane_reloadable(
    config: Config,
    shm: SegmentName,
    loader: crate::reload::Loader,
) -> Result<(), RunError> {
    config.validate()?;
    appliance::runtime()?.block_on(serve_data(config, shm, loader))
}

async fn serve_control(
    config: Config,
    shm: SegmentName,
    loader: crate::reload::Loader,
) -> Result<(), RunError> {
    let mut signals = Signals::catch()?;
    create_data_dir(&config)?;
    let mut control = ControlPlane::start(&config).await?;
    control.attach_reloader(loader, None)?;
    let cores = resolve_cores(config.engine.cores);
    let side = Arc::new(ControlSide::open_named(&shm, geometry(cores)?)?);
    let listener = side.listen()?;
    let reconciler = Arc::new(Reconciler::new(control.sessions().clone()));
    let mut service = control.redeem_service(side.generation());
    if config.server_to_client.gateway_is_connector() {
        // The data plane's cores are the gateway's connector: orders only
        // while one is linked, the listen set again on each link.
        service = service.for_connector(ConnectorRole {
            name: Arc::from(config.server_to_client.connector_name.as_str()),
            link: Some(reconciler.link_state()),
        });
    }
    control.spawn_all(service.spawn_all(side.take_ports()?));
    control.spawn_all([
        tokio::spawn(accept_links(listener, side.clone(), reconciler.clone())),
        tokio::spawn(watch_peer(side.clone(), reconciler, DATA_SILENCE)),
    ]);
    crate::connector::serve_connectors(&mut control, &config)?;
    tracing::info!(
        plane = "control",
        admin = %control.admin_addr(),
        shm = %shm.segment_path().display(),
        generation = side.generation().0,
        cores = cores.get(),
        sta = %config.sta.id,
        data_dir = %config.data_dir.display(),
        "gatehouse_ready"
    );
    signals.first().await;
    // The tasks own the ports and the link listener: once they are gone,
    // dropping the side detaches cleanly.
    control.stop().await;
    drop(side);
    tracing::info!(plane = "control", "gatehouse_stopped");
    Ok(())
}

async fn serve_data(
    config: Config,
    shm: SegmentName,
    loader: crate::reload::Loader,
) -> Result<(), RunError> {
    let signals = Signals::catch()?;
    let certificate = prepare_data_dir(&config)?;
    let cores = resolve_cores(config.engine.cores);
    let side = DataSide::open_named(&shm, geometry(cores)?)?;
    let generation = side.generation();
    let ports = side.take_ports()?;
    let gate = ControlPlaneGate::closed();
    let supervisor = Supervisor::start(side, gate.clone(), &ports)?;

    let engine_config = config.clone();
    let redeem = appliance::redeem_config(&config, Some(gate));
    let (engine, acceptor) = tokio::task::spawn_blocking(move || {
        appliance::start_gateway_tls(&engine_config, certificate.as_ref(), ports, redeem)
    })
    .await??;
    let reloader = crate::reload::Reloader::new(loader, config.clone(), acceptor);
    let reloads = crate::reload::spawn_on_sighup(reloader).map_err(RunError::Runtime)?;
    let gateway = engine
        .local_addrs()
        .first()
        .copied()
        .unwrap_or(config.gateway.listen);
    tracing::info!(
        plane = "data",
        gateway = %gateway,
        shm = %shm.segment_path().display(),
        generation = generation.0,
        cores = engine.cores(),
        tls = !config.gateway.plaintext,
        data_dir = %config.data_dir.display(),
        "gatehouse_ready"
    );
    let joined = drain_on_signal(engine, signals, config.engine.drain_secs).await;
    reloads.abort();
    supervisor.stop();
    log_stopped(&joined?);
    Ok(())
}

/// Keeps the session table true to the data plane that reports into it:
/// remembers whose sessions the table holds and closes them all when that
/// data plane is replaced or gone. Shared by the link and watch tasks.
/// Also publishes which data plane is linked ([`Reconciler::link_state`]).
#[derive(Debug)]
pub struct Reconciler {
    sessions: Arc<SessionTable>,
    holder: Mutex<Option<Generation>>,
    /// The generation of the data plane linked now.
    link: watch::Sender<Option<Generation>>,
}

/// What [`Reconciler::hand_over`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handover {
    /// The data plane whose sessions the table held.
    pub previous: Option<Generation>,
    /// How many of its sessions were closed.
    pub closed: usize,
}

impl Reconciler {
    /// A reconciler of `sessions`, holding nobody's sessions yet, with no
    /// data plane linked.
    pub fn new(sessions: Arc<SessionTable>) -> Self {
        Self {
            sessions,
            holder: Mutex::new(None),
            link: watch::channel(None).0,
        }
    }

    /// Which data plane is linked, and when that changes: `Some(generation)`
    /// from its link ([`PeerKeeper::linked`]) until it is replaced or gone,
    /// `None` otherwise. What the port tasks serving the data plane's
    /// connector role read ([`ConnectorRole::link`]).
    pub fn link_state(&self) -> LinkState {
        self.link.subscribe()
    }

    /// Publishes that no data plane is linked, unless `keep` is the one
    /// linked now (receivers wake only on a change).
    fn unlink(&self, keep: Option<Generation>) {
        self.link.send_if_modified(|linked| {
            if linked.is_some() && *linked != keep {
                *linked = None;
                true
            } else {
                false
            }
        });
    }

    /// From now on the table holds the sessions of data plane `to` (`None`:
    /// of no data plane). If it held another's, they are closed (zero
    /// bytes: the counts died with their data plane) and the handover is
    /// returned; `None` when `to` already was the holder.
    pub fn hand_over(&self, to: Option<Generation>) -> Option<Handover> {
        let mut holder = self.holder.lock();
        if *holder == to {
            return None;
        }
        let previous = std::mem::replace(&mut *holder, to);
        Some(Handover {
            previous,
            closed: close_all(&self.sessions),
        })
    }

    /// While no data plane holds the table, closes what the dead one's last
    /// messages still opened; returns how many. Does nothing otherwise.
    pub fn sweep(&self) -> usize {
        let holder = self.holder.lock();
        if holder.is_some() {
            return 0;
        }
        close_all(&self.sessions)
    }
}

/// Closes every open session of `sessions` with zero bytes; returns how
/// many there were.
fn close_all(sessions: &SessionTable) -> usize {
    let open = sessions.open_sessions();
    for record in &open {
        let lived = SystemTime::now()
            .duration_since(record.opened_at)
            .unwrap_or_default();
        sessions.close(record.session, 0, 0, lived);
    }
    open.len()
}

/// What the control plane's link and watch tasks report to, for one
/// segment: the data plane of `gatehouse controlplane` ([`Reconciler`]),
/// or a connector ([`crate::connector`]). Each method logs its own event.
pub(crate) trait PeerKeeper: Send + Sync + 'static {
    /// A peer of `generation` attached and is about to link: whatever an
    /// earlier generation held is let go (its process is gone or
    /// replaced).
    fn replaced_by(&self, generation: Generation);
    /// The link with `linked` completed.
    fn linked(&self, linked: &gatehouse_channel::Linked);
    /// A link attempt failed.
    fn link_failed(&self, error: &LinkError);
    /// The watch saw `generation` (pid `pid`) alive for the first time.
    fn attached(&self, generation: Generation, pid: u32);
    /// The peer's process lives but has not beaten for `silent_ms`
    /// (reported once per generation).
    fn silent(&self, generation: Generation, silent_ms: u64);
    /// The peer is gone: `reason` `process_gone` or `detached`. Called on
    /// every watch step while it stays gone.
    fn gone(&self, reason: &'static str);
}

impl PeerKeeper for Reconciler {
    fn replaced_by(&self, generation: Generation) {
        self.unlink(Some(generation));
        if let Some(handover) = self.hand_over(Some(generation)) {
            log_handover(handover, "replaced");
        }
    }

    fn linked(&self, linked: &gatehouse_channel::Linked) {
        // The port tasks replay the listen set for this link (if the data
        // plane plays the connector role).
        self.link.send_replace(Some(linked.peer_generation));
        tracing::info!(
            generation = linked.peer_generation.0,
            pid = linked.peer_pid,
            "data_plane_linked"
        );
    }

    fn link_failed(&self, error: &LinkError) {
        tracing::warn!(error = %crate::error_chain(error), "data_plane_link_failed");
    }

    fn attached(&self, generation: Generation, pid: u32) {
        tracing::info!(generation = generation.0, pid, "data_plane_attached");
    }

    fn silent(&self, generation: Generation, silent_ms: u64) {
        tracing::warn!(generation = generation.0, silent_ms, "data_plane_silent");
    }

    fn gone(&self, reason: &'static str) {
        self.unlink(None);
        match self.hand_over(None) {
            Some(handover) => log_handover(handover, reason),
            None => {
                let late = self.sweep();
                if late > 0 {
                    tracing::debug!(sessions_closed = late, "data_plane_late_sessions");
                }
            }
        }
    }
}

/// Accepts peers on the link socket until aborted. A link of a new
/// generation is first reported to `keeper` ([`PeerKeeper::replaced_by`]).
pub(crate) async fn accept_links<K: PeerKeeper>(
    listener: LinkListener,
    side: Arc<ControlSide>,
    keeper: Arc<K>,
) {
    let listener = Arc::new(listener);
    loop {
        let (listener, side, keeper) = (listener.clone(), side.clone(), keeper.clone());
        // Blocks up to LINK_POLL, or LINK_TIMEOUT during an exchange.
        let turn = tokio::task::spawn_blocking(move || link_turn(&listener, &side, &*keeper));
        if let Err(error) = turn.await {
            tracing::error!(error = %error, "link_listener_failed");
            return;
        }
    }
}

/// Waits up to [`LINK_POLL`] for a peer on `listener`; when one is
/// there, reports its generation to `keeper` and links it.
fn link_turn<K: PeerKeeper>(listener: &LinkListener, side: &ControlSide, keeper: &K) {
    let mut fds = [PollFd::new(listener, PollFlags::IN)];
    let timeout = Timespec {
        tv_sec: 0,
        tv_nsec: i64::from(LINK_POLL.subsec_nanos()),
    };
    match rustix::event::poll(&mut fds, Some(&timeout)) {
        Ok(0) | Err(rustix::io::Errno::INTR) => return,
        Ok(_) => {}
        Err(error) => {
            tracing::warn!(error = %error, "link_listener_failed");
            thread::sleep(LINK_POLL);
            return;
        }
    }
    // A peer attaches (bumping its generation) before it links, and
    // sends nothing before its link completes: the handover loses nothing
    // of its own.
    let peer = side.peer();
    if peer.generation.0 != 0 {
        keeper.replaced_by(peer.generation);
    }
    match listener.accept() {
        Ok(Some(linked)) => keeper.linked(&linked),
        Ok(None) => {}
        Err(error) => keeper.link_failed(&error),
    }
}

/// Beats for the control plane every [`WATCH_PERIOD`] and watches the
/// peer until aborted; a peer silent past `silence` whose process lives
/// is only reported.
pub(crate) async fn watch_peer<K: PeerKeeper>(
    side: Arc<ControlSide>,
    keeper: Arc<K>,
    silence: Duration,
) {
    let mut watch = PeerWatch::new(silence);
    let mut ticks = tokio::time::interval(WATCH_PERIOD);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut attached: Option<Generation> = None;
    let mut silent: Option<Generation> = None;
    loop {
        ticks.tick().await;
        let now = MonotonicMillis::now();
        side.beat(now);
        let snapshot = side.peer();
        match watch.observe(snapshot, now) {
            PeerStatus::Alive { generation }
            | PeerStatus::Restarted {
                current: generation,
                ..
            } => {
                silent = None;
                if attached.replace(generation) != Some(generation) {
                    keeper.attached(generation, snapshot.pid);
                }
            }
            PeerStatus::Gone {
                generation,
                silent_ms,
            } if snapshot.process != ProcessPresence::Dead => {
                if silent.replace(generation) != Some(generation) {
                    keeper.silent(generation, silent_ms);
                }
            }
            status => {
                attached = None;
                silent = None;
                keeper.gone(match status {
                    PeerStatus::Absent => "detached",
                    _ => "process_gone",
                });
            }
        }
    }
}

/// One event for a handover away from a data plane that held sessions.
fn log_handover(handover: Handover, reason: &'static str) {
    if let Some(previous) = handover.previous {
        tracing::warn!(
            generation = previous.0,
            reason,
            sessions_closed = handover.closed,
            "data_plane_gone"
        );
    }
}

/// The data plane's supervisor thread (also a connector's): beats, links
/// with the control plane and keeps the gate; stopped and joined on
/// [`Supervisor::stop`] or drop.
#[derive(Debug)]
pub(crate) struct Supervisor {
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Supervisor {
    /// Starts the thread on `side`, keeping `gate`; after a link it rings
    /// the doorbells of `ports` (the cores'), so that each core looks at
    /// the gate without waiting for traffic.
    ///
    /// Errors: [`RunError::Channel`] (a doorbell cannot be duplicated),
    /// [`RunError::Runtime`] (no thread).
    pub(crate) fn start(
        side: DataSide,
        gate: ControlPlaneGate,
        ports: &[gatehouse_channel::CorePort],
    ) -> Result<Self, RunError> {
        let bells = ports
            .iter()
            .map(|port| port.doorbell().try_clone_to_owned().map(File::from))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| AttachError::Io {
                op: "dup core doorbell",
                source,
            })?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = thread::Builder::new()
            .name("gatehouse-supervisor".to_owned())
            .spawn(move || {
                let mut watch = ControlWatch::new(side, gate, bells);
                while !stopping.load(Ordering::Acquire) {
                    watch.step();
                    thread::park_timeout(SUPERVISE_PERIOD);
                }
            })
            .map_err(RunError::Runtime)?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops and joins the thread.
    pub(crate) fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            if thread.join().is_err() {
                tracing::error!("supervisor_panicked");
            }
        }
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.halt();
    }
}

/// The supervisor's state: the data side (its heartbeat), what it knows of
/// the control plane, and the gate it keeps.
struct ControlWatch {
    side: DataSide,
    gate: ControlPlaneGate,
    bells: Vec<File>,
    watch: PeerWatch,
    /// The control plane generation the doorbells are linked with.
    linked: Option<Generation>,
    /// Since when the gate is closed (from the start: no control plane yet).
    down_since: Instant,
    /// The generation a link failure was last logged for.
    link_failure_logged: Option<Generation>,
}

impl ControlWatch {
    fn new(side: DataSide, gate: ControlPlaneGate, bells: Vec<File>) -> Self {
        Self {
            side,
            gate,
            bells,
            watch: PeerWatch::new(CONTROL_SILENCE),
            linked: None,
            down_since: Instant::now(),
            link_failure_logged: None,
        }
    }

    /// One beat and one look at the control plane.
    fn step(&mut self) {
        let now = MonotonicMillis::now();
        self.side.beat(now);
        let snapshot = self.side.peer();
        match self.watch.observe(snapshot, now) {
            PeerStatus::Alive { generation }
            | PeerStatus::Restarted {
                current: generation,
                ..
            } => {
                if self.linked == Some(generation) {
                    if !self.gate.is_open() {
                        // Back from a silence, same incarnation: its table
                        // is intact.
                        self.open(generation, snapshot.pid);
                    }
                } else {
                    self.close("replaced", generation);
                    self.link(generation);
                }
            }
            PeerStatus::Gone { generation, .. } => {
                let reason = match snapshot.process {
                    ProcessPresence::Dead => "process_gone",
                    _ => "silent",
                };
                self.close(reason, generation);
            }
            PeerStatus::Absent => self.close("detached", snapshot.generation),
        }
    }

    /// Links with the control plane `seen` alive and opens the gate; a
    /// control plane not listening yet is tried again next step.
    fn link(&mut self, seen: Generation) {
        match self.side.link() {
            Ok(linked) => {
                self.linked = Some(linked.peer_generation);
                self.open(linked.peer_generation, linked.peer_pid);
            }
            Err(LinkError::NoListener(_)) => {}
            Err(error) => {
                if self.link_failure_logged.replace(seen) != Some(seen) {
                    tracing::warn!(
                        generation = seen.0,
                        error = %crate::error_chain(&error),
                        "control_plane_link_failed"
                    );
                }
            }
        }
    }

    /// Opens the gate for `generation` and rings every core, which then
    /// re-announces its sessions if the generation is new to it.
    fn open(&mut self, generation: Generation, pid: u32) {
        self.gate.open(generation);
        let down_ms = u64::try_from(self.down_since.elapsed().as_millis()).unwrap_or(u64::MAX);
        let mut unrung = 0;
        for bell in &self.bells {
            let mut bell: &File = bell;
            if bell.write_all(&1_u64.to_ne_bytes()).is_err() {
                unrung += 1;
            }
        }
        tracing::info!(
            generation = generation.0,
            pid,
            down_ms,
            unrung,
            "control_plane_linked"
        );
    }

    /// Closes the gate (logged once per outage).
    fn close(&mut self, reason: &'static str, generation: Generation) {
        if !self.gate.is_open() {
            return;
        }
        self.gate.close();
        self.down_since = Instant::now();
        tracing::warn!(generation = generation.0, reason, "control_plane_down");
    }
}

impl std::fmt::Debug for ControlWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlWatch")
            .field("linked", &self.linked)
            .field("gate", &self.gate.generation())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
