//! The sessions the sim keeps, by reconnect ticket.
//!
//! A session is either attached (a connection task owns it; the slot holds
//! a way to ask that task to hand it over) or parked (between connections,
//! with a deadline). A resume takes a parked session, or asks the attached
//! task for it: a client may reconnect before the sim noticed that the old
//! connection died. Parked sessions past their deadline are refused and
//! swept.

use std::collections::HashMap;
use std::io;
use std::time::Duration;

use gatehouse_wire::ticket::{GenerateError, Ticket};
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio::time::{Instant, timeout};

use super::session::Session;

/// How long a resume waits for the attached task to hand a session over.
const TAKEOVER_WAIT: Duration = Duration::from_secs(5);

/// How many times a resume looks the ticket up again after a handover
/// that did not happen (the old task parked the session instead).
const TAKEOVER_ATTEMPTS: usize = 3;

/// A request to the attached task: send the session here.
pub(crate) type Takeover = oneshot::Sender<Box<Session>>;

/// Fills a buffer with bytes from a CSPRNG.
pub type RandomSource = Box<dyn FnMut(&mut [u8]) -> io::Result<()> + Send>;

/// Why a resume is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// No session under the ticket (never issued, finished, or swept).
    Unknown,
    /// The session was parked past its deadline.
    Expired,
    /// The attached task did not hand the session over in time.
    Busy,
}

impl Refusal {
    /// The log label.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Refusal::Unknown => "unknown_ticket",
            Refusal::Expired => "expired",
            Refusal::Busy => "takeover_timeout",
        }
    }
}

#[derive(Debug)]
enum Slot {
    Attached(mpsc::Sender<Takeover>),
    Parked {
        session: Box<Session>,
        deadline: Instant,
    },
}

/// The map and what makes tickets, under one lock.
struct Inner {
    slots: HashMap<Ticket, Slot>,
    random: RandomSource,
    next_id: u64,
}

/// The session table, shared by the connection tasks.
pub(crate) struct Table {
    inner: Mutex<Inner>,
    ttl: Duration,
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table").field("ttl", &self.ttl).finish()
    }
}

impl Table {
    /// An empty table whose parked sessions live `ttl`.
    pub(crate) fn new(ttl: Duration, random: RandomSource) -> Self {
        Table {
            inner: Mutex::new(Inner {
                slots: HashMap::new(),
                random,
                next_id: 1,
            }),
            ttl,
        }
    }

    /// The lifetime of a parked session.
    pub(crate) fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Registers a new session under a fresh ticket, attached to the
    /// caller, who answers takeovers on the returned receiver.
    ///
    /// # Errors
    /// [`GenerateError`] when the random source fails.
    pub(crate) async fn open(
        &self,
        max_unacked: usize,
    ) -> Result<(Box<Session>, mpsc::Receiver<Takeover>), GenerateError> {
        let mut inner = self.inner.lock().await;
        let ticket = loop {
            let ticket = generate(&mut inner.random)?;
            if !inner.slots.contains_key(&ticket) {
                break ticket;
            }
        };
        let id = inner.next_id;
        inner.next_id += 1;
        let (sender, receiver) = mpsc::channel(1);
        inner.slots.insert(ticket.clone(), Slot::Attached(sender));
        let now = std::time::Instant::now();
        Ok((
            Box::new(Session::new(id, ticket, max_unacked, now)),
            receiver,
        ))
    }

    /// Takes the session under `ticket` for the caller, attached to it.
    pub(crate) async fn resume(
        &self,
        ticket: &Ticket,
    ) -> Result<(Box<Session>, mpsc::Receiver<Takeover>), Refusal> {
        for _ in 0..TAKEOVER_ATTEMPTS {
            let owner = {
                let mut inner = self.inner.lock().await;
                match inner.slots.get(ticket) {
                    None => return Err(Refusal::Unknown),
                    // Left for the sweeper, which logs the session's end.
                    Some(Slot::Parked { deadline, .. }) if *deadline <= Instant::now() => {
                        return Err(Refusal::Expired);
                    }
                    Some(Slot::Attached(owner)) => owner.clone(),
                    Some(Slot::Parked { .. }) => {
                        let (sender, receiver) = mpsc::channel(1);
                        let parked = inner.slots.insert(ticket.clone(), Slot::Attached(sender));
                        let Some(Slot::Parked { session, .. }) = parked else {
                            // Invariant: the slot was parked under this lock.
                            return Err(Refusal::Unknown);
                        };
                        return Ok((session, receiver));
                    }
                }
            };
            let (reply, handed) = oneshot::channel();
            if owner.send(reply).await.is_err() {
                continue;
            }
            if let Ok(Ok(session)) = timeout(TAKEOVER_WAIT, handed).await {
                let (sender, receiver) = mpsc::channel(1);
                self.inner
                    .lock()
                    .await
                    .slots
                    .insert(ticket.clone(), Slot::Attached(sender));
                return Ok((session, receiver));
            }
        }
        Err(Refusal::Busy)
    }

    /// Parks the caller's session until `ttl` from now. Call before
    /// dropping the takeover receiver, so a resume that raced with the
    /// disconnect finds the session parked.
    pub(crate) async fn park(&self, session: Box<Session>) {
        let ticket = session.ticket().clone();
        let deadline = Instant::now() + self.ttl;
        self.inner
            .lock()
            .await
            .slots
            .insert(ticket, Slot::Parked { session, deadline });
    }

    /// Forgets the session under `ticket` (finished or failed).
    pub(crate) async fn remove(&self, ticket: &Ticket) {
        self.inner.lock().await.slots.remove(ticket);
    }

    /// Removes and returns the parked sessions past their deadline.
    pub(crate) async fn sweep(&self) -> Vec<Box<Session>> {
        let now = Instant::now();
        let mut inner = self.inner.lock().await;
        let expired: Vec<Ticket> = inner
            .slots
            .iter()
            .filter_map(|(ticket, slot)| match slot {
                Slot::Parked { deadline, .. } if *deadline <= now => Some(ticket.clone()),
                _ => None,
            })
            .collect();
        expired
            .iter()
            .filter_map(|ticket| match inner.slots.remove(ticket) {
                Some(Slot::Parked { session, .. }) => Some(session),
                _ => None,
            })
            .collect()
    }

    /// Removes and returns every parked session (at shutdown).
    pub(crate) async fn drain_parked(&self) -> Vec<Box<Session>> {
        let mut inner = self.inner.lock().await;
        let slots = std::mem::take(&mut inner.slots);
        slots
            .into_values()
            .filter_map(|slot| match slot {
                Slot::Parked { session, .. } => Some(session),
                Slot::Attached(_) => None,
            })
            .collect()
    }
}

/// Draws a ticket, turning a failing source into [`GenerateError`].
fn generate(random: &mut RandomSource) -> Result<Ticket, GenerateError> {
    let mut failed = false;
    let ticket = Ticket::generate(&mut |buf: &mut [u8]| {
        if random(buf).is_err() {
            failed = true;
            // Bytes >= 252 are all rejected, so a failed source yields
            // no ticket.
            buf.fill(0xFF);
        }
    })?;
    if failed {
        Err(GenerateError)
    } else {
        Ok(ticket)
    }
}
