//! Zero-copy relay: `splice(2)` socket → pipe → socket, one direction at a
//! time, driven by the core's readiness events. The only module of the
//! crate allowed `unsafe` code (raw descriptor system calls).
//!
//! Why not io_uring's `IORING_OP_SPLICE` (monoio's `splice` ops): the
//! kernel always runs that opcode in an io-wq worker thread, so every 64 KiB
//! step costs two thread hand-offs, and a splice posted on an idle socket
//! parks a kernel worker until bytes arrive (the worker threads are visible
//! in `/proc/self/task`). Measured on our VM in one prototype run (4
//! streams, 64 KiB writes, loopback): io_uring splice 8–10 Gbit/s, this
//! loop 13.5–15.7, pooled copy 7–8. So the core waits for readiness through its
//! driver (an io_uring `POLL_ADD`, or epoll under the legacy driver) and
//! then calls `splice` itself with `SPLICE_F_NONBLOCK` on non-blocking
//! sockets; it never blocks the thread and never parks a kernel worker.
//!
//! Pipes come from a per-core [`PipePool`]. A direction holds a pipe only
//! while bytes are in flight: it returns the (empty) pipe before it waits
//! for the source to become readable, so an idle session owns no pipe.
//! A pipe that still holds bytes when its session ends (error, cut) is
//! closed instead of pooled.
//!
//! Copy until bulk (`relay = "auto"`, what HAProxy calls splice-auto): a
//! direction starts by copying through a pooled 16 KiB buffer with io_uring
//! receives and sends — one completion per small message, where splice
//! needs two system calls plus a pipe — and switches to splice for good
//! once [`BULK_STREAK`] reads in a row fill the whole buffer. The sockets
//! are made non-blocking only then (splice needs it; io_uring does not).
//! A copying direction keeps its receive posted, and so its buffer, only
//! while bytes keep coming: quiet for `hot_for` it withdraws the receive,
//! returns the buffer and waits for readability holding nothing.
#![allow(unsafe_code)]

use std::cell::{RefCell, UnsafeCell};
use std::future::{Future, poll_fn};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use monoio::BufResult;
use monoio::buf::{IoBuf, Slice};
use monoio::io::{AsyncWriteRent, CancelHandle, CancelableAsyncReadRent, Canceller};
use monoio::net::TcpStream;
use monoio::time::Instant;

use super::{Failure, IoOp, RelaySide, Turn};
use crate::pool::BufPool;

/// Full-buffer reads in a row after which a direction is bulk and splices.
pub(crate) const BULK_STREAK: u32 = 2;

/// The copy phase of the auto relay: its buffers and its window. A message
/// within `hot_for` of the one before makes a direction hot; quiet for
/// between `hot_for` and twice that, it holds nothing again
/// (`EngineConfig::copy_hot_ms`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct CopyFirst<'a> {
    pub(crate) bufs: &'a BufPool,
    pub(crate) hot_for: Duration,
}

/// A pipe: both ends non-blocking, close-on-exec.
#[derive(Debug)]
pub(crate) struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    /// Bytes the pipe can hold (`F_GETPIPE_SZ`).
    capacity: usize,
    /// Bytes spliced in and not yet spliced out.
    held: usize,
}

impl Pipe {
    fn new(size: u32) -> io::Result<Pipe> {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: `fds` is a valid, writable array of two ints, as pipe2
        // requires; on success both entries are fresh descriptors we own.
        let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded, so fds[0] and fds[1] are open descriptors
        // owned by nobody else; OwnedFd takes that ownership exactly once.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let want = libc::c_int::try_from(size).unwrap_or(libc::c_int::MAX);
        // SAFETY: fcntl on a descriptor we own, with an int argument, as
        // F_SETPIPE_SZ expects. A failure (over the unprivileged limit)
        // leaves the size the kernel gave, which is still correct.
        let _ = unsafe { libc::fcntl(write.as_raw_fd(), libc::F_SETPIPE_SZ, want) };
        // SAFETY: F_GETPIPE_SZ takes no argument and only reads the pipe.
        let capacity = unsafe { libc::fcntl(write.as_raw_fd(), libc::F_GETPIPE_SZ) };
        let capacity = usize::try_from(capacity).unwrap_or(0).max(4_096);
        Ok(Pipe {
            read,
            write,
            capacity,
            held: 0,
        })
    }
}

