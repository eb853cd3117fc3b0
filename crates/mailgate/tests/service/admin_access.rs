//! No default password, a one-time setup link, sessions, rate-limited sign-in, CSRF everywhere.

use reqwest::StatusCode;

use crate::support::*;

#[tokio::test]
async fn setup_link_creates_the_admin_once_and_signs_them_in() {
    let t = spawn(Db::Sqlite).await;
    let link = t.app.setup_link().await.unwrap().unwrap();
    assert!(link.starts_with(&format!("{}/setup?token=", t.base)));
    // A newer link replaces the older one.
    let newer = t.app.setup_link().await.unwrap().unwrap();
    assert_eq!(t.get(&link).await.status, StatusCode::FORBIDDEN);
    let form = t.get(&newer).await;
    assert_eq!(form.status, StatusCode::OK);
    assert!(form.has("Create the admin"));

    let csrf = hidden(&form.body, "_csrf").unwrap();
    let token = hidden(&form.body, "token").unwrap();
    let weak = t
        .post(
            "/setup",
            &[
                ("_csrf", &csrf),
                ("token", &token),
                ("email", ADMIN),
                ("password", "short"),
                ("confirm", "short"),
            ],
        )
        .await;
    assert_eq!(weak.status, StatusCode::BAD_REQUEST);
    assert!(weak.has("Use at least 12 characters."));

    let done = t
        .post(
            "/setup",
            &[
                ("_csrf", &csrf),
                ("token", &token),
                ("email", ADMIN),
                ("password", ADMIN_PASSWORD),
                ("confirm", ADMIN_PASSWORD),
            ],
        )
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    let settings = t.visit("/settings").await;
    assert!(settings.has("Custom Email Servers"), "signed in right away");
    assert!(settings.has(ADMIN));

    // The link is spent, and no further link is printed once an admin exists.
    let again = browser().get(t.url(&newer)).send().await.unwrap();
    assert_eq!(again.status(), StatusCode::FORBIDDEN);
    assert!(t.app.setup_link().await.unwrap().is_none());
    t.finish().await;
}

#[tokio::test]
async fn the_setup_link_expires_after_an_hour() {
    let t = spawn(Db::Sqlite).await;
    let link = t.app.setup_link().await.unwrap().unwrap();
    t.clock.advance(3601);
    let page = t.get(&link).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(page.has("This setup link is not valid"));
    assert!(page.has("mailgate admin create"));
    t.finish().await;
}

