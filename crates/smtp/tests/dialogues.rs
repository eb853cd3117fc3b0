//! Scripted dialogues: a fake server over an in-memory duplex stream plays each Gmail transcript of
//! spec/google.md §2–3 and checks every byte the client sends; no sockets, no TLS, no clock.

mod script;

use std::time::Duration;

use mailgate_smtp::{ClientSession, Credentials, Error, Reply, Stage};
use script::{Step, dialogue, hears, one_byte, plain, play, says};
use secrecy::SecretString;
use tokio::io::{AsyncRead, AsyncWrite, BufStream};

/// Long enough for any scripted turn; short enough that a client that falls out of step fails fast.
const TIMEOUT: Duration = Duration::from_secs(5);

const GREETING: &str = "220 smtp.gmail.com ESMTP 7sm10895420igt.6 - gsmtp\r\n";
const EHLO_PLAIN: &str = "250-smtp.gmail.com at your service, [67.193.150.17]\r\n\
    250-SIZE 35882577\r\n250-8BITMIME\r\n250-STARTTLS\r\n250-ENHANCEDSTATUSCODES\r\n\
    250-PIPELINING\r\n250-CHUNKING\r\n250 SMTPUTF8\r\n";
const EHLO_SECURED: &str = "250-smtp.gmail.com at your service, [67.193.150.17]\r\n\
    250-SIZE 35882577\r\n250-8BITMIME\r\n\
    250-AUTH LOGIN PLAIN XOAUTH2 PLAIN-CLIENTTOKEN OAUTHBEARER XOAUTH\r\n\
    250-ENHANCEDSTATUSCODES\r\n250-PIPELINING\r\n250-CHUNKING\r\n250 SMTPUTF8\r\n";
/// Google's documented example (spec/google.md §2): the token and its initial response.
const DOC_USER: &str = "someuser@example.com";
const DOC_TOKEN: &str = "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg";
const DOC_XOAUTH2: &str = "dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5LnZGOWRmdDRxbVRjMk52YjNSbGNrQmhkSFJoZG1semRHRXVZMjl0Q2cBAQ==";
const GMAIL_CHALLENGE: &str = "eyJzdGF0dXMiOiI0MDAiLCJzY2hlbWVzIjoiQmVhcmVyIiwic2NvcGUiOiJodHRwczovL21haWwuZ29vZ2xlLmNvbS8ifQ==";
const BAD_CREDENTIALS: &str = "535-5.7.8 Username and Password not accepted. Learn more at\r\n\
    535 5.7.8 https://support.google.com/mail/?p=BadCredentials 7sm10895420igt.6 - gsmtp\r\n";

/// Plays `script` as the server.
/// Greeting and EHLO on 465 (implicit TLS: the caller's TLS stream is what the session gets).
fn opening() -> Vec<Step> {
    vec![
        says(GREETING),
        hears("EHLO mailgate.localhost\r\n"),
        says(EHLO_SECURED),
    ]
}

async fn greet<S: AsyncRead + AsyncWrite + Unpin>(stream: S) -> ClientSession<S> {
    ClientSession::greet(stream, TIMEOUT, "mailgate.localhost")
        .await
        .expect("greeting and EHLO")
}

fn to(addresses: &[&str]) -> Vec<String> {
    addresses.iter().map(|a| a.to_string()).collect()
}

fn lines(reply: &Reply) -> Vec<&str> {
    reply.lines.iter().map(String::as_str).collect()
}

