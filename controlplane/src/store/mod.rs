//! The state store: local users, OTP devices and accepted TOTP steps, in an
//! embedded SQLite database `<data_dir>/gatehouse.db` (DESIGN.md §3).
//!
//! [`Store::open`] creates the directory (0700) and the file (0600) on
//! first use, turns on WAL and runs the migrations embedded from
//! `controlplane/migrations/` (`sqlx::migrate!`). Queries are plain
//! `sqlx::query` with `$N` binds: nothing needs a database at build time.
//!
//! PostgreSQL (a fleet sharing one store) is meant to use the same
//! migrations: they use only `TEXT` and `BIGINT`, natural keys and
//! `ON CONFLICT`, which both accept. What would differ is the pool type
//! (`PgPool` instead of `SqlitePool`, or `sqlx::Any`), the connect options
//! (no WAL or file permissions; a URL from the configuration), and
//! `sqlx` built with its `postgres` feature.
//!
//! The store checks no passwords and opens no secrets: it keeps what
//! [`crate::auth`] hands it (PHC strings, sealed secrets).

mod otp;
mod sessions;
mod users;

use std::fs::{self, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

pub use otp::DeviceRecord;
pub use sessions::WebSessionRecord;
pub use users::UserRecord;

/// The database file's name in the data directory.
pub const DATABASE_FILE: &str = "gatehouse.db";

/// Connections of the pool. SQLite serialises writers anyway; a few let
/// readers proceed during a write (WAL).
const POOL_CONNECTIONS: u32 = 4;

/// How long a statement waits for a lock held by another connection or
/// process (`gatehouse user` next to `gatehouse run`).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// A handle on the store; cheap to clone (a connection pool).
#[derive(Debug, Clone)]
pub struct Store {
    pool: SqlitePool,
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The data directory or the database file could not be created.
    #[error("cannot create {}", path.display())]
    Create {
        /// The path.
        path: PathBuf,
        /// The system error.
        #[source]
        source: std::io::Error,
    },
    /// The database could not be opened.
    #[error("cannot open the database {}", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// A migration failed (or the database is newer than this binary).
    #[error("cannot migrate the database")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    /// The row to insert exists.
    #[error("{what} {name} already exists")]
    AlreadyExists {
        /// `user` or `device`.
        what: &'static str,
        /// Its name.
        name: String,
    },
    /// The row to change does not exist.
    #[error("{what} {name} does not exist")]
    NotFound {
        /// `user` or `device`.
        what: &'static str,
        /// Its name.
        name: String,
    },
    /// A query failed.
    #[error("database query failed")]
    Query(#[from] sqlx::Error),
    /// A stored value this binary cannot read.
    #[error("the database holds an unreadable {what}")]
    Corrupt {
        /// Which column.
        what: &'static str,
    },
}

impl StoreError {
    /// Whether this is [`StoreError::NotFound`].
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound { .. })
    }

    /// Whether this is [`StoreError::AlreadyExists`].
    pub fn is_already_exists(&self) -> bool {
        matches!(self, Self::AlreadyExists { .. })
    }
}

impl Store {
    /// Opens (creating on first use) `<data_dir>/gatehouse.db` and brings
    /// its schema up to date.
    ///
    /// Errors: [`StoreError::Create`], [`StoreError::Open`],
    /// [`StoreError::Migrate`].
    pub async fn open(data_dir: &Path) -> Result<Self, StoreError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(data_dir)
            .map_err(|source| StoreError::Create {
                path: data_dir.to_owned(),
                source,
            })?;
        Self::open_file(&data_dir.join(DATABASE_FILE)).await
    }

    /// Opens (creating on first use) the database file `path`; its
    /// directory must exist.
    ///
    /// Errors: as [`Store::open`].
    pub async fn open_file(path: &Path) -> Result<Self, StoreError> {
        // Password hashes and sealed secrets: readable by the owner only.
        // SQLite gives its -wal and -shm files the database file's mode.
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            Ok(_) => tracing::info!(path = %path.display(), "store_created"),
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(source) => {
                return Err(StoreError::Create {
                    path: path.to_owned(),
                    source,
                });
            }
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .max_connections(POOL_CONNECTIONS)
            .connect_with(options)
            .await
            .map_err(|source| StoreError::Open {
                path: path.to_owned(),
                source,
            })?;
        MIGRATOR.run(&pool).await.map_err(StoreError::Migrate)?;
        Ok(Self { pool })
    }

    /// Closes every connection (checkpointing the WAL). Later calls fail.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub(crate) fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

/// Seconds since the Unix epoch, as stored (0 for a clock before 1970).
fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A stored time (Unix seconds) as a `SystemTime`.
fn time_of(secs: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).unwrap_or(0))
}

#[cfg(test)]
mod tests;
