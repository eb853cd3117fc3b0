//! Google's OAuth 2.0 endpoints, as a client: the authorization URL, the code exchange, refresh,
//! revocation, and id_token verification. Google's `error` and `error_description` are kept intact
//! (Flectra drops them); what they mean to a human is decided by the use cases.

mod id_token;

use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::Url;

use crate::clock::Timestamp;
use crate::config::GoogleEndpoints;
pub use id_token::IdClaims;

/// Gmail over SMTP/IMAP needs the full mail scope; `openid email` lets mailgate check which
/// account consented.
pub const SCOPES: &str = "https://mail.google.com/ openid email";
pub const MAIL_SCOPE: &str = "https://mail.google.com/";

#[derive(Debug, Clone, thiserror::Error)]
pub enum GoogleError {
    /// Google answered with its OAuth error JSON.
    #[error("{error}{}", description.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    OAuth {
        status: u16,
        error: String,
        description: Option<String>,
    },
    /// No usable answer: connection refused, timeout, or a 5xx. Worth retrying later.
    #[error("Google could not be reached: {0}")]
    Unavailable(String),
    /// An answer that is neither success nor Google's error format.
    #[error("unexpected answer from Google (HTTP {status}): {detail}")]
    Unexpected { status: u16, detail: String },
    #[error("the id_token from Google does not check out: {0}")]
    IdToken(String),
}

impl GoogleError {
    pub fn is_temporary(&self) -> bool {
        match self {
            GoogleError::Unavailable(_) => true,
            GoogleError::OAuth { status, .. } | GoogleError::Unexpected { status, .. } => {
                *status >= 500
            }
            GoogleError::IdToken(_) => false,
        }
    }

    /// Google's error code (`invalid_grant`, `redirect_uri_mismatch`, ...), if it sent one.
    pub fn code(&self) -> Option<&str> {
        match self {
            GoogleError::OAuth { error, .. } => Some(error),
            _ => None,
        }
    }
}

pub struct TokenResponse {
    pub access_token: SecretString,
    pub expires_in: i64,
    pub refresh_token: Option<SecretString>,
    pub refresh_token_expires_in: Option<i64>,
    pub scope: String,
    pub id_token: Option<String>,
    /// The `Date` header of Google's answer: Google's clock.
    pub server_date: Option<Timestamp>,
}

#[derive(Deserialize)]
struct RawTokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<i64>,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    refresh_token_expires_in: Option<i64>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    id_token: Option<String>,
}

#[derive(Deserialize)]
struct RawError {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

pub struct AuthorizeRequest<'a> {
    pub client_id: &'a str,
    pub redirect_uri: &'a str,
    pub login_hint: &'a str,
    pub state: &'a str,
    pub code_challenge: &'a str,
}

/// What Google's authorization endpoint says about a request before any user sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthorizeProbe {
    /// Google would show its sign-in pages.
    Accepted,
    /// Google would show its own error page: `Error 400: redirect_uri_mismatch` and the like.
    Refused { status: u16, code: Option<String> },
    /// No answer worth reading; the browser may still get through.
    Unknown(String),
}

pub struct GoogleClient {
    http: reqwest::Client,
    endpoints: GoogleEndpoints,
    keys: id_token::KeyCache,
}

impl GoogleClient {
    pub fn new(
        endpoints: GoogleEndpoints,
        tls: Arc<rustls::ClientConfig>,
    ) -> Result<Self, GoogleError> {
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured((*tls).clone())
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(20))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("mailgate/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| GoogleError::Unavailable(format!("HTTP client setup: {e}")))?;
        Ok(Self {
            http,
            endpoints,
            keys: id_token::KeyCache::default(),
        })
    }

    pub fn endpoints(&self) -> &GoogleEndpoints {
        &self.endpoints
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The URL "Connect your Gmail account" sends the browser to.
    pub fn authorize_url(&self, request: &AuthorizeRequest<'_>) -> Url {
        let mut url = self.endpoints.auth_url.clone();
        url.query_pairs_mut()
            .append_pair("client_id", request.client_id)
            .append_pair("redirect_uri", request.redirect_uri)
            .append_pair("response_type", "code")
            .append_pair("scope", SCOPES)
            .append_pair("access_type", "offline")
            .append_pair("prompt", "consent")
            .append_pair("login_hint", request.login_hint)
            .append_pair("state", request.state)
            .append_pair("code_challenge", request.code_challenge)
            .append_pair("code_challenge_method", "S256");
        url
    }

    pub async fn exchange_code(
        &self,
        client_id: &str,
        client_secret: &SecretString,
        code: &str,
        redirect_uri: &str,
        code_verifier: &SecretString,
    ) -> Result<TokenResponse, GoogleError> {
        self.token_request(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("client_id", client_id),
            ("client_secret", client_secret.expose_secret()),
            ("code_verifier", code_verifier.expose_secret()),
        ])
        .await
    }

