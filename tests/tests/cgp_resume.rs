//! User flow: a CGP session with session reliability through the gateway
//! (PROTOCOLS.md §4). A client (the sans-IO `CgpClient` of `vda-sim`, over
//! a rustls client that trusts only the gateway's certificate) binds with
//! an STA ticket over TLS, streams a checksummed pattern to the worker
//! (`vda-sim`, which echoes it back), has its TCP connection cut mid-stream
//! by a reset, resumes through the gateway with the reconnect ticket the
//! gateway handed it, and gets every byte of each direction exactly once
//! and in order. Resumes with a reused, a foreign or a stale reconnect
//! ticket are refused with a CGP refusal (next message number 0).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a failed test"
)]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use gatehouse_tests::TIMEOUT;
use gatehouse_tests::gatehouse::{Gatehouse, count};
use gatehouse_tests::vda_sim::VdaSim;
use gatehouse_vda_sim::cgp_client::PROXY_SERVICE_ID;
use gatehouse_vda_sim::pattern::{self, PatternChecker};
use gatehouse_vda_sim::{BindOutcome, CgpClient, CgpConnection, Event};
use gatehouse_wire::Progress;
use gatehouse_wire::cgp::{
    BindRequest, BindResponse, Capability, ChannelId, MessageNumber, OpenStatus,
    RECONNECT_TICKET_VERSION, ReconnectTicket, SessionReliability, encode_connection_preamble,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::ServerName;

const CHANNEL: ChannelId = ChannelId(1);
const MIB: usize = 1024 * 1024;

type Connection = CgpConnection<TlsStream<TcpStream>>;

/// Runs `body` on a fresh runtime, failing past three [`TIMEOUT`]s.
fn run<F: Future<Output = ()>>(body: F) {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            tokio::time::timeout(TIMEOUT * 3, body)
                .await
                .expect("test took longer than its deadline");
        });
}

/// TLS to the gateway as `localhost`, trusting only its certificate.
async fn tls(gateway: SocketAddr, config: &Arc<rustls::ClientConfig>) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(gateway).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    tokio::time::timeout(
        TIMEOUT,
        TlsConnector::from(config.clone()).connect(name, tcp),
    )
    .await
    .expect("tls handshake in time")
    .unwrap()
}

/// Cuts the client's TCP connection with a reset (no TLS close, no FIN).
fn cut(connection: Connection) {
    let stream = connection.into_inner();
    let (tcp, _) = stream.into_inner();
    socket2::SockRef::from(&tcp)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(tcp);
}

async fn open_channel(connection: &mut Connection, client: &mut CgpClient) {
    client.open_channel(CHANNEL, PROXY_SERVICE_ID, b"").unwrap();
    let event = tokio::time::timeout(TIMEOUT, connection.next_event(client))
        .await
        .expect("channel answer in time")
        .unwrap();
    assert_eq!(
        event,
        Some(Event::ChannelOpened {
            channel: CHANNEL,
            status: OpenStatus::OPENED
        })
    );
}

/// Sends a hand-made resume BIND with `ticket` through the gateway and
/// returns the next message number of the answer (0 = refused), or `None`
/// when the gateway closed without a BIND_RESPONSE.
async fn raw_resume(
    gateway: SocketAddr,
    config: &Arc<rustls::ClientConfig>,
    ticket: &[u8],
) -> Option<MessageNumber> {
    let mut stream = tls(gateway, config).await;
    let bind = BindRequest {
        capabilities: vec![Capability::SessionReliability(SessionReliability {
            min_version: 1,
            max_version: 1,
            ack_algorithms: SessionReliability::ACK_DELTA,
            next_message_number: MessageNumber(1),
            reconnect_ticket: Some(ReconnectTicket {
                version: RECONNECT_TICKET_VERSION,
                ticket,
            }),
            channels: Vec::new(),
        })],
    };
    let mut preamble = Vec::new();
    encode_connection_preamble(&bind, &mut preamble).unwrap();
    stream.write_all(&preamble).await.unwrap();
    stream.flush().await.unwrap();
    let mut answer = Vec::new();
    let mut chunk = [0; 512];
    loop {
        if let Ok(Progress::Done { value, .. }) = BindResponse::decode(&answer) {
            return value.next_message_number();
        }
        let read = tokio::time::timeout(TIMEOUT, stream.read(&mut chunk))
            .await
            .expect("an answer in time");
        match read {
            Ok(0) | Err(_) => return None,
            Ok(n) => answer.extend_from_slice(&chunk[..n]),
        }
    }
}

