//! The per-server lanes: messages wait in their server's lane, and up to three workers per
//! lane (and per Gmail account, across lanes and instances: `slots.rs`) take them one by one
//! over reused sessions.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::attempt::{DotNote, Outcome};
use super::slots::{Crowded, HeldElsewhere};
use super::{CONNECTIONS_PER_ACCOUNT, Dispatcher};

/// Messages a worker takes from its lane before their turn, so their final-dot notes reach the
/// disk in time (see `work`).
pub(super) const NOTED_AHEAD: usize = 4;

use crate::domain::outgoing::Verdict;
use crate::domain::{AuthMethod, MailServer, Stage};
use crate::store::Claimed;

#[derive(Default)]
pub(super) struct Lanes {
    pub(super) lanes: HashMap<i64, Lane>,
    /// Every message claimed and not yet settled or given back (waiting in a lane or being
    /// sent), with its lease.
    pub(super) in_hand: HashMap<String, String>,
}

impl Lanes {
    /// Forgets a message settled or given back under `lease`, unless it was claimed again
    /// since (then the new claim holds it).
    pub(super) fn let_go(&mut self, id: &str, lease: &str) {
        if self.in_hand.get(id).is_some_and(|held| held == lease) {
            self.in_hand.remove(id);
        }
    }
}

pub(super) struct Lane {
    pub(super) server: Option<MailServer>,
    pub(super) queue: VecDeque<Claimed>,
    pub(super) workers: usize,
}

impl Dispatcher {
    pub(super) fn lock_lanes(&self) -> std::sync::MutexGuard<'_, Lanes> {
        self.lanes.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn account_of(server: &MailServer) -> String {
        match (server.auth, &server.username) {
            (AuthMethod::Gmail, Some(u)) => u.clone(),
            _ => format!("server:{}", server.id),
        }
    }

    /// The lane's next message, with the note of its final dot on its way to disk.
    fn next_in_lane(self: &Arc<Self>, server_id: i64) -> Option<(Claimed, DotNote)> {
        let message = {
            let mut lanes = self.lock_lanes();
            if self.stopping.load(Ordering::Relaxed) {
                return None;
            }
            lanes.lanes.get_mut(&server_id)?.queue.pop_front()?
        };
        let app = Arc::clone(&self.app);
        let (id, lease) = (message.id.clone(), message.lease.clone());
        let note = tokio::spawn(async move { app.store.mark_dot(&id, &lease, app.now()).await });
        Some((message, note))
    }

    /// One worker of a lane: takes messages until the lane is empty, over one reused session,
    /// holding one of the account's session slots (which an idle session keeps).
    pub(super) async fn work(self: Arc<Self>, server_id: i64) {
        let server = self
            .lock_lanes()
            .lanes
            .get(&server_id)
            .and_then(|l| l.server.clone());
        let (mut session, slot) = match self.take_idle(server_id) {
            Some((session, slot)) => (Some(session), Some(slot)),
            None => match &server {
                Some(server) => match self.take_slot(&Self::account_of(server)).await {
                    Ok(slot) => (None, Some(slot)),
                    Err(HeldElsewhere) => {
                        self.leave_lane(server_id).await;
                        self.worker_done(server_id);
                        return;
                    }
                },
                // A deleted server: its messages are held without a session.
                None => (None, None),
            },
        };
        // A few messages ahead: their final-dot notes are committed while the messages before
        // them are on the wire, so a dot rarely waits for the disk. A crash in between leaves a
        // note on a message whose dot had not gone yet; it is then re-sent marked "outcome
        // unknown", never lost. NOTED_AHEAD bounds how many such messages a crash can make.
        let mut ahead: VecDeque<(Claimed, DotNote)> = VecDeque::with_capacity(NOTED_AHEAD);
        // The next message's envelope rides behind each final dot, so back-to-back messages
        // cost one round trip each; `opened` holds what the server said to it.
        let mut opened = None;
        loop {
            while ahead.len() < NOTED_AHEAD {
                match self.next_in_lane(server_id) {
                    Some(next) => ahead.push_back(next),
                    None => break,
                }
            }
            let Some((message, note)) = ahead.pop_front() else {
                break;
            };
            let outcome = match &server {
                Some(server) => {
                    let next = ahead.front().map(|(next, _)| next);
                    self.deliver(server, &message, note, &mut session, &mut opened, next)
                        .await
                }
                None => Outcome {
                    verdict: Verdict::Held {
                        reason: "its outgoing mail server was deleted; Retry after choosing another route"
                            .into(),
                    },
                    stage: Stage::Connect,
                    reply: None,
                    detail: "no such outgoing mail server".into(),
                    counts: false,
                    unknown: false,
                    sent_by: None,
                },
            };
            self.settle(&message, outcome);
        }
        if opened.is_some() {
            // An envelope for a message that is not coming: not a session to pool.
            session = None;
        }
        match (session, slot) {
            (Some(session), Some(slot)) => self.put_idle(server_id, session, slot),
            (None, Some(slot)) => slot.release().await,
            (_, None) => {}
        }
        self.worker_done(server_id);
    }

    /// Starts workers for lanes with messages waiting: up to [`CONNECTIONS_PER_ACCOUNT`] per
    /// lane, no more than it has messages; while the account's other slots are with other
    /// instances, none beyond those it has (one for a lane that has none, to look again).
    pub(super) fn staff_lanes(self: &Arc<Self>) {
        let mut spawn = Vec::new();
        {
            let mut lanes = self.lock_lanes();
            for (server_id, lane) in lanes.lanes.iter_mut() {
                let most = match self.crowded(*server_id) {
                    None => CONNECTIONS_PER_ACCOUNT,
                    Some(Crowded::Capped) => lane.workers.max(1),
                    Some(Crowded::Yielded) => 1,
                };
                while lane.workers < most && lane.workers < lane.queue.len() {
                    lane.workers += 1;
                    spawn.push(*server_id);
                }
            }
        }
        for server_id in spawn {
            self.workers.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(Arc::clone(self).work(server_id));
        }
    }

    /// A worker leaves its lane. Messages that reached the lane while its last worker was
    /// leaving get a new one.
    fn worker_done(self: &Arc<Self>, server_id: i64) {
        let unstaffed = {
            let mut lanes = self.lock_lanes();
            match lanes.lanes.get_mut(&server_id) {
                Some(lane) => {
                    lane.workers -= 1;
                    if lane.workers == 0 && lane.queue.is_empty() {
                        lanes.lanes.remove(&server_id);
                        false
                    } else {
                        lane.workers == 0
                    }
                }
                None => false,
            }
        };
        self.workers.fetch_sub(1, Ordering::SeqCst);
        if unstaffed && !self.stopping.load(Ordering::Relaxed) {
            self.staff_lanes();
        }
        self.settled.notify_one();
    }
}
