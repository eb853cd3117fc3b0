//! Outgoing Mail Servers: list, create, change, delete, each Gmail one with its token badge.

use std::sync::Arc;

use super::{App, AppError};
use crate::domain::mail_server::gmail_security;
use crate::domain::{AuthMethod, GoogleConnection, MailServer, ServerDraft, TokenBadge};
use crate::smtp_out::Target;
use crate::store::StoreError;

/// A server with what the list and form show about its Google connection.
#[derive(Debug, Clone)]
pub struct ServerSummary {
    pub server: MailServer,
    pub badge: Option<TokenBadge>,
    pub connection: Option<GoogleConnection>,
}

impl App {
    /// Where a session of `server` connects: for Gmail OAuth, always the configured Gmail
    /// endpoint (see [`MailServer::endpoint`]).
    pub fn smtp_target(&self, server: &MailServer) -> Target {
        let (endpoint, security) = server.endpoint(&self.config.gmail_smtp);
        Target {
            host: endpoint.host,
            port: endpoint.port,
            security,
        }
    }

    pub async fn server_summaries(&self) -> Result<Vec<ServerSummary>, AppError> {
        let client_id = self.google_settings().await?.client_id;
        let connections = self.store.connections().await?;
        let servers = self.store.list_servers().await?;
        Ok(servers
            .into_iter()
            .map(|server| summarize(server, &connections, client_id.as_deref()))
            .collect())
    }

    pub async fn server_summary(&self, id: i64) -> Result<ServerSummary, AppError> {
        let server = self
            .store
            .server(id)
            .await?
            .ok_or(AppError::NotFound("Outgoing mail server"))?;
        let client_id = self.google_settings().await?.client_id;
        let connections = match &server.username {
            Some(email) => self.store.connection(email).await?.into_iter().collect(),
            None => Vec::new(),
        };
        Ok(summarize(server, &connections, client_id.as_deref()))
    }

    /// A new server's form: Gmail with its defaults, as Flectra's onchange fills them.
    pub fn new_server_draft(&self) -> ServerDraft {
        ServerDraft {
            auth: AuthMethod::Gmail.code().into(),
            host: self.config.gmail_smtp.host.clone(),
            port: self.config.gmail_smtp.port.to_string(),
            security: gmail_security(self.config.gmail_smtp.port).code().into(),
            priority: "10".into(),
            ..Default::default()
        }
    }

    /// The outgoing servers, for routing a submission. Read at most once a second: every
    /// submission needs them, and they change only when an admin edits them. Edits made through
    /// this process are seen at once; edits by another instance sharing the database, within a
    /// second.
    pub(crate) async fn routes(&self) -> Result<Arc<Vec<MailServer>>, StoreError> {
        const FRESH: std::time::Duration = std::time::Duration::from_secs(1);
        if let Some((read_at, servers)) = &*self.routes.lock().unwrap_or_else(|p| p.into_inner())
            && read_at.elapsed() < FRESH
        {
            return Ok(Arc::clone(servers));
        }
        let servers = Arc::new(self.store.list_servers().await?);
        *self.routes.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((std::time::Instant::now(), Arc::clone(&servers)));
        Ok(servers)
    }

    fn forget_routes(&self) {
        *self.routes.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    pub async fn create_server(&self, draft: &ServerDraft) -> Result<i64, AppError> {
        let valid = draft
            .validate(None, &self.config.gmail_smtp)
            .map_err(AppError::Invalid)?;
        let id = self
            .store
            .create_server(&self.sealer, &valid, self.now())
            .await
            .map_err(name_taken)?;
        self.forget_routes();
        Ok(id)
    }

    pub async fn update_server(&self, id: i64, draft: &ServerDraft) -> Result<(), AppError> {
        let current = self
            .store
            .server(id)
            .await?
            .ok_or(AppError::NotFound("Outgoing mail server"))?;
        let valid = draft
            .validate(Some(&current), &self.config.gmail_smtp)
            .map_err(AppError::Invalid)?;
        self.store
            .update_server(&self.sealer, id, &valid, self.now())
            .await
            .map_err(name_taken)?;
        self.forget_routes();
        let released = self.store.release_held(&[id], self.now()).await?;
        if released > 0 {
            self.outbox_wake.notify_one();
        }
        Ok(())
    }

    pub async fn delete_server(&self, id: i64) -> Result<(), AppError> {
        if self.store.delete_server(id).await? {
            self.forget_routes();
            Ok(())
        } else {
            Err(AppError::NotFound("Outgoing mail server"))
        }
    }
}

fn summarize(
    server: MailServer,
    connections: &[GoogleConnection],
    client_id: Option<&str>,
) -> ServerSummary {
    if server.auth != AuthMethod::Gmail {
        return ServerSummary {
            server,
            badge: None,
            connection: None,
        };
    }
    let connection = server
        .username
        .as_deref()
        .and_then(|u| connections.iter().find(|c| c.email == u))
        .cloned();
    ServerSummary {
        badge: Some(TokenBadge::of(connection.as_ref(), client_id)),
        server,
        connection,
    }
}

fn name_taken(e: StoreError) -> AppError {
    match e {
        StoreError::Duplicate(_) => AppError::Invalid(crate::domain::FieldErrors(vec![(
            "name",
            "Another server already has this Description.".into(),
        )])),
        other => AppError::Store(other),
    }
}