#[test]
fn a_cgp_session_over_tls_resumes_after_cuts_with_every_byte_in_order() {
    let sim = VdaSim::start();
    let mut gatehouse = Gatehouse::start("");
    assert!(gatehouse.tls());
    let ticket = gatehouse.issue_cgp(sim.ica(), sim.cgp());
    let unused_launch = gatehouse.issue_cgp(sim.ica(), sim.cgp());
    let config = gatehouse.tls_client();
    let gateway = gatehouse.gateway();
    run(async {
        let total = 3 * MIB;
        let mut upload = vec![0; total];
        pattern::fill(0, &mut upload);
        let mut client = CgpClient::default();
        let stream = tls(gateway, &config).await;
        let (connection, outcome) = CgpConnection::connect(stream, &mut client, ticket.as_bytes())
            .await
            .unwrap();
        assert_eq!(outcome, BindOutcome::Opened);
        let first_ticket = client.reconnect_ticket().unwrap().to_vec();
        assert!(
            first_ticket.starts_with(b";40;STA01;"),
            "the client holds the gateway's reconnect ticket, not the worker's: {:?}",
            String::from_utf8_lossy(&first_ticket)
        );
        let mut connection = Some(connection);
        open_channel(connection.as_mut().unwrap(), &mut client).await;
        let mut sent = 0;
        let mut checker = PatternChecker::new();
        let cut_at = [total / 3, 2 * total / 3];
        let mut cuts = 0;
        let mut tickets = vec![first_ticket];
        while (checker.offset() as usize) < total {
            // Pace on the client's own unacknowledged output.
            while sent < total && client.unacked_bytes() < 512 * 1024 {
                let end = (sent + 64 * 1024).min(total);
                client.send(CHANNEL, &upload[sent..end]).unwrap();
                sent = end;
            }
            let current = connection.as_mut().unwrap();
            let event = tokio::time::timeout(TIMEOUT, current.next_event(&mut client))
                .await
                .expect("data in time")
                .unwrap();
            match event {
                Some(Event::Data { payload, .. }) => checker.feed(&payload).unwrap(),
                other => panic!("unexpected {other:?}"),
            }
            if cuts < cut_at.len() && checker.offset() as usize >= cut_at[cuts] {
                cuts += 1;
                cut(connection.take().unwrap());
                client.connection_lost();
                let stream = tls(gateway, &config).await;
                let (resumed, outcome) = CgpConnection::resume(stream, &mut client).await.unwrap();
                assert!(
                    matches!(outcome, BindOutcome::Resumed { .. }),
                    "resume {cuts}: {outcome:?}"
                );
                let ticket = client.reconnect_ticket().unwrap().to_vec();
                assert!(
                    !tickets.contains(&ticket),
                    "each bind hands out a new ticket"
                );
                tickets.push(ticket);
                connection = Some(resumed);
            }
        }
        assert_eq!(cuts, 2);
        assert_eq!(sent, total, "every byte went up");
        assert_eq!(
            checker.offset() as usize,
            total,
            "every byte came back, in order"
        );

        // Reused: the first ticket was spent by the first resume.
        let reused = raw_resume(gateway, &config, &tickets[0]).await;
        assert_eq!(reused, Some(MessageNumber::REFUSED));
        // Foreign: a well-formed ticket this STA never issued.
        let foreign = raw_resume(
            gateway,
            &config,
            b";40;STA01;ABCDEFGHIJKLMNOPQRSTUVWXYZ012345",
        )
        .await;
        assert_eq!(foreign, Some(MessageNumber::REFUSED));
        // A launch ticket is no reconnect ticket (and presenting it as
        // one spends it).
        let launch = raw_resume(gateway, &config, unused_launch.as_bytes()).await;
        assert_eq!(launch, Some(MessageNumber::REFUSED));
        drop(connection);
    });
    let opened = gatehouse.wait_for_event("ticket_redeemed", &[("proto", "cgp")]);
    assert_eq!(opened.field("worker"), Some(sim.cgp().to_string().as_str()));
    let events = gatehouse.stop();
    assert_eq!(count(&events, "ticket_redeemed", &[("proto", "cgp")]), 1);
    assert_eq!(
        count(&events, "ticket_redeemed", &[("proto", "cgp_reconnect")]),
        2
    );
    assert_eq!(count(&events, "deny", &[("reason", "reused_ticket")]), 1);
    assert_eq!(count(&events, "deny", &[("reason", "unknown_ticket")]), 1);
    assert_eq!(
        count(&events, "deny", &[("reason", "launch_ticket_as_reconnect")]),
        1
    );
    assert_eq!(sim.stop().code(), Some(0));
}

