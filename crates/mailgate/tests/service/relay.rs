//! The SMTP relay from outside: Python's smtplib driven as Odoo drives it, swaks pipelining,
//! and raw SMTP over real TCP and TLS, into the queue and out to gsim.

use std::path::PathBuf;
use std::process::Command;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::support::*;

const CAROL: &str = "carol@example.org";

/// Alice's server connected, and a relay credential; returns its password.
async fn relay_ready(t: &TestApp, name: &str, senders: &str) -> String {
    t.sending_as_alice().await;
    t.app
        .create_relay_credential(name, senders)
        .await
        .expect("a relay credential")
}

fn relay_port(t: &TestApp) -> u16 {
    t.app
        .relay
        .listening
        .get()
        .and_then(|l| l.addr)
        .expect("the relay listens")
        .port()
}

fn relay_cert(t: &TestApp) -> PathBuf {
    t.app
        .relay
        .listening
        .get()
        .expect("the relay listens")
        .certificate
        .path
        .clone()
}

/// A message as an application writes it: To Bob, nobody in Cc or Bcc.
fn raw_message(subject: &str) -> String {
    format!(
        "From: Alice <{ALICE}>\r\nTo: <{BOB}>\r\nSubject: {subject}\r\nMessage-ID: <{subject}@shop.example>\r\n\
         Date: Thu, 03 Dec 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
         Hello through the relay.\r\n.a line that starts with a dot\r\n\r\nÜnïcode body.\r\n"
    )
}

fn write_message(t: &TestApp, subject: &str) -> PathBuf {
    let path = t.data_dir.join(format!("{subject}.eml"));
    std::fs::write(&path, raw_message(subject)).unwrap();
    path
}

/// Runs the Python client off the runtime (gsim and mailgate keep serving); its JSON lines.
async fn python(args: serde_json::Value) -> Vec<serde_json::Value> {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/service/python/relay_client.py"
    );
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .arg(script)
            .arg(args.to_string())
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "relay_client.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn client_args(t: &TestApp, password: &str, mechanism: &str) -> serde_json::Value {
    serde_json::json!({
        "host": "127.0.0.1",
        "port": relay_port(t),
        "cafile": relay_cert(t),
        "user": "flectra",
        "password": password,
        "mechanism": mechanism,
        "from": ALICE,
        "to": [BOB],
    })
}

/// Waits until gsim has `n` deliveries whose Message-ID is `message_id`.
async fn delivered(t: &TestApp, message_id: &str, n: usize) -> Vec<gsim::Delivery> {
    let mut changes = t.app.settled.subscribe();
    loop {
        let found: Vec<_> = t
            .gsim
            .world()
            .deliveries(0)
            .into_iter()
            .filter(|d| d.message_id.as_deref() == Some(message_id))
            .collect();
        if found.len() >= n {
            return found;
        }
        tokio::time::timeout(std::time::Duration::from_secs(20), changes.changed())
            .await
            .expect("delivery within 20 s")
            .unwrap();
    }
}

/// The raw message without the trace fields in front (mailgate's Received, then gsim's own).
fn without_trace(raw: &[u8]) -> (Vec<String>, &[u8]) {
    let mut rest = raw;
    let mut trace = Vec::new();
    loop {
        let is_trace = [&b"Received:"[..], b"X-Gm-", b"Return-Path:"]
            .iter()
            .any(|p| rest.starts_with(p));
        if !is_trace {
            return (trace, rest);
        }
        // A field runs until a line that does not start with white space.
        let mut end = 0;
        loop {
            let line_end = rest[end..]
                .windows(2)
                .position(|w| w == b"\r\n")
                .map(|i| end + i + 2)
                .unwrap_or(rest.len());
            end = line_end;
            if !rest[end..].starts_with(b" ") && !rest[end..].starts_with(b"\t") {
                break;
            }
        }
        trace.push(String::from_utf8_lossy(&rest[..end]).into_owned());
        rest = &rest[end..];
    }
}

