//! Gmail SMTP transcripts (google.md §2, §3), compared byte for byte with the session id put in.

use gsim::{SmtpFault, SmtpSettingsPatch, SmtpStage};

use crate::support::*;

const CHALLENGE: &str = "eyJzdGF0dXMiOiI0MDAiLCJzY2hlbWVzIjoiQmVhcmVyIiwic2NvcGUiOiJodHRwczovL21haWwuZ29vZ2xlLmNvbS8ifQ==";

fn bad_credentials(id: &str) -> String {
    format!(
        "535-5.7.8 Username and Password not accepted. Learn more at\r\n\
         535 5.7.8 https://support.google.com/mail/?p=BadCredentials {id} - gsmtp\r\n"
    )
}

#[tokio::test]
async fn starttls_session_matches_gmail_line_for_line() {
    let gsim = start().await;
    let token = mail_token(&gsim, ALICE);
    let mut raw = Raw::smtp(&gsim).await;
    let greeting = raw.reply().await;
    let id = session_id(&greeting);
    assert_eq!(
        greeting,
        format!("220 smtp.gmail.com ESMTP {id} - gsmtp\r\n")
    );
    assert!(
        id.contains("sm") && id.contains('.'),
        "Gmail-shaped session id: {id}"
    );

    raw.send("EHLO localhost").await;
    assert_eq!(
        raw.reply().await,
        "250-smtp.gmail.com at your service, [127.0.0.1]\r\n\
         250-SIZE 35882577\r\n\
         250-8BITMIME\r\n\
         250-STARTTLS\r\n\
         250-ENHANCEDSTATUSCODES\r\n\
         250-PIPELINING\r\n\
         250-CHUNKING\r\n\
         250 SMTPUTF8\r\n"
    );
    raw.send("STARTTLS").await;
    assert_eq!(raw.reply().await, "220 2.0.0 Ready to start TLS\r\n");
    raw.upgrade().await;
    raw.send("EHLO localhost").await;
    assert_eq!(
        raw.reply().await,
        "250-smtp.gmail.com at your service, [127.0.0.1]\r\n\
         250-SIZE 35882577\r\n\
         250-8BITMIME\r\n\
         250-AUTH LOGIN PLAIN XOAUTH2 PLAIN-CLIENTTOKEN OAUTHBEARER XOAUTH\r\n\
         250-ENHANCEDSTATUSCODES\r\n\
         250-PIPELINING\r\n\
         250-CHUNKING\r\n\
         250 SMTPUTF8\r\n"
    );
    raw.send(&format!("AUTH XOAUTH2 {}", xoauth2(ALICE, &token)))
        .await;
    assert_eq!(raw.reply().await, "235 2.7.0 Accepted\r\n");
    raw.send(&format!("MAIL FROM:<{ALICE}>")).await;
    assert_eq!(raw.reply().await, format!("250 2.1.0 OK {id} - gsmtp\r\n"));
    raw.send(&format!("RCPT TO:<{BOB}>")).await;
    assert_eq!(raw.reply().await, format!("250 2.1.5 OK {id} - gsmtp\r\n"));
    raw.send("DATA").await;
    assert_eq!(raw.reply().await, format!("354 Go ahead {id} - gsmtp\r\n"));
    raw.send_bytes(b"From: Alice <alice@gmail.com>\r\nTo: bob@example.com\r\nSubject: hi\r\n\r\n..dot-stuffed line\r\nbody\r\n.\r\n")
        .await;
    let accepted = raw.reply().await;
    let now = gsim.world().now();
    let ts: i64 = accepted
        .strip_prefix("250 2.0.0 OK  ")
        .and_then(|r| r.split(' ').next())
        .and_then(|t| t.parse().ok())
        .expect("250 2.0.0 OK  <timestamp> <id> - gsmtp");
    assert!((now - ts).abs() <= 5);
    assert_eq!(accepted, format!("250 2.0.0 OK  {ts} {id} - gsmtp\r\n"));
    raw.send("QUIT").await;
    assert_eq!(
        raw.reply().await,
        format!("221 2.0.0 closing connection {id} - gsmtp\r\n")
    );
    assert!(raw.closed().await);

    let deliveries = gsim.world().deliveries(0);
    assert_eq!(deliveries.len(), 1);
    let d = &deliveries[0];
    assert_eq!(d.account, ALICE);
    assert_eq!(d.rcpt_to, vec![BOB.to_string()]);
    let raw_text = String::from_utf8(d.raw.clone()).unwrap();
    assert!(
        raw_text.contains("\r\n.dot-stuffed line\r\nbody\r\n"),
        "dot-unstuffed: {raw_text}"
    );
    assert!(raw_text.contains("From: Alice <alice@gmail.com>\r\n"));
    assert!(raw_text.starts_with("Received: from [127.0.0.1]"));
    assert!(
        raw_text.contains("Message-ID: <"),
        "Gmail adds a Message-ID when missing"
    );
    let inbox = gsim.world().mailbox(BOB, "INBOX").unwrap();
    assert_eq!(
        inbox["messages"].as_array().unwrap().len(),
        1,
        "Bob is a simulated account"
    );
}

