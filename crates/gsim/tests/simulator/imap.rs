//! Gmail IMAP transcripts (google.md §2, §3) and the fetcher's commands.

use std::collections::BTreeSet;

use gsim::ImapSettingsPatch;

use crate::support::*;

const CHALLENGE: &str = "eyJzdGF0dXMiOiI0MDAiLCJzY2hlbWVzIjoiQmVhcmVyIiwic2NvcGUiOiJodHRwczovL21haWwuZ29vZ2xlLmNvbS8ifQ==";
const CAPS_BEFORE: &str = "* CAPABILITY IMAP4rev1 UNSELECT IDLE NAMESPACE QUOTA ID XLIST CHILDREN X-GM-EXT-1 XYZZY SASL-IR AUTH=XOAUTH2 AUTH=PLAIN AUTH=PLAIN-CLIENTTOKEN AUTH=OAUTHBEARER\r\n";
const CAPS_AFTER: &str = "* CAPABILITY IMAP4rev1 UNSELECT IDLE NAMESPACE QUOTA ID XLIST CHILDREN X-GM-EXT-1 UIDPLUS COMPRESS=DEFLATE ENABLE MOVE CONDSTORE ESEARCH UTF8=ACCEPT LIST-EXTENDED LIST-STATUS LITERAL- SPECIAL-USE APPENDLIMIT=35651584\r\n";

async fn connect(gsim: &gsim::Gsim) -> (Raw, String) {
    let mut raw = Raw::tls(gsim, gsim.endpoints().imap_tls).await;
    let greeting = raw.line().await;
    let id = greeting.trim_end().rsplit(' ').next().unwrap().to_string();
    assert_eq!(
        greeting,
        format!("* OK Gimap ready for requests from 127.0.0.1 {id}\r\n")
    );
    (raw, id)
}

async fn logged_in(gsim: &gsim::Gsim, email: &str) -> Raw {
    let token = mail_token(gsim, email);
    let (mut raw, _) = connect(gsim).await;
    raw.send(&format!(
        "a1 AUTHENTICATE XOAUTH2 {}",
        xoauth2(email, &token)
    ))
    .await;
    let reply = raw.until_tagged("a1").await;
    assert!(
        reply.ends_with(&format!("a1 OK {email} authenticated (Success)\r\n")),
        "{reply}"
    );
    raw
}

fn append(gsim: &gsim::Gsim, subject: &str) -> u32 {
    gsim.world()
        .append_message(
            ALICE,
            "INBOX",
            format!("From: bob@example.com\r\nSubject: {subject}\r\n\r\nbody of {subject}\r\n")
                .into_bytes(),
            BTreeSet::new(),
        )
        .unwrap()
}

#[tokio::test]
async fn greeting_capability_and_sasl_ir_login_match_gmail() {
    let gsim = start().await;
    let token = mail_token(&gsim, ALICE);
    let (mut raw, id) = connect(&gsim).await;
    raw.send("W1 CAPABILITY").await;
    assert_eq!(
        raw.until_tagged("W1").await,
        format!("{CAPS_BEFORE}W1 OK Thats all she wrote! {id}\r\n")
    );
    raw.send(&format!(
        "A01 AUTHENTICATE XOAUTH2 {}",
        xoauth2(ALICE, &token)
    ))
    .await;
    assert_eq!(
        raw.until_tagged("A01").await,
        format!("{CAPS_AFTER}A01 OK alice@gmail.com authenticated (Success)\r\n")
    );
    raw.send("A02 LOGOUT").await;
    assert_eq!(
        raw.until_tagged("A02").await,
        "* BYE LOGOUT Requested\r\nA02 OK 73 good day (Success)\r\n"
    );
}

#[tokio::test]
async fn authenticate_with_a_continuation_works() {
    let gsim = start().await;
    let token = mail_token(&gsim, ALICE);
    let (mut raw, _) = connect(&gsim).await;
    raw.send("A1 AUTHENTICATE XOAUTH2").await;
    assert_eq!(raw.line().await, "+ \r\n");
    raw.send(&xoauth2(ALICE, &token)).await;
    assert!(
        raw.until_tagged("A1")
            .await
            .ends_with("A1 OK alice@gmail.com authenticated (Success)\r\n")
    );
}

