//! OTP secrets at rest: sealed with ChaCha20-Poly1305 (RFC 8439) under a
//! 32-byte [`OtpKey`] read from the file `auth.otp_key_file` names, or
//! generated into `<data_dir>/otp.key` (mode 0600) on first use.
//!
//! Sealed form: `gh1.` + base64url without padding of `nonce (12 bytes) ||
//! ciphertext || tag (16 bytes)`, a random nonce per seal. The associated
//! data binds a sealed secret to where it is stored (the store binds user
//! and device, the directory form the device), so a sealed value copied to
//! another row does not open. The `.` cannot occur in base32, which is how a
//! reader tells a sealed secret from a clear one.
//!
//! The key file holds the key as 64 hex digits (surrounding whitespace
//! ignored). Losing it makes every stored OTP device unusable; back it up
//! with the database.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use zeroize::Zeroizing;

/// Prefix of a sealed secret.
pub const SEALED_PREFIX: &str = "gh1.";

/// Bytes of an [`OtpKey`].
pub const KEY_BYTES: usize = 32;

/// Name of the generated key file in the data directory.
pub const GENERATED_KEY_FILE: &str = "otp.key";

const NONCE_BYTES: usize = 12;
const TAG_BYTES: usize = 16;

/// Longest sealed text [`OtpKey::open`] decodes.
const MAX_SEALED_CHARS: usize = 1_024;

/// The key that seals OTP secrets. Wiped on drop, never printed.
#[derive(Clone)]
pub struct OtpKey(Zeroizing<[u8; KEY_BYTES]>);

/// Why a sealed secret did not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// Not `gh1.` + base64url of at least a nonce and a tag.
    #[error("sealed secret is malformed")]
    Malformed,
    /// Authentication failed: another key, other associated data, or a
    /// modified value.
    #[error("sealed secret does not open with this key (wrong key or tampered)")]
    Tampered,
    /// The OS random generator failed.
    #[error("cannot draw random bytes from the operating system")]
    Random,
}

/// Why the key could not be read or generated.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// A file operation failed.
    #[error("cannot {op} {}", path.display())]
    Io {
        /// `read`, `write`, `create directory`.
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The system error.
        #[source]
        source: std::io::Error,
    },
    /// The file does not hold 64 hex digits.
    #[error("{} does not hold a key (expected 64 hex digits)", path.display())]
    Form {
        /// The file.
        path: PathBuf,
    },
    /// The OS random generator failed.
    #[error("cannot draw random bytes from the operating system")]
    Random,
}

