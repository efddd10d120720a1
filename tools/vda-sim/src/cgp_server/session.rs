//! One CGP session as the sim serves it, across connections (sans-IO).
//!
//! Call order per connection: [`Session::attach`] with the client's next
//! expected number (from its BIND_REQUEST), write
//! [`Session::queue_bind_response`], then drive it as a [`pump::Endpoint`]
//! (`handle_input` for bytes read, `poll_transmit` for bytes to write) and
//! check [`Session::is_finished`] and [`Session::take_failure`] after each
//! round. Between connections the session waits in the table.
//!
//! Channels run the [`crate::service`] mini-protocol. Each channel:
//!
//! ```text
//!  open ─► Detecting ─┬─ echo ──► Echo ─────────── client close ─┐
//!                     ├─ STREAM n ─► Streaming ─ n sent ─► Closed ┤─► removed
//!                     └─ bad request ──────────────────► Closed ──┘  (client close)
//! ```
//!
//! Tracked (kept until acknowledged, resent on resume): CHANNEL_OPEN_RESPONSE,
//! DATA, CHANNEL_CLOSE. Untracked: BIND_RESPONSE, NOP acknowledgements,
//! FINISH_RESPONSE, DATA_REALTIME echoes. Flow control: the sim generates
//! stream data, and acknowledges the client's messages, only while its
//! unacknowledged output is below the window (a quarter of the bound), so a
//! client that paces itself on its own unacknowledged output never pushes
//! the sim past the bound; one that does not is dropped at the bound.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::time::Instant;

use gatehouse_wire::Progress;
use gatehouse_wire::cgp::{
    BindResponse, Capability, CgpError, ChannelClose, ChannelId, ChannelOpenResponse, Command,
    Data, Frame, Message, MessageNumber, OpenStatus, RECONNECT_TICKET_VERSION, Reason,
    ReconnectTicket, Reliability, ReliabilityParams, SESSION_RELIABILITY_VERSION,
    SessionReliability,
};
use gatehouse_wire::ticket::Ticket;

use crate::cgp_client::{encode_ack, push_untracked};
use crate::reliability::{Inbound, Outbound, ReliabilityError};
use crate::service::ServiceRequest;
use crate::{MAX_DATA_PAYLOAD, pattern, pump};

/// Why a session ends on the client's account.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SessionError {
    /// The client's bytes are not valid CGP.
    #[error("malformed packet")]
    Cgp(#[source] CgpError),
    /// Numbering, acknowledgement or the output bound failed.
    #[error("session reliability failed")]
    Reliability(#[from] ReliabilityError),
    /// A packet the client may not send after the bind.
    #[error("unexpected {0:?} packet")]
    Unexpected(Command),
    /// DATA or CHANNEL_CLOSE on a channel never opened.
    #[error("no channel {}", .0.0)]
    UnknownChannel(ChannelId),
}

/// Byte counts of a session, for the closing log event.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counters {
    /// Payload bytes received from the client.
    pub(crate) bytes_up: u64,
    /// Payload bytes generated for the client (each counted once).
    pub(crate) bytes_down: u64,
    /// Resumes so far.
    pub(crate) resumes: u32,
}

/// A channel's state (see the module diagram).
#[derive(Debug)]
enum Channel {
    /// Waiting for the first bytes to choose the service.
    Detecting(Vec<u8>),
    /// Echoing every payload.
    Echo,
    /// Sending pattern bytes `sent..len`.
    Streaming { sent: u64, len: u64 },
    /// The sim sent CHANNEL_CLOSE; waiting for the client's.
    Closed,
}

/// The server side of one session.
#[derive(Debug)]
pub(crate) struct Session {
    /// Number for logs (the ticket is a secret).
    pub(crate) id: u64,
    ticket: Ticket,
    inbound: Inbound,
    outbound: Outbound,
    channels: BTreeMap<ChannelId, Channel>,
    /// Untracked packets to write first.
    control: Vec<u8>,
    /// Bytes of the current connection not yet decoded.
    input: Vec<u8>,
    window: usize,
    finished: bool,
    failure: Option<SessionError>,
    opened_at: Instant,
    pub(crate) counters: Counters,
}

impl Session {
    /// A new session under `ticket`, opened at `now`, whose output may
    /// hold `max_unacked` bytes.
    pub(crate) fn new(id: u64, ticket: Ticket, max_unacked: usize, now: Instant) -> Self {
        Session {
            id,
            ticket,
            inbound: Inbound::new(),
            outbound: Outbound::new(max_unacked),
            channels: BTreeMap::new(),
            control: Vec::new(),
            input: Vec::new(),
            window: (max_unacked / 4).max(MAX_DATA_PAYLOAD),
            finished: false,
            failure: None,
            opened_at: now,
            counters: Counters::default(),
        }
    }

