//! Sides and ports: the public face of the channel.
//!
//! A [`Side`] is one plane's attachment to a segment: its generation, its
//! heartbeat, its view of the peer, its doorbells. It hands out one
//! [`Port`] per core, once; a port is the plane's end of that core's ring
//! pair and is moved to whichever thread or task serves the core.
//!
//! Call order on a port, for a consumer that must not spin:
//!
//! ```text
//! loop {
//!     while let Some(envelope) = port.try_recv()? { handle(envelope) }
//!     match port.prepare_wait() {
//!         WaitDecision::Receive => continue,           // raced with a send
//!         WaitDecision::Sleep => {
//!             /* await port.doorbell() readable (io_uring poll, AsyncFd,
//!                or Port::wait for a plain thread) */
//!             port.after_wake()?;
//!         }
//!     }
//! }
//! ```

use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use gatehouse_wire::Progress;

use crate::doorbell::{self, Bells};
use crate::ids::{CoreId, Generation, MonotonicMillis, RequestId, RequestIds};
use crate::liveness::{PeerSnapshot, ProcessPresence};
use crate::mapping::{self, Mapping};
use crate::message::{self, Envelope, Message, MessageError, SLOT_BYTES, ToControl, ToCore};
use crate::named::SegmentName;
use crate::ring::{Consumer, MustWake, Producer, PushError};
use crate::segment::{Direction, Geometry, LayoutError, Memory, Plane, Segment};

/// A plane's role: which messages it sends and receives.
pub trait Role {
    /// The plane.
    const PLANE: Plane;
    /// What this plane sends.
    type Tx: Message;
    /// What this plane receives.
    type Rx: Message;
}

/// The control plane's role: receives [`ToControl`], sends [`ToCore`].
#[derive(Debug)]
pub struct ControlPlane;

/// The data plane's role: receives [`ToCore`], sends [`ToControl`].
#[derive(Debug)]
pub struct DataPlane;

impl Role for ControlPlane {
    const PLANE: Plane = Plane::Control;
    type Tx = ToCore;
    type Rx = ToControl;
}

impl Role for DataPlane {
    const PLANE: Plane = Plane::Data;
    type Tx = ToControl;
    type Rx = ToCore;
}

/// The control plane's attachment.
pub type ControlSide = Side<ControlPlane>;
/// The data plane's attachment.
pub type DataSide = Side<DataPlane>;
/// The port type of role `R`.
pub type PortOf<R> = Port<<R as Role>::Tx, <R as Role>::Rx>;
/// A core's end of its ring pair (data plane).
pub type CorePort = Port<ToControl, ToCore>;
/// The control plane's end of one core's ring pair.
pub type ControlPort = Port<ToCore, ToControl>;

/// Why a side could not attach.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    /// A system call failed.
    #[error("{op} failed")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The system error.
        #[source]
        source: io::Error,
    },
    /// Another live process is attached as the same plane.
    #[error("the {plane} side of {path} is held by another live process")]
    SideBusy {
        /// The plane asked for.
        plane: Plane,
        /// The segment file.
        path: String,
    },
    /// The segment exists with another layout while its peer is attached.
    #[error("segment {path} cannot be used")]
    Layout {
        /// The segment file (`memfd` for an anonymous one).
        path: String,
        /// What does not match.
        #[source]
        source: LayoutError,
    },
}

pub(crate) fn io_error(op: &'static str) -> impl FnOnce(io::Error) -> AttachError {
    move |source| AttachError::Io { op, source }
}

/// `take_ports` was called before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the ports of this side were already taken")]
pub struct PortsTaken;

/// Why a send did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Every slot holds an unread message: backpressure, refuse the work.
    #[error("ring is full")]
    Full,
    /// The ring's indices are impossible (a peer wrote garbage).
    #[error("ring indices are corrupt")]
    Corrupt,
}

