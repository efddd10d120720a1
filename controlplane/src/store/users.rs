//! The `local_users` table: login name, Argon2id PHC string, times.

use std::time::SystemTime;

use sqlx::Row;

use super::{Store, StoreError, time_of, unix_now};
use crate::auth::names::UserName;

/// A local user as listed (no password hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// The login name.
    pub name: UserName,
    /// When the user was added.
    pub created_at: SystemTime,
    /// When the password was last set.
    pub updated_at: SystemTime,
}

impl Store {
    /// Adds a user with a password hash.
    ///
    /// Errors: [`StoreError::AlreadyExists`], [`StoreError::Query`].
    pub async fn insert_user(
        &self,
        name: &UserName,
        password_hash: &str,
    ) -> Result<(), StoreError> {
        let now = unix_now();
        let done = sqlx::query(
            "INSERT INTO local_users (name, password_hash, created_at, updated_at) \
             VALUES ($1, $2, $3, $3) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name.as_str())
        .bind(password_hash)
        .bind(now)
        .execute(self.pool())
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::AlreadyExists {
                what: "user",
                name: name.to_string(),
            });
        }
        Ok(())
    }

    /// Replaces a user's password hash.
    ///
    /// Errors: [`StoreError::NotFound`], [`StoreError::Query`].
    pub async fn update_password(
        &self,
        name: &UserName,
        password_hash: &str,
    ) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE local_users SET password_hash = $2, updated_at = $3 WHERE name = $1",
        )
        .bind(name.as_str())
        .bind(password_hash)
        .bind(unix_now())
        .execute(self.pool())
        .await?;
        if done.rows_affected() == 0 {
            return Err(not_found(name));
        }
        Ok(())
    }

    /// The user's PHC string, or `None` for an unknown user.
    ///
    /// Errors: [`StoreError::Query`].
    pub async fn password_hash(&self, name: &UserName) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT password_hash FROM local_users WHERE name = $1")
            .bind(name.as_str())
            .fetch_optional(self.pool())
            .await?;
        Ok(row.map(|row| row.try_get("password_hash")).transpose()?)
    }

    /// Deletes a user with the OTP devices and accepted steps stored for
    /// that name, in one transaction.
    ///
    /// Errors: [`StoreError::NotFound`], [`StoreError::Query`].
    pub async fn delete_user(&self, name: &UserName) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await?;
        let done = sqlx::query("DELETE FROM local_users WHERE name = $1")
            .bind(name.as_str())
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(not_found(name));
        }
        sqlx::query("DELETE FROM otp_devices WHERE user_name = $1")
            .bind(name.as_str())
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM otp_accepted_steps WHERE user_name = $1")
            .bind(name.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Every local user, by name.
    ///
    /// Errors: [`StoreError::Query`], [`StoreError::Corrupt`].
    pub async fn list_users(&self) -> Result<Vec<UserRecord>, StoreError> {
        let rows =
            sqlx::query("SELECT name, created_at, updated_at FROM local_users ORDER BY name")
                .fetch_all(self.pool())
                .await?;
        rows.iter()
            .map(|row| {
                let name: String = row.try_get("name")?;
                Ok(UserRecord {
                    name: UserName::new(&name)
                        .map_err(|_| StoreError::Corrupt { what: "user name" })?,
                    created_at: time_of(row.try_get("created_at")?),
                    updated_at: time_of(row.try_get("updated_at")?),
                })
            })
            .collect()
    }
}

fn not_found(name: &UserName) -> StoreError {
    StoreError::NotFound {
        what: "user",
        name: name.to_string(),
    }
}
