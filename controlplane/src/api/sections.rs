//! The configuration-backed resources: delivery groups, desktops,
//! published resources, permanent assignments (`[broker]`) and STA
//! servers (`[sta.remote]`), access policies (`[[policy.rules]]`). Each is a [`SectionResource`] plus one
//! `section_api!` line generating its five handlers (list, get, create,
//! replace, delete) with their OpenAPI paths.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::overlay::SectionResource;
use super::{Api, ApiError, Caller};
use crate::broker::catalog::{AssignmentConfig, DesktopConfig, GroupConfig, ResourceConfig};
use crate::config::{Config, StaUrl};
use crate::policy::PolicyRule;
use crate::s2c::apps::AppConfig;
use crate::s2c::pools::PoolConfig;

/// `delivery-groups`: `[[broker.groups]]`, keyed by `name`.
#[derive(Debug)]
pub struct Groups;

impl SectionResource for Groups {
    type Item = GroupConfig;
    const COLLECTION: &'static str = "delivery-groups";
    const SECTION: &'static str = "broker.groups";
    const WHAT: &'static str = "delivery group";
    const KEY_FIELD: &'static str = "name";
    fn key(item: &GroupConfig) -> String {
        item.name.clone()
    }
    fn items(config: &Config) -> Vec<GroupConfig> {
        config.broker.groups.clone()
    }
    fn set_items(config: &mut Config, items: Vec<GroupConfig>) -> Result<(), (String, String)> {
        config.broker.groups = items;
        Ok(())
    }
}

/// `policies`: `[[policy.rules]]` (access policies), keyed by `name`; a
/// new rule goes last, a replaced one keeps its place in the order.
#[derive(Debug)]
pub struct Policies;

impl SectionResource for Policies {
    type Item = PolicyRule;
    const COLLECTION: &'static str = "policies";
    const SECTION: &'static str = "policy.rules";
    const WHAT: &'static str = "access policy";
    const KEY_FIELD: &'static str = "name";
    fn key(item: &PolicyRule) -> String {
        item.name.clone()
    }
    fn items(config: &Config) -> Vec<PolicyRule> {
        config.policy.rules.clone()
    }
    fn set_items(config: &mut Config, items: Vec<PolicyRule>) -> Result<(), (String, String)> {
        config.policy.rules = items;
        Ok(())
    }
}

/// `server-to-client-apps`: `[[server_to_client.apps]]`, keyed by
/// `name` (a UDP app is refused naming `protocol`).
#[derive(Debug)]
pub struct S2cApps;

impl SectionResource for S2cApps {
    type Item = AppConfig;
    const COLLECTION: &'static str = "server-to-client-apps";
    const SECTION: &'static str = "server_to_client.apps";
    const WHAT: &'static str = "server-to-client app";
    const KEY_FIELD: &'static str = "name";
    fn key(item: &AppConfig) -> String {
        item.name.clone()
    }
    fn items(config: &Config) -> Vec<AppConfig> {
        config.server_to_client.apps.clone()
    }
    fn set_items(config: &mut Config, items: Vec<AppConfig>) -> Result<(), (String, String)> {
        config.server_to_client.apps = items;
        Ok(())
    }
}

/// `iip-pools`: `[[server_to_client.pools]]`, keyed by `name`; changing a
/// pool ends the leases it no longer holds.
#[derive(Debug)]
pub struct IipPools;

impl SectionResource for IipPools {
    type Item = PoolConfig;
    const COLLECTION: &'static str = "iip-pools";
    const SECTION: &'static str = "server_to_client.pools";
    const WHAT: &'static str = "IIP pool";
    const KEY_FIELD: &'static str = "name";
    fn key(item: &PoolConfig) -> String {
        item.name.clone()
    }
    fn items(config: &Config) -> Vec<PoolConfig> {
        config.server_to_client.pools.clone()
    }
    fn set_items(config: &mut Config, items: Vec<PoolConfig>) -> Result<(), (String, String)> {
        config.server_to_client.pools = items;
        Ok(())
    }
}

/// `desktops`: `[[broker.desktops]]`, keyed by `worker`.
#[derive(Debug)]
pub struct Desktops;

