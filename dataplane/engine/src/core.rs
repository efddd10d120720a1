//! One data-plane core: a thread, its monoio runtime, its listeners, its
//! sessions.
//!
//! ```text
//!   start ──> Serving ──(Shutdown)──> Draining ──(no session left)──> exit
//!                                         │
//!                                   (drain deadline)
//!                                         v
//!                                      Cutting ──(sessions dropped)──> exit
//! ```
//!
//! Serving: each listener's accept loop admits connections (or refuses
//! them over the limits) and spawns one task per session. Draining: the
//! accept loops are cancelled and the listeners closed; open sessions run
//! on. Cutting: the drain latch fires and every session task drops its
//! handler future, which closes its sockets. Nothing here is shared with
//! other cores but each core's count of open sessions (`balance`); the
//! cross-thread traffic is the command channel and, when a core hands a
//! just-accepted connection to a less loaded one, that core's inbox.

use std::cell::{Cell, RefCell};
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use gatehouse_channel::{ClientAddr, CoreId};
use monoio::io::{CancelHandle, Canceller};
use monoio::net::{TcpListener, TcpStream};
use monoio::{IoUringDriver, LegacyDriver, RuntimeBuilder};
use tracing::{debug, info, warn};

use crate::balance::{self, Balance, Handoff};
use crate::config::{Driver, EngineConfig, RelayMode};
use crate::counters::{CoreCounters, CoreStats, Refusal, bump};
use crate::handler::{Conn, Handler, HandlerFactory, ListenerId};
use crate::latch::Latch;
use crate::pool::BufPool;
use crate::relay::{PipePool, RelayPath};
use crate::session::{ConnId, Fault, Session, SessionEnd};

/// Idle relay buffers a core keeps (16 KiB each).
const KEEP_BUFFERS: usize = 1_024;
/// Idle pipes a core keeps (two descriptors each, no memory when empty,
/// but their size counts against the per-user pipe page budget).
const KEEP_PIPES: usize = 64;
/// How often a draining core checks whether its sessions are gone.
const DRAIN_POLL: Duration = Duration::from_millis(10);
/// How long cut sessions get to unwind before the core exits anyway.
const CUT_GRACE: Duration = Duration::from_secs(1);
/// Pause after an accept failure caused by resource exhaustion.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(20);

/// A request from the engine handle to one core.
#[derive(Debug)]
pub(crate) enum Command {
    /// Reply with a snapshot of the counters.
    Stats(flume::Sender<CoreStats>),
    /// Stop accepting, reply once the listeners are closed, drain for at
    /// most `drain` (a later, shorter drain wins), then exit.
    Shutdown {
        drain: Duration,
        ack: Option<flume::Sender<CoreId>>,
    },
}

/// Everything a core thread starts from.
pub(crate) struct CoreSetup<F> {
    pub(crate) id: CoreId,
    pub(crate) driver: Driver,
    pub(crate) config: EngineConfig,
    pub(crate) cpu: Option<usize>,
    pub(crate) listeners: Vec<(std::net::TcpListener, SocketAddr)>,
    pub(crate) factory: Arc<F>,
    pub(crate) commands: flume::Receiver<Command>,
    pub(crate) ready: mpsc::Sender<(CoreId, io::Result<()>)>,
    /// Accept balancing with the other cores; `None`: keep every
    /// connection (one core, or `balance_accepts` off).
    pub(crate) balance: Option<Balance>,
}

/// The state of one core, shared by its tasks through an `Rc`.
#[derive(Debug)]
pub(crate) struct CoreState {
    pub(crate) id: CoreId,
    pub(crate) counters: CoreCounters,
    pub(crate) bufs: BufPool,
    pub(crate) pipes: PipePool,
    pub(crate) relay_mode: RelayMode,
    /// `copy_hot_ms`: the auto relay's copy-phase window.
    pub(crate) copy_hot: Duration,
    idle_timeout: Duration,
    max_connections: u64,
    max_pending: u64,
    next_conn: Cell<u64>,
    /// Fired by the first Shutdown: stop accepting.
    stop: Latch,
    /// Fired at the drain deadline: end every session now.
    cut: Latch,
    drain_until: Cell<Option<Instant>>,
    listeners_closed: Cell<bool>,
    acks: RefCell<Vec<flume::Sender<CoreId>>>,
    /// The shared session counts and the other cores' inboxes.
    balance: Option<balance::Peers>,
}

