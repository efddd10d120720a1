//! Awaiting a port's doorbell on tokio (feature `tokio`).
//!
//! The control plane wraps each [`ControlPort`](crate::ControlPort) in an
//! [`AsyncPort`] and awaits [`AsyncPort::recv`] in a task; the doorbell
//! eventfd is registered with tokio's reactor through `AsyncFd`.

use std::io;

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use crate::channel::{Port, RecvError, SendError, WaitDecision};
use crate::ids::RequestId;
use crate::message::{Envelope, Message};

/// A [`Port`] whose receive side is awaited on tokio.
#[derive(Debug)]
pub struct AsyncPort<Tx, Rx> {
    inner: AsyncFd<Port<Tx, Rx>>,
}

impl<Tx: Message, Rx: Message> AsyncPort<Tx, Rx> {
    /// Registers the port's doorbell with the current tokio runtime (which
    /// must have I/O enabled).
    pub fn new(port: Port<Tx, Rx>) -> io::Result<Self> {
        // SAFETY: the port's descriptor is its inbound doorbell, owned by
        // the side state the port holds an `Arc` to, so it stays open while
        // the `AsyncFd` owns the port. Inbound doorbells are never replaced
        // (only outbound ones are, by `dup3` at link time), so `as_raw_fd`
        // returns the same number, on the same eventfd, throughout.
        let inner = unsafe { AsyncFd::register_with_interest(port, Interest::READABLE) }?;
        Ok(Self { inner })
    }

    /// The next message; sleeps on the doorbell while the ring is empty.
    /// Cancel-safe: a message is only taken from the ring when returned.
    pub async fn recv(&mut self) -> Result<Envelope<Rx>, RecvError> {
        loop {
            if let Some(envelope) = self.inner.get_mut().try_recv()? {
                return Ok(envelope);
            }
            if self.inner.get_mut().prepare_wait() == WaitDecision::Receive {
                continue;
            }
            let mut guard = self
                .inner
                .readable_mut()
                .await
                .map_err(RecvError::Doorbell)?;
            guard
                .get_inner_mut()
                .after_wake()
                .map_err(RecvError::Doorbell)?;
            // The eventfd was drained; readiness that arrives after this
            // point is a new edge and is not lost.
            guard.clear_ready();
        }
    }

    /// [`Port::try_send`]: never waits; a full ring is refused.
    pub fn try_send(&mut self, request_id: RequestId, message: &Tx) -> Result<(), SendError> {
        self.inner.get_mut().try_send(request_id, message)
    }

    /// The port.
    pub fn port(&self) -> &Port<Tx, Rx> {
        self.inner.get_ref()
    }

    /// The port, mutably (ids, counters, policy).
    pub fn port_mut(&mut self) -> &mut Port<Tx, Rx> {
        self.inner.get_mut()
    }

    /// Deregisters and returns the port.
    pub fn into_inner(self) -> Port<Tx, Rx> {
        self.inner.into_inner()
    }
}