/// Why a receive failed. The slot is consumed either way; call again.
#[derive(Debug, thiserror::Error)]
pub enum RecvError {
    /// The slot did not decode; it is skipped and counted.
    #[error("undecodable message")]
    Message(#[source] MessageError),
    /// The ring's indices are impossible (a peer wrote garbage).
    #[error("ring indices are corrupt")]
    Corrupt,
    /// Waiting on the doorbell failed (async wrappers).
    #[error("doorbell wait failed")]
    Doorbell(#[source] io::Error),
}

/// When a send rings the peer's doorbell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WakePolicy {
    /// Only when the consumer announced it sleeps (`prepare_wait`): no
    /// syscall while the peer is busy. The default.
    #[default]
    WhenArmed,
    /// On every send (for measurement).
    Always,
}

/// What [`Port::prepare_wait`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum WaitDecision {
    /// Messages arrived meanwhile: call `try_recv` again, do not sleep.
    Receive,
    /// The port is armed: wait until `doorbell()` is readable (any
    /// runtime's readiness), then call `after_wake`.
    Sleep,
}

/// What a port has seen since it was taken.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortCounters {
    /// Messages published.
    pub sent: u64,
    /// Sends refused because the ring was full.
    pub refused_full: u64,
    /// Messages handed to the caller.
    pub received: u64,
    /// Messages dropped because their sender's generation is not the
    /// peer's current one (sent by an incarnation that has since restarted).
    pub dropped_stale: u64,
    /// Slots that did not decode.
    pub undecodable: u64,
    /// Doorbell rings (syscalls) made by sends.
    pub doorbells_rung: u64,
    /// Doorbell rings that failed (should stay zero).
    pub doorbell_errors: u64,
}

/// State shared by a side and its ports.
#[derive(Debug)]
pub(crate) struct SideInner {
    pub(crate) segment: Arc<Segment>,
    pub(crate) plane: Plane,
    pub(crate) generation: Generation,
    pub(crate) bells: Bells,
    pub(crate) name: Option<SegmentName>,
    ports_taken: AtomicBool,
}

impl Drop for SideInner {
    fn drop(&mut self) {
        self.segment.side(self.plane).detach();
    }
}

impl SideInner {
    pub(crate) fn new(
        segment: Arc<Segment>,
        plane: Plane,
        bells: Bells,
        name: Option<SegmentName>,
    ) -> Self {
        let generation = segment
            .side(plane)
            .attach(std::process::id(), MonotonicMillis::now());
        Self {
            segment,
            plane,
            generation,
            bells,
            name,
            ports_taken: AtomicBool::new(false),
        }
    }

    /// Rings every doorbell of the peer (after a link, so a peer that
    /// armed before the bells were installed wakes up and looks).
    pub(crate) fn kick_peer(&self) {
        for core in 0..self.bells.cores() {
            let _ = doorbell::ring(self.bells.outbound(core));
        }
    }
}

/// One plane's attachment to a segment. Dropping it and everything taken
/// from it (ports, link listener) detaches cleanly: the peer then sees
/// [`crate::PeerStatus::Absent`].
#[derive(Debug)]
pub struct Side<R: Role> {
    pub(crate) inner: Arc<SideInner>,
    role: PhantomData<fn() -> R>,
}

/// Both planes as threads of one process: one anonymous (memfd) mapping and
/// one eventfd per direction per core, shared directly. No link step.
pub fn in_process(geometry: Geometry) -> Result<(ControlSide, DataSide), AttachError> {
    let mapping =
        Mapping::anonymous(geometry.segment_bytes()).map_err(io_error("create memfd segment"))?;
    let segment = Segment::initialize(Memory::Mapped(mapping), geometry, crate::named::nonce())
        .map_err(|source| AttachError::Layout {
            path: "memfd".to_owned(),
            source,
        })?;
    let segment = Arc::new(segment);
    let cores = usize::from(geometry.cores());
    let bells = |n| -> io::Result<Vec<OwnedFd>> { (0..n).map(|_| doorbell::create()).collect() };
    let dup = |fds: &[OwnedFd]| -> io::Result<Vec<OwnedFd>> {
        fds.iter().map(OwnedFd::try_clone).collect()
    };
    let requests = bells(cores).map_err(io_error("create eventfd"))?;
    let answers = bells(cores).map_err(io_error("create eventfd"))?;
    let control_bells = Bells::new(
        dup(&requests).map_err(io_error("dup eventfd"))?,
        dup(&answers).map_err(io_error("dup eventfd"))?,
    );
    let data_bells = Bells::new(answers, requests);
    let control = SideInner::new(segment.clone(), Plane::Control, control_bells, None);
    let data = SideInner::new(segment, Plane::Data, data_bells, None);
    Ok((Side::from_inner(control), Side::from_inner(data)))
}

