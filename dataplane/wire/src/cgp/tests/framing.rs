//! Signature, varlen, packet framing and typed message tests.

use super::*;
use crate::cgp::*;

#[test]
fn signature_is_the_cgp_magic() {
    assert_eq!(&CGP_SIGNATURE, b"\x1aCGP/01");
    let mut out = Vec::new();
    encode_signature(&mut out);
    assert_eq!(out, CGP_SIGNATURE);
}

#[test]
fn decodes_signature_through_every_prefix() {
    let full = with_trailer(&CGP_SIGNATURE);
    assert_all_prefixes(&full, 7, decode_signature);
}

#[test]
fn rejects_bad_signature_at_the_first_wrong_byte() {
    assert_eq!(decode_signature(b"\x1aCGX"), Err(CgpError::BadSignature));
    assert_eq!(
        decode_signature(b"GET / HTTP/1.1"),
        Err(CgpError::BadSignature)
    );
    assert_eq!(decode_signature(b"\x1aCGP/02"), Err(CgpError::BadSignature));
}

// ---- varlen --------------------------------------------------------------

#[test]
fn encodes_varlen_byte_vectors() {
    for (value, bytes) in [
        (0, &[0x00][..]),
        (127, &[0x7F]),
        (128, &[0x80, 0x01]),
        (300, &[0xAC, 0x02]),
        (32_767, &[0xFF, 0xFF]),
    ] {
        let mut out = Vec::new();
        encode_varlen(value, &mut out).unwrap();
        assert_eq!(out, bytes, "encoding {value}");
        let decoded = decode_varlen(bytes).unwrap().done().unwrap();
        assert_eq!(decoded, (value as u16, bytes.len()));
    }
}

#[test]
fn rejects_varlen_values_above_15_bits_on_encode() {
    let mut out = vec![0xAA];
    assert_eq!(
        encode_varlen(32_768, &mut out),
        Err(CgpError::VarlenOverflow(32_768))
    );
    assert_eq!(
        encode_varlen(usize::MAX, &mut out),
        Err(CgpError::VarlenOverflow(usize::MAX))
    );
    assert_eq!(out, [0xAA]);
}

#[test]
fn rejects_two_byte_varlen_of_a_small_value() {
    assert_eq!(
        decode_varlen(&[0x80, 0x00]),
        Err(CgpError::NonCanonicalVarlen(0))
    );
    assert_eq!(
        decode_varlen(&[0xFF, 0x00]),
        Err(CgpError::NonCanonicalVarlen(127))
    );
}

#[test]
fn decodes_varlen_through_every_prefix() {
    assert_all_prefixes(&with_trailer(&[0x7F]), 1, decode_varlen);
    assert_all_prefixes(&with_trailer(&[0xAC, 0x02]), 2, decode_varlen);
}

// ---- commands and packets -------------------------------------------------

#[test]
fn command_codes_round_trip_and_unknown_codes_are_rejected() {
    for (code, command) in (1u8..).zip(Command::ALL) {
        assert_eq!(command.code(), code);
        assert_eq!(Command::from_code(code), Ok(command));
        assert_eq!(Command::try_from(code), Ok(command));
    }
    for code in [0x00, 0x0C, 0x7F, 0xFF] {
        assert_eq!(
            Command::from_code(code),
            Err(CgpError::UnknownCommand(code))
        );
    }
}

#[test]
fn decodes_packet_through_every_prefix() {
    let bytes = [
        0x0C, 0x09, 0x08, 0x03, 0x05, 0x00, 0x00, 0x00, 0x03, 0x01, 0x00, b'h', b'i',
    ];
    let full = with_trailer(&bytes);
    let packet = assert_all_prefixes(&full, bytes.len(), decode_packet);
    assert_eq!(
        packet,
        Packet {
            command: Command::Data,
            extensions: Extensions {
                reliability: Some(Reliability {
                    track: Some(MessageNumber(5)),
                    ack: Some(3),
                }),
            },
            body: &[0x01, 0x00, b'h', b'i'],
        }
    );
    let mut out = Vec::new();
    encode_packet(&packet, &mut out).unwrap();
    assert_eq!(out, bytes);
}

#[test]
fn decodes_packet_with_two_byte_length_through_every_prefix() {
    let payload = vec![0x5A; 200];
    let frame = plain(Message::DataRealtime(Data {
        channel: ChannelId(3),
        payload: &payload,
    }));
    let bytes = encode_frame(&frame);
    assert_eq!(bytes[..4], [0xCB, 0x01, 0x0A, 0x03]);
    let full = with_trailer(&bytes);
    assert_all_prefixes(&full, bytes.len(), decode_packet);
    assert_eq!(
        assert_all_prefixes(&full, bytes.len(), Frame::decode),
        frame
    );
}

#[test]
fn rejects_zero_length_packet() {
    assert_eq!(decode_packet(&[0x00]), Err(CgpError::EmptyPacket));
    assert_eq!(decode_packet(&[0x00, 0x05]), Err(CgpError::EmptyPacket));
}

