//! A real browser: headless Chromium driven over WebDriver by the real
//! `chromedriver` (Debian `chromium` and `chromium-driver`; `.ci/run`
//! installs them), with a small blocking W3C WebDriver client (JSON over
//! HTTP/1.1 on loopback).
//!
//! [`Chrome::start`] picks a free loopback port, starts
//! `chromedriver --port=N`, waits (bounded) for its ready line and opens a
//! session: Chromium headless with its own temporary profile, no
//! background networking, and the gateway's self-signed certificate
//! trusted by its public key hash (`--ignore-certificate-errors-spki-list`,
//! computed with `openssl`), so any other certificate error still fails.
//! Dropping it ends the session (Chromium exits) and stops `chromedriver`
//! by PID. Every request is bounded by [`TIMEOUT`] (page loads too).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};
use serde_json::{Value, json};

use crate::TIMEOUT;
use crate::process::Process;
use crate::temp::TempDir;

/// The Chromium binary Debian installs.
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// The W3C name of an element reference in JSON.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// How often [`Chrome::wait_until`] looks again.
const POLL: Duration = Duration::from_millis(200);

/// Headless Chromium behind `chromedriver`, both stopped when dropped.
#[derive(Debug)]
pub struct Chrome {
    session: String,
    browser: Option<i32>,
    driver: SocketAddr,
    // Dropped after the session is deleted (see `Drop`).
    _process: Process,
    _profile: TempDir,
}

impl Chrome {
    /// Starts `chromedriver` and a headless Chromium session that trusts
    /// the certificate in `certificate` (PEM). Panics with a clear message
    /// when `chromedriver` or `chromium` is missing.
    pub fn start(certificate: &Path) -> Self {
        Self::start_with(certificate, None)
    }

    /// [`Chrome::start`], saving downloads into `downloads` without asking
    /// (Chromium's `download.default_directory` preference).
    pub fn start_downloading(certificate: &Path, downloads: &Path) -> Self {
        Self::start_with(certificate, Some(downloads))
    }

