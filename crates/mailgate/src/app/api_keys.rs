//! API keys for `POST /api/v1/messages`: random, shown once, stored as a hash.

use super::{App, AppError};
use crate::crypto::{random_token, token_hash};
use crate::store::ApiKeyRecord;

const PREFIX: &str = "mgk_";

impl App {
    /// Creates a key and returns it in full: the only time anyone sees it.
    pub async fn create_api_key(&self, name: &str) -> Result<String, AppError> {
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
            .create_api_key(name, &token_hash(&key), &prefix, self.now())
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

    /// The key's id, if `key` is a live API key.
    pub async fn authenticate_api_key(&self, key: &str) -> Result<Option<i64>, AppError> {
        if !key.starts_with(PREFIX) {
            return Ok(None);
        }
        Ok(self.store.use_api_key(&token_hash(key), self.now()).await?)
    }
}
