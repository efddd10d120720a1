//! The worker: the real `vda-sim` binary with a raw ICA listener and a CGP
//! listener.
//!
//! `vda-sim --ica-listen 127.0.0.1:0 --cgp-listen 127.0.0.1:0 --announce`
//! prints `ica=ADDR cgp=ADDR` on stdout once it listens. CGP speaks session
//! reliability (see `vda-sim --help`). On every ICA connection it sends the ICA detect
//! string ([`crate::socks::ICA_DETECT`]) first, then echoes what it gets
//! (unless the first bytes are `STREAM <n>\n`, which the tests never send).

use std::net::SocketAddr;
use std::process::{Command, ExitStatus, Stdio};

use crate::bins;
use crate::process::Process;

/// A running `vda-sim`, stopped by PID when dropped.
#[derive(Debug)]
pub struct VdaSim {
    process: Process,
    ica: SocketAddr,
    cgp: SocketAddr,
}

impl VdaSim {
    /// Starts the sim on an ephemeral loopback port and waits (bounded) for
    /// its announce line.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// [`VdaSim::start`], registered with the broker on the internal
    /// listener `admin` as worker `name` reporting load index `load`,
    /// heartbeating every second (`vda-sim --register`).
    pub fn start_registered(admin: SocketAddr, name: &str, load: u32) -> Self {
        let url = format!("http://{admin}");
        let load = load.to_string();
        Self::start_with(&[
            "--register",
            &url,
            "--worker-name",
            name,
            "--heartbeat-secs",
            "1",
            "--load",
            &load,
        ])
    }

    fn start_with(args: &[&str]) -> Self {
        let mut child = Command::new(bins::vda_sim())
            .args(["--ica-listen", "127.0.0.1:0", "--cgp-listen", "127.0.0.1:0"])
            .arg("--announce")
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("vda-sim starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut process = Process::new("vda-sim", child, stdout);
        let announce = process.wait_for("announce line", |line| line.starts_with("ica="));
        let address = |prefix: &str| -> SocketAddr {
            announce
                .text
                .split_whitespace()
                .find_map(|part| part.strip_prefix(prefix))
                .and_then(|addr| addr.parse().ok())
                .unwrap_or_else(|| panic!("no {prefix} address in {:?}", announce.text))
        };
        let (ica, cgp) = (address("ica="), address("cgp="));
        Self { process, ica, cgp }
    }

    /// The CGP listener (what a ticket's `CGPAddress` names).
    pub fn cgp(&self) -> SocketAddr {
        self.cgp
    }

    /// The ICA listener (what a ticket's `ICAAddress` names).
    pub fn ica(&self) -> SocketAddr {
        self.ica
    }

    /// SIGTERM by PID and the exit status (bounded).
    pub fn stop(mut self) -> ExitStatus {
        self.process.stop()
    }
}
