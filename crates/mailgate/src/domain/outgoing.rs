//! The outgoing queue's rules: a message's states, when to try again, and what each outcome of a
//! delivery attempt means. Flectra treats every failure alike and never retries; here temporary
//! trouble waits and retries, permanent refusals fail with Google's words, and anything that needs
//! a human is held until the human acts.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::smtp_reply::{Reply, Stage};
use crate::clock::Timestamp;

/// queued → sending → sent | deferred | held | failed | cancelled
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = State)]
pub enum MessageState {
    Queued,
    Sending,
    Sent,
    /// A temporary failure; tried again at `next_attempt_at`.
    Deferred,
    /// The server's Google connection needs a human; released when it is reconnected.
    Held,
    /// A permanent failure, with the server's reply.
    Failed,
    Cancelled,
}

impl MessageState {
    pub const ALL: [MessageState; 7] = [
        MessageState::Queued,
        MessageState::Sending,
        MessageState::Sent,
        MessageState::Deferred,
        MessageState::Held,
        MessageState::Failed,
        MessageState::Cancelled,
    ];

    pub fn code(self) -> &'static str {
        match self {
            MessageState::Queued => "queued",
            MessageState::Sending => "sending",
            MessageState::Sent => "sent",
            MessageState::Deferred => "deferred",
            MessageState::Held => "held",
            MessageState::Failed => "failed",
            MessageState::Cancelled => "cancelled",
        }
    }

    pub fn parse(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.code() == code)
    }

    /// An admin may send it again now.
    pub fn retryable(self) -> bool {
        matches!(
            self,
            MessageState::Deferred | MessageState::Held | MessageState::Failed
        )
    }

    /// An admin may still stop it.
    pub fn cancellable(self) -> bool {
        matches!(
            self,
            MessageState::Queued | MessageState::Deferred | MessageState::Held
        )
    }
}

impl fmt::Display for MessageState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// What one attempt decided for a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Sent,
    Deferred { until: Timestamp, reason: String },
    Held { reason: String },
    Failed { reason: String },
}

impl Verdict {
    pub fn state(&self) -> MessageState {
        match self {
            Verdict::Sent => MessageState::Sent,
            Verdict::Deferred { .. } => MessageState::Deferred,
            Verdict::Held { .. } => MessageState::Held,
            Verdict::Failed { .. } => MessageState::Failed,
        }
    }
}

/// Exponential backoff with jitter, up to a maximum age after which a message fails.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub first_delay: i64,
    pub max_delay: i64,
    pub max_age: i64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            first_delay: 60,
            max_delay: 3600,
            max_age: 3 * 86_400,
        }
    }
}

impl RetryPolicy {
    /// When to try again after the `attempts`-th temporary failure. `jitter` in [-1, 1] spreads
    /// retries ±20% so a burst deferred together does not come back together.
    pub fn next_attempt(&self, attempts: i64, now: Timestamp, jitter: f64) -> Timestamp {
        let exponent = u32::try_from(attempts.saturating_sub(1).clamp(0, 30)).unwrap_or(30);
        let delay = self
            .first_delay
            .saturating_mul(1i64 << exponent)
            .min(self.max_delay);
        #[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]
        let spread = (delay as f64 * 0.2 * jitter.clamp(-1.0, 1.0)) as i64;
        now + (delay + spread).max(1)
    }

    /// Whether a message created at `created_at` has waited long enough.
    pub fn expired(&self, created_at: Timestamp, now: Timestamp) -> bool {
        now - created_at >= self.max_age
    }
}

/// How a failed attempt is to be treated, before the retry policy turns it into a verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Connection trouble, TLS, timeouts, 4xx, Google unreachable: try again later.
    Temporary(String),
    /// 550 5.4.5: the account's daily quota; try again when the window frees.
    Quota { until: Timestamp, reason: String },
    /// A human must act (reconnect the Google account, fix credentials).
    NeedsHuman(String),
    /// 5xx: the server will not take this message, ever.
    Permanent(String),
}

