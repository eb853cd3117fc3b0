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
//! connections. Sessions outlive a batch in an idle pool, so a steady stream logs in three times,
//! not once per message.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::sync::{Notify, Semaphore};

use super::App;
use super::gmail_login::GmailLoginError;
use super::tokens::TokenError;
use crate::clock::{Timestamp, format_utc};
use crate::domain::outgoing::{
    Failure, RetryPolicy, Trouble, Verdict, classify, default_daily_limit,
};
use crate::domain::{AuthMethod, MailServer, Stage};
use crate::metrics::bump;
use crate::smtp_out::{SmtpError, SmtpSession};
use crate::store::{AttemptRecord, Claimed, Settlement};
use mailgate_smtp::Credentials;

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

pub struct Dispatcher {
    app: Arc<App>,
    owner: String,
    policy: RetryPolicy,
    lanes: Mutex<Lanes>,
    idle: Mutex<HashMap<i64, Vec<(SmtpSession, Instant)>>>,
    accounts: Mutex<HashMap<String, Arc<Semaphore>>>,
    /// Accounts Gmail told "daily quota exceeded", until when.
    quota: Mutex<HashMap<String, Timestamp>>,
    workers: AtomicUsize,
    stopping: AtomicBool,
    settled: Notify,
    last_purge: Mutex<Timestamp>,
    last_renewal: Mutex<Timestamp>,
}

#[derive(Default)]
struct Lanes {
    lanes: HashMap<i64, Lane>,
    /// Every message claimed and not yet settled or given back (waiting in a lane or being
    /// sent), with its lease.
    in_hand: HashMap<String, String>,
}

struct Lane {
    server: Option<MailServer>,
    queue: VecDeque<Claimed>,
    workers: usize,
}

/// What one attempt came to.
struct Outcome {
    verdict: Verdict,
    stage: Stage,
    reply: Option<String>,
    detail: String,
    /// False when nothing was sent to the server (mailgate's own quota guard).
    counts: bool,
    /// The final dot went out and no answer came: the server may have the message.
    unknown: bool,
    /// The Gmail account whose daily quota this send used.
    sent_by: Option<String>,
}

/// How far one SMTP transaction got.
enum Transmission {
    /// The server answered the final dot with 250.
    Accepted {
        reply: crate::domain::Reply,
        refused: Vec<(String, crate::domain::Reply)>,
    },
    /// Refused or broken before the final dot: the server cannot have the message.
    BeforeDot(SmtpError),
    /// The server answered the final dot with a refusal.
    Answered(SmtpError),
    /// The final dot went out and no answer came: the server may have the message.
    Unknown(SmtpError),
    /// The final dot was not sent because the store could not note it (or the lease is gone).
    NotNoted(String),
}

/// Why an attempt stopped, before the retry policy weighs it.
struct Stop {
    failure: Failure,
    stage: Stage,
    reply: Option<String>,
}

impl Stop {
    fn from_smtp(e: &SmtpError, quota_frees: Timestamp) -> Self {
        let what = e.to_string();
        let trouble = match e.reply() {
            Some(reply) => Trouble::Reply {
                stage: e.stage(),
                reply,
            },
            None if matches!(e, SmtpError::BadArgument { .. }) => {
                Trouble::Unsendable { what: &what }
            }
            None => Trouble::Transport { what: &what },
        };
        Self {
            failure: classify(trouble, quota_frees),
            stage: e.stage(),
            reply: e.reply().map(|r| r.text()),
        }
    }

    fn from_login(e: GmailLoginError, now: Timestamp) -> Self {
        match e {
            GmailLoginError::Token(e) => Self::from_token(&e),
            GmailLoginError::Smtp(e) => Self::from_smtp(&e, now),
            GmailLoginError::NoXoauth2 => Self {
                failure: Failure::NeedsHuman(
                    "the server does not offer AUTH XOAUTH2: it is not Gmail's SMTP server".into(),
                ),
                stage: Stage::Auth,
                reply: None,
            },
            GmailLoginError::Rejected { reason, error } => Self {
                failure: Failure::NeedsHuman(format!("Reconnect needed: {reason}")),
                stage: Stage::Auth,
                reply: error.reply().map(|r| r.text()),
            },
        }
    }

    fn from_token(e: &TokenError) -> Self {
        let failure = match e {
            TokenError::Temporary(_) | TokenError::Store(_) => Failure::Temporary(e.to_string()),
            _ => Failure::NeedsHuman(e.to_string()),
        };
        Self {
            failure,
            stage: Stage::Token,
            reply: None,
        }
    }
}

