//! A child process under test: its output read line by line on a thread,
//! bounded waits for a line, and a guard that stops it by PID.
//!
//! Stopping is SIGTERM to the child's PID, a bounded wait for its exit
//! ([`TIMEOUT`]), then SIGKILL and a wait. [`Process::stop`] does it and
//! returns the exit status; dropping a process that still runs (a failed
//! test) does the same and ignores the outcome.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ExitStatus};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};

use crate::TIMEOUT;

/// Most lines read from one child; a runaway logger cannot exhaust memory.
const MAX_LINES: usize = 100_000;

/// How often an exit is polled.
const POLL: Duration = Duration::from_millis(20);

/// A line of output and when the reader thread saw it.
#[derive(Debug, Clone)]
pub struct Line {
    /// When the line was read (just after the child wrote it).
    pub at: Instant,
    /// The line, without its newline.
    pub text: String,
}

/// A running child whose one piped output stream is read as lines.
#[derive(Debug)]
pub struct Process {
    name: String,
    child: Child,
    lines: mpsc::Receiver<Line>,
    seen: Vec<Line>,
    /// The reader thread has seen the end of the stream.
    ended: bool,
}

impl Process {
    /// Adopts `child`, reading `output` (its piped stdout or stderr) on a
    /// thread. `name` appears in panic messages.
    pub fn new(name: &str, child: Child, output: impl Read + Send + 'static) -> Self {
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for text in BufReader::new(output).lines().take(MAX_LINES) {
                let Ok(text) = text else { break };
                let line = Line {
                    at: Instant::now(),
                    text,
                };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            name: name.to_owned(),
            child,
            lines,
            seen: Vec::new(),
            ended: false,
        }
    }

    /// The child's PID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits (at most [`TIMEOUT`]) for the next line after those already
    /// returned or skipped for which `matches` holds; every line read is
    /// kept in [`Process::lines`]. Panics, naming `what` and showing the
    /// output so far, when the time runs out or the output ends first.
    pub fn wait_for(&mut self, what: &str, mut matches: impl FnMut(&str) -> bool) -> Line {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if matches(&line.text) {
                        return line;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!(
                        "{}: no {what} within {TIMEOUT:?}\n{}",
                        self.name,
                        self.dump()
                    )
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    self.ended = true;
                    let status = self.child.try_wait().ok().flatten();
                    panic!(
                        "{}: output ended (exit {status:?}) before {what}\n{}",
                        self.name,
                        self.dump()
                    )
                }
            }
        }
    }

    /// Every line read so far.
    pub fn lines(&self) -> &[Line] {
        &self.seen
    }

    /// Sends `signal` to the child's PID. Panics if it cannot be sent.
    pub fn signal(&self, signal: Signal) {
        let pid = pid_of(&self.child);
        kill_process(pid, signal)
            .unwrap_or_else(|error| panic!("{}: kill {signal:?}: {error}", self.name));
    }

    /// SIGTERM, then the exit status ([`TIMEOUT`], then SIGKILL and a
    /// panic), then the rest of the output up to its end (bounded too).
    pub fn stop(&mut self) -> ExitStatus {
        let status = terminate(&mut self.child);
        let Some(status) = status else {
            panic!(
                "{}: no exit within {TIMEOUT:?} of SIGTERM; killed\n{}",
                self.name,
                self.dump()
            )
        };
        self.read_to_end();
        status
    }

    /// Reads the remaining lines until the reader thread ends (the child
    /// and every process sharing its output exited) or [`TIMEOUT`].
    fn read_to_end(&mut self) {
        let deadline = Instant::now() + TIMEOUT;
        while !self.ended {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(mpsc::RecvTimeoutError::Disconnected) => self.ended = true,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("{}: output still open after exit", self.name)
                }
            }
        }
    }

    fn dump(&self) -> String {
        let mut text = String::new();
        for line in &self.seen {
            text.push_str("  | ");
            text.push_str(&line.text);
            text.push('\n');
        }
        text
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // Still running only when a test failed before stopping it.
        if let Ok(None) = self.child.try_wait() {
            let _ = terminate(&mut self.child);
        }
    }
}

fn pid_of(child: &Child) -> Pid {
    Pid::from_child(child)
}

/// SIGTERM to `child`, a bounded wait for its exit; past [`TIMEOUT`],
/// SIGKILL, a wait, and `None`.
pub(crate) fn terminate(child: &mut Child) -> Option<ExitStatus> {
    if let Ok(Some(status)) = child.try_wait() {
        return Some(status);
    }
    // The child has not been reaped, so its PID is still its own.
    let _ = kill_process(pid_of(child), Signal::TERM);
    let deadline = Instant::now() + TIMEOUT;
    while Instant::now() < deadline {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) => thread::sleep(POLL),
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}
