//! The control plane's end of the channel: answers each core's ticket
//! redemptions with a [`Verdict`] and records the sessions the cores
//! report (DESIGN.md §2A step 5, PROTOCOLS.md §3).
//!
//! One task per core ([`RedeemService::serve`]) owns that core's
//! [`ControlPort`]. For each `RedeemTicket` it spawns the decision
//! ([`RedeemService::decide`]: redeem at the STA the ticket names, check the
//! ticket kind, resolve the worker), so a slow remote STA holds up nothing
//! else; the verdict comes back to the port task, which alone sends. A
//! request is taken off the ring only while the answer ring has room for
//! every answer still owed: a slow core backs up its own request ring, and
//! a verdict is never dropped. Sends refused as full are retried every
//! [`FULL_RETRY`].
//!
//! A SOCKS or CGP launch needs a launch (single-use) ticket and a CGP
//! reconnect needs a reconnect (refreshable) ticket: [`crate::sta`]
//! redeems both kinds, and a reconnect ticket presented as a launch would
//! otherwise work any number of times.
//!
//! CGP session reliability ([`crate::reconnect`]): a CGP first connect gets
//! a reconnect ticket issued by the gateway's own STA in its verdict (the
//! core hands it to the client); a resume presents it, is matched to its
//! session in the [`ReconnectTable`], the STA ticket behind it is redeemed
//! and refreshed (the presented one is spent), and the verdict names the
//! same worker with the worker's own reconnect ticket and the client's new
//! one. [`keep_reconnects`] refreshes the tickets while sessions live and
//! revokes them when a client stays away past the window.
//!
//! Server-to-client: a port task also relays the connector orders of the
//! pools its connector owns (the gateway's own cores, or a `gatehouse
//! connector` segment's, see [`RedeemService::for_connector`] and
//! `orders`) and answers flow requests as that connector's.
//!
//! Logs one event per decision: `ticket_redeemed` (`core`, `peer`,
//! `proto`, `session`, `worker`) or `deny` (`core`, `peer`, `proto`,
//! `reason`, `fault`, `error`); and, at debug (the core logs its own at
//! info), `session_opened` and `session_closed` with the byte counts.
//! Tickets appear masked only.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, SystemTime};

use gatehouse_channel::{
    AsyncPort, ControlPort, ControlSide, CoreId, DenyReason, Envelope, FlowDenyReason, FlowId,
    FlowVerdict, MonotonicMillis, RecvError, RedeemKind, RedeemTicket, RequestId, SendError,
    SessionId, TicketBytes, ToControl, ToCore, Verdict, WorkerAddr,
};
use gatehouse_engine::Fault;
use gatehouse_wire::ticket::StaTicket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::reconnect::{DEFAULT_RECONNECT_WINDOW, Due, ReconnectTable};
use crate::s2c::service::{ServerToClient, flow_of};
use crate::sessions::{SessionIds, SessionRecord, SessionTable};
use crate::sta::http::{RouteError, StaRouter};
use crate::sta::{self, CgpAddress, Issued, StaError, TicketData, TicketKind};

/// How long a worker's host name may take to resolve by default.
pub const DEFAULT_RESOLVE_TIMEOUT: Duration = Duration::from_secs(2);

/// How often the port task retries when the answer ring is full.
pub const FULL_RETRY: Duration = Duration::from_millis(1);

/// How often [`heartbeat`] records that the control plane is alive.
pub const HEARTBEAT_PERIOD: Duration = Duration::from_millis(100);

/// Resolves a worker's host name. The control plane uses
/// [`SystemResolver`]; tests inject their own.
pub trait Resolve: Send + Sync + 'static {
    /// Every address of `host` with `port`. An empty list is a failure.
    fn resolve(
        &self,
        host: &str,
        port: u16,
    ) -> impl Future<Output = io::Result<Vec<SocketAddr>>> + Send;
}

/// The system resolver (`getaddrinfo` on tokio's blocking pool).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    async fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        Ok(tokio::net::lookup_host((host, port)).await?.collect())
    }
}

