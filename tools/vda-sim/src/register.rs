//! Registration with a Gatehouse broker (docs/REGISTRATION.md): the sim
//! registers its ICA and CGP addresses under a worker name, heartbeats its
//! readiness and load, registers again when the broker forgot it (answer
//! 404), and unregisters when it stops.
//!
//! The HTTP client is minimal (HTTP/1.1, `Connection: close`, `http://`
//! only): the broker listens on the internal listener.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How to register.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// The broker's base URL, `http://HOST:PORT` (a path prefix is kept).
    pub url: String,
    /// The worker name.
    pub worker: String,
    /// Seconds between heartbeats.
    pub heartbeat: Duration,
    /// The load index reported (0 to 10000).
    pub load: u32,
    /// The session count reported.
    pub sessions: u32,
    /// Most sessions (sent with protocol version 2 when set).
    pub max_sessions: Option<u32>,
}

/// Why a request to the broker failed.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    /// The URL is not `http://host:port[/prefix]`.
    #[error("broker url must be http://HOST:PORT")]
    BadUrl,
    /// The connection or the exchange failed.
    #[error("broker unreachable: {0}")]
    Io(#[from] std::io::Error),
    /// The broker answered with a status other than 200.
    #[error("broker answered {status}: {body}")]
    Status {
        /// The HTTP status.
        status: u16,
        /// The answer body.
        body: String,
    },
}

impl Registration {
    fn version(&self) -> u32 {
        if self.max_sessions.is_some() { 2 } else { 1 }
    }

    /// Registers once.
    ///
    /// Errors: [`RegisterError`].
    pub async fn register(
        &self,
        ica: Option<SocketAddr>,
        cgp: Option<SocketAddr>,
    ) -> Result<(), RegisterError> {
        let mut body = serde_json::json!({
            "version": self.version(),
            "worker": self.worker,
            "ica": ica.or(cgp).map(|a| a.to_string()),
            "cgp": cgp.map(|a| a.to_string()),
            "ready": true,
            "sessions": self.sessions,
            "load": self.load,
        });
        if let Some(max) = self.max_sessions {
            body["max_sessions"] = max.into();
        }
        self.post("/broker/v1/register", &body).await
    }

    /// Sends one heartbeat.
    ///
    /// Errors: [`RegisterError`]; a `Status` 404 means "register again".
    pub async fn heartbeat(&self) -> Result<(), RegisterError> {
        let body = serde_json::json!({
            "version": self.version(),
            "worker": self.worker,
            "ready": true,
            "sessions": self.sessions,
            "load": self.load,
        });
        self.post("/broker/v1/heartbeat", &body).await
    }

    /// Unregisters.
    ///
    /// Errors: [`RegisterError`].
    pub async fn unregister(&self) -> Result<(), RegisterError> {
        let body = serde_json::json!({ "version": self.version(), "worker": self.worker });
        self.post("/broker/v1/unregister", &body).await
    }

    /// Registers, heartbeats until `stop` holds `true`, then unregisters.
    /// Failures are logged and retried every heartbeat period.
    pub async fn run(
        self,
        ica: Option<SocketAddr>,
        cgp: Option<SocketAddr>,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut registered = false;
        loop {
            let outcome = if registered {
                self.heartbeat().await
            } else {
                self.register(ica, cgp).await
            };
            match outcome {
                Ok(()) if !registered => {
                    registered = true;
                    tracing::info!(worker = %self.worker, url = %self.url, "vda_sim_registered");
                }
                Ok(()) => tracing::debug!(worker = %self.worker, "vda_sim_heartbeat"),
                Err(RegisterError::Status { status: 404, .. }) => {
                    registered = false;
                    tracing::info!(worker = %self.worker, "vda_sim_forgotten");
                    continue;
                }
                Err(error) => tracing::warn!(error = %error, "vda_sim_register_failed"),
            }
            tokio::select! {
                _ = crate::stopped(&mut stop) => break,
                _ = tokio::time::sleep(self.heartbeat) => {}
            }
        }
        if registered && let Err(error) = self.unregister().await {
            tracing::warn!(error = %error, "vda_sim_unregister_failed");
        }
    }

    async fn post(&self, path: &str, body: &serde_json::Value) -> Result<(), RegisterError> {
        let rest = self
            .url
            .strip_prefix("http://")
            .ok_or(RegisterError::BadUrl)?;
        let (authority, prefix) = match rest.find('/') {
            Some(at) => (&rest[..at], rest[at..].trim_end_matches('/')),
            None => (rest, ""),
        };
        if authority.is_empty() {
            return Err(RegisterError::BadUrl);
        }
        let body = body.to_string();
        let exchange = async {
            let mut stream = TcpStream::connect(authority).await?;
            let request = format!(
                "POST {prefix}{path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            stream.write_all(request.as_bytes()).await?;
            let mut answer = Vec::new();
            (&mut stream)
                .take(64 * 1_024)
                .read_to_end(&mut answer)
                .await?;
            Ok::<_, std::io::Error>(answer)
        };
        let answer = tokio::time::timeout(Duration::from_secs(5), exchange)
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
        let text = String::from_utf8_lossy(&answer);
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse::<u16>().ok())
            .unwrap_or(0);
        if status == 200 {
            return Ok(());
        }
        let body = text
            .split_once("\r\n\r\n")
            .map_or("", |(_, body)| body)
            .trim()
            .to_owned();
        Err(RegisterError::Status { status, body })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]

    use super::*;
    use tokio::net::TcpListener;

    fn registration(url: &str) -> Registration {
        Registration {
            url: url.to_owned(),
            worker: "w1".to_owned(),
            heartbeat: Duration::from_secs(1),
            load: 7,
            sessions: 2,
            max_sessions: Some(4),
        }
    }

    #[tokio::test]
    async fn a_url_that_is_not_http_is_refused() {
        let outcome = registration("https://127.0.0.1:1")
            .register(None, None)
            .await;
        assert!(matches!(outcome, Err(RegisterError::BadUrl)), "{outcome:?}");
    }

    #[tokio::test]
    async fn the_register_message_is_version_2_with_a_session_limit_and_refusals_carry_the_body() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let broker = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !String::from_utf8_lossy(&request).ends_with('}') {
                let n = stream.read(&mut buf).await.unwrap();
                assert!(n > 0);
                request.extend_from_slice(&buf[..n]);
            }
            let body = r#"{"error":"unsupported-version"}"#;
            let answer = format!(
                "HTTP/1.1 400 Bad Request\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            stream.write_all(answer.as_bytes()).await.unwrap();
            String::from_utf8(request).unwrap()
        });
        let ica = "127.0.0.1:1494".parse().ok();
        let outcome = registration(&format!("http://{addr}/prefix/"))
            .register(ica, None)
            .await;
        let request = broker.await.unwrap();
        assert!(
            request.starts_with("POST /prefix/broker/v1/register HTTP/1.1\r\n"),
            "{request}"
        );
        let body: serde_json::Value =
            serde_json::from_str(request.split_once("\r\n\r\n").unwrap().1).unwrap();
        assert_eq!(body["version"], 2);
        assert_eq!(body["max_sessions"], 4);
        assert_eq!(body["ica"], "127.0.0.1:1494");
        assert_eq!(
            (body["load"].as_u64(), body["sessions"].as_u64()),
            (Some(7), Some(2))
        );
        match outcome {
            Err(RegisterError::Status { status: 400, body }) => {
                assert!(body.contains("unsupported-version"), "{body}");
            }
            other => panic!("{other:?}"),
        }
    }
}
