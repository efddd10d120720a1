//! `[ldap]` configuration (and, where the two sections share a file or a
//! helper, `[radius]`): parsing, validation, secrets, the example file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::{Config, ConfigError};

const EXAMPLE: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/gatehouse.example.toml"
));

const FULL: &str = r#"
[ldap]
url = "ldaps://dc1.example.com:636"
ca_file = "/etc/gatehouse/ldap-ca.pem"
bind_dn = "cn=gatehouse,ou=services,dc=example,dc=com"
bind_password = "service secret"
base_dn = "dc=example,dc=com"
user_attribute = "sAMAccountName"
user_filter = "(objectClass=user)"
name_attribute = "displayName"
group_mode = "search"
group_base_dn = "ou=groups,dc=example,dc=com"
group_member_attribute = "uniqueMember"
otp_attribute = "gatehouseOtpDevices"
timeout_ms = 2000

[radius]
servers = ["127.0.0.1:1812", "[::1]:1812"]
secret = "radius secret"
timeout_ms = 500
retries = 1
nas_identifier = "gw1"
nas_ip_address = "10.0.0.1"
require_message_authenticator = false
"#;

fn error_of(text: &str) -> String {
    match Config::from_toml(text) {
        Ok(config) => panic!("accepted {config:?} from {text}"),
        Err(error) => error.to_string(),
    }
}

fn temp_file(name: &str, text: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!(
        "gatehouse-factors-test-{}-{name}",
        std::process::id()
    ));
    std::fs::write(&path, text).unwrap();
    path
}

/// Leaf keys of `section` in `text`.
fn keys_of(text: &str, section: &str) -> Vec<String> {
    let table: toml::Table = toml::from_str(text).unwrap();
    table[section].as_table().unwrap().keys().cloned().collect()
}

#[test]
fn example_file_documents_every_ldap_and_radius_key() {
    let mut config = Config::from_toml(FULL).unwrap();
    config.ldap.bind_password = None;
    config.ldap.bind_password_file = Some(PathBuf::from("/etc/gatehouse/ldap.password"));
    config.radius.secret_file = Some(PathBuf::from("/etc/gatehouse/radius.secret"));
    let text = config.to_toml();
    let mut keys = keys_of(&text, "ldap");
    keys.extend(keys_of(&text, "radius"));
    keys.extend(["bind_password".to_owned(), "secret".to_owned()]);
    assert!(keys.len() >= 26, "{keys:?}");
    for key in keys {
        let documented = EXAMPLE.lines().any(|line| {
            let line = line.strip_prefix("# ").unwrap_or(line);
            line.starts_with(&format!("{key} = "))
        });
        assert!(documented, "{key} is not in gatehouse.example.toml");
    }
}

#[test]
fn a_full_configuration_parses_round_trips_and_yields_settings() {
    let config = Config::from_toml(FULL).unwrap();
    assert_eq!(Config::from_toml(&config.to_toml()).unwrap(), config);
    assert!(config.ldap.enabled() && config.radius.enabled());

    let radius = config.radius.settings().unwrap().unwrap();
    assert_eq!(radius.servers.len(), 2);
    assert_eq!(radius.timeout, Duration::from_millis(500));
    assert_eq!(radius.retries, 1);
    assert_eq!(radius.nas.identifier.as_deref(), Some("gw1"));
    assert_eq!(radius.nas.ip_address, Some([10, 0, 0, 1].into()));
    assert!(!radius.policy.require_message_authenticator);

    // The CA file does not exist here: the settings name the key.
    let error = config.ldap.settings().unwrap_err().to_string();
    assert!(error.starts_with("ldap.ca_file: cannot read"), "{error}");
    let mut ldap = config.ldap.clone();
    ldap.ca_file = None;
    let settings = ldap.settings().unwrap().unwrap();
    assert_eq!(settings.group_base_dn, "ou=groups,dc=example,dc=com");
    assert_eq!(
        settings.service.as_ref().unwrap().1.expose(),
        "service secret"
    );
}

