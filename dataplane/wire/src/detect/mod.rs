//! Protocol detection from the first bytes of a connection (PROTOCOLS.md §1).
//!
//! A listener does not know what a client speaks until it has read a few
//! bytes. [`detect`] peeks at them and names the [`Protocol`] whose
//! signature they start with; it never consumes anything, so the engine
//! replays the same bytes to the handler it picks. The engine owns the
//! deadline (PROTOCOLS.md: 5 s by default) and calls [`detect`] again after
//! every read; this module owns the byte cap ([`DetectConfig::max_bytes`]).
//!
//! | protocol | signature |
//! |---|---|
//! | [`Protocol::Tls`] | `16 03 xx`, `xx` in `00..=04` |
//! | [`Protocol::Cgp`] | `1A 43 47 50 2F 30 31` (`"\x1aCGP/01"`) |
//! | [`Protocol::Socks5`] | `05` |
//! | [`Protocol::Http`] | `GET `, `POST `, `HEAD `, `PUT `, `DELETE `, `OPTIONS `, `PATCH `, `CONNECT ` |
//! | [`Protocol::RawIca`] | `7F 7F 49 43 41 00`, only with [`DetectConfig::raw_ica`] |
//!
//! Gatehouse decides: the TLS record version byte may be anything from
//! `00` (SSL 3.0) to `04`. Detection classifies, it does not enforce
//! policy: rustls refuses versions it does not speak with a
//! `protocol_version` alert, which tells an old client more than a silent
//! close would. Record layers above `04` do not exist, so they are refused.
//!
//! What this module refuses to do: look past the signatures (an HTTP
//! request line, a TLS ClientHello or a SOCKS greeting is checked by its own
//! parser) and keep state between calls.

use crate::Progress;

#[cfg(test)]
mod tests;

/// Default cap on the bytes detection may wait for. The longest signature
/// (`OPTIONS `, `CONNECT `) is 8 bytes, so 16 leaves room and still stops a
/// client that trickles a long prefix.
pub const DEFAULT_MAX_DETECT_BYTES: usize = 16;

/// A protocol recognised from the first bytes of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// A TLS handshake record: terminate TLS, then detect again on the plaintext.
    Tls,
    /// CGP (session reliability); the first BIND_REQUEST follows in the same write.
    Cgp,
    /// A SOCKSv5 greeting (RFC 1928), as ICA clients send it.
    Socks5,
    /// An HTTP/1.x request line, for the control plane's web endpoints.
    Http,
    /// Raw ICA on a direct-ICA listener.
    RawIca,
}

impl Protocol {
    /// Every protocol, in a fixed order (for metric families with one label per protocol).
    pub const ALL: [Protocol; 5] = [
        Protocol::Tls,
        Protocol::Cgp,
        Protocol::Socks5,
        Protocol::Http,
        Protocol::RawIca,
    ];

    /// Stable snake_case name for the `proto` log field and metric labels.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tls => "tls",
            Protocol::Cgp => "cgp",
            Protocol::Socks5 => "socks5",
            Protocol::Http => "http",
            Protocol::RawIca => "raw_ica",
        }
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What a listener accepts during detection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetectConfig {
    /// The most bytes detection may ask for. A signature that would need more
    /// is answered with [`DetectError::TooManyBytes`]. Below 8 some HTTP
    /// methods can no longer be recognised; below 1 nothing can.
    pub max_bytes: usize,
    /// Whether raw ICA (`7F 7F 49 43 41 00`) is accepted: only on a
    /// direct-ICA listener configured for it.
    pub raw_ica: bool,
}

impl Default for DetectConfig {
    /// [`DEFAULT_MAX_DETECT_BYTES`], raw ICA off.
    fn default() -> Self {
        DetectConfig {
            max_bytes: DEFAULT_MAX_DETECT_BYTES,
            raw_ica: false,
        }
    }
}

/// Why detection refused a connection. Either way the client is at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DetectError {
    /// The bytes match no signature the listener accepts.
    #[error("first bytes match no known protocol")]
    Unrecognized,
    /// The bytes are a prefix of a signature that needs more than the cap.
    #[error("detection needs at least {at_least} bytes, more than the cap of {max}")]
    TooManyBytes {
        /// Total bytes the signature still needs.
        at_least: usize,
        /// The configured cap, [`DetectConfig::max_bytes`].
        max: usize,
    },
}

impl DetectError {
    /// Stable snake_case reason for the `reason` log field and metric labels.
    pub fn reason(&self) -> &'static str {
        match self {
            DetectError::Unrecognized => "unknown_protocol",
            DetectError::TooManyBytes { .. } => "too_many_bytes",
        }
    }
}

/// Classifies the first bytes of a connection.
///
/// `input` is everything received so far, from the first byte. Answers:
/// - `Done { value, consumed: 0 }`: `input` starts with the signature of
///   `value`; nothing is consumed, the handler gets the same bytes.
/// - `NeedMore { at_least }`: `input` is a proper prefix of at least one
///   signature; `at_least` is the length of the shortest one still possible
///   (for `P` that is `PUT `, 4), so the next decision needs that many bytes
///   in total.
///
/// Errors: [`DetectError::Unrecognized`] as soon as no signature can match
/// (one wrong byte is enough); [`DetectError::TooManyBytes`] when `at_least`
/// would exceed `config.max_bytes`. Empty input needs 1 byte. The cap only
/// limits waiting: an input that already holds a whole signature is
/// recognised whatever the cap.
pub fn detect(input: &[u8], config: &DetectConfig) -> Result<Progress<Protocol>, DetectError> {
    let mut shortest: Option<usize> = None;
    for signature in SIGNATURES {
        if signature.protocol == Protocol::RawIca && !config.raw_ica {
            continue;
        }
        match signature.matches(input) {
            Match::Full => {
                return Ok(Progress::Done {
                    value: signature.protocol,
                    consumed: 0,
                });
            }
            Match::Prefix => {
                let len = signature.bytes.len();
                shortest = Some(shortest.map_or(len, |s| s.min(len)));
            }
            Match::No => {}
        }
    }
    // An empty input is a prefix of every signature, so `shortest` is only
    // `None` when the bytes already rule every signature out.
    let at_least = shortest.ok_or(DetectError::Unrecognized)?;
    if at_least > config.max_bytes {
        return Err(DetectError::TooManyBytes {
            at_least,
            max: config.max_bytes,
        });
    }
    Ok(Progress::NeedMore { at_least })
}

