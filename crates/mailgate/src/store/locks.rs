//! Locks across instances. On PostgreSQL an advisory lock, held on a connection of its own for
//! as long as the guard lives; on SQLite, which one process serves, nothing (the caller's
//! in-process lock is enough).

use sqlx::Executor;
use sqlx::pool::PoolConnection;

use super::{Backend, Store, StoreError};

/// Holds an advisory lock until [`SharedLock::release`]. Dropped without it (a cancelled or
/// panicking caller), its connection is closed rather than returned to the pool, and the
/// server lets the lock go with it.
pub struct SharedLock {
    conn: Option<PoolConnection<sqlx::Any>>,
    key: String,
}

impl Store {
    /// Waits for the lock named `key` among every instance on this database.
    pub async fn lock_shared(&self, key: &str) -> Result<Option<SharedLock>, StoreError> {
        if self.backend() != Backend::Postgres {
            return Ok(None);
        }
        let mut conn = self.pool().acquire().await?;
        sqlx::query("SELECT pg_advisory_lock(hashtextextended($1, 0))")
            .bind(key)
            .execute(&mut *conn)
            .await?;
        Ok(Some(SharedLock {
            conn: Some(conn),
            key: key.to_string(),
        }))
    }
}

impl SharedLock {
    pub async fn release(mut self) {
        if let Some(mut conn) = self.conn.take() {
            let unlocked = conn
                .execute(
                    sqlx::query("SELECT pg_advisory_unlock(hashtextextended($1, 0))")
                        .bind(&self.key),
                )
                .await;
            if unlocked.is_err() {
                drop(conn.detach());
            }
        }
    }
}

impl Drop for SharedLock {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            drop(conn.detach());
        }
    }
}
