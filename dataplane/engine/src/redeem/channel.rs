//! The production [`TicketRedeemer`]: asks the control plane over the
//! core's shared-memory [`CorePort`] (DESIGN.md §3, PROTOCOLS.md §2–§3).
//!
//! ```text
//! redeem ──► PendingTable.insert(id, deadline) ──► try_send(RedeemTicket)
//!    │                                               (Full: refuse at once)
//!    └─ waits on its Waiter ◄── receive task ◄── doorbell readable ◄── control plane
//!                                  │  Verdict(id) ─► complete the waiter
//!                                  │  KillSession ─► fire the session's Kill
//!                                  │  StatsRequest ─► StatsReport(s), same id
//!                                  └  Heartbeat ─► counted, ignored
//! ```
//!
//! One [`ChannelRedeemer`] per core, built on that core's thread; all its
//! state is core-local (`Rc`, `Cell`, `RefCell`), so nothing here takes a
//! lock or an atomic beyond the ring's own. The receive task waits for the
//! port's doorbell (an eventfd) to become readable through the core's
//! driver: an io_uring `POLL_ADD`, or epoll under the legacy driver. monoio
//! 0.2 has no public "poll this descriptor" type, so a duplicate of the
//! eventfd is wrapped in `monoio::net::UnixStream`, whose `readable()` is
//! exactly that poll (it never reads or writes the descriptor as a socket).
//!
//! Deadlines: each waiter bounds its own wait with a timer; when it fires
//! it expires every overdue entry of the table (the table counts them), so
//! the receive task needs no timer. A verdict that arrives for an expired
//! or abandoned request is dropped; if it was an allow, the control plane
//! gets a `SessionClosed` with zero bytes so it can release the session.
//!
//! Split processes (`gatehouse dataplane`): the control plane may be gone.
//! A [`ControlPlaneGate`], written by the data plane's supervisor thread,
//! says whether a control plane is linked and which generation it is. While
//! it is closed a new redemption is refused at once with
//! [`RedeemError::ControlPlaneDown`] (or waits up to
//! `control_plane_wait` for it to open), and a redemption already waiting
//! fails the same way within [`GATE_CHECK`] of the close (after the same
//! bound), instead of at its deadline. Established sessions never look at
//! the gate. When the gate opens on a generation this core has not
//! announced its sessions to (a new control plane, whose session table
//! starts empty), the receive task sends `SessionOpened` again for every
//! session still relaying on the core; the supervisor rings the core's
//! doorbell after opening the gate so that this happens without traffic.
//! Reading the gate is one atomic load per redemption, never per relayed
//! byte.
//!
//! Wake-ups: a redemption rings a sleeping control plane at once; a
//! session report (`SessionOpened` without a worker ticket, `SessionClosed`)
//! does not, and is read with the next redemption, or rung for by a flush
//! task within [`REPORT_WAKE_DELAY`] (or when the redeemer is dropped). A
//! busy core thus wakes the control plane once per connection, not three
//! times. A `SessionOpened` carrying a worker ticket rings at once: a
//! resume on another core may need it.
//!
//! What it refuses to do: block the core (a full ring or table refuses the
//! redemption), queue reports (a full ring drops them), or grow (the table
//! is bounded; the kill map and the live-session map hold one entry per
//! relaying session).

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::io;
use std::os::unix::net::UnixStream as StdUnixStream;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use gatehouse_channel::message::MAX_COUNTERS;
use gatehouse_channel::{
    ClientAddr, CoreId, CorePort, DenyReason, Envelope, FlowClosed, FlowRequest, FlowVerdict,
    Generation, KillSession, PendingTable, RecvError, RedeemKind, RedeemTicket, RequestId,
    SendError, SessionClosed, SessionId, SessionOpened, StatsReport, TicketBytes, ToControl,
    ToCore, Verdict, WaitDecision,
};
use monoio::net::UnixStream;
use monoio::time::Instant;
use tracing::warn;

use super::{RedeemError, Redeemed, ReportDropped, SessionReport, TicketRedeemer};
use crate::connector::{Connector, ConnectorConfig};

/// Kill orders kept for sessions that have not started relaying yet.
const EARLY_KILLS: usize = 64;

