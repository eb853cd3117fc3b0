//! SMTP replies and what they mean to the person reading them.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Where in an SMTP session something happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Token,
    Connect,
    Tls,
    Greeting,
    Ehlo,
    StartTls,
    Auth,
    MailFrom,
    RcptTo,
    Data,
    DataEnd,
    Quit,
}

impl Stage {
    pub fn label(self) -> &'static str {
        match self {
            Stage::Token => "getting an access token from Google",
            Stage::Connect => "connecting",
            Stage::Tls => "the TLS handshake",
            Stage::Greeting => "the server greeting",
            Stage::Ehlo => "EHLO",
            Stage::StartTls => "STARTTLS",
            Stage::Auth => "AUTH XOAUTH2",
            Stage::MailFrom => "MAIL FROM",
            Stage::RcptTo => "RCPT TO",
            Stage::Data => "DATA",
            Stage::DataEnd => "the end of the message",
            Stage::Quit => "QUIT",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// One SMTP reply: the code, the lines' text (code and separator removed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    pub code: u16,
    pub lines: Vec<String>,
}

impl Reply {
    /// `5.7.8` from `535 5.7.8 ...`, when the server uses enhanced status codes.
    pub fn enhanced(&self) -> Option<&str> {
        let first = self.lines.first()?.split(' ').next()?;
        let parts: Vec<&str> = first.split('.').collect();
        (parts.len() == 3
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit())))
        .then_some(first)
    }

    pub fn is_positive(&self) -> bool {
        (200..400).contains(&self.code)
    }

    pub fn is_temporary(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// The reply as the server sent it, lines joined with newlines.
    pub fn text(&self) -> String {
        self.lines
            .iter()
            .map(|l| format!("{} {l}", self.code))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The one-sentence fix for a refusal at `stage`, where mailgate knows one.
    pub fn advice(&self, stage: Stage) -> Option<&'static str> {
        let enhanced = self.enhanced().unwrap_or_default();
        Some(match (self.code, enhanced, stage) {
            (535, _, _) | (534, _, _) => {
                "Google refused the access token for this Username. Click \"Connect your Gmail account\" again, signing in as the Username; if it still fails, make sure the Username is the Google account you authorize."
            }
            (530, "5.7.0", _) => {
                "The server wants STARTTLS before anything else: set Connection security to STARTTLS (port 587)."
            }
            (530, _, _) => {
                "The server wants authentication first: for Gmail, choose \"Gmail OAuth\" and connect the account."
            }
            (421, _, _) | (450, _, _) | (451, _, _) => {
                "Gmail is slowing this account down for now (a temporary refusal). Wait a few minutes and test again; mailgate's queue retries such replies by itself."
            }
            (454, _, _) => {
                "Google saw too many logins for this account and paused them. Wait a few minutes before testing again."
            }
            (550, "5.4.5", _) => {
                "The account hit Gmail's daily sending limit (500 messages for Gmail, 2,000 for Workspace). It frees up within 24 hours."
            }
            (552, "5.2.3", _) => {
                "The message is larger than Gmail accepts (about 25 MB of attachments)."
            }
            (504, _, Stage::Auth) => {
                "This server does not offer XOAUTH2: check the SMTP host (smtp.gmail.com) and port."
            }
            (_, _, Stage::RcptTo) => {
                "The server refused the test recipient: check \"Test recipient\" in Settings."
            }
            (_, _, Stage::MailFrom) => {
                "The server refused the sender: for Gmail, the Username must be the account itself or one of its \"Send mail as\" addresses."
            }
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(code: u16, lines: &[&str]) -> Reply {
        Reply {
            code,
            lines: lines.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn enhanced_codes_and_text() {
        let r = reply(
            535,
            &[
                "5.7.8 Username and Password not accepted. Learn more at",
                "5.7.8 https://support.google.com/mail/?p=BadCredentials x - gsmtp",
            ],
        );
        assert_eq!(r.enhanced(), Some("5.7.8"));
        assert_eq!(
            r.text(),
            "535 5.7.8 Username and Password not accepted. Learn more at\n535 5.7.8 https://support.google.com/mail/?p=BadCredentials x - gsmtp"
        );
        assert!(
            r.advice(Stage::Auth)
                .unwrap()
                .contains("Connect your Gmail account")
        );
        assert_eq!(reply(250, &["OK"]).enhanced(), None);
        assert!(
            reply(550, &["5.4.5 Daily user sending quota exceeded."])
                .advice(Stage::MailFrom)
                .unwrap()
                .contains("daily sending limit")
        );
        assert!(reply(451, &["4.4.2 Timeout"]).is_temporary());
    }
}
