//! The echo/stream mini-protocol (Gatehouse decides; test tooling only).
//!
//! It runs on the byte stream of a raw ICA connection (after the sim's
//! detect string) and on the byte stream of each CGP channel (the payloads
//! of the DATA packets on it, in order). The client's first bytes choose the
//! mode:
//!
//! ```text
//! request = "STREAM " 1*20DIGIT LF      ; stream mode, n = the decimal number
//!         / anything else                ; echo mode
//! ```
//!
//! - **Stream**: the sim sends exactly `n` bytes of [`crate::pattern`]
//!   (offset 0 first), then ends its direction: a TCP half-close on ICA, a
//!   CHANNEL_CLOSE (reason 0) on CGP. Bytes the client sends after the
//!   request line are read and discarded.
//! - **Echo**: every byte the client sends, including the first ones, comes
//!   back unchanged and in order; when the client ends its direction, the
//!   sim ends its own.
//!
//! The sim decides as soon as the first bytes can no longer begin
//! `"STREAM "`, so an echo client sees its bytes back at once unless they
//! are a prefix of `"STREAM "` (then at its next byte or at end of input,
//! which also means echo). A line that starts `"STREAM "` but is not a
//! valid request ([`ServiceError`]) ends the connection or channel.

use gatehouse_wire::Progress;

/// The bytes that open a stream request.
pub const STREAM_VERB: &[u8] = b"STREAM ";

/// Longest request line, `LF` included: the verb, 20 digits and `LF`.
pub const MAX_REQUEST_LINE: usize = STREAM_VERB.len() + 20 + 1;

/// What the client asked for with its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceRequest {
    /// Echo every byte back; the request consumed nothing.
    Echo,
    /// Send `len` pattern bytes, then end the direction.
    Stream {
        /// How many bytes to send.
        len: u64,
    },
}

/// Why a line starting with [`STREAM_VERB`] is not a stream request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ServiceError {
    /// The length is empty, not all decimal digits, or above `u64::MAX`.
    #[error("stream length is not a decimal number below 2^64")]
    BadLength,
    /// No `LF` within [`MAX_REQUEST_LINE`] bytes.
    #[error("stream request line longer than {MAX_REQUEST_LINE} bytes")]
    LineTooLong,
}

impl ServiceRequest {
    /// Reads the request from the first bytes of the stream.
    ///
    /// Answers `Done { Echo, consumed: 0 }` once the input cannot begin
    /// with [`STREAM_VERB`], `Done { Stream, consumed }` for a complete
    /// request line (the `LF` included in `consumed`), and `NeedMore`
    /// while the input is a prefix of a request. At end of input a
    /// pending prefix means echo.
    ///
    /// # Errors
    /// [`ServiceError::BadLength`], [`ServiceError::LineTooLong`].
    pub fn decode(input: &[u8]) -> Result<Progress<ServiceRequest>, ServiceError> {
        let compared = input.len().min(STREAM_VERB.len());
        if input.get(..compared) != STREAM_VERB.get(..compared) {
            return Ok(Progress::Done {
                value: ServiceRequest::Echo,
                consumed: 0,
            });
        }
        let rest = input.get(STREAM_VERB.len()..).unwrap_or_default();
        let Some(newline) = rest.iter().position(|byte| *byte == b'\n') else {
            if input.len() >= MAX_REQUEST_LINE {
                return Err(ServiceError::LineTooLong);
            }
            return Ok(Progress::NeedMore {
                at_least: (input.len() + 1).max(STREAM_VERB.len() + 1),
            });
        };
        let digits = rest.get(..newline).unwrap_or_default();
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return Err(ServiceError::BadLength);
        }
        let len = std::str::from_utf8(digits)
            .ok()
            .and_then(|text| text.parse::<u64>().ok())
            .ok_or(ServiceError::BadLength)?;
        Ok(Progress::Done {
            value: ServiceRequest::Stream { len },
            consumed: STREAM_VERB.len() + newline + 1,
        })
    }

    /// Appends the request line: `STREAM <len>\n` for a stream, nothing for
    /// echo (any first byte other than `S` selects it).
    pub fn encode(&self, out: &mut Vec<u8>) {
        if let ServiceRequest::Stream { len } = self {
            out.extend_from_slice(STREAM_VERB);
            out.extend_from_slice(len.to_string().as_bytes());
            out.push(b'\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_stream_request_through_every_prefix() {
        let full = b"STREAM 4194304\nextra";
        let line_len = 15;
        for i in 0..line_len {
            match ServiceRequest::decode(&full[..i]).unwrap() {
                Progress::NeedMore { at_least } => {
                    assert!(at_least > i && at_least <= line_len, "prefix {i}");
                }
                other => panic!("prefix {i}: {other:?}"),
            }
        }
        for end in [line_len, full.len()] {
            assert_eq!(
                ServiceRequest::decode(&full[..end]).unwrap(),
                Progress::Done {
                    value: ServiceRequest::Stream { len: 4_194_304 },
                    consumed: line_len,
                }
            );
        }
    }

    #[test]
    fn chooses_echo_as_soon_as_the_verb_cannot_match() {
        for input in [&b"hello"[..], b"STX", b"S\x00", b"\x7f\x7fICA\x00"] {
            assert_eq!(
                ServiceRequest::decode(input).unwrap(),
                Progress::Done {
                    value: ServiceRequest::Echo,
                    consumed: 0
                },
                "{input:?}"
            );
        }
    }

    #[test]
    fn rejects_a_stream_request_without_digits() {
        for input in [
            &b"STREAM \n"[..],
            b"STREAM +5\n",
            b"STREAM 5 \n",
            b"STREAM x\n",
        ] {
            assert_eq!(
                ServiceRequest::decode(input),
                Err(ServiceError::BadLength),
                "{input:?}"
            );
        }
    }

    #[test]
    fn rejects_a_length_above_u64() {
        assert_eq!(
            ServiceRequest::decode(b"STREAM 18446744073709551616\n"),
            Err(ServiceError::BadLength)
        );
    }

    #[test]
    fn rejects_a_request_line_without_end() {
        let input = b"STREAM 0000000000000000000000000";
        assert!(input.len() >= MAX_REQUEST_LINE);
        assert_eq!(
            ServiceRequest::decode(input),
            Err(ServiceError::LineTooLong)
        );
    }

    #[test]
    fn encodes_what_it_decodes() {
        let mut out = Vec::new();
        ServiceRequest::Stream { len: u64::MAX }.encode(&mut out);
        assert!(out.len() <= MAX_REQUEST_LINE);
        assert_eq!(
            ServiceRequest::decode(&out).unwrap().done(),
            Some((ServiceRequest::Stream { len: u64::MAX }, out.len()))
        );
    }
}
