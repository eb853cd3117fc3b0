//! The JSON control API under /_gsim/, over HTTP as scripts and the browser suite use it.

use serde_json::{Value, json};

use crate::support::*;

async fn call(
    gsim: &gsim::Gsim,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = http().request(method, format!("{}{path}", gsim.endpoints().http));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

use reqwest::Method;

#[tokio::test]
async fn clients_accounts_and_test_users_are_managed_over_http() {
    let gsim = start_with(gsim::Config::empty()).await;
    let (status, _) = call(
        &gsim,
        Method::POST,
        "/_gsim/accounts",
        Some(json!({"email": "Dave@Example.com", "aliases": ["d@example.com"]})),
    )
    .await;
    assert_eq!(status, 200);
    let client = json!({
        "client_id": "444-new.apps.googleusercontent.com",
        "client_secret": "GOCSPX-new",
        "type": "web",
        "name": "New App",
        "redirect_uris": [REDIRECT],
        "publishing_status": "testing",
        "test_users": []
    });
    assert_eq!(
        call(&gsim, Method::POST, "/_gsim/clients", Some(client))
            .await
            .0,
        200
    );

    let query = [
        ("client_id", "444-new.apps.googleusercontent.com"),
        ("redirect_uri", REDIRECT),
        ("response_type", "code"),
        ("scope", "https://mail.google.com/"),
    ];
    // Not a test user yet: 403. Then the developer adds Dave and it works.
    let base = &gsim.endpoints().http;
    let html = http()
        .get(format!("{base}/o/oauth2/v2/auth"))
        .query(&query)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let flow = hidden(&html, "flow");
    let denied = http()
        .post(format!("{base}/o/oauth2/v2/auth/choose"))
        .form(&[("flow", flow.as_str()), ("email", "dave@example.com")])
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 403);
    let (status, patched) = call(
        &gsim,
        Method::PATCH,
        "/_gsim/clients/444-new.apps.googleusercontent.com",
        Some(json!({"test_users": ["dave@example.com"]})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(patched["test_users"], json!(["dave@example.com"]));
    let redirect = consent(&gsim, &query, "dave@example.com").await;
    assert!(param(&redirect, "code").is_some());

    let (status, body) = call(
        &gsim,
        Method::PATCH,
        "/_gsim/clients/nope",
        Some(json!({"name": "x"})),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("no such OAuth client: nope"))
    );
}

#[tokio::test]
async fn auto_consent_skips_the_pages_for_tests_not_about_them() {
    let gsim = start().await;
    assert_eq!(
        call(
            &gsim,
            Method::PUT,
            "/_gsim/auto_consent",
            Some(json!({"enabled": true}))
        )
        .await
        .0,
        200
    );
    let response = http()
        .get(format!("{}/o/oauth2/v2/auth", gsim.endpoints().http))
        .query(&[
            ("client_id", WEB_CLIENT),
            ("redirect_uri", REDIRECT),
            ("response_type", "code"),
            ("scope", "https://mail.google.com/"),
            ("login_hint", BOB),
            ("state", "st"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 302);
    let to = location(&response);
    assert_eq!(param(&to, "state").as_deref(), Some("st"));
    let code = param(&to, "code").unwrap();
    let (status, _) = token_request(
        &gsim,
        &[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("client_id", WEB_CLIENT),
            ("client_secret", WEB_SECRET),
            ("redirect_uri", REDIRECT),
        ],
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn clock_tokens_password_mailboxes_deliveries_counters_and_faults_over_http() {
    let gsim = start().await;
    let (_, minted) = call(
        &gsim,
        Method::POST,
        "/_gsim/tokens/mint",
        Some(json!({"client_id": TESTING_CLIENT, "email": ALICE})),
    )
    .await;
    let refresh = minted["refresh_token"].as_str().unwrap().to_string();
    let (_, listed) = call(
        &gsim,
        Method::GET,
        &format!("/_gsim/tokens?account={ALICE}"),
        None,
    )
    .await;
    assert_eq!(listed[0]["token"], refresh.as_str());
    assert_eq!(listed[0]["live"], true);

    let (_, clock) = call(
        &gsim,
        Method::POST,
        "/_gsim/clock/advance",
        Some(json!({"seconds": 8 * 86400})),
    )
    .await;
    assert_eq!(clock["offset_secs"], 8 * 86400);
    let (_, listed) = call(
        &gsim,
        Method::GET,
        &format!("/_gsim/tokens?account={ALICE}"),
        None,
    )
    .await;
    assert_eq!(
        (listed[0]["live"].clone(), listed[0]["death"].clone()),
        (json!(false), json!("expired"))
    );

    let (_, minted) = call(
        &gsim,
        Method::POST,
        "/_gsim/tokens/mint",
        Some(json!({"client_id": WEB_CLIENT, "email": BOB})),
    )
    .await;
    assert_eq!(
        call(
            &gsim,
            Method::POST,
            "/_gsim/tokens/revoke",
            Some(json!({"token": minted["access_token"]}))
        )
        .await
        .0,
        200
    );
    assert_eq!(
        call(
            &gsim,
            Method::POST,
            "/_gsim/tokens/revoke",
            Some(json!({"token": minted["access_token"]}))
        )
        .await
        .0,
        404
    );
    assert_eq!(
        call(
            &gsim,
            Method::POST,
            &format!("/_gsim/accounts/{CAROL}/password"),
            Some(json!({"password": "x"}))
        )
        .await
        .0,
        200
    );

    let (status, appended) = call(
        &gsim,
        Method::POST,
        &format!("/_gsim/mailboxes/{ALICE}/INBOX"),
        Some(json!({"raw": "Subject: hi\r\n\r\nyo\r\n", "flags": ["\\Seen"]})),
    )
    .await;
    assert_eq!(status, 200);
    let (_, inbox) = call(
        &gsim,
        Method::GET,
        &format!("/_gsim/mailboxes/{ALICE}/inbox"),
        None,
    )
    .await;
    assert_eq!(inbox["messages"][0]["uid"], appended["uid"]);
    assert_eq!(inbox["messages"][0]["flags"], json!(["\\Seen"]));

    let (_, _) = call(&gsim, Method::POST, "/_gsim/faults/smtp", Some(json!({"stage": "greeting", "reply": "421 4.7.0 Try again later, closing connection.", "close": true}))).await;
    let (_, faults) = call(&gsim, Method::GET, "/_gsim/faults", None).await;
    assert_eq!(faults["smtp"][0]["stage"], "greeting");
    let mut raw = Raw::smtp(&gsim).await;
    assert_eq!(
        raw.reply().await,
        "421 4.7.0 Try again later, closing connection.\r\n"
    );
    assert!(raw.closed().await);

    let (mut raw, _) = Raw::smtp_authenticated(&gsim, ALICE).await;
    raw.send(&format!("MAIL FROM:<{ALICE}>")).await;
    raw.reply().await;
    raw.send(&format!("RCPT TO:<{CAROL}>")).await;
    raw.reply().await;
    raw.send("DATA").await;
    raw.reply().await;
    raw.send_bytes(b"Subject: logged\r\n\r\nx\r\n.\r\n").await;
    raw.reply().await;
    let (_, deliveries) = call(&gsim, Method::GET, "/_gsim/deliveries", None).await;
    assert_eq!(deliveries[0]["rcpt_to"], json!([CAROL]));
    assert!(
        deliveries[0]["raw"]
            .as_str()
            .unwrap()
            .contains("Subject: logged")
    );
    let (_, later) = call(
        &gsim,
        Method::GET,
        &format!("/_gsim/deliveries?since={}", deliveries[0]["id"]),
        None,
    )
    .await;
    assert_eq!(later, json!([]));

    let (_, counters) = call(&gsim, Method::GET, "/_gsim/counters", None).await;
    assert_eq!(counters["smtp_logins"]["ok"], 1);
    assert_eq!(counters["messages_accepted"], 1);
    assert!(counters["smtp_connections"].as_u64().unwrap() >= 2);

    assert_eq!(
        call(
            &gsim,
            Method::POST,
            "/_gsim/faults/token",
            Some(json!({"kind": "status", "status": 500, "count": 1}))
        )
        .await
        .0,
        200
    );
    let (status, body) = token_request(
        &gsim,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", "x"),
            ("client_id", WEB_CLIENT),
            ("client_secret", WEB_SECRET),
        ],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (500, Some("internal_failure"))
    );
    assert_eq!(
        call(&gsim, Method::DELETE, "/_gsim/faults", None).await.0,
        200
    );
    let (_, faults) = call(&gsim, Method::GET, "/_gsim/faults", None).await;
    assert_eq!(faults, json!({"smtp": [], "token": []}));
}
