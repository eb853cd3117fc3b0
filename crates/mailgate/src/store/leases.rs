//! Named leases: work that one instance at a time does (fetching an incoming server's folder),
//! held by a live instance. A lease goes with an instance that stops beating
//! (`Store::heartbeat`), or that stops cleanly, and a restart on SQLite clears the last run's.

use super::{Store, StoreError};
use crate::clock::Timestamp;

impl Store {
    /// Takes `name` for `owner`, unless another instance holds it. True when `owner` holds it.
    pub async fn take_lease(
        &self,
        name: &str,
        owner: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        sqlx::query(
            "INSERT INTO leases (name, owner, taken_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(owner)
        .bind(now)
        .execute(self.writes())
        .await?;
        Ok(self.lease_holder(name).await?.as_deref() == Some(owner))
    }

    pub async fn free_lease(&self, name: &str, owner: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM leases WHERE name = $1 AND owner = $2")
            .bind(name)
            .bind(owner)
            .execute(self.writes())
            .await?;
        Ok(())
    }

    /// The instance holding `name`, if any.
    pub async fn lease_holder(&self, name: &str) -> Result<Option<String>, StoreError> {
        use sqlx::Row;
        Ok(sqlx::query("SELECT owner FROM leases WHERE name = $1")
            .bind(name)
            .fetch_optional(self.writes())
            .await?
            .map(|r| r.try_get("owner"))
            .transpose()?)
    }
}
