//! An in-memory [`TicketRedeemer`] for tests and loopback setups.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use gatehouse_channel::{ClientAddr, DenyReason, RedeemKind, SessionId, TicketBytes, WorkerAddr};

use super::{RedeemError, Redeemed, TicketRedeemer};

/// A map of ticket bytes to grants, each ticket usable once, session ids
/// counting from 1. Reports go nowhere and nothing is ever killed.
///
/// A ticket added with [`MemoryRedeemer::insert`] is a launch ticket: SOCKS
/// or CGP first connect. [`MemoryRedeemer::insert_grant`] adds any kind,
/// with the CGP reconnect tickets of the verdict. A ticket presented as
/// the wrong kind is denied as [`DenyReason::UnknownTicket`] (and stays).
///
/// Lookups are plain hash-map lookups, not constant-time: do not use it
/// where tickets are secrets an attacker can time.
#[derive(Debug, Default)]
pub struct MemoryRedeemer {
    tickets: RefCell<HashMap<Vec<u8>, MemoryGrant>>,
    last_session: Cell<u64>,
}

/// What a [`MemoryRedeemer`] ticket grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryGrant {
    /// The worker to connect.
    pub worker: WorkerAddr,
    /// The kinds the ticket may be presented as.
    pub kinds: Vec<RedeemKind>,
    /// The verdict's gateway reconnect ticket (CGP).
    pub reconnect_ticket: Option<TicketBytes>,
    /// The verdict's worker reconnect ticket (CGP resume).
    pub worker_ticket: Option<TicketBytes>,
}

impl MemoryGrant {
    /// A launch ticket (SOCKS or CGP first connect) for `worker`.
    pub fn launch(worker: WorkerAddr) -> MemoryGrant {
        MemoryGrant {
            worker,
            kinds: vec![RedeemKind::Socks, RedeemKind::Cgp],
            reconnect_ticket: None,
            worker_ticket: None,
        }
    }
}

impl MemoryRedeemer {
    /// An empty redeemer.
    pub fn new() -> MemoryRedeemer {
        MemoryRedeemer::default()
    }

    /// Adds (or replaces) a launch ticket for `worker`.
    pub fn insert(&self, ticket: impl Into<Vec<u8>>, worker: WorkerAddr) {
        self.insert_grant(ticket, MemoryGrant::launch(worker));
    }

    /// Adds (or replaces) a ticket with any grant.
    pub fn insert_grant(&self, ticket: impl Into<Vec<u8>>, grant: MemoryGrant) {
        self.tickets.borrow_mut().insert(ticket.into(), grant);
    }

    /// The same redeemer with `ticket` added (builder form of [`Self::insert`]).
    pub fn with(self, ticket: impl Into<Vec<u8>>, worker: WorkerAddr) -> MemoryRedeemer {
        self.insert(ticket, worker);
        self
    }

    /// Tickets not yet redeemed.
    pub fn len(&self) -> usize {
        self.tickets.borrow().len()
    }

    /// Whether every ticket has been redeemed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl TicketRedeemer for MemoryRedeemer {
    /// Removes the ticket and allows it once; an unknown (or already used)
    /// ticket, or one presented as a kind it does not grant, is denied as
    /// [`DenyReason::UnknownTicket`].
    async fn redeem_as(
        &self,
        kind: RedeemKind,
        ticket: &[u8],
        _client: ClientAddr,
    ) -> Result<Redeemed, RedeemError> {
        let mut tickets = self.tickets.borrow_mut();
        let denied = RedeemError::Denied(DenyReason::UnknownTicket);
        if !tickets.get(ticket).ok_or(denied)?.kinds.contains(&kind) {
            return Err(denied);
        }
        let grant = tickets.remove(ticket).ok_or(denied)?;
        let session = self.last_session.get() + 1;
        self.last_session.set(session);
        Ok(Redeemed::new(grant.worker, SessionId(session))
            .with_tickets(grant.reconnect_ticket, grant.worker_ticket))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::net::SocketAddr;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn run<F: Future>(future: F) -> F::Output {
        monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .build()
            .expect("legacy runtime")
            .block_on(future)
    }

    #[test]
    fn redeems_ticket_once() {
        run(async {
            let redeemer = MemoryRedeemer::new().with(&b"T1"[..], WorkerAddr(addr(1494)));
            let client = ClientAddr(addr(50_000));
            let redeemed = redeemer.redeem(b"T1", client).await.unwrap();
            assert_eq!(redeemed.worker(), WorkerAddr(addr(1494)));
            assert_eq!(redeemed.session(), SessionId(1));
            assert_eq!(
                redeemer.redeem(b"T1", client).await,
                Err(RedeemError::Denied(DenyReason::UnknownTicket))
            );
            assert!(redeemer.is_empty());
        });
    }

    #[test]
    fn refuses_a_ticket_presented_as_a_kind_it_does_not_grant() {
        run(async {
            let client = ClientAddr(addr(50_000));
            let redeemer = MemoryRedeemer::new().with(&b"T1"[..], WorkerAddr(addr(2598)));
            assert_eq!(
                redeemer
                    .redeem_as(RedeemKind::CgpReconnect, b"T1", client)
                    .await,
                Err(RedeemError::Denied(DenyReason::UnknownTicket))
            );
            let reconnect = TicketBytes::new(b"R1").unwrap();
            let redeemed = redeemer
                .redeem_as(RedeemKind::Cgp, b"T1", client)
                .await
                .unwrap();
            assert_eq!(redeemed.reconnect_ticket(), None);
            redeemer.insert_grant(
                &b"R1"[..],
                MemoryGrant {
                    worker: WorkerAddr(addr(2598)),
                    kinds: vec![RedeemKind::CgpReconnect],
                    reconnect_ticket: Some(reconnect),
                    worker_ticket: Some(TicketBytes::new(b"W1").unwrap()),
                },
            );
            let resumed = redeemer
                .redeem_as(RedeemKind::CgpReconnect, b"R1", client)
                .await
                .unwrap();
            assert_eq!(resumed.reconnect_ticket(), Some(&reconnect));
            assert_eq!(resumed.worker_ticket().unwrap().as_bytes(), b"W1");
        });
    }

    #[test]
    fn rejects_unknown_ticket() {
        run(async {
            let redeemer = MemoryRedeemer::new();
            redeemer.insert(&b"T1"[..], WorkerAddr(addr(1494)));
            let result = redeemer.redeem(b"T2", ClientAddr(addr(50_000))).await;
            assert_eq!(result, Err(RedeemError::Denied(DenyReason::UnknownTicket)));
            assert_eq!(redeemer.len(), 1);
        });
    }
}
