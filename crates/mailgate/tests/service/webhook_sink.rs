//! A test application's webhook: an HTTP server on port 0 that records every request mailgate
//! makes, checks its signature with the server's secret, and answers as told (2xx, 500, or not
//! at all until released).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use tokio::sync::watch;

/// How the sink answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Ok,
    Fail,
    /// Keeps the request waiting, unanswered, until `release`.
    Hold,
}

/// One request as the sink saw it.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: String,
    pub signature_ok: bool,
    pub json: serde_json::Value,
    /// What the sink answered (Hold: nothing; the request was left waiting).
    pub answered: Answer,
}

impl Delivery {
    pub fn subject(&self) -> &str {
        self.json["subject"].as_str().unwrap_or_default()
    }

    pub fn uid(&self) -> i64 {
        self.json["uid"].as_i64().unwrap_or_default()
    }
}

struct Inner {
    secret: Mutex<String>,
    answer: Mutex<Answer>,
    /// Answers this many more requests 2xx, then holds the rest (set by `hold_after`).
    ok_left: Mutex<Option<usize>>,
    seen: Mutex<Vec<Delivery>>,
    changes: watch::Sender<u64>,
    release: watch::Sender<u64>,
}

#[derive(Clone)]
pub struct Sink {
    pub url: String,
    inner: Arc<Inner>,
}

impl Sink {
    pub async fn start() -> Self {
        let inner = Arc::new(Inner {
            secret: Mutex::new(String::new()),
            answer: Mutex::new(Answer::Ok),
            ok_left: Mutex::new(None),
            seen: Mutex::new(Vec::new()),
            changes: watch::channel(0).0,
            release: watch::channel(0).0,
        });
        let app = axum::Router::new()
            .route("/inbound", axum::routing::post(receive))
            .with_state(Arc::clone(&inner));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            url: format!("http://{addr}/inbound"),
            inner,
        }
    }

    pub fn set_secret(&self, secret: &str) {
        *self.inner.secret.lock().unwrap() = secret.to_string();
    }

    /// Answers every request so from now on (ending a `hold_after`).
    pub fn answer(&self, answer: Answer) {
        *self.inner.ok_left.lock().unwrap() = None;
        *self.inner.answer.lock().unwrap() = answer;
    }

    /// Answers the next `n` requests 2xx, then holds every one after.
    pub fn hold_after(&self, n: usize) {
        *self.inner.ok_left.lock().unwrap() = Some(n);
    }

    /// Lets every held request go (answered 200).
    pub fn release(&self) {
        self.inner.release.send_modify(|n| *n += 1);
    }

    pub fn seen(&self) -> Vec<Delivery> {
        self.inner.seen.lock().unwrap().clone()
    }

    /// Waits until `done` holds for what the sink has seen (or the timeout: then it fails
    /// saying what it saw).
    pub async fn wait_until(
        &self,
        within: Duration,
        what: &str,
        done: impl Fn(&[Delivery]) -> bool,
    ) -> Vec<Delivery> {
        let mut changes = self.inner.changes.subscribe();
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let seen = self.seen();
            if done(&seen) {
                return seen;
            }
            if tokio::time::timeout_at(deadline, changes.changed())
                .await
                .is_err()
            {
                panic!(
                    "waited {within:?} for {what}; the webhook saw {} requests: {:?}",
                    seen.len(),
                    seen.iter()
                        .map(|d| d.subject().to_string())
                        .collect::<Vec<_>>()
                );
            }
        }
    }
}

async fn receive(State(inner): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let timestamp: i64 = header("x-mailgate-timestamp").parse().unwrap_or_default();
    let secret = inner.secret.lock().unwrap().clone();
    let expected = format!(
        "sha256={}",
        mailgate::crypto::webhook_signature(&secret, timestamp, &body)
    );
    let answer = {
        let mut ok_left = inner.ok_left.lock().unwrap();
        match ok_left.as_mut() {
            Some(0) => Answer::Hold,
            Some(left) => {
                *left -= 1;
                Answer::Ok
            }
            None => *inner.answer.lock().unwrap(),
        }
    };
    let delivery = Delivery {
        id: header("x-mailgate-delivery"),
        signature_ok: !secret.is_empty() && header("x-mailgate-signature") == expected,
        json: serde_json::from_slice(&body).unwrap_or_default(),
        answered: answer,
    };
    let mut release = inner.release.subscribe();
    inner.seen.lock().unwrap().push(delivery);
    inner.changes.send_modify(|n| *n += 1);
    match answer {
        Answer::Ok => StatusCode::NO_CONTENT,
        Answer::Fail => StatusCode::INTERNAL_SERVER_ERROR,
        Answer::Hold => {
            let _ = release.changed().await;
            StatusCode::OK
        }
    }
}
