//! "Test Connection": a real SMTP session with gsim, TLS verified, the AUTH reply checked, nothing
//! sent; and access tokens refreshed ahead of expiry, one refresh at a time.

use reqwest::StatusCode;

use crate::support::*;

async fn connected(t: &TestApp) -> i64 {
    let id = t.ready_to_connect().await;
    assert_eq!(t.connect(id, ALICE).await.status, StatusCode::SEE_OTHER);
    id
}

fn refreshes(t: &TestApp) -> u64 {
    t.gsim
        .world()
        .counters()
        .token_requests
        .get("refresh_token")
        .and_then(|o| o.get("ok").copied())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_healthy_server_tests_successful_and_nothing_is_sent() {
    let t = spawn(Db::Sqlite).await;
    let id = connected(&t).await;
    let done = t.submit(&format!("/servers/{id}/test"), &[]).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    let page = t.visit(&format!("/servers/{id}")).await;
    assert!(page.has("Connection Test Successful!"), "{}", page.body);
    assert!(page.has("TLS verified"));
    assert!(page.has("AUTH XOAUTH2 as alice@gmail.com: 235 accepted"));
    assert!(page.has("354 Go ahead"));
    assert!(
        t.gsim.world().deliveries(0).is_empty(),
        "the test never finishes a message"
    );
    let counters = t.gsim.world().counters();
    assert_eq!(counters.smtp_logins.ok, 1);
    assert_eq!(counters.messages_accepted, 0);
    assert_eq!(
        refreshes(&t),
        0,
        "the token from the consent is still fresh"
    );
    t.finish().await;
}

#[tokio::test]
async fn a_535_shows_googles_reply_and_asks_for_a_reconnect() {
    let t = spawn(Db::Sqlite).await;
    let id = connected(&t).await;
    // Gmail refuses the login twice: the stored token, then the fresh one.
    t.gsim.world().arm_smtp_fault(refused_logins());
    t.submit(&format!("/servers/{id}/test"), &[]).await;
    let page = t.visit(&format!("/servers/{id}")).await;
    assert!(page.has("Connection Test Failed"));
    assert!(page.has("Failed at AUTH XOAUTH2"));
    assert!(
        page.has("535 5.7.8 Username and Password not accepted. Learn more at"),
        "Google's reply verbatim"
    );
    assert!(page.has("https://support.google.com/mail/?p=BadCredentials"));
    assert!(page.has("trying once more with a fresh token"));
    assert!(page.has("Reconnect needed"));
    assert!(page.has("Gmail refused a fresh token at login"));
    assert_eq!(refreshes(&t), 1, "exactly one forced refresh");
    t.finish().await;
}

#[tokio::test]
async fn googles_334_challenge_and_535_are_shown_when_even_a_fresh_token_is_refused() {
    let t = spawn(Db::Sqlite).await;
    let id = connected(&t).await;
    // From now on every token reaches Gmail already expired: the stored one (Google's clock moved)
    // and the fresh one (issued with no lifetime). Gmail answers each with 334 then 535.
    t.gsim.world().advance_clock(3600);
    t.gsim
        .world()
        .with(|s| s.settings.oauth.access_token_lifetime_secs = 0);
    let report = t.app.test_server(id).await.unwrap();
    let failure = report.failure.unwrap();
    assert_eq!(failure.stage, mailgate::domain::Stage::Auth);
    assert_eq!(
        failure.challenge.as_deref(),
        Some(r#"{"status":"400","schemes":"Bearer","scope":"https://mail.google.com/"}"#)
    );
    let reply = failure.reply.unwrap();
    assert!(reply.starts_with("535 5.7.8 Username and Password not accepted. Learn more at\n535 5.7.8 https://support.google.com/mail/?p=BadCredentials "), "{reply}");
    assert!(failure.fix.unwrap().contains("Connect your Gmail account"));
    let page = t.visit(&format!("/servers/{id}")).await;
    assert!(
        page.has("Google&#39;s XOAUTH2 challenge, decoded:")
            || page.has("Google's XOAUTH2 challenge, decoded:")
    );
    assert!(page.has("schemes"));
    assert_eq!(t.gsim.world().counters().smtp_logins.failed, 2);
    t.finish().await;
}

#[tokio::test]
async fn an_expired_token_at_gmail_is_refreshed_once_and_the_test_passes() {
    let t = spawn(Db::Sqlite).await;
    let id = connected(&t).await;
    // Google's clock moves past the access token's life while mailgate's does not notice.
    t.gsim.world().advance_clock(3600);
    let report = t.app.test_server(id).await.unwrap();
    assert!(report.ok, "{report:?}");
    assert!(
        report.steps.iter().any(|s| s.contains("535")),
        "the stale token was refused first"
    );
    assert!(
        report
            .steps
            .iter()
            .any(|s| s == "Got a fresh access token from Google")
    );
    assert_eq!(refreshes(&t), 1);
    t.finish().await;
}

#[tokio::test]
async fn invalid_grant_marks_reconnect_needed_with_reason_and_time() {
    let t = spawn(Db::Sqlite).await;
    let id = connected(&t).await;
    // A Testing app's refresh token dies after 7 days.
    t.gsim.world().advance_clock(8 * 86_400);
    t.clock.advance(8 * 86_400);
    let report = t.app.test_server(id).await.unwrap();
    let failure = report.failure.unwrap();
    assert_eq!(failure.stage, mailgate::domain::Stage::Token);
    assert!(
        failure
            .message
            .contains("invalid_grant: Token has been expired or revoked."),
        "{}",
        failure.message
    );
    // Eight days also ended the admin's 12-hour session.
    t.sign_in().await;
    let page = t.visit(&format!("/servers/{id}")).await;
    assert!(page.has("Reconnect needed"));
    assert!(page.has(
        "Google refused the refresh token (invalid_grant: Token has been expired or revoked.)"
    ));
    assert!(page.has("Since "));
    assert!(!page.has("Gmail Token Valid"));
    // Reconnecting makes it valid again.
    assert_eq!(t.connect(id, ALICE).await.status, StatusCode::SEE_OTHER);
    assert!(
        t.visit(&format!("/servers/{id}"))
            .await
            .has("Gmail Token Valid")
    );
    t.finish().await;
}

#[tokio::test]
async fn tokens_are_refreshed_ahead_of_expiry_one_refresh_at_a_time() {
    use secrecy::ExposeSecret;
    let t = spawn(Db::Sqlite).await;
    connected(&t).await;
    let first = t.app.access_token(ALICE, false).await.unwrap();
    assert_eq!(refreshes(&t), 0);
    // 3599 s tokens; 200 s before expiry is inside the 300 s margin.
    t.clock.advance(3599 - 200);
    let mut callers = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let app = t.app.clone();
        callers.spawn(async move {
            app.access_token(ALICE, false)
                .await
                .map(|token| token.expose_secret().to_string())
        });
    }
    let tokens: Vec<String> = callers
        .join_all()
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(refreshes(&t), 1, "ten callers, one refresh");
    assert_ne!(tokens[0], first.expose_secret());
    assert!(tokens.iter().all(|token| *token == tokens[0]));
    t.finish().await;
}

#[tokio::test]
async fn a_google_outage_during_refresh_is_temporary_and_keeps_the_badge() {
    let t = spawn(Db::Sqlite).await;
    let id = connected(&t).await;
    t.clock.advance(3600);
    t.gsim.world().arm_token_fault(gsim::TokenFault::Status {
        status: 503,
        count: 1,
    });
    let report = t.app.test_server(id).await.unwrap();
    let failure = report.failure.unwrap();
    assert!(
        failure
            .message
            .contains("Google could not refresh the token just now"),
        "{}",
        failure.message
    );
    assert!(failure.fix.unwrap().contains("try again in a minute"));
    let page = t.visit(&format!("/servers/{id}")).await;
    assert!(
        page.has("Gmail Token Valid"),
        "an outage is not the account's fault"
    );
    assert!(page.has("Last temporary problem"));
    t.finish().await;
}