/// Why a redemption was refused: the reason the core answers with, the
/// log's `reason` label, who is at fault, and the underlying error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// What the core is told (it picks the protocol reply code from it).
    pub reason: DenyReason,
    /// The `reason` field of the `deny` event (snake_case).
    pub label: &'static str,
    /// The `fault` field.
    pub fault: Fault,
    /// The error behind it, for the log (never a ticket secret).
    pub error: Option<String>,
}

/// What an accepted redemption yields before a session id is assigned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The worker to connect, resolved.
    pub worker: SocketAddr,
    /// The kind of ticket that was redeemed.
    pub kind: TicketKind,
    /// The server-to-client flow a rendezvous ticket names (its data
    /// connection goes to a connector core's rendezvous listener).
    pub flow: Option<FlowId>,
}

/// Why a port task stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The doorbell could not be registered with tokio.
    #[error("cannot register the doorbell of core {core}")]
    Register {
        /// The core.
        core: CoreId,
        /// The system error.
        #[source]
        source: io::Error,
    },
    /// The request ring is corrupt or its doorbell failed.
    #[error("the channel of core {core} failed")]
    Recv {
        /// The core.
        core: CoreId,
        /// What failed.
        #[source]
        source: RecvError,
    },
    /// The answer ring is corrupt.
    #[error("the answer ring of core {core} is corrupt")]
    Send {
        /// The core.
        core: CoreId,
    },
}

/// Decides redemptions and tracks sessions for every core. Cheap to clone
/// (everything is shared).
#[derive(Debug)]
pub struct RedeemService<R = SystemResolver> {
    router: StaRouter,
    sessions: Arc<SessionTable>,
    ids: Arc<SessionIds>,
    reconnects: Arc<ReconnectTable>,
    resolver: Arc<R>,
    resolve_timeout: Duration,
    s2c: Option<ServerToClient>,
    /// The connector whose cores this service answers; `None`: the
    /// gateway's own (`server_to_client.connector_name`).
    connector: Option<ConnectorRole>,
}

impl<R> Clone for RedeemService<R> {
    fn clone(&self) -> Self {
        Self {
            router: self.router.clone(),
            sessions: self.sessions.clone(),
            ids: self.ids.clone(),
            reconnects: self.reconnects.clone(),
            resolver: self.resolver.clone(),
            resolve_timeout: self.resolve_timeout,
            s2c: self.s2c.clone(),
            connector: self.connector.clone(),
        }
    }
}

/// An allowed redemption with everything its verdict carries.
#[derive(Debug)]
struct Allowed {
    worker: SocketAddr,
    session: SessionId,
    reconnect_ticket: Option<TicketBytes>,
    worker_ticket: Option<TicketBytes>,
}

impl<R: Resolve> RedeemService<R> {
    /// A service redeeming through `router`, allocating ids from `ids`,
    /// recording into `sessions`, resolving worker names with `resolver`
    /// within `resolve_timeout`; CGP sessions stay resumable for
    /// [`DEFAULT_RECONNECT_WINDOW`] (see [`RedeemService::with_reconnects`]).
    pub fn new(
        router: StaRouter,
        sessions: Arc<SessionTable>,
        ids: Arc<SessionIds>,
        resolver: R,
        resolve_timeout: Duration,
    ) -> Self {
        Self {
            router,
            sessions,
            ids,
            reconnects: Arc::new(ReconnectTable::new(DEFAULT_RECONNECT_WINDOW)),
            resolver: Arc::new(resolver),
            resolve_timeout,
            s2c: None,
            connector: None,
        }
    }

    /// The same service answering connectors' flow requests with `s2c`
    /// (and relaying its listen orders to the cores).
    pub fn with_s2c(mut self, s2c: ServerToClient) -> Self {
        self.s2c = Some(s2c);
        self
    }

