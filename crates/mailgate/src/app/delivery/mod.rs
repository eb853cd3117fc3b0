//! Delivery: the loop that takes due messages from the queue and sends them through their
//! servers.
//!
//! Messages are leased (stamped with this instance, a token of the claim and an expiry) before
//! anything is sent, and every attempt ends in one transaction that records it and settles the
//! message. Leases in hand are renewed, so no other instance takes a message this one still holds,
//! and this instance never takes back its own. A crash leaves leases behind; they return to the
//! queue when they expire, or at once when this instance restarts.
//!
//! So nothing accepted is lost, and nothing is sent twice except where mailgate cannot know: the
//! final dot went out and no answer came (the connection dropped, or mailgate stopped before it
//! recorded the answer). Those attempts are recorded as "outcome unknown", counted, and shown.
//!
//! Each server gets a lane; a lane runs up to three workers, each holding one SMTP session that
//! it reuses for message after message, and all lanes of one Gmail account share three
//! sessions, across every instance on the database. Sessions outlive a batch in an idle pool,
//! so a steady stream logs in three times, not once per message.
//!
//! This file is the loop (claim, renew, heartbeat, purge, shut down); `lanes.rs` the
//! per-server lanes and their workers; `slots.rs` the account's session slots; `pool.rs`
//! opening, reusing and judging sessions; `attempt.rs` one attempt from the guard to the
//! settlement; `quota.rs` the daily limits. What a failure means is decided in
//! `domain/outgoing.rs`.

mod attempt;
mod lanes;
mod pool;
mod quota;
mod slots;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::sync::{Notify, Semaphore};

use crate::app::App;
use crate::clock::{Timestamp, format_utc};
use crate::domain::outgoing::{RetryPolicy, Verdict};
use crate::domain::{MailServer, Stage};
use crate::metrics::bump;
use crate::store::Claimed;
use attempt::Outcome;
use lanes::{Lane, Lanes};

/// How long a message stays leased before another instance may take it over.
const LEASE_SECS: i64 = 600;
/// Leases in hand are renewed this often, so they never lapse while this instance lives.
const RENEW_EVERY: i64 = LEASE_SECS / 4;
/// Messages leased but not yet settled, across all lanes.
const MAX_IN_FLIGHT: usize = 500;
const CLAIM_BATCH: usize = 200;
/// Gmail allows a handful of concurrent sessions per user before answering 421.
pub const CONNECTIONS_PER_ACCOUNT: usize = 3;
/// An idle session older than this is closed rather than reused: Gmail times idle ones out.
const IDLE_REUSE: Duration = Duration::from_secs(60);
/// The longest the loop sleeps without looking at the queue: `mailgate send` and other
/// instances add messages without ringing this process's bell.
const MAX_WAIT: Duration = Duration::from_secs(1);
const RETENTION_EVERY: i64 = 3600;
/// Seconds between heartbeats; `instance_timeout_secs` should be a few of them.
const HEARTBEAT_EVERY: i64 = 3;
/// Seconds between looks for failed relayed messages whose sender was not told yet.
const BOUNCES_EVERY: i64 = 300;
/// How often idle sessions past reuse are closed and unused reserved sends given back.
const TIDY_EVERY: Duration = Duration::from_secs(1);

pub struct Dispatcher {
    app: Arc<App>,
    owner: String,
    policy: RetryPolicy,
    lanes: Mutex<Lanes>,
    /// Per server, sessions waiting for its next message.
    idle: Mutex<HashMap<i64, Vec<pool::Idle>>>,
    /// Per account, this instance's share of its session slots.
    accounts: Mutex<HashMap<String, Arc<Semaphore>>>,
    /// Servers whose account's slots were all held by other instances, how, until when.
    crowded: Mutex<HashMap<i64, (slots::Crowded, Instant)>>,
    /// Per account, the sends reserved here and Gmail's last "quota exceeded".
    quotas: Mutex<HashMap<String, quota::SharedQuota>>,
    workers: AtomicUsize,
    stopping: AtomicBool,
    settled: Notify,
    last_purge: Mutex<Timestamp>,
    last_bounces: Mutex<Timestamp>,
    last_heartbeat: Mutex<Timestamp>,
    last_tidy: Mutex<Instant>,
    /// A message failed for good here since the last look for failures to report.
    pub(super) failed_since_bounces: AtomicBool,
    last_renewal: Mutex<Timestamp>,
}

