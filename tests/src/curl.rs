//! A browser for end-to-end tests: the real `curl` with a cookie jar of
//! its own, trusting the gateway's certificate and reaching its TLS
//! listener as `localhost`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::gatehouse::Gatehouse;
use crate::temp::TempDir;

/// One answer: status, head (as sent) and body.
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The status line and the headers.
    pub head: String,
    /// The body.
    pub body: String,
}

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}\n\n{}", self.head, self.body)
    }
}

impl Answer {
    /// The whole answer as `curl --include` prints it: the head, a blank
    /// line, the body.
    pub fn text(&self) -> String {
        format!("{}\r\n\r\n{}", self.head, self.body)
    }

    /// The `Location` header, if any.
    pub fn location(&self) -> Option<&str> {
        self.head.lines().find_map(|line| {
            line.to_ascii_lowercase()
                .starts_with("location:")
                .then(|| line["location:".len()..].trim())
        })
    }
}

/// `curl` with a cookie jar in a temporary directory of its own.
#[derive(Debug)]
pub struct Browser {
    jar: PathBuf,
    dir: TempDir,
}

impl Default for Browser {
    fn default() -> Self {
        Self::new()
    }
}

impl Browser {
    /// A browser with an empty cookie jar.
    pub fn new() -> Self {
        let dir = TempDir::new("browser");
        let jar = dir.path().join("cookies.txt");
        std::fs::write(&jar, "").unwrap();
        Self { jar, dir }
    }

    /// Its temporary directory (downloads may go there).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The cookie jar (Netscape format).
    pub fn jar(&self) -> &Path {
        &self.jar
    }

    /// `GET path`.
    pub fn get(&self, gatehouse: &Gatehouse, path: &str) -> Answer {
        self.request(gatehouse, path, &[], None)
    }

    /// `POST path` with the form `fields` (URL-encoded).
    pub fn post(&self, gatehouse: &Gatehouse, path: &str, fields: &[(&str, &str)]) -> Answer {
        assert!(!fields.is_empty());
        self.request(gatehouse, path, fields, None)
    }

    /// A request to the gateway: a form post when `fields` is not empty,
    /// an XML post of `raw` when given, else a GET. Panics when curl fails
    /// (no answer within 30 s).
    pub fn request(
        &self,
        gatehouse: &Gatehouse,
        path: &str,
        fields: &[(&str, &str)],
        raw: Option<&str>,
    ) -> Answer {
        let port = gatehouse.gateway().port();
        let mut command = Command::new("curl");
        command
            .args(["--silent", "--show-error", "--include", "--max-time", "30"])
            .arg("--cacert")
            .arg(gatehouse.certificate())
            .args(["--resolve", &format!("localhost:{port}:127.0.0.1")])
            .arg("--cookie")
            .arg(&self.jar)
            .arg("--cookie-jar")
            .arg(&self.jar);
        for (name, value) in fields {
            command
                .arg("--data-urlencode")
                .arg(format!("{name}={value}"));
        }
        if let Some(body) = raw {
            command
                .args(["-H", "Content-Type: text/xml; charset=utf-8"])
                .arg("--data-binary")
                .arg(body);
        }
        let output = command
            .arg(format!("https://localhost:{port}{path}"))
            .stdin(Stdio::null())
            .output()
            .expect("curl runs (Debian package curl; .ci/run installs it)");
        assert!(
            output.status.success(),
            "curl {path}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let text = String::from_utf8(output.stdout).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        Answer {
            status: head.split_whitespace().nth(1).unwrap().parse().unwrap(),
            head: head.to_owned(),
            body: body.to_owned(),
        }
    }

    /// Whether the jar holds a cookie named `name`.
    pub fn has_cookie(&self, name: &str) -> bool {
        std::fs::read_to_string(&self.jar)
            .unwrap()
            .lines()
            .any(|line| line.split('\t').nth(5) == Some(name))
    }
}
