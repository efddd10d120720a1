//! A server-side TLS stream over any monoio stream: rustls's buffered
//! `ServerConnection` fed from, and flushed to, buffers owned by the stream.
//!
//! ```text
//! socket ─read─► Inbound (16 KiB + record overhead) ─read_tls─► rustls ─reader─► caller's buffer
//! caller's buffer ─writer─► rustls ─write_tls─► Outbound (grows to one flush) ─write_all─► socket
//! ```
//!
//! Both buffers are allocated once per connection and reused; after a
//! cancelled operation (a timeout dropped the future while monoio owned
//! the buffer) the next operation allocates a fresh one. rustls 0.23 itself
//! still allocates one `Vec` per record it decrypts or encrypts (in its
//! buffered and in its unbuffered API); only kernel TLS removes that.
//!
//! A read that finds the peer's `close_notify`, or a TCP close without it,
//! returns 0: the relay half-closes the other side either way (ICA frames
//! its own data, so truncation is not a concern at this layer).
//!
//! Cancellation: dropping a read future is harmless (the next read starts
//! over). Dropping a write, flush or shutdown future may leave a record
//! half-written, after which the peer cannot decrypt the stream: drop the
//! stream too (an idle timeout does exactly that).

use std::cell::RefCell;
use std::io::{self, BufRead, Write};
use std::rc::Rc;

use monoio::BufResult;
use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut, IoVecWrapper};
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use rustls::ServerConnection;

use super::HandshakeError;
use crate::relay::Side;
use crate::rent;

/// Capacity of the ciphertext read buffer: one maximal TLS record
/// (16 KiB payload + 256 bytes of expansion + 5 bytes of header).
const INBOUND_CAPACITY: usize = 16_384 + 256 + 5;

/// A TLS server stream after its handshake: reads and writes plaintext.
///
/// Call order: obtained from [`TlsAcceptor::accept`](super::TlsAcceptor::accept);
/// reads and writes in any order; [`AsyncWriteRent::shutdown`] sends
/// `close_notify` and half-closes the socket. For concurrent reading and
/// writing, split it ([`Side::into_split`]); a relay copies through it
/// (it is never spliced: [`Side::into_tcp`] gives it back).
#[derive(Debug)]
pub struct TlsStream<S> {
    io: S,
    connection: ServerConnection,
    inbound: Inbound,
    outbound: Outbound,
}

impl<S> TlsStream<S> {
    pub(super) fn new(io: S, connection: ServerConnection) -> TlsStream<S> {
        TlsStream {
            io,
            connection,
            inbound: Inbound::default(),
            outbound: Outbound::default(),
        }
    }

    /// The rustls connection (server name, negotiated version and suite).
    pub fn connection(&self) -> &ServerConnection {
        &self.connection
    }

    /// Whether the handshake resumed an earlier session.
    pub fn resumed(&self) -> bool {
        self.connection.handshake_kind() == Some(rustls::HandshakeKind::Resumed)
    }

    /// The stream TLS runs over.
    pub fn inner(&self) -> &S {
        &self.io
    }
}

impl<S: AsyncReadRent + AsyncWriteRent> TlsStream<S> {
    /// Drives the handshake to completion; see [`TlsAcceptor::accept`](super::TlsAcceptor::accept).
    pub(super) async fn handshake(&mut self) -> Result<(), HandshakeError> {
        loop {
            if self.connection.wants_write() {
                self.outbound
                    .flush(&mut self.connection, &mut self.io)
                    .await
                    .map_err(HandshakeError::Io)?;
            }
            if !self.connection.is_handshaking() {
                return Ok(());
            }
            if !self.inbound.has_bytes() {
                let n = self
                    .inbound
                    .fill(&mut self.io)
                    .await
                    .map_err(HandshakeError::Io)?;
                if n == 0 {
                    return Err(HandshakeError::ClosedEarly);
                }
            }
            self.inbound
                .feed(&mut self.connection)
                .map_err(HandshakeError::Io)?;
            if let Err(error) = self.connection.process_new_packets() {
                // Best effort: tell the client why (rustls queued an alert).
                let _ = self
                    .outbound
                    .flush(&mut self.connection, &mut self.io)
                    .await;
                return Err(HandshakeError::Rejected(error));
            }
        }
    }
}

impl<S: AsyncReadRent + AsyncWriteRent> AsyncReadRent for TlsStream<S> {
    async fn read<T: IoBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        // Records rustls queued while reading (a key update, an alert) go
        // out before we wait for more input.
        if self.connection.wants_write() {
            if let Err(error) = self
                .outbound
                .flush(&mut self.connection, &mut self.io)
                .await
            {
                return (Err(error), buf);
            }
        }
        read_plaintext(&mut self.connection, &mut self.inbound, &mut self.io, buf).await
    }

    async fn readv<T: IoVecBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        rent::readv_first(self, buf).await
    }
}

