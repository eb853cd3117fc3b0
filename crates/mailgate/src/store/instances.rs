//! Running instances: who leases messages, and whether they are still alive.

use super::{Store, StoreError};
use crate::clock::Timestamp;

/// What a heartbeat found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat {
    /// This instance's row was there: no other instance took it for dead.
    pub alive: bool,
    /// Messages taken back from dead instances.
    pub released: u64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct InstanceRecord {
    pub id: String,
    pub host: String,
    pub http_addr: String,
    pub started_at: Timestamp,
    pub heartbeat_at: Timestamp,
}

/// (`state IN (...)` lets the planner use the index of live messages.)
/// Messages in the hands of instances that stopped beating go back to the queue, due now, with
/// their dot notes kept (the next claim then records "outcome unknown" for them).
const RELEASE_DEAD: &str = "UPDATE messages SET state = 'queued', lease_owner = NULL, lease_until = NULL, lease_token = NULL, \
     next_attempt_at = $1, updated_at = $1 WHERE state IN ('queued', 'deferred', 'sending') AND state = 'sending' AND lease_owner IN \
     (SELECT id FROM instances WHERE heartbeat_at < $2 AND id <> $3)";

impl Store {
    pub async fn register_instance(&self, instance: &InstanceRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO instances (id, host, http_addr, started_at, heartbeat_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&instance.id)
        .bind(&instance.host)
        .bind(&instance.http_addr)
        .bind(instance.started_at)
        .bind(instance.heartbeat_at)
        .execute(self.writes())
        .await?;
        Ok(())
    }

    /// Beats for `id`, then takes back the messages of instances silent since before `cutoff`
    /// and forgets them, their session slots, reserved sends and leases with them, in one
    /// transaction.
    pub async fn heartbeat(
        &self,
        id: &str,
        now: Timestamp,
        cutoff: Timestamp,
    ) -> Result<Heartbeat, StoreError> {
        let id = id.to_string();
        self.writer()
            .write(move |conn| {
                let id = id.clone();
                Box::pin(async move {
                    let alive = sqlx::query("UPDATE instances SET heartbeat_at = $1 WHERE id = $2")
                        .bind(now)
                        .bind(&id)
                        .execute(&mut *conn)
                        .await?
                        .rows_affected()
                        == 1;
                    let released = sqlx::query(RELEASE_DEAD)
                        .bind(now)
                        .bind(cutoff)
                        .bind(&id)
                        .execute(&mut *conn)
                        .await?
                        .rows_affected();
                    sqlx::query("DELETE FROM instances WHERE heartbeat_at < $1 AND id <> $2")
                        .bind(cutoff)
                        .bind(&id)
                        .execute(&mut *conn)
                        .await?;
                    for orphans in [
                        "DELETE FROM session_slots WHERE owner <> $1 AND owner NOT IN (SELECT id FROM instances)",
                        "DELETE FROM quota_holds WHERE owner <> $1 AND owner NOT IN (SELECT id FROM instances)",
                        "DELETE FROM leases WHERE owner <> $1 AND owner NOT IN (SELECT id FROM instances)",
                    ] {
                        sqlx::query(orphans).bind(&id).execute(&mut *conn).await?;
                    }
                    Ok(Heartbeat { alive, released })
                })
            })
            .await
    }

    /// At start on SQLite, where one process serves the database: whatever another run left
    /// leased (a crash) is due again at once, and its session slots and reserved sends are free.
    pub async fn release_foreign_leases(
        &self,
        id: &str,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        let mut tx = self.write_transaction().await?;
        let released = sqlx::query(
            "UPDATE messages SET state = 'queued', lease_owner = NULL, lease_until = NULL, lease_token = NULL, \
             next_attempt_at = $1, updated_at = $1 WHERE state IN ('queued', 'deferred', 'sending') AND state = 'sending' AND COALESCE(lease_owner, '') <> $2",
        )
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        for foreign in [
            "DELETE FROM session_slots WHERE owner <> $1",
            "DELETE FROM quota_holds WHERE owner <> $1",
            "DELETE FROM leases WHERE owner <> $1",
        ] {
            sqlx::query(foreign).bind(id).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(released)
    }

    /// An instance that stopped cleanly: its row, session slots and reserved sends.
    pub async fn remove_instance(&self, id: &str) -> Result<(), StoreError> {
        let mut tx = self.write_transaction().await?;
        for mine in [
            "DELETE FROM session_slots WHERE owner = $1",
            "DELETE FROM quota_holds WHERE owner = $1",
            "DELETE FROM leases WHERE owner = $1",
            "DELETE FROM instances WHERE id = $1",
        ] {
            sqlx::query(mine).bind(id).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Instances that beat since `cutoff`, oldest first.
    pub async fn live_instances(
        &self,
        cutoff: Timestamp,
    ) -> Result<Vec<InstanceRecord>, StoreError> {
        Ok(sqlx::query_as::<_, InstanceRecord>(
            "SELECT id, host, http_addr, started_at, heartbeat_at FROM instances WHERE heartbeat_at >= $1 ORDER BY started_at, id",
        )
        .bind(cutoff)
        .fetch_all(self.pool())
        .await?)
    }
}
