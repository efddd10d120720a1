//! `gatehouse forward`: a plain TCP forwarder on the data-plane cores.
//!
//! What an operator would use HAProxy's TCP mode for, and the fair
//! benchmark of the engine: same cores, same relay as the gateway, no
//! detection and no TLS.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::time::Duration;

use gatehouse_engine::{
    ConfigError, CoreStats, Driver, Engine, EngineConfig, EngineError, Forward, RelayMode,
};
use tracing::info;

use crate::signals;

/// Flags of `gatehouse forward`. Omitted flags keep the engine defaults.
#[derive(Debug, clap::Args)]
pub(crate) struct ForwardArgs {
    /// Address to accept connections on (IP:PORT; port 0 picks one, logged
    /// in the `forward_ready` event).
    #[arg(long, value_name = "ADDR")]
    listen: SocketAddr,
    /// Back end every connection is forwarded to (IP:PORT).
    #[arg(long, value_name = "ADDR")]
    to: SocketAddr,
    /// Data-plane threads (default: one per CPU).
    #[arg(long, value_name = "N")]
    cores: Option<NonZeroUsize>,
    /// How TCP ↔ TCP sessions move bytes: auto, splice or copy.
    #[arg(long, value_name = "MODE", default_value_t = RelayMode::Auto)]
    relay: RelayMode,
    /// monoio driver: auto, io-uring or legacy.
    #[arg(long, value_name = "DRIVER", default_value_t = Driver::Auto)]
    driver: Driver,
    /// Close sessions that move no byte for this many seconds.
    #[arg(long, value_name = "SECS")]
    idle_timeout: Option<f64>,
    /// On SIGINT/SIGTERM, let sessions run this many seconds before cutting.
    #[arg(long, value_name = "SECS")]
    drain_deadline: Option<f64>,
    /// Open connections per core before new ones are refused.
    #[arg(long, value_name = "N")]
    max_connections: Option<u32>,
    /// Splice pipe size in bytes (default 131072; the kernel's is 65536).
    #[arg(long, value_name = "BYTES")]
    pipe_size: Option<u32>,
    /// `--relay auto`: how long (ms) a copying direction stays hot after a
    /// message (default 250; 0 = one recv + one send per message, no
    /// buffer held between messages).
    #[arg(long, value_name = "MS")]
    copy_hot_ms: Option<u32>,
    /// Pin core N to CPU N.
    #[arg(long)]
    pin: bool,
    /// Keep each connection on the core the kernel's SO_REUSEPORT hash
    /// chose (by default a core hands a just-accepted connection to a core
    /// with fewer sessions).
    #[arg(long)]
    no_balance: bool,
}

impl ForwardArgs {
    fn engine_config(&self) -> anyhow::Result<EngineConfig> {
        let mut config = EngineConfig {
            cores: self.cores,
            pin_cores: self.pin,
            balance_accepts: !self.no_balance,
            driver: self.driver,
            relay: self.relay,
            ..EngineConfig::default()
        };
        if let Some(bytes) = self.pipe_size {
            config.pipe_size = bytes;
        }
        if let Some(ms) = self.copy_hot_ms {
            config.copy_hot_ms = ms;
        }
        if let Some(secs) = self.idle_timeout {
            config.idle_timeout = seconds("idle_timeout", secs)?;
        }
        if let Some(secs) = self.drain_deadline {
            config.drain_deadline = seconds("drain_deadline", secs)?;
        }
        if let Some(max) = self.max_connections {
            config.max_connections_per_core = max;
        }
        Ok(config)
    }
}

/// A flag in seconds; a bad value is a configuration error (exit 64).
fn seconds(key: &'static str, secs: f64) -> Result<Duration, EngineError> {
    Duration::try_from_secs_f64(secs).map_err(|_| {
        EngineError::Config(ConfigError::Invalid {
            key,
            expected: "a number of seconds, at least 0",
        })
    })
}

/// Runs the forwarder until SIGINT/SIGTERM and the drain that follows.
pub(crate) fn run(args: ForwardArgs) -> anyhow::Result<()> {
    let config = args.engine_config()?;
    let drain = config.drain_deadline;
    let signals = signals::catch()?;
    let engine = Engine::start(config, &[args.listen], Forward::new(args.to))?;
    if let Some(listen) = engine.local_addrs().first() {
        info!(listen = %listen, to = %args.to, cores = engine.cores(), "forward_ready");
    }
    signals.drain_on_signal(engine.control(), drain)?;
    let stats = engine.join()?;
    let total = CoreStats::total(&stats);
    info!(
        accepted = total.accepted,
        refused = total.refused_max_connections + total.refused_max_pending_handshakes,
        bytes_up = total.bytes_up,
        bytes_down = total.bytes_down,
        drain_cuts = total.drain_cuts,
        "forward_stopped"
    );
    Ok(())
}
