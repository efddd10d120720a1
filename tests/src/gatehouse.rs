//! The gateway under test: the real `gatehouse run`.
//!
//! Each [`Gatehouse`] gets its own temporary directory holding its
//! configuration file and its data directory (where it generates its
//! self-signed certificate, `data/tls/gateway.crt`). Both listeners are on
//! `127.0.0.1:0`; the bound addresses come from the `gatehouse_ready` event.
//! Logs are read as JSON (`--log-format json`, one object per stderr line)
//! so tests assert on event names and fields, e.g. `deny` with
//! `reason = "reused_ticket"`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;

use crate::process::Process;
use crate::temp::TempDir;
use crate::{bins, socks, sta};

/// The `[engine]` table every gateway under test gets: one data-plane
/// core (the machine is shared) and a short drain so a stop is quick.
pub const ENGINE: &str = "[engine]\ncores = 1\ndrain_secs = 2\n";

/// A running `gatehouse run`, stopped by PID when dropped; its temporary
/// directory goes with it.
#[derive(Debug)]
pub struct Gatehouse {
    process: Process,
    gateway: SocketAddr,
    admin: SocketAddr,
    tls: bool,
    // Dropped after `process`: the directory outlives the gateway.
    dir: TempDir,
}

impl Gatehouse {
    /// Starts `gatehouse run` with the configuration [`ENGINE`] followed by
    /// `tables` (TOML tables such as `[sta]` or `[gateway]`; not
    /// `[engine]`), logging at `info`, and waits (bounded) for
    /// `gatehouse_ready`.
    pub fn start(tables: &str) -> Self {
        Self::start_logging(tables, "info")
    }

    /// [`Gatehouse::start`] with `RUST_LOG` = `filter`.
    pub fn start_logging(tables: &str, filter: &str) -> Self {
        let dir = TempDir::new("gatehouse");
        let config = dir.path().join("gatehouse.toml");
        std::fs::write(&config, format!("{ENGINE}{tables}")).unwrap();
        Self::start_in(dir, filter)
    }

    /// Starts `gatehouse run` again in `dir`, a directory an earlier
    /// [`Gatehouse`] left with [`Gatehouse::stop_keeping_data`]: the same
    /// configuration file and data directory (store, certificate, keys).
    pub fn restart_in(dir: TempDir) -> Self {
        Self::start_in(dir, "info")
    }