#[tokio::test]
async fn rejected_token_gives_334_json_then_535_to_whatever_comes_next() {
    let gsim = start().await;
    // PHPMailer#677: the client answered the challenge with QUIT.
    let (mut raw, id) = Raw::smtp_ready(&gsim).await;
    raw.send(&format!(
        "AUTH XOAUTH2 {}",
        xoauth2(ALICE, "ya29.not-a-token")
    ))
    .await;
    assert_eq!(raw.reply().await, format!("334 {CHALLENGE}\r\n"));
    raw.send("QUIT").await;
    assert_eq!(raw.reply().await, bad_credentials(&id));

    // Flectra ignores the AUTH reply and sends MAIL FROM: that line is eaten by the SASL exchange.
    let (mut raw, id) = Raw::smtp_ready(&gsim).await;
    raw.send(&format!(
        "AUTH XOAUTH2 {}",
        xoauth2(ALICE, "ya29.not-a-token")
    ))
    .await;
    raw.reply().await;
    raw.send(&format!("MAIL FROM:<{ALICE}>")).await;
    assert_eq!(raw.reply().await, bad_credentials(&id));
    raw.send(&format!("MAIL FROM:<{ALICE}>")).await;
    assert_eq!(
        raw.reply().await,
        format!(
            "530-5.5.1 Authentication Required. Learn more at\r\n\
             530 5.5.1  https://support.google.com/mail/?p=WantAuthError {id} - gsmtp\r\n"
        )
    );

    // A token of another account does not open this one.
    let bobs = mail_token(&gsim, BOB);
    let (mut raw, id) = Raw::smtp_ready(&gsim).await;
    raw.send(&format!("AUTH XOAUTH2 {}", xoauth2(ALICE, &bobs)))
        .await;
    assert_eq!(raw.reply().await, format!("334 {CHALLENGE}\r\n"));
    raw.send("").await;
    assert_eq!(raw.reply().await, bad_credentials(&id));
    let counters = gsim.world().counters();
    assert_eq!(
        (counters.smtp_logins.ok, counters.smtp_logins.failed),
        (0, 3)
    );
}

#[tokio::test]
async fn xoauth2_without_initial_response_and_oauthbearer_both_work() {
    let gsim = start().await;
    let token = mail_token(&gsim, ALICE);
    let (mut raw, _) = Raw::smtp_ready(&gsim).await;
    raw.send("AUTH XOAUTH2").await;
    assert_eq!(raw.reply().await, "334 \r\n");
    raw.send(&xoauth2(ALICE, &token)).await;
    assert_eq!(raw.reply().await, "235 2.7.0 Accepted\r\n");

    let (mut raw, _) = Raw::smtp_ready(&gsim).await;
    raw.send(&format!("AUTH OAUTHBEARER {}", oauthbearer(ALICE, &token)))
        .await;
    assert_eq!(raw.reply().await, "235 2.7.0 Accepted\r\n");

    let (mut raw, id) = Raw::smtp_ready(&gsim).await;
    raw.send(&format!(
        "AUTH OAUTHBEARER {}",
        oauthbearer(ALICE, "ya29.bad")
    ))
    .await;
    let challenge = raw.reply().await;
    let json = gsim::sasl::decode(
        challenge
            .trim_end()
            .strip_prefix("334 ")
            .unwrap()
            .as_bytes(),
    )
    .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(json["status"], "invalid_token");
    raw.send("AQ==").await;
    assert_eq!(raw.reply().await, bad_credentials(&id));
}

