//! The control plane's side of a connector segment, driven directly over
//! an in-process channel: which orders reach a connector, when the listen
//! set is replayed, how its flow requests are decided, and what a
//! connector that is gone leaves behind. [`s2c`], [`local_sta`] and
//! [`Segment`] also serve the tests of the split data plane's connector
//! role (`split::tests`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::SystemTime;

use gatehouse_channel::{
    AsyncPort, DataSide, FlowDenyReason, FlowRequest, FlowVerdict, Geometry, Linked, ToControl,
    ToCore, in_process,
};

use parking_lot::Mutex;

use super::*;
use crate::policy::{Policies, PolicySection, SharedPolicies};
use crate::redeem::{DEFAULT_RESOLVE_TIMEOUT, SystemResolver};
use crate::s2c::ServerToClientSection;
use crate::s2c::decide::UserContext;
use crate::sessions::{SessionIds, SessionTable};
use crate::sta::http::{SharedSta, StaRouter};
use crate::sta::tests::{seeded, sta_id};
use crate::sta::{Sta, StaLimits};
use crate::store::Store;

const WAIT: Duration = Duration::from_secs(5);
/// How long a message that must not come is waited for.
const QUIET: Duration = Duration::from_millis(300);

/// alice draws from `east` (owned by connector east), bob from `west`
/// (owned by west), carol from `shared` (no connectors: anyone's).
const SECTION: &str = r#"
[[pools]]
name = "east"
location = "hq"
cidr = "127.78.1.0/30"
connectors = ["east"]
users = ["alice"]
[[pools]]
name = "west"
location = "hq"
cidr = "127.78.2.0/30"
connectors = ["West"]
users = ["bob"]
[[pools]]
name = "shared"
location = "hq"
cidr = "127.78.3.0/30"
users = ["carol"]
[[apps]]
name = "vnc"
servers = ["127.0.9.0/24"]
ports = [5900]
"#;

pub(crate) fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

