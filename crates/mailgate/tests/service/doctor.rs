//! The pre-flight check: each misconfiguration from the seed's FAQ found, with its fix.

use std::process::Command;

use mailgate::app::doctor::{DoctorReport, Status};
use reqwest::StatusCode;

use crate::support::*;

fn find<'a>(report: &'a DoctorReport, id: &str) -> &'a mailgate::app::doctor::Check {
    report
        .checks
        .iter()
        .find(|c| c.id == id)
        .unwrap_or_else(|| panic!("no check {id} in {report:#?}"))
}

async fn connected(t: &TestApp) -> i64 {
    let id = t.ready_to_connect().await;
    assert_eq!(t.connect(id, ALICE).await.status, StatusCode::SEE_OTHER);
    id
}

#[tokio::test]
async fn a_healthy_setup_passes_every_check() {
    let t = spawn(Db::Sqlite).await;
    connected(&t).await;
    let report = t.app.doctor().await.unwrap();
    assert!(report.ok, "{report:#?}");
    for id in [
        "public_url",
        "secret_key",
        "database",
        "client_id",
        "client_secret",
        "clock",
        "server:Gmail",
        "server:Gmail:smtp",
    ] {
        assert_eq!(find(&report, id).status, Status::Pass, "{id}: {report:#?}");
    }
    assert!(
        find(&report, "server:Gmail")
            .detail
            .contains("because the app is in Testing")
    );
    assert!(
        find(&report, "server:Gmail:smtp")
            .detail
            .contains("valid certificate")
    );
    t.finish().await;
}

#[tokio::test]
async fn an_unknown_client_id_fails_with_its_fix() {
    let t = spawn(Db::Sqlite).await;
    t.ready_to_connect().await;
    t.submit(
        "/settings",
        &[
            ("custom_email_servers", "1"),
            ("client_id", "999-unknown.apps.googleusercontent.com"),
            ("client_secret", ""),
        ],
    )
    .await;
    let report = t.app.doctor().await.unwrap();
    assert!(!report.ok);
    let c = find(&report, "client_id");
    assert_eq!(c.status, Status::Fail);
    assert!(
        c.detail.contains("Error 401: invalid_client"),
        "{}",
        c.detail
    );
    assert!(c.fix.as_ref().unwrap().contains("Copy the Client ID again"));
    assert!(
        report.checks.iter().all(|c| c.id != "client_secret"),
        "the secret cannot be judged for an unknown client"
    );
    t.finish().await;
}

#[tokio::test]
async fn a_wrong_client_secret_fails_with_its_fix() {
    let t = spawn(Db::Sqlite).await;
    t.ready_to_connect().await;
    t.submit(
        "/settings",
        &[
            ("custom_email_servers", "1"),
            ("client_id", CLIENT_ID),
            ("client_secret", "GOCSPX-wrong-secret"),
        ],
    )
    .await;
    let report = t.app.doctor().await.unwrap();
    assert_eq!(find(&report, "client_id").status, Status::Pass);
    let c = find(&report, "client_secret");
    assert_eq!(c.status, Status::Fail);
    assert!(
        c.detail.contains("invalid_client: Unauthorized"),
        "{}",
        c.detail
    );
    assert!(
        c.fix
            .as_ref()
            .unwrap()
            .contains("Copy the Client Secret again")
    );
    t.finish().await;
}

#[tokio::test]
async fn an_unregistered_redirect_uri_fails_naming_the_exact_uri() {
    let t = spawn(Db::Sqlite).await;
    t.ready_to_connect().await;
    t.gsim
        .world()
        .patch_client(
            CLIENT_ID,
            gsim::ClientPatch {
                redirect_uris: Some(vec!["https://elsewhere.example.com/cb".into()]),
                ..Default::default()
            },
        )
        .unwrap();
    let report = t.app.doctor().await.unwrap();
    let c = find(&report, "client_id");
    assert_eq!(c.status, Status::Fail);
    assert!(c.detail.contains("Error 400: redirect_uri_mismatch"));
    assert!(
        c.fix
            .as_ref()
            .unwrap()
            .contains(&format!("add exactly {}/google_gmail/confirm", t.base))
    );
    t.finish().await;
}

