//! Outgoing mail servers: what an admin may type, and the rules a Gmail server must follow
//! (Flectra 16's: no password, TLS, a Username that is an email address).

use std::fmt;

use secrecy::SecretString;

use super::email::{EmailAddress, is_domain};
use crate::clock::Timestamp;
use crate::config::HostPort;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    Gmail,
    Password,
    None,
}

impl AuthMethod {
    pub const ALL: [AuthMethod; 3] = [AuthMethod::Gmail, AuthMethod::Password, AuthMethod::None];

    pub fn code(self) -> &'static str {
        match self {
            AuthMethod::Gmail => "gmail",
            AuthMethod::Password => "password",
            AuthMethod::None => "none",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            AuthMethod::Gmail => "Gmail OAuth",
            AuthMethod::Password => "Username and password",
            AuthMethod::None => "None",
        }
    }

    pub fn parse(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.code() == code)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    StartTls,
    Tls,
    None,
}

impl Security {
    pub const ALL: [Security; 3] = [Security::StartTls, Security::Tls, Security::None];

    pub fn code(self) -> &'static str {
        match self {
            Security::StartTls => "starttls",
            Security::Tls => "tls",
            Security::None => "none",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Security::StartTls => "STARTTLS",
            Security::Tls => "SSL/TLS",
            Security::None => "None (unencrypted)",
        }
    }

    pub fn parse(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.code() == code)
    }
}

/// What to do with a message whose From is neither the Gmail account nor one of its aliases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FromPolicy {
    /// Send as the account, keeping the author in Reply-To (what Gmail would do anyway, but said).
    Rewrite,
    /// Refuse the message at submission.
    Refuse,
}

impl FromPolicy {
    pub const ALL: [FromPolicy; 2] = [FromPolicy::Rewrite, FromPolicy::Refuse];

    pub fn code(self) -> &'static str {
        match self {
            FromPolicy::Rewrite => "rewrite",
            FromPolicy::Refuse => "refuse",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            FromPolicy::Rewrite => "Send as the account, author in Reply-To",
            FromPolicy::Refuse => "Refuse the message",
        }
    }

    pub fn parse(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.code() == code)
    }
}

/// A saved outgoing server.
#[derive(Debug, Clone)]
pub struct MailServer {
    pub id: i64,
    pub name: String,
    pub auth: AuthMethod,
    pub username: Option<String>,
    pub has_password: bool,
    pub host: String,
    pub port: u16,
    pub security: Security,
    pub from_filter: Option<String>,
    pub priority: i64,
    /// Gmail "Send mail as" addresses besides the Username.
    pub aliases: Vec<String>,
    pub from_policy: FromPolicy,
    /// Messages per rolling 24 h; 0 means Gmail's limit for the account kind.
    pub daily_limit: i64,
    pub last_test: Option<TestOutcome>,
}

/// Flectra's `_find_mail_server`, with one step more: the server whose From filter is the sender's
/// address; else a Gmail server that sends as the sender (its account or an alias), so Alice's mail
/// leaves through Alice's Gmail; else a From filter equal to the sender's domain; else a server
/// without filter. `servers` come in priority order.
pub fn route<'a>(servers: &'a [MailServer], from: &EmailAddress) -> Option<&'a MailServer> {
    let filter_is = |value: &str| {
        servers
            .iter()
            .find(move |s| s.from_filter.as_deref() == Some(value))
    };
    filter_is(from.as_str())
        .or_else(|| {
            servers.iter().find(|s| {
                s.auth == AuthMethod::Gmail && s.from_filter.is_none() && s.sends_as(from)
            })
        })
        .or_else(|| filter_is(from.domain()))
        .or_else(|| servers.iter().find(|s| s.from_filter.is_none()))
}

impl MailServer {
    /// The Gmail account and the addresses Gmail lets it send as.
    pub fn sends_as(&self, address: &EmailAddress) -> bool {
        self.username.as_deref() == Some(address.as_str())
            || self.aliases.iter().any(|a| a == address.as_str())
    }

