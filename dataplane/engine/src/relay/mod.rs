//! The bidirectional relay between a client and its back end.
//!
//! [`run`] is the one entry point. It picks the path:
//!
//! - **splice** when both sides are plain TCP ([`Side::into_tcp`]) and the
//!   core's [`RelayMode`] allows it: bytes go socket → pipe → socket and
//!   never enter user space (`relay::splice`);
//! - **copy** otherwise (a TLS side, or `relay = "copy"`): bytes go through
//!   two pooled 16 KiB buffers, one per direction (`relay::copy`).
//!
//! Both paths run the two directions concurrently and propagate half-close:
//! end of stream one way shuts the other socket down for writing, and the
//! opposite direction runs on until its own end of stream. The relay ends
//! when both directions have finished ([`RelayEnd::Completed`]) or at the
//! first I/O error ([`RelayEnd::Failed`], naming the side at fault).
//!
//! What it leaves to its caller (the engine's session task): the idle
//! timeout and the drain cut, which end the relay by dropping its future
//! (in-flight operations are cancelled, pipes holding bytes are closed),
//! and the `session_closed` event. Every delivered chunk is counted into the
//! [`Session`], which is what the idle watchdog and the core counters read.

mod copy;
mod splice;

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use monoio::io::{AsyncReadRent, AsyncWriteRent, Splitable};
use monoio::net::TcpStream;
use monoio::net::UnixStream;
use monoio::net::tcp::{TcpOwnedReadHalf, TcpOwnedWriteHalf};
use monoio::net::unix::{UnixOwnedReadHalf, UnixOwnedWriteHalf};

pub(crate) use splice::PipePool;

use crate::config::RelayMode;
use crate::session::Session;

/// One end of a relayed session: a plain TCP stream, or a stream that
/// transforms bytes (TLS) and therefore relays by copy.
///
/// Implement it for a TLS stream type by returning `Err(self)` from
/// [`Side::into_tcp`] and splitting into halves whose reads and writes may
/// run concurrently.
pub trait Side: Sized {
    /// The read half after [`Side::into_split`].
    type Read: AsyncReadRent;
    /// The write half after [`Side::into_split`]; its `shutdown` sends the
    /// end of stream (FIN, or TLS close_notify then FIN).
    type Write: AsyncWriteRent;

    /// The underlying TCP stream when bytes cross this side unchanged (so
    /// they may be spliced), or `self` back.
    fn into_tcp(self) -> Result<TcpStream, Self>;

    /// Separates the halves so the two directions can run at once.
    fn into_split(self) -> (Self::Read, Self::Write);
}

impl Side for TcpStream {
    type Read = TcpOwnedReadHalf;
    type Write = TcpOwnedWriteHalf;

    fn into_tcp(self) -> Result<TcpStream, Self> {
        Ok(self)
    }

    fn into_split(self) -> (Self::Read, Self::Write) {
        Splitable::into_split(self)
    }
}

impl Side for UnixStream {
    type Read = UnixOwnedReadHalf;
    type Write = UnixOwnedWriteHalf;

    /// A unix stream is never spliced with a TCP peer here: it relays by
    /// copy.
    fn into_tcp(self) -> Result<TcpStream, Self> {
        Err(self)
    }

    fn into_split(self) -> (Self::Read, Self::Write) {
        Splitable::into_split(self)
    }
}

/// Which side of the session an event concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RelaySide {
    /// The connection the core accepted.
    Client,
    /// The connection the handler opened (worker, server, peer).
    Backend,
}

/// The kind of I/O that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IoOp {
    /// Receiving from the side.
    Read,
    /// Sending to the side.
    Write,
}

/// How bytes moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RelayPath {
    /// `splice(2)` through pipes.
    Splice,
    /// Pooled buffers.
    Copy,
}

/// How a relay ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RelayEnd {
    /// Both directions reached end of stream and were shut down in turn.
    Completed,
    /// An I/O error on `side` ended the session.
    Failed {
        /// The side whose socket failed.
        side: RelaySide,
        /// What was being done to it.
        op: IoOp,
        /// The error.
        kind: io::ErrorKind,
    },
    /// The core could not get a resource (a pipe: descriptors exhausted).
    Internal(io::ErrorKind),
}

