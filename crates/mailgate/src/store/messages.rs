//! The outgoing queue. A message is accepted by one committed INSERT; workers lease messages by
//! stamping an owner, a random lease token and an expiry on them. The holder renews the lease
//! while the message is in its hands; a lease that expires (its holder crashed or stalled) makes
//! the message claimable again, and the old holder's token no longer settles it. Bodies, and
//! later whole records, are deleted past retention.

use std::sync::Arc;

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Backend, Store, StoreError, opt_bytes, opt_i64, opt_string};
use crate::clock::Timestamp;
use crate::domain::message::Edge;
use crate::domain::outgoing::{MessageState, Verdict};

/// A message to accept. Owned: it travels to the group-commit writer.
pub struct NewMessage {
    pub id: String,
    pub server_id: i64,
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    pub message_id: String,
    pub from_header: String,
    pub subject: String,
    pub body: Vec<u8>,
    pub origin: Edge,
    pub api_key_id: Option<i64>,
    pub idempotency_key: Option<String>,
    pub request_hash: Option<String>,
    /// Where to report a permanent failure (the relay client's MAIL FROM); None: nowhere.
    pub bounce_to: Option<String>,
}

/// Bodies up to this size come with the claim; larger ones are read when their turn comes, so
/// the messages in hand never hold more than a few megabytes.
pub const INLINE_BODY: i64 = 64 * 1024;

pub enum Inserted {
    New,
    /// The Idempotency-Key was seen before: the earlier message, and whether the request matched.
    Existing {
        id: String,
        same_request: bool,
    },
}

/// A message in a worker's hands.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: String,
    /// The claim's token: renewing the lease and settling the message need it.
    pub lease: String,
    pub server_id: i64,
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    pub attempts: i64,
    pub created_at: Timestamp,
    /// When an earlier attempt sent the final dot without its outcome being recorded.
    pub dot_at: Option<Timestamp>,
    /// The content, when it is at most `INLINE_BODY` bytes; otherwise read with `message_body`.
    pub body: Option<Vec<u8>>,
}

/// What one attempt did, for the attempt log.
pub struct AttemptRecord {
    pub stage: String,
    pub reply: Option<String>,
    pub detail: String,
}

/// The end of one attempt, recorded in one transaction. Owned: it travels to the group-commit
/// writer.
pub struct Settlement {
    pub id: String,
    pub lease: String,
    pub verdict: Verdict,
    pub attempt: AttemptRecord,
    /// False when nothing reached the server (mailgate's own quota guard held it back).
    pub counts_as_attempt: bool,
    /// The final dot went out but no answer came: the server may have the message.
    pub outcome_unknown: bool,
    /// The Gmail account whose daily quota the send used.
    pub sent_by: Option<String>,
    pub now: Timestamp,
}

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema, sqlx::FromRow)]
pub struct Attempt {
    /// Unix seconds.
    pub at: Timestamp,
    /// The message's state after this attempt (`sent`, `deferred`, `held`, `failed`).
    pub outcome: String,
    pub stage: String,
    pub reply: Option<String>,
    pub detail: String,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct MessageRecord {
    pub id: String,
    pub state: MessageState,
    pub server_id: i64,
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    pub message_id: String,
    pub from_header: String,
    pub subject: String,
    pub size: i64,
    pub attempts: i64,
    pub next_attempt_at: Timestamp,
    pub last_error: Option<String>,
    pub created_at: Timestamp,
    pub sent_at: Option<Timestamp>,
    pub has_body: bool,
    /// Attempts that ended without an answer after the final dot: a duplicate is possible.
    pub unknown_outcomes: i64,
    pub origin: Edge,
    pub api_key_id: Option<i64>,
}

#[derive(Debug, Clone, Default)]
pub struct MessageFilter {
    pub state: Option<MessageState>,
    pub server_id: Option<i64>,
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
    /// Matches the subject, the From header, the recipients and the Message-ID.
    pub search: Option<String>,
    /// Only messages older than this id (ids sort by time): the next page.
    pub before: Option<String>,
    pub limit: i64,
}

macro_rules! columns {
    () => {
        "id, state, server_id, mail_from, rcpt_to, message_id, from_header, subject, size, attempts, \
         next_attempt_at, last_error, created_at, sent_at, unknown_outcomes, origin, api_key_id, \
         CAST(CASE WHEN body IS NULL THEN 0 ELSE 1 END AS BIGINT) AS has_body"
    };
}

fn rcpts(json: &str) -> Vec<String> {
    serde_json::from_str(json).unwrap_or_default()
}

fn record_from_row(row: &AnyRow) -> Result<MessageRecord, sqlx::Error> {
    let state: String = row.try_get("state")?;
    Ok(MessageRecord {
        id: row.try_get("id")?,
        state: MessageState::parse(&state).ok_or_else(|| sqlx::Error::ColumnDecode {
            index: "state".into(),
            source: format!("unknown state {state}").into(),
        })?,
        server_id: row.try_get("server_id")?,
        mail_from: row.try_get("mail_from")?,
        rcpt_to: rcpts(&row.try_get::<String, _>("rcpt_to")?),
        message_id: row.try_get("message_id")?,
        from_header: row.try_get("from_header")?,
        subject: row.try_get("subject")?,
        size: row.try_get("size")?,
        attempts: row.try_get("attempts")?,
        next_attempt_at: row.try_get("next_attempt_at")?,
        last_error: opt_string(row, "last_error")?,
        created_at: row.try_get("created_at")?,
        sent_at: opt_i64(row, "sent_at")?,
        has_body: row.try_get::<i64, _>("has_body")? != 0,
        unknown_outcomes: row.try_get("unknown_outcomes")?,
        origin: Edge::parse(&row.try_get::<String, _>("origin")?),
        api_key_id: opt_i64(row, "api_key_id")?,
    })
}

impl Store {
    /// Accepts a message: once this returns, it is on disk. With an Idempotency-Key already seen
    /// for the same API key, nothing is inserted and the earlier message is returned.
    pub async fn insert_message(
        &self,
        m: NewMessage,
        now: Timestamp,
    ) -> Result<Inserted, StoreError> {
        self.insert_messages(vec![m], now).await
    }