#[tokio::test]
async fn odoo_sends_through_the_relay_with_starttls_and_auth_plain() {
    let t = spawn(Db::Sqlite).await;
    let password = relay_ready(&t, "flectra", "").await;
    let mut args = client_args(&t, &password, "PLAIN");
    args["messages"] = serde_json::json!([write_message(&t, "odoo-plain")]);
    args["odoo"] = true.into();
    assert_eq!(python(args).await, vec![serde_json::json!({"code": 250})]);
    let d = &delivered(&t, "<odoo-plain@shop.example>", 1).await[0];
    assert_eq!(d.account, ALICE);
    assert_eq!(d.rcpt_to, vec![BOB.to_string()]);
    let (trace, _) = without_trace(&d.raw);
    let received = trace
        .iter()
        .find(|f| f.contains("(mailgate)"))
        .expect("mailgate's Received field");
    assert!(
        received.contains("with ESMTPSA id "),
        "TLS and a login are said: {received}"
    );
    let listed = t.app.relay_credentials().await.unwrap();
    assert!(listed[0].last_used_at.is_some(), "the login is noted");
    t.finish().await;
}

#[tokio::test]
async fn a_raw_message_arrives_byte_identical_and_bcc_recipients_get_it() {
    let t = spawn(Db::Sqlite).await;
    let password = relay_ready(&t, "flectra", ALICE).await;
    let mut args = client_args(&t, &password, "LOGIN");
    args["messages"] = serde_json::json!([write_message(&t, "raw-login")]);
    // Carol is in the envelope only, as a Bcc recipient is once the client removed the header.
    args["to"] = serde_json::json!([BOB, CAROL]);
    assert_eq!(python(args).await, vec![serde_json::json!({"code": 250})]);
    let d = &delivered(&t, "<raw-login@shop.example>", 1).await[0];
    assert_eq!(d.rcpt_to, vec![BOB.to_string(), CAROL.to_string()]);
    let (trace, rest) = without_trace(&d.raw);
    assert!(trace.iter().any(|f| f.contains("(mailgate)")));
    assert_eq!(
        String::from_utf8_lossy(rest),
        raw_message("raw-login"),
        "the message as the application wrote it, byte for byte"
    );
    t.finish().await;
}

#[tokio::test]
async fn swaks_pipelines_over_starttls_with_auth_login_and_auth_plain() {
    let t = spawn(Db::Sqlite).await;
    let password = relay_ready(&t, "flectra", "").await;
    let port = relay_port(&t).to_string();
    let cert = relay_cert(&t);
    for mechanism in ["LOGIN", "PLAIN"] {
        let subject = format!("swaks-{}", mechanism.to_ascii_lowercase());
        let file = write_message(&t, &subject);
        let args: Vec<String> = [
            "--server",
            "127.0.0.1",
            "--port",
            &port,
            "--tls",
            "--tls-verify",
            "--tls-ca-path",
            cert.to_str().unwrap(),
            "--pipeline",
            "--auth",
            mechanism,
            "--auth-user",
            "flectra",
            "--auth-password",
            &password,
            "--from",
            ALICE,
            "--to",
            BOB,
            "--data",
            file.to_str().unwrap(),
            "--timeout",
            "20",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let out = tokio::task::spawn_blocking(move || {
            Command::new("swaks").args(&args).output().unwrap()
        })
        .await
        .unwrap();
        let transcript = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "swaks {mechanism}: {transcript}");
        assert!(transcript.contains("PIPELINING"), "{transcript}");
        assert!(
            transcript.contains("<~  250 2.0.0 OK "),
            "the 250 with a queue id, under TLS: {transcript}"
        );
        delivered(&t, &format!("<{subject}@shop.example>"), 1).await;
    }
    t.finish().await;
}

/// An SMTP client in a few lines, for what a library would not let us say.
struct Raw {
    reader: BufReader<tokio::io::ReadHalf<TcpStream>>,
    writer: tokio::io::WriteHalf<TcpStream>,
}

impl Raw {
    async fn connect(port: u16) -> Raw {
        Raw::greeted(TcpStream::connect(("127.0.0.1", port)).await.unwrap()).await
    }

    /// A session from another loopback address (127.0.0.2, say): another client, as the
    /// relay counts them.
    async fn connect_from(source: &str, port: u16) -> Raw {
        Raw::greeted(from(source, port).await).await
    }

    async fn greeted(stream: TcpStream) -> Raw {
        let (read, writer) = tokio::io::split(stream);
        let mut raw = Raw {
            reader: BufReader::new(read),
            writer,
        };
        assert!(raw.reply().await.starts_with("220 "));
        raw
    }