#[tokio::test]
async fn failure_transcript_as_seen_from_python_imaplib() {
    let gsim = start().await;
    // gmail-oauth2-tools#78: no SASL-IR, and the client re-sends its auth string after the challenge.
    let (mut raw, _) = connect(&gsim).await;
    let auth = xoauth2(ALICE, "ya29.wrong");
    raw.send("ILPK1 AUTHENTICATE XOAUTH2").await;
    assert_eq!(raw.line().await, "+ \r\n");
    raw.send(&auth).await;
    assert_eq!(raw.line().await, format!("+ {CHALLENGE}\r\n"));
    raw.send(&auth).await;
    assert_eq!(
        raw.line().await,
        "ILPK1 NO [AUTHENTICATIONFAILED] Invalid credentials (Failure)\r\n"
    );

    // The documented variant: SASL-IR, then an empty response.
    raw.send(&format!("A2 AUTHENTICATE XOAUTH2 {auth}")).await;
    assert_eq!(raw.line().await, format!("+ {CHALLENGE}\r\n"));
    raw.send("").await;
    assert_eq!(
        raw.line().await,
        "A2 NO [AUTHENTICATIONFAILED] Invalid credentials (Failure)\r\n"
    );
}

#[tokio::test]
async fn malformed_sasl_and_password_logins_are_refused() {
    let gsim = start().await;
    let (mut raw, id) = connect(&gsim).await;
    raw.send("A1 AUTHENTICATE XOAUTH2 dGhpcyBpcyBub3QgeG9hdXRoMg==")
        .await;
    assert_eq!(
        raw.line().await,
        format!("A1 NO Invalid SASL argument. {id}\r\n")
    );
    raw.send("A2 LOGIN alice@gmail.com password").await;
    assert_eq!(
        raw.line().await,
        "A2 NO [AUTHENTICATIONFAILED] Invalid credentials (Failure)\r\n"
    );
    raw.send("A3 SELECT INBOX").await;
    assert!(raw.line().await.starts_with("A3 BAD"));
}