    /// Accepts the parts of one submission (a message for more recipients than Gmail takes at
    /// once is several rows) in one transaction: all of them or none. The Idempotency-Key is
    /// the first part's.
    pub async fn insert_messages(
        &self,
        parts: Vec<NewMessage>,
        now: Timestamp,
    ) -> Result<Inserted, StoreError> {
        let Some(first) = parts.first() else {
            return Ok(Inserted::New);
        };
        if let Some(existing) = self.idempotent_message(first).await? {
            return Ok(existing);
        }
        let parts = Arc::new(parts);
        let write = Arc::clone(&parts);
        let result = self
            .writer()
            .write(move |conn| {
                let parts = Arc::clone(&write);
                Box::pin(async move {
                    for m in parts.iter() {
                        insert_row(&mut *conn, m, now).await?;
                    }
                    Ok(())
                })
            })
            .await;
        match result {
            Ok(()) => Ok(Inserted::New),
            // Two requests with one key raced; the other won.
            Err(StoreError::Database(sqlx::Error::Database(db))) if db.is_unique_violation() => {
                self.idempotent_message(&parts[0])
                    .await?
                    .ok_or_else(|| StoreError::Duplicate("a message with this id".into()))
            }
            Err(e) => Err(e),
        }
    }

    async fn idempotent_message(&self, m: &NewMessage) -> Result<Option<Inserted>, StoreError> {
        let (Some(key_id), Some(key)) = (m.api_key_id, m.idempotency_key.as_deref()) else {
            return Ok(None);
        };
        let row = sqlx::query(
            "SELECT id, request_hash FROM messages WHERE api_key_id = $1 AND idempotency_key = $2",
        )
        .bind(key_id)
        .bind(key)
        .fetch_optional(self.pool())
        .await?;
        Ok(row
            .map(|r| -> Result<Inserted, sqlx::Error> {
                Ok(Inserted::Existing {
                    id: r.try_get("id")?,
                    same_request: opt_string(&r, "request_hash")?.as_deref()
                        == m.request_hash.as_deref(),
                })
            })
            .transpose()?)
    }

