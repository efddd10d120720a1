//! Codec micro-benchmarks: nanoseconds per call for the parsers on the
//! connection-setup path (detection, SOCKSv5, STA ticket text, CGP bind).
//!
//! Run: `cargo bench -p gatehouse-bench --bench wire`.
#![allow(clippy::unwrap_used, reason = "benchmark inputs are fixed and valid")]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use gatehouse_wire::cgp::{self, BindRequest, Capability, SecurityTicket, TicketKind};
use gatehouse_wire::detect::{DetectConfig, detect};
use gatehouse_wire::socks5::{self, Address, Command};
use gatehouse_wire::ticket::StaTicket;

const TICKET_TEXT: &[u8] = b";40;STA01;ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";

fn bench_detect(c: &mut Criterion) {
    let config = DetectConfig::default();
    let mut group = c.benchmark_group("detect");
    let inputs: [(&str, &[u8]); 5] = [
        ("tls", &[0x16, 0x03, 0x01, 0x02, 0x00]),
        ("cgp", b"\x1aCGP/01\x10\x01"),
        ("socks5", &[0x05, 0x02, 0x00, 0x02]),
        ("http", b"POST /cgi/login HTTP/1.1\r\n"),
        ("unknown", b"SSH-2.0-OpenSSH_9.2\r\n"),
    ];
    for (name, input) in inputs {
        group.bench_function(name, |b| {
            b.iter(|| detect(black_box(input), black_box(&config)))
        });
    }
    group.finish();
}

fn bench_socks5(c: &mut Criterion) {
    let mut request = Vec::new();
    socks5::encode_request(
        Command::Connect,
        &Address::Domain(TICKET_TEXT),
        1494,
        &mut request,
    )
    .unwrap();
    let greeting = [0x05, 0x02, 0x00, 0x02];
    let mut group = c.benchmark_group("socks5");
    group.bench_function("greeting", |b| {
        b.iter(|| socks5::decode_greeting(black_box(&greeting)))
    });
    group.bench_function("request_ticket_domain", |b| {
        b.iter(|| socks5::decode_request(black_box(&request)))
    });
    group.finish();
}

fn bench_ticket(c: &mut Criterion) {
    c.bench_function("ticket/decode", |b| {
        b.iter(|| StaTicket::decode(black_box(TICKET_TEXT)))
    });
}

fn bench_cgp(c: &mut Criterion) {
    let bind = BindRequest {
        capabilities: vec![Capability::SecurityTicket(SecurityTicket {
            kind: TicketKind::STA,
            ticket: TICKET_TEXT,
        })],
    };
    let mut preamble = Vec::new();
    cgp::encode_connection_preamble(&bind, &mut preamble).unwrap();
    c.bench_function("cgp/preamble_with_ticket", |b| {
        b.iter(|| cgp::decode_connection_preamble(black_box(&preamble)))
    });
}

criterion_group!(benches, bench_detect, bench_socks5, bench_ticket, bench_cgp);
criterion_main!(benches);
