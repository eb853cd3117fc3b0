//! "Connect your Gmail account", end to end against gsim: the authorization request, the callback,
//! and every way the seed's FAQ says it goes wrong.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::StatusCode;

use crate::support::*;

#[tokio::test]
async fn the_authorization_url_carries_everything_google_needs() {
    let t = spawn(Db::Sqlite).await;
    let id = t.ready_to_connect().await;
    let url = t.click_connect(id).await;
    let auth = format!("{}/o/oauth2/v2/auth?", t.gsim.endpoints().http);
    assert!(url.starts_with(&auth), "{url}");
    assert_eq!(param(&url, "client_id").as_deref(), Some(CLIENT_ID));
    assert_eq!(
        param(&url, "redirect_uri"),
        Some(format!("{}/google_gmail/confirm", t.base))
    );
    assert_eq!(param(&url, "response_type").as_deref(), Some("code"));
    assert_eq!(
        param(&url, "scope").as_deref(),
        Some("https://mail.google.com/ openid email")
    );
    assert_eq!(param(&url, "access_type").as_deref(), Some("offline"));
    assert_eq!(param(&url, "prompt").as_deref(), Some("consent"));
    assert_eq!(param(&url, "login_hint").as_deref(), Some(ALICE));
    assert_eq!(
        param(&url, "code_challenge_method").as_deref(),
        Some("S256")
    );
    let challenge = param(&url, "code_challenge").unwrap();
    assert_eq!(
        URL_SAFE_NO_PAD.decode(&challenge).unwrap().len(),
        32,
        "SHA-256"
    );
    let state = param(&url, "state").unwrap();
    assert!(state.len() >= 43, "a random nonce, not Flectra's JSON");
    assert!(!state.contains('{'));
    // Each click makes a new nonce.
    let again = t.click_connect(id).await;
    assert_ne!(param(&again, "state").unwrap(), state);
    t.finish().await;
}

#[tokio::test]
async fn the_seed_flow_ends_with_gmail_token_valid_and_tokens_sealed() {
    let t = spawn(Db::Sqlite).await;
    let id = t.ready_to_connect().await;
    let before = t.visit(&format!("/servers/{id}")).await;
    assert!(before.has("Not connected"));
    assert!(before.has("Connect your Gmail account"));

    let back = t.connect(id, ALICE).await;
    assert_eq!(back.status, StatusCode::SEE_OTHER, "{}", back.body);
    assert_eq!(back.location, Some(format!("/servers/{id}#gmail")));
    let page = t.visit(&format!("/servers/{id}")).await;
    assert!(page.has("Gmail Token Valid"));
    assert!(page.has("badge ok"));
    assert!(page.has("Gmail account connected."));
    // A Testing app: Google said when the connection dies, and mailgate says it too.
    assert!(page.has("This connection will stop working on"));
    assert!(page.has("in 7 days"));
    assert!(page.has("refresh tokens that last 7 days"));

    let connection = t.app.store.connection(ALICE).await.unwrap().unwrap();
    assert_eq!(connection.client_id, CLIENT_ID);
    let refresh = t.refresh_token_at_google(ALICE);
    let db = t.db_files().await;
    assert!(
        !db.windows(refresh.len()).any(|w| w == refresh.as_bytes()),
        "no plain refresh token in the database"
    );
    assert!(
        !db.windows(5).any(|w| w == b"ya29."),
        "no plain access token in the database"
    );
    assert!(
        !db.windows(4).any(|w| w == b"1//0"),
        "no refresh token prefix either"
    );
    t.finish().await;
}

async fn refused(t: &TestApp, path: &str) -> Page {
    let page = t.get(path).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN, "{path}: {}", page.body);
    assert!(page.has("Connect again"));
    page
}

#[tokio::test]
async fn forged_replayed_expired_and_foreign_states_are_refused_each_with_its_reason() {
    let t = spawn(Db::Sqlite).await;
    let id = t.ready_to_connect().await;

    let forged = refused(
        &t,
        "/google_gmail/confirm?state=forged-state-value&code=4/0Axyz",
    )
    .await;
    assert!(forged.has("This connection attempt is unknown to mailgate"));
    let missing = refused(&t, "/google_gmail/confirm?code=4/0Axyz").await;
    assert!(missing.has("This page needs Google's answer"));

    // Replayed: the same callback twice (a reload).
    let to_google = t.click_connect(id).await;
    let back = t.consent_at_google(&to_google, ALICE, true).await;
    assert_eq!(t.get(&back).await.status, StatusCode::SEE_OTHER);
    let replay = refused(&t, &back).await;
    assert!(replay.has("This connection attempt was already used"));

    // Expired: more than ten minutes at Google.
    let to_google = t.click_connect(id).await;
    let back = t.consent_at_google(&to_google, ALICE, true).await;
    t.clock.advance(601);
    let expired = refused(&t, &back).await;
    assert!(expired.has("This connection attempt expired"));

    // Foreign: another admin started it.
    let to_google = t.click_connect(id).await;
    let back = t.consent_at_google(&to_google, ALICE, true).await;
    t.app
        .create_admin(
            "second@example.com",
            "another long passphrase".to_string().into(),
        )
        .await
        .unwrap();
    let (second, csrf) = t.guest_at_login().await;
    second
        .post(t.url("/login"))
        .form(&[
            ("_csrf", csrf.as_str()),
            ("email", "second@example.com"),
            ("password", "another long passphrase"),
        ])
        .send()
        .await
        .unwrap();
    let foreign = second.get(t.url(&back)).send().await.unwrap();
    assert_eq!(foreign.status(), StatusCode::FORBIDDEN);
    assert!(
        foreign
            .text()
            .await
            .unwrap()
            .contains("This connection was started by another administrator")
    );
    // The rightful admin can still finish it: the foreign attempt did not spend it.
    assert_eq!(t.get(&back).await.status, StatusCode::SEE_OTHER);
    t.finish().await;
}

