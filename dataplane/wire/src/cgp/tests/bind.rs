//! BIND_REQUEST / BIND_RESPONSE, capability and preamble tests.

use super::*;
use crate::cgp::*;

#[test]
fn bind_request_with_security_ticket_matches_its_byte_vector() {
    let bind = BindRequest {
        capabilities: vec![Capability::SecurityTicket(SecurityTicket {
            kind: TicketKind::STA,
            ticket: STA_TICKET,
        })],
    };
    let mut out = Vec::new();
    bind.encode(&mut out).unwrap();
    assert_eq!(out, sta_bind_bytes());
    let decoded = BindRequest::decode(&out).unwrap().done().unwrap();
    assert_eq!(decoded, (bind, out.len()));
}

#[test]
fn encoded_bind_request_gives_back_the_security_ticket() {
    let mut out = Vec::new();
    sta_bind().encode(&mut out).unwrap();
    let (bind, consumed) = BindRequest::decode(&out).unwrap().done().unwrap();
    assert_eq!(consumed, out.len());
    assert_eq!(bind.security_ticket(), Some(STA_TICKET));
    assert_eq!(bind.reconnect(), None);
    assert_eq!(bind, sta_bind());
}

#[test]
fn encoded_bind_request_gives_back_the_reconnect_ticket() {
    let mut out = Vec::new();
    encode_connection_preamble(&resume_bind(), &mut out).unwrap();
    let (bind, consumed) = decode_connection_preamble(&out).unwrap().done().unwrap();
    assert_eq!(consumed, out.len());
    assert_eq!(bind.security_ticket(), None);
    assert_eq!(
        bind.reconnect(),
        Some(ReconnectInfo {
            ticket: RECONNECT,
            ticket_version: RECONNECT_TICKET_VERSION,
            next_message_number: MessageNumber(42),
        })
    );
    assert_eq!(bind.session_reliability().unwrap().channels.len(), 1);
    assert_eq!(bind, resume_bind());
}

#[test]
fn security_ticket_of_another_kind_is_not_an_sta_ticket() {
    let bind = BindRequest {
        capabilities: vec![Capability::SecurityTicket(SecurityTicket {
            kind: TicketKind(7),
            ticket: STA_TICKET,
        })],
    };
    assert_eq!(bind.security_ticket(), None);
}

#[test]
fn bind_response_matches_its_byte_vector() {
    let bytes = [
        0x19, 0x02, 0x00, 0x00, 0x00, 0x01, // header, reserved, one capability
        0x13, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, // len 19, core, id 5, reserved
        0x01, 0x01, 0x01, // versions 1..1, ack algorithms
        0x07, 0x00, 0x00, 0x00, // next message number 7
        0x01, 0x02, 0x02, b'R', b'T', // ticket present, version 2, "RT"
        0x00, // no re-presented channels
    ];
    let response = BindResponse {
        capabilities: vec![Capability::SessionReliability(SessionReliability {
            min_version: 1,
            max_version: 1,
            ack_algorithms: SessionReliability::ACK_DELTA,
            next_message_number: MessageNumber(7),
            reconnect_ticket: Some(ReconnectTicket {
                version: 2,
                ticket: b"RT",
            }),
            channels: vec![],
        })],
    };
    let full = with_trailer(&bytes);
    let decoded = assert_all_prefixes(&full, bytes.len(), BindResponse::decode);
    assert_eq!(decoded, response);
    assert_eq!(decoded.next_message_number(), Some(MessageNumber(7)));
    assert_eq!(
        decoded.reconnect().map(|info| info.ticket),
        Some(&b"RT"[..])
    );
    let mut out = Vec::new();
    response.encode(&mut out).unwrap();
    assert_eq!(out, bytes);
}

#[test]
fn decodes_bind_request_through_every_prefix() {
    let mut bytes = Vec::new();
    resume_bind().encode(&mut bytes).unwrap();
    let valid_len = bytes.len();
    bytes.extend_from_slice(&[0x02, 0x05, 0x00]);
    assert_eq!(
        assert_all_prefixes(&bytes, valid_len, BindRequest::decode),
        resume_bind()
    );
}