    /// The same service for the cores of a `gatehouse connector` process:
    /// flow requests are decided as `role.name`'s, and only the orders of
    /// the pools it owns are relayed, while `role.link` says it is linked
    /// (each link replays the current listen set).
    pub fn for_connector(mut self, role: ConnectorRole) -> Self {
        self.connector = Some(role);
        self
    }

    /// The name flow requests on this service's ports are decided with.
    fn connector_name(&self) -> Option<Arc<str>> {
        match (&self.connector, &self.s2c) {
            (Some(role), _) => Some(role.name.clone()),
            (None, Some(s2c)) => Some(Arc::from(s2c.connector_name())),
            (None, None) => None,
        }
    }

    /// The same service keeping resumable CGP sessions in `reconnects`.
    pub fn with_reconnects(mut self, reconnects: Arc<ReconnectTable>) -> Self {
        self.reconnects = reconnects;
        self
    }

    /// The resumable CGP sessions.
    pub fn reconnects(&self) -> &Arc<ReconnectTable> {
        &self.reconnects
    }

    /// The session table the service records into.
    pub fn sessions(&self) -> &Arc<SessionTable> {
        &self.sessions
    }

    /// Spawns [`RedeemService::serve`] for each port on the current tokio
    /// runtime; a task that stops logs why.
    pub fn spawn_all(&self, ports: Vec<ControlPort>) -> Vec<JoinHandle<()>> {
        ports
            .into_iter()
            .map(|port| {
                let service = self.clone();
                let core = port.core();
                tokio::spawn(async move {
                    if let Err(error) = service.serve(port).await {
                        tracing::error!(core = core.0, error = %error, "channel_task_stopped");
                    }
                })
            })
            .collect()
    }

    /// Serves one core's port until the ring fails (or the task is
    /// aborted): decisions for `RedeemTicket`, the session table for
    /// `SessionOpened`/`SessionClosed`. Must run on a tokio runtime with
    /// I/O and time enabled.
    ///
    /// Errors: [`ServeError`]: the doorbell cannot be registered, or a ring
    /// is corrupt. An undecodable message is logged and skipped.
    pub async fn serve(self, port: ControlPort) -> Result<(), ServeError> {
        let core = port.core();
        let mut port =
            AsyncPort::new(port).map_err(|source| ServeError::Register { core, source })?;
        // Scrapes send their stats requests through here (see `metrics`).
        let mut stats = crate::metrics::global().hub().register(core);
        let (answers_tx, mut answers_rx) = mpsc::unbounded_channel::<(RequestId, ToCore)>();
        let mut backlog: VecDeque<(RequestId, ToCore)> = VecDeque::new();
        // Verdicts being decided; each holds one slot of the answer ring.
        let mut deciding: u64 = 0;
        // Connector orders: first every address already leased, then each
        // change as it happens (see `orders`).
        let mut orders = match (&self.s2c, self.connector_name()) {
            (Some(s2c), Some(name)) => {
                let role = self
                    .connector
                    .clone()
                    .unwrap_or(ConnectorRole { name, link: None });
                let (orders, first) = Orders::start(s2c.clone(), role);
                backlog.extend(first.into_iter().map(|message| (RequestId(0), message)));
                Some(orders)
            }
            _ => None,
        };
        loop {
            while let Some((request_id, answer)) = backlog.front() {
                match port.try_send(*request_id, answer) {
                    Ok(()) => {
                        backlog.pop_front();
                    }
                    Err(SendError::Full) => break,
                    Err(SendError::Corrupt) => return Err(ServeError::Send { core }),
                }
            }
            let owed = deciding + backlog.len() as u64;
            let can_take = port.port().outbound_room() > owed;
            tokio::select! {
                biased;
                Some(answer) = answers_rx.recv() => {
                    deciding = deciding.saturating_sub(1);
                    backlog.push_back(answer);
                }
                Some(request) = stats.requests.recv() => {
                    let ring = port.port();
                    stats.record_depth(ring.inbound_backlog(), ring.outbound_backlog());
                    backlog.push_back(request);
                }
                received = port.recv(), if can_take => match received {
                    Ok(envelope) => match self.dispatch(core, envelope, &answers_tx) {
                        Dispatched::Done => {}
                        Dispatched::Deciding => deciding += 1,
                        Dispatched::Answer(request_id, answer) => {
                            backlog.push_back((request_id, answer));
                        }
                    },
                    Err(RecvError::Message(error)) => {
                        tracing::warn!(core = core.0, error = %error, "channel_message_refused");
                    }
                    Err(source) => return Err(ServeError::Recv { core, source }),
                },
                order = next_order(orders.as_mut()) => {
                    backlog.extend(order.into_iter().map(|message| (RequestId(0), message)));
                }
                () = tokio::time::sleep(FULL_RETRY), if !can_take || !backlog.is_empty() => {}
            }
        }
    }

