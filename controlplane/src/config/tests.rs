//! Defaults, the example file, and errors that name their key.

use std::path::PathBuf;

use super::*;

const EXAMPLE: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/gatehouse.example.toml"
));

fn error_of(text: &str) -> String {
    match Config::from_toml(text) {
        Ok(config) => panic!("accepted {config:?} from {text}"),
        Err(error) => error.to_string(),
    }
}

/// Dotted paths of every leaf value of a TOML table.
fn leaf_keys(table: &toml::Table, prefix: &str, out: &mut Vec<String>) {
    for (key, value) in table {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            toml::Value::Table(inner) => leaf_keys(inner, &path, out),
            _ => out.push(path),
        }
    }
}

/// A configuration with every optional key set.
fn full() -> Config {
    let mut config = Config::default();
    config.gateway.tls.cert = Some(PathBuf::from("/etc/gatehouse/gateway.crt"));
    config.gateway.tls.key = Some(PathBuf::from("/etc/gatehouse/gateway.key"));
    config.sta.remote.insert(
        "STA02".parse().unwrap(),
        StaUrl::parse("http://10.0.0.2:8080/scripts/ctxsta.dll").unwrap(),
    );
    config.server_to_client = toml::from_str(
        "dns_listen = \"127.0.0.1:5353\"\n[[pools]]\nname = \"hq\"\nlocation = \"hq\"\ncidr = \"10.77.0.0/16\"\n\
         connectors = [\"c1\"]\nusers = [\"alice\"]\ngroups = [\"eng\"]\n\
         [[apps]]\nname = \"rdp\"\ndescription = \"d\"\nservers = [\"10.1.0.0/16\"]\n\
         ports = [3389]\nprotocol = \"tcp\"\n",
    )
    .unwrap();
    config
}

fn temp_file(name: &str, text: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!(
        "gatehouse-config-test-{}-{name}.toml",
        std::process::id()
    ));
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn default_round_trips_through_toml() {
    let text = Config::default().to_toml();
    assert_eq!(Config::from_toml(&text).unwrap(), Config::default());
    let text = full().to_toml();
    assert_eq!(Config::from_toml(&text).unwrap(), full());
}

#[test]
fn empty_file_is_the_default() {
    assert_eq!(Config::from_toml("").unwrap(), Config::default());
}

#[test]
fn defaults_are_the_embedded_ones() {
    let config = Config::default();
    assert_eq!(config.gateway.listen.to_string(), "127.0.0.1:8443");
    assert_eq!(config.admin.listen.to_string(), "127.0.0.1:8080");
    assert!(!config.gateway.plaintext);
    assert_eq!(config.gateway.detect_timeout_ms, 5_000);
    assert_eq!(config.sta.id.as_str(), "STA01");
    assert_eq!(config.sta.limits(), StaLimits::default());
    assert_eq!(
        config.tls_files(),
        TlsFiles::SelfSigned {
            cert: PathBuf::from("gatehouse-data/tls/gateway.crt"),
            key: PathBuf::from("gatehouse-data/tls/gateway.key"),
        }
    );
    assert_eq!(config.validate().map_err(|e| e.to_string()), Ok(()));
}

#[test]
fn example_file_loads_and_equals_the_defaults() {
    let path = temp_file("example", EXAMPLE);
    let loaded = load(&path);
    std::fs::remove_file(&path).unwrap();
    assert_eq!(loaded.unwrap(), Config::default());
}

#[test]
fn example_file_documents_every_key() {
    let mut keys = Vec::new();
    let table: toml::Table = toml::from_str(&full().to_toml()).unwrap();
    leaf_keys(&table, "", &mut keys);
    assert!(keys.len() > 20, "{keys:?}");
    for key in keys {
        let leaf = key.rsplit('.').next().unwrap();
        let documented = EXAMPLE.lines().any(|line| {
            let line = line.strip_prefix("# ").unwrap_or(line);
            line.starts_with(&format!("{leaf} = "))
        });
        assert!(documented, "{key} is not in gatehouse.example.toml");
    }
}

#[test]
fn unknown_keys_are_rejected_with_their_name() {
    let message = error_of("[gateway]\nlisen = \"127.0.0.1:1\"\n");
    assert!(
        message.starts_with("gateway.lisen: unknown key"),
        "{message}"
    );
    assert!(message.contains("`listen`"), "{message}");
    assert!(message.contains("line 2, column 1"), "{message}");
    let message = error_of("colour = 1\n");
    assert!(message.starts_with("colour: unknown key"), "{message}");
    let message = error_of("[sta.tls]\ncert = \"x\"\n");
    assert!(message.starts_with("sta.tls: unknown key"), "{message}");
}

#[test]
fn bad_values_are_rejected_with_their_key() {
    let cases = [
        (
            "[gateway]\nlisten = \"foo\"\n",
            "gateway.listen: invalid socket address \"foo\"",
        ),
        ("[admin]\nlisten = 8080\n", "admin.listen: invalid type"),
        (
            "[gateway]\nplaintext = \"yes\"\n",
            "gateway.plaintext: invalid type",
        ),
        (
            "[engine]\ndriver = \"epoll\"\n",
            "engine.driver: unknown variant `epoll`",
        ),
        ("[engine]\ncores = -1\n", "engine.cores: invalid value"),
        (
            "[sta]\nid = \"bad id\"\n",
            "sta.id: invalid sta id \"bad id\"",
        ),
        (
            "[sta]\nid = \"ABCDEFGHIJKLMNOPQ\"\n",
            "sta.id: invalid sta id",
        ),
        (
            "[sta.remote]\nSTA02 = \"https://x/\"\n",
            "sta.remote.STA02: invalid sta url \"https://x/\"",
        ),
        (
            "[sta.remote]\nSTA02 = 5\n",
            "sta.remote.STA02: invalid type",
        ),
        (
            "[sta.remote]\n\"a;b\" = \"http://x/\"\n",
            "sta.remote: invalid sta id \"a;b\"",
        ),
    ];
    for (text, expected) in cases {
        let message = error_of(text);
        assert!(
            message.starts_with(expected),
            "{message:?} should start with {expected:?}"
        );
    }
}

