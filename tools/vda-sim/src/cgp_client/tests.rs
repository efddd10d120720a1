//! Unit tests for [`CgpClient`]: the client against hand-made server
//! packets, no I/O.

use gatehouse_wire::cgp::{
    BindResponse, CGP_SIGNATURE, ChannelOpenResponse, Data, decode_connection_preamble,
};

use super::*;

const STA_TICKET: &[u8] = b";40;STA01;ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";
const RECONNECT: &[u8] = b"RECONNECTTICKET0123456789ABCDEFG";

fn bind_response(next: u32, ticket: Option<&[u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    BindResponse {
        capabilities: vec![Capability::SessionReliability(SessionReliability {
            min_version: 1,
            max_version: 1,
            ack_algorithms: SessionReliability::ACK_DELTA,
            next_message_number: MessageNumber(next),
            reconnect_ticket: ticket.map(|ticket| ReconnectTicket {
                version: RECONNECT_TICKET_VERSION,
                ticket,
            }),
            channels: Vec::new(),
        })],
    }
    .encode(&mut out)
    .unwrap();
    out
}

fn tracked(number: u32, message: Message<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    Frame {
        extensions: Extensions {
            reliability: Some(Reliability {
                track: Some(MessageNumber(number)),
                ack: None,
            }),
        },
        message,
    }
    .encode(&mut out)
    .unwrap();
    out
}

fn data(number: u32, payload: &[u8]) -> Vec<u8> {
    tracked(
        number,
        Message::Data(Data {
            channel: ChannelId(1),
            payload,
        }),
    )
}

fn transmit(client: &mut CgpClient) -> Vec<u8> {
    let mut out = Vec::new();
    client.poll_transmit(&mut out, usize::MAX);
    out
}

/// Every frame in `bytes`.
fn frames(mut bytes: &[u8]) -> Vec<Frame<'_>> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let (frame, consumed) = Frame::decode(bytes).unwrap().done().unwrap();
        out.push(frame);
        bytes = &bytes[consumed..];
    }
    out
}

/// A client bound to a new session with the reconnect ticket.
fn bound_client() -> CgpClient {
    let mut client = CgpClient::default();
    client.connect(STA_TICKET).unwrap();
    transmit(&mut client);
    client
        .handle_input(&bind_response(1, Some(RECONNECT)))
        .unwrap();
    assert_eq!(client.poll_bind(), Some(BindOutcome::Opened));
    client
}

#[test]
fn first_connect_sends_the_signature_and_a_bind_with_the_security_ticket() {
    let mut client = CgpClient::default();
    client.connect(STA_TICKET).unwrap();
    let out = transmit(&mut client);
    assert!(out.starts_with(&CGP_SIGNATURE));
    let (bind, consumed) = decode_connection_preamble(&out).unwrap().done().unwrap();
    assert_eq!(consumed, out.len());
    assert_eq!(bind.security_ticket(), Some(STA_TICKET));
    let reliability = bind.session_reliability().unwrap();
    assert_eq!(reliability.next_message_number, MessageNumber(1));
    assert_eq!(reliability.reconnect_ticket, None);
    assert_eq!(bind.reconnect(), None);
}

#[test]
fn sends_nothing_but_the_preamble_before_the_bind_response() {
    let mut client = CgpClient::default();
    client.connect(STA_TICKET).unwrap();
    client
        .open_channel(ChannelId(1), PROXY_SERVICE_ID, b"")
        .unwrap();
    transmit(&mut client);
    assert!(transmit(&mut client).is_empty());
    client
        .handle_input(&bind_response(1, Some(RECONNECT)))
        .unwrap();
    let out = transmit(&mut client);
    let sent = frames(&out);
    assert_eq!(sent.len(), 1);
    assert!(matches!(sent[0].message, Message::ChannelOpenRequest(_)));
}

#[test]
fn keeps_the_reconnect_ticket_of_the_bind_response() {
    let client = bound_client();
    assert_eq!(client.phase(), Phase::Bound);
    assert_eq!(client.reconnect_ticket(), Some(RECONNECT));
}

#[test]
fn refuses_a_first_bind_response_without_a_reconnect_ticket() {
    let mut client = CgpClient::default();
    client.connect(STA_TICKET).unwrap();
    transmit(&mut client);
    assert_eq!(
        client.handle_input(&bind_response(1, None)),
        Err(ClientError::NoReliability)
    );
}

#[test]
fn delivers_data_in_order_across_split_reads_and_acks_it() {
    let mut client = bound_client();
    let mut bytes = data(1, b"hello ");
    bytes.extend(data(2, b"world"));
    for byte in &bytes {
        client.handle_input(std::slice::from_ref(byte)).unwrap();
    }
    let mut payload = Vec::new();
    while let Some(event) = client.poll_event() {
        let Event::Data { payload: piece, .. } = event else {
            panic!("{event:?}");
        };
        payload.extend(piece);
    }
    assert_eq!(payload, b"hello world");
    let out = transmit(&mut client);
    let sent = frames(&out);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].message, Message::Nop);
    assert_eq!(sent[0].extensions.reliability.unwrap().ack, Some(2));
    assert_eq!(client.next_expected(), MessageNumber(3));
}

