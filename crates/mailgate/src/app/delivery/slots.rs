//! An account's session slots: at most [`CONNECTIONS_PER_ACCOUNT`] Gmail sessions per account,
//! working or idle, across every instance. A slot is a local semaphore permit (this instance's
//! workers wait for each other without asking the database) and a row in `session_slots` (the
//! instances share the cap). A worker holds one while it works; an idle session keeps it.
//!
//! A worker that finds every row held by other instances does not wait for one: its lane's
//! messages go back to the queue for the instances that hold the slots, and this instance
//! leaves the account alone for a moment (see `Dispatcher::yield_lane`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{CONNECTIONS_PER_ACCOUNT, Dispatcher};
use crate::store::{Claimed, Store};

/// How long an instance leaves an account alone after finding its slots all held elsewhere.
const BUSY_ELSEWHERE: Duration = Duration::from_secs(2);

/// One of an account's session slots. Dropped, it frees its row, then its permit: a worker of
/// this instance given the permit then finds the row free.
pub(super) struct Slot {
    account: String,
    number: i64,
    permit: Option<OwnedSemaphorePermit>,
    store: Store,
    owner: String,
}

impl Slot {
    pub(super) fn account(&self) -> &str {
        &self.account
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let permit = self.permit.take();
        let (store, account, owner, number) = (
            self.store.clone(),
            std::mem::take(&mut self.account),
            std::mem::take(&mut self.owner),
            self.number,
        );
        // No runtime: the process is ending, and the row goes with this instance's.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(e) = store.free_session_slot(&account, number, &owner).await {
                    tracing::warn!(%account, "cannot free a session slot: {e}");
                }
                drop(permit);
            });
        }
    }
}

/// Every slot of the account is held by other instances.
pub(super) struct HeldElsewhere;

impl Dispatcher {
    fn account_permits(&self, account: &str) -> Arc<Semaphore> {
        let mut accounts = self.accounts.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(
            accounts
                .entry(account.to_string())
                .or_insert_with(|| Arc::new(Semaphore::new(CONNECTIONS_PER_ACCOUNT))),
        )
    }

    /// A slot of `account`: waits for this instance's own workers, never for other instances.
    pub(super) async fn take_slot(&self, account: &str) -> Result<Slot, HeldElsewhere> {
        let permits = self.account_permits(account);
        let permit = match Arc::clone(&permits).try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                // Idle sessions of the account's other servers hold permits this lane needs.
                self.close_idle_of(account).await;
                permits.acquire_owned().await.map_err(|_| HeldElsewhere)?
            }
        };
        let slots = i64::try_from(CONNECTIONS_PER_ACCOUNT).unwrap_or(1);
        match self
            .app
            .store
            .take_session_slot(account, &self.owner, slots, self.app.now())
            .await
        {
            Ok(Some(number)) => Ok(Slot {
                account: account.to_string(),
                number,
                permit: Some(permit),
                store: self.app.store.clone(),
                owner: self.owner.clone(),
            }),
            Ok(None) => Err(HeldElsewhere),
            Err(e) => {
                tracing::error!(%account, "cannot take a session slot: {e}");
                Err(HeldElsewhere)
            }
        }
    }

    /// Whether this instance leaves `server_id` to the instances holding its account's slots.
    pub(super) fn busy_elsewhere(&self, server_id: i64) -> bool {
        let mut busy = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        busy.retain(|_, until| *until > Instant::now());
        busy.contains_key(&server_id)
    }

    /// The servers left to other instances for now, kept out of this instance's claims.
    pub(super) fn servers_busy_elsewhere(&self) -> Vec<i64> {
        let mut busy = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        busy.retain(|_, until| *until > Instant::now());
        busy.keys().copied().collect()
    }

    /// A worker found every slot held by other instances. If it was its lane's last worker,
    /// the lane's messages go back to the queue, due now, for the instances that can send
    /// them; either way this instance claims none of the server's messages for a moment.
    pub(super) async fn yield_lane(&self, server_id: i64) {
        let waiting: Vec<Claimed> = {
            let mut lanes = self.lock_lanes();
            self.busy
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(server_id, Instant::now() + BUSY_ELSEWHERE);
            match lanes.lanes.get_mut(&server_id) {
                Some(lane) if lane.workers == 1 => lane.queue.drain(..).collect(),
                _ => return,
            }
        };
        if waiting.is_empty() {
            return;
        }
        let leases: Vec<(String, String)> = waiting
            .iter()
            .map(|m| (m.id.clone(), m.lease.clone()))
            .collect();
        tracing::debug!(
            server_id,
            messages = leases.len(),
            "the account's sessions are all with other instances; its messages go back to them"
        );
        let released = self
            .app
            .store
            .release_messages(&leases, self.app.now())
            .await;
        let mut lanes = self.lock_lanes();
        match released {
            Ok(()) => {
                for message in &waiting {
                    lanes.let_go(&message.id, &message.lease);
                }
            }
            Err(e) => {
                // Still leased here: they stay in the lane for the next worker.
                tracing::error!("cannot give messages back to the queue: {e}");
                if let Some(lane) = lanes.lanes.get_mut(&server_id) {
                    lane.queue.extend(waiting);
                }
            }
        }
    }
}