    /// Redeems `request` and turns the outcome into the verdict for the
    /// core, allocating a session id on success (and, for CGP, the
    /// reconnect tickets). Logs `ticket_redeemed` or `deny`.
    pub async fn verdict(&self, core: CoreId, request: &RedeemTicket) -> Verdict {
        let peer = request.client.0;
        let proto = proto(request.kind);
        let ticket = masked(request);
        let outcome = match request.kind {
            RedeemKind::Socks | RedeemKind::Cgp => self.launch(request).await,
            RedeemKind::CgpReconnect => self.resume(request).await,
        };
        match outcome {
            Ok(allowed) => {
                crate::metrics::redeem_outcome(proto, "allowed");
                tracing::info!(
                    core = core.0,
                    peer = %peer,
                    proto,
                    ticket,
                    session = %allowed.session,
                    worker = %allowed.worker,
                    "ticket_redeemed"
                );
                Verdict::Allow {
                    worker: WorkerAddr(allowed.worker),
                    session: allowed.session,
                    reconnect_ticket: allowed.reconnect_ticket,
                    worker_ticket: allowed.worker_ticket,
                }
            }
            Err(refusal) => {
                crate::metrics::redeem_outcome(proto, refusal.label);
                tracing::info!(
                    core = core.0,
                    peer = %peer,
                    proto,
                    ticket,
                    reason = refusal.label,
                    fault = refusal.fault.as_str(),
                    error = refusal.error.as_deref().unwrap_or(""),
                    "deny"
                );
                Verdict::Deny {
                    reason: refusal.reason,
                }
            }
        }
    }

    /// A SOCKS launch or a CGP first connect: [`RedeemService::decide`],
    /// a session id, and for CGP a reconnect ticket from the gateway's own
    /// STA, recorded in the [`ReconnectTable`].
    async fn launch(&self, request: &RedeemTicket) -> Result<Allowed, Refusal> {
        let grant = self.decide(request).await?;
        let session = self.ids.allocate();
        let reconnect_ticket = match request.kind {
            RedeemKind::Cgp => Some(self.issue_reconnect(grant.worker, session)?),
            RedeemKind::Socks | RedeemKind::CgpReconnect => None,
        };
        // A server-to-client data connection: the core writes the
        // rendezvous preamble naming the flow to the connector first.
        let worker_ticket = match (request.kind, grant.flow) {
            (RedeemKind::Socks, Some(flow)) => {
                let preamble = gatehouse_wire::rendezvous::Preamble { flow: flow.0 }.encode();
                Some(TicketBytes::new(&preamble).map_err(|_| Refusal {
                    reason: DenyReason::Internal,
                    label: "preamble_too_long",
                    fault: Fault::Internal,
                    error: None,
                })?)
            }
            _ => None,
        };
        Ok(Allowed {
            worker: grant.worker,
            session,
            reconnect_ticket,
            worker_ticket,
        })
    }

