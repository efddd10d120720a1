//! Trading doorbells between planes in separate processes.
//!
//! Eventfds cannot be opened by name, so each side sends the doorbells it
//! waits on to the other over a unix socket with `SCM_RIGHTS`. Why eventfd
//! and not a futex in the mapping: a futex wait blocks a thread, while an
//! eventfd is a descriptor that io_uring (monoio) and epoll (tokio) both
//! await natively, so neither plane needs a thread parked per core.
//!
//! The control plane listens on `NAME.link` (beside the segment, mode
//! 0600) for as long as it runs; a data plane connects after it attaches,
//! and again whenever it sees the control plane restarted. Either plane may
//! restart; the survivor keeps its mapping, its rings and its own
//! doorbells, and relinks with the newcomer:
//!
//! ```text
//! data plane                               control plane
//!   attach (generation g_d)                  attach (generation g_c), listen
//!   connect NAME.link  ------------------->  accept; check peer uid == ours
//!   Hello{data, g_d, instance} + fds  ---->  (its answer doorbells)
//!   <-----  Hello{control, g_c, instance} + fds (its request doorbells)
//!   install with dup3 over the outbound      install with dup3 over the
//!   descriptors, ring each once              outbound descriptors, ring each
//! ```
//!
//! Packets are `SOCK_SEQPACKET` (boundaries kept, ancillary data tied to
//! its packet), 32 bytes each, little-endian, carrying the fds of at most
//! 64 cores: magic `GHLINK01`, version u16, plane u8 (1 control, 2 data),
//! reserved u8, cores u16, first core u16, fd count u16, reserved u16,
//! generation u32, segment instance u64. A hello is refused unless it names
//! the other plane, the same core count, the same segment instance (the
//! nonce written at creation) and the generation the peer's record holds
//! now. The whole exchange times out after [`LINK_TIMEOUT`].
//!
//! Until a side links, its outbound doorbells are placeholders nobody
//! waits on, so a message sent then is found by the peer's first look
//! after the link: installing rings every doorbell once.

use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::fs::Mode;
use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags,
    SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketAddrUnix, SocketFlags, SocketType,
    sockopt::Timeout,
};

use crate::channel::{ControlSide, DataSide, SideInner};
use crate::ids::Generation;
use crate::segment::Plane;

/// How long a link handshake may take before it is abandoned.
pub const LINK_TIMEOUT: Duration = Duration::from_secs(2);

const LINK_MAGIC: [u8; 8] = *b"GHLINK01";
const LINK_VERSION: u16 = 0x0001;
const HELLO_BYTES: usize = 32;
const FDS_PER_PACKET: usize = 64;

/// Why a link failed. The sides keep working unlinked; retry later.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// Nothing listens on the link socket (the control plane is down).
    #[error("no control plane listens on {0}")]
    NoListener(String),
    /// The side was attached in-process: there is nothing to link.
    #[error("an in-process side has no link")]
    NotNamed,
    /// A system call failed.
    #[error("{op} failed")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The system error.
        #[source]
        source: io::Error,
    },
    /// The process at the other end runs as another user.
    #[error("link peer runs as uid {found}, expected {expected}")]
    PeerUser {
        /// The peer's uid.
        found: u32,
        /// Ours.
        expected: u32,
    },
    /// The other end's hello does not fit this side.
    #[error("link hello refused: {0}")]
    Refused(&'static str),
    /// The other end closed the socket mid-handshake.
    #[error("link peer closed the connection during the handshake")]
    Closed,
}

fn io_op(op: &'static str) -> impl FnOnce(rustix::io::Errno) -> LinkError {
    move |e| LinkError::Io {
        op,
        source: e.into(),
    }
}

/// A completed link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Linked {
    /// The peer's generation at the time of the link.
    pub peer_generation: Generation,
    /// The peer's process id (from the socket's credentials).
    pub peer_pid: u32,
}

/// The control plane's link socket. Dropping it removes the socket file.
///
/// Readable (`AsFd`) when a data plane is waiting: call
/// [`LinkListener::accept`] then (from a blocking context: the exchange
/// blocks up to [`LINK_TIMEOUT`]).
#[derive(Debug)]
pub struct LinkListener {
    socket: OwnedFd,
    side: Arc<SideInner>,
    path: PathBuf,
}

impl ControlSide {
    /// Binds the link socket `NAME.link` (replacing a stale one: this side
    /// holds the control-plane lock, so no other listener is alive).
    pub fn listen(&self) -> Result<LinkListener, LinkError> {
        let name = self.inner.name.as_ref().ok_or(LinkError::NotNamed)?;
        let path = name.link_path();
        let socket = rustix::net::socket_with(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
            None,
        )
        .map_err(io_op("create link socket"))?;
        let addr = SocketAddrUnix::new(&path).map_err(io_op("link socket address"))?;
        match rustix::fs::unlink(&path) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => {}
            Err(e) => return Err(io_op("remove stale link socket")(e)),
        }
        rustix::net::bind(&socket, &addr).map_err(io_op("bind link socket"))?;
        rustix::fs::chmod(&path, Mode::RUSR | Mode::WUSR).map_err(io_op("chmod link socket"))?;
        rustix::net::listen(&socket, 8).map_err(io_op("listen on link socket"))?;
        Ok(LinkListener {
            socket,
            side: self.inner.clone(),
            path,
        })
    }
}