impl SectionResource for Desktops {
    type Item = DesktopConfig;
    const COLLECTION: &'static str = "desktops";
    const SECTION: &'static str = "broker.desktops";
    const WHAT: &'static str = "desktop";
    const KEY_FIELD: &'static str = "worker";
    fn key(item: &DesktopConfig) -> String {
        item.worker.to_string()
    }
    fn items(config: &Config) -> Vec<DesktopConfig> {
        config.broker.desktops.clone()
    }
    fn set_items(config: &mut Config, items: Vec<DesktopConfig>) -> Result<(), (String, String)> {
        config.broker.desktops = items;
        Ok(())
    }
}

/// `resources`: `[[broker.resources]]` (published desktops and apps),
/// keyed by `name`.
#[derive(Debug)]
pub struct Resources;

impl SectionResource for Resources {
    type Item = ResourceConfig;
    const COLLECTION: &'static str = "resources";
    const SECTION: &'static str = "broker.resources";
    const WHAT: &'static str = "resource";
    const KEY_FIELD: &'static str = "name";
    fn key(item: &ResourceConfig) -> String {
        item.name.clone()
    }
    fn items(config: &Config) -> Vec<ResourceConfig> {
        config.broker.resources.clone()
    }
    fn set_items(config: &mut Config, items: Vec<ResourceConfig>) -> Result<(), (String, String)> {
        config.broker.resources = items;
        Ok(())
    }
}

/// `assignments`: `[[broker.assignments]]` (permanent assignments),
/// keyed by `desktop`.
#[derive(Debug)]
pub struct Assignments;

impl SectionResource for Assignments {
    type Item = AssignmentConfig;
    const COLLECTION: &'static str = "assignments";
    const SECTION: &'static str = "broker.assignments";
    const WHAT: &'static str = "assignment";
    const KEY_FIELD: &'static str = "desktop";
    fn key(item: &AssignmentConfig) -> String {
        item.desktop.to_string()
    }
    fn items(config: &Config) -> Vec<AssignmentConfig> {
        config.broker.assignments.clone()
    }
    fn set_items(
        config: &mut Config,
        items: Vec<AssignmentConfig>,
    ) -> Result<(), (String, String)> {
        config.broker.assignments = items;
        Ok(())
    }
}

/// A remote STA: its ID and URL (`[sta.remote]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StaServer {
    /// The STA ID tickets name (e.g. `STA0002`).
    pub id: String,
    /// Its URL, `http://host[:port]/scripts/ctxsta.dll`.
    pub url: String,
}

/// `sta-servers`: `[sta.remote]`, keyed by `id`.
#[derive(Debug)]
pub struct StaServers;

impl SectionResource for StaServers {
    type Item = StaServer;
    const COLLECTION: &'static str = "sta-servers";
    const SECTION: &'static str = "sta.remote";
    const WHAT: &'static str = "sta server";
    const KEY_FIELD: &'static str = "id";
    fn key(item: &StaServer) -> String {
        item.id.clone()
    }
    fn items(config: &Config) -> Vec<StaServer> {
        config
            .sta
            .remote
            .iter()
            .map(|(id, url)| StaServer {
                id: id.to_string(),
                url: url.as_str().to_owned(),
            })
            .collect()
    }
    fn set_items(config: &mut Config, items: Vec<StaServer>) -> Result<(), (String, String)> {
        let mut remote = std::collections::BTreeMap::new();
        for item in items {
            let id = gatehouse_wire::ticket::StaId::decode(item.id.as_bytes())
                .map_err(|error| ("id".to_owned(), format!("invalid sta id: {error}")))?;
            let url = StaUrl::parse(&item.url).map_err(|message| ("url".to_owned(), message))?;
            remote.insert(id, url);
        }
        config.sta.remote = remote;
        Ok(())
    }
}

/// Most bytes of a request body.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Parses a JSON body of `T`, naming the failing field. Every body the API
/// takes is a JSON object ([`crate::json`]).
///
/// Errors: [`ApiError::validation`] with the path of the failing field (or
/// `body` for a body that is JSON but not an object), or
/// [`ApiError::bad_request`] for a body that is not JSON.
pub fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(ApiError::bad_request("the body is too large"));
    }
    // JSON but not an object is a validation error; not JSON at all falls
    // through to the parser's own message.
    if !crate::json::is_object(body)
        && serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok()
    {
        return Err(ApiError::validation("body", crate::json::NOT_AN_OBJECT));
    }
    let mut decoder = serde_json::Deserializer::from_slice(body);
    let parsed: Result<T, _> = serde_path_to_error::deserialize(&mut decoder);
    match parsed {
        Ok(value) => decoder
            .end()
            .map(|()| value)
            .map_err(|e| ApiError::bad_request(format!("invalid json: {e}"))),
        Err(error) => {
            let path = error.path().to_string();
            let inner = error.into_inner();
            if inner.is_data() {
                let field = if path == "." { "body".to_owned() } else { path };
                Err(ApiError::validation(field, inner.to_string()))
            } else {
                Err(ApiError::bad_request(format!("invalid json: {inner}")))
            }
        }
    }
}

