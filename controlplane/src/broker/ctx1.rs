//! The `ctx1` password obfuscation of NFuse `<Password encoding="ctx1">`
//! (PROTOCOLS.md §6): the password's UTF-16LE bytes, each XORed with `0xA5`
//! and with the previous output byte, each output byte written as two
//! letters `'A' + high nibble`, `'A' + low nibble`.
//!
//! It is an encoding, not encryption: anyone can reverse it. The broker
//! decodes it to check the password; it never logs either form.

/// Why a `ctx1` text was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Ctx1Error {
    /// The length is not a multiple of four letters (two bytes per UTF-16
    /// unit, two letters per byte).
    #[error("ctx1 text length is not a multiple of 4")]
    BadLength,
    /// A character outside `A`..=`P`.
    #[error("ctx1 text has a character outside A to P")]
    BadLetter,
    /// The decoded bytes are not valid UTF-16.
    #[error("ctx1 text does not decode to utf-16")]
    BadUtf16,
}

/// Encodes `password` as `ctx1` text (uppercase letters `A`..=`P`, four per
/// UTF-16 unit).
pub fn encode(password: &str) -> String {
    let mut out = String::with_capacity(password.len() * 4);
    let mut prev = 0u8;
    for unit in password.encode_utf16() {
        for byte in unit.to_le_bytes() {
            let x = byte ^ 0xA5 ^ prev;
            out.push(char::from(b'A' + (x >> 4)));
            out.push(char::from(b'A' + (x & 0x0F)));
            prev = x;
        }
    }
    out
}

/// Decodes `ctx1` text to the password.
///
/// Errors: [`Ctx1Error::BadLength`], [`Ctx1Error::BadLetter`],
/// [`Ctx1Error::BadUtf16`].
pub fn decode(text: &str) -> Result<String, Ctx1Error> {
    let letters = text.as_bytes();
    if letters.len() % 4 != 0 {
        return Err(Ctx1Error::BadLength);
    }
    let nibble = |letter: u8| match letter {
        b'A'..=b'P' => Ok(letter - b'A'),
        _ => Err(Ctx1Error::BadLetter),
    };
    let mut prev = 0u8;
    let mut bytes = Vec::with_capacity(letters.len() / 2);
    for pair in letters.chunks_exact(2) {
        let (Some(&high), Some(&low)) = (pair.first(), pair.get(1)) else {
            return Err(Ctx1Error::BadLength);
        };
        let x = (nibble(high)? << 4) | nibble(low)?;
        bytes.push(x ^ 0xA5 ^ prev);
        prev = x;
    }
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|pair| u16::from_le_bytes([pair[0], pair[1]]))
        .collect();
    String::from_utf16(&units).map_err(|_| Ctx1Error::BadUtf16)
}

#[cfg(test)]
mod tests {
    use super::*;

    // The vectors of CyberChef's "Citrix CTX1 Encode/Decode" operations
    // (public), and one computed from the published algorithm.
    const VECTORS: [(&str, &str); 3] = [
        ("Password1", "PFFAJEDBOHECJEDBODEGIMCJPOFLJKDPKLAO"),
        ("\u{e9}", "EMOJ"),
        (
            "p\u{e4}ssw\u{f6}rd\u{20ac}",
            "NFHADBJEECOHDBJEEGODLABFMCGHKGADAKIP",
        ),
    ];

    #[test]
    fn known_vectors_encode_and_decode() {
        for (plain, encoded) in VECTORS {
            assert_eq!(encode(plain), encoded, "{plain}");
            assert_eq!(decode(encoded).unwrap(), plain, "{encoded}");
        }
    }

    #[test]
    fn the_empty_password_is_the_empty_text() {
        assert_eq!(encode(""), "");
        assert_eq!(decode("").unwrap(), "");
    }

    #[test]
    fn bad_texts_are_refused_with_their_reason() {
        assert_eq!(decode("PFF"), Err(Ctx1Error::BadLength));
        assert_eq!(decode("PFFZ"), Err(Ctx1Error::BadLetter));
        assert_eq!(decode("pffa"), Err(Ctx1Error::BadLetter));
        // A lone high surrogate (0xD800) is not UTF-16.
        let lone = {
            let mut out = String::new();
            let mut prev = 0u8;
            for byte in [0x00u8, 0xD8] {
                let x = byte ^ 0xA5 ^ prev;
                out.push(char::from(b'A' + (x >> 4)));
                out.push(char::from(b'A' + (x & 0x0F)));
                prev = x;
            }
            out
        };
        assert_eq!(decode(&lone), Err(Ctx1Error::BadUtf16));
    }

    proptest::proptest! {
        #[test]
        fn any_string_round_trips_and_encodes_to_four_letters_per_unit(text in ".{0,64}") {
            let encoded = encode(&text);
            proptest::prop_assert_eq!(encoded.len(), text.encode_utf16().count() * 4);
            proptest::prop_assert!(encoded.bytes().all(|b| (b'A'..=b'P').contains(&b)));
            proptest::prop_assert_eq!(decode(&encoded).unwrap(), text);
        }

        #[test]
        fn arbitrary_text_never_panics(text in "[A-Z]{0,64}") {
            let _ = decode(&text);
        }
    }

    #[test]
    fn every_string_round_trips() {
        for text in ["a", "hunter2", "\u{1F600} emoji", "\0nul", "   "] {
            assert_eq!(decode(&encode(text)).unwrap(), text);
        }
    }
}
