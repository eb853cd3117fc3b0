//! Several instances on one PostgreSQL database: who holds a message, and what happens to it
//! when its holder dies.

use std::process::Stdio;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::support::*;

/// gsim's deliveries of `message_id`, once there is at least one (or the timeout).
async fn delivered(t: &TestApp, message_id: &str, within: Duration) -> usize {
    let mut changes = t.gsim.world().subscribe_changes();
    let count = || {
        t.gsim
            .world()
            .deliveries(0)
            .iter()
            .filter(|d| d.message_id.as_deref() == Some(message_id))
            .count()
    };
    let deadline = tokio::time::Instant::now() + within;
    while count() == 0 {
        if tokio::time::timeout_at(deadline, changes.changed())
            .await
            .is_err()
        {
            break;
        }
    }
    count()
}

/// The first instance is SIGKILLed while Gmail holds its session, before the final dot. The
/// message is leased to it for 10 minutes; the second instance sees its heartbeat stop and takes
/// the message back within seconds, and it reaches Gmail once.
#[tokio::test]
async fn a_killed_instances_message_is_taken_over_within_seconds_and_sent_once() {
    let mut t = spawn(Db::Postgres).await;
    t.sending_as_alice().await;
    let key = t.api_key().await;
    t.stop_service().await;
    let mut env = t.process_env();
    env.push(("MAILGATE_INSTANCE_TIMEOUT_SECS", "2".into()));
    let first = serve(&env, Stdio::null()).await;
    t.gsim.world().arm_smtp_fault(gsim::SmtpFault {
        stage: gsim::SmtpStage::Mail,
        reply: None,
        close: false,
        hold: true,
        count: 1,
        account: None,
    });
    let (status, body) = t
        .send(
            &key,
            &json!({"from": ALICE, "to": [BOB], "subject": "taken over", "text": "once"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    t.gsim.world().wait_held(1).await;
    assert!(!kill(first).await.success());
    t.gsim.world().release_held();

    // Another instance, at the same address (the first one's port is free again).
    let second = serve(&env, Stdio::null()).await;
    let message_id = format!("<{id}@gmail.com>");
    assert_eq!(
        delivered(&t, &message_id, Duration::from_secs(30)).await,
        1,
        "taken back from the dead instance well before its 10-minute lease ends, sent once"
    );
    let store = mailgate::store::Store::connect(&t.database_url)
        .await
        .unwrap();
    let live = store.live_instances(0).await.unwrap();
    assert_eq!(live.len(), 1, "the dead instance is forgotten: {live:?}");
    store.close().await;
    assert!(stop(second).await.success());
    t.finish().await;
}

/// Two instances need Alice's token at the same moment, after it expired: one refresh at
/// Google between them, and both use its token.
#[tokio::test]
async fn two_instances_refresh_one_account_once() {
    use secrecy::ExposeSecret;
    let t = spawn(Db::Postgres).await;
    t.sending_as_alice().await;
    let env: std::collections::BTreeMap<String, String> = t
        .process_env()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    let config = mailgate::config::Config::from_sources(None, &env).unwrap();
    let other = mailgate::app::App::open(config, t.clock.clone())
        .await
        .unwrap();
    t.clock.advance(3600);
    let refreshes = || {
        t.gsim
            .world()
            .counters()
            .token_requests
            .get("refresh_token")
            .and_then(|o| o.get("ok"))
            .copied()
            .unwrap_or(0)
    };
    let before = refreshes();
    let (a, b) = tokio::join!(
        t.app.access_token(ALICE, false),
        other.access_token(ALICE, false)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(refreshes() - before, 1, "one refresh across both instances");
    assert_eq!(
        a.expose_secret(),
        b.expose_secret(),
        "both use the new token"
    );
    other.store.close().await;
    t.finish().await;
}

/// A second instance started with another secret key refuses to start, saying which key it
/// used, rather than failing on every token later.
#[tokio::test]
async fn an_instance_with_another_secret_key_refuses_to_start() {
    let t = spawn(Db::Postgres).await;
    t.sending_as_alice().await;
    let mut env: std::collections::BTreeMap<String, String> = t
        .process_env()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    env.insert(
        "MAILGATE_SECRET_KEY".into(),
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".into(),
    );
    let config = mailgate::config::Config::from_sources(None, &env).unwrap();
    let refused = match mailgate::app::App::open(config, t.clock.clone()).await {
        Ok(_) => panic!("an instance with another key started"),
        Err(e) => e.to_string(),
    };
    assert!(
        refused.contains("MAILGATE_SECRET_KEY"),
        "names the key it used: {refused}"
    );
    t.finish().await;
}

/// Submits `count` messages numbered from `first` to the API at `base`, a few at a time, and
/// returns their ids.
async fn submit_many(base: &str, key: &str, first: usize, count: usize) -> Vec<String> {
    let url = format!("{base}/api/v1/messages");
    let mut ids = Vec::with_capacity(count);
    let mut pending = tokio::task::JoinSet::new();
    for i in first..first + count {
        let (url, key, http) = (url.clone(), key.to_string(), browser());
        pending.spawn(async move {
            let response = http
                .post(&url)
                .bearer_auth(&key)
                .json(&json!({"from": ALICE, "to": [BOB], "subject": format!("shared {i}"), "text": "one of many"}))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::ACCEPTED);
            let body: serde_json::Value = response.json().await.unwrap();
            body["id"].as_str().unwrap().to_string()
        });
        if pending.len() >= 8 {
            ids.push(pending.join_next().await.unwrap().unwrap());
        }
    }
    ids.extend(pending.join_all().await);
    ids
}

/// Waits until gsim holds at least `n` deliveries (or the timeout); returns how many it holds.
async fn deliveries_reach(t: &TestApp, n: usize, within: Duration) -> usize {
    let mut changes = t.gsim.world().subscribe_changes();
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let count = t.gsim.world().deliveries(0).len();
        if count >= n
            || tokio::time::timeout_at(deadline, changes.changed())
                .await
                .is_err()
        {
            return count;
        }
    }
}

/// The messages not sent yet, with where they stand.
async fn unsent(t: &TestApp) -> Vec<String> {
    use sqlx::Row;
    sqlx::query(
        "SELECT id, state, lease_owner, attempts, last_error FROM messages WHERE state <> 'sent'",
    )
    .fetch_all(t.app.store.pool())
    .await
    .unwrap()
    .iter()
    .map(|r| {
        format!(
            "{} {} held by {:?} after {} attempts: {:?}",
            r.get::<String, _>("id"),
            r.get::<String, _>("state"),
            r.get::<Option<String>, _>("lease_owner"),
            r.get::<i64, _>("attempts"),
            r.get::<Option<String>, _>("last_error")
        )
    })
    .collect()
}

/// Two instances send one account's burst at once: Gmail never sees more than the three
/// sessions mailgate allows an account, counted across both (each alone would open three).
#[tokio::test]
async fn two_instances_share_an_accounts_three_gmail_sessions() {
    let t = spawn(Db::Postgres).await;
    let key = ready_for_a_burst(&t).await;
    let other = t.another_instance().await;
    const EACH: usize = 300;
    let (a, b) = tokio::join!(
        submit_many(&t.base, &key, 0, EACH),
        submit_many(&other.base, &key, EACH, EACH)
    );
    assert_eq!(a.len() + b.len(), 2 * EACH);
    let reached = deliveries_reach(&t, 2 * EACH, Duration::from_secs(60)).await;
    assert_eq!(reached, 2 * EACH, "not sent: {:?}", unsent(&t).await);
    let deliveries = t.gsim.world().deliveries(0);
    let distinct: std::collections::BTreeSet<_> =
        deliveries.iter().map(|d| d.message_id.clone()).collect();
    assert_eq!(distinct.len(), 2 * EACH, "each message once");
    let peak = t.gsim.world().counters().smtp_peak_sessions[ALICE];
    let by_instance: std::collections::BTreeSet<_> =
        deliveries.iter().map(|d| d.session.clone()).collect();
    eprintln!(
        "{} sessions in all, at most {peak} at once",
        by_instance.len()
    );
    assert!(
        peak <= 3,
        "{peak} Gmail sessions open at once for one account"
    );
    other.stop().await;
    t.finish().await;
}

/// mailgate's daily limit of 5, with two instances sending at once: exactly 5 go, whichever
/// instance sends them; the rest wait for the window.
#[tokio::test]
async fn the_daily_limit_holds_across_instances() {
    let t = spawn(Db::Postgres).await;
    let server = t.sending_as_alice().await;
    t.set_daily_limit(server, 5).await;
    let key = t.api_key().await;
    let other = t.another_instance().await;
    let (a, b) = tokio::join!(
        submit_many(&t.base, &key, 0, 6),
        submit_many(&other.base, &key, 6, 6)
    );
    let ids: Vec<String> = a.into_iter().chain(b).collect();
    // Five go, and every other message waits for the window: held back by the limit itself,
    // not by sends another instance reserved and has not used yet (those come back within
    // seconds).
    let (mut here, mut there) = (t.app.settled.subscribe(), other.app.settled.subscribe());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut reasons = Vec::new();
    loop {
        let mut sent = 0;
        reasons.clear();
        for id in &ids {
            let (record, _) = t.app.message(id).await.unwrap();
            match record.state.code() {
                "sent" => sent += 1,
                "deferred" => reasons.push(record.last_error.unwrap_or_default()),
                _ => {}
            }
        }
        let at_the_limit = reasons
            .iter()
            .filter(|r| r.contains("reached its daily limit (5 of 5 messages"))
            .count();
        if sent + at_the_limit == ids.len() || sent > 5 {
            break;
        }
        tokio::select! {
            _ = here.changed() => {}
            _ = there.changed() => {}
            _ = tokio::time::sleep_until(deadline) => panic!("{sent} sent; deferred: {reasons:?}"),
        }
    }
    assert_eq!(t.gsim.world().deliveries(0).len(), 5, "exactly the limit");
    assert_eq!(reasons.len(), 7, "{reasons:?}");
    other.stop().await;
    t.finish().await;
}

/// Wrong passwords from one address, spread over two instances, meet one budget.
#[tokio::test]
async fn failed_sign_ins_count_across_instances() {
    let t = spawn(Db::Postgres).await;
    t.create_admin().await;
    let other = t.another_instance().await;
    let (guest, csrf) = t.guest_at_login().await;
    let attempt = |base: String, i: usize| {
        guest
            .post(format!("{base}/login"))
            .form(&[
                ("_csrf", csrf.as_str()),
                ("email", format!("guess{i}@example.com").as_str()),
                ("password", "not the password"),
            ])
            .send()
    };
    for i in 0..5 {
        let base = if i % 2 == 0 { &t.base } else { &other.base };
        let status = attempt(base.clone(), i).await.unwrap().status();
        assert_eq!(status, StatusCode::UNAUTHORIZED, "guess {i}");
    }
    for base in [&t.base, &other.base] {
        let status = attempt(base.clone(), 9).await.unwrap().status();
        assert_eq!(
            status,
            StatusCode::TOO_MANY_REQUESTS,
            "the sixth guess, at {base}"
        );
    }
    other.stop().await;
    t.finish().await;
}

/// Behind a load balancer, "Connect your Gmail account" is clicked on one instance and Google
/// sends the browser back to another: the state and the admin's session are in the database,
/// so the second finishes the connection.
#[tokio::test]
async fn google_can_send_the_admin_back_to_another_instance() {
    let t = spawn(Db::Postgres).await;
    let server = t.ready_to_connect().await;
    let other = t.another_instance().await;
    let to_google = t.click_connect(server).await;
    let back = t.consent_at_google(&to_google, ALICE, true).await;
    let path = &back[back.find("/google_gmail/confirm").unwrap()..];
    let done = t.http.get(other.url(path)).send().await.unwrap();
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    let page = t
        .http
        .get(other.url(&format!("/servers/{server}")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Gmail Token Valid"), "{page}");
    other.stop().await;
    t.finish().await;
}

/// Two instances start at the same moment on a new database, each with a key of its own: one
/// key is recorded, and the instance with the other refuses to start (before, the last to write
/// its check won, and the first went on sealing tokens nobody else could open).
#[tokio::test]
async fn two_first_starts_with_different_keys_leave_one_key() {
    let (url, name) = new_postgres_database().await;
    let config = |key: &str| {
        let dir = std::env::temp_dir().join(format!(
            "mailgate-test-{}",
            mailgate::crypto::random_token()
        ));
        let env: std::collections::BTreeMap<String, String> = [
            ("MAILGATE_DATA_DIR", dir.display().to_string()),
            ("MAILGATE_DATABASE_URL", url.clone()),
            ("MAILGATE_SECRET_KEY", key.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        mailgate::config::Config::from_sources(None, &env).unwrap()
    };
    let clock = std::sync::Arc::new(mailgate::clock::OffsetClock::default());
    let (a, b) = tokio::join!(
        mailgate::app::App::open(
            config("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="),
            clock.clone()
        ),
        mailgate::app::App::open(
            config("BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBA="),
            clock.clone()
        )
    );
    let refused: Vec<String> = [&a, &b]
        .iter()
        .filter_map(|r| r.as_ref().err().map(|e| e.to_string()))
        .collect();
    assert_eq!(refused.len(), 1, "exactly one starts: {refused:?}");
    assert!(refused[0].contains("MAILGATE_SECRET_KEY"), "{}", refused[0]);
    for app in [a, b].into_iter().flatten() {
        app.store.close().await;
    }
    drop_postgres_database(&name).await;
}
