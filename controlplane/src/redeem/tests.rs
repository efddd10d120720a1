//! The redeem service against the data side of an in-process channel,
//! driven directly (no engine): every verdict, the session table, and
//! backpressure.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::time::Instant;

use gatehouse_channel::{
    ClientAddr, DataSide, Geometry, SessionClosed, SessionOpened, TicketBytes, in_process,
};
use tokio::net::TcpListener;

use super::*;
use crate::sta::http::{RemoteSta, SharedSta, router};
use crate::sta::tests::{seeded, sta_id};
use crate::sta::{CgpAddress, Sta, StaLimits, TicketData};

const TIMEOUT: Duration = Duration::from_secs(5);

/// The reconnect window of the rig's service.
const RIG_WINDOW: Duration = Duration::from_millis(300);

/// Resolves `vda-01.test` to loopback, never answers for `slow.test`,
/// answers nothing for `empty.test` and fails for every other name.
#[derive(Debug)]
struct FakeResolver;

impl Resolve for FakeResolver {
    async fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        match host {
            "vda-01.test" => Ok(vec![SocketAddr::from(([127, 0, 0, 9], port))]),
            "empty.test" => Ok(Vec::new()),
            "slow.test" => {
                tokio::time::sleep(Duration::from_secs(3_600)).await;
                Ok(Vec::new())
            }
            _ => Err(io::Error::new(io::ErrorKind::NotFound, "no such host")),
        }
    }
}

/// The data side of a channel whose control side is served by a
/// [`RedeemService`] over a local STA `STA01` (and the given remotes).
struct Rig {
    port: AsyncPort<ToControl, ToCore>,
    sta: SharedSta,
    sessions: Arc<SessionTable>,
    service: RedeemService<FakeResolver>,
    task: JoinHandle<Result<(), ServeError>>,
    _data: DataSide,
}

impl Rig {
    fn new(remotes: HashMap<gatehouse_wire::ticket::StaId, RemoteSta>) -> Self {
        Self::with_slots(remotes, 64)
    }

    fn with_slots(remotes: HashMap<gatehouse_wire::ticket::StaId, RemoteSta>, slots: u32) -> Self {
        let (control, data) = in_process(Geometry::new(1, slots).unwrap()).unwrap();
        let control_port = control.take_ports().unwrap().pop().unwrap();
        let data_port = data.take_ports().unwrap().pop().unwrap();
        let sta = Arc::new(parking_lot::Mutex::new(Sta::new(
            sta_id("STA01"),
            StaLimits::default(),
            seeded(1),
        )));
        let sessions = Arc::new(SessionTable::new());
        let service = RedeemService::new(
            StaRouter::new(sta.clone(), remotes),
            sessions.clone(),
            Arc::new(SessionIds::new(control.generation())),
            FakeResolver,
            Duration::from_millis(200),
        )
        .with_reconnects(Arc::new(ReconnectTable::new(RIG_WINDOW)));
        let task = tokio::spawn(service.clone().serve(control_port));
        Self {
            port: AsyncPort::new(data_port).unwrap(),
            sta,
            sessions,
            service,
            task,
            _data: data,
        }
    }

    fn issue(&self, ica: &str, kind: TicketKind) -> String {
        let mut data = TicketData::new(ica.parse().unwrap());
        data.cgp_address = Some(CgpAddress::decode("*:2598").unwrap());
        self.issue_data(data, kind, Instant::now())
    }

    fn issue_data(&self, data: TicketData, kind: TicketKind, now: Instant) -> String {
        self.sta
            .lock()
            .issue(data, kind, now)
            .unwrap()
            .ticket
            .to_text()
    }

    fn send(&mut self, kind: RedeemKind, ticket: &str) -> RequestId {
        let request_id = self.port.port_mut().next_request_id();
        let request = RedeemTicket {
            kind,
            ticket: TicketBytes::new(ticket.as_bytes()).unwrap(),
            client: ClientAddr("127.0.0.1:40000".parse().unwrap()),
        };
        self.port
            .try_send(request_id, &ToControl::RedeemTicket(request))
            .unwrap();
        request_id
    }