/// A server-to-client service with [`SECTION`]'s pools and apps, on a
/// fresh store named after `name`.
pub(crate) async fn s2c(name: &str) -> ServerToClient {
    let dir = std::env::temp_dir().join(format!(
        "gatehouse-connector-test-{}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let section: ServerToClientSection = toml::from_str(SECTION).unwrap();
    section.validate().unwrap();
    let policy: PolicySection = toml::from_str("server_to_client_default = \"allow\"\n").unwrap();
    let store = Store::open(&dir).await.unwrap();
    ServerToClient::open(&section, SharedPolicies::new(Policies::new(policy)), store)
        .await
        .unwrap()
}

/// An STA of its own.
pub(crate) fn local_sta() -> SharedSta {
    Arc::new(Mutex::new(Sta::new(
        sta_id("STA01"),
        StaLimits::default(),
        seeded(3),
    )))
}

/// The data side of a connector segment (one core) whose control side a
/// redeem service for a connector serves.
pub(crate) struct Segment {
    port: AsyncPort<ToControl, ToCore>,
    /// Plays the link task ([`Segment::serve`]).
    link: Option<watch::Sender<Option<Generation>>>,
    task: tokio::task::JoinHandle<()>,
    _data: DataSide,
}

impl Segment {
    /// Served for connector `east`, whose link task [`Segment::publish`]
    /// plays.
    fn serve(s2c: &ServerToClient, sta: &SharedSta) -> Self {
        let (link, state) = watch::channel(None);
        let mut segment = Self::serve_role(
            s2c,
            sta,
            ConnectorRole {
                name: Arc::from("east"),
                link: Some(state),
            },
        );
        segment.link = Some(link);
        segment
    }

    /// Served for `role`, whose link state someone else publishes.
    pub(crate) fn serve_role(s2c: &ServerToClient, sta: &SharedSta, role: ConnectorRole) -> Self {
        let (control, data) = in_process(Geometry::new(1, 64).unwrap()).unwrap();
        let control_port = control.take_ports().unwrap().pop().unwrap();
        let data_port = data.take_ports().unwrap().pop().unwrap();
        let service = RedeemService::new(
            StaRouter::new(sta.clone(), HashMap::new()),
            Arc::new(SessionTable::new()),
            Arc::new(SessionIds::new(control.generation())),
            SystemResolver,
            DEFAULT_RESOLVE_TIMEOUT,
        )
        .with_s2c(s2c.clone())
        .for_connector(role);
        let task = tokio::spawn(async move {
            let _ = service.serve(control_port).await;
        });
        Self {
            port: AsyncPort::new(data_port).unwrap(),
            link: None,
            task,
            _data: data,
        }
    }

    /// Publishes `state` as the link task would.
    fn publish(&self, state: Option<Generation>) {
        self.link
            .as_ref()
            .expect("served with a link")
            .send_replace(state);
    }

    /// The next message, within [`WAIT`].
    pub(crate) async fn next(&mut self) -> ToCore {
        tokio::time::timeout(WAIT, self.port.recv())
            .await
            .expect("a message within the wait")
            .unwrap()
            .message
    }

    /// Asserts that nothing comes for [`QUIET`].
    pub(crate) async fn quiet(&mut self) {
        if let Ok(received) = tokio::time::timeout(QUIET, self.port.recv()).await {
            panic!("unexpected message: {:?}", received.map(|e| e.message));
        }
    }

    async fn flow(&mut self, local: &str) -> FlowVerdict {
        let request = FlowRequest {
            local: addr(local),
            server: addr("127.0.9.5:40000"),
            rendezvous: addr("127.0.0.1:41000"),
        };
        let id = self.port.port_mut().next_request_id();
        self.port
            .try_send(id, &ToControl::FlowRequest(request))
            .unwrap();
        // A listen order may come first (a replay racing a lease).
        for _ in 0..8 {
            match self.next().await {
                ToCore::FlowVerdict(verdict) => return verdict,
                ToCore::Listen(_) => {}
                other => panic!("expected a flow verdict, got {other:?}"),
            }
        }
        panic!("no flow verdict among 8 messages")
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Leases `user` an IIP; the IIP.
pub(crate) async fn connect(s2c: &ServerToClient, user: &str) -> String {
    let leased = s2c
        .connect(user, UserContext::default(), SystemTime::now())
        .await
        .unwrap();
    leased.lease.iip.to_string()
}

#[tokio::test]
async fn a_connector_gets_only_the_orders_of_its_pools_and_the_listen_set_when_it_links() {
    let s2c = s2c("orders").await;
    let sta = local_sta();
    let mut segment = Segment::serve(&s2c, &sta);
    // Not linked: alice's lease is not sent to a connector nobody reads.
    let alice = connect(&s2c, "alice").await;
    segment.quiet().await;
    // The link replays the listen set: alice's IIP (east's pool) only.
    let _ = connect(&s2c, "bob").await;
    segment.publish(Some(Generation(1)));
    assert_eq!(
        segment.next().await,
        ToCore::Listen(addr(&format!("{alice}:5900")))
    );
    segment.quiet().await;
    // Linked: west's pool is not east's; a pool naming nobody is.
    s2c.disconnect("bob", SystemTime::now()).await.unwrap();
    segment.quiet().await;
    let carol = connect(&s2c, "carol").await;
    assert_eq!(
        segment.next().await,
        ToCore::Listen(addr(&format!("{carol}:5900")))
    );
    s2c.disconnect("alice", SystemTime::now()).await.unwrap();
    assert_eq!(
        segment.next().await,
        ToCore::Unlisten(addr(&format!("{alice}:5900")))
    );
    assert_eq!(
        segment.next().await,
        ToCore::CloseFlows(alice.parse().unwrap())
    );
    // Gone, then linked again (a new process): the set is replayed.
    segment.publish(None);
    s2c.disconnect("carol", SystemTime::now()).await.unwrap();
    let _ = connect(&s2c, "carol").await;
    segment.quiet().await;
    segment.publish(Some(Generation(2)));
    assert_eq!(
        segment.next().await,
        ToCore::Listen(addr(&format!("{carol}:5900")))
    );
    segment.quiet().await;
}

#[tokio::test]
async fn flow_requests_on_a_connector_segment_are_decided_as_that_connectors() {
    let s2c = s2c("decide").await;
    let sta = local_sta();
    let mut segment = Segment::serve(&s2c, &sta);
    segment.publish(Some(Generation(1)));
    let alice = connect(&s2c, "alice").await;
    let bob = connect(&s2c, "bob").await;
    let _ = segment.next().await;
    // bob's pool is west's: east may not carry it.
    assert_eq!(
        segment.flow(&format!("{bob}:5900")).await,
        FlowVerdict::Deny {
            reason: FlowDenyReason::ConnectorNotOwner
        }
    );
    // alice's is east's: allowed once her client listens.
    let (_id, _events) = s2c.attach_client("alice");
    assert!(matches!(
        segment.flow(&format!("{alice}:5900")).await,
        FlowVerdict::Allow { .. }
    ));
    assert_eq!(s2c.open_flows(), 1);
    // The gateway's own name would not own east's pool either.
    assert!(!s2c.pools()[0].owned_by(s2c.connector_name()));
}

#[tokio::test]
async fn a_connector_that_is_gone_is_let_go_once_with_its_flows_and_a_successor_links() {
    let s2c = s2c("keeper").await;
    let sta = local_sta();
    let (link, state) = watch::channel(None);
    let keeper = ConnectorKeeper::new("east", s2c.clone(), link);
    keeper.gone("detached");
    assert_eq!(keeper.linked_generation(), None, "nobody to let go");
    keeper.linked(&Linked {
        peer_generation: Generation(4),
        peer_pid: 1,
    });
    assert_eq!(*state.borrow(), Some(Generation(4)));
    // One allowed flow of east, one of the gateway's own connector.
    let alice = connect(&s2c, "alice").await;
    let carol = connect(&s2c, "carol").await;
    let (_a, _alice_events) = s2c.attach_client("alice");
    let (_c, _carol_events) = s2c.attach_client("carol");
    let request = |iip: &str| FlowRequest {
        local: addr(&format!("{iip}:5900")),
        server: addr("127.0.9.5:40000"),
        rendezvous: addr("127.0.0.1:41000"),
    };
    let now = SystemTime::now();
    for (connector, iip) in [("EAST", &alice), ("gateway", &carol)] {
        assert!(matches!(
            s2c.flow_request(connector, &request(iip), &sta, now),
            FlowVerdict::Allow { .. }
        ));
    }
    // The same generation linking again is no replacement.
    keeper.replaced_by(Generation(4));
    assert_eq!(keeper.linked_generation(), Some(Generation(4)));
    assert_eq!(keeper.let_go(None, "process_gone"), Some(1));
    assert_eq!(*state.borrow(), None);
    assert_eq!(s2c.open_flows(), 1, "the gateway's flow stays");
    assert_eq!(keeper.let_go(None, "process_gone"), None, "logged once");
    // A successor; then one more replaces it before the watch noticed.
    keeper.linked(&Linked {
        peer_generation: Generation(5),
        peer_pid: 2,
    });
    assert_eq!(keeper.let_go(Some(Generation(6)), "replaced"), Some(0));
    assert_eq!(keeper.linked_generation(), None);
}

#[test]
fn connector_cores_come_from_the_flag_then_the_entry_then_one() {
    let mut config = Config::default();
    config.server_to_client.connectors.push(ConnectorEntry {
        name: "east".into(),
        shm: "gh-east".into(),
        cores: 3,
    });
    let cores = |name: &str, flag| connector_cores(&config, name, flag).map(NonZeroUsize::get);
    assert_eq!(cores("east", None).unwrap(), 3);
    assert_eq!(cores("EAST", Some(2)).unwrap(), 2);
    assert_eq!(cores("west", None).unwrap(), 1);
    let error = cores("east", Some(0)).unwrap_err().to_string();
    assert!(error.contains("--cores"), "{error}");
    let error = cores("east", Some(257)).unwrap_err().to_string();
    assert!(error.contains("--cores"), "{error}");
    let error = cores("no spaces", None).unwrap_err().to_string();
    assert!(error.contains("--name"), "{error}");
}
