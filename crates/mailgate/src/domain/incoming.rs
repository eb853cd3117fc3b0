//! Incoming Mail Servers: a Gmail folder read over IMAP with the account's Google connection, and
//! where its mail goes. The form's rules, what a fetched message says of itself (the summary the
//! webhook and the API carry), and when a webhook that failed is tried again. No I/O.

use mail_parser::MimeHeaders;
use serde::Serialize;

use super::{EmailAddress, FieldErrors};
use crate::clock::Timestamp;

/// Polling, when the server offers no IDLE: Flectra's fetchmail cron runs every 5 minutes.
pub const DEFAULT_INTERVAL_MINUTES: i64 = 5;

/// An incoming server as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingServer {
    pub id: i64,
    pub name: String,
    /// The Gmail account: its Google connection is the one outgoing servers use.
    pub username: String,
    pub folder: String,
    pub interval_secs: i64,
    /// Set \Seen on a message once it is stored (off: mailgate leaves the mailbox as it was).
    pub mark_seen: bool,
    pub webhook_url: Option<String>,
    /// "Test & Confirm" passed: mailgate fetches it.
    pub confirmed: bool,
    pub uidvalidity: Option<i64>,
    pub last_uid: i64,
    pub status: IncomingStatus,
    pub status_at: Option<Timestamp>,
    pub last_fetch_at: Option<Timestamp>,
    pub updated_at: Timestamp,
}

/// How fetching last went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IncomingStatus {
    /// Never fetched.
    New,
    Ok,
    /// A failure that retrying may cure (the network, Gmail's connection cap), in words.
    Failing(String),
    /// The Google connection needs the admin: reconnecting resumes from the last UID.
    ReconnectNeeded(String),
}

impl IncomingStatus {
    pub fn code(&self) -> &'static str {
        match self {
            Self::New => "new",
            Self::Ok => "ok",
            Self::Failing(_) => "failing",
            Self::ReconnectNeeded(_) => "reconnect",
        }
    }

    pub fn from_row(code: &str, reason: Option<String>) -> Self {
        let reason = reason.unwrap_or_default();
        match code {
            "ok" => Self::Ok,
            "failing" => Self::Failing(reason),
            "reconnect" => Self::ReconnectNeeded(reason),
            _ => Self::New,
        }
    }

    pub fn reason(&self) -> Option<&str> {
        match self {
            Self::Failing(r) | Self::ReconnectNeeded(r) => Some(r),
            Self::New | Self::Ok => None,
        }
    }

    /// The words the page shows.
    pub fn label(&self) -> String {
        match self {
            Self::New => "Not fetched yet".into(),
            Self::Ok => "Fetching".into(),
            Self::Failing(reason) => format!("Failing: {reason}"),
            Self::ReconnectNeeded(reason) => format!("Reconnect needed: {reason}"),
        }
    }
}

/// The form, as typed.
#[derive(Debug, Clone, Default)]
pub struct IncomingDraft {
    pub name: String,
    pub username: String,
    pub folder: String,
    /// Minutes between polls when IDLE is not offered.
    pub interval: String,
    pub mark_seen: bool,
    pub webhook_url: String,
}

/// A draft that passed every rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidIncoming {
    pub name: String,
    pub username: String,
    pub folder: String,
    pub interval_secs: i64,
    pub mark_seen: bool,
    pub webhook_url: Option<String>,
}

impl IncomingDraft {
    /// Checks every field and reports every problem at once.
    pub fn validate(&self) -> Result<ValidIncoming, FieldErrors> {
        let mut errors = FieldErrors::default();
        let name = self.name.trim().to_string();
        if name.is_empty() {
            errors.add("name", "Give this server a Name, e.g. \"Support inbox\".");
        } else if name.chars().count() > 100 {
            errors.add("name", "Keep the Name under 100 characters.");
        }
        let username = match EmailAddress::parse(&self.username) {
            Ok(address) => address.as_str().to_string(),
            Err(e) => {
                errors.add(
                    "username",
                    format!("Enter the Gmail address to read, e.g. you@gmail.com: {e}."),
                );
                String::new()
            }
        };
        let folder = match self.folder.trim() {
            "" => "INBOX".to_string(),
            folder => folder.to_string(),
        };
        if let Some(problem) = folder_problem(&folder) {
            errors.add("folder", problem);
        }
        let interval_secs = match self.interval.trim() {
            "" => DEFAULT_INTERVAL_MINUTES * 60,
            text => match text.parse::<i64>() {
                Ok(minutes) if (1..=1440).contains(&minutes) => minutes * 60,
                _ => {
                    errors.add(
                        "interval",
                        format!("`{text}`: give the minutes between fetches, from 1 to 1440."),
                    );
                    0
                }
            },
        };
        let webhook_url = match self.webhook_url.trim() {
            "" => None,
            url => {
                if let Some(problem) = webhook_problem(url) {
                    errors.add("webhook_url", problem);
                }
                Some(url.to_string())
            }
        };
        errors.into_result()?;
        Ok(ValidIncoming {
            name,
            username,
            folder,
            interval_secs,
            mark_seen: self.mark_seen,
            webhook_url,
        })
    }
}

