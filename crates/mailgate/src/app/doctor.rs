//! The pre-flight check ("Check Google setup", `mailgate doctor`): every mistake the seed's FAQ
//! describes, found before an admin meets it, each with its fix in one sentence.

use std::os::unix::fs::PermissionsExt;

use serde::{Deserialize, Serialize};

use super::gmail_login::GmailLoginError;
use super::tokens::TokenError;
use super::{App, AppError};
use crate::clock::{Timestamp, format_utc, relative};
use crate::config::SecretKeySource;
use crate::domain::connection::EXPIRY_WARNING_SECS;
use crate::domain::{AuthMethod, TokenBadge};
use crate::google::{AuthorizeProbe, AuthorizeRequest, GoogleError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Warn,
    Fail,
}

impl Status {
    pub fn label(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Warn => "warn",
            Status::Fail => "fail",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Check {
    /// Stable name for scripts: `public_url`, `client_secret`, `server:<Description>`, ...
    pub id: String,
    pub title: String,
    pub status: Status,
    pub detail: String,
    pub fix: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DoctorReport {
    pub at: Timestamp,
    pub ok: bool,
    pub checks: Vec<Check>,
}

impl DoctorReport {
    pub fn count(&self, status: Status) -> usize {
        self.checks.iter().filter(|c| c.status == status).count()
    }
}

/// Google's clock and ours may differ this much before tokens and id_tokens misbehave.
const CLOCK_TOLERANCE: i64 = 60;
const LAST_REPORT: &str = "doctor.last_report";

fn check(id: &str, title: &str, status: Status, detail: String, fix: Option<&str>) -> Check {
    Check {
        id: id.to_string(),
        title: title.to_string(),
        status,
        detail,
        fix: fix.map(str::to_string),
    }
}

/// The values the Google setup guide fills in.
pub struct SetupGuide {
    pub app_name: String,
    pub authorized_domain: Option<String>,
    pub public_url: String,
    pub test_users: Vec<String>,
    pub redirect_uri: String,
    pub public_url_rejected: bool,
}

/// The domain to list under "Authorized domains": the public URL's registered domain, or none on
/// loopback and IP addresses (Google wants none there).
pub fn authorized_domain(url: &url::Url) -> Option<String> {
    let Some(url::Host::Domain(host)) = url.host() else {
        return None;
    };
    if crate::config::is_loopback_host(url) {
        return None;
    }
    let labels: Vec<&str> = host.split('.').collect();
    // Without the public suffix list: `mail.example.com` -> `example.com`, and a short
    // second-level label keeps three (`mail.example.co.uk` -> `example.co.uk`).
    let keep = match labels.as_slice() {
        [.., second, _] if labels.len() >= 3 && second.len() <= 3 => 3,
        _ => 2,
    };
    Some(labels[labels.len().saturating_sub(keep)..].join("."))
}

impl App {
    pub async fn setup_guide(&self) -> Result<SetupGuide, AppError> {
        let mut test_users: Vec<String> = self
            .store
            .list_servers()
            .await?
            .into_iter()
            .filter(|s| s.auth == AuthMethod::Gmail)
            .filter_map(|s| s.username)
            .collect();
        test_users.sort();
        test_users.dedup();
        Ok(SetupGuide {
            app_name: "mailgate".into(),
            authorized_domain: authorized_domain(&self.config.public_url),
            public_url: self.config.public_base(),
            test_users,
            redirect_uri: self.config.redirect_uri(),
            public_url_rejected: self.config.public_url_rejected_by_google(),
        })
    }

    /// Runs every check, keeps the report for the overview, and returns it.
    pub async fn doctor(&self) -> Result<DoctorReport, AppError> {
        let mut checks = vec![self.check_public_url(), self.check_secret_key()];
        checks.push(self.check_database().await);
        checks.extend(self.check_google().await?);
        checks.extend(self.check_servers().await?);
        if let Some(relay) = self.check_relay().await {
            checks.push(relay);
        }
        let report = DoctorReport {
            at: self.now(),
            ok: checks.iter().all(|c| c.status != Status::Fail),
            checks,
        };
        let json = serde_json::to_string(&report).unwrap_or_default();
        self.store
            .put_value(LAST_REPORT, Some(&json), self.now())
            .await?;
        Ok(report)
    }

    pub async fn last_doctor_report(&self) -> Result<Option<DoctorReport>, AppError> {
        Ok(self
            .store
            .value(LAST_REPORT)
            .await?
            .and_then(|json| serde_json::from_str(&json).ok()))
    }

    fn check_public_url(&self) -> Check {
        let url = self.config.public_base();
        let (status, detail, fix) = if self.config.public_url_is_https() {
            (Status::Pass, format!("{url} is https."), None)
        } else if self.config.public_url_rejected_by_google() {
            (
                Status::Fail,
                format!(
                    "{url} is plain http on a host that is not this machine: Google refuses such redirect URIs."
                ),
                Some(
                    "Serve mailgate over https (for example behind a reverse proxy) and set MAILGATE_PUBLIC_URL to the https address.",
                ),
            )
        } else {
            (
                Status::Pass,
                format!("{url} is on loopback, where Google allows http."),
                None,
            )
        };
        check("public_url", "Public URL", status, detail, fix)
    }

    fn check_secret_key(&self) -> Check {
        match &self.config.secret_key {
            SecretKeySource::Inline(_) => check(
                "secret_key",
                "Secret key",
                Status::Pass,
                "Read from MAILGATE_SECRET_KEY.".into(),
                None,
            ),
            SecretKeySource::File(path) => match std::fs::metadata(path) {
                Ok(meta) if meta.permissions().mode() & 0o077 == 0 => check(
                    "secret_key",
                    "Secret key",
                    Status::Pass,
                    format!("{} is readable by its owner only.", path.display()),
                    None,
                ),
                Ok(meta) => check(
                    "secret_key",
                    "Secret key",
                    Status::Fail,
                    format!(
                        "{} has mode {:o}: other users of this machine can read the key to every stored secret.",
                        path.display(),
                        meta.permissions().mode() & 0o777
                    ),
                    Some("Run chmod 600 on the key file."),
                ),
                Err(e) => check(
                    "secret_key",
                    "Secret key",
                    Status::Fail,
                    format!("{}: {e}", path.display()),
                    Some(
                        "Restore the key file from backup; without it stored secrets cannot be opened.",
                    ),
                ),
            },
        }
    }

    async fn check_database(&self) -> Check {
        let writable = self
            .store
            .put_value("doctor.write_probe", Some("ok"), self.now())
            .await;
        let schema = self.store.schema_status().await;
        match (writable, schema) {
            (Ok(()), Ok(status)) if status.is_current() => check(
                "database",
                "Database",
                Status::Pass,
                format!(
                    "Writable; schema at version {}.",
                    status.applied.unwrap_or_default()
                ),
                None,
            ),
            (Ok(()), Ok(status)) => check(
                "database",
                "Database",
                Status::Fail,
                format!(
                    "The schema is at {:?}; this mailgate expects {}.",
                    status.applied, status.known
                ),
                Some("Run `mailgate migrate`."),
            ),
            (Err(e), _) | (_, Err(e)) => check(
                "database",
                "Database",
                Status::Fail,
                e.to_string(),
                Some(
                    "Check the database URL, the disk space and the file permissions of the data directory.",
                ),
            ),
        }
    }

    /// The OAuth client: exists, accepts the redirect URI, has the right secret; and Google's clock.
    async fn check_google(&self) -> Result<Vec<Check>, AppError> {
        let settings = self.google_settings().await?;
        let Some((client_id, secret)) = settings.credentials() else {
            return Ok(vec![check(
                "credentials",
                "Gmail Credentials",
                Status::Fail,
                "No Client ID or Client Secret in Settings.".into(),
                Some(
                    "Setup your Gmail API credentials in the general settings (follow the Google setup guide).",
                ),
            )]);
        };
        let redirect_uri = self.config.redirect_uri();
        let mut checks = Vec::new();
        let url = self.google.authorize_url(&AuthorizeRequest {
            client_id,
            redirect_uri: &redirect_uri,
            login_hint: "",
            state: "mailgate-doctor",
            code_challenge: "mailgate-doctor-check-0000000000000000000000",
        });
        let client_known = match self.google.probe_authorize(&url).await {
            AuthorizeProbe::Accepted => {
                checks.push(check(
                    "client_id",
                    "Client ID and redirect URI",
                    Status::Pass,
                    format!("Google knows the Client ID and accepts {redirect_uri}."),
                    None,
                ));
                true
            }
            AuthorizeProbe::Refused { status, code } => {
                let code = code.unwrap_or_else(|| format!("HTTP {status}"));
                let fix = match code.as_str() {
                    "invalid_client" => "Copy the Client ID again from Google Cloud → Credentials into Settings.".to_string(),
                    "redirect_uri_mismatch" => format!("Use an OAuth client of type \"Web application\" (a Desktop app client gives this error) and add exactly {redirect_uri} to its Authorized redirect URIs."),
                    _ => "Check the OAuth client in Google Cloud → Credentials and the Client ID in Settings.".to_string(),
                };
                checks.push(Check {
                    id: "client_id".into(),
                    title: "Client ID and redirect URI".into(),
                    status: Status::Fail,
                    detail: format!(
                        "Google answers the authorization request with \"Error {status}: {code}\"."
                    ),
                    fix: Some(fix),
                });
                code != "invalid_client"
            }
            AuthorizeProbe::Unknown(why) => {
                checks.push(check(
                    "client_id",
                    "Client ID and redirect URI",
                    Status::Warn,
                    format!("Google's authorization endpoint could not be asked: {why}."),
                    Some("Check that this machine reaches accounts.google.com, then run the check again."),
                ));
                true
            }
        };
        if !client_known {
            return Ok(checks);
        }
        // A made-up code: Google checks the client (secret) before the code, so `invalid_grant`
        // means the credentials are right and `invalid_client` means the secret is wrong.
        let dummy = secrecy::SecretString::from("mailgate-doctor".to_string());
        match self
            .google
            .exchange_code(client_id, secret, "4/0-mailgate-doctor", &redirect_uri, &dummy)
            .await
        {
            Err(GoogleError::OAuth { error, .. }) if error == "invalid_grant" => {
                checks.push(check(
                    "client_secret",
                    "Client Secret",
                    Status::Pass,
                    "Google accepts the Client Secret.".into(),
                    None,
                ));
            }
            Err(GoogleError::OAuth { error, description, .. }) if error == "invalid_client" => {
                checks.push(check(
                    "client_secret",
                    "Client Secret",
                    Status::Fail,
                    format!(
                        "Google refuses the credentials (invalid_client: {}).",
                        description.unwrap_or_default()
                    ),
                    Some("Copy the Client Secret again from Google Cloud → Credentials (or reset it there) into Settings."),
                ));
            }
            Err(e) if e.is_temporary() => checks.push(check(
                "client_secret",
                "Client Secret",
                Status::Warn,
                format!("Google's token endpoint did not answer: {e}."),
                Some("Check that this machine reaches oauth2.googleapis.com, then run the check again."),
            )),
            other => checks.push(check(
                "client_secret",
                "Client Secret",
                Status::Warn,
                format!(
                    "Unexpected answer to the test request: {}.",
                    match other {
                        Ok(_) => "tokens for a made-up code".to_string(),
                        Err(e) => e.to_string(),
                    }
                ),
                None,
            )),
        }
        checks.push(self.check_clock().await);
        Ok(checks)
    }

    /// Google's `Date` header against this machine's clock: token lifetimes and id_token checks
    /// assume the two agree.
    async fn check_clock(&self) -> Check {
        let response = self
            .google
            .http()
            .post(self.google.endpoints().token_url.clone())
            .form(&[("grant_type", "refresh_token")])
            .send()
            .await;
        let google_time = response.ok().and_then(|r| {
            r.headers()
                .get(reqwest::header::DATE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| httpdate::parse_http_date(v).ok())
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .and_then(|d| i64::try_from(d.as_secs()).ok())
        });
        let Some(google_time) = google_time else {
            return check(
                "clock",
                "Clock",
                Status::Warn,
                "Google's answer carried no date to compare with.".into(),
                None,
            );
        };
        let skew = self.now() - google_time;
        if skew.abs() <= CLOCK_TOLERANCE {
            check(
                "clock",
                "Clock",
                Status::Pass,
                format!(
                    "This machine's clock is within {} s of Google's.",
                    skew.abs().max(1)
                ),
                None,
            )
        } else {
            check(
                "clock",
                "Clock",
                Status::Fail,
                format!(
                    "This machine's clock is {} s {} Google's.",
                    skew.abs(),
                    if skew > 0 { "ahead of" } else { "behind" }
                ),
                Some("Synchronise the clock (NTP, e.g. systemd-timesyncd or chrony)."),
            )
        }
    }

    /// Per Gmail server: its Google connection (refreshed to find out), when it dies, and whether
    /// its SMTP server answers with a valid certificate.
    async fn check_servers(&self) -> Result<Vec<Check>, AppError> {
        let mut checks = Vec::new();
        for summary in self.server_summaries().await? {
            let server = &summary.server;
            if server.auth != AuthMethod::Gmail {
                continue;
            }
            let id = format!("server:{}", server.name);
            let title = format!(
                "{} ({})",
                server.name,
                server.username.clone().unwrap_or_default()
            );
            let username = server.username.clone().unwrap_or_default();
            let token = match summary.badge {
                Some(TokenBadge::NotConnected) | None => Some(check(
                    &id,
                    &title,
                    Status::Fail,
                    "Not connected to Google.".into(),
                    Some("Open the server and click \"Connect your Gmail account\"."),
                )),
                _ => match self.access_token(&username, true).await {
                    Ok(_) => None,
                    Err(TokenError::ReconnectNeeded(reason)) => Some(check(
                        &id,
                        &title,
                        Status::Fail,
                        format!("Reconnect needed: {reason}."),
                        Some("Open the server and click \"Connect your Gmail account\" again."),
                    )),
                    Err(e) => Some(check(
                        &id,
                        &title,
                        Status::Warn,
                        e.to_string(),
                        Some("Run the check again in a minute."),
                    )),
                },
            };
            if let Some(problem) = token {
                checks.push(problem);
            } else {
                let now = self.now();
                let expiry = self
                    .store
                    .connection(&username)
                    .await?
                    .and_then(|c| c.refresh_expires_at);
                checks.push(match expiry {
                    Some(at) if at - now < EXPIRY_WARNING_SECS => check(
                        &id,
                        &title,
                        Status::Warn,
                        format!(
                            "Gmail Token Valid, but Google ends the connection on {} ({}): the app's publishing status is Testing, whose tokens last 7 days.",
                            format_utc(at),
                            relative(at, now)
                        ),
                        Some("Publish the app (OAuth consent screen → In production) and connect again, or reconnect before that date."),
                    ),
                    Some(at) => check(
                        &id,
                        &title,
                        Status::Pass,
                        format!(
                            "Gmail Token Valid; Google ends it on {} ({}) because the app is in Testing.",
                            format_utc(at),
                            relative(at, now)
                        ),
                        None,
                    ),
                    None => check(&id, &title, Status::Pass, "Gmail Token Valid.".into(), None),
                });
            }
            checks.push(self.check_smtp(server, &id).await);
        }
        Ok(checks)
    }

    /// Logs in the way delivery does ([`App::gmail_session`]): a pass means the next message
    /// can go, not merely that the port answers.
    /// The relay: its listener answers with a greeting, and its certificate is valid for at
    /// least two more weeks. None when the relay is off.
    async fn check_relay(&self) -> Option<Check> {
        const SOON: i64 = 14 * 86_400;
        let relay = &self.config.relay;
        let addr = self
            .relay
            .listening
            .get()
            .and_then(|l| l.addr.or(l.tls_addr))
            .or(relay.addr.or(relay.tls_addr))
            // Port 0 (tests) names no port another process could reach.
            .filter(|a| a.port() != 0)?;
        let title = format!("SMTP relay {addr}");
        let greeting = async {
            let mut stream = tokio::net::TcpStream::connect(addr).await?;
            let mut line = [0u8; 512];
            let n = tokio::io::AsyncReadExt::read(&mut stream, &mut line).await?;
            Ok::<_, std::io::Error>(String::from_utf8_lossy(&line[..n]).to_string())
        };
        let listening =
            match tokio::time::timeout(std::time::Duration::from_secs(5), greeting).await {
                Ok(Ok(text)) if text.starts_with("220") || relay.tls_addr == Some(addr) => Ok(()),
                Ok(Ok(text)) => Err(format!("answers, but not as the relay: {}", text.trim())),
                Ok(Err(e)) => Err(format!("nothing listens there ({e})")),
                Err(_) => Err("no greeting within 5 seconds".to_string()),
            };
        let now = self.now();
        let (status, detail, fix) = match (
            listening,
            crate::relay::certificate::inspect(relay, &self.config.data_dir),
        ) {
            (Err(e), _) => (
                Status::Fail,
                format!("The relay {e}."),
                Some("Start mailgate serve, or check that nothing else holds MAILGATE_RELAY_ADDR."),
            ),
            (Ok(()), Err(e)) => (
                Status::Fail,
                e.to_string(),
                Some(
                    "Give relay.cert_file and relay.key_file in PEM, or remove both for a self-signed pair.",
                ),
            ),
            (Ok(()), Ok(cert)) if cert.not_after <= now => (
                Status::Fail,
                format!("Its certificate expired on {}.", format_utc(cert.not_after)),
                Some("Renew the certificate file, then restart mailgate."),
            ),
            (Ok(()), Ok(cert)) if cert.not_after - now < SOON => (
                Status::Warn,
                format!(
                    "Its certificate expires {} ({}).",
                    relative(cert.not_after, now),
                    format_utc(cert.not_after)
                ),
                Some(if cert.self_signed {
                    "Restart mailgate: it makes a new self-signed certificate when less than 30 days are left."
                } else {
                    "Renew the certificate file, then restart mailgate."
                }),
            ),
            (Ok(()), Ok(cert)) => (
                Status::Pass,
                format!(
                    "Listening; certificate valid until {} (SHA-256 {}).",
                    format_utc(cert.not_after),
                    cert.fingerprint
                ),
                None,
            ),
        };
        Some(check("relay", &title, status, detail, fix))
    }

    async fn check_smtp(&self, server: &crate::domain::MailServer, id: &str) -> Check {
        let target = self.smtp_target(server);
        let id = format!("{id}:smtp");
        let title = format!("{} SMTP {}:{}", server.name, target.host, target.port);
        let account = server.username.clone().unwrap_or_default();
        let (status, detail, fix) = match self.gmail_session(server, |_| {}).await {
            Ok(session) => {
                let tls = session.get_ref().tls_summary().unwrap_or_default();
                session.quit().await;
                (
                    Status::Pass,
                    format!(
                        "Logged in with XOAUTH2 as {account}, with a valid certificate ({tls})."
                    ),
                    None,
                )
            }
            Err(GmailLoginError::NoXoauth2) => (
                Status::Fail,
                "Answers, but does not offer AUTH XOAUTH2.".into(),
                Some("Use smtp.gmail.com with port 587 (STARTTLS) or 465 (SSL/TLS)."),
            ),
            Err(GmailLoginError::Rejected { reason, .. }) => (
                Status::Fail,
                format!("Reconnect needed: {reason}."),
                Some("Open the server and click \"Connect your Gmail account\" again."),
            ),
            Err(GmailLoginError::Token(e)) => (
                Status::Warn,
                e.to_string(),
                Some("Run the check again in a minute."),
            ),
            Err(GmailLoginError::Smtp(e)) => (
                Status::Fail,
                e.to_string(),
                Some(
                    "Check the SMTP host, port and connection security; mailgate always verifies the certificate.",
                ),
            ),
        };
        check(&id, &title, status, detail, fix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domain(url: &str) -> Option<String> {
        authorized_domain(&url::Url::parse(url).unwrap())
    }

    #[test]
    fn authorized_domains_come_from_the_public_url() {
        assert_eq!(
            domain("https://mail.example.com").as_deref(),
            Some("example.com")
        );
        assert_eq!(
            domain("https://example.com/x").as_deref(),
            Some("example.com")
        );
        assert_eq!(
            domain("https://mail.example.co.uk").as_deref(),
            Some("example.co.uk")
        );
        assert_eq!(domain("http://127.0.0.1:8069"), None);
        assert_eq!(domain("http://localhost:8069"), None);
    }
}
