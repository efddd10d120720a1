//! An in-memory [`TicketRedeemer`] for tests and loopback setups.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use gatehouse_channel::{ClientAddr, DenyReason, SessionId, WorkerAddr};

use super::{RedeemError, Redeemed, TicketRedeemer};

/// A map of ticket bytes to worker, each ticket usable once, session ids
/// counting from 1. Reports go nowhere and nothing is ever killed.
///
/// Lookups are plain hash-map lookups, not constant-time: do not use it
/// where tickets are secrets an attacker can time.
#[derive(Debug, Default)]
pub struct MemoryRedeemer {
    tickets: RefCell<HashMap<Vec<u8>, WorkerAddr>>,
    last_session: Cell<u64>,
}

impl MemoryRedeemer {
    /// An empty redeemer.
    pub fn new() -> MemoryRedeemer {
        MemoryRedeemer::default()
    }

    /// Adds (or replaces) a ticket for `worker`.
    pub fn insert(&self, ticket: impl Into<Vec<u8>>, worker: WorkerAddr) {
        self.tickets.borrow_mut().insert(ticket.into(), worker);
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
    /// ticket is denied as [`DenyReason::UnknownTicket`].
    async fn redeem(&self, ticket: &[u8], _client: ClientAddr) -> Result<Redeemed, RedeemError> {
        let worker = self
            .tickets
            .borrow_mut()
            .remove(ticket)
            .ok_or(RedeemError::Denied(DenyReason::UnknownTicket))?;
        let session = self.last_session.get() + 1;
        self.last_session.set(session);
        Ok(Redeemed::new(worker, SessionId(session)))
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
