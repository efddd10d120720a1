//! Harness shared by the end-to-end tests in `tests/tests/`: starting the
//! real binaries and servers on loopback and stopping them by PID.
//!
//! One file in `tests/tests/` per user flow; each test starts its own
//! processes, so tests run in parallel and in any order:
//!
//! - [`gatehouse::Gatehouse`] runs `gatehouse run` with its own temporary
//!   data directory and configuration, on `127.0.0.1:0` for both listeners,
//!   and reads the bound addresses from its `gatehouse_ready` log event
//!   (`--log-format json`; every later event stays available to assertions).
//! - [`vda_sim::VdaSim`] runs `vda-sim --ica-listen 127.0.0.1:0 --announce`:
//!   the worker, which speaks first with [`socks::ICA_DETECT`] and then
//!   echoes.
//! - [`sta`] asks an STA for tickets over its XML endpoint
//!   (`POST /scripts/ctxsta.dll`, `docs/STA.md`).
//! - [`webdriver::Chrome`] is headless Chromium driven through the real
//!   `chromedriver`; [`push_device::PushDevice`] runs `push-device serve`
//!   (the user's phone for push approval).
//! - [`slapd::Slapd`] is a real OpenLDAP directory seeded per test (plain,
//!   or with StartTLS and `ldaps://`); [`radius::FreeRadius`] is a real
//!   FreeRADIUS with a password user and a challenge user. Both run as a
//!   [`server::Server`] (output to a log file, stopped by PID); the control
//!   plane's own tests against them use these too.
//! - [`curl::Browser`] is the real `curl` with a cookie jar of its own.
//! - [`socks`] is a SOCKSv5 client over TLS (rustls, trusting only the
//!   certificate the gateway generated) or plain TCP.
//! - [`access::AccessClient`] runs the real `access-client` (the user's
//!   side of server-to-client access); [`access`] also plays the back-end
//!   servers that connect to its IIP.
//!
//! **The binaries.** The tests need `gatehouse` (package `gatehouse`) and
//! `vda-sim` (package `gatehouse-vda-sim`) built with the profile of the
//! test itself. Cargo cannot express that dependency on stable (artifact
//! dependencies are unstable), so [`bins`] runs
//! `cargo build -p gatehouse -p gatehouse-vda-sim` once per test process
//! before the first start: a no-op when they are fresh, and never a stale
//! binary under test. `GATEHOUSE_E2E_BIN_DIR=DIR` uses prebuilt binaries from
//! `DIR` instead.
//!
//! **Bounds.** Every wait is bounded by [`TIMEOUT`] (a start, a log event, a
//! read, an exit); every process is stopped by its PID (SIGTERM, then SIGKILL
//! after [`TIMEOUT`]) when its guard drops; every temporary directory is
//! removed when its guard drops. Only 127.0.0.1 is used.
//!
//! The `curl` flow needs the `curl` command (`.ci/run` installs it); the
//! test fails, it is not skipped, when it is missing.
#![forbid(unsafe_code)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test harness: a panic is a failed test, with its message"
)]

pub mod access;
pub mod bins;
pub mod curl;
pub mod gatehouse;
pub mod http;
pub mod process;
pub mod push_device;
pub mod radius;
pub mod server;
pub mod slapd;
pub mod socks;
pub mod sta;
pub mod temp;
pub mod vda_sim;
pub mod webdriver;

use std::time::Duration;

/// The bound on every single wait of the harness: a process start, a log
/// event, a socket read, a process exit.
pub const TIMEOUT: Duration = Duration::from_secs(20);
