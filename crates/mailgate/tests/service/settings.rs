//! Settings: the seed's words, the Client Secret write-only, and the redirect URI to paste.

use reqwest::StatusCode;

use crate::support::*;

#[tokio::test]
async fn credentials_are_saved_and_the_secret_never_comes_back() {
    let t = spawn(Db::Sqlite).await;
    t.create_admin().await;
    let page = t.visit("/settings").await;
    for words in [
        "Custom Email Servers",
        "Gmail Credentials",
        "Client ID",
        "Client Secret",
        "Authorized redirect URI",
        "Outgoing Mail Servers",
    ] {
        assert!(page.has(words), "{words}");
    }
    assert!(page.has(&format!("{}/google_gmail/confirm", t.base)));
    assert!(
        !page.has("Google refuses redirect URIs on plain http"),
        "loopback http is fine"
    );

    t.save_credentials().await;
    let page = t.visit("/settings").await;
    assert!(page.has("Settings saved."));
    assert!(page.has(CLIENT_ID));
    assert!(!page.has(CLIENT_SECRET), "write-only");
    assert!(!page.has("mailgate-test-secret"));
    assert!(page.has("saved; type a new one to replace it"));

    // A blank secret keeps the stored one.
    let page = t
        .submit(
            "/settings",
            &[
                ("custom_email_servers", "1"),
                ("client_id", CLIENT_ID),
                ("client_secret", ""),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    let settings = t.app.google_settings().await.unwrap();
    assert_eq!(
        secrecy::ExposeSecret::expose_secret(settings.client_secret.as_ref().unwrap()),
        CLIENT_SECRET
    );

    let db = t.db_files().await;
    assert!(
        !db.windows(CLIENT_SECRET.len())
            .any(|w| w == CLIENT_SECRET.as_bytes()),
        "the database holds no plain Client Secret"
    );
    t.finish().await;
}

#[tokio::test]
async fn swapped_or_malformed_values_are_named() {
    let t = spawn(Db::Sqlite).await;
    t.create_admin().await;
    let page = t
        .submit(
            "/settings",
            &[
                ("custom_email_servers", "1"),
                ("client_id", CLIENT_SECRET),
                ("client_secret", CLIENT_ID),
                ("test_recipient", "nobody"),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.has("This does not look like a Google Client ID"));
    assert!(page.has("This looks like a Client ID, not the Client Secret."));
    assert!(page.has("`nobody` is not an email address"));
    assert!(
        !page.has(CLIENT_ID),
        "a secret typed into the wrong field is not echoed back either"
    );
    assert!(
        t.app.google_settings().await.unwrap().client_id.is_none(),
        "nothing saved"
    );
    t.finish().await;
}

#[tokio::test]
async fn http_public_url_off_loopback_is_warned_about() {
    let t = spawn_at_public_url("http://mail.example.com:8069").await;
    // The browser reaches mailgate on 127.0.0.1 but the configured origin is another one.
    let link = t.app.setup_link().await.unwrap().unwrap();
    let token = link.split("token=").nth(1).unwrap().to_string();
    let form = t.get(&format!("/setup?token={token}")).await;
    let csrf = hidden(&form.body, "_csrf").unwrap();
    let done = t
        .http
        .post(t.url("/setup"))
        .header("origin", "http://mail.example.com:8069")
        .form(&[
            ("_csrf", csrf.as_str()),
            ("token", token.as_str()),
            ("email", ADMIN),
            ("password", ADMIN_PASSWORD),
            ("confirm", ADMIN_PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    let page = t.visit("/settings").await;
    assert!(page.has("Google refuses redirect URIs on plain http except for localhost"));
    assert!(page.has("http://mail.example.com:8069/google_gmail/confirm"));
    let overview = t.visit("/").await;
    assert!(overview.has("is plain http on a non-local host"));
    t.finish().await;
}
