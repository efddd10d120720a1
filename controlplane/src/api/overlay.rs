//! Writable configuration sections: the running configuration is the
//! file's, overlaid by what the API changed.
//!
//! A change through the API takes the section's items from the running
//! configuration, applies the one create/update/delete, validates the
//! whole new configuration ([`Config::validate`], so errors name the key),
//! stores the section as JSON (table `config_overlay`), and applies it to
//! the running control plane (the broker's catalog, the STA router's
//! remote map). At start, and on every reload, the stored sections win
//! over the file's.
//!
//! A new section-backed resource is a type implementing
//! [`SectionResource`], one line in [`SECTIONS`] and one
//! `section_api!` line in `sections.rs`.

use std::collections::BTreeSet;
use std::marker::PhantomData;

use parking_lot::RwLock;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::Row;

use super::error::ApiError;
use crate::broker::Broker;
use crate::config::{Config, ConfigError};
use crate::policy::SharedPolicies;
use crate::s2c::service::ServerToClient;
use crate::sta::http::StaRouter;
use crate::store::{Store, StoreError};

/// A configuration section the API edits as a collection of keyed items.
pub trait SectionResource: Send + Sync + 'static {
    /// One item of the collection.
    type Item: Serialize + DeserializeOwned + Clone + Send + Sync + 'static;
    /// The collection's path segment and audit resource, e.g.
    /// `delivery-groups`.
    const COLLECTION: &'static str;
    /// The configuration key of the section, e.g. `broker.groups` (the
    /// overlay's row, and the field prefix of validation errors).
    const SECTION: &'static str;
    /// The item's noun in messages, e.g. `delivery group`.
    const WHAT: &'static str;
    /// The field of the item that is its key, e.g. `name`.
    const KEY_FIELD: &'static str;

    /// The item's key.
    fn key(item: &Self::Item) -> String;
    /// The section's items in `config`.
    fn items(config: &Config) -> Vec<Self::Item>;
    /// Replaces the section's items in `config`.
    ///
    /// Errors: `(field, message)` when an item cannot be represented.
    fn set_items(config: &mut Config, items: Vec<Self::Item>) -> Result<(), (String, String)>;
}

/// The type-erased operations [`LiveConfig`] needs on every section.
pub trait SectionOps: Send + Sync {
    /// [`SectionResource::SECTION`].
    fn section(&self) -> &'static str;
    /// Copies the section from `from` into `to`.
    fn copy(&self, from: &Config, to: &mut Config);
    /// Sets the section in `to` from its stored JSON.
    ///
    /// Errors: a message when the JSON does not fit.
    fn load(&self, json: &str, to: &mut Config) -> Result<(), String>;
}

/// The [`SectionOps`] of `S`.
#[derive(Debug)]
pub struct Ops<S>(PhantomData<S>);

impl<S> Ops<S> {
    /// The operations of `S`.
    pub const NEW: Self = Self(PhantomData);
}

impl<S: SectionResource> SectionOps for Ops<S> {
    fn section(&self) -> &'static str {
        S::SECTION
    }

    fn copy(&self, from: &Config, to: &mut Config) {
        // The items came out of a valid configuration: they fit.
        let _ = S::set_items(to, S::items(from));
    }

    fn load(&self, json: &str, to: &mut Config) -> Result<(), String> {
        let items: Vec<S::Item> = serde_json::from_str(json).map_err(|e| e.to_string())?;
        S::set_items(to, items).map_err(|(field, message)| format!("{field}: {message}"))
    }
}

/// Every section the API edits.
pub static SECTIONS: &[&dyn SectionOps] = &[
    &Ops::<super::sections::Groups>::NEW,
    &Ops::<super::sections::Desktops>::NEW,
    &Ops::<super::sections::Resources>::NEW,
    &Ops::<super::sections::Assignments>::NEW,
    &Ops::<super::sections::StaServers>::NEW,
    &Ops::<super::sections::Policies>::NEW,
    &Ops::<super::sections::S2cApps>::NEW,
    &Ops::<super::sections::IipPools>::NEW,
];

/// Applies the overlay stored in `store` onto `config` (at start), then
/// validates the result; returns the sections it set.
///
/// Errors: the store failed, a stored section does not fit, or the
/// overlaid configuration is invalid (the key is named).
pub async fn apply_stored(
    store: &Store,
    config: &mut Config,
) -> Result<BTreeSet<&'static str>, OverlayError> {
    let mut overlaid = BTreeSet::new();
    let rows = sqlx::query("SELECT section, json FROM config_overlay")
        .fetch_all(store.pool())
        .await
        .map_err(StoreError::from)?;
    for row in rows {
        let section: String = row.try_get(0).map_err(StoreError::from)?;
        let json: String = row.try_get(1).map_err(StoreError::from)?;
        let Some(ops) = SECTIONS.iter().find(|ops| ops.section() == section) else {
            tracing::warn!(section, "config_overlay_unknown_section");
            continue;
        };
        ops.load(&json, config)
            .map_err(|message| OverlayError::Section { section, message })?;
        tracing::info!(section = ops.section(), "config_overlay_applied");
        overlaid.insert(ops.section());
    }
    config.validate()?;
    Ok(overlaid)
}