    /// Waits until the relay has closed the connection.
    async fn closed(&mut self) {
        let mut rest = String::new();
        while self.reader.read_line(&mut rest).await.unwrap() > 0 {}
    }

    /// The next reply, all its lines.
    async fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            let n = self.reader.read_line(&mut line).await.unwrap();
            assert!(n > 0, "the relay closed the connection after: {all}");
            all.push_str(&line);
            if line.as_bytes().get(3) == Some(&b' ') {
                return all;
            }
        }
    }

    async fn say(&mut self, line: &str) -> String {
        self.writer
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .unwrap();
        self.reply().await
    }
}

fn plain(user: &str, password: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"))
}

#[tokio::test]
async fn the_relay_refuses_clearly_and_limits_failed_logins() {
    let t = spawn(Db::Sqlite).await;
    let password = relay_ready(&t, "flectra", "@shop.example").await;
    let port = relay_port(&t);
    let mut c = Raw::connect(port).await;
    let ehlo = c.say("EHLO app.example").await;
    assert!(
        ehlo.contains("STARTTLS") && ehlo.contains("AUTH PLAIN LOGIN"),
        "{ehlo}"
    );
    assert!(
        c.say(&format!("MAIL FROM:<{ALICE}>"))
            .await
            .starts_with("530 5.7.0")
    );
    let login = c
        .say(&format!("AUTH PLAIN {}", plain("flectra", &password)))
        .await;
    assert!(login.starts_with("235 "), "{login}");
    let refused = c.say(&format!("MAIL FROM:<{ALICE}>")).await;
    assert!(
        refused.starts_with("550 5.7.1") && refused.contains("flectra"),
        "the credential may send as @shop.example only: {refused}"
    );
    c.say("QUIT").await;

    let mut c = Raw::connect(port).await;
    c.say("EHLO app.example").await;
    for _ in 0..5 {
        let wrong = c
            .say(&format!("AUTH PLAIN {}", plain("flectra", "guess")))
            .await;
        assert!(wrong.starts_with("535 5.7.8"), "{wrong}");
    }
    let limited = c
        .say(&format!("AUTH PLAIN {}", plain("flectra", &password)))
        .await;
    assert!(
        limited.starts_with("454 4.7.0"),
        "after 5 failures even the right password waits: {limited}"
    );
    t.finish().await;
}

#[tokio::test]
async fn a_revoked_credential_no_longer_logs_in() {
    let t = spawn(Db::Sqlite).await;
    let password = relay_ready(&t, "printer", "").await;
    let id = t.app.relay_credentials().await.unwrap()[0].id;
    t.app.revoke_relay_credential(id).await.unwrap();
    let mut c = Raw::connect(relay_port(&t)).await;
    c.say("EHLO printer.example").await;
    let answer = c
        .say(&format!("AUTH PLAIN {}", plain("printer", &password)))
        .await;
    assert!(answer.starts_with("535 "), "{answer}");
    t.finish().await;
}

/// Opens a session logged in as `name`, ready for MAIL.
async fn logged_in(t: &TestApp, name: &str, password: &str) -> Raw {
    let mut c = Raw::connect(relay_port(t)).await;
    c.say("EHLO app.example").await;
    let login = c
        .say(&format!("AUTH PLAIN {}", plain(name, password)))
        .await;
    assert!(login.starts_with("235 "), "{login}");
    c
}

/// MAIL, RCPT for each of `to`, DATA and the message; the final reply.
async fn transaction(c: &mut Raw, to: &[String], message: &str) -> String {
    assert!(
        c.say(&format!("MAIL FROM:<{ALICE}>"))
            .await
            .starts_with("250")
    );
    for rcpt in to {
        let answer = c.say(&format!("RCPT TO:<{rcpt}>")).await;
        assert!(answer.starts_with("250"), "{answer}");
    }
    assert!(c.say("DATA").await.starts_with("354"));
    c.writer.write_all(message.as_bytes()).await.unwrap();
    c.say(".").await
}

