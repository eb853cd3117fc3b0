//! Outgoing Mail Servers: the list, the form, Test Connection.

use std::sync::Arc;

use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use secrecy::SecretString;
use serde::Deserialize;

use super::{redirect_with, with_status};
use crate::app::admins::AdminSession;
use crate::app::servers::ServerSummary;
use crate::app::test_connection::TestReport;
use crate::app::{App, AppError};
use crate::clock::{format_utc, relative};
use crate::domain::connection::EXPIRY_WARNING_SECS;
use crate::domain::mail_server::gmail_security;
use crate::domain::{
    AuthMethod, ConnectFor, FieldErrors, FromPolicy, Security, ServerDraft, TokenBadge,
};
use crate::web::WebError;
use crate::web::session::{Admin, Flash};
use crate::web::views::{
    Chrome, ExpiryView, GmailPanel, ServerFormPage, ServerRow, ServersPage, TestView,
    UnfinishedView,
};

pub async fn list(
    State(app): State<Arc<App>>,
    Admin(admin): Admin,
    headers: HeaderMap,
) -> Result<ServersPage, WebError> {
    let rows = app
        .server_summaries()
        .await?
        .into_iter()
        .map(|s| ServerRow {
            id: s.server.id,
            auth: s.server.auth.label(),
            username: s.server.username.clone().unwrap_or_default(),
            endpoint: {
                let target = app.smtp_target(&s.server);
                format!(
                    "{}:{} ({})",
                    target.host,
                    target.port,
                    target.security.label()
                )
            },
            badge: s.badge.as_ref().map(|b| (b.label(), b.css())),
            priority: s.server.priority,
            name: s.server.name,
        })
        .collect();
    Ok(ServersPage {
        chrome: Chrome::admin(&admin, "servers", Flash::from_headers(&app, &headers)),
        rows,
    })
}

/// The form page, for a new server (`summary` None) or a saved one.
async fn form_page(
    app: &App,
    admin: &AdminSession,
    flash: Option<Flash>,
    summary: Option<&ServerSummary>,
    draft: ServerDraft,
    errors: FieldErrors,
) -> Result<ServerFormPage, WebError> {
    let settings = app.google_settings().await?;
    let now = app.now();
    let unfinished = match summary {
        Some(s) => {
            app.unfinished_connect(ConnectFor::Outgoing(s.server.id), admin.admin_id)
                .await?
        }
        None => None,
    };
    let gmail = summary.and_then(|s| {
        let badge = s.badge.clone()?;
        let connection = s.connection.as_ref();
        let (reason, since) = match &badge {
            TokenBadge::ReconnectNeeded { reason, at } => (
                Some(reason.clone()),
                Some(format!(
                    "Since {} ({})",
                    format_utc(*at),
                    relative(*at, now)
                )),
            ),
            TokenBadge::Valid => (
                None,
                connection.map(|c| {
                    format!(
                        "Connected {}; last good refresh or login {}.",
                        format_utc(c.connected_at),
                        relative(c.status_at, now)
                    )
                }),
            ),
            TokenBadge::NotConnected => (None, None),
        };
        Some(GmailPanel {
            username: s.server.username.clone().unwrap_or_default(),
            label: badge.label(),
            css: badge.css(),
            reason,
            since,
            expiry: connection
                .filter(|_| badge == TokenBadge::Valid)
                .and_then(|c| c.refresh_expires_at)
                .map(|at| ExpiryView {
                    date: format_utc(at),
                    relative: relative(at, now),
                    soon: at - now < EXPIRY_WARNING_SECS,
                }),
            last_error: connection
                .and_then(|c| c.last_error.clone())
                .map(|(e, at)| format!("{e} ({})", relative(at, now))),
            connected: connection.is_some(),
            unfinished: unfinished.map(|started| UnfinishedView {
                username: s.server.username.clone().unwrap_or_default(),
                when: relative(started, now),
                redirect_uri: app.config.redirect_uri(),
            }),
        })
    });
    let last_test = summary
        .and_then(|s| s.server.last_test.as_ref())
        .and_then(|t| serde_json::from_str::<TestReport>(&t.report).ok())
        .map(|r| TestView {
            ok: r.ok,
            when: format!("{} ({})", format_utc(r.at), relative(r.at, now)),
            steps: r.steps,
            failure: r.failure,
        });
    Ok(ServerFormPage {
        chrome: Chrome::admin(admin, "servers", flash),
        id: summary.map(|s| s.server.id),
        has_password: summary.is_some_and(|s| s.server.has_password),
        draft,
        errors,
        gmail,
        credentials_missing: settings.credentials().is_none(),
        last_test,
        auth_options: AuthMethod::ALL
            .iter()
            .map(|a| (a.code(), a.label()))
            .collect(),
        security_options: Security::ALL
            .iter()
            .map(|s| (s.code(), s.label()))
            .collect(),
        from_policy_options: FromPolicy::ALL
            .iter()
            .map(|p| (p.code(), p.label()))
            .collect(),
        gmail_endpoint: format!(
            "{} ({})",
            app.config.gmail_smtp,
            gmail_security(app.config.gmail_smtp.port).label()
        ),
    })
}