impl<R: Role> Side<R> {
    pub(crate) fn from_inner(inner: SideInner) -> Self {
        Self {
            inner: Arc::new(inner),
            role: PhantomData,
        }
    }

    /// Attaches as `R`'s plane to the named segment, creating it if absent.
    ///
    /// Either plane may start first. The segment is created (or, if it has
    /// another geometry and no live peer, recreated) under a file lock. If
    /// the peer's process is not alive, unread messages left in the rings
    /// are dropped; if it is, the rings are resumed as they are. Refuses
    /// when another live process holds the same plane, or when the layout
    /// differs while the peer is alive. Named sides must then link (see
    /// [`ControlSide::listen`] and [`DataSide::link`]) before doorbells
    /// reach the peer.
    pub fn open_named(name: &SegmentName, geometry: Geometry) -> Result<Self, AttachError> {
        let cores = usize::from(geometry.cores());
        let segment = crate::named::open(name, geometry, R::PLANE)?;
        let bells = Bells::unlinked(cores).map_err(io_error("create eventfd"))?;
        Ok(Self::from_inner(SideInner::new(
            Arc::new(segment),
            R::PLANE,
            bells,
            Some(name.clone()),
        )))
    }

    /// The plane this side is.
    pub fn plane(&self) -> Plane {
        R::PLANE
    }

    /// This side's generation (bumped at attach); stamped on every message.
    pub fn generation(&self) -> Generation {
        self.inner.generation
    }

    /// The segment's geometry.
    pub fn geometry(&self) -> Geometry {
        self.inner.segment.geometry()
    }

    /// Records a heartbeat at `now` (call periodically, e.g. every 100 ms).
    pub fn beat(&self, now: MonotonicMillis) {
        self.inner.segment.side(R::PLANE).beat(now);
    }

    /// Reads the peer's record (and, for a named segment, asks the kernel
    /// whether the peer's process holds its lock). Feed it to a
    /// [`crate::PeerWatch`].
    pub fn peer(&self) -> PeerSnapshot {
        let peer = R::PLANE.peer();
        let record = self.inner.segment.side(peer).record();
        let process = match (&self.inner.name, self.inner.segment.memory().mapping()) {
            (Some(_), Some(mapping)) => match mapping::side_held_elsewhere(mapping.fd(), peer) {
                Ok(true) => ProcessPresence::Alive,
                Ok(false) => ProcessPresence::Dead,
                Err(_) => ProcessPresence::Unknown,
            },
            _ => ProcessPresence::Unknown,
        };
        PeerSnapshot {
            generation: record.generation,
            attached: record.attached,
            heartbeat: record.heartbeat,
            pid: record.pid,
            process,
        }
    }

    /// The ports, one per core in core order. Only once per side: a ring
    /// has one producer and one consumer.
    pub fn take_ports(&self) -> Result<Vec<PortOf<R>>, PortsTaken> {
        if self.inner.ports_taken.swap(true, Ordering::AcqRel) {
            return Err(PortsTaken);
        }
        let (tx, rx) = match R::PLANE {
            Plane::Data => (Direction::Requests, Direction::Answers),
            Plane::Control => (Direction::Answers, Direction::Requests),
        };
        let segment = &self.inner.segment;
        Ok((0..segment.geometry().cores())
            .map(|core| {
                let core = CoreId(core);
                // SAFETY: one producer and one consumer per ring: this side
                // hands its ports out once (`ports_taken`), and each plane is
                // attached once per segment (created together in-process, or
                // guarded by the plane's side lock for a named segment). The
                // peer takes the opposite ends.
                let (producer, consumer) = unsafe {
                    (
                        Producer::new(segment.ring(core, tx)),
                        Consumer::new(segment.ring(core, rx)),
                    )
                };
                Port {
                    core,
                    producer,
                    consumer,
                    ids: RequestIds::new(self.inner.generation),
                    wake: WakePolicy::default(),
                    wake_owed: false,
                    counters: PortCounters::default(),
                    side: self.inner.clone(),
                    types: PhantomData,
                }
            })
            .collect())
    }
}

