//! The connector role of a core, through a real engine and an in-process
//! channel, against a fake control plane on a plain thread: listen orders,
//! a denied back-end connection reset, an allowed one paired with its data
//! connection by the rendezvous preamble, an unknown flow refused, and
//! `CloseFlows` ending a relaying flow. Loopback, both drivers.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a failed test"
)]

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use gatehouse_channel::{
    ControlPort, ControlSide, DataSide, FlowDenyReason, FlowId, FlowRequest, FlowVerdict, Geometry,
    RequestId, ToControl, ToCore, in_process,
};
use gatehouse_engine::{
    ChannelRedeemerConfig, ConnectorConfig, Driver, EngineHandle, GatewayConfig, GatewayFactory,
    RelayMode,
};
use gatehouse_wire::rendezvous::Preamble;
use support::*;

/// What the fake control plane decides for a flow request.
type Decide = Box<dyn Fn(&FlowRequest) -> FlowVerdict + Send>;

/// A control plane stand-in: answers flow requests with `decide`, sends
/// the orders it is given, records every request.
struct FakeControl {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    orders: mpsc::Sender<ToCore>,
    seen: mpsc::Receiver<ToControl>,
}

impl FakeControl {
    fn start(mut port: ControlPort, decide: Decide) -> FakeControl {
        let stop = Arc::new(AtomicBool::new(false));
        let (seen_tx, seen) = mpsc::channel();
        let (orders, orders_rx) = mpsc::channel::<ToCore>();
        let stopping = stop.clone();
        let thread = thread::spawn(move || {
            let give_up = Instant::now() + Duration::from_secs(60);
            while !stopping.load(Ordering::SeqCst) && Instant::now() < give_up {
                while let Ok(order) = orders_rx.try_recv() {
                    port.try_send(RequestId(0), &order).unwrap();
                }
                port.wait(Some(Duration::from_millis(10))).unwrap();
                while let Some(envelope) = port.try_recv().unwrap() {
                    if let ToControl::FlowRequest(request) = &envelope.message {
                        let verdict = ToCore::FlowVerdict(decide(request));
                        port.try_send(envelope.request_id, &verdict).unwrap();
                    }
                    let _ = seen_tx.send(envelope.message);
                }
            }
        });
        FakeControl {
            stop,
            thread: Some(thread),
            orders,
            seen,
        }
    }

    fn order(&self, order: ToCore) {
        self.orders.send(order).unwrap();
    }

    /// The next message that `pick` accepts, within 5 s.
    fn expect<T>(&self, what: &str, pick: impl Fn(ToControl) -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.seen.recv_timeout(left) {
                Ok(message) => {
                    if let Some(found) = pick(message) {
                        return found;
                    }
                }
                Err(_) => panic!("the control plane never saw {what}"),
            }
        }
    }
}

impl Drop for FakeControl {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
    }
}

struct Rig {
    _engine: EngineHandle,
    control: FakeControl,
    _sides: (ControlSide, DataSide),
}

fn rig(driver: Driver, decide: Decide) -> Rig {
    let (control, data) = in_process(Geometry::new(1, 64).unwrap()).unwrap();
    let ports = data.take_ports().unwrap();
    let redeem = ChannelRedeemerConfig {
        connector: Some(ConnectorConfig {
            park_timeout: Duration::from_secs(2),
            ..ConnectorConfig::default()
        }),
        ..ChannelRedeemerConfig::default()
    };
    let factory = GatewayFactory::with_channel(GatewayConfig::plaintext(), ports, redeem);
    let engine = start(config(driver, RelayMode::Auto), factory);
    let port = control.take_ports().unwrap().pop().unwrap();
    Rig {
        _engine: engine,
        control: FakeControl::start(port, decide),
        _sides: (control, data),
    }
}

/// Connects to `addr`, retried (bounded) while nothing listens yet.
fn connect_soon(addr: SocketAddr) -> TcpStream {
    let deadline = Instant::now() + IO_TIMEOUT;
    loop {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
            Ok(stream) => {
                stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
                return stream;
            }
            Err(e) if e.kind() == ErrorKind::ConnectionRefused && Instant::now() < deadline => {
                thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("{addr}: {e}"),
        }
    }
}

