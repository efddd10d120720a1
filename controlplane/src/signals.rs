//! SIGINT/SIGTERM → engine drain.
//!
//! The first signal stops accepting and drains for the configured
//! deadline; a second one cuts the remaining sessions at once. The signals
//! are caught from the moment [`catch`] returns, so one that arrives while
//! the engine is starting is not lost (nor fatal).

use std::thread;
use std::time::Duration;

use anyhow::Context;
use gatehouse_engine::EngineControl;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use tracing::info;

/// Caught termination signals, not yet wired to an engine.
#[derive(Debug)]
pub(crate) struct Caught(Signals);

/// Starts catching SIGINT and SIGTERM.
pub(crate) fn catch() -> anyhow::Result<Caught> {
    Signals::new([SIGINT, SIGTERM])
        .map(Caught)
        .context("cannot install the SIGINT/SIGTERM handlers")
}

impl Caught {
    /// Hands the signals to a thread that drains `control`: the first for
    /// `drain`, any later one with no deadline.
    pub(crate) fn drain_on_signal(
        self,
        control: EngineControl,
        drain: Duration,
    ) -> anyhow::Result<()> {
        let Caught(mut signals) = self;
        thread::Builder::new()
            .name("gatehouse-signals".into())
            .spawn(move || {
                let mut deadline = drain;
                for signal in signals.forever() {
                    info!(
                        signal,
                        drain_ms = deadline.as_millis() as u64,
                        "shutdown_requested"
                    );
                    control.shutdown(deadline);
                    deadline = Duration::ZERO;
                }
            })
            .map(drop)
            .context("cannot start the signal thread")
    }
}
