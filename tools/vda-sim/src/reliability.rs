//! Session reliability bookkeeping, the same for both ends of a CGP session
//! (PROTOCOLS.md §4; numbering as `gatehouse_wire::cgp` decides it).
//!
//! - [`Outbound`] numbers the tracked messages a side sends (the first is
//!   1), keeps each one encoded until the peer acknowledges it, and on a
//!   resume rewinds to the first message the peer lacks.
//! - [`Inbound`] checks that the peer's tracked messages arrive in order
//!   and counts what this side owes as acknowledgement.
//!
//! Acknowledgements are cumulative deltas: "`n` more of your messages
//! arrived since my previous acknowledgement". A BIND resets the baseline
//! on both sides: each BIND carries the absolute number its sender expects
//! next, which acknowledges everything before it.
//!
//! Tracked messages are stored without an ack field (acks travel in NOP
//! packets), so a resend never repeats an old acknowledgement.
//!
//! Sans-IO: no clocks, no sockets; callers drive it.

use std::collections::VecDeque;

use gatehouse_wire::cgp::{
    CgpError, Extensions, Frame, Message, MessageNumber, Reliability, VARLEN_MAX,
};

/// Why the reliability layer refused an operation. Every variant ends the
/// session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReliabilityError {
    /// Keeping one more message would pass the unacknowledged-output bound.
    #[error("unacknowledged output would exceed {cap} bytes")]
    Overflow {
        /// The bound in bytes.
        cap: usize,
    },
    /// All `u32` message numbers are used up.
    #[error("message numbers exhausted")]
    NumbersExhausted,
    /// The peer acknowledged messages that were never sent to it.
    #[error("ack of {delta} messages, but only {sent} sent messages are unacknowledged")]
    AckBeyondSent {
        /// The delta received.
        delta: u16,
        /// Sent messages not yet acknowledged.
        sent: usize,
    },
    /// A tracked message arrived out of order (lost or duplicated).
    #[error("expected tracked message {expected}, got {got}")]
    OutOfOrder {
        /// The number this side expected.
        expected: u32,
        /// The number received.
        got: u32,
    },
    /// The peer resumes before the oldest message still kept: it lost
    /// messages it had acknowledged.
    #[error("peer resumes at message {peer_next}, but the oldest kept is {oldest}")]
    ResumeBehind {
        /// The peer's next expected number.
        peer_next: u32,
        /// The oldest number kept.
        oldest: u32,
    },
    /// The peer resumes after a message that was never sent.
    #[error("peer resumes at message {peer_next}, but only {sent} were sent")]
    ResumeAhead {
        /// The peer's next expected number.
        peer_next: u32,
        /// How many messages this side has numbered.
        sent: u32,
    },
    /// The message does not encode (e.g. a payload over the packet limit).
    #[error("cannot encode a tracked message")]
    Encode(#[source] CgpError),
}

/// One kept message: its number and its encoded packet.
#[derive(Debug)]
struct Tracked {
    number: u32,
    packet: Vec<u8>,
}

/// The tracked messages a side sent or will send, kept until acknowledged.
///
/// Call order: [`Outbound::push`] any time; [`Outbound::poll_transmit`]
/// while connected; [`Outbound::handle_ack`] for each ack received;
/// [`Outbound::resume_from`] with the peer's next number from every BIND
/// (first connect included), before transmitting on that connection.
#[derive(Debug)]
pub struct Outbound {
    queue: VecDeque<Tracked>,
    /// Bytes held by `queue`.
    buffered: usize,
    cap: usize,
    /// The number the next pushed message gets.
    next: u32,
    /// Messages of `queue` already written on the current connection
    /// (a prefix of it).
    sent: usize,
}

impl Outbound {
    /// An empty buffer holding at most `cap` bytes of encoded messages.
    pub fn new(cap: usize) -> Self {
        Outbound {
            queue: VecDeque::new(),
            buffered: 0,
            cap,
            next: 1,
            sent: 0,
        }
    }

    /// Numbers `message`, encodes it with a track extension and keeps it.
    ///
    /// # Errors
    /// [`ReliabilityError::Overflow`] (nothing is kept),
    /// [`ReliabilityError::NumbersExhausted`], [`ReliabilityError::Encode`].
    pub fn push(&mut self, message: Message<'_>) -> Result<MessageNumber, ReliabilityError> {
        let number = self.next;
        let following = number
            .checked_add(1)
            .ok_or(ReliabilityError::NumbersExhausted)?;
        let frame = Frame {
            extensions: Extensions {
                reliability: Some(Reliability {
                    track: Some(MessageNumber(number)),
                    ack: None,
                }),
            },
            message,
        };
        let mut packet = Vec::new();
        frame
            .encode(&mut packet)
            .map_err(ReliabilityError::Encode)?;
        if self.buffered + packet.len() > self.cap {
            return Err(ReliabilityError::Overflow { cap: self.cap });
        }
        self.buffered += packet.len();
        self.queue.push_back(Tracked { number, packet });
        self.next = following;
        Ok(MessageNumber(number))
    }