/// The items of `S`.
pub fn list<S: SectionResource>(api: &Api) -> Vec<S::Item> {
    S::items(&api.live.snapshot())
}

/// The item `key` of `S`.
///
/// Errors: [`ApiError::not_found`].
pub fn one<S: SectionResource>(api: &Api, key: &str) -> Result<S::Item, ApiError> {
    S::items(&api.live.snapshot())
        .into_iter()
        .find(|item| S::key(item) == key)
        .ok_or_else(|| ApiError::not_found(S::WHAT, key))
}

/// Adds the item in `body` to `S`, audited.
///
/// Errors: validation, [`ApiError::conflict`] for a taken key, the store.
pub async fn create<S: SectionResource>(
    api: &Api,
    caller: &Caller,
    body: &[u8],
) -> Result<S::Item, ApiError> {
    let item: S::Item = parse_body(body)?;
    let key = S::key(&item);
    let created = api
        .live
        .change::<S, _>(|mut items| {
            if items.iter().any(|i| S::key(i) == key) {
                return Err(ApiError::conflict(S::WHAT, &key));
            }
            items.push(item.clone());
            Ok((items, item))
        })
        .await?;
    api.audit_ok(
        caller,
        "create",
        S::COLLECTION,
        &key,
        None,
        super::json(&created),
    )
    .await;
    Ok(created)
}

/// Replaces the item `key` of `S` with `body`, audited.
///
/// Errors: validation (the body's key must be `key`), not found, store.
pub async fn replace<S: SectionResource>(
    api: &Api,
    caller: &Caller,
    key: &str,
    body: &[u8],
) -> Result<S::Item, ApiError> {
    let item: S::Item = parse_body(body)?;
    if S::key(&item) != key {
        return Err(ApiError::validation(
            S::KEY_FIELD,
            format!("the body's {} must be {key:?} as in the path", S::KEY_FIELD),
        ));
    }
    let before = api
        .live
        .change::<S, _>(|mut items| {
            let Some(slot) = items.iter_mut().find(|i| S::key(i) == key) else {
                return Err(ApiError::not_found(S::WHAT, key));
            };
            let before = std::mem::replace(slot, item.clone());
            Ok((items, before))
        })
        .await?;
    api.audit_ok(
        caller,
        "update",
        S::COLLECTION,
        key,
        super::json(&before),
        super::json(&item),
    )
    .await;
    Ok(item)
}

/// Removes the item `key` of `S`, audited; returns it.
///
/// Errors: not found, validation (another item refers to it), store.
pub async fn remove<S: SectionResource>(
    api: &Api,
    caller: &Caller,
    key: &str,
) -> Result<S::Item, ApiError> {
    let before = api
        .live
        .change::<S, _>(|mut items| {
            let Some(at) = items.iter().position(|i| S::key(i) == key) else {
                return Err(ApiError::not_found(S::WHAT, key));
            };
            let before = items.remove(at);
            Ok((items, before))
        })
        .await?;
    api.audit_ok(
        caller,
        "delete",
        S::COLLECTION,
        key,
        super::json(&before),
        None,
    )
    .await;
    Ok(before)
}

