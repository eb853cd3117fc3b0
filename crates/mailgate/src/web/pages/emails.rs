//! Emails: the queue with filters and search, each message with its attempts, Retry and Cancel.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;

use super::redirect_with;
use crate::app::{App, AppError};
use crate::clock::{Timestamp, format_utc, relative};
use crate::domain::message::Edge;
use crate::domain::outgoing::MessageState;
use crate::store::MessageFilter;
use crate::web::WebError;
use crate::web::session::{Admin, Flash};
use crate::web::views::{
    AttemptView, Chrome, EmailFilterView, EmailPage, EmailRow, EmailsPage, InboundPage, InboundRow,
    WebhookAttemptView,
};

const PAGE: i64 = 50;

#[derive(Deserialize, Default)]
pub struct FilterQuery {
    #[serde(default)]
    state: String,
    #[serde(default)]
    server: String,
    #[serde(default)]
    since: String,
    #[serde(default)]
    until: String,
    #[serde(default)]
    q: String,
    #[serde(default)]
    before: String,
    /// `incoming` for the mail incoming servers fetched; anything else, the outgoing queue.
    #[serde(default)]
    direction: String,
}

/// `2026-11-26` as the Unix time of its midnight (UTC).
fn day(text: &str) -> Option<Timestamp> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(text, &format)
        .ok()
        .map(|d| d.midnight().assume_utc().unix_timestamp())
}

pub async fn list(
    State(app): State<Arc<App>>,
    Admin(admin): Admin,
    headers: HeaderMap,
    Query(q): Query<FilterQuery>,
) -> Result<EmailsPage, WebError> {
    let servers: HashMap<i64, String> = app
        .store
        .list_servers()
        .await
        .map_err(|e| WebError::Internal(e.to_string()))?
        .into_iter()
        .map(|s| (s.id, s.name))
        .collect();
    let filter = MessageFilter {
        state: MessageState::parse(&q.state),
        server_id: q.server.parse().ok(),
        since: day(&q.since),
        until: day(&q.until).map(|t| t + 86_400),
        search: Some(q.q.trim().to_string()).filter(|s| !s.is_empty()),
        before: Some(q.before.clone()).filter(|b| !b.is_empty()),
        limit: PAGE,
    };
    let now = app.now();
    let incoming = if q.direction == "incoming" {
        Some(incoming_rows(&app, q.q.trim(), now).await?)
    } else {
        None
    };
    let records = if incoming.is_some() {
        Vec::new()
    } else {
        app.messages(&filter).await?
    };
    let older = (records.len() == usize::try_from(PAGE).unwrap_or(usize::MAX))
        .then(|| records.last().map(|r| r.id.clone()))
        .flatten()
        .map(|last| {
            let query = form_urlencoded::Serializer::new(String::new())
                .extend_pairs([
                    ("state", q.state.as_str()),
                    ("server", q.server.as_str()),
                    ("since", q.since.as_str()),
                    ("until", q.until.as_str()),
                    ("q", q.q.as_str()),
                    ("before", last.as_str()),
                ])
                .finish();
            format!("/emails?{query}")
        });
    let rows = records
        .into_iter()
        .map(|r| EmailRow {
            when: format!(
                "{} ({})",
                format_utc(r.created_at),
                relative(r.created_at, now)
            ),
            state: r.state.code(),
            from: r.from_header,
            to: match r.rcpt_to.len() {
                0 => String::new(),
                1 => r.rcpt_to[0].clone(),
                n => format!("{} and {} more", r.rcpt_to[0], n - 1),
            },
            subject: r.subject,
            server: servers
                .get(&r.server_id)
                .cloned()
                .unwrap_or_else(|| "(deleted)".into()),
            origin: match r.origin {
                Edge::Api => "API",
                Edge::Cli => "CLI",
                Edge::Relay => "Relay",
                Edge::Bounce => "Bounce",
            },
            attempts: r.attempts,
            possibly_twice: r.unknown_outcomes > 0,
            id: r.id,
        })
        .collect();
    let mut servers: Vec<(i64, String)> = servers.into_iter().collect();
    servers.sort();
    Ok(EmailsPage {
        chrome: Chrome::admin(&admin, "emails", Flash::from_headers(&app, &headers)),
        states: MessageState::ALL.iter().map(|s| s.code()).collect(),
        servers,
        filter: EmailFilterView {
            direction: if q.direction == "incoming" {
                "incoming".into()
            } else {
                "outgoing".into()
            },
            state: q.state,
            server: q.server,
            since: q.since,
            until: q.until,
            q: q.q,
        },
        rows,
        older,
        incoming,
    })
}

