//! One attempt for one message: the guard, the SMTP transaction, and the settlement that
//! records the attempt and the message's new state in one transaction.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::task::JoinHandle;

use super::pool::{reusable_after, stale};
use super::{Dispatcher, jitter};

use crate::app::gmail_login::GmailLoginError;
use crate::app::tokens::TokenError;
use crate::clock::Timestamp;
use crate::domain::outgoing::{Failure, Trouble, Verdict, classify};
use crate::domain::{AuthMethod, MailServer, Stage};
use crate::metrics::bump;
use crate::smtp_out::{SmtpError, SmtpSession};
use crate::store::{AttemptRecord, Claimed, Settlement, StoreError};

/// The note of a message's final dot, being committed while the worker gets on with the message
/// before it. The dot waits for it.
pub(super) type DotNote = JoinHandle<Result<bool, StoreError>>;

/// What one attempt came to.
pub(super) struct Outcome {
    pub(super) verdict: Verdict,
    pub(super) stage: Stage,
    pub(super) reply: Option<String>,
    pub(super) detail: String,
    /// False when nothing was sent to the server (mailgate's own quota guard).
    pub(super) counts: bool,
    /// The final dot went out and no answer came: the server may have the message.
    pub(super) unknown: bool,
    /// The Gmail account whose daily quota this send used.
    pub(super) sent_by: Option<String>,
}

/// How far one SMTP transaction got.
enum Transmission {
    /// The server answered the final dot with 250.
    Accepted {
        reply: crate::domain::Reply,
        refused: Vec<(String, crate::domain::Reply)>,
        next: Option<Opened>,
    },
    /// Refused or broken before the final dot: the server cannot have the message.
    BeforeDot(SmtpError),
    /// The server answered the final dot with a refusal.
    Answered(SmtpError, Option<Opened>),
    /// The final dot went out and no answer came: the server may have the message.
    Unknown(SmtpError),
    /// The final dot was not sent because the store could not note it (or the lease is gone).
    NotNoted(String),
}

/// The next message's envelope, sent behind this one's final dot (RFC 2920): on the session its
/// DATA is open (`Ok`, with the recipients refused for good), or the server refused it. Nothing
/// of that message can be delivered before its own final dot.
pub(super) struct Opened {
    id: String,
    result: Result<Vec<(String, crate::domain::Reply)>, SmtpError>,
}

/// Why an attempt stopped, before the retry policy weighs it.
pub(super) struct Stop {
    pub(super) failure: Failure,
    pub(super) stage: Stage,
    pub(super) reply: Option<String>,
}