/// A core's free list of empty pipes.
#[derive(Debug)]
pub(crate) struct PipePool {
    free: RefCell<Vec<Pipe>>,
    keep: usize,
    size: u32,
}

impl PipePool {
    /// A pool that keeps at most `keep` idle pipes of `size` bytes.
    pub(crate) fn new(keep: usize, size: u32) -> PipePool {
        PipePool {
            free: RefCell::new(Vec::with_capacity(keep)),
            keep,
            size,
        }
    }

    /// Idle pipes on the free list now.
    #[cfg(test)]
    pub(crate) fn idle(&self) -> usize {
        self.free.borrow().len()
    }

    fn take(&self) -> io::Result<Pipe> {
        match self.free.borrow_mut().pop() {
            Some(pipe) => Ok(pipe),
            None => Pipe::new(self.size),
        }
    }

    fn give(&self, pipe: Pipe) {
        let mut free = self.free.borrow_mut();
        if pipe.held == 0 && free.len() < self.keep {
            free.push(pipe);
        }
    }
}

/// A pipe on loan from a [`PipePool`]; goes back (or is closed, if it
/// still holds bytes) when dropped.
struct PipeLoan<'p> {
    pool: &'p PipePool,
    pipe: Option<Pipe>,
}

impl PipeLoan<'_> {
    fn pipe(&mut self) -> io::Result<&mut Pipe> {
        if self.pipe.is_none() {
            self.pipe = Some(self.pool.take()?);
        }
        // Set just above when it was empty.
        self.pipe
            .as_mut()
            .ok_or_else(|| io::Error::other("pipe vanished"))
    }

    fn release(&mut self) {
        if let Some(pipe) = self.pipe.take() {
            self.pool.give(pipe);
        }
    }
}

impl Drop for PipeLoan<'_> {
    fn drop(&mut self) {
        self.release();
    }
}

