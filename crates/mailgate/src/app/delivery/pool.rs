//! Sessions: opened and authenticated (for Gmail through the one login path), kept idle
//! between messages with the session slot they hold, and judged reusable or not after a
//! failure.

use std::collections::HashMap;
use std::time::Instant;

use mailgate_smtp::Credentials;

use super::attempt::Stop;
use super::slots::Slot;
use super::{Dispatcher, IDLE_REUSE};

use crate::domain::outgoing::Failure;
use crate::domain::{AuthMethod, MailServer, Stage};
use crate::smtp_out::{SmtpError, SmtpSession};

/// The session is dead or dying: a reused one gets one fresh replacement before the message is
/// charged an attempt.
pub(super) fn stale(e: &SmtpError) -> bool {
    match e {
        SmtpError::Closed(_) | SmtpError::Timeout { .. } => true,
        SmtpError::Refused { reply, .. } => {
            reply.code == 421 || (reply.code == 451 && reply.enhanced() == Some("4.4.2"))
        }
        _ => false,
    }
}

/// Whether a session that produced `e` can take the next message after an RSET.
pub(super) fn reusable_after(e: &SmtpError) -> bool {
    matches!(e, SmtpError::Refused { reply, .. } if reply.code != 421)
}

/// A session waiting for its server's next message, with the account's slot it holds.
pub(super) struct Idle {
    session: SmtpSession,
    slot: Slot,
    since: Instant,
}

impl Dispatcher {
    fn lock_idle(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Vec<Idle>>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The newest idle session of `server_id`, with its slot; older ones are closed.
    pub(super) fn take_idle(&self, server_id: i64) -> Option<(SmtpSession, Slot)> {
        let mut idle = self.lock_idle();
        let list = idle.get_mut(&server_id)?;
        while let Some(entry) = list.pop() {
            if entry.since.elapsed() < IDLE_REUSE {
                return Some((entry.session, entry.slot));
            }
            tokio::spawn(async move {
                entry.session.quit().await;
                entry.slot.release().await;
            });
        }
        None
    }

    pub(super) fn put_idle(&self, server_id: i64, session: SmtpSession, slot: Slot) {
        self.lock_idle().entry(server_id).or_default().push(Idle {
            session,
            slot,
            since: Instant::now(),
        });
    }

    /// Closes the idle sessions `pick` chooses, freeing their slots.
    async fn close_idle(&self, pick: impl Fn(&Idle) -> bool) {
        let closing: Vec<Idle> = {
            let mut idle = self.lock_idle();
            let mut closing = Vec::new();
            for list in idle.values_mut() {
                let (close, keep): (Vec<Idle>, Vec<Idle>) = list.drain(..).partition(&pick);
                *list = keep;
                closing.extend(close);
            }
            idle.retain(|_, list| !list.is_empty());
            closing
        };
        for entry in closing {
            entry.session.quit().await;
            entry.slot.release().await;
        }
    }

    /// Frees the slots `account`'s idle sessions hold, for a lane of another of its servers.
    pub(super) async fn close_idle_of(&self, account: &str) {
        self.close_idle(|entry| entry.slot.account() == account)
            .await;
    }

    /// Closes sessions idle too long to reuse: their slots may serve another instance.
    pub(super) async fn close_stale_idle(&self) {
        self.close_idle(|entry| entry.since.elapsed() >= IDLE_REUSE)
            .await;
    }

    /// Closes every idle session (stopping, or this instance's slots were taken for dead).
    pub(super) async fn close_all_idle(&self) {
        self.close_idle(|_| true).await;
    }

    /// Opens and authenticates a session. For Gmail, a 535 gets one fresh token and one more try;
    /// a second 535 means the connection needs a human, and the server is marked so.
    pub(super) async fn connect(&self, server: &MailServer) -> Result<SmtpSession, Stop> {
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
}