/// Why a folder name cannot be used, if it cannot.
fn folder_problem(folder: &str) -> Option<String> {
    if folder.chars().count() > 200 {
        return Some("Keep the folder name under 200 characters.".into());
    }
    if folder
        .chars()
        .any(|c| c.is_ascii_control() || c == '"' || c == '\\')
    {
        return Some(format!(
            "`{}`: a folder name cannot hold quotes, backslashes or control characters.",
            folder.escape_default()
        ));
    }
    None
}

/// Why a webhook URL cannot be used, if it cannot.
fn webhook_problem(url: &str) -> Option<String> {
    let Ok(parsed) = url::Url::parse(url) else {
        return Some(format!(
            "`{url}` is not a URL; give one such as https://app.example.com/mailgate/inbound."
        ));
    };
    if !matches!(parsed.scheme(), "https" | "http") || parsed.host_str().is_none() {
        return Some(format!(
            "`{url}`: the webhook must be an http:// or https:// URL with a host."
        ));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Some(
            "Put no user or password in the webhook URL: requests are signed with the webhook secret instead."
                .into(),
        );
    }
    None
}

/// What a fetched message says of itself: the fields the webhook and the API carry beside the
/// raw bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Summary {
    pub message_id: Option<String>,
    pub from: String,
    pub to: String,
    pub cc: String,
    pub subject: String,
    /// The Date header, as written.
    pub date: Option<String>,
    pub in_reply_to: Option<String>,
    pub references: Vec<String>,
    pub attachments: Vec<AttachmentInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct AttachmentInfo {
    pub filename: Option<String>,
    pub content_type: String,
    pub size: usize,
}

/// Reads what a message says of itself. Anything mail-parser cannot make sense of is left
/// empty: a message is stored whatever its headers hold.
pub fn summarize(raw: &[u8]) -> Summary {
    let Some(message) = mail_parser::MessageParser::default().parse(raw) else {
        return Summary::default();
    };
    let addresses = |list: Option<&mail_parser::Address<'_>>| -> String {
        list.map(|a| {
            a.iter()
                .map(|addr| match (&addr.name, &addr.address) {
                    (Some(name), Some(address)) => format!("{name} <{address}>"),
                    (None, Some(address)) => address.to_string(),
                    (Some(name), None) => name.to_string(),
                    (None, None) => String::new(),
                })
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
    };
    let ids = |value: &mail_parser::HeaderValue<'_>| -> Vec<String> {
        match value {
            mail_parser::HeaderValue::Text(id) => vec![format!("<{id}>")],
            mail_parser::HeaderValue::TextList(ids) => {
                ids.iter().map(|id| format!("<{id}>")).collect()
            }
            _ => Vec::new(),
        }
    };
    let attachments = message
        .attachments()
        .map(|part| AttachmentInfo {
            filename: part.attachment_name().map(str::to_string),
            content_type: part
                .content_type()
                .map(|ct| match ct.subtype() {
                    Some(sub) => format!("{}/{sub}", ct.ctype()),
                    None => ct.ctype().to_string(),
                })
                .unwrap_or_else(|| "application/octet-stream".into()),
            size: part.contents().len(),
        })
        .collect();
    Summary {
        message_id: message.message_id().map(|id| format!("<{id}>")),
        from: addresses(message.from()),
        to: addresses(message.to()),
        cc: addresses(message.cc()),
        subject: message.subject().unwrap_or_default().to_string(),
        date: message.date().map(|d| d.to_rfc3339()),
        in_reply_to: ids(message.in_reply_to()).into_iter().next(),
        references: ids(message.references()),
        attachments,
    }
}

