//! Unit tests of [`super`].

use super::*;

const TICKET_BODY: &str = r#"<?xml version="1.0" encoding="UTF-8"?><CtxSTAProtocol version="4.0"><ResponseTicket><AuthorityID>STA01</AuthorityID><Ticket>K3J9Q0ZP1M8X5V2C7B4N6L0A9S8D7F6G</Ticket><TicketVersion>40</TicketVersion><Lifetime>100</Lifetime></ResponseTicket></CtxSTAProtocol>"#;

fn answer(status: &str, headers: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\n{headers}content-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[test]
fn parses_an_sta_url_with_an_ip_address_and_a_path() {
    let url = StaUrl::parse("http://127.0.0.1:8080/scripts/ctxsta.dll").unwrap();
    assert_eq!(url.addr, "127.0.0.1:8080".parse().unwrap());
    assert_eq!(url.path, "/scripts/ctxsta.dll");
    let v6 = StaUrl::parse("http://[::1]:80").unwrap();
    assert_eq!((v6.addr.port(), v6.path.as_str()), (80, "/"));
}

#[test]
fn refuses_sta_urls_that_are_not_plain_http_to_an_address() {
    for bad in [
        "https://127.0.0.1:8080/scripts/ctxsta.dll",
        "http://localhost:8080/scripts/ctxsta.dll",
        "http://127.0.0.1/scripts/ctxsta.dll",
        "http://127.0.0.1:8080/a b",
        "127.0.0.1:8080",
    ] {
        assert!(
            matches!(StaUrl::parse(bad), Err(StaError::BadUrl(_))),
            "accepted {bad}"
        );
    }
}

#[test]
fn builds_a_request_ticket_naming_the_worker_as_ica_address() {
    let document = request_ticket_document("127.0.0.1:1494");
    assert!(document.starts_with(
        r#"<?xml version="1.0" encoding="UTF-8"?><CtxSTAProtocol version="4.0"><RequestTicket>"#
    ));
    assert!(document.contains(r#"<Value name="ICAAddress">127.0.0.1:1494</Value>"#));
    assert!(document.ends_with("</RequestTicket></CtxSTAProtocol>"));
    assert!(request_ticket_document("a<b&c").contains(">a&lt;b&amp;c<"));
}

#[test]
fn encodes_a_keep_alive_post_with_its_length() {
    let url = StaUrl::parse("http://127.0.0.1:8080/scripts/ctxsta.dll").unwrap();
    let wire = String::from_utf8(encode_post(&url, "<x/>")).unwrap();
    assert_eq!(
        wire,
        "POST /scripts/ctxsta.dll HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\
         Content-Type: text/xml\r\nContent-Length: 4\r\n\r\n<x/>"
    );
    assert!(!wire.to_ascii_lowercase().contains("connection: close"));
}

#[test]
fn decodes_an_answer_after_every_prefix_asks_for_more() {
    let wire = answer("200 OK", "content-type: text/xml\r\n", TICKET_BODY);
    for cut in 0..wire.len() {
        match decode_answer(&wire[..cut]) {
            Ok(Progress::NeedMore { at_least }) => assert!(at_least > cut, "cut {cut}"),
            other => panic!("prefix {cut}: {other:?}"),
        }
    }
    let mut two = wire.clone();
    two.extend_from_slice(&wire);
    let Ok(Progress::Done { value, consumed }) = decode_answer(&two) else {
        panic!("not done")
    };
    assert_eq!(consumed, wire.len());
    assert_eq!(
        (value.status, value.body_len, value.close),
        (200, TICKET_BODY.len(), false)
    );
    assert_eq!(&two[value.body_start..consumed], TICKET_BODY.as_bytes());
}

#[test]
fn notices_when_the_server_closes_after_an_answer() {
    let wire = answer("200 OK", "Connection: close\r\n", "");
    assert!(decode_answer(&wire).unwrap().done().unwrap().0.close);
    let old = b"HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n";
    assert!(decode_answer(old).unwrap().done().unwrap().0.close);
}

#[test]
fn rejects_answers_it_cannot_frame() {
    let chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n";
    assert!(matches!(decode_answer(chunked), Err(StaError::NoLength)));
    let no_length = b"HTTP/1.1 200 OK\r\n\r\n";
    assert!(matches!(decode_answer(no_length), Err(StaError::NoLength)));
    let huge = b"HTTP/1.1 200 OK\r\ncontent-length: 70000\r\n\r\n";
    assert!(matches!(
        decode_answer(huge),
        Err(StaError::BodyTooLarge(70_000))
    ));
    let garbage = b"SSH-2.0-x\r\n\r\n";
    assert!(matches!(
        decode_answer(garbage),
        Err(StaError::MalformedAnswer(_))
    ));
    let endless = vec![b'a'; MAX_HEAD_BYTES];
    assert!(matches!(
        decode_answer(&endless),
        Err(StaError::HeadTooLarge)
    ));
    let conflicting = b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n";
    assert!(matches!(
        decode_answer(conflicting),
        Err(StaError::MalformedAnswer(_))
    ));
}

#[test]
fn turns_a_response_ticket_into_its_text_form() {
    let host = decode_ticket(200, TICKET_BODY.as_bytes()).unwrap();
    assert_eq!(host.as_str(), ";40;STA01;K3J9Q0ZP1M8X5V2C7B4N6L0A9S8D7F6G");
}

#[test]
fn reports_the_error_id_of_a_response_error() {
    let body = r#"<CtxSTAProtocol version="4.0"><ResponseError><ErrorId>sta-full</ErrorId><Message>full</Message></ResponseError></CtxSTAProtocol>"#;
    match decode_ticket(503, body.as_bytes()) {
        Err(StaError::Refused { status, error_id }) => {
            assert_eq!((status, error_id.as_str()), (503, "sta-full"));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        decode_ticket(404, b"not found"),
        Err(StaError::Refused { status: 404, .. })
    ));
}

#[test]
fn refuses_a_ticket_with_malformed_fields() {
    let lower = TICKET_BODY.replace("K3J9", "k3j9");
    assert!(matches!(
        decode_ticket(200, lower.as_bytes()),
        Err(StaError::NotATicket(_))
    ));
    let semicolon = TICKET_BODY.replace("STA01", "STA;01");
    assert!(matches!(
        decode_ticket(200, semicolon.as_bytes()),
        Err(StaError::NotATicket(_))
    ));
    let missing = TICKET_BODY.replace("<TicketVersion>40</TicketVersion>", "");
    assert!(matches!(
        decode_ticket(200, missing.as_bytes()),
        Err(StaError::NotATicket(_))
    ));
    let other = r#"<CtxSTAProtocol version="4.0"><ResponseId><AuthorityID>STA01</AuthorityID></ResponseId></CtxSTAProtocol>"#;
    assert!(matches!(
        decode_ticket(200, other.as_bytes()),
        Err(StaError::NotATicket(_))
    ));
}

#[test]
fn hands_out_each_ticket_once_and_then_reports_exhaustion() {
    let batch = TicketBatch::new(
        vec![SocksHost::new("a").unwrap(), SocksHost::new("b").unwrap()],
        Duration::ZERO,
    );
    assert_eq!(batch.take().map(SocksHost::as_str), Some("a"));
    assert!(!batch.exhausted());
    assert_eq!(batch.take().map(SocksHost::as_str), Some("b"));
    assert!(!batch.exhausted());
    assert_eq!(batch.take(), None);
    assert!(batch.exhausted());
    assert_eq!((batch.len(), batch.used()), (2, 2));
}
