//! The connector role of a core: server-to-client flows (DESIGN.md §2B).
//!
//! ```text
//! Listen(IIP:port) ─► bind (SO_REUSEPORT: every connector core binds it)
//! back-end server ─► accept ─► FlowRequest{IIP:port, server, rendezvous} ─► control plane
//!        Deny ─► reset (SO_LINGER 0), log s2c_flow_refused
//!        Allow{flow} ─► park (bounded table, deadline) ──────────────┐
//! gateway (the client's SOCKS data connection, redeemed) ─► rendezvous listener
//!        ─► preamble (wire::rendezvous) names the flow ─► pair ─► relay (splice)
//!        unknown or expired flow ─► close, log s2c_rendezvous_refused
//! Unlisten ─► stop accepting; CloseFlows(IIP) ─► reset parked, end relaying
//! ```
//!
//! Everything is core-local (`Rc`, `RefCell`): no locks, no atomics. The
//! rendezvous listener is this core's own (loopback, port chosen at start)
//! so the data connection reaches the core that parked the flow.
//!
//! Back-end connections are accepted through a std listener whose
//! readiness the core's driver polls (as the channel's doorbell is), so the
//! core can reset a refused connection with `SO_LINGER 0` (socket2 on the
//! std stream) before handing an allowed one to monoio.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream as StdUnixStream;
use std::rc::{Rc, Weak};
use std::time::Duration;

use gatehouse_channel::{FlowClosed, FlowId, FlowRequest, FlowVerdict};
use gatehouse_wire::Progress;
use gatehouse_wire::rendezvous::{self, PREAMBLE_BYTES};
use monoio::io::AsyncReadRent;
use monoio::net::{TcpListener, TcpStream, UnixStream};
use monoio::time::Instant;
use socket2::{Domain, Protocol, SockRef, Socket, Type};
use tracing::{debug, info, warn};

use crate::core::CoreState;
use crate::latch::Latch;
use crate::redeem::ControlLink;

/// How a core plays the connector role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectorConfig {
    /// The address of the rendezvous listener (port 0: chosen at start,
    /// one per core). Default `127.0.0.1:0`.
    pub rendezvous: SocketAddr,
    /// How long an allowed back-end connection waits for the client's data
    /// connection. Default 10 s.
    pub park_timeout: Duration,
    /// Most parked connections per core. Default 1024.
    pub max_parked: usize,
    /// How long a data connection may take to send its preamble. Default
    /// 5 s.
    pub preamble_timeout: Duration,
}

impl Default for ConnectorConfig {
    fn default() -> Self {
        ConnectorConfig {
            rendezvous: SocketAddr::from(([127, 0, 0, 1], 0)),
            park_timeout: Duration::from_secs(10),
            max_parked: 1_024,
            preamble_timeout: Duration::from_secs(5),
        }
    }
}

/// Backlog of a back-end listener.
const BACKLOG: i32 = 1_024;

/// One core's connector state.
#[derive(Debug)]
pub(crate) struct Connector {
    core: Rc<CoreState>,
    link: ControlLink,
    config: ConnectorConfig,
    rendezvous: SocketAddr,
    listeners: RefCell<HashMap<SocketAddr, Rc<Latch>>>,
    parked: RefCell<HashMap<FlowId, Parked>>,
    relaying: RefCell<HashMap<FlowId, (IpAddr, Rc<Latch>)>>,
}

/// An allowed back-end connection waiting for its data connection.
#[derive(Debug)]
struct Parked {
    stream: std::net::TcpStream,
    iip: IpAddr,
    server: SocketAddr,
}

impl Connector {
    /// Binds this core's rendezvous listener and starts accepting on it.
    /// Call on the core's thread, inside its runtime.
    ///
    /// Errors: no core runs on this thread, or the bind failed.
    pub(crate) fn start(link: ControlLink, config: ConnectorConfig) -> io::Result<Rc<Connector>> {
        let core = crate::core::current()
            .ok_or_else(|| io::Error::other("the connector needs a core on this thread"))?;
        let listener = TcpListener::bind(config.rendezvous)?;
        let rendezvous = listener.local_addr()?;
        info!(core = core.id.0, rendezvous = %rendezvous, "s2c_connector_started");
        let connector = Rc::new(Connector {
            core,
            link,
            config,
            rendezvous,
            listeners: RefCell::new(HashMap::new()),
            parked: RefCell::new(HashMap::new()),
            relaying: RefCell::new(HashMap::new()),
        });
        monoio::spawn(accept_rendezvous(Rc::downgrade(&connector), listener));
        Ok(connector)
    }

