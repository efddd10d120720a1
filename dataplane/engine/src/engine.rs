//! Starting, stopping and observing the cores: [`Engine::start`],
//! [`EngineHandle`], [`EngineControl`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gatehouse_channel::CoreId;
use tracing::{info, warn};

use crate::balance::Balance;
use crate::config::{ConfigError, Driver, EngineConfig};
use crate::core::{self, Command, CoreSetup};
use crate::counters::CoreStats;
use crate::handler::HandlerFactory;
use crate::listener;

/// How long `start` waits for every core to report ready.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a control request waits for each core's answer.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the engine could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The configuration is out of range.
    #[error("invalid engine configuration")]
    Config(#[from] ConfigError),
    /// `driver = "io-uring"` was asked for on a host without a usable io_uring.
    #[error("io_uring was requested but this kernel does not offer it (or forbids it)")]
    IoUringUnavailable,
    /// A listen address could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A core failed to start (runtime or listener setup).
    #[error("core {core} failed to start")]
    CoreStart {
        /// The core.
        core: CoreId,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A core thread could not be spawned, or did not report in time.
    #[error("core {core} did not start")]
    CoreSpawn {
        /// The core.
        core: CoreId,
    },
    /// A core thread panicked or is gone.
    #[error("core {core} is gone (panicked or exited)")]
    CoreGone {
        /// The core.
        core: CoreId,
    },
}

/// The entry point of the data plane.
#[derive(Debug)]
pub struct Engine;

impl Engine {
    /// Starts the cores and returns once every core is accepting.
    ///
    /// Binds one `SO_REUSEPORT` socket per core for each address in
    /// `listen` (port 0 picks one port shared by all cores; see
    /// [`EngineHandle::local_addrs`]), starts the core threads
    /// (`gatehouse-core-N`), and on each calls `factory.build` once.
    /// Connections accepted on `listen[i]` reach the handler with
    /// `ListenerId(i)`.
    ///
    /// Errors: an invalid config, io_uring forced but unavailable, an
    /// address that cannot be bound, a core that fails to start (the
    /// others are then stopped).
    pub fn start<F: HandlerFactory>(
        config: EngineConfig,
        listen: &[SocketAddr],
        factory: F,
    ) -> Result<EngineHandle, EngineError> {
        config.validate()?;
        let driver = resolve_driver(config.driver)?;
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let cores = config.core_count();

        let mut per_core: Vec<Vec<(std::net::TcpListener, SocketAddr)>> = (0..cores)
            .map(|_| Vec::with_capacity(listen.len()))
            .collect();
        let mut local_addrs = Vec::with_capacity(listen.len());
        for &addr in listen {
            let (sockets, bound) = listener::bind_reuseport(addr, cores, driver == Driver::Legacy)
                .map_err(|source| EngineError::Bind { addr, source })?;
            for (core, socket) in per_core.iter_mut().zip(sockets) {
                core.push((socket, bound));
            }
            local_addrs.push(bound);
        }

        let factory = Arc::new(factory);
        let (ready_tx, ready_rx) = mpsc::channel();
        let mut handle = EngineHandle {
            control: EngineControl {
                cores: Arc::from(Vec::new()),
            },
            threads: Vec::with_capacity(cores),
            local_addrs,
            driver,
        };
        let mut senders = Vec::with_capacity(cores);
        let mut balances = config
            .balance_accepts
            .then(|| Balance::for_cores(cores))
            .flatten()
            .map(Vec::into_iter);
        for (index, listeners) in per_core.into_iter().enumerate() {
            let id = CoreId(u16::try_from(index).unwrap_or(u16::MAX));
            let (tx, rx) = flume::unbounded();
            let setup = CoreSetup {
                id,
                driver,
                config: config.clone(),
                cpu: config.pin_cores.then_some(index % cpus),
                listeners,
                factory: factory.clone(),
                commands: rx,
                ready: ready_tx.clone(),
                balance: balances.as_mut().and_then(Iterator::next),
            };
            let spawned = std::thread::Builder::new()
                .name(format!("gatehouse-core-{index}"))
                .spawn(move || core::run(setup));
            match spawned {
                Ok(thread) => {
                    senders.push(tx);
                    handle.threads.push(thread);
                }
                Err(_) => {
                    handle.control.cores = Arc::from(senders);
                    handle.abort();
                    return Err(EngineError::CoreSpawn { core: id });
                }
            }
        }
        handle.control.cores = Arc::from(senders);
        drop(ready_tx);

        let deadline = Instant::now() + START_TIMEOUT;
        for _ in 0..cores {
            let wait = deadline.saturating_duration_since(Instant::now());
            match ready_rx.recv_timeout(wait) {
                Ok((_, Ok(()))) => {}
                Ok((core, Err(source))) => {
                    handle.abort();
                    return Err(EngineError::CoreStart { core, source });
                }
                Err(_) => {
                    handle.abort();
                    return Err(EngineError::CoreSpawn { core: CoreId(0) });
                }
            }
        }
        info!(
            cores,
            driver = %driver,
            relay = %config.relay,
            listen = ?handle.local_addrs,
            "engine_started"
        );
        Ok(handle)
    }
}

/// Picks the driver for `Auto`, checks io_uring when it is forced.
fn resolve_driver(wanted: Driver) -> Result<Driver, EngineError> {
    if wanted == Driver::Legacy {
        return Ok(Driver::Legacy);
    }
    let uring = probe_uring();
    match wanted {
        Driver::Legacy => Ok(Driver::Legacy),
        Driver::IoUring if uring => Ok(Driver::IoUring),
        Driver::IoUring => Err(EngineError::IoUringUnavailable),
        Driver::Auto if uring => Ok(Driver::IoUring),
        Driver::Auto => {
            warn!(
                "io_uring is unavailable (kernel, seccomp or MONOIO_FORCE_LEGACY_DRIVER); cores run the legacy epoll driver"
            );
            Ok(Driver::Legacy)
        }
    }
}

/// Probes for io_uring on a short-lived thread of its own.
///
/// The probe creates and closes a ring; the kernel finishes tearing it down
/// with task work queued on the creating thread, which interrupts that
/// thread's next blocking system call with `EINTR`. Probing on a throwaway
/// thread keeps that away from the caller (the binary's signal loop, a
/// test's blocking reads).
fn probe_uring() -> bool {
    std::thread::Builder::new()
        .name("gatehouse-uring-probe".into())
        .spawn(monoio::utils::detect_uring)
        .ok()
        .and_then(|probe| probe.join().ok())
        .unwrap_or(false)
}

/// The running engine: stop it, observe it, wait for it.
///
/// Dropping it without [`EngineHandle::join`] tells the cores to stop at
/// once (no drain) and does not wait for them.
#[derive(Debug)]
pub struct EngineHandle {
    control: EngineControl,
    threads: Vec<JoinHandle<CoreStats>>,
    local_addrs: Vec<SocketAddr>,
    driver: Driver,
}

impl EngineHandle {
    /// The bound listen addresses, in the order given to [`Engine::start`]
    /// (ports filled in where port 0 was asked for).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// The driver the cores run: [`Driver::IoUring`] or [`Driver::Legacy`].
    pub fn driver(&self) -> Driver {
        self.driver
    }

    /// How many cores run.
    pub fn cores(&self) -> usize {
        self.threads.len()
    }

    /// A cloneable, `Send` controller (for a signal thread, say).
    pub fn control(&self) -> EngineControl {
        self.control.clone()
    }

    /// Same as [`EngineControl::shutdown`].
    pub fn shutdown(&self, drain_deadline: Duration) {
        self.control.shutdown(drain_deadline);
    }

    /// Same as [`EngineControl::stats`].
    pub fn stats(&self) -> Result<Vec<CoreStats>, EngineError> {
        self.control.stats()
    }

    /// Waits for every core to exit (after a shutdown) and returns their
    /// final counters, in core order.
    ///
    /// Errors: a core panicked; the other cores are still waited for.
    pub fn join(mut self) -> Result<Vec<CoreStats>, EngineError> {
        let threads = std::mem::take(&mut self.threads);
        let mut stats = Vec::with_capacity(threads.len());
        let mut gone = None;
        for (index, thread) in threads.into_iter().enumerate() {
            match thread.join() {
                Ok(core) => stats.push(core),
                Err(_) => {
                    gone.get_or_insert(CoreId(u16::try_from(index).unwrap_or(u16::MAX)));
                }
            }
        }
        match gone {
            Some(core) => Err(EngineError::CoreGone { core }),
            None => Ok(stats),
        }
    }

    /// Stops the cores without draining and waits for them (start failed).
    fn abort(&mut self) {
        for core in self.control.cores.iter() {
            let _ = core.send(Command::Shutdown {
                drain: Duration::ZERO,
                ack: None,
            });
        }
        for thread in std::mem::take(&mut self.threads) {
            let _ = thread.join();
        }
    }
}

impl Drop for EngineHandle {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            for core in self.control.cores.iter() {
                let _ = core.send(Command::Shutdown {
                    drain: Duration::ZERO,
                    ack: None,
                });
            }
        }
    }
}

