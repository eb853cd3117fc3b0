//! The Emails pages and the dashboard: what an admin sees of the queue, and Retry and Cancel.

use reqwest::StatusCode;
use serde_json::json;

use crate::support::*;

async fn send(t: &TestApp, key: &str, subject: &str) -> String {
    let (status, body) = t
        .send(
            key,
            &json!({"from": ALICE, "to": [BOB], "subject": subject, "text": "x"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    body["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn the_list_filters_searches_and_links_to_each_message() {
    let t = spawn(Db::Sqlite).await;
    t.sending_as_alice().await;
    let key = t.api_key().await;
    let invoice = send(&t, &key, "Invoice 1042").await;
    t.wait_state(&invoice, "sent").await;
    // Twice: the first 421 only retires the pooled session; the fresh one gets the second.
    t.gsim.world().arm_smtp_fault(gsim::SmtpFault {
        stage: gsim::SmtpStage::Mail,
        reply: Some("421 4.7.0 Try again later, closing connection.".into()),
        close: true,
        hold: false,
        count: 2,
        account: None,
    });
    let reminder = send(&t, &key, "Reminder").await;
    t.wait_state(&reminder, "deferred").await;

    let all = t.visit("/emails").await;
    assert!(all.has("Invoice 1042") && all.has("Reminder"));
    let deferred = t.visit("/emails?state=deferred").await;
    assert!(deferred.has("Reminder") && !deferred.has("Invoice 1042"));
    let searched = t.visit("/emails?q=invoice").await;
    assert!(searched.has("Invoice 1042") && !searched.has("Reminder"));
    let by_recipient = t.visit(&format!("/emails?q={BOB}")).await;
    assert!(by_recipient.has("Invoice 1042") && by_recipient.has("Reminder"));
    let today = time::OffsetDateTime::from_unix_timestamp(t.app.now())
        .unwrap()
        .date();
    let tomorrow = today.next_day().unwrap();
    assert!(
        t.visit(&format!("/emails?since={today}"))
            .await
            .has("Reminder")
    );
    assert!(
        !t.visit(&format!("/emails?since={tomorrow}"))
            .await
            .has("Reminder")
    );

    let detail = t.visit(&format!("/emails/{reminder}")).await;
    assert!(detail.has("421 4.7.0 Try again later, closing connection."));
    assert!(detail.has("next attempt in"));
    assert!(detail.has("Retry") && detail.has("Cancel"));
    let sent = t.visit(&format!("/emails/{invoice}")).await;
    assert!(sent.has("250 2.0.0 OK"));
    assert!(!sent.has(">Retry<") && !sent.has(">Cancel<"));
    t.finish().await;
}

#[tokio::test]
async fn retry_sends_a_deferred_message_now_and_cancel_stops_one() {
    let t = spawn(Db::Sqlite).await;
    t.sending_as_alice().await;
    let key = t.api_key().await;
    t.gsim.world().arm_smtp_fault(gsim::SmtpFault {
        stage: gsim::SmtpStage::Mail,
        reply: Some("451 4.3.0 Mail server temporarily rejected message. {id} - gsmtp".into()),
        close: false,
        hold: false,
        count: 2,
        account: None,
    });
    let a = send(&t, &key, "retry me").await;
    let b = send(&t, &key, "cancel me").await;
    t.wait_state(&a, "deferred").await;
    t.wait_state(&b, "deferred").await;
    let retried = t.submit(&format!("/emails/{a}/retry"), &[]).await;
    assert_eq!(
        retried.location.as_deref(),
        Some(format!("/emails/{a}").as_str())
    );
    t.wait_state(&a, "sent").await;
    let cancelled = t.submit(&format!("/emails/{b}/cancel"), &[]).await;
    assert_eq!(cancelled.status, StatusCode::SEE_OTHER);
    let page = t.visit(&format!("/emails/{b}")).await;
    assert!(page.has("Cancelled: it will not be sent."));
    assert!(page.has("state-cancelled"));
    // A sent message is neither retried nor cancelled.
    let refused = t.submit(&format!("/emails/{a}/cancel"), &[]).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(refused.has("A sent message cannot be cancelled."));
    t.advance_and_wake(7200);
    t.sign_in().await;
    let (record, _) = t.app.message(&b).await.unwrap();
    assert_eq!(record.state.code(), "cancelled", "never picked up again");
    t.finish().await;
}

#[tokio::test]
async fn the_dashboard_counts_the_queue_and_charts_the_last_day() {
    let t = spawn(Db::Sqlite).await;
    t.sending_as_alice().await;
    let key = t.api_key().await;
    for i in 0..3 {
        let id = send(&t, &key, &format!("m{i}")).await;
        t.wait_state(&id, "sent").await;
    }
    let page = t.visit("/").await;
    assert!(
        page.has("<span class=\"n\">3</span> <span class=\"badge state-sent\">sent</span>"),
        "{}",
        page.body
    );
    assert!(page.has("id=\"hourly-chart\""));
    assert!(page.has("3 sent</title>"), "a bar for this hour");
    assert!(page.has("peak 3."));
    t.finish().await;
}

/// Lets the delivery loop run passes until `done` holds (it purges on its own schedule).
pub async fn until_a_pass_makes(t: &TestApp, done: impl AsyncFn() -> bool) {
    let mut passes = t.app.passes.subscribe();
    t.advance_and_wake(0);
    tokio::time::timeout(std::time::Duration::from_secs(20), async {
        while !done().await {
            passes.changed().await.unwrap();
        }
    })
    .await
    .expect("the delivery loop purged");
}

#[tokio::test]
async fn bodies_then_records_of_finished_messages_are_deleted_after_their_periods() {
    let t = spawn_with(Db::Sqlite, |env| {
        env.insert("MAILGATE_RETENTION_DAYS".into(), "2".into());
        env.insert("MAILGATE_HISTORY_DAYS".into(), "5".into());
    })
    .await;
    t.sending_as_alice().await;
    let key = t.api_key().await;
    let sent = send(&t, &key, "kept a while").await;
    t.wait_state(&sent, "sent").await;
    t.gsim.world().arm_smtp_fault(gsim::SmtpFault {
        stage: gsim::SmtpStage::Mail,
        reply: Some("451 4.3.0 Mail server temporarily rejected message. {id} - gsmtp".into()),
        close: false,
        hold: false,
        count: 1,
        account: None,
    });
    let cancelled = send(&t, &key, "cancelled").await;
    t.wait_state(&cancelled, "deferred").await;
    t.app.cancel_message(&cancelled).await.unwrap();
    let queued_later = send(&t, &key, "still going").await;
    t.wait_state(&queued_later, "sent").await;
    let body = async |id: &str| t.app.store.message_body(id).await.unwrap().is_some();
    assert!(body(&sent).await && body(&cancelled).await);

    t.clock.advance(2 * 86_400 + 3600);
    until_a_pass_makes(&t, async || !body(&sent).await && !body(&cancelled).await).await;
    t.sign_in().await;
    let page = t.visit(&format!("/emails/{sent}")).await;
    assert!(page.has("content deleted after the retention period"));
    assert!(page.has("kept a while"), "the record stays");

    t.clock.advance(3 * 86_400);
    let gone = async |id: &str| t.app.message(id).await.is_err();
    until_a_pass_makes(&t, async || gone(&sent).await && gone(&cancelled).await).await;
    let attempts: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM attempts")
        .fetch_one(t.app.store.pool())
        .await
        .unwrap();
    assert_eq!(attempts, 0, "their attempts went with them");
    t.finish().await;
}
