//! The JSON API under `/api/v1`: submit messages and follow them. Authenticated by API keys
//! (`Authorization: Bearer mgk_...`), which the admin creates and revokes in the UI.

mod messages;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use crate::app::App;

/// The largest request body the API reads: attachments travel in base64, a third larger than
/// the message they make.
pub fn body_limit(app: &App) -> usize {
    app.config.max_message_size / 3 * 4 + 1024 * 1024
}

pub fn router(app: &App) -> Router<Arc<App>> {
    let limit = body_limit(app);
    Router::new()
        .route("/api/v1/messages", post(messages::submit))
        .route("/api/v1/messages/{id}", get(messages::status))
        .route("/api/v1/openapi.json", get(openapi))
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn(
            move |request: axum::extract::Request, next: axum::middleware::Next| async move {
                match declared_length(&request) {
                    Some(length) if length > limit => too_large(limit).into_response(),
                    _ => next.run(request).await,
                }
            },
        ))
}

/// A body announced larger than the limit is refused before a byte of it is read.
fn declared_length(request: &axum::extract::Request) -> Option<usize> {
    request
        .headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

pub fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        format!(
            "the request is larger than {limit} bytes; messages may be at most max_message_size bytes, attachments included"
        ),
    )
}

async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("../../../static/openapi.json"),
    )
        .into_response()
}

/// An API failure: a status and `{"error": {"code", "message", "field"}}`.
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    field: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field: None,
        }
    }

    pub fn field(status: StatusCode, field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            status,
            code: "invalid_field",
            message: message.into(),
            field: Some(field.into()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = json!({"code": self.code, "message": self.message});
        if let Some(field) = self.field {
            error["field"] = json!(field);
        }
        let mut response = (self.status, Json(json!({"error": error}))).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"mailgate\""),
            );
        }
        response
    }
}

impl From<crate::app::AppError> for ApiError {
    fn from(e: crate::app::AppError) -> Self {
        match e {
            crate::app::AppError::NotFound(what) => ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("{what} not found"),
            ),
            crate::app::AppError::Store(e) => {
                tracing::error!("API request failed: {e}");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "mailgate cannot reach its database; nothing was accepted. Try again.",
                )
            }
            other => ApiError::new(StatusCode::BAD_REQUEST, "refused", other.to_string()),
        }
    }
}

/// The API key presented with the request.
pub struct ApiKey(pub crate::app::api_keys::ApiCaller);

impl FromRequestParts<Arc<App>> for ApiKey {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &Arc<App>,
    ) -> Result<Self, Self::Rejection> {
        let unauthorized =
            |message: &str| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message);
        let key = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| unauthorized("send an API key: Authorization: Bearer mgk_..."))?;
        match app.authenticate_api_key(key.trim()).await? {
            Some(caller) => Ok(ApiKey(caller)),
            None => Err(unauthorized("this API key is unknown or revoked")),
        }
    }
}
