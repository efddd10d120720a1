//! The directory form of a user's OTP devices (PROTOCOLS.md §9): one
//! `#@NAME=VALUE&,` entry per device, concatenated, in a string attribute
//! of the user's LDAP entry. Sans-IO: text in, entries out, and back.
//!
//! `VALUE` is either the clear RFC 4648 base32 secret (what other gateways
//! write, accepted on read so existing directories migrate) or Gatehouse's
//! sealed form `gh1.…` ([`crate::auth::seal`]), which [`encode`] always
//! writes. The sealed form is bound to the device name only, not to the
//! user: the attribute already belongs to one entry, and the login name a
//! user types may differ in case from the one stored.
//!
//! Refused (typed [`AttributeError`], never a panic): text that is not a
//! sequence of complete entries, bad device names, duplicate names, values
//! that are neither base32 nor a sealed secret that opens, more than
//! [`MAX_DEVICES`] entries or [`MAX_ATTRIBUTE_BYTES`] bytes.

use crate::auth::names::{DeviceName, NameError};
use crate::auth::seal::{OtpKey, SealError, is_sealed};
use crate::auth::totp::{SecretError, TotpSecret};

/// Most devices in one attribute.
pub const MAX_DEVICES: usize = 64;

/// Longest attribute value decoded, in bytes.
pub const MAX_ATTRIBUTE_BYTES: usize = 16 * 1_024;

const ENTRY_START: &str = "#@";
const ENTRY_END: &str = "&,";

/// One device: its name and secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceEntry {
    /// The device's name, unique within the attribute.
    pub name: DeviceName,
    /// The TOTP secret.
    pub secret: TotpSecret,
}

/// How an entry's secret was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretForm {
    /// Clear base32 (to be rewritten sealed).
    Clear,
    /// Sealed under the OTP key.
    Sealed,
}

/// A decoded entry and the form its secret was in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedEntry {
    /// The device.
    pub entry: DeviceEntry,
    /// Clear or sealed on read.
    pub form: SecretForm,
}

/// Why an attribute value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttributeError {
    /// Longer than [`MAX_ATTRIBUTE_BYTES`].
    #[error("otp attribute is longer than {MAX_ATTRIBUTE_BYTES} bytes")]
    TooLong,
    /// More than [`MAX_DEVICES`] entries.
    #[error("otp attribute has more than {MAX_DEVICES} devices")]
    TooManyDevices,
    /// Not `#@NAME=VALUE&,` at byte `offset`.
    #[error("otp attribute is malformed at byte {offset}, expected #@name=secret&,")]
    Malformed {
        /// Byte offset of the entry.
        offset: usize,
    },
    /// A device name that is not valid.
    #[error("otp attribute entry at byte {offset} has a bad device name")]
    Name {
        /// Byte offset of the entry.
        offset: usize,
        /// Which rule.
        #[source]
        source: NameError,
    },
    /// Two entries with one name.
    #[error("otp attribute names device {device} twice")]
    Duplicate {
        /// The name.
        device: DeviceName,
    },
    /// A clear value that is not a usable base32 secret.
    #[error("otp attribute entry {device} has a bad secret")]
    Secret {
        /// The device.
        device: DeviceName,
        /// Why.
        #[source]
        source: SecretError,
    },
    /// A sealed value that does not open.
    #[error("otp attribute entry {device} does not open")]
    Sealed {
        /// The device.
        device: DeviceName,
        /// Why.
        #[source]
        source: SealError,
    },
}

/// The associated data that binds a sealed attribute secret to its device.
pub fn seal_context(device: &DeviceName) -> Vec<u8> {
    let mut context = b"gatehouse otp attribute\0".to_vec();
    context.extend_from_slice(device.as_str().as_bytes());
    context
}

