//! The SMTP relay page: where applications connect, the certificate to trust, and the relay
//! credentials (create: the password shown once; list; revoke).

use std::sync::Arc;

use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{redirect_with, with_status};
use crate::app::admins::AdminSession;
use crate::app::{App, AppError};
use crate::clock::{format_utc, relative};
use crate::web::WebError;
use crate::web::session::{Admin, Flash};
use crate::web::views::{Chrome, RelayCredentialRow, RelayPage, RelayView};

/// What the page says of the listeners (also the Overview's relay card).
pub fn relay_view(app: &App) -> Option<RelayView> {
    let listening = app.relay.listening.get()?;
    Some(RelayView {
        host: app.config.relay.hostname.clone(),
        submission: listening.addr.map(|a| a.to_string()),
        submission_port: listening.addr.map(|a| a.port()),
        implicit_tls: listening.tls_addr.map(|a| a.to_string()),
        fingerprint: listening.certificate.fingerprint.clone(),
        self_signed: listening.certificate.self_signed,
        certificate_path: listening.certificate.path.display().to_string(),
        expires: format_utc(listening.certificate.not_after),
        sessions: app.relay.sessions(),
        trusted_networks: app
            .config
            .relay
            .trusted_networks
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", "),
    })
}

async fn page(
    app: &App,
    admin: &AdminSession,
    flash: Option<Flash>,
    created: Option<(String, String)>,
    error: Option<String>,
) -> Result<RelayPage, WebError> {
    let now = app.now();
    let credentials = app
        .relay_credentials()
        .await?
        .into_iter()
        .map(|c| RelayCredentialRow {
            id: c.id,
            name: c.name,
            prefix: c.prefix,
            senders: if c.senders.is_empty() {
                "any sender a server sends as".into()
            } else {
                c.senders.lines().collect::<Vec<_>>().join(", ")
            },
            created: format_utc(c.created_at),
            last_used: c
                .last_used_at
                .map_or_else(|| "never".into(), |t| relative(t, now)),
            revoked: c.revoked_at.is_some(),
        })
        .collect();
    Ok(RelayPage {
        chrome: Chrome::admin(admin, "relay", flash),
        relay: relay_view(app),
        created,
        error,
        credentials,
    })
}

pub async fn show(
    State(app): State<Arc<App>>,
    Admin(admin): Admin,
    headers: HeaderMap,
) -> Result<RelayPage, WebError> {
    page(
        &app,
        &admin,
        Flash::from_headers(&app, &headers),
        None,
        None,
    )
    .await
}

#[derive(Deserialize)]
pub struct NewCredential {
    #[serde(default)]
    name: String,
    #[serde(default)]
    senders: String,
}

/// The password is in this response only: no redirect, so it never sits in a cookie or a URL.
pub async fn create(
    State(app): State<Arc<App>>,
    Admin(admin): Admin,
    Form(form): Form<NewCredential>,
) -> Result<Response, WebError> {
    match app.create_relay_credential(&form.name, &form.senders).await {
        Ok(password) => {
            let created = Some((form.name.trim().to_string(), password));
            Ok(page(&app, &admin, None, created, None)
                .await?
                .into_response())
        }
        Err(AppError::Invalid(errors)) => {
            let message = errors.0.iter().map(|(_, m)| m.as_str()).collect::<Vec<_>>();
            Ok(with_status(
                StatusCode::BAD_REQUEST,
                page(&app, &admin, None, None, Some(message.join(" "))).await?,
            ))
        }
        Err(AppError::Store(crate::store::StoreError::Duplicate(what))) => Ok(with_status(
            StatusCode::CONFLICT,
            page(
                &app,
                &admin,
                None,
                None,
                Some(format!(
                    "There is already {what}: revoke it first, or choose another name."
                )),
            )
            .await?,
        )),
        Err(e) => Err(e.into()),
    }
}

pub async fn revoke(
    State(app): State<Arc<App>>,
    Admin(_): Admin,
    Path(id): Path<i64>,
) -> Result<Response, WebError> {
    app.revoke_relay_credential(id).await?;
    Ok(redirect_with(
        &app,
        "/relay",
        Flash::ok("Credential revoked: logins with it are refused from now on."),
    ))
}
