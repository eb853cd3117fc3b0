//! How failures reach the browser: a page that says what happened and what to do, never a stack
//! trace. Internal details go to the log only.

use askama::Template;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};

use crate::app::AppError;

#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("sign in first")]
    SignIn { next: String },
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("this form expired or did not come from mailgate")]
    Csrf,
    #[error("the form is too large")]
    TooLarge,
    #[error("{0}")]
    Refused(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<AppError> for WebError {
    fn from(e: AppError) -> Self {
        match e {
            AppError::NotFound(what) => WebError::NotFound(what),
            AppError::Refused(message) => WebError::Refused(message),
            AppError::Invalid(errors) => WebError::Refused(errors.to_string()),
            AppError::Store(e) => WebError::Internal(e.to_string()),
        }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    title: &'a str,
    message: String,
    hint: &'a str,
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let (status, title, hint) = match &self {
            WebError::SignIn { next } => {
                let target: String = form_urlencoded::Serializer::new(String::new())
                    .append_pair("next", next)
                    .finish();
                return Redirect::to(&format!("/login?{target}")).into_response();
            }
            WebError::NotFound(_) => (
                StatusCode::NOT_FOUND,
                "Not found",
                "Go back to the list and pick it again.",
            ),
            WebError::Csrf => (
                StatusCode::FORBIDDEN,
                "This form cannot be accepted",
                "Forms from mailgate expire when you sign out or the page is very old, and forms from other sites are never accepted. Go back, reload the page and submit again.",
            ),
            WebError::TooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "Too large",
                "Send less data.",
            ),
            WebError::Refused(_) => (
                StatusCode::BAD_REQUEST,
                "Not possible",
                "Go back and change what the message names.",
            ),
            WebError::Internal(detail) => {
                tracing::error!("request failed: {detail}");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong",
                    "The details are in mailgate's log. Try again; if it repeats, check the database and the disk.",
                )
            }
        };
        let message = match &self {
            WebError::Internal(_) => "mailgate could not finish this request.".to_string(),
            other => other.to_string(),
        };
        let page = ErrorPage {
            title,
            message,
            hint,
        };
        match page.render() {
            Ok(html) => (
                status,
                [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                html,
            )
                .into_response(),
            Err(_) => (status, title.to_string()).into_response(),
        }
    }
}
