//! Each accepted message is sent once. The exceptions are the cases mailgate cannot know about
//! (the final dot went out and no answer came): those are counted, recorded as "outcome unknown"
//! and shown, never silent.

use std::collections::BTreeMap;
use std::process::Stdio;

use reqwest::StatusCode;
use serde_json::json;

use crate::support::*;

fn fault(stage: gsim::SmtpStage, close: bool, hold: bool, count: u32) -> gsim::SmtpFault {
    gsim::SmtpFault {
        stage,
        reply: None,
        close,
        hold,
        count,
        account: None,
    }
}

async fn queued(t: &TestApp, key: &str, subject: &str) -> String {
    let (status, body) = t
        .send(
            key,
            &json!({"from": ALICE, "to": [BOB], "subject": subject, "text": "once"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    body["id"].as_str().unwrap().to_string()
}

/// Message-ID -> how many times gsim received it.
fn received(t: &TestApp) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for d in t.gsim.world().deliveries(0) {
        *counts.entry(d.message_id.unwrap_or_default()).or_default() += 1;
    }
    counts
}

async fn metric(t: &TestApp, line: &str) -> u64 {
    let text = t.get("/metrics").await.body;
    text.lines()
        .find_map(|l| l.strip_prefix(line)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {line} in /metrics:\n{text}"))
}

/// A slow Gmail holds three final dots while seven more messages wait in the lanes; mailgate's
/// clock then runs past the lease. The leases in hand are renewed, nothing is claimed twice, and
/// every message arrives once with one attempt.
#[tokio::test]
async fn a_backlog_that_outlives_the_lease_is_still_sent_once() {
    let t = spawn(Db::Sqlite).await;
    t.sending_as_alice().await;
    let key = t.api_key().await;
    t.gsim
        .world()
        .arm_smtp_fault(fault(gsim::SmtpStage::DataEnd, false, true, 3));
    let mut ids = Vec::new();
    for i in 0..10 {
        ids.push(queued(&t, &key, &format!("backlog {i}")).await);
    }
    t.gsim.world().wait_held(3).await;

    // Past the 600-second lease, then two passes over the queue while the dots are held.
    let mut passes = t.app.passes.subscribe();
    passes.borrow_and_update();
    t.advance_and_wake(700);
    for _ in 0..2 {
        passes.changed().await.unwrap();
    }
    t.gsim.world().release_held();

    for id in &ids {
        let sent = t.wait_state(id, "sent").await;
        assert_eq!(sent.attempts, 1, "{id}");
        assert_eq!(sent.unknown_outcomes, 0);
    }
    let counts = received(&t);
    assert_eq!(counts.len(), 10);
    assert!(
        counts.values().all(|n| *n == 1),
        "each message arrived once: {counts:?}"
    );
    t.finish().await;
}

/// Gmail takes the message and the connection drops before its 250. Sending it again at once
/// (as for a stale pooled session) would be a silent duplicate: instead the attempt is recorded
/// as "outcome unknown", counted, shown, and the message retried later.
#[tokio::test]
async fn a_drop_after_the_final_dot_is_an_unknown_outcome_not_a_silent_resend() {
    let t = spawn(Db::Sqlite).await;
    t.sending_as_alice().await;
    let key = t.api_key().await;
    let first = queued(&t, &key, "opens the session").await;
    t.wait_state(&first, "sent").await;

    // The pooled session takes the next message, and drops after delivering it.
    t.gsim
        .world()
        .arm_smtp_fault(fault(gsim::SmtpStage::Delivered, true, false, 1));
    let id = queued(&t, &key, "dropped after the dot").await;
    let deferred = t.wait_state(&id, "deferred").await;
    assert_eq!(deferred.unknown_outcomes, 1);
    assert!(
        deferred
            .last_error
            .as_deref()
            .unwrap()
            .starts_with("outcome unknown"),
        "{:?}",
        deferred.last_error
    );
    assert_eq!(
        received(&t).get(&deferred.message_id),
        Some(&1),
        "Gmail has it once; nothing was resent on the spot"
    );
    let (_, attempts) = t.app.message(&id).await.unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!(
        (attempts[0].outcome.as_str(), attempts[0].stage.as_str()),
        ("unknown", "data_end")
    );
    assert_eq!(
        metric(
            &t,
            "mailgate_unknown_outcomes_total{cause=\"connection_lost\"}"
        )
        .await,
        1
    );
    t.sign_in().await;
    let page = t.visit(&format!("/emails/{id}")).await;
    assert!(page.has("Possibly sent"), "{}", page.body);
    assert!(page.has("may have received it twice"), "{}", page.body);

    // Retried after the backoff: the one duplicate mailgate said might happen.
    t.advance_and_wake(deferred.next_attempt_at - t.app.now() + 1);
    let sent = t.wait_state(&id, "sent").await;
    assert_eq!(sent.unknown_outcomes, 1, "still flagged once sent");
    assert_eq!(received(&t).get(&sent.message_id), Some(&2));
    let list = t.visit("/emails").await;
    assert!(list.has("possibly sent twice"), "{}", list.body);
    t.finish().await;
}

/// mailgate dies after the final dot went out and before Gmail's 250 was recorded. On restart
/// the message is marked "outcome unknown" (counted, shown) and sent again, rather than re-queued
/// as if nothing had happened.
#[tokio::test]
async fn a_crash_between_the_final_dot_and_the_commit_is_counted_on_restart() {
    let mut t = spawn(Db::Sqlite).await;
    t.sending_as_alice().await;
    let key = t.api_key().await;
    t.stop_service().await;
    let env = t.process_env();
    let first = serve(&env, Stdio::null()).await;
    t.gsim
        .world()
        .arm_smtp_fault(fault(gsim::SmtpStage::Delivered, true, true, 1));
    let id = queued(&t, &key, "in flight at the crash").await;
    // Gmail has the message; its 250 is held back; then mailgate is killed.
    t.gsim.world().wait_held(1).await;
    assert!(!kill(first).await.success());
    t.gsim.world().release_held();
    let message_id = format!("<{id}@gmail.com>");
    assert_eq!(received(&t).get(&message_id), Some(&1));

    let mut env = env;
    env.push(("MAILGATE_LOG", "mailgate=debug".into()));
    env.push(("MAILGATE_LOG_FORMAT", "json".into()));
    let mut second = serve(&env, Stdio::piped()).await;
    // The second process says when it has recorded the second attempt (and its logs are read
    // to the end, so it never blocks on a full pipe).
    let logs = std::io::BufReader::new(second.stderr.take().unwrap());
    let (found, recorded) = tokio::sync::oneshot::channel();
    let wanted = id.clone();
    tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        let mut found = Some(found);
        for line in logs.lines().map_while(Result::ok) {
            if line.contains("attempt recorded")
                && line.contains(&wanted)
                && line.contains("sent")
                && let Some(tx) = found.take()
            {
                let _ = tx.send(());
            }
        }
    });
    tokio::time::timeout(std::time::Duration::from_secs(20), recorded)
        .await
        .expect("the second attempt is recorded")
        .unwrap();
    assert_eq!(received(&t).get(&message_id), Some(&2), "sent again");
    let status: serde_json::Value = t
        .http
        .get(t.url(&format!("/api/v1/messages/{id}")))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let outcomes: Vec<&str> = status["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["unknown", "sent"], "{status}");
    assert_eq!(status["unknown_outcomes"], 1, "{status}");
    assert_eq!(
        metric(&t, "mailgate_unknown_outcomes_total{cause=\"restart\"}").await,
        1
    );
    assert!(stop(second).await.success());
    t.finish().await;
}
