//! "Test Connection": a real SMTP session against the server, with TLS verified, the AUTH reply
//! checked (Flectra ignores it), MAIL FROM, RCPT TO and DATA up to the 354. Then mailgate hangs up:
//! the message is never finished, so nothing is sent. (RSET cannot follow a 354: the server would
//! read it as message text.)

use serde::{Deserialize, Serialize};

use super::gmail_login::{GmailLoginError, LoginStep};
use super::tokens::TokenError;
use super::{App, AppError};
use crate::clock::Timestamp;
use crate::domain::smtp_reply::advice;
use crate::domain::{AuthMethod, MailServer, Stage};
use crate::smtp_out::{SmtpError, SmtpSession};
use mailgate_smtp::{Command, Credentials};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TestReport {
    pub ok: bool,
    pub server: String,
    pub at: Timestamp,
    /// What worked, in order.
    pub steps: Vec<String>,
    pub failure: Option<TestFailure>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TestFailure {
    pub stage: Stage,
    pub message: String,
    /// The server's reply, verbatim.
    pub reply: Option<String>,
    /// Google's XOAUTH2 challenge, decoded.
    pub challenge: Option<String>,
    pub fix: Option<String>,
}

impl TestReport {
    pub const SUCCESS: &'static str = "Connection Test Successful!";
}

struct Run<'a> {
    app: &'a App,
    server: &'a MailServer,
    steps: Vec<String>,
}

impl App {
    pub async fn test_server(&self, server_id: i64) -> Result<TestReport, AppError> {
        let server = self
            .store
            .server(server_id)
            .await?
            .ok_or(AppError::NotFound("Outgoing mail server"))?;
        let mut run = Run {
            app: self,
            server: &server,
            steps: Vec::new(),
        };
        let failure = run.go().await.err();
        let report = TestReport {
            ok: failure.is_none(),
            server: server.name.clone(),
            at: self.now(),
            steps: run.steps,
            failure,
        };
        let json = serde_json::to_string(&report).unwrap_or_default();
        self.store
            .record_test(server_id, report.ok, &json, report.at)
            .await?;
        Ok(report)
    }
}

impl Run<'_> {
    async fn go(&mut self) -> Result<(), TestFailure> {
        let settings = self
            .app
            .google_settings()
            .await
            .map_err(|e| failure(Stage::Connect, e.to_string(), None))?;
        let sender = self.sender();
        let recipient = settings
            .test_recipient
            .clone()
            .unwrap_or_else(|| sender.clone());
        let mut session = match self.server.auth {
            AuthMethod::Gmail => self.gmail_session().await?,
            AuthMethod::Password => {
                let mut session = self.connect().await?;
                let password = self
                    .app
                    .store
                    .server_password(&self.app.sealer, self.server.id)
                    .await
                    .map_err(|e| failure(Stage::Auth, e.to_string(), None))?
                    .ok_or_else(|| failure(Stage::Auth, "no password is stored".into(), None))?;
                let user = self.server.username.clone().unwrap_or_default();
                session
                    .auth(Credentials::Plain {
                        user: &user,
                        password: &password,
                    })
                    .await
                    .map_err(|e| smtp_failure(&e))?;
                self.steps.push(format!("Logged in as {user}"));
                session
            }
            AuthMethod::None => self.connect().await?,
        };
        let reply = session
            .command(Command::Mail(&sender), &[250])
            .await
            .map_err(|e| smtp_failure(&e))?;
        self.steps
            .push(format!("MAIL FROM:<{sender}>: {}", reply.text()));
        let reply = session
            .command(Command::Rcpt(&recipient), &[250, 251])
            .await
            .map_err(|e| smtp_failure(&e))?;
        self.steps
            .push(format!("RCPT TO:<{recipient}>: {}", reply.text()));
        let reply = session
            .command(Command::Data, &[354])
            .await
            .map_err(|e| smtp_failure(&e))?;
        self.steps.push(format!(
            "DATA: {} (then mailgate hung up, so nothing was sent)",
            reply.text()
        ));
        session.abandon().await;
        Ok(())
    }

    fn sender(&self) -> String {
        self.server
            .username
            .clone()
            .filter(|u| u.contains('@'))
            .or_else(|| self.server.from_filter.clone().filter(|f| f.contains('@')))
            .unwrap_or_else(|| format!("mailgate-test@{}", self.server.host))
    }

    async fn connect(&mut self) -> Result<SmtpSession, TestFailure> {
        let target = self.app.smtp_target(self.server);
        let session = self
            .app
            .smtp
            .connect(&target)
            .await
            .map_err(|e| smtp_failure(&e))?;
        self.steps.push(connected(&target, &session));
        Ok(session)
    }

    /// The shared Gmail login ([`App::gmail_session`]), its steps written down as they happen.
    async fn gmail_session(&mut self) -> Result<SmtpSession, TestFailure> {
        if self.server.username.is_none() {
            return Err(failure(
                Stage::Token,
                "the server has no Username".into(),
                None,
            ));
        }
        let target = self.app.smtp_target(self.server);
        let steps = &mut self.steps;
        let login = self
            .app
            .gmail_session(self.server, |step| match step {
                LoginStep::Token { fresh: false } => steps.push("Access token ready".into()),
                LoginStep::Token { fresh: true } => {
                    steps.push("Got a fresh access token from Google".into());
                }
                LoginStep::Connected(session) => steps.push(connected(&target, session)),
                LoginStep::Retrying(e) => steps.push(format!(
                    "AUTH XOAUTH2 refused ({}); trying once more with a fresh token",
                    e.reply().map(|r| r.text()).unwrap_or_default()
                )),
                LoginStep::LoggedIn { account } => {
                    steps.push(format!("AUTH XOAUTH2 as {account}: 235 accepted"));
                }
            })
            .await;
        login.map_err(|e| match e {
            GmailLoginError::Token(e) => token_failure(e),
            GmailLoginError::Smtp(e) | GmailLoginError::Rejected { error: e, .. } => {
                smtp_failure(&e)
            }
            GmailLoginError::NoXoauth2 => failure(
                Stage::Auth,
                "the server does not offer AUTH XOAUTH2".into(),
                Some("Check the SMTP host and port: Gmail offers XOAUTH2 on smtp.gmail.com, ports 587 (STARTTLS) and 465 (SSL/TLS).".into()),
            ),
        })
    }
}