fn jitter() -> f64 {
    rand::rng().random_range(-1.0..=1.0)
}

/// Whether `every` seconds have passed since `last`; if so, `last` becomes `now`.
fn due(last: &Mutex<Timestamp>, every: i64, now: Timestamp) -> bool {
    let mut last = last.lock().unwrap_or_else(|p| p.into_inner());
    if now - *last < every {
        return false;
    }
    *last = now;
    true
}

impl Dispatcher {
    /// The owner is this run's instance id (`App::instance_id`).
    pub fn new(app: Arc<App>) -> Arc<Self> {
        let owner = app.instance_id.clone();
        Arc::new(Self {
            app,
            owner,
            policy: RetryPolicy::default(),
            lanes: Mutex::new(Lanes::default()),
            idle: Mutex::new(HashMap::new()),
            accounts: Mutex::new(HashMap::new()),
            crowded: Mutex::new(HashMap::new()),
            quotas: Mutex::new(HashMap::new()),
            workers: AtomicUsize::new(0),
            stopping: AtomicBool::new(false),
            settled: Notify::new(),
            last_purge: Mutex::new(0),
            last_bounces: Mutex::new(0),
            last_heartbeat: Mutex::new(0),
            last_tidy: Mutex::new(Instant::now()),
            failed_since_bounces: AtomicBool::new(false),
            last_renewal: Mutex::new(0),
        })
    }

    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Runs until `shutdown` flips, then finishes the messages in hand and gives the rest back.
    pub async fn run(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        self.register().await;
        loop {
            if *shutdown.borrow() {
                break;
            }
            let claimed = match self.run_once().await {
                Ok(n) => n,
                Err(e) => {
                    tracing::error!("delivery loop: {e}");
                    0
                }
            };
            self.app.passes.send_modify(|n| *n += 1);
            if claimed > 0 {
                continue;
            }
            let wait = self.until_next_due().await;
            tokio::select! {
                _ = self.app.outbox_wake.notified() => {}
                _ = self.settled.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => {}
            }
        }
        self.stop().await;
    }

    /// Renews the leases in hand when due, claims what is due (as much as there is room for) and
    /// hands it to the lanes. Returns how many messages it claimed.
    pub async fn run_once(self: &Arc<Self>) -> Result<usize, crate::store::StoreError> {
        self.heartbeat_now_and_then().await;
        self.tidy_now_and_then().await;
        self.purge_now_and_then().await;
        self.bounce_now_and_then().await;
        self.renew_now_and_then().await?;
        let room = {
            let lanes = self.lock_lanes();
            MAX_IN_FLIGHT
                .saturating_sub(lanes.in_hand.len())
                .min(CLAIM_BATCH)
        };
        if room == 0 || self.stopping.load(Ordering::Relaxed) {
            return Ok(0);
        }
        let now = self.app.now();
        let lease = crate::crypto::random_token();
        let claimed = self
            .app
            .store
            .claim_messages(
                &self.owner,
                &lease,
                now,
                now + LEASE_SECS,
                i64::try_from(room).unwrap_or(0),
                &self.servers_yielded(),
            )
            .await?;
        if claimed.is_empty() {
            return Ok(0);
        }
        let servers: HashMap<i64, MailServer> = self
            .app
            .store
            .list_servers()
            .await?
            .into_iter()
            .map(|s| (s.id, s))
            .collect();
        let count = claimed.len();
        let mut orphans = Vec::new();
        {
            let mut lanes = self.lock_lanes();
            for message in claimed {
                // The claim never takes this instance's own live leases. A message still listed
                // under an older lease was given back (a lane yielded to other instances) or
                // taken back (this instance was thought dead) and is claimed anew: the new
                // lease is the one that counts. A worker still holding the old one cannot send
                // it: its final dot needs a note under its own lease.
                lanes
                    .in_hand
                    .insert(message.id.clone(), message.lease.clone());
                if message.dot_at.is_some() {
                    orphans.push(message);
                    continue;
                }
                let lane = lanes
                    .lanes
                    .entry(message.server_id)
                    .or_insert_with(|| Lane {
                        server: None,
                        queue: VecDeque::new(),
                        workers: 0,
                    });
                lane.server = servers.get(&message.server_id).cloned();
                lane.queue.push_back(message);
            }
        }
        self.staff_lanes();
        for message in orphans {
            let outcome = self.unknown_after_restart(&message);
            self.settle(&message, outcome);
        }
        Ok(count)
    }