#[tokio::test]
async fn before_tls_auth_and_mail_need_starttls_and_before_ehlo_commands_need_ehlo() {
    let gsim = start().await;
    let mut raw = Raw::smtp(&gsim).await;
    let id = session_id(&raw.reply().await);
    raw.send("EHLO x").await;
    raw.reply().await;
    raw.send("AUTH XOAUTH2 abc").await;
    assert_eq!(
        raw.reply().await,
        format!("530 5.7.0 Must issue a STARTTLS command first. {id} - gsmtp\r\n")
    );
    raw.send("MAIL FROM:<a@b.c>").await;
    assert_eq!(
        raw.reply().await,
        format!("530 5.7.0 Must issue a STARTTLS command first. {id} - gsmtp\r\n")
    );
    raw.send("STARTTLS").await;
    raw.reply().await;
    raw.upgrade().await;
    raw.send("MAIL FROM:<a@b.c>").await;
    assert_eq!(
        raw.reply().await,
        format!("503 5.5.1 EHLO/HELO first. {id} - gsmtp\r\n")
    );
    raw.send("EHLO").await;
    assert_eq!(
        raw.reply().await,
        format!(
            "501-5.5.4 Empty HELO/EHLO argument not allowed, closing connection.\r\n\
             501 5.5.4  https://support.google.com/mail/?p=helo {id} - gsmtp\r\n"
        )
    );
    assert!(raw.closed().await);
}

#[tokio::test]
async fn implicit_tls_port_greets_as_mx_and_offers_auth_at_once() {
    let gsim = start().await;
    let token = mail_token(&gsim, ALICE);
    let mut raw = Raw::tls(&gsim, gsim.endpoints().smtp_tls).await;
    let greeting = raw.reply().await;
    let id = session_id(&greeting);
    assert_eq!(
        greeting,
        format!("220 mx.google.com ESMTP {id} - gsmtp\r\n")
    );
    raw.send("EHLO x").await;
    assert!(
        raw.reply()
            .await
            .contains("250-AUTH LOGIN PLAIN XOAUTH2 PLAIN-CLIENTTOKEN OAUTHBEARER XOAUTH\r\n")
    );
    raw.send(&format!("AUTH XOAUTH2 {}", xoauth2(ALICE, &token)))
        .await;
    assert_eq!(raw.reply().await, "235 2.7.0 Accepted\r\n");
}

#[tokio::test]
async fn bad_base64_unknown_mechanism_and_passwords_get_gmails_answers() {
    let gsim = start().await;
    let (mut raw, id) = Raw::smtp_ready(&gsim).await;
    raw.send("AUTH XOAUTH2 !!!not-base64!!!").await;
    assert_eq!(
        raw.reply().await,
        format!("501 5.5.2 Cannot decode response. {id} - gsmtp\r\n")
    );
    raw.send("AUTH CRAM-MD5").await;
    assert_eq!(
        raw.reply().await,
        format!("504 5.7.4 Unrecognized Authentication Type. {id} - gsmtp\r\n")
    );
    raw.send("AUTH PLAIN AGFsaWNlQGdtYWlsLmNvbQBwYXNzd29yZA==")
        .await;
    assert_eq!(raw.reply().await, bad_credentials(&id));
    raw.send("AUTH LOGIN").await;
    assert_eq!(raw.reply().await, "334 VXNlcm5hbWU6\r\n");
    raw.send("YWxpY2U=").await;
    assert_eq!(raw.reply().await, "334 UGFzc3dvcmQ6\r\n");
    raw.send("cGFzcw==").await;
    assert_eq!(raw.reply().await, bad_credentials(&id));
}