#[tokio::test]
async fn guests_reach_no_admin_page_and_not_the_callback() {
    let t = spawn(Db::Sqlite).await;
    t.ready_to_connect().await;
    let guest = browser();
    for path in [
        "/",
        "/settings",
        "/servers",
        "/servers/new",
        "/servers/1",
        "/google_gmail/confirm?state=abc&code=4/0Ax",
    ] {
        let response = guest.get(t.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "{path}");
        let location = response.headers()["location"].to_str().unwrap().to_string();
        assert!(location.starts_with("/login?next="), "{path} -> {location}");
        let body = response.text().await.unwrap();
        assert!(!body.contains("Gmail Credentials"));
    }
    // Sign-in sends the admin back where they were going.
    let login = guest
        .get(t.url("/login?next=%2Fservers%2F1"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = hidden(&login, "_csrf").unwrap();
    let signed_in = guest
        .post(t.url("/login"))
        .form(&[
            ("_csrf", csrf.as_str()),
            ("email", ADMIN),
            ("password", ADMIN_PASSWORD),
            ("next", "/servers/1"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
    assert_eq!(signed_in.headers()["location"], "/servers/1");
    let cookie = signed_in.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    assert!(!cookie.contains("Secure"), "http public URL");
    t.finish().await;
}

#[tokio::test]
async fn cookies_are_secure_and_host_only_and_hsts_is_sent_when_the_public_url_is_https() {
    let t = spawn_at_public_url("https://mail.example.com").await;
    let link = t.app.setup_link().await.unwrap().unwrap();
    let path = link.trim_start_matches("https://mail.example.com");
    let response = t.http.get(t.url(path)).send().await.unwrap();
    let cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(cookie.contains("; Secure"), "{cookie}");
    // Over https every cookie is `__Host-`: a sibling subdomain cannot plant a CSRF token.
    assert!(cookie.starts_with("__Host-mailgate_csrf="), "{cookie}");
    assert_eq!(
        response.headers()["strict-transport-security"],
        "max-age=31536000"
    );
    t.finish().await;
}

#[tokio::test]
async fn state_changing_requests_without_csrf_proof_are_refused() {
    let t = spawn(Db::Sqlite).await;
    t.create_admin().await;
    let before = t.app.google_settings().await.unwrap();
    let form = [
        ("custom_email_servers", "1"),
        ("client_id", CLIENT_ID),
        ("client_secret", "stolen"),
    ];
    let no_token = t.post("/settings", &form).await;
    assert_eq!(no_token.status, StatusCode::FORBIDDEN);
    assert!(no_token.has("This form cannot be accepted"));
    let mut wrong: Vec<(&str, &str)> = vec![("_csrf", "not-the-token")];
    wrong.extend_from_slice(&form);
    assert_eq!(
        t.post("/settings", &wrong).await.status,
        StatusCode::FORBIDDEN
    );
    // A page on another site posting with a stolen token is refused by its Origin.
    let csrf = t.csrf().await;
    let cross = t
        .http
        .post(t.url("/settings"))
        .header("origin", "https://evil.example")
        .form(&[("_csrf", csrf.as_str()), ("client_id", CLIENT_ID)])
        .send()
        .await
        .unwrap();
    assert_eq!(cross.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        t.post("/logout", &[]).await.status,
        StatusCode::FORBIDDEN,
        "even sign-out"
    );
    // Nothing changed.
    let after = t.app.google_settings().await.unwrap();
    assert_eq!(before.client_id, after.client_id);
    assert!(after.client_secret.is_none());
    t.finish().await;
}

#[tokio::test]
async fn sign_in_is_rate_limited() {
    let t = spawn(Db::Sqlite).await;
    t.create_admin().await;
    let (guest, csrf) = t.guest_at_login().await;
    let attempt = |password: &'static str| {
        let guest = guest.clone();
        let url = t.url("/login");
        let csrf = csrf.clone();
        async move {
            guest
                .post(url)
                .form(&[
                    ("_csrf", csrf.as_str()),
                    ("email", ADMIN),
                    ("password", password),
                ])
                .send()
                .await
                .unwrap()
        }
    };
    // A minute apart, so the account's own slow-down stays out of the way: this is the address's
    // budget of five per fifteen minutes.
    for _ in 0..5 {
        t.clock.advance(60);
        let r = attempt("wrong password!").await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert!(r.text().await.unwrap().contains("Wrong email or password."));
    }
    let blocked = attempt(ADMIN_PASSWORD).await;
    assert_eq!(
        blocked.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "even the right password waits"
    );
    assert!(
        blocked
            .text()
            .await
            .unwrap()
            .contains("Too many failed sign-ins. Try again in 11 minutes.")
    );
    t.clock.advance(15 * 60 + 1);
    assert_eq!(
        attempt(ADMIN_PASSWORD).await.status(),
        StatusCode::SEE_OTHER
    );
    t.finish().await;
}

#[tokio::test]
async fn sign_out_ends_the_session() {
    let t = spawn(Db::Sqlite).await;
    t.create_admin().await;
    let out = t.submit("/logout", &[]).await;
    assert_eq!(out.location.as_deref(), Some("/login"));
    let page = t.get("/settings").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    t.finish().await;
}

#[tokio::test]
async fn next_after_sign_in_stays_on_this_origin_and_never_fails() {
    let t = spawn(Db::Sqlite).await;
    t.create_admin().await;
    t.submit("/logout", &[]).await;
    for (query, sent) in [
        ("/%09/evil.example", "/\t/evil.example"),
        ("/%0d%0aSet-Cookie:%20x=1", "/\r\nSet-Cookie: x=1"),
        ("/%5Cevil.example", "/\\evil.example"),
        ("/%C3%A9", "/\u{e9}"),
    ] {
        let page = t.get(&format!("/login?next={query}")).await;
        assert_eq!(page.status, StatusCode::OK, "{query}");
        assert!(
            page.body.contains(r#"name="next" value="/""#),
            "{query}: {}",
            page.body
        );
        let csrf = hidden(&page.body, "_csrf").unwrap();
        let signed_in = t
            .post(
                "/login",
                &[
                    ("_csrf", &csrf),
                    ("email", ADMIN),
                    ("password", ADMIN_PASSWORD),
                    ("next", sent),
                ],
            )
            .await;
        assert_eq!(signed_in.status, StatusCode::SEE_OTHER, "{query}");
        assert_eq!(signed_in.location.as_deref(), Some("/"), "{query}");
        t.submit("/logout", &[]).await;
    }
    t.finish().await;
}
