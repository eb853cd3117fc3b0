//! Outgoing Mail Servers: Gmail's defaults and Flectra 16's rules, with messages that name the
//! field.

use reqwest::StatusCode;

use crate::support::*;

#[tokio::test]
async fn a_new_server_starts_as_gmail_with_its_defaults() {
    let t = spawn(Db::Sqlite).await;
    t.create_admin().await;
    let page = t.visit("/servers/new").await;
    let smtp = t.gsim.endpoints().smtp_starttls;
    assert!(page.has("Authenticate with"));
    assert!(page.has(r#"value="gmail" checked"#));
    assert!(page.has(&format!(r#"name="host" value="{}""#, smtp.ip())));
    assert!(page.has(&format!(r#"name="port" value="{}""#, smtp.port())));
    assert!(page.has(r#"value="starttls" selected"#));
    t.finish().await;
}

#[tokio::test]
async fn gmail_rules_are_enforced_with_clear_messages() {
    let t = spawn(Db::Sqlite).await;
    t.create_admin().await;
    let page = t
        .submit(
            "/servers",
            &[
                ("name", "Gmail"),
                ("auth", "gmail"),
                ("username", "alice"),
                ("password", "hunter2hunter2"),
                ("host", "smtp.gmail.com"),
                ("port", "587"),
                ("security", "none"),
                ("from_filter", ""),
                ("priority", "10"),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.has("Nothing was saved"));
    assert!(page.has("Please leave the password field empty for Gmail mail server “Gmail”. The OAuth process does not require it."));
    assert!(page.has("`alice` is not an email address"));
    assert!(
        !page.has("hunter2hunter2"),
        "a refused password is not sent back"
    );
    assert!(t.app.store.list_servers().await.unwrap().is_empty());
    t.finish().await;
}

#[tokio::test]
async fn servers_are_listed_changed_and_deleted() {
    let t = spawn(Db::Sqlite).await;
    t.create_admin().await;
    let id = t.create_gmail_server("Gmail (sales)", ALICE).await;
    let list = t.visit("/servers").await;
    assert!(list.has("Gmail (sales)"));
    assert!(list.has("Not connected"));
    assert!(list.has("Gmail OAuth"));

    let duplicate = t
        .submit(
            "/servers",
            &[
                ("name", "Gmail (sales)"),
                ("auth", "none"),
                ("host", "mx.example.com"),
                ("port", "25"),
                ("security", "none"),
            ],
        )
        .await;
    assert_eq!(duplicate.status, StatusCode::BAD_REQUEST);
    assert!(duplicate.has("Another server already has this Description."));

    let relay = t
        .submit(
            "/servers",
            &[
                ("name", "Relay"),
                ("auth", "password"),
                ("username", "relay-user"),
                ("password", "relay password 1"),
                ("host", "smtp.example.com"),
                ("port", "465"),
                ("security", "tls"),
                ("from_filter", "example.com"),
                ("priority", "20"),
            ],
        )
        .await;
    assert_eq!(relay.status, StatusCode::SEE_OTHER, "{}", relay.body);
    let relay_id: i64 = relay
        .location
        .unwrap()
        .trim_start_matches("/servers/")
        .parse()
        .unwrap();
    let db = t.db_files().await;
    assert!(
        !db.windows(16).any(|w| w == b"relay password 1"),
        "SMTP passwords are sealed too"
    );

    let changed = t
        .submit(
            &format!("/servers/{id}"),
            &[
                ("name", "Gmail (support)"),
                ("auth", "gmail"),
                ("username", "Alice@Gmail.com"),
                ("host", "smtp.gmail.com"),
                ("port", "465"),
                ("security", "tls"),
                ("priority", "5"),
            ],
        )
        .await;
    assert_eq!(changed.status, StatusCode::SEE_OTHER, "{}", changed.body);
    let server = t.app.store.server(id).await.unwrap().unwrap();
    let gmail = t.gsim.endpoints().smtp_starttls;
    assert_eq!(
        (
            server.name.as_str(),
            server.username.as_deref(),
            server.port
        ),
        ("Gmail (support)", Some(ALICE), gmail.port()),
        "a Gmail server keeps the configured Gmail endpoint, whatever the form says"
    );

    let deleted = t.submit(&format!("/servers/{relay_id}/delete"), &[]).await;
    assert_eq!(deleted.location.as_deref(), Some("/servers"));
    assert_eq!(
        t.get(&format!("/servers/{relay_id}")).await.status,
        StatusCode::NOT_FOUND
    );
    t.finish().await;
}

/// The token of a Gmail OAuth server opens the whole mailbox: it goes to the configured Gmail
/// endpoint only. Neither the form nor a row written before this rule can send it elsewhere.
#[tokio::test]
async fn a_gmail_server_connects_to_gmail_only_whatever_its_form_or_row_says() {
    let t = spawn(Db::Sqlite).await;
    let id = t.sending_as_alice().await;
    let decoy = tokio::net::TcpListener::bind("127.0.0.2:0").await.unwrap();
    let decoy_port = decoy.local_addr().unwrap().port();
    let knocked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = knocked.clone();
    tokio::spawn(async move {
        while decoy.accept().await.is_ok() {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });

    let form = t.visit(&format!("/servers/{id}")).await;
    assert!(form.has("Gmail OAuth servers connect to"), "{}", form.body);
    let saved = t
        .submit(
            &format!("/servers/{id}"),
            &[
                ("name", "Gmail"),
                ("auth", "gmail"),
                ("username", ALICE),
                ("host", "127.0.0.2"),
                ("port", &decoy_port.to_string()),
                ("security", "tls"),
            ],
        )
        .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    t.submit(&format!("/servers/{id}/test"), &[]).await;
    let page = t.visit(&format!("/servers/{id}")).await;
    assert!(page.has("Connection Test Successful!"), "{}", page.body);

    // A row that names another host (written before this rule): delivery still goes to Gmail.
    sqlx::query("UPDATE mail_servers SET host = '127.0.0.2', port = $1, security = 'tls'")
        .bind(i64::from(decoy_port))
        .execute(t.app.store.pool())
        .await
        .unwrap();
    let key = t.api_key().await;
    let (status, body) = t
        .send(
            &key,
            &serde_json::json!({"from": ALICE, "to": [BOB], "subject": "to Gmail only", "text": "x"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    t.wait_state(body["id"].as_str().unwrap(), "sent").await;
    let report = t.app.doctor().await.unwrap();
    assert!(
        report.checks.iter().any(|c| c.id.ends_with(":smtp")
            && c.title
                .contains(&t.gsim.endpoints().smtp_starttls.port().to_string())),
        "the doctor checks Gmail's endpoint too"
    );
    assert_eq!(
        knocked.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "nothing ever connected to the other host"
    );
    t.finish().await;
}

#[tokio::test]
async fn moving_a_password_server_asks_for_its_password_again() {
    let t = spawn(Db::Sqlite).await;
    t.create_admin().await;
    let fields = |host: &'static str, password: &'static str| {
        vec![
            ("name", "Relay"),
            ("auth", "password"),
            ("username", "relay-user"),
            ("password", password),
            ("host", host),
            ("port", "587"),
            ("security", "starttls"),
        ]
    };
    let created = t
        .submit("/servers", &fields("smtp.example.com", "relay password 1"))
        .await;
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.body);
    let path = created.location.unwrap();
    let kept = t.submit(&path, &fields("smtp.example.com", "")).await;
    assert_eq!(
        kept.status,
        StatusCode::SEE_OTHER,
        "same host: the password stays"
    );
    let moved = t.submit(&path, &fields("smtp.elsewhere.example", "")).await;
    assert_eq!(moved.status, StatusCode::BAD_REQUEST);
    assert!(moved.has("Type the password again"), "{}", moved.body);
    let retyped = t
        .submit(&path, &fields("smtp.elsewhere.example", "relay password 1"))
        .await;
    assert_eq!(retyped.status, StatusCode::SEE_OTHER);
    t.finish().await;
}
