//! Incoming Mail Servers: the list, the form, and Flectra's buttons ("Test & Confirm", "Fetch
//! Now", "Reset Confirmation"); the webhook secret shown once.

use std::sync::Arc;

use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{redirect_with, with_status};
use crate::app::admins::AdminSession;
use crate::app::incoming::servers::{IncomingSummary, reveal};
use crate::app::{App, AppError};
use crate::clock::{format_utc, relative};
use crate::domain::incoming::{IncomingDraft, IncomingServer};
use crate::domain::{ConnectFor, FieldErrors};
use crate::web::WebError;
use crate::web::session::{Admin, Flash};
use crate::web::views::{Chrome, IncomingFormPage, IncomingListPage, IncomingRow, UnfinishedView};

fn row(summary: &IncomingSummary, now: i64) -> IncomingRow {
    let s = &summary.server;
    IncomingRow {
        id: s.id,
        name: s.name.clone(),
        username: s.username.clone(),
        folder: s.folder.clone(),
        confirmed: s.confirmed,
        status: s.status.label(),
        status_css: match s.status.code() {
            "ok" => "ok",
            "failing" | "reconnect" => "bad",
            _ => "idle",
        },
        last_fetch: s
            .last_fetch_at
            .map_or_else(|| "never".into(), |t| relative(t, now)),
        webhook: s.webhook_url.clone().unwrap_or_default(),
        badge: summary.badge.label(),
        badge_css: summary.badge.css(),
        connected: summary.badge != crate::domain::TokenBadge::NotConnected,
        uid: s.last_uid,
        uidvalidity: s.uidvalidity,
        status_at: s.status_at.map(format_utc),
    }
}

fn draft_of(server: &IncomingServer) -> IncomingDraft {
    IncomingDraft {
        name: server.name.clone(),
        username: server.username.clone(),
        folder: server.folder.clone(),
        interval: (server.interval_secs / 60).to_string(),
        mark_seen: server.mark_seen,
        webhook_url: server.webhook_url.clone().unwrap_or_default(),
    }
}

pub async fn list(
    State(app): State<Arc<App>>,
    Admin(admin): Admin,
    headers: HeaderMap,
) -> Result<IncomingListPage, WebError> {
    let now = app.now();
    Ok(IncomingListPage {
        chrome: Chrome::admin(&admin, "incoming", Flash::from_headers(&app, &headers)),
        servers: app
            .incoming_summaries()
            .await?
            .iter()
            .map(|s| row(s, now))
            .collect(),
    })
}

pub async fn new(
    State(app): State<Arc<App>>,
    Admin(admin): Admin,
) -> Result<IncomingFormPage, WebError> {
    form_page(
        &app,
        &admin,
        None,
        None,
        IncomingDraft {
            folder: "INBOX".into(),
            interval: crate::domain::incoming::DEFAULT_INTERVAL_MINUTES.to_string(),
            ..Default::default()
        },
        FieldErrors::default(),
        None,
    )
    .await
}

async fn form_page(
    app: &App,
    admin: &AdminSession,
    flash: Option<Flash>,
    id: Option<i64>,
    draft: IncomingDraft,
    errors: FieldErrors,
    secret: Option<String>,
) -> Result<IncomingFormPage, WebError> {
    let now = app.now();
    let saved = match id {
        Some(id) => app
            .incoming_summaries()
            .await?
            .into_iter()
            .find(|s| s.server.id == id)
            .map(|s| row(&s, now)),
        None => None,
    };
    let unfinished = match &saved {
        Some(row) => app
            .unfinished_connect(ConnectFor::Incoming(row.id), admin.admin_id)
            .await?
            .map(|started| UnfinishedView {
                username: row.username.clone(),
                when: relative(started, now),
                redirect_uri: app.config.redirect_uri(),
            }),
        None => None,
    };
    Ok(IncomingFormPage {
        chrome: Chrome::admin(admin, "incoming", flash),
        id,
        draft,
        errors,
        saved,
        secret,
        imap_endpoint: app.config.gmail_imap.to_string(),
        unfinished,
    })
}

#[derive(Deserialize)]
pub struct IncomingForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    folder: String,
    #[serde(default)]
    interval: String,
    #[serde(default)]
    mark_seen: Option<String>,
    #[serde(default)]
    webhook_url: String,
}

impl IncomingForm {
    fn draft(self) -> IncomingDraft {
        IncomingDraft {
            name: self.name,
            username: self.username,
            folder: self.folder,
            interval: self.interval,
            mark_seen: self.mark_seen.is_some(),
            webhook_url: self.webhook_url,
        }
    }
}

