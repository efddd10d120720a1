//! Authentication factors that the gateway owns (PROTOCOLS.md §7, §9):
//! the local user directory, TOTP devices, and the texts users and
//! directories exchange with it.
//!
//! - [`names`]: validated user and device names.
//! - [`password`]: Argon2id hashing; [`local`]: the local user directory
//!   in the store (no user enumeration through errors or timing).
//! - [`totp`]: RFC 6238 codes and verdicts, sans-IO, with replay refusal.
//! - [`otpauth`]: `otpauth://totp/` URIs (write and parse) and their QR
//!   code PNG.
//! - [`seal`]: the OTP key and ChaCha20-Poly1305 sealing of secrets at
//!   rest; [`attribute`]: the `#@name=secret&,` LDAP attribute form.
//! - [`devices`]: enrol, list, remove and check TOTP devices.
//! - [`cli`]: `gatehouse user ...`.
//! - [`fuzz`]: entry points for the parsers of outside input.
//!
//! What it refuses to do: log a password, code or secret (their `Debug`
//! impls print `..`), say whether a user exists, or accept a TOTP code
//! twice. The web login flow, LDAP and RADIUS live elsewhere and call in.

pub mod attribute;
pub mod cli;
pub mod devices;
pub mod local;
pub mod names;
pub mod otpauth;
pub mod password;
pub mod seal;
pub mod totp;

/// Fuzz entry points: each takes arbitrary bytes and must not panic. The
/// libFuzzer targets call these.
pub mod fuzz {
    use super::attribute;
    use super::otpauth::OtpauthUri;
    use super::seal::OtpKey;

    /// Parses `data` as an `otpauth://` URI; whatever parses must write
    /// back to a URI that parses to the same value.
    pub fn otpauth_uri(data: &[u8]) {
        let Ok(text) = std::str::from_utf8(data) else {
            return;
        };
        let Ok(uri) = OtpauthUri::parse(text) else {
            return;
        };
        // "Issuer: account" loses the spaces after the colon by design.
        if uri.issuer.is_some() && uri.account.starts_with(' ') {
            return;
        }
        let again = OtpauthUri::parse(&uri.to_string());
        assert_eq!(again.as_ref(), Ok(&uri), "otpauth round trip");
    }

    /// Decodes `data` as a `#@name=secret&,` attribute value under a fixed
    /// key; whatever decodes must encode (clear and sealed) and decode back
    /// to the same devices.
    pub fn otp_attribute(data: &[u8]) {
        let Ok(text) = std::str::from_utf8(data) else {
            return;
        };
        let key = OtpKey::from_bytes([0x42; 32]);
        let Ok(decoded) = attribute::decode(text, &key) else {
            return;
        };
        let entries: Vec<attribute::DeviceEntry> = decoded.into_iter().map(|d| d.entry).collect();
        let clear = attribute::encode_clear(&entries);
        let back: Vec<_> = attribute::decode(&clear, &key)
            .map(|d| d.into_iter().map(|d| d.entry).collect())
            .unwrap_or_default();
        assert_eq!(back, entries, "clear attribute round trip");
        if let Ok(sealed) = attribute::encode(&entries, &key) {
            let back: Vec<_> = attribute::decode(&sealed, &key)
                .map(|d| d.into_iter().map(|d| d.entry).collect())
                .unwrap_or_default();
            assert_eq!(back, entries, "sealed attribute round trip");
        }
    }

    #[cfg(test)]
    mod tests {
        use proptest::prelude::*;

        use super::*;

        proptest! {
            #[test]
            fn otpauth_parser_survives_arbitrary_bytes(data in proptest::collection::vec(any::<u8>(), 0..512)) {
                otpauth_uri(&data);
            }

            #[test]
            fn otpauth_parser_survives_uri_shaped_text(
                label in "[A-Za-z0-9 :%@.&=?/+]{0,40}",
                query in "[A-Za-z0-9 :%@.&=?/+]{0,80}",
            ) {
                otpauth_uri(format!("otpauth://totp/{label}?secret=GEZDGNBVGY3TQOJQ&{query}").as_bytes());
            }

            #[test]
            fn attribute_decoder_survives_arbitrary_bytes(data in proptest::collection::vec(any::<u8>(), 0..512)) {
                otp_attribute(&data);
            }

            #[test]
            fn attribute_decoder_survives_entry_shaped_text(
                entries in proptest::collection::vec(("[A-Za-z0-9 #@=&,.]{0,12}", "[A-Z2-7=.a-z]{0,40}"), 0..5),
            ) {
                let text: String = entries.iter().map(|(n, v)| format!("#@{n}={v}&,")).collect();
                otp_attribute(text.as_bytes());
            }
        }

        #[test]
        fn fuzz_entry_points_accept_valid_inputs() {
            otpauth_uri(b"otpauth://totp/Gatehouse:alice?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Gatehouse");
            otp_attribute(b"#@phone=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&,");
        }
    }
}
