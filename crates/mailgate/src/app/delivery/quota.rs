//! mailgate's own daily count and Gmail's last "quota exceeded": a message that would go over
//! waits, and a count that cannot be read defers the message rather than skipping the limit.

use std::time::{Duration, Instant};

use super::Dispatcher;
use super::attempt::Outcome;

use crate::clock::{Timestamp, format_utc};
use crate::domain::outgoing::{Verdict, default_daily_limit};
use crate::domain::{MailServer, Stage};

impl Dispatcher {
    /// When mailgate's own count, or Gmail's last "quota exceeded", says the account must wait.
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
        let told = self
            .quota
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(account)
            .copied()
            .filter(|until| *until > now);
        if let Err(e) = self.refresh_window(account, now).await {
            // Not knowing the count is no licence to send past the limit: wait and read again.
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
        // Checked and taken under one lock: two workers of one account cannot both take the
        // last send of the day.
        let refused = self.sends(account, |c| {
            let (sent, frees) = c.window();
            if told.is_none() && sent < limit {
                c.unsettled += 1;
                None
            } else {
                Some((sent, frees))
            }
        });
        let (sent, frees) = refused?;
        let until = told.unwrap_or_else(|| frees.unwrap_or(now + 3600));
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

    /// The send `quota_guard` took for a message that did not go after all.
    pub(super) fn send_not_made(&self, account: &str) {
        self.sends(account, |c| c.unsettled -= 1);
    }

    /// The settlement of a send was committed (or failed to be: counting it is the safe side).
    pub(super) fn send_recorded(&self, account: &str) {
        self.sends(account, |c| {
            c.unsettled -= 1;
            c.committed += 1;
        });
    }

    fn sends<R>(&self, account: &str, f: impl FnOnce(&mut SendCount) -> R) -> R {
        let mut sends = self.sends.lock().unwrap_or_else(|p| p.into_inner());
        f(sends.entry(account.to_string()).or_default())
    }

    /// Reads `account`'s 24-hour count from the database, unless the last read is under a
    /// second old (every message checks it). Sends since that read are counted here (see
    /// `SendCount::window`). Other instances' sends are seen at the next read.
    async fn refresh_window(
        &self,
        account: &str,
        now: Timestamp,
    ) -> Result<(), crate::store::StoreError> {
        const FRESH: Duration = Duration::from_secs(1);
        let (fresh, base) = self.sends(account, |c| {
            // The service's clock too: when it jumps (tests move it by hours), read again.
            let fresh = c
                .read
                .is_some_and(|r| r.at.elapsed() < FRESH && r.now == now);
            (fresh, c.committed)
        });
        if fresh {
            return Ok(());
        }
        let (sent, frees) = self.app.store.sends_in_window(account, now).await?;
        self.sends(account, |c| {
            c.read = Some(WindowRead {
                at: Instant::now(),
                now,
                sent,
                frees,
                base,
            });
        });
        Ok(())
    }

    /// When the oldest send of the last 24 hours leaves the window (or a day from now).
    pub(super) async fn quota_frees(&self, account: &str, now: Timestamp) -> Timestamp {
        let frees = match self.refresh_window(account, now).await {
            Ok(()) => self.sends(account, |c| c.window().1),
            Err(_) => None,
        };
        match frees {
            Some(frees) if frees > now => frees,
            _ => now + 86_400,
        }
    }
}

/// One account's sends as this process knows them.
#[derive(Default)]
pub(super) struct SendCount {
    /// Sends taken by `quota_guard` whose settlement is not committed yet.
    unsettled: i64,
    /// Sends whose settlement was committed, since this process started.
    committed: i64,
    read: Option<WindowRead>,
}

/// The last read of the database's 24-hour count.
#[derive(Clone, Copy)]
struct WindowRead {
    at: Instant,
    now: Timestamp,
    sent: i64,
    frees: Option<Timestamp>,
    /// `committed` just before the read: commits after it are added to `sent`.
    base: i64,
}

impl SendCount {
    /// Messages sent in the last 24 hours, and when the oldest hour leaves the window: the last
    /// read, the sends committed since, and those taken and not yet committed. A send committed
    /// while the read ran may be counted twice, which holds a message back a little early,
    /// never lets one past the limit.
    fn window(&self) -> (i64, Option<Timestamp>) {
        match self.read {
            Some(r) => (r.sent + self.committed - r.base + self.unsettled, r.frees),
            None => (self.committed + self.unsettled, None),
        }
    }
}
