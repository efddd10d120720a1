//! The sans-IO parts of the CGP handler: which ticket a BIND presents, the
//! ticket swaps each way, the refusal, and the refusal table.

use gatehouse_wire::cgp::{
    Capability, ReconnectTicket, SecurityTicket, SessionReliability, TicketKind,
    encode_connection_preamble,
};

use super::*;

const STA_TICKET: &[u8] = b";40;STA01;ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";
const GATEWAY_TICKET: &[u8] = b";40;STA01;RECONNECT0123456789ABCDEFGHIJKLMN";
const WORKER_TICKET: &[u8] = b"WORKERTICKET0123456789ABCDEFGHIJ";

fn reliability(ticket: Option<&[u8]>, next: u32) -> Capability<'_> {
    Capability::SessionReliability(SessionReliability {
        min_version: 1,
        max_version: 1,
        ack_algorithms: SessionReliability::ACK_DELTA,
        next_message_number: MessageNumber(next),
        reconnect_ticket: ticket.map(|ticket| ReconnectTicket { version: 2, ticket }),
        channels: Vec::new(),
    })
}

fn first_connect() -> BindRequest<'static> {
    BindRequest {
        capabilities: vec![
            Capability::SecurityTicket(SecurityTicket {
                kind: TicketKind::STA,
                ticket: STA_TICKET,
            }),
            reliability(None, 1),
        ],
    }
}

fn resume(ticket: &[u8]) -> BindRequest<'_> {
    BindRequest {
        capabilities: vec![reliability(Some(ticket), 17)],
    }
}

fn preamble(bind: &BindRequest<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    encode_connection_preamble(bind, &mut out).unwrap();
    out
}

fn response(ticket: Option<&[u8]>, next: u32) -> Vec<u8> {
    let mut out = Vec::new();
    BindResponse {
        capabilities: vec![reliability(ticket, next)],
    }
    .encode(&mut out)
    .unwrap();
    out
}

#[test]
fn a_first_connect_presents_its_security_ticket() {
    assert_eq!(
        presented(&first_connect()),
        Some(Presented {
            kind: RedeemKind::Cgp,
            ticket: STA_TICKET
        })
    );
}

#[test]
fn a_resume_presents_its_reconnect_ticket_even_beside_a_security_ticket() {
    let mut bind = resume(GATEWAY_TICKET);
    bind.capabilities
        .push(Capability::SecurityTicket(SecurityTicket {
            kind: TicketKind::STA,
            ticket: STA_TICKET,
        }));
    assert_eq!(
        presented(&bind),
        Some(Presented {
            kind: RedeemKind::CgpReconnect,
            ticket: GATEWAY_TICKET
        })
    );
}

#[test]
fn a_bind_without_any_ticket_presents_none() {
    let bind = BindRequest {
        capabilities: vec![reliability(None, 1)],
    };
    assert_eq!(presented(&bind), None);
}

#[test]
fn a_first_connect_is_forwarded_verbatim() {
    let bytes = preamble(&first_connect());
    let mut out = Vec::new();
    forwarded_preamble(&bytes, None, &mut out).unwrap();
    assert_eq!(out, bytes);
}

#[test]
fn a_resume_is_forwarded_with_the_workers_ticket() {
    let bytes = preamble(&resume(GATEWAY_TICKET));
    let mut out = Vec::new();
    forwarded_preamble(&bytes, Some(WORKER_TICKET), &mut out).unwrap();
    let (bind, consumed) = decode_connection_preamble(&out).unwrap().done().unwrap();
    assert_eq!(consumed, out.len());
    let info = bind.reconnect().unwrap();
    assert_eq!(info.ticket, WORKER_TICKET);
    assert_eq!(info.next_message_number, MessageNumber(17));
    assert!(
        !out.windows(GATEWAY_TICKET.len())
            .any(|w| w == GATEWAY_TICKET)
    );
}

#[test]
fn a_worker_ticket_for_a_bind_without_reconnect_ticket_is_refused() {
    let bytes = preamble(&first_connect());
    let mut out = Vec::new();
    let refused = forwarded_preamble(&bytes, Some(WORKER_TICKET), &mut out).unwrap_err();
    assert!(matches!(refused, Refused::NoWorkerTicket), "{refused:?}");
}

