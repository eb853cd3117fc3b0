//! Submission and the queue as its users see it: accept a message durably, route it, and later
//! show, retry or cancel it.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::Rng;

use super::{App, AppError};
use crate::domain::message::{
    ComposeContext, Composed, Edge, FieldError, MAX_RECIPIENTS, Submission, compose_raw_message,
    envelope_recipients, rewrite_from,
};
use crate::domain::outgoing::MessageState;
use crate::domain::{AuthMethod, EmailAddress, FromPolicy, route};
use crate::metrics::bump;
use crate::store::{Attempt, Inserted, MessageFilter, MessageRecord, NewMessage, StoreError};

/// The answer to a submission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub id: String,
    /// The Idempotency-Key was seen before; this is the earlier message.
    pub replayed: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error(transparent)]
    Invalid(#[from] FieldError),
    #[error("Idempotency-Key: already used for a different message")]
    IdempotencyMismatch,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where a submission comes from: its edge, the API key that sent it, and its Idempotency-Key.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    pub edge: Edge,
    pub api_key_id: Option<i64>,
    pub idempotency_key: Option<&'a str>,
    /// Where a permanent failure is reported (a relayed message's MAIL FROM).
    pub bounce_to: Option<&'a str>,
}

impl Origin<'_> {
    /// `mailgate send` on the machine itself.
    pub const CLI: Origin<'static> = Origin {
        edge: Edge::Cli,
        api_key_id: None,
        idempotency_key: None,
        bounce_to: None,
    };
}

/// Ids sort by submission time (hex seconds first), so "newest first" and paging are by id.
pub fn new_message_id(now: i64) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut rng = rand::rng();
    let tail: String = (0..12)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    format!("{now:010x}{tail}")
}

fn field(name: &str, message: impl Into<String>) -> FieldError {
    FieldError {
        field: name.to_string(),
        message: message.into(),
    }
}

impl App {
    /// Checks, builds and routes a message, and commits it to the queue. When this returns Ok,
    /// the message is on disk and will be delivered whatever happens to this process.
    pub async fn submit(
        &self,
        submission: &Submission,
        origin: Origin<'_>,
    ) -> Result<Accepted, SubmitError> {
        let request_hash = origin.idempotency_key.map(|_| {
            let json = serde_json::to_vec(submission).unwrap_or_default();
            URL_SAFE_NO_PAD.encode(ring::digest::digest(&ring::digest::SHA256, &json))
        });
        self.queue(|ctx| submission.compose(ctx), origin, request_hash)
            .await
    }

    /// A raw RFC 5322 message as bytes (`mailgate send --raw`, `--mbox`), its recipients read
    /// from To, Cc and Bcc.
    pub async fn submit_raw(&self, raw: &[u8]) -> Result<Accepted, SubmitError> {
        self.submit_raw_to(raw, &[]).await
    }

    /// A raw message with an explicit envelope, as an SMTP edge gives it (RCPT TO, or
    /// `mailgate send --raw --envelope-to`): the message goes to `envelope_to` and only to them,
    /// whatever its headers say (mailing lists, forwarding, Bcc the sender already removed). An
    /// empty list falls back to the headers.
    pub async fn submit_raw_to(
        &self,
        raw: &[u8],
        envelope_to: &[String],
    ) -> Result<Accepted, SubmitError> {
        self.submit_envelope(raw, envelope_to, Origin::CLI, |_| Vec::new())
            .await
    }

    /// A raw message with an explicit envelope from `origin`; `trace` gives the header lines
    /// to put on top (the relay's Received), knowing the message's queue id.
    pub(crate) async fn submit_envelope(
        &self,
        raw: &[u8],
        envelope_to: &[String],
        origin: Origin<'_>,
        trace: impl FnOnce(&str) -> Vec<u8>,
    ) -> Result<Accepted, SubmitError> {
        let envelope = envelope_recipients(envelope_to)?;
        self.queue(
            |ctx| {
                let mut composed = compose_raw_message(raw, ctx, envelope)?;
                // On top of the composed bytes, moved in place within the spare capacity
                // composing left: no second 25 MB buffer for a relayed message.
                composed.raw.splice(0..0, trace(ctx.id));
                Ok(composed)
            },
            origin,
            None,
        )
        .await
    }

