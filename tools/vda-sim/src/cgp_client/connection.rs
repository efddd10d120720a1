//! [`CgpConnection`]: drives a [`CgpClient`] over one tokio stream.
//!
//! The connection owns the stream and the bytes in flight on it; the
//! client, passed to every call, owns the session. Dropping the connection
//! (or [`CgpConnection::into_inner`] and closing the stream) cuts it; call
//! [`CgpClient::connection_lost`] before resuming on a new stream.

use std::io;

use tokio::io::{AsyncRead, AsyncWrite};

use super::{BindOutcome, CgpClient, ClientError, Event};
use crate::pump::{Pump, PumpError, Pumped, Until};

/// Why driving a connection failed.
#[derive(Debug, thiserror::Error)]
pub enum DriveError {
    /// The stream failed.
    #[error("connection failed")]
    Io(#[from] io::Error),
    /// The server broke the protocol, or the call did not fit the phase.
    #[error("cgp client refused the exchange")]
    Client(#[from] ClientError),
    /// The stream ended before the BIND_RESPONSE.
    #[error("connection closed before the bind response")]
    ClosedBeforeBind,
    /// The stream ended while output was still pending.
    #[error("connection closed with output pending")]
    ClosedWhileFlushing,
}

impl From<PumpError<ClientError>> for DriveError {
    fn from(error: PumpError<ClientError>) -> Self {
        match error {
            PumpError::Io(error) => DriveError::Io(error),
            PumpError::Endpoint(error) => DriveError::Client(error),
        }
    }
}

/// One connection of a CGP session.
#[derive(Debug)]
pub struct CgpConnection<S> {
    pump: Pump<S>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> CgpConnection<S> {
    /// First connect: writes the preamble with `sta_ticket` and waits for
    /// the BIND_RESPONSE. Events that arrive with it stay in `client`, as
    /// do events of an earlier connection not taken yet.
    ///
    /// # Errors
    /// [`DriveError::Client`] with `WrongPhase` unless `client` is idle,
    /// [`DriveError::ClosedBeforeBind`], I/O and protocol errors.
    pub async fn connect(
        io: S,
        client: &mut CgpClient,
        sta_ticket: &[u8],
    ) -> Result<(Self, BindOutcome), DriveError> {
        client.connect(sta_ticket)?;
        Self::bind(io, client).await
    }

    /// Resume: writes the preamble with the reconnect ticket and the next
    /// expected message number, and waits for the BIND_RESPONSE. On
    /// [`BindOutcome::Resumed`] the server's resends arrive as events.
    ///
    /// # Errors
    /// As [`CgpConnection::connect`]; `WrongPhase` unless `client` is
    /// disconnected.
    pub async fn resume(io: S, client: &mut CgpClient) -> Result<(Self, BindOutcome), DriveError> {
        client.resume()?;
        Self::bind(io, client).await
    }

    /// Sends what the client has queued and reads until the next event.
    /// `Ok(None)`: the server ended the stream.
    ///
    /// # Errors
    /// I/O errors, [`DriveError::Client`] for bad server input.
    pub async fn next_event(
        &mut self,
        client: &mut CgpClient,
    ) -> Result<Option<Event>, DriveError> {
        loop {
            if let Some(event) = client.poll_event() {
                return Ok(Some(event));
            }
            if self.pump.run(client, Until::Received).await? == Pumped::Closed {
                return Ok(client.poll_event());
            }
        }
    }

    /// Writes and flushes everything the client has queued, reading (and
    /// queueing events) meanwhile.
    ///
    /// # Errors
    /// [`DriveError::ClosedWhileFlushing`], I/O and protocol errors.
    pub async fn flush(&mut self, client: &mut CgpClient) -> Result<(), DriveError> {
        match self.pump.run(client, Until::Flushed).await? {
            Pumped::Closed => Err(DriveError::ClosedWhileFlushing),
            Pumped::Flushed | Pumped::Received => Ok(()),
        }
    }

    /// The stream, e.g. to cut it abruptly in a test.
    pub fn into_inner(self) -> S {
        self.pump.into_inner()
    }

    async fn bind(io: S, client: &mut CgpClient) -> Result<(Self, BindOutcome), DriveError> {
        let mut connection = CgpConnection {
            pump: Pump::new(io),
        };
        loop {
            if let Some(outcome) = client.poll_bind() {
                return Ok((connection, outcome));
            }
            if connection.pump.run(client, Until::Received).await? == Pumped::Closed {
                if let Some(outcome) = client.poll_bind() {
                    return Ok((connection, outcome));
                }
                client.connection_lost();
                return Err(DriveError::ClosedBeforeBind);
            }
        }
    }
}