#[tokio::test]
async fn select_search_fetch_store_as_a_fetcher_uses_them() {
    let gsim = start().await;
    let uid1 = append(&gsim, "one");
    let uid2 = append(&gsim, "two");
    let mut raw = logged_in(&gsim, ALICE).await;
    raw.send("a2 SELECT INBOX").await;
    let select = raw.until_tagged("a2").await;
    let uidvalidity: u32 = select
        .split("[UIDVALIDITY ")
        .nth(1)
        .and_then(|r| r.split(']').next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(select.contains("* 2 EXISTS\r\n"));
    assert!(select.contains(&format!(
        "* OK [UIDNEXT {}] Predicted next UID.\r\n",
        uid2 + 1
    )));
    assert!(select.ends_with("a2 OK [READ-WRITE] INBOX selected. (Success)\r\n"));

    raw.send("a3 UID SEARCH ALL").await;
    assert_eq!(
        raw.until_tagged("a3").await,
        format!("* SEARCH {uid1} {uid2}\r\na3 OK SEARCH completed (Success)\r\n")
    );
    raw.send(&format!("a4 UID SEARCH UID {}:*", uid2 + 10))
        .await;
    assert_eq!(
        raw.until_tagged("a4").await,
        format!("* SEARCH {uid2}\r\na4 OK SEARCH completed (Success)\r\n"),
        "n:* reaches the last"
    );

    raw.send(&format!(
        "a5 UID FETCH {uid1} (FLAGS RFC822.SIZE INTERNALDATE BODY.PEEK[])"
    ))
    .await;
    let head = raw.line().await;
    let expected_body = b"From: bob@example.com\r\nSubject: one\r\n\r\nbody of one\r\n";
    assert!(
        head.starts_with(&format!(
            "* 1 FETCH (UID {uid1} FLAGS () RFC822.SIZE {} INTERNALDATE \"",
            expected_body.len()
        )),
        "{head}"
    );
    assert!(
        head.ends_with(&format!("BODY[] {{{}}}\r\n", expected_body.len())),
        "{head}"
    );
    assert_eq!(raw.bytes(expected_body.len()).await, expected_body);
    assert_eq!(raw.until_tagged("a5").await, ")\r\na5 OK Success\r\n");

    raw.send("a6 UID SEARCH UNSEEN").await;
    assert_eq!(
        raw.until_tagged("a6").await,
        format!("* SEARCH {uid1} {uid2}\r\na6 OK SEARCH completed (Success)\r\n"),
        "PEEK leaves \\Seen alone"
    );

    raw.send(&format!("a7 UID FETCH {uid2} RFC822")).await;
    let head = raw.line().await;
    assert!(
        head.starts_with(&format!("* 2 FETCH (UID {uid2} RFC822 {{")),
        "{head}"
    );
    raw.until_tagged("a7").await;
    raw.send("a8 UID SEARCH UNSEEN").await;
    assert_eq!(
        raw.until_tagged("a8").await,
        format!("* SEARCH {uid1}\r\na8 OK SEARCH completed (Success)\r\n"),
        "RFC822 marks \\Seen"
    );

    raw.send(&format!("a9 UID STORE {uid1} +FLAGS (\\Seen \\Flagged)"))
        .await;
    assert_eq!(
        raw.until_tagged("a9").await,
        format!("* 1 FETCH (UID {uid1} FLAGS (\\Flagged \\Seen))\r\na9 OK Success\r\n")
    );
    raw.send(&format!("b1 UID STORE {uid1} -FLAGS.SILENT (\\Seen)"))
        .await;
    assert_eq!(raw.until_tagged("b1").await, "b1 OK Success\r\n");
    raw.send("b2 SEARCH UNSEEN").await;
    assert_eq!(
        raw.until_tagged("b2").await,
        "* SEARCH 1\r\nb2 OK SEARCH completed (Success)\r\n"
    );

    // UIDVALIDITY is stable across sessions.
    let mut other = logged_in(&gsim, ALICE).await;
    other.send("c1 EXAMINE INBOX").await;
    let examine = other.until_tagged("c1").await;
    assert!(examine.contains(&format!("[UIDVALIDITY {uidvalidity}]")));
    assert!(examine.ends_with("c1 OK [READ-ONLY] INBOX selected. (Success)\r\n"));
}

#[tokio::test]
async fn noop_and_idle_report_new_mail() {
    let gsim = start().await;
    append(&gsim, "one");
    let mut raw = logged_in(&gsim, ALICE).await;
    raw.send("a2 SELECT INBOX").await;
    raw.until_tagged("a2").await;
    append(&gsim, "two");
    raw.send("a3 NOOP").await;
    assert_eq!(
        raw.until_tagged("a3").await,
        "* 2 EXISTS\r\na3 OK Success\r\n"
    );

    raw.send("a4 IDLE").await;
    assert_eq!(raw.line().await, "+ idling\r\n");
    // Mail delivered over SMTP wakes the idle session.
    let (mut smtp, _) = Raw::smtp_authenticated(&gsim, BOB).await;
    smtp.send(&format!("MAIL FROM:<{BOB}>")).await;
    smtp.reply().await;
    smtp.send(&format!("RCPT TO:<{ALICE}>")).await;
    smtp.reply().await;
    smtp.send("DATA").await;
    smtp.reply().await;
    smtp.send_bytes(b"Subject: three\r\n\r\nhi\r\n.\r\n").await;
    assert!(smtp.reply().await.starts_with("250 2.0.0 OK"));
    assert_eq!(raw.line().await, "* 3 EXISTS\r\n");
    raw.send("DONE").await;
    assert_eq!(raw.line().await, "a4 OK IDLE terminated (Success)\r\n");
}

#[tokio::test]
async fn the_sixteenth_connection_is_refused() {
    let gsim = start().await;
    let mut sessions = Vec::new();
    for _ in 0..15 {
        sessions.push(logged_in(&gsim, ALICE).await);
    }
    let token = mail_token(&gsim, ALICE);
    let (mut raw, _) = connect(&gsim).await;
    raw.send(&format!(
        "A1 AUTHENTICATE XOAUTH2 {}",
        xoauth2(ALICE, &token)
    ))
    .await;
    assert_eq!(
        raw.line().await,
        "A1 NO [ALERT] Too many simultaneous connections. (Failure)\r\n"
    );
    // Another account is not affected.
    let bob = mail_token(&gsim, BOB);
    raw.send(&format!("A2 AUTHENTICATE XOAUTH2 {}", xoauth2(BOB, &bob)))
        .await;
    assert!(
        raw.until_tagged("A2")
            .await
            .ends_with("A2 OK bob@example.com authenticated (Success)\r\n")
    );
}

#[tokio::test]
async fn literals_garbage_and_idle_timeouts_are_survived() {
    let gsim = start().await;
    let (mut raw, _) = connect(&gsim).await;
    raw.send("A1 LOGIN {5}").await;
    assert_eq!(raw.line().await, "+ go ahead\r\n");
    raw.send_bytes(b"alice \"pw\"\r\n").await;
    assert_eq!(
        raw.line().await,
        "A1 NO [AUTHENTICATIONFAILED] Invalid credentials (Failure)\r\n"
    );
    raw.send("A2 LOGIN {999999}").await;
    assert_eq!(raw.line().await, "A2 BAD Literal too large\r\n");
    raw.send_bytes(&[0xff, 0xfe, 0x00, b'\r', b'\n']).await;
    assert!(raw.line().await.contains("BAD"));
    raw.send_bytes(&vec![b'x'; 200_000]).await;
    raw.send_bytes(b"\r\n").await;
    assert_eq!(raw.line().await, "* BAD Line too long\r\n");
    raw.send("A3 NOOP").await;
    assert_eq!(raw.line().await, "A3 OK Success\r\n");

    gsim.world().patch_imap_settings(ImapSettingsPatch {
        idle_timeout_ms: Some(150),
        ..Default::default()
    });
    raw.send("A4 NOOP").await;
    assert_eq!(raw.line().await, "A4 OK Success\r\n");
    assert_eq!(
        raw.line().await,
        "* BYE Session expired, please login again.\r\n"
    );
    assert!(raw.closed().await);
}

/// A mailbox renumbered (its UIDVALIDITY changed, as after Gmail rebuilds an index): SELECT
/// tells the new value, and the same messages carry UIDs from 1 again.
#[tokio::test]
async fn a_renumbered_mailbox_has_a_new_uidvalidity_and_uids_from_one() {
    let gsim = start().await;
    for subject in ["one", "two", "three"] {
        append(&gsim, subject);
    }
    let http = http();
    let before: serde_json::Value = http
        .get(format!(
            "{}/_gsim/mailboxes/{ALICE}/INBOX",
            gsim.endpoints().http
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // Two deleted from the front, so the renumbering shows.
    gsim.world().with(|s| {
        s.mailboxes
            .get_mut(ALICE)
            .unwrap()
            .get_mut("INBOX")
            .unwrap()
            .messages
            .remove(0);
    });
    let renumbered: serde_json::Value = http
        .post(format!(
            "{}/_gsim/mailboxes/{ALICE}/INBOX/renumber",
            gsim.endpoints().http
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_ne!(renumbered["uidvalidity"], before["uidvalidity"]);
    let mut raw = logged_in(&gsim, ALICE).await;
    raw.send("a2 SELECT INBOX").await;
    let selected = raw.until_tagged("a2").await;
    assert!(
        selected.contains(&format!("[UIDVALIDITY {}]", renumbered["uidvalidity"]))
            && selected.contains("[UIDNEXT 3]"),
        "{selected}"
    );
    raw.send("a3 UID FETCH 1:* (UID BODY.PEEK[HEADER])").await;
    let fetched = raw.until_tagged("a3").await;
    assert!(
        fetched.contains("UID 1 ") && fetched.contains("Subject: two"),
        "{fetched}"
    );
}

/// A server without IDLE (for clients' polling): not in CAPABILITY, and refused.
#[tokio::test]
async fn without_idle_the_capability_says_so_and_idle_is_refused() {
    let gsim = start().await;
    gsim.world().patch_imap_settings(ImapSettingsPatch {
        offer_idle: Some(false),
        ..Default::default()
    });
    let mut raw = logged_in(&gsim, ALICE).await;
    raw.send("a2 CAPABILITY").await;
    let caps = raw.until_tagged("a2").await;
    assert!(!caps.contains(" IDLE"), "{caps}");
    raw.send("a3 SELECT INBOX").await;
    raw.until_tagged("a3").await;
    raw.send("a4 IDLE").await;
    assert_eq!(raw.line().await, "a4 BAD Unknown command\r\n");
}
