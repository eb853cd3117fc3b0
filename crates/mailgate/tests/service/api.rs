//! The JSON API: keys, validation that names the field, idempotency, routing and Gmail's From
//! rules, and the OpenAPI document.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::*;

fn hello() -> Value {
    json!({"from": ALICE, "to": [BOB], "subject": "Hello", "text": "Hi."})
}

#[tokio::test]
async fn keys_are_required_shown_once_stored_hashed_and_revocable() {
    let t = spawn(Db::Sqlite).await;
    t.sending_as_alice().await;
    let none = t
        .http
        .post(t.url("/api/v1/messages"))
        .json(&hello())
        .send()
        .await
        .unwrap();
    assert_eq!(none.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        none.headers()["www-authenticate"],
        "Bearer realm=\"mailgate\""
    );
    let (status, body) = t.send("mgk_made-up", &hello()).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("unauthorized"))
    );

    // Created in the UI: shown once.
    let created = t.submit("/api-keys", &[("name", "Flectra")]).await;
    assert_eq!(created.status, StatusCode::OK);
    let key = created
        .body
        .split("mgk_")
        .nth(1)
        .map(|rest| format!("mgk_{}", &rest[..43]))
        .unwrap();
    assert!(created.has("Copy it now"));
    let list = t.visit("/api-keys").await;
    assert!(list.has("Flectra"));
    assert!(!list.has(&key), "never shown again");
    assert!(
        !t.db_files()
            .await
            .windows(key.len())
            .any(|w| w == key.as_bytes()),
        "stored as a hash"
    );

    let (status, _) = t.send(&key, &hello()).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let id = t.app.api_keys().await.unwrap()[0].id;
    t.submit(&format!("/api-keys/{id}/revoke"), &[]).await;
    let (status, body) = t.send(&key, &hello()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        body["error"]["message"],
        "this API key is unknown or revoked"
    );
    t.finish().await;
}

