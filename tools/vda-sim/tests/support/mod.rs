//! Helpers shared by the integration tests: an in-process sim on loopback,
//! a time bound per test, and an abrupt cut.

#![allow(dead_code, reason = "each test file uses a different subset")]

use std::future::Future;
use std::time::Duration;

use gatehouse_vda_sim::{Sim, SimConfig, SimHandle};
use tokio::net::TcpStream;

/// Bound on every test body.
pub(crate) const TEST_DEADLINE: Duration = Duration::from_secs(60);

/// An STA ticket as a gateway would forward it (the sim does not check it).
pub(crate) const STA_TICKET: &[u8] = b";40;STA01;ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";

/// Runs `body` on a fresh runtime, failing the test past [`TEST_DEADLINE`].
pub(crate) fn run<F: Future<Output = ()>>(body: F) {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            tokio::time::timeout(TEST_DEADLINE, body)
                .await
                .expect("test took longer than its deadline");
        });
}

/// A sim on loopback ports picked by the OS, with both listeners.
pub(crate) async fn spawn_sim(ttl: Duration, max_unacked: usize) -> SimHandle {
    let loopback = "127.0.0.1:0".parse().unwrap();
    Sim::bind(SimConfig {
        ica_listen: Some(loopback),
        cgp_listen: Some(loopback),
        reliability_ttl: ttl,
        max_unacked,
    })
    .await
    .unwrap()
    .spawn()
}

/// Closes `stream` with a TCP reset instead of a FIN: an abrupt cut.
pub(crate) fn cut(stream: TcpStream) {
    socket2::SockRef::from(&stream)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(stream);
}
