use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};

use gatehouse_wire::Progress;
use proptest::prelude::*;

use super::*;
use crate::ids::{ClientAddr, CounterId, FlowId, Generation, RequestId, SessionId, WorkerAddr};

fn v4(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

fn v6() -> SocketAddr {
    SocketAddr::V6(SocketAddrV6::new(
        Ipv6Addr::new(0xfd00, 1, 2, 3, 4, 5, 6, 7),
        2598,
        0x000a_bcde,
        9,
    ))
}

fn ticket(len: usize) -> TicketBytes {
    TicketBytes::new(&vec![b'T'; len]).unwrap()
}

fn envelope<M>(message: M) -> Envelope<M> {
    Envelope {
        generation: Generation(7),
        request_id: RequestId(0x0102_0304_0506_0708),
        message,
    }
}

fn encoded<M: Message>(message: M) -> ([u8; SLOT_BYTES], usize) {
    let mut slot = [0; SLOT_BYTES];
    let len = encode(&envelope(message), &mut slot);
    (slot, len)
}

fn round_trip<M: Message + Clone + PartialEq + fmt::Debug>(message: M) {
    let (slot, len) = encoded(message.clone());
    assert!(len <= SLOT_BYTES);
    let Progress::Done { value, consumed } = decode::<M>(&slot).unwrap() else {
        panic!("a whole slot decodes");
    };
    assert_eq!(consumed, len);
    assert_eq!(value, envelope(message));
}

fn all_to_control() -> Vec<ToControl> {
    vec![
        ToControl::RedeemTicket(RedeemTicket {
            kind: RedeemKind::Socks,
            ticket: TicketBytes::new(b";40;STA01;ABCDEFGHIJKLMNOPQRSTUVWXYZ012345").unwrap(),
            client: ClientAddr(v4("192.0.2.1:50000")),
        }),
        ToControl::RedeemTicket(RedeemTicket {
            kind: RedeemKind::Cgp,
            ticket: ticket(0),
            client: ClientAddr(v6()),
        }),
        ToControl::RedeemTicket(RedeemTicket {
            kind: RedeemKind::CgpReconnect,
            ticket: ticket(MAX_TICKET_BYTES),
            client: ClientAddr(v6()),
        }),
        ToControl::SessionOpened(SessionOpened {
            session: SessionId(u64::MAX),
            client: ClientAddr(v6()),
            worker: WorkerAddr(v4("10.0.0.5:1494")),
            worker_ticket: None,
        }),
        ToControl::SessionOpened(SessionOpened {
            session: SessionId(7),
            client: ClientAddr(v6()),
            worker: WorkerAddr(v6()),
            worker_ticket: Some(ticket(MAX_TICKET_BYTES)),
        }),
        ToControl::SessionClosed(SessionClosed {
            session: SessionId(3),
            bytes_up: 1,
            bytes_down: u64::MAX,
            duration_ms: 65_000,
        }),
        ToControl::StatsReport(StatsReport::new()),
        ToControl::StatsReport(
            StatsReport::from_counters(
                &(0..MAX_COUNTERS as u16)
                    .map(|i| (CounterId(i), u64::MAX - u64::from(i)))
                    .collect::<Vec<_>>(),
            )
            .unwrap(),
        ),
        ToControl::Heartbeat(Heartbeat {
            generation: Generation(u32::MAX),
        }),
        ToControl::FlowRequest(FlowRequest {
            local: v4("127.77.0.1:5900"),
            server: v4("127.0.9.5:40000"),
            rendezvous: v4("127.0.0.1:41000"),
        }),
        ToControl::FlowRequest(FlowRequest {
            local: v6(),
            server: v6(),
            rendezvous: v6(),
        }),
        ToControl::FlowClosed(FlowClosed {
            flow: FlowId(u64::MAX),
            bytes_to_client: 1,
            bytes_to_server: u64::MAX,
            duration_ms: 3,
        }),
    ]
}

fn all_to_core() -> Vec<ToCore> {
    let mut out = vec![
        ToCore::Verdict(Verdict::Allow {
            worker: WorkerAddr(v4("10.0.0.5:2598")),
            session: SessionId(42),
            reconnect_ticket: None,
            worker_ticket: None,
        }),
        ToCore::Verdict(Verdict::Allow {
            worker: WorkerAddr(v6()),
            session: SessionId(43),
            reconnect_ticket: Some(ticket(MAX_TICKET_BYTES)),
            worker_ticket: Some(ticket(MAX_TICKET_BYTES)),
        }),
        ToCore::KillSession(KillSession {
            session: SessionId(9),
        }),
        ToCore::StatsRequest,
        ToCore::Heartbeat(Heartbeat {
            generation: Generation(1),
        }),
        ToCore::FlowVerdict(FlowVerdict::Allow { flow: FlowId(77) }),
        ToCore::Listen(v4("127.77.0.1:5900")),
        ToCore::Unlisten(v6()),
        ToCore::CloseFlows("127.77.0.1".parse().unwrap()),
        ToCore::CloseFlows("fd00::1".parse().unwrap()),
    ];
    for reason in [
        FlowDenyReason::NoLease,
        FlowDenyReason::ConnectorNotOwner,
        FlowDenyReason::ServerNotInApp,
        FlowDenyReason::PortNotInApp,
        FlowDenyReason::PolicyDeny,
        FlowDenyReason::ClientAbsent,
        FlowDenyReason::Overloaded,
        FlowDenyReason::Internal,
    ] {
        out.push(ToCore::FlowVerdict(FlowVerdict::Deny { reason }));
    }
    for reason in [
        DenyReason::UnknownTicket,
        DenyReason::Expired,
        DenyReason::Reused,
        DenyReason::UnknownSta,
        DenyReason::StaUnreachable,
        DenyReason::WorkerUnreachable,
        DenyReason::Overloaded,
        DenyReason::PolicyDenied,
        DenyReason::Malformed,
        DenyReason::Internal,
    ] {
        out.push(ToCore::Verdict(Verdict::Deny { reason }));
    }
    out
}

#[test]
fn every_core_message_round_trips() {
    for message in all_to_control() {
        round_trip(message);
    }
}

#[test]
fn every_control_message_round_trips() {
    for message in all_to_core() {
        round_trip(message);
    }
}

#[test]
fn header_is_written_little_endian_in_documented_order() {
    let (slot, len) = encoded(ToCore::KillSession(KillSession {
        session: SessionId(0x1122),
    }));
    assert_eq!(len, HEADER_BYTES + 8);
    assert_eq!(
        &slot[..HEADER_BYTES],
        &[
            0x03, 0x00, // version
            0x05, 0x00, // kind
            0x08, 0x00, // payload length
            0x00, 0x00, // reserved
            0x07, 0x00, 0x00, 0x00, // generation
            0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, // request id
        ]
    );
    assert_eq!(&slot[HEADER_BYTES..len], &0x1122_u64.to_le_bytes());
}

#[test]
fn refuses_an_unknown_schema_version() {
    let (mut slot, _) = encoded(ToCore::StatsRequest);
    // Version 1 (before CGP's worker tickets) and 2 (before the flow
    // messages) are refused, not misread.
    for old in [0x01, 0x02, 0x04] {
        slot[0] = old;
        assert_eq!(
            decode::<ToCore>(&slot),
            Err(MessageError::UnknownVersion(u16::from(old)))
        );
    }
}

#[test]
fn refuses_an_unknown_kind() {
    let (mut slot, _) = encoded(ToCore::StatsRequest);
    slot[2..4].copy_from_slice(&0x00ff_u16.to_le_bytes());
    assert_eq!(
        decode::<ToCore>(&slot),
        Err(MessageError::UnknownKind(0x00ff))
    );
}

#[test]
fn refuses_a_kind_that_travels_the_other_way() {
    let (slot, _) = encoded(ToCore::StatsRequest);
    assert_eq!(
        decode::<ToControl>(&slot),
        Err(MessageError::WrongDirection(Kind::StatsRequest))
    );
    let (slot, _) = encoded(ToControl::StatsReport(StatsReport::new()));
    assert_eq!(
        decode::<ToCore>(&slot),
        Err(MessageError::WrongDirection(Kind::StatsReport))
    );
}

#[test]
fn refuses_a_payload_longer_than_a_slot() {
    let (mut slot, _) = encoded(ToCore::StatsRequest);
    let len = u16::try_from(MAX_PAYLOAD_BYTES + 1).unwrap();
    slot[4..6].copy_from_slice(&len.to_le_bytes());
    assert_eq!(
        decode::<ToCore>(&slot),
        Err(MessageError::Oversize(MAX_PAYLOAD_BYTES + 1))
    );
}

#[test]
fn refuses_reserved_header_bytes() {
    let (mut slot, _) = encoded(ToCore::StatsRequest);
    slot[7] = 1;
    assert_eq!(decode::<ToCore>(&slot), Err(MessageError::Reserved));
}

#[test]
fn refuses_bytes_left_over_after_the_message() {
    let (mut slot, _) = encoded(ToCore::StatsRequest);
    slot[4] = 3;
    assert_eq!(decode::<ToCore>(&slot), Err(MessageError::Trailing(3)));
}

#[test]
fn refuses_a_payload_that_ends_inside_a_field() {
    let (mut slot, len) = encoded(ToCore::KillSession(KillSession {
        session: SessionId(1),
    }));
    slot[4] = u8::try_from(len - HEADER_BYTES - 1).unwrap();
    assert_eq!(
        decode::<ToCore>(&slot),
        Err(MessageError::Truncated("session"))
    );
}

#[test]
fn refuses_unknown_field_values() {
    let (mut slot, _) = encoded(ToCore::Verdict(Verdict::Deny {
        reason: DenyReason::Expired,
    }));
    slot[HEADER_BYTES + 1] = 0xEE;
    assert_eq!(
        decode::<ToCore>(&slot),
        Err(MessageError::UnknownValue {
            field: "deny reason",
            value: 0xEE
        })
    );
    slot[HEADER_BYTES] = 0x03;
    assert_eq!(
        decode::<ToCore>(&slot),
        Err(MessageError::UnknownValue {
            field: "verdict",
            value: 0x03
        })
    );

    let (mut slot, _) = encoded(all_to_control().remove(0));
    slot[HEADER_BYTES] = 0x00;
    assert!(matches!(
        decode::<ToControl>(&slot),
        Err(MessageError::UnknownValue {
            field: "redeem kind",
            ..
        })
    ));
}

#[test]
fn flow_messages_have_the_documented_layout() {
    let (slot, len) = encoded(ToCore::FlowVerdict(FlowVerdict::Allow {
        flow: FlowId(0x0102),
    }));
    assert_eq!(&slot[2..4], &(Kind::FlowVerdict as u16).to_le_bytes());
    assert_eq!(&slot[HEADER_BYTES..len], &[1, 2, 1, 0, 0, 0, 0, 0, 0]);
    let (slot, len) = encoded(ToCore::CloseFlows("127.77.0.9".parse().unwrap()));
    assert_eq!(&slot[HEADER_BYTES..len], &[4, 127, 77, 0, 9]);
    let (slot, len) = encoded(ToCore::Listen(v4("127.77.0.1:5900")));
    assert_eq!(&slot[HEADER_BYTES..len], &[4, 127, 77, 0, 1, 0x0c, 0x17]);
}

#[test]
fn refuses_unknown_flow_verdicts_and_reasons() {
    let (mut slot, _) = encoded(ToCore::FlowVerdict(FlowVerdict::Deny {
        reason: FlowDenyReason::NoLease,
    }));
    slot[HEADER_BYTES + 1] = 0x09;
    assert_eq!(
        decode::<ToCore>(&slot),
        Err(MessageError::UnknownValue {
            field: "flow deny reason",
            value: 0x09
        })
    );
    slot[HEADER_BYTES] = 0x00;
    assert_eq!(
        decode::<ToCore>(&slot),
        Err(MessageError::UnknownValue {
            field: "flow verdict",
            value: 0x00
        })
    );
    let (mut slot, _) = encoded(ToCore::CloseFlows("127.0.0.1".parse().unwrap()));
    slot[HEADER_BYTES] = 0x05;
    assert!(matches!(
        decode::<ToCore>(&slot),
        Err(MessageError::UnknownValue {
            field: "address family",
            ..
        })
    ));
    let (slot, _) = encoded(ToCore::Listen(v4("127.0.0.1:1")));
    assert_eq!(
        decode::<ToControl>(&slot),
        Err(MessageError::WrongDirection(Kind::Listen))
    );
    let (slot, _) = encoded(all_to_control().pop().unwrap());
    assert_eq!(
        decode::<ToCore>(&slot),
        Err(MessageError::WrongDirection(Kind::FlowClosed))
    );
}

#[test]
fn refuses_an_unknown_address_family() {
    let (mut slot, _) = encoded(ToCore::Verdict(Verdict::Allow {
        worker: WorkerAddr(v4("10.0.0.1:1494")),
        session: SessionId(1),
        reconnect_ticket: None,
        worker_ticket: None,
    }));
    slot[HEADER_BYTES + 1] = 0x05;
    assert_eq!(
        decode::<ToCore>(&slot),
        Err(MessageError::UnknownValue {
            field: "address family",
            value: 0x05
        })
    );
}

#[test]
fn refuses_a_ticket_longer_than_the_limit() {
    assert_eq!(
        TicketBytes::new(&[b'A'; MAX_TICKET_BYTES + 1]),
        Err(MessageError::TicketTooLong(MAX_TICKET_BYTES + 1))
    );
    // A ticket one byte over the limit written by hand into a slot is
    // refused too.
    let over = MAX_TICKET_BYTES + 1;
    let mut slot = [0; SLOT_BYTES];
    let payload_len = 1 + 1 + over + 7;
    slot[0..2].copy_from_slice(&SCHEMA_VERSION.to_le_bytes());
    slot[2] = 0x01;
    slot[4] = u8::try_from(payload_len).unwrap();
    slot[HEADER_BYTES] = 0x01;
    slot[HEADER_BYTES + 1] = u8::try_from(over).unwrap();
    assert_eq!(
        decode::<ToControl>(&slot),
        Err(MessageError::TicketTooLong(over))
    );
}

#[test]
fn refuses_a_report_with_too_many_counters() {
    let (mut slot, _) = encoded(ToControl::StatsReport(StatsReport::new()));
    slot[HEADER_BYTES] = u8::try_from(MAX_COUNTERS + 1).unwrap();
    assert_eq!(
        decode::<ToControl>(&slot),
        Err(MessageError::TooManyCounters(MAX_COUNTERS + 1))
    );
    let mut report = StatsReport::new();
    for i in 0..MAX_COUNTERS as u16 {
        report.push(CounterId(i), 0).unwrap();
    }
    assert_eq!(report.push(CounterId(99), 5), Err((CounterId(99), 5)));
}

#[test]
fn every_prefix_needs_more_until_the_message_is_complete() {
    for message in all_to_core() {
        let (slot, len) = encoded(message);
        for cut in 0..len {
            match decode::<ToCore>(&slot[..cut]).unwrap() {
                Progress::NeedMore { at_least } => assert!(at_least > cut && at_least <= len),
                Progress::Done { .. } => panic!("prefix of {cut} bytes decoded"),
            }
        }
        for extra in len..=SLOT_BYTES {
            let Progress::Done { consumed, .. } = decode::<ToCore>(&slot[..extra]).unwrap() else {
                panic!("complete input needs no more");
            };
            assert_eq!(consumed, len);
        }
    }
}

#[test]
fn ticket_debug_does_not_show_the_ticket() {
    let text = format!("{:?}", TicketBytes::new(b"SECRET").unwrap());
    assert!(!text.contains("SECRET"));
}

fn arb_addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::from((ip, port))),
        (any::<[u8; 16]>(), any::<u16>(), any::<u32>(), any::<u32>()).prop_map(
            |(ip, port, flow, scope)| {
                SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(ip), port, flow, scope))
            }
        ),
    ]
}