#[test]
fn rejects_unknown_command_before_the_packet_is_complete() {
    assert_eq!(
        decode_packet(&[0x10, 0x0C]),
        Err(CgpError::UnknownCommand(0x0C))
    );
    assert_eq!(
        decode_packet(&[0x01, 0x00]),
        Err(CgpError::UnknownCommand(0x00))
    );
}

#[test]
fn rejects_non_zero_bind_flags() {
    assert_eq!(
        decode_packet(&[0x04, 0x01, 0x08, 0x00, 0x00]),
        Err(CgpError::NonZeroBindFlags {
            command: Command::BindRequest,
            flags: 0x08,
        })
    );
    assert_eq!(
        decode_packet(&[0x02, 0x02, 0x80]),
        Err(CgpError::NonZeroBindFlags {
            command: Command::BindResponse,
            flags: 0x80,
        })
    );
}

#[test]
fn rejects_reserved_extension_and_reliability_flags() {
    assert_eq!(
        decode_packet(&[0x02, 0x05, 0x01]),
        Err(CgpError::UnknownExtensionFlags(0x01))
    );
    assert_eq!(
        decode_packet(&[0x03, 0x05, 0x80, 0x08]),
        Err(CgpError::UnknownExtensionFlags(0x08))
    );
    assert_eq!(
        decode_packet(&[0x03, 0x05, 0x08, 0x04]),
        Err(CgpError::UnknownReliabilityFlags(0x04))
    );
}

#[test]
fn accepts_a_chain_of_empty_continuation_flag_bytes() {
    let packet = decode_packet(&[0x04, 0x05, 0x80, 0x80, 0x00])
        .unwrap()
        .done()
        .unwrap()
        .0;
    assert_eq!(packet.extensions, Extensions::default());
    assert!(packet.body.is_empty());
}

#[test]
fn rejects_truncated_extensions_inside_a_complete_packet() {
    assert_eq!(
        decode_packet(&[0x01, 0x05]),
        Err(CgpError::Truncated("extension flags"))
    );
    assert_eq!(
        decode_packet(&[0x02, 0x05, 0x80]),
        Err(CgpError::Truncated("extension flags"))
    );
    assert_eq!(
        decode_packet(&[0x05, 0x09, 0x08, 0x01, 0x00, 0x00]),
        Err(CgpError::Truncated("tracked message number"))
    );
    assert_eq!(
        decode_packet(&[0x04, 0x09, 0x08, 0x02, 0x80]),
        Err(CgpError::Truncated("ack delta"))
    );
    assert_eq!(
        decode_packet(&[0x01, 0x01]),
        Err(CgpError::Truncated("bind flags byte"))
    );
}

#[test]
fn refuses_to_encode_extensions_where_none_are_allowed() {
    let reliability = Extensions {
        reliability: Some(Reliability::default()),
    };
    for command in [
        Command::BindRequest,
        Command::BindResponse,
        Command::DataRealtime,
        Command::DataRealtimeWithAck,
    ] {
        let mut out = vec![0xAA];
        let packet = Packet {
            command,
            extensions: reliability,
            body: &[0, 0],
        };
        assert_eq!(
            encode_packet(&packet, &mut out),
            Err(CgpError::ExtensionsNotAllowed(command))
        );
        assert_eq!(out, [0xAA]);
    }
}

#[test]
fn refuses_to_encode_packets_past_the_varlen_maximum() {
    let payload = vec![0; 32_767];
    let mut out = Vec::new();
    let data = plain(Message::Data(Data {
        channel: ChannelId(1),
        payload: &payload,
    }));
    assert!(matches!(
        data.encode(&mut out),
        Err(CgpError::PacketTooLong(_))
    ));
    let packet = Packet {
        command: Command::Nop,
        extensions: Extensions::default(),
        body: &payload,
    };
    assert!(matches!(
        encode_packet(&packet, &mut out),
        Err(CgpError::PacketTooLong(_))
    ));
    assert!(out.is_empty());
    // The largest packet that fits: len = 32 767 (cmd + flags + channel + payload).
    let payload = vec![0; 32_767 - 4];
    let data = plain(Message::Data(Data {
        channel: ChannelId(1),
        payload: &payload,
    }));
    data.encode(&mut out).unwrap();
    assert_eq!(out[..2], [0xFF, 0xFF]);
    assert_eq!(
        Frame::decode(&out).unwrap().done().unwrap(),
        (data, out.len())
    );
}

#[test]
fn refuses_to_encode_an_ack_delta_above_15_bits() {
    let frame = Frame {
        extensions: Extensions {
            reliability: Some(Reliability {
                track: None,
                ack: Some(40_000),
            }),
        },
        message: Message::Nop,
    };
    let mut out = Vec::new();
    assert_eq!(
        frame.encode(&mut out),
        Err(CgpError::VarlenOverflow(40_000))
    );
    assert!(out.is_empty());
}

// ---- typed messages: byte vectors -----------------------------------------