/// PHPMailer#677's transcript, done right: 587, STARTTLS, EHLO again, XOAUTH2 accepted, then one
/// message with two recipients through the pipeline, 8-bit text and lines that begin with a dot.
fn gmail_587_success_script() -> Vec<Step> {
    vec![
        says(GREETING),
        hears("EHLO mailgate.localhost\r\n"),
        says(EHLO_PLAIN),
        hears("STARTTLS\r\n"),
        says("220 2.0.0 Ready to start TLS\r\n"),
        hears("EHLO mailgate.localhost\r\n"),
        says(EHLO_SECURED),
        hears(&format!("AUTH XOAUTH2 {DOC_XOAUTH2}\r\n")),
        says("235 2.7.0 Accepted\r\n"),
        hears(
            "MAIL FROM:<someuser@example.com>\r\nRCPT TO:<bob@example.com>\r\n\
             RCPT TO:<carol@example.org>\r\nDATA\r\n",
        ),
        says(
            "250 2.1.0 OK 7sm10895420igt.6 - gsmtp\r\n250 2.1.5 OK 7sm10895420igt.6 - gsmtp\r\n\
             250 2.1.5 OK 7sm10895420igt.6 - gsmtp\r\n354  Go ahead 7sm10895420igt.6 - gsmtp\r\n",
        ),
        hears("Subject: caf\u{e9}\r\n\r\n..leading dot\r\nbare LF\r\n...\r\n.\r\n"),
        says("250 2.0.0 OK  1700000000 7sm10895420igt.6 - gsmtp\r\n"),
        hears("QUIT\r\n"),
        says("221 2.0.0 closing connection 7sm10895420igt.6 - gsmtp\r\n"),
    ]
}

async fn gmail_587_success<S: AsyncRead + AsyncWrite + Unpin>(stream: S) -> Result<(), Error> {
    let session = ClientSession::greet(stream, TIMEOUT, "mailgate.localhost").await?;
    assert_eq!(session.greeting().code, 220);
    assert!(session.offers("STARTTLS"));
    assert!(
        !session.offers_auth("XOAUTH2"),
        "Gmail offers no AUTH before TLS"
    );
    let mut session = session
        // Another stream type, as a TLS stream would be: the session must move onto it.
        .starttls(|plain| async move { Ok(BufStream::new(plain)) })
        .await?;
    assert!(
        !session.offers("STARTTLS"),
        "the capabilities are the secured EHLO's"
    );
    assert!(session.offers_auth("XOAUTH2") && session.offers_auth("OAUTHBEARER"));
    assert!(
        session
            .capabilities()
            .contains(&"SIZE 35882577".to_string())
    );
    let token = SecretString::from(DOC_TOKEN);
    session
        .auth(Credentials::XOAuth2 {
            user: DOC_USER,
            token: &token,
        })
        .await?;
    let refused = session
        .open_data(DOC_USER, &to(&["bob@example.com", "carol@example.org"]))
        .await?;
    assert!(refused.is_empty());
    session
        .write_body("Subject: café\r\n\r\n.leading dot\nbare LF\r\n..".as_bytes())
        .await?;
    let verdict = session.end_data().await?;
    assert_eq!(verdict.enhanced(), Some("2.0.0"));
    assert!(!session.abandoned());
    session.quit().await;
    Ok(())
}

#[tokio::test]
async fn gmail_587_starttls_xoauth2_and_a_pipelined_message() {
    let outcome = dialogue(gmail_587_success_script(), plain, gmail_587_success).await;
    assert!(outcome.is_ok(), "{outcome:?}");
}

#[tokio::test]
async fn the_same_dialogue_with_every_reply_split_at_every_byte() {
    let outcome = dialogue(gmail_587_success_script(), one_byte, gmail_587_success).await;
    assert!(outcome.is_ok(), "{outcome:?}");
}

#[tokio::test]
async fn gmail_465_greets_with_auth_already_offered() {
    let mut script = vec![
        says("220 mx.google.com ESMTP h5sm23980368wjn.20 - gsmtp\r\n"),
        hears("EHLO mailgate.localhost\r\n"),
        says(EHLO_SECURED),
    ];
    script.push(hears("QUIT\r\n"));
    script.push(says(
        "221 2.0.0 closing connection h5sm23980368wjn.20 - gsmtp\r\n",
    ));
    dialogue(script, plain, |stream| async move {
        let session = greet(stream).await;
        assert_eq!(
            lines(session.greeting()),
            ["mx.google.com ESMTP h5sm23980368wjn.20 - gsmtp"]
        );
        assert!(session.offers_auth("XOAUTH2"));
        session.quit().await;
    })
    .await;
}

/// Plays `script` to a client that logs in with Google's documented token, which must fail.
async fn refused_login(script: Vec<Step>) -> Error {
    dialogue(script, plain, |stream| async move {
        let mut session = greet(stream).await;
        let token = SecretString::from(DOC_TOKEN);
        session
            .auth(Credentials::XOAuth2 {
                user: DOC_USER,
                token: &token,
            })
            .await
            .expect_err("refused")
    })
    .await
}

