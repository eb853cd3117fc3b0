//! The relay's credentials: a name (the SMTP username), a keyed hash of the password, and the
//! senders it may use.

use sqlx::Row;

use super::{Store, StoreError, duplicate, last_used_is_stale};
use crate::clock::Timestamp;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RelayCredentialRecord {
    pub id: i64,
    pub name: String,
    /// The password's first characters, to tell credentials apart in the list.
    pub prefix: String,
    /// Addresses and `@domain`s, one per line; empty: any address a server sends as.
    pub senders: String,
    pub created_at: Timestamp,
    pub last_used_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
}

/// A live credential as a login needs it.
pub struct LiveCredential {
    pub id: i64,
    pub secret_hash: String,
    pub senders: String,
    pub last_used_at: Option<Timestamp>,
}

impl Store {
    pub async fn create_relay_credential(
        &self,
        name: &str,
        secret_hash: &str,
        prefix: &str,
        senders: &str,
        now: Timestamp,
    ) -> Result<i64, StoreError> {
        let what = format!("a live relay credential named “{name}”");
        Ok(sqlx::query(
            "INSERT INTO relay_credentials (name, secret_hash, prefix, senders, created_at) VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .bind(name)
        .bind(secret_hash)
        .bind(prefix)
        .bind(senders)
        .bind(now)
        .fetch_one(self.writes())
        .await
        .map_err(duplicate(&what))?
        .try_get("id")?)
    }

    pub async fn relay_credentials(&self) -> Result<Vec<RelayCredentialRecord>, StoreError> {
        Ok(sqlx::query_as::<_, RelayCredentialRecord>(
            "SELECT id, name, prefix, senders, created_at, last_used_at, revoked_at FROM relay_credentials ORDER BY id DESC",
        )
        .fetch_all(self.pool())
        .await?)
    }

    pub async fn revoke_relay_credential(
        &self,
        id: i64,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        Ok(sqlx::query(
            "UPDATE relay_credentials SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(id)
        .execute(self.writes())
        .await?
        .rows_affected()
            == 1)
    }

    pub async fn live_relay_credential(
        &self,
        name: &str,
    ) -> Result<Option<LiveCredential>, StoreError> {
        let row = sqlx::query(
            "SELECT id, secret_hash, senders, last_used_at FROM relay_credentials WHERE name = $1 AND revoked_at IS NULL",
        )
        .bind(name)
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| {
            Ok(LiveCredential {
                id: r.try_get("id")?,
                secret_hash: r.try_get("secret_hash")?,
                senders: r.try_get("senders")?,
                last_used_at: r.try_get("last_used_at")?,
            })
        })
        .transpose()
    }

    /// Notes a login, at most once a minute (`last_used_is_stale`).
    pub async fn note_relay_login(
        &self,
        credential: &LiveCredential,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        if last_used_is_stale(credential.last_used_at, now) {
            sqlx::query("UPDATE relay_credentials SET last_used_at = $1 WHERE id = $2")
                .bind(now)
                .bind(credential.id)
                .execute(self.writes())
                .await?;
        }
        Ok(())
    }
}
