//! The connector orders one port task relays to its core: the
//! [`ConnectorOrder`]s of the pools its connector owns, and the whole
//! listen set again whenever that connector (re)links or the task fell
//! behind.
//!
//! A port task of a `gatehouse connector` segment, or of the segment of a
//! `gatehouse dataplane` whose cores play the gateway's connector role,
//! knows whether that process is linked (its link task publishes the
//! linked generation: [`crate::connector::ConnectorKeeper`],
//! [`crate::split::Reconciler`]).
//! While none is, orders are dropped: the state they describe is replayed
//! in full ([`ServerToClient::listening_for`]) at the next link, so a dead
//! connector's ring does not fill up with orders nobody reads. The
//! replay reads the state after the dropped orders changed it, so nothing
//! is lost; an order that is both replayed and still queued arrives
//! twice, which `Listen`/`Unlisten` shrug off.

use std::net::IpAddr;
use std::sync::Arc;

use gatehouse_channel::{Generation, ToCore};
use tokio::sync::{broadcast, watch};

use crate::s2c::service::{ConnectorCommand, ConnectorOrder, ServerToClient};

/// Whether a connector is linked to a segment, and which generation: what
/// the link task of a `gatehouse connector` segment (or of a `gatehouse
/// dataplane` segment whose cores are the gateway's connector) publishes.
pub type LinkState = watch::Receiver<Option<Generation>>;

/// Who a port task's orders are for.
#[derive(Debug, Clone)]
pub struct ConnectorRole {
    /// The connector's name (what pools' `connectors` name).
    pub name: Arc<str>,
    /// The link state of its segment; `None`: the connector is the
    /// gateway's own cores in the same process (`gatehouse run`), always
    /// there.
    pub link: Option<LinkState>,
}

/// One port task's source of connector orders.
#[derive(Debug)]
pub(crate) struct Orders {
    s2c: ServerToClient,
    role: ConnectorRole,
    receiver: Option<broadcast::Receiver<ConnectorOrder>>,
}

impl Orders {
    /// Subscribes for `role`; the messages to send first (the current
    /// listen set, when the connector is there).
    pub(crate) fn start(s2c: ServerToClient, role: ConnectorRole) -> (Self, Vec<ToCore>) {
        let receiver = Some(s2c.subscribe());
        let mut orders = Self {
            s2c,
            role,
            receiver,
        };
        if let Some(link) = &mut orders.role.link {
            // The current value is seen here: only later links replay.
            link.mark_unchanged();
        }
        let first = if orders.linked() {
            orders.replay()
        } else {
            Vec::new()
        };
        (orders, first)
    }

    /// The next messages for the core; pending until there are some.
    /// Cancel-safe (for `select!`).
    pub(crate) async fn next(&mut self) -> Vec<ToCore> {
        let event = {
            let Some(receiver) = &mut self.receiver else {
                return std::future::pending().await;
            };
            let link = &mut self.role.link;
            let changed = async {
                match link {
                    Some(link) => link.changed().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                changed = changed => Event::Linked(changed.is_ok()),
                received = receiver.recv() => Event::Order(received),
            }
        };
        match event {
            Event::Linked(false) => {
                // The link task is gone (shutting down): nothing links
                // again.
                self.role.link = None;
                self.receiver = None;
                Vec::new()
            }
            Event::Linked(true) => {
                let linked = self
                    .role
                    .link
                    .as_mut()
                    .is_some_and(|link| link.borrow_and_update().is_some());
                if linked { self.replay() } else { Vec::new() }
            }
            Event::Order(Ok(order)) if self.linked() && order.is_for(&self.role.name) => {
                messages(order.command)
            }
            Event::Order(Ok(_)) => Vec::new(),
            Event::Order(Err(broadcast::error::RecvError::Lagged(missed))) => {
                tracing::warn!(connector = %self.role.name, missed, "s2c_orders_lagged");
                if self.linked() {
                    self.replay()
                } else {
                    Vec::new()
                }
            }
            Event::Order(Err(broadcast::error::RecvError::Closed)) => {
                self.receiver = None;
                Vec::new()
            }
        }
    }

    /// Whether the connector is there to read orders.
    fn linked(&self) -> bool {
        self.role
            .link
            .as_ref()
            .is_none_or(|link| link.borrow().is_some())
    }

    /// `Listen` for every address the connector owns now.
    fn replay(&self) -> Vec<ToCore> {
        self.s2c
            .listening_for(&self.role.name)
            .into_iter()
            .map(ToCore::Listen)
            .collect()
    }
}

/// What woke [`Orders::next`].
enum Event {
    /// The link state changed (`false`: its sender is gone).
    Linked(bool),
    /// An order, or why none came.
    Order(Result<ConnectorOrder, broadcast::error::RecvError>),
}

/// A command as channel messages.
pub(crate) fn messages(command: ConnectorCommand) -> Vec<ToCore> {
    match command {
        ConnectorCommand::Listen(addrs) => addrs.into_iter().map(ToCore::Listen).collect(),
        ConnectorCommand::Unlisten(addrs) => addrs.into_iter().map(ToCore::Unlisten).collect(),
        ConnectorCommand::CloseFlows(iip) => vec![ToCore::CloseFlows(IpAddr::V4(iip))],
    }
}
