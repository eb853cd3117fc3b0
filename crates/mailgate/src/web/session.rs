//! Cookies, the signed-in admin, and flash messages.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};

use super::WebError;
use crate::app::App;
use crate::app::admins::{AdminSession, NewSession};

pub const SESSION_COOKIE: &str = "mailgate_session";
/// Before sign-in there is no session to hold a CSRF token, so the token rides in this cookie
/// and in the form (double submit).
pub const CSRF_COOKIE: &str = "mailgate_csrf";
pub const FLASH_COOKIE: &str = "mailgate_flash";
/// The signed record that this browser signed in before (see `app::admins`).
pub const DEVICE_COOKIE: &str = "mailgate_device";

/// A cookie's name on the wire. Over https it carries the `__Host-` prefix, so the browser only
/// accepts it from this exact origin, Secure, for path `/`: a sibling subdomain cannot plant one.
fn wire_name(app: &App, name: &str) -> String {
    if app.config.public_url_is_https() {
        format!("__Host-{name}")
    } else {
        name.to_string()
    }
}

pub fn cookie(app: &App, headers: &HeaderMap, name: &str) -> Option<String> {
    let name = wire_name(app, name);
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// A `Set-Cookie` value: HttpOnly always, Secure when mailgate is served over https.
pub fn set_cookie(
    app: &App,
    name: &str,
    value: &str,
    max_age: i64,
    same_site: &str,
) -> HeaderValue {
    let secure = if app.config.public_url_is_https() {
        "; Secure"
    } else {
        ""
    };
    let name = wire_name(app, name);
    let text = format!(
        "{name}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite={same_site}{secure}"
    );
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The cookies a sign-in sets (after sign-in and after creating the first admin): the session,
/// and the record that this browser signed in.
pub fn session_cookies(app: &App, session: &NewSession) -> [HeaderValue; 2] {
    [
        set_cookie(app, SESSION_COOKIE, &session.cookie, session.max_age, "Lax"),
        set_cookie(
            app,
            DEVICE_COOKIE,
            &session.device,
            crate::app::admins::DEVICE_LIFETIME,
            "Strict",
        ),
    ]
}

/// The signed-in admin. Pages that take this are for admins only: anyone else is sent to the
/// sign-in page, which comes back here afterwards.
pub struct Admin(pub AdminSession);

impl FromRequestParts<Arc<App>> for Admin {
    type Rejection = WebError;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &Arc<App>,
    ) -> Result<Self, Self::Rejection> {
        match current_admin(&parts.headers, app).await? {
            Some(session) => Ok(Admin(session)),
            None => Err(WebError::SignIn {
                next: parts
                    .uri
                    .path_and_query()
                    .map(|p| p.as_str().to_string())
                    .unwrap_or_else(|| "/".into()),
            }),
        }
    }
}

pub async fn current_admin(
    headers: &HeaderMap,
    app: &App,
) -> Result<Option<AdminSession>, WebError> {
    match cookie(app, headers, SESSION_COOKIE) {
        Some(value) if !value.is_empty() => Ok(app.session(&value).await?),
        _ => Ok(None),
    }
}

/// A one-shot message shown on the next page ("Saved.", a warning).
#[derive(Debug, Clone)]
pub struct Flash {
    pub kind: &'static str,
    pub text: String,
}

impl Flash {
    pub fn ok(text: impl Into<String>) -> Self {
        Self {
            kind: "ok",
            text: text.into(),
        }
    }

    pub fn warn(text: impl Into<String>) -> Self {
        Self {
            kind: "warn",
            text: text.into(),
        }
    }

    pub fn cookie_value(&self) -> String {
        let encoded: String = form_urlencoded::byte_serialize(self.text.as_bytes()).collect();
        format!("{}:{encoded}", self.kind)
    }

    pub fn from_headers(app: &App, headers: &HeaderMap) -> Option<Self> {
        Self::from_cookie_value(&cookie(app, headers, FLASH_COOKIE)?)
    }

    fn from_cookie_value(raw: &str) -> Option<Self> {
        let (kind, encoded) = raw.split_once(':')?;
        let text = form_urlencoded::parse(format!("t={encoded}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())?;
        let kind = if kind == "ok" { "ok" } else { "warn" };
        Some(Self { kind, text })
    }
}

/// Only local paths are followed after sign-in: no open redirect. Browsers drop tabs and newlines
/// from URLs and read `\\` as `/`, so `/\t/evil.example` means `//evil.example` to them: only
/// visible ASCII other than a backslash is allowed (a header cannot carry more anyway), and what
/// is left must resolve to this origin.
pub fn safe_next(next: Option<&str>) -> String {
    let local = |n: &str| {
        let base = url::Url::parse("http://mailgate.invalid/").ok()?;
        let plain = n.chars().all(|c| c.is_ascii_graphic() && c != '\\');
        let resolved = base.join(n).ok()?;
        (plain && n.starts_with('/') && !n.starts_with("//") && resolved.origin() == base.origin())
            .then(|| n.to_string())
    };
    next.and_then(local).unwrap_or_else(|| "/".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_paths_stay_local() {
        assert_eq!(safe_next(Some("/servers/1")), "/servers/1");
        assert_eq!(safe_next(Some("//evil.example/x")), "/");
        assert_eq!(safe_next(Some("https://evil.example")), "/");
        assert_eq!(safe_next(Some("/\\evil.example")), "/");
        assert_eq!(safe_next(Some("/\t/evil.example")), "/");
        assert_eq!(safe_next(Some("/\r\nSet-Cookie: x=1")), "/");
        assert_eq!(safe_next(Some("/ /evil.example")), "/");
        assert_eq!(safe_next(Some("/\u{85}x")), "/");
        assert_eq!(safe_next(Some("/emails?state=held")), "/emails?state=held");
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn flash_round_trips_through_its_cookie() {
        let flash = Flash::warn("Saved; but: 100% & more");
        let back = Flash::from_cookie_value(&flash.cookie_value()).unwrap();
        assert_eq!(
            (back.kind, back.text.as_str()),
            ("warn", "Saved; but: 100% & more")
        );
    }
}
