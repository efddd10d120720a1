//! JSON request bodies: every JSON body the control plane takes over the
//! network is an object with named fields. serde reads a struct from a JSON
//! array too (`["alice", "phone"]`, fields by position), which no protocol
//! here documents; the endpoints refuse it with [`is_object`].

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
    use super::is_object;

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
