//! The pages: one struct per template, holding exactly what the template shows.

use askama::Template;
use askama_web::WebTemplate;

use super::session::Flash;
use crate::app::admins::AdminSession;
use crate::app::connect_gmail::Explanation;
use crate::app::doctor::{Check, SetupGuide};
use crate::app::settings::SettingsView;
use crate::app::test_connection::TestFailure;
use crate::domain::{FieldErrors, ServerDraft};

/// What every page's frame needs: who is signed in, the CSRF token for its forms, the flash.
pub struct Chrome {
    pub admin_email: Option<String>,
    pub csrf: String,
    pub flash: Option<Flash>,
    pub nav: &'static str,
}

impl Chrome {
    pub fn admin(session: &AdminSession, nav: &'static str, flash: Option<Flash>) -> Self {
        Self {
            admin_email: Some(session.email.clone()),
            csrf: session.csrf_token.clone(),
            flash,
            nav,
        }
    }

    pub fn anonymous(csrf: String, flash: Option<Flash>) -> Self {
        Self {
            admin_email: None,
            csrf,
            flash,
            nav: "",
        }
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "login.html")]
pub struct LoginPage {
    pub chrome: Chrome,
    pub error: Option<String>,
    pub csrf: String,
    pub next: String,
    pub email: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "setup.html")]
pub struct SetupPage {
    pub chrome: Chrome,
    pub valid: bool,
    pub error: Option<String>,
    pub csrf: String,
    pub token: String,
    pub email: String,
}

pub struct ChecklistStep {
    pub done: bool,
    pub href: String,
    pub label: String,
    pub detail: String,
}

/// The last pre-flight check, as the overview shows it.
pub struct DoctorView {
    pub when: String,
    pub passed: usize,
    pub warned: usize,
    pub failed: usize,
    pub checks: Vec<Check>,
}

#[derive(Template, WebTemplate)]
#[template(path = "overview.html")]
pub struct OverviewPage {
    pub chrome: Chrome,
    pub warnings: Vec<String>,
    pub steps: Vec<ChecklistStep>,
    pub doctor: Option<DoctorView>,
    pub queue: Vec<(&'static str, i64)>,
    pub chart: super::chart::Chart,
    /// The relay's listeners, and the messages it took today (UTC).
    pub relay: Option<(RelayView, i64)>,
    /// Instances sharing the queue: (host, HTTP address, started, last heartbeat).
    pub instances: Vec<(String, String, String, String)>,
}

/// The Emails filters as typed, to refill the form.
#[derive(Default)]
pub struct EmailFilterView {
    /// `outgoing` or `incoming`.
    pub direction: String,
    pub state: String,
    pub server: String,
    pub since: String,
    pub until: String,
    pub q: String,
}

pub struct EmailRow {
    pub id: String,
    pub when: String,
    pub state: &'static str,
    pub from: String,
    pub to: String,
    pub subject: String,
    pub server: String,
    /// `API` or `CLI`: the edge the message came in by.
    pub origin: &'static str,
    pub attempts: i64,
    /// Some attempt ended without an answer after the final dot.
    pub possibly_twice: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "emails.html")]
pub struct EmailsPage {
    pub chrome: Chrome,
    pub states: Vec<&'static str>,
    pub servers: Vec<(i64, String)>,
    pub filter: EmailFilterView,
    pub rows: Vec<EmailRow>,
    pub older: Option<String>,
    /// With `direction=incoming`: the mail incoming servers fetched, instead of `rows`.
    pub incoming: Option<Vec<InboundRow>>,
}

pub struct InboundRow {
    pub id: String,
    pub when: String,
    pub from: String,
    pub subject: String,
    pub server: String,
    pub folder: String,
    /// `pending`, `delivered` or `none`.
    pub webhook: String,
    pub attempts: i64,
}

pub struct WebhookAttemptView {
    pub when: String,
    pub status: String,
    pub error: String,
    pub took: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "inbound.html")]
pub struct InboundPage {
    pub chrome: Chrome,
    pub message: crate::store::InboundRecord,
    pub received: String,
    pub server: String,
    pub attachments: Vec<String>,
    pub attempts: Vec<WebhookAttemptView>,
}

pub struct AttemptView {
    pub when: String,
    pub outcome: String,
    pub stage: String,
    pub reply: Option<String>,
    pub detail: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "email.html")]
pub struct EmailPage {
    pub chrome: Chrome,
    pub m: crate::store::MessageRecord,
    pub state_note: String,
    pub recipients: String,
    pub server: String,
    /// Which edge the message came in by, in words.
    pub origin: String,
    pub queued: String,
    pub sent: Option<String>,
    pub attempts: Vec<AttemptView>,
    pub can_retry: bool,
    pub can_cancel: bool,
}

pub struct ApiKeyRow {
    pub id: i64,
    pub name: String,
    pub prefix: String,
    /// Which messages the key may read back.
    pub reads: &'static str,
    pub created: String,
    pub last_used: String,
    pub revoked: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "api_keys.html")]