    /// The reconnect ticket.
    pub(crate) fn ticket(&self) -> &Ticket {
        &self.ticket
    }

    /// Starts serving a connection whose client expects `client_next`
    /// next: forgets the old connection's partial input and rewinds the
    /// output. Returns how many kept messages go out again.
    ///
    /// # Errors
    /// [`ReliabilityError::ResumeBehind`] / `ResumeAhead`: the client's
    /// number does not fit this session; it must not resume.
    pub(crate) fn attach(&mut self, client_next: MessageNumber) -> Result<usize, ReliabilityError> {
        let resent = self.outbound.resume_from(client_next)?;
        self.input.clear();
        self.control.clear();
        Ok(resent)
    }

    /// Queues the BIND_RESPONSE ahead of everything else: the sim's next
    /// expected number (which acknowledges all it received), the reconnect
    /// ticket, and the reliability parameters. Call right after
    /// [`Session::attach`].
    pub(crate) fn queue_bind_response(&mut self, ttl_seconds: u16) {
        let next = self.inbound.announce_next();
        let window = u16::try_from(self.window / MAX_DATA_PAYLOAD).unwrap_or(u16::MAX);
        let response = BindResponse {
            capabilities: vec![
                Capability::SessionReliability(SessionReliability {
                    min_version: SESSION_RELIABILITY_VERSION,
                    max_version: SESSION_RELIABILITY_VERSION,
                    ack_algorithms: SessionReliability::ACK_DELTA,
                    next_message_number: next,
                    reconnect_ticket: Some(ReconnectTicket {
                        version: RECONNECT_TICKET_VERSION,
                        ticket: self.ticket.as_str().as_bytes(),
                    }),
                    channels: Vec::new(),
                }),
                Capability::ReliabilityParams(ReliabilityParams {
                    timeout_seconds: ttl_seconds,
                    window,
                }),
            ],
        };
        // Invariant: two fixed-size capabilities and a 32-byte ticket
        // always encode.
        let _ = response.encode(&mut self.control);
    }

    /// When the session opened.
    pub(crate) fn opened_at(&self) -> Instant {
        self.opened_at
    }

    /// The client sent FINISH_REQUEST; FINISH_RESPONSE is queued.
    pub(crate) fn is_finished(&self) -> bool {
        self.finished
    }

    /// An error met while generating output, if any.
    pub(crate) fn take_failure(&mut self) -> Option<SessionError> {
        self.failure.take()
    }

    fn handle_frame(&mut self, frame: Frame<'_>) -> Result<(), SessionError> {
        if let Some(Reliability { track, ack }) = frame.extensions.reliability {
            if let Some(number) = track {
                self.inbound.handle_tracked(number)?;
            }
            if let Some(delta) = ack {
                self.outbound.handle_ack(delta)?;
            }
        }
        match frame.message {
            Message::Nop | Message::FinishResponse => {}
            Message::FinishRequest(_) => {
                push_untracked(Message::FinishResponse, &mut self.control);
                self.finished = true;
            }
            Message::ChannelOpenRequest(open) => {
                let status = match self.channels.entry(open.channel) {
                    Entry::Occupied(_) => OpenStatus::CHANNEL_IN_USE,
                    Entry::Vacant(vacant) => {
                        vacant.insert(Channel::Detecting(Vec::new()));
                        OpenStatus::OPENED
                    }
                };
                self.outbound
                    .push(Message::ChannelOpenResponse(ChannelOpenResponse {
                        channel: open.channel,
                        status,
                    }))?;
            }
            Message::Data(data) => self.handle_data(data)?,
            Message::DataRealtime(data) => self.echo_realtime(data),
            Message::DataRealtimeWithAck(data) => {
                self.outbound.handle_ack(data.ack)?;
                self.echo_realtime(Data {
                    channel: data.channel,
                    payload: data.payload,
                });
            }
            Message::ChannelClose(close) => match self.channels.remove(&close.channel) {
                None => return Err(SessionError::UnknownChannel(close.channel)),
                Some(Channel::Closed) => {}
                Some(_) => {
                    self.outbound.push(Message::ChannelClose(ChannelClose {
                        channel: close.channel,
                        reason: Reason::NORMAL,
                    }))?;
                }
            },
            other @ (Message::BindRequest(_)
            | Message::BindResponse(_)
            | Message::ChannelOpenResponse(_)) => {
                return Err(SessionError::Unexpected(other.command()));
            }
        }
        Ok(())
    }

