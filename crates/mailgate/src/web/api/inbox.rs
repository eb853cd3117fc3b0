//! `/api/v1/inbox`: the mail incoming servers fetched, page by page (oldest first, a cursor to
//! go on from), and each message's raw bytes. For admin keys: a submit key sends mail, it does
//! not read the mailbox.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{ApiError, ApiKey, ErrorBody};
use crate::app::App;
use crate::app::api_keys::KeyScope;
use crate::store::InboundRecord;

const DEFAULT_LIMIT: i64 = 100;
const MOST: i64 = 500;

/// The query, as documented; read by [`page_query`], which names what is wrong in the API's
/// JSON rather than axum's plain-text rejection.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct PageQuery {
    /// The `next` of the previous page: messages stored after that one.
    #[param(nullable = false)]
    after: Option<String>,
    /// Messages per page, from 1 to 500 (100 by default).
    #[param(nullable = false)]
    limit: Option<i64>,
}

/// `after` and `limit` from the query string; other parameters are ignored.
fn page_query(raw: Option<&str>) -> Result<(Option<String>, i64), ApiError> {
    let mut after = None;
    let mut limit = DEFAULT_LIMIT;
    for (key, value) in form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        match key.as_ref() {
            "after" if !value.is_empty() => after = Some(value.into_owned()),
            "limit" => {
                limit = value
                    .parse::<i64>()
                    .ok()
                    .filter(|n| (1..=MOST).contains(n))
                    .ok_or_else(|| {
                        ApiError::field(
                            StatusCode::BAD_REQUEST,
                            "limit",
                            format!(
                                "limit must be a whole number from 1 to {MOST} (it was `{value}`)"
                            ),
                        )
                    })?;
            }
            _ => {}
        }
    }
    Ok((after, limit))
}

#[derive(Serialize, ToSchema)]
pub struct InboxPage {
    /// Oldest first.
    messages: Vec<InboundRecord>,
    /// Pass as `after` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<String>,
}

fn admin_only(caller: &crate::app::api_keys::ApiCaller) -> Result<(), ApiError> {
    match caller.scope {
        KeyScope::Admin => Ok(()),
        KeyScope::Submit => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "reading incoming mail needs an admin API key (mailgate api-keys create --scope admin)",
        )),
    }
}

#[utoipa::path(
    get,
    path = "/api/v1/inbox",
    tag = "inbox",
    params(PageQuery),
    responses(
        (status = 200, description = "A page of incoming messages, oldest first.", body = InboxPage),
        (status = 400, description = "A `limit` out of range.", body = ErrorBody),
        (status = 401, description = "No or unknown API key.", body = ErrorBody),
        (status = 403, description = "A submit key: reading incoming mail needs an admin key.", body = ErrorBody),
        (status = 503, description = "The database cannot be reached.", body = ErrorBody),
    ),
)]
pub async fn list(
    State(app): State<Arc<App>>,
    ApiKey(caller): ApiKey,
    RawQuery(query): RawQuery,
) -> Result<Json<InboxPage>, ApiError> {
    admin_only(&caller)?;
    let (after, limit) = page_query(query.as_deref())?;
    // One more than asked tells whether a next page exists.
    let mut messages = app
        .store
        .inbox_after(after.as_deref(), limit + 1)
        .await
        .map_err(crate::app::AppError::from)?;
    let more = messages.len() > usize::try_from(limit).unwrap_or(usize::MAX);
    messages.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    let next = if more {
        messages.last().map(|m| m.id.clone())
    } else {
        None
    };
    Ok(Json(InboxPage { messages, next }))
}

#[utoipa::path(
    get,
    path = "/api/v1/inbox/{id}",
    tag = "inbox",
    params(("id" = String, Path, description = "The message's id (the webhook's `id`).")),
    responses(
        (status = 200, description = "The message's fields and how its webhook went.", body = InboundRecord),
        (status = 401, description = "No or unknown API key.", body = ErrorBody),
        (status = 403, description = "A submit key.", body = ErrorBody),
        (status = 404, description = "No such message.", body = ErrorBody),
        (status = 503, description = "The database cannot be reached.", body = ErrorBody),
    ),
)]
pub async fn show(
    State(app): State<Arc<App>>,
    ApiKey(caller): ApiKey,
    Path(id): Path<String>,
) -> Result<Json<InboundRecord>, ApiError> {
    admin_only(&caller)?;
    app.store
        .inbox_message(&id)
        .await
        .map_err(crate::app::AppError::from)?
        .map(Json)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such incoming message",
            )
        })
}

#[utoipa::path(
    get,
    path = "/api/v1/inbox/{id}/raw",
    tag = "inbox",
    params(("id" = String, Path, description = "The message's id.")),
    responses(
        (status = 200, description = "The message as Gmail holds it (RFC 5322).", content_type = "message/rfc822"),
        (status = 401, description = "No or unknown API key.", body = ErrorBody),
        (status = 403, description = "A submit key.", body = ErrorBody),
        (status = 404, description = "No such message, or its raw bytes are past retention_days.", body = ErrorBody),
        (status = 503, description = "The database cannot be reached.", body = ErrorBody),
    ),
)]
pub async fn raw(
    State(app): State<Arc<App>>,
    ApiKey(caller): ApiKey,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    admin_only(&caller)?;
    let bytes = app
        .store
        .inbox_raw(&id)
        .await
        .map_err(crate::app::AppError::from)?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such incoming message, or its raw bytes are no longer kept (retention_days)",
            )
        })?;
    Ok(([(header::CONTENT_TYPE, "message/rfc822")], bytes).into_response())
}