impl DataSide {
    /// Connects to the control plane's link socket and trades doorbells
    /// (blocks up to [`LINK_TIMEOUT`]). Call after attaching and whenever
    /// the control plane is seen restarted; [`LinkError::NoListener`]
    /// means it is not up yet.
    pub fn link(&self) -> Result<Linked, LinkError> {
        let name = self.inner.name.as_ref().ok_or(LinkError::NotNamed)?;
        let path = name.link_path();
        let socket = rustix::net::socket_with(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::CLOEXEC,
            None,
        )
        .map_err(io_op("create link socket"))?;
        let addr = SocketAddrUnix::new(&path).map_err(io_op("link socket address"))?;
        match rustix::net::connect(&socket, &addr) {
            Ok(()) => {}
            Err(rustix::io::Errno::NOENT | rustix::io::Errno::CONNREFUSED) => {
                return Err(LinkError::NoListener(path.display().to_string()));
            }
            Err(e) => return Err(io_op("connect link socket")(e)),
        }
        exchange(&socket, &self.inner)
    }
}

impl LinkListener {
    /// Accepts a waiting data plane, if any, and trades doorbells with it.
    /// `Ok(None)`: nobody is waiting. The accept does not block; the
    /// exchange blocks up to [`LINK_TIMEOUT`].
    pub fn accept(&self) -> Result<Option<Linked>, LinkError> {
        match rustix::net::accept_with(&self.socket, SocketFlags::CLOEXEC) {
            Ok(socket) => exchange(&socket, &self.side).map(Some),
            Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => Ok(None),
            Err(e) => Err(io_op("accept on link socket")(e)),
        }
    }

    /// Waits up to `timeout` for a data plane, then [`LinkListener::accept`].
    pub fn accept_timeout(&self, timeout: Duration) -> Result<Option<Linked>, LinkError> {
        let ts = Timespec {
            tv_sec: i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: i64::from(timeout.subsec_nanos()),
        };
        let mut fds = [PollFd::new(&self.socket, PollFlags::IN)];
        match rustix::event::poll(&mut fds, Some(&ts)) {
            Ok(_) | Err(rustix::io::Errno::INTR) => self.accept(),
            Err(e) => Err(io_op("poll link socket")(e)),
        }
    }
}

impl AsFd for LinkListener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

impl AsRawFd for LinkListener {
    fn as_raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
}

impl Drop for LinkListener {
    fn drop(&mut self) {
        let _ = rustix::fs::unlink(&self.path);
    }
}

/// One hello packet's fixed part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Hello {
    plane: Plane,
    cores: u16,
    first: u16,
    count: u16,
    generation: Generation,
    instance: u64,
}

