//! Settings: Custom Email Servers and Gmail Credentials.

use std::sync::Arc;

use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{redirect_with, with_status};
use crate::app::settings::SettingsForm;
use crate::app::{App, AppError};
use crate::domain::FieldErrors;
use crate::web::WebError;
use crate::web::session::{Admin, Flash};
use crate::web::views::{Chrome, SettingsPage};

pub async fn show(
    State(app): State<Arc<App>>,
    Admin(admin): Admin,
    headers: HeaderMap,
) -> Result<Response, WebError> {
    Ok(SettingsPage {
        chrome: Chrome::admin(&admin, "settings", Flash::from_headers(&app, &headers)),
        view: app.settings_view().await?,
        errors: FieldErrors::default(),
    }
    .into_response())
}

#[derive(Deserialize)]
pub struct SettingsInput {
    #[serde(default)]
    custom_email_servers: Option<String>,
    #[serde(default)]
    client_id: String,
    #[serde(default)]
    client_secret: String,
    #[serde(default)]
    test_recipient: String,
}

pub async fn save(
    State(app): State<Arc<App>>,
    Admin(admin): Admin,
    Form(input): Form<SettingsInput>,
) -> Result<Response, WebError> {
    let form = SettingsForm {
        custom_email_servers: input.custom_email_servers.is_some(),
        client_id: input.client_id.clone(),
        client_secret: input.client_secret,
        test_recipient: input.test_recipient.clone(),
    };
    match app.save_settings(form).await {
        Ok(()) => Ok(redirect_with(
            &app,
            "/settings",
            Flash::ok("Settings saved."),
        )),
        Err(AppError::Invalid(errors)) => {
            // Show what was typed (never the secret) with the messages beside each field.
            let mut view = app.settings_view().await?;
            view.custom_email_servers = input.custom_email_servers.is_some();
            view.client_id = input.client_id;
            view.test_recipient = input.test_recipient;
            Ok(with_status(
                StatusCode::BAD_REQUEST,
                SettingsPage {
                    chrome: Chrome::admin(
                        &admin,
                        "settings",
                        Some(Flash::warn("Nothing was saved: see the messages below.")),
                    ),
                    view,
                    errors,
                },
            ))
        }
        Err(other) => Err(other.into()),
    }
}