/// Puts a socket in non-blocking mode, as the direct `splice` calls need:
/// one `ioctl(FIONBIO)`, which sets `O_NONBLOCK` alone (no `F_GETFL` /
/// `F_SETFL` pair: one system call per socket instead of two).
pub(crate) fn set_nonblocking(stream: &TcpStream) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: FIONBIO on a descriptor owned by `stream`, which the caller
    // borrows for the call; the argument points to a live `c_int`.
    let rc = unsafe { libc::ioctl(stream.as_raw_fd(), libc::FIONBIO, &raw const on) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sends FIN on `stream` (`shutdown(SHUT_WR)`), keeping its read side open.
pub(crate) fn shutdown_write(stream: &TcpStream) -> io::Result<()> {
    // SAFETY: shutdown on a descriptor owned by the borrowed `stream`.
    let rc = unsafe { libc::shutdown(stream.as_raw_fd(), libc::SHUT_WR) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// One socket of a spliced session, shared by its two directions: one
/// receives from it, the other sends to it.
///
/// monoio's stream operations take `&mut self`, and the two directions run
/// as two futures of one task, so each needs its own way to the stream —
/// what monoio's `OwnedReadHalf`/`OwnedWriteHalf` give through an
/// `Rc<UnsafeCell<_>>`. This is the same cell without the `Rc` (the session
/// owns both sockets and outlives both directions) and without the halves'
/// `shutdown(2)` on drop (the relay sends its FINs itself).
pub(crate) struct Socket(UnsafeCell<TcpStream>);

impl Socket {
    pub(crate) fn new(stream: TcpStream) -> Socket {
        Socket(UnsafeCell::new(stream))
    }

    /// The stream, for readiness waits and raw descriptor system calls.
    pub(crate) fn stream(&self) -> &TcpStream {
        // SAFETY: a `Socket` lives on one core thread (`TcpStream` is not
        // `Send`) and is neither moved nor dropped while borrowed. The only
        // `&mut` made from the cell is in `recv` and `send`, which monoio
        // uses to clone the descriptor into the operation it submits and
        // then only holds: the same aliasing monoio's own split halves make.
        unsafe { &*self.0.get() }
    }

    /// An io_uring receive into `buf` (a `recv` the driver emulates with
    /// readiness under the legacy driver) that `cancel` can withdraw.
    async fn recv(&self, buf: Vec<u8>, cancel: CancelHandle) -> BufResult<usize, Vec<u8>> {
        // SAFETY: see `stream`; only one direction receives from a socket,
        // so there is never more than one receive on it at a time.
        let stream = unsafe { &mut *self.0.get() };
        stream.cancelable_read(buf, cancel).await
    }

    /// An io_uring send of the slice.
    async fn send(&self, buf: Slice<Vec<u8>>) -> BufResult<usize, Slice<Vec<u8>>> {
        // SAFETY: see `stream`; only one direction sends to a socket.
        let stream = unsafe { &mut *self.0.get() };
        stream.write(buf).await
    }
}

/// Moves bytes `src` → `dst` until `src` reaches end of stream, then sends
/// FIN on `dst`. Calls `count` with every chunk delivered to `dst`.
///
/// Without `copy_first` both sockets must already be non-blocking
/// ([`set_nonblocking`]); with it the copy phase runs on the sockets as
/// they are and the direction makes both non-blocking when it turns to
/// splice. Cancel-safe in the sense the engine needs: dropping the future
/// closes a pipe that still holds bytes; it never blocks the thread.
pub(crate) async fn pump(
    src: &Socket,
    src_side: RelaySide,
    dst: &Socket,
    dst_side: RelaySide,
    pipes: &PipePool,
    copy_first: Option<CopyFirst<'_>>,
    mut count: impl FnMut(u64),
) -> Result<(), Failure> {
    let fail = |side, op, err: io::Error| Failure::io(side, op, err.kind());
    if let Some(phase) = copy_first {
        let ended = copy_until_bulk(src, src_side, dst, dst_side, phase, &mut count).await?;
        if ended {
            let _ = shutdown_write(dst.stream());
            return Ok(());
        }
        for socket in [src, dst] {
            set_nonblocking(socket.stream()).map_err(|e| Failure::Internal(e.kind()))?;
        }
    }
    let (src, dst) = (src.stream(), dst.stream());
    let mut loan = PipeLoan {
        pool: pipes,
        pipe: None,
    };
    let mut turn = Turn::default();
    loop {
        let pipe = loan.pipe().map_err(|e| Failure::Internal(e.kind()))?;
        let moved = match splice(src.as_raw_fd(), pipe.write.as_raw_fd(), pipe.capacity) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                // Nothing to read: hand the empty pipe back while we wait.
                loan.release();
                src.readable(false)
                    .await
                    .map_err(|e| fail(src_side, IoOp::Read, e))?;
                turn.waited();
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(fail(src_side, IoOp::Read, e)),
        };
        pipe.held = moved;
        while pipe.held > 0 {
            match splice(pipe.read.as_raw_fd(), dst.as_raw_fd(), pipe.held) {
                // A pipe holding bytes never yields 0; do not spin if it does.
                Ok(0) => {
                    return Err(Failure::io(dst_side, IoOp::Write, io::ErrorKind::WriteZero));
                }
                Ok(n) => {
                    pipe.held -= n.min(pipe.held);
                    count(n as u64);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    dst.writable(false)
                        .await
                        .map_err(|e| fail(dst_side, IoOp::Write, e))?;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(fail(dst_side, IoOp::Write, e)),
            }
        }
        turn.moved(moved as u64).await;
    }
    loan.release();
    // The peer may already be gone; the other direction reports that.
    let _ = shutdown_write(dst);
    Ok(())
}

/// How a hot spell of the copy phase ended.
enum Spell {
    /// Quiet for `hot_for`: the receive was withdrawn, the buffer returned.
    Cooled,
    /// The source reached end of stream.
    Ended,
    /// [`BULK_STREAK`] full reads in a row: go on with splice.
    Bulk,
}

/// The copy phase of `relay = "auto"`: relays through a pooled buffer until
/// the direction proves to be bulk (`Ok(false)`: go on with splice) or the
/// source ends (`Ok(true)`).
///
/// A cold direction holds nothing: it waits for readability (an io_uring
/// `POLL_ADD`). Bytes make it hot: it takes a buffer and keeps an io_uring
/// receive posted, so each message costs one completion and one send — no
/// readiness round and no `read(2)`/`write(2)` of its own. After `hot_for`
/// to twice that without bytes it withdraws the receive, returns the buffer
/// and is cold again: an idle session owns no buffer.
async fn copy_until_bulk(
    src: &Socket,
    src_side: RelaySide,
    dst: &Socket,
    dst_side: RelaySide,
    phase: CopyFirst<'_>,
    count: &mut impl FnMut(u64),
) -> Result<bool, Failure> {
    let CopyFirst { bufs, hot_for } = phase;
    let mut streak = 0;
    // When the last message went through: a second one within `hot_for`
    // makes the direction hot. A lone message (a request, a close) takes
    // the cheap way and costs no posted receive, timer or spell state.
    let mut last_message: Option<Instant> = None;
    loop {
        src.stream()
            .readable(false)
            .await
            .map_err(|e| Failure::io(src_side, IoOp::Read, e.kind()))?;
        if last_message.is_none_or(|at| at.elapsed() >= hot_for) {
            match one_message(src, src_side, dst, dst_side, bufs, count).await? {
                Moved::Nothing => {}
                Moved::Ended => return Ok(true),
                Moved::Bytes { full } => {
                    streak = if full { streak + 1 } else { 0 };
                    if streak >= BULK_STREAK {
                        return Ok(false);
                    }
                    last_message = Some(Instant::now());
                }
            }
            continue;
        }
        // Boxed: the spell's state (posted receive, timer, send) is a few
        // KiB; inline it would sit in every idle session's task too.
        let spell = Box::pin(hot_spell(
            src,
            src_side,
            dst,
            dst_side,
            phase,
            &mut streak,
            count,
        ));
        match spell.await? {
            Spell::Cooled => last_message = None,
            Spell::Ended => return Ok(true),
            Spell::Bulk => return Ok(false),
        }
    }
}

/// What [`one_message`] did.
enum Moved {
    /// Nothing was there after all (a spurious wake-up).
    Nothing,
    /// The source reached end of stream.
    Ended,
    /// Bytes went through; `full`: they filled the buffer.
    Bytes { full: bool },
}

/// Relays what a readable source holds with one `recv(2)` and one
/// `send(2)` (both `MSG_DONTWAIT`: the sockets may still be blocking), the
/// rest of a short send through io_uring sends.
async fn one_message(
    src: &Socket,
    src_side: RelaySide,
    dst: &Socket,
    dst_side: RelaySide,
    bufs: &BufPool,
    count: &mut impl FnMut(u64),
) -> Result<Moved, Failure> {
    let mut loan = bufs.take();
    let mut buf = loan.lend();
    let n = match recv_now(src.stream().as_raw_fd(), &mut buf) {
        Ok(0) => {
            loan.restore(buf);
            return Ok(Moved::Ended);
        }
        Ok(n) => n,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
            ) =>
        {
            loan.restore(buf);
            return Ok(Moved::Nothing);
        }
        Err(e) => {
            loan.restore(buf);
            return Err(Failure::io(src_side, IoOp::Read, e.kind()));
        }
    };
    let full = n == buf.capacity();
    let sent = match send_now(dst.stream().as_raw_fd(), &buf) {
        Ok(m) => m.min(n),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
            ) =>
        {
            0
        }
        Err(e) => {
            loan.restore(buf);
            return Err(Failure::io(dst_side, IoOp::Write, e.kind()));
        }
    };
    if sent > 0 {
        count(sent as u64);
    }
    if sent < n {
        // Boxed, like the hot spell: a full socket is rare, and the send's
        // state inline would sit in every idle session's task.
        let (result, rest) = Box::pin(send_all(dst, dst_side, buf, sent, count)).await;
        buf = rest;
        if let Err(failure) = result {
            loan.restore(buf);
            return Err(failure);
        }
    }
    loan.restore(buf);
    Ok(Moved::Bytes { full })
}

/// One hot spell of [`copy_until_bulk`]: a posted receive and a loaned
/// buffer until the direction cools, ends or turns bulk.
async fn hot_spell(
    src: &Socket,
    src_side: RelaySide,
    dst: &Socket,
    dst_side: RelaySide,
    phase: CopyFirst<'_>,
    streak: &mut u32,
    count: &mut impl FnMut(u64),
) -> Result<Spell, Failure> {
    let CopyFirst { bufs, hot_for } = phase;
    let mut loan = bufs.take();
    let mut canceller = Canceller::new();
    let mut quiet = pin!(monoio::time::sleep(hot_for));
    // Bytes since the quiet timer was last set: the timer is reset when it
    // fires, not per message.
    let mut active = false;
    let mut turn = Turn::default();
    loop {
        let mut buf = loan.lend();
        buf.clear();
        let (read, buf) = {
            let mut read = pin!(src.recv(buf, canceller.handle()));
            loop {
                let done = poll_fn(|cx| match read.as_mut().poll(cx) {
                    Poll::Ready(done) => Poll::Ready(Some(done)),
                    Poll::Pending => quiet.as_mut().poll(cx).map(|()| None),
                })
                .await;
                match done {
                    Some(done) => break done,
                    // Bytes moved since the timer was set: stay hot.
                    None if active => {
                        active = false;
                        quiet.as_mut().reset(Instant::now() + hot_for);
                    }
                    None => {
                        canceller = canceller.cancel();
                        // Bytes that arrived before the withdrawal are kept.
                        break read.await;
                    }
                }
            }
        };
        let n = match read {
            Ok(0) => {
                loan.restore(buf);
                return Ok(Spell::Ended);
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                loan.restore(buf);
                continue;
            }
            // Withdrawn (quiet), or the other direction made the socket
            // non-blocking and nothing is there: wait cold.
            Err(e)
                if e.raw_os_error() == Some(libc::ECANCELED)
                    || e.kind() == io::ErrorKind::WouldBlock =>
            {
                loan.restore(buf);
                return Ok(Spell::Cooled);
            }
            Err(e) => {
                loan.restore(buf);
                return Err(Failure::io(src_side, IoOp::Read, e.kind()));
            }
        };
        active = true;
        let full = n == buf.capacity();
        let (sent, buf) = send_all(dst, dst_side, buf, 0, count).await;
        loan.restore(buf);
        sent?;
        *streak = if full { *streak + 1 } else { 0 };
        if *streak >= BULK_STREAK {
            return Ok(Spell::Bulk);
        }
        turn.moved(n as u64).await;
    }
}
/// Sends `buf` from byte `sent` on (its length is what was received) to
/// `dst` with io_uring sends, counting each delivered chunk; waits for
/// writability if the socket was made non-blocking and is full. Gives the
/// buffer back either way.
async fn send_all(
    dst: &Socket,
    dst_side: RelaySide,
    mut buf: Vec<u8>,
    mut sent: usize,
    count: &mut impl FnMut(u64),
) -> (Result<(), Failure>, Vec<u8>) {
    let fail = |kind| Failure::io(dst_side, IoOp::Write, kind);
    let n = buf.len();
    while sent < n {
        let (result, slice) = dst.send(buf.slice(sent..n)).await;
        buf = slice.into_inner();
        match result {
            Ok(0) => return (Err(fail(io::ErrorKind::WriteZero)), buf),
            Ok(m) => {
                sent += m;
                count(m as u64);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if let Err(e) = dst.stream().writable(false).await {
                    return (Err(fail(e.kind())), buf);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (Err(fail(e.kind())), buf),
        }
    }
    (Ok(()), buf)
}

/// One `recv(2)` that never blocks (`MSG_DONTWAIT`, whatever the socket's
/// mode) into the spare capacity of `buf`; on success `buf` holds the
/// bytes read.
fn recv_now(fd: RawFd, buf: &mut Vec<u8>) -> io::Result<usize> {
    buf.clear();
    // SAFETY: the pointer and length describe `buf`'s allocated capacity,
    // which the kernel may write; the descriptor is open (the caller
    // borrows its owner).
    let n = unsafe {
        libc::recv(
            fd,
            buf.as_mut_ptr().cast(),
            buf.capacity(),
            libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = usize::try_from(n).unwrap_or(0).min(buf.capacity());
    // SAFETY: the kernel initialized the first `n` bytes (n <= capacity).
    unsafe { buf.set_len(n) };
    Ok(n)
}

/// One `send(2)` that never blocks (`MSG_DONTWAIT`) and never raises
/// SIGPIPE.
fn send_now(fd: RawFd, bytes: &[u8]) -> io::Result<usize> {
    // SAFETY: the pointer and length describe the initialized slice; the
    // descriptor is open (the caller borrows its owner).
    let n = unsafe {
        libc::send(
            fd,
            bytes.as_ptr().cast(),
            bytes.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(usize::try_from(n).unwrap_or(0))
}

/// One non-blocking `splice(2)` of at most `len` bytes.
fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    // SAFETY: both descriptors are open for the duration of the call (the
    // caller borrows their owners); null offsets are what splice requires
    // for pipes and sockets.
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_NONBLOCK | libc::SPLICE_F_MOVE,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(usize::try_from(n).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::cell::Cell;

    use monoio::io::{AsyncReadRent, AsyncReadRentExt, AsyncWriteRentExt};
    use monoio::net::TcpListener;
    use monoio::{IoUringDriver, LegacyDriver, RuntimeBuilder};

    /// A connected loopback pair: (the relay's end, the peer's end).
    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (peer, accepted) = monoio::join!(TcpStream::connect(addr), listener.accept());
        (accepted.unwrap().0, peer.unwrap())
    }

    /// The default window (`EngineConfig::copy_hot_ms`).
    const HOT_FOR: Duration = Duration::from_millis(250);

    /// Relays `src → dst` with the copy phase (window `hot_for`) while the
    /// peers exchange messages with pauses of `pauses_ms`; checks every
    /// byte arrives, that a lone message holds no buffer, that a message
    /// within `hot_for` of the one before makes the direction hot (its
    /// buffer on loan), and after each pause longer than twice `hot_for`,
    /// that the direction has given its buffer back. A zero window: no
    /// message ever leaves the buffer on loan.
    async fn copy_phase_across_pauses(hot_for: Duration, pauses_ms: &[u64]) {
        let bufs = BufPool::new(4);
        let pipes = PipePool::new(4, 65_536);
        let (src_in, mut src_peer) = pair().await;
        let (dst_in, mut dst_peer) = pair().await;
        let (src, dst) = (Socket::new(src_in), Socket::new(dst_in));
        let moved = Cell::new(0_u64);
        let relay = pump(
            &src,
            RelaySide::Client,
            &dst,
            RelaySide::Backend,
            &pipes,
            Some(CopyFirst {
                bufs: &bufs,
                hot_for,
            }),
            |n| moved.set(moved.get() + n),
        );
        let hot_ms = hot_for.as_millis() as u64;
        let cold_after = 2 * hot_ms + 100;
        let peers = async {
            let mut sent = 0_u64;
            let mut previous_pause = u64::MAX;
            for (round, &pause) in pauses_ms.iter().enumerate() {
                let message = format!("message {round}").into_bytes();
                sent += message.len() as u64;
                let (wrote, _) = src_peer.write_all(message.clone()).await;
                wrote.unwrap();
                let reading = dst_peer.read_exact(vec![0; message.len()]);
                let (read, got) = monoio::time::timeout(Duration::from_secs(5), reading)
                    .await
                    .unwrap_or_else(|_| panic!("round {round}: no message within 5 s"));
                read.unwrap();
                assert_eq!(got, message, "round {round}: the bytes arrive whole");
                if round == 0 || hot_ms == 0 {
                    assert_eq!(
                        bufs.idle(),
                        1,
                        "round {round}: a lone message holds no buffer"
                    );
                }
                if previous_pause < hot_ms {
                    assert_eq!(bufs.idle(), 0, "round {round}: hot, the buffer is on loan");
                }
                previous_pause = pause;
                monoio::time::sleep(Duration::from_millis(pause)).await;
                if pause >= cold_after {
                    assert_eq!(bufs.idle(), 1, "round {round}: cold, the buffer is back");
                }
            }
            drop(src_peer);
            let reading = dst_peer.read(vec![0; 16]);
            let (read, _) = monoio::time::timeout(Duration::from_secs(5), reading)
                .await
                .expect("the end of stream arrives within 5 s");
            assert_eq!(read.unwrap(), 0, "the end of stream is passed on");
            sent
        };
        let (relayed, sent) = monoio::join!(relay, peers);
        relayed.unwrap();
        assert_eq!(moved.get(), sent);
        assert_eq!(bufs.idle(), 1, "the session ends with its buffer back");
    }

    /// Pauses around the hot window's edges: well past it (cold, then a
    /// readiness wait wakes the direction) and just inside and outside
    /// (bytes arriving while the receive is being withdrawn).
    const PAUSES_MS: [u64; 12] = [650, 100, 100, 650, 240, 260, 490, 510, 530, 650, 100, 0];

    /// [`copy_phase_across_pauses`] on a fresh runtime of either driver.
    fn copy_phase_on(legacy: bool, hot_for: Duration, pauses_ms: &[u64]) {
        let phase = copy_phase_across_pauses(hot_for, pauses_ms);
        if legacy {
            RuntimeBuilder::<LegacyDriver>::new()
                .enable_timer()
                .build()
                .unwrap()
                .block_on(phase);
        } else {
            RuntimeBuilder::<IoUringDriver>::new()
                .enable_timer()
                .build()
                .unwrap()
                .block_on(phase);
        }
    }

    #[test]
    fn copy_phase_goes_cold_when_quiet_and_loses_nothing_io_uring() {
        copy_phase_on(false, HOT_FOR, &PAUSES_MS);
    }

    #[test]
    fn copy_phase_goes_cold_when_quiet_and_loses_nothing_legacy() {
        copy_phase_on(true, HOT_FOR, &PAUSES_MS);
    }

    /// A shorter window (`copy_hot_ms = 100`) is the one in force: pauses
    /// of 20 ms keep the direction hot, 300 ms (more than twice the window,
    /// less than the default's) make it cold.
    #[test]
    fn copy_phase_follows_a_configured_window() {
        copy_phase_on(
            false,
            Duration::from_millis(100),
            &[300, 20, 20, 300, 20, 0],
        );
    }

    /// `copy_hot_ms = 0`: back-to-back messages all take the lone-message
    /// way; the buffer is never left on loan between them.
    #[test]
    fn copy_phase_with_a_zero_window_is_never_hot() {
        for legacy in [false, true] {
            copy_phase_on(legacy, Duration::ZERO, &[0, 0, 5, 0, 5, 0]);
        }
    }

    #[test]
    fn pipes_return_to_the_pool_only_when_empty() {
        let pool = PipePool::new(4, 65_536);
        let mut clean = pool.take().unwrap();
        assert!(clean.capacity >= 4_096);
        clean.held = 0;
        pool.give(clean);
        assert_eq!(pool.idle(), 1);
        let mut dirty = pool.take().unwrap();
        dirty.held = 10;
        pool.give(dirty);
        assert_eq!(pool.idle(), 0);
    }

    #[test]
    fn honours_a_requested_pipe_size() {
        let pool = PipePool::new(1, 256 * 1_024);
        let pipe = pool.take().unwrap();
        // An unprivileged process may be capped by /proc/sys/fs/pipe-max-size
        // (1 MiB by default), well above this request.
        assert_eq!(pipe.capacity, 256 * 1_024);
    }
}
