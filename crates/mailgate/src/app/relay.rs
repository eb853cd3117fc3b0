//! The relay's use cases: its credentials ("app passwords": a name as the SMTP username, a
//! generated password shown once, the senders it may use), logins, the messages it takes, and
//! what its listeners report.

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::outbox::{Accepted, Origin, SubmitError};
use super::{App, AppError};
use crate::crypto::{constant_time_eq, random_token};
use crate::domain::bounce::{FailedDelivery, delivery_status_notification};
use crate::domain::email::is_domain;
use crate::domain::message::Edge;
use crate::domain::{EmailAddress, FieldErrors};
use crate::store::NewMessage;
use crate::store::RelayCredentialRecord;

const PREFIX: &str = "mgr_";
/// What the keyed hash is bound to, so no other signature of mailgate's can pass for one.
const PURPOSE: &str = "relay-credential";

/// A logged-in relay client.
#[derive(Debug, Clone)]
pub struct RelayLogin {
    pub name: String,
    senders: Vec<String>,
}

impl RelayLogin {
    /// Whether this credential may send as `address`: it lists no senders (any address a server
    /// sends as), or the address, or its `@domain`.
    pub fn may_send_as(&self, address: &EmailAddress) -> bool {
        self.senders.is_empty()
            || self
                .senders
                .iter()
                .any(|allowed| match allowed.strip_prefix('@') {
                    Some(domain) => address.domain().eq_ignore_ascii_case(domain),
                    None => address.as_str().eq_ignore_ascii_case(allowed),
                })
    }
}

/// The senders field as typed: addresses or `@domain`s separated by commas, spaces or lines.
pub fn parse_senders(text: &str) -> Result<Vec<String>, String> {
    text.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(|item| match item.strip_prefix('@') {
            Some(domain) if is_domain(domain) => Ok(format!("@{}", domain.to_ascii_lowercase())),
            Some(_) => Err(format!(
                "“{item}” is not a domain (write it as @example.com)"
            )),
            None => EmailAddress::parse(item)
                .map(|a| a.as_str().to_ascii_lowercase())
                .map_err(|e| format!("“{item}”: {e}")),
        })
        .collect()
}

/// A message the relay took, as its client gave it.
pub struct Relayed<'a> {
    /// MAIL FROM; empty for the null sender `<>`.
    pub mail_from: &'a str,
    pub recipients: &'a [String],
    pub raw: &'a [u8],
    /// The name the client gave in EHLO.
    pub client_name: &'a str,
    pub peer: IpAddr,
    pub tls: bool,
    pub login: Option<&'a RelayLogin>,
}

/// What the relay's listeners are, once bound.
#[derive(Debug, Clone)]
pub struct RelayListening {
    pub addr: Option<std::net::SocketAddr>,
    pub tls_addr: Option<std::net::SocketAddr>,
    pub certificate: crate::relay::certificate::CertificateInfo,
}

/// The relay as the Overview and the doctor see it.
#[derive(Debug, Default)]
pub struct RelayStatus {
    pub listening: std::sync::OnceLock<RelayListening>,
    sessions: AtomicUsize,
}

impl RelayStatus {
    pub fn sessions(&self) -> usize {
        self.sessions.load(Ordering::Relaxed)
    }

    /// Counts a session until the guard is dropped.
    pub fn session(&self) -> impl Drop + '_ {
        struct Open<'a>(&'a AtomicUsize);
        impl Drop for Open<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::Relaxed);
            }
        }
        self.sessions.fetch_add(1, Ordering::Relaxed);
        Open(&self.sessions)
    }
}

/// The header From's address, when there is exactly one (composing checks the rest).
fn header_from(raw: &[u8]) -> Option<EmailAddress> {
    let parsed = mail_parser::MessageParser::new().parse_headers(raw)?;
    let address = parsed.from()?.first()?.address.as_deref()?.to_string();
    EmailAddress::parse(&address).ok()
}

