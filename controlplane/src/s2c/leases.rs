//! The `iip_leases` table: the lease table's rows, so leases and their
//! stickiness survive a restart. The primary key on the IIP and the unique
//! user name are the last guard against double leasing.

use std::net::Ipv4Addr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::Row;

use super::pools::Lease;
use crate::store::{Store, StoreError};

/// Reads every stored lease. A row whose address does not parse is
/// reported as [`StoreError::Corrupt`].
///
/// Errors: [`StoreError::Query`], [`StoreError::Corrupt`].
pub async fn load(store: &Store) -> Result<Vec<Lease>, StoreError> {
    let rows = sqlx::query(
        "SELECT iip, pool, user_name, leased_at, released_at FROM iip_leases ORDER BY iip",
    )
    .fetch_all(store.pool())
    .await?;
    rows.iter()
        .map(|row| {
            let iip: String = row.try_get("iip")?;
            let released: Option<i64> = row.try_get("released_at")?;
            Ok(Lease {
                iip: iip.parse().map_err(|_| StoreError::Corrupt {
                    what: "iip_leases.iip",
                })?,
                pool: row.try_get("pool")?,
                user: row.try_get("user_name")?,
                leased_at: time_of(row.try_get("leased_at")?),
                released_at: released.map(time_of),
            })
        })
        .collect()
}

/// Stores `lease`, replacing any row of its IIP or of its user (a reclaimed
/// address, the user's lease in another pool), in one transaction.
///
/// Errors: [`StoreError::Query`].
pub async fn save(store: &Store, lease: &Lease) -> Result<(), StoreError> {
    let mut tx = store.pool().begin().await?;
    sqlx::query("DELETE FROM iip_leases WHERE iip = $1 OR user_name = $2")
        .bind(lease.iip.to_string())
        .bind(&lease.user)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO iip_leases (iip, pool, user_name, leased_at, released_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(lease.iip.to_string())
    .bind(&lease.pool)
    .bind(&lease.user)
    .bind(secs(lease.leased_at))
    .bind(lease.released_at.map(secs))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Deletes the row of `iip`; whether there was one.
///
/// Errors: [`StoreError::Query`].
pub async fn delete(store: &Store, iip: Ipv4Addr) -> Result<bool, StoreError> {
    let done = sqlx::query("DELETE FROM iip_leases WHERE iip = $1")
        .bind(iip.to_string())
        .execute(store.pool())
        .await?;
    Ok(done.rows_affected() > 0)
}

fn secs(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn time_of(secs: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).unwrap_or(0))
}
