//! A stream that first replays bytes already read from it.
//!
//! Detection reads the first bytes of a connection to pick a handler; the
//! handler must still see them. [`Replay`] yields that prefix first, then
//! reads from the inner stream. Writes always go straight to the inner
//! stream. Once the prefix is drained its buffer is freed and every read is
//! one branch away from the inner stream's own.
//!
//! A plain-TCP relay that wants `splice(2)` needs the bare socket:
//! [`Replay::into_parts`] returns it with the bytes still owed to the
//! handler, which the relay writes to the back end first (pass them as
//! `initial_to_backend` to [`relay::run`](crate::relay::run)). As a relay
//! [`Side`], a replay is plain TCP only once its prefix is drained.

use monoio::BufResult;
use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent};

use crate::relay::Side;
use crate::rent;

/// A stream `S` whose reads first yield a prefix of bytes read from it earlier.
///
/// Call order: none; reads and writes may interleave freely. Reads return
/// prefix bytes (at most what the buffer holds, never mixing prefix and
/// fresh bytes in one read) until the prefix is drained, then whatever the
/// inner stream returns.
#[derive(Debug)]
pub struct Replay<S> {
    inner: S,
    prefix: Vec<u8>,
    /// Bytes of `prefix` already handed out.
    at: usize,
}

impl<S> Replay<S> {
    /// Wraps `inner`, which will be read only after `prefix` is drained.
    pub fn new(inner: S, prefix: Vec<u8>) -> Replay<S> {
        Replay {
            inner,
            prefix,
            at: 0,
        }
    }

    /// The prefix bytes not yet read.
    pub fn pending(&self) -> &[u8] {
        self.prefix.get(self.at..).unwrap_or_default()
    }

    /// The inner stream (for addresses and socket options; reading from it
    /// directly skips the pending prefix).
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// The inner stream, mutably (same caveat as [`Replay::inner`]).
    pub fn inner_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner stream and the prefix bytes not yet read, in order: the
    /// caller owes those bytes to whoever reads the stream next (a relay
    /// writes them to the back end before it splices).
    pub fn into_parts(mut self) -> (S, Vec<u8>) {
        self.prefix.drain(..self.at.min(self.prefix.len()));
        (self.inner, self.prefix)
    }

    /// Whether prefix bytes are still pending.
    fn replaying(&self) -> bool {
        self.at < self.prefix.len()
    }

    /// Serves a read from the prefix; frees the prefix once drained.
    fn read_prefix<T: IoBufMut>(&mut self, mut buf: T) -> BufResult<usize, T> {
        let n = rent::fill_from(&mut buf, self.pending());
        self.at += n;
        if !self.replaying() {
            self.prefix = Vec::new();
            self.at = 0;
        }
        (Ok(n), buf)
    }
}

impl<S: AsyncReadRent> AsyncReadRent for Replay<S> {
    async fn read<T: IoBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        if self.replaying() {
            self.read_prefix(buf)
        } else {
            self.inner.read(buf).await
        }
    }

    async fn readv<T: IoVecBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        if self.replaying() {
            rent::readv_first(self, buf).await
        } else {
            self.inner.readv(buf).await
        }
    }
}

impl<S: AsyncWriteRent> AsyncWriteRent for Replay<S> {
    fn write<T: IoBuf>(&mut self, buf: T) -> impl Future<Output = BufResult<usize, T>> {
        self.inner.write(buf)
    }

    fn writev<T: IoVecBuf>(&mut self, buf: T) -> impl Future<Output = BufResult<usize, T>> {
        self.inner.writev(buf)
    }

    fn flush(&mut self) -> impl Future<Output = std::io::Result<()>> {
        self.inner.flush()
    }

    fn shutdown(&mut self) -> impl Future<Output = std::io::Result<()>> {
        self.inner.shutdown()
    }
}

impl<S: Side> Side for Replay<S> {
    type Read = Replay<S::Read>;
    type Write = S::Write;

    /// The inner stream's TCP stream, but only with no prefix pending
    /// (spliced bytes would overtake it); else `self` back.
    fn into_tcp(self) -> Result<monoio::net::TcpStream, Self> {
        if self.replaying() {
            return Err(self);
        }
        self.inner
            .into_tcp()
            .map_err(|inner| Replay::new(inner, Vec::new()))
    }

    /// The pending prefix goes with the read half.
    fn into_split(self) -> (Self::Read, Self::Write) {
        let (inner, prefix) = self.into_parts();
        let (read, write) = inner.into_split();
        (Replay::new(read, prefix), write)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run<F: Future>(future: F) -> F::Output {
        monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .build()
            .expect("legacy runtime")
            .block_on(future)
    }

    #[test]
    fn replays_prefix_then_reads_inner() {
        run(async {
            let inner: &[u8] = b" world";
            let mut replay = Replay::new(inner, b"hello".to_vec());
            let (n, buf) = replay.read(Vec::with_capacity(3)).await;
            assert_eq!((n.unwrap(), &buf[..]), (3, &b"hel"[..]));
            let (n, buf) = replay.read(Vec::with_capacity(64)).await;
            assert_eq!((n.unwrap(), &buf[..]), (2, &b"lo"[..]));
            let (n, buf) = replay.read(Vec::with_capacity(64)).await;
            assert_eq!((n.unwrap(), &buf[..]), (6, &b" world"[..]));
        });
    }

    #[test]
    fn into_parts_returns_only_unread_prefix() {
        run(async {
            let inner: &[u8] = b"";
            let mut replay = Replay::new(inner, b"abcdef".to_vec());
            let (n, _) = replay.read(Vec::with_capacity(2)).await;
            assert_eq!(n.unwrap(), 2);
            assert_eq!(replay.pending(), b"cdef");
            let (_, rest) = replay.into_parts();
            assert_eq!(rest, b"cdef");
        });
    }

    #[test]
    fn drained_prefix_is_freed() {
        run(async {
            let inner: &[u8] = b"";
            let mut replay = Replay::new(inner, b"ab".to_vec());
            let _ = replay.read(Vec::with_capacity(8)).await;
            assert!(replay.pending().is_empty());
            assert_eq!(replay.prefix.capacity(), 0);
        });
    }

    #[test]
    fn readv_serves_prefix_into_first_iovec() {
        run(async {
            let inner: &[u8] = b"";
            let mut replay = Replay::new(inner, b"xyz".to_vec());
            let bufs = monoio::buf::VecBuf::from(vec![vec![0; 2], vec![0; 4]]);
            let (n, bufs) = replay.readv(bufs).await;
            assert_eq!(n.unwrap(), 2);
            let bufs: Vec<Vec<u8>> = bufs.into();
            assert_eq!(bufs[0], b"xy");
        });
    }
}
