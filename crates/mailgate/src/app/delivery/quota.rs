//! The daily limits: mailgate's own count (at most the limit per rolling 24 hours, across every
//! instance) and Gmail's last "quota exceeded". A message that would go over waits; a count
//! that cannot be read defers the message rather than skipping the limit.
//!
//! Sends are reserved in the database a block at a time (`store/quota.rs`): recorded sends plus
//! what every instance holds never pass the limit, so no instance can take another's last send
//! of the day. Reserved sends this instance does not use go back after a short while.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Dispatcher;
use super::attempt::Outcome;
use super::lanes::NOTED_AHEAD;

use crate::clock::{Timestamp, format_utc};
use crate::domain::outgoing::{Verdict, default_daily_limit};
use crate::domain::{MailServer, Stage};

/// Sends reserved at a time, at first: a reservation is a transaction the account's workers wait
/// for, so the block doubles while reservations come less than a second apart (up to
/// [`MOST_RESERVED`]), and the database is asked a few times a second at any rate. Near the limit
/// the grant is what is left, so the limit stays exact whatever the block.
const BLOCK: i64 = 16;
const MOST_RESERVED: i64 = 512;
/// Reserved sends unused this long go back, so other instances can have them.
const RETURN_UNUSED_AFTER: Duration = Duration::from_secs(2);
/// How long a message waits when the rest of the day's sends are reserved by other instances:
/// they give back what they do not use after [`RETURN_UNUSED_AFTER`].
const RESERVED_ELSEWHERE_WAIT: Timestamp = 3;

/// One account's sends as this instance holds them.
#[derive(Default)]
pub(super) struct AccountQuota {
    /// Reserved in the database and not yet taken by a message.
    left: i64,
    /// Taken by messages whose settlement this instance has not seen yet: still held.
    on_their_way: i64,
    /// Gmail said "quota exceeded": nothing goes before then.
    told_until: Option<Timestamp>,
    last_taken: Option<Instant>,
    /// What the next reservation asks for, and when the last was made.
    block: i64,
    last_reserved: Option<Instant>,
}

pub(super) type SharedQuota = Arc<tokio::sync::Mutex<AccountQuota>>;

impl Dispatcher {
    fn account_quota(&self, account: &str) -> SharedQuota {
        let mut quotas = self.quotas.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(quotas.entry(account.to_string()).or_default())
    }

    /// When mailgate's own count, or Gmail's last "quota exceeded", says the account must wait.
    /// Otherwise one reserved send is taken for the message.
    pub(super) async fn quota_guard(
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
        let state = self.account_quota(account);
        // Held across the reservation: the account's other workers wait for its block rather
        // than each reserving one.
        let mut quota = state.lock().await;
        if let Some(until) = quota.told_until.filter(|until| *until > now) {
            return Some(held_back(
                until,
                format!(
                    "Gmail said {account} is over its daily sending quota; waiting until {}",
                    format_utc(until)
                ),
            ));
        }
        if quota.left == 0 {
            // As many as this lane may use soon: a block left unused only makes other instances
            // wait for it.
            let waiting = self
                .lock_lanes()
                .lanes
                .get(&server.id)
                .map_or(0, |lane| lane.queue.len());
            let recent = quota
                .last_reserved
                .is_some_and(|at| at.elapsed() < Duration::from_secs(1));
            quota.block = if recent {
                (quota.block * 2).min(MOST_RESERVED)
            } else {
                BLOCK
            };
            quota.last_reserved = Some(Instant::now());
            let want = i64::try_from(waiting + NOTED_AHEAD + 1)
                .unwrap_or(quota.block)
                .min(quota.block);
            let reserved = match self
                .app
                .store
                .reserve_sends(
                    account,
                    &self.owner,
                    quota.left + quota.on_their_way,
                    want,
                    limit,
                    now,
                )
                .await
            {
                Ok(reserved) => reserved,
                Err(e) => {
                    return Some(held_back(
                        now + 60,
                        format!(
                            "mailgate could not read how many messages {account} sent in the last 24 hours ({e}); the daily limit is never skipped, so the message waits"
                        ),
                    ));
                }
            };
            if let Some(until) = reserved.blocked_until {
                quota.told_until = Some(until);
                return Some(held_back(
                    until,
                    format!(
                        "Gmail said {account} is over its daily sending quota; waiting until {}",
                        format_utc(until)
                    ),
                ));
            }
            if reserved.granted == 0 {
                let sent = reserved.sent;
                if reserved.held_elsewhere > 0 && sent + reserved.held_here < limit {
                    let until = now + RESERVED_ELSEWHERE_WAIT;
                    return Some(held_back(
                        until,
                        format!(
                            "{account} has sent {sent} of its {limit} messages in 24 hours and other mailgate instances hold the rest; waiting until {}",
                            format_utc(until)
                        ),
                    ));
                }
                let until = reserved.frees.filter(|t| *t > now).unwrap_or(now + 3600);
                // A send settled a moment ago may be counted in its hour and in the hold: say no
                // more than the limit.
                let counted = (sent + reserved.held_here).min(limit);
                return Some(held_back(
                    until,
                    format!(
                        "{account} reached its daily limit ({counted} of {limit} messages in 24 hours, those on their way included); waiting until {}",
                        format_utc(until)
                    ),
                ));
            }
            quota.left = reserved.granted;
        }
        quota.left -= 1;
        quota.on_their_way += 1;
        quota.last_taken = Some(Instant::now());
        None
    }

