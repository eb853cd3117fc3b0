//! Persistence: SQLite by default (one file, no setup), PostgreSQL for many instances. One query
//! layer serves both through sqlx's `Any` driver; only the migrations differ per backend. Queries
//! use `$1` placeholders, which SQLite also binds by number.

mod admins;
mod api_keys;
mod connections;
mod inbox;
mod incoming;
mod instances;
mod leases;
mod locks;
mod messages;
mod oauth_states;
mod quota;
mod relay_credentials;
mod servers;
mod session_slots;
mod settings;
mod sign_in_attempts;
mod writer;

use std::time::Duration;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Executor, Row};

pub use admins::{AdminRecord, SessionRecord};
pub use api_keys::{ApiKeyRecord, KeyScope};
pub use connections::{ConnectionRecord, NewConnection};
pub use inbox::{InboundRecord, NewInbound, PendingWebhook, WebhookAttempt};
pub use instances::{Heartbeat, InstanceRecord};
pub use locks::SharedLock;
pub use messages::{
    Attempt, AttemptRecord, Claimed, Inserted, MessageFilter, MessageRecord, NewMessage,
    Settlement, Unreported,
};
pub use oauth_states::{OauthState, StateLookup};
pub use quota::Reservation;
pub use relay_credentials::{LiveCredential, RelayCredentialRecord};
pub use session_slots::HeldSlot;
pub use settings::GoogleSettings;
pub use sign_in_attempts::BudgetAttempts;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error(
        "this database was written by a newer mailgate (schema version {found}; this mailgate knows up to {known}). Run the newer mailgate, or restore the backup taken before upgrading."
    )]
    NewerSchema { found: i64, known: i64 },
    #[error("{0} already exists")]
    Duplicate(String),
    #[error(transparent)]
    Crypto(#[from] crate::crypto::CryptoError),
    /// The commit that held this write failed (or could not begin); nothing of it is on disk.
    #[error("database: {0}")]
    Batch(std::sync::Arc<sqlx::Error>),
    /// The writer stopped (mailgate is stopping) or the batch holding the write broke off.
    #[error("the database writer stopped before committing this write")]
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    /// The queue's hot writes, group-committed on a connection of their own.
    writer: writer::Writer,
    backend: Backend,
}

/// Where the schema stands: the newest migration applied and the newest this build knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaStatus {
    pub applied: Option<i64>,
    pub known: i64,
}

impl SchemaStatus {
    pub fn is_current(&self) -> bool {
        self.applied == Some(self.known)
    }
}

