//! HTTP/1.1 to the gateway's web side with hyper: one request per TLS
//! connection, the session cookie carried by hand.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode, header};
use hyper_util::rt::TokioIo;

use crate::{ClientError, Gateway};

/// Largest body read from a plain response.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "NSC_AAAC";

/// A complete response.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The status.
    pub status: StatusCode,
    /// The session cookie the response set, if any.
    pub session: Option<String>,
    /// The body.
    pub body: Bytes,
}

impl Reply {
    /// The body as JSON.
    ///
    /// Errors: [`ClientError::Refused`] when it is not JSON.
    pub fn json(&self) -> Result<serde_json::Value, ClientError> {
        serde_json::from_slice(&self.body).map_err(|_| self.refused())
    }

    /// This reply as an error.
    pub fn refused(&self) -> ClientError {
        ClientError::Refused {
            status: self.status.as_u16(),
            body: String::from_utf8_lossy(&self.body).trim().to_owned(),
        }
    }
}

/// Sends one request and returns the response head with its streaming
/// body (the connection lives as long as the body is read).
///
/// Errors: [`ClientError::Io`].
pub async fn open(
    gateway: &Gateway,
    method: Method,
    path: &str,
    cookie: Option<&str>,
    content_type: &str,
    body: Vec<u8>,
) -> Result<Response<Incoming>, ClientError> {
    let io = |e: &dyn std::fmt::Display| ClientError::Io(e.to_string());
    let stream = gateway.connect().await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| io(&e))?;
    tokio::spawn(connection);
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, gateway.addr.as_str());
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, format!("{SESSION_COOKIE}={cookie}"));
    }
    if !body.is_empty() {
        request = request.header(header::CONTENT_TYPE, content_type);
    }
    let request = request
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| io(&e))?;
    sender.send_request(request).await.map_err(|e| io(&e))
}

/// Sends one request and reads the whole response.
///
/// Errors: [`ClientError::Io`].
pub async fn send(
    gateway: &Gateway,
    method: Method,
    path: &str,
    cookie: Option<&str>,
    content_type: &str,
    body: Vec<u8>,
) -> Result<Reply, ClientError> {
    let response = open(gateway, method, path, cookie, content_type, body).await?;
    let status = response.status();
    let session = response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find_map(|value| {
            let (pair, _) = value.split_once(';').unwrap_or((value, ""));
            let (name, value) = pair.split_once('=')?;
            (name.trim() == SESSION_COOKIE && !value.is_empty()).then(|| value.trim().to_owned())
        });
    let body = Limited::new(response.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
        .map_err(|e| ClientError::Io(e.to_string()))?
        .to_bytes();
    Ok(Reply {
        status,
        session,
        body,
    })
}

/// Logs in with a password (`POST /cgi/login`); the session cookie.
///
/// Errors: [`ClientError::Refused`] when no session cookie came back
/// (wrong password, or a second factor the client cannot answer).
pub async fn login(gateway: &Gateway, user: &str, password: &str) -> Result<String, ClientError> {
    let form = format!("login={}&passwd={}", encode(user), encode(password));
    let reply = send(
        gateway,
        Method::POST,
        "/cgi/login",
        None,
        "application/x-www-form-urlencoded",
        form.into_bytes(),
    )
    .await?;
    reply.session.clone().ok_or_else(|| reply.refused())
}

/// Percent-encodes a form value.
fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Reads the next line of a streaming body into `pending`; `None` at its
/// end.
///
/// Errors: [`ClientError::Io`].
pub async fn next_line(
    body: &mut Incoming,
    pending: &mut Vec<u8>,
) -> Result<Option<String>, ClientError> {
    loop {
        if let Some(at) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=at).collect();
            return Ok(Some(String::from_utf8_lossy(&line).trim().to_owned()));
        }
        if pending.len() > MAX_BODY_BYTES {
            return Err(ClientError::Io("control line too long".to_owned()));
        }
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    pending.extend_from_slice(&data);
                }
            }
            Some(Err(error)) => return Err(ClientError::Io(error.to_string())),
            None => return Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_values_are_percent_encoded() {
        assert_eq!(encode("alice"), "alice");
        assert_eq!(encode("p&ss w=rd"), "p%26ss%20w%3Drd");
    }
}