#[test]
fn decodes_connection_preamble_through_every_prefix() {
    let mut bytes = Vec::new();
    encode_connection_preamble(&sta_bind(), &mut bytes).unwrap();
    assert!(bytes.starts_with(&CGP_SIGNATURE));
    let valid_len = bytes.len();
    bytes.extend_from_slice(&[0x02, 0x05, 0x00]);
    let bind = assert_all_prefixes(&bytes, valid_len, decode_connection_preamble);
    assert_eq!(bind.security_ticket(), Some(STA_TICKET));
}

#[test]
fn preamble_consumes_signature_plus_packet() {
    let mut bytes = CGP_SIGNATURE.to_vec();
    bytes.extend_from_slice(&sta_bind_bytes());
    let (_, consumed) = decode_connection_preamble(&bytes).unwrap().done().unwrap();
    assert_eq!(consumed, 7 + sta_bind_bytes().len());
}

#[test]
fn preamble_rejects_a_first_packet_other_than_bind_request() {
    let mut bytes = CGP_SIGNATURE.to_vec();
    bytes.extend_from_slice(&[0x02, 0x05]);
    assert_eq!(
        decode_connection_preamble(&bytes),
        Err(CgpError::UnexpectedCommand {
            expected: Command::BindRequest,
            got: Command::Nop,
        })
    );
    assert_eq!(
        decode_connection_preamble(b"\x1aCGP/00"),
        Err(CgpError::BadSignature)
    );
}

#[test]
fn bind_decoders_reject_the_other_bind() {
    let mut out = Vec::new();
    BindResponse::default().encode(&mut out).unwrap();
    assert_eq!(
        BindRequest::decode(&out),
        Err(CgpError::UnexpectedCommand {
            expected: Command::BindRequest,
            got: Command::BindResponse,
        })
    );
}

#[test]
fn keeps_unknown_capabilities_verbatim() {
    let body = [
        0x00, 0x00, 0x02, // reserved, two capabilities
        0x08, 0x00, 0x01, 0x22, 0x00, 0x00, 0x00, 0xAA, 0xBB, // service 0x0100, id 0x22
        0x06, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, // core id 8, empty body
    ];
    let bind = BindRequest::decode_body(&body).unwrap();
    assert_eq!(
        bind.capabilities,
        [
            Capability::Unknown {
                service: ServiceId(0x0100),
                id: CapabilityId(0x22),
                body: &[0xAA, 0xBB],
            },
            Capability::Unknown {
                service: ServiceId::CORE,
                id: CapabilityId(8),
                body: &[],
            },
        ]
    );
    let mut out = Vec::new();
    Message::BindRequest(bind).encode_body(&mut out).unwrap();
    assert_eq!(out, body);
}

#[test]
fn decodes_every_core_capability_layout() {
    let body = [
        0x00, 0x00, 0x07, // reserved, 7 capabilities
        0x0C, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x02, b'S', b'V', 0x10,
        0x00, // services
        0x0A, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x03, b'g', b'w', b'1', // endpoint
        0x08, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x1E, 0x00, // monitoring 30 s
        0x07, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, // no compression
        0x08, 0x00, 0x00, 0x07, 0x00, 0x00, 0x00, 0x3C, 0x00, // keep-alives 60 s
        0x0A, 0x00, 0x00, 0x09, 0x00, 0x00, 0x00, 0xB4, 0x00, 0x40, 0x00, // 180 s, window 64
        0x0A, 0x00, 0x00, 0x06, 0x00, 0x00, 0x00, 0x00, 0x02, b';', b'1', // ticket ";1"
    ];
    let bind = BindRequest::decode_body(&body).unwrap();
    assert_eq!(
        bind.capabilities,
        [
            Capability::ServicesBinding(vec![ServiceBinding {
                name: b"SV",
                service: ServiceId(0x10),
            }]),
            Capability::EndpointAddress(b"gw1"),
            Capability::ChannelMonitoring(ChannelMonitoring {
                interval_seconds: 30,
            }),
            Capability::Compression(Compression { algorithms: 0 }),
            Capability::KeepAlives(KeepAlives {
                interval_seconds: 60,
            }),
            Capability::ReliabilityParams(ReliabilityParams {
                timeout_seconds: 180,
                window: 64,
            }),
            Capability::SecurityTicket(SecurityTicket {
                kind: TicketKind::STA,
                ticket: b";1",
            }),
        ]
    );
    let mut out = Vec::new();
    Message::BindRequest(bind).encode_body(&mut out).unwrap();
    assert_eq!(out, body);
}