/// Messages the receive task handles before it lets other tasks run.
const RECEIVE_BATCH: usize = 256;
/// Pause after a doorbell or ring failure, so a broken channel costs a
/// wake-up per pause instead of a spinning core.
const FAILURE_BACKOFF: Duration = Duration::from_millis(50);
/// How often a redemption held or in flight looks at a closed
/// [`ControlPlaneGate`].
pub const GATE_CHECK: Duration = Duration::from_millis(10);
/// How long a re-announcement of the live sessions may wait for room in a
/// full request ring before it gives up on the rest.
const ANNOUNCE_LIMIT: Duration = Duration::from_secs(2);
/// Pause between attempts while the request ring is full.
const ANNOUNCE_RETRY: Duration = Duration::from_millis(1);
/// Longest a session report waits in the ring for a sleeping control plane
/// before the core rings for it (a redemption rings sooner).
pub const REPORT_WAKE_DELAY: Duration = Duration::from_millis(2);

/// Whether a control plane is linked to the channel, and which generation,
/// as the data plane's supervisor sees it (split processes only; an
/// in-process control plane needs no gate).
///
/// One writer (the supervisor thread: [`ControlPlaneGate::open`] after a
/// link, [`ControlPlaneGate::close`] when the control plane is gone), any
/// number of readers (the cores). Clones share the state.
#[derive(Debug, Clone, Default)]
pub struct ControlPlaneGate {
    // The linked control plane's generation; 0 (never a live generation)
    // means closed.
    generation: Arc<AtomicU32>,
}

impl ControlPlaneGate {
    /// A closed gate (no control plane yet).
    pub fn closed() -> ControlPlaneGate {
        ControlPlaneGate::default()
    }

    /// Opens the gate for the control plane of `generation` (just linked).
    /// Generation 0 is nobody's: the gate stays closed.
    pub fn open(&self, generation: Generation) {
        self.generation.store(generation.0, Ordering::Release);
    }

    /// Closes the gate: new redemptions are refused (or held).
    pub fn close(&self) {
        self.generation.store(0, Ordering::Release);
    }

    /// Whether a control plane is linked.
    pub fn is_open(&self) -> bool {
        self.generation().is_some()
    }

    /// The linked control plane's generation, `None` while closed.
    pub fn generation(&self) -> Option<Generation> {
        match self.generation.load(Ordering::Acquire) {
            0 => None,
            generation => Some(Generation(generation)),
        }
    }
}

impl PartialEq for ControlPlaneGate {
    /// The same gate (clones of one another).
    fn eq(&self, other: &ControlPlaneGate) -> bool {
        Arc::ptr_eq(&self.generation, &other.generation)
    }
}

impl Eq for ControlPlaneGate {}

/// How a [`ChannelRedeemer`] waits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelRedeemerConfig {
    /// Time a redemption waits for its verdict; then the client gets `01`
    /// with reason `control_plane_timeout`.
    pub deadline: Duration,
    /// Redemptions in flight per core; one more is refused (`01`, reason
    /// `pending_full`). Keep it at or below the ring's slot count.
    pub max_pending: usize,
    /// The control plane's liveness, for a data plane in its own process;
    /// `None` (in-process planes) means always linked.
    pub gate: Option<ControlPlaneGate>,
    /// How long a redemption waits for a closed gate to open before it is
    /// refused with `control_plane_down`; zero refuses at once.
    pub control_plane_wait: Duration,
    /// The connector role (server-to-client flows) on this core; `None`:
    /// the core ignores `Listen` orders.
    pub connector: Option<ConnectorConfig>,
}

impl ChannelRedeemerConfig {
    /// Default verdict deadline.
    pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(2);
    /// Default bound of redemptions in flight per core (the channel's
    /// default ring size).
    pub const DEFAULT_MAX_PENDING: usize = 1_024;
}

impl Default for ChannelRedeemerConfig {
    /// [`Self::DEFAULT_DEADLINE`], [`Self::DEFAULT_MAX_PENDING`], no gate.
    fn default() -> Self {
        ChannelRedeemerConfig {
            deadline: Self::DEFAULT_DEADLINE,
            max_pending: Self::DEFAULT_MAX_PENDING,
            gate: None,
            control_plane_wait: Duration::ZERO,
            connector: None,
        }
    }
}