#[test]
fn refuses_a_duplicated_message() {
    let mut client = bound_client();
    client.handle_input(&data(1, b"a")).unwrap();
    assert!(matches!(
        client.handle_input(&data(1, b"a")),
        Err(ClientError::Reliability(
            ReliabilityError::OutOfOrder { .. }
        ))
    ));
}

#[test]
fn reports_channel_answers_as_events() {
    let mut client = bound_client();
    client
        .handle_input(&tracked(
            1,
            Message::ChannelOpenResponse(ChannelOpenResponse {
                channel: ChannelId(3),
                status: OpenStatus::OPENED,
            }),
        ))
        .unwrap();
    client
        .handle_input(&tracked(
            2,
            Message::ChannelClose(ChannelClose {
                channel: ChannelId(3),
                reason: Reason::NORMAL,
            }),
        ))
        .unwrap();
    assert_eq!(
        client.poll_event(),
        Some(Event::ChannelOpened {
            channel: ChannelId(3),
            status: OpenStatus::OPENED
        })
    );
    assert_eq!(
        client.poll_event(),
        Some(Event::ChannelClosed {
            channel: ChannelId(3),
            reason: Reason::NORMAL
        })
    );
}

#[test]
fn resume_presents_the_reconnect_ticket_and_the_next_expected_number() {
    let mut client = bound_client();
    client.handle_input(&data(1, b"a")).unwrap();
    client.handle_input(&data(2, b"b")).unwrap();
    client.connection_lost();
    assert_eq!(client.phase(), Phase::Disconnected);
    client.resume().unwrap();
    let out = transmit(&mut client);
    let (bind, _) = decode_connection_preamble(&out).unwrap().done().unwrap();
    let info = bind.reconnect().unwrap();
    assert_eq!(info.ticket, RECONNECT);
    assert_eq!(info.ticket_version, RECONNECT_TICKET_VERSION);
    assert_eq!(info.next_message_number, MessageNumber(3));
    assert_eq!(bind.security_ticket(), None);
}

#[test]
fn resume_resends_what_the_server_lacks_and_drops_a_partial_packet() {
    let mut client = bound_client();
    client.send(ChannelId(1), b"one").unwrap();
    client.send(ChannelId(1), b"two").unwrap();
    transmit(&mut client);
    // Half a packet arrives, then the connection breaks.
    let partial = data(1, b"lost");
    client.handle_input(&partial[..4]).unwrap();
    client.connection_lost();
    client.resume().unwrap();
    transmit(&mut client);
    // The server got "one" only: it expects message 2 next.
    client.handle_input(&bind_response(2, None)).unwrap();
    assert_eq!(client.poll_bind(), Some(BindOutcome::Resumed { resent: 1 }));
    let out = transmit(&mut client);
    let sent = frames(&out);
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0].extensions.reliability.unwrap().track,
        Some(MessageNumber(2))
    );
    assert_eq!(
        sent[0].message,
        Message::Data(Data {
            channel: ChannelId(1),
            payload: b"two"
        })
    );
    // The server's resend of message 1 decodes from a clean buffer.
    client.handle_input(&data(1, b"kept")).unwrap();
    assert_eq!(
        client.poll_event(),
        Some(Event::Data {
            channel: ChannelId(1),
            payload: b"kept".to_vec()
        })
    );
}

#[test]
fn a_refused_resume_ends_the_session() {
    let mut client = bound_client();
    client.connection_lost();
    client.resume().unwrap();
    transmit(&mut client);
    client.handle_input(&bind_response(0, None)).unwrap();
    assert_eq!(client.poll_bind(), Some(BindOutcome::Refused));
    assert_eq!(client.phase(), Phase::Refused);
    assert!(transmit(&mut client).is_empty());
    assert!(matches!(
        client.resume(),
        Err(ClientError::WrongPhase { .. })
    ));
}

#[test]
fn resume_before_any_bind_is_refused() {
    let mut client = CgpClient::default();
    assert_eq!(
        client.resume(),
        Err(ClientError::WrongPhase {
            call: "resume",
            phase: Phase::Idle
        })
    );
}

#[test]
fn splits_large_sends_into_bounded_data_packets() {
    let mut client = bound_client();
    client
        .send(ChannelId(1), &vec![7; MAX_DATA_PAYLOAD * 2 + 1])
        .unwrap();
    let out = transmit(&mut client);
    let sizes: Vec<usize> = frames(&out)
        .iter()
        .map(|frame| match frame.message {
            Message::Data(data) => data.payload.len(),
            _ => panic!("not data"),
        })
        .collect();
    assert_eq!(sizes, vec![MAX_DATA_PAYLOAD, MAX_DATA_PAYLOAD, 1]);
}

#[test]
fn finish_request_from_the_server_is_answered() {
    let mut client = bound_client();
    let mut finish = Vec::new();
    push_untracked(
        Message::FinishRequest(FinishRequest {
            reason: Reason::NORMAL,
        }),
        &mut finish,
    );
    client.handle_input(&finish).unwrap();
    assert_eq!(client.poll_event(), Some(Event::Finished));
    let out = transmit(&mut client);
    assert_eq!(frames(&out)[0].message, Message::FinishResponse);
}