#[tokio::test]
async fn a_refused_xoauth2_token_gets_the_empty_line_and_both_replies_are_kept() {
    let mut script = opening();
    script.extend([
        hears(&format!("AUTH XOAUTH2 {DOC_XOAUTH2}\r\n")),
        says(&format!("334 {GMAIL_CHALLENGE}\r\n")),
        hears("\r\n"),
        says(BAD_CREDENTIALS),
    ]);
    let error = refused_login(script).await;
    let Error::Refused {
        stage,
        reply,
        challenge,
    } = &error
    else {
        panic!("{error:?}");
    };
    assert_eq!(*stage, Stage::Auth);
    assert_eq!(reply.code, 535);
    assert_eq!(reply.enhanced(), Some("5.7.8"));
    assert_eq!(reply.lines.len(), 2);
    assert_eq!(
        challenge.as_deref(),
        Some(r#"{"status":"400","schemes":"Bearer","scope":"https://mail.google.com/"}"#)
    );
    assert!(!error.to_string().contains(DOC_TOKEN), "{error}");
}

#[tokio::test]
async fn oauthbearer_sends_rfc_7628s_response_and_answers_a_refusal_with_0x01() {
    const INITIAL: &str = "bixhPWFsaWNlQGdtYWlsLmNvbSwBaG9zdD1zbXRwLmdtYWlsLmNvbQFwb3J0PTU4NwFhdXRoPUJlYXJlciB5YTI5LmEwLXRva2VuAQE=";
    let mut script = opening();
    script.extend([
        hears(&format!("AUTH OAUTHBEARER {INITIAL}\r\n")),
        says("334 eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIiwic2NvcGUiOiJodHRwczovL21haWwuZ29vZ2xlLmNvbS8ifQ==\r\n"),
        hears("AQ==\r\n"),
        says(BAD_CREDENTIALS),
        hears(&format!("AUTH OAUTHBEARER {INITIAL}\r\n")),
        says("235 2.7.0 Accepted\r\n"),
    ]);
    dialogue(script, plain, |stream| async move {
        let mut session = greet(stream).await;
        let token = SecretString::from("ya29.a0-token");
        let credentials = Credentials::OAuthBearer {
            user: "alice@gmail.com",
            host: "smtp.gmail.com",
            port: 587,
            token: &token,
        };
        match session.auth(credentials).await {
            Err(Error::Refused {
                reply, challenge, ..
            }) => {
                assert_eq!(reply.code, 535);
                assert!(challenge.is_some_and(|c| c.contains("invalid_token")));
            }
            other => panic!("{other:?}"),
        }
        session
            .auth(credentials)
            .await
            .expect("accepted the second time");
    })
    .await;
}

#[tokio::test]
async fn plain_and_login_for_servers_that_take_a_password() {
    let mut script = opening();
    script.extend([
        hears("AUTH PLAIN AGFsaWNlQGV4YW1wbGUuY29tAHMzY3JldA==\r\n"),
        says("535 5.7.8 Username and Password not accepted.\r\n"),
        hears("AUTH LOGIN\r\n"),
        says("334 VXNlcm5hbWU6\r\n"),
        hears("YWxpY2VAZXhhbXBsZS5jb20=\r\n"),
        says("334 UGFzc3dvcmQ6\r\n"),
        hears("czNjcmV0\r\n"),
        says("235 2.7.0 Accepted\r\n"),
    ]);
    dialogue(script, plain, |stream| async move {
        let mut session = greet(stream).await;
        let password = SecretString::from("s3cret");
        let user = "alice@example.com";
        let error = session
            .auth(Credentials::Plain {
                user,
                password: &password,
            })
            .await
            .expect_err("refused");
        assert_eq!(error.reply().map(|r| r.code), Some(535));
        session
            .auth(Credentials::Login {
                user,
                password: &password,
            })
            .await
            .expect("LOGIN accepted");
    })
    .await;
}

#[tokio::test]
async fn too_many_logins_is_a_temporary_refusal_at_auth() {
    let mut script = opening();
    script.extend([
        hears(&format!("AUTH XOAUTH2 {DOC_XOAUTH2}\r\n")),
        says("454 4.7.0 Too many login attempts, please try again later. x - gsmtp\r\n"),
    ]);
    let error = refused_login(script).await;
    assert_eq!(error.stage(), Stage::Auth);
    assert!(
        error
            .reply()
            .is_some_and(|r| r.code == 454 && r.is_temporary())
    );
}

/// The pipelined envelope of one recipient, and the server's replies to it.
fn envelope(replies: &str) -> Vec<Step> {
    let mut script = opening();
    script.extend([
        hears("MAIL FROM:<alice@gmail.com>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n"),
        says(replies),
    ]);
    script
}

async fn open_for_bob<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
) -> (ClientSession<S>, Result<Vec<(String, Reply)>, Error>) {
    let mut session = greet(stream).await;
    let opened = session
        .open_data("alice@gmail.com", &to(&["bob@example.com"]))
        .await;
    (session, opened)
}