/// What a core's channel redeemer has seen (beyond the refusals, which the
/// core counts by reason).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChannelRedeemerStats {
    /// Verdicts that found no waiting request (late, or abandoned).
    pub stray_verdicts: u64,
    /// Kill orders carried out.
    pub kills: u64,
    /// Kill orders for sessions not relaying on this core (minus those that
    /// came early and ended their session when it started relaying).
    pub stray_kills: u64,
    /// Messages this core does not act on (heartbeats).
    pub ignored: u64,
    /// Slots that did not decode, or ring/doorbell failures.
    pub channel_errors: u64,
    /// `SessionOpened` sent again to a new control plane generation.
    pub reannounced: u64,
    /// Live sessions a re-announcement gave up on (the ring stayed full).
    pub reannounce_dropped: u64,
}

/// A core's [`TicketRedeemer`] over its [`CorePort`].
///
/// Not `Send`: it lives on its core. Without a port (see
/// [`ChannelRedeemer::unavailable`]) every redemption is refused with
/// [`RedeemError::NoChannel`].
#[derive(Debug)]
pub struct ChannelRedeemer {
    shared: Option<Rc<Shared>>,
}

impl ChannelRedeemer {
    /// Takes over `port` and starts this core's receive task.
    ///
    /// Call it on the core's thread, inside its monoio runtime (as
    /// `HandlerFactory::build` is called). Errors: the doorbell could not be
    /// duplicated or registered with the driver.
    pub fn start(port: CorePort, config: ChannelRedeemerConfig) -> io::Result<ChannelRedeemer> {
        let doorbell = port.doorbell().try_clone_to_owned()?;
        let doorbell = UnixStream::from_std(StdUnixStream::from(doorbell))?;
        let shared = Rc::new(Shared {
            core: port.core(),
            port: RefCell::new(port),
            pending: RefCell::new(PendingTable::with_capacity(config.max_pending)),
            kills: RefCell::new(HashMap::new()),
            early_kills: RefCell::new(VecDeque::with_capacity(EARLY_KILLS)),
            deadline: config.deadline,
            stats: Cell::new(ChannelRedeemerStats::default()),
            gate: config.gate,
            control_plane_wait: config.control_plane_wait,
            live: RefCell::new(HashMap::new()),
            announced: Cell::new(None),
            connector: RefCell::new(None),
            flush_scheduled: Cell::new(false),
        });
        if let Some(connector) = config.connector {
            let link = ControlLink(Rc::downgrade(&shared));
            // Without its connector role the core still serves launches.
            match Connector::start(link, connector) {
                Ok(connector) => *shared.connector.borrow_mut() = Some(connector),
                Err(error) => warn!(core = shared.core.0, error = %error, "s2c_connector_failed"),
            }
        }
        monoio::spawn(receive(Rc::downgrade(&shared), doorbell));
        Ok(ChannelRedeemer {
            shared: Some(shared),
        })
    }

    /// A redeemer for a core that has no port: refuses every ticket.
    pub fn unavailable() -> ChannelRedeemer {
        ChannelRedeemer { shared: None }
    }

    /// The core's channel counters so far.
    pub fn stats(&self) -> ChannelRedeemerStats {
        self.shared
            .as_ref()
            .map_or_else(ChannelRedeemerStats::default, |s| s.stats.get())
    }
}

impl TicketRedeemer for ChannelRedeemer {
    /// Sends `RedeemTicket { kind }` and waits for the verdict until the
    /// configured deadline. Refuses at once when the ring or the pending
    /// table is full, and when the gate says the control plane is gone
    /// (after the configured wait).
    async fn redeem_as(
        &self,
        kind: RedeemKind,
        ticket: &[u8],
        client: ClientAddr,
    ) -> Result<Redeemed, RedeemError> {
        let shared = self.shared.as_ref().ok_or(RedeemError::NoChannel)?;
        // A ticket too long for a message is no STA ticket.
        let ticket =
            TicketBytes::new(ticket).map_err(|_| RedeemError::Denied(DenyReason::Malformed))?;
        let request = ToControl::RedeemTicket(RedeemTicket {
            kind,
            ticket,
            client,
        });
        match shared.ask(&request).await? {
            Answer::Redeemed(redeemed) => Ok(redeemed),
            // A flow verdict under a redemption's id: not this build's
            // control plane.
            Answer::Flow(_) => Err(RedeemError::NoChannel),
        }
    }