/// What [`run`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayOutcome {
    /// How the relay ended.
    pub end: RelayEnd,
    /// Which path moved the bytes.
    pub path: RelayPath,
    /// Bytes this relay delivered client → back end (including the prefix).
    pub up: u64,
    /// Bytes this relay delivered back end → client.
    pub down: u64,
}

/// Bytes a direction may move before it lets the other tasks of its core
/// run. Without it a direction whose source never runs dry (loopback bulk,
/// legacy driver answering from readiness) would hold the core.
pub(crate) const BYTES_PER_TURN: u64 = 1_024 * 1_024;

/// Counts moved bytes and yields to the core's scheduler every
/// [`BYTES_PER_TURN`].
#[derive(Debug, Default)]
pub(crate) struct Turn {
    moved: u64,
}

impl Turn {
    pub(crate) async fn moved(&mut self, n: u64) {
        self.moved += n;
        if self.moved >= BYTES_PER_TURN {
            self.moved = 0;
            YieldNow { yielded: false }.await;
        }
    }

    /// The direction waited for its socket: the turn starts over.
    pub(crate) fn waited(&mut self) {
        self.moved = 0;
    }
}

/// Lets the other tasks of the core run once, then continues.
pub(crate) fn yield_now() -> impl Future<Output = ()> {
    YieldNow { yielded: false }
}

/// Pending once (after re-queueing the task), then ready.
struct YieldNow {
    yielded: bool,
}

impl Future for YieldNow {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.yielded {
            return Poll::Ready(());
        }
        self.yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// Why one direction stopped early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    Io {
        side: RelaySide,
        op: IoOp,
        kind: io::ErrorKind,
    },
    Internal(io::ErrorKind),
}

impl Failure {
    /// An I/O failure of `op` on `side`.
    pub(crate) fn io(side: RelaySide, op: IoOp, kind: io::ErrorKind) -> Failure {
        Failure::Io { side, op, kind }
    }
}

impl From<Failure> for RelayEnd {
    fn from(failure: Failure) -> RelayEnd {
        match failure {
            Failure::Io { side, op, kind } => RelayEnd::Failed { side, op, kind },
            Failure::Internal(kind) => RelayEnd::Internal(kind),
        }
    }
}

/// Relays `client` ↔ `backend` until both directions end or one fails.
///
/// `initial_to_backend` holds client bytes the handler already read (the
/// rest of a detection read, say); they are written to the back end first.
/// Bytes are counted into `session` as they are delivered. The path follows
/// `session`'s relay mode: splice for two plain TCP sides unless the mode
/// is [`RelayMode::Copy`], copy otherwise.
///
/// Call it once per session, after the handshake (see
/// [`Session::established`]). Dropping the future ends the relay at once.
pub async fn run<C: Side, B: Side>(
    session: &Session,
    client: C,
    backend: B,
    initial_to_backend: &[u8],
) -> RelayOutcome {
    let (up0, down0) = (session.bytes_up(), session.bytes_down());
    let splice_allowed = session.relay_mode() != RelayMode::Copy;
    let (path, end) = match (splice_allowed, client.into_tcp(), backend.into_tcp()) {
        (true, Ok(client), Ok(backend)) => (
            RelayPath::Splice,
            run_splice(session, client, backend, initial_to_backend).await,
        ),
        (_, client, backend) => (
            RelayPath::Copy,
            run_copy(session, client, backend, initial_to_backend).await,
        ),
    };
    RelayOutcome {
        end,
        path,
        up: session.bytes_up().wrapping_sub(up0),
        down: session.bytes_down().wrapping_sub(down0),
    }
}

/// Writes the bytes a handler read ahead to the back end and counts them
/// up; nothing to do when there are none.
async fn send_prefix<W: AsyncWriteRent>(
    session: &Session,
    backend: &mut W,
    prefix: &[u8],
) -> Result<(), Failure> {
    if prefix.is_empty() {
        return Ok(());
    }
    copy::write_prefix(backend, RelaySide::Backend, prefix, session.buffers()).await?;
    session.count_up(prefix.len() as u64);
    Ok(())
}

