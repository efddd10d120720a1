//! JSON request bodies: every JSON body the control plane takes over the
//! network is an object with named fields. serde reads a struct from a JSON
//! array too (`["alice", "phone"]`, fields by position), which no protocol
//! here documents; the endpoints parse with [`from_object`] (the REST API,
//! which names the failing field, checks [`is_object`] itself).

use serde::de::{DeserializeOwned, Error as _};

/// The message for a body that is not a JSON object.
pub const NOT_AN_OBJECT: &str = "expected a JSON object";

/// Parses `body` as a `T` read from a JSON object.
///
/// Errors: [`NOT_AN_OBJECT`] when `body` is not an object ([`is_object`]),
/// else serde_json's own error.
pub fn from_object<T: DeserializeOwned>(body: &[u8]) -> Result<T, serde_json::Error> {
    if !is_object(body) {
        return Err(serde_json::Error::custom(NOT_AN_OBJECT));
    }
    serde_json::from_slice(body)
}

/// Whether `body` starts, after JSON whitespace (RFC 8259: space, tab, line
/// feed, carriage return), with `{`. A body that passes may still fail to
/// parse; one that does not is refused before parsing.
pub fn is_object(body: &[u8]) -> bool {
    body.iter()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        .is_some_and(|b| *b == b'{')
}

#[cfg(test)]
mod tests {
    use super::{NOT_AN_OBJECT, from_object, is_object};

    #[derive(Debug, serde::Deserialize)]
    struct Pair {
        a: u32,
        b: String,
    }

    #[test]
    fn from_object_reads_objects_and_refuses_arrays() {
        let pair: Pair = from_object(br#" {"a": 1, "b": "x"}"#).unwrap();
        assert_eq!((pair.a, pair.b.as_str()), (1, "x"));
        // serde_json alone reads this array as a Pair, by position.
        assert!(serde_json::from_slice::<Pair>(br#"[1, "x"]"#).is_ok());
        let error = from_object::<Pair>(br#"[1, "x"]"#).unwrap_err();
        assert_eq!(error.to_string(), NOT_AN_OBJECT);
        let error = from_object::<Pair>(br#"{"a": 1}"#).unwrap_err();
        assert!(error.to_string().contains("missing field `b`"), "{error}");
    }

    #[test]
    fn only_objects_pass() {
        for body in [&b"{}"[..], b" \r\n\t{\"a\": 1}", b"{not json"] {
            assert!(is_object(body), "{}", String::from_utf8_lossy(body));
        }
        for body in [
            &b""[..],
            b"   ",
            b"[\"a\"]",
            b"\"a\"",
            b"null",
            b"1",
            b"\x0c{}",
        ] {
            assert!(!is_object(body), "{}", String::from_utf8_lossy(body));
        }
    }
}