    fn handle_data(&mut self, data: Data<'_>) -> Result<(), SessionError> {
        self.counters.bytes_up += data.payload.len() as u64;
        let channel = self
            .channels
            .get_mut(&data.channel)
            .ok_or(SessionError::UnknownChannel(data.channel))?;
        let echo = match channel {
            Channel::Echo => data.payload.to_vec(),
            Channel::Streaming { .. } | Channel::Closed => return Ok(()),
            Channel::Detecting(pending) => {
                pending.extend_from_slice(data.payload);
                match ServiceRequest::decode(pending) {
                    Ok(Progress::NeedMore { .. }) => return Ok(()),
                    Ok(Progress::Done {
                        value: ServiceRequest::Stream { len },
                        ..
                    }) => {
                        *channel = Channel::Streaming { sent: 0, len };
                        return Ok(());
                    }
                    Ok(Progress::Done {
                        value: ServiceRequest::Echo,
                        ..
                    }) => std::mem::replace(channel, Channel::Echo).into_pending(),
                    Err(_) => {
                        *channel = Channel::Closed;
                        self.outbound.push(Message::ChannelClose(ChannelClose {
                            channel: data.channel,
                            reason: Reason::ERROR,
                        }))?;
                        return Ok(());
                    }
                }
            }
        };
        for chunk in echo.chunks(MAX_DATA_PAYLOAD) {
            self.outbound.push(Message::Data(Data {
                channel: data.channel,
                payload: chunk,
            }))?;
            self.counters.bytes_down += chunk.len() as u64;
        }
        Ok(())
    }

    fn echo_realtime(&mut self, data: Data<'_>) {
        if let Some(Channel::Echo) = self.channels.get(&data.channel) {
            push_untracked(Message::DataRealtime(data), &mut self.control);
        }
    }

    /// Pushes stream data while the output is below the window; a finished
    /// stream gets its CHANNEL_CLOSE.
    fn generate(&mut self) -> Result<(), ReliabilityError> {
        let mut chunk = Vec::new();
        for (&id, channel) in &mut self.channels {
            while let Channel::Streaming { sent, len } = channel {
                if self.outbound.buffered_bytes() >= self.window {
                    return Ok(());
                }
                if *sent == *len {
                    self.outbound.push(Message::ChannelClose(ChannelClose {
                        channel: id,
                        reason: Reason::NORMAL,
                    }))?;
                    *channel = Channel::Closed;
                    break;
                }
                // Bounded by MAX_DATA_PAYLOAD, so the cast cannot truncate.
                let size = (*len - *sent).min(MAX_DATA_PAYLOAD as u64) as usize;
                chunk.resize(size, 0);
                pattern::fill(*sent, &mut chunk);
                self.outbound.push(Message::Data(Data {
                    channel: id,
                    payload: &chunk,
                }))?;
                *sent += size as u64;
                self.counters.bytes_down += size as u64;
            }
        }
        Ok(())
    }
}

impl Channel {
    /// The bytes a detecting channel held (empty in the other states).
    fn into_pending(self) -> Vec<u8> {
        match self {
            Channel::Detecting(pending) => pending,
            Channel::Echo | Channel::Streaming { .. } | Channel::Closed => Vec::new(),
        }
    }
}

impl pump::Endpoint for Session {
    type Error = SessionError;

    fn handle_input(&mut self, bytes: &[u8]) -> Result<(), SessionError> {
        self.input.extend_from_slice(bytes);
        let input = std::mem::take(&mut self.input);
        let mut consumed = 0;
        let result = loop {
            if self.finished {
                break Ok(());
            }
            let rest = input.get(consumed..).unwrap_or_default();
            match Frame::decode(rest) {
                Ok(Progress::Done { value, consumed: n }) => {
                    consumed += n;
                    if let Err(error) = self.handle_frame(value) {
                        break Err(error);
                    }
                }
                Ok(Progress::NeedMore { .. }) => break Ok(()),
                Err(error) => break Err(SessionError::Cgp(error)),
            }
        };
        self.input = input;
        self.input.drain(..consumed);
        result
    }

    fn poll_transmit(&mut self, out: &mut Vec<u8>, budget: usize) {
        out.append(&mut self.control);
        if self.finished {
            return;
        }
        // Withholding acknowledgements while the output is full is the
        // sim's flow control towards a client that paces on its own
        // unacknowledged output.
        if self.outbound.buffered_bytes() < self.window {
            while let Some(delta) = self.inbound.poll_ack() {
                encode_ack(delta, out);
            }
        }
        if let Err(error) = self.generate() {
            self.failure = Some(error.into());
        }
        self.outbound.poll_transmit(out, budget);
    }
}
