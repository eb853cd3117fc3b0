//! "Connect your Gmail account", Google's callback, and "Disconnect".

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::{redirect_with, with_status};
use crate::app::App;
use crate::app::admins::AdminSession;
use crate::app::connect_gmail::{Callback, ConnectFailure};
use crate::web::WebError;
use crate::web::session::{Admin, Flash};
use crate::web::views::{Chrome, OauthErrorPage};

pub async fn connect(
    State(app): State<Arc<App>>,
    Admin(admin): Admin,
    Path(id): Path<i64>,
) -> Result<Response, WebError> {
    match app.start_gmail_connect(id, admin.admin_id).await {
        Ok(url) => Ok(Redirect::to(url.as_str()).into_response()),
        Err(ConnectFailure::App(e)) => Err(e.into()),
        Err(failure) => Ok(explained(&app, &admin, &failure)),
    }
}

/// The page that says what went wrong with Google and how to fix it.
fn explained(app: &App, admin: &AdminSession, failure: &ConnectFailure) -> Response {
    let explanation = failure.explain(&app.config.redirect_uri());
    tracing::warn!(problem = %explanation.title, "Gmail connection refused");
    let status = axum::http::StatusCode::from_u16(explanation.status)
        .unwrap_or(axum::http::StatusCode::BAD_REQUEST);
    with_status(
        status,
        OauthErrorPage {
            chrome: Chrome::admin(admin, "servers", None),
            e: explanation,
        },
    )
}

#[derive(Deserialize)]
pub struct CallbackQuery {
    state: Option<String>,
    code: Option<String>,
    error: Option<String>,
}

/// `GET /google_gmail/confirm`: admins only (others are sent to sign in first).
pub async fn confirm(
    State(app): State<Arc<App>>,
    Admin(admin): Admin,
    Query(query): Query<CallbackQuery>,
) -> Response {
    let callback = Callback {
        state: query.state,
        code: query.code,
        error: query.error,
    };
    match app.finish_gmail_connect(admin.admin_id, &callback).await {
        Ok(server_id) => redirect_with(
            &app,
            &format!("/servers/{server_id}#gmail"),
            Flash::ok("Gmail account connected. Next: “Test Connection”."),
        ),
        Err(failure) => explained(&app, &admin, &failure),
    }
}

pub async fn disconnect(
    State(app): State<Arc<App>>,
    Admin(_): Admin,
    Path(id): Path<i64>,
) -> Result<Response, WebError> {
    let flash = match app.disconnect_gmail(id).await? {
        None => Flash::ok("Disconnected: the token was revoked at Google and deleted here."),
        Some(warning) => Flash::warn(warning),
    };
    Ok(redirect_with(&app, &format!("/servers/{id}#gmail"), flash))
}
