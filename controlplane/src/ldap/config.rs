//! `[ldap]`: where the directory is, how users and groups are found, and
//! which attribute holds the OTP devices.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::directory::LdapSettings;
use crate::config::{ConfigError, Secret, in_range, read_secret_file};

/// `[ldap]`. LDAP is off while `url` is unset (the local user directory is
/// used instead).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LdapSection {
    /// `ldap://host[:port]` or `ldaps://host[:port]`. Default: none (LDAP
    /// off).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Upgrade an `ldap://` connection with StartTLS before binding.
    /// Default `false`.
    pub starttls: bool,
    /// PEM file of the CAs that sign the server's certificate (`ldaps://`
    /// or StartTLS). Default: none (the system's trusted roots).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// DN of the service account that searches users and groups and writes
    /// the OTP attribute. Default: none (anonymous search; the OTP
    /// attribute then cannot be written).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bind_dn: Option<String>,
    /// Password of `bind_dn`. Set this or `bind_password_file` with
    /// `bind_dn`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bind_password: Option<Secret>,
    /// File holding the password of `bind_dn` (one trailing line end
    /// ignored), read at start. Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bind_password_file: Option<PathBuf>,
    /// Where users are searched (subtree). Required with `url`. Default
    /// empty.
    pub base_dn: String,
    /// The attribute that holds the login name: `uid` (OpenLDAP) or
    /// `sAMAccountName` (Active Directory). Default `uid`.
    pub user_attribute: String,
    /// An extra filter a user entry must match, ANDed with the login name,
    /// e.g. `(objectClass=person)`. Default `(objectClass=*)`.
    pub user_filter: String,
    /// The attribute shown as the user's name. Default `cn`.
    pub name_attribute: String,
    /// How group membership is read. Default `member-of`.
    pub group_mode: GroupMode,
    /// Where groups are searched with `group_mode = "search"` (subtree).
    /// Default empty: `base_dn`.
    pub group_base_dn: String,
    /// The filter a group entry must match with `group_mode = "search"`,
    /// ANDed with the membership test. Default
    /// `(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames)(objectClass=group))`.
    pub group_filter: String,
    /// The group attribute that lists member DNs with `group_mode =
    /// "search"`: `member` or `uniqueMember`. Default `member`.
    pub group_member_attribute: String,
    /// The group attribute used as the group's name with `group_mode =
    /// "search"`. Default `cn`.
    pub group_name_attribute: String,
    /// The user attribute that holds the OTP devices (`#@name=secret&,`
    /// repeated): a string attribute the service account may write.
    /// Default `userParameters` (Active Directory).
    pub otp_attribute: String,
    /// Timeout of the connection and of each operation, in milliseconds
    /// (1..=60000). Default 5000.
    pub timeout_ms: u64,
}

/// `ldap.group_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GroupMode {
    /// `member-of`: the user entry's `memberOf` values (Active Directory;
    /// OpenLDAP with the memberof overlay).
    MemberOf,
    /// `search`: groups under `group_base_dn` whose
    /// `group_member_attribute` is the user's DN.
    Search,
    /// `none`: groups are not read.
    None,
}

impl Default for LdapSection {
    fn default() -> Self {
        Self {
            url: None,
            starttls: false,
            ca_file: None,
            bind_dn: None,
            bind_password: None,
            bind_password_file: None,
            base_dn: String::new(),
            user_attribute: "uid".to_owned(),
            user_filter: "(objectClass=*)".to_owned(),
            name_attribute: "cn".to_owned(),
            group_mode: GroupMode::MemberOf,
            group_base_dn: String::new(),
            group_filter:
                "(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames)(objectClass=group))"
                    .to_owned(),
            group_member_attribute: "member".to_owned(),
            group_name_attribute: "cn".to_owned(),
            otp_attribute: "userParameters".to_owned(),
            timeout_ms: 5_000,
        }
    }
}

impl LdapSection {
    /// Whether LDAP is configured.
    pub fn enabled(&self) -> bool {
        self.url.is_some()
    }