    async fn answer(&mut self) -> (RequestId, Verdict) {
        let envelope = tokio::time::timeout(TIMEOUT, self.port.recv())
            .await
            .expect("an answer within the timeout")
            .unwrap();
        match envelope.message {
            ToCore::Verdict(verdict) => (envelope.request_id, verdict),
            other => panic!("expected a verdict, got {other:?}"),
        }
    }

    async fn ask(&mut self, kind: RedeemKind, ticket: &str) -> Verdict {
        let request_id = self.send(kind, ticket);
        let (answered, verdict) = self.answer().await;
        assert_eq!(answered, request_id);
        verdict
    }
}

fn deny(reason: DenyReason) -> Verdict {
    Verdict::Deny { reason }
}

fn allowed_worker(verdict: &Verdict) -> SocketAddr {
    match verdict {
        Verdict::Allow { worker, .. } => worker.0,
        other => panic!("expected allow, got {other:?}"),
    }
}

/// A remote STA `id` served over loopback HTTP.
async fn remote_sta(id: &str) -> (SharedSta, SocketAddr, JoinHandle<()>) {
    let sta = Arc::new(parking_lot::Mutex::new(Sta::new(
        sta_id(id),
        StaLimits::default(),
        seeded(2),
    )));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = router(sta.clone());
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (sta, addr, task)
}

#[tokio::test]
async fn redeems_a_launch_ticket_once_then_denies_reuse() {
    let mut rig = Rig::new(HashMap::new());
    let ticket = rig.issue("127.0.0.1:1494", TicketKind::SingleUse);
    let verdict = rig.ask(RedeemKind::Socks, &ticket).await;
    assert_eq!(allowed_worker(&verdict), "127.0.0.1:1494".parse().unwrap());
    let again = rig.ask(RedeemKind::Socks, &ticket).await;
    assert_eq!(again, deny(DenyReason::Reused));
}

