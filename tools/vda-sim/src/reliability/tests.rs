//! Unit tests for [`Outbound`] and [`Inbound`].

use gatehouse_wire::Progress;
use gatehouse_wire::cgp::{ChannelId, Data};

use super::*;

fn data(payload: &[u8]) -> Message<'_> {
    Message::Data(Data {
        channel: ChannelId(1),
        payload,
    })
}

/// Decodes every packet in `bytes`: (message number, payload).
fn decode_all(mut bytes: &[u8]) -> Vec<(u32, Vec<u8>)> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let Progress::Done { value, consumed } = Frame::decode(bytes).unwrap() else {
            panic!("partial packet");
        };
        let reliability = value.extensions.reliability.unwrap();
        assert_eq!(reliability.ack, None, "kept messages carry no ack");
        let Message::Data(data) = value.message else {
            panic!("not data");
        };
        out.push((reliability.track.unwrap().0, data.payload.to_vec()));
        bytes = &bytes[consumed..];
    }
    out
}

#[test]
fn numbers_messages_from_one_and_sends_each_once() {
    let mut outbound = Outbound::new(1 << 20);
    assert_eq!(outbound.push(data(b"a")).unwrap(), MessageNumber(1));
    assert_eq!(outbound.push(data(b"b")).unwrap(), MessageNumber(2));
    let mut out = Vec::new();
    assert_eq!(outbound.poll_transmit(&mut out, usize::MAX), 2);
    assert_eq!(
        decode_all(&out),
        vec![(1, b"a".to_vec()), (2, b"b".to_vec())]
    );
    out.clear();
    assert_eq!(outbound.poll_transmit(&mut out, usize::MAX), 0);
    assert!(out.is_empty());
    assert_eq!(outbound.len(), 2, "kept until acknowledged");
}

#[test]
fn stops_transmitting_at_the_budget() {
    let mut outbound = Outbound::new(1 << 20);
    for _ in 0..3 {
        outbound.push(data(&[7; 100])).unwrap();
    }
    let mut out = Vec::new();
    assert_eq!(outbound.poll_transmit(&mut out, 1), 1);
    assert!(outbound.has_unsent());
    assert_eq!(outbound.poll_transmit(&mut out, usize::MAX), 2);
    assert!(!outbound.has_unsent());
}

#[test]
fn ack_releases_the_oldest_sent_messages() {
    let mut outbound = Outbound::new(1 << 20);
    for payload in [b"a", b"b", b"c"] {
        outbound.push(data(payload)).unwrap();
    }
    let before = outbound.buffered_bytes();
    outbound.poll_transmit(&mut Vec::new(), usize::MAX);
    outbound.handle_ack(2).unwrap();
    assert_eq!(outbound.len(), 1);
    assert!(outbound.buffered_bytes() < before);
    outbound.resume_from(MessageNumber(3)).unwrap();
    let mut out = Vec::new();
    outbound.poll_transmit(&mut out, usize::MAX);
    assert_eq!(decode_all(&out), vec![(3, b"c".to_vec())]);
}

#[test]
fn refuses_an_ack_of_unsent_messages() {
    let mut outbound = Outbound::new(1 << 20);
    outbound.push(data(b"a")).unwrap();
    outbound.push(data(b"b")).unwrap();
    outbound.poll_transmit(&mut Vec::new(), 1);
    assert_eq!(
        outbound.handle_ack(2),
        Err(ReliabilityError::AckBeyondSent { delta: 2, sent: 1 })
    );
    assert_eq!(outbound.len(), 2);
}

#[test]
fn refuses_a_message_past_the_bound_and_keeps_the_rest() {
    let mut outbound = Outbound::new(300);
    outbound.push(data(&[0; 200])).unwrap();
    assert_eq!(
        outbound.push(data(&[0; 200])),
        Err(ReliabilityError::Overflow { cap: 300 })
    );
    assert_eq!(outbound.len(), 1);
    assert_eq!(outbound.next_number(), MessageNumber(2));
}

