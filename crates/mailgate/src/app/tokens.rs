//! Access tokens on demand: refreshed ahead of expiry, one refresh at a time per Google account
//! (Flectra refreshes with no margin and no lock, and races itself into SMTPServerDisconnected),
//! in this process and, on PostgreSQL, across every instance sharing the database: the second
//! instance waits for the first's refresh and then reads its token.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use secrecy::SecretString;

use super::App;
use crate::google::GoogleError;
use crate::store::StoreError;

/// Refresh this long before Google's expiry, so a token never dies mid-session.
pub const REFRESH_MARGIN: i64 = 300;

#[derive(Default)]
pub struct RefreshLocks {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl RefreshLocks {
    fn for_account(&self, email: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(locks.entry(email.to_string()).or_default())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("{0} is not connected to Google")]
    NotConnected(String),
    #[error("Reconnect needed: {0}")]
    ReconnectNeeded(String),
    #[error("the Gmail Credentials (Client ID and Client Secret) are not set in Settings")]
    NoCredentials,
    #[error("Google refused the Client ID or Client Secret ({0}); check them in Settings")]
    BadCredentials(GoogleError),
    #[error("Google could not refresh the token just now: {0}")]
    Temporary(GoogleError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl App {
    /// A usable access token for `email`. With `force`, a new one even if the stored one looks
    /// fresh (after Gmail refused it).
    pub async fn access_token(&self, email: &str, force: bool) -> Result<SecretString, TokenError> {
        let lock = self.tokens.for_account(email);
        let _one_at_a_time = lock.lock().await;
        let shared = self
            .store
            .lock_shared(&format!("mailgate token refresh {email}"))
            .await?;
        let token = self.access_token_locked(email, force).await;
        if let Some(shared) = shared {
            shared.release().await;
        }
        token
    }

    /// `access_token` once this account's refresh locks are held: the stored token is read only
    /// now, so a refresh that finished while this one waited is found and used.
    async fn access_token_locked(
        &self,
        email: &str,
        force: bool,
    ) -> Result<SecretString, TokenError> {
        let record = self
            .store
            .connection_secrets(&self.sealer, email)
            .await?
            .ok_or_else(|| TokenError::NotConnected(email.to_string()))?;
        // Read from the store directly: a failure here is mailgate's, not Google's.
        let settings = self.store.google_settings(&self.sealer).await?;
        let (client_id, secret) = settings.credentials().ok_or(TokenError::NoCredentials)?;
        if record.connection.client_id != client_id {
            return Err(TokenError::ReconnectNeeded(
                "the Client ID in Settings changed since this account was connected".into(),
            ));
        }
        if let crate::domain::ConnectionStatus::ReconnectNeeded { reason, .. } =
            &record.connection.status
        {
            return Err(TokenError::ReconnectNeeded(reason.clone()));
        }
        let now = self.now();
        if !force
            && let (Some(token), Some(expires_at)) =
                (&record.access_token, record.connection.access_expires_at)
            && expires_at - REFRESH_MARGIN > now
        {
            return Ok(token.clone());
        }
        match self
            .google
            .refresh(client_id, secret, &record.refresh_token)
            .await
        {
            Ok(fresh) => {
                crate::metrics::bump(&self.metrics.token_refreshes_ok);
                let now = self.now();
                self.store
                    .save_access_token(
                        &self.sealer,
                        email,
                        &fresh.access_token,
                        now + fresh.expires_in,
                        fresh.refresh_token_expires_in.map(|secs| now + secs),
                        now,
                    )
                    .await?;
                tracing::info!(account = email, "refreshed the Google access token");
                Ok(fresh.access_token)
            }
            Err(e) if matches!(e.code(), Some("invalid_grant" | "unauthorized_client")) => {
                crate::metrics::bump(&self.metrics.token_refreshes_failed);
                let reason = format!("Google refused the refresh token ({e})");
                self.store
                    .mark_reconnect_needed(email, &reason, self.now())
                    .await?;
                tracing::warn!(account = email, "Google connection needs reconnecting: {e}");
                Err(TokenError::ReconnectNeeded(reason))
            }
            Err(e) if e.code() == Some("invalid_client") => {
                crate::metrics::bump(&self.metrics.token_refreshes_failed);
                Err(TokenError::BadCredentials(e))
            }
            Err(e) => {
                crate::metrics::bump(&self.metrics.token_refreshes_failed);
                self.store
                    .note_connection_error(email, &e.to_string(), self.now())
                    .await?;
                Err(TokenError::Temporary(e))
            }
        }
    }
}