    /// A message whose final dot was noted in an earlier run that never recorded the answer (it
    /// crashed or lost its lease in between): Gmail may have it. The note is written a few
    /// messages ahead of the dot (see `lanes.rs`), so some of these never went. Waiting would not tell, so it is
    /// due again at once, with the attempt recorded as "outcome unknown", counted and shown
    /// rather than silently re-sent.
    fn unknown_after_restart(&self, message: &Claimed) -> Outcome {
        bump(&self.app.metrics.unknown_after_restart);
        let at = message.dot_at.map(format_utc).unwrap_or_default();
        Outcome {
            verdict: Verdict::Deferred {
                until: self.app.now(),
                reason: format!(
                    "outcome unknown: at {at} mailgate had handed the message to the server, or was about to, and it stopped before it recorded the answer; it is sent again, so the recipient may get it twice"
                ),
            },
            stage: Stage::DataEnd,
            reply: None,
            detail: "mailgate stopped after noting the final dot and before recording the server's answer"
                .into(),
            counts: true,
            unknown: true,
            sent_by: None,
        }
    }

    /// Pushes back the expiry of every lease in hand, every RENEW_EVERY seconds. Before each
    /// claim, so a lease in hand cannot lapse between two looks at the queue.
    async fn renew_now_and_then(&self) -> Result<(), crate::store::StoreError> {
        let now = self.app.now();
        if !due(&self.last_renewal, RENEW_EVERY, now) {
            return Ok(());
        }
        let leases: Vec<String> = {
            let lanes = self.lock_lanes();
            let distinct: std::collections::BTreeSet<&String> = lanes.in_hand.values().collect();
            distinct.into_iter().cloned().collect()
        };
        if !leases.is_empty() {
            self.app
                .store
                .renew_leases(&leases, now + LEASE_SECS)
                .await?;
        }
        Ok(())
    }

    async fn until_next_due(&self) -> Duration {
        let now = self.app.now();
        match self.app.store.next_due().await {
            Ok(Some(due)) if due > now => {
                Duration::from_secs(u64::try_from(due - now).unwrap_or(0)).min(MAX_WAIT)
            }
            // Due now but not claimed: the lanes are full; a settled message will wake us.
            Ok(Some(_)) => MAX_WAIT,
            _ => MAX_WAIT,
        }
    }

    /// Announces this instance. On SQLite, which one process serves, whatever another run left
    /// leased (a crash) is due again at once; on PostgreSQL the heartbeat decides who is dead.
    async fn register(&self) {
        let now = self.app.now();
        let instance = crate::store::InstanceRecord {
            id: self.owner.clone(),
            host: crate::app::hostname(),
            http_addr: self.app.config.http_addr.to_string(),
            started_at: now,
            heartbeat_at: now,
        };
        if let Err(e) = self.app.store.register_instance(&instance).await {
            tracing::error!("cannot register this instance: {e}");
        }
        if self.app.store.backend() == crate::store::Backend::Sqlite {
            match self
                .app
                .store
                .release_foreign_leases(&self.owner, now)
                .await
            {
                Ok(0) => {}
                Ok(n) => tracing::info!(
                    released = n,
                    "messages left in flight by an earlier run are due again"
                ),
                Err(e) => tracing::error!("cannot take back leases from before a restart: {e}"),
            }
        }
    }

    /// Beats every [`HEARTBEAT_EVERY`] seconds, and takes back the messages of instances silent
    /// for `instance_timeout_secs`. An instance found missing from the table was itself taken
    /// for dead (it stalled): its leases, slots and reserved sends are gone, so it lets go of
    /// its idle sessions and reserved sends and joins again.
    async fn heartbeat_now_and_then(&self) {
        let now = self.app.now();
        if !due(&self.last_heartbeat, HEARTBEAT_EVERY, now) {
            return;
        }
        let cutoff = now - self.app.config.instance_timeout_secs;
        match self.app.store.heartbeat(&self.owner, now, cutoff).await {
            Ok(beat) => {
                if beat.released > 0 {
                    tracing::warn!(
                        released = beat.released,
                        "took back the messages of an instance that stopped beating"
                    );
                    self.app.outbox_wake.notify_one();
                }
                if !beat.alive {
                    tracing::warn!(
                        "this instance was taken for dead by the others (it stopped beating for over {} s); joining again",
                        self.app.config.instance_timeout_secs
                    );
                    self.close_all_idle().await;
                    self.forget_reserved_sends().await;
                    self.register().await;
                }
            }
            Err(e) => tracing::error!("heartbeat: {e}"),
        }
        if let Err(e) = self.app.notice_connection_changes().await {
            tracing::warn!("cannot look at the Google connections: {e}");
        }
    }