    fn report(&self, report: SessionReport) -> Result<(), ReportDropped> {
        let Some(shared) = &self.shared else {
            return Err(ReportDropped);
        };
        let (message, urgent) = match report {
            SessionReport::Opened(opened) => {
                // Only a gated (split) data plane re-announces.
                if shared.gate.is_some() {
                    shared.live.borrow_mut().insert(opened.session, opened);
                }
                // A worker ticket must be known before the client can
                // resume (on any core): that one goes at once.
                let urgent = opened.worker_ticket.is_some();
                (ToControl::SessionOpened(opened), urgent)
            }
            SessionReport::Closed(closed) => {
                shared.live.borrow_mut().remove(&closed.session);
                (ToControl::SessionClosed(closed), false)
            }
        };
        if urgent {
            return shared.send(&message).map_err(|_| ReportDropped);
        }
        shared.send_deferred(&message).map_err(|_| ReportDropped)
    }

    fn until_killed(&self, session: SessionId) -> impl Future<Output = ()> {
        let kill = Rc::new(Kill::default());
        if let Some(shared) = &self.shared {
            if shared.take_early_kill(session) {
                kill.fire();
                shared.count(|s| s.kills += 1);
            }
            shared.kills.borrow_mut().insert(session, kill.clone());
        }
        KillWatch {
            shared: self.shared.as_ref(),
            session,
            kill,
        }
    }
}

/// The core-local state shared by the redeemer and its receive task.
#[derive(Debug)]
struct Shared {
    core: CoreId,
    port: RefCell<CorePort>,
    pending: RefCell<PendingTable<Rc<Waiter>, Instant>>,
    kills: RefCell<HashMap<SessionId, Rc<Kill>>>,
    /// Kill orders that came before their session relayed (between the
    /// verdict and the success reply): kept briefly so the session, once it
    /// starts relaying, is ended at once.
    early_kills: RefCell<VecDeque<(SessionId, Instant)>>,
    deadline: Duration,
    stats: Cell<ChannelRedeemerStats>,
    gate: Option<ControlPlaneGate>,
    control_plane_wait: Duration,
    /// Sessions relaying on this core, as reported open (gated only).
    live: RefCell<HashMap<SessionId, SessionOpened>>,
    /// The control plane generation the live sessions were last announced
    /// to (`None`: not yet).
    announced: Cell<Option<Generation>>,
    /// The connector role, when this core has it.
    connector: RefCell<Option<Rc<Connector>>>,
    /// A [`flush_wake`] task is on its way.
    flush_scheduled: Cell<bool>,
}

impl Drop for Shared {
    /// A core that stops (shutdown, drain) rings for the reports it
    /// deferred: its flush task will not run any more.
    fn drop(&mut self) {
        self.port.get_mut().flush_wake();
    }
}

/// The connector's handle on its core's channel: asks for flow verdicts and
/// reports closed flows. Weak, so the connector does not keep the channel
/// state alive (nor the reverse).
#[derive(Debug, Clone)]
pub(crate) struct ControlLink(Weak<Shared>);

impl ControlLink {
    /// Sends `request` and waits for its verdict until the redeemer's
    /// deadline; refuses at once on a full ring or table, or when the
    /// control plane is down.
    pub(crate) async fn request_flow(
        &self,
        request: FlowRequest,
    ) -> Result<FlowVerdict, RedeemError> {
        let shared = self.0.upgrade().ok_or(RedeemError::NoChannel)?;
        match shared.ask(&ToControl::FlowRequest(request)).await? {
            Answer::Flow(verdict) => Ok(verdict),
            Answer::Redeemed(_) => Err(RedeemError::NoChannel),
        }
    }

    /// Tells the control plane a flow ended (best effort).
    pub(crate) fn flow_closed(&self, closed: FlowClosed) -> Result<(), ReportDropped> {
        let shared = self.0.upgrade().ok_or(ReportDropped)?;
        shared
            .send(&ToControl::FlowClosed(closed))
            .map_err(|_| ReportDropped)
    }
}

