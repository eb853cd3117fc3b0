//! "Connect your Gmail account": send the admin to Google with a one-time `state` and PKCE, then
//! take Google's answer at `/google_gmail/confirm`, check it thoroughly, and keep the tokens sealed.
//! Every way this can fail gets an explanation with its cure, taken from the seed's FAQ.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::{ExposeSecret, SecretString};
use url::Url;

use super::{App, AppError};
use crate::crypto::{random_token, token_hash};
use crate::domain::{AuthMethod, ConnectFor};
use crate::google::{AuthorizeProbe, AuthorizeRequest, GoogleError, MAIL_SCOPE};
use crate::store::{NewConnection, OauthState, StateLookup};

/// A `state` is good for ten minutes.
pub const STATE_LIFETIME: i64 = 600;
/// An attempt that never came back is worth mentioning for a day.
const UNFINISHED_NOTICE_SECS: i64 = 86_400;

/// What Google sent back to `/google_gmail/confirm`.
#[derive(Debug, Default, Clone)]
pub struct Callback {
    pub state: Option<String>,
    pub code: Option<String>,
    pub error: Option<String>,
}

/// Why a callback was refused, with what the page needs to explain it.
#[derive(Debug)]
pub enum ConnectFailure {
    /// The `state` is not one mailgate can honour: the seed FAQ's "Forbidden", explained. The
    /// server is known when the attempt was this admin's own.
    State(StateProblem, Option<ConnectFor>),
    /// Google's authorization endpoint refused the request outright: the admin would have landed
    /// on Google's own error page (the seed FAQ's "Desktop app" mistake shows up here).
    GoogleRefused {
        target: ConnectFor,
        status: u16,
        code: Option<String>,
        url: String,
    },
    /// Google sent `error=...` instead of a code.
    Denied {
        target: ConnectFor,
        username: String,
        error: String,
    },
    /// The code exchange failed.
    Token {
        target: ConnectFor,
        error: GoogleError,
    },
    NoRefreshToken {
        target: ConnectFor,
    },
    ScopeMissing {
        target: ConnectFor,
        granted: String,
    },
    WrongAccount {
        target: ConnectFor,
        authorized: String,
        expected: String,
    },
    Unverified {
        target: ConnectFor,
        error: GoogleError,
    },
    ServerGone,
    NoCredentials {
        target: ConnectFor,
    },
    App(AppError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateProblem {
    Missing,
    Unknown,
    Expired,
    Used,
    Foreign,
}

impl From<AppError> for ConnectFailure {
    fn from(e: AppError) -> Self {
        ConnectFailure::App(e)
    }
}

impl From<crate::store::StoreError> for ConnectFailure {
    fn from(e: crate::store::StoreError) -> Self {
        ConnectFailure::App(AppError::Store(e))
    }
}

/// An explanation a person can act on.
#[derive(Debug, Clone)]
pub struct Explanation {
    pub status: u16,
    pub title: String,
    pub what: String,
    pub fix: Vec<String>,
    /// Google's own words, verbatim.
    pub google_said: Option<String>,
    /// The server to offer "Connect again" for.
    pub again: Option<ConnectFor>,
    /// Google's page, for the admin who wants to see it anyway.
    pub google_url: Option<String>,
}

/// What to tell the admin about one of Google's error codes, wherever it came from.
fn cure(code: &str, redirect_uri: &str) -> Option<(&'static str, String, Vec<String>)> {
    Some(match code {
        "redirect_uri_mismatch" => (
            "Google does not accept mailgate's redirect URI (redirect_uri_mismatch)",
            "The OAuth client in Google Cloud does not list mailgate's address as an Authorized redirect URI. This is also what a \"Desktop app\" client gives.".into(),
            vec![
                "In Google Cloud → Credentials, create an OAuth client ID of type \"Web application\" (not Desktop app).".into(),
                format!("Under Authorized redirect URIs, add exactly: {redirect_uri}"),
                "Put the new Client ID and Client Secret in Settings, then connect again.".into(),
            ],
        ),
        "invalid_client" => (
            "Google does not recognise the Gmail Credentials (invalid_client)",
            "The Client ID is unknown to Google, or the Client Secret does not belong to it.".into(),
            vec!["Copy the Client ID and Client Secret again from Google Cloud → Credentials into Settings, then connect again.".into()],
        ),
        "invalid_grant" => (
            "Google's authorization expired before mailgate could use it (invalid_grant)",
            "The one-time code from Google was already used or is too old.".into(),
            vec!["Click \"Connect your Gmail account\" and go through Google's pages again.".into()],
        ),
        "deleted_client" => (
            "The OAuth client was deleted in Google Cloud (deleted_client)",
            "Google deletes OAuth clients unused for six months, or someone deleted it.".into(),
            vec!["Create a new Web application client, register the redirect URI and enter its Client ID and Client Secret in Settings.".into()],
        ),
        _ => return None,
    })
}

impl App {
    /// Starts the round trip: returns the URL to send the browser to. Google is asked first, from
    /// the server, whether it will accept the request; if it would answer with its own error page,
    /// mailgate explains the problem instead of sending the admin there.
    pub async fn start_gmail_connect(
        &self,
        target: ConnectFor,
        admin_id: i64,
    ) -> Result<Url, ConnectFailure> {
        let username = self.account_to_connect(target).await?;
        let settings = self.google_settings().await?;
        let Some((client_id, _)) = settings.credentials() else {
            return Err(AppError::Refused(
                "Setup your Gmail API credentials in the general settings to link a Gmail account."
                    .into(),
            )
            .into());
        };
        let nonce = random_token();
        // RFC 7636: 43-128 characters; 32 random bytes in base64url are 43.
        let verifier = SecretString::from(random_token());
        let challenge = URL_SAFE_NO_PAD.encode(ring::digest::digest(
            &ring::digest::SHA256,
            verifier.expose_secret().as_bytes(),
        ));
        let now = self.now();
        self.store
            .create_oauth_state(
                &self.sealer,
                &token_hash(&nonce),
                &OauthState {
                    target,
                    admin_id,
                    verifier,
                },
                now,
                now + STATE_LIFETIME,
            )
            .await?;
        let url = self.google.authorize_url(&AuthorizeRequest {
            client_id,
            redirect_uri: &self.config.redirect_uri(),
            login_hint: &username,
            state: &nonce,
            code_challenge: &challenge,
        });
        match self.google.probe_authorize(&url).await {
            AuthorizeProbe::Refused { status, code } => Err(ConnectFailure::GoogleRefused {
                target,
                status,
                code,
                url: url.to_string(),
            }),
            // Google's sign-in pages, or no clear answer: the browser goes and sees.
            AuthorizeProbe::Accepted | AuthorizeProbe::Unknown(_) => Ok(url),
        }
    }

    /// Finishes the round trip. Returns the server to go back to.
    pub async fn finish_gmail_connect(
        &self,
        admin_id: i64,
        callback: &Callback,
    ) -> Result<ConnectFor, ConnectFailure> {
        let Some(nonce) = callback.state.as_deref().filter(|s| !s.is_empty()) else {
            return Err(ConnectFailure::State(StateProblem::Missing, None));
        };
        let state = match self
            .store
            .take_oauth_state(&self.sealer, &token_hash(nonce), admin_id, self.now())
            .await?
        {
            StateLookup::Valid(state) => state,
            StateLookup::Unknown => return Err(ConnectFailure::State(StateProblem::Unknown, None)),
            StateLookup::Expired { target } => {
                return Err(ConnectFailure::State(StateProblem::Expired, Some(target)));
            }
            StateLookup::Used { target } => {
                return Err(ConnectFailure::State(StateProblem::Used, Some(target)));
            }
            StateLookup::Foreign => return Err(ConnectFailure::State(StateProblem::Foreign, None)),
        };
        let target = state.target;
        // The server may have been deleted, or switched away from Gmail, while the admin was at
        // Google.
        let username = match self.account_to_connect(target).await {
            Ok(username) => username,
            Err(AppError::NotFound(_) | AppError::Refused(_)) => {
                return Err(ConnectFailure::ServerGone);
            }
            Err(e) => return Err(e.into()),
        };
        if let Some(error) = &callback.error {
            return Err(ConnectFailure::Denied {
                target,
                username,
                error: error.clone(),
            });
        }
        let Some(code) = callback.code.as_deref() else {
            return Err(ConnectFailure::Denied {
                target,
                username,
                error: "no code in Google's answer".into(),
            });
        };
        let settings = self.google_settings().await?;
        let Some((client_id, secret)) = settings.credentials() else {
            return Err(ConnectFailure::NoCredentials { target });
        };
        let tokens = self
            .google
            .exchange_code(
                client_id,
                secret,
                code,
                &self.config.redirect_uri(),
                &state.verifier,
            )
            .await
            .map_err(|error| ConnectFailure::Token { target, error })?;
        let Some(refresh_token) = &tokens.refresh_token else {
            return Err(ConnectFailure::NoRefreshToken { target });
        };
        if !tokens.scope.split(' ').any(|s| s == MAIL_SCOPE) {
            return Err(ConnectFailure::ScopeMissing {
                target,
                granted: tokens.scope.clone(),
            });
        }
        let id_token = tokens
            .id_token
            .as_deref()
            .ok_or_else(|| ConnectFailure::Unverified {
                target,
                error: GoogleError::IdToken("Google sent no id_token".into()),
            })?;
        let claims = self
            .google
            .verify_id_token(id_token, client_id, self.now())
            .await
            .map_err(|error| ConnectFailure::Unverified { target, error })?;
        let authorized = claims.email.unwrap_or_default().to_ascii_lowercase();
        if claims.email_verified != Some(true) || authorized != username {
            return Err(ConnectFailure::WrongAccount {
                target,
                authorized,
                expected: username,
            });
        }
        let now = self.now();
        self.store
            .save_connection(
                &self.sealer,
                &NewConnection {
                    email: &username,
                    client_id,
                    scope: &tokens.scope,
                    refresh_token,
                    access_token: &tokens.access_token,
                    access_expires_at: now + tokens.expires_in,
                    refresh_expires_at: tokens.refresh_token_expires_in.map(|s| now + s),
                },
                now,
            )
            .await?;
        tracing::info!(account = %username, server = ?target, "Gmail account connected");
        // Messages held for want of this connection can go now, and incoming servers waiting
        // for it try again at once.
        self.release_held(Some(&username)).await?;
        self.connections_changed_here().await;
        Ok(target)
    }

    /// When this admin's last "Connect your Gmail account" for the server never came back (Google
    /// showed one of its own error pages, or the window was closed), the time it started.
    pub async fn unfinished_connect(
        &self,
        target: ConnectFor,
        admin_id: i64,
    ) -> Result<Option<crate::clock::Timestamp>, AppError> {
        let Some((started, answered)) = self.store.latest_oauth_attempt(target, admin_id).await?
        else {
            return Ok(None);
        };
        if answered.is_some() || self.now() - started > UNFINISHED_NOTICE_SECS {
            return Ok(None);
        }
        let connected_since = match self.account_to_connect(target).await {
            Ok(email) => self.store.connection(&email).await?.map(|c| c.connected_at),
            Err(_) => None,
        };
        Ok(connected_since
            .is_none_or(|connected| connected < started)
            .then_some(started))
    }

    /// The Gmail address a "Connect your Gmail account" started from `target` is for.
    async fn account_to_connect(&self, target: ConnectFor) -> Result<String, AppError> {
        match target {
            ConnectFor::Outgoing(id) => {
                let server = self
                    .store
                    .server(id)
                    .await?
                    .ok_or(AppError::NotFound("Outgoing mail server"))?;
                if server.auth != AuthMethod::Gmail {
                    return Err(AppError::Refused(
                        "Only servers that authenticate with Gmail OAuth connect to Google.".into(),
                    ));
                }
                server.username.ok_or_else(|| AppError::Refused(
                    "Please fill the \"Username\" field with your Gmail username (your email address) and save before connecting.".into(),
                ))
            }
            ConnectFor::Incoming(id) => Ok(self.incoming_server(id).await?.username),
        }
    }

    /// "Disconnect": revoke at Google, forget here. The connection is the account's: every
    /// server of the account, outgoing and incoming, is disconnected with it. Returns a warning
    /// when Google could not be told (the token is forgotten anyway).
    pub async fn disconnect_gmail(&self, target: ConnectFor) -> Result<Option<String>, AppError> {
        let email = match self.account_to_connect(target).await {
            Ok(email) => email,
            // Not a Gmail server, or no Username yet: nothing is connected.
            Err(AppError::Refused(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        let Some(record) = self.store.connection_secrets(&self.sealer, &email).await? else {
            return Ok(None);
        };
        let warning = match self.google.revoke(&record.refresh_token).await {
            Ok(()) => None,
            // Already dead at Google: nothing left to revoke.
            Err(e) if e.code() == Some("invalid_token") => None,
            Err(e) => Some(format!(
                "Google could not be told to revoke the token ({e}). It is deleted here; you can also remove mailgate's access at https://myaccount.google.com/permissions."
            )),
        };
        self.store.delete_connection(&email).await?;
        // Incoming servers of the account stop now, with the reason shown.
        self.connections_changed_here().await;
        Ok(warning)
    }

    /// A connection was made or removed here: this instance's fetchers hear it at once, and
    /// the next look at the shared table does not count it again.
    async fn connections_changed_here(&self) {
        if let Ok(seen) = self.store.connections_fingerprint().await
            && let Ok(mut last) = self.connections_seen.lock()
        {
            *last = Some(seen);
        }
        self.connections_changed.send_modify(|n| *n += 1);
    }

    /// Called with every heartbeat: a connection made or removed on another instance reaches
    /// this one's fetchers within a beat (an IMAP session would otherwise carry on with a
    /// disconnected account, or a fetcher wait out its backoff after a reconnect elsewhere).
    pub async fn notice_connection_changes(&self) -> Result<(), AppError> {
        let seen = self.store.connections_fingerprint().await?;
        let changed = match self.connections_seen.lock() {
            Ok(mut last) => last.replace(seen).is_some_and(|before| before != seen),
            Err(_) => false,
        };
        if changed {
            self.connections_changed.send_modify(|n| *n += 1);
        }
        Ok(())
    }
}

impl ConnectFailure {
    pub fn explain(&self, redirect_uri: &str) -> Explanation {
        match self {
            ConnectFailure::State(problem, target) => {
                let (title, what) = match problem {
                    StateProblem::Missing => (
                        "This page needs Google's answer",
                        "The address has no state parameter, so it is not an answer from Google to a connection mailgate started.",
                    ),
                    StateProblem::Unknown => (
                        "This connection attempt is unknown to mailgate",
                        "Google's answer carries a state that mailgate never issued: the link was altered, or it belongs to another mailgate installation (for example one whose data directory was reset).",
                    ),
                    StateProblem::Expired => (
                        "This connection attempt expired",
                        "Each \"Connect your Gmail account\" is valid for ten minutes, and this one is older.",
                    ),
                    StateProblem::Used => (
                        "This connection attempt was already used",
                        "Google's answer can be used once. This page was probably reloaded, or opened again from the browser's history.",
                    ),
                    StateProblem::Foreign => (
                        "This connection was started by another administrator",
                        "Only the administrator who clicked \"Connect your Gmail account\" can finish it, so a link sent to someone else cannot attach their Google account.",
                    ),
                };
                Explanation {
                    status: 403,
                    title: title.into(),
                    what: what.into(),
                    fix: vec![
                        "Open the server and click \"Connect your Gmail account\" again.".into(),
                        "(Flectra shows \"Forbidden\" here; nothing is wrong with your installation.)".into(),
                    ],
                    google_said: None,
                    again: *target,
                    google_url: None,
                }
            }
            ConnectFailure::Denied {
                target,
                username,
                error,
            } if error == "access_denied" => Explanation {
                status: 400,
                title: "Google refused access (access_denied)".into(),
                what: format!(
                    "Either Cancel was clicked on Google's page, or the Google Cloud app is in Testing and {username} is not one of its test users: Google then shows \"Error 403: access_denied\"."
                ),
                fix: vec![
                    "In the Google Cloud console, open APIs & Services → OAuth consent screen → Audience (Test users).".into(),
                    format!("Click Add users, add {username}, and save."),
                    "Come back and click \"Connect your Gmail account\" again.".into(),
                ],
                google_said: Some(format!("error={error}")),
                again: Some(*target),
                google_url: None,
            },
            ConnectFailure::Denied {
                target, error, ..
            } => Explanation {
                status: 400,
                title: format!("Google did not authorize the connection ({error})"),
                what: "Google sent back an error instead of an authorization code.".into(),
                fix: vec!["Click \"Connect your Gmail account\" again; if the error repeats, check the OAuth consent screen in the Google Cloud console.".into()],
                google_said: Some(format!("error={error}")),
                again: Some(*target),
                google_url: None,
            },
            ConnectFailure::GoogleRefused {
                target,
                status,
                code,
                url,
            } => {
                let shown = match code {
                    Some(code) => format!("Error {status}: {code}"),
                    None => format!("HTTP {status}"),
                };
                let (title, what, fix) = code
                    .as_deref()
                    .and_then(|c| cure(c, redirect_uri))
                    .unwrap_or((
                        "Google refuses this authorization request",
                        "Google would have shown an error page instead of its sign-in.".into(),
                        vec!["Check the Gmail Credentials in Settings and the OAuth client in Google Cloud.".into()],
                    ));
                Explanation {
                    status: 400,
                    title: title.into(),
                    what: format!("{what} mailgate asked Google before sending you there, so you did not have to meet {shown} on Google's page."),
                    fix,
                    google_said: Some(shown),
                    again: Some(*target),
                    google_url: Some(url.clone()),
                }
            }
            ConnectFailure::Token { target, error } => {
                let (title, what, fix) = error
                    .code()
                    .and_then(|c| cure(c, redirect_uri))
                    .unwrap_or(if error.is_temporary() {
                        (
                            "Google did not answer",
                            "Google's token endpoint could not be reached or failed. Nothing was saved.".into(),
                            vec!["Wait a minute and click \"Connect your Gmail account\" again.".into()],
                        )
                    } else {
                        (
                            "Google refused the authorization",
                            "The code exchange with Google's token endpoint failed.".into(),
                            vec!["Check the Gmail Credentials in Settings and connect again.".into()],
                        )
                    });
                Explanation {
                    status: 400,
                    title: title.into(),
                    what,
                    fix,
                    google_said: Some(error.to_string()),
                    again: Some(*target),
                    google_url: None,
                }
            }
            ConnectFailure::NoRefreshToken { target } => Explanation {
                status: 400,
                title: "Google sent no refresh token".into(),
                what: "Without a refresh token mailgate could send for an hour at most.".into(),
                fix: vec!["Remove mailgate's access at https://myaccount.google.com/permissions, then connect again.".into()],
                google_said: None,
                again: Some(*target),
                google_url: None,
            },
            ConnectFailure::ScopeMissing { target, granted } => Explanation {
                status: 400,
                title: "Gmail access was not granted".into(),
                what: "Google's consent page lets each permission be ticked separately, and the one for Gmail was left out.".into(),
                fix: vec!["Connect again and tick \"Read, compose, send, and permanently delete all your email from Gmail\".".into()],
                google_said: Some(format!("granted scope: {granted}")),
                again: Some(*target),
                google_url: None,
            },
            ConnectFailure::WrongAccount {
                target,
                authorized,
                expected,
            } => Explanation {
                status: 400,
                title: "Another Google account was authorized".into(),
                what: match target {
                    ConnectFor::Outgoing(_) => format!(
                        "You authorized {authorized} but this server sends as {expected}. Nothing was saved: mail from {expected} cannot go out with {authorized}'s permission."
                    ),
                    ConnectFor::Incoming(_) => format!(
                        "You authorized {authorized} but this server fetches {expected}'s mail. Nothing was saved: {expected}'s mailbox cannot be read with {authorized}'s permission."
                    ),
                },
                fix: vec![
                    format!("Connect again and choose {expected} on Google's account chooser,"),
                    format!("or change this server's Username to {authorized}."),
                ],
                google_said: None,
                again: Some(*target),
                google_url: None,
            },
            ConnectFailure::Unverified { target, error } => Explanation {
                status: 400,
                title: "mailgate could not confirm which account consented".into(),
                what: "Google's answer did not carry a valid identity token, so mailgate cannot tell which account granted access.".into(),
                fix: vec!["Connect again. If it repeats, check the system clock and the Google endpoints in the configuration.".into()],
                google_said: Some(error.to_string()),
                again: Some(*target),
                google_url: None,
            },
            ConnectFailure::ServerGone => Explanation {
                status: 404,
                title: "The server no longer exists".into(),
                what: "The mail server this connection was for was deleted, or no longer uses Gmail OAuth.".into(),
                fix: vec!["Open Outgoing Mail Servers or Incoming Mail Servers and start from the server you want to connect.".into()],
                google_said: None,
                again: None,
                google_url: None,
            },
            ConnectFailure::NoCredentials { target } => Explanation {
                status: 400,
                title: "The Gmail Credentials are missing".into(),
                what: "Settings has no Client ID or Client Secret any more.".into(),
                fix: vec!["Setup your Gmail API credentials in the general settings, then connect again.".into()],
                google_said: None,
                again: Some(*target),
                google_url: None,
            },
            ConnectFailure::App(e) => Explanation {
                status: 500,
                title: "The connection could not be saved".into(),
                what: e.to_string(),
                fix: vec!["Try again; if it repeats, check mailgate's log.".into()],
                google_said: None,
                again: None,
                google_url: None,
            },
        }
    }
}