#[test]
fn resume_resends_everything_the_peer_lacks_in_order() {
    let mut outbound = Outbound::new(1 << 20);
    for i in 0..5u8 {
        outbound.push(data(&[i])).unwrap();
    }
    outbound.poll_transmit(&mut Vec::new(), usize::MAX);
    outbound.handle_ack(1).unwrap();
    // The peer got messages 1..=3 but acknowledged only 1 before the cut.
    assert_eq!(outbound.resume_from(MessageNumber(4)).unwrap(), 2);
    let mut out = Vec::new();
    outbound.poll_transmit(&mut out, usize::MAX);
    assert_eq!(decode_all(&out), vec![(4, vec![3]), (5, vec![4])]);
    // Acks after a resume count from the resume point.
    outbound.handle_ack(2).unwrap();
    assert!(outbound.is_empty());
    assert_eq!(outbound.buffered_bytes(), 0);
}

#[test]
fn resume_refuses_a_peer_behind_the_oldest_kept_message() {
    let mut outbound = Outbound::new(1 << 20);
    outbound.push(data(b"a")).unwrap();
    outbound.push(data(b"b")).unwrap();
    outbound.poll_transmit(&mut Vec::new(), usize::MAX);
    outbound.handle_ack(1).unwrap();
    assert_eq!(
        outbound.resume_from(MessageNumber(1)),
        Err(ReliabilityError::ResumeBehind {
            peer_next: 1,
            oldest: 2
        })
    );
}

#[test]
fn resume_refuses_a_peer_ahead_of_what_was_sent() {
    let mut outbound = Outbound::new(1 << 20);
    outbound.push(data(b"a")).unwrap();
    assert_eq!(
        outbound.resume_from(MessageNumber(3)),
        Err(ReliabilityError::ResumeAhead {
            peer_next: 3,
            sent: 1
        })
    );
    assert_eq!(outbound.resume_from(MessageNumber(2)).unwrap(), 0);
}

#[test]
fn resume_of_an_empty_buffer_accepts_only_the_next_number() {
    let mut outbound = Outbound::new(1 << 20);
    assert_eq!(outbound.resume_from(MessageNumber(1)).unwrap(), 0);
    assert!(outbound.resume_from(MessageNumber(0)).is_err());
    assert!(outbound.resume_from(MessageNumber(2)).is_err());
}

#[test]
fn inbound_accepts_numbers_in_order_and_owes_one_ack_per_message() {
    let mut inbound = Inbound::new();
    assert_eq!(inbound.poll_ack(), None);
    inbound.handle_tracked(MessageNumber(1)).unwrap();
    inbound.handle_tracked(MessageNumber(2)).unwrap();
    assert_eq!(inbound.owed(), 2);
    assert_eq!(inbound.poll_ack(), Some(2));
    assert_eq!(inbound.poll_ack(), None);
    assert_eq!(inbound.next_expected(), MessageNumber(3));
}

#[test]
fn inbound_refuses_a_duplicate_and_a_gap() {
    let mut inbound = Inbound::new();
    inbound.handle_tracked(MessageNumber(1)).unwrap();
    assert_eq!(
        inbound.handle_tracked(MessageNumber(1)),
        Err(ReliabilityError::OutOfOrder {
            expected: 2,
            got: 1
        })
    );
    assert_eq!(
        inbound.handle_tracked(MessageNumber(3)),
        Err(ReliabilityError::OutOfOrder {
            expected: 2,
            got: 3
        })
    );
}

#[test]
fn announcing_the_next_number_settles_the_owed_acks() {
    let mut inbound = Inbound::new();
    inbound.handle_tracked(MessageNumber(1)).unwrap();
    assert_eq!(inbound.announce_next(), MessageNumber(2));
    assert_eq!(inbound.poll_ack(), None);
}

#[test]
fn splits_a_large_owed_ack_into_varlen_sized_deltas() {
    let mut inbound = Inbound::new();
    for number in 1..=40_000 {
        inbound.handle_tracked(MessageNumber(number)).unwrap();
    }
    assert_eq!(inbound.poll_ack(), Some(VARLEN_MAX));
    assert_eq!(inbound.poll_ack(), Some(40_000 - VARLEN_MAX));
    assert_eq!(inbound.poll_ack(), None);
}