    /// Issues the reconnect ticket of a new CGP session at the local STA and
    /// records the session.
    fn issue_reconnect(
        &self,
        worker: SocketAddr,
        session: SessionId,
    ) -> Result<TicketBytes, Refusal> {
        let mut data = TicketData::new(sta::WorkerAddr {
            host: worker.ip().to_string(),
            port: worker.port(),
        });
        data.cgp_address = Some(CgpAddress::SameHost {
            port: worker.port(),
        });
        data.values
            .insert("SessionId".to_owned(), session.to_string());
        let now = std::time::Instant::now();
        let issued = self
            .router
            .local()
            .lock()
            .issue(data, TicketKind::Refreshable, now)
            .map_err(|error| Refusal {
                reason: DenyReason::Internal,
                label: "reconnect_ticket_not_issued",
                fault: Fault::ControlPlane,
                error: Some(error.to_string()),
            })?;
        let text = issued.ticket.to_text();
        let bytes = ticket_bytes(&text)?;
        self.reconnects
            .begin(session, worker, text, issued.lifetime, now);
        Ok(bytes)
    }

    /// A CGP resume: the session whose client holds the presented ticket,
    /// its STA ticket redeemed and refreshed, the same worker.
    async fn resume(&self, request: &RedeemTicket) -> Result<Allowed, Refusal> {
        let presented = request.ticket.as_bytes();
        let Some(claimed) = self.reconnects.claim(presented) else {
            return Err(self.why_not_resumable(presented).await);
        };
        let checked = async {
            let redeemed = self
                .router
                .redeem(claimed.sta_ticket.as_bytes())
                .await
                .map_err(|error| refusal_of_route(&error))?;
            if redeemed.kind != TicketKind::Refreshable {
                return Err(refusal_of_route(&RouteError::Refused(
                    StaError::NotRefreshable,
                )));
            }
            self.router
                .refresh(claimed.sta_ticket.as_bytes())
                .await
                .map_err(|error| refusal_of_route(&error))
        };
        let issued: Issued = match checked.await {
            Ok(issued) => issued,
            Err(refusal) => {
                if matches!(
                    refusal.reason,
                    DenyReason::StaUnreachable | DenyReason::Internal
                ) {
                    self.reconnects.restore(claimed.key);
                } else {
                    self.reconnects.forget(claimed.key);
                }
                return Err(refusal);
            }
        };
        let Some(worker_ticket) = claimed.worker_ticket else {
            self.reconnects.restore(claimed.key);
            return Err(Refusal {
                reason: DenyReason::WorkerUnreachable,
                label: "no_worker_ticket",
                fault: Fault::Worker,
                error: Some("the worker's bind response carried no reconnect ticket".to_owned()),
            });
        };
        let text = issued.ticket.to_text();
        let reconnect_ticket = ticket_bytes(&text)?;
        let session = self.ids.allocate();
        let now = std::time::Instant::now();
        if !self
            .reconnects
            .resumed(claimed.key, session, text, issued.lifetime, now)
        {
            return Err(Refusal {
                reason: DenyReason::Expired,
                label: "reconnect_window_passed",
                fault: Fault::Client,
                error: None,
            });
        }
        Ok(Allowed {
            worker: claimed.worker,
            session,
            reconnect_ticket: Some(reconnect_ticket),
            worker_ticket: Some(worker_ticket),
        })
    }

    /// The refusal for a reconnect ticket no session holds: what its STA
    /// says about it (reused, expired, revoked, unknown, ...), or, for a
    /// ticket the STA still honours, that it is no session's.
    async fn why_not_resumable(&self, presented: &[u8]) -> Refusal {
        match self.router.redeem(presented).await {
            Err(error) => refusal_of_route(&error),
            Ok(redeemed) => Refusal {
                reason: DenyReason::UnknownTicket,
                label: match redeemed.kind {
                    TicketKind::SingleUse => "launch_ticket_as_reconnect",
                    TicketKind::Refreshable => "no_reconnect_session",
                },
                fault: Fault::Client,
                error: None,
            },
        }
    }

