//! The Gatehouse data plane: thread-per-core monoio cores, their
//! `SO_REUSEPORT` listeners, per-connection handlers, the gateway front
//! (detection, TLS termination, the SOCKSv5 launch with ticket redemption
//! over the shared-memory channel) and the relay that moves a session's
//! bytes (zero-copy `splice(2)` for TCP ↔ TCP, pooled 16 KiB buffers
//! otherwise). DESIGN.md §3 ("data plane") is the shape; PROTOCOLS.md §1–§2
//! the wire behaviour of the gateway.
//!
//! Who calls it: the `gatehouse` binary. It builds an [`EngineConfig`],
//! calls [`Engine::start`] with the listen addresses and a
//! [`HandlerFactory`] ([`Forward`] for `gatehouse forward`;
//! [`GatewayFactory`] for the gateway, with a [`TicketRedeemer`] per core —
//! [`GatewayFactory::with_channel`] gives each core its
//! `gatehouse_channel::CorePort`), wires SIGTERM/SIGINT to
//! [`EngineControl::shutdown`] and waits in [`EngineHandle::join`].
//!
//! How it runs:
//! - [`Engine::start`] starts N threads (`gatehouse-core-N`, one per CPU by
//!   default, optionally pinned). Each runs its own monoio runtime on
//!   io_uring (or the legacy epoll driver: forced, or when io_uring is
//!   unavailable), owns one listener per address and shares nothing with
//!   the others on the hot path: counters are `Cell`s, pools are per core.
//!   The one thing cores share is each core's count of open sessions: a
//!   core that accepts a connection while another owns fewer hands it over
//!   once, at accept (`balance_accepts`, on by default).
//! - Each accepted connection gets a task, a [`Session`] and a call to
//!   [`Handler::handle`]. The core enforces `max_connections_per_core` and
//!   `max_pending_handshakes_per_core` at accept (over the limit: accept and
//!   close at once, counted by [`Refusal`]), the idle timeout and the drain
//!   deadline around the handler, counts handler refusals by reason, and
//!   logs one `session_closed` event per session (`core`, `conn`, `peer`,
//!   `proto`, `reason`, `fault`, `error`, `path`, `bytes_up`, `bytes_down`,
//!   `duration_ms`).
//! - [`relay::run`] relays a client and a back end until both directions
//!   have ended (half-close propagated) or one fails.
//!
//! What it refuses to do: take locks or atomics on the hot path, allocate
//! per relayed read or write, queue connections beyond its limits, parse
//! protocol bytes (that is `gatehouse-wire`'s job), or log from inside the
//! relay or the gateway stages (outcomes are returned and the core logs
//! them).
//!
//! `unsafe` is denied except in the relay's zero-copy module (`splice`
//! system calls on raw descriptors), `rent` (byte views of monoio's
//! rented buffers for the TLS stream), `balance` (a descriptor leaving
//! one core's runtime for another's) and `pool` (`madvise` of free relay
//! buffers), each block with a `// SAFETY:` note.
#![deny(unsafe_code)]

mod balance;
pub mod cgp;
mod config;
pub mod connector;
mod core;
mod counters;
pub mod detect;
mod engine;
mod forward;
pub mod gateway;
mod handler;
mod latch;
mod listener;
pub mod pool;
pub mod redeem;
pub mod relay;
mod rent;
pub mod replay;
mod session;
pub mod socks;
pub mod tls;

pub use config::{ConfigError, Driver, EngineConfig, RelayMode};
pub use connector::ConnectorConfig;
pub use counters::{
    CoreSnapshot, CoreStats, MAX_REFUSAL_REASONS, Refusal, RefusalCounts, answer_pairs,
    counter_ids, current_snapshot, install_snapshot,
};
pub use engine::{Engine, EngineControl, EngineError, EngineHandle};
pub use forward::Forward;
pub use gatehouse_channel::{ClientAddr, CoreId, RedeemKind, SessionId, TicketBytes, WorkerAddr};
pub use gateway::{
    ChannelPorts, Gateway, GatewayConfig, GatewayFactory, RedeemerFactory, WebForward,
};
pub use handler::{Conn, Handler, HandlerFactory, ListenerId};
pub use redeem::{
    ChannelRedeemer, ChannelRedeemerConfig, ControlPlaneGate, MemoryGrant, MemoryRedeemer,
    RedeemError, Redeemed, TicketRedeemer,
};
pub use session::{ConnId, Fault, Session, SessionEnd};