#[tokio::test]
async fn the_101st_recipient_is_refused_with_452() {
    let gsim = start().await;
    let (mut raw, id) = Raw::smtp_authenticated(&gsim, ALICE).await;
    raw.send(&format!("MAIL FROM:<{ALICE}>")).await;
    raw.reply().await;
    for n in 0..100 {
        raw.send(&format!("RCPT TO:<r{n}@example.org>")).await;
        assert_eq!(raw.reply().await, format!("250 2.1.5 OK {id} - gsmtp\r\n"));
    }
    raw.send("RCPT TO:<r100@example.org>").await;
    assert_eq!(
        raw.reply().await,
        format!(
            "452 4.5.3 Your message has too many recipients. For more information regarding Google's sending limits, visit https://support.google.com/mail/?p=TooManyRecipientsError {id} - gsmtp\r\n"
        )
    );
    raw.send("RCPT TO:<not-an-address>").await;
    assert!(raw.reply().await.starts_with("553-5.1.3 "));
}

fn too_big(id: &str) -> String {
    format!(
        "552-5.2.3 Your message exceeded Google's message size limits. Please visit\r\n\
         552-5.2.3  https://support.google.com/mail/?p=MaxSizeError to view our size\r\n\
         552 5.2.3 guidelines. {id} - gsmtp\r\n"
    )
}

#[tokio::test]
async fn oversize_messages_get_the_three_line_552() {
    let gsim = start().await;
    let (mut raw, id) = Raw::smtp_authenticated(&gsim, ALICE).await;
    raw.send(&format!("MAIL FROM:<{ALICE}> SIZE=35882578"))
        .await;
    assert_eq!(raw.reply().await, too_big(&id));

    gsim.world().patch_smtp_settings(SmtpSettingsPatch {
        max_message_size: Some(1000),
        ..Default::default()
    });
    raw.send(&format!("MAIL FROM:<{ALICE}>")).await;
    raw.reply().await;
    raw.send(&format!("RCPT TO:<{BOB}>")).await;
    raw.reply().await;
    raw.send("DATA").await;
    raw.reply().await;
    let body = "x".repeat(200);
    for _ in 0..10 {
        raw.send(&body).await;
    }
    raw.send(".").await;
    assert_eq!(raw.reply().await, too_big(&id));
    // The session goes on, and nothing was delivered.
    raw.send("NOOP").await;
    assert_eq!(raw.reply().await, format!("250 2.0.0 OK {id} - gsmtp\r\n"));
    assert!(gsim.world().deliveries(0).is_empty());
}

async fn send_one(raw: &mut Raw, from_header: &str) -> String {
    raw.send(&format!("MAIL FROM:<{ALICE}>")).await;
    let reply = raw.reply().await;
    if !reply.starts_with("250") {
        return reply;
    }
    raw.send(&format!("RCPT TO:<{CAROL}>")).await;
    raw.reply().await;
    raw.send("DATA").await;
    raw.reply().await;
    raw.send_bytes(format!("From: {from_header}\r\nSubject: s\r\n\r\nhello\r\n.\r\n").as_bytes())
        .await;
    raw.reply().await
}

#[tokio::test]
async fn daily_quota_gives_550_5_4_5_until_the_rolling_window_frees() {
    let gsim = start().await;
    gsim.world()
        .patch_account(
            ALICE,
            gsim::AccountPatch {
                daily_send_limit: Some(2),
                ..Default::default()
            },
        )
        .unwrap();
    let (mut raw, id) = Raw::smtp_authenticated(&gsim, ALICE).await;
    assert!(send_one(&mut raw, ALICE).await.starts_with("250 2.0.0 OK"));
    gsim.world().advance_clock(3600);
    assert!(send_one(&mut raw, ALICE).await.starts_with("250 2.0.0 OK"));
    assert_eq!(
        send_one(&mut raw, ALICE).await,
        format!("550 5.4.5 Daily user sending quota exceeded. {id} - gsmtp\r\n")
    );
    gsim.world().advance_clock(23 * 3600);
    assert!(
        send_one(&mut raw, ALICE).await.starts_with("250 2.0.0 OK"),
        "first one left the 24 h window"
    );
}