fn refused_soon(addr: SocketAddr) -> bool {
    let deadline = Instant::now() + IO_TIMEOUT;
    while Instant::now() < deadline {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => return true,
            _ => thread::sleep(Duration::from_millis(20)),
        }
    }
    false
}

/// An IIP of its own per driver and test (the tests of one binary run at
/// once, and listeners share addresses with SO_REUSEPORT).
fn iip_for(driver: Driver, test: u8) -> IpAddr {
    let base = match driver {
        Driver::Legacy => 100,
        Driver::IoUring | Driver::Auto => 0,
    };
    IpAddr::from([127, 79, 0, base + test])
}

fn allow_flow_7_unless_port_6000() -> Decide {
    Box::new(|request| {
        if request.local.port() == 6000 {
            FlowVerdict::Deny {
                reason: FlowDenyReason::PortNotInApp,
            }
        } else {
            FlowVerdict::Allow { flow: FlowId(7) }
        }
    })
}

fn denied_connections_are_reset_and_allowed_ones_pair_with_their_data_connection(driver: Driver) {
    let rig = rig(driver, allow_flow_7_unless_port_6000());
    let iip = iip_for(driver, 1);
    let allowed = SocketAddr::new(iip, 5900);
    let denied = SocketAddr::new(iip, 6000);
    rig.control.order(ToCore::Listen(allowed));
    rig.control.order(ToCore::Listen(denied));

    let mut refused = connect_soon(denied);
    let mut buf = [0; 8];
    match refused.read(&mut buf) {
        Ok(0) => panic!("a denied connection is reset, not closed"),
        Ok(n) => panic!("a denied connection delivered {n} bytes"),
        Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e}"),
    }

    let mut server = connect_soon(allowed);
    let request = rig.control.expect("an allowed flow request", |m| match m {
        ToControl::FlowRequest(r) if r.local == allowed => Some(r),
        _ => None,
    });
    assert_eq!(request.server, server.local_addr().unwrap());
    // The client's data connection, as the gateway opens it: the preamble
    // then the client's bytes.
    let mut data = connect_soon(request.rendezvous);
    let mut opening = Preamble { flow: 7 }.encode().to_vec();
    opening.extend_from_slice(b"from the client");
    data.write_all(&opening).unwrap();
    assert_eq!(read_n(&mut server, 15), b"from the client");
    server.write_all(b"from the server").unwrap();
    assert_eq!(read_n(&mut data, 15), b"from the server");

    // A second data connection for the same flow finds nothing parked.
    let mut again = connect_soon(request.rendezvous);
    again.write_all(&Preamble { flow: 7 }.encode()).unwrap();
    assert!(sees_close(&mut again, IO_TIMEOUT));

    // Logout: the relaying flow ends, its listener goes.
    rig.control.order(ToCore::CloseFlows(iip));
    rig.control.order(ToCore::Unlisten(allowed));
    assert!(sees_close(&mut server, IO_TIMEOUT));
    let closed = rig.control.expect("the flow's close", |m| match m {
        ToControl::FlowClosed(c) => Some(c),
        _ => None,
    });
    assert_eq!(closed.flow, FlowId(7));
    assert_eq!(closed.bytes_to_server, 15);
    assert_eq!(closed.bytes_to_client, 15);
    assert!(refused_soon(allowed));
}
under_each_driver!(denied_connections_are_reset_and_allowed_ones_pair_with_their_data_connection);

fn a_parked_connection_without_its_data_connection_is_reset_at_the_deadline(driver: Driver) {
    let rig = rig(driver, allow_flow_7_unless_port_6000());
    let addr = SocketAddr::new(iip_for(driver, 2), 5900);
    rig.control.order(ToCore::Listen(addr));
    let mut server = connect_soon(addr);
    let started = Instant::now();
    assert!(sees_close(&mut server, IO_TIMEOUT));
    assert!(
        started.elapsed() >= Duration::from_millis(1_500),
        "reset before the park deadline"
    );
    let closed = rig.control.expect("the expired flow's close", |m| match m {
        ToControl::FlowClosed(c) => Some(c),
        _ => None,
    });
    assert_eq!((closed.flow, closed.bytes_to_server), (FlowId(7), 0));
}
under_each_driver!(a_parked_connection_without_its_data_connection_is_reset_at_the_deadline);
