//! "Connect your Gmail account", Google's callback, and "Disconnect".

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::{redirect_with, with_status};
use crate::app::App;
use crate::app::admins::AdminSession;
use crate::app::connect_gmail::{Callback, ConnectFailure};
use crate::domain::ConnectFor;
use crate::web::WebError;
use crate::web::session::{Admin, Flash};
use crate::web::views::{Chrome, OauthErrorPage};

/// "Connect your Gmail account" on an outgoing server's page.
pub async fn connect(
    State(app): State<Arc<App>>,
    Admin(admin): Admin,
    Path(id): Path<i64>,
) -> Result<Response, WebError> {
    start(&app, &admin, ConnectFor::Outgoing(id)).await
}

/// The same on an incoming server's page: one consent serves both, so a mailbox that only
/// receives needs no outgoing server.
pub async fn connect_incoming(
    State(app): State<Arc<App>>,
    Admin(admin): Admin,
    Path(id): Path<i64>,
) -> Result<Response, WebError> {
    start(&app, &admin, ConnectFor::Incoming(id)).await
}

async fn start(app: &App, admin: &AdminSession, target: ConnectFor) -> Result<Response, WebError> {
    match app.start_gmail_connect(target, admin.admin_id).await {
        Ok(url) => Ok(Redirect::to(url.as_str()).into_response()),
        Err(ConnectFailure::App(e)) => Err(e.into()),
        Err(failure) => Ok(explained(app, admin, &failure)),
    }
}

/// The page that says what went wrong with Google and how to fix it.
fn explained(app: &App, admin: &AdminSession, failure: &ConnectFailure) -> Response {
    let explanation = failure.explain(&app.config.redirect_uri());
    tracing::warn!(problem = %explanation.title, "Gmail connection refused");
    let section = match explanation.again {
        Some(ConnectFor::Incoming(_)) => "incoming",
        _ => "servers",
    };
    let status = axum::http::StatusCode::from_u16(explanation.status)
        .unwrap_or(axum::http::StatusCode::BAD_REQUEST);
    with_status(
        status,
        OauthErrorPage {
            chrome: Chrome::admin(admin, section, None),
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
        Ok(target @ ConnectFor::Outgoing(_)) => redirect_with(
            &app,
            &format!("{}#gmail", target.page()),
            Flash::ok("Gmail account connected. Next: “Test Connection”."),
        ),
        Ok(target @ ConnectFor::Incoming(id)) => {
            let next = match app.incoming_server(id).await {
                Ok(server) if server.confirmed => "mailgate fetches its mail again now.",
                _ => "Next: “Test & Confirm”.",
            };
            redirect_with(
                &app,
                &target.page(),
                Flash::ok(format!("Gmail account connected. {next}")),
            )
        }
        Err(failure) => explained(&app, &admin, &failure),
    }
}

/// "Disconnect" on an outgoing server's page.
pub async fn disconnect(
    State(app): State<Arc<App>>,
    Admin(_): Admin,
    Path(id): Path<i64>,
) -> Result<Response, WebError> {
    forget(&app, ConnectFor::Outgoing(id)).await
}

/// "Disconnect" on an incoming server's page.
pub async fn disconnect_incoming(
    State(app): State<Arc<App>>,
    Admin(_): Admin,
    Path(id): Path<i64>,
) -> Result<Response, WebError> {
    forget(&app, ConnectFor::Incoming(id)).await
}

async fn forget(app: &App, target: ConnectFor) -> Result<Response, WebError> {
    let flash = match app.disconnect_gmail(target).await? {
        None => Flash::ok("Disconnected: the token was revoked at Google and deleted here."),
        Some(warning) => Flash::warn(warning),
    };
    let back = match target {
        ConnectFor::Outgoing(_) => format!("{}#gmail", target.page()),
        ConnectFor::Incoming(_) => target.page(),
    };
    Ok(redirect_with(app, &back, flash))
}
