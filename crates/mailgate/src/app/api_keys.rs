//! API keys for `POST /api/v1/messages`: random, shown once, stored as a hash.

use super::{App, AppError};
use crate::crypto::{random_token, token_hash};
use crate::store::ApiKeyRecord;
pub use crate::store::KeyScope;

/// A caller of the API, as its key says.
#[derive(Debug, Clone, Copy)]
pub struct ApiCaller {
    pub key_id: i64,
    pub scope: KeyScope,
}

const PREFIX: &str = "mgk_";

impl App {
    /// Creates a key and returns it in full: the only time anyone sees it.
    pub async fn create_api_key(&self, name: &str, scope: KeyScope) -> Result<String, AppError> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 100 {
            return Err(AppError::Invalid(crate::domain::FieldErrors(vec![(
                "name",
                "Name the key after what uses it, e.g. \"Flectra\" (up to 100 characters).".into(),
            )])));
        }
        let key = format!("{PREFIX}{}", random_token());
        let prefix: String = key.chars().take(PREFIX.len() + 6).collect();
        self.store
            .create_api_key(name, &token_hash(&key), &prefix, scope, self.now())
            .await?;
        Ok(key)
    }

    pub async fn api_keys(&self) -> Result<Vec<ApiKeyRecord>, AppError> {
        Ok(self.store.api_keys().await?)
    }

    pub async fn revoke_api_key(&self, id: i64) -> Result<(), AppError> {
        if self.store.revoke_api_key(id, self.now()).await? {
            Ok(())
        } else {
            Err(AppError::NotFound("API key"))
        }
    }

    /// Who calls, if `key` is a live API key.
    pub async fn authenticate_api_key(&self, key: &str) -> Result<Option<ApiCaller>, AppError> {
        if !key.starts_with(PREFIX) {
            return Ok(None);
        }
        Ok(self
            .store
            .use_api_key(&token_hash(key), self.now())
            .await?
            .map(|(key_id, scope)| ApiCaller { key_id, scope }))
    }

    /// A message and its attempts, if `caller` may read it: an admin key reads all, a submit key
    /// only its own. Another key's message is "not found", so ids cannot be probed.
    pub async fn message_for(
        &self,
        caller: ApiCaller,
        id: &str,
    ) -> Result<(crate::store::MessageRecord, Vec<crate::store::Attempt>), AppError> {
        let (message, attempts) = self.message(id).await?;
        match caller.scope {
            KeyScope::Admin => Ok((message, attempts)),
            KeyScope::Submit if message.api_key_id == Some(caller.key_id) => {
                Ok((message, attempts))
            }
            KeyScope::Submit => Err(AppError::NotFound("message")),
        }
    }
}