    fn start_with(certificate: &Path, downloads: Option<&Path>) -> Self {
        assert!(
            Path::new(CHROMIUM).is_file(),
            "{CHROMIUM} is missing: apt-get install chromium chromium-driver (.ci/run does)"
        );
        let spki = spki_sha256(certificate);
        let port = free_port();
        let mut child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts (apt-get install chromium-driver; .ci/run does)");
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut process = Process::new("chromedriver", child, stdout);
        process.wait_for("ready line", |line| line.contains("started successfully"));
        let driver = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let profile = TempDir::new("chromium");
        let args = vec![
            "--headless".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--disable-quic".to_owned(),
            "--no-first-run".to_owned(),
            "--no-default-browser-check".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--disable-extensions".to_owned(),
            "--disable-features=Translate,OptimizationHints,MediaRouter".to_owned(),
            "--metrics-recording-only".to_owned(),
            format!("--user-data-dir={}", profile.path().display()),
            format!("--ignore-certificate-errors-spki-list={spki}"),
        ];
        let mut options = json!({ "binary": CHROMIUM, "args": args });
        if let Some(downloads) = downloads {
            options["prefs"] = json!({
                "download.default_directory": downloads.display().to_string(),
                "download.prompt_for_download": false,
                "download.directory_upgrade": true,
            });
        }
        let capabilities = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "pageLoadStrategy": "normal",
                    "goog:chromeOptions": options,
                    "timeouts": {
                        "pageLoad": TIMEOUT.as_millis() as u64,
                        "script": TIMEOUT.as_millis() as u64,
                        "implicit": 0
                    }
                }
            }
        });
        let answer = request(driver, "POST", "/session", Some(&capabilities));
        let session = answer["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session id in {answer}"))
            .to_owned();
        let browser = answer["capabilities"]["goog:processID"]
            .as_i64()
            .and_then(|pid| i32::try_from(pid).ok());
        Self {
            session,
            browser,
            driver,
            _process: process,
            _profile: profile,
        }
    }

    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        request(
            self.driver,
            method,
            &format!("/session/{}{path}", self.session),
            body,
        )
    }

    /// Navigates to `url` and waits for the page load.
    pub fn goto(&self, url: &str) {
        self.call("POST", "/url", Some(&json!({ "url": url })));
    }

    /// The current page's URL.
    pub fn url(&self) -> String {
        self.call("GET", "/url", None)
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Whether the current document has finished loading
    /// (`document.readyState` is `complete`); `false` while a navigation
    /// replaces it.
    pub fn loaded(&self) -> bool {
        try_request(
            self.driver,
            "POST",
            &format!("/session/{}/execute/sync", self.session),
            Some(&json!({ "script": "return document.readyState", "args": [] })),
        )
        .is_ok_and(|state| state.as_str() == Some("complete"))
    }

    /// The current page's HTML.
    pub fn source(&self) -> String {
        self.call("GET", "/source", None)
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    fn element(&self, css: &str) -> Result<String, String> {
        let answer = try_request(
            self.driver,
            "POST",
            &format!("/session/{}/element", self.session),
            Some(&json!({ "using": "css selector", "value": css })),
        )?;
        answer[ELEMENT_KEY]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("no element reference in {answer}"))
    }

    fn find(&self, css: &str) -> String {
        self.element(css).unwrap_or_else(|error| {
            panic!(
                "no element {css} ({error}) on {}:\n{}",
                self.url(),
                self.source()
            )
        })
    }

    /// The value of the cookie `name` (HttpOnly ones too), if set.
    pub fn cookie(&self, name: &str) -> Option<String> {
        try_request(
            self.driver,
            "GET",
            &format!("/session/{}/cookie/{name}", self.session),
            None,
        )
        .ok()?["value"]
            .as_str()
            .map(str::to_owned)
    }

    /// Whether an element matches `css` now.
    pub fn has(&self, css: &str) -> bool {
        self.element(css).is_ok()
    }

    /// The visible text of the element `css`.
    pub fn text(&self, css: &str) -> String {
        let id = self.find(css);
        self.call("GET", &format!("/element/{id}/text"), None)
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Types `text` into the element `css`.
    pub fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css);
        self.call(
            "POST",
            &format!("/element/{id}/value"),
            Some(&json!({ "text": text })),
        );
    }

    /// Clicks the element `css` (and waits for a page load it starts).
    pub fn click(&self, css: &str) {
        let id = self.find(css);
        self.call("POST", &format!("/element/{id}/click"), Some(&json!({})));
    }

    /// Polls (every 200 ms, at most `limit`) until `done` holds for the
    /// current page (URL, HTML); panics naming `what` otherwise.
    pub fn wait_until(
        &self,
        what: &str,
        limit: Duration,
        mut done: impl FnMut(&str, &str) -> bool,
    ) -> (String, String) {
        let deadline = Instant::now() + limit;
        loop {
            // A page is judged only once it has loaded and the source read
            // is of the URL read (a click's navigation can commit the new
            // URL while the document is still parsing).
            let url = self.url();
            let loaded = self.loaded();
            let source = self.source();
            if loaded && self.url() == url && done(&url, &source) {
                return (url, source);
            }
            assert!(
                Instant::now() < deadline,
                "no {what} within {limit:?}; at {url}:\n{source}"
            );
            std::thread::sleep(POLL);
        }
    }
}

impl Drop for Chrome {
    fn drop(&mut self) {
        // Ends Chromium; `process` (chromedriver) is stopped by PID and the
        // profile removed when the fields drop.
        let deleted = try_request(
            self.driver,
            "DELETE",
            &format!("/session/{}", self.session),
            None,
        );
        // chromedriver could not end it: the browser is stopped by PID.
        if deleted.is_err()
            && let Some(pid) = self.browser.and_then(Pid::from_raw)
        {
            let _ = kill_process(pid, Signal::KILL);
        }
    }
}

