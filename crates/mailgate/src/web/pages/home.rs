//! The overview: the seed's flow as a checklist, and what needs attention.

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;

use crate::app::App;
use crate::app::doctor::Status;
use crate::clock::{format_utc, relative};
use crate::domain::connection::EXPIRY_WARNING_SECS;
use crate::domain::{AuthMethod, TokenBadge};
use crate::web::WebError;
use crate::web::session::{Admin, Flash};
use crate::web::views::{ChecklistStep, Chrome, DoctorView, OverviewPage};

pub async fn overview(
    State(app): State<Arc<App>>,
    Admin(admin): Admin,
    headers: HeaderMap,
) -> Result<OverviewPage, WebError> {
    let settings = app.google_settings().await?;
    let servers = app.server_summaries().await?;
    let now = app.now();
    let gmail: Vec<_> = servers
        .iter()
        .filter(|s| s.server.auth == AuthMethod::Gmail)
        .collect();
    let first_gmail = gmail
        .first()
        .map(|s| format!("/servers/{}", s.server.id))
        .unwrap_or_else(|| "/servers/new".into());
    let connected = gmail.iter().find(|s| s.badge == Some(TokenBadge::Valid));
    let tested = gmail
        .iter()
        .find(|s| s.server.last_test.as_ref().is_some_and(|t| t.ok));
    let steps = vec![
        ChecklistStep {
            done: settings.credentials().is_some() && settings.custom_email_servers,
            href: "/settings".into(),
            label: "Enter the Gmail Credentials".into(),
            detail: "Settings → Custom Email Servers → Client ID and Client Secret".into(),
        },
        ChecklistStep {
            done: !gmail.is_empty(),
            href: first_gmail.clone(),
            label: "Create a Gmail outgoing server".into(),
            detail: "Authenticate with Gmail OAuth, Username = the Gmail address".into(),
        },
        ChecklistStep {
            done: connected.is_some(),
            href: connected
                .map(|s| format!("/servers/{}", s.server.id))
                .unwrap_or_else(|| first_gmail.clone()),
            label: "Connect your Gmail account".into(),
            detail: "until the server shows “Gmail Token Valid”".into(),
        },
        ChecklistStep {
            done: tested.is_some(),
            href: tested
                .map(|s| format!("/servers/{}", s.server.id))
                .unwrap_or(first_gmail),
            label: "Test Connection".into(),
            detail: "until it says “Connection Test Successful!”".into(),
        },
    ];
    let mut warnings = Vec::new();
    if app.config.public_url_rejected_by_google() {
        warnings.push(format!(
            "mailgate's public URL {} is plain http on a non-local host: Google will refuse the redirect URI. Serve it over https and set MAILGATE_PUBLIC_URL.",
            app.config.public_base()
        ));
    }
    for summary in &gmail {
        let name = &summary.server.name;
        match &summary.badge {
            Some(TokenBadge::ReconnectNeeded { reason, .. }) => {
                warnings.push(format!("{name}: Reconnect needed ({reason})."));
            }
            Some(TokenBadge::Valid) => {
                if let Some(expires) = summary
                    .connection
                    .as_ref()
                    .and_then(|c| c.refresh_expires_at)
                    .filter(|t| *t - now < EXPIRY_WARNING_SECS)
                {
                    warnings.push(format!(
                        "{name}: the Google connection stops working {} ({}): the app is in Testing.",
                        relative(expires, now),
                        format_utc(expires)
                    ));
                }
            }
            _ => {}
        }
    }
    let doctor = app.last_doctor_report().await?.map(|r| DoctorView {
        when: format!("{} ({})", format_utc(r.at), relative(r.at, now)),
        passed: r.count(Status::Pass),
        warned: r.count(Status::Warn),
        failed: r.count(Status::Fail),
        checks: r.checks,
    });
    let queue = app
        .queue_counts()
        .await?
        .into_iter()
        .filter(|(state, n)| *n > 0 || matches!(state.code(), "queued" | "sent" | "failed"))
        .map(|(state, n)| (state.code(), n))
        .collect();
    let outcomes = app
        .store
        .hourly_outcomes(now - 24 * 3600)
        .await
        .map_err(|e| WebError::Internal(e.to_string()))?;
    let relay = match super::relay::relay_view(&app) {
        Some(view) => Some((view, app.relayed_today().await?)),
        None => None,
    };
    let instances = app
        .live_instances()
        .await
        .map_err(crate::app::AppError::from)?
        .into_iter()
        .map(|i| {
            (
                i.host,
                i.http_addr,
                relative(i.started_at, now),
                relative(i.heartbeat_at, now),
            )
        })
        .collect();
    Ok(OverviewPage {
        chrome: Chrome::admin(&admin, "overview", Flash::from_headers(&app, &headers)),
        relay,
        instances,
        warnings,
        steps,
        doctor,
        queue,
        chart: crate::web::chart::hourly(now, &outcomes),
    })
}