/// The trace field the relay puts on top (RFC 5321 §4.4), with the RFC 3848 protocol name.
fn received(m: &Relayed<'_>, hostname: &str, id: &str, now: i64) -> Vec<u8> {
    let protocol = match (m.tls, m.login.is_some()) {
        (false, false) => "ESMTP",
        (true, false) => "ESMTPS",
        (false, true) => "ESMTPA",
        (true, true) => "ESMTPSA",
    };
    // The EHLO name is the client's word: only its printable characters go in a header.
    let client: String = m
        .client_name
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(255)
        .collect();
    let client = if client.is_empty() {
        "unknown"
    } else {
        &client
    };
    let date = crate::clock::format_rfc5322(now);
    format!(
        "Received: from {client} ([{}])\r\n\tby {hostname} (mailgate) with {protocol} id {id};\r\n\t{date}\r\n",
        m.peer
    )
    .into_bytes()
}

impl App {
    /// Queues what the relay took, with its Received field; a permanent failure later is
    /// reported to MAIL FROM (unless it is `<>`).
    pub async fn submit_relayed(&self, m: Relayed<'_>) -> Result<Accepted, SubmitError> {
        let origin = Origin {
            edge: Edge::Relay,
            api_key_id: None,
            idempotency_key: None,
            bounce_to: Some(m.mail_from).filter(|f| !f.is_empty()),
        };
        // The header is parsed here only for a credential that lists its senders.
        if let Some(login) = m.login.filter(|l| !l.senders.is_empty())
            && let Some(from) = header_from(m.raw)
            && !login.may_send_as(&from)
        {
            return Err(SubmitError::Invalid(crate::domain::message::FieldError {
                field: "raw.From".into(),
                message: format!(
                    "{from} is not a sender relay credential “{}” may use",
                    login.name
                ),
            }));
        }
        let now = self.now();
        self.submit_envelope(m.raw, m.recipients, origin, |id| {
            received(&m, &self.config.relay.hostname, id, now)
        })
        .await
    }

    /// Creates a credential and returns its password: the only time anyone sees it.
    pub async fn create_relay_credential(
        &self,
        name: &str,
        senders: &str,
    ) -> Result<String, AppError> {
        let name = name.trim();
        let mut errors = FieldErrors::default();
        if name.is_empty()
            || name.len() > 64
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._@+-".contains(&b))
        {
            errors.add(
                "name",
                "Name the credential after what uses it, e.g. \"flectra\": up to 64 letters, digits and . _ @ + - (it is the SMTP username).",
            );
        }
        let senders = match parse_senders(senders) {
            Ok(senders) => senders.join("\n"),
            Err(e) => {
                errors.add("senders", e);
                String::new()
            }
        };
        errors.into_result().map_err(AppError::Invalid)?;
        let password = format!("{PREFIX}{}", random_token());
        let prefix: String = password.chars().take(PREFIX.len() + 6).collect();
        self.store
            .create_relay_credential(
                name,
                &self.sealer.sign(PURPOSE, &password),
                &prefix,
                &senders,
                self.now(),
            )
            .await?;
        Ok(password)
    }

    /// Messages the relay took since midnight UTC.
    pub async fn relayed_today(&self) -> Result<i64, AppError> {
        let now = self.now();
        Ok(self
            .store
            .relayed_since(now - now.rem_euclid(86_400))
            .await?)
    }

    pub async fn relay_credentials(&self) -> Result<Vec<RelayCredentialRecord>, AppError> {
        Ok(self.store.relay_credentials().await?)
    }

    pub async fn revoke_relay_credential(&self, id: i64) -> Result<(), AppError> {
        if self.store.revoke_relay_credential(id, self.now()).await? {
            Ok(())
        } else {
            Err(AppError::NotFound("Relay credential"))
        }
    }

