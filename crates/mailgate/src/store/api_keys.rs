//! API keys: shown once at creation, kept only as a hash.

use sqlx::Row;

use super::{LAST_USED_EVERY, Store, StoreError, last_used_is_stale};
use crate::clock::Timestamp;

/// What a key may do. Every key submits; a submit key reads back only the messages it submitted,
/// an admin key reads every message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyScope {
    Submit,
    Admin,
}

impl KeyScope {
    pub fn code(self) -> &'static str {
        match self {
            KeyScope::Submit => "submit",
            KeyScope::Admin => "admin",
        }
    }

    pub fn parse(code: &str) -> Option<Self> {
        [KeyScope::Submit, KeyScope::Admin]
            .into_iter()
            .find(|s| s.code() == code)
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ApiKeyRecord {
    pub id: i64,
    pub name: String,
    /// The first characters, to tell keys apart in the list.
    pub prefix: String,
    #[sqlx(try_from = "String")]
    pub scope: KeyScope,
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
        scope: KeyScope,
        now: Timestamp,
    ) -> Result<i64, StoreError> {
        Ok(sqlx::query(
            "INSERT INTO api_keys (name, key_hash, prefix, scope, created_at) VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .bind(name)
        .bind(key_hash)
        .bind(prefix)
        .bind(scope.code())
        .bind(now)
        .fetch_one(self.writes())
        .await?
        .try_get("id")?)
    }

    pub async fn api_keys(&self) -> Result<Vec<ApiKeyRecord>, StoreError> {
        Ok(sqlx::query_as::<_, ApiKeyRecord>(
            "SELECT id, name, prefix, scope, created_at, last_used_at, revoked_at FROM api_keys ORDER BY id DESC",
        )
        .fetch_all(self.pool())
        .await?)
    }

    pub async fn revoke_api_key(&self, id: i64, now: Timestamp) -> Result<bool, StoreError> {
        Ok(
            sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                .bind(now)
                .bind(id)
                .execute(self.writes())
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
    ) -> Result<Option<(i64, KeyScope)>, StoreError> {
        let row = sqlx::query(
            "SELECT id, scope, last_used_at FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL",
        )
        .bind(key_hash)
        .fetch_optional(self.pool())
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let id: i64 = row.try_get("id")?;
        let scope = KeyScope::from(row.try_get::<String, _>("scope")?);
        let last_used: Option<Timestamp> = row.try_get("last_used_at")?;
        if last_used_is_stale(last_used, now) {
            sqlx::query("UPDATE api_keys SET last_used_at = $1 WHERE id = $2 AND (last_used_at IS NULL OR last_used_at < $3)")
                .bind(now)
                .bind(id)
                .bind(now - LAST_USED_EVERY)
                .execute(self.writes())
                .await?;
        }
        Ok(Some((id, scope)))
    }
}

/// An unknown scope reads as the narrower one.
impl From<String> for KeyScope {
    fn from(code: String) -> Self {
        KeyScope::parse(&code).unwrap_or(KeyScope::Submit)
    }
}