    pub async fn refresh(
        &self,
        client_id: &str,
        client_secret: &SecretString,
        refresh_token: &SecretString,
    ) -> Result<TokenResponse, GoogleError> {
        self.token_request(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.expose_secret()),
            ("client_id", client_id),
            ("client_secret", client_secret.expose_secret()),
        ])
        .await
    }

    async fn token_request(&self, form: &[(&str, &str)]) -> Result<TokenResponse, GoogleError> {
        let response = self
            .http
            .post(self.endpoints.token_url.clone())
            .form(form)
            .send()
            .await
            .map_err(transport_error)?;
        let status = response.status().as_u16();
        let server_date = response
            .headers()
            .get(reqwest::header::DATE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| httpdate::parse_http_date(v).ok())
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .and_then(|d| i64::try_from(d.as_secs()).ok());
        let body = response.bytes().await.map_err(transport_error)?;
        if status == 200 {
            let raw: RawTokenResponse =
                serde_json::from_slice(&body).map_err(|e| GoogleError::Unexpected {
                    status,
                    detail: format!("token response is not the expected JSON ({e})"),
                })?;
            return Ok(TokenResponse {
                access_token: SecretString::from(raw.access_token),
                expires_in: raw.expires_in.unwrap_or(3599),
                refresh_token: raw.refresh_token.map(SecretString::from),
                refresh_token_expires_in: raw.refresh_token_expires_in,
                scope: raw.scope.unwrap_or_default(),
                id_token: raw.id_token,
                server_date,
            });
        }
        Err(error_from(status, &body))
    }

    /// Asks Google's authorization endpoint about `url` from the server, as a browser would,
    /// without following redirects. Google validates the client and the redirect URI before any
    /// sign-in, and answers a bad request with an error page (400, 401) naming the error.
    pub async fn probe_authorize(&self, url: &Url) -> AuthorizeProbe {
        let response = match self.http.get(url.clone()).send().await {
            Ok(r) => r,
            Err(e) => return AuthorizeProbe::Unknown(transport_error(e).to_string()),
        };
        let status = response.status().as_u16();
        match status {
            200..=399 => AuthorizeProbe::Accepted,
            400..=499 => {
                let body = response.text().await.unwrap_or_default();
                AuthorizeProbe::Refused {
                    status,
                    code: error_code_in_page(&body),
                }
            }
            _ => AuthorizeProbe::Unknown(format!("HTTP {status}")),
        }
    }

    /// Revokes a token at Google (the refresh token goes with its access tokens).
    pub async fn revoke(&self, token: &SecretString) -> Result<(), GoogleError> {
        let response = self
            .http
            .post(self.endpoints.revoke_url.clone())
            .form(&[("token", token.expose_secret())])
            .send()
            .await
            .map_err(transport_error)?;
        let status = response.status().as_u16();
        if status == 200 {
            return Ok(());
        }
        let body = response.bytes().await.map_err(transport_error)?;
        Err(error_from(status, &body))
    }

    /// Checks an id_token's RS256 signature against Google's published keys, its issuer, audience
    /// and expiry, and returns its claims.
    pub async fn verify_id_token(
        &self,
        id_token: &str,
        client_id: &str,
        now: Timestamp,
    ) -> Result<IdClaims, GoogleError> {
        id_token::verify(self, id_token, client_id, now).await
    }
}

/// `redirect_uri_mismatch` from a page saying `Error 400: redirect_uri_mismatch`.
pub fn error_code_in_page(html: &str) -> Option<String> {
    let mut rest = html;
    while let Some(at) = rest.find("Error ") {
        let after = &rest[at + 6..];
        let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
        if digits.len() == 3
            && let Some(tail) = after[3..].strip_prefix(": ")
        {
            let code: String = tail
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            if !code.is_empty() {
                return Some(code);
            }
        }
        rest = after;
    }
    None
}

fn error_from(status: u16, body: &[u8]) -> GoogleError {
    match serde_json::from_slice::<RawError>(body) {
        Ok(e) => GoogleError::OAuth {
            status,
            error: e.error,
            description: e.error_description,
        },
        Err(_) if status >= 500 => GoogleError::Unavailable(format!("HTTP {status}")),
        Err(_) => GoogleError::Unexpected {
            status,
            detail: String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
        },
    }
}

/// Transport failures, described without the URL's query (where a token could sit).
fn transport_error(e: reqwest::Error) -> GoogleError {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    let cause = std::error::Error::source(&e)
        .map(|s| format!(": {s}"))
        .unwrap_or_default();
    GoogleError::Unavailable(format!("{kind}{cause}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_are_read_from_googles_pages() {
        assert_eq!(
            error_code_in_page("<p>Error 400: redirect_uri_mismatch</p>").as_deref(),
            Some("redirect_uri_mismatch")
        );
        assert_eq!(
            error_code_in_page("Error rate. Error 401: invalid_client").as_deref(),
            Some("invalid_client")
        );
        assert_eq!(error_code_in_page("Error 4: x"), None);
        assert_eq!(error_code_in_page("nothing here"), None);
    }
}
