//! The shared-memory channel between the Gatehouse planes.
//!
//! What it does: one single-producer/single-consumer ring pair per
//! data-plane core, in one shared mapping: requests core -> control plane
//! ([`ToControl`]), answers control plane -> core ([`ToCore`]). Fixed
//! 256-byte slots carry versioned messages ([`message`]); eventfd doorbells
//! wake a sleeping consumer, and only a sleeping one ([`WakePolicy`]).
//! Both planes run as threads of one process ([`in_process`], a memfd
//! mapping) or as two processes over a named segment under `/dev/shm`
//! ([`Side::open_named`], [`ControlSide::listen`], [`DataSide::link`]).
//! Each side writes a generation and a heartbeat into the segment, so the
//! other can tell a live peer from a dead or restarted one ([`PeerWatch`]);
//! the survivor keeps its rings and relinks with the newcomer. A per-core
//! [`PendingTable`] holds requests awaiting answers, with deadlines.
//!
//! What it refuses to do: block (a full ring is [`SendError::Full`], the
//! caller refuses the work), grow (rings and tables are bounded), misread
//! (an unknown version or kind is a typed [`MessageError`]), or pick an
//! async runtime: a port exposes its doorbell as a file descriptor that
//! monoio (io_uring) and tokio (`AsyncFd`, see the `tokio` feature) each
//! await their own way.
//!
//! Who calls it: the engine (`gatehouse-engine`, one [`CorePort`] per
//! monoio core) and the control plane (one [`ControlPort`] per core, in
//! tokio tasks). It implements DESIGN.md §3 (the channel between planes);
//! the messages carry the ticket redemption of PROTOCOLS.md §2–§4 as
//! opaque ticket text.
//!
//! `unsafe` lives in a few small modules, each block with a `// SAFETY:`
//! comment: `ring` (slot copies and the control block over raw memory),
//! `segment` (the header over the mapping), `mapping` (mmap, munmap, OFD
//! locks), `doorbell` (`dup3` onto an outbound doorbell), `ids` (reading
//! `CLOCK_MONOTONIC`) and, with the `tokio` feature, `tokio_port`
//! (registering the doorbell with tokio).
//! The ring and the segment layout run on any memory, so their tests use
//! the heap (and run under Miri where it is installed).
#![deny(unsafe_op_in_unsafe_fn)]

mod channel;
mod doorbell;
#[cfg(test)]
mod heap;
pub mod ids;
mod link;
mod liveness;
mod mapping;
pub mod message;
mod named;
mod pending;
mod ring;
mod segment;
#[cfg(feature = "tokio")]
mod tokio_port;

pub use channel::{
    AttachError, ControlPlane, ControlPort, ControlSide, CorePort, DataPlane, DataSide, Port,
    PortCounters, PortOf, PortsTaken, RecvError, Role, SendError, Side, WaitDecision, WakePolicy,
    in_process,
};
pub use ids::{
    ClientAddr, CoreId, CounterId, FlowId, Generation, MonotonicMillis, RequestId, RequestIds,
    SessionId, WorkerAddr,
};
pub use link::{LINK_TIMEOUT, LinkError, LinkListener, Linked};
pub use liveness::{PeerSnapshot, PeerStatus, PeerWatch, ProcessPresence};
pub use message::{
    DenyReason, Envelope, FlowClosed, FlowDenyReason, FlowRequest, FlowVerdict, Heartbeat,
    KillSession, MessageError, RedeemKind, RedeemTicket, SessionClosed, SessionOpened, StatsReport,
    TicketBytes, ToControl, ToCore, Verdict,
};
pub use named::{DEFAULT_SEGMENT_DIR, NameError, SegmentName};
pub use pending::{Expired, PendingCounters, PendingTable, RejectReason, Rejected};
pub use segment::{
    DEFAULT_SLOTS_PER_RING, Geometry, GeometryError, LayoutError, MAX_CORES, MAX_SLOTS_PER_RING,
    Plane,
};
#[cfg(feature = "tokio")]
pub use tokio_port::AsyncPort;

#[cfg(test)]
#[cfg(not(miri))]
mod tests;
