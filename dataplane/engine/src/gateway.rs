//! The gateway handler: detection, TLS termination, the SOCKSv5 launch and
//! its relay, per accepted connection (PROTOCOLS.md §1–§2).
//!
//! ```text
//! TLS listener:       detect ─► Tls ─► TlsAcceptor::accept ─► detect ─► Socks5 ─► socks::serve ─► relay (copy)
//!                            │                                        └► Cgp ────► cgp::serve ───► relay (copy)
//!                            └► anything else: tls_required
//! plaintext listener: detect ─► Socks5 ─► socks::serve ─► relay (splice, or copy per relay mode)
//!                            ├► Cgp ────► cgp::serve ───► relay (splice, or copy per relay mode)
//!                            └► Tls: tls_not_offered
//! either, after the last detection: Http ─► web forward (PROXY v2 header + relay to the
//!                                             control plane's web socket), or
//!                                             unsupported_protocol without one
//!                                   RawIca ─► unsupported_protocol (not served yet)
//! ```
//!
//! An HTTP connection goes to the control plane's web endpoint (a unix
//! socket, [`WebForward`]) with a PROXY protocol v2 header in front naming
//! the client and the listener address and whether the client spoke TLS;
//! then the bytes are relayed both ways untouched. The control plane parses
//! the HTTP.
//!
//! Gatehouse decides: on a TLS listener only TLS is accepted at the first
//! detection (a plaintext SOCKS launch would expose the ticket); on a
//! plaintext listener (behind a TLS-terminating load balancer) TLS is not
//! offered.
//!
//! A CGP session is reported opened with the worker's reconnect ticket
//! (the control plane keeps it for the resume) and closed when its
//! connection ends; a resume is a new connection with a new session id.
//!
//! Every refusal ends the handler with [`SessionEnd::Refused`] carrying
//! the `reason` and `fault` of the stage that refused; the core counts it
//! by reason and logs the session's one `session_closed` event, so nothing
//! here logs a refusal. A redeemed session is reported to the control plane
//! (opened, then closed with its byte counts, even when the core drops the
//! handler at the idle timeout or the drain cut), and ends early when the
//! control plane kills it.
//!
//! Who calls it: the control plane, through [`GatewayFactory::new`] (any
//! [`TicketRedeemer`], e.g. [`MemoryRedeemer`](crate::MemoryRedeemer)) or
//! [`GatewayFactory::with_channel`] (one [`CorePort`] per core), passed to
//! [`Engine::start`](crate::Engine::start).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gatehouse_channel::{CoreId, CorePort, SessionClosed, SessionId, SessionOpened, TicketBytes};
use gatehouse_wire::detect::Protocol;
use monoio::io::{AsyncReadRent, AsyncWriteRent};
use tracing::{debug, error};

use crate::cgp::{self, CgpConfig, CgpLaunch, CgpOutcome};
use crate::detect::{Detection, detect};
use crate::handler::{Conn, Handler, HandlerFactory};
use crate::redeem::{
    ChannelRedeemer, ChannelRedeemerConfig, ReportDropped, SessionReport, TicketRedeemer,
};
use crate::relay::{self, Side};
use crate::replay::Replay;
use crate::session::{Fault, Session, SessionEnd};
use crate::socks::{self, Launch, SocksConfig, SocksOutcome};
use crate::tls::TlsAcceptor;
use gatehouse_wire::proxy::{self, Addresses};
use monoio::io::AsyncWriteRentExt;
use monoio::net::UnixStream;

/// How the gateway serves its listeners (every listener of the engine).
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// The TLS acceptor of a TLS listener; `None` makes a plaintext listener
    /// (for deployments behind a TLS-terminating load balancer).
    pub tls: Option<Arc<TlsAcceptor>>,
    /// Deadline, byte cap and read size of each detection.
    pub detection: Detection,
    /// Deadlines of the SOCKSv5 exchange.
    pub socks: SocksConfig,
    /// Deadlines of the CGP bind.
    pub cgp: CgpConfig,
    /// Where HTTP connections go; `None` refuses them
    /// (`unsupported_protocol`).
    pub web: Option<WebForward>,
    /// Whether raw ICA is recognised (a direct-ICA listener); overrides
    /// `detection.config.raw_ica`. It is not served yet: recognised raw ICA
    /// is refused as `unsupported_protocol`.
    pub raw_ica: bool,
}

impl GatewayConfig {
    /// A TLS listener with default detection and SOCKS settings.
    pub fn tls(acceptor: Arc<TlsAcceptor>) -> GatewayConfig {
        GatewayConfig {
            tls: Some(acceptor),
            ..GatewayConfig::plaintext()
        }
    }