impl OtpKey {
    /// A key from its 32 bytes.
    pub fn from_bytes(bytes: [u8; KEY_BYTES]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// A new random key from the OS CSPRNG.
    ///
    /// Errors: [`KeyFileError::Random`].
    pub fn generate() -> Result<Self, KeyFileError> {
        let mut bytes = Zeroizing::new([0_u8; KEY_BYTES]);
        getrandom::fill(bytes.as_mut_slice()).map_err(|_| KeyFileError::Random)?;
        Ok(Self(bytes))
    }

    /// Reads the key from `configured` if given (the file must exist), else
    /// from `<data_dir>/otp.key`, generating that file (0600, directory
    /// 0700) when it is missing.
    ///
    /// Errors: [`KeyFileError`].
    pub fn load_or_generate(
        configured: Option<&Path>,
        data_dir: &Path,
    ) -> Result<Self, KeyFileError> {
        if let Some(path) = configured {
            return Self::read(path);
        }
        let path = data_dir.join(GENERATED_KEY_FILE);
        if path.exists() {
            warn_if_readable_by_others(&path);
            return Self::read(&path);
        }
        let key = Self::generate()?;
        key.write_new(&path)?;
        tracing::info!(path = %path.display(), "otp_key_generated");
        Ok(key)
    }

    /// Reads a key file (64 hex digits).
    ///
    /// Errors: [`KeyFileError::Io`], [`KeyFileError::Form`].
    pub fn read(path: &Path) -> Result<Self, KeyFileError> {
        let form = || KeyFileError::Form {
            path: path.to_owned(),
        };
        let io = |source| KeyFileError::Io {
            op: "read",
            path: path.to_owned(),
            source,
        };
        if fs::metadata(path).map_err(io)?.len() > 1_024 {
            return Err(form());
        }
        let text = Zeroizing::new(fs::read_to_string(path).map_err(io)?);
        let bytes = Zeroizing::new(
            data_encoding::HEXLOWER_PERMISSIVE
                .decode(text.trim().as_bytes())
                .map_err(|_| form())?,
        );
        let mut key = Zeroizing::new([0_u8; KEY_BYTES]);
        if bytes.len() != KEY_BYTES {
            return Err(form());
        }
        key.copy_from_slice(&bytes);
        Ok(Self(key))
    }

    /// Seals `secret`, binding it to `context` (associated data).
    ///
    /// Errors: [`SealError::Random`] when no nonce can be drawn.
    pub fn seal(&self, secret: &[u8], context: &[u8]) -> Result<String, SealError> {
        let mut nonce = [0_u8; NONCE_BYTES];
        getrandom::fill(&mut nonce).map_err(|_| SealError::Random)?;
        Ok(self.seal_with_nonce(secret, context, nonce))
    }

    /// [`OtpKey::seal`] with a given nonce; a nonce must never repeat under
    /// one key, so only [`OtpKey::seal`] and tests call it.
    fn seal_with_nonce(&self, secret: &[u8], context: &[u8], nonce: [u8; NONCE_BYTES]) -> String {
        let cipher = self.cipher();
        let payload = Payload {
            msg: secret,
            aad: context,
        };
        // Encryption fails only for messages longer than 256 GiB; secrets
        // are at most a few hundred bytes.
        let sealed = cipher
            .encrypt(&Nonce::from(nonce), payload)
            .unwrap_or_default();
        let mut out = Vec::with_capacity(NONCE_BYTES + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        format!(
            "{SEALED_PREFIX}{}",
            data_encoding::BASE64URL_NOPAD.encode(&out)
        )
    }

    /// Opens a sealed secret made with the same key and `context`.
    ///
    /// Errors: [`SealError::Malformed`], [`SealError::Tampered`].
    pub fn open(&self, sealed: &str, context: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError> {
        let body = sealed
            .strip_prefix(SEALED_PREFIX)
            .filter(|body| body.len() <= MAX_SEALED_CHARS)
            .ok_or(SealError::Malformed)?;
        let bytes = data_encoding::BASE64URL_NOPAD
            .decode(body.as_bytes())
            .map_err(|_| SealError::Malformed)?;
        if bytes.len() < NONCE_BYTES + TAG_BYTES {
            return Err(SealError::Malformed);
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_BYTES);
        let nonce: [u8; NONCE_BYTES] = nonce.try_into().map_err(|_| SealError::Malformed)?;
        let payload = Payload {
            msg: ciphertext,
            aad: context,
        };
        self.cipher()
            .decrypt(&Nonce::from(nonce), payload)
            .map(Zeroizing::new)
            .map_err(|_| SealError::Tampered)
    }

    fn cipher(&self) -> ChaCha20Poly1305 {
        ChaCha20Poly1305::new(&(*self.0).into())
    }

    fn write_new(&self, path: &Path) -> Result<(), KeyFileError> {
        let io = |op, path: &Path| {
            let path = path.to_owned();
            move |source| KeyFileError::Io { op, path, source }
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(io("create directory", dir))?;
        }
        let mut temporary = path.as_os_str().to_owned();
        temporary.push(".tmp");
        let temporary = PathBuf::from(temporary);
        // A leftover from a crash is ours to replace.
        let _ = fs::remove_file(&temporary);
        let mut text = Zeroizing::new(data_encoding::HEXLOWER.encode(self.0.as_slice()));
        text.push('\n');
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temporary)
            .map_err(io("write", &temporary))?;
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(io("write", &temporary))?;
        fs::rename(&temporary, path).map_err(io("write", path))
    }
}

impl fmt::Debug for OtpKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OtpKey(..)")
    }
}