impl Shared {
    /// Sends `request`, waits for the answer under its id until the
    /// deadline (or the gate's verdict).
    async fn ask(&self, request: &ToControl) -> Result<Answer, RedeemError> {
        self.until_control_plane().await?;
        let deadline = Instant::now() + self.deadline;
        let waiter = Rc::new(Waiter::default());
        let id = self.submit(request, deadline, waiter.clone())?;
        match monoio::time::timeout_at(deadline, self.answer(id, &waiter)).await {
            Ok(answer) => answer,
            Err(_elapsed) => {
                self.expire(Instant::now());
                Err(RedeemError::ControlPlaneTimeout(self.deadline))
            }
        }
    }

    /// Returns at once when the control plane is linked (or there is no
    /// gate); otherwise waits up to `control_plane_wait` for the gate to
    /// open, then refuses.
    async fn until_control_plane(&self) -> Result<(), RedeemError> {
        let Some(gate) = &self.gate else {
            return Ok(());
        };
        let until = Instant::now() + self.control_plane_wait;
        while !gate.is_open() {
            let now = Instant::now();
            if now >= until {
                return Err(RedeemError::ControlPlaneDown);
            }
            monoio::time::sleep(GATE_CHECK.min(until - now)).await;
        }
        Ok(())
    }

    /// Waits for the answer to request `id`. With a gate, a control plane
    /// that goes away fails the wait once the gate has stayed closed for
    /// `control_plane_wait` (the request leaves the pending table; a late
    /// verdict for it is a stray one).
    async fn answer(&self, id: RequestId, waiter: &Waiter) -> Result<Answer, RedeemError> {
        let Some(gate) = &self.gate else {
            return WaitAnswer(waiter).await;
        };
        let mut closed_since: Option<Instant> = None;
        loop {
            if let Ok(answer) = monoio::time::timeout(GATE_CHECK, WaitAnswer(waiter)).await {
                return answer;
            }
            if gate.is_open() {
                closed_since = None;
                continue;
            }
            let now = Instant::now();
            let since = *closed_since.get_or_insert(now);
            if now.saturating_duration_since(since) >= self.control_plane_wait {
                self.pending.borrow_mut().complete(id);
                return Err(RedeemError::ControlPlaneDown);
            }
        }
    }

    /// Starts re-announcing the live sessions when the gate names a control
    /// plane generation they were not announced to yet.
    fn announce_if_new(self: &Rc<Self>) {
        let Some(generation) = self.gate.as_ref().and_then(ControlPlaneGate::generation) else {
            return;
        };
        if self.announced.replace(Some(generation)) == Some(generation) {
            return;
        }
        let sessions: Vec<SessionId> = self.live.borrow().keys().copied().collect();
        if !sessions.is_empty() {
            monoio::spawn(announce(Rc::downgrade(self), sessions));
        }
    }

    /// Records the waiter and sends the request; refuses without waiting.
    /// Returns the request's id.
    fn submit(
        &self,
        request: &ToControl,
        deadline: Instant,
        waiter: Rc<Waiter>,
    ) -> Result<RequestId, RedeemError> {
        // Entries of abandoned waiters go as soon as they are overdue.
        self.expire(Instant::now());
        let mut pending = self.pending.borrow_mut();
        if pending.len() >= pending.capacity() {
            return Err(RedeemError::PendingFull);
        }
        let mut port = self.port.borrow_mut();
        let id = port.next_request_id();
        match port.try_send(id, request) {
            Ok(()) => {}
            Err(SendError::Full) => return Err(RedeemError::ChannelFull),
            Err(SendError::Corrupt) => {
                self.count(|s| s.channel_errors += 1);
                return Err(RedeemError::NoChannel);
            }
        }
        // Room was checked above and ids are fresh: this cannot refuse.
        pending
            .insert(id, deadline, waiter)
            .map_err(|_| RedeemError::PendingFull)?;
        Ok(id)
    }

    /// Fails every overdue waiter with a timeout.
    fn expire(&self, now: Instant) {
        let overdue: Vec<Rc<Waiter>> = self
            .pending
            .borrow_mut()
            .expire(now)
            .map(|(_, waiter)| waiter)
            .collect();
        for waiter in overdue {
            waiter.complete(Err(RedeemError::ControlPlaneTimeout(self.deadline)));
        }
    }

