//! Reload on SIGHUP (`gatehouse run`, and each split process:
//! `gatehouse controlplane` applies the STA map, `gatehouse dataplane` the
//! certificate).
//!
//! A SIGHUP re-reads the configuration the process started from (the same
//! file and command-line overrides) and validates it. On error the running
//! configuration stays and `config_reload_failed` says why. On success what
//! can change without dropping an established session is applied:
//!
//! - the gateway's TLS certificate and key (re-read from `[gateway.tls]`,
//!   or the generated pair in `<data_dir>/tls/`): new handshakes on every
//!   core present it, established sessions keep theirs (see
//!   `gatehouse_engine::tls::TlsAcceptor::replace_certificate`);
//! - the access policies (`[policy]`): the next launch decision, listing
//!   and SmartAccess answer sees the new rules, one in flight keeps the
//!   snapshot it started with ([`crate::policy::SharedPolicies::replace`]);
//!
//! and each changed key that needs a restart is named in one
//! `config_reload_restart_needed` event (`keys`, comma-separated): listen
//! addresses, cores and the rest of `[engine]`, the data directory, the
//! local STA (its id and limits), timeouts baked into the
//! cores, the authentication back ends. The event `config_reloaded`
//! (`certificate_replaced`, `restart_needed`) closes every successful
//! reload.

use std::sync::Arc;

use gatehouse_engine::tls::{TlsAcceptor, TlsSetupError};
use tokio::signal::unix::{SignalKind, signal};

use crate::certificate::{self, CertificateError};
use crate::config::{Config, ConfigError};
use crate::policy::{Policies, SharedPolicies};
use crate::sta::http::{RemoteError, StaRouter};

/// Reads and validates the configuration again (the file and the
/// overrides the process started with).
pub type Loader = Arc<dyn Fn() -> Result<Config, ConfigError> + Send + Sync>;

/// Why a reload kept the running configuration.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The new configuration does not load or validate.
    #[error("invalid configuration")]
    Config(#[from] ConfigError),
    /// The certificate or key cannot be read.
    #[error("cannot load the gateway certificate")]
    Certificate(#[from] CertificateError),
    /// The certificate or key is unusable.
    #[error("unusable gateway certificate")]
    Tls(#[from] TlsSetupError),
    /// A remote STA URL is unusable.
    #[error("unusable remote sta")]
    Sta(#[from] RemoteError),
}

/// What a successful reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// New handshakes now present the certificate re-read from disk.
    pub certificate_replaced: bool,
    /// `[sta.remote]` (or its timeout) changed and the router uses the new
    /// map.
    pub sta_remotes_replaced: bool,
    /// `[policy]` changed and the running policies were replaced.
    pub policies_replaced: bool,
    /// Changed keys that take effect only after a restart.
    pub restart_needed: Vec<&'static str>,
}

/// The running configuration and what a reload can change in place.
pub struct Reloader {
    loader: Loader,
    current: Config,
    tls: Option<Arc<TlsAcceptor>>,
    sta: Option<StaRouter>,
    policies: Option<SharedPolicies>,
}

impl std::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloader")
            .field("current", &self.current)
            .field("tls", &self.tls.is_some())
            .field("sta", &self.sta.is_some())
            .field("policies", &self.policies.is_some())
            .finish_non_exhaustive()
    }
}

impl Reloader {
    /// A reloader for a process running `current`, re-reading it with
    /// `loader`; `tls` is the gateway's acceptor (`None`: plaintext, or a
    /// control plane without the data plane).
    pub fn new(loader: Loader, current: Config, tls: Option<Arc<TlsAcceptor>>) -> Self {
        Self {
            loader,
            current,
            tls,
            sta: None,
            policies: None,
        }
    }

    /// The same reloader, also replacing the running access policies
    /// `policies` (shared by the store front and the broker) when
    /// `[policy]` changed.
    pub fn with_policies(mut self, policies: SharedPolicies) -> Self {
        self.policies = Some(policies);
        self
    }

    /// The same reloader, also replacing the remote STA map of `router`
    /// (and of every clone of it).
    pub fn with_sta_router(mut self, router: StaRouter) -> Self {
        self.sta = Some(router);
        self
    }

    /// The configuration in force.
    pub fn current(&self) -> &Config {
        &self.current
    }