/// A free loopback port (bound and released; chromedriver binds it next).
fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    listener.local_addr().unwrap().port()
}

/// base64(SHA-256(SubjectPublicKeyInfo)) of the PEM certificate at `path`.
fn spki_sha256(path: &Path) -> String {
    let output = Command::new("sh")
        .arg("-c")
        .arg(
            "openssl x509 -in \"$1\" -noout -pubkey | openssl pkey -pubin -outform der \
             | openssl dgst -sha256 -binary | base64",
        )
        .arg("sh")
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .expect("sh runs");
    let hash = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    assert!(
        output.status.success() && hash.len() == 44,
        "openssl computes the certificate's key hash (apt-get install openssl): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    hash
}

fn request(driver: SocketAddr, method: &str, path: &str, body: Option<&Value>) -> Value {
    try_request(driver, method, path, body)
        .unwrap_or_else(|error| panic!("webdriver {method} {path}: {error}"))
}

/// One WebDriver command: its `value`, or the error text.
fn try_request(
    driver: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<Value, String> {
    let body = body.map(Value::to_string).unwrap_or_default();
    let mut stream =
        TcpStream::connect_timeout(&driver, TIMEOUT).map_err(|e| format!("connect: {e}"))?;
    // A page load may take up to the session's pageLoad timeout.
    let limit = Some(TIMEOUT + Duration::from_secs(10));
    stream.set_read_timeout(limit).map_err(|e| e.to_string())?;
    stream.set_write_timeout(limit).map_err(|e| e.to_string())?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {driver}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body.as_bytes()))
        .map_err(|e| format!("write: {e}"))?;
    // chromedriver keeps the connection open: read the head, then exactly
    // the body it announces.
    let mut raw = Vec::new();
    let mut buf = [0_u8; 8192];
    let head_end = loop {
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        let n = stream.read(&mut buf).map_err(|e| format!("read: {e}"))?;
        if n == 0 || raw.len() > 64 * 1024 {
            return Err(format!(
                "no HTTP head in {:?}",
                String::from_utf8_lossy(&raw)
            ));
        }
        raw.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).to_string();
    let lower = head.to_ascii_lowercase();
    let length = lower.lines().find_map(|line| {
        line.strip_prefix("content-length:")
            .and_then(|v| v.trim().parse::<usize>().ok())
    });
    let mut body = raw[head_end + 4..].to_vec();
    match length {
        Some(length) => {
            while body.len() < length {
                let n = stream.read(&mut buf).map_err(|e| format!("read: {e}"))?;
                if n == 0 {
                    return Err("body cut short".to_owned());
                }
                body.extend_from_slice(&buf[..n]);
            }
            body.truncate(length);
        }
        None if lower.contains("transfer-encoding: chunked") => {
            while !body.ends_with(b"0\r\n\r\n") {
                let n = stream.read(&mut buf).map_err(|e| format!("read: {e}"))?;
                if n == 0 || body.len() > 16 * 1024 * 1024 {
                    break;
                }
                body.extend_from_slice(&buf[..n]);
            }
            body = dechunk(&String::from_utf8_lossy(&body)).into_bytes();
        }
        None => {
            stream
                .take(16 * 1024 * 1024)
                .read_to_end(&mut body)
                .map_err(|e| format!("read: {e}"))?;
        }
    }
    let body = String::from_utf8_lossy(&body).to_string();
    let status: u16 = head
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line in {head:?}"))?;
    let value: Value = serde_json::from_str(&body).map_err(|e| format!("json {e} in {body:?}"))?;
    let value = value["value"].clone();
    if status == 200 {
        Ok(value)
    } else {
        Err(format!("status {status}: {value}"))
    }
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        let (Some(chunk), Some(next)) = (after.get(..size), after.get(size..)) else {
            break;
        };
        if size == 0 {
            break;
        }
        out.push_str(chunk);
        rest = next.trim_start_matches("\r\n");
    }
    out
}