async fn run_splice(
    session: &Session,
    client: TcpStream,
    mut backend: TcpStream,
    initial_to_backend: &[u8],
) -> RelayEnd {
    if let Err(failure) = send_prefix(session, &mut backend, initial_to_backend).await {
        return failure.into();
    }
    let copy_first = (session.relay_mode() == RelayMode::Auto).then(|| splice::CopyFirst {
        bufs: session.buffers(),
        hot_for: session.copy_hot(),
    });
    if copy_first.is_none() {
        for stream in [&client, &backend] {
            if let Err(e) = splice::set_nonblocking(stream) {
                return RelayEnd::Internal(e.kind());
            }
        }
    }
    let (client, backend) = (splice::Socket::new(client), splice::Socket::new(backend));
    let pipes = session.pipes();
    let up = splice::pump(
        &client,
        RelaySide::Client,
        &backend,
        RelaySide::Backend,
        pipes,
        copy_first,
        |n| session.count_up(n),
    );
    let down = splice::pump(
        &backend,
        RelaySide::Backend,
        &client,
        RelaySide::Client,
        pipes,
        copy_first,
        |n| session.count_down(n),
    );
    match monoio::try_join!(up, down) {
        Ok(((), ())) => RelayEnd::Completed,
        Err(failure) => failure.into(),
    }
}

/// Copies both ways; `client` and `backend` are each either a plain TCP
/// stream (`Ok`) or the original side (`Err`).
async fn run_copy<C: Side, B: Side>(
    session: &Session,
    client: Result<TcpStream, C>,
    backend: Result<TcpStream, B>,
    initial: &[u8],
) -> RelayEnd {
    match (client, backend) {
        (Ok(c), Ok(b)) => {
            copy_halves(session, Side::into_split(c), Side::into_split(b), initial).await
        }
        (Ok(c), Err(b)) => {
            copy_halves(session, Side::into_split(c), Side::into_split(b), initial).await
        }
        (Err(c), Ok(b)) => {
            copy_halves(session, Side::into_split(c), Side::into_split(b), initial).await
        }
        (Err(c), Err(b)) => {
            copy_halves(session, Side::into_split(c), Side::into_split(b), initial).await
        }
    }
}

async fn copy_halves<CR, CW, BR, BW>(
    session: &Session,
    (mut client_read, mut client_write): (CR, CW),
    (mut backend_read, mut backend_write): (BR, BW),
    initial_to_backend: &[u8],
) -> RelayEnd
where
    CR: AsyncReadRent,
    CW: AsyncWriteRent,
    BR: AsyncReadRent,
    BW: AsyncWriteRent,
{
    if let Err(failure) = send_prefix(session, &mut backend_write, initial_to_backend).await {
        return failure.into();
    }
    let bufs = session.buffers();
    let up = copy::pump(
        &mut client_read,
        RelaySide::Client,
        &mut backend_write,
        RelaySide::Backend,
        bufs,
        |n| session.count_up(n),
    );
    let down = copy::pump(
        &mut backend_read,
        RelaySide::Backend,
        &mut client_write,
        RelaySide::Client,
        bufs,
        |n| session.count_down(n),
    );
    match monoio::try_join!(up, down) {
        Ok(((), ())) => RelayEnd::Completed,
        Err(failure) => failure.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    fn polls_pending_once(turn: &mut Turn, n: u64) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        let mut step = std::pin::pin!(turn.moved(n));
        match step.as_mut().poll(&mut cx) {
            Poll::Ready(()) => false,
            Poll::Pending => {
                assert!(step.as_mut().poll(&mut cx).is_ready(), "pending only once");
                true
            }
        }
    }

    #[test]
    fn a_direction_yields_once_per_turn_of_bytes() {
        let mut turn = Turn::default();
        let chunk = 64 * 1_024;
        let yields = (0..64)
            .filter(|_| polls_pending_once(&mut turn, chunk))
            .count();
        assert_eq!(yields as u64, 64 * chunk / BYTES_PER_TURN);
    }

    #[test]
    fn waiting_for_the_socket_starts_a_new_turn() {
        let mut turn = Turn::default();
        assert!(!polls_pending_once(&mut turn, BYTES_PER_TURN - 1));
        turn.waited();
        assert!(!polls_pending_once(&mut turn, BYTES_PER_TURN - 1));
        assert!(polls_pending_once(&mut turn, 1));
    }
}