    /// Loads, validates and applies the configuration again (blocking file
    /// reads: call it off the async workers).
    ///
    /// Errors: [`ReloadError`]; nothing was changed.
    pub fn reload(&mut self) -> Result<Applied, ReloadError> {
        let fresh = (self.loader)()?;
        let restart_needed = restart_needed(&self.current, &fresh);
        let mut certificate_replaced = false;
        let sta_changed = fresh.sta.remote != self.current.sta.remote
            || fresh.sta.remote_timeout_ms != self.current.sta.remote_timeout_ms;
        if let Some(tls) = &self.tls
            && !fresh.gateway.plaintext
        {
            let pair = certificate::load_or_generate(&fresh.tls_files())?;
            tls.replace_certificate(pair.cert_pem.as_bytes(), pair.key_pem.as_bytes())?;
            certificate_replaced = true;
        }
        let mut sta_remotes_replaced = false;
        if let Some(router) = &self.sta
            && sta_changed
        {
            router.replace_remotes(&fresh.sta)?;
            sta_remotes_replaced = true;
        }
        let mut policies_replaced = false;
        if let Some(policies) = &self.policies
            && fresh.policy != self.current.policy
        {
            // The loader validated the section.
            policies.replace(Policies::new(fresh.policy.clone()));
            policies_replaced = true;
        }
        self.current = fresh;
        Ok(Applied {
            certificate_replaced,
            sta_remotes_replaced,
            policies_replaced,
            restart_needed,
        })
    }

    /// Reloads and logs the outcome: `config_reloaded` and, when keys need
    /// a restart, `config_reload_restart_needed`; `config_reload_failed`
    /// with the error chain otherwise.
    pub fn reload_and_log(&mut self) {
        match self.reload() {
            Ok(applied) => {
                let keys = applied.restart_needed.join(",");
                if !applied.restart_needed.is_empty() {
                    tracing::warn!(keys, "config_reload_restart_needed");
                }
                tracing::info!(
                    certificate_replaced = applied.certificate_replaced,
                    sta_remotes_replaced = applied.sta_remotes_replaced,
                    policies_replaced = applied.policies_replaced,
                    restart_needed = keys,
                    "config_reloaded"
                );
            }
            Err(error) => {
                tracing::error!(error = %crate::error_chain(&error), "config_reload_failed");
            }
        }
    }
}

/// Reloads with `reloader` on every SIGHUP, forever (spawn it; abort it to
/// stop). Each reload runs on a blocking thread, one at a time.
///
/// Errors: the SIGHUP handler cannot be installed.
pub fn spawn_on_sighup(reloader: Reloader) -> std::io::Result<tokio::task::JoinHandle<()>> {
    spawn_on_sighup_shared(Arc::new(parking_lot::Mutex::new(reloader)))
}

/// [`spawn_on_sighup`] with a reloader shared with others (the REST API's
/// `POST /api/v1/reload`); one reload at a time either way.
///
/// Errors: the SIGHUP handler cannot be installed.
pub fn spawn_on_sighup_shared(
    reloader: Arc<parking_lot::Mutex<Reloader>>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let mut hangups = signal(SignalKind::hangup())?;
    Ok(tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            tracing::info!(signal = "SIGHUP", "config_reload_requested");
            let reloader = reloader.clone();
            let _ = tokio::task::spawn_blocking(move || reloader.lock().reload_and_log()).await;
        }
    }))
}