/// Writes `entries` with sealed secrets.
///
/// Errors: [`SealError::Random`] when no nonce can be drawn.
pub fn encode(entries: &[DeviceEntry], key: &OtpKey) -> Result<String, SealError> {
    let mut out = String::new();
    for entry in entries {
        let sealed = key.seal(entry.secret.as_bytes(), &seal_context(&entry.name))?;
        push_entry(&mut out, &entry.name, &sealed);
    }
    Ok(out)
}

/// Writes `entries` with clear base32 secrets: the form other gateways
/// read. Only for export and tests; [`encode`] is what the gateway stores.
pub fn encode_clear(entries: &[DeviceEntry]) -> String {
    let mut out = String::new();
    for entry in entries {
        push_entry(&mut out, &entry.name, &entry.secret.to_base32());
    }
    out
}

/// Reads an attribute value: zero or more complete entries. Sealed
/// secrets are opened with `key`; clear ones are decoded as base32.
///
/// Errors: [`AttributeError`] for the first problem found.
pub fn decode(text: &str, key: &OtpKey) -> Result<Vec<DecodedEntry>, AttributeError> {
    if text.len() > MAX_ATTRIBUTE_BYTES {
        return Err(AttributeError::TooLong);
    }
    let mut entries: Vec<DecodedEntry> = Vec::new();
    let mut offset = 0;
    while offset < text.len() {
        if entries.len() == MAX_DEVICES {
            return Err(AttributeError::TooManyDevices);
        }
        let malformed = AttributeError::Malformed { offset };
        let rest = text.get(offset..).ok_or(malformed.clone())?;
        let body = rest.strip_prefix(ENTRY_START).ok_or(malformed.clone())?;
        let end = body.find(ENTRY_END).ok_or(malformed.clone())?;
        let entry = body.get(..end).ok_or(malformed.clone())?;
        let (name, value) = entry.split_once('=').ok_or(malformed)?;
        let name =
            DeviceName::new(name).map_err(|source| AttributeError::Name { offset, source })?;
        if entries.iter().any(|e| e.entry.name == name) {
            return Err(AttributeError::Duplicate { device: name });
        }
        let (secret, form) = decode_value(&name, value, key)?;
        entries.push(DecodedEntry {
            entry: DeviceEntry { name, secret },
            form,
        });
        offset += ENTRY_START.len() + end + ENTRY_END.len();
    }
    Ok(entries)
}

fn decode_value(
    device: &DeviceName,
    value: &str,
    key: &OtpKey,
) -> Result<(TotpSecret, SecretForm), AttributeError> {
    if is_sealed(value) {
        let bytes =
            key.open(value, &seal_context(device))
                .map_err(|source| AttributeError::Sealed {
                    device: device.clone(),
                    source,
                })?;
        let secret = TotpSecret::from_bytes(&bytes).map_err(|source| AttributeError::Secret {
            device: device.clone(),
            source,
        })?;
        return Ok((secret, SecretForm::Sealed));
    }
    let secret = TotpSecret::from_base32(value).map_err(|source| AttributeError::Secret {
        device: device.clone(),
        source,
    })?;
    Ok((secret, SecretForm::Clear))
}