/// The session is dead or dying: a reused one gets one fresh replacement before the message is
/// charged an attempt.
fn stale(e: &SmtpError) -> bool {
    match e {
        SmtpError::Closed(_) | SmtpError::Timeout { .. } => true,
        SmtpError::Refused { reply, .. } => {
            reply.code == 421 || (reply.code == 451 && reply.enhanced() == Some("4.4.2"))
        }
        _ => false,
    }
}

/// Whether a session that produced `e` can take the next message after an RSET.
fn reusable_after(e: &SmtpError) -> bool {
    matches!(e, SmtpError::Refused { reply, .. } if reply.code != 421)
}

fn jitter() -> f64 {
    rand::rng().random_range(-1.0..=1.0)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "mailgate".into())
}

impl Dispatcher {
    /// The owner name is stable across restarts of this instance (host and port), so a restart
    /// takes back at once what a crash left leased.
    pub fn new(app: Arc<App>) -> Arc<Self> {
        let owner = format!("{}:{}", hostname(), app.config.http_addr.port());
        Arc::new(Self {
            app,
            owner,
            policy: RetryPolicy::default(),
            lanes: Mutex::new(Lanes::default()),
            idle: Mutex::new(HashMap::new()),
            accounts: Mutex::new(HashMap::new()),
            quota: Mutex::new(HashMap::new()),
            workers: AtomicUsize::new(0),
            stopping: AtomicBool::new(false),
            settled: Notify::new(),
            last_purge: Mutex::new(0),
            last_renewal: Mutex::new(0),
        })
    }

    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Runs until `shutdown` flips, then finishes the messages in hand and gives the rest back.
    pub async fn run(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        if let Err(e) = self
            .app
            .store
            .release_owner_leases(&self.owner, self.app.now())
            .await
        {
            tracing::error!("cannot take back leases from before a restart: {e}");
        }
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
        self.purge_now_and_then().await;
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
        let mut spawn = Vec::new();
        let mut orphans = Vec::new();
        {
            let mut lanes = self.lock_lanes();
            for message in claimed {
                if lanes.in_hand.contains_key(&message.id) {
                    // The claim never takes this instance's own leases; should it ever return
                    // one, the worker holding the message keeps it alone.
                    tracing::error!(id = %message.id, "claimed a message already in hand; skipped");
                    continue;
                }
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
            for (server_id, lane) in lanes.lanes.iter_mut() {
                while lane.workers < CONNECTIONS_PER_ACCOUNT && lane.workers < lane.queue.len() {
                    lane.workers += 1;
                    spawn.push(*server_id);
                }
            }
        }
        for server_id in spawn {
            self.workers.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(Arc::clone(self).work(server_id));
        }
        for message in orphans {
            let outcome = self.unknown_after_restart(&message);
            self.settle(&message, outcome).await;
        }
        Ok(count)
    }

    /// A message whose final dot went out in an earlier run that never recorded the answer (it
    /// crashed or lost its lease in between): Gmail may have it. Waiting would not tell, so it is
    /// due again at once, with the attempt recorded as "outcome unknown", counted and shown
    /// rather than silently re-sent.
    fn unknown_after_restart(&self, message: &Claimed) -> Outcome {
        bump(&self.app.metrics.unknown_after_restart);
        let at = message.dot_at.map(format_utc).unwrap_or_default();
        Outcome {
            verdict: Verdict::Deferred {
                until: self.app.now(),
                reason: format!(
                    "outcome unknown: the message went to the server at {at}, and mailgate stopped before it recorded the answer; it is sent again, so the recipient may get it twice"
                ),
            },
            stage: Stage::DataEnd,
            reply: None,
            detail: "mailgate stopped between the final dot and recording the server's answer"
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
        {
            let mut last = self.last_renewal.lock().unwrap_or_else(|p| p.into_inner());
            if now - *last < RENEW_EVERY {
                return Ok(());
            }
            *last = now;
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

    fn lock_lanes(&self) -> std::sync::MutexGuard<'_, Lanes> {
        self.lanes.lock().unwrap_or_else(|p| p.into_inner())
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

    async fn purge_now_and_then(&self) {
        let now = self.app.now();
        {
            let mut last = self.last_purge.lock().unwrap_or_else(|p| p.into_inner());
            if now - *last < RETENTION_EVERY {
                return;
            }
            *last = now;
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
    }

    fn account_of(server: &MailServer) -> String {
        match (server.auth, &server.username) {
            (AuthMethod::Gmail, Some(u)) => u.clone(),
            _ => format!("server:{}", server.id),
        }
    }

    fn account_slots(&self, account: &str) -> Arc<Semaphore> {
        let mut accounts = self.accounts.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(
            accounts
                .entry(account.to_string())
                .or_insert_with(|| Arc::new(Semaphore::new(CONNECTIONS_PER_ACCOUNT))),
        )
    }

    /// One worker of a lane: takes messages until the lane is empty, over one reused session.
    async fn work(self: Arc<Self>, server_id: i64) {
        let server = self
            .lock_lanes()
            .lanes
            .get(&server_id)
            .and_then(|l| l.server.clone());
        let slots = server
            .as_ref()
            .map(|s| self.account_slots(&Self::account_of(s)));
        let _slot = match &slots {
            Some(s) => Arc::clone(s).acquire_owned().await.ok(),
            None => None,
        };
        let mut session = self.take_idle(server_id);
        loop {
            let message = {
                let mut lanes = self.lock_lanes();
                if self.stopping.load(Ordering::Relaxed) {
                    None
                } else {
                    lanes
                        .lanes
                        .get_mut(&server_id)
                        .and_then(|l| l.queue.pop_front())
                }
            };
            let Some(message) = message else {
                break;
            };
            let outcome = match &server {
                Some(server) => self.deliver(server, &message, &mut session).await,
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
            self.settle(&message, outcome).await;
        }
        if let Some(session) = session {
            self.put_idle(server_id, session);
        }
        {
            let mut lanes = self.lock_lanes();
            if let Some(lane) = lanes.lanes.get_mut(&server_id) {
                lane.workers -= 1;
                if lane.workers == 0 && lane.queue.is_empty() {
                    lanes.lanes.remove(&server_id);
                }
            }
        }
        self.workers.fetch_sub(1, Ordering::SeqCst);
        self.settled.notify_one();
    }

    fn take_idle(&self, server_id: i64) -> Option<SmtpSession> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.get_mut(&server_id)?;
        while let Some((session, since)) = list.pop() {
            if since.elapsed() < IDLE_REUSE {
                return Some(session);
            }
            tokio::spawn(session.quit());
        }
        None
    }

    fn put_idle(&self, server_id: i64, session: SmtpSession) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.entry(server_id)
            .or_default()
            .push((session, Instant::now()));
    }

    /// Records the attempt and settles the message; its lease ends here.
    async fn settle(&self, message: &Claimed, outcome: Outcome) {
        let now = self.app.now();
        let metrics = &self.app.metrics;
        match &outcome.verdict {
            Verdict::Sent => {
                bump(&metrics.sent);
                #[allow(clippy::cast_precision_loss)]
                metrics.observe_latency((now - message.created_at) as f64);
            }
            Verdict::Deferred { .. } => bump(&metrics.deferred),
            Verdict::Held { .. } => bump(&metrics.held),
            Verdict::Failed { .. } => bump(&metrics.failed),
        }
        let stage = serde_json::to_value(outcome.stage)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let settlement = Settlement {
            id: &message.id,
            lease: &message.lease,
            verdict: &outcome.verdict,
            attempt: AttemptRecord {
                stage: &stage,
                reply: outcome.reply.as_deref(),
                detail: &outcome.detail,
            },
            counts_as_attempt: outcome.counts,
            outcome_unknown: outcome.unknown,
            sent_by: outcome.sent_by.as_deref(),
            now,
        };
        match self.app.store.finish_attempt(&settlement).await {
            Ok(true) => {
                tracing::debug!(id = %message.id, state = %outcome.verdict.state(), "attempt recorded")
            }
            Ok(false) => {
                tracing::warn!(id = %message.id, "lease lost before the attempt was recorded")
            }
            Err(e) => tracing::error!(id = %message.id, "cannot record the attempt: {e}"),
        }
        self.lock_lanes().in_hand.remove(&message.id);
        self.settled.notify_one();
        self.app.settled.send_modify(|n| *n += 1);
    }

    fn outcome(&self, message: &Claimed, stop: Stop, detail: String) -> Outcome {
        let now = self.app.now();
        let verdict = stop.failure.verdict(
            &self.policy,
            message.attempts + 1,
            message.created_at,
            now,
            jitter(),
        );
        Outcome {
            verdict,
            stage: stop.stage,
            reply: stop.reply,
            detail,
            counts: true,
            unknown: false,
            sent_by: None,
        }
    }

    /// One attempt for one message.
    async fn deliver(
        &self,
        server: &MailServer,
        message: &Claimed,
        session: &mut Option<SmtpSession>,
    ) -> Outcome {
        let now = self.app.now();
        let account = Self::account_of(server);
        let gmail = server.auth == AuthMethod::Gmail;
        if gmail && let Some(deferral) = self.quota_guard(server, &account, now).await {
            return deferral;
        }
        let body = match self.app.store.message_body(&message.id).await {
            Ok(Some(body)) => body,
            Ok(None) => {
                return Outcome {
                    verdict: Verdict::Failed {
                        reason: "the message's content is no longer stored".into(),
                    },
                    stage: Stage::Data,
                    reply: None,
                    detail: "no body".into(),
                    counts: false,
                    unknown: false,
                    sent_by: None,
                };
            }
            Err(e) => {
                return self.outcome(
                    message,
                    Stop {
                        failure: Failure::Temporary(e.to_string()),
                        stage: Stage::Data,
                        reply: None,
                    },
                    "the database could not be read".into(),
                );
            }
        };
        for fresh_try in [false, true] {
            let reused = session.is_some();
            let mut live = match session.take() {
                Some(s) => s,
                None => match self.connect(server).await {
                    Ok(s) => s,
                    Err(stop) => {
                        let target = self.app.smtp_target(server);
                        let detail = format!(
                            "could not open a session with {}:{}",
                            target.host, target.port
                        );
                        return self.outcome(message, stop, detail);
                    }
                },
            };
            let error = match self.transmit(&mut live, message, &body).await {
                Transmission::Accepted { reply, refused } => {
                    *session = Some(live);
                    let reply = reply.text();
                    let mut detail = reply.clone();
                    if !refused.is_empty() {
                        let refused: Vec<String> = refused
                            .iter()
                            .map(|(rcpt, r)| format!("{rcpt}: {}", r.text()))
                            .collect();
                        detail.push_str(&format!("; refused recipients: {}", refused.join("; ")));
                    }
                    return Outcome {
                        verdict: Verdict::Sent,
                        stage: Stage::DataEnd,
                        reply: Some(reply),
                        detail,
                        counts: true,
                        unknown: false,
                        sent_by: gmail.then(|| account.clone()),
                    };
                }
                Transmission::BeforeDot(e) if reused && !fresh_try && stale(&e) => {
                    // A session from the pool that Gmail had closed: not the message's fault, and
                    // nothing reached the server that could make a message of it.
                    tracing::debug!("reused session was stale ({e}); reconnecting");
                    continue;
                }
                Transmission::BeforeDot(e) | Transmission::Answered(e) => e,
                Transmission::Unknown(e) => {
                    live.abandon().await;
                    bump(&self.app.metrics.unknown_after_drop);
                    let mut outcome = self.outcome(
                        message,
                        Stop {
                            failure: Failure::Temporary(format!(
                                "outcome unknown: the message was handed over, then {e}; it will be sent again, so the recipient may get it twice"
                            )),
                            stage: Stage::DataEnd,
                            reply: None,
                        },
                        format!("no answer after the final dot: {e}"),
                    );
                    outcome.unknown = true;
                    return outcome;
                }
                Transmission::NotNoted(reason) => {
                    // DATA is open: only hanging up keeps the half-sent message from going.
                    live.abandon().await;
                    return self.outcome(
                        message,
                        Stop {
                            failure: Failure::Temporary(reason.clone()),
                            stage: Stage::Data,
                            reply: None,
                        },
                        reason,
                    );
                }
            };
            if live.abandoned() {
                live.abandon().await;
            } else if reusable_after(&error) && live.rset().await.is_ok() {
                *session = Some(live);
            }
            let frees = self.quota_frees(&account, now).await;
            let stop = Stop::from_smtp(&error, frees);
            if let Failure::Quota { until, .. } = &stop.failure {
                self.quota
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(account.clone(), *until);
            }
            return self.outcome(message, stop, error.to_string());
        }
        self.outcome(
            message,
            Stop {
                failure: Failure::Temporary("the session kept closing".into()),
                stage: Stage::Connect,
                reply: None,
            },
            "two sessions in a row closed before the message could be sent".into(),
        )
    }

    /// One SMTP transaction for `message`. The final dot goes out only once the store has noted
    /// it under this worker's lease: a restart that finds the note knows Gmail may have the
    /// message, and a worker that lost its lease never sends it.
    async fn transmit(
        &self,
        live: &mut SmtpSession,
        message: &Claimed,
        body: &[u8],
    ) -> Transmission {
        let refused = match live.open_data(&message.mail_from, &message.rcpt_to).await {
            Ok(refused) => refused,
            Err(e) => return Transmission::BeforeDot(e),
        };
        if let Err(e) = live.write_body(body).await {
            return Transmission::BeforeDot(e);
        }
        match self
            .app
            .store
            .mark_dot(&message.id, &message.lease, self.app.now())
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                return Transmission::NotNoted(
                    "the lease on the message was lost before its final dot; nothing was sent"
                        .into(),
                );
            }
            Err(e) => {
                return Transmission::NotNoted(format!(
                    "the database could not note the attempt ({e}); nothing was sent"
                ));
            }
        }
        match live.end_data().await {
            Ok(reply) => Transmission::Accepted { reply, refused },
            Err(e @ SmtpError::Refused { .. }) => Transmission::Answered(e),
            Err(e) => Transmission::Unknown(e),
        }
    }

    /// Opens and authenticates a session. For Gmail, a 535 gets one fresh token and one more try;
    /// a second 535 means the connection needs a human, and the server is marked so.
    async fn connect(&self, server: &MailServer) -> Result<SmtpSession, Stop> {
        let target = self.app.smtp_target(server);
        let now = self.app.now();
        match server.auth {
            AuthMethod::Gmail => self
                .app
                .gmail_session(server, |_| {})
                .await
                .map_err(|e| Stop::from_login(e, now)),
            AuthMethod::Password => {
                let password = self
                    .app
                    .store
                    .server_password(&self.app.sealer, server.id)
                    .await
                    .ok()
                    .flatten()
                    .ok_or(Stop {
                        failure: Failure::NeedsHuman("the server's password is missing".into()),
                        stage: Stage::Auth,
                        reply: None,
                    })?;
                let mut session = self
                    .app
                    .smtp
                    .connect(&target)
                    .await
                    .map_err(|e| Stop::from_smtp(&e, now))?;
                let user = server.username.clone().unwrap_or_default();
                match session
                    .auth(Credentials::Plain {
                        user: &user,
                        password: &password,
                    })
                    .await
                {
                    Ok(()) => Ok(session),
                    Err(e) => {
                        session.quit().await;
                        Err(Stop::from_smtp(&e, now))
                    }
                }
            }
            AuthMethod::None => self
                .app
                .smtp
                .connect(&target)
                .await
                .map_err(|e| Stop::from_smtp(&e, now)),
        }
    }

    /// When mailgate's own count, or Gmail's last "quota exceeded", says the account must wait.
    async fn quota_guard(
        &self,
        server: &MailServer,
        account: &str,
        now: Timestamp,
    ) -> Option<Outcome> {
        let limit = if server.daily_limit > 0 {
            server.daily_limit
        } else {
            default_daily_limit(account)
        };
        let told = self
            .quota
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(account)
            .copied()
            .filter(|until| *until > now);
        let (sent, frees) = match self.app.store.sends_in_window(account, now).await {
            Ok(window) => window,
            // Not knowing the count is no licence to send past the limit: wait and read again.
            Err(e) => {
                return Some(Outcome {
                    verdict: Verdict::Deferred {
                        until: now + 60,
                        reason: format!(
                            "mailgate could not read how many messages {account} sent in the last 24 hours ({e}); the daily limit is never skipped, so the message waits"
                        ),
                    },
                    stage: Stage::MailFrom,
                    reply: None,
                    detail: "the daily count could not be read".into(),
                    counts: false,
                    unknown: false,
                    sent_by: None,
                });
            }
        };
        let until = match told {
            Some(until) => until,
            None if sent >= limit => frees.unwrap_or(now + 3600),
            None => return None,
        };
        Some(Outcome {
            verdict: Verdict::Deferred {
                until,
                reason: format!(
                    "{account} reached its daily limit ({sent} of {limit} messages in 24 hours); waiting until {}",
                    format_utc(until)
                ),
            },
            stage: Stage::MailFrom,
            reply: None,
            detail: "held back by mailgate to stay within Gmail's daily limit".into(),
            counts: false,
            unknown: false,
            sent_by: None,
        })
    }

    /// When the oldest send of the last 24 hours leaves the window (or a day from now).
    async fn quota_frees(&self, account: &str, now: Timestamp) -> Timestamp {
        match self.app.store.sends_in_window(account, now).await {
            Ok((_, Some(frees))) if frees > now => frees,
            _ => now + 86_400,
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
        while self.workers.load(Ordering::SeqCst) > 0 {
            if tokio::time::timeout_at(deadline, self.settled.notified())
                .await
                .is_err()
            {
                tracing::warn!("stopped with messages still in hand; their leases will expire");
                break;
            }
        }
        let sessions: Vec<SmtpSession> = {
            let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            idle.drain()
                .flat_map(|(_, list)| list)
                .map(|(s, _)| s)
                .collect()
        };
        for session in sessions {
            session.quit().await;
        }
    }
}