pub struct ApiKeysPage {
    pub chrome: Chrome,
    pub new_key: Option<String>,
    pub base: String,
    pub error: Option<String>,
    pub keys: Vec<ApiKeyRow>,
}

pub struct RelayCredentialRow {
    pub id: i64,
    pub name: String,
    pub prefix: String,
    pub senders: String,
    pub created: String,
    pub last_used: String,
    pub revoked: bool,
}

/// The relay's listeners and certificate, as the relay page and the Overview show them.
pub struct RelayView {
    pub host: String,
    pub submission: Option<String>,
    pub submission_port: Option<u16>,
    pub implicit_tls: Option<String>,
    pub fingerprint: String,
    pub self_signed: bool,
    pub certificate_path: String,
    pub expires: String,
    pub sessions: usize,
    pub trusted_networks: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "relay.html")]
pub struct RelayPage {
    pub chrome: Chrome,
    /// None when the relay is turned off.
    pub relay: Option<RelayView>,
    /// A credential just created: its name and password, shown this once.
    pub created: Option<(String, String)>,
    pub error: Option<String>,
    pub credentials: Vec<RelayCredentialRow>,
}

#[derive(Template, WebTemplate)]
#[template(path = "google_setup.html")]
pub struct GoogleSetupPage {
    pub chrome: Chrome,
    pub guide: SetupGuide,
}

#[derive(Template, WebTemplate)]
#[template(path = "settings.html")]
pub struct SettingsPage {
    pub chrome: Chrome,
    pub view: SettingsView,
    pub errors: FieldErrors,
}

pub struct ServerRow {
    pub id: i64,
    pub name: String,
    pub auth: &'static str,
    pub username: String,
    pub endpoint: String,
    /// (label, css class)
    pub badge: Option<(&'static str, &'static str)>,
    pub priority: i64,
}

#[derive(Template, WebTemplate)]
#[template(path = "servers.html")]
pub struct ServersPage {
    pub chrome: Chrome,
    pub rows: Vec<ServerRow>,
}

pub struct TestView {
    pub ok: bool,
    pub when: String,
    pub steps: Vec<String>,
    pub failure: Option<TestFailure>,
}

pub struct ExpiryView {
    pub date: String,
    pub relative: String,
    pub soon: bool,
}

/// A "Connect your Gmail account" that never came back from Google.
pub struct UnfinishedView {
    pub username: String,
    pub when: String,
    pub redirect_uri: String,
}

pub struct GmailPanel {
    pub username: String,
    pub label: &'static str,
    pub css: &'static str,
    pub reason: Option<String>,
    pub since: Option<String>,
    pub expiry: Option<ExpiryView>,
    pub last_error: Option<String>,
    pub connected: bool,
    pub unfinished: Option<UnfinishedView>,
}

#[derive(Template, WebTemplate)]
#[template(path = "server_form.html")]
pub struct ServerFormPage {
    pub chrome: Chrome,
    pub id: Option<i64>,
    pub draft: ServerDraft,
    pub has_password: bool,
    pub errors: FieldErrors,
    pub gmail: Option<GmailPanel>,
    pub credentials_missing: bool,
    pub last_test: Option<TestView>,
    pub auth_options: Vec<(&'static str, &'static str)>,
    pub security_options: Vec<(&'static str, &'static str)>,
    pub from_policy_options: Vec<(&'static str, &'static str)>,
    /// Where every Gmail OAuth server connects: `smtp.gmail.com:587 (STARTTLS)`.
    pub gmail_endpoint: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "oauth_error.html")]
pub struct OauthErrorPage {
    pub chrome: Chrome,
    pub e: Explanation,
}

/// One incoming server, as the list and its page show it.
pub struct IncomingRow {
    pub id: i64,
    pub name: String,
    pub username: String,
    pub folder: String,
    pub confirmed: bool,
    pub status: String,
    pub status_css: &'static str,
    pub status_at: Option<String>,
    pub last_fetch: String,
    pub webhook: String,
    /// The account's Google connection, in the seed's words.
    pub badge: &'static str,
    pub badge_css: &'static str,
    /// The account has a Google connection (valid or not) that "Disconnect" would forget.
    pub connected: bool,
    pub uid: i64,
    pub uidvalidity: Option<i64>,
}

#[derive(Template, WebTemplate)]
#[template(path = "incoming.html")]
pub struct IncomingListPage {
    pub chrome: Chrome,
    pub servers: Vec<IncomingRow>,
}

#[derive(Template, WebTemplate)]
#[template(path = "incoming_form.html")]
pub struct IncomingFormPage {
    pub chrome: Chrome,
    pub id: Option<i64>,
    pub draft: crate::domain::incoming::IncomingDraft,
    pub errors: FieldErrors,
    pub saved: Option<IncomingRow>,
    /// The webhook secret, just made: shown this once.
    pub secret: Option<String>,
    /// Where every incoming server connects: `imap.gmail.com:993`.
    pub imap_endpoint: String,
    pub unfinished: Option<UnfinishedView>,
}