    /// Every [`TIDY_EVERY`]: closes sessions idle past reuse and gives back reserved sends that
    /// sat unused, so their slots and sends can serve other instances.
    async fn tidy_now_and_then(&self) {
        {
            let mut last = self.last_tidy.lock().unwrap_or_else(|p| p.into_inner());
            if last.elapsed() < TIDY_EVERY {
                return;
            }
            *last = Instant::now();
        }
        self.close_stale_idle().await;
        self.return_unused_sends(false).await;
    }

    /// Reports relayed messages that failed for good: at once after a failure settles here,
    /// and now and then for failures settled elsewhere (another instance, a restart).
    async fn bounce_now_and_then(&self) {
        let now = self.app.now();
        if !self.failed_since_bounces.swap(false, Ordering::Relaxed)
            && !due(&self.last_bounces, BOUNCES_EVERY, now)
        {
            return;
        }
        if let Err(e) = self.app.send_bounces().await {
            tracing::error!("cannot queue delivery status notifications: {e}");
            self.failed_since_bounces.store(true, Ordering::Relaxed);
        }
    }

    async fn purge_now_and_then(&self) {
        let now = self.app.now();
        if !due(&self.last_purge, RETENTION_EVERY, now) {
            return;
        }
        let config = &self.app.config;
        match self
            .app
            .store
            .purge_bodies(now - config.retention_days * 86_400)
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::info!(bodies = n, "deleted message bodies past retention"),
            Err(e) => tracing::error!("retention: {e}"),
        }
        match self
            .app
            .store
            .purge_records(now - config.history_days * 86_400)
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::info!(messages = n, "deleted message records past history_days"),
            Err(e) => tracing::error!("retention: {e}"),
        }
        match self
            .app
            .store
            .purge_inbox(
                now - config.retention_days * 86_400,
                now - config.history_days * 86_400,
            )
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::info!(messages = n, "deleted incoming records past history_days"),
            Err(e) => tracing::error!("retention of incoming mail: {e}"),
        }
    }

    /// Graceful shutdown: the messages in hand finish; those waiting in lanes go back.
    async fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        let waiting: Vec<(String, String)> = {
            let mut lanes = self.lock_lanes();
            let waiting: Vec<Claimed> = lanes
                .lanes
                .values_mut()
                .flat_map(|l| l.queue.drain(..))
                .collect();
            for m in &waiting {
                lanes.in_hand.remove(&m.id);
            }
            waiting.into_iter().map(|m| (m.id, m.lease)).collect()
        };
        if let Err(e) = self
            .app
            .store
            .release_messages(&waiting, self.app.now())
            .await
        {
            tracing::error!("cannot give messages back to the queue: {e}");
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        // Workers finish their messages, then their settlements reach the disk.
        while self.workers.load(Ordering::SeqCst) > 0 || !self.lock_lanes().in_hand.is_empty() {
            if tokio::time::timeout_at(deadline, self.settled.notified())
                .await
                .is_err()
            {
                tracing::warn!("stopped with messages still in hand; their leases will expire");
                break;
            }
        }
        self.close_all_idle().await;
        self.return_unused_sends(true).await;
        // Gone for good: nothing to take back. With messages still in hand the row stays, and
        // goes stale, so another instance takes them back.
        if self.lock_lanes().in_hand.is_empty()
            && let Err(e) = self.app.store.remove_instance(&self.owner).await
        {
            tracing::warn!("cannot remove this instance's row: {e}");
        }
    }
}

impl App {
    /// The instances sharing this database that beat recently, for the Overview.
    pub async fn live_instances(
        &self,
    ) -> Result<Vec<crate::store::InstanceRecord>, crate::store::StoreError> {
        let cutoff = self.now() - self.config.instance_timeout_secs;
        self.store.live_instances(cutoff).await
    }
}
