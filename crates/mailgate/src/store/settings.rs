//! Installation settings: a key/value table whose secrets are sealed.

use secrecy::SecretString;
use sqlx::Row;

use super::{Store, StoreError, opt_bytes, opt_string};
use crate::clock::Timestamp;
use crate::crypto::Sealer;

const CUSTOM_SERVERS: &str = "custom_email_servers";
const CLIENT_ID: &str = "google.client_id";
const CLIENT_SECRET: &str = "google.client_secret";
const TEST_RECIPIENT: &str = "test_recipient";
const KEY_CHECK: &str = "secret_key_check";

/// The "Gmail Credentials" block of Settings, and the switch that shows it.
#[derive(Debug, Clone, Default)]
pub struct GoogleSettings {
    pub custom_email_servers: bool,
    pub client_id: Option<String>,
    pub client_secret: Option<SecretString>,
    /// Where "Test Connection" points RCPT TO; empty means the server's own Username.
    pub test_recipient: Option<String>,
}

impl GoogleSettings {
    pub fn credentials(&self) -> Option<(&str, &SecretString)> {
        Some((self.client_id.as_deref()?, self.client_secret.as_ref()?))
    }
}

impl Store {
    async fn setting(&self, key: &str) -> Result<(Option<String>, Option<Vec<u8>>), StoreError> {
        let row = sqlx::query("SELECT value, sealed FROM settings WHERE key = $1")
            .bind(key)
            .fetch_optional(self.pool())
            .await?;
        Ok(match row {
            Some(r) => (opt_string(&r, "value")?, opt_bytes(&r, "sealed")?),
            None => (None, None),
        })
    }

    /// The sealed value that recognises the installation's key, once a key has been used.
    pub async fn key_check(&self) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.setting(KEY_CHECK).await?.1)
    }

    /// Whether anything sealed is stored: a database from before key checks still knows, then,
    /// that a new key would not open it.
    pub async fn holds_sealed_secrets(&self) -> Result<bool, StoreError> {
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM settings WHERE sealed IS NOT NULL) \
                  + (SELECT COUNT(*) FROM mail_servers WHERE password_sealed IS NOT NULL) \
                  + (SELECT COUNT(*) FROM google_connections) AS n",
        )
        .fetch_one(self.pool())
        .await?;
        Ok(row.try_get::<i64, _>("n")? > 0)
    }

    /// Records the key check unless one is there already (another instance starting at the same
    /// moment may have written its own first); the caller reads back which one won.
    pub async fn put_key_check(&self, sealed: &[u8], now: Timestamp) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO settings (key, value, sealed, updated_at) VALUES ($1, NULL, $2, $3) \
             ON CONFLICT (key) DO NOTHING",
        )
        .bind(KEY_CHECK)
        .bind(sealed)
        .bind(now)
        .execute(self.writes())
        .await?;
        Ok(())
    }

    /// A plain (not secret) value, such as the last pre-flight report.
    pub async fn value(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self.setting(key).await?.0)
    }

    pub async fn put_value(
        &self,
        key: &str,
        value: Option<&str>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.put_setting(key, value, None, now).await
    }

    async fn put_setting(
        &self,
        key: &str,
        value: Option<&str>,
        sealed: Option<&[u8]>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO settings (key, value, sealed, updated_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (key) DO UPDATE SET value = $2, sealed = $3, updated_at = $4",
        )
        .bind(key)
        .bind(value)
        .bind(sealed)
        .bind(now)
        .execute(self.writes())
        .await?;
        Ok(())
    }

    pub async fn google_settings(&self, sealer: &Sealer) -> Result<GoogleSettings, StoreError> {
        let (custom, _) = self.setting(CUSTOM_SERVERS).await?;
        let (client_id, _) = self.setting(CLIENT_ID).await?;
        let (_, secret) = self.setting(CLIENT_SECRET).await?;
        let (test_recipient, _) = self.setting(TEST_RECIPIENT).await?;
        Ok(GoogleSettings {
            custom_email_servers: custom.as_deref() == Some("1"),
            client_id: client_id.filter(|v| !v.is_empty()),
            client_secret: secret
                .map(|s| sealer.open_secret(CLIENT_SECRET, &s))
                .transpose()?,
            test_recipient: test_recipient.filter(|v| !v.is_empty()),
        })
    }

    /// Saves the form. A `None` secret keeps the stored one: the page never sends it back, so a
    /// blank field means "unchanged".
    pub async fn save_google_settings(
        &self,
        sealer: &Sealer,
        settings: &GoogleSettings,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let flag = if settings.custom_email_servers {
            "1"
        } else {
            "0"
        };
        self.put_setting(CUSTOM_SERVERS, Some(flag), None, now)
            .await?;
        self.put_setting(CLIENT_ID, settings.client_id.as_deref(), None, now)
            .await?;
        if let Some(secret) = &settings.client_secret {
            let sealed = sealer.seal_secret(CLIENT_SECRET, secret);
            self.put_setting(CLIENT_SECRET, None, Some(&sealed), now)
                .await?;
        }
        self.put_setting(
            TEST_RECIPIENT,
            settings.test_recipient.as_deref(),
            None,
            now,
        )
        .await
    }
}
