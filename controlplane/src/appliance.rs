//! `gatehouse run`: the control plane and the data-plane cores in one
//! process, wired by an in-process channel (DESIGN.md §3).
//!
//! Start order, each step logged and any failure fatal:
//! 1. the data directory and the gateway certificate (generated on first
//!    start, see [`crate::certificate`]);
//! 2. the STA, its sweeper, and the internal HTTP listener ([`crate::admin`]);
//! 3. the channel (one ring pair per core), the per-core redeem tasks and
//!    the heartbeat ([`crate::redeem`]);
//! 4. the engine cores on the gateway listener ([`start_gateway`]).
//!
//! Then one `gatehouse_ready` event names the bound addresses (`gateway=`,
//! `admin=`; useful with port 0). SIGTERM or SIGINT stops accepting and
//! drains the sessions for `engine.drain_secs` (the redeem tasks keep
//! answering meanwhile); a second signal cuts them. Then the admin listener
//! and the tasks stop and `run` returns.
//!
//! The pieces are public for [`crate::split`], which runs the same control
//! plane ([`ControlPlane`]) and the same gateway ([`start_gateway_with`]) in
//! two processes over a named segment.

use std::fs;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use gatehouse_channel::{
    AttachError, CorePort, DEFAULT_SLOTS_PER_RING, Generation, Geometry, LinkError, MAX_CORES,
    PortsTaken,
};
use gatehouse_engine::cgp::CgpConfig;
use gatehouse_engine::detect::Detection;
use gatehouse_engine::socks::SocksConfig;
use gatehouse_engine::tls::{TlsAcceptor, TlsSetupError};
use gatehouse_engine::{
    ChannelRedeemerConfig, ControlPlaneGate, CoreStats, Engine, EngineConfig, EngineError,
    EngineHandle, GatewayConfig, GatewayFactory, WebForward,
};
use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::admin;
use crate::certificate::{self, CertificateError, GatewayCertificate};
use crate::config::{self, Config, ConfigError, EngineSection};
use crate::policy::{Policies, SharedPolicies};
use crate::reconnect::{KEEPER_PERIOD, ReconnectTable};
use crate::redeem::{
    self, DEFAULT_RESOLVE_TIMEOUT, HEARTBEAT_PERIOD, RedeemService, SystemResolver,
};
use crate::reload;
use crate::sessions::{SessionIds, SessionTable};
use crate::sta::Sta;
use crate::sta::http::{self as sta_http, RemoteError, SharedSta, StaRouter};
use crate::web;

/// Worker threads of the control plane's tokio runtime: the control plane
/// is light next to the data plane, which owns the cores.
pub const CONTROL_THREADS: usize = 2;

/// How often expired tickets are swept.
pub const STA_SWEEP_PERIOD: Duration = Duration::from_secs(1);

/// What `engine.idle_timeout_secs = 0` ("never") becomes: the engine wants a
/// positive timeout, and a year is never for a desktop session.
pub const IDLE_NEVER: Duration = Duration::from_secs(365 * 24 * 3_600);

/// How long the admin listener may take to finish its requests on shutdown.
const ADMIN_STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the aborted background tasks may take to end on shutdown.
const TASK_STOP_TIMEOUT: Duration = Duration::from_secs(2);