fn arb_ticket() -> impl Strategy<Value = TicketBytes> {
    proptest::collection::vec(any::<u8>(), 0..=MAX_TICKET_BYTES)
        .prop_map(|bytes| TicketBytes::new(&bytes).unwrap())
}

fn arb_to_core() -> impl Strategy<Value = ToCore> {
    prop_oneof![
        (
            arb_addr(),
            any::<u64>(),
            proptest::option::of(arb_ticket()),
            proptest::option::of(arb_ticket())
        )
            .prop_map(|(worker, session, reconnect_ticket, worker_ticket)| {
                ToCore::Verdict(Verdict::Allow {
                    worker: WorkerAddr(worker),
                    session: SessionId(session),
                    reconnect_ticket,
                    worker_ticket,
                })
            }),
        any::<u64>().prop_map(|s| ToCore::KillSession(KillSession {
            session: SessionId(s)
        })),
        any::<u32>().prop_map(|g| ToCore::Heartbeat(Heartbeat {
            generation: Generation(g)
        })),
        any::<u64>().prop_map(|f| ToCore::FlowVerdict(FlowVerdict::Allow { flow: FlowId(f) })),
        arb_addr().prop_map(ToCore::Listen),
        arb_addr().prop_map(|a| ToCore::CloseFlows(a.ip())),
    ]
}