#[test]
fn defaults_leave_both_factors_off() {
    let config = Config::default();
    assert!(!config.ldap.enabled());
    assert!(!config.radius.enabled());
    assert!(config.ldap.settings().unwrap().is_none());
    assert!(config.radius.settings().unwrap().is_none());
    assert!(config.radius.require_message_authenticator);
}

#[test]
fn secrets_are_not_shown_by_debug() {
    let config = Config::from_toml(FULL).unwrap();
    let shown = format!("{config:?}");
    assert!(!shown.contains("service secret"), "{shown}");
    assert!(!shown.contains("radius secret"), "{shown}");
    let settings = config.radius.settings().unwrap().unwrap();
    assert!(!format!("{settings:?}").contains("radius secret"));
}

#[test]
fn bad_ldap_keys_are_named() {
    let cases = [
        ("[ldap]\nurl = \"ldap://h\"\n", "ldap.base_dn: required"),
        (
            "[ldap]\nurl = \"http://h\"\nbase_dn = \"dc=x\"\n",
            "ldap.url: invalid url",
        ),
        (
            "[ldap]\nurl = \"ldaps://h\"\nstarttls = true\nbase_dn = \"dc=x\"\n",
            "ldap.starttls: only with an ldap:// url",
        ),
        (
            "[ldap]\nbind_dn = \"cn=x\"\n",
            "ldap.bind_password: required with ldap.bind_dn",
        ),
        ("[ldap]\nbind_password = \"x\"\n", "ldap.bind_dn: required"),
        (
            "[ldap]\nbind_dn = \"cn=x\"\nbind_password = \"x\"\nbind_password_file = \"/f\"\n",
            "ldap.bind_password: set bind_password or bind_password_file, not both",
        ),
        (
            "[ldap]\nbind_dn = \"cn=x\"\nbind_password = \"\"\n",
            "ldap.bind_password: must not be empty",
        ),
        (
            "[ldap]\nuser_attribute = \"uid)(x\"\n",
            "ldap.user_attribute: invalid attribute name",
        ),
        (
            "[ldap]\nuser_filter = \"objectClass=*\"\n",
            "ldap.user_filter: invalid filter",
        ),
        (
            "[ldap]\ngroup_filter = \"(&(a=b)\"\n",
            "ldap.group_filter: invalid filter",
        ),
        (
            "[ldap]\ngroup_mode = \"nested\"\n",
            "ldap.group_mode: unknown variant `nested`",
        ),
        (
            "[ldap]\ntimeout_ms = 0\n",
            "ldap.timeout_ms: 0 is out of range",
        ),
        ("[ldap]\nport = 389\n", "ldap.port: unknown key"),
    ];
    for (text, expected) in cases {
        let message = error_of(text);
        assert!(message.starts_with(expected), "{text}: {message}");
    }
}

#[test]
fn a_missing_bind_password_file_is_a_read_error() {
    let missing = Path::new("/nonexistent/gatehouse/ldap.password");
    let text = format!(
        "[ldap]\nurl = \"ldap://127.0.0.1\"\nbase_dn = \"dc=x\"\nbind_dn = \"cn=s\"\nbind_password_file = {:?}\n",
        missing.display().to_string()
    );
    let error = Config::from_toml(&text)
        .unwrap()
        .ldap
        .settings()
        .unwrap_err();
    assert!(matches!(error, ConfigError::Read { .. }), "{error}");
}

#[test]
fn a_ca_file_without_certificates_is_refused() {
    let path = temp_file("empty-ca.pem", "not a certificate\n");
    let text = format!(
        "[ldap]\nurl = \"ldaps://127.0.0.1\"\nbase_dn = \"dc=x\"\nca_file = {:?}\n",
        path.display().to_string()
    );
    let error = Config::from_toml(&text)
        .unwrap()
        .ldap
        .settings()
        .unwrap_err();
    std::fs::remove_file(&path).unwrap();
    assert!(
        error
            .to_string()
            .starts_with("ldap.ca_file: no certificate"),
        "{error}"
    );
}
