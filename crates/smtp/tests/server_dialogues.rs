//! The server session in scripted dialogues: the script is the application submitting mail
//! (as Odoo's smtplib, swaks or a printer would), the session answers byte for byte, and a
//! relay in memory records what it was asked.

mod script;

use std::sync::Mutex;
use std::time::Duration;

use mailgate_smtp::Reply;
use mailgate_smtp::server::{Ended, Envelope, Relay, ServerConfig, serve};
use script::{Step, dialogue, hears, one_byte, plain, says};
use tokio::io::{AsyncRead, AsyncWrite};

const GREETING: &str = "220 relay.test ESMTP mailgate\r\n";
const EHLO_SECURED: &str = "250-relay.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n\
    250-ENHANCEDSTATUSCODES\r\n250-SIZE 1000\r\n250 AUTH PLAIN LOGIN\r\n";
/// `\0app\0secret` in base64: user "app", password "secret".
const PLAIN_APP: &str = "AGFwcABzZWNyZXQ=";

/// Accepts user "app" with password "secret", as sender anyone but "blocked@example.com";
/// stores messages unless told the store is down.
#[derive(Default)]
struct MemoryRelay {
    store_down: bool,
    trusted: bool,
    submitted: Mutex<Vec<(Envelope, Vec<u8>)>>,
}

impl Relay for MemoryRelay {
    fn needs_auth(&self) -> bool {
        !self.trusted
    }

    async fn authenticate(&self, user: &str, password: &str) -> Result<String, Reply> {
        if (user, password) == ("app", "secret") {
            Ok(user.to_string())
        } else {
            Err(Reply::new(
                535,
                &["5.7.8 Username and Password not accepted"],
            ))
        }
    }

    async fn accept_sender(&self, _user: Option<&str>, from: &str) -> Result<(), Reply> {
        if from == "blocked@example.com" {
            Err(Reply::new(550, &["5.7.1 Sender not allowed"]))
        } else {
            Ok(())
        }
    }

    async fn submit(&self, envelope: &Envelope, message: Vec<u8>) -> Result<String, Reply> {
        if self.store_down {
            return Err(Reply::new(451, &["4.3.0 Cannot store the message now"]));
        }
        let mut submitted = self.submitted.lock().expect("lock");
        submitted.push((envelope.clone(), message));
        Ok(format!("q{}", submitted.len()))
    }
}

fn config(secured: bool) -> ServerConfig {
    ServerConfig {
        hostname: "relay.test".into(),
        max_size: 1000,
        max_recipients: 3,
        timeout: Duration::from_secs(5),
        offer_starttls: !secured,
        auth_allowed: secured,
    }
}

/// Runs the session under `config` against `script`, through `wrap`; how it ended.
async fn session<S>(
    script: Vec<Step>,
    wrap: fn(tokio::io::DuplexStream) -> S,
    relay: &MemoryRelay,
    config: ServerConfig,
) -> Ended
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    dialogue(script, wrap, |mut stream| async move {
        serve(&mut stream, relay, &config, true).await
    })
    .await
}

/// Plays `script` on a secured stream, then QUIT: the session must end there, and only there.
async fn then_quit(mut script: Vec<Step>, relay: &MemoryRelay) {
    script.extend([says("QUIT\r\n"), hears("221 2.0.0 Bye\r\n")]);
    assert_eq!(
        session(script, plain, relay, config(true)).await,
        Ended::Quit
    );
}

fn logged_in() -> Vec<Step> {
    vec![
        hears(GREETING),
        says("EHLO printer.local\r\n"),
        hears(EHLO_SECURED),
        says(&format!("AUTH PLAIN {PLAIN_APP}\r\n")),
        hears("235 2.7.0 Authentication successful\r\n"),
    ]
}