    /// A plaintext listener with default detection and SOCKS settings.
    pub fn plaintext() -> GatewayConfig {
        GatewayConfig {
            tls: None,
            detection: Detection::default(),
            socks: SocksConfig::default(),
            cgp: CgpConfig::default(),
            web: None,
            raw_ica: false,
        }
    }
}

/// The control plane's web endpoint that HTTP connections are forwarded to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebForward {
    /// The unix socket the control plane's web server listens on.
    pub socket: PathBuf,
    /// Limit for connecting to it and writing the PROXY header.
    pub connect_timeout: Duration,
}

impl WebForward {
    /// Forward to `socket` with a 2 s connect limit.
    pub fn new(socket: PathBuf) -> WebForward {
        WebForward {
            socket,
            connect_timeout: Duration::from_secs(2),
        }
    }
}

/// Makes one [`TicketRedeemer`] per core. Any `Fn(CoreId) -> R` is one.
pub trait RedeemerFactory: Send + Sync + 'static {
    /// The per-core redeemer.
    type Redeemer: TicketRedeemer + 'static;

    /// Called once on each core's thread, inside its runtime.
    fn build(&self, core: CoreId) -> Self::Redeemer;
}

impl<F, R> RedeemerFactory for F
where
    F: Fn(CoreId) -> R + Send + Sync + 'static,
    R: TicketRedeemer + 'static,
{
    type Redeemer = R;

    fn build(&self, core: CoreId) -> R {
        self(core)
    }
}

/// The channel ports of a gateway, one per core, each taken by its core.
#[derive(Debug)]
pub struct ChannelPorts {
    // One single-use slot per core: `build` takes `&self` on many threads,
    // and the engine takes no locks of its own (a port moves once, at start).
    slots: Vec<flume::Receiver<CorePort>>,
    config: ChannelRedeemerConfig,
}

impl RedeemerFactory for ChannelPorts {
    type Redeemer = ChannelRedeemer;

    /// Starts a [`ChannelRedeemer`] on the port of `core`; without one (fewer
    /// ports than cores, or built twice) the core refuses every ticket with
    /// reason `no_channel`, and says so in the log.
    fn build(&self, core: CoreId) -> ChannelRedeemer {
        let port = self
            .slots
            .get(usize::from(core.0))
            .and_then(|slot| slot.try_recv().ok());
        let Some(port) = port else {
            error!(core = core.0, "channel_port_missing");
            return ChannelRedeemer::unavailable();
        };
        match ChannelRedeemer::start(port, self.config.clone()) {
            Ok(redeemer) => redeemer,
            Err(e) => {
                error!(core = core.0, error = %e, "channel_doorbell_setup_failed");
                ChannelRedeemer::unavailable()
            }
        }
    }
}

/// Builds the per-core [`Gateway`] handlers; pass it to
/// [`Engine::start`](crate::Engine::start).
#[derive(Debug)]
pub struct GatewayFactory<F> {
    config: Arc<GatewayConfig>,
    detection: Detection,
    redeemers: F,
}

impl<F: RedeemerFactory> GatewayFactory<F> {
    /// A gateway whose cores redeem tickets with `redeemers.build(core)`.
    pub fn new(config: GatewayConfig, redeemers: F) -> GatewayFactory<F> {
        let mut detection = config.detection.clone();
        detection.config.raw_ica = config.raw_ica;
        GatewayFactory {
            config: Arc::new(config),
            detection,
            redeemers,
        }
    }
}

impl GatewayFactory<ChannelPorts> {
    /// A gateway whose cores redeem tickets over the shared-memory channel:
    /// `ports[i]` (from `DataSide::take_ports`, in core order) goes to core
    /// `i`. Give exactly one port per engine core
    /// ([`EngineConfig::core_count`](crate::EngineConfig::core_count)).
    pub fn with_channel(
        config: GatewayConfig,
        ports: Vec<CorePort>,
        redeem: ChannelRedeemerConfig,
    ) -> GatewayFactory<ChannelPorts> {
        let slots = ports
            .into_iter()
            .map(|port| {
                let (tx, rx) = flume::bounded(1);
                // The receiver is alive and the slot empty: cannot fail.
                let _ = tx.send(port);
                rx
            })
            .collect();
        GatewayFactory::new(
            config,
            ChannelPorts {
                slots,
                config: redeem,
            },
        )
    }
}

impl<F: RedeemerFactory> HandlerFactory for GatewayFactory<F> {
    type Handler = Gateway<F::Redeemer>;

