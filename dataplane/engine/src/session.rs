//! One accepted connection's context, and how it ended.
//!
//! The core creates a [`Session`] per accepted connection and lends it to
//! the handler; it owns the per-session byte counters (read by the idle
//! watchdog), the handshake mark that frees a pending-handshake slot, and
//! access to the core's pools. The handler returns a [`SessionEnd`]; the
//! core adds the timeout and drain endings it imposes itself and logs one
//! `session_closed` event per session.

use std::cell::Cell;
use std::fmt;
use std::io;
use std::rc::Rc;
use std::time::Instant;

use gatehouse_channel::{ClientAddr, CoreId};

use crate::config::RelayMode;
use crate::core::CoreState;
use crate::counters::{bump, drop_one};
use crate::handler::ListenerId;
use crate::pool::BufPool;
use crate::relay::{PipePool, RelayEnd, RelayOutcome, RelaySide};

/// A connection's number on its core (unique per core and run).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Who caused a session to end badly: a log field and a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    /// Nobody: the session ended as it should (or was timed out or drained).
    None,
    /// The client (its connection failed, or it spoke out of protocol).
    Client,
    /// The back end the session was relayed to (worker, server).
    Worker,
    /// The control plane (no answer, or an unusable one).
    ControlPlane,
    /// The gateway itself (resources exhausted, a bug).
    Internal,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Fault {
    /// The `fault` field value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Client => "client",
            Self::Worker => "worker",
            Self::ControlPlane => "control_plane",
            Self::Internal => "internal",
        }
    }
}

/// How a session ended. Handlers return one; the core adds the last two.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEnd {
    /// The relay ran and ended (see [`RelayOutcome::end`]).
    Relayed(RelayOutcome),
    /// The back end refused or failed the connection attempt.
    BackendUnreachable(io::ErrorKind),
    /// The back end did not answer the connection attempt in time.
    BackendTimeout,
    /// The handler turned the connection away (bad protocol, denied
    /// ticket). The core counts it by `reason` ([`crate::CoreStats::refusals`]).
    Refused {
        /// The `reason` field (snake_case, fixed vocabulary of the handler).
        reason: &'static str,
        /// Who is at fault.
        fault: Fault,
    },
    /// The control plane ordered the session ended (a kill order).
    Killed,
    /// No byte moved either way for the idle timeout (set by the core).
    IdleTimeout,
    /// Still open at the drain deadline, so cut (set by the core).
    DrainDeadline,
}

impl SessionEnd {
    /// The `reason` field of the `session_closed` event.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Relayed(outcome) => match outcome.end {
                RelayEnd::Completed => "completed",
                RelayEnd::Failed {
                    side: RelaySide::Client,
                    ..
                } => "client_error",
                RelayEnd::Failed {
                    side: RelaySide::Backend,
                    ..
                } => "backend_error",
                RelayEnd::Internal(_) => "internal_error",
            },
            Self::BackendUnreachable(_) => "backend_unreachable",
            Self::BackendTimeout => "backend_timeout",
            Self::Refused { reason, .. } => reason,
            Self::Killed => "killed",
            Self::IdleTimeout => "idle_timeout",
            Self::DrainDeadline => "drain_deadline",
        }
    }

    /// The `fault` field of the `session_closed` event.
    pub fn fault(&self) -> Fault {
        match self {
            Self::Relayed(outcome) => match outcome.end {
                RelayEnd::Completed => Fault::None,
                RelayEnd::Failed {
                    side: RelaySide::Client,
                    ..
                } => Fault::Client,
                RelayEnd::Failed {
                    side: RelaySide::Backend,
                    ..
                } => Fault::Worker,
                RelayEnd::Internal(_) => Fault::Internal,
            },
            Self::BackendUnreachable(_) | Self::BackendTimeout => Fault::Worker,
            Self::Refused { fault, .. } => *fault,
            Self::Killed | Self::IdleTimeout | Self::DrainDeadline => Fault::None,
        }
    }

    /// The I/O error behind the ending, if there was one.
    pub fn error(&self) -> Option<io::ErrorKind> {
        match self {
            Self::Relayed(outcome) => match outcome.end {
                RelayEnd::Failed { kind, .. } | RelayEnd::Internal(kind) => Some(kind),
                RelayEnd::Completed => None,
            },
            Self::BackendUnreachable(kind) => Some(*kind),
            _ => None,
        }
    }
}

