//! The RFC 1929 user/password sub-negotiation:
//! `01 ULEN UNAME PLEN PASSWD`, answered with `01 STATUS`.

use super::{Socks5Error, USERPASS_VERSION, push_short_field};
use crate::Progress;

/// A decoded user/password message, borrowing from the input.
///
/// The gateway ignores both fields (the STA ticket in the request is the
/// credential), but decodes them to find where the request starts.
/// `Debug` shows the user name's length and never the password.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct UserPass<'a> {
    /// `UNAME`, 0 to 255 bytes.
    pub username: &'a [u8],
    /// `PASSWD`, 0 to 255 bytes.
    pub password: &'a [u8],
}

impl std::fmt::Debug for UserPass<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserPass")
            .field("username_len", &self.username.len())
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Decodes `01 ULEN UNAME PLEN PASSWD` (RFC 1929 §2).
///
/// Call only after selecting [`super::Method::UserPass`]. `Done.consumed` is
/// `3 + ULEN + PLEN`; the request follows. Zero-length fields are accepted
/// (the RFC asks for 1 to 255, but the contents are ignored). While
/// incomplete, `NeedMore.at_least` is the shortest length the bytes so far
/// allow (3 before `ULEN` is known).
///
/// Errors: [`Socks5Error::BadUserPassVersion`] on a first byte other than `01`.
pub fn decode_userpass(input: &[u8]) -> Result<Progress<UserPass<'_>>, Socks5Error> {
    match input.first() {
        Some(&USERPASS_VERSION) => {}
        Some(&other) => return Err(Socks5Error::BadUserPassVersion(other)),
        None => return Ok(Progress::NeedMore { at_least: 3 }),
    }
    let Some(&ulen) = input.get(1) else {
        return Ok(Progress::NeedMore { at_least: 3 });
    };
    let plen_at = 2 + usize::from(ulen);
    let Some(&plen) = input.get(plen_at) else {
        return Ok(Progress::NeedMore {
            at_least: plen_at + 1,
        });
    };
    let total = plen_at + 1 + usize::from(plen);
    match (input.get(2..plen_at), input.get(plen_at + 1..total)) {
        (Some(username), Some(password)) => Ok(Progress::Done {
            value: UserPass { username, password },
            consumed: total,
        }),
        _ => Ok(Progress::NeedMore { at_least: total }),
    }
}

/// The server's answer to a user/password message: `01 00` on success,
/// `01 01` on failure (RFC 1929: any non-zero status is a failure, and the
/// client must close).
pub fn encode_userpass_status(success: bool) -> [u8; 2] {
    [USERPASS_VERSION, if success { 0x00 } else { 0x01 }]
}

/// Appends `01 ULEN UNAME PLEN PASSWD` (client side).
///
/// Errors: [`Socks5Error::FieldTooLong`] when a field exceeds 255 bytes;
/// `out` is then left as it was.
pub fn encode_userpass(
    username: &[u8],
    password: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), Socks5Error> {
    let start = out.len();
    out.push(USERPASS_VERSION);
    let written = push_short_field("username", username, out)
        .and_then(|()| push_short_field("password", password, out));
    if written.is_err() {
        out.truncate(start);
    }
    written
}
