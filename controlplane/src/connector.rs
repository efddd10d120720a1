//! `gatehouse connector`: the connector role of server-to-client access
//! (DESIGN.md §2B) as a process of its own, and the control plane's side
//! of it.
//!
//! A connector owns the IIPs of the pools that name it and accepts the
//! back-end servers' TCP connections to IIP:port. It attaches to a named
//! segment (`--shm NAME`, `/dev/shm/NAME`) that the control plane creates
//! for each `[[server_to_client.connectors]]` entry, the same machinery as
//! `gatehouse dataplane` ([`crate::split`]: link socket, supervisor,
//! gate, heartbeats). A shared-memory segment means the same host as the
//! control plane; a network link for a connector in another site is not
//! built.
//!
//! The connector process ([`run_connector`]) runs engine cores with no
//! listener of their own: each core has only the connector role (its
//! rendezvous listener, and IIP:port listeners bound on `Listen` orders).
//!
//! The control plane ([`serve_connectors`], from `gatehouse run` and
//! `gatehouse controlplane`) serves each configured segment with a redeem
//! service for that connector ([`RedeemService::for_connector`]): its flow
//! requests are decided as that connector's (`connector_not_owner` for a
//! pool it does not own), it gets only the orders of the pools it owns,
//! and each time a connector links it is told the whole current listen
//! set. A connector whose process dies is logged once (`connector_gone`)
//! and its allowed flows are counted closed; a new process re-links.
//!
//! ```text
//!  no connector --link--> linked(generation): replay listen set, relay orders
//!     ^                        |
//!     +-- process gone / detached / replaced (connector_gone) --+
//! ```

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use gatehouse_channel::{ControlSide, DataSide, Generation, LinkError, SegmentName};
use gatehouse_engine::{
    ConnectorConfig, ControlPlaneGate, Engine, EngineHandle, GatewayConfig, GatewayFactory,
};
use tokio::sync::watch;

use crate::appliance::{
    self, ControlPlane, RunError, Signals, drain_on_signal, engine_config, geometry, log_stopped,
};
use crate::config::{Config, ConfigError};
use crate::redeem::{ConnectorRole, RedeemService};
use crate::s2c::ConnectorEntry;
use crate::s2c::service::ServerToClient;
use crate::split::{self, PeerKeeper, Supervisor};

/// A connector process alive but silent this long is reported (its flows
/// are kept while its process lives).
pub const CONNECTOR_SILENCE: Duration = Duration::from_secs(5);

/// How many cores `gatehouse connector` runs: `--cores` (`flag`), else
/// the `cores` of the `[[server_to_client.connectors]]` entry named
/// `name` in `config`, else 1. The control plane sizes the segment from
/// that entry, so the two must agree.
///
/// Errors: [`ConfigError::Invalid`] naming `--cores` (0, or past the
/// channel's limit) or `--name` (not a connector name).
pub fn connector_cores(
    config: &Config,
    name: &str,
    flag: Option<usize>,
) -> Result<NonZeroUsize, ConfigError> {
    crate::policy::check_name("--name".to_owned(), name)
        .map_err(|(key, message)| ConfigError::Invalid { key, message })?;
    let cores = flag
        .or_else(|| {
            config
                .server_to_client
                .connector(name)
                .map(|entry| entry.cores)
        })
        .unwrap_or(1);
    NonZeroUsize::new(cores)
        .filter(|cores| cores.get() <= usize::from(gatehouse_channel::MAX_CORES))
        .ok_or_else(|| ConfigError::Invalid {
            key: "--cores".to_owned(),
            message: format!("{cores} is outside 1..={}", gatehouse_channel::MAX_CORES),
        })
}

/// Runs a connector named `name` with `cores` cores on segment `shm`
/// until SIGTERM/SIGINT and the drain that follows (`config` gives the
/// `[engine]` knobs). Builds its own runtime; blocks the calling thread.
///
/// Errors: [`RunError`] (configuration, segment attach, engine start).
pub fn run_connector(
    config: Config,
    shm: SegmentName,
    name: String,
    cores: NonZeroUsize,
) -> Result<(), RunError> {
    config.validate()?;
    appliance::runtime()?.block_on(serve_connector(config, shm, name, cores))
}

async fn serve_connector(
    config: Config,
    shm: SegmentName,
    name: String,
    cores: NonZeroUsize,
) -> Result<(), RunError> {
    let signals = Signals::catch()?;
    let side = DataSide::open_named(&shm, geometry(cores)?)?;
    let generation = side.generation();
    let ports = side.take_ports()?;
    let gate = ControlPlaneGate::closed();
    let supervisor = Supervisor::start(side, gate.clone(), &ports)?;
    let mut redeem = appliance::redeem_config(&config, Some(gate));
    redeem.connector = Some(ConnectorConfig::default());
    let engine = engine_config(&config.engine, cores);
    let engine = tokio::task::spawn_blocking(move || -> Result<EngineHandle, RunError> {
        // No listener: the cores only play the connector role, whose
        // listeners come with the control plane's orders.
        let factory = GatewayFactory::with_channel(GatewayConfig::plaintext(), ports, redeem);
        Ok(Engine::start(engine, &[], factory)?)
    })
    .await??;
    tracing::info!(
        name = %name,
        cores = engine.cores(),
        shm = %shm.segment_path().display(),
        generation = generation.0,
        "connector_ready"
    );
    let joined = drain_on_signal(engine, signals, config.engine.drain_secs).await;
    supervisor.stop();
    log_stopped(&joined?);
    Ok(())
}