    /// The send `quota_guard` took for a message that did not go after all.
    pub(super) async fn send_not_made(&self, account: &str) {
        let state = self.account_quota(account);
        let mut quota = state.lock().await;
        quota.left += 1;
        quota.on_their_way -= 1;
    }

    /// A send's settlement reached the database: it is counted in its hour now, no longer in
    /// this instance's hold (which the next reservation or release writes).
    pub(super) async fn send_settled(&self, account: &str) {
        self.account_quota(account).lock().await.on_their_way -= 1;
    }

    /// Gmail said the account is over its quota: every instance holds back until `until`.
    pub(super) async fn quota_exceeded(&self, account: &str, until: Timestamp) {
        self.account_quota(account).lock().await.told_until = Some(until);
        if let Err(e) = self.app.store.block_sends(account, until).await {
            tracing::error!(%account, "cannot record Gmail's quota refusal: {e}");
        }
    }

    /// Gives back reserved sends that sat unused, for other instances. With `all`, every
    /// account's (stopping, or this instance's reservations were taken for dead).
    pub(super) async fn return_unused_sends(&self, all: bool) {
        let accounts: Vec<(String, SharedQuota)> = self
            .quotas
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(account, quota)| (account.clone(), Arc::clone(quota)))
            .collect();
        for (account, state) in accounts {
            // An account whose guard is busy is in use: nothing to give back.
            let Ok(mut quota) = state.try_lock() else {
                continue;
            };
            let stale = quota
                .last_taken
                .is_none_or(|at| at.elapsed() >= RETURN_UNUSED_AFTER);
            if quota.left == 0 || !(all || stale) {
                continue;
            }
            match self
                .app
                .store
                .release_sends(&account, &self.owner, quota.on_their_way)
                .await
            {
                Ok(()) => quota.left = 0,
                Err(e) => tracing::warn!(%account, "cannot give back reserved sends: {e}"),
            }
        }
    }

    /// This instance's reservations were removed with its row (it was taken for dead): what
    /// it held is not its own any more.
    pub(super) async fn forget_reserved_sends(&self) {
        let accounts: Vec<SharedQuota> = self
            .quotas
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        for state in accounts {
            state.lock().await.left = 0;
        }
    }

    /// When the oldest send of the last 24 hours leaves the window (or a day from now).
    pub(super) async fn quota_frees(&self, account: &str, now: Timestamp) -> Timestamp {
        match self.app.store.sends_in_window(account, now).await {
            Ok((_, Some(frees))) if frees > now => frees,
            _ => now + 86_400,
        }
    }
}

/// A message mailgate holds back for the daily limit: deferred, nothing sent, no attempt spent.
fn held_back(until: Timestamp, reason: String) -> Outcome {
    Outcome {
        verdict: Verdict::Deferred { until, reason },
        stage: Stage::MailFrom,
        reply: None,
        detail: "held back by mailgate to stay within Gmail's daily limit".into(),
        counts: false,
        unknown: false,
        sent_by: None,
    }
}
