//! The JSON API under `/api/v1`: submit messages and follow them. Authenticated by API keys
//! (`Authorization: Bearer mgk_...`), which the admin creates and revokes in the UI.
//!
//! Every route is registered through utoipa's router together with its `#[utoipa::path]`, so
//! the OpenAPI document served at `/api/v1/openapi.json` is generated from the handlers and
//! their types and cannot leave a route out.

mod inbox;
mod messages;

use std::sync::{Arc, OnceLock};

use axum::extract::{DefaultBodyLimit, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde::Serialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::App;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "mailgate API",
        version = "1",
        description = "Send mail through Gmail with Google OAuth. A message is accepted (202) only once it is committed to mailgate's queue; mailgate then delivers it, retrying what is temporary and holding what needs a human. Mail that Incoming Mail Servers fetch is read under /api/v1/inbox (admin keys).",
    ),
    servers((url = "/")),
    security(("apiKey" = [])),
    modifiers(&ApiKeyScheme),
)]
struct ApiDoc;

/// `Authorization: Bearer mgk_...`, as the document's security scheme.
struct ApiKeyScheme;

impl Modify for ApiKeyScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "apiKey",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API key created in mailgate (API keys page, or `mailgate api-keys create`): `mgk_...`.",
                    ))
                    .build(),
            ),
        );
    }
}

/// The API's routes with their documentation, one registration each.
fn documented_routes() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(messages::submit))
        .routes(routes!(messages::status))
        .routes(routes!(inbox::list))
        .routes(routes!(inbox::show))
        .routes(routes!(inbox::raw))
        .routes(routes!(openapi))
}

/// The OpenAPI document, generated once.
pub fn document() -> &'static str {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        documented_routes()
            .into_openapi()
            .to_pretty_json()
            .unwrap_or_else(|e| format!("{{\"error\": \"the document cannot be written: {e}\"}}"))
    })
}

/// The largest request body the API reads: attachments travel in base64, a third larger than
/// the message they make.
pub fn body_limit(app: &App) -> usize {
    app.config.max_message_size / 3 * 4 + 1024 * 1024
}

pub fn router(app: &App) -> Router<Arc<App>> {
    let limit = body_limit(app);
    let (router, _) = documented_routes().split_for_parts();
    router
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

/// This document.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "meta",
    security(()),
    responses((status = 200, description = "The OpenAPI 3.1 document of this API.", content_type = "application/json")),
)]
async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], document()).into_response()
}

/// `{"error": {"code", "message", "field"}}`.
#[derive(Serialize, ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, for programs: `invalid_field`, `invalid_json`, `unauthorized`, `not_found`, ...
    code: &'static str,
    /// For people: what was wrong and what to do.
    message: String,
    /// The field at fault, for `invalid_field` (e.g. `to[2].email`).
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<String>,
}

/// An API failure: a status and an [`ErrorBody`].
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
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message,
                field: self.field,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
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
