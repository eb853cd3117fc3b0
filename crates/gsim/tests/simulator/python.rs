//! Independent clients: Python's smtplib and imaplib, with TLS verified against gsim's CA.

use std::net::SocketAddr;

use serde_json::Value;

use crate::support::*;

async fn python(
    gsim: &gsim::Gsim,
    case: &str,
    addr: SocketAddr,
    user: &str,
    token: &str,
    extra: &[&str],
) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/mail_clients.py");
    let output = tokio::process::Command::new("python3")
        .arg(script)
        .arg(case)
        .arg(addr.ip().to_string())
        .arg(addr.port().to_string())
        .arg(&gsim.endpoints().ca_cert)
        .arg(user)
        .arg(token)
        .args(extra)
        .output()
        .await
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "{case}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[tokio::test]
async fn smtplib_sends_with_xoauth2_over_starttls() {
    let gsim = start().await;
    let token = mail_token(&gsim, ALICE);
    let seen = python(
        &gsim,
        "smtp-send",
        gsim.endpoints().smtp_starttls,
        ALICE,
        &token,
        &[BOB],
    )
    .await;
    assert_eq!(seen["auth"], 235);
    assert_eq!(seen["auth_text"], "2.7.0 Accepted");
    assert_eq!(seen["refused"], serde_json::json!({}));
    let deliveries = gsim.world().deliveries(0);
    assert_eq!(deliveries.len(), 1);
    assert!(String::from_utf8_lossy(&deliveries[0].raw).contains("Subject: from smtplib"));
}

#[tokio::test]
async fn smtplib_sees_the_535_for_a_bad_token() {
    let gsim = start().await;
    let seen = python(
        &gsim,
        "smtp-bad-token",
        gsim.endpoints().smtp_tls,
        ALICE,
        "ya29.bogus",
        &[],
    )
    .await;
    assert_eq!(seen["code"], 535);
    let error = seen["error"].as_str().unwrap();
    assert!(error.starts_with("5.7.8 Username and Password not accepted. Learn more at\n5.7.8 https://support.google.com/mail/?p=BadCredentials "), "{error}");
}

#[tokio::test]
async fn imaplib_authenticates_and_fetches() {
    let gsim = start().await;
    gsim.world().append_message(
        ALICE,
        "INBOX",
        b"Subject: for imaplib\r\n\r\nfetch me\r\n".to_vec(),
        Default::default(),
    );
    let token = mail_token(&gsim, ALICE);
    let seen = python(
        &gsim,
        "imap-fetch",
        gsim.endpoints().imap_tls,
        ALICE,
        &token,
        &[],
    )
    .await;
    assert_eq!(seen["auth"], "OK");
    assert_eq!(seen["auth_text"], "alice@gmail.com authenticated (Success)");
    assert_eq!(seen["uids"], "1");
    assert_eq!(seen["body"], "Subject: for imaplib\r\n\r\nfetch me\r\n");
}

#[tokio::test]
async fn imaplib_sees_authenticationfailed_for_a_bad_token() {
    let gsim = start().await;
    let seen = python(
        &gsim,
        "imap-bad-token",
        gsim.endpoints().imap_tls,
        ALICE,
        "ya29.bogus",
        &[],
    )
    .await;
    assert_eq!(
        seen["error"],
        "[AUTHENTICATIONFAILED] Invalid credentials (Failure)"
    );
}
