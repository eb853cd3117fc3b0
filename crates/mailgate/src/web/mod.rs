//! The admin web app: server-rendered pages that work without JavaScript, in the seed's words.
//!
//! Every request passes one guard ([`guard::protect`]) that sets security headers and refuses any
//! state-changing request without CSRF proof, so no handler can forget the check.

mod api;
mod chart;
mod client;
mod error;
mod guard;
mod pages;
pub mod server;
mod session;
mod views;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

use crate::app::App;
pub use error::WebError;

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(pages::home::overview))
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/login",
            get(pages::auth::login_page).post(pages::auth::login),
        )
        .route("/logout", post(pages::auth::logout))
        .route(
            "/setup",
            get(pages::auth::setup_page).post(pages::auth::setup),
        )
        .route(
            "/settings",
            get(pages::settings::show).post(pages::settings::save),
        )
        .route(
            "/servers",
            get(pages::servers::list).post(pages::servers::create),
        )
        .route("/servers/new", get(pages::servers::new))
        .route(
            "/servers/{id}",
            get(pages::servers::show).post(pages::servers::update),
        )
        .route("/servers/{id}/delete", post(pages::servers::delete))
        .route("/servers/{id}/test", post(pages::servers::test))
        .route("/servers/{id}/connect", post(pages::gmail::connect))
        .route("/servers/{id}/disconnect", post(pages::gmail::disconnect))
        .route("/google_gmail/confirm", get(pages::gmail::confirm))
        .route(
            "/incoming",
            get(pages::incoming::list).post(pages::incoming::create),
        )
        .route("/incoming/new", get(pages::incoming::new))
        .route(
            "/incoming/{id}",
            get(pages::incoming::show).post(pages::incoming::update),
        )
        .route("/incoming/{id}/delete", post(pages::incoming::delete))
        .route("/incoming/{id}/confirm", post(pages::incoming::confirm))
        .route(
            "/incoming/{id}/connect",
            post(pages::gmail::connect_incoming),
        )
        .route(
            "/incoming/{id}/disconnect",
            post(pages::gmail::disconnect_incoming),
        )
        .route("/incoming/{id}/fetch", post(pages::incoming::fetch))
        .route("/incoming/{id}/reset", post(pages::incoming::reset))
        .route("/incoming/{id}/secret", post(pages::incoming::secret))
        .route("/google-setup", get(pages::google_setup::guide))
        .route("/emails", get(pages::emails::list))
        .route("/emails/{id}", get(pages::emails::show))
        .route("/emails/in/{id}", get(pages::emails::show_inbound))
        .route("/emails/{id}/retry", post(pages::emails::retry))
        .route("/emails/{id}/cancel", post(pages::emails::cancel))
        .route(
            "/api-keys",
            get(pages::api_keys::list).post(pages::api_keys::create),
        )
        .route("/api-keys/{id}/revoke", post(pages::api_keys::revoke))
        .route("/relay", get(pages::relay::show).post(pages::relay::create))
        .route("/relay/{id}/revoke", post(pages::relay::revoke))
        .route("/doctor", post(pages::google_setup::check))
        .route("/readyz", get(pages::ops::ready))
        .route("/metrics", get(pages::ops::metrics))
        .merge(api::router(&app))
        .route("/static/mailgate.css", get(pages::assets::css))
        .route("/static/mailgate.js", get(pages::assets::js))
        .fallback(pages::not_found)
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&app),
            guard::protect,
        ))
        .layer(DefaultBodyLimit::max(guard::MAX_FORM_BYTES))
        .with_state(app)
}
