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
//! direction starts with plain non-blocking `read(2)`/`write(2)` through a
//! pooled 16 KiB buffer — one system call each way for a small message,
//! where splice needs two plus a pipe — and switches to splice for good
//! once [`BULK_STREAK`] reads in a row fill the whole buffer. The buffer is
//! held only while bytes are in flight, like the pipe.
#![allow(unsafe_code)]

use std::cell::RefCell;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use monoio::net::TcpStream;

use super::{Failure, IoOp, RelaySide, Turn};
use crate::pool::BufPool;

/// Full-buffer reads in a row after which a direction is bulk and splices.
pub(crate) const BULK_STREAK: u32 = 2;

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

/// Moves bytes `src` → `dst` until `src` reaches end of stream, then sends
/// FIN on `dst`. Calls `count` with every chunk delivered to `dst`.
///
/// Both sockets must be non-blocking ([`set_nonblocking`]). Cancel-safe in
/// the sense the engine needs: dropping the future closes a pipe that
/// still holds bytes; it never blocks the thread.
pub(crate) async fn pump(
    src: &TcpStream,
    src_side: RelaySide,
    dst: &TcpStream,
    dst_side: RelaySide,
    pipes: &PipePool,
    copy_first: Option<&BufPool>,
    mut count: impl FnMut(u64),
) -> Result<(), Failure> {
    let fail = |side, op, err: io::Error| Failure::Io {
        side,
        op,
        kind: err.kind(),
    };
    if let Some(bufs) = copy_first {
        let ended = copy_until_bulk(src, src_side, dst, dst_side, bufs, &mut count).await?;
        if ended {
            let _ = shutdown_write(dst);
            return Ok(());
        }
    }
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
                    return Err(Failure::Io {
                        side: dst_side,
                        op: IoOp::Write,
                        kind: io::ErrorKind::WriteZero,
                    });
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

/// The copy phase of `relay = "auto"`: relays with `read(2)`/`write(2)`
/// through a pooled buffer until the direction proves to be bulk
/// (`Ok(false)`: go on with splice) or the source ends (`Ok(true)`).
async fn copy_until_bulk(
    src: &TcpStream,
    src_side: RelaySide,
    dst: &TcpStream,
    dst_side: RelaySide,
    bufs: &BufPool,
    count: &mut impl FnMut(u64),
) -> Result<bool, Failure> {
    let fail = |side, op, err: io::Error| Failure::Io {
        side,
        op,
        kind: err.kind(),
    };
    let mut streak = 0;
    let mut turn = Turn::default();
    loop {
        let mut loan = bufs.take();
        let mut buf = loan.lend();
        let read = read_into(src.as_raw_fd(), &mut buf);
        let n = match read {
            Ok(0) => return Ok(true),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                // Nothing to read: the buffer goes back while we wait.
                loan.restore(buf);
                drop(loan);
                src.readable(false)
                    .await
                    .map_err(|e| fail(src_side, IoOp::Read, e))?;
                turn.waited();
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                loan.restore(buf);
                continue;
            }
            Err(e) => return Err(fail(src_side, IoOp::Read, e)),
        };
        let mut sent = 0;
        while sent < n {
            match write_from(dst.as_raw_fd(), &buf[sent..n]) {
                Ok(0) => {
                    return Err(Failure::Io {
                        side: dst_side,
                        op: IoOp::Write,
                        kind: io::ErrorKind::WriteZero,
                    });
                }
                Ok(m) => {
                    sent += m;
                    count(m as u64);
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
        let full = n == buf.capacity();
        loan.restore(buf);
        drop(loan);
        streak = if full { streak + 1 } else { 0 };
        if streak >= BULK_STREAK {
            return Ok(false);
        }
        if full {
            turn.moved(n as u64).await;
        } else {
            // A short read emptied the socket: wait for more instead of a
            // `read` that would only say EAGAIN (one system call less per
            // exchange).
            src.readable(false)
                .await
                .map_err(|e| fail(src_side, IoOp::Read, e))?;
            turn.waited();
        }
    }
}

/// One non-blocking `read(2)` into the spare capacity of `buf`, which must
/// be empty; on success `buf` holds the bytes read.
fn read_into(fd: RawFd, buf: &mut Vec<u8>) -> io::Result<usize> {
    buf.clear();
    // SAFETY: the pointer and length describe `buf`'s allocated capacity,
    // which the kernel may write; the descriptor is open (the caller
    // borrows its owner).
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.capacity()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = usize::try_from(n).unwrap_or(0).min(buf.capacity());
    // SAFETY: the kernel initialized the first `n` bytes (n <= capacity).
    unsafe { buf.set_len(n) };
    Ok(n)
}

/// One non-blocking `write(2)` of `bytes`.
fn write_from(fd: RawFd, bytes: &[u8]) -> io::Result<usize> {
    // SAFETY: the pointer and length describe the initialized slice; the
    // descriptor is open (the caller borrows its owner).
    let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
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
