//! A minimal HTTP/1.1 client for the gateway's push endpoints: one
//! connection per request, over TCP (`http://`) or TLS (`https://`,
//! rustls, trusting only the CA certificates given).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Largest response body read.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// What went wrong talking to the gateway.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The gateway URL is not `http(s)://host[:port][/prefix]`.
    #[error("gateway url must be http(s)://host[:port][/prefix]: {0}")]
    Url(String),
    /// `https://` without `--ca`.
    #[error("an https gateway needs --ca with its certificate")]
    NoCa,
    /// The CA file could not be read.
    #[error("cannot read the ca file: {0}")]
    Ca(String),
    /// Connecting, TLS or HTTP failed.
    #[error("request failed: {0}")]
    Io(String),
    /// No answer in time.
    #[error("request timed out")]
    Timeout,
}

/// A gateway base URL and how to reach it.
#[derive(Clone)]
pub struct Client {
    host: String,
    port: u16,
    prefix: String,
    tls: Option<(TlsConnector, ServerName<'static>)>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

/// A response: status and body.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The status.
    pub status: StatusCode,
    /// The body (at most [`MAX_RESPONSE_BYTES`]).
    pub body: Bytes,
}

impl Client {
    /// A client for `url`; `ca` (PEM, one or more certificates) is
    /// required for `https://`.
    ///
    /// Errors: [`ClientError::Url`], [`ClientError::NoCa`],
    /// [`ClientError::Ca`].
    pub fn new(url: &str, ca: Option<&Path>) -> Result<Self, ClientError> {
        let bad = || ClientError::Url(url.to_owned());
        let (tls, rest) = if let Some(rest) = url.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err(bad());
        };
        let (authority, prefix) = match rest.find('/') {
            Some(at) => rest.split_at(at),
            None => (rest, ""),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(']') || authority.starts_with('[') => {
                (host, port.parse::<u16>().map_err(|_| bad())?)
            }
            _ => (authority, if tls { 443 } else { 80 }),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(bad());
        }
        let tls = if tls {
            let ca = ca.ok_or(ClientError::NoCa)?;
            let mut roots = rustls::RootCertStore::empty();
            let certs =
                CertificateDer::pem_file_iter(ca).map_err(|e| ClientError::Ca(e.to_string()))?;
            for cert in certs {
                let cert = cert.map_err(|e| ClientError::Ca(e.to_string()))?;
                roots
                    .add(cert)
                    .map_err(|e| ClientError::Ca(e.to_string()))?;
            }
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| ClientError::Ca(e.to_string()))?
                .with_root_certificates(roots)
                .with_no_client_auth();
            let name = ServerName::try_from(host.to_owned()).map_err(|_| bad())?;
            Some((TlsConnector::from(Arc::new(config)), name))
        } else {
            None
        };
        Ok(Self {
            host: host.to_owned(),
            port,
            prefix: prefix.trim_end_matches('/').to_owned(),
            tls,
        })
    }

    /// Sends one request to `path` (appended to the URL's prefix) and
    /// reads the answer, all within `timeout`.
    ///
    /// Errors: [`ClientError::Io`], [`ClientError::Timeout`].
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<Vec<u8>>,
        timeout: Duration,
    ) -> Result<Reply, ClientError> {
        tokio::time::timeout(timeout, self.send_now(method, path, bearer, body))
            .await
            .map_err(|_| ClientError::Timeout)?
    }

    async fn send_now(
        &self,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> Result<Reply, ClientError> {
        let io = |e: &dyn std::fmt::Display| ClientError::Io(e.to_string());
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.prefix))
            .header(header::HOST, format!("{}:{}", self.host, self.port));
        if let Some(token) = bearer {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        if body.is_some() {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| io(&e))?;
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| io(&e))?;
        match &self.tls {
            Some((connector, name)) => {
                let stream = connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|e| io(&e))?;
                exchange(stream, request).await
            }
            None => exchange(tcp, request).await,
        }
    }
}

async fn exchange<S>(stream: S, request: Request<Full<Bytes>>) -> Result<Reply, ClientError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = |e: &dyn std::fmt::Display| ClientError::Io(e.to_string());
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| io(&e))?;
    let driver = tokio::spawn(connection);
    let response = sender.send_request(request).await.map_err(|e| io(&e))?;
    let status = response.status();
    let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
        .collect()
        .await
        .map_err(|e| io(&*e))?
        .to_bytes();
    driver.abort();
    Ok(Reply { status, body })
}
