//! The TLS client side of `connrate --tls` (rustls with the ring provider,
//! TLS 1.2 and 1.3, driven on tokio by tokio-rustls).
//!
//! Trust is explicit: either a PEM file of certificates to trust
//! (`--tls-ca`, e.g. the gateway's generated `<data_dir>/tls/gateway.crt`)
//! or no verification at all (`--tls-insecure`, for a peer with another
//! certificate; handshake signatures are still checked). Session resumption
//! is on by default, as a real client would have it (rustls keeps an
//! in-memory cache); `--tls-no-resumption` makes every handshake a full one.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::DigitallySignedStruct;
use rustls::SignatureScheme;
use rustls::client::Resumption;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::TlsConnector;

/// Server name sent (SNI) and verified when not given: the name in the
/// gateway's self-signed certificate.
pub const DEFAULT_SERVER_NAME: &str = "localhost";

/// Largest CA file read.
const MAX_CA_BYTES: u64 = 1 << 20;

/// How `connrate` speaks TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsOptions {
    /// PEM certificates to trust; `None` only with `insecure`.
    pub ca: Option<PathBuf>,
    /// Accept any server certificate.
    pub insecure: bool,
    /// Server name for SNI and verification.
    pub server_name: String,
    /// Resume sessions (TLS 1.3 tickets, TLS 1.2 ids) when the server offers.
    pub resumption: bool,
}

/// Why the TLS client could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// Neither a CA file nor `--tls-insecure` was given.
    #[error("--tls needs --tls-ca FILE or --tls-insecure")]
    NoTrust,
    /// The CA file cannot be read.
    #[error("cannot read {}", path.display())]
    ReadCa {
        /// The file.
        path: PathBuf,
        /// The system error.
        #[source]
        source: std::io::Error,
    },
    /// The CA file is larger than 1 MiB.
    #[error("{} is larger than 1 MiB", .0.display())]
    CaTooLarge(PathBuf),
    /// The CA file holds no usable PEM certificate.
    #[error("no usable pem certificate in {}", .0.display())]
    NoCertificate(PathBuf),
    /// The server name is neither a DNS name nor an IP address.
    #[error("{0:?} is not a server name")]
    BadServerName(String),
    /// rustls refused the configuration.
    #[error("tls configuration refused")]
    Rustls(#[from] rustls::Error),
}

/// A ready TLS client: the connector and the name it connects as.
#[derive(Clone)]
pub struct TlsClient {
    /// Wraps a TCP stream in a client handshake.
    pub connector: TlsConnector,
    /// SNI and the name verified.
    pub server_name: ServerName<'static>,
}

impl std::fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsClient")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl TlsClient {
    /// Builds the client: reads the CA file (if any), picks the verifier.
    pub fn new(options: &TlsOptions) -> Result<Self, TlsSetupError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()?;
        let mut config = if options.insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate::new(&provider)))
                .with_no_client_auth()
        } else {
            let path = options.ca.as_ref().ok_or(TlsSetupError::NoTrust)?;
            builder
                .with_root_certificates(read_roots(path)?)
                .with_no_client_auth()
        };
        if !options.resumption {
            config.resumption = Resumption::disabled();
        }
        let server_name = ServerName::try_from(options.server_name.clone())
            .map_err(|_| TlsSetupError::BadServerName(options.server_name.clone()))?;
        Ok(Self {
            connector: TlsConnector::from(Arc::new(config)),
            server_name,
        })
    }
}

fn read_roots(path: &Path) -> Result<rustls::RootCertStore, TlsSetupError> {
    let read_error = |source| TlsSetupError::ReadCa {
        path: path.to_path_buf(),
        source,
    };
    let size = std::fs::metadata(path).map_err(read_error)?.len();
    if size > MAX_CA_BYTES {
        return Err(TlsSetupError::CaTooLarge(path.to_path_buf()));
    }
    let pem = std::fs::read(path).map_err(read_error)?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|_| TlsSetupError::NoCertificate(path.to_path_buf()))?;
        roots
            .add(cert)
            .map_err(|_| TlsSetupError::NoCertificate(path.to_path_buf()))?;
    }
    if roots.is_empty() {
        return Err(TlsSetupError::NoCertificate(path.to_path_buf()));
    }
    Ok(roots)
}

/// `--tls-insecure`: any certificate is accepted; the handshake signature is
/// still verified against it, so the peer must hold the certificate's key.
#[derive(Debug)]
struct AcceptAnyCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl AcceptAnyCertificate {
    fn new(provider: &CryptoProvider) -> Self {
        Self {
            algorithms: provider.signature_verification_algorithms,
        }
    }
}

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(ca: Option<PathBuf>, insecure: bool) -> TlsOptions {
        TlsOptions {
            ca,
            insecure,
            server_name: DEFAULT_SERVER_NAME.to_owned(),
            resumption: true,
        }
    }

    #[test]
    fn refuses_to_trust_nothing() {
        assert!(matches!(
            TlsClient::new(&options(None, false)),
            Err(TlsSetupError::NoTrust)
        ));
    }

    #[test]
    fn builds_an_insecure_client_for_localhost() {
        let client = TlsClient::new(&options(None, true)).unwrap();
        assert_eq!(
            client.server_name,
            ServerName::try_from("localhost").unwrap()
        );
    }

    #[test]
    fn refuses_a_ca_file_without_certificates() {
        let path =
            std::env::temp_dir().join(format!("gatehouse-perf-ca-{}.pem", std::process::id()));
        std::fs::write(&path, "not a certificate\n").unwrap();
        let result = TlsClient::new(&options(Some(path.clone()), false));
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(result, Err(TlsSetupError::NoCertificate(_))));
        assert!(matches!(
            TlsClient::new(&options(Some(path), false)),
            Err(TlsSetupError::ReadCa { .. })
        ));
    }

    #[test]
    fn refuses_a_server_name_that_is_no_name() {
        let mut bad = options(None, true);
        bad.server_name = "not a name!".to_owned();
        assert!(matches!(
            TlsClient::new(&bad),
            Err(TlsSetupError::BadServerName(_))
        ));
    }
}
