//! What one relay session may do: the [`Relay`] the SMTP session asks, answered by the app's
//! use cases. Logins, senders and submissions become SMTP replies here.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use mailgate_smtp::Reply;
use mailgate_smtp::server::{Envelope, Relay};

use crate::app::App;
use crate::app::outbox::SubmitError;
use crate::app::relay::{RelayAuth, RelayLogin, Relayed};
use crate::domain::{EmailAddress, route};

/// One session's view: who the peer is, whether the stream is TLS, who logged in.
pub struct Gate {
    pub app: Arc<App>,
    pub peer: IpAddr,
    pub tls: bool,
    /// The peer is on a trusted network: it may send without logging in.
    pub trusted: bool,
    pub stopping: tokio::sync::watch::Receiver<bool>,
    pub login: Mutex<Option<RelayLogin>>,
}

fn reply(code: u16, text: &str) -> Reply {
    Reply::new(code, &[text])
}

impl Gate {
    fn login(&self) -> Option<RelayLogin> {
        self.login.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Relay for Gate {
    fn needs_auth(&self) -> bool {
        !self.trusted
    }

    async fn authenticate(&self, user: &str, password: &str) -> Result<String, Reply> {
        match self.app.authenticate_relay(user, password, self.peer).await {
            Ok(RelayAuth::Accepted(login)) => {
                let name = login.name.clone();
                *self.login.lock().unwrap_or_else(|p| p.into_inner()) = Some(login);
                Ok(name)
            }
            Ok(RelayAuth::Wrong) => {
                tracing::warn!(peer = %self.peer, user, "relay login refused");
                Err(reply(
                    535,
                    "5.7.8 Username and Password not accepted: use a relay credential's name and its app password",
                ))
            }
            Ok(RelayAuth::Limited) => Err(reply(
                454,
                "4.7.0 Too many failed logins from your address; try again later",
            )),
            Err(e) => {
                tracing::error!(error = %e, "relay login could not be checked");
                Err(reply(454, "4.7.0 Temporary authentication failure"))
            }
        }
    }

    async fn accept_sender(&self, _user: Option<&str>, from: &str) -> Result<(), Reply> {
        if from.is_empty() {
            // The null sender (a bounce the application forwards): routed by its header From.
            return Ok(());
        }
        let Ok(address) = EmailAddress::parse(from) else {
            return Err(reply(553, "5.1.7 The sender address is not valid"));
        };
        if let Some(login) = self.login()
            && !login.may_send_as(&address)
        {
            let text = format!(
                "5.7.1 {address} is not a sender relay credential \u{201c}{}\u{201d} may use",
                login.name
            );
            return Err(reply(550, &text));
        }
        match self.app.routes().await {
            Ok(servers) if route(&servers, &address).is_some() => Ok(()),
            Ok(_) => {
                let text = format!("5.7.1 No outgoing mail server sends as {address}");
                Err(reply(550, &text))
            }
            Err(e) => {
                tracing::error!(error = %e, "relay could not read the servers");
                Err(reply(451, "4.3.0 Queue unavailable; try again later"))
            }
        }
    }

    async fn submit(&self, envelope: &Envelope, message: Vec<u8>) -> Result<String, Reply> {
        let login = self.login();
        let relayed = Relayed {
            mail_from: &envelope.from,
            recipients: &envelope.recipients,
            raw: &message,
            client_name: &envelope.client_name,
            peer: self.peer,
            tls: self.tls,
            login: login.as_ref(),
        };
        match self.app.submit_relayed(relayed).await {
            Ok(accepted) => Ok(accepted.id),
            Err(SubmitError::Invalid(e)) if e.field == "size" => {
                Err(reply(552, &format!("5.3.4 {}", e.message)))
            }
            Err(SubmitError::Invalid(e)) if e.field == "raw.From" || e.field == "from" => {
                Err(reply(550, &format!("5.7.1 {}: {}", e.field, e.message)))
            }
            Err(SubmitError::Invalid(e)) => Err(reply(
                554,
                &format!("5.6.0 Message refused: {}: {}", e.field, e.message),
            )),
            Err(e) => {
                tracing::error!(error = %e, "relay could not queue a message");
                Err(reply(
                    451,
                    "4.3.0 Queue unavailable, the message was not accepted; try again later",
                ))
            }
        }
    }

    async fn stopping(&self) {
        let mut stopping = self.stopping.clone();
        let _ = stopping.wait_for(|stop| *stop).await;
    }
}