#[tokio::test]
async fn accepted_messages_can_be_followed_with_their_attempts() {
    let t = spawn(Db::Sqlite).await;
    t.sending_as_alice().await;
    let key = t.api_key().await;
    let (status, body) = t.send(&key, &hello()).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(body["state"], "queued");
    let id = body["id"].as_str().unwrap().to_string();
    assert_eq!(body["status_url"], format!("/api/v1/messages/{id}"));
    t.wait_state(&id, "sent").await;
    let status: Value = t
        .http
        .get(t.url(&format!("/api/v1/messages/{id}")))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["state"], "sent");
    assert_eq!(status["recipients"], json!([BOB]));
    assert_eq!(status["attempts"][0]["outcome"], "sent");
    assert!(
        status["message_id"]
            .as_str()
            .unwrap()
            .ends_with("@gmail.com>")
    );
    let missing = t
        .http
        .get(t.url("/api/v1/messages/nope"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    t.finish().await;
}

async fn refused(t: &TestApp, key: &str, body: Value) -> (StatusCode, String, String) {
    let (status, answer) = t.send(key, &body).await;
    (
        status,
        answer["error"]["field"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        answer["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

#[tokio::test]
async fn bad_input_is_refused_naming_the_field_and_nothing_is_queued() {
    let t = spawn(Db::Sqlite).await;
    t.sending_as_alice().await;
    let key = t.api_key().await;
    let mut b = hello();
    b["to"] = json!([BOB, "nobody"]);
    assert_eq!(refused(&t, &key, b).await.1, "to[1].email");
    let mut b = hello();
    b["subject"] = json!("Hi\r\nBcc: everyone@example.com");
    let (status, field, message) = refused(&t, &key, b).await;
    assert_eq!(
        (status, field.as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, "subject")
    );
    assert!(message.contains("control characters"), "{message}");
    let mut b = hello();
    b["to"] = json!(
        (0..101)
            .map(|i| format!("r{i}@example.com"))
            .collect::<Vec<_>>()
    );
    let (_, field, message) = refused(&t, &key, b).await;
    assert_eq!(field, "to");
    assert!(message.contains("at most 100"));
    let mut b = hello();
    b["headers"] = json!({"From": "x@y.z"});
    assert_eq!(refused(&t, &key, b).await.1, "headers.From");
    let mut b = hello();
    b["surprise"] = json!(1);
    let (status, _, message) = refused(&t, &key, b).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(message.contains("unknown field `surprise`"), "{message}");
    let plain = t
        .http
        .post(t.url("/api/v1/messages"))
        .bearer_auth(&key)
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let mut b = hello();
    b["from"] = json!("carol@nowhere.example");
    t.submit(
        "/servers/1",
        &[
            ("name", "Gmail"),
            ("auth", "gmail"),
            ("username", ALICE),
            ("host", "127.0.0.1"),
            ("port", "587"),
            ("security", "starttls"),
            ("from_filter", "gmail.com"),
        ],
    )
    .await;
    let (_, field, message) = refused(&t, &key, b).await;
    assert_eq!(field, "from");
    assert!(message.contains("no outgoing mail server sends as carol@nowhere.example"));
    assert!(
        t.app
            .queue_counts()
            .await
            .unwrap()
            .iter()
            .all(|(_, n)| *n == 0)
    );
    t.finish().await;
}

#[tokio::test]
async fn oversize_messages_get_413_naming_size() {
    let t = spawn_with(Db::Sqlite, |env| {
        env.insert("MAILGATE_MAX_MESSAGE_SIZE".into(), "2000".into());
    })
    .await;
    t.sending_as_alice().await;
    let key = t.api_key().await;
    let mut b = hello();
    b["text"] = json!("x".repeat(5000));
    let (status, field, message) = refused(&t, &key, b).await;
    assert_eq!(
        (status, field.as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, "size")
    );
    assert!(message.contains("the limit is 2000 bytes"));
    t.finish().await;
}

#[tokio::test]
async fn an_idempotency_key_makes_a_retried_request_safe() {
    let t = spawn(Db::Sqlite).await;
    t.sending_as_alice().await;
    let key = t.api_key().await;
    let first = t.send_with(&key, &hello(), Some("order-42")).await;
    assert_eq!(first.0, StatusCode::ACCEPTED);
    let response = t
        .http
        .post(t.url("/api/v1/messages"))
        .bearer_auth(&key)
        .header("Idempotency-Key", "order-42")
        .json(&hello())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(response.headers()["idempotent-replayed"], "true");
    let again: Value = response.json().await.unwrap();
    assert_eq!(again["id"], first.1["id"]);
    let mut other = hello();
    other["subject"] = json!("Different");
    let (status, body) = t.send_with(&key, &other, Some("order-42")).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["error"]["field"], "Idempotency-Key");
    // Another key's "order-42" is its own.
    let second_key = t.api_key().await;
    let (status, theirs) = t.send_with(&second_key, &hello(), Some("order-42")).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_ne!(theirs["id"], first.1["id"]);
    let id = first.1["id"].as_str().unwrap();
    t.wait_state(id, "sent").await;
    t.wait_state(theirs["id"].as_str().unwrap(), "sent").await;
    assert_eq!(
        t.gsim.world().deliveries(0).len(),
        2,
        "three requests, two messages"
    );
    t.finish().await;
}

#[tokio::test]
async fn a_foreign_from_is_rewritten_with_reply_to_or_refused_by_policy() {
    let t = spawn(Db::Sqlite).await;
    let server = t.sending_as_alice().await;
    let key = t.api_key().await;
    let smtp = t.gsim.endpoints().smtp_starttls.port().to_string();
    t.submit(
        &format!("/servers/{server}"),
        &[
            ("name", "Gmail"),
            ("auth", "gmail"),
            ("username", ALICE),
            ("host", "127.0.0.1"),
            ("port", &smtp),
            ("security", "starttls"),
            ("aliases", "sales@alice.example"),
        ],
    )
    .await;
    t.gsim
        .world()
        .patch_account(
            ALICE,
            gsim::AccountPatch {
                aliases: Some(vec!["sales@alice.example".into()]),
                ..Default::default()
            },
        )
        .unwrap();

    let mut b = hello();
    b["from"] = json!({"name": "Carol", "email": "carol@partner.example"});
    let (_, accepted) = t.send(&key, &b).await;
    let sent = t.wait_state(accepted["id"].as_str().unwrap(), "sent").await;
    let mut b = hello();
    b["from"] = json!({"name": "Sales", "email": "sales@alice.example"});
    let (_, accepted) = t.send(&key, &b).await;
    let alias = t.wait_state(accepted["id"].as_str().unwrap(), "sent").await;
    let deliveries = t.gsim.world().deliveries(0);
    let raw = |message_id: &str| {
        String::from_utf8(
            deliveries
                .iter()
                .find(|d| d.message_id.as_deref() == Some(message_id))
                .unwrap()
                .raw
                .clone(),
        )
        .unwrap()
    };
    let rewritten = raw(&sent.message_id);
    assert!(
        rewritten.contains("From: \"Carol\" <alice@gmail.com>\r\n"),
        "{rewritten}"
    );
    assert!(rewritten.contains("Reply-To: \"Carol\" <carol@partner.example>\r\n"));
    assert!(
        !rewritten.contains("X-Google-Original-From"),
        "mailgate rewrote it, so Gmail had nothing to rewrite"
    );
    let kept = raw(&alias.message_id);
    assert!(
        kept.contains("From: \"Sales\" <sales@alice.example>\r\n"),
        "an alias is kept"
    );

    t.submit(
        &format!("/servers/{server}"),
        &[
            ("name", "Gmail"),
            ("auth", "gmail"),
            ("username", ALICE),
            ("host", "127.0.0.1"),
            ("port", &smtp),
            ("security", "starttls"),
            ("from_policy", "refuse"),
        ],
    )
    .await;
    let mut b = hello();
    b["from"] = json!("carol@partner.example");
    let (status, field, message) = refused(&t, &key, b).await;
    assert_eq!(
        (status, field.as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, "from")
    );
    assert!(message.contains("refuses other senders"));
    t.finish().await;
}

#[tokio::test]
async fn messages_are_routed_by_from_filter_exact_then_domain_then_default() {
    let t = spawn(Db::Sqlite).await;
    t.sending_as_alice().await;
    let key = t.api_key().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    for (name, filter) in [
        ("Exact", "boss@partner.example"),
        ("Domain", "partner.example"),
    ] {
        let page = t
            .submit(
                "/servers",
                &[
                    ("name", name),
                    ("auth", "none"),
                    ("host", "127.0.0.1"),
                    ("port", &closed),
                    ("security", "none"),
                    ("from_filter", filter),
                    ("priority", "1"),
                ],
            )
            .await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    }
    let servers = t.app.store.list_servers().await.unwrap();
    let id_of = |name: &str| servers.iter().find(|s| s.name == name).unwrap().id;
    let route = |from: &'static str| {
        let mut b = hello();
        b["from"] = json!(from);
        b
    };
    for (from, expected) in [
        ("boss@partner.example", "Exact"),
        ("staff@partner.example", "Domain"),
        (ALICE, "Gmail"),
    ] {
        let (status, accepted) = t.send(&key, &route(from)).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        let (record, _) = t
            .app
            .message(accepted["id"].as_str().unwrap())
            .await
            .unwrap();
        assert_eq!(record.server_id, id_of(expected), "{from}");
    }
    t.finish().await;
}

async fn openapi_document(t: &TestApp) -> Value {
    t.get_json("/api/v1/openapi.json", None).await
}

#[tokio::test]
async fn the_openapi_document_describes_what_the_api_accepts() {
    let t = spawn(Db::Sqlite).await;
    t.sending_as_alice().await;
    let key = t.api_key().await;
    let doc = openapi_document(&t).await;
    assert_eq!(doc["openapi"], "3.1.0");
    let post = &doc["paths"]["/api/v1/messages"]["post"];
    for (name, example) in post["requestBody"]["content"]["application/json"]["examples"]
        .as_object()
        .unwrap()
    {
        let (status, body) = t.send(&key, &example["value"]).await;
        assert_eq!(status, StatusCode::ACCEPTED, "example {name}: {body}");
    }
    // Every documented field is one the API takes, and the other way round.
    let documented: Vec<&str> = doc["components"]["schemas"]["Submission"]["properties"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let accepted: Value =
        serde_json::to_value(mailgate::domain::message::Submission::default()).unwrap();
    let mut fields: Vec<&str> = accepted
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut documented_sorted = documented.clone();
    fields.sort_unstable();
    documented_sorted.sort_unstable();
    assert_eq!(documented_sorted, fields);
    for status in ["202", "401", "409", "413", "415", "422"] {
        assert!(
            post["responses"].get(status).is_some(),
            "{status} documented"
        );
    }
    t.finish().await;
}

#[tokio::test]
async fn health_readiness_and_metrics_answer() {
    let t = spawn(Db::Sqlite).await;
    t.sending_as_alice().await;
    let key = t.api_key().await;
    let (_, accepted) = t.send(&key, &hello()).await;
    t.wait_state(accepted["id"].as_str().unwrap(), "sent").await;
    assert_eq!(
        t.http
            .get(t.url("/healthz"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "ok"
    );
    let ready = t.http.get(t.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    let metrics = t
        .http
        .get(t.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "mailgate_messages{state=\"sent\"} 1\n",
        "mailgate_submitted_total 1\n",
        "mailgate_sent_total 1\n",
        "mailgate_smtp_logins_total{result=\"ok\"} 1\n",
        "mailgate_delivery_seconds_count 1\n",
        "# TYPE mailgate_delivery_seconds histogram\n",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
    t.finish().await;
}

async fn set_from_policy(t: &TestApp, server: i64, policy: &str) {
    let page = t
        .submit(
            &format!("/servers/{server}"),
            &[
                ("name", "Gmail"),
                ("auth", "gmail"),
                ("username", ALICE),
                ("from_policy", policy),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
}

#[tokio::test]
async fn sender_claims_and_header_injection_are_refused_and_rebuilt_headers_are_encoded() {
    let t = spawn(Db::Sqlite).await;
    let server = t.sending_as_alice().await;
    let key = t.api_key().await;
    set_from_policy(&t, server, "refuse").await;
    let raw = |head: &str| json!({ "raw": format!("{head}\r\nTo: bob@example.com\r\nSubject: s\r\n\r\nbody\r\n") });
    let cases = [
        (
            raw("From: alice@gmail.com, ceo@victim.example"),
            "raw.From",
            "exactly one sender",
        ),
        (
            raw("From: alice@gmail.com\r\nFrom: ceo@victim.example"),
            "raw.From",
            "appears 2 times",
        ),
        (
            raw("From: alice@gmail.com\r\nSender: ceo@victim.example"),
            "raw.Sender",
            "refuses other senders",
        ),
        (
            raw("From: alice@gmail.com\r\nResent-From: ceo@victim.example"),
            "raw.Resent-From",
            "refuses other senders",
        ),
        (
            raw("From: alice@gmail.com\r\nX-Tag: a\0b"),
            "raw.X-Tag",
            "control character",
        ),
        (
            json!({"from": ALICE, "to": [BOB], "subject": "nul\u{0}here", "text": "x"}),
            "subject",
            "control characters",
        ),
        (
            json!({"from": ALICE, "to": [BOB], "text": "x", "headers": {"Sender": "ceo@victim.example"}}),
            "headers.Sender",
            "sends as `from` only",
        ),
        (
            json!({"from": ALICE, "to": [BOB], "text": "x", "attachments": [
                {"filename": "a.txt", "content_type": "text/plain; name=\"x.exe\"", "content": "eA=="}]}),
            "attachments[0].content_type",
            "no parameters",
        ),
        (
            json!({"from": ALICE, "to": ["jörg@example.com"], "text": "x"}),
            "to[0].email",
            "SMTPUTF8",
        ),
    ];
    for (body, want_field, want_message) in &cases {
        let (status, field, message) = refused(&t, &key, body.clone()).await;
        assert_eq!(
            (status, field.as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, *want_field),
            "{body}: {message}"
        );
        assert!(message.contains(want_message), "{want_field}: {message}");
    }

    set_from_policy(&t, server, "rewrite").await;
    // A name whose RFC 2047 encoding hides a line break would inject a header once rebuilt.
    for (head, want_field) in [
        (
            "From: =?utf-8?q?Carol=0D=0AX-Injected:_yes?= <carol@partner.example>",
            "raw.From",
        ),
        (
            "From: carol@partner.example\r\nReply-To: =?utf-8?q?C=0D=0AX-Injected:_yes?= <c@partner.example>",
            "raw.Reply-To",
        ),
    ] {
        let (status, field, _) = refused(&t, &key, raw(head)).await;
        assert_eq!(
            (status, field.as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, want_field),
            "{head}"
        );
    }
    assert!(
        t.gsim.world().deliveries(0).is_empty(),
        "nothing refused was sent"
    );

    // Rewrite drops the foreign Sender, and rebuilds From and Reply-To with encoded names.
    let (_, dropped) = t
        .send(
            &key,
            &raw("From: alice@gmail.com\r\nSender: ceo@victim.example"),
        )
        .await;
    let dropped = t.wait_state(dropped["id"].as_str().unwrap(), "sent").await;
    let mut b = hello();
    b["from"] = json!({"name": "Jörg Müller", "email": "joerg@partner.example"});
    let (_, named) = t.send(&key, &b).await;
    let named = t.wait_state(named["id"].as_str().unwrap(), "sent").await;
    let deliveries = t.gsim.world().deliveries(0);
    assert_eq!(deliveries.len(), 2);
    let head = |message_id: &str| {
        let d = deliveries
            .iter()
            .find(|d| d.message_id.as_deref() == Some(message_id))
            .unwrap();
        let text = String::from_utf8(d.raw.clone()).unwrap();
        text[..text.find("\r\n\r\n").unwrap()].to_string()
    };
    let dropped = head(&dropped.message_id);
    assert!(
        !dropped.to_ascii_lowercase().contains("sender:"),
        "{dropped}"
    );
    assert!(!dropped.contains("victim"), "{dropped}");
    let named = head(&named.message_id);
    assert!(named.is_ascii(), "header names are encoded: {named}");
    let parsed = mail_parser::MessageParser::default()
        .parse(named.as_bytes())
        .unwrap();
    let from = parsed.from().unwrap().first().unwrap();
    assert_eq!(from.name.as_deref(), Some("Jörg Müller"));
    assert_eq!(from.address.as_deref(), Some(ALICE));
    let reply_to = parsed.reply_to().unwrap().first().unwrap();
    assert_eq!(reply_to.name.as_deref(), Some("Jörg Müller"));
    assert_eq!(reply_to.address.as_deref(), Some("joerg@partner.example"));
    t.finish().await;
}

/// The key in the page that creates it (shown once).
fn new_key(page: &Page) -> String {
    let start = page.body.find("<code id=\"api-key\">").unwrap() + "<code id=\"api-key\">".len();
    page.body[start..start + page.body[start..].find('<').unwrap()].to_string()
}

#[tokio::test]
async fn a_submit_key_reads_only_its_own_messages_and_an_admin_key_reads_all() {
    let t = spawn(Db::Sqlite).await;
    t.sending_as_alice().await;
    let flectra = t.api_key().await;
    let printer = t.api_key().await;
    let created = t
        .submit("/api-keys", &[("name", "Monitoring"), ("scope", "admin")])
        .await;
    let monitoring = new_key(&created);
    assert!(t.visit("/api-keys").await.has("all messages"));
    let (_, accepted) = t.send(&flectra, &hello()).await;
    let id = accepted["id"].as_str().unwrap();
    let read = |key: String| {
        let url = t.url(&format!("/api/v1/messages/{id}"));
        let http = t.http.clone();
        async move {
            http.get(url)
                .bearer_auth(key)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(read(flectra.clone()).await, StatusCode::OK, "its own");
    assert_eq!(
        read(printer).await,
        StatusCode::NOT_FOUND,
        "another submit key does not learn it exists"
    );
    assert_eq!(
        read(monitoring).await,
        StatusCode::OK,
        "an admin key reads all"
    );
    t.finish().await;
}

#[tokio::test]
async fn bcc_recipients_get_the_message_by_the_envelope_and_no_header_names_them() {
    let t = spawn(Db::Sqlite).await;
    t.sending_as_alice().await;
    let key = t.api_key().await;
    for body in [
        json!({"from": ALICE, "to": [BOB], "cc": ["carol@example.com"], "bcc": ["audit@example.com", {"name": "Dan", "email": "dan@example.com"}], "subject": "fields", "text": "x"}),
        json!({"raw": format!("From: {ALICE}\r\nTo: {BOB}\r\nBcc: audit@example.com, Dan <dan@example.com>\r\nSubject: raw\r\n\r\nx\r\n")}),
    ] {
        let (status, accepted) = t.send(&key, &body).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
        let sent = t.wait_state(accepted["id"].as_str().unwrap(), "sent").await;
        let deliveries = t.gsim.world().deliveries(0);
        let delivery = deliveries
            .iter()
            .find(|d| d.message_id.as_deref() == Some(sent.message_id.as_str()))
            .unwrap();
        assert!(delivery.rcpt_to.contains(&"audit@example.com".to_string()));
        assert!(delivery.rcpt_to.contains(&"dan@example.com".to_string()));
        let text = String::from_utf8_lossy(&delivery.raw).to_ascii_lowercase();
        let head = &text[..text.find("\r\n\r\n").unwrap()];
        // A Bcc field, not the letters: random ids in Message-ID and Received may spell them.
        assert!(
            !head
                .lines()
                .any(|l| l.starts_with("bcc:") || l.starts_with("resent-bcc:")),
            "{head}"
        );
        assert!(!head.contains("audit@") && !head.contains("dan@"), "{head}");
    }
    t.finish().await;
}

/// The document is generated from the routes; this fails when a route under `/api/` is added
/// beside utoipa's router (and so missing from the document), or a documented one stops answering.
#[tokio::test]
async fn the_generated_document_lists_every_api_route_and_each_answers() {
    let t = spawn(Db::Sqlite).await;
    t.sending_as_alice().await;
    let key = t.api_key().await;
    let doc = openapi_document(&t).await;
    let paths = doc["paths"].as_object().unwrap();
    let mut documented: Vec<&str> = paths.keys().map(String::as_str).collect();
    documented.sort_unstable();
    assert_eq!(
        documented,
        [
            "/api/v1/inbox",
            "/api/v1/inbox/{id}",
            "/api/v1/inbox/{id}/raw",
            "/api/v1/messages",
            "/api/v1/messages/{id}",
            "/api/v1/openapi.json"
        ]
    );
    // No route under /api/ is registered any other way than with its documentation.
    let web = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/web");
    let mut stack = vec![web];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let source = std::fs::read_to_string(&path).unwrap();
                assert!(
                    !source.contains(".route(\"/api/") && !source.contains(".nest(\"/api"),
                    "{} registers an /api/ route outside utoipa's router",
                    path.display()
                );
            }
        }
    }
    // Each documented operation is served: our own JSON, never the router's bare 404 or 405.
    for (path, operations) in paths {
        for method in operations.as_object().unwrap().keys() {
            let url = t.url(&path.replace("{id}", "no-such-message"));
            let request = match method.as_str() {
                "get" => t.http.get(url),
                "post" => t.http.post(url).json(&hello()),
                other => panic!("undocumented method {other}"),
            };
            let response = request.bearer_auth(&key).send().await.unwrap();
            let status = response.status();
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            let body: Value = response.json().await.unwrap_or(Value::Null);
            assert!(
                status.is_success() || body["error"]["code"].is_string(),
                "{method} {path}: {status} {body}"
            );
        }
    }
    t.finish().await;
}

#[tokio::test]
async fn each_message_says_which_edge_it_came_in_by() {
    let t = spawn(Db::Sqlite).await;
    t.sending_as_alice().await;
    let key = t.api_key().await;
    let (status, accepted) = t.send(&key, &hello()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    let id = accepted["id"].as_str().unwrap();
    let read = t.message_status(&key, id).await;
    assert_eq!(read["origin"], "api", "{read}");
    let page = t.visit(&format!("/emails/{id}")).await;
    assert!(
        page.has(&format!("the API, with the key \"tests\" ({}", &key[..10])),
        "{}",
        page.body
    );

    let raw = format!("From: {ALICE}\r\nTo: {BOB}\r\nSubject: by hand\r\n\r\nhi\r\n");
    let from_shell = t.app.submit_raw(raw.as_bytes()).await.unwrap();
    let page = t.visit(&format!("/emails/{}", from_shell.id)).await;
    assert!(
        page.has("the command line (mailgate send)"),
        "{}",
        page.body
    );
    let list = t.visit("/emails").await;
    assert!(list.has("<td class=\"origin\">CLI</td>"), "{}", list.body);
    assert!(list.has("<td class=\"origin\">API</td>"), "{}", list.body);
    t.finish().await;
}
