//! What the admin does with Incoming Mail Servers: the form, "Test & Confirm", "Fetch Now",
//! "Reset Confirmation", the webhook secret (shown once). Flectra's words and buttons; its
//! errors said in words, never a traceback (odoo/odoo#268824).

use secrecy::{ExposeSecret, SecretString};

use super::fetch::FetchError;
use crate::app::{App, AppError};
use crate::domain::incoming::{IncomingDraft, IncomingServer, IncomingStatus};

/// What "Test & Confirm" found.
#[derive(Debug, Clone)]
pub struct TestReport {
    pub folder: String,
    pub messages: u32,
}

/// An incoming server with its account's Google connection, as the pages show it.
pub struct IncomingSummary {
    pub server: IncomingServer,
    pub badge: crate::domain::TokenBadge,
}

/// What "Fetch Now" did.
#[derive(Debug, Clone, Copy)]
pub struct FetchReport {
    pub stored: usize,
}

/// "INBOX holds 3 messages", as the page and the shell say it.
impl std::fmt::Display for TestReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.messages;
        write!(f, "{} holds {n} message{}", self.folder, plural(n.into()))
    }
}

/// "3 new messages".
impl std::fmt::Display for FetchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.stored;
        write!(f, "{n} new message{}", plural(n as u64))
    }
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

impl App {
    pub async fn incoming_servers(&self) -> Result<Vec<IncomingServer>, AppError> {
        Ok(self.store.incoming_servers().await?)
    }

    pub async fn incoming_summaries(&self) -> Result<Vec<IncomingSummary>, AppError> {
        let connections = self.store.connections().await?;
        let client_id = self.google_settings().await?.client_id;
        Ok(self
            .store
            .incoming_servers()
            .await?
            .into_iter()
            .map(|server| {
                let connection = connections.iter().find(|c| c.email == server.username);
                IncomingSummary {
                    badge: crate::domain::TokenBadge::of(connection, client_id.as_deref()),
                    server,
                }
            })
            .collect())
    }

    pub async fn incoming_server(&self, id: i64) -> Result<IncomingServer, AppError> {
        self.store
            .incoming_server(id)
            .await?
            .ok_or(AppError::NotFound("Incoming mail server"))
    }

    /// A new server, not confirmed yet, and its webhook secret (shown once: only its sealed
    /// form is kept).
    pub async fn create_incoming(
        &self,
        draft: &IncomingDraft,
    ) -> Result<(i64, SecretString), AppError> {
        let valid = draft.validate().map_err(AppError::Invalid)?;
        let secret = new_webhook_secret();
        let id = self
            .store
            .create_incoming(&self.sealer, &valid, &secret, self.now())
            .await
            .map_err(refused_duplicate)?;
        self.incoming_changed.notify_one();
        Ok((id, secret))
    }

    pub async fn update_incoming(&self, id: i64, draft: &IncomingDraft) -> Result<(), AppError> {
        let valid = draft.validate().map_err(AppError::Invalid)?;
        if !self
            .store
            .update_incoming(id, &valid, self.now())
            .await
            .map_err(refused_duplicate)?
        {
            return Err(AppError::NotFound("Incoming mail server"));
        }
        self.incoming_changed.notify_one();
        Ok(())
    }

    pub async fn delete_incoming(&self, id: i64) -> Result<(), AppError> {
        if !self.store.delete_incoming(id).await? {
            return Err(AppError::NotFound("Incoming mail server"));
        }
        self.incoming_changed.notify_one();
        Ok(())
    }

    /// A new webhook secret, replacing the old one at once; shown once.
    pub async fn rotate_webhook_secret(&self, id: i64) -> Result<SecretString, AppError> {
        self.incoming_server(id).await?;
        let secret = new_webhook_secret();
        self.store
            .replace_webhook_secret(&self.sealer, id, &secret, self.now())
            .await?;
        Ok(secret)
    }

    /// "Test & Confirm": logs in to Gmail's IMAP server with the account's Google connection
    /// and opens the folder; on success the server is confirmed and fetched from then on.
    /// Errors are said in words, and the server stays as it was.
    pub async fn test_and_confirm(&self, id: i64) -> Result<TestReport, String> {
        let server = self.incoming_server(id).await.map_err(|e| e.to_string())?;
        let tested = self.test_folder(&server).await;
        let now = self.now();
        match tested {
            Ok(report) => {
                self.store
                    .confirm_incoming(id, true, now)
                    .await
                    .map_err(|e| e.to_string())?;
                self.incoming_changed.notify_one();
                Ok(report)
            }
            Err(e) => {
                let _ = self.store.set_incoming_status(id, &e.status(), now).await;
                Err(format!("Connection test failed: {}", e.status().label()))
            }
        }
    }

    async fn test_folder(&self, server: &IncomingServer) -> Result<TestReport, FetchError> {
        let limit = self.imap.command_timeout;
        let folder = self
            .on_one_imap_connection(&server.username, async |session| {
                Ok(crate::imap_in::select(session, &server.folder, limit).await?)
            })
            .await?;
        Ok(TestReport {
            folder: server.folder.clone(),
            messages: folder.exists,
        })
    }

    /// "Reset Confirmation": fetching stops; where it stood is kept.
    pub async fn reset_confirmation(&self, id: i64) -> Result<(), AppError> {
        self.incoming_server(id).await?;
        self.store.confirm_incoming(id, false, self.now()).await?;
        self.incoming_changed.notify_one();
        Ok(())
    }

    /// "Fetch Now": one pass on a connection of its own; the webhook worker hands what it
    /// stored over as usual.
    pub async fn fetch_now(&self, id: i64) -> Result<FetchReport, String> {
        let server = self.incoming_server(id).await.map_err(|e| e.to_string())?;
        if !server.confirmed {
            return Err(
                "Test & Confirm this server first: mailgate fetches confirmed servers only.".into(),
            );
        }
        let fetched = self
            .on_one_imap_connection(&server.username, async |session| {
                self.catch_up(&server, session).await
            })
            .await;
        let now = self.now();
        match fetched {
            Ok((_, stored)) => {
                let _ = self
                    .store
                    .set_incoming_status(id, &IncomingStatus::Ok, now)
                    .await;
                Ok(FetchReport { stored })
            }
            Err(e) => {
                let _ = self.store.set_incoming_status(id, &e.status(), now).await;
                Err(e.status().label())
            }
        }
    }
}

fn new_webhook_secret() -> SecretString {
    SecretString::from(format!("mgw_{}", crate::crypto::random_token()))
}

fn refused_duplicate(e: crate::store::StoreError) -> AppError {
    match e {
        crate::store::StoreError::Duplicate(what) => AppError::Invalid(crate::domain::FieldErrors(
            vec![("name", format!("{what} exists already."))],
        )),
        other => AppError::Store(other),
    }
}

/// The secret as the page shows it once.
pub fn reveal(secret: &SecretString) -> &str {
    secret.expose_secret()
}
