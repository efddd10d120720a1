//! A worker (VDA) simulator: the far end of ICA and CGP sessions for
//! Gatehouse's tests and load runs, and the CGP client they use.
//!
//! - **ICA** ([`SimConfig::ica_listen`]): on accept the sim speaks first
//!   with the ICA detect string `7F 7F 49 43 41 00`, then runs the
//!   [`service`] mini-protocol on the connection: echo by default, or
//!   `STREAM <n>\n` for `n` bytes of [`pattern`] followed by a half-close.
//! - **CGP** ([`SimConfig::cgp_listen`], PROTOCOLS.md §4): reads the
//!   signature and BIND_REQUEST, answers BIND_RESPONSE with the session
//!   reliability capability (its next expected message number and a
//!   reconnect ticket), then serves channels (CHANNEL_OPEN_REQUEST →
//!   CHANNEL_OPEN_RESPONSE status 0), each running the same [`service`]
//!   mini-protocol over its DATA payloads; a stream ends with
//!   CHANNEL_CLOSE. Every DATA, CHANNEL_OPEN_RESPONSE and CHANNEL_CLOSE the
//!   sim sends is tracked and kept until acknowledged (bounded by
//!   [`SimConfig::max_unacked`]; past it the session is dropped). A resume
//!   (BIND with the reconnect ticket and `nextMessageNumber` = last
//!   received + 1) within [`SimConfig::reliability_ttl`] gets the sim's
//!   next expected number and every message from the client's number on,
//!   in order; an unknown or expired ticket gets next number 0.
//! - **Client** ([`cgp_client`]): a sans-IO CGP client with session
//!   reliability, and [`CgpConnection`] to drive it over any tokio
//!   stream: what the gateway's end-to-end tests and the load tool use.
//!
//! - **Registration** ([`register`]): with `--register URL --worker-name
//!   NAME` the sim registers with a Gatehouse broker and heartbeats
//!   (docs/REGISTRATION.md).
//!
//! Message numbering and acknowledgement follow `gatehouse_wire::cgp`'s
//! decisions: tracked messages carry their own `u32` number, the first is
//! 1, acks are cumulative deltas (sent here in NOP packets).
//!
//! What this crate refuses to do: check tickets (the gateway and the STA
//! do that; the sim accepts any security ticket), compress, or speak the
//! real ICA protocol beyond its detect string.

#![forbid(unsafe_code)]

pub mod cgp_client;
mod cgp_server;
mod ica_server;
pub mod pattern;
mod pump;
pub mod register;
pub mod reliability;
pub mod service;
mod sim;

pub use cgp_client::{BindOutcome, CgpClient, CgpConnection, ClientError, DriveError, Event};
pub use cgp_server::RandomSource;
pub use sim::{MIN_MAX_UNACKED, Sim, SimConfig, SimError, SimHandle, os_random};

/// The ICA detect string the sim sends first on an ICA connection.
pub const ICA_DETECT: [u8; 6] = [0x7F, 0x7F, 0x49, 0x43, 0x41, 0x00];

/// Default bound on a CGP side's unacknowledged output: 4 MiB.
pub const DEFAULT_MAX_UNACKED: usize = 4 * 1024 * 1024;

/// Largest payload the sim and the client put in one DATA packet: 16 KiB,
/// well under the 32 767-byte packet limit with every extension.
pub const MAX_DATA_PAYLOAD: usize = 16 * 1024;

/// Resolves once `stop` holds `true` or its sender is gone.
async fn stopped(stop: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}
