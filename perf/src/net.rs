//! Socket set-up shared by the load shapes: bounded connects, listeners with a
//! deep backlog, and the timeouts that keep every operation finite.

use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// Longest a connect may take before it counts as a `connect` error.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest one read or write may block before it counts as a `timeout` error.
pub(crate) const OP_TIMEOUT: Duration = Duration::from_secs(2);
/// Listen backlog for the back-ends: connection-rate runs and 10,000-connection
/// idle runs arrive in bursts, and a full backlog costs a 1 s SYN retry.
const BACKLOG: i32 = 4_096;

/// Connects with [`CONNECT_TIMEOUT`], optionally from a given source address
/// (port chosen by the kernel), and sets [`OP_TIMEOUT`] on reads and writes.
pub(crate) fn connect(target: SocketAddr, source: Option<IpAddr>) -> io::Result<TcpStream> {
    let socket = Socket::new(
        Domain::for_address(target),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    if let Some(ip) = source {
        socket.bind(&SockAddr::from(SocketAddr::new(ip, 0)))?;
    }
    socket.connect_timeout(&SockAddr::from(target), CONNECT_TIMEOUT)?;
    socket.set_read_timeout(Some(OP_TIMEOUT))?;
    socket.set_write_timeout(Some(OP_TIMEOUT))?;
    Ok(socket.into())
}

/// Binds a non-blocking listener with `SO_REUSEADDR` and a deep backlog.
pub(crate) fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.bind(&SockAddr::from(addr))?;
    socket.listen(BACKLOG)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}