#[tokio::test]
async fn unauthenticated_mail_is_refused_with_googles_two_line_530() {
    let script = envelope(
        "530-5.5.1 Authentication Required. Learn more at\r\n\
         530 5.5.1  https://support.google.com/mail/?p=WantAuthError x - gsmtp\r\n\
         503 5.5.1 MAIL first. x - gsmtp\r\n503 5.5.1 MAIL first. x - gsmtp\r\n",
    );
    let error = dialogue(script, plain, |stream| async move {
        let (session, opened) = open_for_bob(stream).await;
        assert!(!session.abandoned());
        opened.expect_err("refused")
    })
    .await;
    assert_eq!(error.stage(), Stage::MailFrom);
    let reply = error.reply().expect("a reply");
    assert_eq!((reply.code, reply.enhanced()), (530, Some("5.5.1")));
    assert_eq!(
        lines(reply)[1],
        "5.5.1  https://support.google.com/mail/?p=WantAuthError x - gsmtp"
    );
}

#[tokio::test]
async fn a_421_that_hangs_up_mid_pipeline_is_reported_as_the_mail_refusal() {
    let mut script =
        envelope("421 4.7.0 Try again later, closing connection. (MAIL) x - gsmtp\r\n");
    script.push(Step::HangsUp);
    let error = dialogue(script, plain, |stream| async move {
        let (_session, opened) = open_for_bob(stream).await;
        opened.expect_err("refused")
    })
    .await;
    assert_eq!(error.stage(), Stage::MailFrom);
    assert_eq!(error.reply().map(|r| r.code), Some(421));
}

#[tokio::test]
async fn a_temporary_recipient_refusal_refuses_the_message_and_condemns_an_open_data() {
    for refusal in [
        "450 4.2.1 The user you are trying to contact is receiving mail too quickly. x - gsmtp",
        "451 4.3.0 Mail server temporarily rejected message. x - gsmtp",
        "452 4.5.3 Your message has too many recipients. x - gsmtp",
    ] {
        let script = envelope(&format!(
            "250 2.1.0 OK x - gsmtp\r\n{refusal}\r\n354  Go ahead x - gsmtp\r\n"
        ));
        let (abandoned, error) = dialogue(script, plain, |stream| async move {
            let (session, opened) = open_for_bob(stream).await;
            (session.abandoned(), opened.expect_err("refused"))
        })
        .await;
        assert!(
            abandoned,
            "{refusal}: DATA is open and only hanging up drops it"
        );
        assert_eq!(error.stage(), Stage::RcptTo, "{refusal}");
        assert_eq!(error.reply().map(|r| r.text()), Some(refusal.to_string()));
    }
}

#[tokio::test]
async fn the_daily_quota_refusal_keeps_all_three_lines() {
    let script = envelope(
        "550-5.4.5 Daily user sending limit exceeded. For more information on Gmail\r\n\
         550-5.4.5 sending limits go to\r\n\
         550 5.4.5  https://support.google.com/a/answer/166852 x - gsmtp\r\n\
         503 5.5.1 MAIL first.\r\n503 5.5.1 MAIL first.\r\n",
    );
    let error = dialogue(script, plain, |stream| async move {
        open_for_bob(stream).await.1.expect_err("refused")
    })
    .await;
    let reply = error.reply().expect("a reply");
    assert_eq!(
        (reply.code, reply.enhanced(), reply.lines.len()),
        (550, Some("5.4.5"), 3)
    );
}

