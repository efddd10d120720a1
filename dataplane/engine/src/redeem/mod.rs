//! Ticket redemption as the SOCKS handler sees it: ask a [`TicketRedeemer`]
//! who the ticket's worker is, and get back a [`Redeemed`] proof value.
//!
//! [`Redeemed`] can only be made inside this crate (by a redeemer: the
//! [`ChannelRedeemer`] that asks the control plane over the shared-memory
//! channel, or [`MemoryRedeemer`] in tests), and a relay for a SOCKS launch
//! starts only from one, so a code path that skips redemption does not
//! compile (STYLE.md "proof values").
//!
//! A redeemer also carries what the control plane wants to hear about a
//! redeemed session afterwards ([`TicketRedeemer::report`]: opened, closed
//! with byte counts) and the control plane's order to end one
//! ([`TicketRedeemer::until_killed`]).
//!
//! What this module refuses to do: parse tickets (the control plane
//! decides what the SOCKS domain bytes mean; `wire::ticket` parses the STA
//! form) and log (the core logs one event per session).

mod channel;
mod memory;

pub(crate) use channel::ControlLink;
pub use channel::{
    ChannelRedeemer, ChannelRedeemerConfig, ChannelRedeemerStats, ControlPlaneGate, GATE_CHECK,
    REPORT_WAKE_DELAY,
};
pub use memory::{MemoryGrant, MemoryRedeemer};

use std::future::Future;
use std::time::Duration;

use gatehouse_channel::{
    ClientAddr, DenyReason, RedeemKind, SessionClosed, SessionId, SessionOpened, TicketBytes,
    WorkerAddr,
};
use gatehouse_wire::socks5::Refusal;

use crate::session::Fault;

/// Proof that a ticket was redeemed: where to connect, the session it
/// belongs to, and for CGP the reconnect tickets.
///
/// Only code in this crate constructs one (see the module docs); it is
/// neither `Clone` nor `Copy`, so one redemption starts at most one relay.
#[derive(Debug, PartialEq, Eq)]
pub struct Redeemed {
    worker: WorkerAddr,
    session: SessionId,
    reconnect_ticket: Option<TicketBytes>,
    worker_ticket: Option<TicketBytes>,
}

impl Redeemed {
    /// Records a verdict of the control plane. Call only where a redeemer
    /// has received an allow verdict for the ticket.
    pub(crate) fn new(worker: WorkerAddr, session: SessionId) -> Redeemed {
        Redeemed {
            worker,
            session,
            reconnect_ticket: None,
            worker_ticket: None,
        }
    }

    /// The same grant with the verdict's CGP reconnect tickets.
    pub(crate) fn with_tickets(
        mut self,
        reconnect_ticket: Option<TicketBytes>,
        worker_ticket: Option<TicketBytes>,
    ) -> Redeemed {
        self.reconnect_ticket = reconnect_ticket;
        self.worker_ticket = worker_ticket;
        self
    }

    /// CGP: the gateway's reconnect ticket, handed to the client in place
    /// of the worker's.
    pub fn reconnect_ticket(&self) -> Option<&TicketBytes> {
        self.reconnect_ticket.as_ref()
    }

    /// CGP resume: the worker's own reconnect ticket, forwarded to the
    /// worker in place of the client's.
    pub fn worker_ticket(&self) -> Option<&TicketBytes> {
        self.worker_ticket.as_ref()
    }

    /// The worker to connect to.
    pub fn worker(&self) -> WorkerAddr {
        self.worker
    }

    /// The control plane's id for the session.
    pub fn session(&self) -> SessionId {
        self.session
    }
}

/// Why a ticket was not redeemed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RedeemError {
    /// The control plane denied the ticket.
    #[error("ticket denied by the control plane: {}", deny_reason(*.0))]
    Denied(DenyReason),
    /// The request ring to the control plane is full (backpressure).
    #[error("request ring to the control plane is full")]
    ChannelFull,
    /// Too many redemptions already wait for a verdict on this core.
    #[error("too many redemptions in flight on this core")]
    PendingFull,
    /// No verdict came before the redeemer's deadline.
    #[error("no verdict from the control plane within {0:?}")]
    ControlPlaneTimeout(Duration),
    /// This core has no channel to the control plane (a setup error).
    #[error("no channel to the control plane on this core")]
    NoChannel,
    /// The control plane (in its own process) is gone or not linked yet.
    #[error("the control plane is down")]
    ControlPlaneDown,
}

impl RedeemError {
    /// The SOCKS refusal (hence the reply code) the client gets:
    /// a rejected ticket `02`, an unreachable worker `04`, anything about
    /// capacity or the control plane `01`.
    pub fn refusal(self) -> Refusal {
        match self {
            Self::Denied(reason) => match reason {
                DenyReason::UnknownTicket
                | DenyReason::Expired
                | DenyReason::Reused
                | DenyReason::UnknownSta
                | DenyReason::PolicyDenied
                | DenyReason::Malformed => Refusal::TicketRejected,
                DenyReason::WorkerUnreachable => Refusal::BackendUnreachable,
                DenyReason::Overloaded => Refusal::Overloaded,
                DenyReason::StaUnreachable | DenyReason::Internal => Refusal::Internal,
            },
            Self::ChannelFull | Self::PendingFull => Refusal::Overloaded,
            Self::ControlPlaneTimeout(_) | Self::NoChannel | Self::ControlPlaneDown => {
                Refusal::Internal
            }
        }
    }