    /// Where sessions of this server go. A Gmail OAuth server always goes to the configured
    /// Gmail endpoint, whatever its row says: its token opens the whole mailbox (scope
    /// `https://mail.google.com/`) and must reach Google and nothing else.
    pub fn endpoint(&self, gmail: &HostPort) -> (HostPort, Security) {
        match self.auth {
            AuthMethod::Gmail => (gmail.clone(), gmail_security(gmail.port)),
            AuthMethod::Password | AuthMethod::None => (
                HostPort {
                    host: self.host.clone(),
                    port: self.port,
                },
                self.security,
            ),
        }
    }
}

/// Gmail's submission ports: 465 speaks TLS from the first byte, 587 (or any other) upgrades with
/// STARTTLS.
pub fn gmail_security(port: u16) -> Security {
    if port == 465 {
        Security::Tls
    } else {
        Security::StartTls
    }
}

#[derive(Debug, Clone)]
pub struct TestOutcome {
    pub at: Timestamp,
    pub ok: bool,
    /// The report as JSON (see app::test_connection::TestReport).
    pub report: String,
}

/// What the server form sends: text, not yet trusted.
#[derive(Debug, Clone, Default)]
pub struct ServerDraft {
    pub name: String,
    pub auth: String,
    pub username: String,
    /// `None`: keep the stored password.
    pub password: Option<SecretString>,
    pub host: String,
    pub port: String,
    pub security: String,
    pub from_filter: String,
    pub priority: String,
    /// Addresses separated by commas, spaces or lines.
    pub aliases: String,
    pub from_policy: String,
    pub daily_limit: String,
}

/// A draft that passed every rule.
#[derive(Debug, Clone)]
pub struct ValidServer {
    pub name: String,
    pub auth: AuthMethod,
    pub username: Option<String>,
    pub password: Option<SecretString>,
    pub host: String,
    pub port: u16,
    pub security: Security,
    pub from_filter: Option<String>,
    pub priority: i64,
    pub aliases: Vec<String>,
    pub from_policy: FromPolicy,
    pub daily_limit: i64,
}

/// Messages per form field, in the order the form shows them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldErrors(pub Vec<(&'static str, String)>);

impl FieldErrors {
    pub fn add(&mut self, field: &'static str, message: impl Into<String>) {
        self.0.push((field, message.into()));
    }

    pub fn get(&self, field: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(f, _)| *f == field)
            .map(|(_, m)| m.as_str())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Ok when nothing was added.
    pub fn into_result(self) -> Result<(), Self> {
        if self.is_empty() { Ok(()) } else { Err(self) }
    }
}

impl fmt::Display for FieldErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|(k, m)| format!("{k}: {m}")).collect();
        f.write_str(&parts.join("; "))
    }
}

