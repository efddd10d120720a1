//! Entry points for the fuzz targets in `fuzz/`: each runs one decoder on
//! arbitrary bytes and checks its contract (`NeedMore` asks for more than it
//! got; `Done` consumed at most the input; every proper prefix of a decoded
//! message needs more, never fails; trailing bytes change nothing) and that
//! a decoded value re-encodes to exactly the bytes it consumed.

use std::fmt::Debug;

use super::{
    Socks5Error, decode_greeting, decode_reply, decode_request, decode_userpass, encode_reply,
    encode_request, encode_userpass,
};
use crate::Progress;

/// Fuzzes [`decode_greeting`].
pub fn greeting(data: &[u8]) {
    if let Some((greeting, consumed)) = check_contract(data, decode_greeting) {
        let methods = data.get(2..consumed).unwrap_or_default();
        assert!(methods.iter().all(|&code| greeting.offers(code)));
        assert!(greeting.codes().all(|code| methods.contains(&code)));
        // The set survives a round trip through its ascending codes.
        let mut again = vec![super::SOCKS5_VERSION, 0];
        again.extend(greeting.codes());
        again[1] = u8::try_from(again.len() - 2).unwrap_or(u8::MAX);
        let decoded = decode_greeting(&again).ok().and_then(Progress::done);
        assert_eq!(decoded.map(|(g, _)| g), Some(greeting));
    }
}

/// Fuzzes [`decode_userpass`].
pub fn userpass(data: &[u8]) {
    if let Some((value, consumed)) = check_contract(data, decode_userpass) {
        let mut out = Vec::new();
        assert_eq!(
            encode_userpass(value.username, value.password, &mut out),
            Ok(())
        );
        assert_eq!(Some(out.as_slice()), data.get(..consumed));
    }
}

/// Fuzzes [`decode_request`].
pub fn request(data: &[u8]) {
    if let Some((value, consumed)) = check_contract(data, decode_request) {
        let mut out = Vec::new();
        let encoded = encode_request(value.command, &value.address, value.port, &mut out);
        assert_eq!(encoded, Ok(()));
        assert_eq!(Some(out.as_slice()), data.get(..consumed));
    }
    if let Err(error) = decode_request(data) {
        // Every request-stage refusal but a foreign version earns a reply.
        let is_version = matches!(error, Socks5Error::BadVersion(_));
        assert_eq!(error.reply().is_none(), is_version);
    }
}

/// Fuzzes [`decode_reply`].
pub fn reply(data: &[u8]) {
    if let Some(((reply, bound), consumed)) = check_contract(data, decode_reply) {
        let out = encode_reply(reply, bound);
        assert_eq!(Some(out.as_bytes()), data.get(..consumed));
    }
}

/// Checks the incremental-parser contract; returns the decoded value, if any.
fn check_contract<'a, T: PartialEq + Debug>(
    data: &'a [u8],
    decode: impl Fn(&'a [u8]) -> Result<Progress<T>, Socks5Error>,
) -> Option<(T, usize)> {
    match decode(data) {
        Err(_) => None,
        Ok(Progress::NeedMore { at_least }) => {
            assert!(at_least > data.len());
            None
        }
        Ok(Progress::Done { value, consumed }) => {
            assert!(consumed > 0 && consumed <= data.len());
            let message = data.get(..consumed).unwrap_or_default();
            let again = decode(message);
            assert_eq!(
                again
                    .ok()
                    .and_then(Progress::done)
                    .as_ref()
                    .map(|(v, c)| (v, *c)),
                Some((&value, consumed))
            );
            for end in 0..consumed {
                let prefix = message.get(..end).unwrap_or_default();
                match decode(prefix) {
                    Ok(Progress::NeedMore { at_least }) => {
                        assert!(at_least > end && at_least <= consumed);
                    }
                    other => panic!("prefix of {end} bytes answered {other:?}"),
                }
            }
            Some((value, consumed))
        }
    }
}
