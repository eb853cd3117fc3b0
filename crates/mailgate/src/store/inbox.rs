//! Mail fetched from incoming servers: stored, with its summary, before its UID counts as
//! fetched; then handed to the webhook in order, every attempt recorded; read by the API.

use secrecy::SecretString;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Store, StoreError, opt_i64, opt_string};
use crate::clock::Timestamp;
use crate::crypto::Sealer;
use crate::domain::incoming::Summary;

/// A fetched message on its way to the database.
#[derive(Debug, Clone)]
pub struct NewInbound {
    pub id: String,
    pub uid: i64,
    pub summary: Summary,
    /// SHA-256 of the raw bytes, hex: the same message when it has no Message-ID.
    pub content_hash: String,
    pub raw: Vec<u8>,
}

/// A stored incoming message, without its raw bytes.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct InboundRecord {
    pub id: String,
    pub server_id: i64,
    pub folder: String,
    pub uidvalidity: i64,
    pub uid: i64,
    #[serde(flatten)]
    pub summary: Summary,
    /// Bytes of the raw message.
    pub size: i64,
    /// When mailgate stored it (Unix seconds).
    pub received_at: Timestamp,
    /// `pending`, `delivered` or `none` (no webhook).
    pub webhook: String,
    pub webhook_attempts: i64,
    pub webhook_next_at: Option<Timestamp>,
    pub webhook_at: Option<Timestamp>,
    pub webhook_error: Option<String>,
}

/// The oldest message waiting for the webhook, with what signs it.
pub struct PendingWebhook {
    pub message: InboundRecord,
    /// Empty while the message is not due.
    pub raw: Vec<u8>,
    pub secret: Option<SecretString>,
}

/// One webhook attempt, as the message's page lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct WebhookAttempt {
    pub at: Timestamp,
    /// The HTTP status, when an answer came.
    pub status: Option<i64>,
    pub error: Option<String>,
    pub took_ms: i64,
}

const COLUMNS: &str = "id, server_id, folder, uidvalidity, uid, summary, size, received_at, webhook, \
     webhook_attempts, webhook_next_at, webhook_at, webhook_error";

fn from_row(row: &AnyRow) -> Result<InboundRecord, sqlx::Error> {
    let summary: String = row.try_get("summary")?;
    Ok(InboundRecord {
        id: row.try_get("id")?,
        server_id: row.try_get("server_id")?,
        folder: row.try_get("folder")?,
        uidvalidity: row.try_get("uidvalidity")?,
        uid: row.try_get("uid")?,
        summary: serde_json::from_str(&summary).map_err(|e| sqlx::Error::ColumnDecode {
            index: "summary".into(),
            source: Box::new(e),
        })?,
        size: row.try_get("size")?,
        received_at: row.try_get("received_at")?,
        webhook: row.try_get("webhook")?,
        webhook_attempts: row.try_get("webhook_attempts")?,
        webhook_next_at: opt_i64(row, "webhook_next_at")?,
        webhook_at: opt_i64(row, "webhook_at")?,
        webhook_error: opt_string(row, "webhook_error")?,
    })
}

