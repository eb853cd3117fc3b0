//! Gmail sessions per account across every instance: a row per session slot in use, owned by
//! the instance whose session (working or idle) holds it. The rows of an instance that stops
//! beating go with it (`Store::heartbeat`), and a restart on SQLite clears the last run's.

use super::{Store, StoreError};
use crate::clock::Timestamp;

impl Store {
    /// Takes a free one of `account`'s `slots` for `owner`, or None when all are held. The
    /// primary key decides between instances racing for the same slot.
    pub async fn take_session_slot(
        &self,
        account: &str,
        owner: &str,
        slots: i64,
        now: Timestamp,
    ) -> Result<Option<i64>, StoreError> {
        for slot in 0..slots {
            let taken = sqlx::query(
                "INSERT INTO session_slots (account, slot, owner, taken_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (account, slot) DO NOTHING",
            )
            .bind(account)
            .bind(slot)
            .bind(owner)
            .bind(now)
            .execute(self.writes())
            .await?
            .rows_affected();
            if taken == 1 {
                return Ok(Some(slot));
            }
        }
        Ok(None)
    }

    pub async fn free_session_slot(
        &self,
        account: &str,
        slot: i64,
        owner: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM session_slots WHERE account = $1 AND slot = $2 AND owner = $3")
            .bind(account)
            .bind(slot)
            .bind(owner)
            .execute(self.writes())
            .await?;
        Ok(())
    }

    /// The slots in use per account, for the Overview and tests.
    pub async fn session_slots_in_use(&self) -> Result<Vec<(String, String)>, StoreError> {
        use sqlx::Row;
        let rows = sqlx::query("SELECT account, owner FROM session_slots ORDER BY account, slot")
            .fetch_all(self.pool())
            .await?;
        Ok(rows
            .iter()
            .map(|r| Ok((r.try_get("account")?, r.try_get("owner")?)))
            .collect::<Result<_, sqlx::Error>>()?)
    }
}
