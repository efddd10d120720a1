//! The Gatehouse control plane (tokio) and the pieces of the `gatehouse`
//! binary that start the data plane next to it.
//!
//! What it does today:
//! - [`config`]: the one typed configuration of `gatehouse run`
//!   (`deny_unknown_fields`, every key documented, errors name the key).
//! - [`sta`]: the Secure Ticket Authority (PROTOCOLS.md §3; the exact XML in
//!   `docs/STA.md`): ticket table, XML codec, HTTP endpoint, remote STAs.
//! - [`redeem`]: the control plane's end of the shared-memory channel: it
//!   answers the cores' ticket redemptions with verdicts and keeps the
//!   session table.
//! - [`reconnect`]: CGP session reliability: the resumable sessions, their
//!   reconnect tickets, refresh and end.
//! - [`sessions`]: the sessions the cores reported open and closed.
//! - [`certificate`]: the gateway certificate (configured files, or a
//!   self-signed ECDSA P-256 one generated into the data directory).
//! - [`ldap`]: the LDAP directory (password bind, groups, the OTP
//!   attribute) behind the [`ldap::PasswordDirectory`] trait.
//! - [`radius`]: the RADIUS factor: a sans-IO codec (PAP, Access-Challenge,
//!   Message-Authenticator) and its UDP client.
//! - [`push`]: push approval with number matching: the [`push::PushService`]
//!   trait, the built-in provider and its device endpoints.
//! - [`broker`]: the worker registry, the catalog and brokering rules,
//!   and the XML broker (`/scripts/wpnbr.dll`).
//! - [`admin`]: the internal HTTP listener (`/healthz`, the STA endpoint).
//! - [`api`]: the REST API `/api/v1` on the internal listener: tokens and
//!   roles, the audit log, the OpenAPI document, `gatehouse api-token`.
//! - [`web`]: the gateway's web side: HTTP connections the data plane
//!   forwards over a unix socket behind a PROXY v2 header; the login flow
//!   pages and `/manageotp`.
//! - [`login`]: the login decisions (schema, factors, lockouts, pending
//!   second factors) and the web sessions kept in the store.
//! - [`appliance`]: `gatehouse run`: the control plane and the engine cores
//!   in one process, wired by the channel.
//! - [`store`]: the embedded SQLite store (`<data_dir>/gatehouse.db`):
//!   local users, OTP devices, accepted TOTP steps, web sessions.
//! - [`auth`]: the local user directory (Argon2id), TOTP (RFC 6238) with
//!   replay refusal, `otpauth://` URIs and QR codes, OTP secrets sealed at
//!   rest, `gatehouse user ...`.
//! - [`split`]: `gatehouse controlplane` and `gatehouse dataplane`: the two
//!   planes as separate processes over a named segment; liveness, the
//!   data plane's gate and the session table's reconciliation.
//! - [`s2c`]: server-to-client access: IIP pools and leases (kept in the
//!   store), server-to-client apps, and the flow decision a connector asks
//!   for.
//! - [`json`]: the one rule for JSON request bodies (objects only).
//!
//! What it refuses to do: parse protocol bytes of the data path (that is
//! `gatehouse-wire`), block a data-plane core (answers go through bounded
//! rings; a full ring is retried, never waited on with a lock held), or log
//! a ticket secret.
//!
//! Who calls it: the `gatehouse` binary (`src/main.rs`) and the tests.
#![forbid(unsafe_code)]

pub mod admin;
pub mod api;
pub mod appliance;
pub mod auth;
pub mod broker;
pub mod certificate;
pub mod config;
pub mod connector;
pub mod json;
pub mod ldap;
pub mod login;
pub mod metrics;
pub mod policy;
pub mod push;
pub mod radius;
pub mod reconnect;
pub mod redeem;
pub mod reload;
pub mod s2c;
pub mod sessions;
pub mod split;
pub mod sta;
pub mod store;
pub mod web;

/// `error: cause: cause`: an error and its sources on one line, for one log
/// field or message.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
