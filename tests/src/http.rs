//! A one-shot HTTP/1.1 client for the internal listener (STA, broker, REST
//! API): one request on its own connection, `Connection: close`; [`json`]
//! for the REST API's JSON bodies.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use serde_json::Value;

use crate::TIMEOUT;

/// Sends `method path` to `addr` with the extra header lines `headers`
/// (each ending in `\r\n`) and `body` as `text/xml`; answers the status
/// and the body. Panics when no answer comes within [`TIMEOUT`].
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &str,
    body: &str,
) -> (u16, String) {
    exchange(addr, method, path, headers, "text/xml", body)
}

/// `method path` at `addr` (the REST API) with a bearer `token`, if any,
/// and `body` as `application/json`: the status and the JSON answer
/// (`Null` when empty, a JSON string when the answer is not JSON).
pub fn json(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> (u16, Value) {
    let body = body.map(Value::to_string).unwrap_or_default();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let (status, payload) = exchange(addr, method, path, &auth, "application/json", &body);
    let value = if payload.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&payload).unwrap_or(Value::String(payload))
    };
    (status, value)
}

fn exchange(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &str,
    content_type: &str,
    body: &str,
) -> (u16, String) {
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(TIMEOUT)).unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}Content-Type: {content_type}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, body.to_owned())
}