    /// The decision alone: redeem the ticket at the STA its `STA_ID` names,
    /// check its kind against how it was presented (SOCKS and CGP need a
    /// launch ticket, CGP reconnect a reconnect ticket), pick the address
    /// (ICA for SOCKS, CGP otherwise) and resolve it.
    ///
    /// Errors: a [`Refusal`] for every way it can fail.
    pub async fn decide(&self, request: &RedeemTicket) -> Result<Grant, Refusal> {
        let redeemed = self
            .router
            .redeem(request.ticket.as_bytes())
            .await
            .map_err(|error| refusal_of_route(&error))?;
        // Only tickets of the local STA may name a flow: a remote STA
        // must not pair its data connection with a parked server.
        let flow = match StaTicket::decode(request.ticket.as_bytes()) {
            Ok(ticket) if ticket.sta_id == self.router.local().lock().id() => {
                flow_of(&redeemed.data)
            }
            _ => None,
        };
        let (expected, target) = match request.kind {
            RedeemKind::Socks => (TicketKind::SingleUse, Some(redeemed.data.ica_address)),
            RedeemKind::Cgp => (TicketKind::SingleUse, redeemed.data.cgp_target()),
            RedeemKind::CgpReconnect => (TicketKind::Refreshable, redeemed.data.cgp_target()),
        };
        if redeemed.kind != expected {
            let label = match redeemed.kind {
                TicketKind::Refreshable => "reconnect_ticket_as_launch",
                TicketKind::SingleUse => "launch_ticket_as_reconnect",
            };
            return Err(Refusal {
                reason: DenyReason::UnknownTicket,
                label,
                fault: Fault::Client,
                error: None,
            });
        }
        let Some(target) = target else {
            return Err(Refusal {
                reason: DenyReason::WorkerUnreachable,
                label: "no_cgp_address",
                fault: Fault::ControlPlane,
                error: Some("the ticket carries no CGPAddress".to_owned()),
            });
        };
        let worker = self.resolve(&target).await?;
        Ok(Grant {
            worker,
            kind: redeemed.kind,
            flow,
        })
    }

    async fn resolve(&self, target: &sta::WorkerAddr) -> Result<SocketAddr, Refusal> {
        if let Ok(ip) = target.host.parse::<IpAddr>() {
            return Ok(SocketAddr::new(ip, target.port));
        }
        let unreachable = |label, error: String| Refusal {
            reason: DenyReason::WorkerUnreachable,
            label,
            fault: Fault::Worker,
            error: Some(error),
        };
        let lookup = self.resolver.resolve(&target.host, target.port);
        match tokio::time::timeout(self.resolve_timeout, lookup).await {
            Ok(Ok(addrs)) => addrs.into_iter().next().ok_or_else(|| {
                unreachable("worker_unresolved", format!("{target} has no address"))
            }),
            Ok(Err(error)) => Err(unreachable(
                "worker_unresolved",
                format!("cannot resolve {target}: {error}"),
            )),
            Err(_) => Err(unreachable(
                "worker_resolve_timeout",
                format!("resolving {target} took over {:?}", self.resolve_timeout),
            )),
        }
    }

