//! Byte vectors, round trips, all-prefixes and no-panic tests for CGP.
//!
//! `framing`: signature, varlen, packets and typed messages; `bind`: BIND
//! packets, capabilities and the preamble; `props`: property tests. This file
//! holds the fixtures they share.

mod bind;
mod framing;
mod props;

use super::*;

pub(super) const STA_TICKET: &[u8] = b";40;STA01;ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";
pub(super) const RECONNECT: &[u8] = b"RECONNECT-TICKET-0123456789ABCDEF";

/// Feeds every prefix of `full[..valid_len]`: "need more" with a bound in
/// `(i, valid_len]` until complete, then the same `Done` for the complete
/// input and for `full` (which carries trailing bytes).
pub(super) fn assert_all_prefixes<'a, T: PartialEq + std::fmt::Debug>(
    full: &'a [u8],
    valid_len: usize,
    decode: impl Fn(&'a [u8]) -> Result<Progress<T>, CgpError>,
) -> T {
    for i in 0..valid_len {
        match decode(&full[..i]) {
            Ok(Progress::NeedMore { at_least }) => {
                assert!(
                    at_least > i,
                    "prefix {i}: at_least {at_least} must exceed it"
                );
                assert!(
                    at_least <= valid_len,
                    "prefix {i}: at_least {at_least} past the end"
                );
            }
            other => panic!("prefix {i} of {valid_len}: expected need-more, got {other:?}"),
        }
    }
    let complete = decode(&full[..valid_len]).unwrap();
    assert_eq!(
        decode(full).unwrap(),
        complete,
        "trailing bytes changed the answer"
    );
    match complete {
        Progress::Done { value, consumed } => {
            assert_eq!(consumed, valid_len);
            value
        }
        Progress::NeedMore { at_least } => panic!("complete input still needs {at_least}"),
    }
}

pub(super) fn with_trailer(bytes: &[u8]) -> Vec<u8> {
    let mut full = bytes.to_vec();
    full.extend_from_slice(&[0x05, 0xFF, 0x00]);
    full
}

pub(super) fn encode_frame(frame: &Frame<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    frame.encode(&mut out).unwrap();
    out
}

pub(super) fn plain(message: Message<'_>) -> Frame<'_> {
    Frame {
        extensions: Extensions::default(),
        message,
    }
}

pub(super) fn sta_bind() -> BindRequest<'static> {
    BindRequest {
        capabilities: vec![
            Capability::ServicesBinding(vec![ServiceBinding {
                name: TCP_PROXY_SERVICE,
                service: ServiceId(0x10),
            }]),
            Capability::SecurityTicket(SecurityTicket {
                kind: TicketKind::STA,
                ticket: STA_TICKET,
            }),
            Capability::SessionReliability(SessionReliability {
                min_version: SESSION_RELIABILITY_VERSION,
                max_version: SESSION_RELIABILITY_VERSION,
                ack_algorithms: SessionReliability::ACK_DELTA,
                next_message_number: MessageNumber(1),
                reconnect_ticket: None,
                channels: vec![],
            }),
            Capability::KeepAlives(KeepAlives {
                interval_seconds: 60,
            }),
        ],
    }
}

pub(super) fn resume_bind() -> BindRequest<'static> {
    BindRequest {
        capabilities: vec![Capability::SessionReliability(SessionReliability {
            min_version: 1,
            max_version: 1,
            ack_algorithms: SessionReliability::ACK_DELTA,
            next_message_number: MessageNumber(42),
            reconnect_ticket: Some(ReconnectTicket {
                version: RECONNECT_TICKET_VERSION,
                ticket: RECONNECT,
            }),
            channels: vec![ChannelOpenRequest {
                channel: ChannelId(1),
                service: ServiceId(0x10),
                params: b"host:1494",
            }],
        })],
    }
}

/// The security-ticket BIND_REQUEST, written out by hand.
pub(super) fn sta_bind_bytes() -> Vec<u8> {
    let mut bytes = vec![0x38, 0x01, 0x00, 0x00, 0x00, 0x01];
    bytes.extend_from_slice(&[0x32, 0x00, 0x00, 0x06, 0x00, 0x00, 0x00, 0x00, 0x2A]);
    bytes.extend_from_slice(STA_TICKET);
    bytes
}
