//! Handing incoming mail to the application: each stored message, oldest first, POSTed as JSON
//! to the server's webhook, signed, until it answers 2xx; the messages behind one that fails
//! wait for it (they arrive in order), and every attempt is recorded. A crash after the
//! application's 2xx and before it is recorded sends that one message again: the payload's `id`
//! lets the application recognise it.

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use secrecy::ExposeSecret;
use serde::Serialize;
use tokio::sync::watch;

use crate::app::App;
use crate::domain::incoming::{IncomingServer, Summary, webhook_backoff};
use crate::store::{InboundRecord, PendingWebhook, WebhookAttempt};

/// How long the loop rests when nothing waits: messages stored by another instance's "Fetch
/// Now" are found within this.
const LOOK_EVERY: Duration = Duration::from_secs(1);
/// How long a stop waits for a webhook request under way.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// What the application receives.
#[derive(Serialize)]
struct Payload<'a> {
    /// mailgate's id for the message: the same on a repeated delivery.
    id: &'a str,
    server: &'a str,
    account: &'a str,
    folder: &'a str,
    uidvalidity: i64,
    uid: i64,
    received_at: i64,
    #[serde(flatten)]
    summary: &'a Summary,
    size: i64,
    /// The message as Gmail holds it, base64.
    raw: String,
}

impl App {
    /// Delivers `server`'s stored messages to its webhook until `stop` turns true.
    pub async fn keep_delivering(&self, server: &IncomingServer, mut stop: watch::Receiver<bool>) {
        let Some(url) = server.webhook_url.clone() else {
            return;
        };
        while !*stop.borrow() {
            // Before the look, so mail stored during it still wakes the wait below.
            let mut progress = self.inbox_progress.subscribe();
            let delivery = self.deliver_next(server, &url);
            tokio::pin!(delivery);
            let delivered = tokio::select! {
                delivered = &mut delivery => delivered,
                // Stopping: a request under way gets a few seconds to be answered, then is
                // abandoned (its message is sent again by whoever runs next).
                _ = stop.changed() => match tokio::time::timeout(STOP_GRACE, &mut delivery).await {
                    Ok(delivered) => delivered,
                    Err(_) => return,
                },
            };
            let rest = match delivered {
                Ok(Next::Delivered) => continue,
                Ok(Next::Wait(at)) => {
                    Duration::from_secs(u64::try_from(at - self.now()).unwrap_or(0))
                        .clamp(Duration::from_millis(1), LOOK_EVERY)
                }
                Ok(Next::Nothing) => LOOK_EVERY,
                Err(e) => {
                    tracing::error!(server = server.id, "webhook: {e}");
                    LOOK_EVERY
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(rest) => {}
                // New mail stored here: look at once.
                _ = progress.changed() => {}
                _ = stop.changed() => {}
            }
        }
    }

    /// Sends the oldest waiting message if it is due.
    async fn deliver_next(
        &self,
        server: &IncomingServer,
        url: &str,
    ) -> Result<Next, crate::store::StoreError> {
        let now = self.now();
        let Some(PendingWebhook {
            message,
            raw,
            secret,
        }) = self
            .store
            .next_webhook(&self.sealer, server.id, now)
            .await?
        else {
            return Ok(Next::Nothing);
        };
        if let Some(at) = message.webhook_next_at.filter(|at| *at > now) {
            return Ok(Next::Wait(at));
        }
        let body = payload(server, &message, &raw);
        let started = Instant::now();
        let signature = crate::crypto::webhook_signature(
            secret.as_ref().map_or("", |s| s.expose_secret()),
            now,
            &body,
        );
        let sent = self
            .webhooks
            .post(url)
            .header("Content-Type", "application/json")
            .header("X-Mailgate-Delivery", message.id.as_str())
            .header("X-Mailgate-Timestamp", now.to_string())
            .header("X-Mailgate-Signature", format!("sha256={signature}"))
            .body(body)
            .send()
            .await;
        let took_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
        let (status, error) = match &sent {
            Ok(response) if response.status().is_success() => {
                (Some(i64::from(response.status().as_u16())), None)
            }
            Ok(response) => (
                Some(i64::from(response.status().as_u16())),
                Some(format!("the webhook answered {}", response.status())),
            ),
            Err(e) => (None, Some(describe(e))),
        };
        let delivered = error.is_none();
        let attempt = WebhookAttempt {
            at: now,
            status,
            error,
            took_ms,
        };
        let next_at = now + webhook_backoff(message.webhook_attempts + 1);
        self.store
            .record_webhook(&message.id, &attempt, delivered, next_at)
            .await?;
        if delivered {
            self.inbox_progress.send_modify(|n| *n += 1);
            Ok(Next::Delivered)
        } else {
            tracing::warn!(
                server = server.id,
                message = %message.id,
                "webhook failed ({}); next try in {} s",
                attempt.error.as_deref().unwrap_or_default(),
                next_at - now
            );
            Ok(Next::Wait(next_at))
        }
    }
}

enum Next {
    Delivered,
    Wait(i64),
    Nothing,
}

fn payload(server: &IncomingServer, message: &InboundRecord, raw: &[u8]) -> Vec<u8> {
    serde_json::to_vec(&Payload {
        id: &message.id,
        server: &server.name,
        account: &server.username,
        folder: &message.folder,
        uidvalidity: message.uidvalidity,
        uid: message.uid,
        received_at: message.received_at,
        summary: &message.summary,
        size: message.size,
        raw: STANDARD.encode(raw),
    })
    .unwrap_or_default()
}

/// A failed request in words (reqwest's own are terse).
fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "the webhook did not answer within 30 s".into()
    } else if e.is_connect() {
        format!("cannot reach the webhook: {e}")
    } else {
        format!("the webhook request failed: {e}")
    }
}