fn push_entry(out: &mut String, name: &DeviceName, value: &str) {
    out.push_str(ENTRY_START);
    out.push_str(name.as_str());
    out.push('=');
    out.push_str(value);
    out.push_str(ENTRY_END);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> OtpKey {
        OtpKey::from_bytes([9; 32])
    }

    fn entry(name: &str, secret: &[u8]) -> DeviceEntry {
        DeviceEntry {
            name: DeviceName::new(name).unwrap(),
            secret: TotpSecret::from_bytes(secret).unwrap(),
        }
    }

    fn two() -> Vec<DeviceEntry> {
        vec![
            entry("phone", b"12345678901234567890"),
            entry("Tablet 2", b"abcdefghijabcdefghij"),
        ]
    }

    #[test]
    fn reads_the_clear_form_of_other_gateways() {
        let text = "#@phone=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&,#@Tablet 2=MFRGGZDFMZTWQ2LKMFRGGZDFMZTWQ2LK&,";
        let decoded = decode(text, &key()).unwrap();
        assert_eq!(decoded.len(), 2);
        assert_eq!(decoded[0].entry, two()[0]);
        assert_eq!(decoded[1].entry, two()[1]);
        assert!(decoded.iter().all(|d| d.form == SecretForm::Clear));
        assert_eq!(encode_clear(&two()), text);
    }

    #[test]
    fn sealed_form_round_trips_and_hides_the_secret() {
        let text = encode(&two(), &key()).unwrap();
        assert!(!text.contains("GEZDGNBV"), "{text}");
        assert!(text.starts_with("#@phone=gh1."), "{text}");
        let decoded = decode(&text, &key()).unwrap();
        let entries: Vec<DeviceEntry> = decoded.iter().map(|d| d.entry.clone()).collect();
        assert_eq!(entries, two());
        assert!(decoded.iter().all(|d| d.form == SecretForm::Sealed));
    }

    #[test]
    fn reads_a_mix_of_clear_and_sealed_entries() {
        let mut text = encode(&two()[..1], &key()).unwrap();
        text.push_str(&encode_clear(&two()[1..]));
        let decoded = decode(&text, &key()).unwrap();
        assert_eq!(decoded[0].form, SecretForm::Sealed);
        assert_eq!(decoded[1].form, SecretForm::Clear);
    }

    #[test]
    fn empty_attribute_has_no_devices() {
        assert_eq!(decode("", &key()).unwrap(), Vec::new());
    }

    #[test]
    fn refuses_a_sealed_value_moved_to_another_device_or_key() {
        let text = encode(&two()[..1], &key()).unwrap();
        let moved = text.replacen("#@phone=", "#@laptop=", 1);
        assert!(matches!(
            decode(&moved, &key()),
            Err(AttributeError::Sealed {
                source: SealError::Tampered,
                ..
            })
        ));
        assert!(matches!(
            decode(&text, &OtpKey::from_bytes([1; 32])),
            Err(AttributeError::Sealed { .. })
        ));
    }

    #[test]
    fn refuses_malformed_entries_with_their_offset() {
        let good = encode_clear(&two()[..1]);
        let cases = [
            ("phone=GEZDGNBVGY3TQOJQ&,", 0),
            ("#@phoneGEZDGNBVGY3TQOJQ&,", 0),
            ("#@phone=GEZDGNBVGY3TQOJQ", 0),
            ("#@phone=GEZDGNBVGY3TQOJQ&", 0),
        ];
        for (bad, offset) in cases {
            assert_eq!(
                decode(bad, &key()),
                Err(AttributeError::Malformed { offset }),
                "{bad}"
            );
        }
        let trailing = format!("{good}x");
        assert_eq!(
            decode(&trailing, &key()),
            Err(AttributeError::Malformed { offset: good.len() })
        );
    }

    #[test]
    fn refuses_bad_names_duplicates_and_bad_secrets() {
        assert!(matches!(
            decode("#@=GEZDGNBVGY3TQOJQ&,", &key()),
            Err(AttributeError::Name { .. })
        ));
        let twice = encode_clear(&[two()[0].clone(), two()[0].clone()]);
        assert!(matches!(
            decode(&twice, &key()),
            Err(AttributeError::Duplicate { .. })
        ));
        assert!(matches!(
            decode("#@phone=not base32&,", &key()),
            Err(AttributeError::Secret { .. })
        ));
    }

    #[test]
    fn refuses_too_many_devices_and_too_long_values() {
        let many: Vec<DeviceEntry> = (0..=MAX_DEVICES)
            .map(|i| entry(&format!("d{i}"), b"12345678901234567890"))
            .collect();
        assert_eq!(
            decode(&encode_clear(&many), &key()),
            Err(AttributeError::TooManyDevices)
        );
        let long = "#".repeat(MAX_ATTRIBUTE_BYTES + 1);
        assert_eq!(decode(&long, &key()), Err(AttributeError::TooLong));
    }
}
