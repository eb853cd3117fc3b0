//! Incoming Mail Servers against gsim's IMAP: every message in the folder reaches the
//! application's webhook once, signed, in order, through failures, restarts and UIDVALIDITY
//! changes.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use secrecy::ExposeSecret;

use crate::support::*;
use crate::webhook_sink::{Answer, Delivery, Sink};

/// A message in Alice's INBOX at gsim, as Gmail would hold it.
pub fn mail(t: &TestApp, n: usize, seen: bool) -> u32 {
    let raw = format!(
        "From: Bob <{BOB}>\r\nTo: {ALICE}\r\nSubject: in {n}\r\nMessage-ID: <in-{n}@example.com>\r\nDate: Sun, 6 Dec 2026 10:00:00 +0000\r\n\r\nmessage {n}\r\n"
    );
    let flags: BTreeSet<String> = if seen {
        ["\\Seen".to_string()].into()
    } else {
        BTreeSet::new()
    };
    t.gsim
        .world()
        .append_message(ALICE, "INBOX", raw.into_bytes(), flags)
        .unwrap()
}

/// An Incoming Mail Server for Alice's INBOX, not confirmed yet, posting to `webhook` (or API
/// only); the sink learns its secret. Returns its id.
pub async fn incoming_server(
    t: &TestApp,
    name: &str,
    webhook: Option<&Sink>,
    mark_seen: bool,
) -> i64 {
    let (id, secret) = t
        .app
        .create_incoming(&mailgate::domain::incoming::IncomingDraft {
            name: name.into(),
            username: ALICE.into(),
            webhook_url: webhook.map(|s| s.url.clone()).unwrap_or_default(),
            mark_seen,
            ..Default::default()
        })
        .await
        .unwrap();
    if let Some(sink) = webhook {
        sink.set_secret(secret.expose_secret());
    }
    id
}

/// Alice connected, and an Incoming Mail Server for her INBOX posting to `sink`, tested and
/// confirmed. Returns its id.
pub async fn receiving(t: &TestApp, sink: &Sink) -> i64 {
    t.sending_as_alice().await;
    let id = incoming_server(t, "Support", Some(sink), false).await;
    t.app.test_and_confirm(id).await.unwrap();
    id
}

/// One message in the INBOX, `receiving`, and the webhook has acknowledged it. Returns the
/// server's id.
async fn first_message_handed_over(t: &TestApp, sink: &Sink) -> i64 {
    mail(t, 0, false);
    let id = receiving(t, sink).await;
    sink.wait_until(Duration::from_secs(20), "the first", |seen| {
        acknowledged(seen).len() == 1
    })
    .await;
    id
}

/// Waits (on the inbox's progress signal) until the server's status code passes `test`, and
/// returns the status.
async fn status_when(
    t: &TestApp,
    id: i64,
    what: &str,
    test: impl Fn(&str) -> bool,
) -> mailgate::domain::incoming::IncomingStatus {
    let mut progress = t.app.inbox_progress.subscribe();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let server = t.app.incoming_server(id).await.unwrap();
        if test(server.status.code()) {
            return server.status;
        }
        tokio::time::timeout_at(deadline, progress.changed())
            .await
            .expect(what)
            .unwrap();
    }
}

/// How many times each subject reached the webhook and was answered 2xx.
fn acknowledged(seen: &[Delivery]) -> BTreeMap<String, usize> {
    let mut count = BTreeMap::new();
    for d in seen.iter().filter(|d| d.answered == Answer::Ok) {
        *count.entry(d.subject().to_string()).or_default() += 1;
    }
    count
}

