//! API keys: create (shown once), list, revoke.

use std::sync::Arc;

use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{redirect_with, with_status};
use crate::app::admins::AdminSession;
use crate::app::api_keys::KeyScope;
use crate::app::{App, AppError};
use crate::clock::{format_utc, relative};
use crate::web::WebError;
use crate::web::session::{Admin, Flash};
use crate::web::views::{ApiKeyRow, ApiKeysPage, Chrome};

async fn page(
    app: &App,
    admin: &AdminSession,
    flash: Option<Flash>,
    new_key: Option<String>,
    error: Option<String>,
) -> Result<ApiKeysPage, WebError> {
    let now = app.now();
    let keys = app
        .api_keys()
        .await?
        .into_iter()
        .map(|k| ApiKeyRow {
            id: k.id,
            name: k.name,
            prefix: k.prefix,
            reads: match k.scope {
                KeyScope::Submit => "its own messages",
                KeyScope::Admin => "all messages",
            },
            created: format_utc(k.created_at),
            last_used: k
                .last_used_at
                .map_or_else(|| "never".into(), |t| relative(t, now)),
            revoked: k.revoked_at.is_some(),
        })
        .collect();
    Ok(ApiKeysPage {
        chrome: Chrome::admin(admin, "api-keys", flash),
        new_key,
        base: app.config.public_base(),
        error,
        keys,
    })
}

pub async fn list(
    State(app): State<Arc<App>>,
    Admin(admin): Admin,
    headers: HeaderMap,
) -> Result<ApiKeysPage, WebError> {
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
pub struct NewKey {
    #[serde(default)]
    name: String,
    /// `submit` (the default) or `admin`.
    #[serde(default)]
    scope: String,
}

/// The key is in this response only: no redirect, so it never sits in a cookie or a URL.
pub async fn create(
    State(app): State<Arc<App>>,
    Admin(admin): Admin,
    Form(form): Form<NewKey>,
) -> Result<Response, WebError> {
    let scope = KeyScope::parse(&form.scope).unwrap_or(KeyScope::Submit);
    match app.create_api_key(&form.name, scope).await {
        Ok(key) => Ok(page(&app, &admin, None, Some(key), None)
            .await?
            .into_response()),
        Err(AppError::Invalid(errors)) => {
            let message = errors.get("name").map(str::to_string);
            Ok(with_status(
                StatusCode::BAD_REQUEST,
                page(&app, &admin, None, None, message).await?,
            ))
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn revoke(
    State(app): State<Arc<App>>,
    Admin(_): Admin,
    Path(id): Path<i64>,
) -> Result<Response, WebError> {
    app.revoke_api_key(id).await?;
    Ok(redirect_with(
        &app,
        "/api-keys",
        Flash::ok("Key revoked: requests with it are refused from now on."),
    ))
}
