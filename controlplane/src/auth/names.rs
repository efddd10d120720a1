//! Validated names: [`UserName`] (a login name) and [`DeviceName`] (a
//! user's name for one OTP device). Both refuse control characters and
//! surrounding whitespace, so they are safe in logs, HTML and the
//! `#@name=secret&,` directory form.

use std::fmt;

/// Longest [`UserName`], in bytes.
pub const MAX_USER_NAME_BYTES: usize = 256;

/// Longest [`DeviceName`], in characters.
pub const MAX_DEVICE_NAME_CHARS: usize = 64;

/// Characters a [`DeviceName`] may not contain: the separators of the
/// directory form `#@name=secret&,`.
pub const DEVICE_NAME_FORBIDDEN: [char; 5] = ['#', '@', '=', '&', ','];

/// A login name: 1 to [`MAX_USER_NAME_BYTES`] bytes of UTF-8, no control
/// characters, no leading or trailing whitespace. Compared exactly
/// (case-sensitive).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UserName(String);

/// A device name: 1 to [`MAX_DEVICE_NAME_CHARS`] characters, no control
/// characters, none of [`DEVICE_NAME_FORBIDDEN`], no leading or trailing
/// whitespace. Unique per user.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeviceName(String);

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Empty.
    #[error("{what} is empty")]
    Empty {
        /// `user name` or `device name`.
        what: &'static str,
    },
    /// Longer than allowed.
    #[error("{what} is longer than {max}")]
    TooLong {
        /// `user name` or `device name`.
        what: &'static str,
        /// The limit, with its unit.
        max: &'static str,
    },
    /// Starts or ends with whitespace.
    #[error("{what} starts or ends with whitespace")]
    Whitespace {
        /// `user name` or `device name`.
        what: &'static str,
    },
    /// Contains a character that is not allowed.
    #[error("{what} contains {found:?}, which is not allowed")]
    Character {
        /// `user name` or `device name`.
        what: &'static str,
        /// The refused character.
        found: char,
    },
}

impl UserName {
    /// Validates a login name.
    ///
    /// Errors: [`NameError`] saying which rule failed.
    pub fn new(text: &str) -> Result<Self, NameError> {
        const WHAT: &str = "user name";
        if text.len() > MAX_USER_NAME_BYTES {
            return Err(NameError::TooLong {
                what: WHAT,
                max: "256 bytes",
            });
        }
        check_common(WHAT, text, &[])?;
        Ok(Self(text.to_owned()))
    }

    /// The name as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl DeviceName {
    /// Validates a device name.
    ///
    /// Errors: [`NameError`] saying which rule failed.
    pub fn new(text: &str) -> Result<Self, NameError> {
        const WHAT: &str = "device name";
        if text.chars().count() > MAX_DEVICE_NAME_CHARS {
            return Err(NameError::TooLong {
                what: WHAT,
                max: "64 characters",
            });
        }
        check_common(WHAT, text, &DEVICE_NAME_FORBIDDEN)?;
        Ok(Self(text.to_owned()))
    }

    /// The name as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for DeviceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for UserName {
    type Err = NameError;

    fn from_str(text: &str) -> Result<Self, NameError> {
        Self::new(text)
    }
}

impl std::str::FromStr for DeviceName {
    type Err = NameError;

    fn from_str(text: &str) -> Result<Self, NameError> {
        Self::new(text)
    }
}

fn check_common(what: &'static str, text: &str, forbidden: &[char]) -> Result<(), NameError> {
    if text.is_empty() {
        return Err(NameError::Empty { what });
    }
    if text.trim() != text {
        return Err(NameError::Whitespace { what });
    }
    if let Some(found) = text
        .chars()
        .find(|c| c.is_control() || forbidden.contains(c))
    {
        return Err(NameError::Character { what, found });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        assert_eq!(UserName::new("alice").unwrap().as_str(), "alice");
        assert_eq!(
            UserName::new("bob@corp.example").unwrap().as_str(),
            "bob@corp.example"
        );
        assert_eq!(
            DeviceName::new("Pixel 8 Pro").unwrap().as_str(),
            "Pixel 8 Pro"
        );
        assert_eq!(DeviceName::new("téléphone").unwrap().as_str(), "téléphone");
    }

    #[test]
    fn refuses_empty_padded_and_control_names() {
        assert!(matches!(UserName::new(""), Err(NameError::Empty { .. })));
        assert!(matches!(
            UserName::new(" a"),
            Err(NameError::Whitespace { .. })
        ));
        assert!(matches!(
            UserName::new("a\nb"),
            Err(NameError::Character { found: '\n', .. })
        ));
        assert!(matches!(
            UserName::new(&"a".repeat(257)),
            Err(NameError::TooLong { .. })
        ));
        assert!(UserName::new(&"a".repeat(256)).is_ok());
    }

    #[test]
    fn refuses_device_names_with_directory_form_separators() {
        for bad in ["a=b", "a&b", "a,b", "#a", "a@b"] {
            assert!(
                matches!(DeviceName::new(bad), Err(NameError::Character { .. })),
                "{bad}"
            );
        }
        assert!(DeviceName::new(&"é".repeat(64)).is_ok());
        assert!(DeviceName::new(&"é".repeat(65)).is_err());
    }
}