/// The context of one accepted connection, lent to the handler.
///
/// Not `Send`: it lives on its core. Dropping it (the core does, after the
/// handler returns) releases the connection's slot in the core's limits.
#[derive(Debug)]
pub struct Session {
    core: Rc<CoreState>,
    conn: ConnId,
    peer: ClientAddr,
    listener: ListenerId,
    started: Instant,
    up: Cell<u64>,
    down: Cell<u64>,
    pending: Cell<bool>,
    proto: Cell<&'static str>,
}

impl Session {
    /// Registers an accepted connection with its core: counts it open and
    /// in handshake.
    pub(crate) fn open(
        core: Rc<CoreState>,
        conn: ConnId,
        peer: ClientAddr,
        listener: ListenerId,
    ) -> Session {
        bump(&core.counters.active, 1);
        bump(&core.counters.pending, 1);
        Session {
            core,
            conn,
            peer,
            listener,
            started: Instant::now(),
            up: Cell::new(0),
            down: Cell::new(0),
            pending: Cell::new(true),
            proto: Cell::new("-"),
        }
    }

    /// The core this session runs on.
    pub fn core_id(&self) -> CoreId {
        self.core.id
    }

    /// The connection's number on its core.
    pub fn conn(&self) -> ConnId {
        self.conn
    }

    /// The client's address.
    pub fn peer(&self) -> ClientAddr {
        self.peer
    }

    /// The listener that accepted the connection.
    pub fn listener(&self) -> ListenerId {
        self.listener
    }

    /// When the connection was accepted.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Names the protocol for the `proto` log field (`"tcp"`, `"socks5"`).
    pub fn set_proto(&self, proto: &'static str) {
        self.proto.set(proto);
    }

    /// The protocol named by [`Session::set_proto`], `"-"` before that.
    pub fn proto(&self) -> &'static str {
        self.proto.get()
    }

    /// Marks the handshake finished: the connection stops counting against
    /// `max_pending_handshakes_per_core`. Idempotent.
    pub fn established(&self) {
        if self.pending.replace(false) {
            drop_one(&self.core.counters.pending);
        }
    }

    /// Bytes delivered client → back end so far.
    pub fn bytes_up(&self) -> u64 {
        self.up.get()
    }

    /// Bytes delivered back end → client so far.
    pub fn bytes_down(&self) -> u64 {
        self.down.get()
    }

    /// The core's relay buffer pool (16 KiB buffers), for handler reads.
    pub fn buffers(&self) -> &BufPool {
        &self.core.bufs
    }

    /// The core's relay mode.
    pub fn relay_mode(&self) -> RelayMode {
        self.core.relay_mode
    }

    /// The core's copy-phase window (`copy_hot_ms`).
    pub(crate) fn copy_hot(&self) -> std::time::Duration {
        self.core.copy_hot
    }

    pub(crate) fn pipes(&self) -> &PipePool {
        &self.core.pipes
    }

    pub(crate) fn count_up(&self, n: u64) {
        self.up.set(self.up.get().wrapping_add(n));
        bump(&self.core.counters.bytes_up, n);
    }

    /// Counts a session report the channel had no room for.
    pub(crate) fn count_report_dropped(&self) {
        bump(&self.core.counters.reports_dropped, 1);
    }

    pub(crate) fn count_down(&self, n: u64) {
        self.down.set(self.down.get().wrapping_add(n));
        bump(&self.core.counters.bytes_down, n);
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.established();
        drop_one(&self.core.counters.active);
        bump(&self.core.counters.closed, 1);
    }
}
