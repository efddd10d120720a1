//! Binding the per-core listening sockets.
//!
//! Every core gets its own socket per listen address, all bound with
//! `SO_REUSEPORT` to the same address, so the kernel spreads incoming
//! connections over the cores and no core ever touches another's accept
//! queue. Port 0 is resolved once: the first socket picks the port and the
//! others bind to it.

use std::io;
use std::net::{SocketAddr, TcpListener};

use socket2::{Domain, Protocol, Socket, Type};

/// Accept backlog of each per-core socket (monoio's own default).
const BACKLOG: i32 = 1_024;

/// Binds `cores` sockets to `addr`. Returns them with the address actually
/// bound (the port filled in when `addr` asked for port 0).
///
/// `nonblocking` must be true for the legacy driver (epoll) and false for
/// io_uring, which expects blocking descriptors.
pub(crate) fn bind_reuseport(
    addr: SocketAddr,
    cores: usize,
    nonblocking: bool,
) -> io::Result<(Vec<TcpListener>, SocketAddr)> {
    let mut sockets = Vec::with_capacity(cores);
    let mut bound = addr;
    for _ in 0..cores {
        let socket = bind_one(bound, nonblocking)?;
        if bound.port() == 0 {
            bound = socket.local_addr()?;
        }
        sockets.push(socket);
    }
    Ok((sockets, bound))
}

fn bind_one(addr: SocketAddr, nonblocking: bool) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    // Accepted sockets inherit TCP_NODELAY from the listener on Linux, which
    // saves a setsockopt per connection: a relay forwards what it gets at
    // once (splice adds MSG_MORE itself while a pipe holds more).
    socket.set_tcp_nodelay(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    socket.set_nonblocking(nonblocking)?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_one_port_for_every_core() {
        let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let (sockets, bound) = bind_reuseport(addr, 3, false).unwrap();
        assert_eq!(sockets.len(), 3);
        assert_ne!(bound.port(), 0);
        for socket in &sockets {
            assert_eq!(socket.local_addr().unwrap(), bound);
        }
    }

    #[test]
    fn refuses_an_address_held_without_reuseport() {
        let held = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = held.local_addr().unwrap();
        assert!(bind_reuseport(addr, 1, false).is_err());
    }
}