impl Store {
    /// Opens the database named by `url` (`sqlite://path` creates the file; `postgres://...`).
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            Backend::Postgres
        };
        let url = match backend {
            Backend::Sqlite if !url.contains('?') => format!("{url}?mode=rwc"),
            _ => url.to_string(),
        };
        let pool = pool_options(
            backend,
            match backend {
                // One writer at a time anyway (the group-commit writer has its own); readers alongside.
                Backend::Sqlite => 4,
                Backend::Postgres => 10,
            },
        )
        .connect(&url)
        .await?;
        let writer = writer::Writer::start(pool_options(backend, 1).connect(&url).await?);
        Ok(Self {
            pool,
            writer,
            backend,
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Where writes outside the group commit go. SQLite has one writer at a time: they share the
    /// group-commit writer's connection and queue for it in order, instead of meeting SQLite's
    /// busy handler, which polls with sleeps and can starve a write for its whole timeout
    /// while batches commit back to back. PostgreSQL locks rows, not the database: any
    /// connection will do.
    fn writes(&self) -> &AnyPool {
        match self.backend {
            Backend::Sqlite => self.writer.pool(),
            Backend::Postgres => &self.pool,
        }
    }

    /// A transaction for writes outside the group commit. On SQLite it takes the write lock
    /// from its first statement (`BEGIN IMMEDIATE`): a transaction that reads and then writes
    /// could otherwise fail with "database is locked" when another process (the CLI) wrote in
    /// between.
    async fn write_transaction(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, StoreError> {
        Ok(match self.backend {
            Backend::Sqlite => self.writes().begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.writes().begin().await?,
        })
    }

    fn migrator(&self) -> &'static Migrator {
        match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        }
    }

    pub async fn schema_status(&self) -> Result<SchemaStatus, StoreError> {
        let known = self
            .migrator()
            .iter()
            .map(|m| m.version)
            .max()
            .unwrap_or_default();
        let exists_sql = match self.backend {
            Backend::Sqlite => {
                "SELECT COUNT(*) AS n FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'"
            }
            Backend::Postgres => {
                "SELECT COUNT(*) AS n FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = '_sqlx_migrations'"
            }
        };
        let exists: i64 = sqlx::query(exists_sql)
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?;
        let applied = if exists > 0 {
            sqlx::query("SELECT MAX(version) AS v FROM _sqlx_migrations WHERE success = TRUE")
                .fetch_one(&self.pool)
                .await?
                .try_get::<Option<i64>, _>("v")?
        } else {
            None
        };
        Ok(SchemaStatus { applied, known })
    }

    /// Brings the schema up to date. A database from a newer mailgate is refused before anything
    /// is touched: running old code on a new schema is how Flectra's "module not updated"
    /// Forbidden happens.
    pub async fn migrate(&self) -> Result<SchemaStatus, StoreError> {
        let before = self.schema_status().await?;
        if let Some(found) = before.applied
            && found > before.known
        {
            return Err(StoreError::NewerSchema {
                found,
                known: before.known,
            });
        }
        self.migrator().run(self.writes()).await?;
        self.schema_status().await
    }

    /// A consistent copy of a SQLite database in a new file (`VACUUM INTO`): one read
    /// transaction, so writers go on meanwhile and the copy holds one moment's state.
    pub async fn copy_to(&self, file: &std::path::Path) -> Result<(), StoreError> {
        sqlx::query("VACUUM INTO $1")
            .bind(file.display().to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Commits the writes still queued, then closes every connection.
    pub async fn close(&self) {
        self.writer.close().await;
        self.pool.close().await;
    }

    fn writer(&self) -> &writer::Writer {
        &self.writer
    }

    /// A fresh, migrated SQLite database in the temp directory, for unit tests.
    #[cfg(test)]
    pub async fn scratch() -> Self {
        let path = std::env::temp_dir().join(format!(
            "mailgate-unit-{}-{}.db",
            std::process::id(),
            crate::crypto::random_token()
        ));
        let store = Self::connect(&format!("sqlite://{}", path.display()))
            .await
            .expect("a scratch database");
        store.migrate().await.expect("migrations");
        store
    }

    /// The queue's writes so far and the group commits that held them.
    pub fn group_commits(&self) -> (u64, u64) {
        self.writer.counts()
    }
}

fn pool_options(backend: Backend, connections: u32) -> AnyPoolOptions {
    AnyPoolOptions::new()
        .max_connections(connections)
        .acquire_timeout(Duration::from_secs(10))
        // A ping before every use guards against a server that dropped the connection. A SQLite
        // file cannot, and there the ping is one more hand-off to the connection's thread for
        // every query.
        .test_before_acquire(backend == Backend::Postgres)
        .after_connect(move |conn, _| {
            Box::pin(async move {
                if backend == Backend::Sqlite {
                    // WAL lets readers work while a write commits; FULL survives power loss,
                    // not just a crash; the busy timeout queues writers instead of failing.
                    conn.execute(
                        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                         PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON;",
                    )
                    .await?;
                }
                Ok(())
            })
        })
}

/// How stale a key's or credential's "last used" may get: it is written at most this often,
/// and decided in Rust rather than in the UPDATE's WHERE, because even an UPDATE that changes
/// nothing takes SQLite's write lock, and every use would queue for it between group commits.
const LAST_USED_EVERY: crate::clock::Timestamp = 60;

/// Whether a use at `now` should be written over `last_used`.
fn last_used_is_stale(
    last_used: Option<crate::clock::Timestamp>,
    now: crate::clock::Timestamp,
) -> bool {
    last_used.is_none_or(|at| at < now - LAST_USED_EVERY)
}

/// Turns a unique-constraint violation into a readable `Duplicate`.
/// A search as a `LIKE` pattern on lowercased columns: `%text%`, its own wildcards dropped.
fn like_pattern(search: &str) -> String {
    format!("%{}%", search.to_ascii_lowercase().replace(['%', '_'], ""))
}

fn duplicate(what: &str) -> impl FnOnce(sqlx::Error) -> StoreError + '_ {
    move |e| match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Duplicate(what.into()),
        _ => StoreError::Database(e),
    }
}

fn opt_i64(row: &AnyRow, column: &str) -> Result<Option<i64>, sqlx::Error> {
    row.try_get::<Option<i64>, _>(column)
}

fn opt_string(row: &AnyRow, column: &str) -> Result<Option<String>, sqlx::Error> {
    row.try_get::<Option<String>, _>(column)
}

fn opt_bytes(row: &AnyRow, column: &str) -> Result<Option<Vec<u8>>, sqlx::Error> {
    row.try_get::<Option<Vec<u8>>, _>(column)
}