/// One byte position of a signature.
#[derive(Debug, Clone, Copy)]
enum Pattern {
    /// Exactly this byte.
    Is(u8),
    /// Any byte in this inclusive range.
    Within(u8, u8),
}

impl Pattern {
    fn accepts(self, byte: u8) -> bool {
        match self {
            Pattern::Is(b) => byte == b,
            Pattern::Within(lo, hi) => (lo..=hi).contains(&byte),
        }
    }
}

/// How far `input` agrees with a signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Match {
    /// `input` starts with the whole signature.
    Full,
    /// `input` is a proper prefix of the signature.
    Prefix,
    /// Some byte differs.
    No,
}

#[derive(Debug)]
struct Signature {
    protocol: Protocol,
    bytes: &'static [Pattern],
}

impl Signature {
    fn matches(&self, input: &[u8]) -> Match {
        let agrees = self
            .bytes
            .iter()
            .zip(input)
            .all(|(pattern, &byte)| pattern.accepts(byte));
        if !agrees {
            Match::No
        } else if input.len() >= self.bytes.len() {
            Match::Full
        } else {
            Match::Prefix
        }
    }
}

/// Builds the patterns of a literal ASCII signature at compile time.
const fn literal<const N: usize>(text: &[u8; N]) -> [Pattern; N] {
    let mut out = [Pattern::Is(0); N];
    let mut i = 0;
    while i < N {
        out[i] = Pattern::Is(text[i]);
        i += 1;
    }
    out
}

// No signature is a prefix of another (their first bytes differ, and the
// three `P` methods differ in their second byte), so at most one matches.
const SIGNATURES: &[Signature] = &[
    Signature {
        protocol: Protocol::Tls,
        // ContentType handshake (22), record version 3.0 to 3.4.
        bytes: &[
            Pattern::Is(0x16),
            Pattern::Is(0x03),
            Pattern::Within(0x00, 0x04),
        ],
    },
    Signature {
        protocol: Protocol::Cgp,
        bytes: &literal(&crate::cgp::CGP_SIGNATURE),
    },
    Signature {
        protocol: Protocol::Socks5,
        bytes: &[Pattern::Is(0x05)],
    },
    Signature {
        protocol: Protocol::RawIca,
        bytes: &literal(b"\x7f\x7fICA\x00"),
    },
    Signature {
        protocol: Protocol::Http,
        bytes: &literal(b"GET "),
    },
    Signature {
        protocol: Protocol::Http,
        bytes: &literal(b"POST "),
    },
    Signature {
        protocol: Protocol::Http,
        bytes: &literal(b"HEAD "),
    },
    Signature {
        protocol: Protocol::Http,
        bytes: &literal(b"PUT "),
    },
    Signature {
        protocol: Protocol::Http,
        bytes: &literal(b"DELETE "),
    },
    Signature {
        protocol: Protocol::Http,
        bytes: &literal(b"OPTIONS "),
    },
    Signature {
        protocol: Protocol::Http,
        bytes: &literal(b"PATCH "),
    },
    Signature {
        protocol: Protocol::Http,
        bytes: &literal(b"CONNECT "),
    },
];

/// Entry points for the fuzz targets in `fuzz/`.
#[cfg(fuzzing)]
pub mod fuzz {
    use super::{DetectConfig, DetectError, Progress, detect as run};

    /// Runs detection on arbitrary bytes under both listener kinds and
    /// checks the contract: nothing consumed, `NeedMore` asks for more than
    /// it got and no more than the cap, a decision never changes when more
    /// bytes arrive, and a refusal never turns into a match.
    pub fn detect(data: &[u8]) {
        // The first byte picks the cap, so small caps are exercised too.
        let max_bytes = data.first().map_or(16, |b| usize::from(b % 20));
        for raw_ica in [false, true] {
            let config = DetectConfig { max_bytes, raw_ica };
            let full = run(data, &config);
            match &full {
                Ok(Progress::Done { consumed, .. }) => assert_eq!(*consumed, 0),
                Ok(Progress::NeedMore { at_least }) => {
                    assert!(*at_least > data.len());
                    assert!(*at_least <= max_bytes);
                }
                Err(DetectError::TooManyBytes { at_least, max }) => {
                    assert!(*at_least > data.len());
                    assert!(at_least > max);
                }
                Err(DetectError::Unrecognized) => {}
            }
            for end in 0..data.len().min(10) {
                let Some(prefix) = data.get(..end) else {
                    break;
                };
                match run(prefix, &config) {
                    Ok(Progress::Done { value, .. }) => {
                        assert_eq!(full, Ok(Progress::Done { value, consumed: 0 }));
                    }
                    Err(DetectError::Unrecognized) => {
                        assert_eq!(full, Err(DetectError::Unrecognized));
                    }
                    Ok(Progress::NeedMore { .. }) | Err(DetectError::TooManyBytes { .. }) => {}
                }
            }
        }
    }
}
