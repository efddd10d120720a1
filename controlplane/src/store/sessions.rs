//! The `web_sessions` table: the login flow's sessions, keyed by the
//! SHA-256 of the cookie value (the value itself is never stored).

use sqlx::Row;

use super::{Store, StoreError, unix_now};

/// A stored web session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebSessionRecord {
    /// Lowercase hex SHA-256 of the cookie value.
    pub token_hash: String,
    /// The login name.
    pub user_name: String,
    /// The name shown to the user.
    pub display_name: String,
    /// The LDAP DN, empty for the local directory.
    pub dn: String,
    /// `full` or `enrol`.
    pub scope: String,
    /// The user's directory groups at login (empty for the local
    /// directory).
    pub groups: Vec<String>,
    /// Unix seconds of the login.
    pub created_at: i64,
    /// Unix seconds of the last request.
    pub last_seen: i64,
}

impl Store {
    /// Records a new session; `created_at` and `last_seen` are set to now
    /// (the values in `record` are ignored).
    ///
    /// Errors: [`StoreError::AlreadyExists`] for a hash already stored (a
    /// random collision: never in practice), [`StoreError::Query`].
    pub async fn insert_web_session(&self, record: &WebSessionRecord) -> Result<(), StoreError> {
        let now = unix_now();
        let done = sqlx::query(
            "INSERT INTO web_sessions \
             (token_hash, user_name, display_name, dn, scope, created_at, last_seen, groups_json) \
             VALUES ($1, $2, $3, $4, $5, $6, $6, $7) ON CONFLICT (token_hash) DO NOTHING",
        )
        .bind(&record.token_hash)
        .bind(&record.user_name)
        .bind(&record.display_name)
        .bind(&record.dn)
        .bind(&record.scope)
        .bind(now)
        .bind(serde_json::to_string(&record.groups).unwrap_or_else(|_| "[]".to_owned()))
        .execute(self.pool())
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::AlreadyExists {
                what: "session",
                name: "(hash)".to_owned(),
            });
        }
        Ok(())
    }

    /// The session whose cookie hashes to `token_hash`, if it exists and
    /// was created after `created_after` and last seen after
    /// `seen_after` (Unix seconds); its `last_seen` becomes now. An
    /// expired session is deleted on the way.
    ///
    /// Errors: [`StoreError::Query`].
    pub async fn touch_web_session(
        &self,
        token_hash: &str,
        created_after: i64,
        seen_after: i64,
    ) -> Result<Option<WebSessionRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT token_hash, user_name, display_name, dn, scope, created_at, last_seen, \
             groups_json FROM web_sessions WHERE token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(self.pool())
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let mut record = WebSessionRecord {
            token_hash: row.try_get("token_hash")?,
            user_name: row.try_get("user_name")?,
            display_name: row.try_get("display_name")?,
            dn: row.try_get("dn")?,
            scope: row.try_get("scope")?,
            created_at: row.try_get("created_at")?,
            last_seen: row.try_get("last_seen")?,
            // A value this code did not write reads as no groups.
            groups: serde_json::from_str(&row.try_get::<String, _>("groups_json")?)
                .unwrap_or_default(),
        };
        if record.created_at <= created_after || record.last_seen <= seen_after {
            self.delete_web_session(token_hash).await?;
            return Ok(None);
        }
        let now = unix_now();
        if now > record.last_seen {
            sqlx::query("UPDATE web_sessions SET last_seen = $2 WHERE token_hash = $1")
                .bind(token_hash)
                .bind(now)
                .execute(self.pool())
                .await?;
            record.last_seen = now;
        }
        Ok(Some(record))
    }

    /// Deletes the session whose cookie hashes to `token_hash`; whether
    /// there was one.
    ///
    /// Errors: [`StoreError::Query`].
    pub async fn delete_web_session(&self, token_hash: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM web_sessions WHERE token_hash = $1")
            .bind(token_hash)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Deletes every session created at or before `created_after` or last
    /// seen at or before `seen_after`; how many.
    ///
    /// Errors: [`StoreError::Query`].
    pub async fn sweep_web_sessions(
        &self,
        created_after: i64,
        seen_after: i64,
    ) -> Result<u64, StoreError> {
        let done =
            sqlx::query("DELETE FROM web_sessions WHERE created_at <= $1 OR last_seen <= $2")
                .bind(created_after)
                .bind(seen_after)
                .execute(self.pool())
                .await?;
        Ok(done.rows_affected())
    }
}