#[tokio::test]
async fn five_hundred_messages_reach_the_webhook_once_each_signed() {
    let t = spawn(Db::Sqlite).await;
    let sink = Sink::start().await;
    // Some already read on a phone: Flectra's UNSEEN search would skip them.
    for n in 0..250 {
        mail(&t, n, n % 3 == 0);
    }
    receiving(&t, &sink).await;
    // More while the fetcher runs.
    for n in 250..500 {
        mail(&t, n, n % 5 == 0);
        if n % 50 == 0 {
            tokio::task::yield_now().await;
        }
    }
    let seen = sink
        .wait_until(Duration::from_secs(60), "500 messages", |seen| {
            acknowledged(seen).len() == 500
        })
        .await;
    let counts = acknowledged(&seen);
    assert!(counts.values().all(|n| *n == 1), "each once");
    assert!(seen.iter().all(|d| d.signature_ok), "every request signed");
    assert_eq!(
        t.app.store.inbox_after(None, 1000).await.unwrap().len(),
        500
    );
    // Nothing is marked \Seen unless asked: the mailbox is as the user left it.
    let mailbox = t.gsim.world().mailbox(ALICE, "INBOX").unwrap();
    let seen_flags = mailbox["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["flags"].to_string().contains("Seen"))
        .count();
    assert_eq!(
        seen_flags,
        (0..250).filter(|n| n % 3 == 0).count() + (250..500).filter(|n| n % 5 == 0).count()
    );
    t.finish().await;
}

#[tokio::test]
async fn idle_hands_new_mail_to_the_webhook_within_two_seconds() {
    let t = spawn(Db::Sqlite).await;
    let sink = Sink::start().await;
    mail(&t, 0, false);
    receiving(&t, &sink).await;
    sink.wait_until(Duration::from_secs(20), "the first message", |seen| {
        acknowledged(seen).len() == 1
    })
    .await;
    let mut slowest = Duration::ZERO;
    for n in 1..=3 {
        let appended = Instant::now();
        mail(&t, n, false);
        sink.wait_until(Duration::from_secs(10), "the new message", |seen| {
            acknowledged(seen).contains_key(&format!("in {n}"))
        })
        .await;
        slowest = slowest.max(appended.elapsed());
    }
    eprintln!("IDLE: new mail at the webhook within {slowest:?}");
    assert!(slowest < Duration::from_secs(2), "{slowest:?}");
    t.finish().await;
}

/// The webhook answers 500 for a while: nothing is lost, nothing is skipped, and once it
/// recovers every message arrives, in the folder's order, once.
#[tokio::test]
async fn a_failing_webhook_gets_everything_in_order_once_it_recovers() {
    let t = spawn(Db::Sqlite).await;
    let sink = Sink::start().await;
    sink.answer(Answer::Fail);
    for n in 0..20 {
        mail(&t, n, false);
    }
    let server = receiving(&t, &sink).await;
    for failures in 1..=3 {
        sink.wait_until(Duration::from_secs(20), "a failed attempt", |seen| {
            seen.len() >= failures
        })
        .await;
        // Past the backoff, by mailgate's clock.
        t.clock.advance(3600);
    }
    let stored = t.app.store.inbox_after(None, 100).await.unwrap();
    assert_eq!(
        stored.len(),
        20,
        "fetched and stored while the webhook fails"
    );
    let first = t.app.store.webhook_attempts(&stored[0].id).await.unwrap();
    assert!(
        first.iter().all(|a| a.status == Some(500)
            && a.error.as_deref() == Some("the webhook answered 500 Internal Server Error")),
        "{first:?}"
    );
    assert!(
        sink.seen().iter().all(|d| d.subject() == "in 0"),
        "the messages behind the first wait for it"
    );
    sink.answer(Answer::Ok);
    t.clock.advance(3600);
    let seen = sink
        .wait_until(Duration::from_secs(20), "all 20", |seen| {
            acknowledged(seen).len() == 20
        })
        .await;
    let delivered: Vec<i64> = seen
        .iter()
        .filter(|d| d.answered == Answer::Ok)
        .map(Delivery::uid)
        .collect();
    let mut sorted = delivered.clone();
    sorted.sort_unstable();
    assert_eq!(delivered, sorted, "in the folder's order");
    assert!(acknowledged(&seen).values().all(|n| *n == 1));
    let status = t.app.incoming_server(server).await.unwrap();
    assert_eq!(status.status.code(), "ok");
    t.finish().await;
}

/// Gmail renumbers the folder (a new UIDVALIDITY): mailgate fetches it again and stores only
/// what it did not have.
#[tokio::test]
async fn a_uidvalidity_change_refetches_without_duplicates() {
    let t = spawn(Db::Sqlite).await;
    let sink = Sink::start().await;
    for n in 0..5 {
        mail(&t, n, false);
    }
    receiving(&t, &sink).await;
    sink.wait_until(Duration::from_secs(20), "the first five", |seen| {
        acknowledged(seen).len() == 5
    })
    .await;
    t.gsim.world().renumber_mailbox(ALICE, "INBOX").unwrap();
    mail(&t, 5, false);
    let seen = sink
        .wait_until(Duration::from_secs(20), "the sixth", |seen| {
            acknowledged(seen).len() == 6
        })
        .await;
    assert!(
        acknowledged(&seen).values().all(|n| *n == 1),
        "{:?}",
        acknowledged(&seen)
    );
    let stored = t.app.store.inbox_after(None, 100).await.unwrap();
    assert_eq!(stored.len(), 6);
    let validities: BTreeSet<i64> = stored.iter().map(|m| m.uidvalidity).collect();
    assert_eq!(validities.len(), 2, "the sixth under the new UIDVALIDITY");
    t.finish().await;
}

/// "New webhook secret": shown once on the page, and the very next request is signed with it.
#[tokio::test]
async fn a_new_webhook_secret_signs_the_next_request() {
    let t = spawn(Db::Sqlite).await;
    let sink = Sink::start().await;
    let id = first_message_handed_over(&t, &sink).await;
    let page = t.submit(&format!("/incoming/{id}/secret"), &[]).await;
    assert_eq!(page.status, reqwest::StatusCode::OK, "{}", page.body);
    let secret = hidden_text(&page.body, "webhook-secret-value");
    assert!(secret.starts_with("mgw_"));
    sink.set_secret(&secret);
    mail(&t, 1, false);
    let seen = sink
        .wait_until(Duration::from_secs(20), "the second", |seen| {
            acknowledged(seen).contains_key("in 1")
        })
        .await;
    let second = seen.iter().find(|d| d.subject() == "in 1").unwrap();
    assert!(second.signature_ok, "signed with the new secret");
    assert!(
        !t.visit(&format!("/incoming/{id}")).await.has(&secret),
        "shown once"
    );
    t.finish().await;
}

/// A Gmail label with letters beyond ASCII ("Aufträge") is read like INBOX: its name travels in
/// IMAP's modified UTF-7, and the message arrives with the label as people see it.
#[tokio::test]
async fn a_label_with_accents_is_fetched() {
    let t = spawn(Db::Sqlite).await;
    let sink = Sink::start().await;
    t.sending_as_alice().await;
    let raw = format!(
        "From: <{BOB}>\r\nTo: {ALICE}\r\nSubject: Bestellung 1\r\nMessage-ID: <b1@example.com>\r\n\r\nbitte\r\n"
    );
    t.gsim
        .world()
        .append_message(ALICE, "Aufträge", raw.into_bytes(), BTreeSet::new())
        .unwrap();
    let (id, secret) = t
        .app
        .create_incoming(&mailgate::domain::incoming::IncomingDraft {
            name: "Orders".into(),
            username: ALICE.into(),
            folder: "Aufträge".into(),
            webhook_url: sink.url.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    sink.set_secret(secret.expose_secret());
    let report = t.app.test_and_confirm(id).await.unwrap();
    assert_eq!((report.folder.as_str(), report.messages), ("Aufträge", 1));
    let seen = sink
        .wait_until(Duration::from_secs(20), "the order", |seen| {
            acknowledged(seen).contains_key("Bestellung 1")
        })
        .await;
    assert_eq!(seen[0].json["folder"], "Aufträge");
    t.finish().await;
}

/// A revoked Google token: the incoming server says "Reconnect needed" (no traceback);
/// reconnecting resumes from the last UID fetched, repeating nothing.
#[tokio::test]
async fn a_revoked_token_says_reconnect_needed_and_reconnecting_resumes() {
    let t = spawn(Db::Sqlite).await;
    let sink = Sink::start().await;
    let server = first_message_handed_over(&t, &sink).await;
    let refresh = t.refresh_token_at_google(ALICE);
    t.gsim.world().revoke_token(&refresh).unwrap();
    // Gmail ends idle sessions after 200 ms from now on: new mail ends the IDLE under way, the
    // next one is cut, and the next login finds the token revoked.
    t.gsim.world().patch_imap_settings(gsim::ImapSettingsPatch {
        idle_timeout_ms: Some(200),
        ..Default::default()
    });
    mail(&t, 1, false);
    let status = status_when(&t, server, "the status turns to Reconnect needed", |code| {
        code == "reconnect"
    })
    .await;
    assert!(
        status.label().starts_with("Reconnect needed: "),
        "{}",
        status.label()
    );
    let page = t.visit(&format!("/incoming/{server}")).await;
    assert!(page.has("Reconnect needed"), "{}", page.body);
    assert!(!page.has("Traceback") && !page.has("imaplib"));

    t.gsim.world().patch_imap_settings(gsim::ImapSettingsPatch {
        idle_timeout_ms: Some(1_800_000),
        ..Default::default()
    });
    mail(&t, 2, false);
    let outgoing = t.app.store.list_servers().await.unwrap()[0].id;
    assert_eq!(
        t.connect(outgoing, ALICE).await.status,
        reqwest::StatusCode::SEE_OTHER
    );
    let seen = sink
        .wait_until(
            Duration::from_secs(20),
            "the message after the reconnect",
            |seen| acknowledged(seen).contains_key("in 2"),
        )
        .await;
    assert_eq!(acknowledged(&seen).len(), 3);
    assert!(
        acknowledged(&seen).values().all(|n| *n == 1),
        "nothing repeated"
    );
    t.finish().await;
}

/// A mailbox that only receives: no outgoing server. "Connect your Gmail account" on the
/// incoming server's own page goes to Google and back there; another account is refused, with
/// "Connect again" on the same page; then Test & Confirm fetches, and "Disconnect" is there too.
#[tokio::test]
async fn an_incoming_only_mailbox_connects_from_its_own_page() {
    let t = spawn(Db::Sqlite).await;
    t.create_admin().await;
    t.save_credentials().await;
    // Bob is not a test user of the Testing app; a public app lets him reach the consent.
    t.publish_client();
    mail(&t, 0, false);
    let sink = Sink::start().await;
    let id = incoming_server(&t, "Support", Some(&sink), false).await;
    let connect = format!("action=\"/incoming/{id}/connect\"");
    let page = t.visit(&format!("/incoming/{id}")).await;
    assert!(
        page.has(&connect) && page.has("Connect your Gmail account"),
        "{}",
        page.body
    );

    // A round trip that never came back (Google's window closed): the page says so.
    start_connect(&t, id).await;
    let page = t.visit(&format!("/incoming/{id}")).await;
    assert!(
        page.has("id=\"unfinished-connect\"") && page.has("did not come back from Google"),
        "{}",
        page.body
    );

    let back = t
        .consent_at_google(&start_connect(&t, id).await, BOB, true)
        .await;
    let refused = t.get(&back).await;
    assert_eq!(refused.status, reqwest::StatusCode::BAD_REQUEST);
    assert!(
        refused.has(&format!(
            "You authorized {BOB} but this server fetches {ALICE}&#39;s mail."
        )),
        "{}",
        refused.body
    );
    assert!(refused.has(&connect), "Connect again comes back here");
    assert!(t.app.store.connection(BOB).await.unwrap().is_none());

    let back = t
        .consent_at_google(&start_connect(&t, id).await, ALICE, true)
        .await;
    let done = t.get(&back).await;
    assert_eq!(done.status, reqwest::StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(done.location, Some(format!("/incoming/{id}")));
    let page = t.visit(&format!("/incoming/{id}")).await;
    assert!(
        page.has("Gmail account connected. Next: “Test &#38; Confirm”.")
            && page.has("Gmail Token Valid")
            && !page.has("id=\"incoming-connect\""),
        "{}",
        page.body
    );
    assert!(t.app.store.list_servers().await.unwrap().is_empty());
    let confirmed = t.submit(&format!("/incoming/{id}/confirm"), &[]).await;
    assert_eq!(confirmed.status, reqwest::StatusCode::SEE_OTHER);
    sink.wait_until(Duration::from_secs(20), "the first message", |seen| {
        acknowledged(seen).contains_key("in 0")
    })
    .await;

    // "Disconnect" here too: revoked at Google, forgotten here. The page says what it reaches.
    assert!(
        t.visit(&format!("/incoming/{id}"))
            .await
            .has("every server of this account, outgoing and incoming, stops")
    );
    let refresh = t.refresh_token_at_google(ALICE);
    let page = t.submit(&format!("/incoming/{id}/disconnect"), &[]).await;
    assert_eq!(page.status, reqwest::StatusCode::SEE_OTHER, "{}", page.body);
    assert_eq!(page.location, Some(format!("/incoming/{id}")));
    let info = t.gsim.world().refresh_tokens(Some(ALICE));
    assert!(!info.iter().find(|i| i.token == refresh).unwrap().live);
    assert!(t.app.store.connection(ALICE).await.unwrap().is_none());
    // Its fetcher stops at once, and says why.
    let status = status_when(&t, id, "the fetcher stops", |code| code != "ok").await;
    assert!(
        status.label().contains("not connected"),
        "{}",
        status.label()
    );
    let page = t.visit(&format!("/incoming/{id}")).await;
    assert!(
        page.has("Disconnected: the token was revoked at Google")
            && page.has("Not connected")
            && page.has("id=\"incoming-connect\""),
        "{}",
        page.body
    );
    t.finish().await;
}

/// Clicks "Connect your Gmail account" on an incoming server's page; returns Google's address.
async fn start_connect(t: &TestApp, id: i64) -> String {
    let page = t.submit(&format!("/incoming/{id}/connect"), &[]).await;
    assert_eq!(page.status, reqwest::StatusCode::SEE_OTHER, "{}", page.body);
    page.location.unwrap()
}

/// mailgate is killed (SIGKILL) with every message fetched and stored, 4 handed over and the
/// 5th's webhook request under way: after a restart every message arrives, the 4 acknowledged
/// ones not again.
#[tokio::test]
async fn a_sigkill_between_fetch_and_webhook_loses_nothing_and_repeats_nothing_acknowledged() {
    let mut t = spawn(Db::SqliteFile).await;
    let sink = Sink::start().await;
    t.sending_as_alice().await;
    let server = incoming_server(&t, "Support", Some(&sink), false).await;
    for n in 0..10 {
        mail(&t, n, false);
    }
    t.stop_service().await;
    // Confirmed for the process to fetch (Test & Confirm in-process would start fetching here).
    let store = mailgate::store::Store::connect(&t.database_url)
        .await
        .unwrap();
    store.confirm_incoming(server, true, 0).await.unwrap();
    store.close().await;

    sink.hold_after(4);
    let env = t.process_env();
    let first = serve(&env, std::process::Stdio::null()).await;
    let seen = sink
        .wait_until(
            Duration::from_secs(30),
            "4 handed over, the 5th held",
            |seen| seen.len() == 5,
        )
        .await;
    let acknowledged_before: Vec<String> = seen
        .iter()
        .filter(|d| d.answered == Answer::Ok)
        .map(|d| d.id.clone())
        .collect();
    assert_eq!(acknowledged_before.len(), 4);
    let store = mailgate::store::Store::connect(&t.database_url)
        .await
        .unwrap();
    assert_eq!(
        store.inbox_after(None, 100).await.unwrap().len(),
        10,
        "all fetched and stored before the kill"
    );
    store.close().await;
    assert!(!kill(first).await.success());
    sink.release();
    sink.answer(Answer::Ok);

    let second = serve(&env, std::process::Stdio::null()).await;
    let seen = sink
        .wait_until(Duration::from_secs(30), "all 10 acknowledged", |seen| {
            acknowledged(seen).len() == 10
        })
        .await;
    assert!(
        acknowledged(&seen).values().all(|n| *n == 1),
        "each acknowledged once: {:?}",
        acknowledged(&seen)
    );
    for id in &acknowledged_before {
        assert_eq!(
            seen.iter().filter(|d| &d.id == id).count(),
            1,
            "{id}, acknowledged before the kill, came again"
        );
    }
    eprintln!(
        "SIGKILL with the 5th webhook under way: {} requests in all for 10 messages",
        seen.len()
    );
    assert!(stop(second).await.success());
    t.finish().await;
}

/// Two instances on one PostgreSQL database: one fetches the folder (it holds the server's
/// lease) and each message reaches the webhook once; when it stops, the other takes over and
/// the mail that comes next arrives once too.
#[tokio::test]
async fn two_instances_hand_each_message_over_once() {
    let mut t = spawn(Db::Postgres).await;
    let sink = Sink::start().await;
    for n in 0..100 {
        mail(&t, n, n % 2 == 0);
    }
    let server = receiving(&t, &sink).await;
    let other = t.another_instance().await;
    sink.wait_until(Duration::from_secs(30), "100 messages", |seen| {
        acknowledged(seen).len() == 100
    })
    .await;
    let lease = format!("incoming:{server}");
    assert_eq!(
        t.app.store.lease_holder(&lease).await.unwrap().as_deref(),
        Some(t.app.instance_id.as_str()),
        "the first instance holds the lease; the second waits"
    );
    // The fetching instance stops: it lets the lease go, and the other takes it.
    t.stop_service().await;
    for n in 100..110 {
        mail(&t, n, false);
    }
    let seen = sink
        .wait_until(Duration::from_secs(30), "110 messages", |seen| {
            acknowledged(seen).len() == 110
        })
        .await;
    assert!(
        acknowledged(&seen).values().all(|n| *n == 1),
        "{:?}",
        acknowledged(&seen)
            .iter()
            .filter(|(_, n)| **n > 1)
            .collect::<Vec<_>>()
    );
    assert_eq!(
        other
            .app
            .store
            .lease_holder(&lease)
            .await
            .unwrap()
            .as_deref(),
        Some(other.app.instance_id.as_str())
    );
    other.stop().await;
    t.finish().await;
}

/// Two instances on PostgreSQL: "Disconnect" on the one that does not fetch ends the other's
/// IMAP session within a heartbeat (3 s), not at its renewal 25 minutes later.
#[tokio::test]
async fn a_disconnect_on_another_instance_stops_the_fetcher() {
    let t = spawn(Db::Postgres).await;
    let sink = Sink::start().await;
    let server = first_message_handed_over(&t, &sink).await;
    let other = t.another_instance().await;
    let outgoing = t.app.store.list_servers().await.unwrap()[0].id;
    assert_eq!(
        other
            .app
            .disconnect_gmail(mailgate::domain::ConnectFor::Outgoing(outgoing))
            .await
            .unwrap(),
        None
    );
    let status = status_when(
        &t,
        server,
        "the fetching instance learns of the disconnect",
        |code| code != "ok",
    )
    .await;
    assert!(
        status.label().contains("not connected"),
        "{}",
        status.label()
    );
    other.stop().await;
    t.finish().await;
}

/// Without a webhook the mail waits for the API: pages oldest first with a cursor, each
/// message's fields, its raw bytes as Gmail holds them; for admin keys only.
#[tokio::test]
async fn the_inbox_api_pages_through_the_mail_and_serves_the_raw_bytes() {
    let t = spawn(Db::Sqlite).await;
    t.sending_as_alice().await;
    for n in 0..5 {
        mail(&t, n, false);
    }
    let id = incoming_server(&t, "API only", None, false).await;
    t.app.test_and_confirm(id).await.unwrap();
    // Fetch Now, or the worker Test & Confirm started before it: five stored either way.
    t.app.fetch_now(id).await.unwrap();
    assert_eq!(t.app.store.inbox_after(None, 100).await.unwrap().len(), 5);
    let admin = t
        .app
        .create_api_key("reader", mailgate::app::api_keys::KeyScope::Admin)
        .await
        .unwrap();
    let mut subjects = Vec::new();
    let mut after = String::new();
    loop {
        let page = t
            .get_json(&format!("/api/v1/inbox?limit=2{after}"), Some(&admin))
            .await;
        for m in page["messages"].as_array().unwrap() {
            subjects.push(m["subject"].as_str().unwrap().to_string());
            assert_eq!(m["webhook"], "none");
            assert_eq!(m["from"], format!("Bob <{BOB}>"));
        }
        match page["next"].as_str() {
            Some(next) => after = format!("&after={next}"),
            None => break,
        }
    }
    assert_eq!(
        subjects,
        (0..5).map(|n| format!("in {n}")).collect::<Vec<_>>()
    );
    let first = t.get_json("/api/v1/inbox?limit=1", Some(&admin)).await;
    let first_id = first["messages"][0]["id"].as_str().unwrap().to_string();
    let raw = t
        .http
        .get(t.url(&format!("/api/v1/inbox/{first_id}/raw")))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(raw.headers()["content-type"], "message/rfc822");
    let gmail = t.gsim.world().mailbox(ALICE, "INBOX").unwrap();
    assert_eq!(
        raw.text().await.unwrap(),
        gmail["messages"][0]["raw"].as_str().unwrap(),
        "byte for byte"
    );
    let submit = t.api_key().await;
    let refused = t
        .http
        .get(t.url("/api/v1/inbox"))
        .bearer_auth(&submit)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), reqwest::StatusCode::FORBIDDEN);
    for bad in ["0", "501", "ten", "99999999999999999999"] {
        let refused = t
            .get_json(&format!("/api/v1/inbox?limit={bad}"), Some(&admin))
            .await;
        assert_eq!(refused["error"]["field"], "limit", "{bad}: {refused}");
    }
    let missing = t
        .http
        .get(t.url("/api/v1/inbox/nope"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), reqwest::StatusCode::NOT_FOUND);
    let document = t.get_json("/api/v1/openapi.json", None).await;
    for path in [
        "/api/v1/inbox",
        "/api/v1/inbox/{id}",
        "/api/v1/inbox/{id}/raw",
    ] {
        assert!(document["paths"].get(path).is_some(), "{path} documented");
    }
    t.finish().await;
}

/// The pages: the form names what is wrong, the secret is shown once, Test & Confirm and Fetch
/// Now answer in words.
#[tokio::test]
async fn the_incoming_pages_create_confirm_and_fetch() {
    let t = spawn(Db::Sqlite).await;
    t.sending_as_alice().await;
    mail(&t, 0, false);
    let bad = t
        .submit(
            "/incoming",
            &[
                ("name", ""),
                ("username", "nope"),
                ("folder", "INBOX"),
                ("interval", "0"),
                ("webhook_url", "ftp://x"),
            ],
        )
        .await;
    assert_eq!(bad.status, reqwest::StatusCode::BAD_REQUEST);
    assert!(
        bad.has("Give this server a Name")
            && bad.has("minutes between fetches")
            && bad.has("http:// or https://")
    );
    let created = t
        .submit(
            "/incoming",
            &[
                ("name", "Support"),
                ("username", ALICE),
                ("folder", "INBOX"),
                ("interval", "5"),
                ("webhook_url", ""),
            ],
        )
        .await;
    assert_eq!(created.status, reqwest::StatusCode::OK, "{}", created.body);
    let secret = hidden_text(&created.body, "webhook-secret-value");
    assert!(secret.starts_with("mgw_"));
    assert!(created.has("Not Confirmed") && created.has("Gmail Token Valid"));
    let id = t.app.incoming_servers().await.unwrap()[0].id;
    let shown = t.visit(&format!("/incoming/{id}")).await;
    assert!(!shown.has(&secret), "the secret is shown once");
    let confirmed = t.submit(&format!("/incoming/{id}/confirm"), &[]).await;
    assert_eq!(confirmed.status, reqwest::StatusCode::SEE_OTHER);
    let page = t.visit(&format!("/incoming/{id}")).await;
    assert!(
        page.has("Connection Test Successful!")
            && page.has("Confirmed: mailgate fetches this folder"),
        "{}",
        page.body
    );
    t.submit(&format!("/incoming/{id}/fetch"), &[]).await;
    let page = t.visit(&format!("/incoming/{id}")).await;
    assert!(
        page.has("Fetched") && page.has("stored up to UID 1 (UIDVALIDITY"),
        "{}",
        page.body
    );
    let list = t.visit("/incoming").await;
    assert!(list.has("Incoming Mail Servers") && list.has("Support") && list.has("API only"));
    let emails = t.visit("/emails?direction=incoming").await;
    assert!(
        emails.has("in 0") && emails.has(&format!("Bob <{BOB}>")),
        "{}",
        emails.body
    );
    // The search looks at the subject and the From, whatever their case.
    for (q, found) in [("IN 0", true), ("BOB@", true), ("nothing like it", false)] {
        let page = t
            .visit(&format!(
                "/emails?direction=incoming&q={}",
                q.replace(' ', "+")
            ))
            .await;
        assert_eq!(page.has("in 0"), found, "{q}: {}", page.body);
    }
    let message = t.app.store.inbox_after(None, 1).await.unwrap().remove(0);
    let page = t.visit(&format!("/emails/in/{}", message.id)).await;
    assert!(
        page.has("<in-0@example.com>") && page.has("by <b>Support</b>"),
        "{}",
        page.body
    );
    t.submit(&format!("/incoming/{id}/reset"), &[]).await;
    assert!(
        t.visit(&format!("/incoming/{id}"))
            .await
            .has("Not Confirmed")
    );
    t.finish().await;
}

/// The text of the element with this id, e.g. `<code id="x">text</code>`.
fn hidden_text(html: &str, id: &str) -> String {
    let marker = format!("id=\"{id}\">");
    let start = html.find(&marker).map(|i| i + marker.len()).expect(id);
    html[start..].split('<').next().unwrap().to_string()
}

/// An API-only server with "Mark messages as read once stored".
async fn api_only(t: &TestApp, mark_seen: bool) -> i64 {
    t.sending_as_alice().await;
    let id = incoming_server(t, "API only", None, mark_seen).await;
    t.app.test_and_confirm(id).await.unwrap();
    id
}

/// "Fetch Now" while the server's worker catches up the same folder (PostgreSQL, where the two
/// really run side by side): both store the same batches, each message is kept once, and
/// neither reports an error.
#[tokio::test]
async fn fetch_now_beside_the_worker_stores_each_message_once() {
    let t = spawn(Db::Postgres).await;
    for n in 0..400 {
        mail(&t, n, false);
    }
    let mut progress = t.app.inbox_progress.subscribe();
    let id = api_only(&t, false).await;
    // The worker starts on Test & Confirm; once it has stored its first batch, Fetch Now
    // starts from the same position and the two fetch the rest side by side.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while t.app.store.inbox_after(None, 1).await.unwrap().is_empty() {
        tokio::time::timeout_at(deadline, progress.changed())
            .await
            .expect("the worker stores a first batch")
            .unwrap();
    }
    let report = t.app.fetch_now(id).await;
    assert!(report.is_ok(), "{report:?}");
    while t.app.store.inbox_after(None, 1000).await.unwrap().len() < 400 {
        tokio::time::timeout_at(deadline, progress.changed())
            .await
            .expect("all 400 stored")
            .unwrap();
    }
    let stored = t.app.store.inbox_after(None, 1000).await.unwrap();
    let uids: BTreeSet<i64> = stored.iter().map(|m| m.uid).collect();
    assert_eq!((stored.len(), uids.len()), (400, 400), "each message once");
    let server = t.app.incoming_server(id).await.unwrap();
    assert_eq!(server.status.code(), "ok", "{}", server.status.label());
    t.finish().await;
}

/// Asked to, mailgate marks what it stored as read; the rest of the folder is left alone.
#[tokio::test]
async fn mark_as_read_sets_seen_only_on_what_was_stored() {
    let t = spawn(Db::Sqlite).await;
    for n in 0..3 {
        mail(&t, n, false);
    }
    let id = api_only(&t, true).await;
    t.app.fetch_now(id).await.unwrap();
    let mailbox = t.gsim.world().mailbox(ALICE, "INBOX").unwrap();
    let flags: Vec<String> = mailbox["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["flags"].to_string())
        .collect();
    assert!(flags.iter().all(|f| f.contains("\\\\Seen")), "{flags:?}");
    t.finish().await;
}

/// A "Fetch Now" whose browser left in the middle (its task dropped, not finished) gives the
/// account's IMAP connection slot back: otherwise one of the two would be gone until a restart.
#[tokio::test]
async fn a_dropped_imap_connection_gives_its_slot_back() {
    let t = spawn(Db::Sqlite).await;
    t.sending_as_alice().await;
    let connection = t.app.imap_login(ALICE).await.unwrap();
    let held = |t: &TestApp| {
        let store = t.app.store.clone();
        async move {
            store
                .session_slots_in_use()
                .await
                .unwrap()
                .iter()
                .filter(|(key, _)| key.starts_with("imap:"))
                .count()
        }
    };
    assert_eq!(held(&t).await, 1);
    drop(connection);
    // The row is freed by a task of its own; it runs as soon as this one lets it.
    let mut freed = false;
    for _ in 0..1000 {
        if held(&t).await == 0 {
            freed = true;
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(freed, "the dropped connection's slot row is gone");
    t.finish().await;
}

/// Both IMAP connections mailgate allows an account are taken (by another instance here):
/// Fetch Now says so in words, and nothing opens a third.
#[tokio::test]
async fn a_third_imap_connection_is_not_opened() {
    let t = spawn(Db::Sqlite).await;
    t.sending_as_alice().await;
    let id = incoming_server(&t, "Capped", None, false).await;
    let now = t.app.now();
    t.app
        .store
        .register_instance(&mailgate::store::InstanceRecord {
            id: "elsewhere".into(),
            host: "other".into(),
            http_addr: "-".into(),
            started_at: now,
            heartbeat_at: now,
        })
        .await
        .unwrap();
    for _ in 0..2 {
        t.app
            .store
            .take_session_slot(&format!("imap:{ALICE}"), "elsewhere", 2, now)
            .await
            .unwrap()
            .unwrap();
    }
    t.app.store.confirm_incoming(id, true, now).await.unwrap();
    let logins = t.gsim.world().counters().imap_logins.ok;
    let refused = t.app.fetch_now(id).await.unwrap_err();
    assert!(
        refused.contains("both IMAP connections mailgate allows this account are in use"),
        "{refused}"
    );
    assert_eq!(
        t.gsim.world().counters().imap_logins.ok,
        logins,
        "no login tried"
    );
    t.finish().await;
}

/// Incoming mail is kept as outgoing mail is: the raw bytes `retention_days` after hand-over,
/// the record `history_days`.
#[tokio::test]
async fn incoming_mail_is_purged_after_its_periods() {
    let t = spawn_with(Db::Sqlite, |env| {
        env.insert("MAILGATE_RETENTION_DAYS".into(), "2".into());
        env.insert("MAILGATE_HISTORY_DAYS".into(), "5".into());
    })
    .await;
    mail(&t, 0, false);
    let id = api_only(&t, false).await;
    t.app.fetch_now(id).await.unwrap();
    let stored = t.app.store.inbox_after(None, 1).await.unwrap().remove(0);
    assert!(t.app.store.inbox_raw(&stored.id).await.unwrap().is_some());
    t.clock.advance(2 * 86_400 + 3600);
    crate::emails::until_a_pass_makes(&t, async || {
        t.app.store.inbox_raw(&stored.id).await.unwrap().is_none()
    })
    .await;
    assert!(
        t.app
            .store
            .inbox_message(&stored.id)
            .await
            .unwrap()
            .is_some(),
        "the record stays"
    );
    t.clock.advance(3 * 86_400);
    crate::emails::until_a_pass_makes(&t, async || {
        t.app
            .store
            .inbox_message(&stored.id)
            .await
            .unwrap()
            .is_none()
    })
    .await;
    t.finish().await;
}

/// A server that offers no IDLE is polled every Interval instead.
#[tokio::test]
async fn without_idle_the_folder_is_polled() {
    let t = spawn(Db::Sqlite).await;
    t.gsim.world().patch_imap_settings(gsim::ImapSettingsPatch {
        offer_idle: Some(false),
        ..Default::default()
    });
    let sink = Sink::start().await;
    let id = first_message_handed_over(&t, &sink).await;
    // A second between polls (the form's unit is the minute): the worker restarts with it.
    sqlx::query(
        "UPDATE incoming_servers SET interval_secs = 1, updated_at = updated_at + 1 WHERE id = $1",
    )
    .bind(id)
    .execute(t.app.store.pool())
    .await
    .unwrap();
    t.app.incoming_changed.notify_one();
    mail(&t, 1, false);
    sink.wait_until(Duration::from_secs(20), "the second", |seen| {
        acknowledged(seen).len() == 2
    })
    .await;
    // The worker is on its polls now: only one of them can find this.
    let appended = Instant::now();
    mail(&t, 2, false);
    sink.wait_until(Duration::from_secs(20), "the polled one", |seen| {
        acknowledged(seen).len() == 3
    })
    .await;
    eprintln!(
        "polling: new mail at the webhook within {:?}",
        appended.elapsed()
    );
    t.finish().await;
}
