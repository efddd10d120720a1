//! CGP mode on loopback, through the crate's own client: bind, echo,
//! cut-and-resume in both directions, and every refusal.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers: a panic is a failed test"
)]

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use gatehouse_vda_sim::cgp_client::{PROXY_SERVICE_ID, Phase};
use gatehouse_vda_sim::pattern::{self, PatternChecker};
use gatehouse_vda_sim::service::ServiceRequest;
use gatehouse_vda_sim::{BindOutcome, CgpClient, CgpConnection, DEFAULT_MAX_UNACKED, Event};
use gatehouse_wire::cgp::{
    BindRequest, BindResponse, Capability, ChannelId, MessageNumber, OpenStatus,
    RECONNECT_TICKET_VERSION, Reason, ReconnectTicket, SessionReliability,
    encode_connection_preamble,
};
use support::{STA_TICKET, cut, run, spawn_sim};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CHANNEL: ChannelId = ChannelId(1);
const MIB: u64 = 1024 * 1024;

type Connection = CgpConnection<TcpStream>;

async fn connect(addr: SocketAddr, client: &mut CgpClient) -> Connection {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (connection, outcome) = CgpConnection::connect(tcp, client, STA_TICKET)
        .await
        .unwrap();
    assert_eq!(outcome, BindOutcome::Opened);
    connection
}

async fn resume(addr: SocketAddr, client: &mut CgpClient) -> (Connection, BindOutcome) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    CgpConnection::resume(tcp, client).await.unwrap()
}

/// Opens [`CHANNEL`] and waits for the sim's answer.
async fn open_channel(connection: &mut Connection, client: &mut CgpClient) {
    client.open_channel(CHANNEL, PROXY_SERVICE_ID, b"").unwrap();
    let event = connection.next_event(client).await.unwrap();
    assert_eq!(
        event,
        Some(Event::ChannelOpened {
            channel: CHANNEL,
            status: OpenStatus::OPENED
        })
    );
}

fn stream_request(len: u64) -> Vec<u8> {
    let mut request = Vec::new();
    ServiceRequest::Stream { len }.encode(&mut request);
    request
}

/// Sends a hand-made resume BIND and returns the sim's next number.
async fn raw_resume(addr: SocketAddr, ticket: &[u8], next: u32) -> MessageNumber {
    let bind = BindRequest {
        capabilities: vec![Capability::SessionReliability(SessionReliability {
            min_version: 1,
            max_version: 1,
            ack_algorithms: SessionReliability::ACK_DELTA,
            next_message_number: MessageNumber(next),
            reconnect_ticket: Some(ReconnectTicket {
                version: RECONNECT_TICKET_VERSION,
                ticket,
            }),
            channels: Vec::new(),
        })],
    };
    let mut preamble = Vec::new();
    encode_connection_preamble(&bind, &mut preamble).unwrap();
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(&preamble).await.unwrap();
    let mut answer = Vec::new();
    tcp.read_to_end(&mut answer).await.unwrap();
    let (response, consumed) = BindResponse::decode(&answer).unwrap().done().unwrap();
    assert_eq!(consumed, answer.len(), "a refusal is followed by a close");
    assert_eq!(response.reconnect(), None, "a refusal carries no ticket");
    response.next_message_number().unwrap()
}

#[test]
fn bind_answers_with_a_reconnect_ticket() {
    run(async {
        let sim = spawn_sim(Duration::from_secs(60), DEFAULT_MAX_UNACKED).await;
        let mut client = CgpClient::default();
        let _connection = connect(sim.cgp.unwrap(), &mut client).await;
        let ticket = client.reconnect_ticket().unwrap();
        assert_eq!(ticket.len(), 32);
        assert!(
            ticket
                .iter()
                .all(|byte| byte.is_ascii_uppercase() || byte.is_ascii_digit())
        );
        let mut other = CgpClient::default();
        let _second = connect(sim.cgp.unwrap(), &mut other).await;
        assert_ne!(other.reconnect_ticket(), client.reconnect_ticket());
        sim.stop().await;
    });
}

