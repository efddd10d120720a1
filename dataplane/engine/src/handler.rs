//! What runs an accepted connection: the [`Handler`] contract.
//!
//! The engine is generic over one [`HandlerFactory`]. Each core calls
//! [`HandlerFactory::build`] once, on its own thread, and keeps the handler
//! it gets (so a handler may hold `Rc`s and `Cell`s: core-local state such
//! as a pending-request table). For every accepted connection the core
//! calls [`Handler::handle`] in a task of its own and awaits the
//! [`SessionEnd`] it returns.
//!
//! A handler serving several listeners (a gateway port and a forward port,
//! say) tells them apart by [`Conn::listener`], the index of the address in
//! the list given to `Engine::start`.

use std::future::Future;
use std::net::SocketAddr;

use gatehouse_channel::{ClientAddr, CoreId};
use monoio::net::TcpStream;

use crate::session::{Session, SessionEnd};

/// Index of a listen address in the list given to `Engine::start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ListenerId(pub usize);

/// An accepted connection, handed to [`Handler::handle`].
#[derive(Debug)]
pub struct Conn {
    /// The client's stream (TCP_NODELAY set; blocking mode per the driver).
    pub stream: TcpStream,
    /// The client's address.
    pub peer: ClientAddr,
    /// Which listener accepted it.
    pub listener: ListenerId,
    /// The address it was accepted on.
    pub local: SocketAddr,
}

/// Builds one handler per core. Shared by the cores, hence `Send + Sync`.
pub trait HandlerFactory: Send + Sync + 'static {
    /// The per-core handler.
    type Handler: Handler;

    /// Called once on each core's thread before it accepts anything.
    fn build(&self, core: CoreId) -> Self::Handler;
}

/// Runs accepted connections on one core.
pub trait Handler: 'static {
    /// Runs `conn` to its end and says how it ended.
    ///
    /// Contract: call [`Session::established`] once the handshake is done
    /// (until then the connection counts against the core's pending
    /// handshakes); relay with [`crate::relay::run`], which counts bytes
    /// into `session`; do not log the ending (the core logs one
    /// `session_closed` event from the returned value). The core may drop
    /// the returned future at any await point (idle timeout, drain cut), so
    /// keep no state that must be cleaned up by code after an await.
    fn handle(&self, conn: Conn, session: &Session) -> impl Future<Output = SessionEnd>;
}