impl<S: AsyncReadRent + AsyncWriteRent> AsyncWriteRent for TlsStream<S> {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        write_plaintext(&mut self.connection, &mut self.outbound, &mut self.io, buf).await
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        writev_first(self, buf).await
    }

    async fn flush(&mut self) -> io::Result<()> {
        self.outbound
            .flush(&mut self.connection, &mut self.io)
            .await?;
        self.io.flush().await
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        self.connection.send_close_notify();
        self.outbound
            .flush(&mut self.connection, &mut self.io)
            .await?;
        self.io.shutdown().await
    }
}

impl<S: Side> Side for TlsStream<S> {
    type Read = TlsReadHalf<S::Read>;
    type Write = TlsWriteHalf<S::Write>;

    /// Always `Err(self)`: bytes change on the way through TLS.
    fn into_tcp(self) -> Result<monoio::net::TcpStream, Self> {
        Err(self)
    }

    /// Splits into halves sharing the rustls state. Records the read half
    /// makes rustls queue (key updates) are sent by the write half's next
    /// write, flush or shutdown.
    fn into_split(self) -> (Self::Read, Self::Write) {
        let (read, write) = self.io.into_split();
        let shared = Shared(Rc::new(RefCell::new(self.connection)));
        (
            TlsReadHalf {
                io: read,
                session: shared.clone(),
                inbound: self.inbound,
            },
            TlsWriteHalf {
                io: write,
                session: shared,
                outbound: self.outbound,
            },
        )
    }
}

/// The reading half of a split [`TlsStream`].
#[derive(Debug)]
pub struct TlsReadHalf<R> {
    io: R,
    session: Shared,
    inbound: Inbound,
}

impl<R: AsyncReadRent> AsyncReadRent for TlsReadHalf<R> {
    async fn read<T: IoBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        read_plaintext(&mut self.session, &mut self.inbound, &mut self.io, buf).await
    }

    async fn readv<T: IoVecBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        rent::readv_first(self, buf).await
    }
}

/// The writing half of a split [`TlsStream`]; `shutdown` sends
/// `close_notify` and half-closes the socket.
#[derive(Debug)]
pub struct TlsWriteHalf<W> {
    io: W,
    session: Shared,
    outbound: Outbound,
}

impl<W: AsyncWriteRent> AsyncWriteRent for TlsWriteHalf<W> {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        write_plaintext(&mut self.session, &mut self.outbound, &mut self.io, buf).await
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        writev_first(self, buf).await
    }

    async fn flush(&mut self) -> io::Result<()> {
        self.outbound.flush(&mut self.session, &mut self.io).await?;
        self.io.flush().await
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        self.session
            .with(|connection| connection.send_close_notify());
        self.outbound.flush(&mut self.session, &mut self.io).await?;
        self.io.shutdown().await
    }
}

/// Access to the rustls state, owned or shared between halves.
trait Session {
    /// Runs `f` on the connection. Never held across an `.await`.
    fn with<R>(&mut self, f: impl FnOnce(&mut ServerConnection) -> R) -> R;
}

impl Session for ServerConnection {
    fn with<R>(&mut self, f: impl FnOnce(&mut ServerConnection) -> R) -> R {
        f(self)
    }
}

/// The rustls state of a split stream. Both halves live on one core's
/// thread and borrow only inside [`Session::with`], which never awaits, so
/// the borrows cannot overlap.
#[derive(Debug, Clone)]
struct Shared(Rc<RefCell<ServerConnection>>);

impl Session for Shared {
    fn with<R>(&mut self, f: impl FnOnce(&mut ServerConnection) -> R) -> R {
        f(&mut self.0.borrow_mut())
    }
}

/// Reads plaintext into `buf`, pulling ciphertext from `io` as needed.
async fn read_plaintext<C, R, T>(
    session: &mut C,
    inbound: &mut Inbound,
    io: &mut R,
    mut buf: T,
) -> BufResult<usize, T>
where
    C: Session,
    R: AsyncReadRent,
    T: IoBufMut,
{
    loop {
        match session.with(|connection| take_plaintext(connection, &mut buf)) {
            Ok(Some(n)) => return (Ok(n), buf),
            Ok(None) => {}
            Err(error) => return (Err(error), buf),
        }
        if !inbound.has_bytes() {
            match inbound.fill(io).await {
                // A TCP close: rustls learns it from an empty read.
                Ok(0) => {
                    if let Err(error) = session.with(|connection| connection.read_tls(&mut &[][..]))
                    {
                        return (Err(error), buf);
                    }
                }
                Ok(_) => {}
                Err(error) => return (Err(error), buf),
            }
        }
        let processed = session.with(|connection| {
            inbound.feed(connection)?;
            connection
                .process_new_packets()
                .map(|_| ())
                .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))
        });
        if let Err(error) = processed {
            return (Err(error), buf);
        }
    }
}

