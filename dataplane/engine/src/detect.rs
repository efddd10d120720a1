//! The detection driver: reads the first bytes of a connection under a
//! deadline, classifies them with [`gatehouse_wire::detect`] and hands the
//! stream on with those bytes replayed (PROTOCOLS.md §1).
//!
//! ```text
//! accept ─► detect(tcp) ─► Tls ─► TlsAcceptor::accept ─► detect(tls) ─► Socks5 ─► socks::serve ─► relay
//!                       ├► Socks5 (plaintext listener) ─► socks::serve ─► relay
//!                       ├► Cgp / Http / RawIca ─► their handlers
//!                       └► Refused { reason } ─► count, log one event, close
//! ```
//!
//! (The wiring is `gateway`'s; this module only detects.)
//!
//! The same driver runs on the TCP stream and, after TLS termination, on
//! the plaintext stream: it is generic over any [`AsyncReadRent`].
//!
//! What this module refuses to do: log (the caller logs one event per
//! refusal with [`Refused::reason`] and [`Refused::fault`]), look at bytes
//! itself (that is `wire::detect`), or limit how many connections sit in
//! detection at once (the core's accept loop owns that cap).

use std::io;
use std::time::Duration;

use gatehouse_wire::Progress;
use gatehouse_wire::detect::{DetectConfig, DetectError, Protocol, detect as classify_bytes};
use monoio::buf::IoBufMut;
use monoio::io::AsyncReadRent;

use crate::replay::Replay;
use crate::session::Fault;

/// Default deadline for the first bytes (PROTOCOLS.md §1: 5 s).
pub const DEFAULT_DETECT_DEADLINE: Duration = Duration::from_secs(5);

/// Default size of the detection read buffer. Detection needs at most
/// [`DetectConfig::max_bytes`], but one read takes whatever the client sent
/// first (a TLS ClientHello is 0.3 to 2 KiB), which saves the next handler
/// a read; the buffer is freed once the handler has drained it.
pub const DEFAULT_DETECT_READ_SIZE: usize = 2_048;

/// How a listener runs detection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detection {
    /// Time allowed from the call until a protocol is recognised.
    pub deadline: Duration,
    /// Capacity of the read buffer; raised to `config.max_bytes` if smaller.
    pub read_size: usize,
    /// Byte cap and raw-ICA switch, passed to `wire::detect`.
    pub config: DetectConfig,
}

impl Default for Detection {
    /// [`DEFAULT_DETECT_DEADLINE`], [`DEFAULT_DETECT_READ_SIZE`], the wire defaults.
    fn default() -> Self {
        Detection {
            deadline: DEFAULT_DETECT_DEADLINE,
            read_size: DEFAULT_DETECT_READ_SIZE,
            config: DetectConfig::default(),
        }
    }
}

/// Why detection refused a connection. The stream is dropped (closed).
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// The first bytes match no signature this listener accepts.
    #[error("first bytes match no known protocol")]
    UnknownProtocol,
    /// The bytes so far could only become a signature longer than the cap.
    #[error("detection needs at least {at_least} bytes, more than the cap of {max}")]
    TooManyBytes {
        /// Bytes the signature would need.
        at_least: usize,
        /// The cap, [`DetectConfig::max_bytes`].
        max: usize,
    },
    /// No decision before [`Detection::deadline`].
    #[error("no protocol recognised within {0:?}")]
    Timeout(Duration),
    /// The client closed the connection before a decision.
    #[error("client closed after {read} bytes, before detection")]
    ClosedEarly {
        /// Bytes received before the close.
        read: usize,
    },
    /// Reading from the client failed (reset, for instance).
    #[error("read failed during detection")]
    Io(#[source] io::Error),
}

impl Refused {
    /// Every value [`Refused::reason`] can return, for per-reason counters.
    pub const REASONS: [&'static str; 5] = [
        "unknown_protocol",
        "too_many_bytes",
        "detect_timeout",
        "detect_closed_early",
        "detect_read_error",
    ];

    /// Stable snake_case reason for the `reason` log field and metric labels.
    pub fn reason(&self) -> &'static str {
        match self {
            Refused::UnknownProtocol => "unknown_protocol",
            Refused::TooManyBytes { .. } => "too_many_bytes",
            Refused::Timeout(_) => "detect_timeout",
            Refused::ClosedEarly { .. } => "detect_closed_early",
            Refused::Io(_) => "detect_read_error",
        }
    }

    /// Who is at fault: always the client (the gateway only waited and read).
    pub fn fault(&self) -> Fault {
        Fault::Client
    }
}

impl From<DetectError> for Refused {
    fn from(error: DetectError) -> Self {
        match error {
            DetectError::Unrecognized => Refused::UnknownProtocol,
            DetectError::TooManyBytes { at_least, max } => Refused::TooManyBytes { at_least, max },
        }
    }
}

/// Reads from `stream` until `wire::detect` names a protocol, within
/// `detection.deadline`.
///
/// Returns the protocol and the stream wrapped in a [`Replay`] that yields
/// every byte read so far before reading on. Errors: [`Refused`]; the
/// stream is dropped with it. Cancel-safe in the sense that dropping the
/// future drops the stream.
pub async fn detect<S: AsyncReadRent>(
    mut stream: S,
    detection: &Detection,
) -> Result<(Protocol, Replay<S>), Refused> {
    let capacity = detection.read_size.max(detection.config.max_bytes).max(1);
    let reading = read_until_classified(&mut stream, capacity, &detection.config);
    match monoio::time::timeout(detection.deadline, reading).await {
        Ok(Ok((protocol, prefix))) => Ok((protocol, Replay::new(stream, prefix))),
        Ok(Err(refused)) => Err(refused),
        Err(_elapsed) => Err(Refused::Timeout(detection.deadline)),
    }
}

/// The read loop: classify what is there, read more only on "need more".
async fn read_until_classified<S: AsyncReadRent>(
    stream: &mut S,
    capacity: usize,
    config: &DetectConfig,
) -> Result<(Protocol, Vec<u8>), Refused> {
    let mut buf = Vec::with_capacity(capacity);
    loop {
        match classify_bytes(&buf, config)? {
            Progress::Done { value, .. } => return Ok((value, buf)),
            Progress::NeedMore { at_least } => {
                // `wire::detect` never asks past `max_bytes` and the buffer
                // holds at least that many, so this only guards the invariant.
                if at_least > buf.capacity() {
                    return Err(Refused::TooManyBytes {
                        at_least,
                        max: buf.capacity(),
                    });
                }
            }
        }
        let filled = buf.len();
        let (result, slice) = stream.read(buf.slice_mut(filled..)).await;
        buf = slice.into_inner();
        match result {
            Ok(0) => return Err(Refused::ClosedEarly { read: filled }),
            Ok(_) => {}
            Err(error) => return Err(Refused::Io(error)),
        }
    }
}