#[tokio::test]
async fn a_message_too_large_is_refused_after_the_final_dot() {
    let mut script = envelope("250 2.1.0 OK\r\n250 2.1.5 OK\r\n354  Go ahead\r\n");
    script.extend([
        hears("big\r\n.\r\n"),
        says(
            "552-5.2.3 Your message exceeded Google's message size limits. Please visit\r\n\
             552-5.2.3  https://support.google.com/mail/?p=MaxSizeError to view our size\r\n\
             552 5.2.3 guidelines. x - gsmtp\r\n",
        ),
    ]);
    let error = dialogue(script, plain, |stream| async move {
        let (mut session, opened) = open_for_bob(stream).await;
        opened.expect("DATA open");
        session.write_body(b"big").await.expect("written");
        session.end_data().await.expect_err("too big")
    })
    .await;
    assert_eq!(error.stage(), Stage::DataEnd);
    let reply = error.reply().expect("a reply");
    assert_eq!(
        (reply.code, reply.enhanced(), reply.lines.len()),
        (552, Some("5.2.3"), 3)
    );
}

#[tokio::test]
async fn one_recipient_refused_for_good_does_not_stop_the_others_and_rset_reuses_the_session() {
    let mut script = opening();
    script.extend([
        hears(
            "MAIL FROM:<alice@gmail.com>\r\nRCPT TO:<nobody@example.com>\r\n\
             RCPT TO:<bob@example.com>\r\nDATA\r\n",
        ),
        says(
            "250 2.1.0 OK\r\n550-5.1.1 The email account that you tried to reach does not exist.\r\n\
             550 5.1.1 Please try double-checking. x - gsmtp\r\n250 2.1.5 OK\r\n354  Go ahead\r\n",
        ),
        hears("\u{fc}ber 8-bit \u{2713}\r\n.\r\n"),
        says("250 2.0.0 OK\r\n"),
        hears("RSET\r\n"),
        says("250 2.1.5 Flushed x - gsmtp\r\n"),
        hears("MAIL FROM:<alice@gmail.com>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n"),
        says("250 2.1.0 OK\r\n250 2.1.5 OK\r\n354  Go ahead\r\n"),
    ]);
    dialogue(script, plain, |stream| async move {
        let mut session = greet(stream).await;
        let refused = session
            .open_data(
                "alice@gmail.com",
                &to(&["nobody@example.com", "bob@example.com"]),
            )
            .await
            .expect("DATA open for bob");
        assert_eq!(refused.len(), 1);
        assert_eq!(refused[0].0, "nobody@example.com");
        assert_eq!(refused[0].1.lines.len(), 2);
        session
            .write_body("über 8-bit ✓".as_bytes())
            .await
            .expect("written");
        session.end_data().await.expect("accepted");
        session.rset().await.expect("reset");
        session
            .open_data("alice@gmail.com", &to(&["bob@example.com"]))
            .await
            .expect("a second transaction");
        // Dropped here without the final dot: nothing of the second message is sent.
    })
    .await;
}

#[tokio::test]
async fn without_pipelining_each_command_waits_for_its_reply() {
    let script = vec![
        says("220 mail.example.com ESMTP\r\n"),
        hears("EHLO mailgate.localhost\r\n"),
        says("250-mail.example.com\r\n250 AUTH PLAIN\r\n"),
        hears("MAIL FROM:<alice@example.com>\r\n"),
        says("250 OK\r\n"),
        hears("RCPT TO:<bob@example.com>\r\n"),
        says("250 OK\r\n"),
        hears("RCPT TO:<carol@example.com>\r\n"),
        says("451 4.3.0 try later\r\n"),
    ];
    let error = dialogue(script, plain, |stream| async move {
        let mut session = greet(stream).await;
        assert!(!session.offers("PIPELINING"));
        session
            .open_data(
                "alice@example.com",
                &to(&["bob@example.com", "carol@example.com"]),
            )
            .await
            .expect_err("temporary")
    })
    .await;
    assert_eq!(
        (error.stage(), error.reply().map(|r| r.code)),
        (Stage::RcptTo, Some(451))
    );
}