/// Moves buffered plaintext into `buf`: `Some(n)` with data or at the end
/// of the stream (`Some(0)`), `None` when rustls needs more ciphertext.
fn take_plaintext<T: IoBufMut>(
    connection: &mut ServerConnection,
    buf: &mut T,
) -> io::Result<Option<usize>> {
    let mut reader = connection.reader();
    match reader.fill_buf() {
        Ok(chunk) => {
            let n = rent::fill_from(buf, chunk);
            reader.consume(n);
            Ok(Some(n))
        }
        Err(error) if error.kind() == io::ErrorKind::WouldBlock => Ok(None),
        // A TCP close without close_notify ends the stream like a clean
        // close (see the module docs).
        Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => Ok(Some(0)),
        Err(error) => Err(error),
    }
}

/// Encrypts as much of `buf` as rustls takes and writes it all to `io`.
async fn write_plaintext<C, W, T>(
    session: &mut C,
    outbound: &mut Outbound,
    io: &mut W,
    buf: T,
) -> BufResult<usize, T>
where
    C: Session,
    W: AsyncWriteRent,
    T: IoBuf,
{
    // Earlier records first, so rustls has room for these.
    if let Err(error) = outbound.flush(session, io).await {
        return (Err(error), buf);
    }
    let accepted = session.with(|connection| connection.writer().write(rent::filled(&buf)));
    let n = match accepted {
        Ok(n) => n,
        Err(error) => return (Err(error), buf),
    };
    match outbound.flush(session, io).await {
        Ok(()) => (Ok(n), buf),
        Err(error) => (Err(error), buf),
    }
}

/// `writev` in terms of `write`: writes from the first iovec only.
async fn writev_first<W: AsyncWriteRent, T: IoVecBuf>(
    writer: &mut W,
    buf: T,
) -> BufResult<usize, T> {
    match IoVecWrapper::new(buf) {
        Ok(wrapper) => {
            let (result, wrapper) = writer.write(wrapper).await;
            (result, wrapper.into_inner())
        }
        Err(buf) => (Ok(0), buf),
    }
}

/// Ciphertext read from the socket and not yet given to rustls.
#[derive(Default)]
struct Inbound {
    /// `None` only between an interrupted read and the next `fill`.
    buf: Option<Vec<u8>>,
    /// Bytes of `buf` already given to rustls.
    at: usize,
}

impl std::fmt::Debug for Inbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbound")
            .field("buffered", &self.pending().len())
            .finish()
    }
}

impl Inbound {
    fn pending(&self) -> &[u8] {
        self.buf
            .as_deref()
            .and_then(|buf| buf.get(self.at..))
            .unwrap_or_default()
    }

    fn has_bytes(&self) -> bool {
        !self.pending().is_empty()
    }

    /// Reads once from `io` into the (empty) buffer; returns the count, 0 at EOF.
    async fn fill<R: AsyncReadRent>(&mut self, io: &mut R) -> io::Result<usize> {
        let mut buf = self
            .buf
            .take()
            .unwrap_or_else(|| Vec::with_capacity(INBOUND_CAPACITY));
        buf.clear();
        self.at = 0;
        let (result, buf) = io.read(buf).await;
        self.buf = Some(buf);
        result
    }

    /// Gives rustls the buffered ciphertext, as much as one `read_tls`
    /// takes (rustls caps its unprocessed input at one record, so the caller
    /// processes packets before feeding again).
    ///
    /// rustls takes nothing after `close_notify`; the rest is then dropped
    /// and rustls reports the end of the stream, so no caller spins.
    fn feed(&mut self, connection: &mut ServerConnection) -> io::Result<()> {
        let mut rest = self.pending();
        if rest.is_empty() {
            return Ok(());
        }
        let before = rest.len();
        let taken = connection.read_tls(&mut rest)?;
        self.at += before - rest.len();
        if taken == 0 {
            self.at = self.buf.as_ref().map_or(0, Vec::len);
        }
        Ok(())
    }
}

/// TLS records produced by rustls and not yet written to the socket.
#[derive(Default)]
struct Outbound {
    /// `None` only between an interrupted write and the next `flush`.
    buf: Option<Vec<u8>>,
}

impl std::fmt::Debug for Outbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbound")
            .field("capacity", &self.buf.as_ref().map_or(0, Vec::capacity))
            .finish()
    }
}

impl Outbound {
    /// Writes every record rustls has queued to `io`.
    async fn flush<C: Session, W: AsyncWriteRent>(
        &mut self,
        session: &mut C,
        io: &mut W,
    ) -> io::Result<()> {
        loop {
            let mut buf = self.buf.take().unwrap_or_default();
            buf.clear();
            let encoded = session.with(|connection| {
                while connection.wants_write() {
                    if connection.write_tls(&mut buf)? == 0 {
                        break;
                    }
                }
                Ok::<(), io::Error>(())
            });
            if let Err(error) = encoded {
                self.buf = Some(buf);
                return Err(error);
            }
            if buf.is_empty() {
                self.buf = Some(buf);
                return Ok(());
            }
            let (result, buf) = io.write_all(buf).await;
            self.buf = Some(buf);
            result?;
        }
    }
}