impl Store {
    /// Stores a fetched batch and moves the folder's position past it, in one transaction: a UID
    /// counts as fetched only once its message is on disk, and a crash in between fetches it
    /// again, which stores nothing twice (one row per folder, UIDVALIDITY and UID). While the
    /// folder is fetched again after a UIDVALIDITY change, a message already stored (same
    /// Message-ID, or same bytes when it has none) is skipped. Nothing is stored when the folder
    /// was restarted meanwhile (its UIDVALIDITY is not `uidvalidity`). Returns how many were
    /// stored.
    pub async fn store_fetched(
        &self,
        server_id: i64,
        folder: &str,
        uidvalidity: i64,
        batch: &[NewInbound],
        webhook: bool,
        now: Timestamp,
    ) -> Result<usize, StoreError> {
        let Some(last) = batch.iter().map(|m| m.uid).max() else {
            return Ok(0);
        };
        let mut tx = self.write_transaction().await?;
        // One store per server at a time: "Fetch Now" and the server's worker may fetch the same
        // batch side by side, and on PostgreSQL two transactions inserting the same rows at once
        // could meet on the primary key. Taking the server's row first (the position is read in
        // the same statement) makes the second wait and then find the first one's rows
        // (SQLite's write transaction already serializes).
        let position = sqlx::query(
            "UPDATE incoming_servers SET last_uid = last_uid WHERE id = $1 \
             RETURNING uidvalidity, refetch_through",
        )
        .bind(server_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(position) = position else {
            return Ok(0);
        };
        if opt_i64(&position, "uidvalidity")? != Some(uidvalidity) {
            return Ok(0);
        }
        let refetch_through: i64 = position.try_get("refetch_through")?;
        let mut stored = 0;
        for message in batch {
            if message.uid <= refetch_through {
                let seen = sqlx::query(
                    "SELECT COUNT(*) AS n FROM inbox_messages WHERE server_id = $1 AND folder = $2 \
                     AND (content_hash = $3 OR (message_id IS NOT NULL AND message_id = $4))",
                )
                .bind(server_id)
                .bind(folder)
                .bind(&message.content_hash)
                .bind(message.summary.message_id.as_deref())
                .fetch_one(&mut *tx)
                .await?
                .try_get::<i64, _>("n")?;
                if seen > 0 {
                    continue;
                }
            }
            let summary = serde_json::to_string(&message.summary).unwrap_or_default();
            stored += sqlx::query(
                "INSERT INTO inbox_messages (id, server_id, folder, uidvalidity, uid, message_id, content_hash, summary, \
                 subject, from_header, size, raw, received_at, webhook) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(&message.id)
            .bind(server_id)
            .bind(folder)
            .bind(uidvalidity)
            .bind(message.uid)
            .bind(message.summary.message_id.as_deref())
            .bind(&message.content_hash)
            .bind(summary)
            .bind(&message.summary.subject)
            .bind(&message.summary.from)
            .bind(i64::try_from(message.raw.len()).unwrap_or(i64::MAX))
            .bind(&message.raw)
            .bind(now)
            .bind(if webhook { "pending" } else { "none" })
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
        sqlx::query(
            "UPDATE incoming_servers SET last_uid = CASE WHEN last_uid < $1 THEN $1 ELSE last_uid END \
             WHERE id = $2 AND uidvalidity = $3",
        )
        .bind(last)
        .bind(server_id)
        .bind(uidvalidity)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(usize::try_from(stored).unwrap_or(usize::MAX))
    }

    /// The oldest message of `server_id` still waiting for its webhook: messages go in the
    /// order they were stored, each only after the one before it. Its raw bytes come only when
    /// it is due at `now`: a message waiting out a backoff is looked at every second, and need
    /// not be read whole (up to the size limit) each time.
    pub async fn next_webhook(
        &self,
        sealer: &Sealer,
        server_id: i64,
        now: Timestamp,
    ) -> Result<Option<PendingWebhook>, StoreError> {
        // The server's secret comes in the same query: one round trip fewer per message, and a
        // "New webhook secret" still signs the very next request.
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS}, \
             CASE WHEN webhook_next_at IS NULL OR webhook_next_at <= $2 THEN raw END AS raw, \
             (SELECT webhook_secret_sealed FROM incoming_servers WHERE id = $1) AS webhook_secret_sealed \
             FROM inbox_messages WHERE server_id = $1 AND webhook = 'pending' ORDER BY id LIMIT 1"
        )))
        .bind(server_id)
        .bind(now)
        .fetch_optional(self.pool())
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let secret = match super::opt_bytes(&row, "webhook_secret_sealed")? {
            Some(sealed) => {
                Some(sealer.open_secret(&super::incoming::secret_purpose(server_id), &sealed)?)
            }
            None => None,
        };
        Ok(Some(PendingWebhook {
            message: from_row(&row)?,
            raw: super::opt_bytes(&row, "raw")?.unwrap_or_default(),
            secret,
        }))
    }

    /// Records a webhook attempt; `delivered` when it answered 2xx, otherwise the message is
    /// due again at `next_at`.
    pub async fn record_webhook(
        &self,
        id: &str,
        attempt: &WebhookAttempt,
        delivered: bool,
        next_at: Timestamp,
    ) -> Result<(), StoreError> {
        let mut tx = self.write_transaction().await?;
        sqlx::query(
            "INSERT INTO webhook_attempts (message_id, at, status, error, took_ms) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id)
        .bind(attempt.at)
        .bind(attempt.status)
        .bind(attempt.error.as_deref())
        .bind(attempt.took_ms)
        .execute(&mut *tx)
        .await?;
        if delivered {
            sqlx::query(
                "UPDATE inbox_messages SET webhook = 'delivered', webhook_at = $1, webhook_attempts = webhook_attempts + 1, \
                 webhook_error = NULL, webhook_next_at = NULL WHERE id = $2 AND webhook = 'pending'",
            )
            .bind(attempt.at)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        } else {
            sqlx::query(
                "UPDATE inbox_messages SET webhook_attempts = webhook_attempts + 1, webhook_error = $1, webhook_next_at = $2 \
                 WHERE id = $3 AND webhook = 'pending'",
            )
            .bind(attempt.error.as_deref())
            .bind(next_at)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Incoming messages after `after` (an id), oldest first, for the API's pages.
    pub async fn inbox_after(
        &self,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<InboundRecord>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM inbox_messages WHERE ($1 IS NULL OR id > $1) ORDER BY id LIMIT $2"
        )))
        .bind(after)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
    }

    /// The newest incoming messages, those whose subject or From holds `search` (as the
    /// outgoing list searches), for the Emails page.
    pub async fn inbox_latest(
        &self,
        search: Option<&str>,
        limit: i64,
    ) -> Result<Vec<InboundRecord>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM inbox_messages \
             WHERE ($1 IS NULL OR LOWER(subject) LIKE $1 OR LOWER(from_header) LIKE $1) \
             ORDER BY id DESC LIMIT $2"
        )))
        .bind(search.map(super::like_pattern))
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
    }

    pub async fn inbox_message(&self, id: &str) -> Result<Option<InboundRecord>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM inbox_messages WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.as_ref().map(from_row).transpose()?)
    }

    /// The raw bytes, while they are kept (see `purge_inbox`).
    pub async fn inbox_raw(&self, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let row = sqlx::query("SELECT raw FROM inbox_messages WHERE id = $1")
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        Ok(row
            .as_ref()
            .map(|r| super::opt_bytes(r, "raw"))
            .transpose()?
            .flatten())
    }

    pub async fn webhook_attempts(&self, id: &str) -> Result<Vec<WebhookAttempt>, StoreError> {
        let rows = sqlx::query(
            "SELECT at, status, error, took_ms FROM webhook_attempts WHERE message_id = $1 ORDER BY at, id",
        )
        .bind(id)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .iter()
            .map(|r| {
                Ok(WebhookAttempt {
                    at: r.try_get("at")?,
                    status: opt_i64(r, "status")?,
                    error: opt_string(r, "error")?,
                    took_ms: r.try_get("took_ms")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()?)
    }

    /// Retention, as for outgoing mail: the raw bytes of messages handed over (or with no
    /// webhook) stored before `bodies_before`, and whole records stored before `records_before`
    /// (a message still waiting for its webhook is kept whole).
    pub async fn purge_inbox(
        &self,
        bodies_before: Timestamp,
        records_before: Timestamp,
    ) -> Result<u64, StoreError> {
        let mut tx = self.write_transaction().await?;
        sqlx::query(
            "UPDATE inbox_messages SET raw = NULL WHERE raw IS NOT NULL AND webhook <> 'pending' AND received_at < $1",
        )
        .bind(bodies_before)
        .execute(&mut *tx)
        .await?;
        let deleted = sqlx::query(
            "DELETE FROM inbox_messages WHERE webhook <> 'pending' AND received_at < $1",
        )
        .bind(records_before)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(deleted)
    }
}