#[test]
fn decodes_and_encodes_every_message_byte_vector() {
    let tracked = Extensions {
        reliability: Some(Reliability {
            track: Some(MessageNumber(5)),
            ack: Some(3),
        }),
    };
    let ack_only = Extensions {
        reliability: Some(Reliability {
            track: None,
            ack: Some(200),
        }),
    };
    let cases: Vec<(Vec<u8>, Frame<'_>)> = vec![
        (vec![0x02, 0x05, 0x00], plain(Message::Nop)),
        (
            vec![0x05, 0x05, 0x08, 0x02, 0xC8, 0x01],
            Frame {
                extensions: ack_only,
                message: Message::Nop,
            },
        ),
        (
            vec![0x04, 0x03, 0x00, 0x00, 0x00],
            plain(Message::FinishRequest(FinishRequest {
                reason: Reason::NORMAL,
            })),
        ),
        (vec![0x02, 0x04, 0x00], plain(Message::FinishResponse)),
        (
            vec![0x08, 0x06, 0x00, 0x01, 0x00, 0x10, 0x00, 0x01, b'x'],
            plain(Message::ChannelOpenRequest(ChannelOpenRequest {
                channel: ChannelId(1),
                service: ServiceId(0x10),
                params: b"x",
            })),
        ),
        (
            vec![0x06, 0x07, 0x00, 0x01, 0x00, 0x02, 0x00],
            plain(Message::ChannelOpenResponse(ChannelOpenResponse {
                channel: ChannelId(1),
                status: OpenStatus::REFUSED,
            })),
        ),
        (
            vec![0x06, 0x08, 0x00, 0x01, 0x00, 0x02, 0x00],
            plain(Message::ChannelClose(ChannelClose {
                channel: ChannelId(1),
                reason: Reason::TIMEOUT,
            })),
        ),
        (
            vec![
                0x0C, 0x09, 0x08, 0x03, 0x05, 0x00, 0x00, 0x00, 0x03, 0x01, 0x00, b'h', b'i',
            ],
            Frame {
                extensions: tracked,
                message: Message::Data(Data {
                    channel: ChannelId(1),
                    payload: b"hi",
                }),
            },
        ),
        (
            vec![0x05, 0x0A, 0x02, 0x00, b'a', b'b'],
            plain(Message::DataRealtime(Data {
                channel: ChannelId(2),
                payload: b"ab",
            })),
        ),
        (
            vec![0x06, 0x0B, 0x07, 0x02, 0x00, b'a', b'b'],
            plain(Message::DataRealtimeWithAck(DataRealtimeWithAck {
                ack: 7,
                channel: ChannelId(2),
                payload: b"ab",
            })),
        ),
        (
            vec![0x05, 0x02, 0x00, 0x00, 0x00, 0x00],
            plain(Message::BindResponse(BindResponse::default())),
        ),
    ];
    for (bytes, frame) in &cases {
        assert_eq!(
            Frame::decode(bytes).unwrap().done().unwrap(),
            (frame.clone(), bytes.len()),
            "decoding {bytes:02X?}"
        );
        assert_eq!(&encode_frame(frame), bytes, "encoding {frame:?}");
    }
}

#[test]
fn decodes_channel_open_through_every_prefix() {
    let bytes = [0x08, 0x06, 0x00, 0x01, 0x00, 0x10, 0x00, 0x01, b'x'];
    let full = with_trailer(&bytes);
    let frame = assert_all_prefixes(&full, bytes.len(), Frame::decode);
    assert!(matches!(frame.message, Message::ChannelOpenRequest(_)));
}

#[test]
fn decodes_data_through_every_prefix() {
    let bytes = [
        0x0C, 0x09, 0x08, 0x03, 0x05, 0x00, 0x00, 0x00, 0x03, 0x01, 0x00, b'h', b'i',
    ];
    let full = with_trailer(&bytes);
    let frame = assert_all_prefixes(&full, bytes.len(), Frame::decode);
    assert!(matches!(
        frame.message,
        Message::Data(Data { payload: b"hi", .. })
    ));
}

#[test]
fn rejects_malformed_message_bodies() {
    // NOP with a body byte.
    assert_eq!(
        Frame::decode(&[0x03, 0x05, 0x00, 0x01]),
        Err(CgpError::TrailingBytes {
            field: "nop",
            count: 1
        })
    );
    // DATA without a full channel id.
    assert_eq!(
        Frame::decode(&[0x03, 0x09, 0x00, 0x01]),
        Err(CgpError::Truncated("channel id"))
    );
    // Channel open whose params run past the packet.
    assert_eq!(
        Frame::decode(&[0x07, 0x06, 0x00, 0x01, 0x00, 0x10, 0x00, 0x05]),
        Err(CgpError::Truncated("channel open params"))
    );
    // Channel close with an extra byte.
    assert_eq!(
        Frame::decode(&[0x07, 0x08, 0x00, 0x01, 0x00, 0x00, 0x00, 0x09]),
        Err(CgpError::TrailingBytes {
            field: "channel close",
            count: 1,
        })
    );
    assert_eq!(
        DataRealtimeWithAck::decode_body(&[0x80, 0x00, 0x01, 0x00]),
        Err(CgpError::NonCanonicalVarlen(0))
    );
}