    /// Starts accepting back-end connections on `addr` (no-op when it
    /// already does). A bind failure is logged.
    pub(crate) fn listen(self: &Rc<Self>, addr: SocketAddr) {
        if self.listeners.borrow().contains_key(&addr) {
            return;
        }
        match bind_backend(addr) {
            Ok((listener, readiness)) => {
                let stop = Rc::new(Latch::default());
                self.listeners.borrow_mut().insert(addr, stop.clone());
                debug!(core = self.core.id.0, addr = %addr, "s2c_listening");
                monoio::spawn(accept_backends(
                    Rc::downgrade(self),
                    addr,
                    listener,
                    readiness,
                    stop,
                ));
            }
            Err(error) => {
                warn!(core = self.core.id.0, addr = %addr, error = %error, "s2c_listen_failed");
            }
        }
    }

    /// Stops accepting on `addr`.
    pub(crate) fn unlisten(&self, addr: SocketAddr) {
        if let Some(stop) = self.listeners.borrow_mut().remove(&addr) {
            stop.fire();
            debug!(core = self.core.id.0, addr = %addr, "s2c_unlistened");
        }
    }

    /// Resets the parked connections to `iip` and ends its relaying flows.
    pub(crate) fn close_flows(&self, iip: IpAddr) {
        let parked: Vec<FlowId> = self
            .parked
            .borrow()
            .iter()
            .filter(|(_, p)| p.iip == iip)
            .map(|(flow, _)| *flow)
            .collect();
        for flow in &parked {
            if let Some(p) = self.parked.borrow_mut().remove(flow) {
                reset(&p.stream);
                self.report(*flow, 0, 0, Duration::ZERO);
            }
        }
        let relaying: Vec<Rc<Latch>> = self
            .relaying
            .borrow()
            .values()
            .filter(|(flow_iip, _)| *flow_iip == iip)
            .map(|(_, stop)| stop.clone())
            .collect();
        for stop in &relaying {
            stop.fire();
        }
        info!(core = self.core.id.0, iip = %iip, parked = parked.len(), relaying = relaying.len(), "s2c_flows_closed");
    }

    fn report(&self, flow: FlowId, to_client: u64, to_server: u64, duration: Duration) {
        let closed = FlowClosed {
            flow,
            bytes_to_client: to_client,
            bytes_to_server: to_server,
            duration_ms: u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
        };
        if self.link.flow_closed(closed).is_err() {
            warn!(core = self.core.id.0, flow = %flow, "s2c_flow_report_dropped");
        }
    }

    /// Asks for a verdict on a back-end connection and parks or resets it.
    async fn handle_backend(
        self: Rc<Self>,
        stream: std::net::TcpStream,
        local: SocketAddr,
        server: SocketAddr,
    ) {
        let core = self.core.id.0;
        if self.parked.borrow().len() >= self.config.max_parked {
            reset(&stream);
            info!(core, server = %server, local = %local, reason = "parked_full", "s2c_flow_refused");
            return;
        }
        let request = FlowRequest {
            local,
            server,
            rendezvous: self.rendezvous,
        };
        match self.link.request_flow(request).await {
            Ok(FlowVerdict::Allow { flow }) => {
                debug!(core, server = %server, local = %local, flow = %flow, "s2c_flow_parked");
                self.parked.borrow_mut().insert(
                    flow,
                    Parked {
                        stream,
                        iip: local.ip(),
                        server,
                    },
                );
                monoio::time::sleep(self.config.park_timeout).await;
                if let Some(p) = self.parked.borrow_mut().remove(&flow) {
                    reset(&p.stream);
                    info!(core, flow = %flow, server = %p.server, reason = "rendezvous_timeout", "s2c_flow_refused");
                    self.report(flow, 0, 0, Duration::ZERO);
                }
            }
            Ok(FlowVerdict::Deny { reason }) => {
                reset(&stream);
                info!(core, server = %server, local = %local, reason = reason.as_str(), "s2c_flow_refused");
            }
            Err(error) => {
                reset(&stream);
                info!(core, server = %server, local = %local, reason = error.reason(), "s2c_flow_refused");
            }
        }
    }