/// Talks to the cores from any thread. Cheap to clone.
#[derive(Debug, Clone)]
pub struct EngineControl {
    cores: Arc<[flume::Sender<Command>]>,
}

impl EngineControl {
    /// Stops accepting on every core and starts the drain: open sessions
    /// may run for `drain_deadline`, then they are cut and the cores exit.
    ///
    /// Returns once every core has closed its listeners (or after a few
    /// seconds if a core does not answer). Calling it again with a shorter
    /// deadline shortens the drain (a second Ctrl-C: `Duration::ZERO`).
    /// Blocks the calling thread: never call it from a core (a handler).
    pub fn shutdown(&self, drain_deadline: Duration) {
        let (ack_tx, ack_rx) = flume::unbounded();
        let mut asked = 0;
        for core in self.cores.iter() {
            let sent = core.send(Command::Shutdown {
                drain: drain_deadline,
                ack: Some(ack_tx.clone()),
            });
            if sent.is_ok() {
                asked += 1;
            }
        }
        let deadline = Instant::now() + REPLY_TIMEOUT;
        for _ in 0..asked {
            if ack_rx.recv_deadline(deadline).is_err() {
                warn!("a core did not confirm that it stopped accepting");
                break;
            }
        }
    }

    /// A snapshot of every core's counters, in core order.
    ///
    /// Errors: a core is gone or did not answer within a few seconds.
    pub fn stats(&self) -> Result<Vec<CoreStats>, EngineError> {
        let mut replies = Vec::with_capacity(self.cores.len());
        for (index, core) in self.cores.iter().enumerate() {
            let id = CoreId(u16::try_from(index).unwrap_or(u16::MAX));
            let (tx, rx) = flume::bounded(1);
            core.send(Command::Stats(tx))
                .map_err(|_| EngineError::CoreGone { core: id })?;
            replies.push((id, rx));
        }
        replies
            .into_iter()
            .map(|(core, rx)| {
                rx.recv_timeout(REPLY_TIMEOUT)
                    .map_err(|_| EngineError::CoreGone { core })
            })
            .collect()
    }
}
