//! For operators and their tools: readiness and Prometheus metrics (`/healthz` is in the router).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::app::App;

/// Ready when the database answers and its schema is this mailgate's.
pub async fn ready(State(app): State<Arc<App>>) -> Response {
    match app.store.schema_status().await {
        Ok(status) if status.is_current() => (StatusCode::OK, "ready\n").into_response(),
        Ok(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "database schema is not current\n",
        )
            .into_response(),
        Err(e) => {
            tracing::warn!("not ready: {e}");
            (StatusCode::SERVICE_UNAVAILABLE, "database unreachable\n").into_response()
        }
    }
}

pub async fn metrics(State(app): State<Arc<App>>) -> Response {
    let queue = app.queue_counts().await.unwrap_or_default();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        app.metrics.render(&queue),
    )
        .into_response()
}