/// Serves every `[[server_to_client.connectors]]` of `config` for
/// `control`: creates (or resumes) its segment, listens on its link
/// socket, and spawns its redeem tasks, link task and watch task as
/// `control`'s tasks. Logs `connector_serving` for each.
///
/// Errors: [`RunError::Config`] (a segment name, cores), the segment or
/// its link socket ([`RunError::Channel`], [`RunError::Link`]).
pub fn serve_connectors(control: &mut ControlPlane, config: &Config) -> Result<(), RunError> {
    for entry in &config.server_to_client.connectors {
        serve_connector_segment(control, entry)?;
    }
    Ok(())
}

fn serve_connector_segment(
    control: &mut ControlPlane,
    entry: &ConnectorEntry,
) -> Result<(), RunError> {
    let shm = split::segment_name(&entry.shm).map_err(|error| ConfigError::Invalid {
        key: "server_to_client.connectors.shm".to_owned(),
        message: error.to_string(),
    })?;
    let cores = NonZeroUsize::new(entry.cores).ok_or_else(|| ConfigError::Invalid {
        key: "server_to_client.connectors.cores".to_owned(),
        message: format!("0 is outside 1..={}", gatehouse_channel::MAX_CORES),
    })?;
    let side = Arc::new(ControlSide::open_named(&shm, geometry(cores)?)?);
    let listener = side.listen()?;
    let name: Arc<str> = Arc::from(entry.name.as_str());
    let (link, state) = watch::channel(None);
    let keeper = Arc::new(ConnectorKeeper::new(&name, control.s2c().clone(), link));
    let service: RedeemService =
        control
            .redeem_service(side.generation())
            .for_connector(ConnectorRole {
                name,
                link: Some(state),
            });
    control.spawn_all(service.spawn_all(side.take_ports()?));
    control.spawn_all([
        tokio::spawn(split::accept_links(listener, side.clone(), keeper.clone())),
        tokio::spawn(split::watch_peer(side.clone(), keeper, CONNECTOR_SILENCE)),
    ]);
    tracing::info!(
        name = %entry.name,
        shm = %shm.segment_path().display(),
        cores = cores.get(),
        "connector_serving"
    );
    Ok(())
}

/// Which connector process is linked to a segment: what the link and
/// watch tasks report to, and what the segment's port tasks read
/// ([`ConnectorRole::link`]).
#[derive(Debug)]
pub struct ConnectorKeeper {
    name: Arc<str>,
    s2c: ServerToClient,
    /// The generation linked now (`None`: nobody), published to the port
    /// tasks.
    link: watch::Sender<Option<Generation>>,
}

impl ConnectorKeeper {
    /// A keeper of connector `name`'s segment, publishing its link state
    /// on `link`; nobody linked yet.
    pub fn new(name: &str, s2c: ServerToClient, link: watch::Sender<Option<Generation>>) -> Self {
        Self {
            name: Arc::from(name),
            s2c,
            link,
        }
    }

    /// The linked generation, if any.
    pub fn linked_generation(&self) -> Option<Generation> {
        *self.link.borrow()
    }

    /// Lets the linked connector go (if one is, and it is not `keep`):
    /// its flows are forgotten, the orders stop, and `connector_gone` is
    /// logged once. Returns the flows closed, `None` when nobody was let
    /// go.
    fn let_go(&self, keep: Option<Generation>, reason: &'static str) -> Option<usize> {
        let mut previous = None;
        self.link.send_if_modified(|linked| match *linked {
            Some(generation) if Some(generation) != keep => {
                previous = linked.take();
                true
            }
            _ => false,
        });
        let previous = previous?;
        let flows = self.s2c.close_connector_flows(&self.name);
        tracing::warn!(
            name = %self.name,
            generation = previous.0,
            reason,
            flows_closed = flows,
            "connector_gone"
        );
        Some(flows)
    }
}

impl PeerKeeper for ConnectorKeeper {
    fn replaced_by(&self, generation: Generation) {
        self.let_go(Some(generation), "replaced");
    }

    fn linked(&self, linked: &gatehouse_channel::Linked) {
        let generation = linked.peer_generation;
        // The port tasks replay the listen set for this link.
        self.link.send_replace(Some(generation));
        tracing::info!(
            name = %self.name,
            generation = generation.0,
            pid = linked.peer_pid,
            "connector_linked"
        );
    }

    fn link_failed(&self, error: &LinkError) {
        tracing::warn!(name = %self.name, error = %crate::error_chain(error), "connector_link_failed");
    }

    fn attached(&self, _generation: Generation, _pid: u32) {}

    fn silent(&self, generation: Generation, silent_ms: u64) {
        tracing::warn!(
            name = %self.name,
            generation = generation.0,
            silent_ms,
            "connector_silent"
        );
    }

    fn gone(&self, reason: &'static str) {
        self.let_go(None, reason);
    }
}

#[cfg(test)]
pub(crate) mod tests;