#[test]
fn rejects_malformed_capability_lists() {
    let cases: [(&[u8], CgpError); 9] = [
        (
            &[0x01, 0x00, 0x00],
            CgpError::NonZeroReserved("bind reserved bytes"),
        ),
        (&[0x00, 0x00], CgpError::Truncated("capability count")),
        (
            &[0x00, 0x00, 0x01],
            CgpError::Truncated("capability length"),
        ),
        (
            &[0x00, 0x00, 0x01, 0x05, 0x00, 0x00, 0x08, 0x00, 0x00],
            CgpError::CapabilityLengthMismatch {
                len: 5,
                available: 5,
            },
        ),
        (
            &[0x00, 0x00, 0x01, 0x09, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00],
            CgpError::CapabilityLengthMismatch {
                len: 9,
                available: 6,
            },
        ),
        (
            &[0x00, 0x00, 0x01, 0x06, 0x00, 0x00, 0x08, 0x00, 0x01, 0x00],
            CgpError::NonZeroReserved("capability header"),
        ),
        (
            &[0x00, 0x00, 0x00, 0x00],
            CgpError::TrailingBytes {
                field: "capability list",
                count: 1,
            },
        ),
        (
            &[
                0x00, 0x00, 0x01, 0x09, 0x00, 0x00, 0x07, 0x00, 0x00, 0x00, 0x3C, 0x00, 0x00,
            ],
            CgpError::TrailingBytes {
                field: "capability body",
                count: 1,
            },
        ),
        (
            &[
                0x00, 0x00, 0x01, 0x07, 0x00, 0x00, 0x07, 0x00, 0x00, 0x00, 0x3C,
            ],
            CgpError::Truncated("keep-alive interval"),
        ),
    ];
    for (body, error) in cases {
        assert_eq!(
            BindRequest::decode_body(body),
            Err(error),
            "body {body:02X?}"
        );
    }
}

#[test]
fn rejects_malformed_session_reliability() {
    let reliability = |flags: u8, tail: &[u8]| {
        let mut cap = vec![
            0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 1, 1, 1, 0, 0, 0, 0, flags,
        ];
        cap.extend_from_slice(tail);
        let mut body = vec![0x00, 0x00, 0x01, cap.len() as u8];
        body.extend_from_slice(&cap);
        body
    };
    assert_eq!(
        BindRequest::decode_body(&reliability(0x02, &[0x00])),
        Err(CgpError::UnknownReconnectFlags(0x02))
    );
    assert_eq!(
        BindRequest::decode_body(&reliability(0x01, &[0x02, 0x05, b'a'])),
        Err(CgpError::Truncated("reconnect ticket"))
    );
    assert_eq!(
        BindRequest::decode_body(&reliability(0x00, &[])),
        Err(CgpError::Truncated("re-presented channel count"))
    );
    // A re-presented channel open with a byte too many.
    assert_eq!(
        BindRequest::decode_body(&reliability(0x00, &[0x01, 0x06, 1, 0, 2, 0, 0, 9])),
        Err(CgpError::TrailingBytes {
            field: "channel open request",
            count: 1,
        })
    );
    assert!(BindRequest::decode_body(&reliability(0x00, &[0x01, 0x05, 1, 0, 2, 0, 0])).is_ok());
}

#[test]
fn rejects_a_duplicate_core_capability_both_ways() {
    let ticket = Capability::SecurityTicket(SecurityTicket {
        kind: TicketKind::STA,
        ticket: b"a",
    });
    let bind = BindRequest {
        capabilities: vec![ticket.clone(), ticket],
    };
    let mut out = Vec::new();
    assert_eq!(bind.encode(&mut out), Err(CgpError::DuplicateCapability(6)));
    assert!(out.is_empty());
    let block = [0x09, 0x00, 0x00, 0x06, 0x00, 0x00, 0x00, 0x00, 0x01, b'a'];
    let mut body = vec![0x00, 0x00, 0x02];
    body.extend_from_slice(&block);
    body.extend_from_slice(&block);
    assert_eq!(
        BindRequest::decode_body(&body),
        Err(CgpError::DuplicateCapability(6))
    );
}