    /// Leases up to `limit` messages that are due (or whose lease expired) to `owner`, under the
    /// fresh token `lease`.
    pub async fn claim_messages(
        &self,
        owner: &str,
        lease: &str,
        now: Timestamp,
        lease_until: Timestamp,
        limit: i64,
        skip_servers: &[i64],
    ) -> Result<Vec<Claimed>, StoreError> {
        // The subquery names the due index's states word for word, so SQLite uses that partial
        // index. The state test is repeated outside the subquery: PostgreSQL re-checks it after waiting
        // on a row another instance just claimed, so no message is claimed twice. An expired
        // lease is taken over only from another owner: this instance renews what it holds, and
        // taking back its own would hand one message to two of its workers. `skip_servers`
        // (numbers, so safe to write into the statement) are servers this instance leaves to
        // the instances holding their sessions.
        const DUE: &str = "((state IN ('queued', 'deferred') AND next_attempt_at <= $3) \
             OR (state = 'sending' AND lease_until <= $3 AND COALESCE(lease_owner, '') <> $1))";
        let skip = if skip_servers.is_empty() {
            String::new()
        } else {
            let ids: Vec<String> = skip_servers.iter().map(i64::to_string).collect();
            format!(" AND server_id NOT IN ({})", ids.join(", "))
        };
        // PostgreSQL also skips rows another instance holds.
        let lock = match self.backend() {
            Backend::Sqlite => "",
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
        };
        let sql = format!(
            "UPDATE messages SET state = 'sending', lease_owner = $1, lease_until = $2, updated_at = $3, lease_token = $5 \
             WHERE id IN (SELECT id FROM messages WHERE state IN ('queued', 'deferred', 'sending') AND {DUE}{skip} \
             ORDER BY next_attempt_at, id LIMIT $4{lock}) AND {DUE} \
             RETURNING id, server_id, mail_from, rcpt_to, attempts, created_at, dot_at, \
             CASE WHEN size <= $6 THEN body END AS body"
        );
        let (owner, lease_token) = (owner.to_string(), lease.to_string());
        let mut claimed = self
            .writer()
            .write(move |conn| {
                let (owner, lease_token, sql) = (owner.clone(), lease_token.clone(), sql.clone());
                Box::pin(async move {
                    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                        .bind(&owner)
                        .bind(lease_until)
                        .bind(now)
                        .bind(limit)
                        .bind(&lease_token)
                        .bind(INLINE_BODY)
                        .fetch_all(conn)
                        .await?;
                    Ok(rows
                        .iter()
                        .map(|r| {
                            Ok(Claimed {
                                id: r.try_get("id")?,
                                lease: lease_token.clone(),
                                dot_at: opt_i64(r, "dot_at")?,
                                server_id: r.try_get("server_id")?,
                                mail_from: r.try_get("mail_from")?,
                                rcpt_to: rcpts(&r.try_get::<String, _>("rcpt_to")?),
                                attempts: r.try_get("attempts")?,
                                created_at: r.try_get("created_at")?,
                                body: super::opt_bytes(r, "body")?,
                            })
                        })
                        .collect::<Result<Vec<_>, sqlx::Error>>()?)
                })
            })
            .await?;
        claimed.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(claimed)
    }

    /// The earliest time a message becomes due, if any is waiting.
    pub async fn next_due(&self) -> Result<Option<Timestamp>, StoreError> {
        let row = sqlx::query(
            "SELECT MIN(CASE WHEN state = 'sending' THEN lease_until ELSE next_attempt_at END) AS due \
             FROM messages WHERE state IN ('queued', 'deferred', 'sending')",
        )
        .fetch_one(self.pool())
        .await?;
        Ok(opt_i64(&row, "due")?)
    }

    pub async fn message_body(&self, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let row = sqlx::query("SELECT body FROM messages WHERE id = $1")
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        Ok(match row {
            Some(r) => super::opt_bytes(&r, "body")?,
            None => None,
        })
    }

    /// Pushes back the expiry of the leases held under `leases`: the holder is alive and the
    /// messages are still in its hands (waiting in a lane or being sent).
    pub async fn renew_leases(
        &self,
        leases: &[String],
        lease_until: Timestamp,
    ) -> Result<u64, StoreError> {
        let mut renewed = 0;
        for lease in leases {
            renewed += sqlx::query(
                "UPDATE messages SET lease_until = $1 WHERE lease_token = $2 AND state = 'sending'",
            )
            .bind(lease_until)
            .bind(lease)
            .execute(self.writes())
            .await?
            .rows_affected();
        }
        Ok(renewed)
    }

