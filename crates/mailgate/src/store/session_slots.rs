//! Gmail sessions per account across every instance: a row per session slot in use, owned by
//! the instance whose session (working or idle) holds it. The rows of an instance that stops
//! beating go with it (`Store::heartbeat`), and a restart on SQLite clears the last run's.

use super::{Store, StoreError};
use crate::clock::Timestamp;

/// A slot row this instance holds. [`HeldSlot::release`] frees the row, then lets `then` go
/// (a local permit, so a worker given it finds the row free). Dropped without a release (a
/// cancelled task, a browser that left in the middle of "Fetch Now"), the same happens in a
/// task of its own, so no row outlives its session.
pub struct HeldSlot<T: Send + 'static = ()> {
    store: Store,
    key: String,
    number: i64,
    owner: String,
    then: Option<T>,
    /// Until `release` has freed the row.
    held: bool,
}

impl<T: Send + 'static> HeldSlot<T> {
    pub fn key(&self) -> &str {
        &self.key
    }

    pub async fn release(mut self) {
        let then = self.then.take();
        free(&self.store, &self.key, self.number, &self.owner).await;
        drop(then);
        self.held = false;
    }
}

async fn free(store: &Store, key: &str, number: i64, owner: &str) {
    if let Err(e) = store.free_session_slot(key, number, owner).await {
        tracing::warn!(slot = %key, "cannot free a session slot: {e}");
    }
}

impl<T: Send + 'static> Drop for HeldSlot<T> {
    fn drop(&mut self) {
        if !self.held {
            return;
        }
        let (store, key, owner, number, then) = (
            self.store.clone(),
            std::mem::take(&mut self.key),
            std::mem::take(&mut self.owner),
            self.number,
            self.then.take(),
        );
        // No runtime: the process is ending, and the row goes with this instance's.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                free(&store, &key, number, &owner).await;
                drop(then);
            });
        }
    }
}

impl Store {
    /// A free one of `account`'s `slots`, held for `owner` until released; None when all are
    /// held. `then` is let go after the row (see [`HeldSlot`]).
    pub async fn hold_session_slot<T: Send + 'static>(
        &self,
        account: &str,
        owner: &str,
        slots: i64,
        now: Timestamp,
        then: T,
    ) -> Result<Option<HeldSlot<T>>, StoreError> {
        Ok(self
            .take_session_slot(account, owner, slots, now)
            .await?
            .map(|number| HeldSlot {
                store: self.clone(),
                key: account.to_string(),
                number,
                owner: owner.to_string(),
                then: Some(then),
                held: true,
            }))
    }

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
