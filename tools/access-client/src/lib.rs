//! The access client's protocol pieces: HTTP requests to the gateway's web
//! side over TLS (login, `/access/v1/*`), the control stream's JSON lines,
//! and the SOCKS5-through-TLS data connection that carries one flow.
//!
//! What it refuses: a gateway certificate that does not chain to the CA
//! file given (`--ca`); there is no "accept anything" mode.

pub mod http;
pub mod socks;

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
use tokio_rustls::TlsConnector;

/// Why the client could not talk to the gateway.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The CA file could not be read or holds no certificate.
    #[error("cannot use the ca file: {0}")]
    Ca(String),
    /// The server name is not a DNS name or IP address.
    #[error("invalid server name {0:?}")]
    ServerName(String),
    /// Connecting, TLS, or the exchange failed.
    #[error("{0}")]
    Io(String),
    /// The gateway answered with an unexpected status or body.
    #[error("gateway answered {status}: {body}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The body, as text.
        body: String,
    },
    /// The gateway refused the SOCKS request (reply code).
    #[error("socks reply {0:#04x}")]
    Socks(u8),
}

/// Where the gateway is and how to trust it.
#[derive(Clone)]
pub struct Gateway {
    /// `HOST:PORT` of the gateway listener.
    pub addr: String,
    /// TLS client configuration trusting the CA file.
    pub connector: TlsConnector,
    /// The name the certificate must carry.
    pub name: ServerName<'static>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("addr", &self.addr)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// A gateway at `addr` whose certificate chains to `ca` (PEM) and
    /// names `name`.
    ///
    /// Errors: [`ClientError::Ca`], [`ClientError::ServerName`].
    pub fn new(addr: &str, ca: &Path, name: &str) -> Result<Self, ClientError> {
        let mut roots = rustls::RootCertStore::empty();
        let certs =
            CertificateDer::pem_file_iter(ca).map_err(|e| ClientError::Ca(e.to_string()))?;
        for cert in certs {
            let cert = cert.map_err(|e| ClientError::Ca(e.to_string()))?;
            roots
                .add(cert)
                .map_err(|e| ClientError::Ca(e.to_string()))?;
        }
        if roots.is_empty() {
            return Err(ClientError::Ca("no certificate in the file".to_owned()));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ClientError::Ca(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = ServerName::try_from(name.to_owned())
            .map_err(|_| ClientError::ServerName(name.to_owned()))?;
        Ok(Self {
            addr: addr.to_owned(),
            connector: TlsConnector::from(Arc::new(config)),
            name,
        })
    }

    /// A new TLS connection to the gateway.
    ///
    /// Errors: [`ClientError::Io`].
    pub async fn connect(
        &self,
    ) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, ClientError> {
        let tcp = tokio::net::TcpStream::connect(&self.addr)
            .await
            .map_err(|e| ClientError::Io(format!("connect {}: {e}", self.addr)))?;
        let _ = tcp.set_nodelay(true);
        self.connector
            .connect(self.name.clone(), tcp)
            .await
            .map_err(|e| ClientError::Io(format!("tls: {e}")))
    }
}