#[test]
fn refuses_to_encode_a_known_core_capability_as_unknown() {
    let bind = BindRequest {
        capabilities: vec![Capability::Unknown {
            service: ServiceId::CORE,
            id: CapabilityId::SECURITY_TICKET,
            body: b"",
        }],
    };
    let mut out = vec![0x01];
    assert_eq!(
        encode_connection_preamble(&bind, &mut out),
        Err(CgpError::MisfiledCapability(6))
    );
    assert_eq!(out, [0x01]);
}

#[test]
fn refuses_to_encode_a_ticket_longer_than_a_varlen() {
    let ticket = vec![b'A'; 40_000];
    let bind = BindRequest {
        capabilities: vec![Capability::SecurityTicket(SecurityTicket {
            kind: TicketKind::STA,
            ticket: &ticket,
        })],
    };
    let mut out = Vec::new();
    assert_eq!(bind.encode(&mut out), Err(CgpError::VarlenOverflow(40_000)));
    assert!(out.is_empty());
}

#[test]
fn error_messages_are_lowercase() {
    let errors = [
        CgpError::BadSignature,
        CgpError::UnknownCommand(0x20),
        CgpError::EmptyPacket,
        CgpError::Truncated("ack delta"),
        CgpError::CapabilityLengthMismatch {
            len: 3,
            available: 9,
        },
    ];
    for error in errors {
        let text = error.to_string();
        assert!(text.starts_with(|c: char| c.is_ascii_lowercase()), "{text}");
        assert!(!text.ends_with('.'), "{text}");
    }
}

#[test]
fn replacing_the_reconnect_ticket_keeps_everything_else() {
    let mut bind = resume_bind();
    let replacement = b";40;STA01;0123456789ABCDEFGHIJKLMNOPQRSTUV";
    assert!(bind.replace_reconnect_ticket(replacement));
    let mut out = Vec::new();
    encode_connection_preamble(&bind, &mut out).unwrap();
    let (decoded, _) = decode_connection_preamble(&out).unwrap().done().unwrap();
    let info = decoded.reconnect().unwrap();
    assert_eq!(info.ticket, &replacement[..]);
    assert_eq!(info.ticket_version, RECONNECT_TICKET_VERSION);
    assert_eq!(info.next_message_number, MessageNumber(42));
    let original = resume_bind();
    assert_eq!(
        decoded.session_reliability().unwrap().channels,
        original.session_reliability().unwrap().channels
    );
    assert_eq!(decoded.capabilities.len(), original.capabilities.len());
}

#[test]
fn replacing_a_reconnect_ticket_that_is_not_there_changes_nothing() {
    let mut bind = sta_bind();
    assert!(!bind.replace_reconnect_ticket(b"R"));
    assert_eq!(bind, sta_bind());
    let mut response = BindResponse::default();
    assert!(!response.replace_reconnect_ticket(b"R"));
    assert_eq!(response, BindResponse::default());
}

#[test]
fn a_bind_response_hands_out_the_replaced_ticket() {
    let mut response = BindResponse {
        capabilities: vec![Capability::SessionReliability(SessionReliability {
            min_version: 1,
            max_version: 1,
            ack_algorithms: SessionReliability::ACK_DELTA,
            next_message_number: MessageNumber(1),
            reconnect_ticket: Some(ReconnectTicket {
                version: 2,
                ticket: b"WORKER",
            }),
            channels: vec![],
        })],
    };
    assert!(response.replace_reconnect_ticket(b"GATEWAY"));
    let mut out = Vec::new();
    response.encode(&mut out).unwrap();
    let (decoded, _) = BindResponse::decode(&out).unwrap().done().unwrap();
    assert_eq!(decoded.reconnect().unwrap().ticket, b"GATEWAY");
    assert_eq!(decoded.next_message_number(), Some(MessageNumber(1)));
}