impl Failure {
    pub fn verdict(
        self,
        policy: &RetryPolicy,
        attempts: i64,
        created_at: Timestamp,
        now: Timestamp,
        jitter: f64,
    ) -> Verdict {
        match self {
            Failure::Temporary(reason) if policy.expired(created_at, now) => Verdict::Failed {
                reason: format!(
                    "gave up after {} days of temporary failures; the last: {reason}",
                    policy.max_age / 86_400
                ),
            },
            Failure::Temporary(reason) => Verdict::Deferred {
                until: policy.next_attempt(attempts, now, jitter),
                reason,
            },
            Failure::Quota { until, reason } => Verdict::Deferred { until, reason },
            Failure::NeedsHuman(reason) => Verdict::Held { reason },
            Failure::Permanent(reason) => Verdict::Failed { reason },
        }
    }
}

/// What went wrong in an attempt, as far as deciding what to do next cares.
#[derive(Debug, Clone, Copy)]
pub enum Trouble<'a> {
    /// The server answered `reply` at `stage`.
    Reply { stage: Stage, reply: &'a Reply },
    /// No answer to go by: refused or dropped connection, TLS failure, timeout, garbled reply.
    /// `what` says which, for the record.
    Transport { what: &'a str },
    /// The message's envelope cannot be written as SMTP (an address with a line break): no
    /// server will ever take it, and nothing was sent.
    Unsendable { what: &'a str },
}

/// The rules that turn a failed attempt into what happens to the message, in order: the first
/// that matches decides. `quota_frees` is when the account's 24-hour window frees a send.
pub fn classify(trouble: Trouble<'_>, quota_frees: Timestamp) -> Failure {
    match trouble {
        Trouble::Reply { reply, .. } if reply.code == 550 && reply.enhanced() == Some("5.4.5") => {
            Failure::Quota {
                until: quota_frees,
                reason: format!("Gmail's daily sending quota: {}", reply.text()),
            }
        }
        Trouble::Reply { reply, .. } if reply.is_temporary() => Failure::Temporary(reply.text()),
        // A refused login is not the message's fault and will not pass by itself.
        Trouble::Reply {
            stage: Stage::Auth,
            reply,
        } => Failure::NeedsHuman(format!("the server refused the login: {}", reply.text())),
        Trouble::Reply { reply, .. } => Failure::Permanent(reply.text()),
        Trouble::Transport { what } => Failure::Temporary(what.to_string()),
        Trouble::Unsendable { what } => Failure::Permanent(what.to_string()),
    }
}

/// Gmail's daily sending limits: 500 for consumer accounts, 2,000 for Workspace.
pub fn default_daily_limit(account: &str) -> i64 {
    let domain = account.rsplit_once('@').map(|(_, d)| d).unwrap_or_default();
    if matches!(domain, "gmail.com" | "googlemail.com") {
        500
    } else {
        2000
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_bounded_jitter() {
        let p = RetryPolicy::default();
        assert_eq!(p.next_attempt(1, 0, 0.0), 60);
        assert_eq!(p.next_attempt(2, 0, 0.0), 120);
        assert_eq!(p.next_attempt(3, 0, 0.0), 240);
        assert_eq!(p.next_attempt(20, 0, 0.0), 3600);
        assert_eq!(p.next_attempt(1, 0, 1.0), 72);
        assert_eq!(p.next_attempt(1, 0, -1.0), 48);
        assert_eq!(p.next_attempt(1_000, 0, 0.0), 3600, "no overflow");
    }

    #[test]
    fn temporary_failures_become_deferred_until_the_message_is_too_old() {
        let p = RetryPolicy::default();
        let young = Failure::Temporary("421 4.7.0".into()).verdict(&p, 1, 0, 100, 0.0);
        assert_eq!(
            young,
            Verdict::Deferred {
                until: 160,
                reason: "421 4.7.0".into()
            }
        );
        let old = Failure::Temporary("421 4.7.0".into()).verdict(&p, 9, 0, 3 * 86_400, 0.0);
        assert!(
            matches!(old, Verdict::Failed { reason } if reason.starts_with("gave up after 3 days"))
        );
        assert_eq!(
            Failure::Permanent("550".into())
                .verdict(&p, 1, 0, 1, 0.0)
                .state(),
            MessageState::Failed
        );
        assert_eq!(
            Failure::NeedsHuman("x".into())
                .verdict(&p, 1, 0, 1, 0.0)
                .state(),
            MessageState::Held
        );
        assert_eq!(
            Failure::Quota {
                until: 500,
                reason: "q".into()
            }
            .verdict(&p, 1, 0, 1, 0.0),
            Verdict::Deferred {
                until: 500,
                reason: "q".into()
            }
        );
    }

    /// Every classification rule, one row each: what the server said (or that it said nothing),
    /// where, and what becomes of the message.
    #[test]
    fn each_failure_is_classified_by_one_rule() {
        fn reply(text: &str) -> Reply {
            let (code, rest) = text.split_once(' ').unwrap();
            Reply {
                code: code.parse().unwrap(),
                lines: vec![rest.to_string()],
            }
        }
        let rows: &[(&str, Option<Stage>, &str)] = &[
            (
                "421 4.7.0 Try again later, closing connection.",
                Some(Stage::MailFrom),
                "temporary",
            ),
            (
                "450 4.2.1 The user you are trying to contact is receiving mail too quickly.",
                Some(Stage::RcptTo),
                "temporary",
            ),
            (
                "451 4.3.0 Mail server temporarily rejected message.",
                Some(Stage::DataEnd),
                "temporary",
            ),
            (
                "452 4.5.3 Your message has too many recipients.",
                Some(Stage::RcptTo),
                "temporary",
            ),
            (
                "454 4.7.0 Too many login attempts, please try again later.",
                Some(Stage::Auth),
                "temporary",
            ),
            (
                "535 5.7.8 Username and Password not accepted.",
                Some(Stage::Auth),
                "needs a human",
            ),
            (
                "550 5.4.5 Daily user sending quota exceeded.",
                Some(Stage::MailFrom),
                "quota",
            ),
            (
                "550 5.1.1 The email account that you tried to reach does not exist.",
                Some(Stage::RcptTo),
                "permanent",
            ),
            (
                "552 5.3.4 Your message exceeded Google's message size limits.",
                Some(Stage::DataEnd),
                "permanent",
            ),
            (
                "554 5.6.0 Message is malformed.",
                Some(Stage::DataEnd),
                "permanent",
            ),
            (
                "could not connect to smtp.gmail.com:587: Connection refused",
                None,
                "temporary",
            ),
            (
                "TLS with smtp.gmail.com failed: invalid peer certificate",
                None,
                "temporary",
            ),
            ("no answer within 60 s at DATA", None, "temporary"),
            (
                "the server closed the connection at MAIL FROM",
                None,
                "temporary",
            ),
            (
                "nothing sent at RCPT TO: a recipient address holds a line break",
                None,
                "permanent",
            ),
        ];
        for (said, stage, expected) in rows {
            let parsed = stage.map(|_| reply(said));
            let trouble = match (stage, &parsed) {
                (Some(stage), Some(parsed)) => Trouble::Reply {
                    stage: *stage,
                    reply: parsed,
                },
                _ if said.starts_with("nothing sent") => Trouble::Unsendable { what: said },
                _ => Trouble::Transport { what: said },
            };
            let got = match classify(trouble, 7_200) {
                Failure::Temporary(_) => "temporary",
                Failure::Quota { until: 7_200, .. } => "quota",
                Failure::Quota { .. } => "quota at the wrong time",
                Failure::NeedsHuman(_) => "needs a human",
                Failure::Permanent(_) => "permanent",
            };
            assert_eq!(got, *expected, "{said}");
        }
    }

    #[test]
    fn daily_limits_follow_the_account_kind() {
        assert_eq!(default_daily_limit("a@gmail.com"), 500);
        assert_eq!(default_daily_limit("a@company.example"), 2000);
    }
}