#[tokio::test]
async fn a_desktop_type_client_fails_as_a_mismatch_that_names_desktop() {
    let t = spawn_at_public_url("https://mail.example.com").await;
    t.make_client_desktop();
    t.app
        .store
        .save_google_settings(
            &t.app.sealer,
            &mailgate::store::GoogleSettings {
                custom_email_servers: true,
                client_id: Some(CLIENT_ID.into()),
                client_secret: Some(CLIENT_SECRET.to_string().into()),
                test_recipient: None,
            },
            t.app.now(),
        )
        .await
        .unwrap();
    let report = t.app.doctor().await.unwrap();
    let c = find(&report, "client_id");
    assert_eq!(c.status, Status::Fail);
    assert!(c.detail.contains("redirect_uri_mismatch"));
    assert!(
        c.fix
            .as_ref()
            .unwrap()
            .contains("a Desktop app client gives this error")
    );
    assert_eq!(find(&report, "public_url").status, Status::Pass, "https");
    t.finish().await;
}

#[tokio::test]
async fn an_http_public_url_off_loopback_fails() {
    let t = spawn_at_public_url("http://mail.example.com").await;
    let report = t.app.doctor().await.unwrap();
    let c = find(&report, "public_url");
    assert_eq!(c.status, Status::Fail);
    assert!(c.fix.as_ref().unwrap().contains("https"));
    let guide = t.app.setup_guide().await.unwrap();
    assert_eq!(guide.authorized_domain.as_deref(), Some("example.com"));
    t.finish().await;
}

#[tokio::test]
async fn a_server_whose_token_was_revoked_fails_and_is_marked() {
    let t = spawn(Db::Sqlite).await;
    let id = connected(&t).await;
    // The user removed mailgate's access at myaccount.google.com.
    let refresh = t.refresh_token_at_google(ALICE);
    t.gsim.world().revoke_token(&refresh).unwrap();
    let report = t.app.doctor().await.unwrap();
    let c = find(&report, "server:Gmail");
    assert_eq!(c.status, Status::Fail);
    assert!(c.detail.contains("Reconnect needed"), "{}", c.detail);
    assert!(c.detail.contains("Token has been expired or revoked."));
    assert!(
        c.fix
            .as_ref()
            .unwrap()
            .contains("Connect your Gmail account")
    );
    assert!(
        t.visit(&format!("/servers/{id}"))
            .await
            .has("Reconnect needed")
    );
    t.finish().await;
}

#[tokio::test]
async fn a_testing_app_whose_token_dies_within_two_days_warns() {
    let t = spawn(Db::Sqlite).await;
    connected(&t).await;
    // Six days after consent, both clocks agree: one day left.
    t.gsim.world().advance_clock(6 * 86_400);
    t.clock.advance(6 * 86_400);
    let report = t.app.doctor().await.unwrap();
    let c = find(&report, "server:Gmail");
    assert_eq!(c.status, Status::Warn, "{c:?}");
    assert!(c.detail.contains("in 1 day"), "{}", c.detail);
    assert!(c.fix.as_ref().unwrap().contains("Publish the app"));
    assert!(report.ok, "a warning is not a failure");
    t.finish().await;
}

#[tokio::test]
async fn a_clock_a_few_minutes_off_fails() {
    let t = spawn(Db::Sqlite).await;
    t.ready_to_connect().await;
    t.gsim.world().advance_clock(300);
    let report = t.app.doctor().await.unwrap();
    let c = find(&report, "clock");
    assert_eq!(c.status, Status::Fail);
    assert!(c.detail.contains("behind Google's"), "{}", c.detail);
    t.finish().await;
}

