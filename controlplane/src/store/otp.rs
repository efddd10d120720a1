//! The `otp_devices` and `otp_accepted_steps` tables.
//!
//! Accepted steps are kept for any user, whatever directory holds the
//! user's devices (the store's table or an LDAP attribute): replay refusal
//! must hold across restarts either way.

use std::time::SystemTime;

use sqlx::Row;

use super::{Store, StoreError, time_of, unix_now};
use crate::auth::names::{DeviceName, UserName};
use crate::auth::totp::TimeStep;

/// A stored OTP device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRecord {
    /// The device's name, unique per user.
    pub name: DeviceName,
    /// The sealed secret (`gh1.…`, see [`crate::auth::seal`]).
    pub sealed_secret: String,
    /// When it was added.
    pub created_at: SystemTime,
}

impl Store {
    /// Adds a device for `user`.
    ///
    /// Errors: [`StoreError::AlreadyExists`] when the user has a device of
    /// that name, [`StoreError::Query`].
    pub async fn insert_device(
        &self,
        user: &UserName,
        device: &DeviceName,
        sealed_secret: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await?;
        let done = sqlx::query(
            "INSERT INTO otp_devices (user_name, name, secret, created_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (user_name, name) DO NOTHING",
        )
        .bind(user.as_str())
        .bind(device.as_str())
        .bind(sealed_secret)
        .bind(unix_now())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::AlreadyExists {
                what: "device",
                name: device.to_string(),
            });
        }
        // A new secret under an old name starts without a replay record.
        sqlx::query("DELETE FROM otp_accepted_steps WHERE user_name = $1 AND device = $2")
            .bind(user.as_str())
            .bind(device.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The user's devices, by name.
    ///
    /// Errors: [`StoreError::Query`], [`StoreError::Corrupt`].
    pub async fn list_devices(&self, user: &UserName) -> Result<Vec<DeviceRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT name, secret, created_at FROM otp_devices WHERE user_name = $1 ORDER BY name",
        )
        .bind(user.as_str())
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                let name: String = row.try_get("name")?;
                Ok(DeviceRecord {
                    name: DeviceName::new(&name).map_err(|_| StoreError::Corrupt {
                        what: "device name",
                    })?,
                    sealed_secret: row.try_get("secret")?,
                    created_at: time_of(row.try_get("created_at")?),
                })
            })
            .collect()
    }

    /// Removes a device and its replay record.
    ///
    /// Errors: [`StoreError::NotFound`], [`StoreError::Query`].
    pub async fn delete_device(
        &self,
        user: &UserName,
        device: &DeviceName,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await?;
        let done = sqlx::query("DELETE FROM otp_devices WHERE user_name = $1 AND name = $2")
            .bind(user.as_str())
            .bind(device.as_str())
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound {
                what: "device",
                name: device.to_string(),
            });
        }
        sqlx::query("DELETE FROM otp_accepted_steps WHERE user_name = $1 AND device = $2")
            .bind(user.as_str())
            .bind(device.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The highest step accepted for (user, device), if any.
    ///
    /// Errors: [`StoreError::Query`], [`StoreError::Corrupt`].
    pub async fn last_accepted_step(
        &self,
        user: &UserName,
        device: &DeviceName,
    ) -> Result<Option<TimeStep>, StoreError> {
        let row =
            sqlx::query("SELECT step FROM otp_accepted_steps WHERE user_name = $1 AND device = $2")
                .bind(user.as_str())
                .bind(device.as_str())
                .fetch_optional(self.pool())
                .await?;
        row.map(|row| {
            let step: i64 = row.try_get("step")?;
            u64::try_from(step)
                .map(TimeStep)
                .map_err(|_| StoreError::Corrupt { what: "otp step" })
        })
        .transpose()
    }

    /// Records `step` as accepted for (user, device) if it is later than
    /// the one recorded, atomically: `true` if recorded, `false` if a step
    /// at least as late was already there (the code is a replay, possibly
    /// of a concurrent login).
    ///
    /// Errors: [`StoreError::Query`]; a step past `i64::MAX` is
    /// [`StoreError::Corrupt`].
    pub async fn record_accepted_step(
        &self,
        user: &UserName,
        device: &DeviceName,
        step: TimeStep,
    ) -> Result<bool, StoreError> {
        let step = i64::try_from(step.0).map_err(|_| StoreError::Corrupt { what: "otp step" })?;
        let done = sqlx::query(
            "INSERT INTO otp_accepted_steps (user_name, device, step) VALUES ($1, $2, $3) \
             ON CONFLICT (user_name, device) DO UPDATE SET step = excluded.step \
             WHERE otp_accepted_steps.step < excluded.step",
        )
        .bind(user.as_str())
        .bind(device.as_str())
        .bind(step)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }
}
