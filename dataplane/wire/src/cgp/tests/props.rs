//! Property tests: round trips of arbitrary values, no panic on any input.

use super::*;
use crate::cgp::*;
use proptest::prelude::*;

/// Tests only: capabilities borrow their bytes, so the strategies leak a few
/// small buffers per case rather than thread a lifetime through proptest.
fn leak(bytes: Vec<u8>) -> &'static [u8] {
    Box::leak(bytes.into_boxed_slice())
}

fn bytes(max: usize) -> impl Strategy<Value = &'static [u8]> {
    proptest::collection::vec(any::<u8>(), 0..max).prop_map(leak)
}

fn channel_open() -> impl Strategy<Value = ChannelOpenRequest<'static>> {
    (any::<u16>(), any::<u16>(), bytes(40)).prop_map(|(channel, service, params)| {
        ChannelOpenRequest {
            channel: ChannelId(channel),
            service: ServiceId(service),
            params,
        }
    })
}

fn capability() -> impl Strategy<Value = Capability<'static>> {
    let unknown = (any::<u16>(), any::<u16>(), bytes(40))
        .prop_filter(
            "known core ids have their own variant",
            |(service, id, _)| *service != 0 || !CapabilityId(*id).is_known_core(),
        )
        .prop_map(|(service, id, body)| Capability::Unknown {
            service: ServiceId(service),
            id: CapabilityId(id),
            body,
        });
    let reliability = (
        any::<(u8, u8, u8, u32)>(),
        proptest::option::of((any::<u8>(), bytes(60))),
        proptest::collection::vec(channel_open(), 0..3),
    )
        .prop_map(
            |((min_version, max_version, ack_algorithms, next), ticket, channels)| {
                Capability::SessionReliability(SessionReliability {
                    min_version,
                    max_version,
                    ack_algorithms,
                    next_message_number: MessageNumber(next),
                    reconnect_ticket: ticket
                        .map(|(version, ticket)| ReconnectTicket { version, ticket }),
                    channels,
                })
            },
        );
    prop_oneof![
        proptest::collection::vec((bytes(30), any::<u16>()), 0..4).prop_map(|services| {
            Capability::ServicesBinding(
                services
                    .into_iter()
                    .map(|(name, service)| ServiceBinding {
                        name,
                        service: ServiceId(service),
                    })
                    .collect(),
            )
        }),
        bytes(60).prop_map(Capability::EndpointAddress),
        any::<u16>().prop_map(|interval_seconds| Capability::ChannelMonitoring(
            ChannelMonitoring { interval_seconds }
        )),
        any::<u8>().prop_map(|algorithms| Capability::Compression(Compression { algorithms })),
        reliability,
        (any::<u8>(), bytes(200)).prop_map(|(kind, ticket)| Capability::SecurityTicket(
            SecurityTicket {
                kind: TicketKind(kind),
                ticket,
            }
        )),
        any::<u16>()
            .prop_map(|interval_seconds| Capability::KeepAlives(KeepAlives { interval_seconds })),
        any::<(u16, u16)>().prop_map(|(timeout_seconds, window)| Capability::ReliabilityParams(
            ReliabilityParams {
                timeout_seconds,
                window,
            }
        )),
        unknown,
    ]
}

/// Capability lists without a repeated known core capability.
fn capabilities() -> impl Strategy<Value = Vec<Capability<'static>>> {
    proptest::collection::vec(capability(), 0..10).prop_map(|mut list| {
        let mut seen = Vec::new();
        list.retain(|capability| match capability {
            Capability::Unknown { .. } => true,
            known => {
                let key = known.key();
                let fresh = !seen.contains(&key);
                seen.push(key);
                fresh
            }
        });
        list
    })
}

fn varlen_value() -> impl Strategy<Value = u16> {
    0..=VARLEN_MAX
}

fn extensions() -> impl Strategy<Value = Extensions> {
    proptest::option::of((
        proptest::option::of(any::<u32>()),
        proptest::option::of(varlen_value()),
    ))
    .prop_map(|reliability| Extensions {
        reliability: reliability.map(|(track, ack)| Reliability {
            track: track.map(MessageNumber),
            ack,
        }),
    })
}

fn data() -> impl Strategy<Value = Data<'static>> {
    (any::<u16>(), bytes(300)).prop_map(|(channel, payload)| Data {
        channel: ChannelId(channel),
        payload,
    })
}

