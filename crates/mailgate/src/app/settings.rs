//! Settings: the "Custom Email Servers" switch and the "Gmail Credentials" block.

use secrecy::{ExposeSecret, SecretString};

use super::{App, AppError};
use crate::domain::{EmailAddress, FieldErrors};
use crate::store::GoogleSettings;

/// What the settings form sends.
#[derive(Debug, Default)]
pub struct SettingsForm {
    pub custom_email_servers: bool,
    pub client_id: String,
    /// Blank keeps the stored secret: the page never shows it.
    pub client_secret: String,
    pub test_recipient: String,
}

/// What the settings page shows: never the secret itself.
#[derive(Debug, Clone)]
pub struct SettingsView {
    pub custom_email_servers: bool,
    pub client_id: String,
    pub has_client_secret: bool,
    pub test_recipient: String,
    pub redirect_uri: String,
    pub public_url_rejected: bool,
}

const CLIENT_ID_SUFFIX: &str = ".apps.googleusercontent.com";

impl App {
    pub async fn google_settings(&self) -> Result<GoogleSettings, AppError> {
        Ok(self.store.google_settings(&self.sealer).await?)
    }

    pub async fn settings_view(&self) -> Result<SettingsView, AppError> {
        let settings = self.google_settings().await?;
        Ok(SettingsView {
            custom_email_servers: settings.custom_email_servers,
            client_id: settings.client_id.unwrap_or_default(),
            has_client_secret: settings.client_secret.is_some(),
            test_recipient: settings.test_recipient.unwrap_or_default(),
            redirect_uri: self.config.redirect_uri(),
            public_url_rejected: self.config.public_url_rejected_by_google(),
        })
    }

    pub async fn save_settings(&self, form: SettingsForm) -> Result<(), AppError> {
        let mut errors = FieldErrors::default();
        let client_id = form.client_id.trim().to_string();
        if !client_id.is_empty() && !client_id.ends_with(CLIENT_ID_SUFFIX) {
            errors.0.push((
                "client_id",
                format!("This does not look like a Google Client ID: they end in {CLIENT_ID_SUFFIX}. (Is it the Client Secret?)"),
            ));
        }
        let secret = form.client_secret.trim().to_string();
        if secret.ends_with(CLIENT_ID_SUFFIX) {
            errors.0.push((
                "client_secret",
                "This looks like a Client ID, not the Client Secret.".to_string(),
            ));
        }
        let test_recipient = form.test_recipient.trim();
        if !test_recipient.is_empty()
            && let Err(e) = EmailAddress::parse(test_recipient)
        {
            errors.0.push(("test_recipient", e.to_string()));
        }
        if !errors.is_empty() {
            return Err(AppError::Invalid(errors));
        }
        let settings = GoogleSettings {
            custom_email_servers: form.custom_email_servers,
            client_id: Some(client_id),
            client_secret: (!secret.is_empty()).then(|| SecretString::from(secret)),
            test_recipient: Some(test_recipient.to_ascii_lowercase()),
        };
        self.store
            .save_google_settings(&self.sealer, &settings, self.now())
            .await?;
        // Messages held for bad credentials may go through now; if not, they are held again.
        self.release_held(None).await?;
        Ok(())
    }
}

/// Masks a secret for display: enough to recognise it, not to use it.
pub fn mask(secret: &SecretString) -> String {
    let text = secret.expose_secret();
    let tail: String = text
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("••••••••{tail}")
}
