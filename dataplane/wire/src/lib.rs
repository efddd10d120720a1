//! Sans-IO wire codecs for the Gatehouse data plane.
//!
//! Everything here takes bytes (or typed values) and returns decisions or
//! bytes. There are no sockets, no async, no clocks and no global state, so
//! every codec is unit-tested with byte vectors and fuzzed (see `fuzz/`).
//!
//! Modules, with the `shared/design/PROTOCOLS.md` section each implements:
//! - [`detect`]: classify the first bytes of a connection (§1).
//! - [`socks5`]: SOCKSv5 as ICA clients speak it, RFC 1928/1929 (§2).
//! - [`ticket`]: the STA ticket text `;VER;STA_ID;TICKET` (§3).
//! - [`cgp`]: CGP framing, BIND and channel packets (§4).
//! - [`ica`]: `.ica` launch files, writer and parser (§5).
//! - [`proxy`]: the PROXY protocol v2 header the data plane puts in front of
//!   an HTTP connection it forwards to the control plane.
//! - [`rendezvous`]: the preamble naming a server-to-client flow on a data
//!   connection to a connector's rendezvous listener.
//!
//! Every incremental parser answers with [`Progress`]: a complete value and
//! the bytes it consumed, or "need more" with the total length it needs at
//! least. A malformed input is a typed error of the module, never a panic.
//! Each module carries a `#[cfg(fuzzing)] pub mod fuzz` with the entry points
//! the targets in `fuzz/` call.
//!
//! What this crate refuses to do: I/O, logging (callers log the outcomes it
//! returns) and `unsafe` code.
#![forbid(unsafe_code)]

pub mod cgp;
pub mod detect;
pub mod ica;
pub mod proxy;
pub mod rendezvous;
pub mod socks5;
pub mod ticket;

/// The answer of an incremental parser that did not reject its input.
///
/// Call order: feed the bytes received so far (from the start of the
/// message); on [`Progress::NeedMore`] read until the buffer holds at least
/// `at_least` bytes and call again with the whole buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum Progress<T> {
    /// A complete value and how many bytes of the input it used.
    Done {
        /// The decoded value.
        value: T,
        /// Bytes of the input the value used; the rest belongs to what follows.
        consumed: usize,
    },
    /// The input is a valid prefix; the parser needs at least `at_least`
    /// bytes in total (always more than it was given) before it can answer.
    NeedMore {
        /// Total input length needed before the next call can progress.
        at_least: usize,
    },
}

impl<T> Progress<T> {
    /// Maps the value of a complete answer, keeping `consumed`.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Progress<U> {
        match self {
            Progress::Done { value, consumed } => Progress::Done {
                value: f(value),
                consumed,
            },
            Progress::NeedMore { at_least } => Progress::NeedMore { at_least },
        }
    }

    /// The value, if complete.
    pub fn done(self) -> Option<(T, usize)> {
        match self {
            Progress::Done { value, consumed } => Some((value, consumed)),
            Progress::NeedMore { .. } => None,
        }
    }
}
