//! The sim's session against the client, both in memory: no sockets, no
//! clocks; bytes move only when the test moves them.

use gatehouse_wire::cgp::{ChannelId, OpenStatus, Reason};
use gatehouse_wire::ticket::Ticket;

use super::session::{Session, SessionError};
use crate::cgp_client::{BindOutcome, CgpClient, Event, PROXY_SERVICE_ID};
use crate::pattern::PatternChecker;
use crate::pump::Endpoint;
use crate::reliability::ReliabilityError;
use crate::service::ServiceRequest;

const CHANNEL: ChannelId = ChannelId(1);

fn ticket() -> Ticket {
    Ticket::decode(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ012345").unwrap()
}

/// Client bytes to the session and back until neither has anything to
/// send; returns the events the client got.
fn exchange(client: &mut CgpClient, session: &mut Session) -> Vec<Event> {
    let mut events = Vec::new();
    for _ in 0..10_000 {
        let mut up = Vec::new();
        client.poll_transmit(&mut up, 1 << 20);
        session.handle_input(&up).unwrap();
        let mut down = Vec::new();
        session.poll_transmit(&mut down, 1 << 20);
        client.handle_input(&down).unwrap();
        events.extend(std::iter::from_fn(|| client.poll_event()));
        if up.is_empty() && down.is_empty() {
            return events;
        }
    }
    panic!("the exchange did not settle");
}

/// A client bound to a new session of `max_unacked` bytes.
fn bound_pair(max_unacked: usize) -> (CgpClient, Box<Session>) {
    let mut client = CgpClient::default();
    let mut session = Box::new(Session::new(
        7,
        ticket(),
        max_unacked,
        std::time::Instant::now(),
    ));
    client
        .connect(b";40;STA01;ABCDEFGHIJKLMNOPQRSTUVWXYZ012345")
        .unwrap();
    let mut preamble = Vec::new();
    client.poll_transmit(&mut preamble, usize::MAX);
    assert_eq!(session.attach(gatehouse_wire::cgp::MessageNumber(1)), Ok(0));
    session.queue_bind_response(180);
    exchange(&mut client, &mut session);
    assert_eq!(client.poll_bind(), Some(BindOutcome::Opened));
    assert_eq!(
        client.reconnect_ticket(),
        Some(ticket().as_str().as_bytes())
    );
    (client, session)
}

fn open(client: &mut CgpClient, session: &mut Session) {
    client.open_channel(CHANNEL, PROXY_SERVICE_ID, b"").unwrap();
    assert_eq!(
        exchange(client, session),
        vec![Event::ChannelOpened {
            channel: CHANNEL,
            status: OpenStatus::OPENED
        }]
    );
}

fn data_of(events: &[Event]) -> Vec<u8> {
    events
        .iter()
        .filter_map(|event| match event {
            Event::Data { payload, .. } => Some(payload.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

#[test]
fn echoes_channel_data_and_releases_it_once_acknowledged() {
    let (mut client, mut session) = bound_pair(1 << 20);
    open(&mut client, &mut session);
    client.send(CHANNEL, b"hello through cgp").unwrap();
    let events = exchange(&mut client, &mut session);
    assert_eq!(data_of(&events), b"hello through cgp");
    assert_eq!(client.unacked_bytes(), 0, "the sim acknowledged");
    assert_eq!(session.counters.bytes_up, 17);
    assert_eq!(session.counters.bytes_down, 17);
}

#[test]
fn streams_the_pattern_then_closes_the_channel() {
    let (mut client, mut session) = bound_pair(1 << 20);
    open(&mut client, &mut session);
    let mut request = Vec::new();
    ServiceRequest::Stream { len: 1_000_000 }.encode(&mut request);
    client.send(CHANNEL, &request).unwrap();
    let events = exchange(&mut client, &mut session);
    let mut checker = PatternChecker::new();
    checker.feed(&data_of(&events)).unwrap();
    assert_eq!(checker.offset(), 1_000_000);
    assert_eq!(
        events.last(),
        Some(&Event::ChannelClosed {
            channel: CHANNEL,
            reason: Reason::NORMAL
        })
    );
}

#[test]
fn resumes_a_cut_stream_without_loss_or_duplication() {
    let (mut client, mut session) = bound_pair(1 << 20);
    open(&mut client, &mut session);
    let mut request = Vec::new();
    ServiceRequest::Stream { len: 600_000 }.encode(&mut request);
    client.send(CHANNEL, &request).unwrap();
    let mut up = Vec::new();
    client.poll_transmit(&mut up, usize::MAX);
    session.handle_input(&up).unwrap();
    let mut down = Vec::new();
    session.poll_transmit(&mut down, 1 << 20);
    // Only the first 100 000 bytes reach the client; the rest is lost.
    client.handle_input(&down[..100_000]).unwrap();
    let mut received: Vec<Event> = std::iter::from_fn(|| client.poll_event()).collect();
    client.connection_lost();

    client.resume().unwrap();
    let mut preamble = Vec::new();
    client.poll_transmit(&mut preamble, usize::MAX);
    let (bind, _) = gatehouse_wire::cgp::decode_connection_preamble(&preamble)
        .unwrap()
        .done()
        .unwrap();
    let info = bind.reconnect().unwrap();
    assert_eq!(info.ticket, ticket().as_str().as_bytes());
    let resent = session.attach(info.next_message_number).unwrap();
    assert!(resent > 0);
    session.queue_bind_response(180);
    received.extend(exchange(&mut client, &mut session));
    assert!(matches!(
        client.poll_bind(),
        Some(BindOutcome::Resumed { .. })
    ));
    let mut checker = PatternChecker::new();
    checker.feed(&data_of(&received)).unwrap();
    assert_eq!(checker.offset(), 600_000);
}

#[test]
fn withholds_acks_while_its_output_is_full() {
    let (mut client, mut session) = bound_pair(256 * 1024);
    open(&mut client, &mut session);
    // 128 KiB of echo input: the echo fills the sim's 64 KiB window.
    client.send(CHANNEL, &vec![1; 128 * 1024]).unwrap();
    let mut up = Vec::new();
    client.poll_transmit(&mut up, usize::MAX);
    session.handle_input(&up).unwrap();
    let mut down = Vec::new();
    session.poll_transmit(&mut down, usize::MAX);
    client.handle_input(&down).unwrap();
    assert!(
        client.unacked_bytes() >= 128 * 1024,
        "no ack while the sim's output is above its window"
    );
    // Once the client acknowledges the echo, the sim acknowledges too.
    let events = exchange(&mut client, &mut session);
    assert_eq!(data_of(&events), vec![1; 128 * 1024]);
    assert_eq!(client.unacked_bytes(), 0);
}

#[test]
fn drops_a_session_whose_client_never_acknowledges() {
    let (mut client, mut session) = bound_pair(64 * 1024);
    open(&mut client, &mut session);
    // The client may keep 4 MiB; the sim only 64 KiB of echo.
    client.send(CHANNEL, &vec![1; 100 * 1024]).unwrap();
    let mut up = Vec::new();
    client.poll_transmit(&mut up, usize::MAX);
    assert_eq!(
        session.handle_input(&up),
        Err(SessionError::Reliability(ReliabilityError::Overflow {
            cap: 64 * 1024
        }))
    );
}

#[test]
fn finish_request_is_answered_and_ends_the_session() {
    let (mut client, mut session) = bound_pair(1 << 20);
    client.finish(Reason::NORMAL);
    let events = exchange(&mut client, &mut session);
    assert_eq!(events, vec![Event::Finished]);
    assert!(session.is_finished());
}

#[test]
fn data_on_an_unopened_channel_ends_the_session() {
    let (mut client, mut session) = bound_pair(1 << 20);
    client.send(ChannelId(9), b"x").unwrap();
    let mut up = Vec::new();
    client.poll_transmit(&mut up, usize::MAX);
    assert_eq!(
        session.handle_input(&up),
        Err(SessionError::UnknownChannel(ChannelId(9)))
    );
}
