//! A CGP client with session reliability: the other end of the sim, for
//! tests and the load tool (PROTOCOLS.md §4).
//!
//! [`CgpClient`] is sans-IO and outlives connections: it holds the session
//! (reconnect ticket, message numbers, unacknowledged output, events not
//! yet taken). [`CgpConnection`] drives it over any tokio
//! `AsyncRead + AsyncWrite` stream (TCP, TLS through the gateway).
//!
//! ```text
//!             connect(ticket)              BIND_RESPONSE next > 0
//!  Idle ─────────────────────► AwaitBind ──────────────────────► Bound
//!   ▲                            │  ▲  next = 0                    │
//!   │                            │  └──────► Refused (final)       │
//!   │ connection_lost()          │ connection_lost()               │
//!   └──────────── Disconnected ◄─┴─────────────────────────────────┘
//!                      │ resume()
//!                      └────────► AwaitBind
//! ```
//!
//! Call order: [`CgpClient::connect`] (first connect, with the STA
//! ticket) or [`CgpClient::resume`] (with the reconnect ticket the server
//! gave) queues the preamble; write what [`CgpClient::poll_transmit`]
//! appends (first the preamble, then, once bound, the session's packets);
//! feed every byte read to
//! [`CgpClient::handle_input`] and take [`CgpClient::poll_event`] until
//! `None` ([`CgpClient::poll_bind`] answers once the BIND_RESPONSE is
//! in). When the
//! connection breaks, call [`CgpClient::connection_lost`] and resume on a
//! new one. Messages queued with [`CgpClient::open_channel`],
//! [`CgpClient::send`] and [`CgpClient::close_channel`] are tracked and
//! kept until the server acknowledges them, and resent after a resume.
//!
//! Tracked: CHANNEL_OPEN_REQUEST, DATA, CHANNEL_CLOSE. Untracked: BIND,
//! NOP (acknowledgements), FINISH_*. The client acknowledges every tracked
//! message it has decoded, in NOP packets.

mod connection;

#[cfg(test)]
mod tests;

use std::collections::VecDeque;

use gatehouse_wire::Progress;
use gatehouse_wire::cgp::{
    BindRequest, BindResponse, Capability, CgpError, ChannelClose, ChannelId, ChannelOpenRequest,
    Command, Data, Extensions, FinishRequest, Frame, Message, MessageNumber, OpenStatus,
    RECONNECT_TICKET_VERSION, Reason, ReconnectTicket, Reliability, SESSION_RELIABILITY_VERSION,
    SecurityTicket, ServiceBinding, ServiceId, SessionReliability, TCP_PROXY_SERVICE, TicketKind,
    encode_connection_preamble,
};

pub use connection::{CgpConnection, DriveError};

use crate::reliability::{Inbound, Outbound, ReliabilityError};
use crate::{DEFAULT_MAX_UNACKED, MAX_DATA_PAYLOAD, pump};

/// The service id the client binds [`TCP_PROXY_SERVICE`] to and opens its
/// channels with.
pub const PROXY_SERVICE_ID: ServiceId = ServiceId(1);

/// Where the client is in its connection's life (see the module diagram).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// No connection yet.
    Idle,
    /// The preamble is written; waiting for BIND_RESPONSE.
    AwaitBind,
    /// The server accepted the bind; data flows.
    Bound,
    /// The connection broke; [`CgpClient::resume`] may follow.
    Disconnected,
    /// The server refused the session; nothing may follow.
    Refused,
}

/// How the server answered a bind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindOutcome {
    /// A new session; the server gave a reconnect ticket.
    Opened,
    /// The session resumed; `resent` of the client's kept messages go out
    /// again (the server's resends simply arrive as events).
    Resumed {
        /// Client messages the server lacked.
        resent: usize,
    },
    /// The server answered next message number 0: unknown or expired
    /// reconnect ticket, or a session it no longer has.
    Refused,
}

/// What the server said after the bind, in arrival order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The answer to [`CgpClient::open_channel`].
    ChannelOpened {
        /// The channel.
        channel: ChannelId,
        /// [`OpenStatus::OPENED`] or why not.
        status: OpenStatus,
    },
    /// Payload of a DATA packet (each delivered exactly once, in order).
    Data {
        /// The channel.
        channel: ChannelId,
        /// The payload.
        payload: Vec<u8>,
    },
    /// Payload of a DATA_REALTIME(_WITH_ACK) packet (not tracked).
    Realtime {
        /// The channel.
        channel: ChannelId,
        /// The payload.
        payload: Vec<u8>,
    },
    /// The server closed a channel.
    ChannelClosed {
        /// The channel.
        channel: ChannelId,
        /// Why.
        reason: Reason,
    },
    /// The server ended the session (FINISH_REQUEST or FINISH_RESPONSE).
    Finished,
}