/// The webhook secret is in this response only: no redirect, so it never sits in a cookie or a
/// URL.
pub async fn create(
    State(app): State<Arc<App>>,
    Admin(admin): Admin,
    Form(form): Form<IncomingForm>,
) -> Result<Response, WebError> {
    let draft = form.draft();
    match app.create_incoming(&draft).await {
        Ok((id, secret)) => {
            let saved = app.incoming_server(id).await?;
            Ok(form_page(
                &app,
                &admin,
                Some(Flash::ok(
                    "Saved. Next: Test & Confirm, and mailgate fetches this folder from then on.",
                )),
                Some(id),
                draft_of(&saved),
                FieldErrors::default(),
                Some(reveal(&secret).to_string()),
            )
            .await?
            .into_response())
        }
        Err(AppError::Invalid(errors)) => Ok(with_status(
            StatusCode::BAD_REQUEST,
            form_page(&app, &admin, None, None, draft, errors, None).await?,
        )),
        Err(e) => Err(e.into()),
    }
}

pub async fn show(
    State(app): State<Arc<App>>,
    Admin(admin): Admin,
    Path(id): Path<i64>,
    headers: HeaderMap,
) -> Result<IncomingFormPage, WebError> {
    let server = app.incoming_server(id).await?;
    form_page(
        &app,
        &admin,
        Flash::from_headers(&app, &headers),
        Some(id),
        draft_of(&server),
        FieldErrors::default(),
        None,
    )
    .await
}

pub async fn update(
    State(app): State<Arc<App>>,
    Admin(admin): Admin,
    Path(id): Path<i64>,
    Form(form): Form<IncomingForm>,
) -> Result<Response, WebError> {
    let draft = form.draft();
    match app.update_incoming(id, &draft).await {
        Ok(()) => Ok(redirect_with(
            &app,
            &format!("/incoming/{id}"),
            Flash::ok("Saved."),
        )),
        Err(AppError::Invalid(errors)) => Ok(with_status(
            StatusCode::BAD_REQUEST,
            form_page(&app, &admin, None, Some(id), draft, errors, None).await?,
        )),
        Err(e) => Err(e.into()),
    }
}

pub async fn delete(
    State(app): State<Arc<App>>,
    Admin(_): Admin,
    Path(id): Path<i64>,
) -> Result<Response, WebError> {
    app.delete_incoming(id).await?;
    Ok(redirect_with(
        &app,
        "/incoming",
        Flash::ok("Incoming mail server deleted, with the mail it had stored."),
    ))
}

/// "Test & Confirm".
pub async fn confirm(
    State(app): State<Arc<App>>,
    Admin(_): Admin,
    Path(id): Path<i64>,
) -> Result<Response, WebError> {
    let flash = match app.test_and_confirm(id).await {
        Ok(report) => Flash::ok(format!(
            "Connection Test Successful! {report}; mailgate fetches it from now on (Confirmed)."
        )),
        Err(e) => Flash::warn(e),
    };
    Ok(redirect_with(&app, &format!("/incoming/{id}"), flash))
}

/// "Fetch Now".
pub async fn fetch(
    State(app): State<Arc<App>>,
    Admin(_): Admin,
    Path(id): Path<i64>,
) -> Result<Response, WebError> {
    let flash = match app.fetch_now(id).await {
        Ok(report) if report.stored == 0 => Flash::ok("Fetched: no new message."),
        Ok(report) => Flash::ok(format!("Fetched {report}.")),
        Err(e) => Flash::warn(format!("Fetch failed: {e}")),
    };
    Ok(redirect_with(&app, &format!("/incoming/{id}"), flash))
}

/// "Reset Confirmation".
pub async fn reset(
    State(app): State<Arc<App>>,
    Admin(_): Admin,
    Path(id): Path<i64>,
) -> Result<Response, WebError> {
    app.reset_confirmation(id).await?;
    Ok(redirect_with(
        &app,
        &format!("/incoming/{id}"),
        Flash::ok("Confirmation reset: mailgate no longer fetches this folder."),
    ))
}

/// A new webhook secret, shown once.
pub async fn secret(
    State(app): State<Arc<App>>,
    Admin(admin): Admin,
    Path(id): Path<i64>,
) -> Result<Response, WebError> {
    let secret = app.rotate_webhook_secret(id).await?;
    let server = app.incoming_server(id).await?;
    Ok(form_page(
        &app,
        &admin,
        Some(Flash::ok(
            "New webhook secret: requests are signed with it from now on.",
        )),
        Some(id),
        draft_of(&server),
        FieldErrors::default(),
        Some(reveal(&secret).to_string()),
    )
    .await?
    .into_response())
}