/// The newest incoming messages, those matching `search` (subject or From).
async fn incoming_rows(
    app: &App,
    search: &str,
    now: Timestamp,
) -> Result<Vec<InboundRow>, WebError> {
    let servers: HashMap<i64, String> = app
        .incoming_servers()
        .await?
        .into_iter()
        .map(|s| (s.id, s.name))
        .collect();
    Ok(app
        .store
        .inbox_latest(Some(search).filter(|s| !s.is_empty()), PAGE)
        .await
        .map_err(AppError::from)?
        .into_iter()
        .map(|m| InboundRow {
            when: format!(
                "{} ({})",
                format_utc(m.received_at),
                relative(m.received_at, now)
            ),
            from: m.summary.from.clone(),
            subject: m.summary.subject.clone(),
            server: servers
                .get(&m.server_id)
                .cloned()
                .unwrap_or_else(|| "(deleted)".into()),
            folder: m.folder.clone(),
            webhook: m.webhook.clone(),
            attempts: m.webhook_attempts,
            id: m.id,
        })
        .collect())
}

/// One incoming message: its fields, its webhook attempts.
pub async fn show_inbound(
    State(app): State<Arc<App>>,
    Admin(admin): Admin,
    Path(id): Path<String>,
) -> Result<InboundPage, WebError> {
    let message = app
        .store
        .inbox_message(&id)
        .await
        .map_err(AppError::from)?
        .ok_or(WebError::NotFound("Incoming message"))?;
    let attempts = app
        .store
        .webhook_attempts(&id)
        .await
        .map_err(AppError::from)?
        .into_iter()
        .map(|a| WebhookAttemptView {
            when: format_utc(a.at),
            status: a
                .status
                .map_or_else(|| "no answer".into(), |s| s.to_string()),
            error: a.error.unwrap_or_default(),
            took: format!("{} ms", a.took_ms),
        })
        .collect();
    let server = app
        .incoming_server(message.server_id)
        .await
        .map(|s| s.name)
        .unwrap_or_else(|_| "(deleted)".into());
    Ok(InboundPage {
        chrome: Chrome::admin(&admin, "emails", None),
        received: format_utc(message.received_at),
        server,
        attachments: message
            .summary
            .attachments
            .iter()
            .map(|a| {
                format!(
                    "{} ({}, {} bytes)",
                    a.filename.as_deref().unwrap_or("unnamed"),
                    a.content_type,
                    a.size
                )
            })
            .collect(),
        message,
        attempts,
    })
}

pub async fn show(
    State(app): State<Arc<App>>,
    Admin(admin): Admin,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<EmailPage, WebError> {
    let (m, attempts) = app.message(&id).await?;
    let now = app.now();
    let server = app
        .store
        .server(m.server_id)
        .await
        .map_err(|e| WebError::Internal(e.to_string()))?
        .map_or_else(
            || "(deleted)".to_string(),
            |s| format!("{} ({}:{})", s.name, s.host, s.port),
        );
    let origin = match (m.origin, m.api_key_id) {
        (Edge::Cli, _) => "the command line (mailgate send)".to_string(),
        (Edge::Api, Some(key_id)) => {
            let keys = app.api_keys().await?;
            match keys.iter().find(|k| k.id == key_id) {
                Some(k) => format!("the API, with the key \"{}\" ({}…)", k.name, k.prefix),
                None => "the API, with a deleted key".to_string(),
            }
        }
        (Edge::Api, None) => "the API".to_string(),
        (Edge::Relay, _) => "the SMTP relay".to_string(),
        (Edge::Bounce, _) => {
            "mailgate, reporting a relayed message that could not be delivered".to_string()
        }
    };
    let state_note = match m.state {
        MessageState::Queued => "waiting its turn".to_string(),
        MessageState::Sending => "being sent".to_string(),
        MessageState::Deferred => format!(
            "next attempt {} ({})",
            relative(m.next_attempt_at, now),
            format_utc(m.next_attempt_at)
        ),
        MessageState::Held => {
            "waiting for a human: it goes by itself once the server's Google account is reconnected"
                .to_string()
        }
        MessageState::Failed => "permanently: the server refused it".to_string(),
        MessageState::Sent | MessageState::Cancelled => String::new(),
    };
    Ok(EmailPage {
        chrome: Chrome::admin(&admin, "emails", Flash::from_headers(&app, &headers)),
        state_note,
        recipients: m.rcpt_to.join(", "),
        server,
        origin,
        queued: format!(
            "{} ({})",
            format_utc(m.created_at),
            relative(m.created_at, now)
        ),
        sent: m.sent_at.map(format_utc),
        attempts: attempts
            .into_iter()
            .map(|a| AttemptView {
                when: format_utc(a.at),
                outcome: a.outcome,
                stage: a.stage,
                reply: a.reply,
                detail: a.detail,
            })
            .collect(),
        can_retry: m.state.retryable(),
        can_cancel: m.state.cancellable(),
        m,
    })
}

pub async fn retry(
    State(app): State<Arc<App>>,
    Admin(_): Admin,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    app.retry_message(&id).await?;
    Ok(redirect_with(
        &app,
        &format!("/emails/{id}"),
        Flash::ok("Queued again: it goes out now."),
    ))
}

pub async fn cancel(
    State(app): State<Arc<App>>,
    Admin(_): Admin,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    app.cancel_message(&id).await?;
    Ok(redirect_with(
        &app,
        &format!("/emails/{id}"),
        Flash::ok("Cancelled: it will not be sent."),
    ))
}