    async fn queue(
        &self,
        compose: impl FnOnce(&ComposeContext<'_>) -> Result<Composed, FieldError>,
        origin: Origin<'_>,
        request_hash: Option<String>,
    ) -> Result<Accepted, SubmitError> {
        if let Some(key) = origin.idempotency_key
            && (key.is_empty() || key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic()))
        {
            return Err(field("Idempotency-Key", "use 1 to 255 visible ASCII characters").into());
        }
        let now = self.now();
        let id = new_message_id(now);
        let mut composed = compose(&ComposeContext {
            id: &id,
            date: now,
            max_size: self.config.max_message_size,
        })?;
        let servers = self.routes().await?;
        let server = route(&servers, &composed.from.email).ok_or_else(|| {
            field(
                "from",
                format!(
                    "no outgoing mail server sends as {}: give one a From filter of this address or its domain, or leave one server's From filter empty",
                    composed.from.email
                ),
            )
        })?;
        let mail_from = match (server.auth, server.username.as_deref()) {
            (AuthMethod::Gmail, Some(account)) => {
                // From, and Sender or Resent-* in a raw message, each claim to send it.
                let claims = std::iter::once(("from".to_string(), &composed.from.email)).chain(
                    composed
                        .also_from
                        .iter()
                        .map(|(name, address)| (format!("raw.{name}"), address)),
                );
                let foreign = claims
                    .filter(|(_, address)| !server.sends_as(address))
                    .map(|(name, address)| (name, address.clone()))
                    .next();
                if let Some((name, address)) = foreign {
                    match server.from_policy {
                        FromPolicy::Refuse => {
                            return Err(field(
                                &name,
                                format!(
                                    "{address} is not {account} nor one of its \"Send mail as\" addresses, and server “{}” refuses other senders",
                                    server.name
                                ),
                            )
                            .into());
                        }
                        FromPolicy::Rewrite => {
                            let account = EmailAddress::parse(account)
                                .map_err(|e| field("from", e.to_string()))?;
                            rewrite_from(&mut composed, &account, |a| server.sends_as(a));
                        }
                    }
                }
                account.to_string()
            }
            _ => composed.from.email.to_string(),
        };
        // Gmail takes 100 recipients per message: more become several messages, accepted
        // together, each sent and retried on its own, so no recipient gets it twice.
        let chunks: Vec<&[EmailAddress]> = composed.recipients.chunks(MAX_RECIPIENTS).collect();
        let last = chunks.len().saturating_sub(1);
        let mut body = composed.raw;
        let mut rows = Vec::with_capacity(chunks.len());
        for (i, chunk) in chunks.into_iter().enumerate() {
            rows.push(NewMessage {
                id: if i == 0 {
                    id.clone()
                } else {
                    new_message_id(now)
                },
                server_id: server.id,
                mail_from: mail_from.clone(),
                rcpt_to: chunk.iter().map(|r| r.to_string()).collect(),
                message_id: composed.message_id.to_string(),
                from_header: composed.from.display(),
                subject: composed.subject.clone(),
                // The usual single part takes the body without a copy.
                body: if i == last {
                    std::mem::take(&mut body)
                } else {
                    body.clone()
                },
                origin: origin.edge,
                api_key_id: origin.api_key_id,
                // The key names the submission, kept on its first part.
                idempotency_key: origin
                    .idempotency_key
                    .filter(|_| i == 0)
                    .map(str::to_string),
                request_hash: request_hash.clone().filter(|_| i == 0),
                bounce_to: origin.bounce_to.map(str::to_string),
            });
        }
        let inserted = self.store.insert_messages(rows, now).await?;
        match inserted {
            Inserted::New => {
                bump(&self.metrics.submitted);
                self.outbox_wake.notify_one();
                Ok(Accepted {
                    id,
                    replayed: false,
                })
            }
            Inserted::Existing {
                id,
                same_request: true,
            } => Ok(Accepted { id, replayed: true }),
            Inserted::Existing { .. } => Err(SubmitError::IdempotencyMismatch),
        }
    }

    pub async fn message(&self, id: &str) -> Result<(MessageRecord, Vec<Attempt>), AppError> {
        self.store
            .message(id)
            .await?
            .ok_or(AppError::NotFound("Message"))
    }

    pub async fn messages(&self, filter: &MessageFilter) -> Result<Vec<MessageRecord>, AppError> {
        Ok(self.store.list_messages(filter).await?)
    }

    /// "Retry": try a deferred, held or failed message again now.
    pub async fn retry_message(&self, id: &str) -> Result<(), AppError> {
        let (record, _) = self.message(id).await?;
        if !record.state.retryable() {
            return Err(AppError::Refused(format!(
                "A {} message cannot be retried.",
                record.state
            )));
        }
        if self.store.retry_message(id, self.now()).await? {
            self.outbox_wake.notify_one();
        }
        Ok(())
    }

    /// "Cancel": a message not yet sent stays unsent.
    pub async fn cancel_message(&self, id: &str) -> Result<(), AppError> {
        let (record, _) = self.message(id).await?;
        if !record.state.cancellable() || !self.store.cancel_message(id, self.now()).await? {
            return Err(AppError::Refused(format!(
                "A {} message cannot be cancelled.",
                record.state
            )));
        }
        Ok(())
    }

    pub async fn queue_counts(&self) -> Result<Vec<(MessageState, i64)>, AppError> {
        Ok(self.store.count_by_state().await?)
    }

    /// Held messages of the servers sending as `account` go back to the queue (it was
    /// reconnected), or of every server when `account` is None (credentials changed).
    pub async fn release_held(&self, account: Option<&str>) -> Result<u64, AppError> {
        let servers: Vec<i64> = self
            .store
            .list_servers()
            .await?
            .into_iter()
            .filter(|s| account.is_none() || s.username.as_deref() == account)
            .map(|s| s.id)
            .collect();
        let released = self.store.release_held(&servers, self.now()).await?;
        if released > 0 {
            tracing::info!(released, "held messages back in the queue");
            self.outbox_wake.notify_one();
        }
        Ok(released)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_sort_by_time() {
        let a = new_message_id(1_800_000_000);
        let b = new_message_id(1_800_000_001);
        assert!(a < b);
        assert_eq!(a.len(), 22);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
    }
}
