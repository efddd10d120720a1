//! [`Sim`]: binds the listeners and serves until told to stop. The binary
//! is a thin CLI around it; tests and the load tool may embed it.

use std::fs::File;
use std::future::Future;
use std::io::{self, Read};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};

use crate::cgp_server::{self, CgpService, RandomSource};
use crate::{DEFAULT_MAX_UNACKED, MAX_DATA_PAYLOAD, ica_server};

/// The smallest [`SimConfig::max_unacked`]: four full DATA payloads, so
/// the stream window (a quarter of the bound) holds at least one.
pub const MIN_MAX_UNACKED: usize = 4 * MAX_DATA_PAYLOAD;

/// How long [`Sim::run`] waits for connections to end after the stop.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// What the sim listens on and how it keeps sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimConfig {
    /// The raw ICA listener, if any.
    pub ica_listen: Option<SocketAddr>,
    /// The CGP listener, if any.
    pub cgp_listen: Option<SocketAddr>,
    /// How long a CGP session outlives its connection, waiting for a
    /// resume.
    pub reliability_ttl: Duration,
    /// Bound on a CGP session's unacknowledged output, in bytes; past it
    /// the session is dropped.
    pub max_unacked: usize,
}

impl Default for SimConfig {
    /// No listener, a 180 s TTL, a 4 MiB bound.
    fn default() -> Self {
        SimConfig {
            ica_listen: None,
            cgp_listen: None,
            reliability_ttl: Duration::from_secs(180),
            max_unacked: DEFAULT_MAX_UNACKED,
        }
    }
}

/// Why the sim could not start.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// Neither an ICA nor a CGP address was given.
    #[error("nothing to listen on: give an ICA or a CGP address")]
    NoListener,
    /// [`SimConfig::max_unacked`] is below [`MIN_MAX_UNACKED`].
    #[error("the unacknowledged-output bound must be at least {MIN_MAX_UNACKED} bytes")]
    BoundTooSmall,
    /// A listener could not bind.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// Bound listeners, ready to serve.
pub struct Sim {
    ica: Option<(TcpListener, SocketAddr)>,
    cgp: Option<(TcpListener, SocketAddr)>,
    config: SimConfig,
    random: RandomSource,
}

impl std::fmt::Debug for Sim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sim")
            .field("ica", &self.ica_addr())
            .field("cgp", &self.cgp_addr())
            .field("config", &self.config)
            .finish()
    }
}

/// A sim serving on a spawned task; see [`Sim::spawn`].
#[derive(Debug)]
pub struct SimHandle {
    /// The bound ICA address, if any.
    pub ica: Option<SocketAddr>,
    /// The bound CGP address, if any.
    pub cgp: Option<SocketAddr>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Sim {
    /// Binds the configured listeners (port 0 picks a free port); reconnect
    /// tickets come from the OS CSPRNG ([`os_random`]).
    ///
    /// # Errors
    /// [`SimError::NoListener`], [`SimError::BoundTooSmall`],
    /// [`SimError::Bind`].
    pub async fn bind(config: SimConfig) -> Result<Sim, SimError> {
        Sim::bind_with_random(config, os_random()).await
    }

    /// [`Sim::bind`] with reconnect tickets drawn from `random`.
    ///
    /// # Errors
    /// As [`Sim::bind`].
    pub async fn bind_with_random(
        config: SimConfig,
        random: RandomSource,
    ) -> Result<Sim, SimError> {
        if config.ica_listen.is_none() && config.cgp_listen.is_none() {
            return Err(SimError::NoListener);
        }
        if config.max_unacked < MIN_MAX_UNACKED {
            return Err(SimError::BoundTooSmall);
        }
        Ok(Sim {
            ica: listen(config.ica_listen).await?,
            cgp: listen(config.cgp_listen).await?,
            config,
            random,
        })
    }

    /// The bound ICA address.
    pub fn ica_addr(&self) -> Option<SocketAddr> {
        self.ica.as_ref().map(|(_, addr)| *addr)
    }

    /// The bound CGP address.
    pub fn cgp_addr(&self) -> Option<SocketAddr> {
        self.cgp.as_ref().map(|(_, addr)| *addr)
    }

    /// The `--announce` line: `ica=ADDR cgp=ADDR`, each part only for a
    /// bound listener.
    pub fn announce(&self) -> String {
        let parts: Vec<String> = [("ica", self.ica_addr()), ("cgp", self.cgp_addr())]
            .into_iter()
            .filter_map(|(name, addr)| addr.map(|addr| format!("{name}={addr}")))
            .collect();
        parts.join(" ")
    }

    /// Serves until `shutdown` completes, then closes every connection
    /// (waiting up to 5 s) and returns.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        if let Some((listener, _)) = self.ica {
            tasks.spawn(ica_server::accept_loop(listener, stop_rx.clone()));
        }
        if let Some((listener, _)) = self.cgp {
            let service = Arc::new(CgpService::new(
                self.config.reliability_ttl,
                self.config.max_unacked,
                self.random,
            ));
            tasks.spawn(cgp_server::accept_loop(
                listener,
                service.clone(),
                stop_rx.clone(),
            ));
            tasks.spawn(cgp_server::sweep_loop(service, stop_rx));
        }
        shutdown.await;
        stop_tx.send_replace(true);
        let drained = async { while tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(SHUTDOWN_GRACE, drained).await.is_err() {
            tracing::warn!("connections still open after the shutdown grace; cutting them");
        }
    }

    /// Serves on a new task until [`SimHandle::stop`].
    pub fn spawn(self) -> SimHandle {
        let (stop, stopped) = oneshot::channel::<()>();
        let (ica, cgp) = (self.ica_addr(), self.cgp_addr());
        let task = tokio::spawn(self.run(async {
            let _ = stopped.await;
        }));
        SimHandle {
            ica,
            cgp,
            stop,
            task,
        }
    }
}

impl SimHandle {
    /// Stops the sim and waits for it to finish.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// Reads `/dev/urandom` (opened at first use).
pub fn os_random() -> RandomSource {
    let mut file: Option<File> = None;
    Box::new(move |buf: &mut [u8]| {
        let source = match &mut file {
            Some(source) => source,
            None => file.insert(File::open("/dev/urandom")?),
        };
        source.read_exact(buf)
    })
}

async fn listen(addr: Option<SocketAddr>) -> Result<Option<(TcpListener, SocketAddr)>, SimError> {
    let Some(addr) = addr else {
        return Ok(None);
    };
    let bind_error = |source| SimError::Bind { addr, source };
    let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
    let local = listener.local_addr().map_err(bind_error)?;
    Ok(Some((listener, local)))
}