#[tokio::test]
async fn cancel_at_google_is_explained_with_the_test_users_cure() {
    let t = spawn(Db::Sqlite).await;
    let id = t.ready_to_connect().await;
    let to_google = t.click_connect(id).await;
    let back = t.consent_at_google(&to_google, ALICE, false).await;
    assert_eq!(param(&back, "error").as_deref(), Some("access_denied"));
    let page = t.get(&back).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.has("Google refused access (access_denied)"));
    assert!(page.has("Test users"));
    assert!(page.has(&format!("add {ALICE}")));
    assert!(page.has("Connect again"));
    assert!(t.app.store.connection(ALICE).await.unwrap().is_none());
    t.finish().await;
}

#[tokio::test]
async fn a_different_google_account_is_refused() {
    let t = spawn(Db::Sqlite).await;
    t.ready_to_connect().await;
    // Bob is not a test user of the Testing app; make the app public so Google lets Bob in.
    t.publish_client();
    let id = t
        .app
        .store
        .server_by_name("Gmail")
        .await
        .unwrap()
        .unwrap()
        .id;
    let page = t.connect(id, BOB).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.has(&format!(
        "You authorized {BOB} but this server sends as {ALICE}."
    )));
    assert!(t.app.store.connection(BOB).await.unwrap().is_none());
    assert!(t.app.store.connection(ALICE).await.unwrap().is_none());
    t.finish().await;
}

#[tokio::test]
async fn token_endpoint_errors_are_named_with_their_cure() {
    let t = spawn(Db::Sqlite).await;
    let id = t.ready_to_connect().await;

    // The secret in Settings no longer matches Google's (someone reset it in the console).
    let to_google = t.click_connect(id).await;
    let back = t.consent_at_google(&to_google, ALICE, true).await;
    t.gsim
        .world()
        .patch_client(
            CLIENT_ID,
            gsim::ClientPatch {
                client_secret: Some("GOCSPX-rotated".into()),
                ..Default::default()
            },
        )
        .unwrap();
    let page = t.get(&back).await;
    assert!(
        page.has("Google does not recognise the Gmail Credentials (invalid_client)"),
        "{}",
        page.body
    );
    assert!(
        page.has("invalid_client: Unauthorized"),
        "Google's own words"
    );
    t.gsim
        .world()
        .patch_client(
            CLIENT_ID,
            gsim::ClientPatch {
                client_secret: Some(CLIENT_SECRET.into()),
                ..Default::default()
            },
        )
        .unwrap();

    // The code sat too long at Google's end.
    let to_google = t.click_connect(id).await;
    let back = t.consent_at_google(&to_google, ALICE, true).await;
    t.gsim.world().advance_clock(11 * 60);
    let page = t.get(&back).await;
    assert!(page.has("(invalid_grant)"));
    assert!(page.has("invalid_grant: Bad Request"));

    // Google's token endpoint is down.
    let to_google = t.click_connect(id).await;
    let back = t.consent_at_google(&to_google, ALICE, true).await;
    t.gsim.world().arm_token_fault(gsim::TokenFault::Status {
        status: 503,
        count: 1,
    });
    let page = t.get(&back).await;
    assert!(page.has("Google did not answer"));
    assert!(
        t.app.store.connection(ALICE).await.unwrap().is_none(),
        "nothing half-saved"
    );
    t.finish().await;
}

#[test]
fn redirect_uri_mismatch_names_the_exact_uri_and_the_web_application_type() {
    use mailgate::app::connect_gmail::ConnectFailure;
    use mailgate::domain::ConnectFor;
    use mailgate::google::GoogleError;
    let failure = ConnectFailure::Token {
        target: ConnectFor::Outgoing(3),
        error: GoogleError::OAuth {
            status: 400,
            error: "redirect_uri_mismatch".into(),
            description: Some("Bad Request".into()),
        },
    };
    let e = failure.explain("https://mail.example.com/google_gmail/confirm");
    assert!(e.title.contains("redirect_uri_mismatch"));
    assert!(
        e.fix
            .iter()
            .any(|f| f.contains("\"Web application\" (not Desktop app)"))
    );
    assert!(
        e.fix
            .iter()
            .any(|f| f.ends_with("add exactly: https://mail.example.com/google_gmail/confirm"))
    );
    assert_eq!(e.again, Some(ConnectFor::Outgoing(3)));
}