    fn build(&self, core: CoreId) -> Gateway<F::Redeemer> {
        Gateway {
            config: self.config.clone(),
            detection: self.detection.clone(),
            redeemer: self.redeemers.build(core),
        }
    }
}

/// One core's gateway handler.
#[derive(Debug)]
pub struct Gateway<R> {
    config: Arc<GatewayConfig>,
    detection: Detection,
    redeemer: R,
}

impl<R> Gateway<R> {
    /// The core's redeemer (its counters, for instance).
    pub fn redeemer(&self) -> &R {
        &self.redeemer
    }
}

impl<R: TicketRedeemer + 'static> Handler for Gateway<R> {
    async fn handle(&self, conn: Conn, session: &Session) -> SessionEnd {
        let local = conn.local;
        let (protocol, stream) = match detect(conn.stream, &self.detection).await {
            Ok(detected) => detected,
            Err(refused) => return refuse(refused.reason(), refused.fault()),
        };
        session.set_proto(protocol.name());
        match (protocol, &self.config.tls) {
            (Protocol::Tls, Some(acceptor)) => {
                self.serve_tls(acceptor, stream, local, session).await
            }
            (Protocol::Tls, None) => refuse("tls_not_offered", Fault::Client),
            (_, Some(_)) => refuse("tls_required", Fault::Client),
            (Protocol::Socks5, None) => self.serve_socks(stream, session).await,
            (Protocol::Cgp, None) => self.serve_cgp(stream, session).await,
            (Protocol::Http, None) => self.serve_http(stream, local, false, session).await,
            (Protocol::RawIca, None) => unsupported(),
        }
    }
}

impl<R: TicketRedeemer> Gateway<R> {
    /// TLS handshake, then detection again on the plaintext.
    async fn serve_tls<S>(
        &self,
        acceptor: &TlsAcceptor,
        stream: S,
        local: SocketAddr,
        session: &Session,
    ) -> SessionEnd
    where
        S: Side + AsyncReadRent + AsyncWriteRent,
    {
        let tls = match acceptor.accept(stream).await {
            Ok(tls) => tls,
            Err(error) => return refuse(error.reason(), error.fault()),
        };
        let (protocol, plain) = match detect(tls, &self.detection).await {
            Ok(detected) => detected,
            Err(refused) => return refuse(refused.reason(), refused.fault()),
        };
        session.set_proto(match protocol {
            Protocol::Socks5 => "socks5+tls",
            Protocol::Cgp => "cgp+tls",
            Protocol::Http => "http+tls",
            Protocol::RawIca => "raw_ica+tls",
            Protocol::Tls => "tls+tls",
        });
        match protocol {
            Protocol::Socks5 => self.serve_socks(plain, session).await,
            Protocol::Cgp => self.serve_cgp(plain, session).await,
            Protocol::Http => self.serve_http(plain, local, true, session).await,
            Protocol::Tls | Protocol::RawIca => unsupported(),
        }
    }

    /// The SOCKSv5 exchange, then the relay of the launch.
    async fn serve_socks<S>(&self, client: Replay<S>, session: &Session) -> SessionEnd
    where
        S: Side + AsyncReadRent + AsyncWriteRent,
    {
        let peer = session.peer();
        match socks::serve(client, peer, &self.redeemer, &self.config.socks).await {
            SocksOutcome::Relay(launch) => {
                let Launch {
                    client,
                    backend,
                    redeemed,
                    forwarded,
                } = launch;
                session.count_up(forwarded as u64);
                self.relay(client, backend, redeemed, None, session).await
            }
            SocksOutcome::Refuse {
                refused,
                session: redeemed,
            } => {
                self.release(redeemed, session);
                refuse(refused.reason(), refused.fault())
            }
        }
    }

    /// The CGP bind, then the relay of the session.
    async fn serve_cgp<S>(&self, client: Replay<S>, session: &Session) -> SessionEnd
    where
        S: Side + AsyncReadRent + AsyncWriteRent,
    {
        let peer = session.peer();
        match cgp::serve(client, peer, &self.redeemer, &self.config.cgp).await {
            CgpOutcome::Relay(launch) => {
                let CgpLaunch {
                    client,
                    backend,
                    redeemed,
                    resumed,
                    worker_ticket,
                    bytes_up,
                    bytes_down,
                } = launch;
                if resumed {
                    session.set_proto(if self.config.tls.is_some() {
                        "cgp_resume+tls"
                    } else {
                        "cgp_resume"
                    });
                }
                session.count_up(bytes_up as u64);
                session.count_down(bytes_down as u64);
                self.relay(client, backend, redeemed, worker_ticket, session)
                    .await
            }
            CgpOutcome::Refuse {
                refused,
                session: redeemed,
            } => {
                self.release(redeemed, session);
                refuse(refused.reason(), refused.fault())
            }
        }
    }