    fn send(&self, message: &ToControl) -> Result<(), SendError> {
        self.port.borrow_mut().try_send(RequestId(0), message)
    }

    /// Sends a report without waking a sleeping control plane: the next
    /// redemption's doorbell covers it, or the flush task within
    /// [`REPORT_WAKE_DELAY`]. A busy core thus rings once per connection
    /// instead of three times.
    fn send_deferred(self: &Rc<Self>, message: &ToControl) -> Result<(), SendError> {
        let owed = {
            let mut port = self.port.borrow_mut();
            port.try_send_deferred(RequestId(0), message)?;
            port.wake_owed()
        };
        if owed && !self.flush_scheduled.replace(true) {
            monoio::spawn(flush_wake(Rc::downgrade(self)));
        }
        Ok(())
    }

    fn count(&self, update: impl FnOnce(&mut ChannelRedeemerStats)) {
        let mut stats = self.stats.get();
        update(&mut stats);
        self.stats.set(stats);
    }

    /// Acts on one message from the control plane.
    fn dispatch(&self, envelope: Envelope<ToCore>) {
        match envelope.message {
            ToCore::Verdict(verdict) => self.verdict(envelope.request_id, verdict),
            ToCore::KillSession(KillSession { session }) => {
                let kill = self.kills.borrow().get(&session).cloned();
                match kill {
                    Some(kill) => {
                        kill.fire();
                        self.count(|s| s.kills += 1);
                    }
                    None => {
                        self.remember_early_kill(session);
                        self.count(|s| s.stray_kills += 1);
                    }
                }
            }
            ToCore::StatsRequest => self.answer_stats(envelope.request_id),
            ToCore::Heartbeat(_) => self.count(|s| s.ignored += 1),
            ToCore::FlowVerdict(verdict) => self.flow_verdict(envelope.request_id, verdict),
            ToCore::Listen(addr) => self.with_connector(|c| c.listen(addr)),
            ToCore::Unlisten(addr) => self.with_connector(|c| c.unlisten(addr)),
            ToCore::CloseFlows(iip) => self.with_connector(|c| c.close_flows(iip)),
        }
    }

    /// Hands a connector order to this core's connector; a core without
    /// the role counts it ignored.
    fn with_connector(&self, order: impl FnOnce(&Rc<Connector>)) {
        let connector = self.connector.borrow().clone();
        match connector {
            Some(connector) => order(&connector),
            None => self.count(|s| s.ignored += 1),
        }
    }

    fn flow_verdict(&self, id: RequestId, verdict: FlowVerdict) {
        let waiter = self.pending.borrow_mut().complete(id);
        match waiter {
            Some(waiter) if Rc::strong_count(&waiter) > 1 => {
                waiter.complete(Ok(Answer::Flow(verdict)));
            }
            _ => {
                self.count(|s| s.stray_verdicts += 1);
                if let FlowVerdict::Allow { flow } = verdict {
                    // Nobody parked the flow: let the control plane forget it.
                    let _ = self.send(&ToControl::FlowClosed(FlowClosed {
                        flow,
                        bytes_to_client: 0,
                        bytes_to_server: 0,
                        duration_ms: 0,
                    }));
                }
            }
        }
    }

    /// Answers a stats request with the core's counters and this
    /// redeemer's ([`crate::answer_pairs`]), in as many reports as they
    /// need, all under the request's id. A full ring drops the rest of the
    /// answer: the control plane then reports this core stale.
    fn answer_stats(&self, id: RequestId) {
        let stats = crate::counters::current_snapshot()
            .unwrap_or_else(|| crate::counters::CoreCounters::default().snapshot(self.core));
        let pairs = crate::counters::answer_pairs(&stats, &self.stats.get());
        for chunk in pairs.chunks(MAX_COUNTERS) {
            // A chunk never exceeds MAX_COUNTERS: cannot be refused.
            let Ok(report) = StatsReport::from_counters(chunk) else {
                return;
            };
            let sent = self
                .port
                .borrow_mut()
                .try_send(id, &ToControl::StatsReport(report));
            if sent.is_err() {
                self.count(|s| s.channel_errors += 1);
                warn!(core = self.core.0, "stats_report_dropped");
                return;
            }
        }
    }

