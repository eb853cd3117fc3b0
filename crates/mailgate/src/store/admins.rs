//! Admins, their one-time setup links and their sessions. Tokens are stored as hashes only.

use sqlx::Row;

use super::{Store, StoreError, duplicate};
use crate::clock::Timestamp;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AdminRecord {
    pub id: i64,
    pub email: String,
    pub password_hash: String,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SessionRecord {
    pub admin_id: i64,
    #[sqlx(rename = "email")]
    pub admin_email: String,
    pub csrf_token: String,
    pub expires_at: Timestamp,
}

impl Store {
    pub async fn admin_count(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query("SELECT COUNT(*) AS n FROM admins")
            .fetch_one(self.pool())
            .await?
            .try_get("n")?)
    }

    pub async fn create_admin(
        &self,
        email: &str,
        password_hash: &str,
        now: Timestamp,
    ) -> Result<i64, StoreError> {
        let row = sqlx::query(
            "INSERT INTO admins (email, password_hash, created_at) VALUES ($1, $2, $3) RETURNING id",
        )
        .bind(email)
        .bind(password_hash)
        .bind(now)
        .fetch_one(self.writes())
        .await
        .map_err(duplicate("an admin with this email"))?;
        Ok(row.try_get("id")?)
    }

    pub async fn admin_by_email(&self, email: &str) -> Result<Option<AdminRecord>, StoreError> {
        Ok(sqlx::query_as::<_, AdminRecord>(
            "SELECT id, email, password_hash FROM admins WHERE email = $1",
        )
        .bind(email)
        .fetch_optional(self.pool())
        .await?)
    }

    /// Replaces any earlier setup link: only the newest one printed works.
    pub async fn replace_setup_token(
        &self,
        token_hash: &str,
        expires_at: Timestamp,
    ) -> Result<(), StoreError> {
        let mut tx = self.write_transaction().await?;
        sqlx::query("DELETE FROM setup_tokens WHERE used_at IS NULL")
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO setup_tokens (token_hash, expires_at) VALUES ($1, $2)")
            .bind(token_hash)
            .bind(expires_at)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Whether the setup link is usable now (exists, unused, unexpired).
    pub async fn setup_token_valid(
        &self,
        token_hash: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let n: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM setup_tokens WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2",
        )
        .bind(token_hash)
        .bind(now)
        .fetch_one(self.pool())
        .await?
        .try_get("n")?;
        Ok(n > 0)
    }

    /// Creates the first admin with a setup link, in one transaction: the link is spent only if
    /// the admin is created, and no second admin can slip in through the same link.
    pub async fn create_admin_with_setup_token(
        &self,
        token_hash: &str,
        email: &str,
        password_hash: &str,
        now: Timestamp,
    ) -> Result<Option<i64>, StoreError> {
        let mut tx = self.write_transaction().await?;
        let spent = sqlx::query(
            "UPDATE setup_tokens SET used_at = $1 WHERE token_hash = $2 AND used_at IS NULL AND expires_at > $1",
        )
        .bind(now)
        .bind(token_hash)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if spent != 1 {
            return Ok(None);
        }
        let id: i64 = sqlx::query(
            "INSERT INTO admins (email, password_hash, created_at) VALUES ($1, $2, $3) RETURNING id",
        )
        .bind(email)
        .bind(password_hash)
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(duplicate("an admin with this email"))?
        .try_get("id")?;
        tx.commit().await?;
        Ok(Some(id))
    }

    pub async fn create_session(
        &self,
        id_hash: &str,
        admin_id: i64,
        csrf_token: &str,
        now: Timestamp,
        expires_at: Timestamp,
    ) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
            .bind(now)
            .execute(self.writes())
            .await?;
        sqlx::query(
            "INSERT INTO sessions (id_hash, admin_id, csrf_token, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id_hash)
        .bind(admin_id)
        .bind(csrf_token)
        .bind(now)
        .bind(expires_at)
        .execute(self.writes())
        .await?;
        Ok(())
    }

    pub async fn session(
        &self,
        id_hash: &str,
        now: Timestamp,
    ) -> Result<Option<SessionRecord>, StoreError> {
        Ok(sqlx::query_as::<_, SessionRecord>(
            "SELECT s.admin_id, a.email, s.csrf_token, s.expires_at FROM sessions s \
             JOIN admins a ON a.id = s.admin_id WHERE s.id_hash = $1 AND s.expires_at > $2",
        )
        .bind(id_hash)
        .bind(now)
        .fetch_optional(self.pool())
        .await?)
    }

    pub async fn delete_session(&self, id_hash: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM sessions WHERE id_hash = $1")
            .bind(id_hash)
            .execute(self.writes())
            .await?;
        Ok(())
    }
}
