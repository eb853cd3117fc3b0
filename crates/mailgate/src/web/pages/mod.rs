//! Page handlers, one file per area of the app.

pub mod api_keys;
pub mod assets;
pub mod auth;
pub mod emails;
pub mod gmail;
pub mod google_setup;
pub mod home;
pub mod incoming;
pub mod ops;
pub mod relay;
pub mod servers;
pub mod settings;

use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};

use super::WebError;
use super::session::{FLASH_COOKIE, Flash, set_cookie};
use crate::app::App;

pub async fn not_found() -> WebError {
    WebError::NotFound("Page")
}

/// Post/redirect/get: go to `to`, showing `flash` there.
pub fn redirect_with(app: &App, to: &str, flash: Flash) -> Response {
    let mut response = Redirect::to(to).into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(app, FLASH_COOKIE, &flash.cookie_value(), 60, "Lax"),
    );
    response
}

/// A page shown with an HTTP status other than 200.
pub fn with_status(status: axum::http::StatusCode, page: impl IntoResponse) -> Response {
    let mut response = page.into_response();
    *response.status_mut() = status;
    response
}
