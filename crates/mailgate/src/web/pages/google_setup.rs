//! The Google setup guide and the "Check Google setup" button.

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;

use super::redirect_with;
use crate::app::App;
use crate::web::WebError;
use crate::web::session::{Admin, Flash};
use crate::web::views::{Chrome, GoogleSetupPage};

pub async fn guide(
    State(app): State<Arc<App>>,
    Admin(admin): Admin,
    headers: HeaderMap,
) -> Result<GoogleSetupPage, WebError> {
    Ok(GoogleSetupPage {
        chrome: Chrome::admin(&admin, "settings", Flash::from_headers(&app, &headers)),
        guide: app.setup_guide().await?,
    })
}

/// Runs the pre-flight check; the overview shows the result until the next run.
pub async fn check(State(app): State<Arc<App>>, Admin(_): Admin) -> Result<Response, WebError> {
    let report = app.doctor().await?;
    let flash = if report.ok {
        Flash::ok("Google setup check: nothing failed.")
    } else {
        Flash::warn("Google setup check: some items failed; each says how to fix it.")
    };
    Ok(redirect_with(&app, "/#google-check", flash))
}
