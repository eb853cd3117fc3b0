//! The authorization endpoint and the pages behind it: validate the request as Google does, then
//! account chooser, the unverified-app warning for Testing apps, consent, and the redirect back.

use askama::Template;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::pages::{ChooserAccount, ChooserPage, ConsentPage, ErrorPage, UnverifiedPage};
use super::scopes;
use crate::config::{ClientConfig, ClientType, PublishingStatus};
use crate::world::{State, World, new_auth_code, new_opaque_id};

/// A pending authorization request, between the first GET and the redirect back to the app.
#[derive(Debug, Clone)]
pub struct Flow {
    pub client_id: String,
    pub redirect_uri: String,
    pub scopes: Vec<String>,
    pub state: Option<String>,
    pub offline: bool,
    pub prompt: Vec<String>,
    pub login_hint: Option<String>,
    pub challenge: Option<Challenge>,
    pub nonce: Option<String>,
    pub created_at: i64,
    pub details: Vec<(String, String)>,
    pub account: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Plain(String),
    S256(String),
}

impl Challenge {
    pub fn verify(&self, verifier: &str) -> bool {
        match self {
            Challenge::Plain(c) => c == verifier,
            Challenge::S256(c) => {
                let digest = ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes());
                URL_SAFE_NO_PAD.encode(digest.as_ref()) == *c
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct AuthCode {
    pub client_id: String,
    pub account: String,
    pub redirect_uri: String,
    pub scopes: Vec<String>,
    pub challenge: Option<Challenge>,
    pub nonce: Option<String>,
    /// Decided at consent: offline access, and a first grant or `prompt=consent`.
    pub issue_refresh: bool,
    pub expires_at: i64,
    pub used: bool,
}

/// What the browser gets next.
pub enum Step {
    Page(u16, String),
    Redirect(String),
}

const FLOW_LIFETIME_SECS: i64 = 3600;

fn page(status: u16, template: &impl Template) -> Step {
    match template.render() {
        Ok(html) => Step::Page(status, html),
        Err(e) => Step::Page(500, format!("template error: {e}")),
    }
}

fn error(e: Box<ErrorPage>) -> Step {
    page(e.status, e.as_ref())
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Whether Google would send the user back to `uri` for this client.
fn redirect_allowed(client: &ClientConfig, uri: &str) -> bool {
    match client.kind {
        ClientType::Web => client.redirect_uris.iter().any(|r| r == uri),
        // Desktop clients may only come back to a loopback address over http; an https callback is
        // exactly the seed FAQ's "Desktop app" mistake and gets redirect_uri_mismatch.
        ClientType::Desktop => ["http://127.0.0.1", "http://localhost", "http://[::1]"]
            .iter()
            .any(|prefix| {
                uri.strip_prefix(prefix)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with([':', '/']))
            }),
    }
}

/// GET /o/oauth2/v2/auth
pub fn start(world: &World, params: Vec<(String, String)>) -> Step {
    let now = world.now();
    let validated = world.with(|s| validate(s, &params, now));
    let flow = match validated {
        Ok(flow) => flow,
        Err(e) => return error(e),
    };
    let (auto, accounts) = world.with(|s| {
        (
            s.settings.oauth.auto_consent,
            s.accounts.values().cloned().collect::<Vec<_>>(),
        )
    });
    let hint = flow.login_hint.as_deref().map(str::to_ascii_lowercase);
    let hinted_account = hint
        .as_deref()
        .and_then(|h| accounts.iter().find(|a| a.email == h));
    if flow.prompt.iter().any(|p| p == "none") || auto {
        let Some(account) = hinted_account.or(accounts.first()) else {
            return redirect_error(&flow, "interaction_required");
        };
        let email = account.email.clone();
        return world.with(|s| {
            if let Err(e) = check_audience(s, &flow, &email) {
                return error(e);
            }
            let granted = s.grants.contains(&(email.clone(), flow.client_id.clone()));
            if !auto && !granted {
                return redirect_error(&flow, "consent_required");
            }
            issue_code(s, &flow, &email, now)
        });
    }
    let app = world.with(|s| app_name(s, &flow.client_id));
    let id = new_opaque_id();
    let mut listed: Vec<ChooserAccount> = accounts
        .iter()
        .map(|a| ChooserAccount {
            email: a.email.clone(),
            name: a.name.clone(),
            initial: a.name.chars().next().unwrap_or('?').to_ascii_uppercase(),
            hinted: Some(&a.email) == hint.as_ref(),
        })
        .collect();
    listed.sort_by_key(|a| !a.hinted);
    world.with(|s| {
        s.flows
            .retain(|_, f| now - f.created_at < FLOW_LIFETIME_SECS);
        s.flows.insert(id.clone(), flow);
    });
    page(
        200,
        &ChooserPage {
            app,
            flow: id,
            accounts: listed,
        },
    )
}

fn validate(s: &State, params: &[(String, String)], now: i64) -> Result<Flow, Box<ErrorPage>> {
    let missing = |name: &str| {
        ErrorPage::invalid_request(
            None,
            "invalid_request",
            format!("Missing required parameter: {name}"),
        )
    };
    let client_id = param(params, "client_id").ok_or_else(|| missing("client_id"))?;
    let client = s
        .clients
        .get(client_id)
        .ok_or_else(ErrorPage::invalid_client)?;
    let app = Some(client.name.as_str());
    let invalid = |text: String| ErrorPage::invalid_request(app, "invalid_request", text);
    let redirect_uri = param(params, "redirect_uri").ok_or_else(|| missing("redirect_uri"))?;
    let mut details: Vec<(String, String)> = params.to_vec();
    details.push(("flowName".into(), "GeneralOAuthFlow".into()));
    if !redirect_allowed(client, redirect_uri) {
        return Err(ErrorPage::redirect_uri_mismatch(vec![(
            "redirect_uri".into(),
            redirect_uri.into(),
        )]));
    }
    match param(params, "response_type") {
        None => return Err(missing("response_type")),
        Some("code") => {}
        Some(other) => return Err(invalid(format!("Invalid response_type: {other}"))),
    }
    let requested = param(params, "scope").ok_or_else(|| missing("scope"))?;
    let mut granted: Vec<String> = Vec::new();
    let mut unknown: Vec<&str> = Vec::new();
    for scope in requested.split_ascii_whitespace() {
        let scope = scopes::normalize(scope);
        if scopes::description(scope).is_none() {
            unknown.push(scope);
        } else if !granted.iter().any(|g| g == scope) {
            granted.push(scope.to_string());
        }
    }
    if granted.is_empty() && unknown.is_empty() {
        return Err(missing("scope"));
    }
    if !unknown.is_empty() {
        return Err(ErrorPage::invalid_request(
            app,
            "invalid_scope",
            format!(
                "Some requested scopes were invalid. {{invalid=[{}]}}",
                unknown.join(", ")
            ),
        ));
    }
    let offline = match param(params, "access_type") {
        None | Some("online") => false,
        Some("offline") => true,
        Some(other) => return Err(invalid(format!("Invalid access_type: {other}"))),
    };
    let prompt: Vec<String> = param(params, "prompt")
        .unwrap_or_default()
        .split_ascii_whitespace()
        .map(str::to_string)
        .collect();
    if let Some(bad) = prompt
        .iter()
        .find(|p| !["none", "consent", "select_account"].contains(&p.as_str()))
    {
        return Err(invalid(format!("Invalid prompt: {bad}")));
    }
    if prompt.len() > 1 && prompt.iter().any(|p| p == "none") {
        return Err(invalid(
            "Invalid prompt: none cannot be combined with other values".into(),
        ));
    }
    let challenge = match (
        param(params, "code_challenge"),
        param(params, "code_challenge_method"),
    ) {
        (None, None) => None,
        (None, Some(_)) => return Err(missing("code_challenge")),
        (Some(c), None | Some("plain")) => Some(Challenge::Plain(c.to_string())),
        (Some(c), Some("S256")) => Some(Challenge::S256(c.to_string())),
        (Some(_), Some(other)) => {
            return Err(invalid(format!("Invalid code_challenge_method: {other}")));
        }
    };
    Ok(Flow {
        client_id: client_id.to_string(),
        redirect_uri: redirect_uri.to_string(),
        scopes: granted,
        state: param(params, "state").map(str::to_string),
        offline,
        prompt,
        login_hint: param(params, "login_hint").map(str::to_string),
        challenge,
        nonce: param(params, "nonce").map(str::to_string),
        created_at: now,
        details,
        account: None,
    })
}

fn app_name(s: &State, client_id: &str) -> String {
    s.clients
        .get(client_id)
        .map(|c| c.name.clone())
        .unwrap_or_default()
}

/// A Testing app serves only its listed test users (seed FAQ "No Test Users Added").
fn check_audience(s: &State, flow: &Flow, email: &str) -> Result<(), Box<ErrorPage>> {
    let Some(client) = s.clients.get(&flow.client_id) else {
        return Err(ErrorPage::invalid_client());
    };
    let is_tester = client
        .test_users
        .iter()
        .any(|t| t.eq_ignore_ascii_case(email));
    if client.publishing_status == PublishingStatus::Testing && !is_tester {
        return Err(ErrorPage::access_denied_testing(
            &client.name,
            flow.details.clone(),
        ));
    }
    Ok(())
}

fn expired_flow() -> Step {
    error(ErrorPage::invalid_request(
        None,
        "invalid_request",
        "This sign-in request has expired or was already used. Go back to the app and start again."
            .into(),
    ))
}

/// POST /o/oauth2/v2/auth/choose
pub fn choose(world: &World, flow_id: &str, email: &str) -> Step {
    let email = email.to_ascii_lowercase();
    world.with(|s| {
        let Some(flow) = s.flows.get(flow_id).cloned() else {
            return expired_flow();
        };
        if !s.accounts.contains_key(&email) {
            return expired_flow();
        }
        if let Err(e) = check_audience(s, &flow, &email) {
            s.flows.remove(flow_id);
            return error(e);
        }
        if let Some(f) = s.flows.get_mut(flow_id) {
            f.account = Some(email.clone());
        }
        let app = app_name(s, &flow.client_id);
        let testing = s
            .clients
            .get(&flow.client_id)
            .is_some_and(|c| c.publishing_status == PublishingStatus::Testing);
        if testing {
            page(
                200,
                &UnverifiedPage {
                    app,
                    flow: flow_id.to_string(),
                    email,
                },
            )
        } else {
            consent_or_skip(s, flow_id, world.now())
        }
    })
}

/// POST /o/oauth2/v2/auth/continue, past the unverified-app warning.
pub fn proceed(world: &World, flow_id: &str, go_on: bool) -> Step {
    let now = world.now();
    world.with(|s| {
        if !go_on {
            return match s.flows.remove(flow_id) {
                Some(flow) => redirect_error(&flow, "access_denied"),
                None => expired_flow(),
            };
        }
        consent_or_skip(s, flow_id, now)
    })
}

/// Google asks again only on `prompt=consent` or when this app was never granted access.
fn consent_or_skip(s: &mut State, flow_id: &str, now: i64) -> Step {
    let Some(flow) = s.flows.get(flow_id).cloned() else {
        return expired_flow();
    };
    let Some(email) = flow.account.clone() else {
        return expired_flow();
    };
    let granted = s.grants.contains(&(email.clone(), flow.client_id.clone()));
    if granted && !flow.prompt.iter().any(|p| p == "consent") {
        s.flows.remove(flow_id);
        return issue_code(s, &flow, &email, now);
    }
    page(
        200,
        &ConsentPage {
            app: app_name(s, &flow.client_id),
            flow: flow_id.to_string(),
            email,
            scopes: flow
                .scopes
                .iter()
                .filter_map(|sc| scopes::description(sc).map(str::to_string))
                .collect(),
        },
    )
}

/// POST /o/oauth2/v2/auth/consent
pub fn consent(world: &World, flow_id: &str, allow: bool) -> Step {
    let now = world.now();
    world.with(|s| {
        let Some(flow) = s.flows.remove(flow_id) else {
            return expired_flow();
        };
        let Some(email) = flow.account.clone() else {
            return expired_flow();
        };
        if !allow {
            return redirect_error(&flow, "access_denied");
        }
        issue_code(s, &flow, &email, now)
    })
}

fn issue_code(s: &mut State, flow: &Flow, email: &str, now: i64) -> Step {
    let key = (email.to_string(), flow.client_id.clone());
    let first_grant = !s.grants.contains(&key);
    let consent_shown = first_grant || flow.prompt.iter().any(|p| p == "consent");
    s.grants.insert(key);
    let code = new_auth_code();
    s.codes.retain(|_, c| c.expires_at > now);
    s.codes.insert(
        code.clone(),
        AuthCode {
            client_id: flow.client_id.clone(),
            account: email.to_string(),
            redirect_uri: flow.redirect_uri.clone(),
            scopes: flow.scopes.clone(),
            challenge: flow.challenge.clone(),
            nonce: flow.nonce.clone(),
            issue_refresh: flow.offline && consent_shown,
            expires_at: now + s.settings.oauth.code_lifetime_secs,
            used: false,
        },
    );
    let authuser = s
        .accounts
        .keys()
        .position(|k| k == email)
        .unwrap_or_default()
        .to_string();
    let mut pairs: Vec<(&str, &str)> = Vec::new();
    if let Some(state) = &flow.state {
        pairs.push(("state", state));
    }
    let scope = flow.scopes.join(" ");
    pairs.push(("code", &code));
    pairs.push(("scope", &scope));
    pairs.push(("authuser", &authuser));
    pairs.push(("prompt", if consent_shown { "consent" } else { "none" }));
    Step::Redirect(with_query(&flow.redirect_uri, &pairs))
}

fn redirect_error(flow: &Flow, error: &str) -> Step {
    let mut pairs = vec![("error", error)];
    if let Some(state) = &flow.state {
        pairs.push(("state", state));
    }
    Step::Redirect(with_query(&flow.redirect_uri, &pairs))
}

fn with_query(base: &str, pairs: &[(&str, &str)]) -> String {
    let query = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}{query}")
}
