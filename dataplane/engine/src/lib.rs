//! The Gatehouse data plane: thread-per-core monoio cores, their
//! `SO_REUSEPORT` listeners, per-connection handlers, and the relay that
//! moves a session's bytes (zero-copy `splice(2)` for TCP ↔ TCP, pooled
//! 16 KiB buffers otherwise). DESIGN.md §3 ("data plane") is the shape.
//!
//! Who calls it: the `gatehouse` binary. It builds an [`EngineConfig`],
//! calls [`Engine::start`] with the listen addresses and a
//! [`HandlerFactory`] (today [`Forward`]; the gateway handler with
//! detection, TLS and SOCKSv5 next), wires SIGTERM/SIGINT to
//! [`EngineControl::shutdown`] and waits in [`EngineHandle::join`].
//!
//! How it runs:
//! - [`Engine::start`] starts N threads (`gatehouse-core-N`, one per CPU by
//!   default, optionally pinned). Each runs its own monoio runtime on
//!   io_uring (or the legacy epoll driver: forced, or when io_uring is
//!   unavailable), owns one listener per address and shares nothing with
//!   the others on the hot path: counters are `Cell`s, pools are per core.
//! - Each accepted connection gets a task, a [`Session`] and a call to
//!   [`Handler::handle`]. The core enforces `max_connections_per_core` and
//!   `max_pending_handshakes_per_core` at accept (over the limit: accept and
//!   close at once, counted by [`Refusal`]), the idle timeout and the drain
//!   deadline around the handler, and logs one `session_closed` event per
//!   session (`core`, `conn`, `peer`, `proto`, `reason`, `fault`, `error`,
//!   `path`, `bytes_up`, `bytes_down`, `duration_ms`).
//! - [`relay::run`] relays a client and a back end until both directions
//!   have ended (half-close propagated) or one fails.
//!
//! What it refuses to do: take locks or atomics on the hot path, allocate
//! per relayed read or write, queue connections beyond its limits, parse
//! protocol bytes (that is `gatehouse-wire`'s job), or log from inside the
//! relay (outcomes are returned and the core logs them).
//!
//! `unsafe` is denied except in the relay's zero-copy module (`splice`
//! system calls on raw descriptors), each block with a `// SAFETY:` note.
#![deny(unsafe_code)]

mod config;
mod core;
mod counters;
mod engine;
mod forward;
mod handler;
mod latch;
mod listener;
pub mod pool;
pub mod relay;
mod session;

pub use config::{ConfigError, Driver, EngineConfig, RelayMode};
pub use counters::{CoreStats, Refusal};
pub use engine::{Engine, EngineControl, EngineError, EngineHandle};
pub use forward::Forward;
pub use gatehouse_channel::{ClientAddr, CoreId, WorkerAddr};
pub use handler::{Conn, Handler, HandlerFactory, ListenerId};
pub use session::{ConnId, Fault, Session, SessionEnd};
