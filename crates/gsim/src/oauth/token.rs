//! POST /token: the authorization_code and refresh_token grants, with Google's error for every
//! mistake (google.md §1.6).

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use super::tokens::Grant;
use crate::config::ClientConfig;
use crate::world::{State, World};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    pub status: u16,
    pub error: &'static str,
    pub description: String,
}

impl OAuthError {
    fn new(status: u16, error: &'static str, description: impl Into<String>) -> Self {
        Self {
            status,
            error,
            description: description.into(),
        }
    }

    pub fn body(&self) -> Value {
        json!({"error": self.error, "error_description": self.description})
    }

    fn bad_grant() -> Self {
        Self::new(400, "invalid_grant", "Bad Request")
    }
}

/// A parsed token request: form fields (first occurrence wins) plus HTTP Basic credentials.
pub struct TokenRequest {
    fields: HashMap<String, String>,
    basic: Option<(String, String)>,
}

impl TokenRequest {
    pub fn parse(body: &[u8], authorization: Option<&str>) -> Self {
        let mut fields = HashMap::new();
        for (k, v) in form_urlencoded::parse(body) {
            fields.entry(k.into_owned()).or_insert(v.into_owned());
        }
        let basic = authorization
            .and_then(|h| h.strip_prefix("Basic "))
            .and_then(|b64| STANDARD.decode(b64.trim()).ok())
            .and_then(|raw| String::from_utf8(raw).ok())
            .and_then(|pair| {
                let (id, secret) = pair.split_once(':')?;
                let decode = |s: &str| {
                    form_urlencoded::parse(format!("x={s}").as_bytes())
                        .next()
                        .map(|(_, v)| v.into_owned())
                };
                Some((decode(id)?, decode(secret)?))
            });
        Self { fields, basic }
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    pub fn grant_type(&self) -> &str {
        self.fields
            .get("grant_type")
            .map(String::as_str)
            .unwrap_or_default()
    }

    fn client_credentials(&self) -> Option<(&str, Option<&str>)> {
        if let Some((id, secret)) = &self.basic {
            return Some((id.as_str(), Some(secret.as_str())));
        }
        Some((self.get("client_id")?, self.get("client_secret")))
    }
}

/// Serves one token request against the world and counts it by grant and outcome.
pub fn serve(world: &World, request: &TokenRequest) -> Result<Value, OAuthError> {
    let now = world.now();
    world.with(|s| {
        let result = grant(s, world, request, now);
        let outcome = match &result {
            Ok(_) => "ok",
            Err(e) => e.error,
        };
        s.count_token_request(request.grant_type(), outcome);
        result
    })
}

fn grant(s: &mut State, world: &World, req: &TokenRequest, now: i64) -> Result<Value, OAuthError> {
    let grant_type = req.grant_type();
    if !matches!(grant_type, "authorization_code" | "refresh_token") {
        return Err(OAuthError::new(
            400,
            "unsupported_grant_type",
            format!("Invalid grant_type: {grant_type}"),
        ));
    }
    let client = authenticate_client(s, req)?;
    match grant_type {
        "authorization_code" => exchange_code(s, world, &client, req, now),
        _ => refresh(s, world, &client, req, now),
    }
}

fn authenticate_client(s: &State, req: &TokenRequest) -> Result<ClientConfig, OAuthError> {
    let (id, secret) = req.client_credentials().ok_or_else(|| {
        OAuthError::new(
            400,
            "invalid_request",
            "Could not determine client ID from request.",
        )
    })?;
    let client = s
        .clients
        .get(id)
        .ok_or_else(|| OAuthError::new(401, "invalid_client", "The OAuth client was not found."))?;
    if secret != Some(client.client_secret.as_str()) {
        return Err(OAuthError::new(401, "invalid_client", "Unauthorized"));
    }
    Ok(client.clone())
}

fn required<'a>(req: &'a TokenRequest, name: &str) -> Result<&'a str, OAuthError> {
    req.get(name).ok_or_else(|| {
        OAuthError::new(
            400,
            "invalid_request",
            format!("Missing required parameter: {name}"),
        )
    })
}

fn exchange_code(
    s: &mut State,
    world: &World,
    client: &ClientConfig,
    req: &TokenRequest,
    now: i64,
) -> Result<Value, OAuthError> {
    let code_text = required(req, "code")?;
    let redirect_uri = required(req, "redirect_uri")?;
    let code = s
        .codes
        .get(code_text)
        .filter(|c| !c.used && c.expires_at > now && c.client_id == client.client_id)
        .cloned()
        .ok_or_else(OAuthError::bad_grant)?;
    if code.redirect_uri != redirect_uri {
        return Err(OAuthError::new(400, "redirect_uri_mismatch", "Bad Request"));
    }
    if let Some(challenge) = &code.challenge {
        let verifier = req
            .get("code_verifier")
            .ok_or_else(|| OAuthError::new(400, "invalid_grant", "Missing code verifier."))?;
        if !challenge.verify(verifier) {
            return Err(OAuthError::new(
                400,
                "invalid_grant",
                "Invalid code verifier.",
            ));
        }
    }
    if let Some(c) = s.codes.get_mut(code_text) {
        c.used = true;
    }
    let grant = Grant {
        client,
        account: &code.account,
        scopes: &code.scopes,
        nonce: code.nonce.as_deref(),
    };
    let refresh = code
        .issue_refresh
        .then(|| s.issue_refresh_token(&grant, now));
    s.token_response(&world.signer, &grant, refresh.as_ref(), true, now)
        .map_err(internal)
}

fn refresh(
    s: &mut State,
    world: &World,
    client: &ClientConfig,
    req: &TokenRequest,
    now: i64,
) -> Result<Value, OAuthError> {
    // Flectra sends redirect_uri on refresh too; Google ignores it, and so does gsim.
    let token_text = required(req, "refresh_token")?;
    let token = s
        .refresh_tokens
        .get(token_text)
        .cloned()
        .ok_or_else(OAuthError::bad_grant)?;
    if token.client_id != client.client_id {
        return Err(OAuthError::new(401, "unauthorized_client", "Unauthorized"));
    }
    if !token.is_live(now) {
        return Err(OAuthError::new(
            400,
            "invalid_grant",
            "Token has been expired or revoked.",
        ));
    }
    let grant = Grant {
        client,
        account: &token.account,
        scopes: &token.scopes,
        nonce: None,
    };
    s.token_response(&world.signer, &grant, Some(&token), false, now)
        .map_err(internal)
}

fn internal(e: anyhow::Error) -> OAuthError {
    OAuthError::new(500, "internal_failure", e.to_string())
}