impl ServerDraft {
    /// Checks every field and reports every problem at once. `current` is the saved server when
    /// this changes one: a blank password field keeps its password, unless the host, port or
    /// security changed (a saved password goes only where it was typed for). A Gmail server's
    /// endpoint is `gmail`, the configured one: the form's host, port and security do not apply.
    pub fn validate(
        &self,
        current: Option<&MailServer>,
        gmail: &HostPort,
    ) -> Result<ValidServer, FieldErrors> {
        let mut errors = FieldErrors::default();
        let name = self.name.trim().to_string();
        if name.is_empty() {
            errors.add(
                "name",
                "Give this server a Description, e.g. \"Gmail (sales)\".",
            );
        } else if name.chars().count() > 100 {
            errors.add("name", "Keep the Description under 100 characters.");
        }
        let auth = AuthMethod::parse(self.auth.trim()).unwrap_or_else(|| {
            errors.add("auth", "Choose how to authenticate.");
            AuthMethod::None
        });
        let gmail_oauth = auth == AuthMethod::Gmail;
        let security = match Security::parse(self.security.trim()) {
            _ if gmail_oauth => gmail_security(gmail.port),
            Some(security) => security,
            None => {
                errors.add("security", "Choose a connection security.");
                Security::StartTls
            }
        };
        let host = if gmail_oauth {
            gmail.host.clone()
        } else {
            self.host.trim().to_ascii_lowercase()
        };
        if host.is_empty() {
            errors.add("host", "Enter the SMTP host, e.g. smtp.gmail.com.");
        } else if !(is_domain(&host)
            || host == "localhost"
            || host.parse::<std::net::IpAddr>().is_ok())
        {
            errors.add(
                "host",
                format!("`{host}` is not a host name or an IP address."),
            );
        }
        let port = match self.port.trim().parse::<u16>() {
            _ if gmail_oauth => gmail.port,
            Ok(p) if p > 0 => p,
            _ => {
                errors.add(
                    "port",
                    format!("`{}` is not a port (1-65535).", self.port.trim()),
                );
                0
            }
        };
        let priority = match self.priority.trim() {
            "" => 10,
            text => text.parse::<i64>().unwrap_or_else(|_| {
                errors.add("priority", format!("`{text}` is not a whole number."));
                10
            }),
        };
        let from_filter = match self.from_filter.trim() {
            "" => None,
            text if EmailAddress::parse(text).is_ok() => Some(text.to_ascii_lowercase()),
            text if is_domain(text) => Some(text.to_ascii_lowercase()),
            text => {
                errors.add(
                    "from_filter",
                    format!("`{text}` is neither an email address nor a domain."),
                );
                None
            }
        };
        let mut aliases = Vec::new();
        for alias in self
            .aliases
            .split([',', ' ', '\n', '\r', ';'])
            .filter(|a| !a.is_empty())
        {
            match EmailAddress::parse(alias) {
                Ok(a) if !aliases.contains(&a.to_string()) => aliases.push(a.to_string()),
                Ok(_) => {}
                Err(e) => errors.add("aliases", e.to_string()),
            }
        }
        let from_policy = match self.from_policy.trim() {
            "" => FromPolicy::Rewrite,
            code => FromPolicy::parse(code).unwrap_or_else(|| {
                errors.add("from_policy", "Choose what to do with other senders.");
                FromPolicy::Rewrite
            }),
        };
        let daily_limit = match self.daily_limit.trim() {
            "" => 0,
            text => match text.parse::<i64>() {
                Ok(n) if n >= 0 => n,
                _ => {
                    errors.add(
                        "daily_limit",
                        format!("`{text}` is not a number of messages (0 or more)."),
                    );
                    0
                }
            },
        };
        let username = self.username.trim().to_string();
        let new_password = self
            .password
            .as_ref()
            .filter(|p| !secrecy::ExposeSecret::expose_secret(*p).is_empty());
        match auth {
            AuthMethod::Gmail => {
                match EmailAddress::parse(&username) {
                    Ok(_) => {}
                    Err(_) if username.is_empty() => errors.add(
                        "username",
                        "Please fill the \"Username\" field with your Gmail username (your email address). It must be the Google account you will connect.",
                    ),
                    Err(e) => errors.add("username", format!("{e}: a Gmail server needs the Gmail address it sends as.")),
                }
                if new_password.is_some() {
                    errors.add(
                        "password",
                        format!("Please leave the password field empty for Gmail mail server “{name}”. The OAuth process does not require it."),
                    );
                }
            }
            AuthMethod::Password => {
                if username.is_empty() {
                    errors.add("username", "Enter the username to log in with.");
                }
                let stored = current.filter(|c| c.has_password && c.auth == AuthMethod::Password);
                let moved = stored
                    .is_some_and(|c| c.host != host || c.port != port || c.security != security);
                if new_password.is_none() && moved {
                    errors.add(
                        "password",
                        "Type the password again: the host, port or connection security changed, and mailgate sends a saved password only to the server it was saved for.",
                    );
                } else if new_password.is_none() && stored.is_none() {
                    errors.add("password", "Enter the password to log in with.");
                }
            }
            AuthMethod::None => {}
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(ValidServer {
            name,
            auth,
            username: match (auth, username.is_empty()) {
                (_, true) | (AuthMethod::None, _) => None,
                (AuthMethod::Gmail, false) => Some(username.to_ascii_lowercase()),
                (AuthMethod::Password, false) => Some(username),
            },
            password: if auth == AuthMethod::Password {
                new_password.cloned()
            } else {
                None
            },
            host,
            port,
            security,
            from_filter,
            priority,
            aliases,
            from_policy,
            daily_limit,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(id: i64, filter: Option<&str>) -> MailServer {
        MailServer {
            id,
            name: format!("s{id}"),
            auth: AuthMethod::None,
            username: None,
            has_password: false,
            host: "mx.example.com".into(),
            port: 25,
            security: Security::StartTls,
            from_filter: filter.map(str::to_string),
            priority: id,
            aliases: Vec::new(),
            from_policy: FromPolicy::Rewrite,
            daily_limit: 0,
            last_test: None,
        }
    }

    #[test]
    fn routing_prefers_the_exact_address_then_the_domain_then_no_filter() {
        let servers = [
            server(1, None),
            server(2, Some("example.com")),
            server(3, Some("boss@example.com")),
        ];
        let route_of = |a: &str| route(&servers, &EmailAddress::parse(a).unwrap()).map(|s| s.id);
        assert_eq!(route_of("boss@example.com"), Some(3));
        assert_eq!(route_of("staff@example.com"), Some(2));
        assert_eq!(route_of("someone@other.example"), Some(1));
        assert_eq!(
            route(
                &servers[1..],
                &EmailAddress::parse("x@other.example").unwrap()
            )
            .map(|s| s.id),
            None
        );
    }

    #[test]
    fn a_gmail_server_takes_its_own_account_and_aliases_before_any_default() {
        let gmail = |id: i64, user: &str| MailServer {
            auth: AuthMethod::Gmail,
            username: Some(user.into()),
            aliases: vec![format!(
                "sales@{}",
                user.split('@').nth(1).unwrap_or_default()
            )],
            ..server(id, None)
        };
        let servers = [
            gmail(1, "bob@example.com"),
            gmail(2, "alice@gmail.com"),
            server(3, Some("gmail.com")),
        ];
        let route_of = |a: &str| route(&servers, &EmailAddress::parse(a).unwrap()).map(|s| s.id);
        assert_eq!(
            route_of("alice@gmail.com"),
            Some(2),
            "not bob's, first in order"
        );
        assert_eq!(route_of("sales@gmail.com"), Some(2), "an alias");
        assert_eq!(route_of("carol@gmail.com"), Some(3), "the domain filter");
        assert_eq!(
            route_of("dave@other.example"),
            Some(1),
            "the first without filter"
        );
    }

    fn gmail() -> ServerDraft {
        ServerDraft {
            name: "Gmail".into(),
            auth: "gmail".into(),
            username: "Alice@Gmail.com".into(),
            password: None,
            host: "smtp.gmail.com".into(),
            port: "587".into(),
            security: "starttls".into(),
            from_filter: String::new(),
            priority: "10".into(),
            ..Default::default()
        }
    }

    fn gmail_endpoint() -> HostPort {
        HostPort {
            host: "smtp.gmail.com".into(),
            port: 587,
        }
    }

    #[test]
    fn a_proper_gmail_server_passes_and_is_normalised() {
        let valid = gmail().validate(None, &gmail_endpoint()).unwrap();
        assert_eq!(valid.username.as_deref(), Some("alice@gmail.com"));
        assert_eq!(valid.port, 587);
    }

    /// The form cannot point a Gmail server elsewhere: the account's token would go there.
    #[test]
    fn a_gmail_server_always_uses_the_configured_gmail_endpoint() {
        let mut draft = gmail();
        draft.host = "smtp.attacker.example".into();
        draft.port = "2525".into();
        draft.security = "none".into();
        let valid = draft.validate(None, &gmail_endpoint()).unwrap();
        assert_eq!(
            (valid.host.as_str(), valid.port, valid.security),
            ("smtp.gmail.com", 587, Security::StartTls)
        );
        let implicit = HostPort {
            host: "smtp.gmail.com".into(),
            port: 465,
        };
        assert_eq!(
            draft.validate(None, &implicit).unwrap().security,
            Security::Tls
        );
        let saved = MailServer {
            auth: AuthMethod::Gmail,
            username: Some("alice@gmail.com".into()),
            host: "smtp.attacker.example".into(),
            port: 25,
            security: Security::None,
            ..server(1, None)
        };
        let (endpoint, security) = saved.endpoint(&gmail_endpoint());
        assert_eq!(
            (endpoint.to_string(), security),
            ("smtp.gmail.com:587".to_string(), Security::StartTls),
            "a row written before this rule is not followed either"
        );
    }

    #[test]
    fn gmail_rules_refuse_a_password_and_a_bad_username() {
        let mut draft = gmail();
        draft.password = Some(SecretString::from("hunter2"));
        draft.username = "alice".into();
        let errors = draft.validate(None, &gmail_endpoint()).unwrap_err();
        assert!(
            errors
                .get("password")
                .unwrap()
                .contains("leave the password field empty")
        );
        assert!(
            errors
                .get("username")
                .unwrap()
                .contains("`alice` is not an email address")
        );
        let mut draft = gmail();
        draft.username = String::new();
        assert!(
            draft
                .validate(None, &gmail_endpoint())
                .unwrap_err()
                .get("username")
                .unwrap()
                .contains("Please fill the \"Username\" field")
        );
    }

    #[test]
    fn every_bad_field_is_named_at_once() {
        let draft = ServerDraft {
            name: " ".into(),
            auth: "magic".into(),
            host: "bad host!".into(),
            port: "70000".into(),
            security: "tls".into(),
            from_filter: "not a filter".into(),
            priority: "high".into(),
            ..Default::default()
        };
        let errors = draft.validate(None, &gmail_endpoint()).unwrap_err();
        let fields: Vec<&str> = errors.0.iter().map(|(f, _)| *f).collect();
        assert_eq!(
            fields,
            ["name", "auth", "host", "port", "priority", "from_filter"]
        );
    }

    #[test]
    fn a_saved_password_is_kept_only_while_the_server_stays_where_it_was() {
        let mut draft = gmail();
        draft.auth = "password".into();
        draft.username = "relay-user".into();
        draft.host = "smtp.example.com".into();
        let endpoint = gmail_endpoint();
        assert!(
            draft
                .validate(None, &endpoint)
                .unwrap_err()
                .get("password")
                .is_some()
        );
        let saved = MailServer {
            auth: AuthMethod::Password,
            username: Some("relay-user".into()),
            has_password: true,
            host: "smtp.example.com".into(),
            port: 587,
            security: Security::StartTls,
            ..server(1, None)
        };
        assert!(draft.validate(Some(&saved), &endpoint).is_ok());
        for change in [
            |d: &mut ServerDraft| d.host = "smtp.elsewhere.example".into(),
            |d: &mut ServerDraft| d.port = "2525".into(),
            |d: &mut ServerDraft| d.security = "none".into(),
        ] {
            let mut moved = draft.clone();
            change(&mut moved);
            let errors = moved.validate(Some(&saved), &endpoint).unwrap_err();
            assert!(
                errors
                    .get("password")
                    .unwrap()
                    .contains("Type the password again"),
                "{errors}"
            );
            moved.password = Some(SecretString::from("typed again"));
            assert!(moved.validate(Some(&saved), &endpoint).is_ok());
        }
    }
}