    /// Acts on one message. A redemption is decided right here when it
    /// can be without waiting (the local STA: no task, no hop); one that
    /// waits (a remote STA, a name to resolve) goes on in its own task,
    /// which sends its verdict to `answers`.
    fn dispatch(
        &self,
        core: CoreId,
        envelope: Envelope<ToControl>,
        answers: &mpsc::UnboundedSender<(RequestId, ToCore)>,
    ) -> Dispatched {
        let request_id = envelope.request_id;
        match envelope.message {
            ToControl::RedeemTicket(request) => {
                let service = self.clone();
                let mut deciding = Box::pin(async move { service.verdict(core, &request).await });
                // A first poll with a waker that does nothing: whatever the
                // future registered is registered again by the task's own
                // first poll below.
                let mut cx = Context::from_waker(Waker::noop());
                if let Poll::Ready(verdict) = deciding.as_mut().poll(&mut cx) {
                    return Dispatched::Answer(request_id, ToCore::Verdict(verdict));
                }
                let answers = answers.clone();
                tokio::spawn(async move {
                    let verdict = deciding.await;
                    // The port task is gone only when it is shutting down.
                    let _ = answers.send((request_id, ToCore::Verdict(verdict)));
                });
                Dispatched::Deciding
            }
            ToControl::SessionOpened(opened) => {
                self.reconnects.opened(opened.session, opened.worker_ticket);
                self.sessions.open(SessionRecord {
                    session: opened.session,
                    core,
                    client: opened.client,
                    worker: opened.worker,
                    opened_at: SystemTime::now(),
                    bytes_up: 0,
                    bytes_down: 0,
                    duration: Duration::ZERO,
                });
                tracing::debug!(
                    core = core.0,
                    session = %opened.session,
                    peer = %opened.client.0,
                    worker = %opened.worker.0,
                    "session_opened"
                );
                Dispatched::Done
            }
            ToControl::SessionClosed(closed) => {
                self.reconnects
                    .closed(closed.session, std::time::Instant::now());
                let duration = Duration::from_millis(closed.duration_ms);
                let record = self.sessions.close(
                    closed.session,
                    closed.bytes_up,
                    closed.bytes_down,
                    duration,
                );
                log_closed(core, closed.session, record.as_ref(), &closed);
                Dispatched::Done
            }
            ToControl::StatsReport(report) => {
                crate::metrics::global()
                    .hub()
                    .report(core, request_id, &report);
                Dispatched::Done
            }
            ToControl::Heartbeat(_) => Dispatched::Done,
            ToControl::FlowRequest(request) => {
                let verdict = match (&self.s2c, self.connector_name()) {
                    (Some(s2c), Some(connector)) => s2c.flow_request(
                        &connector,
                        &request,
                        self.router.local(),
                        SystemTime::now(),
                    ),
                    _ => FlowVerdict::Deny {
                        reason: FlowDenyReason::Internal,
                    },
                };
                // Decided at once (no I/O).
                Dispatched::Answer(request_id, ToCore::FlowVerdict(verdict))
            }
            ToControl::FlowClosed(closed) => {
                if let Some(s2c) = &self.s2c {
                    s2c.flow_closed(&closed);
                }
                Dispatched::Done
            }
        }
    }
}

/// The next connector orders as channel messages; pending forever without
/// a server-to-client service.
async fn next_order(orders: Option<&mut Orders>) -> Vec<ToCore> {
    match orders {
        Some(orders) => orders.next().await,
        None => std::future::pending().await,
    }
}

/// What [`RedeemService::dispatch`] did with a message.
#[expect(
    clippy::large_enum_variant,
    reason = "returned once per message and moved straight into the backlog; a box would allocate per verdict"
)]
enum Dispatched {
    /// Nothing is owed for it.
    Done,
    /// A task decides it and sends the verdict to the port task.
    Deciding,
    /// Decided at once: send this.
    Answer(RequestId, ToCore),
}