impl Stop {
    pub(super) fn from_smtp(e: &SmtpError, quota_frees: Timestamp) -> Self {
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

    pub(super) fn from_login(e: GmailLoginError, now: Timestamp) -> Self {
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

impl Dispatcher {
    /// Records the attempt and settles the message; its lease ends here. The record goes to the
    /// store's next group commit and the worker goes on to its next message without waiting:
    /// the message stays in hand (renewed, not claimable) until the commit answers, and a crash
    /// before then finds its final-dot note, the "possibly sent" case.
    pub(super) fn settle(self: &Arc<Self>, message: &Claimed, outcome: Outcome) {
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
        let failed = matches!(outcome.verdict, Verdict::Failed { .. });
        let stage = serde_json::to_value(outcome.stage)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let sent_by = match outcome.verdict {
            Verdict::Sent => outcome.sent_by,
            _ => None,
        };
        let settlement = Settlement {
            id: message.id.clone(),
            lease: message.lease.clone(),
            verdict: outcome.verdict,
            attempt: AttemptRecord {
                stage,
                reply: outcome.reply,
                detail: outcome.detail,
            },
            counts_as_attempt: outcome.counts,
            outcome_unknown: outcome.unknown,
            sent_by,
            now,
        };
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let (id, lease) = (settlement.id.clone(), settlement.lease.clone());
            let sent_by = settlement.sent_by.clone();
            let state = settlement.verdict.state();
            match this.app.store.finish_attempt(settlement).await {
                Ok(true) => tracing::debug!(%id, %state, "attempt recorded"),
                Ok(false) => tracing::warn!(%id, "lease lost before the attempt was recorded"),
                Err(e) => tracing::error!(%id, "cannot record the attempt: {e}"),
            }
            if let Some(account) = &sent_by {
                // Recorded (or failed to be, and then counted here all the same: the safe side).
                this.send_settled(account).await;
            }
            this.lock_lanes().let_go(&id, &lease);
            if failed {
                this.failed_since_bounces.store(true, Ordering::Relaxed);
            }
            this.settled.notify_one();
            this.app.settled.send_modify(|n| *n += 1);
        });
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

    /// One attempt for one message. `opened` is this message's envelope if it went behind the
    /// previous message's dot on `session`; `next`, the message to send behind this one's, which
    /// leaves its envelope in `opened` for the next attempt.
    pub(super) async fn deliver(
        &self,
        server: &MailServer,
        message: &Claimed,
        note: DotNote,
        session: &mut Option<SmtpSession>,
        opened: &mut Option<Opened>,
        next: Option<&Claimed>,
    ) -> Outcome {
        let now = self.app.now();
        let account = Self::account_of(server);
        let gmail = server.auth == AuthMethod::Gmail;
        let mut mine = opened.take();
        if mine.as_ref().is_some_and(|o| o.id != message.id) {
            // Opened for another message: never send this one into it.
            Self::drop_session(session).await;
            mine = None;
        }
        if gmail && let Some(deferral) = self.quota_guard(server, &account, now).await {
            Self::leave_unsent(session, &mine).await;
            return deferral;
        }
        // The guard took one of the day's sends for this message: given back unless it went.
        *opened = mine;
        let outcome = self
            .transact(server, message, note, session, opened, next)
            .await;
        if gmail && !matches!(outcome.verdict, Verdict::Sent) {
            self.send_not_made(&account).await;
        }
        outcome
    }

    /// The attempt past the guard: the body, a session, the SMTP transaction.
    async fn transact(
        &self,
        server: &MailServer,
        message: &Claimed,
        note: DotNote,
        session: &mut Option<SmtpSession>,
        opened: &mut Option<Opened>,
        next: Option<&Claimed>,
    ) -> Outcome {
        let now = self.app.now();
        let account = Self::account_of(server);
        let gmail = server.auth == AuthMethod::Gmail;
        let mut mine = opened.take();
        let stored = match &message.body {
            Some(body) => Ok(Some(Cow::Borrowed(body.as_slice()))),
            None => self
                .app
                .store
                .message_body(&message.id)
                .await
                .map(|b| b.map(Cow::Owned)),
        };
        let body = match stored {
            Ok(Some(body)) => body,
            Ok(None) => {
                Self::leave_unsent(session, &mine).await;
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
                Self::leave_unsent(session, &mine).await;
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
        let mut note = Some(note);
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
            // What went behind the last dot belongs to the session it went on.
            let envelope = mine.take().map(|o| o.result);
            let sent = self
                .transmit(&mut live, message, &body, &mut note, envelope, next)
                .await;
            let error = match sent {
                Transmission::Accepted {
                    reply,
                    refused,
                    next,
                } => {
                    *session = Some(live);
                    *opened = next;
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
                Transmission::Answered(e, Some(next))
                    if next.result.is_ok() && !live.abandoned() =>
                {
                    // The next message's DATA is open behind this refusal: the session goes on
                    // with it, no RSET.
                    *session = Some(live);
                    *opened = Some(next);
                    return self.refused(message, e, &account, now).await;
                }
                Transmission::Answered(e, next) => {
                    if live.abandoned() {
                        live.abandon().await;
                    } else if reusable_after(&e) && live.rset().await.is_ok() {
                        *session = Some(live);
                        *opened = next;
                    }
                    return self.refused(message, e, &account, now).await;
                }
                Transmission::BeforeDot(e) => e,
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
            return self.refused(message, error, &account, now).await;
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

    /// The outcome of a refusal or a broken transaction before any answer to the final dot.
    async fn refused(
        &self,
        message: &Claimed,
        error: SmtpError,
        account: &str,
        now: Timestamp,
    ) -> Outcome {
        let frees = self.quota_frees(account, now).await;
        let stop = Stop::from_smtp(&error, frees);
        if let Failure::Quota { until, .. } = &stop.failure {
            self.quota_exceeded(account, *until).await;
        }
        self.outcome(message, stop, error.to_string())
    }

    /// The message will not go on this session now: a DATA opened for it must not stay open,
    /// and only hanging up closes it.
    async fn leave_unsent(session: &mut Option<SmtpSession>, opened: &Option<Opened>) {
        let open = opened.as_ref().is_some_and(|o| o.result.is_ok());
        if open || session.as_ref().is_some_and(SmtpSession::abandoned) {
            Self::drop_session(session).await;
        }
    }

    async fn drop_session(session: &mut Option<SmtpSession>) {
        if let Some(live) = session.take() {
            live.abandon().await;
        }
    }

    /// One SMTP transaction for `message`, its envelope already sent if `envelope` is given. The
    /// final dot goes out only once the store has noted it under this worker's lease: a restart
    /// that finds the note knows Gmail may have the message, and a worker that lost its lease
    /// never sends it. `next` rides behind the dot.
    async fn transmit(
        &self,
        live: &mut SmtpSession,
        message: &Claimed,
        body: &[u8],
        note: &mut Option<DotNote>,
        envelope: Option<Result<Vec<(String, crate::domain::Reply)>, SmtpError>>,
        next: Option<&Claimed>,
    ) -> Transmission {
        let opened = match envelope {
            Some(opened) => opened,
            None => live.open_data(&message.mail_from, &message.rcpt_to).await,
        };
        let refused = match opened {
            Ok(refused) => refused,
            Err(e) => return Transmission::BeforeDot(e),
        };
        if let Err(e) = live.write_body(body).await {
            return Transmission::BeforeDot(e);
        }
        // A retry on a fresh session reuses the note the first try waited for.
        let noted = match note.take() {
            Some(pending) => pending.await.unwrap_or(Err(StoreError::Closed)),
            None => Ok(true),
        };
        match noted {
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
        let (verdict, next) = match next {
            Some(next) => {
                let (verdict, result) =
                    live.end_data_and_open(&next.mail_from, &next.rcpt_to).await;
                let opened = Opened {
                    id: next.id.clone(),
                    result,
                };
                (verdict, Some(opened))
            }
            None => (live.end_data().await, None),
        };
        match verdict {
            Ok(reply) => Transmission::Accepted {
                reply,
                refused,
                next,
            },
            Err(e @ SmtpError::Refused { .. }) => Transmission::Answered(e, next),
            Err(e) => Transmission::Unknown(e),
        }
    }
}
