//! The audit log: every change made through the API, and every write a
//! known token was refused, in the store (table `audit_log`, the latest
//! [`DEFAULT_KEEP`] entries) and as one `api_change` tracing event each.

use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::ToSchema;

use crate::store::{Store, StoreError};

/// Most entries one read returns.
pub const MAX_LIMIT: u32 = 1_000;

/// Entries kept by default; older ones are dropped as new ones come.
pub const DEFAULT_KEEP: i64 = 100_000;

/// One change (or refused write).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditEntry {
    /// Sequence number (ascending with time).
    pub id: i64,
    /// When, Unix seconds.
    pub at: i64,
    /// The token's name (`cli` for the command line).
    pub who: String,
    /// `create`, `update`, `delete`, `kill`, `reload`, `revoke`.
    pub action: String,
    /// The resource collection, e.g. `delivery-groups`.
    pub resource: String,
    /// The key within it (empty for the collection).
    pub name: String,
    /// The resource before the change.
    #[schema(value_type = Option<Object>)]
    pub before: Option<serde_json::Value>,
    /// The resource after the change.
    #[schema(value_type = Option<Object>)]
    pub after: Option<serde_json::Value>,
    /// `ok`, or the error code of the refusal.
    pub outcome: String,
}

/// An entry to record.
#[derive(Debug, Clone, PartialEq)]
pub struct Change<'a> {
    /// The token's name.
    pub who: &'a str,
    /// The action.
    pub action: &'a str,
    /// The resource collection.
    pub resource: &'a str,
    /// The key.
    pub name: &'a str,
    /// Before.
    pub before: Option<serde_json::Value>,
    /// After.
    pub after: Option<serde_json::Value>,
    /// `ok` or the refusal's code.
    pub outcome: &'a str,
}

/// The audit log in the store.
#[derive(Debug, Clone)]
pub struct AuditLog {
    store: Store,
    keep: i64,
}

impl AuditLog {
    /// The log kept in `store`, the latest [`DEFAULT_KEEP`] entries.
    pub fn new(store: Store) -> Self {
        Self::keeping(store, DEFAULT_KEEP)
    }

    /// The log kept in `store`, the latest `keep` entries.
    pub fn keeping(store: Store, keep: i64) -> Self {
        Self { store, keep }
    }

    /// Records `change` and logs `api_change`. A store failure is logged
    /// (`audit_write_failed`) and returned.
    ///
    /// Errors: [`StoreError::Query`].
    pub async fn record(&self, change: Change<'_>) -> Result<(), StoreError> {
        tracing::info!(
            who = change.who,
            action = change.action,
            resource = change.resource,
            name = change.name,
            outcome = change.outcome,
            "api_change"
        );
        let text = |value: &Option<serde_json::Value>| value.as_ref().map(ToString::to_string);
        let result = sqlx::query(
            "INSERT INTO audit_log (at, who, action, resource, name, before_json, after_json, outcome) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(super::unix_now())
        .bind(change.who)
        .bind(change.action)
        .bind(change.resource)
        .bind(change.name)
        .bind(text(&change.before))
        .bind(text(&change.after))
        .bind(change.outcome)
        .execute(self.store.pool())
        .await;
        // Bounded: the oldest entries go (by id, the primary key).
        let result = match result {
            Ok(_) => {
                sqlx::query(
                    "DELETE FROM audit_log WHERE id <= (SELECT MAX(id) FROM audit_log) - $1",
                )
                .bind(self.keep)
                .execute(self.store.pool())
                .await
            }
            Err(error) => Err(error),
        };
        if let Err(error) = &result {
            tracing::error!(error = %error, "audit_write_failed");
        }
        result.map(|_| ()).map_err(StoreError::from)
    }

    /// The latest `limit` entries (at most [`MAX_LIMIT`]), newest first.
    ///
    /// Errors: [`StoreError::Query`].
    pub async fn latest(&self, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, at, who, action, resource, name, before_json, after_json, outcome \
             FROM audit_log ORDER BY id DESC LIMIT $1",
        )
        .bind(i64::from(limit.min(MAX_LIMIT)))
        .fetch_all(self.store.pool())
        .await?;
        let json = |text: Option<String>| text.and_then(|t| serde_json::from_str(&t).ok());
        rows.iter()
            .map(|row| {
                Ok(AuditEntry {
                    id: row.try_get(0)?,
                    at: row.try_get(1)?,
                    who: row.try_get(2)?,
                    action: row.try_get(3)?,
                    resource: row.try_get(4)?,
                    name: row.try_get(5)?,
                    before: json(row.try_get(6)?),
                    after: json(row.try_get(7)?),
                    outcome: row.try_get(8)?,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn records_who_what_before_and_after_newest_first() {
        let (store, _dir) = super::super::test_store("audit").await;
        let log = AuditLog::new(store);
        for (action, outcome) in [("create", "ok"), ("delete", "forbidden_role")] {
            log.record(Change {
                who: "ops",
                action,
                resource: "delivery-groups",
                name: "g1",
                before: None,
                after: Some(serde_json::json!({"name": "g1"})),
                outcome,
            })
            .await
            .unwrap();
        }
        let entries = log.latest(10).await.unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].action, "delete");
        assert_eq!(entries[0].outcome, "forbidden_role");
        assert_eq!(entries[1].after, Some(serde_json::json!({"name": "g1"})));
        assert_eq!(log.latest(1).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn keeps_only_the_latest_entries() {
        let (store, _dir) = super::super::test_store("audit-keep").await;
        let log = AuditLog::keeping(store, 3);
        for n in 0..5 {
            let name = n.to_string();
            log.record(Change {
                who: "ops",
                action: "create",
                resource: "tokens",
                name: &name,
                before: None,
                after: None,
                outcome: "ok",
            })
            .await
            .unwrap();
        }
        let names: Vec<String> = log
            .latest(10)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(names, ["4", "3", "2"]);
    }
}
