//! A refusal is one log event: the core's `session_closed`, carrying the
//! refusing stage's `reason` and `fault`; no stage logs one of its own.
//! One test for both drivers, since it installs the process-wide
//! subscriber that records the events.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a failed test"
)]

mod support;

use std::fmt;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::Duration;

use gatehouse_engine::{CoreId, Driver, GatewayConfig, MemoryRedeemer, RelayMode};
use gatehouse_wire::socks5::Reply;
use support::launch::*;
use support::*;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::{Layer, Registry};

/// The fields of one event this test looks at.
#[derive(Debug, Default)]
struct Recorded {
    message: String,
    peer: Option<String>,
    reason: Option<String>,
    fault: Option<String>,
}

impl Visit for Recorded {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.record_debug(field, &format_args!("{value}"));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let text = format!("{value:?}");
        match field.name() {
            "message" => self.message = text,
            "peer" => self.peer = Some(text),
            "reason" => self.reason = Some(text),
            "fault" => self.fault = Some(text),
            _ => {}
        }
    }
}

/// Sends every event's fields to the test.
struct Recorder(mpsc::Sender<Recorded>);

impl<S: Subscriber> Layer<S> for Recorder {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut recorded = Recorded::default();
        event.record(&mut recorded);
        let _ = self.0.send(recorded);
    }
}

#[test]
fn a_refusal_is_logged_once_with_its_reason_and_fault() {
    let (tx, rx) = mpsc::channel();
    tracing::subscriber::set_global_default(Registry::default().with(Recorder(tx))).unwrap();
    for driver in [Driver::IoUring, Driver::Legacy] {
        let engine = start_gateway(
            config(driver, RelayMode::Auto),
            GatewayConfig::plaintext(),
            |_: CoreId| MemoryRedeemer::new(),
        );
        let mut expected: Vec<(SocketAddr, &str, &str)> = Vec::new();

        let mut unknown = connect(addr(&engine));
        unknown.write_all(b"\x00\x01\x02").unwrap();
        assert!(sees_close(&mut unknown, Duration::from_secs(5)));
        expected.push((unknown.local_addr().unwrap(), "unknown_protocol", "client"));

        let (mut denied, reply) = plain_launch(addr(&engine), &connect_ticket(TICKET));
        assert_eq!(reply, Reply::NotAllowed);
        assert!(read_to_end(&mut denied).is_empty());
        expected.push((denied.local_addr().unwrap(), "ticket_unknown", "client"));

        let mut tls = connect(addr(&engine));
        tls.write_all(b"\x16\x03\x01\x00\x05hello").unwrap();
        assert!(sees_close(&mut tls, Duration::from_secs(5)));
        expected.push((tls.local_addr().unwrap(), "tls_not_offered", "client"));

        wait_for_stats(&engine, |s| s.closed == 3);
        engine.shutdown(Duration::ZERO);
        engine.join().unwrap();
        let events: Vec<Recorded> = rx.try_iter().collect();
        for (peer, reason, fault) in expected {
            let peer = peer.to_string();
            let decisions: Vec<&Recorded> = events
                .iter()
                .filter(|e| e.peer.as_deref() == Some(peer.as_str()) && e.reason.is_some())
                .collect();
            assert_eq!(decisions.len(), 1, "{driver}, {reason}: {decisions:?}");
            let event = decisions[0];
            assert_eq!(event.message, "session_closed");
            assert_eq!(event.reason.as_deref(), Some(reason));
            assert_eq!(event.fault.as_deref(), Some(fault));
        }
    }
}
