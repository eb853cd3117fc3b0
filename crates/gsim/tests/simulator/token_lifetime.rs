//! How refresh tokens die (google.md §1.8), on the simulated clock.

use serde_json::Value;

use crate::support::*;

const MAIL: &str = "https://mail.google.com/";
const DAY: i64 = 86_400;

async fn refresh(gsim: &gsim::Gsim, client: &str, secret: &str, token: &str) -> (u16, Value) {
    token_request(
        gsim,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", token),
            ("client_id", client),
            ("client_secret", secret),
        ],
    )
    .await
}

fn refresh_token(body: &Value) -> String {
    body["refresh_token"].as_str().unwrap().to_string()
}

fn dead(result: &(u16, Value)) -> bool {
    result.0 == 400
        && result.1["error"] == "invalid_grant"
        && result.1["error_description"] == "Token has been expired or revoked."
}

#[tokio::test]
async fn testing_app_refresh_token_dies_after_seven_days() {
    let gsim = start().await;
    let token = refresh_token(&tokens(&gsim, TESTING_CLIENT, ALICE, &[MAIL]));
    gsim.world().advance_clock(6 * DAY);
    let day6 = refresh(&gsim, TESTING_CLIENT, TESTING_SECRET, &token).await;
    assert_eq!(day6.0, 200, "alive on day 6: {}", day6.1);
    // Counts down; the wall clock also runs between the two requests (a second may pass).
    let left = day6.1["refresh_token_expires_in"].as_i64().unwrap();
    assert!((DAY - 6..=DAY - 1).contains(&left), "counts down: {left}");
    gsim.world().advance_clock(DAY);
    assert!(dead(
        &refresh(&gsim, TESTING_CLIENT, TESTING_SECRET, &token).await
    ));

    // A Production app's token does not die with time.
    let prod = refresh_token(&tokens(&gsim, WEB_CLIENT, ALICE, &[MAIL]));
    gsim.world().advance_clock(60 * DAY);
    assert_eq!(refresh(&gsim, WEB_CLIENT, WEB_SECRET, &prod).await.0, 200);
}

#[tokio::test]
async fn the_101st_refresh_token_silently_kills_the_oldest() {
    let gsim = start().await;
    let mut issued = Vec::new();
    for _ in 0..100 {
        issued.push(refresh_token(&tokens(&gsim, WEB_CLIENT, ALICE, &[MAIL])));
        gsim.world().advance_clock(1);
    }
    assert_eq!(
        refresh(&gsim, WEB_CLIENT, WEB_SECRET, &issued[0]).await.0,
        200
    );
    // Another client's tokens do not count against this client's cap.
    let other = refresh_token(&tokens(&gsim, TESTING_CLIENT, ALICE, &[MAIL]));
    issued.push(refresh_token(&tokens(&gsim, WEB_CLIENT, ALICE, &[MAIL])));
    assert!(dead(
        &refresh(&gsim, WEB_CLIENT, WEB_SECRET, &issued[0]).await
    ));
    assert_eq!(
        refresh(&gsim, WEB_CLIENT, WEB_SECRET, &issued[1]).await.0,
        200
    );
    assert_eq!(
        refresh(&gsim, WEB_CLIENT, WEB_SECRET, &issued[100]).await.0,
        200
    );
    assert_eq!(
        refresh(&gsim, TESTING_CLIENT, TESTING_SECRET, &other)
            .await
            .0,
        200
    );
    let info = gsim.world().refresh_tokens(Some(ALICE));
    let killed: Vec<_> = info.iter().filter(|t| !t.live).collect();
    assert_eq!(killed.len(), 1);
    assert_eq!(killed[0].token, issued[0]);
}

#[tokio::test]
async fn password_change_kills_gmail_scoped_refresh_tokens_only() {
    let gsim = start().await;
    let gmail = refresh_token(&tokens(&gsim, WEB_CLIENT, ALICE, &[MAIL]));
    let profile_only = refresh_token(&tokens(&gsim, WEB_CLIENT, ALICE, &["openid", "email"]));
    let bobs = refresh_token(&tokens(&gsim, WEB_CLIENT, BOB, &[MAIL]));
    gsim.world().change_password(ALICE, "new password").unwrap();
    assert!(dead(&refresh(&gsim, WEB_CLIENT, WEB_SECRET, &gmail).await));
    assert_eq!(
        refresh(&gsim, WEB_CLIENT, WEB_SECRET, &profile_only)
            .await
            .0,
        200
    );
    assert_eq!(refresh(&gsim, WEB_CLIENT, WEB_SECRET, &bobs).await.0, 200);
}

#[tokio::test]
async fn access_tokens_stop_opening_smtp_after_3599_seconds() {
    let gsim = start().await;
    let token = mail_token(&gsim, ALICE);
    let (mut raw, _) = Raw::smtp_ready(&gsim).await;
    raw.send(&format!("AUTH XOAUTH2 {}", xoauth2(ALICE, &token)))
        .await;
    assert_eq!(raw.reply().await, "235 2.7.0 Accepted\r\n");

    gsim.world().advance_clock(3599);
    let (mut raw, _) = Raw::smtp_ready(&gsim).await;
    raw.send(&format!("AUTH XOAUTH2 {}", xoauth2(ALICE, &token)))
        .await;
    assert!(
        raw.reply().await.starts_with("334 "),
        "expired token is refused"
    );
}