fn frame() -> impl Strategy<Value = Frame<'static>> {
    let tracked = prop_oneof![
        any::<u16>().prop_map(|reason| Message::FinishRequest(FinishRequest {
            reason: Reason(reason)
        })),
        Just(Message::FinishResponse),
        Just(Message::Nop),
        channel_open().prop_map(Message::ChannelOpenRequest),
        any::<(u16, u16)>().prop_map(|(channel, status)| Message::ChannelOpenResponse(
            ChannelOpenResponse {
                channel: ChannelId(channel),
                status: OpenStatus(status),
            }
        )),
        any::<(u16, u16)>().prop_map(|(channel, reason)| Message::ChannelClose(ChannelClose {
            channel: ChannelId(channel),
            reason: Reason(reason),
        })),
        data().prop_map(Message::Data),
    ];
    let bare = prop_oneof![
        capabilities().prop_map(|capabilities| Message::BindRequest(BindRequest { capabilities })),
        capabilities()
            .prop_map(|capabilities| Message::BindResponse(BindResponse { capabilities })),
        data().prop_map(Message::DataRealtime),
        (varlen_value(), data()).prop_map(|(ack, data)| Message::DataRealtimeWithAck(
            DataRealtimeWithAck {
                ack,
                channel: data.channel,
                payload: data.payload,
            }
        )),
    ];
    prop_oneof![
        (extensions(), tracked).prop_map(|(extensions, message)| Frame {
            extensions,
            message
        }),
        bare.prop_map(plain),
    ]
}

proptest! {
    #[test]
    fn varlen_round_trips_every_15_bit_value(value in varlen_value()) {
        let mut out = Vec::new();
        encode_varlen(usize::from(value), &mut out).unwrap();
        prop_assert_eq!(out.len(), if value < 128 { 1 } else { 2 });
        prop_assert_eq!(decode_varlen(&out).unwrap().done(), Some((value, out.len())));
    }

    #[test]
    fn bind_request_round_trips_arbitrary_capability_lists(capabilities in capabilities()) {
        let bind = BindRequest { capabilities };
        let mut out = Vec::new();
        encode_connection_preamble(&bind, &mut out).unwrap();
        let (decoded, consumed) = decode_connection_preamble(&out).unwrap().done().unwrap();
        prop_assert_eq!(consumed, out.len());
        prop_assert_eq!(decoded, bind);
    }

    #[test]
    fn bind_response_round_trips_arbitrary_capability_lists(capabilities in capabilities()) {
        let bind = BindResponse { capabilities };
        let mut out = Vec::new();
        bind.encode(&mut out).unwrap();
        prop_assert_eq!(BindResponse::decode(&out).unwrap().done(), Some((bind, out.len())));
    }

    #[test]
    fn frames_round_trip_and_decode_through_every_prefix(frame in frame()) {
        let out = encode_frame(&frame);
        prop_assert_eq!(Frame::decode(&out).unwrap().done(), Some((frame.clone(), out.len())));
        let full = with_trailer(&out);
        let packet = assert_all_prefixes(&full, out.len(), decode_packet);
        prop_assert_eq!(packet.command, frame.message.command());
        prop_assert_eq!(Frame::from_packet(&packet).unwrap(), frame);
    }

    #[test]
    fn decoders_never_panic_on_arbitrary_bytes(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        fuzz::signature(&data);
        fuzz::varlen(&data);
        fuzz::packet(&data);
        fuzz::frame(&data);
        fuzz::bind_request(&data);
        fuzz::bind_response(&data);
        fuzz::channel(&data);
        fuzz::data(&data);
        fuzz::preamble(&data);
        let _ = BindRequest::decode_body(&data);
        for command in Command::ALL {
            let _ = Message::decode_body(command, &data);
        }
    }

    #[test]
    fn decoders_never_panic_on_corrupted_bind_requests(
        capabilities in capabilities(),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
    ) {
        let mut out = Vec::new();
        encode_connection_preamble(&BindRequest { capabilities }, &mut out).unwrap();
        for (at, byte) in flips {
            let len = out.len();
            out[at % len] ^= byte;
        }
        fuzz::preamble(&out);
        fuzz::bind_request(&out[7..]);
        fuzz::frame(&out[7..]);
    }
}
