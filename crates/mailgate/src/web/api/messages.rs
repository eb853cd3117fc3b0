//! `POST /api/v1/messages` and `GET /api/v1/messages/{id}`.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{ApiError, ApiKey};
use crate::app::App;
use crate::app::outbox::{Origin, SubmitError};
use crate::domain::message::Submission;

/// 202 once the message is committed to the queue; a repeated Idempotency-Key answers with the
/// first message and `Idempotent-Replayed: true`.
pub async fn submit(
    State(app): State<Arc<App>>,
    ApiKey(caller): ApiKey,
    headers: HeaderMap,
    body: Result<Json<Submission>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(submission) = body.map_err(|e| match e {
        JsonRejection::JsonDataError(e) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_json",
            format!("the JSON does not describe a message: {}", e.body_text()),
        ),
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "content_type",
            "send Content-Type: application/json",
        ),
        other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            super::too_large(super::body_limit(&app))
        }
        other => ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", other.body_text()),
    })?;
    let idempotency_key = match headers.get("idempotency-key") {
        Some(v) => Some(v.to_str().map_err(|_| {
            ApiError::field(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Idempotency-Key",
                "use visible ASCII characters",
            )
        })?),
        None => None,
    };
    let accepted = app
        .submit(
            &submission,
            Origin {
                api_key_id: Some(caller.key_id),
                idempotency_key,
            },
        )
        .await
        .map_err(|e| match e {
            SubmitError::Invalid(f) if f.field == "size" => {
                ApiError::field(StatusCode::PAYLOAD_TOO_LARGE, f.field, f.message)
            }
            SubmitError::Invalid(f) => {
                ApiError::field(StatusCode::UNPROCESSABLE_ENTITY, f.field, f.message)
            }
            SubmitError::IdempotencyMismatch => ApiError::field(
                StatusCode::CONFLICT,
                "Idempotency-Key",
                "already used for a different message; use a new key for a new message",
            ),
            SubmitError::Store(e) => ApiError::from(crate::app::AppError::Store(e)),
        })?;
    let mut response = (
        StatusCode::ACCEPTED,
        Json(json!({
            "id": accepted.id,
            "state": "queued",
            "status_url": format!("/api/v1/messages/{}", accepted.id),
        })),
    )
        .into_response();
    if accepted.replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}

pub async fn status(
    State(app): State<Arc<App>>,
    ApiKey(caller): ApiKey,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (message, attempts) = app.message_for(caller, &id).await?;
    Ok(Json(json!({
        "id": message.id,
        "state": message.state,
        "message_id": message.message_id,
        "from": message.from_header,
        "recipients": message.rcpt_to,
        "subject": message.subject,
        "size": message.size,
        "created_at": message.created_at,
        "sent_at": message.sent_at,
        "next_attempt_at": (matches!(message.state.code(), "queued" | "deferred")).then_some(message.next_attempt_at),
        "last_error": message.last_error,
        "unknown_outcomes": message.unknown_outcomes,
        "attempts": attempts,
    })))
}