impl CoreState {
    fn new(id: CoreId, config: &EngineConfig, balance: Option<balance::Peers>) -> CoreState {
        CoreState {
            id,
            counters: CoreCounters::default(),
            bufs: BufPool::new(KEEP_BUFFERS),
            pipes: PipePool::new(KEEP_PIPES, config.pipe_size),
            relay_mode: config.relay,
            copy_hot: Duration::from_millis(u64::from(config.copy_hot_ms)),
            idle_timeout: config.idle_timeout,
            max_connections: u64::from(config.max_connections_per_core),
            max_pending: u64::from(config.max_pending_handshakes_per_core),
            next_conn: Cell::new(0),
            stop: Latch::default(),
            cut: Latch::default(),
            drain_until: Cell::new(None),
            listeners_closed: Cell::new(false),
            acks: RefCell::new(Vec::new()),
            balance,
        }
    }

    /// One more session of this core counts in the shared loads.
    fn owns_one_more(&self) {
        if let Some(peers) = &self.balance {
            peers.loads.add(usize::from(self.id.0));
        }
    }

    /// A session of this core that counted in the shared loads is gone.
    fn owns_one_less(&self) {
        if let Some(peers) = &self.balance {
            peers.loads.remove(usize::from(self.id.0));
        }
    }

    /// A new session for a connection this core's connector accepted
    /// outside the listeners (a rendezvous pairing): counted like any other.
    pub(crate) fn open_session(self: &Rc<Self>, peer: SocketAddr) -> Session {
        let conn = ConnId(self.next_conn.get());
        self.next_conn.set(conn.0.wrapping_add(1));
        bump(&self.counters.accepted, 1);
        Session::open(self.clone(), conn, ClientAddr(peer), CONNECTOR_LISTENER)
    }

    /// Completes at the drain deadline (every session must end now).
    pub(crate) async fn until_cut(&self) {
        self.cut.wait().await;
    }
}

/// The listener id of sessions the connector opens (not an engine
/// listener).
pub(crate) const CONNECTOR_LISTENER: ListenerId = ListenerId(usize::MAX);

thread_local! {
    /// The core running on this thread, for the connector (which builds its
    /// sessions outside the accept loops).
    static CURRENT: RefCell<Option<std::rc::Weak<CoreState>>> = const { RefCell::new(None) };
}

/// The core running on this thread, if any.
pub(crate) fn current() -> Option<Rc<CoreState>> {
    CURRENT.with(|slot| slot.borrow().as_ref().and_then(std::rc::Weak::upgrade))
}

/// The body of a core thread: builds the runtime for `setup.driver` and
/// runs the core until it has drained. Returns the final counters.
pub(crate) fn run<F: HandlerFactory>(setup: CoreSetup<F>) -> CoreStats {
    let id = setup.id;
    if let Some(cpu) = setup.cpu {
        match monoio::utils::bind_to_cpu_set([cpu]) {
            Ok(()) => debug!(core = id.0, cpu, "core_pinned"),
            Err(e) => warn!(core = id.0, cpu, error = %e, "core_pin_failed"),
        }
    }
    let ready = setup.ready.clone();
    let entries = setup.config.ring_entries;
    let ran = match setup.driver {
        Driver::Legacy => RuntimeBuilder::<LegacyDriver>::new()
            .enable_timer()
            .build()
            .map(|mut rt| rt.block_on(core_main(setup))),
        Driver::IoUring | Driver::Auto => RuntimeBuilder::<IoUringDriver>::new()
            .with_entries(entries)
            .enable_timer()
            .build()
            .map(|mut rt| rt.block_on(core_main(setup))),
    };
    match ran {
        Ok(stats) => stats,
        Err(e) => {
            let _ = ready.send((id, Err(e)));
            CoreCounters::default().snapshot(id)
        }
    }
}

