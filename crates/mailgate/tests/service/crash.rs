//! The durability promise, tested the hard way: `mailgate serve` is killed with SIGKILL in the
//! middle of a burst, restarted, and every message it accepted must reach gsim. A message can go
//! twice only if its final dot had gone out at the kill (mailgate then counts it as "outcome
//! unknown"); the test counts and reports those.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use reqwest::StatusCode;
use serde_json::json;
use sqlx::Row;
use tokio::sync::Mutex;

use crate::support::*;

const BURST: usize = 2400;
const KILL_AFTER: usize = 1200;
const SENDERS: usize = 16;

fn message(i: usize) -> serde_json::Value {
    json!({"from": ALICE, "to": [BOB], "subject": format!("burst {i}"), "text": format!("message {i} of the burst")})
}

/// Sends messages `todo` with SENDERS concurrent clients; sends `signal` to `child` once
/// `after` submissions were accepted. Returns burst index -> accepted id.
async fn burst(
    t: &TestApp,
    key: &str,
    todo: Vec<usize>,
    kill: Option<(usize, u32, &'static str)>,
) -> BTreeMap<usize, String> {
    let todo = Arc::new(Mutex::new(todo));
    let accepted = Arc::new(Mutex::new(BTreeMap::new()));
    let count = Arc::new(AtomicUsize::new(0));
    let mut senders = tokio::task::JoinSet::new();
    for _ in 0..SENDERS {
        let (todo, accepted, count) = (todo.clone(), accepted.clone(), count.clone());
        let (url, key, http) = (t.url("/api/v1/messages"), key.to_string(), browser());
        senders.spawn(async move {
            loop {
                let Some(i) = todo.lock().await.pop() else {
                    break;
                };
                let response = http
                    .post(&url)
                    .bearer_auth(&key)
                    .header("Idempotency-Key", format!("burst-{i}"))
                    .json(&message(i))
                    .send()
                    .await;
                let Ok(response) = response else { break };
                if response.status() != StatusCode::ACCEPTED {
                    break;
                }
                let body: serde_json::Value = response.json().await.unwrap();
                accepted
                    .lock()
                    .await
                    .insert(i, body["id"].as_str().unwrap().to_string());
                let n = count.fetch_add(1, Ordering::SeqCst) + 1;
                if let Some((after, pid, signal)) = kill
                    && n == after
                {
                    Command::new("kill")
                        .args([signal, &pid.to_string()])
                        .status()
                        .unwrap();
                }
            }
        });
    }
    senders.join_all().await;
    Arc::try_unwrap(accepted).unwrap().into_inner()
}

#[tokio::test]
async fn sigkill_in_the_middle_of_a_burst_loses_no_accepted_message() {
    let mut t = spawn(Db::Sqlite).await;
    let key = ready_for_a_burst(&t).await;
    t.stop_service().await;
    let env = t.process_env();

    // Burst against a real process, killed halfway.
    let first = serve(&env, Stdio::null()).await;
    let accepted_before = burst(
        &t,
        &key,
        (0..BURST).rev().collect(),
        Some((KILL_AFTER, first.id(), "-KILL")),
    )
    .await;
    let status = wait(first).await;
    assert!(!status.success(), "killed, not stopped");
    assert!(
        accepted_before.len() >= KILL_AFTER,
        "{} accepted before the kill",
        accepted_before.len()
    );
    let delivered_at_kill = t.gsim.world().deliveries(0).len();

    // What a worker held at the kill, and among those what had gone past its final dot: the only
    // messages allowed to go twice (and then counted as "outcome unknown").
    let pool = sqlx::AnyPool::connect(&t.database_url).await.unwrap();
    let leased = |sql: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query(sql)
                .fetch_all(&pool)
                .await
                .unwrap()
                .iter()
                .map(|r| r.try_get::<String, _>("id").unwrap())
                .collect::<BTreeSet<String>>()
        }
    };
    let in_flight = leased("SELECT id FROM messages WHERE state = 'sending'").await;
    let past_dot =
        leased("SELECT id FROM messages WHERE state = 'sending' AND dot_at IS NOT NULL").await;
    pool.close().await;

    // Restart; resend what was not acknowledged, with the same Idempotency-Keys.
    let second = serve(&env, Stdio::null()).await;
    let missing: Vec<usize> = (0..BURST)
        .filter(|i| !accepted_before.contains_key(i))
        .collect();
    let replayed = burst(&t, &key, missing, None).await;
    let mut accepted = accepted_before.clone();
    accepted.extend(replayed);
    assert_eq!(
        accepted.len(),
        BURST,
        "every message of the burst accepted once"
    );

    // Wait for gsim to have them all, woken by each delivery.
    let expected: BTreeSet<String> = accepted
        .values()
        .map(|id| format!("<{id}@gmail.com>"))
        .collect();
    let mut changes = t.gsim.world().subscribe_changes();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(120);
    let counts = loop {
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for d in t.gsim.world().deliveries(0) {
            *counts.entry(d.message_id.unwrap_or_default()).or_default() += 1;
        }
        if expected.iter().all(|m| counts.contains_key(m)) {
            break counts;
        }
        let missing = expected.iter().filter(|m| !counts.contains_key(*m)).count();
        assert!(
            tokio::time::timeout_at(deadline, changes.changed())
                .await
                .is_ok(),
            "{missing} accepted messages never arrived"
        );
    };
    let duplicates: Vec<&String> = counts
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(m, _)| m)
        .collect();
    let stray: Vec<&&String> = duplicates
        .iter()
        .filter(|m| {
            !past_dot
                .iter()
                .any(|id| format!("<{id}@gmail.com>") == ***m)
        })
        .collect();
    println!(
        "crash test: {BURST} accepted ({} before the kill, {} after), {delivered_at_kill} delivered before the kill, \
         {} in flight at the kill ({} past the final dot), {} delivered twice (all past the dot: {}), {} unexpected",
        accepted_before.len(),
        BURST - accepted_before.len(),
        in_flight.len(),
        past_dot.len(),
        duplicates.len(),
        stray.is_empty(),
        counts.len() - expected.len(),
    );
    assert!(
        stray.is_empty(),
        "duplicates of messages whose final dot had not gone out: {stray:?}"
    );
    assert_eq!(
        counts.len(),
        expected.len(),
        "nothing delivered that was not accepted"
    );

    assert!(stop(second).await.success(), "a graceful stop");
    t.finish().await;
}