/// "Connected to host:port, TLS verified (…); the server said: …"
fn connected(target: &crate::smtp_out::Target, session: &SmtpSession) -> String {
    let tls = session
        .get_ref()
        .tls_summary()
        .map(|t| format!(", TLS verified ({t})"))
        .unwrap_or_else(|| ", without TLS".into());
    format!(
        "Connected to {}:{}{tls}; the server said: {}",
        target.host,
        target.port,
        session.greeting().text()
    )
}

fn failure(stage: Stage, message: String, fix: Option<String>) -> TestFailure {
    TestFailure {
        stage,
        message,
        reply: None,
        challenge: None,
        fix,
    }
}

fn smtp_failure(e: &SmtpError) -> TestFailure {
    let stage = e.stage();
    let fix = match e {
        SmtpError::Refused { reply, .. } => advice(reply, stage).map(str::to_string),
        SmtpError::Connect { .. } => Some(
            "Check the SMTP host and port, and that this machine may connect to them.".into(),
        ),
        SmtpError::Tls { .. } => Some(
            "mailgate verifies every certificate and never skips that check. If the host name differs from the certificate's, use the host the certificate names; for a test server, trust its CA with MAILGATE_EXTRA_CA_FILE.".into(),
        ),
        SmtpError::NoStartTls => Some(
            "Choose SSL/TLS with port 465, or check that this port is the submission port (587).".into(),
        ),
        SmtpError::Timeout { .. } | SmtpError::Closed(_) => Some(
            "The server stopped answering: check the port and the connection security (STARTTLS for 587, SSL/TLS for 465).".into(),
        ),
        SmtpError::Protocol { .. } => Some("This port does not seem to speak SMTP.".into()),
        SmtpError::BadArgument { .. } => Some(
            "Correct the address: an address cannot hold a line break or an angle bracket.".into(),
        ),
    };
    let (reply, challenge) = match e {
        SmtpError::Refused {
            reply, challenge, ..
        } => (Some(reply.text()), challenge.clone()),
        _ => (None, None),
    };
    TestFailure {
        stage,
        message: e.to_string(),
        reply,
        challenge,
        fix,
    }
}

fn token_failure(e: TokenError) -> TestFailure {
    let fix = match &e {
        TokenError::NotConnected(_) | TokenError::ReconnectNeeded(_) => {
            Some("Click \"Connect your Gmail account\".".to_string())
        }
        TokenError::NoCredentials | TokenError::BadCredentials(_) => Some(
            "Setup your Gmail API credentials in the general settings (Client ID and Client Secret).".into(),
        ),
        TokenError::Temporary(_) => {
            Some("Google did not answer; try again in a minute.".to_string())
        }
        TokenError::Store(_) => None,
    };
    failure(Stage::Token, e.to_string(), fix)
}
