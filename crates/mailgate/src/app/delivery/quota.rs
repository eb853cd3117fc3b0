//! mailgate's own daily count and Gmail's last "quota exceeded": a message that would go over
//! waits, and a count that cannot be read defers the message rather than skipping the limit.

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
        let (sent, frees) = match self.app.store.sends_in_window(account, now).await {
            // Sends whose record is still on its way to disk count too.
            Ok((sent, frees)) => (sent + self.unsettled_sends(account), frees),
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

    /// Sends that went out and whose settlement is not committed yet: `delta` is +1 when one
    /// goes out, -1 when its record is on disk (or failed to get there).
    pub(super) fn count_unsettled_send(&self, account: &str, delta: i64) {
        let mut unsettled = self.unsettled.lock().unwrap_or_else(|p| p.into_inner());
        let n = unsettled.entry(account.to_string()).or_default();
        *n += delta;
        if *n <= 0 {
            unsettled.remove(account);
        }
    }

    fn unsettled_sends(&self, account: &str) -> i64 {
        self.unsettled
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(account)
            .copied()
            .unwrap_or(0)
    }

    /// When the oldest send of the last 24 hours leaves the window (or a day from now).
    pub(super) async fn quota_frees(&self, account: &str, now: Timestamp) -> Timestamp {
        match self.app.store.sends_in_window(account, now).await {
            Ok((_, Some(frees))) if frees > now => frees,
            _ => now + 86_400,
        }
    }
}