#[tokio::test]
async fn an_address_that_would_inject_a_command_is_never_sent() {
    let mut script = opening();
    script.extend([hears("QUIT\r\n"), says("221 2.0.0 closing connection\r\n")]);
    dialogue(script, plain, |stream| async move {
        let mut session = greet(stream).await;
        for recipients in [
            to(&["bob@example.com>\r\nRCPT TO:<eve@example.com"]),
            to(&[]),
        ] {
            let error = session
                .open_data("alice@gmail.com", &recipients)
                .await
                .expect_err("refused before sending");
            assert!(matches!(error, Error::BadArgument { .. }), "{error:?}");
        }
        session.quit().await;
    })
    .await;
}

#[tokio::test]
async fn starttls_not_offered_is_refused_before_anything_is_sent() {
    let script = vec![
        says("220 mail.example.com ESMTP\r\n"),
        hears("EHLO mailgate.localhost\r\n"),
        says("250-mail.example.com\r\n250 PIPELINING\r\n"),
    ];
    let error = dialogue(script, plain, |stream| async move {
        greet(stream)
            .await
            .starttls(|s| async move { Ok(s) })
            .await
            .err()
    })
    .await;
    assert!(matches!(error, Some(Error::NoStartTls)), "{error:?}");
}

#[tokio::test]
async fn a_server_that_closes_mid_reply_is_reported_at_that_stage() {
    let script = vec![
        says(GREETING),
        hears("EHLO mailgate.localhost\r\n"),
        says("250-smtp.gmail.com at your service\r\n250-SIZE"),
        Step::HangsUp,
    ];
    let error = dialogue(script, plain, |stream| async move {
        ClientSession::greet(stream, TIMEOUT, "mailgate.localhost")
            .await
            .err()
    })
    .await;
    assert!(
        matches!(error, Some(Error::Closed(Stage::Ehlo))),
        "{error:?}"
    );
}

