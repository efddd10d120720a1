//! The power hook of a delivery group: a command (argv with `{worker}` and
//! `{group}` replaced, run without a shell) or an `http://` URL POSTed
//! `{"worker": NAME, "group": NAME}`; success is exit status 0 or a 2xx
//! answer. The broker then waits for the worker to register.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::catalog::GroupConfig;
use super::registry::WorkerName;

/// Why a power-on failed.
#[derive(Debug, thiserror::Error)]
pub enum PowerError {
    /// The group has no hook.
    #[error("group {0} has no power hook")]
    NoHook(String),
    /// The command could not start.
    #[error("power command cannot start")]
    Spawn(#[source] std::io::Error),
    /// The command exited unsuccessfully.
    #[error("power command failed with {0}")]
    Failed(String),
    /// The URL could not be reached or answered non-2xx.
    #[error("power url failed: {0}")]
    Http(String),
    /// The hook or the registration took longer than the timeout.
    #[error("worker {0} did not register within the power-on timeout")]
    Timeout(WorkerName),
}

/// Runs `group`'s hook for `worker`, bounded by `timeout`.
///
/// Errors: [`PowerError`].
pub async fn power_on(
    group: &GroupConfig,
    worker: &WorkerName,
    timeout: Duration,
) -> Result<(), PowerError> {
    let run = async {
        if let Some(url) = &group.power_on_url {
            return post(url, worker, &group.name).await;
        }
        let Some((program, args)) = group.power_on_command.split_first() else {
            return Err(PowerError::NoHook(group.name.clone()));
        };
        let fill = |arg: &String| {
            arg.replace("{worker}", worker.as_str())
                .replace("{group}", &group.name)
        };
        let status = tokio::process::Command::new(fill(program))
            .args(args.iter().map(fill))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .status()
            .await
            .map_err(PowerError::Spawn)?;
        if status.success() {
            Ok(())
        } else {
            Err(PowerError::Failed(status.to_string()))
        }
    };
    tokio::time::timeout(timeout, run)
        .await
        .map_err(|_| PowerError::Timeout(worker.clone()))?
}

async fn post(url: &str, worker: &WorkerName, group: &str) -> Result<(), PowerError> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| PowerError::Http("not http://".to_owned()))?;
    let (authority, path) = match rest.find('/') {
        Some(at) => (&rest[..at], &rest[at..]),
        None => (rest, "/"),
    };
    let body = serde_json::json!({ "worker": worker.as_str(), "group": group }).to_string();
    let mut stream = tokio::net::TcpStream::connect(authority)
        .await
        .map_err(|e| PowerError::Http(e.to_string()))?;
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| PowerError::Http(e.to_string()))?;
    let mut answer = Vec::new();
    stream
        .take(64 * 1_024)
        .read_to_end(&mut answer)
        .await
        .map_err(|e| PowerError::Http(e.to_string()))?;
    let status_line = answer.split(|b| *b == b'\n').next().unwrap_or_default();
    let ok = status_line
        .split(|b| *b == b' ')
        .nth(1)
        .is_some_and(|code| code.first() == Some(&b'2') && code.len() == 3);
    if ok {
        Ok(())
    } else {
        Err(PowerError::Http(
            String::from_utf8_lossy(status_line).trim().to_owned(),
        ))
    }
}
