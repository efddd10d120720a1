//! `[radius]`: the servers, secret and timing of the RADIUS factor.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::access::{NasIdentity, ResponsePolicy, SharedSecret};
use super::client::RadiusSettings;
use crate::config::{ConfigError, Secret, in_range, read_secret_file};

/// `[radius]`. RADIUS is off while `servers` is empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RadiusSection {
    /// Servers as `IP:PORT` (usually port 1812), tried in order: the next
    /// one when one does not answer. Default: none (RADIUS off).
    #[serde(with = "socket_addr_list")]
    pub servers: Vec<SocketAddr>,
    /// The shared secret. Set this or `secret_file` when `servers` is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<Secret>,
    /// A file holding the shared secret (one trailing line end ignored),
    /// read when the client starts. Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_file: Option<PathBuf>,
    /// How long to wait for an answer to one transmission, in milliseconds
    /// (1..=60000). Default 3000.
    pub timeout_ms: u64,
    /// Retransmissions to each server after the first try, same identifier
    /// and authenticator (0..=10). Default 2.
    pub retries: u32,
    /// NAS-Identifier sent in every request: 1 to 253 bytes, or empty for
    /// none (then `nas_ip_address` is required). Default `gatehouse`.
    pub nas_identifier: String,
    /// NAS-IP-Address sent in every request. Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nas_ip_address: Option<Ipv4Addr>,
    /// Refuse responses without Message-Authenticator (the BlastRADIUS
    /// mitigation; servers patched for CVE-2024-3596 always send it).
    /// Default `true`; `false` only for older servers such as FreeRADIUS
    /// before 3.2.5.
    pub require_message_authenticator: bool,
}

impl Default for RadiusSection {
    fn default() -> Self {
        Self {
            servers: Vec::new(),
            secret: None,
            secret_file: None,
            timeout_ms: 3_000,
            retries: 2,
            nas_identifier: "gatehouse".to_owned(),
            nas_ip_address: None,
            require_message_authenticator: true,
        }
    }
}

impl RadiusSection {
    /// Checks ranges and pairs of keys; called by
    /// [`crate::config::Config::validate`].
    ///
    /// Errors: [`ConfigError::Invalid`] naming the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: &str| {
            Err(ConfigError::Invalid {
                key: key.to_owned(),
                message: message.to_owned(),
            })
        };
        in_range("radius.timeout_ms", self.timeout_ms, 1, 60_000)?;
        in_range("radius.retries", u64::from(self.retries), 0, 10)?;
        if self.nas_identifier.len() > 253 {
            return invalid("radius.nas_identifier", "longer than 253 bytes");
        }
        if self.nas_identifier.is_empty() && self.nas_ip_address.is_none() {
            return invalid(
                "radius.nas_identifier",
                "empty, so radius.nas_ip_address is required (a request needs one of them)",
            );
        }
        match (&self.secret, &self.secret_file) {
            (Some(_), Some(_)) => invalid("radius.secret", "set secret or secret_file, not both"),
            (Some(secret), None) if secret.expose().is_empty() => {
                invalid("radius.secret", "must not be empty")
            }
            (None, None) if !self.servers.is_empty() => invalid(
                "radius.secret",
                "required when radius.servers is set (or radius.secret_file)",
            ),
            _ => Ok(()),
        }
    }

    /// Whether RADIUS is configured.
    pub fn enabled(&self) -> bool {
        !self.servers.is_empty()
    }

    /// The client settings, reading `secret_file` if that is where the
    /// secret is. `None` when RADIUS is off.
    ///
    /// Errors: [`ConfigError`] for an unreadable or empty secret file, or a
    /// section that does not validate.
    pub fn settings(&self) -> Result<Option<RadiusSettings>, ConfigError> {
        if !self.enabled() {
            return Ok(None);
        }
        self.validate()?;
        let secret = match (&self.secret, &self.secret_file) {
            (Some(secret), _) => secret.clone(),
            (None, Some(path)) => read_secret_file("radius.secret_file", path)?,
            (None, None) => {
                return Err(ConfigError::Invalid {
                    key: "radius.secret".to_owned(),
                    message: "required when radius.servers is set".to_owned(),
                });
            }
        };
        let secret =
            SharedSecret::new(secret.expose().as_bytes()).map_err(|e| ConfigError::Invalid {
                key: "radius.secret".to_owned(),
                message: e.to_string(),
            })?;
        Ok(Some(RadiusSettings {
            servers: self.servers.clone(),
            secret,
            timeout: Duration::from_millis(self.timeout_ms),
            retries: self.retries,
            nas: NasIdentity {
                identifier: Some(self.nas_identifier.clone()).filter(|name| !name.is_empty()),
                ip_address: self.nas_ip_address,
            },
            policy: ResponsePolicy {
                require_message_authenticator: self.require_message_authenticator,
            },
        }))
    }
}

