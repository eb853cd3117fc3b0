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
    assert!(page.has("Gmail requires TLS"));
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
    let db = t.db_files();
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
    assert_eq!(
        (
            server.name.as_str(),
            server.username.as_deref(),
            server.port
        ),
        ("Gmail (support)", Some(ALICE), 465)
    );

    let deleted = t.submit(&format!("/servers/{relay_id}/delete"), &[]).await;
    assert_eq!(deleted.location.as_deref(), Some("/servers"));
    assert_eq!(
        t.get(&format!("/servers/{relay_id}")).await.status,
        StatusCode::NOT_FOUND
    );
    t.finish().await;
}