    /// Checks forms and pairs of keys; called by
    /// [`crate::config::Config::validate`].
    ///
    /// Errors: [`ConfigError::Invalid`] naming the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: String| {
            Err(ConfigError::Invalid {
                key: format!("ldap.{key}"),
                message,
            })
        };
        in_range("ldap.timeout_ms", self.timeout_ms, 1, 60_000)?;
        for (key, value) in [
            ("user_attribute", &self.user_attribute),
            ("name_attribute", &self.name_attribute),
            ("group_member_attribute", &self.group_member_attribute),
            ("group_name_attribute", &self.group_name_attribute),
            ("otp_attribute", &self.otp_attribute),
        ] {
            if !is_attribute_name(value) {
                return invalid(
                    key,
                    format!("invalid attribute name {value:?}, expected letters, digits and '-'"),
                );
            }
        }
        for (key, value) in [
            ("user_filter", &self.user_filter),
            ("group_filter", &self.group_filter),
        ] {
            if !value.starts_with('(') || ldap3::parse_filter(value).is_err() {
                return invalid(
                    key,
                    format!("invalid filter {value:?}, expected an RFC 4515 filter in parentheses"),
                );
            }
        }
        match (&self.bind_dn, &self.bind_password, &self.bind_password_file) {
            (_, Some(_), Some(_)) => {
                return invalid(
                    "bind_password",
                    "set bind_password or bind_password_file, not both".to_owned(),
                );
            }
            (Some(dn), None, None) if !dn.is_empty() => {
                // A DN without a password is an unauthenticated bind, which
                // servers treat as anonymous (RFC 4513 §5.1.2).
                return invalid(
                    "bind_password",
                    "required with ldap.bind_dn (or ldap.bind_password_file)".to_owned(),
                );
            }
            (Some(dn), _, _) if dn.is_empty() => {
                return invalid("bind_dn", "must not be empty when set".to_owned());
            }
            (None, Some(_), _) | (None, _, Some(_)) => {
                return invalid(
                    "bind_dn",
                    "required with ldap.bind_password or ldap.bind_password_file".to_owned(),
                );
            }
            (_, Some(password), _) if password.expose().is_empty() => {
                return invalid("bind_password", "must not be empty".to_owned());
            }
            _ => {}
        }
        let Some(url) = &self.url else {
            return Ok(());
        };
        let scheme = url.split_once("://").map(|(scheme, _)| scheme);
        let host = url
            .parse::<axum::http::Uri>()
            .ok()
            .and_then(|uri| uri.host().map(str::to_owned));
        if !matches!(scheme, Some("ldap" | "ldaps")) || host.is_none_or(|h| h.is_empty()) {
            return invalid(
                "url",
                format!("invalid url {url:?}, expected ldap://host[:port] or ldaps://host[:port]"),
            );
        }
        if self.starttls && scheme == Some("ldaps") {
            return invalid(
                "starttls",
                "only with an ldap:// url (ldaps:// is TLS already)".to_owned(),
            );
        }
        if self.base_dn.is_empty() {
            return invalid("base_dn", "required when ldap.url is set".to_owned());
        }
        Ok(())
    }

    /// The directory settings, reading `bind_password_file` and `ca_file`.
    /// `None` when LDAP is off.
    ///
    /// Errors: [`ConfigError`] for an unreadable file, a CA file without
    /// certificates, or a section that does not validate.
    pub fn settings(&self) -> Result<Option<LdapSettings>, ConfigError> {
        let Some(url) = &self.url else {
            return Ok(None);
        };
        self.validate()?;
        let password = match (&self.bind_password, &self.bind_password_file) {
            (Some(password), _) => Some(password.clone()),
            (None, Some(path)) => Some(read_secret_file("ldap.bind_password_file", path)?),
            (None, None) => None,
        };
        let service = self.bind_dn.clone().zip(password);
        let tls = match &self.ca_file {
            Some(path) => Some(tls_config(path)?),
            None => None,
        };
        let group_base_dn = if self.group_base_dn.is_empty() {
            self.base_dn.clone()
        } else {
            self.group_base_dn.clone()
        };
        Ok(Some(LdapSettings {
            url: url.clone(),
            starttls: self.starttls,
            tls,
            service,
            base_dn: self.base_dn.clone(),
            user_attribute: self.user_attribute.clone(),
            user_filter: self.user_filter.clone(),
            name_attribute: self.name_attribute.clone(),
            group_mode: self.group_mode,
            group_base_dn,
            group_filter: self.group_filter.clone(),
            group_member_attribute: self.group_member_attribute.clone(),
            group_name_attribute: self.group_name_attribute.clone(),
            otp_attribute: self.otp_attribute.clone(),
            timeout: Duration::from_millis(self.timeout_ms),
        }))
    }
}

/// An attribute description: a name (letter, then letters, digits, '-') or
/// a dotted OID (RFC 4512 §1.4).
fn is_attribute_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    match bytes.first() {
        Some(first) if first.is_ascii_alphabetic() => bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-'),
        Some(first) if first.is_ascii_digit() => {
            bytes.iter().all(|b| b.is_ascii_digit() || *b == b'.')
        }
        _ => false,
    }
}

/// A rustls client configuration trusting the certificates of `path`.
fn tls_config(path: &std::path::Path) -> Result<Arc<rustls::ClientConfig>, ConfigError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;

    let invalid = |message: String| ConfigError::Invalid {
        key: "ldap.ca_file".to_owned(),
        message,
    };
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|error| invalid(format!("cannot read {}: {error}", path.display())))?;
    for cert in certs {
        let cert =
            cert.map_err(|error| invalid(format!("bad pem in {}: {error}", path.display())))?;
        roots
            .add(cert)
            .map_err(|error| invalid(format!("bad certificate in {}: {error}", path.display())))?;
    }
    if roots.is_empty() {
        return Err(invalid(format!("no certificate in {}", path.display())));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| invalid(format!("tls: {error}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