    /// The configuration file.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("gatehouse.toml")
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Runs `gatehouse user --config ... --data-dir ... <args>` next to
    /// the running gateway (e.g. `add alice`) with `stdin` as standard
    /// input; returns its exit code and standard output.
    pub fn user_command(&self, args: &[&str], stdin: &str) -> (Option<i32>, String) {
        use std::io::Write as _;
        let mut child = Command::new(bins::gatehouse())
            .current_dir(self.dir.path())
            .args(["user", "--config"])
            .arg(self.config_path())
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("gatehouse runs");
        if let Some(mut input) = child.stdin.take() {
            input.write_all(stdin.as_bytes()).unwrap();
        }
        let output = child.wait_with_output().unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
        )
    }

    /// [`Gatehouse::stop`], keeping the directory for
    /// [`Gatehouse::restart_in`].
    pub fn stop_keeping_data(mut self) -> (Vec<Event>, TempDir) {
        let status = self.process.stop();
        assert_eq!(status.code(), Some(0), "gatehouse exits 0 on SIGTERM");
        (self.events(), self.dir)
    }

    fn start_in(dir: TempDir, filter: &str) -> Self {
        let config = dir.path().join("gatehouse.toml");
        let data = dir.path().join("data");
        let mut child = Command::new(bins::gatehouse())
            .current_dir(dir.path())
            .args(["--log-format", "json", "run", "--config"])
            .arg(&config)
            .arg("--data-dir")
            .arg(&data)
            .args(["--gateway-listen", "127.0.0.1:0"])
            .args(["--admin-listen", "127.0.0.1:0"])
            .env("RUST_LOG", filter)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("gatehouse starts");
        let stderr = child.stderr.take().expect("stderr is piped");
        let mut process = Process::new("gatehouse", child, stderr);
        let ready = process.wait_for("gatehouse_ready", |line| {
            Event::parse(line, Instant::now())
                .is_some_and(|event| event.message() == "gatehouse_ready")
        });
        let ready = Event::parse(&ready.text, ready.at).expect("checked above");
        let address = |name| -> SocketAddr {
            ready
                .field(name)
                .and_then(|text| text.parse().ok())
                .unwrap_or_else(|| panic!("no {name} address in {}", ready.json))
        };
        let (gateway, admin) = (address("gateway"), address("admin"));
        let tls = ready.json["fields"]["tls"]
            .as_bool()
            .unwrap_or_else(|| panic!("no tls flag in {}", ready.json));
        Self {
            process,
            gateway,
            admin,
            tls,
            dir,
        }
    }

    /// The gateway listener (TLS unless `[gateway] plaintext = true`).
    pub fn gateway(&self) -> SocketAddr {
        self.gateway
    }

    /// An admin REST API token named `name`, made with `gatehouse
    /// api-token create` on this instance's data directory.
    pub fn admin_api_token(&self, name: &str) -> String {
        let output = Command::new(bins::gatehouse())
            .args(["api-token", "--config"])
            .arg(self.config_path())
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(["create", "--name", name, "--role", "admin"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    }

    /// A bodiless REST API request on the admin listener with a bearer
    /// `token`: the status and the body.
    pub fn api(&self, token: &str, method: &str, path: &str) -> (u16, String) {
        let bearer = format!("Authorization: Bearer {token}\r\n");
        crate::http::request(self.admin(), method, path, &bearer, "")
    }

    /// The internal HTTP listener (the STA endpoint, the REST API).
    pub fn admin(&self) -> SocketAddr {
        self.admin
    }

    /// Whether the gateway listener speaks TLS.
    pub fn tls(&self) -> bool {
        self.tls
    }

    /// The certificate the gateway generated into its data directory.
    pub fn certificate(&self) -> PathBuf {
        self.dir.path().join("data/tls/gateway.crt")
    }

    /// A TLS client configuration trusting only [`Gatehouse::certificate`].
    pub fn tls_client(&self) -> Arc<rustls::ClientConfig> {
        socks::trusting(&self.certificate())
    }

    /// A launch ticket to `ica` from this gateway's own STA, as text.
    pub fn issue(&self, ica: SocketAddr) -> String {
        sta::issue(self.admin, ica)
    }

    /// A launch ticket from this gateway's own STA naming the worker's ICA
    /// and CGP addresses, as text.
    pub fn issue_cgp(&self, ica: SocketAddr, cgp: SocketAddr) -> String {
        sta::issue_cgp(self.admin, ica, cgp)
    }

    /// The URL of this gateway's STA endpoint, for another gateway's
    /// `[sta.remote]` map.
    pub fn sta_url(&self) -> String {
        format!("http://{}{}", self.admin, sta::STA_PATH)
    }

    /// Waits (bounded) for the next event named `message` whose fields
    /// have the given string values; panics with the log if none comes.
    pub fn wait_for_event(&mut self, message: &str, fields: &[(&str, &str)]) -> Event {
        let what = format!("{message} event with {fields:?}");
        let line = self.process.wait_for(&what, |line| {
            Event::parse(line, Instant::now()).is_some_and(|event| event.is(message, fields))
        });
        Event::parse(&line.text, line.at).expect("checked above")
    }

    /// Every event logged so far (lines that are not JSON are skipped).
    pub fn events(&self) -> Vec<Event> {
        self.process
            .lines()
            .iter()
            .filter_map(|line| Event::parse(&line.text, line.at))
            .collect()
    }

    /// [`Gatehouse::stop`], returning every stderr line of the run as
    /// written (JSON or not).
    pub fn stop_raw(mut self) -> Vec<String> {
        let status = self.process.stop();
        assert_eq!(status.code(), Some(0), "gatehouse exits 0 on SIGTERM");
        self.process
            .lines()
            .iter()
            .map(|line| line.text.clone())
            .collect()
    }

    /// Sends `signal` to the gateway by PID (SIGHUP: reload).
    pub fn signal(&self, signal: rustix::process::Signal) {
        self.process.signal(signal);
    }

    /// SIGTERM by PID; asserts a clean exit (status 0, bounded wait) and
    /// returns every event of the run.
    pub fn stop(mut self) -> Vec<Event> {
        let status = self.process.stop();
        assert_eq!(status.code(), Some(0), "gatehouse exits 0 on SIGTERM");
        self.events()
    }
}

/// One JSON log event of `gatehouse`.
#[derive(Debug, Clone)]
pub struct Event {
    /// When the harness read it.
    pub at: Instant,
    /// The whole object (`fields` holds `message` and the event's fields).
    pub json: Value,
}

impl Event {
    /// Parses one log line; `None` unless it is a JSON object with a
    /// `fields.message`.
    pub fn parse(line: &str, at: Instant) -> Option<Self> {
        let json: Value = serde_json::from_str(line).ok()?;
        json["fields"]["message"].as_str()?;
        Some(Self { at, json })
    }

    /// The event's name (`fields.message`).
    pub fn message(&self) -> &str {
        self.json["fields"]["message"].as_str().unwrap_or_default()
    }

    /// A string field.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.json["fields"][name].as_str()
    }

    /// Named `message`, with every one of `fields` equal to the given text.
    pub fn is(&self, message: &str, fields: &[(&str, &str)]) -> bool {
        self.message() == message
            && fields
                .iter()
                .all(|(name, value)| self.field(name) == Some(*value))
    }
}

/// How many of `events` are named `message` with `fields`.
pub fn count(events: &[Event], message: &str, fields: &[(&str, &str)]) -> usize {
    events
        .iter()
        .filter(|event| event.is(message, fields))
        .count()
}
