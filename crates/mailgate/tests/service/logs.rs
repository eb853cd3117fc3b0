//! What an operator's log collector receives: `mailgate serve` and `mailgate doctor` at debug
//! level, JSON lines, through a whole life (connect, send, a stale token refreshed, a sign-in).
//! Not one secret may appear in them: not the Client Secret, a token, an authorization code, an
//! API key, a password, the XOAUTH2 string or the installation's key.

use std::process::{Command, Stdio};

use base64::Engine;
use reqwest::StatusCode;
use serde_json::json;

use crate::support::*;

/// Waits until gsim holds `n` deliveries, woken by each change.
async fn delivered(t: &TestApp, n: usize) {
    let mut changes = t.gsim.world().subscribe_changes();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while t.gsim.world().deliveries(0).len() < n {
        assert!(
            tokio::time::timeout_at(deadline, changes.changed())
                .await
                .is_ok(),
            "{n} deliveries expected, gsim has {}",
            t.gsim.world().deliveries(0).len()
        );
    }
}

#[tokio::test]
async fn no_secret_or_token_reaches_the_logs() {
    let mut t = spawn(Db::Sqlite).await;
    let server = t.ready_to_connect().await;
    let key = t.api_key().await;
    t.stop_service().await;
    let mut env = t.process_env();
    env.push(("MAILGATE_LOG", "debug".into()));
    env.push(("MAILGATE_LOG_FORMAT", "json".into()));
    let log_path = t.data_dir.join("serve.log");
    let log_file = std::fs::File::create(&log_path).unwrap();
    let process = serve(&env, Stdio::from(log_file)).await;

    // Connect through the process: the code exchange, the id_token, the sealed tokens.
    let to_google = t.click_connect(server).await;
    let back = t.consent_at_google(&to_google, ALICE, true).await;
    let code = param(&back, "code").expect("an authorization code");
    assert_eq!(t.get(&back).await.status, StatusCode::SEE_OTHER);

    // Google forgets the access token from the exchange: the send meets a 535, refreshes, and
    // goes through.
    t.gsim.world().with(|s| {
        for token in s.access_tokens.values_mut() {
            token.revoked = true;
        }
    });
    let message = json!({"from": ALICE, "to": [BOB], "subject": "logs", "text": "hello"});
    assert_eq!(t.send(&key, &message).await.0, StatusCode::ACCEPTED);
    delivered(&t, 1).await;
    let counters = t.gsim.world().counters();
    assert_eq!(
        counters
            .token_requests
            .get("refresh_token")
            .and_then(|o| o.get("ok")),
        Some(&1),
        "the stale token was refreshed: {:?}",
        counters.token_requests
    );

    // A sign-in posts the admin password to the process.
    let (admin, csrf) = t.guest_at_login().await;
    let signed_in = admin
        .post(t.url("/login"))
        .form(&[
            ("_csrf", csrf.as_str()),
            ("email", ADMIN),
            ("password", ADMIN_PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);

    // The doctor, at debug level too, checks the same connection.
    let doctor_env = env.clone();
    let doctor = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_mailgate"))
            .env_clear()
            .envs(doctor_env)
            .arg("doctor")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        doctor.status.success(),
        "{}",
        String::from_utf8_lossy(&doctor.stdout)
    );
    assert!(stop(process).await.success(), "a graceful stop");

    let serve_log = std::fs::read_to_string(&log_path).unwrap();
    let lines: Vec<&str> = serve_log.lines().collect();
    assert!(
        lines.len() > 20,
        "debug logging is on: {} lines",
        lines.len()
    );
    for line in &lines {
        let event: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        assert!(event["level"].is_string() && event["fields"].is_object());
    }

    let mut secrets: Vec<(&str, String)> = vec![
        ("the Client Secret", CLIENT_SECRET.into()),
        ("the admin password", ADMIN_PASSWORD.into()),
        ("the API key", key),
        ("the authorization code", code),
        (
            "the installation key",
            std::fs::read_to_string(t.data_dir.join("secret.key"))
                .unwrap()
                .trim()
                .into(),
        ),
    ];
    for refresh in t.gsim.world().refresh_tokens(None) {
        secrets.push(("a refresh token", refresh.token));
    }
    let access: Vec<String> = t
        .gsim
        .world()
        .with(|s| s.access_tokens.keys().cloned().collect());
    assert!(access.len() >= 2, "the first token and its refresh");
    for token in access {
        let xoauth2 = base64::engine::general_purpose::STANDARD
            .encode(format!("user={ALICE}\x01auth=Bearer {token}\x01\x01"));
        secrets.push(("the XOAUTH2 string", xoauth2));
        secrets.push(("an access token", token));
    }
    let doctor_output = format!(
        "{}{}",
        String::from_utf8_lossy(&doctor.stdout),
        String::from_utf8_lossy(&doctor.stderr)
    );
    for (what, secret) in &secrets {
        assert!(
            !serve_log.contains(secret.as_str()),
            "{what} is in the serve log"
        );
        assert!(
            !doctor_output.contains(secret.as_str()),
            "{what} is in the doctor's output"
        );
    }
    println!(
        "logs: {} JSON lines from serve, {} secrets checked, none present",
        lines.len(),
        secrets.len()
    );
    t.finish().await;
}