/// Why the client refused an input or a call. Every variant but
/// [`ClientError::WrongPhase`] and [`ClientError::Reliability`] with
/// `Overflow` means the server broke the protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The call does not fit the phase (e.g. resume before a bind).
    #[error("{call} is not allowed in phase {phase:?}")]
    WrongPhase {
        /// The method called.
        call: &'static str,
        /// The phase the client was in.
        phase: Phase,
    },
    /// The server's bytes are not valid CGP.
    #[error("malformed packet from the server")]
    Cgp(#[source] CgpError),
    /// A packet arrived that the server may not send now.
    #[error("unexpected {0:?} packet from the server")]
    Unexpected(Command),
    /// The BIND_RESPONSE lacks the session reliability capability, or a
    /// first bind's response lacks the reconnect ticket.
    #[error("bind response without session reliability or reconnect ticket")]
    NoReliability,
    /// Message numbering or acknowledgement broke (or the output bound).
    #[error("session reliability failed")]
    Reliability(#[source] ReliabilityError),
}

/// A CGP session as the client sees it, across connections.
#[derive(Debug)]
pub struct CgpClient {
    phase: Phase,
    /// The last bind was a resume.
    resuming: bool,
    reconnect_ticket: Option<Vec<u8>>,
    inbound: Inbound,
    outbound: Outbound,
    /// The signature and BIND_REQUEST not yet written.
    preamble: Vec<u8>,
    /// Untracked packets to send (FINISH_*), written before tracked ones.
    control: Vec<u8>,
    /// Bytes of the current connection not yet decoded.
    input: Vec<u8>,
    events: VecDeque<Event>,
    /// The answer to the last bind, until taken.
    bind_outcome: Option<BindOutcome>,
}

impl Default for CgpClient {
    fn default() -> Self {
        CgpClient::new(DEFAULT_MAX_UNACKED)
    }
}

impl CgpClient {
    /// A client whose unacknowledged output may hold `max_unacked` bytes.
    pub fn new(max_unacked: usize) -> Self {
        CgpClient {
            phase: Phase::Idle,
            resuming: false,
            reconnect_ticket: None,
            inbound: Inbound::new(),
            outbound: Outbound::new(max_unacked),
            preamble: Vec::new(),
            control: Vec::new(),
            input: Vec::new(),
            events: VecDeque::new(),
            bind_outcome: None,
        }
    }

    /// Queues the first connect's preamble: the CGP signature and a
    /// BIND_REQUEST with the services binding, `sta_ticket` as security
    /// ticket and a session reliability capability without ticket.
    ///
    /// # Errors
    /// [`ClientError::WrongPhase`] unless [`Phase::Idle`];
    /// [`ClientError::Cgp`] for a ticket over 32 767 bytes.
    pub fn connect(&mut self, sta_ticket: &[u8]) -> Result<(), ClientError> {
        self.expect_phase("connect", Phase::Idle)?;
        let security = Capability::SecurityTicket(SecurityTicket {
            kind: TicketKind::STA,
            ticket: sta_ticket,
        });
        self.write_preamble(Some(security), None)?;
        self.resuming = false;
        Ok(())
    }

    /// Queues a resume preamble: the signature and a BIND_REQUEST
    /// whose session reliability capability carries the reconnect ticket
    /// and the next message number this client expects.
    ///
    /// # Errors
    /// [`ClientError::WrongPhase`] unless [`Phase::Disconnected`] (a
    /// disconnected client always has a reconnect ticket).
    pub fn resume(&mut self) -> Result<(), ClientError> {
        self.expect_phase("resume", Phase::Disconnected)?;
        let ticket = self.reconnect_ticket.take();
        let result = self.write_preamble(None, ticket.as_deref());
        self.reconnect_ticket = ticket;
        result?;
        self.resuming = true;
        Ok(())
    }

    /// Takes bytes read from the connection.
    ///
    /// # Errors
    /// Any [`ClientError`] but `WrongPhase` for bad server input (the
    /// connection should then be dropped); [`ClientError::WrongPhase`]
    /// outside [`Phase::AwaitBind`] and [`Phase::Bound`].
    pub fn handle_input(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        if !matches!(self.phase, Phase::AwaitBind | Phase::Bound) {
            return Err(ClientError::WrongPhase {
                call: "handle_input",
                phase: self.phase,
            });
        }
        self.input.extend_from_slice(bytes);
        let input = std::mem::take(&mut self.input);
        let mut consumed = 0;
        let result = loop {
            let rest = input.get(consumed..).unwrap_or_default();
            match Frame::decode(rest) {
                Ok(Progress::Done { value, consumed: n }) => {
                    consumed += n;
                    if let Err(error) = self.handle_frame(value) {
                        break Err(error);
                    }
                    if self.phase == Phase::Refused {
                        break Ok(());
                    }
                }
                Ok(Progress::NeedMore { .. }) => break Ok(()),
                Err(error) => break Err(ClientError::Cgp(error)),
            }
        };
        self.input = input;
        self.input.drain(..consumed);
        result
    }

    /// How the server answered the last bind, once (`None` before the
    /// BIND_RESPONSE and after the first call).
    pub fn poll_bind(&mut self) -> Option<BindOutcome> {
        self.bind_outcome.take()
    }

    /// The next event, oldest first.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Appends what to send: the preamble while [`Phase::AwaitBind`]; while
    /// [`Phase::Bound`] control packets, an acknowledgement when one is
    /// owed, then kept messages not yet written on this connection, until
    /// `out` holds about `budget` bytes. Nothing in the other phases.
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>, budget: usize) {
        match self.phase {
            Phase::AwaitBind => {
                out.append(&mut self.preamble);
                return;
            }
            Phase::Bound => {}
            Phase::Idle | Phase::Disconnected | Phase::Refused => return,
        }
        out.append(&mut self.control);
        while let Some(delta) = self.inbound.poll_ack() {
            encode_ack(delta, out);
        }
        self.outbound.poll_transmit(out, budget);
    }

    /// Queues a tracked CHANNEL_OPEN_REQUEST for `channel` on `service`.
    ///
    /// # Errors
    /// [`ClientError::Reliability`] (output bound, or `params` too long).
    pub fn open_channel(
        &mut self,
        channel: ChannelId,
        service: ServiceId,
        params: &[u8],
    ) -> Result<(), ClientError> {
        self.track(Message::ChannelOpenRequest(ChannelOpenRequest {
            channel,
            service,
            params,
        }))
    }

    /// Queues `payload` on `channel` as tracked DATA packets of at most
    /// [`MAX_DATA_PAYLOAD`] bytes each.
    ///
    /// # Errors
    /// [`ClientError::Reliability`] with `Overflow` when the unacknowledged
    /// output would pass its bound; the chunks before the failing one stay
    /// queued.
    pub fn send(&mut self, channel: ChannelId, payload: &[u8]) -> Result<(), ClientError> {
        for chunk in payload.chunks(MAX_DATA_PAYLOAD) {
            self.track(Message::Data(Data {
                channel,
                payload: chunk,
            }))?;
        }
        Ok(())
    }

    /// Queues a tracked CHANNEL_CLOSE.
    ///
    /// # Errors
    /// [`ClientError::Reliability`] (output bound).
    pub fn close_channel(&mut self, channel: ChannelId, reason: Reason) -> Result<(), ClientError> {
        self.track(Message::ChannelClose(ChannelClose { channel, reason }))
    }

    /// Queues a FINISH_REQUEST: the session ends; the server answers
    /// FINISH_RESPONSE ([`Event::Finished`]) and forgets it.
    pub fn finish(&mut self, reason: Reason) {
        push_untracked(
            Message::FinishRequest(FinishRequest { reason }),
            &mut self.control,
        );
    }

    /// The connection broke: bytes not yet decoded are dropped (the server
    /// resends their messages after [`CgpClient::resume`]).
    pub fn connection_lost(&mut self) {
        self.input.clear();
        self.preamble.clear();
        self.control.clear();
        if matches!(self.phase, Phase::AwaitBind | Phase::Bound) && self.reconnect_ticket.is_some()
        {
            self.phase = Phase::Disconnected;
        } else if self.phase == Phase::AwaitBind {
            self.phase = Phase::Idle;
        }
    }

    /// The phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The reconnect ticket the server gave, once bound.
    pub fn reconnect_ticket(&self) -> Option<&[u8]> {
        self.reconnect_ticket.as_deref()
    }

    /// The next message number expected from the server (last received + 1).
    pub fn next_expected(&self) -> MessageNumber {
        self.inbound.next_expected()
    }

    /// Bytes of sent or queued messages the server has not acknowledged:
    /// pace [`CgpClient::send`] on it.
    pub fn unacked_bytes(&self) -> usize {
        self.outbound.buffered_bytes()
    }

    fn expect_phase(&self, call: &'static str, phase: Phase) -> Result<(), ClientError> {
        if self.phase == phase {
            Ok(())
        } else {
            Err(ClientError::WrongPhase {
                call,
                phase: self.phase,
            })
        }
    }

    fn write_preamble(
        &mut self,
        security: Option<Capability<'_>>,
        reconnect: Option<&[u8]>,
    ) -> Result<(), ClientError> {
        let mut capabilities = vec![Capability::ServicesBinding(vec![ServiceBinding {
            name: TCP_PROXY_SERVICE,
            service: PROXY_SERVICE_ID,
        }])];
        capabilities.extend(security);
        capabilities.push(Capability::SessionReliability(SessionReliability {
            min_version: SESSION_RELIABILITY_VERSION,
            max_version: SESSION_RELIABILITY_VERSION,
            ack_algorithms: SessionReliability::ACK_DELTA,
            next_message_number: self.inbound.next_expected(),
            reconnect_ticket: reconnect.map(|ticket| ReconnectTicket {
                version: RECONNECT_TICKET_VERSION,
                ticket,
            }),
            channels: Vec::new(),
        }));
        let mut preamble = Vec::new();
        encode_connection_preamble(&BindRequest { capabilities }, &mut preamble)
            .map_err(ClientError::Cgp)?;
        self.preamble = preamble;
        self.bind_outcome = None;
        // The BIND carries the absolute number: no ack delta is owed now.
        self.inbound.announce_next();
        self.phase = Phase::AwaitBind;
        Ok(())
    }

    fn track(&mut self, message: Message<'_>) -> Result<(), ClientError> {
        self.outbound
            .push(message)
            .map(drop)
            .map_err(ClientError::Reliability)
    }

    fn handle_frame(&mut self, frame: Frame<'_>) -> Result<(), ClientError> {
        if self.phase == Phase::AwaitBind {
            return match frame.message {
                Message::BindResponse(response) => self.handle_bind(&response),
                other => Err(ClientError::Unexpected(other.command())),
            };
        }
        if let Some(Reliability { track, ack }) = frame.extensions.reliability {
            if let Some(number) = track {
                self.inbound
                    .handle_tracked(number)
                    .map_err(ClientError::Reliability)?;
            }
            if let Some(delta) = ack {
                self.outbound
                    .handle_ack(delta)
                    .map_err(ClientError::Reliability)?;
            }
        }
        let event = match frame.message {
            Message::Nop => return Ok(()),
            Message::ChannelOpenResponse(response) => Event::ChannelOpened {
                channel: response.channel,
                status: response.status,
            },
            Message::Data(data) => Event::Data {
                channel: data.channel,
                payload: data.payload.to_vec(),
            },
            Message::DataRealtime(data) => Event::Realtime {
                channel: data.channel,
                payload: data.payload.to_vec(),
            },
            Message::DataRealtimeWithAck(data) => {
                self.outbound
                    .handle_ack(data.ack)
                    .map_err(ClientError::Reliability)?;
                Event::Realtime {
                    channel: data.channel,
                    payload: data.payload.to_vec(),
                }
            }
            Message::ChannelClose(close) => Event::ChannelClosed {
                channel: close.channel,
                reason: close.reason,
            },
            Message::FinishRequest(_) => {
                push_untracked(Message::FinishResponse, &mut self.control);
                Event::Finished
            }
            Message::FinishResponse => Event::Finished,
            other => return Err(ClientError::Unexpected(other.command())),
        };
        self.events.push_back(event);
        Ok(())
    }

    fn handle_bind(&mut self, response: &BindResponse<'_>) -> Result<(), ClientError> {
        let next = response
            .next_message_number()
            .ok_or(ClientError::NoReliability)?;
        if next == MessageNumber::REFUSED {
            self.phase = Phase::Refused;
            self.bind_outcome = Some(BindOutcome::Refused);
            return Ok(());
        }
        match response.reconnect() {
            Some(info) => self.reconnect_ticket = Some(info.ticket.to_vec()),
            None if self.reconnect_ticket.is_none() => return Err(ClientError::NoReliability),
            None => {}
        }
        let resent = self
            .outbound
            .resume_from(next)
            .map_err(ClientError::Reliability)?;
        self.phase = Phase::Bound;
        let outcome = if self.resuming {
            BindOutcome::Resumed { resent }
        } else {
            BindOutcome::Opened
        };
        self.bind_outcome = Some(outcome);
        Ok(())
    }
}

/// Appends a NOP carrying an ack delta.
pub(crate) fn encode_ack(delta: u16, out: &mut Vec<u8>) {
    let frame = Frame {
        extensions: Extensions {
            reliability: Some(Reliability {
                track: None,
                ack: Some(delta),
            }),
        },
        message: Message::Nop,
    };
    // Invariant: a NOP with a delta of at most VARLEN_MAX always encodes.
    let _ = frame.encode(out);
}

/// Appends an untracked packet without extensions.
pub(crate) fn push_untracked(message: Message<'_>, out: &mut Vec<u8>) {
    let frame = Frame {
        extensions: Extensions::default(),
        message,
    };
    // Invariant: the callers pass fixed-size control messages, which
    // always encode.
    let _ = frame.encode(out);
}

impl pump::Endpoint for CgpClient {
    type Error = ClientError;

    fn handle_input(&mut self, input: &[u8]) -> Result<(), ClientError> {
        CgpClient::handle_input(self, input)
    }

    fn poll_transmit(&mut self, out: &mut Vec<u8>, budget: usize) {
        CgpClient::poll_transmit(self, out, budget);
    }
}