#[test]
fn echoes_data_over_a_channel() {
    run(async {
        let sim = spawn_sim(Duration::from_secs(60), DEFAULT_MAX_UNACKED).await;
        let mut client = CgpClient::default();
        let mut connection = connect(sim.cgp.unwrap(), &mut client).await;
        open_channel(&mut connection, &mut client).await;
        client.send(CHANNEL, b"hello over cgp").unwrap();
        let mut echo = Vec::new();
        while echo.len() < 14 {
            match connection.next_event(&mut client).await.unwrap() {
                Some(Event::Data { channel, payload }) => {
                    assert_eq!(channel, CHANNEL);
                    echo.extend(payload);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(echo, b"hello over cgp");
        client.close_channel(CHANNEL, Reason::NORMAL).unwrap();
        assert_eq!(
            connection.next_event(&mut client).await.unwrap(),
            Some(Event::ChannelClosed {
                channel: CHANNEL,
                reason: Reason::NORMAL
            })
        );
        client.finish(Reason::NORMAL);
        assert_eq!(
            connection.next_event(&mut client).await.unwrap(),
            Some(Event::Finished)
        );
        sim.stop().await;
    });
}

#[test]
fn resumes_a_cut_stream_complete_and_in_order() {
    run(async {
        let sim = spawn_sim(Duration::from_secs(60), DEFAULT_MAX_UNACKED).await;
        let addr = sim.cgp.unwrap();
        let total = 4 * MIB;
        let mut client = CgpClient::default();
        let mut connection = connect(addr, &mut client).await;
        open_channel(&mut connection, &mut client).await;
        client.send(CHANNEL, &stream_request(total)).unwrap();
        let mut checker = PatternChecker::new();
        let mut cuts = 0;
        let mut connection = Some(connection);
        loop {
            let current = connection.as_mut().unwrap();
            let event = current.next_event(&mut client).await.unwrap();
            match event {
                Some(Event::Data { payload, .. }) => checker.feed(&payload).unwrap(),
                Some(Event::ChannelClosed { reason, .. }) => {
                    assert_eq!(reason, Reason::NORMAL);
                    break;
                }
                other => panic!("unexpected {other:?}"),
            }
            // Cut twice mid-stream: after 1 MiB and after 2.5 MiB.
            let cut_at = [MIB, 5 * MIB / 2];
            if cuts < cut_at.len() && checker.offset() >= cut_at[cuts] {
                cuts += 1;
                cut(connection.take().unwrap().into_inner());
                client.connection_lost();
                let (resumed, outcome) = resume(addr, &mut client).await;
                assert!(
                    matches!(outcome, BindOutcome::Resumed { .. }),
                    "{outcome:?}"
                );
                connection = Some(resumed);
            }
        }
        assert_eq!(cuts, 2);
        assert_eq!(checker.offset(), total, "every byte, once, in order");
        sim.stop().await;
    });
}

#[test]
fn resumes_a_cut_echo_in_both_directions() {
    run(async {
        let sim = spawn_sim(Duration::from_secs(60), DEFAULT_MAX_UNACKED).await;
        let addr = sim.cgp.unwrap();
        let total = 3 * MIB;
        let mut upload = vec![0; total as usize];
        pattern::fill(0, &mut upload);
        let mut client = CgpClient::default();
        let mut connection = Some(connect(addr, &mut client).await);
        open_channel(connection.as_mut().unwrap(), &mut client).await;
        let mut sent = 0;
        let mut checker = PatternChecker::new();
        let mut cut_done = false;
        while checker.offset() < total {
            // Pace on the client's own unacknowledged output.
            while sent < upload.len() && client.unacked_bytes() < 512 * 1024 {
                let end = (sent + 64 * 1024).min(upload.len());
                client.send(CHANNEL, &upload[sent..end]).unwrap();
                sent = end;
            }
            let current = connection.as_mut().unwrap();
            match current.next_event(&mut client).await.unwrap() {
                Some(Event::Data { payload, .. }) => checker.feed(&payload).unwrap(),
                other => panic!("unexpected {other:?}"),
            }
            if !cut_done && checker.offset() >= total / 3 {
                cut_done = true;
                cut(connection.take().unwrap().into_inner());
                client.connection_lost();
                let (resumed, outcome) = resume(addr, &mut client).await;
                assert!(
                    matches!(outcome, BindOutcome::Resumed { .. }),
                    "{outcome:?}"
                );
                connection = Some(resumed);
            }
        }
        assert!(cut_done);
        assert_eq!(sent, upload.len());
        sim.stop().await;
    });
}

#[test]
fn resume_with_a_bogus_ticket_is_refused() {
    run(async {
        let sim = spawn_sim(Duration::from_secs(60), DEFAULT_MAX_UNACKED).await;
        let addr = sim.cgp.unwrap();
        let refused = raw_resume(addr, b"ABCDEFGHIJKLMNOPQRSTUVWXYZ012345", 1).await;
        assert_eq!(refused, MessageNumber::REFUSED);
        let malformed = raw_resume(addr, b"not a ticket", 1).await;
        assert_eq!(malformed, MessageNumber::REFUSED);
        sim.stop().await;
    });
}

#[test]
fn resume_with_a_number_the_sim_never_sent_is_refused() {
    run(async {
        let sim = spawn_sim(Duration::from_secs(60), DEFAULT_MAX_UNACKED).await;
        let addr = sim.cgp.unwrap();
        let mut client = CgpClient::default();
        let connection = connect(addr, &mut client).await;
        let ticket = client.reconnect_ticket().unwrap().to_vec();
        cut(connection.into_inner());
        let refused = raw_resume(addr, &ticket, 1000).await;
        assert_eq!(refused, MessageNumber::REFUSED);
        // The session is gone, even for a correct number now.
        assert_eq!(raw_resume(addr, &ticket, 1).await, MessageNumber::REFUSED);
        sim.stop().await;
    });
}

#[test]
fn resume_after_the_ttl_is_refused() {
    run(async {
        let sim = spawn_sim(Duration::from_millis(300), DEFAULT_MAX_UNACKED).await;
        let addr = sim.cgp.unwrap();
        let mut client = CgpClient::default();
        let connection = connect(addr, &mut client).await;
        cut(connection.into_inner());
        client.connection_lost();
        tokio::time::sleep(Duration::from_millis(900)).await;
        let tcp = TcpStream::connect(addr).await.unwrap();
        let (_, outcome) = CgpConnection::resume(tcp, &mut client).await.unwrap();
        assert_eq!(outcome, BindOutcome::Refused);
        assert_eq!(client.phase(), Phase::Refused);
        sim.stop().await;
    });
}

#[test]
fn resume_within_the_ttl_succeeds() {
    run(async {
        let sim = spawn_sim(Duration::from_secs(2), DEFAULT_MAX_UNACKED).await;
        let addr = sim.cgp.unwrap();
        let mut client = CgpClient::default();
        let connection = connect(addr, &mut client).await;
        cut(connection.into_inner());
        client.connection_lost();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (_, outcome) = resume(addr, &mut client).await;
        assert_eq!(outcome, BindOutcome::Resumed { resent: 0 });
        sim.stop().await;
    });
}

#[test]
fn resume_takes_over_a_session_whose_old_connection_is_still_open() {
    run(async {
        let sim = spawn_sim(Duration::from_secs(60), DEFAULT_MAX_UNACKED).await;
        let addr = sim.cgp.unwrap();
        let mut client = CgpClient::default();
        let mut old = connect(addr, &mut client).await;
        open_channel(&mut old, &mut client).await;
        // The client gives up on a connection the sim still holds.
        client.connection_lost();
        let (mut connection, outcome) = resume(addr, &mut client).await;
        assert_eq!(outcome, BindOutcome::Resumed { resent: 0 });
        let mut stale = old.into_inner();
        let mut rest = Vec::new();
        let _ = stale.read_to_end(&mut rest).await;
        assert!(rest.is_empty(), "the sim closed the old connection");
        client.send(CHANNEL, b"still here").unwrap();
        assert_eq!(
            connection.next_event(&mut client).await.unwrap(),
            Some(Event::Data {
                channel: CHANNEL,
                payload: b"still here".to_vec()
            })
        );
        sim.stop().await;
    });
}

#[test]
fn a_finished_session_cannot_be_resumed() {
    run(async {
        let sim = spawn_sim(Duration::from_secs(60), DEFAULT_MAX_UNACKED).await;
        let addr = sim.cgp.unwrap();
        let mut client = CgpClient::default();
        let mut connection = connect(addr, &mut client).await;
        let ticket = client.reconnect_ticket().unwrap().to_vec();
        client.finish(Reason::NORMAL);
        assert_eq!(
            connection.next_event(&mut client).await.unwrap(),
            Some(Event::Finished)
        );
        assert_eq!(raw_resume(addr, &ticket, 1).await, MessageNumber::REFUSED);
        sim.stop().await;
    });
}

#[test]
fn a_client_that_never_acknowledges_is_dropped_at_the_bound() {
    run(async {
        let sim = spawn_sim(Duration::from_secs(60), 64 * 1024).await;
        let addr = sim.cgp.unwrap();
        // The sans-IO client encodes; the test writes its bytes once and
        // never sends an acknowledgement.
        let mut client = CgpClient::new(8 * 1024 * 1024);
        client.connect(STA_TICKET).unwrap();
        let mut out = Vec::new();
        client.poll_transmit(&mut out, usize::MAX);
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(&out).await.unwrap();
        let mut buf = vec![0; 65_536];
        while client.poll_bind().is_none() {
            let n = tcp.read(&mut buf).await.unwrap();
            assert_ne!(n, 0, "closed before the bind response");
            client.handle_input(&buf[..n]).unwrap();
        }
        let ticket = client.reconnect_ticket().unwrap().to_vec();
        client.open_channel(CHANNEL, PROXY_SERVICE_ID, b"").unwrap();
        client.send(CHANNEL, &vec![7; 256 * 1024]).unwrap();
        out.clear();
        client.poll_transmit(&mut out, usize::MAX);
        let (mut reader, mut writer) = tcp.into_split();
        let writing = tokio::spawn(async move {
            // The sim may close before reading everything.
            let _ = writer.write_all(&out).await;
            writer
        });
        let mut received = 0;
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received += n,
            }
        }
        drop(writing.await.unwrap());
        assert!(
            received < 256 * 1024,
            "the sim stopped echoing at its bound, got {received} bytes"
        );
        assert_eq!(raw_resume(addr, &ticket, 1).await, MessageNumber::REFUSED);
        sim.stop().await;
    });
}

#[test]
fn refuses_an_output_bound_below_the_minimum() {
    run(async {
        let config = gatehouse_vda_sim::SimConfig {
            cgp_listen: Some("127.0.0.1:0".parse().unwrap()),
            max_unacked: gatehouse_vda_sim::MIN_MAX_UNACKED - 1,
            ..Default::default()
        };
        assert!(matches!(
            gatehouse_vda_sim::Sim::bind(config).await,
            Err(gatehouse_vda_sim::SimError::BoundTooSmall)
        ));
    });
}