fn arb_to_control() -> impl Strategy<Value = ToControl> {
    prop_oneof![
        (0..3_u8, arb_ticket(), arb_addr()).prop_map(|(k, ticket, client)| {
            let kind =
                [RedeemKind::Socks, RedeemKind::Cgp, RedeemKind::CgpReconnect][usize::from(k)];
            ToControl::RedeemTicket(RedeemTicket {
                kind,
                ticket,
                client: ClientAddr(client),
            })
        }),
        (
            any::<u64>(),
            arb_addr(),
            arb_addr(),
            proptest::option::of(arb_ticket())
        )
            .prop_map(|(s, c, w, t)| ToControl::SessionOpened(SessionOpened {
                session: SessionId(s),
                client: ClientAddr(c),
                worker: WorkerAddr(w),
                worker_ticket: t,
            })),
        proptest::collection::vec((any::<u16>(), any::<u64>()), 0..=MAX_COUNTERS).prop_map(
            |pairs| {
                let pairs: Vec<_> = pairs.into_iter().map(|(i, v)| (CounterId(i), v)).collect();
                ToControl::StatsReport(StatsReport::from_counters(&pairs).unwrap())
            }
        ),
        (arb_addr(), arb_addr(), arb_addr()).prop_map(|(local, server, rendezvous)| {
            ToControl::FlowRequest(FlowRequest {
                local,
                server,
                rendezvous,
            })
        }),
        (any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>()).prop_map(|(f, a, b, d)| {
            ToControl::FlowClosed(FlowClosed {
                flow: FlowId(f),
                bytes_to_client: a,
                bytes_to_server: b,
                duration_ms: d,
            })
        }),
    ]
}