/// Why the stored overlay could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum OverlayError {
    /// The store failed.
    #[error("cannot read the configuration overlay")]
    Store(#[from] StoreError),
    /// A stored section does not fit the configuration.
    #[error("stored section {section}: {message}")]
    Section {
        /// The section.
        section: String,
        /// Why.
        message: String,
    },
    /// The overlaid configuration is invalid.
    #[error("the configuration with the stored overlay is invalid")]
    Invalid(#[from] ConfigError),
}

/// The running configuration and what applies a change to it.
#[derive(Debug)]
pub struct LiveConfig {
    config: RwLock<Config>,
    overlaid: RwLock<BTreeSet<&'static str>>,
    writing: tokio::sync::Mutex<()>,
    store: Store,
    broker: Broker,
    router: StaRouter,
    policies: SharedPolicies,
    s2c: Option<ServerToClient>,
}

impl LiveConfig {
    /// The running `config` (already overlaid), persisting into `store`,
    /// applying to `broker`, `router` and `policies`. Sections with a
    /// stored overlay are listed in `overlaid`.
    pub fn new(
        config: Config,
        overlaid: BTreeSet<&'static str>,
        store: Store,
        broker: Broker,
        router: StaRouter,
        policies: SharedPolicies,
    ) -> Self {
        Self::with_s2c(config, overlaid, store, broker, router, policies, None)
    }

    /// [`LiveConfig::new`], also applying server-to-client apps and pools
    /// to `s2c`.
    pub fn with_s2c(
        config: Config,
        overlaid: BTreeSet<&'static str>,
        store: Store,
        broker: Broker,
        router: StaRouter,
        policies: SharedPolicies,
        s2c: Option<ServerToClient>,
    ) -> Self {
        Self {
            config: RwLock::new(config),
            overlaid: RwLock::new(overlaid),
            writing: tokio::sync::Mutex::new(()),
            store,
            broker,
            router,
            policies,
            s2c,
        }
    }

    /// The server-to-client service changes are applied to, if any.
    pub fn s2c(&self) -> Option<&ServerToClient> {
        self.s2c.as_ref()
    }

    /// A copy of the running configuration.
    pub fn snapshot(&self) -> Config {
        self.config.read().clone()
    }

    /// `fresh` (a reloaded, valid file) with the API's sections copied over
    /// it, validated again; it becomes the running configuration and its
    /// broker catalog and server-to-client apps are put in force (the
    /// caller, a reload, applies the rest; changed pools need a restart or
    /// the API).
    ///
    /// Errors: the overlaid configuration is invalid (e.g. the file dropped
    /// a group an API-made desktop uses); nothing changed.
    pub fn overlay_reloaded(&self, mut fresh: Config) -> Result<Config, ConfigError> {
        let current = self.config.read().clone();
        let overlaid = self.overlaid.read().clone();
        for ops in SECTIONS
            .iter()
            .filter(|ops| overlaid.contains(ops.section()))
        {
            ops.copy(&current, &mut fresh);
        }
        fresh.validate()?;
        if let Some(s2c) = &self.s2c
            && fresh.server_to_client.apps != current.server_to_client.apps
        {
            s2c.replace_apps(fresh.server_to_client.apps.clone());
        }
        if fresh.broker != current.broker {
            self.broker
                .replace_catalog(crate::broker::catalog::Catalog::new(fresh.broker.clone()));
        }
        *self.config.write() = fresh.clone();
        Ok(fresh)
    }

    /// Changes the section of `S` with `edit` (given the current items,
    /// returns the new ones and the answer), validates, stores, applies.
    ///
    /// Errors: whatever `edit` returns; [`ApiError::validation`] naming the
    /// key when the new configuration is invalid; a store failure.
    pub async fn change<S: SectionResource, T>(
        &self,
        edit: impl FnOnce(Vec<S::Item>) -> Result<(Vec<S::Item>, T), ApiError>,
    ) -> Result<T, ApiError> {
        let _one_at_a_time = self.writing.lock().await;
        let mut next = self.snapshot();
        let (items, answer) = edit(S::items(&next))?;
        S::set_items(&mut next, items.clone())
            .map_err(|(field, message)| ApiError::validation(field, message))?;
        next.validate().map_err(|error| match error {
            ConfigError::Invalid { key, message } | ConfigError::Key { key, message, .. } => {
                ApiError::validation(key, message)
            }
            other => ApiError::validation(S::SECTION, other.to_string()),
        })?;
        self.apply(&next).await?;
        let json = serde_json::to_string(&items)
            .map_err(|e| ApiError::internal(format!("cannot encode the section: {e}")))?;
        let stored = sqlx::query(
            "INSERT INTO config_overlay (section, json, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (section) DO UPDATE SET json = excluded.json, updated_at = excluded.updated_at",
        )
        .bind(S::SECTION)
        .bind(json)
        .bind(super::unix_now())
        .execute(self.store.pool())
        .await
        .map_err(StoreError::from);
        if let Err(error) = stored {
            // Back to what is stored and running.
            let _ = self.apply(&self.snapshot()).await;
            return Err(error.into());
        }
        *self.config.write() = next;
        self.overlaid.write().insert(S::SECTION);
        Ok(answer)
    }

    /// Puts `config`'s broker catalog, access policies and remote STA map
    /// in force.
    async fn apply(&self, config: &Config) -> Result<(), ApiError> {
        if let Some(s2c) = &self.s2c {
            if s2c.apps() != config.server_to_client.apps {
                s2c.replace_apps(config.server_to_client.apps.clone());
            }
            if s2c.pools() != config.server_to_client.pools {
                s2c.replace_pools(config.server_to_client.pools.clone())
                    .await?;
            }
        }
        self.broker
            .replace_catalog(crate::broker::catalog::Catalog::new(config.broker.clone()));
        if self.policies.current().section() != &config.policy {
            self.policies
                .replace(crate::policy::Policies::new(config.policy.clone()));
        }
        self.router
            .replace_remotes(&config.sta)
            .map_err(|error| ApiError::validation("sta.remote", crate::error_chain(&error)))
    }
}