    /// Stable snake_case reason for the `reason` log field and counters.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Denied(reason) => deny_reason(reason),
            Self::ChannelFull => "channel_full",
            Self::PendingFull => "pending_full",
            Self::ControlPlaneTimeout(_) => "control_plane_timeout",
            Self::NoChannel => "no_channel",
            Self::ControlPlaneDown => "control_plane_down",
        }
    }

    /// Who is at fault.
    pub fn fault(self) -> Fault {
        match self {
            Self::Denied(reason) => match reason {
                DenyReason::UnknownTicket
                | DenyReason::Expired
                | DenyReason::Reused
                | DenyReason::UnknownSta
                | DenyReason::PolicyDenied
                | DenyReason::Malformed => Fault::Client,
                DenyReason::WorkerUnreachable => Fault::Worker,
                DenyReason::StaUnreachable | DenyReason::Overloaded | DenyReason::Internal => {
                    Fault::ControlPlane
                }
            },
            Self::ControlPlaneTimeout(_) | Self::ControlPlaneDown => Fault::ControlPlane,
            Self::ChannelFull | Self::PendingFull | Self::NoChannel => Fault::Internal,
        }
    }
}

/// The `reason` of a control-plane denial.
fn deny_reason(reason: DenyReason) -> &'static str {
    match reason {
        DenyReason::UnknownTicket => "ticket_unknown",
        DenyReason::Expired => "ticket_expired",
        DenyReason::Reused => "ticket_reused",
        DenyReason::UnknownSta => "unknown_sta",
        DenyReason::StaUnreachable => "sta_unreachable",
        DenyReason::WorkerUnreachable => "worker_unreachable",
        DenyReason::Overloaded => "control_plane_overloaded",
        DenyReason::PolicyDenied => "policy_denied",
        DenyReason::Malformed => "ticket_malformed",
        DenyReason::Internal => "control_plane_internal",
    }
}

/// What a redeemer tells the control plane about a redeemed session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionReport {
    /// The success reply is sent; the relay starts.
    Opened(SessionOpened),
    /// The session ended (relay over, or refused after its redemption with
    /// zero bytes).
    Closed(SessionClosed),
}

/// A [`SessionReport`] was not delivered (the channel was full); it is
/// dropped, not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("session report dropped: the channel to the control plane is full")]
pub struct ReportDropped;

/// Turns the ticket a client presents into a worker address, and carries
/// what happens to the session afterwards.
///
/// One redeemer per core (monoio is thread-per-core), so the futures need
/// not be `Send`. The SOCKS handler bounds the wait with its own deadline;
/// dropping any future must be harmless.
pub trait TicketRedeemer {
    /// Redeems `ticket` (opaque here: the SOCKS `DST.ADDR` bytes, the CGP
    /// security ticket or reconnect ticket), presented as `kind`, for the
    /// client at `client`.
    ///
    /// Errors: [`RedeemError`]; its [`RedeemError::refusal`] makes a SOCKS
    /// client's reply.
    fn redeem_as(
        &self,
        kind: RedeemKind,
        ticket: &[u8],
        client: ClientAddr,
    ) -> impl Future<Output = Result<Redeemed, RedeemError>>;

    /// [`TicketRedeemer::redeem_as`] for a SOCKS launch.
    fn redeem(
        &self,
        ticket: &[u8],
        client: ClientAddr,
    ) -> impl Future<Output = Result<Redeemed, RedeemError>> {
        self.redeem_as(RedeemKind::Socks, ticket, client)
    }

    /// Tells the control plane about a redeemed session. Best effort and
    /// never blocking: a full channel drops the report ([`ReportDropped`],
    /// which the caller counts). The default delivers nowhere.
    fn report(&self, report: SessionReport) -> Result<(), ReportDropped> {
        let _ = report;
        Ok(())
    }

    /// Completes when the control plane orders `session` ended. Dropping
    /// the future stops watching. The default never completes.
    fn until_killed(&self, session: SessionId) -> impl Future<Output = ()> {
        let _ = session;
        std::future::pending()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_wire::socks5::Reply;

    #[test]
    fn maps_every_denial_to_a_reply_code_and_a_fault() {
        let cases = [
            (DenyReason::UnknownTicket, 0x02, Fault::Client),
            (DenyReason::Expired, 0x02, Fault::Client),
            (DenyReason::Reused, 0x02, Fault::Client),
            (DenyReason::UnknownSta, 0x02, Fault::Client),
            (DenyReason::Malformed, 0x02, Fault::Client),
            (DenyReason::PolicyDenied, 0x02, Fault::Client),
            (DenyReason::WorkerUnreachable, 0x04, Fault::Worker),
            (DenyReason::Overloaded, 0x01, Fault::ControlPlane),
            (DenyReason::StaUnreachable, 0x01, Fault::ControlPlane),
            (DenyReason::Internal, 0x01, Fault::ControlPlane),
        ];
        for (reason, code, fault) in cases {
            let error = RedeemError::Denied(reason);
            assert_eq!(error.refusal().reply().code(), code, "{reason:?}");
            assert_eq!(error.fault(), fault, "{reason:?}");
        }
    }

    #[test]
    fn capacity_and_timeouts_answer_general_failure() {
        for error in [
            RedeemError::ChannelFull,
            RedeemError::PendingFull,
            RedeemError::ControlPlaneTimeout(Duration::from_secs(2)),
            RedeemError::NoChannel,
        ] {
            assert_eq!(error.refusal().reply(), Reply::GeneralFailure, "{error:?}");
        }
        assert_eq!(
            RedeemError::ControlPlaneTimeout(Duration::ZERO).reason(),
            "control_plane_timeout"
        );
        assert_eq!(RedeemError::ChannelFull.fault(), Fault::Internal);
    }
}