/// Seconds before a webhook that failed `attempts` times is tried again: 2 s doubling, at most
/// 10 minutes. It is tried until it answers 2xx; the messages behind it wait, so they arrive in
/// order.
pub fn webhook_backoff(attempts: i64) -> i64 {
    let doublings = u32::try_from(attempts.clamp(1, 20) - 1).unwrap_or(0);
    2_i64.saturating_mul(1 << doublings).min(600)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft() -> IncomingDraft {
        IncomingDraft {
            name: "Support".into(),
            username: "Alice@Gmail.com".into(),
            folder: String::new(),
            interval: String::new(),
            mark_seen: false,
            webhook_url: "https://app.example.com/inbound".into(),
        }
    }

    #[test]
    fn a_plain_draft_gets_the_defaults() {
        let valid = draft().validate().unwrap();
        assert_eq!(valid.username, "alice@gmail.com");
        assert_eq!(valid.folder, "INBOX");
        assert_eq!(valid.interval_secs, 300);
        assert_eq!(
            valid.webhook_url.as_deref(),
            Some("https://app.example.com/inbound")
        );
    }

    #[test]
    fn every_problem_is_named_at_once() {
        let bad = IncomingDraft {
            name: " ".into(),
            username: "not an address".into(),
            folder: "Spam\"\r\n".into(),
            interval: "0".into(),
            mark_seen: true,
            webhook_url: "ftp://x".into(),
        };
        let errors = bad.validate().unwrap_err();
        for field in ["name", "username", "folder", "interval", "webhook_url"] {
            assert!(errors.get(field).is_some(), "{field}: {errors}");
        }
        let with_password = IncomingDraft {
            webhook_url: "https://u:p@app.example.com/in".into(),
            ..draft()
        };
        assert!(
            with_password
                .validate()
                .unwrap_err()
                .get("webhook_url")
                .unwrap()
                .contains("signed")
        );
        // Labels beyond ASCII are fine: the IMAP adapter names them in modified UTF-7.
        let accented = IncomingDraft {
            folder: "Reçus".into(),
            ..draft()
        };
        assert!(accented.validate().is_ok());
        let gmail_folder = IncomingDraft {
            folder: "[Gmail]/All Mail".into(),
            ..draft()
        };
        assert_eq!(gmail_folder.validate().unwrap().folder, "[Gmail]/All Mail");
    }

    #[test]
    fn a_summary_names_the_people_the_thread_and_the_attachments() {
        let raw = b"From: Bob Example <bob@example.com>\r\nTo: alice@gmail.com, Carol <carol@example.com>\r\n\
Cc: dave@example.com\r\nSubject: =?utf-8?q?R=C3=A9union?=\r\nDate: Sun, 6 Dec 2026 10:00:00 +0000\r\n\
Message-ID: <m2@example.com>\r\nIn-Reply-To: <m1@example.com>\r\nReferences: <m0@example.com> <m1@example.com>\r\n\
MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nSee attached.\r\n\
--b\r\nContent-Type: application/pdf; name=report.pdf\r\nContent-Disposition: attachment; filename=report.pdf\r\n\
Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--b--\r\n";
        let summary = summarize(raw);
        assert_eq!(summary.from, "Bob Example <bob@example.com>");
        assert_eq!(summary.to, "alice@gmail.com, Carol <carol@example.com>");
        assert_eq!(summary.cc, "dave@example.com");
        assert_eq!(summary.subject, "Réunion");
        assert_eq!(summary.message_id.as_deref(), Some("<m2@example.com>"));
        assert_eq!(summary.in_reply_to.as_deref(), Some("<m1@example.com>"));
        assert_eq!(
            summary.references,
            vec!["<m0@example.com>", "<m1@example.com>"]
        );
        assert_eq!(summary.date.as_deref(), Some("2026-12-06T10:00:00Z"));
        assert_eq!(
            summary.attachments,
            vec![AttachmentInfo {
                filename: Some("report.pdf".into()),
                content_type: "application/pdf".into(),
                size: 9,
            }]
        );
    }

    #[test]
    fn garbage_still_summarizes() {
        let summary = summarize(b"\x00\xff not a message");
        assert!(summary.message_id.is_none());
    }

    #[test]
    fn webhooks_back_off_to_ten_minutes() {
        assert_eq!(webhook_backoff(1), 2);
        assert_eq!(webhook_backoff(2), 4);
        assert_eq!(webhook_backoff(9), 512);
        assert_eq!(webhook_backoff(10), 600);
        assert_eq!(webhook_backoff(1000), 600);
    }
}