/// What Odoo's `smtplib` does once on TLS: EHLO, AUTH PLAIN, then MAIL, RCPT and DATA pipelined
/// in one write, and the message with a line that begins with a dot.
fn odoo_script() -> Vec<Step> {
    let mut script = logged_in();
    script.extend([
        says(
            "MAIL FROM:<odoo@example.com> SIZE=90\r\nRCPT TO:<bob@example.com>\r\n\
             RCPT TO:<carol@example.org>\r\nDATA\r\n",
        ),
        hears(
            "250 2.1.0 OK\r\n250 2.1.5 OK\r\n250 2.1.5 OK\r\n354 Go ahead, end with <CRLF>.<CRLF>\r\n",
        ),
        says("Subject: hi\r\n\r\n..a line with a dot\r\ncaf\u{e9}\r\n.\r\n"),
        hears("250 2.0.0 OK q1\r\n"),
        says("QUIT\r\n"),
        hears("221 2.0.0 Bye\r\n"),
    ]);
    script
}

#[tokio::test]
async fn a_pipelined_submission_is_stored_unstuffed_and_answered_with_its_queue_id() {
    let relay = MemoryRelay::default();
    let ended = session(odoo_script(), plain, &relay, config(true)).await;
    assert_eq!(ended, Ended::Quit);
    let submitted = relay.submitted.lock().expect("lock");
    let (envelope, message) = &submitted[0];
    assert_eq!(
        envelope,
        &Envelope {
            from: "odoo@example.com".into(),
            recipients: vec!["bob@example.com".into(), "carol@example.org".into()],
            user: Some("app".into()),
            client_name: "printer.local".into(),
        }
    );
    assert_eq!(
        String::from_utf8_lossy(message),
        "Subject: hi\r\n\r\n.a line with a dot\r\ncaf\u{e9}\r\n"
    );
}

#[tokio::test]
async fn the_same_submission_arriving_one_byte_at_a_time() {
    let relay = MemoryRelay::default();
    let ended = session(odoo_script(), one_byte, &relay, config(true)).await;
    assert_eq!(ended, Ended::Quit);
    assert_eq!(relay.submitted.lock().expect("lock").len(), 1);
}

#[tokio::test]
async fn auth_login_prompts_for_the_user_then_the_password() {
    let relay = MemoryRelay::default();
    let script = vec![
        hears(GREETING),
        says("EHLO app\r\n"),
        hears(EHLO_SECURED),
        says("AUTH LOGIN\r\n"),
        hears("334 VXNlcm5hbWU6\r\n"),
        says("YXBw\r\n"),
        hears("334 UGFzc3dvcmQ6\r\n"),
        says("c2VjcmV0\r\n"),
        hears("235 2.7.0 Authentication successful\r\n"),
    ];
    then_quit(script, &relay).await;
}

#[tokio::test]
async fn without_a_login_mail_is_refused_and_a_bad_password_gets_the_relays_535() {
    let relay = MemoryRelay::default();
    let script = vec![
        hears(GREETING),
        says("EHLO app\r\n"),
        hears(EHLO_SECURED),
        says("MAIL FROM:<odoo@example.com>\r\n"),
        hears("530 5.7.0 Authentication required\r\n"),
        // "\0app\0wrong"
        says("AUTH PLAIN AGFwcAB3cm9uZw==\r\n"),
        hears("535 5.7.8 Username and Password not accepted\r\n"),
        says("AUTH PLAIN not-base64\r\n"),
        hears("501 5.5.2 Malformed AUTH PLAIN response\r\n"),
    ];
    then_quit(script, &relay).await;
    assert!(relay.submitted.lock().expect("lock").is_empty());
}

