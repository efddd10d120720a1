//! The `Handler` contract as a gateway handler will use it: several
//! listeners, the session context, handler-side reads, relaying with bytes
//! read ahead. Loopback, both drivers.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a failed test"
)]

mod support;

use std::io::Write;
use std::net::{Shutdown, SocketAddr};
use std::time::Duration;

use gatehouse_engine::{
    Conn, CoreId, Driver, Engine, Fault, Handler, HandlerFactory, ListenerId, RelayMode, Session,
    SessionEnd, relay,
};
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use support::*;

/// Listener 0: answers with the listener index and whether TCP_NODELAY
/// came from the listener. Listener 1: reads a 4-byte header, then relays
/// to `to` with the bytes read past the header replayed first.
#[derive(Debug, Clone)]
struct Demo {
    to: SocketAddr,
}

impl HandlerFactory for Demo {
    type Handler = Demo;

    fn build(&self, _core: CoreId) -> Demo {
        self.clone()
    }
}

impl Handler for Demo {
    async fn handle(&self, mut conn: Conn, session: &Session) -> SessionEnd {
        if conn.listener == ListenerId(0) {
            session.set_proto("probe");
            let nodelay = conn.stream.nodelay().unwrap_or(false);
            let answer = vec![conn.listener.0 as u8, u8::from(nodelay)];
            let _ = conn.stream.write_all(answer).await;
            return SessionEnd::Refused {
                reason: "probe_done",
                fault: Fault::None,
            };
        }
        session.set_proto("header");
        // Read at least the header into a pooled buffer; keep what follows.
        let mut loan = session.buffers().take();
        let mut buf = loan.lend();
        while buf.len() < 4 {
            let (read, back) = conn.stream.read(buf).await;
            buf = back;
            if !matches!(read, Ok(n) if n > 0) {
                loan.restore(buf);
                return SessionEnd::Refused {
                    reason: "short_header",
                    fault: Fault::Client,
                };
            }
        }
        if &buf[..4] != b"HDR1" {
            loan.restore(buf);
            return SessionEnd::Refused {
                reason: "bad_header",
                fault: Fault::Client,
            };
        }
        let Ok(backend) = TcpStream::connect_addr(self.to).await else {
            loan.restore(buf);
            return SessionEnd::BackendUnreachable(std::io::ErrorKind::ConnectionRefused);
        };
        session.established();
        let outcome = relay::run(session, conn.stream, backend, &buf[4..]).await;
        loan.restore(buf);
        SessionEnd::Relayed(outcome)
    }
}

fn a_handler_tells_listeners_apart_and_relays_read_ahead_bytes(driver: Driver) {
    init_logging();
    let echo = Echo::start(4);
    let listen: [SocketAddr; 2] = [
        "127.0.0.1:0".parse().unwrap(),
        "127.0.0.1:0".parse().unwrap(),
    ];
    let config = config(driver, RelayMode::Auto);
    let engine = Engine::start(config, &listen, Demo { to: echo.addr }).unwrap();
    let [probe, header] = [engine.local_addrs()[0], engine.local_addrs()[1]];
    assert_ne!(probe, header);

    let mut client = connect(probe);
    assert_eq!(
        read_to_end(&mut client),
        [0, 1],
        "listener 0, TCP_NODELAY inherited"
    );

    let mut client = connect(header);
    client.write_all(b"HDR1early bytes|").unwrap();
    assert_eq!(
        read_n(&mut client, 12),
        b"early bytes|",
        "read-ahead bytes replayed"
    );
    client.write_all(b"later").unwrap();
    assert_eq!(read_n(&mut client, 5), b"later");
    client.shutdown(Shutdown::Write).unwrap();
    assert!(read_to_end(&mut client).is_empty());

    let mut bad = connect(header);
    bad.write_all(b"NOPE").unwrap();
    assert!(sees_close(&mut bad, Duration::from_secs(5)));

    let stats = wait_for_stats(&engine, |s| s.closed == 3);
    assert_eq!(stats.closed, 3);
    assert_eq!(stats.bytes_up, 17, "the replayed prefix counts as relayed");
    assert_eq!(stats.bytes_down, 17);
    engine.shutdown(Duration::ZERO);
    engine.join().unwrap();
}
under_each_driver!(a_handler_tells_listeners_apart_and_relays_read_ahead_bytes);
