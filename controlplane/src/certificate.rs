//! The gateway listener's certificate: the configured PEM files, or a
//! self-signed ECDSA P-256 certificate generated into
//! `<data_dir>/tls/gateway.{crt,key}` on first start and reused afterwards.
//!
//! The generated key is written with mode 0600 (its directory 0700), each
//! file through a temporary name and a rename, so a crash never leaves half
//! a key behind. The certificate names `localhost`, `127.0.0.1` and `::1`:
//! enough to try the gateway on one machine; an appliance configures its
//! own certificate (`[gateway.tls]`).

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use gatehouse_engine::tls::{TlsSetupError, self_signed};

use crate::config::TlsFiles;

/// Largest certificate or key file read.
pub const MAX_PEM_BYTES: u64 = 1 << 20;

/// Names in the generated certificate's subject alternative names.
pub const SELF_SIGNED_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// The certificate chain and key of the gateway listener, as PEM.
#[derive(Clone)]
pub struct GatewayCertificate {
    /// Where the chain was read from (or written to).
    pub cert_path: PathBuf,
    /// Where the key was read from (or written to).
    pub key_path: PathBuf,
    /// PEM certificate chain.
    pub cert_pem: String,
    /// PEM private key. Never logged (see the `Debug` impl).
    pub key_pem: String,
    /// Whether this start generated it.
    pub generated: bool,
}

impl std::fmt::Debug for GatewayCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayCertificate")
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path)
            .field("generated", &self.generated)
            .finish_non_exhaustive()
    }
}

/// Why the certificate could not be read or generated.
#[derive(Debug, thiserror::Error)]
pub enum CertificateError {
    /// A file or directory operation failed.
    #[error("cannot {op} {}", path.display())]
    Io {
        /// What was being done (`read`, `write`, `create directory`).
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The system error.
        #[source]
        source: std::io::Error,
    },
    /// A file is not PEM of the expected kind, or too large.
    #[error("{} is not a pem {what} (or larger than {MAX_PEM_BYTES} bytes)", path.display())]
    NotPem {
        /// The file.
        path: PathBuf,
        /// `certificate` or `private key`.
        what: &'static str,
    },
    /// Generating the key pair or the certificate failed.
    #[error("cannot generate the self-signed certificate")]
    Generate(#[source] TlsSetupError),
}

/// Loads the certificate `files` names; for [`TlsFiles::SelfSigned`],
/// generates it first when either file is missing.
///
/// Errors: [`CertificateError`] (unreadable or non-PEM files, a data
/// directory that cannot be written, a generation failure).
pub fn load_or_generate(files: &TlsFiles) -> Result<GatewayCertificate, CertificateError> {
    match files {
        TlsFiles::Configured { cert, key } => read_pair(cert, key, false),
        TlsFiles::SelfSigned { cert, key } => {
            if cert.exists() && key.exists() {
                warn_if_readable_by_others(key);
                return read_pair(cert, key, false);
            }
            generate(cert, key)?;
            read_pair(cert, key, true)
        }
    }
}

/// Generates a self-signed ECDSA P-256 certificate for
/// [`SELF_SIGNED_NAMES`] and writes it to `cert` and `key` (0600),
/// replacing whatever is there.
///
/// Errors: [`CertificateError::Generate`], [`CertificateError::Io`].
pub fn generate(cert: &Path, key: &Path) -> Result<(), CertificateError> {
    let generated = self_signed(&SELF_SIGNED_NAMES).map_err(CertificateError::Generate)?;
    for path in [cert, key] {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(io_error("create directory", dir))?;
        }
    }
    write_atomically(key, generated.key_pem.as_bytes(), 0o600)?;
    write_atomically(cert, generated.cert_pem.as_bytes(), 0o644)?;
    tracing::info!(cert = %cert.display(), key = %key.display(), "certificate_generated");
    Ok(())
}

fn read_pair(
    cert: &Path,
    key: &Path,
    generated: bool,
) -> Result<GatewayCertificate, CertificateError> {
    let cert_pem = read_pem(cert, "certificate", "CERTIFICATE-----")?;
    let key_pem = read_pem(key, "private key", "PRIVATE KEY-----")?;
    Ok(GatewayCertificate {
        cert_path: cert.to_owned(),
        key_path: key.to_owned(),
        cert_pem,
        key_pem,
        generated,
    })
}

/// Reads a PEM file and checks it has a block whose label ends in `label`.
fn read_pem(path: &Path, what: &'static str, label: &str) -> Result<String, CertificateError> {
    let not_pem = || CertificateError::NotPem {
        path: path.to_owned(),
        what,
    };
    let len = fs::metadata(path).map_err(io_error("read", path))?.len();
    if len > MAX_PEM_BYTES {
        return Err(not_pem());
    }
    let text = fs::read_to_string(path).map_err(io_error("read", path))?;
    let has_block = text
        .lines()
        .any(|line| line.starts_with("-----BEGIN ") && line.ends_with(label));
    if has_block { Ok(text) } else { Err(not_pem()) }
}

fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> Result<(), CertificateError> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    // A leftover from a crash is ours to replace.
    let _ = fs::remove_file(&temporary);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&temporary)
        .map_err(io_error("write", &temporary))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(io_error("write", &temporary))?;
    fs::rename(&temporary, path).map_err(io_error("write", path))
}

fn warn_if_readable_by_others(key: &Path) {
    if let Ok(meta) = fs::metadata(key)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            key = %key.display(),
            mode = format!("{:o}", meta.permissions().mode() & 0o777),
            "certificate_key_permissions_too_open"
        );
    }
}

fn io_error(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> CertificateError {
    let path = path.to_owned();
    move |source| CertificateError::Io { op, path, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("gatehouse-cert-test-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn generates_a_p256_certificate_with_a_private_key_file() {
        let dir = temp_dir("generate");
        let files = TlsFiles::SelfSigned {
            cert: dir.join("tls/gateway.crt"),
            key: dir.join("tls/gateway.key"),
        };
        let first = load_or_generate(&files).unwrap();
        assert!(first.generated);
        assert!(first.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(first.key_pem.contains("BEGIN PRIVATE KEY"));
        let mode = fs::metadata(&first.key_path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let pair = rcgen::KeyPair::from_pem(&first.key_pem).unwrap();
        assert!(pair.is_compatible(&rcgen::PKCS_ECDSA_P256_SHA256));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn reuses_the_certificate_of_an_earlier_start() {
        let dir = temp_dir("reuse");
        let files = TlsFiles::SelfSigned {
            cert: dir.join("gateway.crt"),
            key: dir.join("gateway.key"),
        };
        let first = load_or_generate(&files).unwrap();
        let second = load_or_generate(&files).unwrap();
        assert!(!second.generated);
        assert_eq!(first.cert_pem, second.cert_pem);
        assert_eq!(first.key_pem, second.key_pem);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn refuses_a_configured_file_that_is_not_pem() {
        let dir = temp_dir("not-pem");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("c.pem"), "hello").unwrap();
        fs::write(dir.join("k.pem"), "hello").unwrap();
        let files = TlsFiles::Configured {
            cert: dir.join("c.pem"),
            key: dir.join("k.pem"),
        };
        let error = load_or_generate(&files).unwrap_err();
        assert!(
            matches!(
                error,
                CertificateError::NotPem {
                    what: "certificate",
                    ..
                }
            ),
            "{error}"
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
