//! TLS termination with rustls (PROTOCOLS.md §1: a `16 03 0x` record is
//! terminated here, then detection runs again on the plaintext).
//!
//! [`TlsAcceptor`] holds one rustls `ServerConfig`: TLS 1.3 and 1.2, ring
//! as crypto provider, no ALPN, no client certificates, session resumption
//! by stateless tickets (TLS 1.3 and 1.2) plus a session-ID cache for TLS
//! 1.2 clients without tickets. [`TlsAcceptor::accept`] runs the handshake
//! under a deadline and returns a [`TlsStream`], which reads and writes
//! plaintext and splits into halves for a relay.
//!
//! Gatehouse decides: one acceptor (one ticket key, one cache) is shared by
//! all cores, so a client resumes whichever core the kernel picks for its
//! next connection. rustls guards the cache and the ticket key rotation
//! with its own locks; they are taken once per handshake, not per byte.
//!
//! Reload: the certificate is read through a [`CertificateSlot`] (a
//! rustls `ResolvesServerCert`) once per handshake.
//! [`TlsAcceptor::replace_certificate`] swaps it for every core at once:
//! new handshakes present the new certificate, established sessions keep
//! theirs (and resumption tickets stay valid: the ticket key is unchanged).
//!
//! What this module refuses to do: client authentication, ALPN, 0-RTT
//! early data (replayable), and logging (the caller logs the outcome).

mod stream;

pub use stream::{TlsReadHalf, TlsStream, TlsWriteHalf};

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use monoio::io::{AsyncReadRent, AsyncWriteRent};
use rustls::ServerConfig;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, ServerSessionMemoryCache};
use rustls::sign::CertifiedKey;

use crate::session::Fault;

/// Default time allowed for a TLS handshake, from the call to the last
/// handshake byte written.
pub const DEFAULT_HANDSHAKE_DEADLINE: Duration = Duration::from_secs(10);

/// Entries in the TLS 1.2 session-ID cache (about 200 bytes each).
pub const SESSION_CACHE_ENTRIES: usize = 4_096;

/// Terminates TLS on accepted streams. Cheap to clone (an `Arc`).
#[derive(Debug, Clone)]
pub struct TlsAcceptor {
    config: Arc<ServerConfig>,
    deadline: Duration,
    /// The swappable certificate (acceptors built from DER or PEM).
    slot: Option<Arc<CertificateSlot>>,
}

/// The certificate and key new handshakes present, swappable while the
/// acceptor runs. Read once per handshake (a read lock held for an `Arc`
/// clone), written by [`TlsAcceptor::replace_certificate`].
#[derive(Debug)]
pub struct CertificateSlot {
    current: parking_lot::RwLock<Arc<CertifiedKey>>,
}

impl CertificateSlot {
    /// The certificate (chain and key) new handshakes present.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current.read().clone()
    }
}