async fn core_main<F: HandlerFactory>(setup: CoreSetup<F>) -> CoreStats {
    let CoreSetup {
        id,
        config,
        listeners,
        factory,
        commands,
        ready,
        balance,
        ..
    } = setup;
    let (shared, inbox) = match balance {
        Some(Balance { peers, inbox }) => (Some(peers), Some(inbox)),
        None => (None, None),
    };
    let state = Rc::new(CoreState::new(id, &config, shared));
    CURRENT.with(|slot| *slot.borrow_mut() = Some(Rc::downgrade(&state)));
    let counters = Rc::downgrade(&state);
    crate::counters::install_snapshot(Box::new(move || {
        counters
            .upgrade()
            .map(|state| state.counters.snapshot(state.id))
    }));
    let mut bound = Vec::with_capacity(listeners.len());
    for (std_listener, local) in listeners {
        match TcpListener::from_std(std_listener) {
            Ok(listener) => bound.push((listener, local)),
            Err(e) => {
                let _ = ready.send((id, Err(e)));
                return state.counters.snapshot(id);
            }
        }
    }
    let handler = Rc::new(factory.build(id));
    let canceller = Canceller::new();
    let accepts: Vec<_> = bound
        .into_iter()
        .enumerate()
        .map(|(index, (listener, local))| {
            monoio::spawn(accept_loop(
                state.clone(),
                handler.clone(),
                listener,
                ListenerId(index),
                local,
                canceller.handle(),
            ))
        })
        .collect();
    monoio::spawn(control_loop(state.clone(), commands));
    if let Some(inbox) = inbox {
        monoio::spawn(adopt_loop(state.clone(), handler.clone(), inbox));
    }
    let _ = ready.send((id, Ok(())));
    debug!(core = id.0, "core_serving");

    state.stop.wait().await;
    let _ = canceller.cancel();
    for accept in accepts {
        accept.await;
    }
    state.listeners_closed.set(true);
    for ack in state.acks.take() {
        let _ = ack.send(id);
    }
    drain(&state).await;
    debug!(core = id.0, "core_stopped");
    state.counters.snapshot(id)
}

async fn control_loop(state: Rc<CoreState>, commands: flume::Receiver<Command>) {
    loop {
        let command = match commands.recv_async().await {
            Ok(command) => command,
            // The handle is gone: nobody can stop us later, so stop now.
            Err(_) => Command::Shutdown {
                drain: Duration::ZERO,
                ack: None,
            },
        };
        match command {
            Command::Stats(reply) => {
                let _ = reply.send(state.counters.snapshot(state.id));
            }
            Command::Shutdown { drain, ack } => {
                let until = Instant::now() + drain;
                let earliest = state.drain_until.get().map_or(until, |t| t.min(until));
                state.drain_until.set(Some(earliest));
                if let Some(ack) = ack {
                    if state.listeners_closed.get() {
                        let _ = ack.send(state.id);
                    } else {
                        state.acks.borrow_mut().push(ack);
                    }
                }
                if !state.stop.is_fired() {
                    info!(
                        core = state.id.0,
                        drain_ms = drain.as_millis() as u64,
                        "core_draining"
                    );
                    state.stop.fire();
                }
                if commands.is_disconnected() && commands.is_empty() {
                    return;
                }
            }
        }
    }
}

