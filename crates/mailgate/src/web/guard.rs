//! The guard every request passes: CSRF proof on every state-changing request, a same-origin
//! check, security headers, and the flash cookie cleared once shown.

use std::sync::Arc;

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::WebError;
use super::session::{CSRF_COOKIE, FLASH_COOKIE, cookie, current_admin, set_cookie};
use crate::app::App;
use crate::crypto::{constant_time_eq, random_token};

pub const MAX_FORM_BYTES: usize = 64 * 1024;
pub const CSRF_FIELD: &str = "_csrf";

/// The pre-session CSRF token of this request, for the sign-in and setup forms to embed. Minted
/// here when the browser has none yet, so even the first page's form carries the right value.
#[derive(Clone)]
pub struct PreSessionCsrf(pub String);

pub async fn protect(State(app): State<Arc<App>>, mut request: Request, next: Next) -> Response {
    let had_flash = cookie(&app, request.headers(), FLASH_COOKIE).is_some();
    let existing = cookie(&app, request.headers(), CSRF_COOKIE).filter(|c| !c.is_empty());
    let needs_csrf_cookie = existing.is_none();
    let pre_session = existing.unwrap_or_else(random_token);
    request
        .extensions_mut()
        .insert(PreSessionCsrf(pre_session.clone()));
    // The API authenticates with a header, not a cookie: a forged cross-site request cannot carry
    // it, so CSRF proof does not apply there.
    let api = request.uri().path().starts_with("/api/");
    let request = if is_safe(request.method()) || api {
        request
    } else {
        match check(&app, request).await {
            Ok(request) => request,
            Err(e) => return e.into_response(),
        }
    };
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    let google = app
        .google
        .endpoints()
        .auth_url
        .origin()
        .ascii_serialization();
    let fixed = [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
        (header::X_FRAME_OPTIONS, "DENY".to_string()),
        // The callback URL carries Google's code: never leak it in a Referer.
        (header::REFERRER_POLICY, "same-origin".to_string()),
        // Chrome applies form-action to the redirect after a POST, and "Connect your Gmail
        // account" posts here then redirects to Google.
        (
            header::CONTENT_SECURITY_POLICY,
            format!(
                "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; form-action 'self' {google}"
            ),
        ),
    ];
    for (name, value) in fixed {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
    if app.config.public_url_is_https() {
        // Served over https: browsers must never fall back to plain http for this host.
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    let is_html = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    if is_html {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if needs_csrf_cookie {
            headers.append(
                header::SET_COOKIE,
                set_cookie(&app, CSRF_COOKIE, &pre_session, 86_400, "Strict"),
            );
        }
        if had_flash && !response.status().is_redirection() {
            let clear = set_cookie(&app, FLASH_COOKIE, "", 0, "Lax");
            response.headers_mut().append(header::SET_COOKIE, clear);
        }
    }
    response
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Reads the form, checks its `_csrf` against the session's token (or, before sign-in, the CSRF
/// cookie), and hands the request on with its body intact.
async fn check(app: &App, request: Request) -> Result<Request, WebError> {
    if let Some(origin) = request.headers().get(header::ORIGIN) {
        let ours = app.config.public_url.origin().ascii_serialization();
        if origin.to_str().ok() != Some(ours.as_str()) {
            return Err(WebError::Csrf);
        }
    }
    let expected = match current_admin(request.headers(), app).await? {
        Some(session) => Some(session.csrf_token),
        None => cookie(app, request.headers(), CSRF_COOKIE),
    };
    let (parts, body) = request.into_parts();
    let bytes = to_bytes(body, MAX_FORM_BYTES)
        .await
        .map_err(|_| WebError::TooLarge)?;
    let sent = form_urlencoded::parse(&bytes)
        .find(|(k, _)| k == CSRF_FIELD)
        .map(|(_, v)| v.into_owned());
    match (expected, sent) {
        (Some(expected), Some(sent))
            if !expected.is_empty() && constant_time_eq(expected.as_bytes(), sent.as_bytes()) =>
        {
            Ok(Request::from_parts(parts, Body::from(bytes)))
        }
        _ => Err(WebError::Csrf),
    }
}