/// Generates the handlers of one [`SectionResource`] in a module:
/// `list`, `get`, `create`, `replace`, `delete`, and `routes()`.
macro_rules! section_api {
    ($module:ident, $resource:ty, $item:ty, $collection:tt, $one:tt, $key:tt, $tag:tt) => {
        /// The handlers of one configuration-backed resource.
        pub mod $module {
            use super::*;

            /// List every item.
            #[utoipa::path(get, path = $collection, tag = $tag,
                operation_id = concat!("list_", stringify!($module)),
                responses((status = 200, body = Vec<$item>), (status = 401, body = super::super::ErrorBody)))]
            pub async fn list(State(api): State<Api>) -> Json<Vec<$item>> {
                Json(super::list::<$resource>(&api))
            }

            /// One item.
            #[utoipa::path(get, path = $one, tag = $tag,
                operation_id = concat!("get_", stringify!($module)),
                params(($key = String, Path, description = "The item's key")),
                responses((status = 200, body = $item), (status = 404, body = super::super::ErrorBody)))]
            pub async fn get(
                State(api): State<Api>,
                Path(key): Path<String>,
            ) -> Result<Json<$item>, ApiError> {
                super::one::<$resource>(&api, &key).map(Json)
            }

            /// Add an item (admin).
            #[utoipa::path(post, path = $collection, tag = $tag,
                operation_id = concat!("create_", stringify!($module)), request_body = $item,
                responses((status = 201, body = $item), (status = 400, body = super::super::ErrorBody),
                    (status = 403, body = super::super::ErrorBody), (status = 409, body = super::super::ErrorBody)))]
            pub async fn create(
                State(api): State<Api>,
                Extension(caller): Extension<Caller>,
                body: Bytes,
            ) -> Result<(StatusCode, Json<$item>), ApiError> {
                let item = super::create::<$resource>(&api, &caller, &body).await?;
                Ok((StatusCode::CREATED, Json(item)))
            }

            /// Replace an item (admin).
            #[utoipa::path(put, path = $one, tag = $tag,
                operation_id = concat!("replace_", stringify!($module)), request_body = $item,
                params(($key = String, Path, description = "The item's key")),
                responses((status = 200, body = $item), (status = 400, body = super::super::ErrorBody),
                    (status = 403, body = super::super::ErrorBody), (status = 404, body = super::super::ErrorBody)))]
            pub async fn replace(
                State(api): State<Api>,
                Extension(caller): Extension<Caller>,
                Path(key): Path<String>,
                body: Bytes,
            ) -> Result<Json<$item>, ApiError> {
                super::replace::<$resource>(&api, &caller, &key, &body)
                    .await
                    .map(Json)
            }

            /// Remove an item (admin); answers the removed item.
            #[utoipa::path(delete, path = $one, tag = $tag,
                operation_id = concat!("delete_", stringify!($module)),
                params(($key = String, Path, description = "The item's key")),
                responses((status = 200, body = $item), (status = 400, body = super::super::ErrorBody),
                    (status = 403, body = super::super::ErrorBody), (status = 404, body = super::super::ErrorBody)))]
            pub async fn delete(
                State(api): State<Api>,
                Extension(caller): Extension<Caller>,
                Path(key): Path<String>,
            ) -> Result<Json<$item>, ApiError> {
                super::remove::<$resource>(&api, &caller, &key).await.map(Json)
            }

            /// The routes.
            pub fn routes() -> axum::Router<Api> {
                axum::Router::new()
                    .route($collection, axum::routing::get(list).post(create))
                    .route($one, axum::routing::get(get).put(replace).delete(delete))
            }
        }
    };
}

section_api!(
    groups,
    Groups,
    GroupConfig,
    "/api/v1/delivery-groups",
    "/api/v1/delivery-groups/{name}",
    "name",
    "delivery-groups"
);
section_api!(
    desktops,
    Desktops,
    DesktopConfig,
    "/api/v1/desktops",
    "/api/v1/desktops/{worker}",
    "worker",
    "desktops"
);
section_api!(
    resources,
    Resources,
    ResourceConfig,
    "/api/v1/resources",
    "/api/v1/resources/{name}",
    "name",
    "resources"
);
section_api!(
    assignments,
    Assignments,
    AssignmentConfig,
    "/api/v1/assignments",
    "/api/v1/assignments/{desktop}",
    "desktop",
    "assignments"
);
section_api!(
    sta_servers,
    StaServers,
    StaServer,
    "/api/v1/sta-servers",
    "/api/v1/sta-servers/{id}",
    "id",
    "sta-servers"
);
section_api!(
    policies,
    Policies,
    PolicyRule,
    "/api/v1/policies",
    "/api/v1/policies/{name}",
    "name",
    "policies"
);
section_api!(
    s2c_apps,
    S2cApps,
    AppConfig,
    "/api/v1/server-to-client-apps",
    "/api/v1/server-to-client-apps/{name}",
    "name",
    "server-to-client"
);
section_api!(
    iip_pools,
    IipPools,
    PoolConfig,
    "/api/v1/iip-pools",
    "/api/v1/iip-pools/{name}",
    "name",
    "server-to-client"
);
