//! Incoming Mail Servers: their settings, the webhook secret (sealed), where fetching stands and
//! how it went.

use secrecy::SecretString;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Store, StoreError, duplicate, opt_i64, opt_string};
use crate::clock::Timestamp;
use crate::crypto::Sealer;
use crate::domain::incoming::{IncomingServer, IncomingStatus, ValidIncoming};

const COLUMNS: &str = "id, name, username, folder, interval_secs, mark_seen, webhook_url, confirmed, \
     uidvalidity, last_uid, status, status_reason, status_at, last_fetch_at, updated_at";

pub(super) fn secret_purpose(id: i64) -> String {
    format!("incoming_servers.webhook_secret:{id}")
}

fn from_row(row: &AnyRow) -> Result<IncomingServer, sqlx::Error> {
    Ok(IncomingServer {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        username: row.try_get("username")?,
        folder: row.try_get("folder")?,
        interval_secs: row.try_get("interval_secs")?,
        mark_seen: row.try_get::<i64, _>("mark_seen")? != 0,
        webhook_url: opt_string(row, "webhook_url")?,
        confirmed: row.try_get::<i64, _>("confirmed")? != 0,
        uidvalidity: opt_i64(row, "uidvalidity")?,
        last_uid: row.try_get("last_uid")?,
        status: IncomingStatus::from_row(
            &row.try_get::<String, _>("status")?,
            opt_string(row, "status_reason")?,
        ),
        status_at: opt_i64(row, "status_at")?,
        last_fetch_at: opt_i64(row, "last_fetch_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

impl Store {
    pub async fn incoming_servers(&self) -> Result<Vec<IncomingServer>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM incoming_servers ORDER BY name, id"
        )))
        .fetch_all(self.pool())
        .await?;
        Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
    }

    pub async fn incoming_server(&self, id: i64) -> Result<Option<IncomingServer>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM incoming_servers WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.as_ref().map(from_row).transpose()?)
    }

    /// A new server with its webhook secret sealed to its row; not confirmed yet.
    pub async fn create_incoming(
        &self,
        sealer: &Sealer,
        server: &ValidIncoming,
        secret: &SecretString,
        now: Timestamp,
    ) -> Result<i64, StoreError> {
        let mut tx = self.write_transaction().await?;
        let id: i64 = sqlx::query(
            "INSERT INTO incoming_servers (name, username, folder, interval_secs, mark_seen, webhook_url, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7) RETURNING id",
        )
        .bind(&server.name)
        .bind(&server.username)
        .bind(&server.folder)
        .bind(server.interval_secs)
        .bind(i64::from(server.mark_seen))
        .bind(server.webhook_url.as_deref())
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(duplicate("An incoming server with this Name"))?
        .try_get("id")?;
        sqlx::query("UPDATE incoming_servers SET webhook_secret_sealed = $1 WHERE id = $2")
            .bind(sealer.seal_secret(&secret_purpose(id), secret))
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(id)
    }

    /// New settings. Another account or folder is another mailbox: where fetching stood there
    /// means nothing here, so it starts again (and the server must be confirmed again).
    pub async fn update_incoming(
        &self,
        id: i64,
        server: &ValidIncoming,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let updated = sqlx::query(
            "UPDATE incoming_servers SET \
             uidvalidity = CASE WHEN username = $2 AND folder = $3 THEN uidvalidity ELSE NULL END, \
             last_uid = CASE WHEN username = $2 AND folder = $3 THEN last_uid ELSE 0 END, \
             confirmed = CASE WHEN username = $2 AND folder = $3 THEN confirmed ELSE 0 END, \
             name = $1, username = $2, folder = $3, interval_secs = $4, mark_seen = $5, webhook_url = $6, updated_at = $7 \
             WHERE id = $8",
        )
        .bind(&server.name)
        .bind(&server.username)
        .bind(&server.folder)
        .bind(server.interval_secs)
        .bind(i64::from(server.mark_seen))
        .bind(server.webhook_url.as_deref())
        .bind(now)
        .bind(id)
        .execute(self.writes())
        .await
        .map_err(duplicate("An incoming server with this Name"))?
        .rows_affected();
        Ok(updated == 1)
    }

    pub async fn delete_incoming(&self, id: i64) -> Result<bool, StoreError> {
        Ok(sqlx::query("DELETE FROM incoming_servers WHERE id = $1")
            .bind(id)
            .execute(self.writes())
            .await?
            .rows_affected()
            == 1)
    }

    /// "Test & Confirm" (true) or "Reset Confirmation" (false).
    pub async fn confirm_incoming(
        &self,
        id: i64,
        confirmed: bool,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE incoming_servers SET confirmed = $1, updated_at = $2 WHERE id = $3")
            .bind(i64::from(confirmed))
            .bind(now)
            .bind(id)
            .execute(self.writes())
            .await?;
        Ok(())
    }

    pub async fn replace_webhook_secret(
        &self,
        sealer: &Sealer,
        id: i64,
        secret: &SecretString,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE incoming_servers SET webhook_secret_sealed = $1, updated_at = $2 WHERE id = $3",
        )
        .bind(sealer.seal_secret(&secret_purpose(id), secret))
        .bind(now)
        .bind(id)
        .execute(self.writes())
        .await?;
        Ok(())
    }

    /// How fetching went; a success is also the time of the last fetch.
    pub async fn set_incoming_status(
        &self,
        id: i64,
        status: &IncomingStatus,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE incoming_servers SET status = $1, status_reason = $2, status_at = $3, \
             last_fetch_at = CASE WHEN $1 = 'ok' THEN $3 ELSE last_fetch_at END WHERE id = $4",
        )
        .bind(status.code())
        .bind(status.reason())
        .bind(now)
        .bind(id)
        .execute(self.writes())
        .await?;
        Ok(())
    }

    /// The folder's UIDVALIDITY is not the one fetching stood on: everything is fetched again
    /// from UID 1, and up to `refetch_through` a message already stored is not stored twice.
    pub async fn restart_folder(
        &self,
        id: i64,
        uidvalidity: i64,
        refetch_through: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE incoming_servers SET uidvalidity = $1, last_uid = 0, refetch_through = $2 WHERE id = $3",
        )
        .bind(uidvalidity)
        .bind(refetch_through)
        .bind(id)
        .execute(self.writes())
        .await?;
        Ok(())
    }
}