#[tokio::test]
async fn a_hundred_and_fifty_recipients_go_in_two_gmail_transactions() {
    let t = spawn(Db::Sqlite).await;
    let password = relay_ready(&t, "newsletter", "").await;
    let mut c = logged_in(&t, "newsletter", &password).await;
    let to: Vec<String> = (0..150).map(|i| format!("reader{i}@example.net")).collect();
    let answer = transaction(&mut c, &to, &raw_message("many")).await;
    assert!(answer.starts_with("250 2.0.0 OK "), "{answer}");
    let deliveries = delivered(&t, "<many@shop.example>", 2).await;
    assert_eq!(deliveries.len(), 2);
    let mut sizes: Vec<usize> = deliveries.iter().map(|d| d.rcpt_to.len()).collect();
    sizes.sort_unstable();
    assert_eq!(sizes, vec![50, 100], "Gmail takes 100 per message");
    let mut everyone: Vec<String> = deliveries.iter().flat_map(|d| d.rcpt_to.clone()).collect();
    everyone.sort();
    let mut expected = to.clone();
    expected.sort();
    assert_eq!(everyone, expected, "each reader once");
    t.finish().await;
}

#[tokio::test]
async fn a_token_outage_is_a_250_and_a_deferral_then_delivery() {
    let t = spawn(Db::Sqlite).await;
    let password = relay_ready(&t, "flectra", "").await;
    // The access token from consent has expired: sending needs Google's token endpoint.
    t.clock.advance(3600);
    t.gsim.world().arm_token_fault(gsim::TokenFault::Status {
        status: 503,
        count: 1000,
    });
    let mut c = logged_in(&t, "flectra", &password).await;
    let answer = transaction(&mut c, &[BOB.to_string()], &raw_message("outage")).await;
    assert!(
        answer.starts_with("250 2.0.0 OK "),
        "the queue took it whatever Google does: {answer}"
    );
    let id = answer.trim().rsplit(' ').next().unwrap().to_string();
    let deferred = t.wait_state(&id, "deferred").await;
    assert!(deferred.last_error.is_some());
    assert!(t.gsim.world().deliveries(0).is_empty());
    t.gsim.world().clear_faults();
    t.advance_and_wake(3600);
    t.wait_state(&id, "sent").await;
    delivered(&t, "<outage@shop.example>", 1).await;
    t.finish().await;
}

#[tokio::test]
async fn a_queue_that_cannot_commit_answers_451_and_sends_nothing() {
    let t = spawn(Db::Sqlite).await;
    let password = relay_ready(&t, "flectra", "").await;
    let postgres = t.app.store.backend() == mailgate::store::Backend::Postgres;
    let refuse: &[&str] = if postgres {
        &[
            "CREATE FUNCTION no_room() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'disk full'; END $$ LANGUAGE plpgsql",
            "CREATE TRIGGER no_room BEFORE INSERT ON messages FOR EACH ROW EXECUTE FUNCTION no_room()",
        ]
    } else {
        &[
            "CREATE TRIGGER no_room BEFORE INSERT ON messages BEGIN SELECT RAISE(ABORT, 'disk full'); END",
        ]
    };
    for sql in refuse {
        sqlx::query(sqlx::AssertSqlSafe(*sql))
            .execute(t.app.store.pool())
            .await
            .unwrap();
    }
    let mut c = logged_in(&t, "flectra", &password).await;
    let answer = transaction(&mut c, &[BOB.to_string()], &raw_message("no-room")).await;
    assert!(answer.starts_with("451 4.3.0"), "{answer}");
    let drop = if postgres {
        "DROP TRIGGER no_room ON messages"
    } else {
        "DROP TRIGGER no_room"
    };
    sqlx::query(drop).execute(t.app.store.pool()).await.unwrap();
    let counts = t.app.queue_counts().await.unwrap();
    assert!(
        counts.iter().all(|(_, n)| *n == 0),
        "nothing was stored: {counts:?}"
    );
    // The session carries on: the client may try again at once.
    let again = transaction(&mut c, &[BOB.to_string()], &raw_message("room-again")).await;
    assert!(again.starts_with("250 "), "{again}");
    delivered(&t, "<room-again@shop.example>", 1).await;
    assert!(
        t.gsim
            .world()
            .deliveries(0)
            .iter()
            .all(|d| d.message_id.as_deref() != Some("<no-room@shop.example>"))
    );
    t.finish().await;
}