/// Whether `value` is in the sealed form (else it is taken as clear
/// base32).
pub fn is_sealed(value: &str) -> bool {
    value.starts_with(SEALED_PREFIX)
}

fn warn_if_readable_by_others(path: &Path) {
    if let Ok(meta) = fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            path = %path.display(),
            mode = format!("{:o}", meta.permissions().mode() & 0o777),
            "otp_key_permissions_too_open"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> OtpKey {
        OtpKey::from_bytes([byte; KEY_BYTES])
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("gatehouse-seal-test-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn seals_and_opens_with_the_same_key_and_context() {
        let sealed = key(1).seal(b"secret bytes", b"alice\0phone").unwrap();
        assert!(is_sealed(&sealed));
        let opened = key(1).open(&sealed, b"alice\0phone").unwrap();
        assert_eq!(opened.as_slice(), b"secret bytes");
    }

    #[test]
    fn two_seals_of_one_secret_differ() {
        let a = key(1).seal(b"secret", b"").unwrap();
        let b = key(1).seal(b"secret", b"").unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn refuses_another_key_another_context_or_a_flipped_bit() {
        let sealed = key(1).seal_with_nonce(b"secret", b"ctx", [7; 12]);
        assert_eq!(key(2).open(&sealed, b"ctx"), Err(SealError::Tampered));
        assert_eq!(key(1).open(&sealed, b"other"), Err(SealError::Tampered));
        let mut bytes = data_encoding::BASE64URL_NOPAD
            .decode(&sealed.as_bytes()[SEALED_PREFIX.len()..])
            .unwrap();
        for at in [0, 12, bytes.len() - 1] {
            bytes[at] ^= 0x01;
            let tampered = format!(
                "{SEALED_PREFIX}{}",
                data_encoding::BASE64URL_NOPAD.encode(&bytes)
            );
            assert_eq!(
                key(1).open(&tampered, b"ctx"),
                Err(SealError::Tampered),
                "byte {at}"
            );
            bytes[at] ^= 0x01;
        }
    }

    #[test]
    fn refuses_malformed_sealed_text() {
        for bad in [
            "",
            "gh1.",
            "gh1.!!!!",
            "gh2.AAAA",
            "GEZDGNBV",
            "gh1.AAAAAAAA",
        ] {
            assert_eq!(key(1).open(bad, b""), Err(SealError::Malformed), "{bad:?}");
        }
        let long = format!("gh1.{}", "A".repeat(2_000));
        assert_eq!(key(1).open(&long, b""), Err(SealError::Malformed));
    }

    #[test]
    fn generates_a_private_key_file_once_and_reads_it_back() {
        let dir = temp_dir("generate");
        let first = OtpKey::load_or_generate(None, &dir).unwrap();
        let path = dir.join(GENERATED_KEY_FILE);
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(fs::read_to_string(&path).unwrap().trim().len(), 64);
        let second = OtpKey::load_or_generate(None, &dir).unwrap();
        let sealed = first.seal(b"x", b"").unwrap();
        assert_eq!(second.open(&sealed, b"").unwrap().as_slice(), b"x");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn reads_a_configured_key_file_and_refuses_a_bad_one() {
        let dir = temp_dir("configured");
        fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.key");
        fs::write(&good, format!("  {}\n", "AB".repeat(32))).unwrap();
        let loaded = OtpKey::load_or_generate(Some(&good), &dir).unwrap();
        let sealed = key(0xab).seal(b"x", b"").unwrap();
        assert_eq!(loaded.open(&sealed, b"").unwrap().as_slice(), b"x");
        assert!(!dir.join(GENERATED_KEY_FILE).exists());
        let bad = dir.join("bad.key");
        fs::write(&bad, "abcd\n").unwrap();
        assert!(matches!(OtpKey::read(&bad), Err(KeyFileError::Form { .. })));
        assert!(matches!(
            OtpKey::read(&dir.join("missing.key")),
            Err(KeyFileError::Io { .. })
        ));
        fs::remove_dir_all(&dir).unwrap();
    }
}