/// The graceful stop while delivery is in full flow, settlements being committed off the
/// sessions' path: SIGTERM in the middle of a burst. mailgate exits cleanly; every message Gmail
/// has is recorded as sent (no settlement lost between Gmail's 250 and the exit), none is left
/// "sending", and every acknowledged message is in the queue.
#[tokio::test]
async fn sigterm_in_the_middle_of_a_burst_records_every_message_that_went() {
    let mut t = spawn(Db::Sqlite).await;
    let key = ready_for_a_burst(&t).await;
    t.stop_service().await;
    let env = t.process_env();
    let process = serve(&env, Stdio::null()).await;
    let pid = process.id();
    let accepted = burst(
        &t,
        &key,
        (0..BURST).rev().collect(),
        Some((KILL_AFTER, pid, "-TERM")),
    )
    .await;
    assert!(wait(process).await.success(), "a graceful stop");
    assert!(accepted.len() >= KILL_AFTER, "{} accepted", accepted.len());

    let pool = sqlx::AnyPool::connect(&t.database_url).await.unwrap();
    let states: BTreeMap<String, String> = sqlx::query("SELECT id, state FROM messages")
        .fetch_all(&pool)
        .await
        .unwrap()
        .iter()
        .map(|r| (r.try_get("id").unwrap(), r.try_get("state").unwrap()))
        .collect();
    pool.close().await;
    let sending: Vec<&String> = states
        .iter()
        .filter(|(_, s)| *s == "sending")
        .map(|(id, _)| id)
        .collect();
    assert!(
        sending.is_empty(),
        "left sending after a graceful stop: {sending:?}"
    );
    for id in accepted.values() {
        assert!(
            states.contains_key(id),
            "acknowledged {id} is not in the queue"
        );
    }
    let delivered = t.gsim.world().deliveries(0);
    assert!(!delivered.is_empty(), "delivery was under way at the stop");
    for d in &delivered {
        let message_id = d.message_id.clone().unwrap_or_default();
        let id = message_id
            .trim_start_matches('<')
            .trim_end_matches("@gmail.com>");
        assert_eq!(
            states.get(id).map(String::as_str),
            Some("sent"),
            "{message_id} reached Gmail but is not recorded as sent"
        );
    }
    println!(
        "graceful stop: {} accepted, {} delivered before the exit, all recorded",
        accepted.len(),
        delivered.len()
    );
    t.finish().await;
}
