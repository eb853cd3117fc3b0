//! The yardstick: a bare XOAUTH2 client with nothing durable. The same number of sessions as
//! mailgate's delivery keeps per account, the same connector (TCP, STARTTLS, verified TLS),
//! the same upstream, the same bytes. Plain, it is the client issue #10 describes: one pipelined
//! MAIL/RCPT/DATA round trip and one final dot per message. Pipelined, it also sends the next
//! envelope behind each final dot, as mailgate does: one round trip per message. What
//! mailgate's drain loses against the pipelined one is the queue's cost.

use std::time::Instant;

use anyhow::Context;
use gsim::Gsim;
use mailgate::app::App;
use mailgate_smtp::Credentials;
use secrecy::SecretString;

use crate::install::{ACCOUNT, RECIPIENT, mint};

/// Sends `messages` copies of `body` over `sessions` sessions; messages per second.
pub async fn send(
    gsim: &Gsim,
    app: &App,
    body: &[u8],
    messages: usize,
    sessions: usize,
    pipelined: bool,
) -> anyhow::Result<f64> {
    let token = SecretString::from(
        mint(gsim)?["access_token"]
            .as_str()
            .context("no access token")?
            .to_string(),
    );
    let server = app
        .store
        .list_servers()
        .await?
        .into_iter()
        .next()
        .context("no server")?;
    let target = app.smtp_target(&server);
    // Logins are timed, as they are in mailgate's drain, which starts at its ready line.
    let started = Instant::now();
    let mut opened = Vec::new();
    for _ in 0..sessions {
        let mut session = app.smtp.connect(&target).await?;
        session
            .auth(Credentials::XOAuth2 {
                user: ACCOUNT,
                token: &token,
            })
            .await?;
        opened.push(session);
    }
    let rcpt = vec![RECIPIENT.to_string()];
    let mut senders = tokio::task::JoinSet::new();
    for (i, mut session) in opened.into_iter().enumerate() {
        let share = messages / sessions + usize::from(i < messages % sessions);
        let (body, rcpt) = (body.to_vec(), rcpt.clone());
        senders.spawn(async move {
            if share > 0 {
                session.open_data(ACCOUNT, &rcpt).await?;
            }
            for left in (0..share).rev() {
                session.write_body(&body).await?;
                if pipelined && left > 0 {
                    let (verdict, next) = session.end_data_and_open(ACCOUNT, &rcpt).await;
                    verdict?;
                    next?;
                } else {
                    session.end_data().await?;
                    if left > 0 {
                        session.open_data(ACCOUNT, &rcpt).await?;
                    }
                }
            }
            session.quit().await;
            Ok::<_, anyhow::Error>(())
        });
    }
    for sent in senders.join_all().await {
        sent?;
    }
    #[allow(clippy::cast_precision_loss)]
    Ok(messages as f64 / started.elapsed().as_secs_f64())
}