    /// Notes that the final dot of this attempt is about to go out. Committed before the dot is
    /// written, so a restart that finds it knows the server may have the message. False when the
    /// lease was lost: the dot must not go.
    pub async fn mark_dot(
        &self,
        id: &str,
        lease: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let (id, lease) = (id.to_string(), lease.to_string());
        self.writer()
            .write(move |conn| {
                let (id, lease) = (id.clone(), lease.clone());
                Box::pin(async move {
                    Ok(sqlx::query(
                        "UPDATE messages SET dot_at = $1 WHERE id = $2 AND lease_token = $3 AND state = 'sending'",
                    )
                    .bind(now)
                    .bind(&id)
                    .bind(&lease)
                    .execute(conn)
                    .await?
                    .rows_affected()
                        == 1)
                })
            })
            .await
    }

    /// Records an attempt and its verdict in one transaction, with the send counted against
    /// `sent_by`'s daily quota when it went out. Only the current lease may: a worker that lost
    /// its lease (it stalled past expiry and another took the message) must not overwrite a
    /// newer attempt.
    pub async fn finish_attempt(&self, s: Settlement) -> Result<bool, StoreError> {
        let s = Arc::new(s);
        self.writer()
            .write(move |conn| {
                let s = Arc::clone(&s);
                Box::pin(async move { settle(conn, &s).await })
            })
            .await
    }