impl Hello {
    fn encode(&self) -> [u8; HELLO_BYTES] {
        let mut out = [0; HELLO_BYTES];
        out[0..8].copy_from_slice(&LINK_MAGIC);
        out[8..10].copy_from_slice(&LINK_VERSION.to_le_bytes());
        out[10] = match self.plane {
            Plane::Control => 1,
            Plane::Data => 2,
        };
        out[12..14].copy_from_slice(&self.cores.to_le_bytes());
        out[14..16].copy_from_slice(&self.first.to_le_bytes());
        out[16..18].copy_from_slice(&self.count.to_le_bytes());
        out[20..24].copy_from_slice(&self.generation.0.to_le_bytes());
        out[24..32].copy_from_slice(&self.instance.to_le_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Result<Hello, LinkError> {
        let bytes: &[u8; HELLO_BYTES] = bytes
            .try_into()
            .map_err(|_| LinkError::Refused("hello of the wrong size"))?;
        let u16_at = |i: usize| u16::from_le_bytes([bytes[i], bytes[i + 1]]);
        if bytes[0..8] != LINK_MAGIC || u16_at(8) != LINK_VERSION {
            return Err(LinkError::Refused(
                "not a gatehouse link hello of this version",
            ));
        }
        let plane = match bytes[10] {
            1 => Plane::Control,
            2 => Plane::Data,
            _ => return Err(LinkError::Refused("unknown plane")),
        };
        if bytes[11] != 0 || u16_at(18) != 0 {
            return Err(LinkError::Refused("reserved bytes set"));
        }
        let mut generation = [0; 4];
        generation.copy_from_slice(&bytes[20..24]);
        let mut instance = [0; 8];
        instance.copy_from_slice(&bytes[24..32]);
        Ok(Hello {
            plane,
            cores: u16_at(12),
            first: u16_at(14),
            count: u16_at(16),
            generation: Generation(u32::from_le_bytes(generation)),
            instance: u64::from_le_bytes(instance),
        })
    }
}

/// Sends this side's inbound doorbells, receives the peer's, installs
/// them over this side's outbound descriptors and rings each once.
fn exchange(socket: &OwnedFd, side: &SideInner) -> Result<Linked, LinkError> {
    for id in [Timeout::Recv, Timeout::Send] {
        rustix::net::sockopt::set_socket_timeout(socket, id, Some(LINK_TIMEOUT))
            .map_err(io_op("set link socket timeout"))?;
    }
    let cred =
        rustix::net::sockopt::socket_peercred(socket).map_err(io_op("read peer credentials"))?;
    let expected = rustix::process::getuid().as_raw();
    if cred.uid.as_raw() != expected {
        return Err(LinkError::PeerUser {
            found: cred.uid.as_raw(),
            expected,
        });
    }
    send_bells(socket, side)?;
    let received = receive_bells(socket, side)?;
    for (core, fd) in received.iter().enumerate() {
        side.bells
            .install(core, fd.as_fd())
            .map_err(|source| LinkError::Io {
                op: "install peer doorbell",
                source,
            })?;
    }
    side.kick_peer();
    Ok(Linked {
        peer_generation: side.segment.side(side.plane.peer()).generation(),
        peer_pid: u32::try_from(cred.pid.as_raw_nonzero().get()).unwrap_or(0),
    })
}

fn send_bells(socket: &OwnedFd, side: &SideInner) -> Result<(), LinkError> {
    let bells: Vec<BorrowedFd<'_>> = side.bells.inbound_all().collect();
    let cores = side.segment.geometry().cores();
    for (chunk_index, chunk) in bells.chunks(FDS_PER_PACKET).enumerate() {
        let hello = Hello {
            plane: side.plane,
            cores,
            // At most 256 cores: both fit a u16.
            first: u16::try_from(chunk_index * FDS_PER_PACKET).unwrap_or(u16::MAX),
            count: u16::try_from(chunk.len()).unwrap_or(u16::MAX),
            generation: side.generation,
            instance: side.segment.instance(),
        }
        .encode();
        let mut space =
            [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(FDS_PER_PACKET))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        if !control.push(SendAncillaryMessage::ScmRights(chunk)) {
            return Err(LinkError::Refused("too many descriptors for one packet"));
        }
        rustix::net::sendmsg(
            socket,
            &[IoSlice::new(&hello)],
            &mut control,
            SendFlags::NOSIGNAL,
        )
        .map_err(io_op("send doorbells"))?;
    }
    Ok(())
}

fn receive_bells(socket: &OwnedFd, side: &SideInner) -> Result<Vec<OwnedFd>, LinkError> {
    let cores = side.segment.geometry().cores();
    let peer = side.plane.peer();
    let mut received: Vec<OwnedFd> = Vec::with_capacity(usize::from(cores));
    while received.len() < usize::from(cores) {
        // One byte more than a hello, to notice an oversized packet.
        let mut buf = [0_u8; HELLO_BYTES + 1];
        let mut space =
            [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(FDS_PER_PACKET))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let msg = rustix::net::recvmsg(
            socket,
            &mut [IoSliceMut::new(&mut buf)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        )
        .map_err(io_op("receive doorbells"))?;
        // Take ownership of every descriptor first, so none leaks on refusal.
        let mut fds = Vec::new();
        for message in control.drain() {
            if let RecvAncillaryMessage::ScmRights(rights) = message {
                fds.extend(rights);
            }
        }
        if msg.bytes == 0 {
            return Err(LinkError::Closed);
        }
        if msg
            .flags
            .intersects(ReturnFlags::CTRUNC | ReturnFlags::TRUNC)
        {
            return Err(LinkError::Refused("truncated packet"));
        }
        let hello = Hello::decode(&buf[..msg.bytes])?;
        if hello.plane != peer {
            return Err(LinkError::Refused("hello from the same plane"));
        }
        if hello.cores != cores {
            return Err(LinkError::Refused("core count differs"));
        }
        if hello.instance != side.segment.instance() {
            return Err(LinkError::Refused("peer mapped another segment instance"));
        }
        if hello.generation != side.segment.side(peer).generation() {
            return Err(LinkError::Refused("hello from a stale peer generation"));
        }
        if usize::from(hello.first) != received.len()
            || usize::from(hello.count) != fds.len()
            || fds.is_empty()
        {
            return Err(LinkError::Refused("doorbells out of order or miscounted"));
        }
        received.extend(fds);
    }
    if received.len() != usize::from(cores) {
        return Err(LinkError::Refused("more doorbells than cores"));
    }
    Ok(received)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_round_trips_and_refuses_garbage() {
        let hello = Hello {
            plane: Plane::Data,
            cores: 130,
            first: 64,
            count: 64,
            generation: Generation(9),
            instance: 0xDEAD_BEEF,
        };
        assert_eq!(Hello::decode(&hello.encode()).unwrap(), hello);
        let mut bad = hello.encode();
        bad[0] = b'X';
        assert!(matches!(Hello::decode(&bad), Err(LinkError::Refused(_))));
        let mut bad = hello.encode();
        bad[10] = 3;
        assert!(matches!(Hello::decode(&bad), Err(LinkError::Refused(_))));
        assert!(matches!(
            Hello::decode(&hello.encode()[..31]),
            Err(LinkError::Refused(_))
        ));
    }
}