/// One plane's end of one core's ring pair: sends `Tx`, receives `Rx`.
///
/// Non-blocking throughout except [`Port::wait`]. `Send`, not `Sync`:
/// move it to the thread or task that serves the core.
#[derive(Debug)]
pub struct Port<Tx, Rx> {
    core: CoreId,
    producer: Producer,
    consumer: Consumer,
    ids: RequestIds,
    wake: WakePolicy,
    /// A deferred send left the peer asleep with a message to read.
    wake_owed: bool,
    counters: PortCounters,
    // Keeps the segment mapped and the doorbells open while rings are used.
    side: Arc<SideInner>,
    types: PhantomData<fn(Tx) -> Rx>,
}

impl<Tx: Message, Rx: Message> Port<Tx, Rx> {
    /// The core this ring pair serves.
    pub fn core(&self) -> CoreId {
        self.core
    }

    /// This side's generation, stamped on what this port sends.
    pub fn generation(&self) -> Generation {
        self.side.generation
    }

    /// A fresh request id (unique across this side's generations).
    pub fn next_request_id(&mut self) -> RequestId {
        self.ids.allocate()
    }

    /// Chooses when sends ring the peer's doorbell.
    pub fn set_wake_policy(&mut self, policy: WakePolicy) {
        self.wake = policy;
    }

    /// What this port has seen.
    pub fn counters(&self) -> PortCounters {
        self.counters
    }

    /// Messages this port sent that the peer has not read yet: how close
    /// the outbound ring is to [`SendError::Full`].
    pub fn outbound_backlog(&self) -> u64 {
        self.producer.backlog()
    }

    /// Free slots in the outbound ring: sends that would succeed now. The
    /// control plane takes a request only when it has room to answer it,
    /// so a slow core backs up its own request ring, not the answers.
    pub fn outbound_room(&self) -> u64 {
        u64::from(self.side.segment.geometry().slots_per_ring())
            .saturating_sub(self.producer.backlog())
    }

    /// Messages waiting for this port's `try_recv`.
    pub fn inbound_backlog(&self) -> u64 {
        self.consumer.backlog()
    }

    /// Publishes `message` and rings the peer if it sleeps. Never blocks;
    /// a full ring is [`SendError::Full`] (backpressure: refuse the work).
    pub fn try_send(&mut self, request_id: RequestId, message: &Tx) -> Result<(), SendError> {
        let mut slot = [0_u8; SLOT_BYTES];
        let len = message::encode_parts(self.side.generation, request_id, message, &mut slot);
        let must_wake = match self.producer.try_push(&slot[..len]) {
            Ok(MustWake(wake)) => wake,
            Err(PushError::Full) => {
                self.counters.refused_full += 1;
                return Err(SendError::Full);
            }
            Err(PushError::Corrupt) => return Err(SendError::Corrupt),
        };
        self.counters.sent += 1;
        // This push looked at `armed`: an earlier deferred message is
        // covered (rung now, or read by an awake peer before it sleeps).
        self.wake_owed = false;
        if must_wake || self.wake == WakePolicy::Always {
            self.ring_peer();
        }
        Ok(())
    }

    /// Publishes `message` like [`Port::try_send`] but does not ring a
    /// sleeping peer: the ring is owed until the next `try_send` (which
    /// rings if the peer still sleeps) or [`Port::flush_wake`]. For
    /// notifications that may wait a little (session reports), so that a
    /// busy core does not wake the peer once per message. The caller must
    /// call `flush_wake` within the delay it accepts while
    /// [`Port::wake_owed`] holds. Under [`WakePolicy::Always`] it rings
    /// like `try_send`.
    pub fn try_send_deferred(
        &mut self,
        request_id: RequestId,
        message: &Tx,
    ) -> Result<(), SendError> {
        if self.wake == WakePolicy::Always {
            return self.try_send(request_id, message);
        }
        let mut slot = [0_u8; SLOT_BYTES];
        let len = message::encode_parts(self.side.generation, request_id, message, &mut slot);
        match self.producer.try_push_quiet(&slot[..len]) {
            Ok(armed) => {
                self.counters.sent += 1;
                self.wake_owed |= armed;
                Ok(())
            }
            Err(PushError::Full) => {
                self.counters.refused_full += 1;
                Err(SendError::Full)
            }
            Err(PushError::Corrupt) => Err(SendError::Corrupt),
        }
    }