#[tokio::test]
async fn each_allow_gets_its_own_session_id() {
    let mut rig = Rig::new(HashMap::new());
    let mut ids = BTreeSet::new();
    for _ in 0..5 {
        let ticket = rig.issue("127.0.0.1:1494", TicketKind::SingleUse);
        match rig.ask(RedeemKind::Socks, &ticket).await {
            Verdict::Allow { session, .. } => assert!(ids.insert(session)),
            other => panic!("expected allow, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn denies_a_ticket_the_sta_never_issued() {
    let mut rig = Rig::new(HashMap::new());
    let verdict = rig
        .ask(
            RedeemKind::Socks,
            ";40;STA01;AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        )
        .await;
    assert_eq!(verdict, deny(DenyReason::UnknownTicket));
}

#[tokio::test]
async fn denies_an_expired_ticket() {
    let mut rig = Rig::new(HashMap::new());
    let issued_at = Instant::now()
        .checked_sub(Duration::from_secs(200))
        .expect("the monotonic clock is past 200 s");
    let data = TicketData::new("127.0.0.1:1494".parse().unwrap());
    let ticket = rig.issue_data(data, TicketKind::SingleUse, issued_at);
    let verdict = rig.ask(RedeemKind::Socks, &ticket).await;
    assert_eq!(verdict, deny(DenyReason::Expired));
}

#[tokio::test]
async fn denies_a_ticket_naming_an_unknown_sta() {
    let mut rig = Rig::new(HashMap::new());
    let verdict = rig
        .ask(
            RedeemKind::Socks,
            ";40;STA09;AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        )
        .await;
    assert_eq!(verdict, deny(DenyReason::UnknownSta));
}

#[tokio::test]
async fn denies_text_that_is_not_a_ticket() {
    let mut rig = Rig::new(HashMap::new());
    let verdict = rig.ask(RedeemKind::Socks, "example.com").await;
    assert_eq!(verdict, deny(DenyReason::Malformed));
}

#[tokio::test]
async fn denies_when_the_remote_sta_cannot_be_reached() {
    // Port 1 on loopback: nothing listens, the connection is refused.
    let remote = RemoteSta::new(
        "http://127.0.0.1:1/scripts/ctxsta.dll",
        Duration::from_millis(500),
    )
    .unwrap();
    let mut rig = Rig::new(HashMap::from([(sta_id("STA02"), remote)]));
    let verdict = rig
        .ask(
            RedeemKind::Socks,
            ";40;STA02;AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        )
        .await;
    assert_eq!(verdict, deny(DenyReason::StaUnreachable));
}

#[tokio::test]
async fn redeems_a_ticket_at_the_remote_sta_its_id_names() {
    let (remote, addr, server) = remote_sta("STA02").await;
    let url = format!("http://{addr}/scripts/ctxsta.dll");
    let client = RemoteSta::new(&url, TIMEOUT).unwrap();
    let mut rig = Rig::new(HashMap::from([(sta_id("STA02"), client)]));
    let data = TicketData::new("127.0.0.1:1600".parse().unwrap());
    let ticket = remote
        .lock()
        .issue(data, TicketKind::SingleUse, Instant::now())
        .unwrap()
        .ticket
        .to_text();
    let verdict = rig.ask(RedeemKind::Socks, &ticket).await;
    assert_eq!(allowed_worker(&verdict), "127.0.0.1:1600".parse().unwrap());
    let again = rig.ask(RedeemKind::Socks, &ticket).await;
    assert_eq!(again, deny(DenyReason::Reused));
    server.abort();
}

#[tokio::test]
async fn refuses_a_reconnect_ticket_presented_as_a_launch() {
    let mut rig = Rig::new(HashMap::new());
    let ticket = rig.issue("127.0.0.1:1494", TicketKind::Refreshable);
    for _ in 0..3 {
        let verdict = rig.ask(RedeemKind::Socks, &ticket).await;
        assert_eq!(verdict, deny(DenyReason::UnknownTicket));
        let verdict = rig.ask(RedeemKind::Cgp, &ticket).await;
        assert_eq!(verdict, deny(DenyReason::UnknownTicket));
    }
    // As what it is, a reconnect, it still needs a CGP session that holds
    // it: a reconnect ticket issued by hand resumes nothing.
    let verdict = rig.ask(RedeemKind::CgpReconnect, &ticket).await;
    assert_eq!(verdict, deny(DenyReason::UnknownTicket));
}

#[tokio::test]
async fn refuses_a_launch_ticket_presented_as_a_reconnect() {
    let mut rig = Rig::new(HashMap::new());
    let ticket = rig.issue("127.0.0.1:1494", TicketKind::SingleUse);
    let verdict = rig.ask(RedeemKind::CgpReconnect, &ticket).await;
    assert_eq!(verdict, deny(DenyReason::UnknownTicket));
}

#[tokio::test]
async fn a_cgp_launch_goes_to_the_cgp_address() {
    let mut rig = Rig::new(HashMap::new());
    let ticket = rig.issue("127.0.0.1:1494", TicketKind::SingleUse);
    let verdict = rig.ask(RedeemKind::Cgp, &ticket).await;
    assert_eq!(allowed_worker(&verdict), "127.0.0.1:2598".parse().unwrap());
    let data = TicketData::new("127.0.0.1:1494".parse().unwrap());
    let without_cgp = rig.issue_data(data, TicketKind::SingleUse, Instant::now());
    let verdict = rig.ask(RedeemKind::Cgp, &without_cgp).await;
    assert_eq!(verdict, deny(DenyReason::WorkerUnreachable));
}

#[tokio::test]
async fn resolves_a_worker_host_name() {
    let mut rig = Rig::new(HashMap::new());
    let ticket = rig.issue("vda-01.test:1494", TicketKind::SingleUse);
    let verdict = rig.ask(RedeemKind::Socks, &ticket).await;
    assert_eq!(allowed_worker(&verdict), "127.0.0.9:1494".parse().unwrap());
}

#[tokio::test]
async fn denies_a_worker_whose_name_does_not_resolve_in_time_or_at_all() {
    let mut rig = Rig::new(HashMap::new());
    for host in ["nowhere.test", "empty.test", "slow.test"] {
        let ticket = rig.issue(&format!("{host}:1494"), TicketKind::SingleUse);
        let started = Instant::now();
        let verdict = rig.ask(RedeemKind::Socks, &ticket).await;
        assert_eq!(verdict, deny(DenyReason::WorkerUnreachable), "{host}");
        assert!(started.elapsed() < Duration::from_secs(2), "{host}");
    }
}

#[tokio::test]
async fn records_sessions_the_core_opens_and_closes() {
    let mut rig = Rig::new(HashMap::new());
    let ticket = rig.issue("127.0.0.1:1494", TicketKind::SingleUse);
    let Verdict::Allow {
        worker, session, ..
    } = rig.ask(RedeemKind::Socks, &ticket).await
    else {
        panic!("expected allow");
    };
    let client = ClientAddr("127.0.0.1:40000".parse().unwrap());
    let opened = ToControl::SessionOpened(SessionOpened {
        session,
        client,
        worker,
        worker_ticket: None,
    });
    let id = rig.port.port_mut().next_request_id();
    rig.port.try_send(id, &opened).unwrap();
    let deadline = Instant::now() + TIMEOUT;
    while rig.sessions.get(session).is_none() {
        assert!(Instant::now() < deadline, "the session is recorded open");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(rig.sessions.get(session).unwrap().worker, worker);

    let closed = ToControl::SessionClosed(SessionClosed {
        session,
        bytes_up: 1_024,
        bytes_down: 2_048,
        duration_ms: 30,
    });
    let id = rig.port.port_mut().next_request_id();
    rig.port.try_send(id, &closed).unwrap();
    while rig.sessions.open_count() != 0 {
        assert!(Instant::now() < deadline, "the session is recorded closed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let recent = rig.sessions.recently_closed();
    assert_eq!(recent.len(), 1);
    assert_eq!((recent[0].bytes_up, recent[0].bytes_down), (1_024, 2_048));
    assert_eq!(recent[0].client, client);
}

#[tokio::test]
async fn keeps_every_verdict_while_the_core_is_slow_to_read() {
    // Two slots per ring: the service may owe at most two answers at once.
    let mut rig = Rig::with_slots(HashMap::new(), 2);
    let mut asked = BTreeSet::new();
    for _ in 0..2 {
        let ticket = rig.issue("127.0.0.1:1494", TicketKind::SingleUse);
        asked.insert(rig.send(RedeemKind::Socks, &ticket));
    }
    // Both answers fill the answer ring; the next requests wait in theirs.
    let deadline = Instant::now() + TIMEOUT;
    while rig.port.port().inbound_backlog() < 2 {
        assert!(Instant::now() < deadline, "two answers arrive");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for _ in 0..2 {
        let ticket = rig.issue("127.0.0.1:1494", TicketKind::SingleUse);
        asked.insert(rig.send(RedeemKind::Socks, &ticket));
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        rig.port.port().inbound_backlog(),
        2,
        "no answer is lost or forced in"
    );
    let mut answered = BTreeSet::new();
    for _ in 0..4 {
        let (id, verdict) = rig.answer().await;
        allowed_worker(&verdict);
        answered.insert(id);
    }
    assert_eq!(answered, asked);
    assert!(!rig.task.is_finished());
}

/// Sends a core's report (opened or closed) and waits until the service has
/// seen it (a probe redemption behind it is answered).
async fn report(rig: &mut Rig, message: ToControl) {
    let id = rig.port.port_mut().next_request_id();
    rig.port.try_send(id, &message).unwrap();
    // Reports are handled in order before the next request.
    let _ = rig
        .ask(
            RedeemKind::Socks,
            ";40;STA01;00000000000000000000000000000000",
        )
        .await;
}

fn opened(session: SessionId, worker: WorkerAddr, worker_ticket: &[u8]) -> ToControl {
    ToControl::SessionOpened(SessionOpened {
        session,
        client: ClientAddr("127.0.0.1:40000".parse().unwrap()),
        worker,
        worker_ticket: Some(TicketBytes::new(worker_ticket).unwrap()),
    })
}

fn closed(session: SessionId) -> ToControl {
    ToControl::SessionClosed(SessionClosed {
        session,
        bytes_up: 1,
        bytes_down: 1,
        duration_ms: 1,
    })
}

struct Bound {
    session: SessionId,
    worker: WorkerAddr,
    reconnect: String,
}

/// A CGP first connect, reported open with worker ticket `WORKER1`.
async fn cgp_session(rig: &mut Rig) -> Bound {
    let launch = rig.issue("127.0.0.1:1494", TicketKind::SingleUse);
    let Verdict::Allow {
        worker,
        session,
        reconnect_ticket: Some(reconnect),
        worker_ticket: None,
    } = rig.ask(RedeemKind::Cgp, &launch).await
    else {
        panic!("expected an allow with a reconnect ticket");
    };
    assert_eq!(worker.0, "127.0.0.1:2598".parse::<SocketAddr>().unwrap());
    let reconnect = String::from_utf8(reconnect.as_bytes().to_vec()).unwrap();
    report(rig, opened(session, worker, b"WORKER1")).await;
    Bound {
        session,
        worker,
        reconnect,
    }
}

#[tokio::test]
async fn a_cgp_first_connect_gets_a_reconnect_ticket_of_the_local_sta() {
    let mut rig = Rig::new(HashMap::new());
    let bound = cgp_session(&mut rig).await;
    assert!(
        bound.reconnect.starts_with(";40;STA01;"),
        "{}",
        bound.reconnect
    );
    let ticket = StaTicket::decode(bound.reconnect.as_bytes()).unwrap();
    let redeemed = rig.sta.lock().redeem(&ticket, Instant::now()).unwrap();
    assert_eq!(redeemed.kind, TicketKind::Refreshable);
    assert_eq!(rig.service.reconnects().len(), 1);
}

#[tokio::test]
async fn a_resume_goes_to_the_same_worker_with_the_workers_ticket_and_spends_the_old_one() {
    let mut rig = Rig::new(HashMap::new());
    let bound = cgp_session(&mut rig).await;
    report(&mut rig, closed(bound.session)).await;
    let Verdict::Allow {
        worker,
        session,
        reconnect_ticket: Some(next),
        worker_ticket: Some(worker_ticket),
    } = rig.ask(RedeemKind::CgpReconnect, &bound.reconnect).await
    else {
        panic!("expected the resume allowed");
    };
    assert_eq!(worker, bound.worker);
    assert_ne!(session, bound.session, "each connection has its own id");
    assert_eq!(worker_ticket.as_bytes(), b"WORKER1");
    assert_ne!(next.as_bytes(), bound.reconnect.as_bytes());
    // Reused: the presented ticket was spent by the resume.
    assert_eq!(
        rig.ask(RedeemKind::CgpReconnect, &bound.reconnect).await,
        deny(DenyReason::Reused)
    );
    // The new one resumes again.
    let next = String::from_utf8(next.as_bytes().to_vec()).unwrap();
    assert!(matches!(
        rig.ask(RedeemKind::CgpReconnect, &next).await,
        Verdict::Allow { .. }
    ));
}

#[tokio::test]
async fn foreign_and_launch_tickets_do_not_resume() {
    let mut rig = Rig::new(HashMap::new());
    let _bound = cgp_session(&mut rig).await;
    let foreign = ";40;STA01;ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";
    assert_eq!(
        rig.ask(RedeemKind::CgpReconnect, foreign).await,
        deny(DenyReason::UnknownTicket)
    );
    let other_sta = ";40;STA77;ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";
    assert_eq!(
        rig.ask(RedeemKind::CgpReconnect, other_sta).await,
        deny(DenyReason::UnknownSta)
    );
    let launch = rig.issue("127.0.0.1:1494", TicketKind::SingleUse);
    assert_eq!(
        rig.ask(RedeemKind::CgpReconnect, &launch).await,
        deny(DenyReason::UnknownTicket)
    );
    // A reconnect ticket of the STA that no session holds.
    let orphan = rig.issue("127.0.0.1:1494", TicketKind::Refreshable);
    assert_eq!(
        rig.ask(RedeemKind::CgpReconnect, &orphan).await,
        deny(DenyReason::UnknownTicket)
    );
}

#[tokio::test]
async fn a_resume_before_the_worker_ticket_is_known_is_refused_and_can_retry() {
    let mut rig = Rig::new(HashMap::new());
    let launch = rig.issue("127.0.0.1:1494", TicketKind::SingleUse);
    let Verdict::Allow {
        worker,
        session,
        reconnect_ticket: Some(reconnect),
        ..
    } = rig.ask(RedeemKind::Cgp, &launch).await
    else {
        panic!("expected allow");
    };
    let reconnect = String::from_utf8(reconnect.as_bytes().to_vec()).unwrap();
    assert_eq!(
        rig.ask(RedeemKind::CgpReconnect, &reconnect).await,
        deny(DenyReason::WorkerUnreachable)
    );
    report(&mut rig, opened(session, worker, b"WORKER1")).await;
    let _ = rig.ask(RedeemKind::CgpReconnect, &reconnect).await;
}

#[tokio::test]
async fn after_the_window_the_ticket_is_revoked_and_the_resume_refused() {
    let mut rig = Rig::new(HashMap::new());
    let bound = cgp_session(&mut rig).await;
    report(&mut rig, closed(bound.session)).await;
    let keeper = tokio::spawn(keep_reconnects(
        rig.service.clone(),
        Duration::from_millis(20),
    ));
    let deadline = Instant::now() + TIMEOUT;
    while !rig.service.reconnects().is_empty() {
        assert!(Instant::now() < deadline, "the keeper ends the session");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    keeper.abort();
    assert_eq!(
        rig.ask(RedeemKind::CgpReconnect, &bound.reconnect).await,
        deny(DenyReason::Reused),
        "a revoked ticket counts as used up"
    );
}

#[tokio::test]
async fn a_connected_session_outlives_its_ticket_lifetime_thanks_to_the_keeper() {
    let (control, data) = in_process(Geometry::new(1, 64).unwrap()).unwrap();
    let control_port = control.take_ports().unwrap().pop().unwrap();
    let data_port = data.take_ports().unwrap().pop().unwrap();
    let limits = StaLimits {
        refreshable_ttl: Duration::from_millis(400),
        ..StaLimits::default()
    };
    let sta = Arc::new(parking_lot::Mutex::new(Sta::new(
        sta_id("STA01"),
        limits,
        seeded(2),
    )));
    let service = RedeemService::new(
        StaRouter::new(sta.clone(), HashMap::new()),
        Arc::new(SessionTable::new()),
        Arc::new(SessionIds::new(control.generation())),
        FakeResolver,
        Duration::from_millis(200),
    );
    let task = tokio::spawn(service.clone().serve(control_port));
    let keeper = tokio::spawn(keep_reconnects(service.clone(), Duration::from_millis(20)));
    let mut rig = Rig {
        port: AsyncPort::new(data_port).unwrap(),
        sta,
        sessions: service.sessions().clone(),
        service,
        task,
        _data: data,
    };
    let bound = cgp_session(&mut rig).await;
    // Three lifetimes of the STA ticket pass while the client is connected.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    report(&mut rig, closed(bound.session)).await;
    let verdict = rig.ask(RedeemKind::CgpReconnect, &bound.reconnect).await;
    keeper.abort();
    assert!(matches!(verdict, Verdict::Allow { .. }), "{verdict:?}");
}