    /// Reads the preamble of a data connection and relays it with its
    /// parked back-end connection.
    async fn handle_rendezvous(self: Rc<Self>, mut stream: TcpStream, peer: SocketAddr) {
        let core = self.core.id.0;
        let read =
            monoio::time::timeout(self.config.preamble_timeout, read_preamble(&mut stream)).await;
        let (flow, rest) = match read {
            Ok(Ok(found)) => found,
            Ok(Err(reason)) => {
                info!(core, peer = %peer, reason, "s2c_rendezvous_refused");
                return;
            }
            Err(_elapsed) => {
                info!(core, peer = %peer, reason = "preamble_timeout", "s2c_rendezvous_refused");
                return;
            }
        };
        let Some(parked) = self.parked.borrow_mut().remove(&flow) else {
            info!(core, peer = %peer, flow = %flow, reason = "unknown_flow", "s2c_rendezvous_refused");
            return;
        };
        let _ = parked.stream.set_nodelay(true);
        let backend = match parked
            .stream
            .set_nonblocking(true)
            .and_then(|()| TcpStream::from_std(parked.stream))
        {
            Ok(backend) => backend,
            Err(error) => {
                warn!(core, flow = %flow, error = %error, "s2c_rendezvous_refused");
                self.report(flow, 0, 0, Duration::ZERO);
                return;
            }
        };
        let stop = Rc::new(Latch::default());
        self.relaying
            .borrow_mut()
            .insert(flow, (parked.iip, stop.clone()));
        let session = self.core.open_session(parked.server);
        session.established();
        let started = Instant::now();
        info!(core, flow = %flow, server = %parked.server, iip = %parked.iip, "s2c_flow_relaying");
        let (to_server, to_client, end) = monoio::select! {
            outcome = crate::relay::run(&session, stream, backend, &rest) => (outcome.up, outcome.down, "completed"),
            () = stop.wait() => (session.bytes_up(), session.bytes_down(), "closed_by_control_plane"),
            () = self.core.until_cut() => (session.bytes_up(), session.bytes_down(), "drain_deadline"),
        };
        self.relaying.borrow_mut().remove(&flow);
        let duration = started.elapsed();
        info!(
            core,
            flow = %flow,
            bytes_to_client = to_client,
            bytes_to_server = to_server,
            duration_ms = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
            reason = end,
            "s2c_flow_closed"
        );
        self.report(flow, to_client, to_server, duration);
    }
}

/// Reads the preamble; the flow and the bytes that came after it.
async fn read_preamble(stream: &mut TcpStream) -> Result<(FlowId, Vec<u8>), &'static str> {
    let mut buf: Vec<u8> = Vec::with_capacity(64);
    loop {
        match rendezvous::decode(&buf) {
            Ok(Progress::Done { value, consumed }) => {
                return Ok((FlowId(value.flow), buf[consumed..].to_vec()));
            }
            Ok(Progress::NeedMore { .. }) => {}
            Err(_) => return Err("bad_preamble"),
        }
        let chunk = Vec::with_capacity(PREAMBLE_BYTES.max(64));
        let (result, chunk) = stream.read(chunk).await;
        match result {
            Ok(0) => return Err("closed_before_preamble"),
            Ok(_) => buf.extend_from_slice(&chunk),
            Err(_) => return Err("read_failed"),
        }
    }
}

/// Accepts data connections until the connector is gone.
async fn accept_rendezvous(connector: Weak<Connector>, listener: TcpListener) {
    loop {
        let accepted = listener.accept().await;
        let Some(strong) = connector.upgrade() else {
            return;
        };
        match accepted {
            Ok((stream, peer)) => {
                monoio::spawn(strong.handle_rendezvous(stream, peer));
            }
            Err(error) => {
                warn!(core = strong.core.id.0, error = %error, "s2c_accept_failed");
                drop(strong);
                monoio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// Accepts back-end connections on `addr` until `stop` fires.
async fn accept_backends(
    connector: Weak<Connector>,
    addr: SocketAddr,
    listener: std::net::TcpListener,
    readiness: UnixStream,
    stop: Rc<Latch>,
) {
    loop {
        if stop.is_fired() {
            return;
        }
        match listener.accept() {
            Ok((stream, server)) => {
                let Some(strong) = connector.upgrade() else {
                    return;
                };
                monoio::spawn(strong.handle_backend(stream, addr, server));
                continue;
            }
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
            Err(error) => {
                warn!(addr = %addr, error = %error, "s2c_accept_failed");
                monoio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        }
        monoio::select! {
            _ = readiness.readable(false) => {}
            () = stop.wait() => return,
        }
    }
}

/// A non-blocking listener on `addr` (SO_REUSEPORT: every connector core
/// binds it) and a monoio handle on the same socket for readiness only.
fn bind_backend(addr: SocketAddr) -> io::Result<(std::net::TcpListener, UnixStream)> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_tcp_nodelay(true)?;
    // An IIP need not be configured on an interface: the resource
    // location routes the pool's CIDR to the connector, which binds it
    // freely (best effort; loopback addresses need no help).
    let _ = match addr {
        SocketAddr::V4(_) => socket.set_freebind_v4(true),
        SocketAddr::V6(_) => socket.set_freebind_v6(true),
    };
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    socket.set_nonblocking(true)?;
    let listener: std::net::TcpListener = socket.into();
    // The duplicate is only polled for readability (POLL_ADD / epoll),
    // never read or written as a unix socket.
    let duplicate: OwnedFd = listener.try_clone()?.into();
    let readiness = UnixStream::from_std(StdUnixStream::from(duplicate))?;
    Ok((listener, readiness))
}

/// Resets a connection: `SO_LINGER 0` then close sends RST.
fn reset(stream: &std::net::TcpStream) {
    let _ = SockRef::from(stream).set_linger(Some(Duration::ZERO));
}
