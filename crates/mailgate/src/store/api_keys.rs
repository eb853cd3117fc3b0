//! API keys: shown once at creation, kept only as a hash.

use sqlx::Row;

use super::{Store, StoreError, opt_i64};
use crate::clock::Timestamp;

#[derive(Debug, Clone)]
pub struct ApiKeyRecord {
    pub id: i64,
    pub name: String,
    /// The first characters, to tell keys apart in the list.
    pub prefix: String,
    pub created_at: Timestamp,
    pub last_used_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
}

impl Store {
    pub async fn create_api_key(
        &self,
        name: &str,
        key_hash: &str,
        prefix: &str,
        now: Timestamp,
    ) -> Result<i64, StoreError> {
        Ok(sqlx::query(
            "INSERT INTO api_keys (name, key_hash, prefix, created_at) VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(name)
        .bind(key_hash)
        .bind(prefix)
        .bind(now)
        .fetch_one(self.pool())
        .await?
        .try_get("id")?)
    }

    pub async fn api_keys(&self) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, name, prefix, created_at, last_used_at, revoked_at FROM api_keys ORDER BY id DESC",
        )
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .iter()
            .map(|r| {
                Ok(ApiKeyRecord {
                    id: r.try_get("id")?,
                    name: r.try_get("name")?,
                    prefix: r.try_get("prefix")?,
                    created_at: r.try_get("created_at")?,
                    last_used_at: opt_i64(r, "last_used_at")?,
                    revoked_at: opt_i64(r, "revoked_at")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()?)
    }

    pub async fn revoke_api_key(&self, id: i64, now: Timestamp) -> Result<bool, StoreError> {
        Ok(
            sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                .bind(now)
                .bind(id)
                .execute(self.pool())
                .await?
                .rows_affected()
                == 1,
        )
    }

    /// The live key with this hash, noting its use.
    pub async fn use_api_key(
        &self,
        key_hash: &str,
        now: Timestamp,
    ) -> Result<Option<i64>, StoreError> {
        let row = sqlx::query("SELECT id FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL")
            .bind(key_hash)
            .fetch_optional(self.pool())
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let id: i64 = row.try_get("id")?;
        // At most once a minute: a busy client must not turn every submission into two writes.
        sqlx::query("UPDATE api_keys SET last_used_at = $1 WHERE id = $2 AND (last_used_at IS NULL OR last_used_at < $3)")
            .bind(now)
            .bind(id)
            .bind(now - 60)
            .execute(self.pool())
            .await?;
        Ok(Some(id))
    }
}
