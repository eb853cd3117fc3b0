//! Sign in, sign out, and the one-time setup link that creates the first admin.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Extension;
use axum::extract::{ConnectInfo, Form, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use secrecy::SecretString;
use serde::Deserialize;

use super::{redirect_with, with_status};
use crate::app::admins::{LoginError, NewSession, SignInClient};
use crate::app::{App, AppError};
use crate::web::WebError;
use crate::web::client::client_ip;
use crate::web::guard::PreSessionCsrf;
use crate::web::session::{
    DEVICE_COOKIE, Flash, SESSION_COOKIE, cookie, current_admin, safe_next, session_cookies,
    set_cookie,
};
use crate::web::views::{Chrome, LoginPage, SetupPage};

#[derive(Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

pub async fn login_page(
    State(app): State<Arc<App>>,
    Extension(PreSessionCsrf(csrf)): Extension<PreSessionCsrf>,
    headers: HeaderMap,
    Query(query): Query<NextQuery>,
) -> Result<Response, WebError> {
    let next = safe_next(query.next.as_deref());
    if current_admin(&headers, &app).await?.is_some() {
        return Ok(Redirect::to(&next).into_response());
    }
    Ok(LoginPage {
        chrome: Chrome::anonymous(csrf.clone(), Flash::from_headers(&app, &headers)),
        error: None,
        csrf,
        next,
        email: String::new(),
    }
    .into_response())
}

#[derive(Deserialize)]
pub struct LoginForm {
    email: String,
    password: String,
    next: Option<String>,
}

/// Where this sign-in comes from, as the limits see it.
fn sign_in_client<'a>(
    app: &App,
    peer: SocketAddr,
    headers: &HeaderMap,
    device: Option<&'a str>,
) -> SignInClient<'a> {
    SignInClient {
        ip: client_ip(peer.ip(), headers, &app.config.trusted_proxies),
        device,
    }
}

fn signed_in(app: &App, mut response: Response, session: &NewSession) -> Response {
    for value in session_cookies(app, session) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

pub async fn login(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Extension(PreSessionCsrf(csrf)): Extension<PreSessionCsrf>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let next = safe_next(form.next.as_deref());
    let device = cookie(&app, &headers, DEVICE_COOKIE);
    let client = sign_in_client(&app, peer, &headers, device.as_deref());
    match app
        .login(&form.email, SecretString::from(form.password), &client)
        .await
    {
        Ok(session) => signed_in(&app, Redirect::to(&next).into_response(), &session),
        Err(e) => {
            let (status, retry_after) = match e {
                LoginError::Wrong => (StatusCode::UNAUTHORIZED, None),
                LoginError::Limited(seconds) => (StatusCode::TOO_MANY_REQUESTS, Some(seconds)),
                LoginError::Busy => (StatusCode::SERVICE_UNAVAILABLE, Some(1)),
                LoginError::App(ref inner) => {
                    return WebError::from(AppError::Refused(inner.to_string())).into_response();
                }
            };
            let mut response = with_status(
                status,
                LoginPage {
                    chrome: Chrome::anonymous(csrf.clone(), None),
                    error: Some(e.to_string()),
                    csrf,
                    next,
                    email: form.email,
                },
            );
            if let Some(seconds) = retry_after {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
            }
            response
        }
    }
}

pub async fn logout(State(app): State<Arc<App>>, headers: HeaderMap) -> Result<Response, WebError> {
    if let Some(value) = cookie(&app, &headers, SESSION_COOKIE) {
        app.logout(&value).await?;
    }
    let mut response = redirect_with(&app, "/login", Flash::ok("Signed out."));
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(&app, SESSION_COOKIE, "", 0, "Lax"),
    );
    Ok(response)
}

#[derive(Deserialize)]
pub struct TokenQuery {
    #[serde(default)]
    token: String,
}

pub async fn setup_page(
    State(app): State<Arc<App>>,
    Extension(PreSessionCsrf(csrf)): Extension<PreSessionCsrf>,
    Query(query): Query<TokenQuery>,
) -> Result<Response, WebError> {
    let valid = app.setup_token_valid(&query.token).await?;
    let page = SetupPage {
        chrome: Chrome::anonymous(csrf.clone(), None),
        valid,
        error: None,
        csrf,
        token: query.token,
        email: String::new(),
    };
    Ok(if valid {
        page.into_response()
    } else {
        with_status(StatusCode::FORBIDDEN, page)
    })
}

#[derive(Deserialize)]
pub struct SetupForm {
    token: String,
    email: String,
    password: String,
    confirm: String,
}

pub async fn setup(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Extension(PreSessionCsrf(csrf)): Extension<PreSessionCsrf>,
    headers: HeaderMap,
    Form(form): Form<SetupForm>,
) -> Result<Response, WebError> {
    let page = |error: String, valid: bool| {
        with_status(
            StatusCode::BAD_REQUEST,
            SetupPage {
                chrome: Chrome::anonymous(csrf.clone(), None),
                valid,
                error: Some(error),
                csrf: csrf.clone(),
                token: form.token.clone(),
                email: form.email.clone(),
            },
        )
    };
    if form.password != form.confirm {
        return Ok(page("The two passwords differ.".into(), true));
    }
    match app
        .create_admin_with_link(
            &form.token,
            &form.email,
            SecretString::from(form.password.clone()),
        )
        .await
    {
        Ok(_) => {}
        Err(AppError::Invalid(errors)) => return Ok(page(errors.to_string(), true)),
        Err(AppError::Refused(message)) => return Ok(page(message, false)),
        Err(other) => return Err(other.into()),
    }
    // Signed in at once: the admin just proved who they are.
    let session = app
        .login(
            &form.email,
            SecretString::from(form.password),
            &sign_in_client(&app, peer, &headers, None),
        )
        .await
        .map_err(|e| WebError::Internal(e.to_string()))?;
    let welcome = redirect_with(
        &app,
        "/settings",
        Flash::ok(
            "Admin created. Next: turn on Custom Email Servers and enter your Gmail Credentials.",
        ),
    );
    Ok(signed_in(&app, welcome, &session))
}