impl ResolvesServerCert for CertificateSlot {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// Checks a DER chain and key and pairs them for the ring provider.
fn certified_key(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<CertifiedKey, TlsSetupError> {
    if chain.is_empty() {
        return Err(TlsSetupError::NoCertificate);
    }
    CertifiedKey::from_der(chain, key, &rustls::crypto::ring::default_provider())
        .map_err(TlsSetupError::Rustls)
}

/// Parses a PEM chain and key.
fn parse_pem(
    chain_pem: &[u8],
    key_pem: &[u8],
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsSetupError> {
    let chain = CertificateDer::pem_slice_iter(chain_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(TlsSetupError::CertificatePem)?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(TlsSetupError::KeyPem)?;
    Ok((chain, key))
}

impl TlsAcceptor {
    /// Builds an acceptor from a certificate chain (leaf first) and its key,
    /// both PEM. The key may be PKCS#8, SEC1 (EC) or PKCS#1 (RSA).
    ///
    /// Errors: [`TlsSetupError`] naming what is wrong with which input.
    pub fn from_pem(chain_pem: &[u8], key_pem: &[u8]) -> Result<TlsAcceptor, TlsSetupError> {
        let (chain, key) = parse_pem(chain_pem, key_pem)?;
        TlsAcceptor::from_der(chain, key)
    }

    /// [`TlsAcceptor::from_pem`] on the contents of two files.
    ///
    /// Errors: [`TlsSetupError::Read`] with the path, or as `from_pem`.
    pub fn from_pem_files(chain: &Path, key: &Path) -> Result<TlsAcceptor, TlsSetupError> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| TlsSetupError::Read {
                path: path.to_path_buf(),
                source,
            })
        };
        TlsAcceptor::from_pem(&read(chain)?, &read(key)?)
    }

    /// Builds an acceptor from a DER chain (leaf first) and key.
    ///
    /// Errors: [`TlsSetupError::NoCertificate`] for an empty chain,
    /// [`TlsSetupError::Rustls`] when rustls refuses the key or the pair.
    pub fn from_der(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<TlsAcceptor, TlsSetupError> {
        let slot = Arc::new(CertificateSlot {
            current: parking_lot::RwLock::new(Arc::new(certified_key(chain, key)?)),
        });
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(TlsSetupError::Rustls)?
            .with_no_client_auth()
            .with_cert_resolver(slot.clone());
        config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE_ENTRIES);
        config.ticketer = rustls::crypto::ring::Ticketer::new().map_err(TlsSetupError::Rustls)?;
        let mut acceptor = TlsAcceptor::from_config(Arc::new(config));
        acceptor.slot = Some(slot);
        Ok(acceptor)
    }

    /// Presents `chain_pem` and `key_pem` (as [`TlsAcceptor::from_pem`]
    /// reads them) to every handshake that starts from now on, on every
    /// core sharing this acceptor; established sessions are untouched.
    ///
    /// Errors: [`TlsSetupError`] for an unusable pair (the old certificate
    /// stays), [`TlsSetupError::NotSwappable`] for an acceptor built with
    /// [`TlsAcceptor::from_config`].
    pub fn replace_certificate(
        &self,
        chain_pem: &[u8],
        key_pem: &[u8],
    ) -> Result<(), TlsSetupError> {
        let slot = self.slot.as_ref().ok_or(TlsSetupError::NotSwappable)?;
        let (chain, key) = parse_pem(chain_pem, key_pem)?;
        let fresh = Arc::new(certified_key(chain, key)?);
        *slot.current.write() = fresh;
        Ok(())
    }

    /// The swappable certificate, `None` for an acceptor built with
    /// [`TlsAcceptor::from_config`].
    pub fn certificate_slot(&self) -> Option<&Arc<CertificateSlot>> {
        self.slot.as_ref()
    }

    /// Wraps a ready rustls configuration (tests, or settings this type
    /// does not expose), with [`DEFAULT_HANDSHAKE_DEADLINE`].
    pub fn from_config(config: Arc<ServerConfig>) -> TlsAcceptor {
        TlsAcceptor {
            config,
            deadline: DEFAULT_HANDSHAKE_DEADLINE,
            slot: None,
        }
    }

    /// The same acceptor with another handshake deadline.
    pub fn with_handshake_deadline(mut self, deadline: Duration) -> TlsAcceptor {
        self.deadline = deadline;
        self
    }

    /// The rustls configuration in use.
    pub fn config(&self) -> &Arc<ServerConfig> {
        &self.config
    }

    /// Runs the server side of a TLS handshake on `stream` (usually the
    /// [`Replay`](crate::replay::Replay) that detection returned, so the
    /// ClientHello bytes it read are seen again).
    ///
    /// Returns once the handshake is complete and every handshake byte
    /// (including session tickets) is written. Plaintext the client sent
    /// right behind its Finished stays buffered in the stream.
    ///
    /// Errors: [`HandshakeError`]; the stream is dropped with it.
    pub async fn accept<S>(&self, stream: S) -> Result<TlsStream<S>, HandshakeError>
    where
        S: AsyncReadRent + AsyncWriteRent,
    {
        let handshake = async {
            let connection = rustls::ServerConnection::new(Arc::clone(&self.config))
                .map_err(HandshakeError::Setup)?;
            let mut stream = TlsStream::new(stream, connection);
            stream.handshake().await?;
            Ok(stream)
        };
        match monoio::time::timeout(self.deadline, handshake).await {
            Ok(result) => result,
            Err(_elapsed) => Err(HandshakeError::Timeout(self.deadline)),
        }
    }
}

/// Why a TLS handshake failed. The stream is dropped (closed).
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// Not finished within the acceptor's deadline.
    #[error("tls handshake not finished within {0:?}")]
    Timeout(Duration),
    /// The client closed before the handshake finished.
    #[error("client closed during the tls handshake")]
    ClosedEarly,
    /// rustls refused what the client sent (no common version or cipher
    /// suite, a malformed message, an alert from the client). The alert
    /// rustls queued for the client was sent, if the socket took it.
    #[error("tls handshake rejected")]
    Rejected(#[source] rustls::Error),
    /// Reading or writing the socket failed.
    #[error("i/o error during the tls handshake")]
    Io(#[source] io::Error),
    /// rustls could not start a connection from the configuration.
    #[error("cannot start a tls connection")]
    Setup(#[source] rustls::Error),
}

impl HandshakeError {
    /// Every value [`HandshakeError::reason`] can return.
    pub const REASONS: [&'static str; 5] = [
        "tls_timeout",
        "tls_closed_early",
        "tls_rejected",
        "tls_io",
        "tls_setup",
    ];

    /// Stable snake_case reason for the `reason` log field and metric labels.
    pub fn reason(&self) -> &'static str {
        match self {
            HandshakeError::Timeout(_) => "tls_timeout",
            HandshakeError::ClosedEarly => "tls_closed_early",
            HandshakeError::Rejected(_) => "tls_rejected",
            HandshakeError::Io(_) => "tls_io",
            HandshakeError::Setup(_) => "tls_setup",
        }
    }

    /// Who is at fault: the gateway for [`HandshakeError::Setup`], else the client.
    pub fn fault(&self) -> Fault {
        match self {
            HandshakeError::Setup(_) => Fault::Internal,
            HandshakeError::Timeout(_)
            | HandshakeError::ClosedEarly
            | HandshakeError::Rejected(_)
            | HandshakeError::Io(_) => Fault::Client,
        }
    }
}

/// Why a [`TlsAcceptor`] or a self-signed certificate could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// A PEM file could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The certificate PEM holds a malformed section.
    #[error("malformed certificate pem")]
    CertificatePem(#[source] pem::Error),
    /// The certificate PEM holds no `CERTIFICATE` section.
    #[error("no certificate in the certificate pem")]
    NoCertificate,
    /// The key PEM holds no readable private key.
    #[error("no usable private key in the key pem")]
    KeyPem(#[source] pem::Error),
    /// rustls refused the key, the pair, or the protocol versions.
    #[error("rustls refused the certificate or key")]
    Rustls(#[source] rustls::Error),
    /// rcgen could not generate a certificate.
    #[error("cannot generate a self-signed certificate")]
    Generate(#[source] rcgen::Error),
    /// The acceptor was built from a ready rustls configuration: its
    /// certificate cannot be replaced.
    #[error("this acceptor's certificate cannot be replaced")]
    NotSwappable,
}

/// A generated certificate and its key, both PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct SelfSigned {
    /// One `CERTIFICATE` section.
    pub cert_pem: String,
    /// One `PRIVATE KEY` (PKCS#8) section.
    pub key_pem: String,
}

impl std::fmt::Debug for SelfSigned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SelfSigned")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// Generates a self-signed ECDSA P-256 certificate for `hostnames` (DNS
/// names or IP addresses, as subject alternative names; common name
/// "Gatehouse self-signed gateway"), for the embedded default listener and
/// tests. Validity: rcgen's default (1975 to 4096).
///
/// Errors: [`TlsSetupError::Generate`] for a name rcgen cannot encode.
pub fn self_signed(hostnames: &[&str]) -> Result<SelfSigned, TlsSetupError> {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(TlsSetupError::Generate)?;
    let names: Vec<String> = hostnames.iter().map(|name| (*name).to_owned()).collect();
    let mut params = rcgen::CertificateParams::new(names).map_err(TlsSetupError::Generate)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Gatehouse self-signed gateway");
    let certificate = params.self_signed(&pair).map_err(TlsSetupError::Generate)?;
    Ok(SelfSigned {
        cert_pem: certificate.pem(),
        key_pem: pair.serialize_pem(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(acceptor: &TlsAcceptor) -> Vec<u8> {
        let slot = acceptor.certificate_slot().unwrap();
        slot.current().cert[0].as_ref().to_vec()
    }

    #[test]
    fn a_replaced_certificate_is_what_the_next_handshake_presents() {
        let a = self_signed(&["localhost"]).unwrap();
        let b = self_signed(&["localhost"]).unwrap();
        let acceptor = TlsAcceptor::from_pem(a.cert_pem.as_bytes(), a.key_pem.as_bytes()).unwrap();
        let shared = acceptor.clone();
        let before = leaf(&acceptor);
        acceptor
            .replace_certificate(b.cert_pem.as_bytes(), b.key_pem.as_bytes())
            .unwrap();
        assert_ne!(leaf(&shared), before, "clones share the slot");
    }

    #[test]
    fn a_mismatched_pair_is_refused_and_the_old_certificate_stays() {
        let a = self_signed(&["localhost"]).unwrap();
        let b = self_signed(&["localhost"]).unwrap();
        let acceptor = TlsAcceptor::from_pem(a.cert_pem.as_bytes(), a.key_pem.as_bytes()).unwrap();
        let before = leaf(&acceptor);
        let refused = acceptor.replace_certificate(b.cert_pem.as_bytes(), a.key_pem.as_bytes());
        assert!(
            matches!(refused, Err(TlsSetupError::Rustls(_))),
            "{refused:?}"
        );
        let garbage = acceptor.replace_certificate(b"not pem", b.key_pem.as_bytes());
        assert!(garbage.is_err());
        assert_eq!(leaf(&acceptor), before);
    }

    #[test]
    fn an_acceptor_from_a_ready_config_cannot_swap_its_certificate() {
        let a = self_signed(&["localhost"]).unwrap();
        let built = TlsAcceptor::from_pem(a.cert_pem.as_bytes(), a.key_pem.as_bytes()).unwrap();
        let wrapped = TlsAcceptor::from_config(built.config().clone());
        let refused = wrapped.replace_certificate(a.cert_pem.as_bytes(), a.key_pem.as_bytes());
        assert!(matches!(refused, Err(TlsSetupError::NotSwappable)));
    }
}