/// Waits for the sessions to end, cuts them at the deadline.
async fn drain(state: &CoreState) {
    loop {
        if state.counters.active.get() == 0 {
            return;
        }
        let now = Instant::now();
        let until = state.drain_until.get().unwrap_or(now);
        if now >= until {
            break;
        }
        monoio::time::sleep(DRAIN_POLL.min(until - now)).await;
    }
    info!(
        core = state.id.0,
        sessions = state.counters.active.get(),
        "drain_deadline_cut"
    );
    state.cut.fire();
    let grace = Instant::now() + CUT_GRACE;
    while state.counters.active.get() > 0 && Instant::now() < grace {
        monoio::time::sleep(DRAIN_POLL).await;
    }
    if state.counters.active.get() > 0 {
        warn!(
            core = state.id.0,
            sessions = state.counters.active.get(),
            "sessions_outlived_cut"
        );
    }
}

async fn accept_loop<H: Handler>(
    state: Rc<CoreState>,
    handler: Rc<H>,
    listener: TcpListener,
    listener_id: ListenerId,
    local: SocketAddr,
    cancel: CancelHandle,
) {
    loop {
        let accepted = listener.cancelable_accept(cancel.clone()).await;
        if state.stop.is_fired() {
            // Cancelled, or accepted in the same instant: either way, no new
            // sessions once draining (dropping the stream closes it).
            break;
        }
        match accepted {
            Ok((stream, peer)) => {
                let Some(stream) = hand_off(&state, stream, peer, listener_id, local) else {
                    continue;
                };
                state.owns_one_more();
                admit(&state, &handler, stream, peer, listener_id, local);
            }
            Err(e) => {
                bump(&state.counters.accept_errors, 1);
                if is_resource_exhaustion(&e) {
                    warn!(core = state.id.0, error = %e, "accept_failed");
                    monoio::time::sleep(ACCEPT_BACKOFF).await;
                } else {
                    debug!(core = state.id.0, error = %e, "accept_failed");
                }
            }
        }
    }
}

/// Gives a connection this core just accepted to the least loaded core
/// when that core owns fewer sessions (`None`: handed off); otherwise, or
/// when the hand-off fails, gives it back to be served here.
fn hand_off(
    state: &CoreState,
    stream: TcpStream,
    peer: SocketAddr,
    listener: ListenerId,
    local: SocketAddr,
) -> Option<TcpStream> {
    let Some(peers) = &state.balance else {
        return Some(stream);
    };
    let loads = &peers.loads;
    let Some(target) = loads.pick(usize::from(state.id.0)) else {
        return Some(stream);
    };
    let Some(inbox) = peers.inboxes.get(target) else {
        return Some(stream);
    };
    loads.add(target);
    let handoff = Handoff {
        stream: balance::detach(stream),
        peer,
        listener,
        local,
    };
    match inbox.send(handoff) {
        Ok(()) => {
            bump(&state.counters.handed_off, 1);
            debug!(core = state.id.0, to = target, peer = %peer, "handed_off");
            None
        }
        Err(flume::SendError(handoff)) => {
            // The target core is gone (shutting down): serve it here.
            loads.remove(target);
            match TcpStream::from_std(handoff.stream) {
                Ok(stream) => Some(stream),
                Err(e) => {
                    warn!(core = state.id.0, peer = %peer, error = %e, "adopt_failed");
                    None
                }
            }
        }
    }
}

/// Serves the connections other cores hand to this one.
async fn adopt_loop<H: Handler>(
    state: Rc<CoreState>,
    handler: Rc<H>,
    inbox: flume::Receiver<Handoff>,
) {
    while let Ok(handoff) = inbox.recv_async().await {
        let Handoff {
            stream,
            peer,
            listener,
            local,
        } = handoff;
        if state.stop.is_fired() {
            // Draining: no new sessions (dropping the stream closes it).
            state.owns_one_less();
            continue;
        }
        match TcpStream::from_std(stream) {
            Ok(stream) => {
                bump(&state.counters.adopted, 1);
                admit(&state, &handler, stream, peer, listener, local);
            }
            Err(e) => {
                state.owns_one_less();
                warn!(core = state.id.0, peer = %peer, error = %e, "adopt_failed");
            }
        }
    }
}