    /// Keeps a kill order for a session not relaying (yet) for the verdict
    /// deadline, at most [`EARLY_KILLS`] of them (the oldest go first).
    fn remember_early_kill(&self, session: SessionId) {
        let now = Instant::now();
        let mut early = self.early_kills.borrow_mut();
        while early
            .front()
            .is_some_and(|&(_, at)| now.saturating_duration_since(at) > self.deadline)
        {
            early.pop_front();
        }
        if early.len() == EARLY_KILLS {
            early.pop_front();
        }
        early.push_back((session, now));
    }

    /// Whether a kill order for `session` came before it relayed (and is
    /// not older than the verdict deadline); consumes it.
    fn take_early_kill(&self, session: SessionId) -> bool {
        let now = Instant::now();
        let mut early = self.early_kills.borrow_mut();
        let Some(index) = early.iter().position(|&(id, _)| id == session) else {
            return false;
        };
        let fresh = early
            .remove(index)
            .is_some_and(|(_, at)| now.saturating_duration_since(at) <= self.deadline);
        if fresh {
            self.count(|s| s.stray_kills = s.stray_kills.saturating_sub(1));
        }
        fresh
    }

    fn verdict(&self, id: RequestId, verdict: Verdict) {
        let waiter = self.pending.borrow_mut().complete(id);
        let answer = match verdict {
            Verdict::Allow {
                worker,
                session,
                reconnect_ticket,
                worker_ticket,
            } => Ok(Answer::Redeemed(
                Redeemed::new(worker, session).with_tickets(reconnect_ticket, worker_ticket),
            )),
            Verdict::Deny { reason } => Err(RedeemError::Denied(reason)),
        };
        match waiter {
            // The table's reference is the only one left: the handler gave up.
            Some(waiter) if Rc::strong_count(&waiter) > 1 => waiter.complete(answer),
            _ => {
                self.count(|s| s.stray_verdicts += 1);
                if let Ok(Answer::Redeemed(redeemed)) = answer {
                    // Nobody will use this session: let the control plane
                    // release it (best effort).
                    let closed = ToControl::SessionClosed(SessionClosed {
                        session: redeemed.session(),
                        bytes_up: 0,
                        bytes_down: 0,
                        duration_ms: 0,
                    });
                    let _ = self.send(&closed);
                }
            }
        }
    }
}

/// The receive task of one core: drains the answer ring, sleeps on the
/// doorbell. Ends when the redeemer is gone.
async fn receive(shared: Weak<Shared>, doorbell: UnixStream) {
    loop {
        let Some(strong) = shared.upgrade() else {
            return;
        };
        strong.announce_if_new();
        let mut handled = 0;
        let mut failed = false;
        loop {
            let received = strong.port.borrow_mut().try_recv();
            match received {
                Ok(Some(envelope)) => {
                    strong.dispatch(envelope);
                    handled += 1;
                    if handled == RECEIVE_BATCH {
                        break;
                    }
                }
                Ok(None) => break,
                // Skipped and counted by the port; the next slot may be fine.
                Err(RecvError::Message(_)) => strong.count(|s| s.channel_errors += 1),
                Err(RecvError::Corrupt | RecvError::Doorbell(_)) => {
                    strong.count(|s| s.channel_errors += 1);
                    failed = true;
                    break;
                }
            }
        }
        if failed {
            warn!(core = strong.core.0, "channel_receive_failed");
            drop(strong);
            monoio::time::sleep(FAILURE_BACKOFF).await;
            continue;
        }
        if handled == RECEIVE_BATCH {
            drop(strong);
            crate::relay::yield_now().await;
            continue;
        }
        let decision = strong.port.borrow_mut().prepare_wait();
        if decision == WaitDecision::Receive {
            continue;
        }
        // Hold no strong reference while asleep: the redeemer may go.
        drop(strong);
        let woke = doorbell.readable(false).await;
        let Some(strong) = shared.upgrade() else {
            return;
        };
        let reset = strong.port.borrow_mut().after_wake();
        if woke.is_err() || reset.is_err() {
            strong.count(|s| s.channel_errors += 1);
            warn!(core = strong.core.0, "channel_doorbell_failed");
            drop(strong);
            monoio::time::sleep(FAILURE_BACKOFF).await;
        }
    }
}

