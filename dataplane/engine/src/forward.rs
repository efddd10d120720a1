//! The plain TCP forwarder behind `gatehouse forward`: every accepted
//! connection is relayed to one fixed back end.
//!
//! It is the simplest [`Handler`]: connect (the "handshake"), then
//! [`relay::run`]. It is also the fair comparison with HAProxy's TCP mode.

use std::net::SocketAddr;
use std::time::Duration;

use gatehouse_channel::{CoreId, WorkerAddr};
use monoio::net::TcpStream;

use crate::handler::{Conn, Handler, HandlerFactory};
use crate::relay;
use crate::session::{Session, SessionEnd};

/// Forwards every connection to `to`. Also its own factory: every core
/// gets a copy.
#[derive(Debug, Clone)]
pub struct Forward {
    to: WorkerAddr,
    connect_timeout: Duration,
}

impl Forward {
    /// Default time allowed for the back-end connection.
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

    /// A forwarder to `to` with the default connect timeout.
    pub fn new(to: SocketAddr) -> Forward {
        Forward {
            to: WorkerAddr(to),
            connect_timeout: Self::DEFAULT_CONNECT_TIMEOUT,
        }
    }

    /// Sets how long the back-end connection may take.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Forward {
        self.connect_timeout = timeout;
        self
    }
}

impl HandlerFactory for Forward {
    type Handler = Forward;

    fn build(&self, _core: CoreId) -> Forward {
        self.clone()
    }
}

impl Handler for Forward {
    async fn handle(&self, conn: Conn, session: &Session) -> SessionEnd {
        session.set_proto("tcp");
        let connect = TcpStream::connect_addr(self.to.0);
        let backend = match monoio::time::timeout(self.connect_timeout, connect).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return SessionEnd::BackendUnreachable(e.kind()),
            Err(_) => return SessionEnd::BackendTimeout,
        };
        // Forward small writes at once, like the client side (inherited
        // from the listener); a failure only costs latency.
        let _ = backend.set_nodelay(true);
        session.established();
        SessionEnd::Relayed(relay::run(session, conn.stream, backend, &[]).await)
    }
}