    /// Gives leased messages back untouched (graceful shutdown, a lane left to other
    /// instances): due again at once. One transaction: one commit, however many.
    pub async fn release_messages(
        &self,
        messages: &[(String, String)],
        now: Timestamp,
    ) -> Result<(), StoreError> {
        if messages.is_empty() {
            return Ok(());
        }
        let mut tx = self.write_transaction().await?;
        for (id, lease) in messages {
            sqlx::query(
                "UPDATE messages SET state = 'queued', lease_owner = NULL, lease_until = NULL, lease_token = NULL, \
                 next_attempt_at = $1, updated_at = $1 WHERE id = $2 AND lease_token = $3 AND state = 'sending'",
            )
            .bind(now)
            .bind(id)
            .bind(lease)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Held messages of these servers go back to the queue (their Google account was reconnected).
    pub async fn release_held(
        &self,
        server_ids: &[i64],
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        let mut released = 0;
        for server_id in server_ids {
            released += sqlx::query(
                "UPDATE messages SET state = 'queued', next_attempt_at = $1, updated_at = $1 WHERE state = 'held' AND server_id = $2",
            )
            .bind(now)
            .bind(server_id)
            .execute(self.writes())
            .await?
            .rows_affected();
        }
        Ok(released)
    }

    /// An admin's Retry: due now. Only from deferred, held or failed.
    pub async fn retry_message(&self, id: &str, now: Timestamp) -> Result<bool, StoreError> {
        Ok(sqlx::query(
            "UPDATE messages SET state = 'queued', next_attempt_at = $1, updated_at = $1 \
             WHERE id = $2 AND state IN ('deferred', 'held', 'failed')",
        )
        .bind(now)
        .bind(id)
        .execute(self.writes())
        .await?
        .rows_affected()
            == 1)
    }

    pub async fn cancel_message(&self, id: &str, now: Timestamp) -> Result<bool, StoreError> {
        Ok(sqlx::query(
            "UPDATE messages SET state = 'cancelled', updated_at = $1 WHERE id = $2 AND state IN ('queued', 'deferred', 'held')",
        )
        .bind(now)
        .bind(id)
        .execute(self.writes())
        .await?
        .rows_affected()
            == 1)
    }

    pub async fn message(
        &self,
        id: &str,
    ) -> Result<Option<(MessageRecord, Vec<Attempt>)>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM messages WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let attempts = sqlx::query_as::<_, Attempt>(
            "SELECT at, outcome, stage, reply, detail FROM attempts WHERE message_id = $1 ORDER BY at, id",
        )
        .bind(id)
        .fetch_all(self.pool())
        .await?;
        Ok(Some((record_from_row(&row)?, attempts)))
    }

    pub async fn list_messages(&self, f: &MessageFilter) -> Result<Vec<MessageRecord>, StoreError> {
        let pattern = f.search.as_deref().map(super::like_pattern);
        let rows = sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM messages WHERE ($1 IS NULL OR state = $1) AND ($2 IS NULL OR server_id = $2) \
             AND ($3 IS NULL OR created_at >= $3) AND ($4 IS NULL OR created_at < $4) \
             AND ($5 IS NULL OR LOWER(subject) LIKE $5 OR LOWER(from_header) LIKE $5 OR LOWER(rcpt_to) LIKE $5 OR LOWER(message_id) LIKE $5) \
             AND ($6 IS NULL OR id < $6) ORDER BY id DESC LIMIT $7"
        ))
        .bind(f.state.map(MessageState::code))
        .bind(f.server_id)
        .bind(f.since)
        .bind(f.until)
        .bind(pattern)
        .bind(f.before.as_deref())
        .bind(f.limit)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.iter().map(record_from_row).collect::<Result<_, _>>()?)
    }

    /// Messages the relay took since `since`.
    pub async fn relayed_since(&self, since: Timestamp) -> Result<i64, StoreError> {
        Ok(sqlx::query(
            "SELECT COUNT(*) AS n FROM messages WHERE origin = 'relay' AND created_at >= $1",
        )
        .bind(since)
        .fetch_one(self.pool())
        .await?
        .try_get("n")?)
    }

    pub async fn count_by_state(&self) -> Result<Vec<(MessageState, i64)>, StoreError> {
        // The expression matches the `messages_states` index, which the count then reads alone.
        let rows = sqlx::query(
            "SELECT state || '' AS state, COUNT(*) AS n FROM messages GROUP BY state || ''",
        )
        .fetch_all(self.pool())
        .await?;
        let mut counts: Vec<(MessageState, i64)> =
            MessageState::ALL.iter().map(|s| (*s, 0)).collect();
        for r in rows {
            let state: String = r.try_get("state")?;
            if let Some(entry) = counts.iter_mut().find(|(s, _)| s.code() == state) {
                entry.1 = r.try_get("n")?;
            }
        }
        Ok(counts)
    }

    /// Attempt outcomes per hour since `since`: (hour start, outcome, count).
    pub async fn hourly_outcomes(
        &self,
        since: Timestamp,
    ) -> Result<Vec<(Timestamp, String, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT (at / 3600) * 3600 AS hour, outcome, COUNT(*) AS n FROM attempts WHERE at >= $1 GROUP BY (at / 3600) * 3600, outcome",
        )
        .bind(since)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .iter()
            .map(|r| Ok((r.try_get("hour")?, r.try_get("outcome")?, r.try_get("n")?)))
            .collect::<Result<_, sqlx::Error>>()?)
    }

    /// Retention: the bodies of messages that reached an end (sent, failed, cancelled) before
    /// `before` are deleted; the record stays.
    pub async fn purge_bodies(&self, before: Timestamp) -> Result<u64, StoreError> {
        Ok(sqlx::query(
            "UPDATE messages SET body = NULL WHERE body IS NOT NULL AND state IN ('sent', 'failed', 'cancelled') AND updated_at < $1",
        )
        .bind(before)
        .execute(self.writes())
        .await?
        .rows_affected())
    }

    /// Retention: whole records (and their attempts) of messages that reached an end before
    /// `before`. A message ends after it was created, so the creation index bounds the walk to
    /// the old messages.
    pub async fn purge_records(&self, before: Timestamp) -> Result<u64, StoreError> {
        let mut tx = self.write_transaction().await?;
        sqlx::query(
            "DELETE FROM attempts WHERE message_id IN \
             (SELECT id FROM messages WHERE created_at < $1 AND state IN ('sent', 'failed', 'cancelled') AND updated_at < $1)",
        )
        .bind(before)
        .execute(&mut *tx)
        .await?;
        let deleted = sqlx::query(
            "DELETE FROM messages WHERE created_at < $1 AND state IN ('sent', 'failed', 'cancelled') AND updated_at < $1",
        )
        .bind(before)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(deleted)
    }
}

