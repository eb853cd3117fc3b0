//! An account's session slots: at most [`CONNECTIONS_PER_ACCOUNT`] Gmail sessions per account,
//! working or idle, across every instance. A slot is a local semaphore permit (this instance's
//! workers wait for each other without asking the database) and a row in `session_slots` (the
//! instances share the cap). A worker holds one while it works; an idle session keeps it.
//!
//! A worker that finds every row held by other instances does not wait for one. If another
//! worker of its lane holds a slot, it simply leaves, and the lane gets no more workers for a
//! moment (`Crowded::Capped`). If none does, the lane's messages go back to the queue for the
//! instances that hold the slots, and this instance claims none of that server's messages for a
//! moment (`Crowded::Yielded`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{CONNECTIONS_PER_ACCOUNT, Dispatcher};
use crate::store::{Claimed, HeldSlot};

/// How long a server stays capped or yielded after its account's slots were all elsewhere.
const ELSEWHERE_FOR: Duration = Duration::from_secs(2);

/// A server whose account had no slot free here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Crowded {
    /// Some of its sessions are here: it keeps its workers, gets no more.
    Capped,
    /// None are: its messages are left to the instances holding them.
    Yielded,
}

/// One of an account's session slots: its row, and this instance's permit let go after it
/// (see [`HeldSlot`]).
pub(super) struct Slot(HeldSlot<OwnedSemaphorePermit>);

impl Slot {
    pub(super) fn account(&self) -> &str {
        self.0.key()
    }

    pub(super) async fn release(self) {
        self.0.release().await;
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
            .hold_session_slot(account, &self.owner, slots, self.app.now(), permit)
            .await
        {
            Ok(Some(held)) => Ok(Slot(held)),
            Ok(None) => Err(HeldElsewhere),
            Err(e) => {
                tracing::error!(%account, "cannot take a session slot: {e}");
                Err(HeldElsewhere)
            }
        }
    }

    /// Whether `server_id`'s account had no slot free here a moment ago, and how.
    pub(super) fn crowded(&self, server_id: i64) -> Option<Crowded> {
        let mut crowded = self.crowded.lock().unwrap_or_else(|p| p.into_inner());
        crowded.retain(|_, (_, until)| *until > Instant::now());
        crowded.get(&server_id).map(|(how, _)| *how)
    }

    /// The servers left to other instances for now, kept out of this instance's claims.
    pub(super) fn servers_yielded(&self) -> Vec<i64> {
        let mut crowded = self.crowded.lock().unwrap_or_else(|p| p.into_inner());
        crowded.retain(|_, (_, until)| *until > Instant::now());
        crowded
            .iter()
            .filter(|(_, (how, _))| *how == Crowded::Yielded)
            .map(|(server_id, _)| *server_id)
            .collect()
    }

    /// A worker found every slot held by other instances. If another worker of its lane holds
    /// one, the lane goes on with what it has. If it was its lane's last worker, the lane's
    /// messages go back to the queue, due now, for the instances that can send them.
    pub(super) async fn leave_lane(&self, server_id: i64) {
        let waiting: Vec<Claimed> = {
            let mut lanes = self.lock_lanes();
            let last = lanes
                .lanes
                .get(&server_id)
                .is_none_or(|lane| lane.workers <= 1);
            let how = if last {
                Crowded::Yielded
            } else {
                Crowded::Capped
            };
            self.crowded
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(server_id, (how, Instant::now() + ELSEWHERE_FOR));
            match lanes.lanes.get_mut(&server_id) {
                Some(lane) if last => lane.queue.drain(..).collect(),
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