fn is_resource_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// Admits an accepted (or adopted) connection, already counted in the
/// shared loads, or closes it at once when the core is at one of its
/// limits (never queued).
fn admit<H: Handler>(
    state: &Rc<CoreState>,
    handler: &Rc<H>,
    stream: TcpStream,
    peer: SocketAddr,
    listener: ListenerId,
    local: SocketAddr,
) {
    let counters = &state.counters;
    let refusal = if counters.active.get() >= state.max_connections {
        Some(Refusal::MaxConnections)
    } else if counters.pending.get() >= state.max_pending {
        Some(Refusal::MaxPendingHandshakes)
    } else {
        None
    };
    if let Some(reason) = refusal {
        counters.refused(reason);
        // Debug level: a flood of refusals must not become a flood of logs;
        // the counters carry the numbers.
        debug!(
            core = state.id.0,
            peer = %peer,
            reason = reason.as_str(),
            fault = Fault::Internal.as_str(),
            "deny"
        );
        drop(stream);
        state.owns_one_less();
        return;
    }
    let conn = ConnId(state.next_conn.get());
    state.next_conn.set(conn.0.wrapping_add(1));
    bump(&counters.accepted, 1);
    debug!(core = state.id.0, conn = conn.0, peer = %peer, "accept");
    let session = Session::open(state.clone(), conn, ClientAddr(peer), listener);
    let conn = Conn {
        stream,
        peer: ClientAddr(peer),
        listener,
        local,
    };
    monoio::spawn(run_session(state.clone(), handler.clone(), conn, session));
}

/// Runs one session under the idle watchdog and the drain cut, then logs
/// its one `session_closed` event.
async fn run_session<H: Handler>(
    state: Rc<CoreState>,
    handler: Rc<H>,
    conn: Conn,
    session: Session,
) {
    let end = monoio::select! {
        end = handler.handle(conn, &session) => end,
        () = idle_watch(&session, state.idle_timeout) => SessionEnd::IdleTimeout,
        () = state.cut.wait() => SessionEnd::DrainDeadline,
    };
    match end {
        SessionEnd::IdleTimeout => bump(&state.counters.idle_timeouts, 1),
        SessionEnd::DrainDeadline => bump(&state.counters.drain_cuts, 1),
        SessionEnd::Killed => bump(&state.counters.kills, 1),
        SessionEnd::Refused { reason, .. } => state.counters.handler_refused(reason),
        _ => {}
    }
    let path = match end {
        SessionEnd::Relayed(outcome) => Some(match outcome.path {
            RelayPath::Splice => "splice",
            RelayPath::Copy => "copy",
        }),
        _ => None,
    };
    info!(
        core = state.id.0,
        conn = session.conn().0,
        peer = %session.peer().0,
        proto = session.proto(),
        reason = end.reason(),
        fault = end.fault().as_str(),
        error = end.error().map(tracing::field::display),
        path,
        bytes_up = session.bytes_up(),
        bytes_down = session.bytes_down(),
        duration_ms = session.started().elapsed().as_millis() as u64,
        "session_closed"
    );
    state.owns_one_less();
}

/// Completes once no byte has moved either way for `idle`.
///
/// Reads the session's counters every `idle / 4` instead of re-arming a
/// timer per chunk, so relaying costs it nothing; the session ends between
/// `idle` and `1.25 × idle` after its last byte.
async fn idle_watch(session: &Session, idle: Duration) {
    let tick = (idle / 4).max(Duration::from_millis(5));
    let total = || session.bytes_up().wrapping_add(session.bytes_down());
    let mut seen = total();
    let mut quiet_since = Instant::now();
    loop {
        monoio::time::sleep(tick).await;
        let now = Instant::now();
        let moved = total();
        if moved != seen {
            seen = moved;
            quiet_since = now;
        } else if now.duration_since(quiet_since) >= idle {
            return;
        }
    }
}