/// `Vec<SocketAddr>` as `["IP:PORT", ...]` with an error that quotes the
/// value.
mod socket_addr_list {
    use std::net::SocketAddr;

    use serde::ser::SerializeSeq;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub(super) fn serialize<S: Serializer>(
        addrs: &[SocketAddr],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(addrs.len()))?;
        for addr in addrs {
            seq.serialize_element(&addr.to_string())?;
        }
        seq.end()
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<SocketAddr>, D::Error> {
        Vec::<String>::deserialize(deserializer)?
            .iter()
            .map(|text| {
                text.parse().map_err(|_| {
                    D::Error::custom(format!(
                        "invalid socket address {text:?}, expected IP:PORT such as 10.0.0.5:1812"
                    ))
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn error_of(text: &str) -> String {
        match Config::from_toml(text) {
            Ok(config) => panic!("accepted {config:?} from {text}"),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn bad_radius_keys_are_named() {
        let cases = [
            (
                "[radius]\nservers = [\"127.0.0.1:1812\"]\n",
                "radius.secret: required when radius.servers is set",
            ),
            (
                "[radius]\nservers = [\"radius.example.com\"]\nsecret = \"s\"\n",
                "radius.servers: invalid socket address \"radius.example.com\"",
            ),
            (
                "[radius]\nsecret = \"s\"\nsecret_file = \"/f\"\n",
                "radius.secret: set secret or secret_file, not both",
            ),
            (
                "[radius]\nsecret = \"\"\n",
                "radius.secret: must not be empty",
            ),
            (
                "[radius]\ntimeout_ms = 60001\n",
                "radius.timeout_ms: 60001 is out of range",
            ),
            (
                "[radius]\nretries = 11\n",
                "radius.retries: 11 is out of range",
            ),
            (
                "[radius]\nnas_identifier = \"\"\n",
                "radius.nas_identifier: empty, so radius.nas_ip_address is required",
            ),
            (
                "[radius]\nnas_ip_address = \"::1\"\n",
                "radius.nas_ip_address: invalid",
            ),
        ];
        for (text, expected) in cases {
            let message = error_of(text);
            assert!(message.starts_with(expected), "{text}: {message}");
        }
    }

    #[test]
    fn secret_files_lose_one_line_end_and_must_not_be_empty() {
        let path = std::env::temp_dir().join(format!(
            "gatehouse-radius-secret-test-{}",
            std::process::id()
        ));
        std::fs::write(&path, "s3cret\r\n").unwrap();
        let text = format!(
            "[radius]\nservers = [\"127.0.0.1:1812\"]\nsecret_file = {:?}\n",
            path.display().to_string()
        );
        let settings = Config::from_toml(&text)
            .unwrap()
            .radius
            .settings()
            .unwrap()
            .unwrap();
        let expected = SharedSecret::new(b"s3cret".to_vec()).unwrap();
        assert_eq!(settings.secret, expected);

        std::fs::write(&path, "\n").unwrap();
        let error = Config::from_toml(&text)
            .unwrap()
            .radius
            .settings()
            .unwrap_err();
        std::fs::remove_file(&path).unwrap();
        assert!(
            matches!(&error, ConfigError::Invalid { key, .. } if key == "radius.secret_file"),
            "{error}"
        );
    }
}