#[tokio::test]
async fn from_is_rewritten_unless_it_is_the_account_or_an_alias() {
    let gsim = start().await;
    let (mut raw, _) = Raw::smtp_authenticated(&gsim, ALICE).await;
    send_one(&mut raw, "Sales <SALES@alice.example>").await;
    send_one(&mut raw, "\"Someone Else\" <someone@other.example>").await;
    let deliveries = gsim.world().deliveries(0);
    let alias = String::from_utf8(deliveries[0].raw.clone()).unwrap();
    assert!(
        alias.contains("From: Sales <SALES@alice.example>\r\n"),
        "{alias}"
    );
    assert!(!alias.contains("X-Google-Original-From"));
    let other = String::from_utf8(deliveries[1].raw.clone()).unwrap();
    assert!(other.contains("From: \"Someone Else\" <alice@gmail.com>\r\nX-Google-Original-From: \"Someone Else\" <someone@other.example>\r\n"), "{other}");
    assert_eq!(
        deliveries[1].original_from.as_deref(),
        Some("\"Someone Else\" <someone@other.example>")
    );
}

#[tokio::test]
async fn bdat_chunks_are_assembled_and_delivered() {
    let gsim = start().await;
    let (mut raw, id) = Raw::smtp_authenticated(&gsim, ALICE).await;
    raw.send(&format!("MAIL FROM:<{ALICE}>")).await;
    raw.reply().await;
    raw.send(&format!("RCPT TO:<{BOB}>")).await;
    raw.reply().await;
    let first = b"Subject: chunks\r\n\r\nfirst ";
    raw.send_bytes(format!("BDAT {}\r\n", first.len()).as_bytes())
        .await;
    raw.send_bytes(first).await;
    assert_eq!(raw.reply().await, format!("250 2.0.0 OK {id} - gsmtp\r\n"));
    let last = b"second\r\n";
    raw.send_bytes(format!("BDAT {} LAST\r\n", last.len()).as_bytes())
        .await;
    raw.send_bytes(last).await;
    assert!(raw.reply().await.starts_with("250 2.0.0 OK  "));
    let raw_text = String::from_utf8(gsim.world().deliveries(0)[0].raw.clone()).unwrap();
    assert!(raw_text.ends_with("\r\n\r\nfirst second\r\n"), "{raw_text}");
}

