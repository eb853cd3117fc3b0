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
