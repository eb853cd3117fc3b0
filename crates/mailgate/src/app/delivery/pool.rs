//! Sessions: opened and authenticated (for Gmail through the one login path), kept idle
//! between messages, and judged reusable or not after a failure.

use std::time::Instant;

use mailgate_smtp::Credentials;

use super::attempt::Stop;
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

impl Dispatcher {
    pub(super) fn take_idle(&self, server_id: i64) -> Option<SmtpSession> {
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

    pub(super) fn put_idle(&self, server_id: i64, session: SmtpSession) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.entry(server_id)
            .or_default()
            .push((session, Instant::now()));
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
