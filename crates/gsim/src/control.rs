//! The control API under `/_gsim/` (documented in the crate README): what a test harness does to the
//! simulated Google. Each handler is a thin wrapper over a `World` method that Rust tests can call
//! directly.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::config::{AccountConfig, ClientConfig, ClientType, PublishingStatus};
use crate::oauth::scopes;
use crate::oauth::tokens::Grant;
use crate::world::{
    Counters, Death, Delivery, Faults, SmtpFault, TokenFault, World, canonical_mailbox,
};

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("no such account: {0}")]
    NoAccount(String),
    #[error("no such OAuth client: {0}")]
    NoClient(String),
    #[error("no such mailbox: {0}")]
    NoMailbox(String),
    #[error("unknown or already dead token")]
    NoToken,
    #[error("{0}")]
    Internal(String),
}

impl IntoResponse for ControlError {
    fn into_response(self) -> Response {
        let status = match self {
            ControlError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::NOT_FOUND,
        };
        (status, Json(json!({"error": self.to_string()}))).into_response()
    }
}

/// A partial update of an OAuth client: what a developer changes in the Cloud console.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientPatch {
    pub client_secret: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<ClientType>,
    pub name: Option<String>,
    pub redirect_uris: Option<Vec<String>>,
    pub publishing_status: Option<PublishingStatus>,
    pub test_users: Option<Vec<String>>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountPatch {
    pub name: Option<String>,
    pub aliases: Option<Vec<String>>,
    pub daily_send_limit: Option<u32>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct MintRequest {
    pub client_id: String,
    pub email: String,
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    #[serde(default = "yes")]
    pub offline: bool,
}

fn default_scopes() -> Vec<String> {
    vec![crate::world::MAIL_SCOPE.to_string()]
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Serialize)]
pub struct RefreshTokenInfo {
    pub token: String,
    pub client_id: String,
    pub account: String,
    pub issued_at: i64,
    pub expires_at: Option<i64>,
    pub live: bool,
    pub death: Option<Death>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpSettingsPatch {
    pub idle_timeout_ms: Option<u64>,
    pub max_message_size: Option<usize>,
    pub max_connections_per_account: Option<usize>,
    pub max_recipients: Option<usize>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImapSettingsPatch {
    pub idle_timeout_ms: Option<u64>,
    pub max_connections_per_account: Option<usize>,
    pub offer_idle: Option<bool>,
}

impl World {
    pub fn put_client(&self, client: ClientConfig) {
        self.with(|s| s.put_client(client));
    }

    pub fn patch_client(
        &self,
        client_id: &str,
        patch: ClientPatch,
    ) -> Result<ClientConfig, ControlError> {
        self.with(|s| {
            let client = s
                .clients
                .get_mut(client_id)
                .ok_or_else(|| ControlError::NoClient(client_id.to_string()))?;
            if let Some(v) = patch.client_secret {
                client.client_secret = v;
            }
            if let Some(v) = patch.kind {
                client.kind = v;
            }
            if let Some(v) = patch.name {
                client.name = v;
            }
            if let Some(v) = patch.redirect_uris {
                client.redirect_uris = v;
            }
            if let Some(v) = patch.publishing_status {
                client.publishing_status = v;
            }
            if let Some(v) = patch.test_users {
                client.test_users = v;
            }
            Ok(client.clone())
        })
    }

    pub fn put_account(&self, account: &AccountConfig) {
        self.with(|s| s.put_account(account));
    }

    pub fn patch_account(&self, email: &str, patch: AccountPatch) -> Result<(), ControlError> {
        let email = email.to_ascii_lowercase();
        self.with(|s| {
            let account = s
                .accounts
                .get_mut(&email)
                .ok_or_else(|| ControlError::NoAccount(email.clone()))?;
            if let Some(v) = patch.name {
                account.name = v;
            }
            if let Some(v) = patch.aliases {
                account.aliases = v.iter().map(|a| a.to_ascii_lowercase()).collect();
            }
            if let Some(v) = patch.daily_send_limit {
                account.daily_send_limit = v;
            }
            Ok(())
        })
    }

    pub fn change_password(&self, email: &str, password: &str) -> Result<(), ControlError> {
        let email = email.to_ascii_lowercase();
        if self.with(|s| s.change_password(&email, password)) {
            Ok(())
        } else {
            Err(ControlError::NoAccount(email))
        }
    }

    pub fn advance_clock(&self, seconds: i64) -> i64 {
        self.clock.advance(seconds);
        self.now()
    }

    pub fn revoke_token(&self, token: &str) -> Result<(), ControlError> {
        let now = self.now();
        if self.with(|s| s.revoke(token, now)) {
            Ok(())
        } else {
            Err(ControlError::NoToken)
        }
    }

    /// Issues tokens as if the user had consented, for tests that are not about the consent page.
    pub fn mint_tokens(&self, request: &MintRequest) -> Result<Value, ControlError> {
        let now = self.now();
        let email = request.email.to_ascii_lowercase();
        let scopes: Vec<String> = request
            .scopes
            .iter()
            .map(|s| scopes::normalize(s).to_string())
            .collect();
        self.with(|s| {
            let client = s
                .clients
                .get(&request.client_id)
                .cloned()
                .ok_or_else(|| ControlError::NoClient(request.client_id.clone()))?;
            if !s.accounts.contains_key(&email) {
                return Err(ControlError::NoAccount(email.clone()));
            }
            s.grants.insert((email.clone(), client.client_id.clone()));
            let grant = Grant {
                client: &client,
                account: &email,
                scopes: &scopes,
                nonce: None,
            };
            let refresh = request.offline.then(|| s.issue_refresh_token(&grant, now));
            s.token_response(&self.signer, &grant, refresh.as_ref(), true, now)
                .map_err(|e| ControlError::Internal(e.to_string()))
        })
    }

    pub fn refresh_tokens(&self, account: Option<&str>) -> Vec<RefreshTokenInfo> {
        let now = self.now();
        let account = account.map(str::to_ascii_lowercase);
        let mut list: Vec<RefreshTokenInfo> = self.with(|s| {
            s.refresh_tokens
                .values()
                .filter(|t| account.as_deref().is_none_or(|a| a == t.account))
                .map(|t| RefreshTokenInfo {
                    token: t.token.clone(),
                    client_id: t.client_id.clone(),
                    account: t.account.clone(),
                    issued_at: t.issued_at,
                    expires_at: t.expires_at,
                    live: t.is_live(now),
                    death: t.death(now),
                })
                .collect()
        });
        list.sort_by(|a, b| (a.issued_at, &a.token).cmp(&(b.issued_at, &b.token)));
        list
    }

    pub fn deliveries(&self, since: u64) -> Vec<Delivery> {
        self.with(|s| {
            s.deliveries
                .iter()
                .filter(|d| d.id > since)
                .cloned()
                .collect()
        })
    }

    pub fn clear_deliveries(&self) {
        self.with(|s| s.deliveries.clear());
    }

    pub fn counters(&self) -> Counters {
        self.with(|s| s.counters.clone())
    }

    /// Starts counting each account's most concurrent SMTP sessions afresh (between phases of
    /// a benchmark).
    pub fn reset_smtp_peaks(&self) {
        self.with(|s| s.counters.smtp_peak_sessions.clear());
    }

    pub fn set_auto_consent(&self, enabled: bool) {
        self.with(|s| s.settings.oauth.auto_consent = enabled);
    }

    pub fn arm_smtp_fault(&self, fault: SmtpFault) {
        self.with(|s| s.faults.smtp.push(fault));
    }

    pub fn arm_token_fault(&self, fault: TokenFault) {
        self.with(|s| s.faults.token.push_back(fault));
    }

    pub fn faults(&self) -> Faults {
        self.with(|s| s.faults.clone())
    }

    pub fn clear_faults(&self) {
        self.with(|s| s.faults = Faults::default());
    }

    /// Waits until at least `n` SMTP sessions are held by `hold` faults.
    pub async fn wait_held(&self, n: u64) {
        let mut changes = self.subscribe_changes();
        while self.counters().smtp_held < n {
            if changes.changed().await.is_err() {
                return;
            }
        }
    }

    pub fn patch_smtp_settings(&self, patch: SmtpSettingsPatch) {
        self.with(|s| {
            let smtp = &mut s.settings.smtp;
            if let Some(v) = patch.idle_timeout_ms {
                smtp.idle_timeout_ms = v;
            }
            if let Some(v) = patch.max_message_size {
                smtp.max_message_size = v;
            }
            if let Some(v) = patch.max_connections_per_account {
                smtp.max_connections_per_account = v;
            }
            if let Some(v) = patch.max_recipients {
                smtp.max_recipients = v;
            }
        });
    }

    pub fn patch_imap_settings(&self, patch: ImapSettingsPatch) {
        self.with(|s| {
            let imap = &mut s.settings.imap;
            if let Some(v) = patch.idle_timeout_ms {
                imap.idle_timeout_ms = v;
            }
            if let Some(v) = patch.max_connections_per_account {
                imap.max_connections_per_account = v;
            }
            if let Some(v) = patch.offer_idle {
                imap.offer_idle = v;
            }
        });
    }

    pub fn mailbox(&self, email: &str, mailbox: &str) -> Result<Value, ControlError> {
        let email = email.to_ascii_lowercase();
        let name = canonical_mailbox(mailbox);
        self.with(|s| {
            let mbox = s
                .mailboxes
                .get(&email)
                .ok_or_else(|| ControlError::NoAccount(email.clone()))?
                .get(&name)
                .ok_or_else(|| ControlError::NoMailbox(name.clone()))?;
            let messages: Vec<Value> = mbox
                .messages
                .iter()
                .map(|m| {
                    json!({
                        "uid": m.uid,
                        "flags": m.flags,
                        "internal_date": m.internal_date,
                        "size": m.raw.len(),
                        "raw": String::from_utf8_lossy(&m.raw),
                    })
                })
                .collect();
            Ok(json!({
                "uidvalidity": mbox.uidvalidity,
                "uidnext": mbox.uidnext,
                "messages": messages,
            }))
        })
    }
}

pub fn router() -> Router<Arc<World>> {
    Router::new()
        .route("/_gsim/health", get(|| async { Json(json!({"ok": true})) }))
        .route("/_gsim/clients", get(list_clients).post(put_client))
        .route(
            "/_gsim/clients/{client_id}",
            axum::routing::patch(patch_client),
        )
        .route("/_gsim/accounts", get(list_accounts).post(put_account))
        .route(
            "/_gsim/accounts/{email}",
            axum::routing::patch(patch_account),
        )
        .route("/_gsim/accounts/{email}/password", post(change_password))
        .route("/_gsim/clock", get(clock))
        .route("/_gsim/clock/advance", post(advance_clock))
        .route("/_gsim/tokens", get(list_tokens))
        .route("/_gsim/tokens/mint", post(mint))
        .route("/_gsim/tokens/revoke", post(revoke))
        .route(
            "/_gsim/mailboxes/{email}/{mailbox}",
            get(read_mailbox).post(append),
        )
        .route(
            "/_gsim/mailboxes/{email}/{mailbox}/renumber",
            post(renumber),
        )
        .route(
            "/_gsim/deliveries",
            get(deliveries).delete(clear_deliveries),
        )
        .route("/_gsim/counters", get(counters))
        .route("/_gsim/auto_consent", put(auto_consent))
        .route("/_gsim/faults", get(list_faults).delete(clear_faults))
        .route("/_gsim/faults/smtp", post(smtp_fault))
        .route("/_gsim/faults/token", post(token_fault))
        .route("/_gsim/faults/release", post(release_held))
        .route("/_gsim/smtp/settings", put(smtp_settings))
        .route("/_gsim/imap/settings", put(imap_settings))
        .layer(DefaultBodyLimit::max(64 * 1024 * 1024))
}

type Ctx = State<Arc<World>>;

async fn list_clients(State(world): Ctx) -> Json<Value> {
    Json(json!(
        world.with(|s| s.clients.values().cloned().collect::<Vec<_>>())
    ))
}

async fn put_client(State(world): Ctx, Json(client): Json<ClientConfig>) -> Json<ClientConfig> {
    world.put_client(client.clone());
    Json(client)
}

async fn patch_client(
    State(world): Ctx,
    Path(client_id): Path<String>,
    Json(patch): Json<ClientPatch>,
) -> Result<Json<ClientConfig>, ControlError> {
    world.patch_client(&client_id, patch).map(Json)
}

async fn list_accounts(State(world): Ctx) -> Json<Value> {
    Json(json!(
        world.with(|s| s.accounts.values().cloned().collect::<Vec<_>>())
    ))
}

async fn put_account(State(world): Ctx, Json(account): Json<AccountConfig>) -> Json<Value> {
    world.put_account(&account);
    Json(json!({"email": account.email.to_ascii_lowercase()}))
}

async fn patch_account(
    State(world): Ctx,
    Path(email): Path<String>,
    Json(patch): Json<AccountPatch>,
) -> Result<Json<Value>, ControlError> {
    world.patch_account(&email, patch)?;
    Ok(Json(json!({"ok": true})))
}

#[derive(Deserialize)]
struct PasswordBody {
    password: String,
}

async fn change_password(
    State(world): Ctx,
    Path(email): Path<String>,
    Json(body): Json<PasswordBody>,
) -> Result<Json<Value>, ControlError> {
    world.change_password(&email, &body.password)?;
    Ok(Json(json!({"ok": true})))
}

async fn clock(State(world): Ctx) -> Json<Value> {
    Json(json!({"now": world.now(), "offset_secs": world.clock.offset()}))
}

#[derive(Deserialize)]
struct Advance {
    seconds: i64,
}

async fn advance_clock(State(world): Ctx, Json(body): Json<Advance>) -> Json<Value> {
    let now = world.advance_clock(body.seconds);
    Json(json!({"now": now, "offset_secs": world.clock.offset()}))
}

#[derive(Deserialize)]
struct AccountFilter {
    account: Option<String>,
}

async fn list_tokens(
    State(world): Ctx,
    Query(q): Query<AccountFilter>,
) -> Json<Vec<RefreshTokenInfo>> {
    Json(world.refresh_tokens(q.account.as_deref()))
}

async fn mint(
    State(world): Ctx,
    Json(request): Json<MintRequest>,
) -> Result<Json<Value>, ControlError> {
    world.mint_tokens(&request).map(Json)
}

#[derive(Deserialize)]
struct TokenBody {
    token: String,
}

async fn revoke(
    State(world): Ctx,
    Json(body): Json<TokenBody>,
) -> Result<Json<Value>, ControlError> {
    world.revoke_token(&body.token)?;
    Ok(Json(json!({"ok": true})))
}

async fn read_mailbox(
    State(world): Ctx,
    Path((email, mailbox)): Path<(String, String)>,
) -> Result<Json<Value>, ControlError> {
    world.mailbox(&email, &mailbox).map(Json)
}

#[derive(Deserialize)]
struct AppendBody {
    raw: String,
    #[serde(default)]
    flags: BTreeSet<String>,
}

async fn append(
    State(world): Ctx,
    Path((email, mailbox)): Path<(String, String)>,
    Json(body): Json<AppendBody>,
) -> Result<Json<Value>, ControlError> {
    let uid = world
        .append_message(&email, &mailbox, body.raw.into_bytes(), body.flags)
        .ok_or_else(|| ControlError::NoAccount(email.clone()))?;
    Ok(Json(json!({"uid": uid})))
}

async fn renumber(
    State(world): Ctx,
    Path((email, mailbox)): Path<(String, String)>,
) -> Result<Json<Value>, ControlError> {
    let validity = world
        .renumber_mailbox(&email, &mailbox)
        .ok_or_else(|| ControlError::NoMailbox(mailbox.clone()))?;
    Ok(Json(json!({"uidvalidity": validity})))
}

#[derive(Deserialize)]
struct Since {
    #[serde(default)]
    since: u64,
}

async fn deliveries(State(world): Ctx, Query(q): Query<Since>) -> Json<Value> {
    let list: Vec<Value> = world
        .deliveries(q.since)
        .into_iter()
        .map(|d| {
            json!({
                "id": d.id,
                "time": d.time,
                "account": d.account,
                "mail_from": d.mail_from,
                "rcpt_to": d.rcpt_to,
                "message_id": d.message_id,
                "original_from": d.original_from,
                "session": d.session,
                "raw": String::from_utf8_lossy(&d.raw),
            })
        })
        .collect();
    Json(json!(list))
}

async fn clear_deliveries(State(world): Ctx) -> Json<Value> {
    world.clear_deliveries();
    Json(json!({"ok": true}))
}

async fn counters(State(world): Ctx) -> Json<Counters> {
    Json(world.counters())
}

#[derive(Deserialize)]
struct Enabled {
    enabled: bool,
}

async fn auto_consent(State(world): Ctx, Json(body): Json<Enabled>) -> Json<Value> {
    world.set_auto_consent(body.enabled);
    Json(json!({"auto_consent": body.enabled}))
}

async fn list_faults(State(world): Ctx) -> Json<Faults> {
    Json(world.faults())
}

async fn clear_faults(State(world): Ctx) -> Json<Value> {
    world.clear_faults();
    Json(json!({"ok": true}))
}

async fn smtp_fault(State(world): Ctx, Json(fault): Json<SmtpFault>) -> Json<Value> {
    world.arm_smtp_fault(fault);
    Json(json!({"ok": true}))
}

async fn token_fault(State(world): Ctx, Json(fault): Json<TokenFault>) -> Json<Value> {
    world.arm_token_fault(fault);
    Json(json!({"ok": true}))
}

async fn smtp_settings(State(world): Ctx, Json(patch): Json<SmtpSettingsPatch>) -> Json<Value> {
    world.patch_smtp_settings(patch);
    Json(json!(world.with(|s| s.settings.smtp.clone())))
}

async fn imap_settings(State(world): Ctx, Json(patch): Json<ImapSettingsPatch>) -> Json<Value> {
    world.patch_imap_settings(patch);
    Json(json!(world.with(|s| s.settings.imap.clone())))
}

async fn release_held(State(world): Ctx) -> Json<Value> {
    world.release_held();
    Json(json!({"released": true}))
}