/// The statements of `finish_attempt`, inside the writer's transaction.
async fn settle(conn: &mut sqlx::AnyConnection, s: &Settlement) -> Result<bool, StoreError> {
    let now = s.now;
    let (state, next, error, sent_at) = match &s.verdict {
        Verdict::Sent => (MessageState::Sent, now, None, Some(now)),
        Verdict::Deferred { until, reason } => {
            (MessageState::Deferred, *until, Some(reason.as_str()), None)
        }
        Verdict::Held { reason } => (MessageState::Held, now, Some(reason.as_str()), None),
        Verdict::Failed { reason } => (MessageState::Failed, now, Some(reason.as_str()), None),
    };
    let updated = sqlx::query(
        "UPDATE messages SET state = $1, next_attempt_at = $2, last_error = $3, sent_at = COALESCE($4, sent_at), \
         attempts = attempts + $5, unknown_outcomes = unknown_outcomes + $6, lease_owner = NULL, lease_until = NULL, \
         lease_token = NULL, dot_at = NULL, updated_at = $7 \
         WHERE id = $8 AND lease_token = $9 AND state = 'sending'",
    )
    .bind(state.code())
    .bind(next)
    .bind(error)
    .bind(sent_at)
    .bind(i64::from(s.counts_as_attempt))
    .bind(i64::from(s.outcome_unknown))
    .bind(now)
    .bind(&s.id)
    .bind(&s.lease)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if updated != 1 {
        return Ok(false);
    }
    let outcome = if s.outcome_unknown {
        "unknown"
    } else {
        state.code()
    };
    sqlx::query(
        "INSERT INTO attempts (message_id, at, outcome, stage, reply, detail) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&s.id)
    .bind(now)
    .bind(outcome)
    .bind(&s.attempt.stage)
    .bind(&s.attempt.reply)
    .bind(&s.attempt.detail)
    .execute(&mut *conn)
    .await?;
    if let (Verdict::Sent, Some(account)) = (&s.verdict, &s.sent_by) {
        super::quota::record_send(conn, account, now).await?;
    }
    Ok(true)
}

/// A relayed message that failed for good and whose sender has not been told yet.
pub struct Unreported {
    pub message: MessageRecord,
    pub bounce_to: String,
    /// The header of the message as it was to be sent, when its body is still kept.
    pub body: Option<Vec<u8>>,
}

impl Store {
    pub async fn unreported_failures(&self, limit: i64) -> Result<Vec<Unreported>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            columns!(),
            ", bounce_to, body FROM messages WHERE state = 'failed' AND bounce_to IS NOT NULL AND bounced_at IS NULL ORDER BY id LIMIT $1"
        ))
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(Unreported {
                    message: record_from_row(row)?,
                    bounce_to: row.try_get("bounce_to")?,
                    body: opt_bytes(row, "body")?,
                })
            })
            .collect()
    }

    /// Queues the notification about `failed` and marks it reported, in one transaction: a
    /// crash in between leaves neither, so the sender hears of each failure once.
    pub async fn queue_bounce(
        &self,
        failed: &str,
        bounce: NewMessage,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let failed = failed.to_string();
        let bounce = Arc::new(bounce);
        self.writer()
            .write(move |conn| {
                let failed = failed.clone();
                let m = Arc::clone(&bounce);
                Box::pin(async move {
                    let marked = sqlx::query(
                        "UPDATE messages SET bounced_at = $1 WHERE id = $2 AND bounced_at IS NULL",
                    )
                    .bind(now)
                    .bind(&failed)
                    .execute(&mut *conn)
                    .await?
                    .rows_affected();
                    if marked == 0 {
                        return Ok(false);
                    }
                    insert_row(conn, &m, now).await?;
                    Ok(true)
                })
            })
            .await
    }
}

async fn insert_row(
    conn: &mut sqlx::AnyConnection,
    m: &NewMessage,
    now: Timestamp,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO messages (id, state, server_id, mail_from, rcpt_to, message_id, from_header, subject, size, body, \
         api_key_id, idempotency_key, request_hash, attempts, next_attempt_at, created_at, updated_at, origin, bounce_to) \
         VALUES ($1, 'queued', $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 0, $13, $13, $13, $14, $15)",
    )
    .bind(&m.id)
    .bind(m.server_id)
    .bind(&m.mail_from)
    .bind(serde_json::to_string(&m.rcpt_to).unwrap_or_default())
    .bind(&m.message_id)
    .bind(&m.from_header)
    .bind(&m.subject)
    .bind(i64::try_from(m.body.len()).unwrap_or(i64::MAX))
    .bind(&m.body)
    .bind(m.api_key_id)
    .bind(&m.idempotency_key)
    .bind(&m.request_hash)
    .bind(now)
    .bind(m.origin.code())
    .bind(&m.bounce_to)
    .execute(conn)
    .await?;
    Ok(())
}