    /// Appends messages not yet written on this connection to `out`, in
    /// number order, until `out` holds at least `budget` bytes or none is
    /// left. Returns how many it appended.
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>, budget: usize) -> usize {
        let mut appended = 0;
        while out.len() < budget {
            let Some(tracked) = self.queue.get(self.sent) else {
                break;
            };
            out.extend_from_slice(&tracked.packet);
            self.sent += 1;
            appended += 1;
        }
        appended
    }

    /// Releases the `delta` oldest sent messages the peer acknowledged.
    ///
    /// # Errors
    /// [`ReliabilityError::AckBeyondSent`] when `delta` exceeds the sent,
    /// unacknowledged messages (nothing is released).
    pub fn handle_ack(&mut self, delta: u16) -> Result<(), ReliabilityError> {
        let count = usize::from(delta);
        if count > self.sent {
            return Err(ReliabilityError::AckBeyondSent {
                delta,
                sent: self.sent,
            });
        }
        self.release(count);
        Ok(())
    }

    /// Starts a new connection whose peer expects `peer_next` next: drops
    /// every message before it (the peer has them) and rewinds so that
    /// [`Outbound::poll_transmit`] sends every kept message from
    /// `peer_next` on. Returns how many messages that is.
    ///
    /// # Errors
    /// [`ReliabilityError::ResumeBehind`], [`ReliabilityError::ResumeAhead`];
    /// the buffer is then unchanged.
    pub fn resume_from(&mut self, peer_next: MessageNumber) -> Result<usize, ReliabilityError> {
        let oldest = self.oldest();
        if peer_next.0 < oldest {
            return Err(ReliabilityError::ResumeBehind {
                peer_next: peer_next.0,
                oldest,
            });
        }
        if peer_next.0 > self.next {
            return Err(ReliabilityError::ResumeAhead {
                peer_next: peer_next.0,
                sent: self.next - 1,
            });
        }
        // In range, so the difference fits: at most `queue.len()`.
        let received = (peer_next.0 - oldest) as usize;
        self.sent = self.queue.len();
        self.release(received);
        self.sent = 0;
        Ok(self.queue.len())
    }

    /// Bytes of encoded messages kept (sent or not, unacknowledged).
    pub fn buffered_bytes(&self) -> usize {
        self.buffered
    }

    /// Messages kept.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether no message is kept.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Whether a kept message waits to be written on this connection.
    pub fn has_unsent(&self) -> bool {
        self.sent < self.queue.len()
    }

    /// The number the next pushed message gets.
    pub fn next_number(&self) -> MessageNumber {
        MessageNumber(self.next)
    }

    /// The bound in bytes.
    pub fn cap(&self) -> usize {
        self.cap
    }

    /// The oldest number kept, or the next number when none is.
    fn oldest(&self) -> u32 {
        self.queue
            .front()
            .map_or(self.next, |tracked| tracked.number)
    }

    /// Drops the `count` oldest messages, all of them sent.
    fn release(&mut self, count: usize) {
        for tracked in self.queue.drain(..count) {
            self.buffered -= tracked.packet.len();
        }
        self.sent -= count;
    }
}

/// The peer's tracked messages as they arrive.
///
/// Call order: [`Inbound::announce_next`] when sending a BIND;
/// [`Inbound::handle_tracked`] for each tracked message, in arrival order;
/// [`Inbound::poll_ack`] whenever the side may send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inbound {
    /// The number the peer's next tracked message must carry.
    next: u32,
    /// The highest number acknowledged to the peer.
    acked_through: u32,
}

impl Default for Inbound {
    fn default() -> Self {
        Inbound::new()
    }
}

impl Inbound {
    /// Nothing received yet: the first tracked message must be number 1.
    pub fn new() -> Self {
        Inbound {
            next: 1,
            acked_through: 0,
        }
    }

    /// Accepts the peer's tracked message `number`.
    ///
    /// # Errors
    /// [`ReliabilityError::OutOfOrder`] unless `number` is the one expected.
    pub fn handle_tracked(&mut self, number: MessageNumber) -> Result<(), ReliabilityError> {
        if number.0 != self.next {
            return Err(ReliabilityError::OutOfOrder {
                expected: self.next,
                got: number.0,
            });
        }
        self.next = self
            .next
            .checked_add(1)
            .ok_or(ReliabilityError::NumbersExhausted)?;
        Ok(())
    }

    /// The number the peer's next tracked message must carry (last
    /// received + 1).
    pub fn next_expected(&self) -> MessageNumber {
        MessageNumber(self.next)
    }

    /// The number to put in a BIND this side sends: it acknowledges
    /// everything received so far, so no ack delta is owed after it.
    pub fn announce_next(&mut self) -> MessageNumber {
        self.acked_through = self.next - 1;
        MessageNumber(self.next)
    }

    /// The ack delta owed to the peer, at most [`VARLEN_MAX`] (call again
    /// for the rest), or `None` when all is acknowledged.
    pub fn poll_ack(&mut self) -> Option<u16> {
        let owed = self.next - 1 - self.acked_through;
        let delta = u16::try_from(owed).unwrap_or(VARLEN_MAX).min(VARLEN_MAX);
        if delta == 0 {
            return None;
        }
        self.acked_through += u32::from(delta);
        Some(delta)
    }

    /// Tracked messages received but not acknowledged yet.
    pub fn owed(&self) -> u32 {
        self.next - 1 - self.acked_through
    }
}

#[cfg(test)]
mod tests;