    /// Checks a relay login from `peer`: refused unheard after [`MAX_FAILED_LOGINS`] failures
    /// from its address in [`FAILED_LOGIN_WINDOW`], counted across every instance.
    pub async fn authenticate_relay(
        &self,
        name: &str,
        password: &str,
        peer: std::net::IpAddr,
    ) -> Result<RelayAuth, AppError> {
        let now = self.now();
        let budget = format!("relay:{}", super::sign_in_limits::address_key(peer));
        let failed = self
            .store
            .failures_since(&budget, now - FAILED_LOGIN_WINDOW)
            .await?;
        if failed >= MAX_FAILED_LOGINS {
            return Ok(RelayAuth::Limited);
        }
        let credential = self.store.live_relay_credential(name).await?;
        let hash = self.sealer.sign(PURPOSE, password);
        let Some(credential) =
            credential.filter(|c| constant_time_eq(hash.as_bytes(), c.secret_hash.as_bytes()))
        else {
            self.store
                .record_failure(&budget, now, now - FAILED_LOGIN_WINDOW)
                .await?;
            return Ok(RelayAuth::Wrong);
        };
        self.store.note_relay_login(&credential, now).await?;
        Ok(RelayAuth::Accepted(RelayLogin {
            name: name.to_string(),
            senders: credential.senders.lines().map(str::to_string).collect(),
        }))
    }
}

/// Failed relay logins from one address (IPv6 by its /64) before it must wait.
pub const MAX_FAILED_LOGINS: i64 = 5;
pub const FAILED_LOGIN_WINDOW: crate::clock::Timestamp = 15 * 60;

/// How a relay login ended.
pub enum RelayAuth {
    Accepted(RelayLogin),
    /// No such live credential, or not its password.
    Wrong,
    /// Too many failures from the address: not checked.
    Limited,
}

impl App {
    /// Tells the sender of each relayed message that failed for good, once: a delivery status
    /// notification queued through the message's own server. Returns how many were queued.
    pub async fn send_bounces(&self) -> Result<usize, crate::store::StoreError> {
        const BATCH: i64 = 50;
        let failures = self.store.unreported_failures(BATCH).await?;
        if failures.is_empty() {
            return Ok(0);
        }
        let servers = self.routes().await?;
        let host = &self.config.relay.hostname;
        let mut queued = 0;
        for failed in failures {
            let m = &failed.message;
            let account = servers
                .iter()
                .find(|s| s.id == m.server_id)
                .and_then(|s| s.username.clone())
                .unwrap_or_else(|| m.mail_from.clone());
            let now = self.now();
            let id = super::outbox::new_message_id(now);
            let reason = m.last_error.as_deref().unwrap_or("failed");
            let raw = delivery_status_notification(&FailedDelivery {
                reporting_host: host,
                from: &account,
                to: &failed.bounce_to,
                recipients: &m.rcpt_to,
                reason,
                subject: &m.subject,
                arrival: m.created_at,
                date: now,
                original_header: failed.body.as_deref(),
                id: &id,
            });
            let subject = format!("Undelivered Mail Returned to Sender: {}", m.subject);
            let bounce = NewMessage {
                id: id.clone(),
                server_id: m.server_id,
                mail_from: account.clone(),
                rcpt_to: vec![failed.bounce_to.clone()],
                message_id: format!("<{id}.report@{host}>"),
                from_header: format!("Mail Delivery Subsystem <{account}>"),
                subject,
                body: raw,
                origin: Edge::Bounce,
                api_key_id: None,
                idempotency_key: None,
                request_hash: None,
                // A notification that fails is not reported in turn.
                bounce_to: None,
            };
            if self.store.queue_bounce(&m.id, bounce, now).await? {
                tracing::info!(failed = %m.id, bounce = %id, "delivery status notification queued");
                queued += 1;
            }
        }
        if queued > 0 {
            self.outbox_wake.notify_one();
        }
        Ok(queued)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn senders_are_addresses_or_domains() {
        assert_eq!(
            parse_senders("Alice@Example.com, @Shop.example\n").unwrap(),
            vec!["alice@example.com", "@shop.example"]
        );
        assert!(parse_senders("not an address").is_err());
        assert!(parse_senders("@").is_err());
        assert_eq!(parse_senders("  ").unwrap(), Vec::<String>::new());
    }

    #[test]
    fn a_login_sends_as_its_senders_only() {
        let login = RelayLogin {
            name: "flectra".into(),
            senders: vec!["alice@example.com".into(), "@shop.example".into()],
        };
        let ok = |a: &str| login.may_send_as(&EmailAddress::parse(a).unwrap());
        assert!(ok("ALICE@example.com"));
        assert!(ok("sales@shop.example"));
        assert!(!ok("bob@example.com"));
        assert!(!ok("x@evilshop.example"));
    }
}
