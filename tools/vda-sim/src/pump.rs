//! Full-duplex I/O around a sans-IO CGP endpoint (the sim's session or the
//! client): one future that writes what the endpoint has to send and reads
//! what arrives, in the same poll, so neither side can deadlock the other
//! by writing while the other writes too.
//!
//! Cancel-safe: all progress lives in [`Pump`] and the endpoint, so a
//! `tokio::select!` may drop a pending [`Pump::run`] without losing bytes.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// How many bytes the endpoint appends per `poll_transmit` call, at least.
const TRANSMIT_BUDGET: usize = 256 * 1024;

/// Size of the read buffer.
const READ_BUFFER: usize = 64 * 1024;

/// A sans-IO endpoint the pump drives.
pub(crate) trait Endpoint {
    /// What `handle_input` refuses.
    type Error;

    /// Takes bytes read from the peer (any split; the endpoint buffers
    /// partial packets).
    fn handle_input(&mut self, input: &[u8]) -> Result<(), Self::Error>;

    /// Appends bytes to send, stopping once `out` holds about `budget`
    /// bytes; appends nothing when there is nothing to send.
    fn poll_transmit(&mut self, out: &mut Vec<u8>, budget: usize);
}

/// What one [`Pump::run`] ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pumped {
    /// Bytes arrived and the endpoint took them.
    Received,
    /// Everything the endpoint had to send is written and flushed.
    Flushed,
    /// The peer ended its direction (end of stream).
    Closed,
}

/// When [`Pump::run`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Until {
    /// After the first read (or end of stream).
    Received,
    /// Once the output is written and flushed, reading meanwhile; or at
    /// end of stream.
    Flushed,
}

/// Why [`Pump::run`] failed.
#[derive(Debug)]
pub(crate) enum PumpError<E> {
    /// The stream failed.
    Io(io::Error),
    /// The endpoint refused the input.
    Endpoint(E),
}

/// The output buffer and read buffer of one connection.
#[derive(Debug)]
pub(crate) struct Pump<S> {
    io: S,
    out: Vec<u8>,
    written: usize,
    read_buf: Box<[u8]>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Pump<S> {
    /// A pump over `io` with nothing pending.
    pub(crate) fn new(io: S) -> Self {
        Pump {
            io,
            out: Vec::new(),
            written: 0,
            read_buf: vec![0; READ_BUFFER].into_boxed_slice(),
        }
    }

    /// Writes and reads until `until` holds.
    pub(crate) async fn run<E: Endpoint>(
        &mut self,
        endpoint: &mut E,
        until: Until,
    ) -> Result<Pumped, PumpError<E::Error>> {
        poll_fn(|cx| self.poll_run(cx, endpoint, until)).await
    }

    /// The stream, for the caller to close or inspect.
    pub(crate) fn into_inner(self) -> S {
        self.io
    }

    fn poll_run<E: Endpoint>(
        &mut self,
        cx: &mut Context<'_>,
        endpoint: &mut E,
        until: Until,
    ) -> Poll<Result<Pumped, PumpError<E::Error>>> {
        loop {
            let drained = self.poll_write(cx, endpoint).map_err(PumpError::Io)?;
            if drained {
                let flushed = Pin::new(&mut self.io)
                    .poll_flush(cx)
                    .map_err(PumpError::Io)?;
                if until == Until::Flushed && flushed.is_ready() {
                    return Poll::Ready(Ok(Pumped::Flushed));
                }
            }
            let mut read = ReadBuf::new(&mut self.read_buf);
            ready!(Pin::new(&mut self.io).poll_read(cx, &mut read)).map_err(PumpError::Io)?;
            if read.filled().is_empty() {
                return Poll::Ready(Ok(Pumped::Closed));
            }
            endpoint
                .handle_input(read.filled())
                .map_err(PumpError::Endpoint)?;
            if until == Until::Received {
                return Poll::Ready(Ok(Pumped::Received));
            }
        }
    }

    /// Writes until the stream would block or the endpoint has nothing
    /// more; answers whether everything is written.
    fn poll_write<E: Endpoint>(
        &mut self,
        cx: &mut Context<'_>,
        endpoint: &mut E,
    ) -> Result<bool, io::Error> {
        loop {
            if self.written == self.out.len() {
                self.out.clear();
                self.written = 0;
                endpoint.poll_transmit(&mut self.out, TRANSMIT_BUDGET);
                if self.out.is_empty() {
                    return Ok(true);
                }
            }
            let pending = self.out.get(self.written..).unwrap_or_default();
            match Pin::new(&mut self.io).poll_write(cx, pending) {
                Poll::Ready(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
                Poll::Ready(Ok(n)) => self.written += n,
                Poll::Ready(Err(error)) => return Err(error),
                Poll::Pending => return Ok(false),
            }
        }
    }
}
