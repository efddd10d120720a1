//! The user's phone: the real `push-device serve`, registered with the
//! gateway over its TLS listener (trusting only the gateway's certificate)
//! and answering pushes as told.
//!
//! `push-device` prints one line per event (`registered ...`,
//! `push id=... user=...`, `answered id=... outcome=...`); the tests wait
//! for them with [`PushDevice::wait_for`].

use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};

use crate::bins;
use crate::gatehouse::Gatehouse;
use crate::process::{Line, Process};

/// How the device answers a push.
#[derive(Debug, Clone, Copy)]
pub enum Answer<'a> {
    /// With the number read from this file once a push arrives
    /// (`--approve-from`).
    ApproveFrom(&'a Path),
    /// With a number other than the one in the file (`--approve-from FILE
    /// --approve-wrong`).
    ApproveWrongFrom(&'a Path),
    /// Denies (`--deny`).
    Deny,
}

/// A running `push-device serve`, stopped by PID when dropped.
#[derive(Debug)]
pub struct PushDevice {
    process: Process,
}

impl PushDevice {
    /// Starts `push-device serve` for the device of `uri` (an otpauth URI
    /// from `gatehouse user otp add`) against `gatehouse`, and waits
    /// (bounded) until it is registered.
    pub fn register(gatehouse: &Gatehouse, uri: &str, answer: Answer<'_>) -> Self {
        let mut command = Command::new(bins::push_device());
        command
            .arg("serve")
            .args(["--gateway", &format!("https://{}", gatehouse.gateway())])
            .arg("--ca")
            .arg(gatehouse.certificate())
            .args(["--uri", uri.trim()]);
        match answer {
            Answer::ApproveFrom(file) => {
                command.arg("--approve-from").arg(file);
            }
            Answer::ApproveWrongFrom(file) => {
                command
                    .arg("--approve-from")
                    .arg(file)
                    .arg("--approve-wrong");
            }
            Answer::Deny => {
                command.arg("--deny");
            }
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("push-device starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut process = Process::new("push-device", child, stdout);
        process.wait_for("registration", |line| line.starts_with("registered "));
        Self { process }
    }

    /// Waits (bounded) for the next output line starting with `prefix`.
    pub fn wait_for(&mut self, prefix: &str) -> Line {
        self.process
            .wait_for(prefix, |line| line.starts_with(prefix))
    }

    /// SIGTERM by PID and the exit status (bounded).
    pub fn stop(mut self) -> ExitStatus {
        self.process.stop()
    }
}