fn draft_of(summary: &ServerSummary) -> ServerDraft {
    let s = &summary.server;
    ServerDraft {
        name: s.name.clone(),
        auth: s.auth.code().into(),
        username: s.username.clone().unwrap_or_default(),
        password: None,
        host: s.host.clone(),
        port: s.port.to_string(),
        security: s.security.code().into(),
        from_filter: s.from_filter.clone().unwrap_or_default(),
        priority: s.priority.to_string(),
        aliases: s.aliases.join(", "),
        from_policy: s.from_policy.code().into(),
        daily_limit: if s.daily_limit == 0 {
            String::new()
        } else {
            s.daily_limit.to_string()
        },
    }
}

pub async fn new(
    State(app): State<Arc<App>>,
    Admin(admin): Admin,
) -> Result<ServerFormPage, WebError> {
    let draft = app.new_server_draft();
    form_page(&app, &admin, None, None, draft, FieldErrors::default()).await
}

pub async fn show(
    State(app): State<Arc<App>>,
    Admin(admin): Admin,
    Path(id): Path<i64>,
    headers: HeaderMap,
) -> Result<ServerFormPage, WebError> {
    let summary = app.server_summary(id).await?;
    let flash = Flash::from_headers(&app, &headers);
    let draft = draft_of(&summary);
    form_page(
        &app,
        &admin,
        flash,
        Some(&summary),
        draft,
        FieldErrors::default(),
    )
    .await
}

#[derive(Deserialize)]
pub struct ServerInput {
    #[serde(default)]
    name: String,
    #[serde(default)]
    auth: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    host: String,
    #[serde(default)]
    port: String,
    #[serde(default)]
    security: String,
    #[serde(default)]
    from_filter: String,
    #[serde(default)]
    priority: String,
    #[serde(default)]
    aliases: String,
    #[serde(default)]
    from_policy: String,
    #[serde(default)]
    daily_limit: String,
}

impl From<ServerInput> for ServerDraft {
    fn from(i: ServerInput) -> Self {
        ServerDraft {
            name: i.name,
            auth: i.auth,
            username: i.username,
            password: (!i.password.is_empty()).then(|| SecretString::from(i.password)),
            host: i.host,
            port: i.port,
            security: i.security,
            from_filter: i.from_filter,
            priority: i.priority,
            aliases: i.aliases,
            from_policy: i.from_policy,
            daily_limit: i.daily_limit,
        }
    }
}

async fn invalid_form(
    app: &App,
    admin: &AdminSession,
    summary: Option<&ServerSummary>,
    mut draft: ServerDraft,
    errors: FieldErrors,
) -> Result<Response, WebError> {
    // A password typed into a refused form is not sent back to the browser.
    draft.password = None;
    let flash = Flash::warn("Nothing was saved: see the messages below.");
    let page = form_page(app, admin, Some(flash), summary, draft, errors).await?;
    Ok(with_status(StatusCode::BAD_REQUEST, page))
}

pub async fn create(
    State(app): State<Arc<App>>,
    Admin(admin): Admin,
    Form(input): Form<ServerInput>,
) -> Result<Response, WebError> {
    let draft = ServerDraft::from(input);
    match app.create_server(&draft).await {
        Ok(id) => {
            let next = if draft.auth == AuthMethod::Gmail.code() {
                "Server saved. Next: “Connect your Gmail account”."
            } else {
                "Server saved."
            };
            Ok(redirect_with(
                &app,
                &format!("/servers/{id}"),
                Flash::ok(next),
            ))
        }
        Err(AppError::Invalid(errors)) => invalid_form(&app, &admin, None, draft, errors).await,
        Err(other) => Err(other.into()),
    }
}

pub async fn update(
    State(app): State<Arc<App>>,
    Admin(admin): Admin,
    Path(id): Path<i64>,
    Form(input): Form<ServerInput>,
) -> Result<Response, WebError> {
    let draft = ServerDraft::from(input);
    match app.update_server(id, &draft).await {
        Ok(()) => Ok(redirect_with(
            &app,
            &format!("/servers/{id}"),
            Flash::ok("Server saved."),
        )),
        Err(AppError::Invalid(errors)) => {
            let summary = app.server_summary(id).await?;
            invalid_form(&app, &admin, Some(&summary), draft, errors).await
        }
        Err(other) => Err(other.into()),
    }
}

pub async fn delete(
    State(app): State<Arc<App>>,
    Admin(_): Admin,
    Path(id): Path<i64>,
) -> Result<Response, WebError> {
    app.delete_server(id).await?;
    Ok(redirect_with(
        &app,
        "/servers",
        Flash::ok("Server deleted."),
    ))
}

pub async fn test(
    State(app): State<Arc<App>>,
    Admin(_): Admin,
    Path(id): Path<i64>,
) -> Result<Response, WebError> {
    // The result is stored with the server; its page shows it at the top.
    app.test_server(id).await?;
    Ok(Redirect::to(&format!("/servers/{id}#test")).into_response())
}