proptest! {
    #[test]
    fn arbitrary_control_messages_round_trip(message in arb_to_core()) {
        round_trip(message);
    }

    #[test]
    fn arbitrary_core_messages_round_trip(message in arb_to_control()) {
        round_trip(message);
    }

    #[test]
    fn arbitrary_slot_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..=SLOT_BYTES)) {
        let _ = decode::<ToCore>(&bytes);
        let _ = decode::<ToControl>(&bytes);
    }

    #[test]
    fn arbitrary_payloads_behind_a_valid_header_never_panic(
        kind in 1_u16..=8,
        payload in proptest::collection::vec(any::<u8>(), 0..=MAX_PAYLOAD_BYTES),
    ) {
        let mut slot = vec![0; HEADER_BYTES];
        slot[0] = 0x01;
        slot[2..4].copy_from_slice(&kind.to_le_bytes());
        slot[4..6].copy_from_slice(&u16::try_from(payload.len()).unwrap().to_le_bytes());
        slot.extend_from_slice(&payload);
        if let Ok(Progress::Done { value, consumed }) = decode::<ToCore>(&slot) {
            // Whatever decodes re-encodes to the same bytes.
            let mut again = [0; SLOT_BYTES];
            prop_assert_eq!(encode(&value, &mut again), consumed);
            prop_assert_eq!(&again[..consumed], &slot[..consumed]);
        }
        if let Ok(Progress::Done { value, consumed }) = decode::<ToControl>(&slot) {
            let mut again = [0; SLOT_BYTES];
            prop_assert_eq!(encode(&value, &mut again), consumed);
            prop_assert_eq!(&again[..consumed], &slot[..consumed]);
        }
    }
}
