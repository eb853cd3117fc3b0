//! The one way to open an authenticated Gmail session, for delivery, Test Connection and the
//! doctor: an access token (refreshed ahead of expiry, one refresh at a time), a session to the
//! configured Gmail endpoint, AUTH XOAUTH2. On a 535 the token is refreshed once and the login
//! tried again; a second 535 means Google no longer takes this connection, and it is marked
//! "Reconnect needed" with Google's reply.

use super::App;
use super::tokens::TokenError;
use crate::domain::MailServer;
use crate::metrics::bump;
use crate::smtp_out::{SmtpError, SmtpSession};
use mailgate_smtp::Credentials;

/// What happened on the way, for callers that show their steps (Test Connection).
pub enum LoginStep<'a> {
    /// An access token is in hand; `fresh` when it was forced after a refused login.
    Token {
        fresh: bool,
    },
    Connected(&'a SmtpSession),
    /// The first login was refused with a 535: once more with a fresh token.
    Retrying(&'a SmtpError),
    LoggedIn {
        account: &'a str,
    },
}

#[derive(Debug)]
pub enum GmailLoginError {
    /// No usable token (not connected, reconnect needed, credentials, Google unavailable).
    Token(TokenError),
    /// Connecting, TLS, or a login refusal other than a second 535.
    Smtp(SmtpError),
    /// The server does not offer AUTH XOAUTH2: it is not Gmail's SMTP server.
    NoXoauth2,
    /// A fresh token was refused too; the connection is now marked "Reconnect needed".
    Rejected { reason: String, error: SmtpError },
}

impl App {
    pub async fn gmail_session(
        &self,
        server: &MailServer,
        mut step: impl FnMut(LoginStep<'_>),
    ) -> Result<SmtpSession, GmailLoginError> {
        let account = server.username.clone().unwrap_or_default();
        let target = self.smtp_target(server);
        let mut forced = false;
        loop {
            let token = self
                .access_token(&account, forced)
                .await
                .map_err(GmailLoginError::Token)?;
            step(LoginStep::Token { fresh: forced });
            let mut session = self
                .smtp
                .connect(&target)
                .await
                .map_err(GmailLoginError::Smtp)?;
            step(LoginStep::Connected(&session));
            if !session.offers_auth("XOAUTH2") {
                session.quit().await;
                return Err(GmailLoginError::NoXoauth2);
            }
            let error = match session
                .auth(Credentials::XOAuth2 {
                    user: &account,
                    token: &token,
                })
                .await
            {
                Ok(()) => {
                    bump(&self.metrics.smtp_logins_ok);
                    if let Err(e) = self.store.mark_connection_valid(&account, self.now()).await {
                        tracing::warn!(account, "cannot note the valid login: {e}");
                    }
                    step(LoginStep::LoggedIn { account: &account });
                    return Ok(session);
                }
                Err(error) => error,
            };
            bump(&self.metrics.smtp_logins_failed);
            session.quit().await;
            let refused_535 = error.reply().filter(|r| r.code == 535).cloned();
            match refused_535 {
                Some(_) if !forced => {
                    step(LoginStep::Retrying(&error));
                    forced = true;
                }
                Some(reply) => {
                    let reason = format!(
                        "Gmail refused a fresh token at login: {}",
                        reply.lines.first().cloned().unwrap_or_default()
                    );
                    if let Err(e) = self
                        .store
                        .mark_reconnect_needed(&account, &reason, self.now())
                        .await
                    {
                        tracing::error!(account, "cannot mark Reconnect needed: {e}");
                    }
                    return Err(GmailLoginError::Rejected { reason, error });
                }
                None => return Err(GmailLoginError::Smtp(error)),
            }
        }
    }
}