    /// Forwards an HTTP connection to the control plane's web socket with a
    /// PROXY v2 header naming the client, then relays it.
    async fn serve_http<S: Side>(
        &self,
        client: Replay<S>,
        local: SocketAddr,
        tls: bool,
        session: &Session,
    ) -> SessionEnd {
        let Some(web) = &self.config.web else {
            return unsupported();
        };
        let mut header = Vec::with_capacity(64);
        let addresses = Addresses {
            source: session.peer().0,
            destination: local,
        };
        if proxy::encode(addresses, tls, &mut header).is_err() {
            // A v4-mapped listener with a v6 client, say: say less.
            let unspecified = Addresses {
                source: session.peer().0,
                destination: SocketAddr::new(session.peer().0.ip(), 0),
            };
            let _ = proxy::encode(unspecified, tls, &mut header);
        }
        let connecting = async {
            let mut backend = UnixStream::connect(&web.socket).await?;
            let (result, _) = backend.write_all(header).await;
            result.map(|_| backend)
        };
        let backend = match monoio::time::timeout(web.connect_timeout, connecting).await {
            Ok(Ok(backend)) => backend,
            Ok(Err(_)) | Err(_) => return refuse("web_unavailable", Fault::ControlPlane),
        };
        session.established();
        let (client, read_ahead) = client.into_parts();
        SessionEnd::Relayed(relay::run(session, client, backend, &read_ahead).await)
    }

    /// A session redeemed and then refused (the worker failed) never
    /// opened: let the control plane release it.
    fn release(&self, redeemed: Option<SessionId>, session: &Session) {
        if let Some(id) = redeemed {
            let closed = closed_report(id, 0, 0, 0);
            if self.redeemer.report(closed).is_err() {
                session.count_report_dropped();
            }
        }
    }

    /// Relays a launch until it ends or the control plane kills it.
    async fn relay<S: Side>(
        &self,
        client: Replay<S>,
        backend: monoio::net::TcpStream,
        redeemed: crate::redeem::Redeemed,
        worker_ticket: Option<TicketBytes>,
        session: &Session,
    ) -> SessionEnd {
        session.established();
        let id = redeemed.session();
        debug!(
            core = session.core_id().0,
            conn = session.conn().0,
            session = %id,
            worker = %redeemed.worker().0,
            "ticket_redeemed"
        );
        let opened = SessionReport::Opened(SessionOpened {
            session: id,
            client: session.peer(),
            worker: redeemed.worker(),
            worker_ticket,
        });
        if self.redeemer.report(opened).is_err() {
            session.count_report_dropped();
        }
        // Reports the close however this future ends, dropped included.
        let _closing = CloseOnDrop {
            redeemer: &self.redeemer,
            session,
            id,
            relaying_since: Instant::now(),
        };
        // Bytes the client sent that the handshake read ahead of the worker.
        let (client, read_ahead) = client.into_parts();
        let killed = self.redeemer.until_killed(id);
        monoio::select! {
            outcome = relay::run(session, client, backend, &read_ahead) => SessionEnd::Relayed(outcome),
            () = killed => SessionEnd::Killed,
        }
    }
}

fn refuse(reason: &'static str, fault: Fault) -> SessionEnd {
    SessionEnd::Refused { reason, fault }
}

/// A protocol the gateway recognises but does not serve (raw ICA; HTTP
/// without a web endpoint).
fn unsupported() -> SessionEnd {
    refuse("unsupported_protocol", Fault::Client)
}

fn closed_report(session: SessionId, up: u64, down: u64, duration_ms: u64) -> SessionReport {
    SessionReport::Closed(SessionClosed {
        session,
        bytes_up: up,
        bytes_down: down,
        duration_ms,
    })
}

/// Sends `SessionClosed` with the session's byte counts when dropped.
struct CloseOnDrop<'a, R: TicketRedeemer> {
    redeemer: &'a R,
    session: &'a Session,
    id: SessionId,
    relaying_since: Instant,
}

impl<R: TicketRedeemer> Drop for CloseOnDrop<'_, R> {
    fn drop(&mut self) {
        let duration_ms =
            u64::try_from(self.relaying_since.elapsed().as_millis()).unwrap_or(u64::MAX);
        let closed = closed_report(
            self.id,
            self.session.bytes_up(),
            self.session.bytes_down(),
            duration_ms,
        );
        if let Err(ReportDropped) = self.redeemer.report(closed) {
            self.session.count_report_dropped();
        }
    }
}