/// The dotted keys (or sections) that differ between `old` and `new` and
/// take effect only after a restart. The certificate files are not among
/// them: they are applied.
pub fn restart_needed(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut keys = Vec::new();
    let mut check = |key: &'static str, changed: bool| {
        if changed {
            keys.push(key);
        }
    };
    check("data_dir", old.data_dir != new.data_dir);
    check("gateway.listen", old.gateway.listen != new.gateway.listen);
    check(
        "gateway.plaintext",
        old.gateway.plaintext != new.gateway.plaintext,
    );
    check(
        "gateway.detect_timeout_ms",
        old.gateway.detect_timeout_ms != new.gateway.detect_timeout_ms,
    );
    check(
        "gateway.handshake_timeout_ms",
        old.gateway.handshake_timeout_ms != new.gateway.handshake_timeout_ms,
    );
    check(
        "gateway.reconnect_window_secs",
        old.gateway.reconnect_window_secs != new.gateway.reconnect_window_secs,
    );
    check(
        "gateway.public_address",
        old.gateway.public_address != new.gateway.public_address,
    );
    check(
        "gateway.session_reliability",
        old.gateway.session_reliability != new.gateway.session_reliability,
    );
    check("admin.listen", old.admin.listen != new.admin.listen);
    check("engine.cores", old.engine.cores != new.engine.cores);
    let mut engine = new.engine.clone();
    engine.cores = old.engine.cores;
    check("engine", old.engine != engine);
    check("sta.id", old.sta.id != new.sta.id);
    // `[sta.remote]` and `sta.remote_timeout_ms` are applied.
    let mut sta = new.sta.clone();
    sta.id = old.sta.id;
    sta.remote = old.sta.remote.clone();
    sta.remote_timeout_ms = old.sta.remote_timeout_ms;
    check("sta", old.sta != sta);
    check("auth", old.auth != new.auth);
    check("ldap", old.ldap != new.ldap);
    check("radius", old.radius != new.radius);
    check(
        "server_to_client.connectors",
        old.server_to_client.connectors != new.server_to_client.connectors,
    );
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_paths_need_no_restart_but_listen_addresses_and_cores_do() {
        let old = Config::default();
        let mut new = old.clone();
        new.gateway.tls.cert = Some("/etc/gatehouse/tls/new.crt".into());
        new.gateway.tls.key = Some("/etc/gatehouse/tls/new.key".into());
        assert!(restart_needed(&old, &new).is_empty());
        new.gateway.listen = "127.0.0.1:9443".parse().unwrap();
        new.engine.cores = 7;
        new.engine.drain_secs += 1;
        assert_eq!(
            restart_needed(&old, &new),
            vec!["gateway.listen", "engine.cores", "engine"]
        );
    }

    #[test]
    fn a_failed_reload_keeps_the_running_configuration() {
        let running = Config::default();
        let loader: Loader = Arc::new(|| {
            Err(ConfigError::Invalid {
                key: "gateway.listen".to_owned(),
                message: "broken".to_owned(),
            })
        });
        let mut reloader = Reloader::new(loader, running.clone(), None);
        let error = reloader.reload().unwrap_err();
        assert!(matches!(error, ReloadError::Config(_)), "{error}");
        assert_eq!(reloader.current(), &running);
    }

    #[test]
    fn a_good_reload_replaces_the_configuration_and_names_the_restart_keys() {
        let mut next = Config::default();
        next.admin.listen = "127.0.0.1:9090".parse().unwrap();
        let loaded = next.clone();
        let loader: Loader = Arc::new(move || Ok(loaded.clone()));
        let mut reloader = Reloader::new(loader, Config::default(), None);
        let applied = reloader.reload().unwrap();
        assert!(!applied.certificate_replaced);
        assert!(!applied.sta_remotes_replaced);
        assert!(!applied.policies_replaced);
        assert_eq!(applied.restart_needed, vec!["admin.listen"]);
        assert_eq!(reloader.current(), &next);
    }

    #[test]
    fn a_reload_replaces_the_policies_that_new_launches_see() {
        use crate::policy::{Action, PolicyRule, Subject, Target, TargetKind};

        let mut next = Config::default();
        next.policy.rules.push(PolicyRule {
            name: "no-finance".to_owned(),
            action: Action::Deny,
            applies_to: Default::default(),
            resources: vec!["Finance".to_owned()],
            users: Vec::new(),
            groups: Vec::new(),
            clients: Vec::new(),
            locations: Vec::new(),
            days: Vec::new(),
            hours: None,
        });
        let loaded = next.clone();
        let loader: Loader = Arc::new(move || Ok(loaded.clone()));
        let shared = SharedPolicies::default();
        let before = shared.current();
        let mut reloader =
            Reloader::new(loader, Config::default(), None).with_policies(shared.clone());
        let subject = Subject {
            user: "alice",
            groups: &[],
            client: None,
        };
        let finance = Target {
            kind: TargetKind::Launch,
            resource: "Finance",
            location: None,
        };
        let now = std::time::SystemTime::now();
        assert!(shared.current().evaluate(&subject, &finance, now).allowed());
        let applied = reloader.reload().unwrap();
        assert!(applied.policies_replaced);
        assert!(
            applied.restart_needed.is_empty(),
            "{:?}",
            applied.restart_needed
        );
        let verdict = shared.current().evaluate(&subject, &finance, now);
        assert!(!verdict.allowed());
        assert_eq!(verdict.rule.as_deref(), Some("no-finance"));
        // A decision in flight keeps its snapshot.
        assert!(before.evaluate(&subject, &finance, now).allowed());
        // The same section again replaces nothing.
        assert!(!reloader.reload().unwrap().policies_replaced);
    }
}