/// Before TLS no password may be sent; STARTTLS ends the session for the handshake, and what the
/// client pipelined behind STARTTLS in clear is never answered (CVE-2011-0411).
#[tokio::test]
async fn starttls_hands_over_the_stream_and_drops_what_was_pipelined_behind_it() {
    let relay = MemoryRelay::default();
    let script = vec![
        hears(GREETING),
        says("EHLO app\r\n"),
        hears(
            "250-relay.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n\
             250-ENHANCEDSTATUSCODES\r\n250-SIZE 1000\r\n250 STARTTLS\r\n",
        ),
        says(&format!("AUTH PLAIN {PLAIN_APP}\r\n")),
        hears("538 5.7.11 Encryption required: STARTTLS first\r\n"),
        says("STARTTLS\r\nMAIL FROM:<injected@example.com>\r\n"),
        hears("220 2.0.0 Ready to start TLS\r\n"),
    ];
    let ended = session(script, plain, &relay, config(false)).await;
    assert_eq!(ended, Ended::StartTls);
}

#[tokio::test]
async fn limits_are_told_in_the_replies_and_nothing_over_them_is_stored() {
    let relay = MemoryRelay::default();
    let big = "x".repeat(1200);
    let mut script = logged_in();
    script.extend([
        says("MAIL FROM:<odoo@example.com> SIZE=5000\r\n"),
        hears("552 5.3.4 Message size exceeds the limit of 1000 bytes\r\n"),
        says("MAIL FROM:<blocked@example.com>\r\n"),
        hears("550 5.7.1 Sender not allowed\r\n"),
        says("MAIL FROM:<odoo@example.com>\r\n"),
        hears("250 2.1.0 OK\r\n"),
        says("RCPT TO:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nRCPT TO:<c@example.com>\r\nRCPT TO:<d@example.com>\r\n"),
        hears("250 2.1.5 OK\r\n250 2.1.5 OK\r\n250 2.1.5 OK\r\n452 4.5.3 Too many recipients: at most 3 per message\r\n"),
        says("DATA\r\n"),
        hears("354 Go ahead, end with <CRLF>.<CRLF>\r\n"),
        Step::Says(format!("{big}\r\n.\r\n").into_bytes()),
        hears("552 5.3.4 Message size exceeds the limit of 1000 bytes\r\n"),
        says("RCPT TO:<a@example.com>\r\n"),
        hears("503 5.5.1 MAIL first\r\n"),
    ]);
    then_quit(script, &relay).await;
    assert!(relay.submitted.lock().expect("lock").is_empty());
}

/// The store cannot commit: the client hears the relay's 451, never a 250.
#[tokio::test]
async fn a_store_that_cannot_commit_answers_451() {
    let relay = MemoryRelay {
        store_down: true,
        ..Default::default()
    };
    let mut script = logged_in();
    script.extend([
        says("MAIL FROM:<odoo@example.com>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n"),
        hears("250 2.1.0 OK\r\n250 2.1.5 OK\r\n354 Go ahead, end with <CRLF>.<CRLF>\r\n"),
        says("hello\r\n.\r\n"),
        hears("451 4.3.0 Cannot store the message now\r\n"),
    ]);
    then_quit(script, &relay).await;
}

#[tokio::test]
async fn garbage_is_answered_then_the_session_is_closed() {
    let relay = MemoryRelay {
        trusted: true,
        ..Default::default()
    };
    let mut script = vec![hears(GREETING)];
    for _ in 0..9 {
        script.push(says("HELLO THERE\r\n"));
        script.push(hears("500 5.5.1 Unrecognized command\r\n"));
    }
    script.push(says("HELLO THERE\r\n"));
    script.push(hears(
        "500 5.5.1 Unrecognized command\r\n421 4.7.0 Too many errors, closing connection\r\n",
    ));
    let ended = session(script, plain, &relay, config(true)).await;
    assert_eq!(ended, Ended::TooManyErrors);
}

#[tokio::test(start_paused = true)]
async fn a_silent_client_is_told_421_and_let_go() {
    let relay = MemoryRelay::default();
    let script = vec![
        hears(GREETING),
        hears("421 4.4.2 Idle too long, closing connection\r\n"),
    ];
    assert_eq!(
        session(script, plain, &relay, config(true)).await,
        Ended::TimedOut
    );
}