/// Keeps the resumable CGP sessions of `service` every `period`, forever:
/// refreshes their STA tickets before they expire and revokes those of
/// sessions whose client stayed away past the window. Logs
/// `reconnect_ended` (`session`, `reason`) once per session it ends, and
/// `reconnect_refresh_failed` when the STA refuses a refresh (the session
/// is then forgotten: its ticket no longer resumes).
pub async fn keep_reconnects<R: Resolve>(service: RedeemService<R>, period: Duration) {
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        for due in service.reconnects.due(std::time::Instant::now()) {
            match due {
                Due::Revoke {
                    session,
                    sta_ticket,
                } => {
                    // Already spent or expired is as good as revoked.
                    let _ = service.router.revoke(sta_ticket.as_bytes()).await;
                    tracing::info!(session = %session, reason = "window_passed", "reconnect_ended");
                }
                Due::Refresh { key, sta_ticket } => {
                    match service.router.refresh(sta_ticket.as_bytes()).await {
                        Ok(issued) => service.reconnects.refreshed(
                            key,
                            &sta_ticket,
                            issued.ticket.to_text(),
                            issued.lifetime,
                            std::time::Instant::now(),
                        ),
                        Err(error) => {
                            let refusal = refusal_of_route(&error);
                            if refusal.reason == DenyReason::StaUnreachable {
                                continue;
                            }
                            if let Some(session) = service.reconnects.forget(key) {
                                tracing::warn!(
                                    session = %session,
                                    reason = refusal.label,
                                    error = refusal.error.as_deref().unwrap_or(""),
                                    "reconnect_refresh_failed"
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Records the control plane's heartbeat into the segment every `period`,
/// forever; spawn it next to the port tasks and abort it on shutdown.
pub async fn heartbeat(side: Arc<ControlSide>, period: Duration) {
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        side.beat(MonotonicMillis::now());
    }
}

fn log_closed(
    core: CoreId,
    session: SessionId,
    record: Option<&SessionRecord>,
    closed: &gatehouse_channel::SessionClosed,
) {
    let peer = record.map(|r| r.client.0.to_string()).unwrap_or_default();
    let worker = record.map(|r| r.worker.0.to_string()).unwrap_or_default();
    // The core logs the session's own `session_closed` at info; this is
    // the control plane's record of it.
    tracing::debug!(
        core = core.0,
        session = %session,
        peer,
        worker,
        bytes_up = closed.bytes_up,
        bytes_down = closed.bytes_down,
        duration_ms = closed.duration_ms,
        "session_closed"
    );
}

/// The refusal for a failed STA call.
fn refusal_of_route(error: &RouteError) -> Refusal {
    let (reason, label, fault) = match error {
        RouteError::Malformed(_) => (DenyReason::Malformed, "malformed_ticket", Fault::Client),
        RouteError::UnknownSta(_) => (DenyReason::UnknownSta, "unknown_sta", Fault::Client),
        RouteError::Remote { .. } => (
            DenyReason::StaUnreachable,
            "sta_unreachable",
            Fault::ControlPlane,
        ),
        RouteError::Refused(refused) => match refused {
            StaError::UnknownTicket => (DenyReason::UnknownTicket, "unknown_ticket", Fault::Client),
            StaError::Expired => (DenyReason::Expired, "expired_ticket", Fault::Client),
            StaError::Reused => (DenyReason::Reused, "reused_ticket", Fault::Client),
            // A revoked ticket is used up, as far as the client can tell.
            StaError::Revoked => (DenyReason::Reused, "revoked_ticket", Fault::Client),
            // The STA configured for this ID says the ticket is not its
            // own: the STA_ID map is wrong.
            StaError::WrongAuthority => (
                DenyReason::UnknownSta,
                "wrong_authority",
                Fault::ControlPlane,
            ),
            StaError::Full
            | StaError::Random
            | StaError::NotRefreshable
            | StaError::DataTooLarge { .. } => {
                (DenyReason::Internal, "sta_error", Fault::ControlPlane)
            }
        },
    };
    Refusal {
        reason,
        label,
        fault,
        error: Some(crate::error_chain(error)),
    }
}

/// `text` as a channel ticket; an STA ticket always fits.
fn ticket_bytes(text: &str) -> Result<TicketBytes, Refusal> {
    TicketBytes::new(text.as_bytes()).map_err(|error| Refusal {
        reason: DenyReason::Internal,
        label: "reconnect_ticket_too_long",
        fault: Fault::ControlPlane,
        error: Some(error.to_string()),
    })
}

fn proto(kind: RedeemKind) -> &'static str {
    match kind {
        RedeemKind::Socks => "socks5",
        RedeemKind::Cgp => "cgp",
        RedeemKind::CgpReconnect => "cgp_reconnect",
    }
}

/// The ticket as logs may show it (`;40;STA01;K3J9…`), or `malformed`.
fn masked(request: &RedeemTicket) -> String {
    StaTicket::decode(request.ticket.as_bytes())
        .map_or_else(|_| "malformed".to_owned(), |ticket| ticket.to_string())
}

mod orders;

use orders::Orders;
pub use orders::{ConnectorRole, LinkState};

#[cfg(test)]
mod tests;