#[test]
fn out_of_range_and_inconsistent_values_are_rejected_with_their_key() {
    let cases = [
        (
            "[sta]\nticket_ttl_secs = 0\n",
            "sta.ticket_ttl_secs: 0 is out of range, expected 1 to 86400",
        ),
        (
            "[sta]\nrefreshable_ttl_secs = 90000\n",
            "sta.refreshable_ttl_secs: 90000 is out of range",
        ),
        (
            "[sta]\nmax_tickets = 0\n",
            "sta.max_tickets: 0 is out of range",
        ),
        ("[sta]\nid = \"\"\n", "sta.id: must not be empty"),
        (
            "[sta.remote]\nSTA01 = \"http://x/\"\n",
            "sta.remote.STA01: is this gateway's own sta.id",
        ),
        (
            "[gateway]\ndetect_timeout_ms = 0\n",
            "gateway.detect_timeout_ms: 0 is out of range",
        ),
        (
            "[gateway.tls]\ncert = \"a.crt\"\n",
            "gateway.tls.key: required",
        ),
        (
            "[gateway.tls]\nkey = \"a.key\"\n",
            "gateway.tls.cert: required",
        ),
        (
            "[gateway]\nplaintext = true\n[gateway.tls]\ncert = \"a\"\nkey = \"b\"\n",
            "gateway.tls: a plaintext listener takes no certificate",
        ),
        (
            "[admin]\nlisten = \"127.0.0.1:8443\"\n",
            "admin.listen: same address as gateway.listen",
        ),
        (
            "[engine]\ncores = 5000\n",
            "engine.cores: 5000 is out of range",
        ),
        (
            "[engine]\nmax_connections_per_core = 10\nmax_pending_handshakes_per_core = 11\n",
            "engine.max_pending_handshakes_per_core: 11 is out of range, expected 1 to 10",
        ),
        (
            "[engine]\ncopy_hot_ms = 60001\n",
            "engine.copy_hot_ms: 60001 is out of range, expected 0 to 60000",
        ),
        ("data_dir = \"\"\n", "data_dir: must not be empty"),
    ];
    for (text, expected) in cases {
        let message = error_of(text);
        assert!(
            message.starts_with(expected),
            "{message:?} should start with {expected:?}"
        );
    }
}

#[test]
fn syntax_errors_give_line_and_column() {
    let message = error_of("[gateway]\nlisten = \n");
    assert!(
        message.starts_with("invalid toml at line 2, column"),
        "{message}"
    );
}

#[test]
fn given_values_override_defaults() {
    let config = Config::from_toml(
        "data_dir = \"/var/lib/gatehouse\"\n[gateway]\nlisten = \"0.0.0.0:443\"\n\
         [gateway.tls]\ncert = \"/etc/gh.crt\"\nkey = \"/etc/gh.key\"\n\
         [engine]\ndriver = \"io-uring\"\nrelay = \"splice\"\ncores = 4\ncopy_hot_ms = 0\n\
         [sta]\nid = \"EDGE-1\"\n[sta.remote]\nEDGE-2 = \"http://10.1.0.2:8080/scripts/ctxsta.dll\"\n",
    )
    .unwrap();
    assert_eq!(config.gateway.listen.port(), 443);
    assert_eq!(config.engine.driver, Driver::IoUring);
    assert_eq!(config.engine.relay, Relay::Splice);
    assert_eq!(config.engine.copy_hot_ms, 0);
    assert_eq!(config.sta.id.as_str(), "EDGE-1");
    let remote: Vec<_> = config
        .sta
        .remote
        .iter()
        .map(|(id, url)| (id.as_str(), url.as_str()))
        .collect();
    assert_eq!(
        remote,
        [("EDGE-2", "http://10.1.0.2:8080/scripts/ctxsta.dll")]
    );
    assert_eq!(
        config.tls_files(),
        TlsFiles::Configured {
            cert: PathBuf::from("/etc/gh.crt"),
            key: PathBuf::from("/etc/gh.key"),
        }
    );
}

#[test]
fn check_config_reports_missing_files_and_bad_keys() {
    let missing = std::env::temp_dir().join("gatehouse-config-test-does-not-exist.toml");
    let message = check_config(&missing).unwrap_err().to_string();
    assert!(message.starts_with("cannot read"), "{message}");
    assert!(message.contains("does-not-exist"), "{message}");

    let path = temp_file("bad", "[gateway]\nlisten = \"nowhere\"\n");
    let result = check_config(&path);
    std::fs::remove_file(&path).unwrap();
    let message = result.unwrap_err().to_string();
    assert!(
        message.starts_with("gateway.listen: invalid socket address"),
        "{message}"
    );
    assert!(message.ends_with("(line 2, column 10)"), "{message}");

    let path = temp_file("good", "[sta]\nid = \"STA09\"\n");
    let result = check_config(&path);
    std::fs::remove_file(&path).unwrap();
    assert!(result.is_ok());
    assert_eq!(EXIT_CONFIG, 64);
}