    /// Whether a deferred send left the peer asleep with messages to read
    /// (call [`Port::flush_wake`] soon).
    pub fn wake_owed(&self) -> bool {
        self.wake_owed
    }

    /// Rings the peer if a deferred send left it asleep; `true` if it rang.
    pub fn flush_wake(&mut self) -> bool {
        if !std::mem::take(&mut self.wake_owed) {
            return false;
        }
        if self.producer.take_wake().0 {
            self.ring_peer();
            return true;
        }
        false
    }

    fn ring_peer(&mut self) {
        self.counters.doorbells_rung += 1;
        if doorbell::ring(self.side.bells.outbound(usize::from(self.core.0))).is_err() {
            self.counters.doorbell_errors += 1;
        }
    }

    /// The next message from the peer's current generation, if any.
    /// Messages from an older generation are dropped and counted. An
    /// undecodable slot is skipped and reported as an error; call again.
    pub fn try_recv(&mut self) -> Result<Option<Envelope<Rx>>, RecvError> {
        let peer = self.side.segment.side(self.side.plane.peer());
        let mut slot = [0_u8; SLOT_BYTES];
        // Bounded: at most one ring's worth of stale messages per call.
        for _ in 0..=self.side.segment.geometry().slots_per_ring() {
            if !self
                .consumer
                .try_pop(&mut slot)
                .map_err(|_| RecvError::Corrupt)?
            {
                return Ok(None);
            }
            let envelope = match message::decode::<Rx>(&slot) {
                Ok(Progress::Done { value, .. }) => value,
                Ok(Progress::NeedMore { .. }) => {
                    // A whole slot always holds a whole message (payload
                    // length is checked against the slot first).
                    self.counters.undecodable += 1;
                    return Err(RecvError::Message(MessageError::Truncated("slot")));
                }
                Err(e) => {
                    self.counters.undecodable += 1;
                    return Err(RecvError::Message(e));
                }
            };
            // Loaded after the slot (Acquire chain through `tail`): at least
            // as new as the generation the sender stamped.
            if envelope.generation != peer.generation() {
                self.counters.dropped_stale += 1;
                continue;
            }
            self.counters.received += 1;
            return Ok(Some(envelope));
        }
        Ok(None)
    }

    /// Arms the port before sleeping; see [`WaitDecision`].
    pub fn prepare_wait(&mut self) -> WaitDecision {
        if self.consumer.arm() {
            WaitDecision::Sleep
        } else {
            WaitDecision::Receive
        }
    }

    /// Resets the doorbell and disarms after a wake-up (spurious or not).
    pub fn after_wake(&mut self) -> io::Result<()> {
        self.consumer.disarm();
        doorbell::drain(self.doorbell()).map(|_| ())
    }

    /// Blocks the calling thread until a message may be waiting or
    /// `timeout` passes: `prepare_wait`, `poll` on the doorbell,
    /// `after_wake`. For plain threads; runtimes await `doorbell()`.
    pub fn wait(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        if self.prepare_wait() == WaitDecision::Sleep {
            let waited = doorbell::wait(self.doorbell(), timeout);
            self.after_wake()?;
            waited?;
        }
        Ok(())
    }

    /// The eventfd the peer rings for this port: readable means "look".
    pub fn doorbell(&self) -> BorrowedFd<'_> {
        self.side.bells.inbound(usize::from(self.core.0))
    }
}

impl<Tx, Rx> AsFd for Port<Tx, Rx> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.side.bells.inbound(usize::from(self.core.0))
    }
}

impl<Tx, Rx> AsRawFd for Port<Tx, Rx> {
    fn as_raw_fd(&self) -> RawFd {
        self.as_fd().as_raw_fd()
    }
}