#[tokio::test]
async fn disconnect_revokes_at_google_and_forgets_here() {
    let t = spawn(Db::Sqlite).await;
    let id = t.ready_to_connect().await;
    t.connect(id, ALICE).await;
    let refresh = t.refresh_token_at_google(ALICE);
    let page = t.submit(&format!("/servers/{id}/disconnect"), &[]).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    let info = t.gsim.world().refresh_tokens(Some(ALICE));
    let token = info.iter().find(|i| i.token == refresh).unwrap();
    assert!(!token.live, "revoked at Google");
    let page = t.visit(&format!("/servers/{id}")).await;
    assert!(page.has("Disconnected: the token was revoked at Google"));
    assert!(page.has("Not connected"));
    assert!(t.app.store.connection(ALICE).await.unwrap().is_none());
    t.finish().await;
}

#[tokio::test]
async fn changing_the_client_id_asks_for_a_reconnect() {
    let t = spawn(Db::Sqlite).await;
    let id = t.ready_to_connect().await;
    t.connect(id, ALICE).await;
    t.submit(
        "/settings",
        &[
            ("custom_email_servers", "1"),
            ("client_id", "888-other.apps.googleusercontent.com"),
            ("client_secret", ""),
        ],
    )
    .await;
    let page = t.visit(&format!("/servers/{id}")).await;
    assert!(page.has("Reconnect needed"));
    assert!(page.has("the Client ID in Settings changed"));
    t.finish().await;
}

#[tokio::test]
async fn a_desktop_type_client_is_caught_before_the_admin_meets_googles_error_page() {
    // The seed FAQ "Application Type": a deployed mailgate (not on loopback) with a Desktop app
    // client. Google would show "Error 400: redirect_uri_mismatch" on its own page.
    let t = spawn_at_public_url("http://mail.example.com:8069").await;
    t.make_client_desktop();
    let id = t.ready_to_connect().await;
    let page = t.submit(&format!("/servers/{id}/connect"), &[]).await;
    assert_eq!(
        page.status,
        StatusCode::BAD_REQUEST,
        "no redirect to Google's error page"
    );
    assert!(page.has("Google does not accept mailgate's redirect URI (redirect_uri_mismatch)"));
    assert!(page.has("Error 400: redirect_uri_mismatch"));
    assert!(page.has("\"Web application\" (not Desktop app)"));
    assert!(page.has("add exactly: http://mail.example.com:8069/google_gmail/confirm"));
    assert!(page.has("Open Google's page anyway"));
    t.finish().await;
}

#[tokio::test]
async fn an_unknown_client_id_is_caught_before_leaving_mailgate() {
    let t = spawn(Db::Sqlite).await;
    let id = t.ready_to_connect().await;
    t.submit(
        "/settings",
        &[
            ("custom_email_servers", "1"),
            ("client_id", "999-unknown.apps.googleusercontent.com"),
            ("client_secret", ""),
        ],
    )
    .await;
    let page = t.submit(&format!("/servers/{id}/connect"), &[]).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.has("Google does not recognise the Gmail Credentials (invalid_client)"));
    assert!(page.has("Error 401: invalid_client"));
    t.finish().await;
}

#[tokio::test]
async fn after_googles_own_403_the_server_page_explains_test_users() {
    // The seed FAQ "No Test Users Added": Bob signs in to a Testing app that lists only Alice.
    // Google shows its 403 page and never sends the browser back.
    let t = spawn(Db::Sqlite).await;
    t.create_admin().await;
    t.save_credentials().await;
    let id = t.create_gmail_server("Bob's Gmail", BOB).await;
    let to_google = t.click_connect(id).await;
    let google = browser();
    let chooser = google
        .get(&to_google)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let flow = hidden(&chooser, "flow").unwrap();
    let denied = google
        .post(format!(
            "{}/o/oauth2/v2/auth/choose",
            t.gsim.endpoints().http
        ))
        .form(&[("flow", flow.as_str()), ("email", BOB)])
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 403);
    assert!(
        denied
            .text()
            .await
            .unwrap()
            .contains("Error 403: access_denied")
    );

    let page = t.visit(&format!("/servers/{id}")).await;
    assert!(page.has("did not come back from Google"), "{}", page.body);
    assert!(page.has("“Error 403: access_denied”"));
    assert!(page.has(&format!("add {BOB}, save, and connect again")));
    t.finish().await;
}

#[tokio::test]
async fn the_unfinished_notice_goes_away_once_connected() {
    let t = spawn(Db::Sqlite).await;
    let id = t.ready_to_connect().await;
    t.click_connect(id).await;
    assert!(
        t.visit(&format!("/servers/{id}"))
            .await
            .has("did not come back from Google")
    );
    assert_eq!(t.connect(id, ALICE).await.status, StatusCode::SEE_OTHER);
    let page = t.visit(&format!("/servers/{id}")).await;
    assert!(page.has("Gmail Token Valid"));
    assert!(!page.has("did not come back from Google"));
    t.finish().await;
}