#[tokio::test]
async fn over_long_lines_and_non_smtp_greetings_are_protocol_errors() {
    for (greeting, expected) in [
        (format!("220 {}\r\n", "x".repeat(5000)), "longer than"),
        (format!("220-{}", "x".repeat(5000)), "longer than"),
        (
            "HTTP/1.1 400 Bad Request\r\n".to_string(),
            "not an SMTP reply",
        ),
        (
            "554 5.7.0 go away\r\n".to_string(),
            "refused the server greeting",
        ),
    ] {
        let script = vec![Step::Says(greeting.clone().into_bytes()), Step::HangsUp];
        let error = dialogue(script, plain, |stream| async move {
            ClientSession::greet(stream, TIMEOUT, "mailgate.localhost")
                .await
                .err()
        })
        .await
        .expect("refused");
        assert_eq!(error.stage(), Stage::Greeting);
        assert!(
            error.to_string().contains(expected),
            "{greeting:.40}: {error}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_silent_server_times_out_at_the_stage_it_went_quiet() {
    let (near, _far) = tokio::io::duplex(4096);
    let error = ClientSession::greet(near, Duration::from_secs(60), "mailgate.localhost")
        .await
        .err();
    assert!(
        matches!(
            error,
            Some(Error::Timeout {
                stage: Stage::Greeting,
                secs: 60
            })
        ),
        "{error:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn the_final_reply_gets_ten_command_timeouts() {
    let mut script = envelope("250 2.1.0 OK\r\n250 2.1.5 OK\r\n354  Go ahead\r\n");
    script.extend([hears("x\r\n.\r\n")]);
    let (near, mut far) = tokio::io::duplex(64 * 1024);
    let started = tokio::time::Instant::now();
    let (error, _silent_server) = tokio::join!(
        async move {
            let (mut session, opened) = open_for_bob(near).await;
            opened.expect("open");
            session.write_body(b"x").await.expect("written");
            session.end_data().await.err()
        },
        async move {
            play(&mut far, script).await;
            // Then silence, with the connection kept open until the client gives up.
            far
        }
    );
    assert!(
        matches!(
            error,
            Some(Error::Timeout {
                stage: Stage::DataEnd,
                secs: 50
            })
        ),
        "{error:?}"
    );
    assert!(started.elapsed() >= TIMEOUT * 10);
}

/// Two messages back to back: the first one's final dot and the second one's envelope go in one
/// write (RFC 2920), and the replies are read in order.
#[tokio::test]
async fn the_next_envelope_rides_behind_the_final_dot() {
    let mut script = envelope("250 2.1.0 OK\r\n250 2.1.5 OK\r\n354  Go ahead\r\n");
    script.extend([
        hears(
            "first\r\n.\r\nMAIL FROM:<alice@gmail.com>\r\nRCPT TO:<carol@example.org>\r\nDATA\r\n",
        ),
        says("250 2.0.0 OK  1 x - gsmtp\r\n250 2.1.0 OK\r\n250 2.1.5 OK\r\n354  Go ahead\r\n"),
        hears("second\r\n.\r\n"),
        says("250 2.0.0 OK  2 x - gsmtp\r\n"),
    ]);
    dialogue(script, plain, |stream| async move {
        let (mut session, opened) = open_for_bob(stream).await;
        opened.expect("DATA open");
        session.write_body(b"first").await.expect("written");
        let (verdict, next) = session
            .end_data_and_open("alice@gmail.com", &to(&["carol@example.org"]))
            .await;
        assert_eq!(
            verdict.expect("first accepted").text(),
            "250 2.0.0 OK  1 x - gsmtp"
        );
        assert!(next.expect("second open").is_empty());
        session.write_body(b"second").await.expect("written");
        let verdict = session.end_data().await.expect("second accepted");
        assert_eq!(verdict.text(), "250 2.0.0 OK  2 x - gsmtp");
    })
    .await;
}

/// The same, every reply split at every byte.
#[tokio::test]
async fn the_next_envelope_behind_the_dot_with_replies_split_at_every_byte() {
    let mut script = envelope("250 2.1.0 OK\r\n250 2.1.5 OK\r\n354  Go ahead\r\n");
    script.extend([
        hears("first\r\n.\r\nMAIL FROM:<alice@gmail.com>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n"),
        says("552 5.2.3 too big\r\n250 2.1.0 OK\r\n250 2.1.5 OK\r\n354  Go ahead\r\n"),
    ]);
    dialogue(script, one_byte, |stream| async move {
        let mut session = greet(stream).await;
        session
            .open_data("alice@gmail.com", &to(&["bob@example.com"]))
            .await
            .expect("DATA open");
        session.write_body(b"first").await.expect("written");
        let (verdict, next) = session
            .end_data_and_open("alice@gmail.com", &to(&["bob@example.com"]))
            .await;
        // The first message's refusal is its own: the next one is open all the same.
        let error = verdict.expect_err("refused");
        assert_eq!(
            (error.stage(), error.reply().map(|r| r.code)),
            (Stage::DataEnd, Some(552))
        );
        assert!(next.expect("second open").is_empty());
        assert!(!session.abandoned());
    })
    .await;
}

/// Gmail answers the dot with 421 and hangs up: the first message has its verdict, the next one
/// never opened (the caller gets a fresh session for it).
#[tokio::test]
async fn a_421_after_the_dot_leaves_the_next_message_unopened() {
    let mut script = envelope("250 2.1.0 OK\r\n250 2.1.5 OK\r\n354  Go ahead\r\n");
    script.extend([
        hears("first\r\n.\r\nMAIL FROM:<alice@gmail.com>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n"),
        says("421 4.7.0 Try again later, closing connection. x - gsmtp\r\n"),
        Step::HangsUp,
    ]);
    dialogue(script, plain, |stream| async move {
        let (mut session, opened) = open_for_bob(stream).await;
        opened.expect("DATA open");
        session.write_body(b"first").await.expect("written");
        let (verdict, next) = session
            .end_data_and_open("alice@gmail.com", &to(&["bob@example.com"]))
            .await;
        assert_eq!(verdict.expect_err("421").reply().map(|r| r.code), Some(421));
        assert!(
            matches!(next, Err(Error::Closed(Stage::MailFrom))),
            "{next:?}"
        );
    })
    .await;
}
