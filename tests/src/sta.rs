//! A client of the STA's XML endpoint (`POST /scripts/ctxsta.dll`,
//! `docs/STA.md`): one HTTP/1.1 exchange per request over a std
//! `TcpStream`, `Connection: close`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use crate::TIMEOUT;

/// The path of the STA endpoint on the internal listener.
pub const STA_PATH: &str = "/scripts/ctxsta.dll";

/// A `RequestTicket` document for a launch (single-use) ticket whose
/// worker is `ica` (`host:port`).
pub fn request_ticket(ica: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><CtxSTAProtocol version="4.0"><RequestTicket><AllowedTicketType>STA-v4</AllowedTicketType><TicketData><Value name="ICAAddress">{ica}</Value></TicketData></RequestTicket></CtxSTAProtocol>"#
    )
}

/// A `RequestTicket` document for a launch ticket whose worker is `ica`
/// for SOCKS and `cgp` (`host:port`) for CGP.
pub fn request_cgp_ticket(ica: &str, cgp: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><CtxSTAProtocol version="4.0"><RequestTicket><AllowedTicketType>STA-v4</AllowedTicketType><TicketData><Value name="ICAAddress">{ica}</Value><Value name="CGPAddress">{cgp}</Value></TicketData></RequestTicket></CtxSTAProtocol>"#
    )
}

/// Asks the STA at `admin` for a launch ticket to `ica`, usable over CGP to
/// `cgp`; returns its text form.
pub fn issue_cgp(admin: SocketAddr, ica: SocketAddr, cgp: SocketAddr) -> String {
    let (status, answer) = post(
        admin,
        &request_cgp_ticket(&ica.to_string(), &cgp.to_string()),
    );
    assert_eq!(status, 200, "issue at {admin}: {answer}");
    format!(
        ";{};{};{}",
        element(&answer, "TicketVersion"),
        element(&answer, "AuthorityID"),
        element(&answer, "Ticket")
    )
}

/// Asks the STA at `admin` for a launch ticket to `ica`; returns the
/// ticket's text form `;VER;STA_ID;TICKET`, what a client puts in the
/// SOCKSv5 CONNECT. Panics unless the answer is a `ResponseTicket` (HTTP
/// 200).
pub fn issue(admin: SocketAddr, ica: SocketAddr) -> String {
    let (status, answer) = post(admin, &request_ticket(&ica.to_string()));
    assert_eq!(status, 200, "issue at {admin}: {answer}");
    assert!(answer.contains("<ResponseTicket>"), "{answer}");
    format!(
        ";{};{};{}",
        element(&answer, "TicketVersion"),
        element(&answer, "AuthorityID"),
        element(&answer, "Ticket")
    )
}

/// POSTs `document` (`text/xml`) to the STA endpoint at `admin`; returns
/// the HTTP status and the body. Every read and write is bounded by
/// [`TIMEOUT`].
pub fn post(admin: SocketAddr, document: &str) -> (u16, String) {
    let mut stream = TcpStream::connect_timeout(&admin, TIMEOUT)
        .unwrap_or_else(|error| panic!("connect {admin}: {error}"));
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(TIMEOUT)).unwrap();
    let request = format!(
        "POST {STA_PATH} HTTP/1.1\r\nHost: {admin}\r\nContent-Type: text/xml\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{document}",
        document.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("not an http answer: {answer:?}"));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    assert!(
        !head.to_ascii_lowercase().contains("transfer-encoding"),
        "a chunked answer is not expected: {head}"
    );
    (status, body.to_owned())
}

/// The text between `<tag>` and `</tag>` (the first such element). Panics
/// if there is none.
pub fn element<'a>(xml: &'a str, tag: &str) -> &'a str {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = xml
        .find(&open)
        .unwrap_or_else(|| panic!("no <{tag}> in {xml}"))
        + open.len();
    let end = xml[start..]
        .find(&close)
        .unwrap_or_else(|| panic!("no </{tag}> in {xml}"))
        + start;
    &xml[start..end]
}