#[tokio::test]
async fn faults_replace_replies_and_drop_connections_at_their_stage() {
    let gsim = start().await;
    gsim.world().arm_smtp_fault(SmtpFault {
        stage: SmtpStage::Mail,
        reply: Some("421 4.7.0 Try again later, closing connection.".into()),
        close: true,
        hold: false,
        count: 1,
        account: Some(ALICE.into()),
    });
    let (mut raw, _) = Raw::smtp_authenticated(&gsim, ALICE).await;
    raw.send(&format!("MAIL FROM:<{ALICE}>")).await;
    assert_eq!(
        raw.reply().await,
        "421 4.7.0 Try again later, closing connection.\r\n"
    );
    assert!(raw.closed().await);

    // Spent: the next session is served normally.
    let (mut raw, _) = Raw::smtp_authenticated(&gsim, ALICE).await;
    assert!(send_one(&mut raw, ALICE).await.starts_with("250 2.0.0 OK"));

    gsim.world().arm_smtp_fault(SmtpFault {
        stage: SmtpStage::Rcpt,
        reply: None,
        close: true,
        hold: false,
        count: 1,
        account: None,
    });
    raw.send(&format!("MAIL FROM:<{ALICE}>")).await;
    raw.reply().await;
    raw.send(&format!("RCPT TO:<{BOB}>")).await;
    assert!(raw.closed().await, "dropped without a reply");

    gsim.world().arm_smtp_fault(SmtpFault {
        stage: SmtpStage::Auth,
        reply: Some(
            "454 4.7.0 Too many login attempts, please try again later. {id} - gsmtp".into(),
        ),
        close: false,
        hold: false,
        count: 2,
        account: None,
    });
    let token = mail_token(&gsim, ALICE);
    let (mut raw, id) = Raw::smtp_ready(&gsim).await;
    for _ in 0..2 {
        raw.send(&format!("AUTH XOAUTH2 {}", xoauth2(ALICE, &token)))
            .await;
        assert_eq!(
            raw.reply().await,
            format!("454 4.7.0 Too many login attempts, please try again later. {id} - gsmtp\r\n")
        );
    }
    raw.send(&format!("AUTH XOAUTH2 {}", xoauth2(ALICE, &token)))
        .await;
    assert_eq!(raw.reply().await, "235 2.7.0 Accepted\r\n");

    gsim.world().arm_smtp_fault(SmtpFault {
        stage: SmtpStage::DataEnd,
        reply: Some("451 4.3.0 Mail server temporarily rejected message. {id} - gsmtp".into()),
        close: false,
        hold: false,
        count: 1,
        account: None,
    });
    let before = gsim.world().deliveries(0).len();
    assert_eq!(
        send_one(&mut raw, ALICE).await,
        format!("451 4.3.0 Mail server temporarily rejected message. {id} - gsmtp\r\n")
    );
    assert_eq!(
        gsim.world().deliveries(0).len(),
        before,
        "a faulted message is not delivered"
    );
}

/// `delivered` fires after the message is in the mailbox: the client gets no 250 and cannot tell.
/// `hold` keeps the session silent until released, then lets it carry on.
#[tokio::test]
async fn delivered_faults_drop_after_delivery_and_held_sessions_wait_for_release() {
    let gsim = start().await;
    gsim.world().arm_smtp_fault(SmtpFault {
        stage: SmtpStage::Delivered,
        reply: None,
        close: true,
        hold: false,
        count: 1,
        account: None,
    });
    let (mut raw, _) = Raw::smtp_authenticated(&gsim, ALICE).await;
    raw.send(&format!("MAIL FROM:<{ALICE}>")).await;
    raw.reply().await;
    raw.send(&format!("RCPT TO:<{CAROL}>")).await;
    raw.reply().await;
    raw.send("DATA").await;
    raw.reply().await;
    raw.send_bytes(b"From: alice@gmail.com\r\nSubject: s\r\n\r\nhello\r\n.\r\n")
        .await;
    assert!(raw.closed().await, "no 250, only a dropped connection");
    assert_eq!(gsim.world().deliveries(0).len(), 1, "yet Gmail has it");

    gsim.world().arm_smtp_fault(SmtpFault {
        stage: SmtpStage::DataEnd,
        reply: None,
        close: false,
        hold: true,
        count: 1,
        account: None,
    });
    let (mut raw, _) = Raw::smtp_authenticated(&gsim, ALICE).await;
    let world = gsim.world().clone();
    let held = tokio::spawn(async move { send_one(&mut raw, ALICE).await });
    gsim.world().wait_held(1).await;
    assert_eq!(gsim.world().deliveries(0).len(), 1, "held before delivery");
    gsim.world().release_held();
    assert!(held.await.unwrap().starts_with("250 2.0.0 OK"));
    assert_eq!(world.counters().smtp_held, 0);
    assert_eq!(gsim.world().deliveries(0).len(), 2);
}

