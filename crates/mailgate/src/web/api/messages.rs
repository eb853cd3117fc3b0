//! `POST /api/v1/messages` and `GET /api/v1/messages/{id}`.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use super::{ApiError, ApiKey, ErrorBody};
use crate::app::App;
use crate::app::outbox::{Origin, SubmitError};
use crate::clock::Timestamp;
use crate::domain::message::{Edge, Submission};
use crate::domain::outgoing::MessageState;
use crate::store::Attempt;

/// The answer to a submission: where to follow the message.
#[derive(Serialize, ToSchema)]
pub struct Accepted {
    id: String,
    /// Always `queued`: the message is on disk, not yet sent.
    #[schema(pattern = "^queued$")]
    state: &'static str,
    status_url: String,
}

/// A message's state and what each attempt met.
#[derive(Serialize, ToSchema)]
pub struct MessageStatus {
    id: String,
    state: MessageState,
    message_id: String,
    from: String,
    recipients: Vec<String>,
    subject: String,
    size: i64,
    /// Unix seconds.
    created_at: Timestamp,
    sent_at: Option<Timestamp>,
    /// When the next attempt is due, while the message is queued or deferred.
    next_attempt_at: Option<Timestamp>,
    last_error: Option<String>,
    /// How the message came in: `api` (by an API key) or `cli` (`mailgate send`).
    origin: Edge,
    /// Attempts that handed the message over and got no answer: the recipients may have it
    /// twice.
    unknown_outcomes: i64,
    attempts: Vec<Attempt>,
}

/// Queue a message.
///
/// Give the message's fields, or `raw` RFC 5322 text. At most 100 recipients (Gmail's limit) and
/// the configured size (25 MB by default). The server is chosen as Flectra does: From filter
/// equal to the sender's address, then its domain, then a server without From filter. 202 only
/// once the message is committed to the queue.
#[utoipa::path(
    post,
    path = "/api/v1/messages",
    tag = "messages",
    params(
        ("Idempotency-Key" = Option<String>, Header, max_length = 255,
         description = "Makes a retried request safe: the same key with the same body answers with the first message (header Idempotent-Replayed: true); with another body, 409."),
    ),
    request_body(
        content = Submission,
        content_type = "application/json",
        examples(
            ("fields" = (summary = "The message's fields", value = json!({
                "from": {"name": "Alice", "email": "alice@gmail.com"},
                "to": ["bob@example.com"],
                "subject": "Hello",
                "text": "Hi Bob.",
                "html": "<p>Hi Bob.</p>"
            }))),
            ("raw" = (summary = "A whole RFC 5322 message", value = json!({
                "raw": "From: alice@gmail.com\r\nTo: bob@example.com\r\nSubject: Hello\r\n\r\nHi Bob.\r\n"
            }))),
        ),
    ),
    responses(
        (status = 202, description = "Queued (committed to disk).", body = Accepted),
        (status = 400, description = "The body is not JSON.", body = ErrorBody),
        (status = 401, description = "No or unknown API key.", body = ErrorBody),
        (status = 409, description = "Idempotency-Key reused for a different message.", body = ErrorBody),
        (status = 413, description = "Larger than the size limit: the message (field `size`), or the request body (code `too_large`, answered from Content-Length before the body is read).", body = ErrorBody),
        (status = 415, description = "Not application/json.", body = ErrorBody),
        (status = 422, description = "A field is wrong; `field` names it (e.g. `to[2].email`, `subject`, `headers.X-Tag`).", body = ErrorBody),
        (status = 503, description = "The database cannot be reached; nothing was accepted.", body = ErrorBody),
    ),
)]
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
                edge: Edge::Api,
                api_key_id: Some(caller.key_id),
                idempotency_key,
                bounce_to: None,
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
    let status_url = format!("/api/v1/messages/{}", accepted.id);
    let mut response = (
        StatusCode::ACCEPTED,
        Json(Accepted {
            id: accepted.id,
            state: "queued",
            status_url,
        }),
    )
        .into_response();
    if accepted.replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// A message's state and attempts.
#[utoipa::path(
    get,
    path = "/api/v1/messages/{id}",
    tag = "messages",
    params(("id" = String, Path, description = "The id the submission answered with.")),
    responses(
        (status = 200, description = "The message.", body = MessageStatus),
        (status = 401, description = "No or unknown API key.", body = ErrorBody),
        (status = 404, description = "No such message, or one submitted with another key (a submit key reads back only its own messages; an admin key reads all).", body = ErrorBody),
        (status = 503, description = "The database cannot be reached.", body = ErrorBody),
    ),
)]
pub async fn status(
    State(app): State<Arc<App>>,
    ApiKey(caller): ApiKey,
    Path(id): Path<String>,
) -> Result<Json<MessageStatus>, ApiError> {
    let (message, attempts) = app.message_for(caller, &id).await?;
    let waiting = matches!(message.state, MessageState::Queued | MessageState::Deferred);
    Ok(Json(MessageStatus {
        next_attempt_at: waiting.then_some(message.next_attempt_at),
        id: message.id,
        state: message.state,
        message_id: message.message_id,
        from: message.from_header,
        recipients: message.rcpt_to,
        subject: message.subject,
        size: message.size,
        created_at: message.created_at,
        sent_at: message.sent_at,
        last_error: message.last_error,
        origin: message.origin,
        unknown_outcomes: message.unknown_outcomes,
        attempts,
    }))
}
