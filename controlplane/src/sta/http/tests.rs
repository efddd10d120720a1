//! The endpoint, the client and the router over real loopback sockets.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::*;
use crate::sta::tests::{sample_data, seeded, sta_id};
use crate::sta::xml::{ErrorId, ErrorReply, Request, Response};
use crate::sta::{Fault, Sta, StaError, StaLimits, TicketKind};

const TIMEOUT: Duration = Duration::from_secs(5);

struct Server {
    sta: SharedSta,
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Server {
    async fn start(id: &str, seed: u64) -> Self {
        let sta = Arc::new(Mutex::new(Sta::new(
            sta_id(id),
            StaLimits::default(),
            seeded(seed),
        )));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = router(sta.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { sta, addr, task }
    }

    fn url(&self) -> String {
        format!("http://{}{STA_PATH}", self.addr)
    }

    fn client(&self) -> RemoteSta {
        RemoteSta::new(&self.url(), TIMEOUT).unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One HTTP/1.1 POST over a raw socket, for requests the client would
/// never send. Answers the status and the body.
async fn raw_post(addr: SocketAddr, content_type: &str, body: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST {STA_PATH} HTTP/1.1\r\nHost: sta\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    // The server may answer before reading an oversized body; a failed
    // write is then expected, the answer is what the test checks.
    let _ = stream.write_all(body).await;
    let mut answer = Vec::new();
    let mut buf = [0; 4_096];
    // Linux hands out queued data before reporting a reset, so an error
    // after some bytes just ends the answer.
    while let Ok(Ok(n)) = tokio::time::timeout(TIMEOUT, stream.read(&mut buf)).await {
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8(answer).unwrap();
    let status = text[9..12].parse().unwrap();
    let body = text.split_once("\r\n\r\n").unwrap().1.to_owned();
    (status, body)
}

fn error_id_of(body: &str) -> ErrorId {
    match Response::decode(body.as_bytes()) {
        Ok(Response::Error(reply)) => reply.id,
        other => panic!("not an error document: {other:?} from {body}"),
    }
}

#[tokio::test]
async fn issues_and_redeems_over_http_once() {
    let server = Server::start("STA01", 1).await;
    let client = server.client();
    let issued = client
        .issue(sample_data(), TicketKind::SingleUse)
        .await
        .unwrap();
    assert_eq!(issued.ticket.sta_id, sta_id("STA01"));
    assert_eq!(issued.lifetime, Duration::from_secs(100));
    let redeemed = client.redeem(&issued.ticket).await.unwrap();
    assert_eq!(redeemed.data, sample_data());
    assert_eq!(redeemed.kind, TicketKind::SingleUse);
    assert!(matches!(
        client.redeem(&issued.ticket).await,
        Err(RemoteError::Refused(StaError::Reused))
    ));
    assert_eq!(server.sta.lock().live(), 0);
}

#[tokio::test]
async fn refreshes_and_revokes_over_http() {
    let server = Server::start("STA01", 2).await;
    let client = server.client();
    let old = client
        .issue(sample_data(), TicketKind::Refreshable)
        .await
        .unwrap();
    assert_eq!(old.lifetime, Duration::from_secs(500));
    let new = client.refresh(&old.ticket).await.unwrap();
    assert_ne!(new.ticket, old.ticket);
    assert!(matches!(
        client.redeem(&old.ticket).await,
        Err(RemoteError::Refused(StaError::Reused))
    ));
    assert_eq!(
        client.redeem(&new.ticket).await.unwrap().kind,
        TicketKind::Refreshable
    );
    client.revoke(&new.ticket).await.unwrap();
    assert!(matches!(
        client.redeem(&new.ticket).await,
        Err(RemoteError::Refused(StaError::Revoked))
    ));
}

#[tokio::test]
async fn probe_reports_the_sta_id() {
    let server = Server::start("EDGE-7", 3).await;
    assert_eq!(server.client().probe_id().await.unwrap(), sta_id("EDGE-7"));
}

#[tokio::test]
async fn router_sends_each_ticket_to_the_sta_it_names() {
    let remote = Server::start("STA01", 4).await;
    let local = Arc::new(Mutex::new(Sta::new(
        sta_id("STA02"),
        StaLimits::default(),
        seeded(5),
    )));
    let remotes = HashMap::from([(sta_id("STA01"), remote.client())]);
    let router = StaRouter::new(local.clone(), remotes);

    // Issued by the remote STA, redeemed through the router over HTTP.
    let foreign = remote
        .client()
        .issue(sample_data(), TicketKind::SingleUse)
        .await
        .unwrap();
    let text = foreign.ticket.to_text();
    let redeemed = router.redeem(text.as_bytes()).await.unwrap();
    assert_eq!(redeemed.data, sample_data());
    let again = router.redeem(text.as_bytes()).await.unwrap_err();
    assert!(matches!(again, RouteError::Refused(StaError::Reused)));
    assert_eq!(again.fault(), Fault::Client);

    // Issued locally, redeemed locally.
    let own = local
        .lock()
        .issue(sample_data(), TicketKind::Refreshable, Instant::now())
        .unwrap();
    assert!(matches!(router.route(own.ticket.sta_id), Route::Local));
    let own_text = own.ticket.to_text();
    assert_eq!(
        router.redeem(own_text.as_bytes()).await.unwrap().kind,
        TicketKind::Refreshable
    );
    let refreshed = router.refresh(own_text.as_bytes()).await.unwrap();
    router
        .revoke(refreshed.ticket.to_text().as_bytes())
        .await
        .unwrap();

    // Refresh through the router reaches the remote STA too.
    let reconnect = remote
        .client()
        .issue(sample_data(), TicketKind::Refreshable)
        .await
        .unwrap();
    let renewed = router
        .refresh(reconnect.ticket.to_text().as_bytes())
        .await
        .unwrap();
    assert_eq!(renewed.ticket.sta_id, sta_id("STA01"));
    assert_eq!(remote.sta.lock().live(), 1);
}

#[tokio::test]
async fn router_refuses_unknown_sta_ids_and_malformed_tickets() {
    let local = Arc::new(Mutex::new(Sta::new(
        sta_id("STA02"),
        StaLimits::default(),
        seeded(6),
    )));
    let router = StaRouter::new(local, HashMap::new());
    let unknown = router
        .redeem(b";40;STA03;AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
        .await
        .unwrap_err();
    assert!(matches!(unknown, RouteError::UnknownSta(id) if id == sta_id("STA03")));
    assert_eq!(unknown.fault(), Fault::Client);
    assert!(matches!(
        router.redeem(b"STA02;AAAA").await,
        Err(RouteError::Malformed(_))
    ));
    assert!(matches!(
        router
            .redeem(b";40;STA02;AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
            .await,
        Err(RouteError::Refused(StaError::UnknownTicket))
    ));
}

#[tokio::test]
async fn router_reports_an_unreachable_remote_as_a_control_plane_fault() {
    // A port that was just free: nothing listens there.
    let closed = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let local = Arc::new(Mutex::new(Sta::new(
        sta_id("STA02"),
        StaLimits::default(),
        seeded(7),
    )));
    let remote = RemoteSta::new(&format!("http://{closed}{STA_PATH}"), TIMEOUT).unwrap();
    let router = StaRouter::new(local, HashMap::from([(sta_id("STA01"), remote)]));
    let error = router
        .redeem(b";40;STA01;AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
        .await
        .unwrap_err();
    assert!(matches!(error, RouteError::Remote { .. }), "{error:?}");
    assert_eq!(error.fault(), Fault::ControlPlane);
}

#[tokio::test]
async fn remote_that_never_answers_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let timeout = Duration::from_millis(200);
    let client = RemoteSta::new(&format!("http://{addr}{STA_PATH}"), timeout).unwrap();
    let started = Instant::now();
    assert!(matches!(
        client.probe_id().await,
        Err(RemoteError::Timeout(t)) if t == timeout
    ));
    assert!(started.elapsed() < TIMEOUT);
    silent.abort();
}

#[tokio::test]
async fn wrong_content_type_is_a_bad_request() {
    let server = Server::start("STA01", 8).await;
    let body = Request::Id.encode();
    let (status, answer) = raw_post(server.addr, "text/plain", body.as_bytes()).await;
    assert_eq!(status, 400);
    assert_eq!(error_id_of(&answer), ErrorId::BadRequest);
    let (status, _) = raw_post(
        server.addr,
        "application/xml; charset=UTF-8",
        body.as_bytes(),
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn malformed_and_oversized_bodies_are_bad_requests() {
    let server = Server::start("STA01", 9).await;
    let (status, answer) = raw_post(server.addr, "text/xml", b"<CtxSTAProtocol").await;
    assert_eq!((status, error_id_of(&answer)), (400, ErrorId::BadRequest));
    let old = br#"<CtxSTAProtocol version="1.0"><RequestId/></CtxSTAProtocol>"#;
    let (status, answer) = raw_post(server.addr, "text/xml", old).await;
    assert_eq!(
        (status, error_id_of(&answer)),
        (400, ErrorId::UnsupportedVersion)
    );
    let huge = vec![b' '; MAX_DOCUMENT_BYTES + 1];
    let (status, answer) = raw_post(server.addr, "text/xml", &huge).await;
    assert_eq!((status, error_id_of(&answer)), (400, ErrorId::BadRequest));
}

#[tokio::test]
async fn refused_tickets_answer_200_with_an_error_document() {
    let server = Server::start("STA01", 10).await;
    let request =
        Request::Data(StaTicket::decode(b";40;STA01;AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").unwrap());
    let (status, answer) = raw_post(server.addr, "text/xml", request.encode().as_bytes()).await;
    assert_eq!(
        (status, error_id_of(&answer)),
        (200, ErrorId::UnknownTicket)
    );
}

#[tokio::test]
async fn sweeper_forgets_expired_tickets() {
    let limits = StaLimits {
        ticket_ttl: Duration::from_secs(1),
        ..StaLimits::default()
    };
    let sta = Arc::new(Mutex::new(Sta::new(sta_id("STA01"), limits, seeded(11))));
    sta.lock()
        .issue(sample_data(), TicketKind::SingleUse, Instant::now())
        .unwrap();
    let sweeper = tokio::spawn(sweep_every(sta.clone(), Duration::from_millis(50)));
    let deadline = Instant::now() + TIMEOUT;
    while sta.lock().live() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sweeper.abort();
    assert_eq!(sta.lock().live(), 0);
}

#[test]
fn answer_dispatches_requests_to_the_sta() {
    let mut sta = Sta::new(sta_id("STA01"), StaLimits::default(), seeded(12));
    let now = Instant::now();
    assert_eq!(
        answer(&mut sta, Request::Id, now),
        Response::Id(sta_id("STA01"))
    );
    let Response::Ticket(issued) = answer(
        &mut sta,
        Request::Ticket {
            data: sample_data(),
            kind: TicketKind::SingleUse,
        },
        now,
    ) else {
        panic!("no ticket");
    };
    assert_eq!(issued.lifetime, Some(Duration::from_secs(100)));
    let first = answer(&mut sta, Request::Data(issued.ticket.clone()), now);
    assert!(matches!(first, Response::Data(_)));
    let second = answer(&mut sta, Request::Data(issued.ticket), now);
    assert_eq!(
        second,
        Response::Error(ErrorReply::from_sta(StaError::Reused))
    );
    assert_eq!(status_of(&second), StatusCode::OK);
}

#[test]
fn statuses_follow_the_error_kind() {
    let status = |error| status_of(&Response::Error(ErrorReply::from_sta(error)));
    assert_eq!(status(StaError::Full), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(status(StaError::Random), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        status(StaError::DataTooLarge { bytes: 1 }),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(status(StaError::Expired), StatusCode::OK);
    assert_eq!(status_of(&Response::Revoke), StatusCode::OK);
}

#[test]
fn accepts_only_xml_content_types() {
    let check = |value: &str| {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_str(value).unwrap());
        is_xml_content_type(&headers)
    };
    assert!(check("text/xml"));
    assert!(check("Text/XML; charset=\"utf-8\""));
    assert!(check("application/xml;charset=UTF-8"));
    assert!(!check("text/xml; charset=iso-8859-1"));
    assert!(!check("text/plain"));
    assert!(!check("application/json"));
    assert!(!is_xml_content_type(&HeaderMap::new()));
}

#[test]
fn remote_urls_must_be_plain_http_with_a_host() {
    for bad in [
        "https://sta/scripts/ctxsta.dll",
        "ftp://sta/",
        "sta:8080",
        "http://",
        "not a url",
    ] {
        assert!(
            matches!(
                RemoteSta::new(bad, TIMEOUT),
                Err(RemoteError::BadUrl { .. })
            ),
            "{bad}"
        );
    }
    assert!(RemoteSta::new("http://127.0.0.1:8080/scripts/ctxsta.dll", TIMEOUT).is_ok());
}

#[test]
fn os_fill_draws_different_bytes() {
    let (mut a, mut b) = ([0_u8; 32], [0_u8; 32]);
    os_fill(&mut a);
    os_fill(&mut b);
    assert_ne!(a, b);
}

#[test]
fn router_futures_can_be_spawned() {
    fn assert_send<T: Send + 'static>(_: T) {}
    let local = Arc::new(Mutex::new(Sta::new(
        sta_id("STA02"),
        StaLimits::default(),
        seeded(13),
    )));
    let router = StaRouter::new(local, HashMap::new());
    let (a, b, c) = (router.clone(), router.clone(), router);
    assert_send(async move { a.redeem(b"").await });
    assert_send(async move { b.refresh(b"").await });
    assert_send(async move { c.revoke(b"").await });
}
