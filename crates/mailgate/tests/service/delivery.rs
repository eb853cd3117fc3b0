//! Delivery against gsim: each classification rule, driven by gsim's fault injection, and the
//! session pool's economy.

use reqwest::StatusCode;
use serde_json::json;

use crate::support::*;

fn message(subject: &str) -> serde_json::Value {
    json!({
        "from": {"name": "Alice", "email": ALICE},
        "to": [BOB],
        "subject": subject,
        "text": "Hello from the queue.",
    })
}

async fn queued(t: &TestApp, key: &str, subject: &str) -> String {
    let (status, body) = t.send(key, &message(subject)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    body["id"].as_str().unwrap().to_string()
}

fn fault(stage: gsim::SmtpStage, reply: Option<&str>, close: bool, count: u32) -> gsim::SmtpFault {
    gsim::SmtpFault {
        stage,
        reply: reply.map(str::to_string),
        close,
        hold: false,
        count,
        account: None,
    }
}

fn deliveries_with(t: &TestApp, message_id: &str) -> usize {
    t.gsim
        .world()
        .deliveries(0)
        .iter()
        .filter(|d| d.message_id.as_deref() == Some(message_id))
        .count()
}

#[tokio::test]
async fn a_message_is_sent_with_its_attempt_recorded() {
    let t = spawn(Db::Sqlite).await;
    t.sending_as_alice().await;
    let key = t.api_key().await;
    let id = queued(&t, &key, "first").await;
    let sent = t.wait_state(&id, "sent").await;
    assert_eq!(sent.attempts, 1);
    assert!(sent.sent_at.is_some());
    assert_eq!(deliveries_with(&t, &sent.message_id), 1);
    let (_, attempts) = t.app.message(&id).await.unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].outcome, "sent");
    assert!(
        attempts[0]
            .reply
            .as_deref()
            .unwrap()
            .starts_with("250 2.0.0 OK")
    );
    let inbox = t.gsim.world().mailbox(BOB, "INBOX").unwrap();
    assert!(
        inbox["messages"][0]["raw"]
            .as_str()
            .unwrap()
            .contains("Subject: first")
    );
    t.finish().await;
}

#[tokio::test]
async fn a_421_defers_with_backoff_and_the_retry_reuses_the_message_id() {
    let t = spawn(Db::Sqlite).await;
    t.sending_as_alice().await;
    let key = t.api_key().await;
    t.gsim.world().arm_smtp_fault(fault(
        gsim::SmtpStage::Mail,
        Some("421 4.7.0 Try again later, closing connection."),
        true,
        1,
    ));
    let id = queued(&t, &key, "slow down").await;
    let deferred = t.wait_state(&id, "deferred").await;
    let now = t.app.now();
    let wait = deferred.next_attempt_at - now;
    assert!(
        (47..=73).contains(&wait),
        "about a minute, with jitter: {wait}"
    );
    assert_eq!(
        deferred.last_error.as_deref(),
        Some("421 4.7.0 Try again later, closing connection.")
    );
    let (_, attempts) = t.app.message(&id).await.unwrap();
    assert_eq!(
        (attempts[0].outcome.as_str(), attempts[0].stage.as_str()),
        ("deferred", "mail_from")
    );

    t.advance_and_wake(wait + 1);
    let sent = t.wait_state(&id, "sent").await;
    assert_eq!(sent.attempts, 2);
    assert_eq!(
        deliveries_with(&t, &sent.message_id),
        1,
        "the same Message-ID, delivered once"
    );
    t.finish().await;
}