#[tokio::test]
async fn a_readable_secret_key_file_fails() {
    use std::os::unix::fs::PermissionsExt;
    let t = spawn(Db::Sqlite).await;
    let key = t.data_dir.join("secret.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let report = t.app.doctor().await.unwrap();
    let c = find(&report, "secret_key");
    assert_eq!(c.status, Status::Fail);
    assert!(c.detail.contains("mode 644"));
    assert_eq!(c.fix.as_deref(), Some("Run chmod 600 on the key file."));
    t.finish().await;
}

#[tokio::test]
async fn the_button_runs_the_check_and_the_overview_keeps_the_result() {
    let t = spawn(Db::Sqlite).await;
    t.ready_to_connect().await;
    let before = t.visit("/").await;
    assert!(before.has("Google setup check"));
    assert!(before.has("Not run yet."));
    let ran = t.submit("/doctor", &[]).await;
    assert_eq!(ran.location.as_deref(), Some("/#google-check"));
    let after = t.visit("/").await;
    assert!(after.has("Last checked"));
    assert!(after.has("Client ID and redirect URI"));
    assert!(
        after.has("Not connected to Google."),
        "the server is not connected yet"
    );
    let guide = t.visit("/google-setup").await;
    for words in [
        "Create a project",
        "OAuth consent screen",
        "External",
        "Internal",
        "Test users",
        ALICE,
        "Web application",
        "Authorized redirect URIs",
        "after 7 days",
    ] {
        assert!(guide.has(words), "{words}");
    }
    assert!(guide.has(&format!("{}/google_gmail/confirm", t.base)));
    assert!(guide.has("Authorized domains</b>: none needed"));
    t.finish().await;
}

#[tokio::test]
async fn mailgate_doctor_prints_json_and_exits_non_zero_on_failure() {
    let t = spawn(Db::Sqlite).await;
    t.ready_to_connect().await;
    let endpoints = t.gsim.endpoints().clone();
    let env = vec![
        ("MAILGATE_DATA_DIR", t.data_dir.display().to_string()),
        ("MAILGATE_DATABASE_URL", t.database_url.clone()),
        ("MAILGATE_PUBLIC_URL", t.base.clone()),
        (
            "MAILGATE_GOOGLE_AUTH_URL",
            format!("{}/o/oauth2/v2/auth", endpoints.http),
        ),
        (
            "MAILGATE_GOOGLE_TOKEN_URL",
            format!("{}/token", endpoints.http),
        ),
        (
            "MAILGATE_EXTRA_CA_FILE",
            endpoints.ca_cert.display().to_string(),
        ),
    ];
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_mailgate"))
            .env_clear()
            .envs(env)
            .args(["doctor", "--json"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "the Gmail server is not connected"
    );
    let report: DoctorReport = serde_json::from_slice(&out.stdout).unwrap();
    assert!(!report.ok);
    assert_eq!(find(&report, "client_secret").status, Status::Pass);
    assert_eq!(find(&report, "server:Gmail").status, Status::Fail);
    t.finish().await;
}

#[tokio::test]
async fn the_smtp_check_logs_in_as_delivery_does_and_a_refused_token_means_reconnect() {
    let t = spawn(Db::Sqlite).await;
    let id = connected(&t).await;
    let logins = || t.gsim.world().counters().smtp_logins.ok;
    let before = logins();
    let report = t.app.doctor().await.unwrap();
    let smtp = find(&report, "server:Gmail:smtp");
    assert_eq!(smtp.status, Status::Pass, "{smtp:?}");
    assert!(
        smtp.detail
            .contains(&format!("Logged in with XOAUTH2 as {ALICE}"))
    );
    assert_eq!(logins(), before + 1, "the doctor really logged in at Gmail");

    // Gmail refuses the token, and the fresh one too: the same path as delivery's marks it.
    t.gsim.world().arm_smtp_fault(refused_logins());
    let report = t.app.doctor().await.unwrap();
    let smtp = find(&report, "server:Gmail:smtp");
    assert_eq!(smtp.status, Status::Fail);
    assert!(
        smtp.detail
            .contains("Reconnect needed: Gmail refused a fresh token at login"),
        "{smtp:?}"
    );
    assert!(
        t.visit(&format!("/servers/{id}"))
            .await
            .has("Reconnect needed")
    );
    t.finish().await;
}