#[tokio::test]
async fn idle_sessions_get_451_4_4_2_and_are_closed() {
    let gsim = start().await;
    gsim.world().patch_smtp_settings(SmtpSettingsPatch {
        idle_timeout_ms: Some(150),
        ..Default::default()
    });
    let mut raw = Raw::smtp(&gsim).await;
    let id = session_id(&raw.reply().await);
    assert_eq!(
        raw.reply().await,
        format!("451 4.4.2 Timeout - closing connection. {id} - gsmtp\r\n")
    );
    assert!(raw.closed().await);

    // A client that connects to the TLS port and never starts its handshake is let go too.
    let mut half_open = tokio::net::TcpStream::connect(gsim.endpoints().smtp_tls)
        .await
        .unwrap();
    let mut buf = [0u8; 16];
    let read = tokio::io::AsyncReadExt::read(&mut half_open, &mut buf)
        .await
        .unwrap_or(0);
    assert_eq!(read, 0, "closed without a handshake");
}

#[tokio::test]
async fn too_many_sessions_for_one_account_get_421() {
    let gsim = start().await;
    gsim.world().patch_smtp_settings(SmtpSettingsPatch {
        max_connections_per_account: Some(2),
        ..Default::default()
    });
    let (_a, _) = Raw::smtp_authenticated(&gsim, ALICE).await;
    let (b, _) = Raw::smtp_authenticated(&gsim, ALICE).await;
    let token = mail_token(&gsim, ALICE);
    let (mut c, _) = Raw::smtp_ready(&gsim).await;
    c.send(&format!("AUTH XOAUTH2 {}", xoauth2(ALICE, &token)))
        .await;
    assert_eq!(
        c.reply().await,
        "421 4.7.0 Try again later, closing connection. (AUTH)\r\n"
    );
    assert!(c.closed().await);
    // Closing one frees its slot.
    drop(b);
    let mut freed = false;
    for _ in 0..50 {
        let (mut d, _) = Raw::smtp_ready(&gsim).await;
        d.send(&format!("AUTH XOAUTH2 {}", xoauth2(ALICE, &token)))
            .await;
        if d.reply().await == "235 2.7.0 Accepted\r\n" {
            freed = true;
            break;
        }
    }
    assert!(freed, "a slot is released when its session ends");
    let peaks = gsim.world().counters().smtp_peak_sessions;
    assert_eq!(
        peaks.get(ALICE),
        Some(&2),
        "the peak is what was open at once, not what was refused: {peaks:?}"
    );
}

#[tokio::test]
async fn garbage_overlong_lines_and_binary_do_not_break_the_server() {
    let gsim = start().await;
    let (mut raw, id) = Raw::smtp_ready(&gsim).await;
    raw.send_bytes(&[0xff, 0x00, 0xfe, b'\r', b'\n']).await;
    assert_eq!(
        raw.reply().await,
        format!("502 5.5.1 Unrecognized command. {id} - gsmtp\r\n")
    );
    let long = vec![b'A'; 1024 * 1024];
    raw.send_bytes(&long).await;
    raw.send_bytes(b"\r\n").await;
    assert_eq!(
        raw.reply().await,
        format!("500 5.5.2 Line too long. {id} - gsmtp\r\n")
    );
    raw.send("MAIL FROM:<<<>>>").await;
    assert!(
        raw.reply().await.starts_with("530-5.5.1"),
        "not authenticated yet"
    );
    raw.send("NOOP").await;
    assert_eq!(raw.reply().await, format!("250 2.0.0 OK {id} - gsmtp\r\n"));
    raw.send("RSET").await;
    assert_eq!(
        raw.reply().await,
        format!("250 2.1.5 Flushed {id} - gsmtp\r\n")
    );
    raw.send("BDAT nonsense").await;
    assert_eq!(
        raw.reply().await,
        format!("555 5.5.2 Syntax error. {id} - gsmtp\r\n")
    );
    assert!(raw.closed().await, "a BDAT without a size cannot be framed");

    // The server still serves others.
    let (mut raw, _) = Raw::smtp_authenticated(&gsim, ALICE).await;
    assert!(send_one(&mut raw, ALICE).await.starts_with("250 2.0.0 OK"));
}