#[test]
fn a_resume_after_the_reconnect_window_is_refused() {
    let sim = VdaSim::start();
    let mut gatehouse = Gatehouse::start("[gateway]\nreconnect_window_secs = 1\n");
    let ticket = gatehouse.issue_cgp(sim.ica(), sim.cgp());
    let config = gatehouse.tls_client();
    let gateway = gatehouse.gateway();
    run(async {
        let mut client = CgpClient::default();
        let stream = tls(gateway, &config).await;
        let (connection, outcome) = CgpConnection::connect(stream, &mut client, ticket.as_bytes())
            .await
            .unwrap();
        assert_eq!(outcome, BindOutcome::Opened);
        cut(connection);
        client.connection_lost();
        let stale = client.reconnect_ticket().unwrap().to_vec();
        // The window (1 s) and a keeper round (1 s) pass.
        tokio::time::sleep(Duration::from_millis(2_500)).await;
        assert_eq!(
            raw_resume(gateway, &config, &stale).await,
            Some(MessageNumber::REFUSED)
        );
    });
    gatehouse.wait_for_event("reconnect_ended", &[("reason", "window_passed")]);
    let events = gatehouse.stop();
    assert_eq!(count(&events, "deny", &[("reason", "revoked_ticket")]), 1);
    assert_eq!(sim.stop().code(), Some(0));
}

#[test]
fn a_cgp_bind_without_a_ticket_is_refused_with_a_cgp_refusal() {
    let sim = VdaSim::start();
    let mut gatehouse = Gatehouse::start("");
    let config = gatehouse.tls_client();
    let gateway = gatehouse.gateway();
    run(async {
        let mut stream = tls(gateway, &config).await;
        let bind = BindRequest {
            capabilities: vec![Capability::SessionReliability(SessionReliability {
                min_version: 1,
                max_version: 1,
                ack_algorithms: SessionReliability::ACK_DELTA,
                next_message_number: MessageNumber(1),
                reconnect_ticket: None,
                channels: Vec::new(),
            })],
        };
        let mut preamble = Vec::new();
        encode_connection_preamble(&bind, &mut preamble).unwrap();
        stream.write_all(&preamble).await.unwrap();
        stream.flush().await.unwrap();
        let mut answer = Vec::new();
        let read = tokio::time::timeout(TIMEOUT, stream.read_to_end(&mut answer)).await;
        assert!(read.is_ok(), "the gateway closes after its refusal");
        let (response, _) = BindResponse::decode(&answer).unwrap().done().unwrap();
        assert_eq!(response.next_message_number(), Some(MessageNumber::REFUSED));
    });
    gatehouse.wait_for_event("session_closed", &[("reason", "cgp_no_ticket")]);
    let _ = gatehouse.stop();
    assert_eq!(sim.stop().code(), Some(0));
}