/// Why `gatehouse run` could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The configuration is invalid (exit 64).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The tokio runtime could not be built.
    #[error("cannot start the control plane runtime")]
    Runtime(#[source] std::io::Error),
    /// The data directory could not be created.
    #[error("cannot create the data directory {}", path.display())]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The system error.
        #[source]
        source: std::io::Error,
    },
    /// The gateway certificate could not be read or generated.
    #[error(transparent)]
    Certificate(#[from] CertificateError),
    /// A remote STA URL is unusable.
    #[error("invalid remote sta")]
    Sta(#[from] RemoteError),
    /// The internal listener could not be bound.
    #[error("cannot listen on {addr} (admin.listen)")]
    AdminBind {
        /// The address.
        addr: SocketAddr,
        /// The system error.
        #[source]
        source: std::io::Error,
    },
    /// The DNS responder of the registered client names could not be
    /// bound.
    #[error("cannot listen on {addr} (server_to_client.dns_listen)")]
    DnsBind {
        /// The address.
        addr: SocketAddr,
        /// The system error.
        #[source]
        source: std::io::Error,
    },
    /// The channel between the planes could not be created.
    #[error("cannot create the channel between the planes")]
    Channel(#[from] AttachError),
    /// The channel's ports were taken twice (a bug).
    #[error(transparent)]
    Ports(#[from] PortsTaken),
    /// The control plane cannot listen for data planes on the segment's
    /// link socket.
    #[error("cannot listen for data planes")]
    Link(#[from] LinkError),
    /// The gateway certificate or key is unusable for TLS.
    #[error("cannot use the gateway certificate")]
    Tls(#[from] TlsSetupError),
    /// A TLS listener was started without a certificate (a bug).
    #[error("the tls gateway listener has no certificate")]
    NoCertificate,
    /// The engine failed to start or a core died.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// A blocking step panicked or was cancelled.
    #[error("a control plane task failed")]
    Task(#[from] tokio::task::JoinError),
    /// The login service (store, OTP key, LDAP or RADIUS settings) could
    /// not be set up.
    #[error("cannot set up the web login")]
    Login(#[source] crate::login::LoginSetupError),
    /// The broker could not start (store or directory).
    #[error("cannot start the broker")]
    Broker(#[from] crate::broker::BrokerStartError),
    /// The configuration overlay the REST API stored cannot be applied.
    #[error("cannot apply the stored configuration overlay")]
    Overlay(#[from] crate::api::overlay::OverlayError),
    /// The web socket could not be bound.
    #[error("cannot listen on the web socket {}", path.display())]
    Web {
        /// The socket path.
        path: PathBuf,
        /// The system error.
        #[source]
        source: std::io::Error,
    },
}

impl RunError {
    /// Whether this is a configuration error (exit 64).
    pub fn is_config(&self) -> bool {
        matches!(
            self,
            Self::Config(_) | Self::Engine(EngineError::Config(_)) | Self::Sta(_)
        )
    }
}

/// Runs the gateway with `config` until SIGTERM/SIGINT and the drain that
/// follows. Builds and owns the control plane's tokio runtime
/// ([`CONTROL_THREADS`] workers); blocks the calling thread.
///
/// Errors: [`RunError`]; a start failure stops whatever had started.
pub fn run(config: Config) -> Result<(), RunError> {
    let fixed = config.clone();
    run_reloadable(
        config,
        Arc::new(move || fixed.validate().map(|()| fixed.clone())),
    )
}

/// [`run`], reloading with `loader` on SIGHUP (see [`crate::reload`]).
///
/// Errors: as [`run`].
pub fn run_reloadable(config: Config, loader: reload::Loader) -> Result<(), RunError> {
    config.validate()?;
    runtime()?.block_on(serve(config, loader))
}

/// The control plane's tokio runtime ([`CONTROL_THREADS`] workers, I/O and
/// time enabled), also used by the split processes.
///
/// Errors: [`RunError::Runtime`].
pub fn runtime() -> Result<tokio::runtime::Runtime, RunError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(CONTROL_THREADS)
        .thread_name("gatehouse-control")
        .enable_all()
        .build()
        .map_err(RunError::Runtime)
}

/// The engine configuration for the `[engine]` section, with `cores`
/// resolved.
pub fn engine_config(section: &EngineSection, cores: NonZeroUsize) -> EngineConfig {
    EngineConfig {
        cores: Some(cores),
        pin_cores: section.pin,
        balance_accepts: section.balance_accepts,
        driver: match section.driver {
            config::Driver::Auto => gatehouse_engine::Driver::Auto,
            config::Driver::IoUring => gatehouse_engine::Driver::IoUring,
            config::Driver::Legacy => gatehouse_engine::Driver::Legacy,
        },
        relay: match section.relay {
            config::Relay::Auto => gatehouse_engine::RelayMode::Auto,
            config::Relay::Splice => gatehouse_engine::RelayMode::Splice,
            config::Relay::Copy => gatehouse_engine::RelayMode::Copy,
        },
        idle_timeout: match section.idle_timeout_secs {
            0 => IDLE_NEVER,
            secs => Duration::from_secs(secs),
        },
        max_connections_per_core: section.max_connections_per_core,
        max_pending_handshakes_per_core: section.max_pending_handshakes_per_core,
        drain_deadline: Duration::from_secs(section.drain_secs),
        copy_hot_ms: section.copy_hot_ms,
        ..EngineConfig::default()
    }
}

/// How many data-plane cores `engine.cores` means: the value, or one per
/// CPU for 0; at most [`MAX_CORES`] (a channel limit).
pub fn resolve_cores(configured: usize) -> NonZeroUsize {
    let wanted = NonZeroUsize::new(configured)
        .or_else(|| std::thread::available_parallelism().ok())
        .unwrap_or(NonZeroUsize::MIN);
    wanted.min(NonZeroUsize::new(usize::from(MAX_CORES)).unwrap_or(NonZeroUsize::MIN))
}

/// Starts the engine cores on `config.gateway.listen` with the gateway
/// handler (detect -> TLS -> SOCKSv5 -> redeem over the channel -> relay),
/// core `i` redeeming through `ports[i]`. `certificate` is required unless
/// `gateway.plaintext` is set.
///
/// Errors: [`RunError::Tls`] (the certificate or key is unusable),
/// [`RunError::Engine`] (bad engine config, bind failure, core start).
pub fn start_gateway(
    config: &Config,
    certificate: Option<&GatewayCertificate>,
    ports: Vec<CorePort>,
) -> Result<EngineHandle, RunError> {
    start_gateway_with(config, certificate, ports, redeem_config(config, None))
}

/// [`start_gateway`] with the cores' redeemers configured by `redeem` (a
/// data plane in its own process passes its [`ControlPlaneGate`]).
///
/// Errors: as [`start_gateway`].
pub fn start_gateway_with(
    config: &Config,
    certificate: Option<&GatewayCertificate>,
    ports: Vec<CorePort>,
    redeem: ChannelRedeemerConfig,
) -> Result<EngineHandle, RunError> {
    start_gateway_tls(config, certificate, ports, redeem).map(|(engine, _)| engine)
}

/// [`start_gateway_with`], also returning the TLS acceptor the cores share
/// (`None` for a plaintext listener), whose certificate a reload replaces.
///
/// Errors: as [`start_gateway`].
pub fn start_gateway_tls(
    config: &Config,
    certificate: Option<&GatewayCertificate>,
    ports: Vec<CorePort>,
    redeem: ChannelRedeemerConfig,
) -> Result<(EngineHandle, Option<Arc<TlsAcceptor>>), RunError> {
    let cores = NonZeroUsize::new(ports.len()).unwrap_or(NonZeroUsize::MIN);
    let engine = engine_config(&config.engine, cores);
    let handshake = Duration::from_millis(config.gateway.handshake_timeout_ms);
    let tls = match (config.gateway.plaintext, certificate) {
        (false, Some(certificate)) => {
            let acceptor = TlsAcceptor::from_pem(
                certificate.cert_pem.as_bytes(),
                certificate.key_pem.as_bytes(),
            )?;
            Some(Arc::new(acceptor.with_handshake_deadline(handshake)))
        }
        (false, None) => return Err(RunError::NoCertificate),
        (true, _) => None,
    };
    let gateway = GatewayConfig {
        tls,
        detection: Detection {
            deadline: Duration::from_millis(config.gateway.detect_timeout_ms),
            ..Detection::default()
        },
        socks: SocksConfig {
            deadline: handshake,
            ..SocksConfig::default()
        },
        cgp: CgpConfig {
            deadline: handshake,
            ..CgpConfig::default()
        },
        web: Some(WebForward::new(config.data_dir.join(web::SOCKET_NAME))),
        raw_ica: false,
    };
    let acceptor = gateway.tls.clone();
    let factory = GatewayFactory::with_channel(gateway, ports, redeem);
    let engine = Engine::start(engine, &[config.gateway.listen], factory)?;
    Ok((engine, acceptor))
}

/// How the cores redeem over the channel: [`verdict_deadline`], at most a
/// ring's worth in flight, and, with a `gate` (split processes), the
/// control plane's liveness and `engine.control_plane_wait_ms`.
pub fn redeem_config(config: &Config, gate: Option<ControlPlaneGate>) -> ChannelRedeemerConfig {
    ChannelRedeemerConfig {
        deadline: verdict_deadline(config),
        max_pending: ChannelRedeemerConfig::DEFAULT_MAX_PENDING
            .min(usize::try_from(DEFAULT_SLOTS_PER_RING).unwrap_or(usize::MAX)),
        gate,
        control_plane_wait: Duration::from_millis(config.engine.control_plane_wait_ms),
        // The cores also play the connector role when a pool may be
        // owned by the gateway's own connector name.
        connector: config
            .server_to_client
            .gateway_is_connector()
            .then(gatehouse_engine::ConnectorConfig::default),
    }
}

/// How long a core waits for a verdict: long enough for the slowest answer
/// the control plane may give (a remote STA at its timeout, then a worker
/// name resolved at its timeout), plus a second.
pub fn verdict_deadline(config: &Config) -> Duration {
    Duration::from_millis(config.sta.remote_timeout_ms)
        + DEFAULT_RESOLVE_TIMEOUT
        + Duration::from_secs(1)
}

/// Everything `run` does inside the runtime.
async fn serve(config: Config, loader: reload::Loader) -> Result<(), RunError> {
    let signals = Signals::catch()?;
    let certificate = prepare_data_dir(&config)?;
    let mut control = ControlPlane::start(&config).await?;

    let (side, data) =
        gatehouse_channel::in_process(geometry(resolve_cores(config.engine.cores))?)?;
    let service = control.redeem_service(side.generation());
    control.spawn_all(service.spawn_all(side.take_ports()?));
    let data_ports = data.take_ports()?;
    control.spawn_all([tokio::spawn(redeem::heartbeat(
        Arc::new(side),
        HEARTBEAT_PERIOD,
    ))]);
    crate::connector::serve_connectors(&mut control, &config)?;

    let engine_config = config.clone();
    let (engine, acceptor) = tokio::task::spawn_blocking(move || {
        let redeem = redeem_config(&engine_config, None);
        start_gateway_tls(&engine_config, certificate.as_ref(), data_ports, redeem)
    })
    .await??;
    control.attach_reloader(loader, acceptor)?;
    let gateway_addr = engine
        .local_addrs()
        .first()
        .copied()
        .unwrap_or(config.gateway.listen);
    let _ = control.api().gateway_addr.set(gateway_addr);
    tracing::info!(
        gateway = %gateway_addr,
        admin = %control.admin_addr(),
        cores = engine.cores(),
        tls = !config.gateway.plaintext,
        sta = %config.sta.id,
        data_dir = %config.data_dir.display(),
        "gatehouse_ready"
    );

    // The redeem tasks keep answering while the sessions drain.
    let joined = drain_on_signal(engine, signals, config.engine.drain_secs).await;
    control.stop().await;
    // The data side (and its rings) lives until here, past the engine.
    drop(data);
    log_stopped(&joined?);
    Ok(())
}

/// The control plane without its channel: the STA and its sweeper, the
/// session table, the resumable CGP sessions and their keeper, the
/// internal HTTP listener (STA endpoint, `/healthz`, `/sessions`) and the
/// web side (`<data_dir>/web.sock`). The channel tasks are added with
/// [`ControlPlane::spawn_all`]; [`ControlPlane::stop`] ends everything.
#[derive(Debug)]
pub struct ControlPlane {
    router: StaRouter,
    sessions: Arc<SessionTable>,
    reconnects: Arc<ReconnectTable>,
    admin: Admin,
    api: crate::api::Api,
    web_stop: tokio::sync::watch::Sender<bool>,
    policies: SharedPolicies,
    background: Vec<JoinHandle<()>>,
    s2c: crate::s2c::service::ServerToClient,
}

impl ControlPlane {
    /// Starts the STA (with its sweeper) and the admin listener of
    /// `config`. Call inside the control plane's runtime.
    ///
    /// Errors: [`RunError::Sta`] (a remote STA URL), [`RunError::AdminBind`],
    /// [`RunError::Web`].
    pub async fn start(config: &Config) -> Result<Self, RunError> {
        let sta = Arc::new(Mutex::new(Sta::new(
            config.sta.id,
            config.sta.limits(),
            sta_http::os_fill,
        )));
        let router = StaRouter::from_config(sta.clone(), &config.sta)?;
        let sessions = Arc::new(SessionTable::new());
        let reconnects = Arc::new(ReconnectTable::new(Duration::from_secs(
            config.gateway.reconnect_window_secs,
        )));
        let mut background = vec![tokio::spawn(sta_http::sweep_every(
            sta.clone(),
            STA_SWEEP_PERIOD,
        ))];
        // The keeper needs the router and the table only; its session ids
        // are never used.
        let keeper = RedeemService::new(
            router.clone(),
            sessions.clone(),
            Arc::new(SessionIds::new(Generation(0))),
            SystemResolver,
            DEFAULT_RESOLVE_TIMEOUT,
        )
        .with_reconnects(reconnects.clone());
        background.push(tokio::spawn(redeem::keep_reconnects(keeper, KEEPER_PERIOD)));
        let web_path = config.data_dir.join(web::SOCKET_NAME);
        let web_listener = web::bind(&web_path).map_err(|source| RunError::Web {
            path: web_path.clone(),
            source,
        })?;
        let store = crate::store::Store::open(&config.data_dir)
            .await
            .map_err(|e| RunError::Login(e.into()))?;
        // What the REST API changed wins over the file (crate::api::overlay).
        let file_config = config;
        let mut live = file_config.clone();
        let overlaid = crate::api::overlay::apply_stored(&store, &mut live).await?;
        let config = &live;
        if overlaid.contains("sta.remote") {
            router.replace_remotes(&config.sta)?;
        }
        let mut login =
            crate::login::Login::from_config(config, store.clone()).map_err(RunError::Login)?;
        // Push approval: the login flow asks the built-in provider, whose
        // device endpoints share the gateway's TLS listener.
        let devices = if config.push.enabled {
            let key = crate::auth::seal::OtpKey::load_or_generate(
                config.auth.otp_key_file.as_deref(),
                &config.data_dir,
            )
            .map_err(|e| RunError::Login(e.into()))?;
            // Devices live where the login flow keeps them: in the users'
            // LDAP attribute when a directory is configured, else the store.
            let secrets: Arc<dyn crate::push::DeviceSecrets> = match config
                .ldap
                .settings()
                .map_err(|e| RunError::Login(e.into()))?
            {
                Some(settings) => Arc::new(crate::push::LdapSecrets::new(
                    crate::ldap::LdapDirectory::new(settings),
                    key,
                )),
                None => Arc::new(crate::push::StoreSecrets::new(store.clone(), key)),
            };
            let push = crate::push::BuiltinPush::new(config.push.settings(), secrets);
            login = login.with_push(Arc::new(push.clone()));
            crate::push::router(push)
        } else {
            axum::Router::new()
        };
        let login = Arc::new(login);
        // One set of access policies for every decision (store front, XML
        // broker, AuthService, server-to-client flows); a reload or an API
        // change replaces it in place.
        let policies = SharedPolicies::new(Policies::new(config.policy.clone()));
        let s2c = crate::s2c::service::ServerToClient::open(
            &config.server_to_client,
            policies.clone(),
            store.clone(),
        )
        .await
        .map_err(|e| RunError::Login(e.into()))?;
        if s2c.enabled() {
            let local_users = store
                .list_users()
                .await
                .map_or(0, |users| users.len() as u64);
            s2c.warn_undersized(local_users, std::time::SystemTime::now());
        }
        if let Some(addr) = config.server_to_client.dns_listen {
            let socket = tokio::net::UdpSocket::bind(addr)
                .await
                .map_err(|source| RunError::DnsBind { addr, source })?;
            background.push(tokio::spawn(crate::s2c::dns::serve(socket, s2c.clone())));
        }
        let access = web::access::AccessState {
            login: login.clone(),
            s2c: s2c.clone(),
        };
        let devices = devices.merge(web::access::router(access.clone()));
        background.push(tokio::spawn(crate::login::session::sweep_every(
            login.sessions().clone(),
            crate::login::session::SWEEP_PERIOD,
        )));
        let broker = crate::broker::Broker::from_config(
            config,
            sta.clone(),
            store.clone(),
            policies.clone(),
        )
        .await?;
        let login_devices = login.devices().clone();
        let web_state = web::WebState::new(login).with_store(web::storefront::StoreFront::new(
            broker.clone(),
            &config.gateway,
        ));
        let (web_stop, web_stopped) = tokio::sync::watch::channel(false);
        background.push(tokio::spawn(web::serve(
            web_listener,
            web::router_with(Arc::new(web_state), devices).layer(
                axum::middleware::from_fn_with_state(access, web::access::release_on_logout),
            ),
            web_stopped,
        )));
        let api = crate::api::Api::new(crate::api::Inner {
            tokens: crate::api::token::Tokens::new(store.clone()),
            audit: crate::api::audit::AuditLog::new(store.clone()),
            store: store.clone(),
            sessions: sessions.clone(),
            broker: broker.clone(),
            live: crate::api::overlay::LiveConfig::with_s2c(
                config.clone(),
                overlaid,
                store,
                broker.clone(),
                router.clone(),
                policies.clone(),
                Some(s2c.clone()),
            ),
            admin_addr: std::sync::OnceLock::new(),
            gateway_addr: std::sync::OnceLock::new(),
            reloader: Mutex::new(None),
            devices: Some(login_devices),
        });
        let admin = Admin::start(
            config.admin.listen,
            sta,
            sessions.clone(),
            broker,
            api.clone(),
        )
        .await?;
        let _ = api.admin_addr.set(admin.addr);
        Ok(Self {
            router,
            sessions,
            reconnects,
            admin,
            api,
            web_stop,
            policies,
            background,
            s2c,
        })
    }

    /// The access policies every launch decision reads; a reload replaces
    /// them ([`reload::Reloader::with_policies`]).
    pub fn policies(&self) -> &SharedPolicies {
        &self.policies
    }

    /// The REST API's state (`/api/v1`, [`crate::api`]).
    pub fn api(&self) -> &crate::api::Api {
        &self.api
    }

    /// Reloads with `loader` on SIGHUP and `POST /api/v1/reload`: the
    /// reloaded file with the API's overlay over it, applied to the broker's
    /// catalog, the STA router and, with `tls`, the gateway certificate.
    ///
    /// Errors: [`RunError::Runtime`] (the SIGHUP handler).
    pub fn attach_reloader(
        &mut self,
        loader: reload::Loader,
        tls: Option<Arc<TlsAcceptor>>,
    ) -> Result<(), RunError> {
        let api = self.api.clone();
        let overlaid: reload::Loader =
            Arc::new(move || loader().and_then(|fresh| api.live.overlay_reloaded(fresh)));
        let reloader = reload::Reloader::new(overlaid, self.api.live.snapshot(), tls)
            .with_sta_router(self.router.clone())
            .with_policies(self.policies.clone());
        let shared = Arc::new(Mutex::new(reloader));
        self.api.set_reloader(shared.clone());
        let task = reload::spawn_on_sighup_shared(shared).map_err(RunError::Runtime)?;
        self.spawn_all([task]);
        Ok(())
    }

    /// The STA router (local STA and remote map) the redeem services share.
    pub fn sta_router(&self) -> &StaRouter {
        &self.router
    }

    /// The bound address of the admin listener.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin.addr
    }

    /// The session table the redeem service records into (and `/sessions`
    /// shows).
    pub fn sessions(&self) -> &Arc<SessionTable> {
        &self.sessions
    }

    /// A redeem service over this control plane's STA router and session
    /// table, allocating session ids for the channel side of `generation`.
    pub fn redeem_service(&self, generation: Generation) -> RedeemService {
        let service = RedeemService::new(
            self.router.clone(),
            self.sessions.clone(),
            Arc::new(SessionIds::new(generation)),
            SystemResolver,
            DEFAULT_RESOLVE_TIMEOUT,
        )
        .with_reconnects(self.reconnects.clone());
        if self.s2c.enabled() {
            service.with_s2c(self.s2c.clone())
        } else {
            service
        }
    }

    /// Server-to-client leases, flows and names.
    pub fn s2c(&self) -> &crate::s2c::service::ServerToClient {
        &self.s2c
    }

    /// Adds tasks that [`ControlPlane::stop`] aborts.
    pub fn spawn_all(&mut self, tasks: impl IntoIterator<Item = JoinHandle<()>>) {
        self.background.extend(tasks);
    }

    /// Stops the admin listener (bounded wait for its requests), aborts
    /// every task and waits (bounded) until they are gone, so whatever they
    /// own (channel ports) is dropped.
    pub async fn stop(self) {
        let _ = self.web_stop.send(true);
        self.admin.stop().await;
        for task in &self.background {
            task.abort();
        }
        let ended = join_each(self.background);
        if tokio::time::timeout(TASK_STOP_TIMEOUT, ended)
            .await
            .is_err()
        {
            tracing::warn!("control_tasks_stop_timeout");
        }
    }
}

/// Awaits every task in turn (their outcome, cancelled or not, is moot).
async fn join_each(tasks: Vec<JoinHandle<()>>) {
    for task in tasks {
        let _ = task.await;
    }
}

/// The one `gatehouse_stopped` event with the totals of the cores.
pub(crate) fn log_stopped(joined: &[CoreStats]) {
    let total = CoreStats::total(joined);
    tracing::info!(
        accepted = total.accepted,
        bytes_up = total.bytes_up,
        bytes_down = total.bytes_down,
        drain_cuts = total.drain_cuts,
        "gatehouse_stopped"
    );
}

/// Creates the data directory (0700) and, for a TLS listener, loads or
/// generates the certificate.
pub(crate) fn prepare_data_dir(config: &Config) -> Result<Option<GatewayCertificate>, RunError> {
    create_data_dir(config)?;
    if config.gateway.plaintext {
        return Ok(None);
    }
    Ok(Some(certificate::load_or_generate(&config.tls_files())?))
}

/// Creates the data directory (0700, with its parents) if it is missing.
pub(crate) fn create_data_dir(config: &Config) -> Result<(), RunError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&config.data_dir)
        .map_err(|source| RunError::DataDir {
            path: config.data_dir.clone(),
            source,
        })
}

/// The channel geometry for `cores` data-plane cores: one ring pair per
/// core of [`DEFAULT_SLOTS_PER_RING`] slots. Both planes of a split
/// deployment compute it from the same `engine.cores`.
///
/// Errors: [`RunError::Config`] naming `engine.cores` past [`MAX_CORES`].
pub fn geometry(cores: NonZeroUsize) -> Result<Geometry, RunError> {
    Ok(u16::try_from(cores.get())
        .ok()
        .and_then(|cores| Geometry::new(cores, DEFAULT_SLOTS_PER_RING).ok())
        .ok_or_else(|| ConfigError::Invalid {
            key: "engine.cores".to_owned(),
            message: format!("{cores} cores do not fit the channel (at most {MAX_CORES})"),
        })?)
}

/// Waits for the first SIGTERM/SIGINT, then stops accepting, drains for
/// `drain_secs` (a second signal cuts the sessions at once) and waits for
/// the cores.
pub(crate) async fn drain_on_signal(
    engine: EngineHandle,
    mut signals: Signals,
    drain_secs: u64,
) -> Result<Vec<CoreStats>, RunError> {
    signals.first().await;
    let deadline = Duration::from_secs(drain_secs);
    let control = engine.control();
    tokio::task::spawn_blocking(move || control.shutdown(deadline)).await?;
    let control = engine.control();
    let cut = tokio::spawn(async move {
        signals.next().await;
        tracing::info!("shutdown_cut");
        let _ = tokio::task::spawn_blocking(move || control.shutdown(Duration::ZERO)).await;
    });
    let joined = tokio::task::spawn_blocking(move || engine.join()).await;
    cut.abort();
    Ok(joined??)
}

/// SIGTERM and SIGINT, caught from the start of `serve`.
pub(crate) struct Signals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

impl Signals {
    pub(crate) fn catch() -> Result<Self, RunError> {
        Ok(Self {
            terminate: signal(SignalKind::terminate()).map_err(RunError::Runtime)?,
            interrupt: signal(SignalKind::interrupt()).map_err(RunError::Runtime)?,
        })
    }

    /// The first signal: logged as `shutdown_requested`.
    pub(crate) async fn first(&mut self) {
        let name = self.next().await;
        tracing::info!(signal = name, "shutdown_requested");
    }

    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.terminate.recv() => "SIGTERM",
            _ = self.interrupt.recv() => "SIGINT",
        }
    }
}

/// The running internal HTTP listener.
#[derive(Debug)]
struct Admin {
    addr: SocketAddr,
    task: JoinHandle<std::io::Result<()>>,
    stop: Arc<Notify>,
}

impl Admin {
    async fn start(
        listen: SocketAddr,
        sta: SharedSta,
        sessions: Arc<SessionTable>,
        broker: crate::broker::Broker,
        api: crate::api::Api,
    ) -> Result<Self, RunError> {
        let bind_error = |source| RunError::AdminBind {
            addr: listen,
            source,
        };
        let listener = TcpListener::bind(listen).await.map_err(bind_error)?;
        let addr = listener.local_addr().map_err(bind_error)?;
        let stop = Arc::new(Notify::new());
        let stopped = stop.clone();
        let router = admin::router(sta)
            .merge(admin::sessions_router(sessions))
            .merge(crate::metrics::router())
            .merge(admin::broker_router(broker))
            .merge(crate::api::router(api));
        let task = tokio::spawn(admin::serve(listener, router, async move {
            stopped.notified().await;
        }));
        Ok(Self { addr, task, stop })
    }

    /// Stops accepting and waits (bounded) for the requests in flight.
    async fn stop(self) {
        self.stop.notify_one();
        match tokio::time::timeout(ADMIN_STOP_TIMEOUT, self.task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(error))) => tracing::warn!(error = %error, "admin_listener_failed"),
            Ok(Err(error)) => tracing::warn!(error = %error, "admin_listener_failed"),
            Err(_) => tracing::warn!("admin_listener_stop_timeout"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_section_maps_onto_the_engine_config() {
        let mut section = EngineSection {
            pin: true,
            driver: config::Driver::Legacy,
            relay: config::Relay::Copy,
            idle_timeout_secs: 0,
            drain_secs: 7,
            copy_hot_ms: 40,
            ..EngineSection::default()
        };
        let engine = engine_config(&section, NonZeroUsize::new(3).unwrap());
        assert_eq!(engine.cores, NonZeroUsize::new(3));
        assert!(engine.pin_cores);
        assert_eq!(engine.driver, gatehouse_engine::Driver::Legacy);
        assert_eq!(engine.relay, gatehouse_engine::RelayMode::Copy);
        assert_eq!(engine.idle_timeout, IDLE_NEVER);
        assert_eq!(engine.drain_deadline, Duration::from_secs(7));
        assert_eq!(engine.copy_hot_ms, 40);
        engine.validate().unwrap();
        section.idle_timeout_secs = 30;
        let engine = engine_config(&section, NonZeroUsize::MIN);
        assert_eq!(engine.idle_timeout, Duration::from_secs(30));
    }

    #[test]
    fn zero_cores_means_one_per_cpu_within_the_channel_limit() {
        let cpus = std::thread::available_parallelism().unwrap();
        assert_eq!(resolve_cores(0), cpus.min(NonZeroUsize::new(256).unwrap()));
        assert_eq!(resolve_cores(3).get(), 3);
        assert_eq!(resolve_cores(10_000).get(), usize::from(MAX_CORES));
    }
}