#[tokio::test]
async fn a_permanent_failure_after_250_sends_one_report_to_the_envelope_sender() {
    let t = spawn(Db::Sqlite).await;
    let password = relay_ready(&t, "flectra", "").await;
    t.gsim.world().arm_smtp_fault(gsim::SmtpFault {
        stage: gsim::SmtpStage::Rcpt,
        reply: Some("550 5.1.1 The email account that you tried to reach does not exist.".into()),
        close: false,
        hold: false,
        count: 1,
        account: None,
    });
    let mut c = logged_in(&t, "flectra", &password).await;
    let answer = transaction(&mut c, &[BOB.to_string()], &raw_message("doomed")).await;
    assert!(answer.starts_with("250 "), "{answer}");
    let id = answer.trim().rsplit(' ').next().unwrap().to_string();
    t.wait_state(&id, "failed").await;
    let mut settled = t.app.settled.subscribe();
    let report = loop {
        let reports: Vec<_> = t
            .gsim
            .world()
            .deliveries(0)
            .into_iter()
            .filter(|d| d.rcpt_to == vec![ALICE.to_string()])
            .collect();
        if let Some(report) = reports.first() {
            assert_eq!(reports.len(), 1);
            break report.clone();
        }
        tokio::time::timeout(std::time::Duration::from_secs(20), settled.changed())
            .await
            .expect("the report within 20 s")
            .unwrap();
    };
    let text = String::from_utf8_lossy(&report.raw);
    assert!(
        text.contains("multipart/report; report-type=delivery-status"),
        "{text}"
    );
    assert!(text.contains(&format!("Final-Recipient: rfc822; {BOB}")));
    assert!(text.contains("Status: 5.1.1"));
    assert!(
        text.contains("Subject: doomed"),
        "the original header is included"
    );
    // The report itself is not reported on, and a second look finds nothing more to say.
    assert_eq!(t.app.send_bounces().await.unwrap(), 0);
    t.finish().await;
}

#[tokio::test]
async fn a_null_sender_gets_no_report() {
    let t = spawn(Db::Sqlite).await;
    let password = relay_ready(&t, "flectra", "").await;
    t.gsim.world().arm_smtp_fault(gsim::SmtpFault {
        stage: gsim::SmtpStage::Rcpt,
        reply: Some("550 5.1.1 No such user.".into()),
        close: false,
        hold: false,
        count: 1,
        account: None,
    });
    let mut c = logged_in(&t, "flectra", &password).await;
    assert!(c.say("MAIL FROM:<>").await.starts_with("250"));
    assert!(c.say(&format!("RCPT TO:<{BOB}>")).await.starts_with("250"));
    assert!(c.say("DATA").await.starts_with("354"));
    c.writer
        .write_all(raw_message("null-sender").as_bytes())
        .await
        .unwrap();
    let answer = c.say(".").await;
    assert!(answer.starts_with("250 "), "{answer}");
    let id = answer.trim().rsplit(' ').next().unwrap().to_string();
    t.wait_state(&id, "failed").await;
    assert_eq!(t.app.send_bounces().await.unwrap(), 0);
    assert!(t.gsim.world().deliveries(0).is_empty());
    t.finish().await;
}

