//! Google's OAuth 2.0 endpoints (google.md §1): authorization pages, token, revocation, discovery,
//! JWKS and userinfo.

pub mod flow;
pub mod id_token;
mod pages;
pub mod scopes;
pub mod token;
pub mod tokens;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Form, Query, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::world::{TokenFault, World};
use flow::Step;
use token::TokenRequest;

pub fn router() -> Router<Arc<World>> {
    Router::new()
        .route("/o/oauth2/v2/auth", get(authorize))
        .route("/o/oauth2/auth", get(authorize))
        .route("/o/oauth2/v2/auth/choose", post(choose))
        .route("/o/oauth2/v2/auth/continue", post(proceed))
        .route("/o/oauth2/v2/auth/consent", post(consent))
        .route("/token", post(token))
        .route("/o/oauth2/token", post(token))
        .route("/oauth2/v4/token", post(token))
        .route("/revoke", post(revoke).get(revoke))
        .route("/o/oauth2/revoke", post(revoke).get(revoke))
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/oauth2/v3/certs", get(certs))
        .route("/oauth2/v3/userinfo", get(userinfo))
}

fn render(step: Step) -> Response {
    match step {
        Step::Page(status, html) => (
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            Html(html),
        )
            .into_response(),
        // Google answers with 302 Found.
        Step::Redirect(url) => (StatusCode::FOUND, [(header::LOCATION, url)]).into_response(),
    }
}

async fn authorize(State(world): State<Arc<World>>, RawQuery(query): RawQuery) -> Response {
    let params: Vec<(String, String)> =
        form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    render(flow::start(&world, params))
}

#[derive(Deserialize)]
struct ChooseForm {
    flow: String,
    email: String,
}

async fn choose(State(world): State<Arc<World>>, Form(form): Form<ChooseForm>) -> Response {
    render(flow::choose(&world, &form.flow, &form.email))
}

#[derive(Deserialize)]
struct ActionForm {
    flow: String,
    action: String,
}

async fn proceed(State(world): State<Arc<World>>, Form(form): Form<ActionForm>) -> Response {
    render(flow::proceed(&world, &form.flow, form.action == "continue"))
}

async fn consent(State(world): State<Arc<World>>, Form(form): Form<ActionForm>) -> Response {
    render(flow::consent(&world, &form.flow, form.action == "allow"))
}

/// The headers Google's token endpoint sends, with `Date` from the simulated clock so a client can
/// check its own clock against "Google's".
fn google_json(world: &World, status: StatusCode, body: serde_json::Value) -> Response {
    let mut response = (status, Json(body)).into_response();
    let headers = response.headers_mut();
    let fixed = [
        (header::CONTENT_TYPE, "application/json; charset=utf-8"),
        (
            header::CACHE_CONTROL,
            "no-cache, no-store, max-age=0, must-revalidate",
        ),
        (header::PRAGMA, "no-cache"),
        (header::EXPIRES, "Mon, 01 Jan 1990 00:00:00 GMT"),
        (header::SERVER, "scaffolding on HTTPServer2"),
    ];
    for (name, value) in fixed {
        headers.insert(name, HeaderValue::from_static(value));
    }
    if let Ok(date) = HeaderValue::from_str(&httpdate::fmt_http_date(world.clock.now_system())) {
        headers.insert(header::DATE, date);
    }
    response
}

async fn token(State(world): State<Arc<World>>, headers: HeaderMap, body: Bytes) -> Response {
    let request = TokenRequest::parse(
        &body,
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok()),
    );
    match world.with(|s| s.take_token_fault()) {
        Some(TokenFault::Status { status, .. }) => {
            world.with(|s| s.count_token_request(request.grant_type(), &format!("http_{status}")));
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            let error = if status == StatusCode::SERVICE_UNAVAILABLE {
                "temporarily_unavailable"
            } else {
                "internal_failure"
            };
            return google_json(
                &world,
                status,
                json!({"error": error, "error_description": "Backend Error (simulated)"}),
            );
        }
        Some(TokenFault::Stall { seconds, .. }) => {
            tokio::time::sleep(Duration::from_secs_f64(seconds.clamp(0.0, 3600.0))).await;
        }
        None => {}
    }
    match token::serve(&world, &request) {
        Ok(body) => google_json(&world, StatusCode::OK, body),
        Err(e) => google_json(
            &world,
            StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST),
            e.body(),
        ),
    }
}

#[derive(Deserialize)]
struct TokenParam {
    token: Option<String>,
}

async fn revoke(
    State(world): State<Arc<World>>,
    Query(query): Query<TokenParam>,
    body: Bytes,
) -> Response {
    let from_body = form_urlencoded::parse(&body)
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned());
    let Some(token) = query.token.or(from_body).filter(|t| !t.is_empty()) else {
        return google_json(
            &world,
            StatusCode::BAD_REQUEST,
            json!({"error": "invalid_request", "error_description": "Missing required parameter: token"}),
        );
    };
    let now = world.now();
    if world.with(|s| s.revoke(&token, now)) {
        google_json(&world, StatusCode::OK, json!({}))
    } else {
        google_json(
            &world,
            StatusCode::BAD_REQUEST,
            json!({"error": "invalid_token", "error_description": "Token expired or revoked"}),
        )
    }
}

async fn discovery(State(world): State<Arc<World>>) -> Response {
    let base = &world.http_base;
    Json(json!({
        "issuer": "https://accounts.google.com",
        "authorization_endpoint": format!("{base}/o/oauth2/v2/auth"),
        "device_authorization_endpoint": format!("{base}/device/code"),
        "token_endpoint": format!("{base}/token"),
        "userinfo_endpoint": format!("{base}/oauth2/v3/userinfo"),
        "revocation_endpoint": format!("{base}/revoke"),
        "jwks_uri": format!("{base}/oauth2/v3/certs"),
        "response_types_supported": ["code", "token", "id_token", "code token", "code id_token", "token id_token", "code token id_token", "none"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": ["openid", "email", "profile"],
        "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
        "claims_supported": ["aud", "email", "email_verified", "exp", "family_name", "given_name", "iat", "iss", "name", "picture", "sub"],
        "code_challenge_methods_supported": ["plain", "S256"],
        "grant_types_supported": ["authorization_code", "refresh_token", "urn:ietf:params:oauth:grant-type:device_code", "urn:ietf:params:oauth:grant-type:jwt-bearer"],
    }))
    .into_response()
}

async fn certs(State(world): State<Arc<World>>) -> Response {
    Json(world.signer.jwks()).into_response()
}

async fn userinfo(State(world): State<Arc<World>>, headers: HeaderMap) -> Response {
    let now = world.now();
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let info = token.and_then(|t| {
        world.with(|s| {
            let access = s
                .access_tokens
                .get(t)
                .filter(|a| !a.revoked && now < a.expires_at)?;
            let account = s.accounts.get(&access.account)?;
            let mut info = json!({"sub": account.sub});
            if access.scopes.iter().any(|sc| sc == scopes::USERINFO_EMAIL) {
                info["email"] = json!(account.email);
                info["email_verified"] = json!(true);
            }
            Some(info)
        })
    });
    match info {
        Some(info) => Json(info).into_response(),
        None => (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "invalid_request", "error_description": "Invalid Credentials"})),
        )
            .into_response(),
    }
}