#[test]
fn the_client_gets_the_gateways_ticket_and_the_workers_is_kept() {
    let bytes = response(Some(WORKER_TICKET), 1);
    let mut out = Vec::new();
    let seen = client_response(&bytes, Some(GATEWAY_TICKET), &mut out).unwrap();
    assert_eq!(
        seen,
        ResponseSeen {
            refused: false,
            worker_ticket: Some(WORKER_TICKET)
        }
    );
    let (decoded, consumed) = BindResponse::decode(&out).unwrap().done().unwrap();
    assert_eq!(consumed, out.len());
    assert_eq!(decoded.reconnect().unwrap().ticket, GATEWAY_TICKET);
    assert_eq!(decoded.next_message_number(), Some(MessageNumber(1)));
}

#[test]
fn a_refused_bind_from_the_worker_goes_to_the_client_as_it_is() {
    let bytes = response(None, 0);
    let mut out = Vec::new();
    let seen = client_response(&bytes, Some(GATEWAY_TICKET), &mut out).unwrap();
    assert!(seen.refused);
    assert_eq!(out, bytes);
}

#[test]
fn a_response_without_ticket_is_passed_on_unchanged() {
    let bytes = response(None, 1);
    let mut out = Vec::new();
    let seen = client_response(&bytes, Some(GATEWAY_TICKET), &mut out).unwrap();
    assert_eq!(seen.worker_ticket, None);
    assert_eq!(out, bytes);
}

#[test]
fn a_malformed_worker_response_is_the_workers_fault() {
    let mut out = Vec::new();
    let refused = client_response(&[0x03, 0x01, 0x00, 0x00], None, &mut out).unwrap_err();
    assert!(
        matches!(refused, Refused::WorkerMalformed(_)),
        "{refused:?}"
    );
    assert_eq!(refused.fault(), Fault::Worker);
}

#[test]
fn the_refusal_is_a_bind_response_with_next_number_zero() {
    let mut out = Vec::new();
    refused_bind_response(&mut out);
    let (decoded, consumed) = BindResponse::decode(&out).unwrap().done().unwrap();
    assert_eq!(consumed, out.len());
    assert_eq!(decoded.next_message_number(), Some(MessageNumber::REFUSED));
    assert_eq!(decoded.reconnect(), None);
}

#[test]
fn refusals_after_the_bind_request_answer_with_a_refused_bind() {
    use gatehouse_channel::DenyReason;
    let answered = [
        Refused::NoTicket,
        Refused::RedeemTimeout,
        Refused::Redeem(RedeemError::Denied(DenyReason::Reused)),
        Refused::NoWorkerTicket,
        Refused::Connect(io::Error::from(io::ErrorKind::ConnectionRefused)),
        Refused::WorkerTimeout,
        Refused::WorkerClosed,
    ];
    for refused in answered {
        assert!(refused.answers_with_refused_bind(), "{refused:?}");
    }
    let silent = [
        Refused::Timeout(Duration::ZERO),
        Refused::ClosedEarly,
        Refused::TooLong,
        Refused::Malformed(CgpError::BadSignature),
        Refused::WorkerRefused,
    ];
    for refused in silent {
        assert!(!refused.answers_with_refused_bind(), "{refused:?}");
    }
}

#[test]
fn reasons_are_snake_case_and_faults_match() {
    use gatehouse_channel::DenyReason;
    let cases = [
        (
            Refused::Timeout(Duration::ZERO),
            "cgp_timeout",
            Fault::Client,
        ),
        (Refused::NoTicket, "cgp_no_ticket", Fault::Client),
        (
            Refused::Redeem(RedeemError::Denied(DenyReason::Reused)),
            "ticket_reused",
            Fault::Client,
        ),
        (
            Refused::Connect(io::Error::from(io::ErrorKind::ConnectionRefused)),
            "backend_refused",
            Fault::Worker,
        ),
        (Refused::WorkerRefused, "worker_refused_bind", Fault::Worker),
        (
            Refused::NoWorkerTicket,
            "no_worker_ticket",
            Fault::ControlPlane,
        ),
    ];
    for (refused, reason, fault) in cases {
        assert_eq!(refused.reason(), reason);
        assert_eq!(refused.fault(), fault, "{refused:?}");
        assert!(reason.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
    }
}