/// `mailgate relay-credentials …` against this installation's database.
async fn shell(t: &TestApp, args: &[&str]) -> std::process::Output {
    let env = t.process_env();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_mailgate"))
            .env_clear()
            .envs(env)
            .arg("relay-credentials")
            .args(args)
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn credentials_made_in_the_shell_log_in_to_the_relay_until_revoked() {
    let t = spawn(Db::Sqlite).await;
    t.sending_as_alice().await;
    let created = shell(&t, &["create", "--name", "scanner", "--sender", ALICE]).await;
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let password = String::from_utf8(created.stdout)
        .unwrap()
        .trim()
        .to_string();
    assert!(
        password.starts_with("mgr_") && password.len() > 40,
        "{password}"
    );
    let list = String::from_utf8(shell(&t, &["list"]).await.stdout).unwrap();
    assert!(
        list.starts_with(&format!(
            "1\tscanner\t{}…\t{ALICE}\tnever used",
            &password[..10]
        )),
        "{list}"
    );
    assert!(!list.contains(&password));
    let mut c = logged_in(&t, "scanner", &password).await;
    c.say("QUIT").await;
    let list = String::from_utf8(shell(&t, &["list"]).await.stdout).unwrap();
    assert!(list.contains("\tlast used "), "{list}");
    let again = shell(&t, &["create", "--name", "scanner"]).await;
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already exists"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let bad = shell(&t, &["create", "--name", "has space"]).await;
    assert!(String::from_utf8_lossy(&bad.stderr).contains("SMTP username"));
    assert!(shell(&t, &["revoke", "1"]).await.status.success());
    let mut c = Raw::connect(relay_port(&t)).await;
    c.say("EHLO scanner.example").await;
    let refused = c
        .say(&format!("AUTH PLAIN {}", plain("scanner", &password)))
        .await;
    assert!(refused.starts_with("535 "), "{refused}");
    t.finish().await;
}

#[tokio::test]
async fn the_relay_page_shows_a_new_password_once_with_the_settings_for_odoo() {
    let t = spawn(Db::Sqlite).await;
    t.sending_as_alice().await;
    let page = t.visit("/relay").await;
    assert!(page.has(&t.app.relay.listening.get().unwrap().certificate.fingerprint));
    let created = t
        .submit(
            "/relay",
            &[("name", "flectra"), ("senders", "@shop.example")],
        )
        .await;
    assert_eq!(created.status, reqwest::StatusCode::OK, "{}", created.body);
    let password = created
        .body
        .split("id=\"relay-password\">")
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .expect("the password on the page")
        .to_string();
    assert!(created.has("Connection Security") && created.has("TLS (STARTTLS)"));
    assert!(created.has(&format!("<code>{}</code>", relay_port(&t))));
    assert!(matches!(
        t.app
            .authenticate_relay("flectra", &password, [127, 0, 0, 1].into())
            .await
            .unwrap(),
        mailgate::app::relay::RelayAuth::Accepted(_)
    ));
    let later = t.visit("/relay").await;
    assert!(!later.has(&password), "shown once");
    assert!(later.has("@shop.example") && later.has(&password[..10]));
    let bad = t
        .submit("/relay", &[("name", "x y"), ("senders", "nope")])
        .await;
    assert_eq!(bad.status, reqwest::StatusCode::BAD_REQUEST);
    assert!(bad.has("SMTP username") && bad.has("nope"));
    let overview = t.visit("/").await;
    assert!(overview.has("SMTP relay") && overview.has("Messages today"));
    let report = t.app.doctor().await.unwrap();
    let relay = report
        .checks
        .iter()
        .find(|c| c.id == "relay")
        .expect("a relay check");
    assert_eq!(
        relay.status,
        mailgate::app::doctor::Status::Pass,
        "{relay:?}"
    );
    t.finish().await;
}

#[tokio::test]
async fn past_the_session_cap_a_client_hears_421_and_on_stop_every_session_does() {
    let mut t = spawn_with(Db::Sqlite, |env| {
        env.insert("MAILGATE_RELAY_MAX_SESSIONS".into(), "2".into());
    })
    .await;
    let port = relay_port(&t);
    let mut first = Raw::connect(port).await;
    let mut second = Raw::connect(port).await;
    let mut third = BufReader::new(TcpStream::connect(("127.0.0.1", port)).await.unwrap());
    let mut line = String::new();
    third.read_line(&mut line).await.unwrap();
    assert!(line.starts_with("421 4.3.2"), "{line}");
    assert!(second.say("NOOP").await.starts_with("250"));
    // Both sessions wait for their client; stopping tells them so and ends them.
    t.stop_service().await;
    for session in [&mut first, &mut second] {
        let bye = session.reply().await;
        assert!(bye.starts_with("421 4.3.2"), "{bye}");
    }
    t.finish().await;
}

/// A TCP connection to the relay from `source` (a loopback address other than 127.0.0.1).
async fn from(source: &str, port: u16) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind(std::net::SocketAddr::new(source.parse().unwrap(), 0))
        .unwrap();
    socket
        .connect(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .unwrap()
}

/// One address cannot hold every session: past `max_sessions_per_ip` it hears 421 4.7.0, while
/// another address still gets in, and the trusted networks are not counted.
#[tokio::test]
async fn one_address_cannot_take_every_session() {
    let t = spawn_with(Db::Sqlite, |env| {
        env.insert("MAILGATE_RELAY_MAX_SESSIONS_PER_IP".into(), "2".into());
        env.insert(
            "MAILGATE_RELAY_TRUSTED_NETWORKS".into(),
            "127.0.0.3/32".into(),
        );
    })
    .await;
    let port = relay_port(&t);
    let _first = Raw::connect(port).await;
    let mut second = Raw::connect(port).await;
    let mut third = BufReader::new(TcpStream::connect(("127.0.0.1", port)).await.unwrap());
    let mut line = String::new();
    third.read_line(&mut line).await.unwrap();
    assert!(
        line.starts_with("421 4.7.0 Too many connections from your address"),
        "{line}"
    );
    // Another client is not held up by the first one's sessions.
    let mut other = Raw::connect_from("127.0.0.2", port).await;
    assert!(other.say("NOOP").await.starts_with("250"));
    // A session ending gives its address one back (before the relay closes it).
    assert!(second.say("QUIT").await.starts_with("221"));
    second.closed().await;
    let _again = Raw::connect(port).await;
    // Trusted networks (the admin's own devices) are not counted.
    let mut trusted = Vec::new();
    for _ in 0..3 {
        trusted.push(Raw::connect_from("127.0.0.3", port).await);
    }
    t.finish().await;
}

#[tokio::test]
async fn flectras_test_connection_succeeds_and_sends_nothing() {
    let t = spawn(Db::Sqlite).await;
    let password = relay_ready(&t, "flectra", "").await;
    let mut args = client_args(&t, &password, "PLAIN");
    args["test_connection"] = true.into();
    args["from"] = "noreply@shop.example".into();
    args["to"] = serde_json::json!(["noreply@flectrahq.com"]);
    assert_eq!(
        python(args).await,
        vec![serde_json::json!({"mail": 250, "rcpt": 250, "data": 354})],
        "what Flectra needs to say \"Connection Test Successful!\""
    );
    let counts = t.app.queue_counts().await.unwrap();
    assert!(counts.iter().all(|(_, n)| *n == 0), "{counts:?}");
    t.finish().await;
}

#[tokio::test]
async fn the_implicit_tls_listener_takes_a_login_and_a_message() {
    let t = spawn_with(Db::Sqlite, |env| {
        env.insert("MAILGATE_RELAY_TLS_ADDR".into(), "127.0.0.1:0".into());
    })
    .await;
    let password = relay_ready(&t, "flectra", "").await;
    let tls_port = t
        .app
        .relay
        .listening
        .get()
        .unwrap()
        .tls_addr
        .unwrap()
        .port();
    let mut args = client_args(&t, &password, "PLAIN");
    args["port"] = tls_port.into();
    args["implicit_tls"] = true.into();
    args["messages"] = serde_json::json!([write_message(&t, "implicit-tls")]);
    assert_eq!(python(args).await, vec![serde_json::json!({"code": 250})]);
    delivered(&t, "<implicit-tls@shop.example>", 1).await;
    t.finish().await;
}

#[tokio::test]
async fn a_trusted_network_sends_without_logging_in_and_others_still_must() {
    let t = spawn_with(Db::Sqlite, |env| {
        env.insert(
            "MAILGATE_RELAY_TRUSTED_NETWORKS".into(),
            "127.0.0.2/32".into(),
        );
    })
    .await;
    t.sending_as_alice().await;
    let port = relay_port(&t);
    // 127.0.0.1 is not in the trusted network: it must log in.
    let mut untrusted = Raw::connect(port).await;
    untrusted.say("EHLO app.example").await;
    assert!(
        untrusted
            .say(&format!("MAIL FROM:<{ALICE}>"))
            .await
            .starts_with("530 5.7.0")
    );
    // A printer at 127.0.0.2 sends as it is.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let stream = socket
        .connect(format!("127.0.0.1:{port}").parse().unwrap())
        .await
        .unwrap();
    let (read, writer) = tokio::io::split(stream);
    let mut printer = Raw {
        reader: BufReader::new(read),
        writer,
    };
    assert!(printer.reply().await.starts_with("220 "));
    printer.say("EHLO printer.example").await;
    let answer = transaction(&mut printer, &[BOB.to_string()], &raw_message("scan")).await;
    assert!(answer.starts_with("250 2.0.0 OK "), "{answer}");
    let d = &delivered(&t, "<scan@shop.example>", 1).await[0];
    let (trace, _) = without_trace(&d.raw);
    assert!(
        trace
            .iter()
            .any(|f| f.contains("[127.0.0.2]") && f.contains("with ESMTP id")),
        "no login, no TLS, said so: {trace:?}"
    );
    t.finish().await;
}