/// Rings the control plane after [`REPORT_WAKE_DELAY`] if reports sent
/// since are still waiting for a sleeping control plane (no redemption
/// rang meanwhile).
async fn flush_wake(shared: Weak<Shared>) {
    monoio::time::sleep(REPORT_WAKE_DELAY).await;
    let Some(strong) = shared.upgrade() else {
        return;
    };
    strong.flush_scheduled.set(false);
    strong.port.borrow_mut().flush_wake();
}

/// Sends `SessionOpened` again for each of `sessions` still live, in
/// order, retrying while the request ring is full (for at most
/// [`ANNOUNCE_LIMIT`]). A session that closes meanwhile is skipped, so the
/// control plane never sees an open after its close.
async fn announce(shared: Weak<Shared>, sessions: Vec<SessionId>) {
    let give_up = Instant::now() + ANNOUNCE_LIMIT;
    let mut next = 0;
    while let Some(&session) = sessions.get(next) {
        let Some(strong) = shared.upgrade() else {
            return;
        };
        let opened = strong.live.borrow().get(&session).copied();
        let Some(opened) = opened else {
            next += 1;
            continue;
        };
        match strong.send(&ToControl::SessionOpened(opened)) {
            Ok(()) => {
                strong.count(|s| s.reannounced += 1);
                next += 1;
            }
            Err(SendError::Full) if Instant::now() < give_up => {
                drop(strong);
                monoio::time::sleep(ANNOUNCE_RETRY).await;
            }
            Err(_) => {
                let left = (sessions.len() - next) as u64;
                strong.count(|s| s.reannounce_dropped += left);
                warn!(
                    core = strong.core.0,
                    dropped = left,
                    "sessions_reannounce_dropped"
                );
                return;
            }
        }
    }
}

/// What a request is answered with: a redemption's grant or a flow's
/// verdict.
#[derive(Debug)]
#[expect(
    clippy::large_enum_variant,
    reason = "inline tickets: the grant is moved once, never boxed"
)]
enum Answer {
    Redeemed(Redeemed),
    Flow(FlowVerdict),
}

/// Where the receive task leaves a verdict for a waiting request.
#[derive(Default)]
struct Waiter {
    answer: Cell<Option<Result<Answer, RedeemError>>>,
    waker: Cell<Option<Waker>>,
}

impl std::fmt::Debug for Waiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Waiter").finish_non_exhaustive()
    }
}

impl Waiter {
    fn complete(&self, answer: Result<Answer, RedeemError>) {
        self.answer.set(Some(answer));
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }
}

/// Completes with the waiter's answer.
struct WaitAnswer<'a>(&'a Waiter);

impl Future for WaitAnswer<'_> {
    type Output = Result<Answer, RedeemError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.0.answer.take() {
            Some(answer) => Poll::Ready(answer),
            None => {
                self.0.waker.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        }
    }
}

/// A relaying session's kill switch, fired by a `KillSession` order.
#[derive(Default)]
struct Kill {
    fired: Cell<bool>,
    waker: Cell<Option<Waker>>,
}

impl std::fmt::Debug for Kill {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kill")
            .field("fired", &self.fired.get())
            .finish_non_exhaustive()
    }
}

impl Kill {
    fn fire(&self) {
        self.fired.set(true);
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }
}

/// The future of [`ChannelRedeemer::until_killed`]; unregisters on drop.
struct KillWatch<'a> {
    shared: Option<&'a Rc<Shared>>,
    session: SessionId,
    kill: Rc<Kill>,
}

impl Future for KillWatch<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.kill.fired.get() {
            return Poll::Ready(());
        }
        self.kill.waker.set(Some(cx.waker().clone()));
        Poll::Pending
    }
}

impl Drop for KillWatch<'_> {
    fn drop(&mut self) {
        let Some(shared) = self.shared else { return };
        let mut kills = shared.kills.borrow_mut();
        // A newer watch of the same session id keeps its entry.
        if kills
            .get(&self.session)
            .is_some_and(|kill| Rc::ptr_eq(kill, &self.kill))
        {
            kills.remove(&self.session);
        }
    }
}

#[cfg(test)]
mod tests;