#[tokio::test]
async fn connection_errors_defer() {
    let t = spawn(Db::Sqlite).await;
    t.create_admin().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let page = t
        .submit(
            "/servers",
            &[
                ("name", "Nowhere"),
                ("auth", "none"),
                ("host", "127.0.0.1"),
                ("port", &closed.to_string()),
                ("security", "none"),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    let key = t.api_key().await;
    let id = queued(&t, &key, "into the void").await;
    let deferred = t.wait_state(&id, "deferred").await;
    assert!(
        deferred.last_error.unwrap().contains("could not connect"),
        "connection refused is temporary"
    );
    t.finish().await;
}

/// A certificate mailgate cannot verify is never waved through: the message waits (the fix is an
/// operator's, and the server may be mid-renewal) and the error says what TLS refused.
#[tokio::test]
async fn an_unverifiable_certificate_defers_and_nothing_is_sent() {
    let t = spawn_with(Db::Sqlite, |env| {
        env.remove("MAILGATE_EXTRA_CA_FILE");
    })
    .await;
    t.create_admin().await;
    let smtps = t.gsim.endpoints().smtp_tls.port().to_string();
    let page = t
        .submit(
            "/servers",
            &[
                ("name", "Untrusted"),
                ("auth", "none"),
                ("host", "127.0.0.1"),
                ("port", &smtps),
                ("security", "tls"),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    let key = t.api_key().await;
    let id = queued(&t, &key, "over untrusted TLS").await;
    let deferred = t.wait_state(&id, "deferred").await;
    let error = deferred.last_error.unwrap();
    assert!(
        error.starts_with("TLS with 127.0.0.1 failed") && error.contains("certificate"),
        "{error}"
    );
    assert_eq!(t.gsim.world().counters().messages_accepted, 0);
    t.finish().await;
}

#[tokio::test]
async fn a_5xx_fails_with_googles_code_and_text() {
    let t = spawn(Db::Sqlite).await;
    t.sending_as_alice().await;
    let key = t.api_key().await;
    t.gsim.world().arm_smtp_fault(fault(
        gsim::SmtpStage::DataEnd,
        Some("554 5.6.0 Message is malformed. {id} - gsmtp"),
        false,
        1,
    ));
    let id = queued(&t, &key, "malformed").await;
    let failed = t.wait_state(&id, "failed").await;
    assert!(
        failed
            .last_error
            .unwrap()
            .starts_with("554 5.6.0 Message is malformed.")
    );
    t.finish().await;
}

/// Messages back to back on one session: each next envelope rides behind the final dot. Gmail
/// refusing the first message's dot must not disturb the second, whose DATA is already open
/// behind it (no RSET may come between), and every message goes exactly once.
#[tokio::test]
async fn a_refused_final_dot_leaves_the_message_behind_it_on_its_way() {
    let t = spawn(Db::Sqlite).await;
    let server = t.sending_as_alice().await;
    t.gsim.world().arm_smtp_fault(fault(
        gsim::SmtpStage::DataEnd,
        Some("552 5.2.3 Your message exceeded Google's message size limits. {id} - gsmtp"),
        false,
        1,
    ));
    // Due together a minute from now, so one claim puts all four in one lane, one worker's.
    let due = t.app.now() + 60;
    let mut ids = Vec::new();
    for i in 0..4 {
        let id = format!("{due:010x}pipelined{i:03}");
        let body = format!(
            "From: {ALICE}\r\nTo: {BOB}\r\nSubject: back to back {i}\r\nMessage-ID: <{id}@example.com>\r\n\r\nmessage {i}\r\n"
        );
        t.app
            .store
            .insert_message(
                mailgate::store::NewMessage {
                    id: id.clone(),
                    server_id: server,
                    mail_from: ALICE.into(),
                    rcpt_to: vec![BOB.into()],
                    message_id: format!("<{id}@example.com>"),
                    from_header: ALICE.into(),
                    subject: format!("back to back {i}"),
                    body: body.into_bytes(),
                    origin: mailgate::domain::message::Edge::Cli,
                    api_key_id: None,
                    idempotency_key: None,
                    request_hash: None,
                    bounce_to: None,
                },
                due,
            )
            .await
            .unwrap();
        ids.push(id);
    }
    t.advance_and_wake(60);
    let first = t.wait_state(&ids[0], "failed").await;
    assert!(first.last_error.unwrap().starts_with("552 5.2.3"));
    for id in &ids[1..] {
        t.wait_state(id, "sent").await;
    }
    let delivered: Vec<String> = t
        .gsim
        .world()
        .deliveries(0)
        .into_iter()
        .filter_map(|d| d.message_id)
        .collect();
    let expected: Vec<String> = ids[1..]
        .iter()
        .map(|id| format!("<{id}@example.com>"))
        .collect();
    assert_eq!(
        delivered, expected,
        "each of the others exactly once, in order"
    );
    t.finish().await;
}

#[tokio::test]
async fn permanently_refused_recipients_are_reported_and_the_rest_sent() {
    let t = spawn(Db::Sqlite).await;
    t.sending_as_alice().await;
    let key = t.api_key().await;
    t.gsim.world().arm_smtp_fault(fault(
        gsim::SmtpStage::Rcpt,
        Some("550 5.1.1 The email account that you tried to reach does not exist. {id} - gsmtp"),
        false,
        1,
    ));
    let mut body = message("two recipients");
    body["to"] = json!(["ghost@example.org", BOB]);
    let (_, accepted) = t.send(&key, &body).await;
    let id = accepted["id"].as_str().unwrap();
    let sent = t.wait_state(id, "sent").await;
    let (_, attempts) = t.app.message(id).await.unwrap();
    assert!(
        attempts[0]
            .detail
            .contains("refused recipients: ghost@example.org: 550 5.1.1"),
        "{}",
        attempts[0].detail
    );
    let delivered = t.gsim.world().deliveries(0);
    let d = delivered
        .iter()
        .find(|d| d.message_id.as_deref() == Some(sent.message_id.as_str()))
        .unwrap();
    assert_eq!(d.rcpt_to, vec![BOB.to_string()]);
    t.finish().await;
}

#[tokio::test]
async fn gmails_daily_quota_defers_until_the_window_frees_without_hitting_gmail_again() {
    let t = spawn(Db::Sqlite).await;
    t.sending_as_alice().await;
    let key = t.api_key().await;
    let first = queued(&t, &key, "counted").await;
    t.wait_state(&first, "sent").await;
    t.gsim.world().arm_smtp_fault(fault(
        gsim::SmtpStage::Mail,
        Some("550 5.4.5 Daily user sending quota exceeded. {id} - gsmtp"),
        false,
        1,
    ));
    let id = queued(&t, &key, "over quota").await;
    let deferred = t.wait_state(&id, "deferred").await;
    let now = t.app.now();
    // The window frees 24 h after the hour of the first send.
    assert!(
        deferred.next_attempt_at > now + 22 * 3600,
        "{} vs {now}",
        deferred.next_attempt_at
    );
    assert!(
        deferred
            .last_error
            .unwrap()
            .contains("550 5.4.5 Daily user sending quota exceeded.")
    );
    // The next message for this account waits too, without a trip to Gmail.
    let mails_before = t.gsim.world().counters().smtp_connections;
    let next = queued(&t, &key, "after the quota").await;
    let waiting = t.wait_state(&next, "deferred").await;
    assert!(
        waiting
            .last_error
            .unwrap()
            .contains("Gmail said alice@gmail.com is over its daily sending quota")
    );
    assert_eq!(waiting.attempts, 0, "no attempt was charged");
    assert_eq!(t.gsim.world().counters().smtp_connections, mails_before);
    t.finish().await;
}

/// A burst goes out faster than delivery re-reads the daily count (once a second): the sends
/// since the last read, and those whose record is still on its way to disk, count too.
#[tokio::test]
async fn a_burst_past_the_daily_limit_sends_exactly_the_limit() {
    let t = spawn(Db::Sqlite).await;
    let server = t.sending_as_alice().await;
    t.set_daily_limit(server, 5).await;
    let key = t.api_key().await;
    let mut ids = Vec::new();
    for i in 0..12 {
        ids.push(queued(&t, &key, &format!("burst {i}")).await);
    }
    let mut settled = t.app.settled.subscribe();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    let states = loop {
        let mut states = Vec::new();
        for id in &ids {
            states.push(t.app.message(id).await.unwrap().0.state.code());
        }
        if states.iter().all(|s| *s == "sent" || *s == "deferred") {
            break states;
        }
        tokio::time::timeout_at(deadline, settled.changed())
            .await
            .expect("the burst settles")
            .unwrap();
    };
    assert_eq!(
        states.iter().filter(|s| **s == "sent").count(),
        5,
        "{states:?}"
    );
    assert_eq!(t.gsim.world().counters().messages_accepted, 5);
    t.finish().await;
}

#[tokio::test]
async fn mailgates_own_daily_limit_holds_back_the_surplus() {
    let t = spawn(Db::Sqlite).await;
    let server = t.sending_as_alice().await;
    t.set_daily_limit(server, 2).await;
    let key = t.api_key().await;
    let a = queued(&t, &key, "one").await;
    t.wait_state(&a, "sent").await;
    let b = queued(&t, &key, "two").await;
    t.wait_state(&b, "sent").await;
    let c = queued(&t, &key, "three").await;
    let held_back = t.wait_state(&c, "deferred").await;
    assert!(
        held_back
            .last_error
            .unwrap()
            .contains("reached its daily limit (2 of 2 messages in 24 hours")
    );
    assert_eq!(t.gsim.world().counters().messages_accepted, 2);
    // A day later the window has freed.
    t.advance_and_wake(24 * 3600);
    t.sign_in().await;
    t.wait_state(&c, "sent").await;
    t.finish().await;
}

#[tokio::test]
async fn temporary_failures_give_up_after_three_days() {
    let t = spawn(Db::Sqlite).await;
    t.sending_as_alice().await;
    let key = t.api_key().await;
    let id = queued(&t, &key, "old").await;
    t.wait_state(&id, "sent").await;
    t.gsim.world().arm_smtp_fault(fault(
        gsim::SmtpStage::Mail,
        Some("451 4.3.0 Mail server temporarily rejected message. {id} - gsmtp"),
        false,
        50,
    ));
    let old = queued(&t, &key, "never gets through").await;
    t.wait_state(&old, "deferred").await;
    t.advance_and_wake(3 * 86_400);
    let failed = t.wait_state(&old, "failed").await;
    assert!(
        failed
            .last_error
            .unwrap()
            .starts_with("gave up after 3 days of temporary failures; the last: 451 4.3.0")
    );
    t.finish().await;
}

#[tokio::test]
async fn a_535_gets_one_fresh_token_then_the_message_is_held_until_reconnected() {
    let t = spawn(Db::Sqlite).await;
    let server = t.sending_as_alice().await;
    let key = t.api_key().await;
    t.gsim.world().arm_smtp_fault(refused_logins());
    let id = queued(&t, &key, "refused login").await;
    let held = t.wait_state(&id, "held").await;
    assert!(
        held.last_error
            .as_deref()
            .unwrap()
            .contains("Reconnect needed: Gmail refused a fresh token at login"),
        "{held:?}"
    );
    let refreshes = t.gsim.world().counters().token_requests["refresh_token"]["ok"];
    assert_eq!(refreshes, 1, "one forced refresh");
    let page = t.visit(&format!("/servers/{server}")).await;
    assert!(page.has("Reconnect needed"));
    // Reconnecting releases the message by itself.
    assert_eq!(t.connect(server, ALICE).await.status, StatusCode::SEE_OTHER);
    let sent = t.wait_state(&id, "sent").await;
    assert_eq!(deliveries_with(&t, &sent.message_id), 1);
    t.finish().await;
}

#[tokio::test]
async fn invalid_grant_holds_the_message_and_marks_the_server() {
    let t = spawn(Db::Sqlite).await;
    let server = t.sending_as_alice().await;
    let key = t.api_key().await;
    let refresh = t.refresh_token_at_google(ALICE);
    t.gsim.world().revoke_token(&refresh).unwrap();
    // The stored access token is past its margin: delivery must refresh, and Google says no.
    t.clock.advance(3600);
    let id = queued(&t, &key, "revoked").await;
    let held = t.wait_state(&id, "held").await;
    assert!(
        held.last_error
            .unwrap()
            .contains("invalid_grant: Token has been expired or revoked.")
    );
    t.sign_in().await;
    assert!(
        t.visit(&format!("/servers/{server}"))
            .await
            .has("Reconnect needed")
    );
    t.finish().await;
}

#[tokio::test]
async fn a_stale_pooled_session_is_replaced_without_charging_the_message() {
    let t = spawn(Db::Sqlite).await;
    t.sending_as_alice().await;
    let key = t.api_key().await;
    let first = queued(&t, &key, "opens the session").await;
    t.wait_state(&first, "sent").await;
    // Gmail drops the idle session; the next MAIL FROM finds it closed.
    t.gsim
        .world()
        .arm_smtp_fault(fault(gsim::SmtpStage::Mail, None, true, 1));
    let second = queued(&t, &key, "finds it closed").await;
    let sent = t.wait_state(&second, "sent").await;
    assert_eq!(
        sent.attempts, 1,
        "the dead session was not the message's fault"
    );
    assert_eq!(t.gsim.world().counters().smtp_logins.ok, 2);
    t.finish().await;
}

#[tokio::test]
async fn a_thousand_messages_to_one_account_use_at_most_three_logins_and_one_token_request() {
    let t = spawn(Db::Sqlite).await;
    let server = t.sending_as_alice().await;
    // A consumer account may send 500 a day, at Gmail and in mailgate: raise both for the test.
    t.gsim
        .world()
        .patch_account(
            ALICE,
            gsim::AccountPatch {
                daily_send_limit: Some(5000),
                ..Default::default()
            },
        )
        .unwrap();
    t.set_daily_limit(server, 5000).await;
    let before = t.gsim.world().counters();
    let token_requests_before: u64 = before
        .token_requests
        .values()
        .flat_map(|o| o.values())
        .sum();
    let mut ids = Vec::new();
    for i in 0..1000 {
        let submission: mailgate::domain::message::Submission =
            serde_json::from_value(message(&format!("bulk {i}"))).unwrap();
        ids.push(
            t.app
                .submit(&submission, mailgate::app::outbox::Origin::CLI)
                .await
                .unwrap()
                .id,
        );
    }
    for id in &ids {
        t.wait_state(id, "sent").await;
    }
    let after = t.gsim.world().counters();
    let token_requests_after: u64 = after.token_requests.values().flat_map(|o| o.values()).sum();
    let logins = after.smtp_logins.ok - before.smtp_logins.ok;
    println!(
        "1000 messages: {logins} SMTP logins, {} token requests",
        token_requests_after - token_requests_before
    );
    assert!(logins <= 3, "{logins} logins");
    assert!(token_requests_after - token_requests_before <= 1);
    assert_eq!(after.messages_accepted - before.messages_accepted, 1000);
    t.finish().await;
}

#[tokio::test]
async fn a_temporary_refusal_of_one_recipient_defers_the_whole_message_and_sends_nothing() {
    let t = spawn(Db::Sqlite).await;
    t.sending_as_alice().await;
    let key = t.api_key().await;
    // Pipelined: DATA is already open when the 450 for the first recipient is read.
    t.gsim.world().arm_smtp_fault(fault(gsim::SmtpStage::Rcpt, Some("450 4.2.1 The user you are trying to contact is receiving mail too quickly. {id} - gsmtp"), false, 1));
    let mut body = message("all or nothing");
    body["to"] = json!(["busy@example.org", BOB]);
    let (_, accepted) = t.send(&key, &body).await;
    let id = accepted["id"].as_str().unwrap();
    let deferred = t.wait_state(id, "deferred").await;
    assert!(deferred.last_error.unwrap().starts_with("450 4.2.1"));
    assert!(
        t.gsim.world().deliveries(0).is_empty(),
        "the half-begun message was dropped, not sent to Bob alone"
    );
    t.advance_and_wake(deferred.next_attempt_at - t.app.now() + 1);
    let sent = t.wait_state(id, "sent").await;
    let delivered = t.gsim.world().deliveries(0);
    assert_eq!(delivered.len(), 1);
    assert_eq!(
        delivered[0].rcpt_to,
        vec!["busy@example.org".to_string(), BOB.to_string()]
    );
    assert_eq!(
        delivered[0].message_id.as_deref(),
        Some(sent.message_id.as_str())
    );
    t.finish().await;
}

/// A scripted SMTP peer that takes a message slowly: a read (at most 16 KiB) every 5 ms, with a
/// small receive buffer. Returns the bytes of the message it took.
async fn slow_peer(listener: tokio::net::TcpListener) -> usize {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    let (stream, _) = listener.accept().await.unwrap();
    let mut stream = BufReader::new(stream);
    let mut line = String::new();
    stream
        .get_mut()
        .write_all(b"220 slow.example ESMTP\r\n")
        .await
        .unwrap();
    loop {
        line.clear();
        if stream.read_line(&mut line).await.unwrap() == 0 {
            return 0;
        }
        let verb = line.get(..4).unwrap_or_default().to_ascii_uppercase();
        let reply: &[u8] = match verb.as_str() {
            "EHLO" => b"250-slow.example\r\n250 SIZE 40000000\r\n",
            "MAIL" | "RCPT" => b"250 2.1.0 OK\r\n",
            "DATA" => b"354 Go ahead\r\n",
            "QUIT" => b"221 2.0.0 Bye\r\n",
            _ => b"502 5.5.1 Unrecognized command\r\n",
        };
        stream.get_mut().write_all(reply).await.unwrap();
        if verb == "QUIT" {
            return 0;
        }
        if verb == "DATA" {
            break;
        }
    }
    let mut body = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    while !body.ends_with(b"\r\n.\r\n") {
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "the sender hung up mid-message");
        body.extend_from_slice(&chunk[..n]);
        // The slowness under test: a peer that reads at its own pace.
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    stream
        .get_mut()
        .write_all(b"250 2.0.0 OK taken slowly\r\n")
        .await
        .unwrap();
    body.len()
}

#[tokio::test]
async fn a_large_message_to_a_slow_server_goes_when_each_write_is_within_the_timeout() {
    // One second per command or per 64 KiB piece; the whole upload takes longer than that.
    let t = spawn_with(Db::Sqlite, |env| {
        env.insert("MAILGATE_SMTP_TIMEOUT_SECS".into(), "1".into());
    })
    .await;
    t.create_admin().await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(16 * 1024).unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(8).unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let peer = tokio::spawn(slow_peer(listener));
    let page = t
        .submit(
            "/servers",
            &[
                ("name", "Slow"),
                ("auth", "none"),
                ("host", "127.0.0.1"),
                ("port", &port),
                ("security", "none"),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    let key = t.api_key().await;
    let text = format!("{}\n", "x".repeat(78)).repeat(100_000);
    let (status, accepted) = t
        .send(
            &key,
            &serde_json::json!({"from": "app@example.com", "to": [BOB], "subject": "big", "text": text}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    let started = std::time::Instant::now();
    let sent = t.wait_state(accepted["id"].as_str().unwrap(), "sent").await;
    let took = started.elapsed();
    let received = peer.await.unwrap();
    eprintln!("slow server: {received} bytes in {took:?}");
    assert!(received > 8_000_000, "{received} bytes");
    assert!(
        took > std::time::Duration::from_secs(1),
        "the upload outlasted one timeout ({took:?}), so the timeout was per write"
    );
    assert_eq!(sent.attempts, 1);
    t.finish().await;
}

#[tokio::test]
async fn when_the_daily_count_cannot_be_read_the_message_waits_instead_of_skipping_the_limit() {
    let t = spawn(Db::Sqlite).await;
    t.sending_as_alice().await;
    let key = t.api_key().await;
    let rename = |from: &'static str, to: &'static str| {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "ALTER TABLE {from} RENAME TO {to}"
        )))
        .execute(t.app.store.pool())
    };
    rename("account_sends", "account_sends_away").await.unwrap();
    let id = queued(&t, &key, "counted first").await;
    let deferred = t.wait_state(&id, "deferred").await;
    assert!(
        deferred
            .last_error
            .unwrap()
            .contains("the daily limit is never skipped"),
    );
    assert_eq!(t.gsim.world().counters().messages_accepted, 0);
    rename("account_sends_away", "account_sends").await.unwrap();
    t.advance_and_wake(61);
    t.wait_state(&id, "sent").await;
    t.finish().await;
}
