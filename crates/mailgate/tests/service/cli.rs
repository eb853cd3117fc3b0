//! The binary: `serve` prints the setup link, `migrate`, `admin create` reads the password from
//! standard input, `api-keys` and `servers list|test` do from the shell what the pages do.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use reqwest::StatusCode;

use crate::support::*;

fn mailgate(env: &[(&str, String)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mailgate"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in env {
        command.env(k, v);
    }
    command
}

fn temp_dir(label: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!(
        "mailgate-cli-{label}-{}-{}",
        std::process::id(),
        mailgate::crypto::random_token()
    ))
}

#[test]
fn migrate_creates_the_database_and_a_private_key() {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp_dir("migrate");
    let out = mailgate(&[("MAILGATE_DATA_DIR", dir.display().to_string())])
        .arg("migrate")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("database schema is current (version ")
    );
    let mode = std::fs::metadata(dir.join("secret.key"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let dir_mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(dir_mode, 0o700);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn api_keys_are_created_listed_and_revoked_from_the_shell() {
    let dir = temp_dir("api-keys");
    let env = [("MAILGATE_DATA_DIR", dir.display().to_string())];
    let run = |args: &[&str]| mailgate(&env).args(args).output().unwrap();
    let created = run(&[
        "api-keys",
        "create",
        "--name",
        "CI fuzzer",
        "--scope",
        "admin",
    ]);
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let key = String::from_utf8(created.stdout).unwrap();
    let key = key.trim_end();
    assert!(
        key.starts_with("mgk_") && key.len() > 30 && !key.contains(char::is_whitespace),
        "{key}"
    );

    let list = String::from_utf8(run(&["api-keys", "list"]).stdout).unwrap();
    assert!(list.starts_with("1\tCI fuzzer\t"), "{list}");
    assert!(
        list.contains(&key[..10]) && !list.contains(key),
        "only the prefix is listed: {list}"
    );
    assert!(list.contains("\tadmin\tnever used"), "{list}");

    let revoked = run(&["api-keys", "revoke", "1"]);
    assert!(revoked.status.success());
    let list = String::from_utf8(run(&["api-keys", "list"]).stdout).unwrap();
    assert!(list.contains("\trevoked "), "{list}");

    let unknown = run(&["api-keys", "revoke", "99"]);
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("API key not found"));
    let nameless = run(&["api-keys", "create", "--name", " "]);
    assert!(!nameless.status.success());
    assert!(String::from_utf8_lossy(&nameless.stderr).contains("Name the key"));
    let bad_scope = run(&["api-keys", "create", "--name", "x", "--scope", "root"]);
    assert!(String::from_utf8_lossy(&bad_scope.stderr).contains("submit"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn admin_create_reads_the_password_from_stdin_and_names_what_is_wrong() {
    let dir = temp_dir("admin");
    let env = [("MAILGATE_DATA_DIR", dir.display().to_string())];
    let run = |password: &str| {
        let mut child = mailgate(&env)
            .args(["admin", "create", "--email", ADMIN])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{password}\n").as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let weak = run("short");
    assert!(!weak.status.success());
    assert!(String::from_utf8_lossy(&weak.stderr).contains("Use at least 12 characters."));
    let ok = run(ADMIN_PASSWORD);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains(&format!("admin {ADMIN} created")));
    let again = run(ADMIN_PASSWORD);
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("an admin with this email already exists")
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn serve_prints_a_setup_link_and_stops_on_sigterm() {
    let dir = temp_dir("serve");
    let mut child = mailgate(&[
        ("MAILGATE_DATA_DIR", dir.display().to_string()),
        ("MAILGATE_HTTP_ADDR", "127.0.0.1:0".into()),
        ("MAILGATE_RELAY_ADDR", "127.0.0.1:0".into()),
    ])
    .arg("serve")
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(
        lines.next().unwrap().unwrap(),
        "No admin yet. Create one within the hour at:"
    );
    let link = lines.next().unwrap().unwrap();
    assert!(
        link.trim()
            .starts_with("http://127.0.0.1:8069/setup?token="),
        "{link}"
    );
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(child.wait().unwrap().success());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_typo_in_the_config_file_is_named() {
    let dir = temp_dir("config");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("mailgate.toml");
    std::fs::write(&file, "public_ur = \"https://x.example\"\n").unwrap();
    let out = mailgate(&[])
        .args(["--config", file.to_str().unwrap(), "migrate"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unknown field `public_ur`"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn servers_list_and_test_work_from_the_shell() {
    let t = spawn(Db::Sqlite).await;
    let id = t.ready_to_connect().await;
    assert_eq!(t.connect(id, ALICE).await.status, StatusCode::SEE_OTHER);
    let endpoints = t.gsim.endpoints().clone();
    let env = vec![
        ("MAILGATE_DATA_DIR", t.data_dir.display().to_string()),
        ("MAILGATE_DATABASE_URL", t.database_url.clone()),
        ("MAILGATE_PUBLIC_URL", t.base.clone()),
        (
            "MAILGATE_GOOGLE_TOKEN_URL",
            format!("{}/token", endpoints.http),
        ),
        (
            "MAILGATE_EXTRA_CA_FILE",
            endpoints.ca_cert.display().to_string(),
        ),
        // A Gmail server connects only to the configured Gmail endpoint.
        ("MAILGATE_GMAIL_SMTP", endpoints.smtp_starttls.to_string()),
    ];
    let list = tokio::task::spawn_blocking({
        let env = env.clone();
        move || mailgate(&env).args(["servers", "list"]).output().unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&list.stdout);
    assert!(
        stdout.contains("Gmail") && stdout.contains("Gmail Token Valid"),
        "{stdout}"
    );

    let test = tokio::task::spawn_blocking({
        let env = env.clone();
        move || {
            mailgate(&env)
                .args(["servers", "test", "Gmail"])
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&test.stdout);
    assert!(
        test.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&test.stderr)
    );
    assert!(
        stdout.trim_end().ends_with("Connection Test Successful!"),
        "{stdout}"
    );

    t.gsim.world().arm_smtp_fault(gsim::SmtpFault {
        stage: gsim::SmtpStage::Mail,
        reply: Some("550 5.4.5 Daily user sending quota exceeded. {id} - gsmtp".into()),
        close: false,
        hold: false,
        count: 1,
        account: None,
    });
    let failed = tokio::task::spawn_blocking(move || {
        mailgate(&env)
            .args(["servers", "test", "Gmail"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&failed.stdout);
    assert!(!failed.status.success());
    assert!(
        stdout.contains("Connection Test Failed at MAIL FROM"),
        "{stdout}"
    );
    assert!(stdout.contains("550 5.4.5 Daily user sending quota exceeded."));
    assert!(stdout.contains("daily sending limit"));
    t.finish().await;
}

#[tokio::test]
async fn send_queues_from_the_shell_and_the_running_service_delivers() {
    let t = spawn(Db::Sqlite).await;
    t.sending_as_alice().await;
    let dir = temp_dir("send");
    std::fs::create_dir_all(&dir).unwrap();
    let attachment = dir.join("report.csv");
    std::fs::write(&attachment, "a,b\n1,2\n").unwrap();
    let mbox = dir.join("outbox.mbox");
    std::fs::write(
        &mbox,
        format!(
            "From x Mon Jan  1 00:00:00 2026\nFrom: {ALICE}\nTo: {BOB}\nSubject: mbox one\n\nfirst\n\nFrom x Mon Jan  1 00:00:01 2026\nTo: {BOB}\nSubject: no sender\n\nsecond\n\nFrom x Mon Jan  1 00:00:02 2026\nFrom: {ALICE}\nTo: {BOB}\nSubject: mbox three\n\n>From the third\n"
        ),
    )
    .unwrap();
    let env = vec![
        ("MAILGATE_DATA_DIR", t.data_dir.display().to_string()),
        ("MAILGATE_DATABASE_URL", t.database_url.clone()),
    ];
    let run = |args: Vec<String>| {
        let env = env.clone();
        tokio::task::spawn_blocking(move || mailgate(&env).args(args).output().unwrap())
    };
    let one = run(vec![
        "send".into(),
        "--from".into(),
        ALICE.into(),
        "--to".into(),
        BOB.into(),
        "--subject".into(),
        "from the shell".into(),
        "--text".into(),
        "hello".into(),
        "--attach".into(),
        attachment.display().to_string(),
    ])
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&one.stdout).to_string();
    assert!(
        one.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&one.stderr)
    );
    let id = stdout.trim().strip_prefix("queued ").unwrap().to_string();
    // Another process queued it: the service finds it on its own within seconds.
    let sent = t.wait_state(&id, "sent").await;
    let delivered = t.gsim.world().deliveries(0);
    let raw = String::from_utf8_lossy(
        &delivered
            .iter()
            .find(|d| d.message_id.as_deref() == Some(sent.message_id.as_str()))
            .unwrap()
            .raw,
    )
    .to_string();
    assert!(raw.contains("filename=\"report.csv\""), "{raw}");

    let many = run(vec![
        "send".into(),
        "--mbox".into(),
        mbox.display().to_string(),
    ])
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&many.stdout).to_string();
    assert_eq!(
        many.status.code(),
        Some(1),
        "one message was refused: {stdout}"
    );
    assert!(stdout.contains("queued 2 of 3 messages"), "{stdout}");
    assert!(
        stdout.contains("refused message 2: raw: has no From header"),
        "{stdout}"
    );
    let queued = t
        .app
        .messages(&mailgate::store::MessageFilter {
            search: Some("mbox".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(queued.len(), 2);
    for m in &queued {
        t.wait_state(&m.id, "sent").await;
    }
    let third = t
        .gsim
        .world()
        .deliveries(0)
        .into_iter()
        .find(|d| String::from_utf8_lossy(&d.raw).contains("Subject: mbox three"))
        .unwrap();
    assert!(
        String::from_utf8_lossy(&third.raw).contains("\r\nFrom the third"),
        "mboxrd quoting undone"
    );

    let missing = run(vec!["send".into(), "--to".into(), BOB.into()])
        .await
        .unwrap();
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("--from"),
        "clap names the missing argument"
    );
    std::fs::remove_dir_all(&dir).unwrap();
    t.finish().await;
}

#[tokio::test]
async fn a_raw_message_goes_to_its_envelope_not_its_headers() {
    let t = spawn(Db::Sqlite).await;
    t.sending_as_alice().await;
    let dir = temp_dir("envelope");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("list.eml");
    std::fs::write(
        &file,
        format!("From: {ALICE}\r\nTo: team@lists.example\r\nSubject: to the list\r\n\r\nhi\r\n"),
    )
    .unwrap();
    let env = vec![
        ("MAILGATE_DATA_DIR", t.data_dir.display().to_string()),
        ("MAILGATE_DATABASE_URL", t.database_url.clone()),
    ];
    let run = |args: Vec<&'static str>, file: std::path::PathBuf| {
        let env = env.clone();
        tokio::task::spawn_blocking(move || {
            mailgate(&env)
                .args(["send", "--raw"])
                .arg(file)
                .args(args)
                .output()
                .unwrap()
        })
    };
    let out = run(
        vec![
            "--envelope-to",
            BOB,
            "--envelope-to",
            "carol@example.com",
            "--envelope-to",
            BOB,
        ],
        file.clone(),
    )
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = stdout.trim().strip_prefix("queued ").unwrap().to_string();
    t.wait_state(&id, "sent").await;
    let delivered = t.gsim.world().deliveries(0);
    let delivery = delivered.last().unwrap();
    assert_eq!(
        delivery.rcpt_to,
        [BOB, "carol@example.com"],
        "the envelope, once each"
    );
    let raw = String::from_utf8_lossy(&delivery.raw);
    assert!(
        raw.contains("To: team@lists.example\r\n"),
        "the headers are untouched: {raw}"
    );

    let bad = run(vec!["--envelope-to", "not an address"], file.clone())
        .await
        .unwrap();
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("envelope_to[0]"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    std::fs::remove_dir_all(&dir).unwrap();
    t.finish().await;
}

/// Runs the binary off the runtime (the in-process gsim and mailgate must keep answering).
async fn run_mailgate(env: &[(&'static str, String)], args: &[&str]) -> std::process::Output {
    let (env, args): (Vec<(&str, String)>, Vec<String>) =
        (env.to_vec(), args.iter().map(|a| a.to_string()).collect());
    tokio::task::spawn_blocking(move || mailgate(&env).args(&args).output().unwrap())
        .await
        .unwrap()
}

/// `mailgate backup` copies the SQLite database while mailgate delivers; the copy, with the
/// secret key, is a working installation (its Google token opens and Test Connection passes).
#[tokio::test]
async fn backup_copies_the_database_while_mailgate_runs() {
    use std::os::unix::fs::PermissionsExt;
    let t = spawn(Db::SqliteFile).await;
    t.sending_as_alice().await;
    let key = t.api_key().await;
    for i in 0..20 {
        let (status, body) = t
            .send(
                &key,
                &serde_json::json!({"from": ALICE, "to": [BOB], "subject": format!("kept {i}"), "text": "x"}),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }
    let env = t.process_env();
    let restored = temp_dir("restored");
    std::fs::create_dir_all(&restored).unwrap();
    let copy = restored.join("mailgate.db");
    let out = run_mailgate(&env, &["backup", copy.to_str().unwrap()]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with("backed up to ") && stdout.contains("secret.key"),
        "{stdout}"
    );
    let mode = std::fs::metadata(&copy).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the copy holds sealed tokens and admin hashes");

    let again = run_mailgate(&env, &["backup", copy.to_str().unwrap()]).await;
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already exists"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );

    // Restored beside a copy of the key: every message is there, and the token opens.
    std::fs::copy(t.data_dir.join("secret.key"), restored.join("secret.key")).unwrap();
    let store = mailgate::store::Store::connect(&format!("sqlite://{}", copy.display()))
        .await
        .unwrap();
    let messages = store
        .list_messages(&mailgate::store::MessageFilter {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(messages.len(), 20);
    store.close().await;
    let restored_env: Vec<(&'static str, String)> = env
        .iter()
        .map(|(k, v)| match *k {
            "MAILGATE_DATA_DIR" => (*k, restored.display().to_string()),
            "MAILGATE_DATABASE_URL" => (*k, format!("sqlite://{}", copy.display())),
            _ => (*k, v.clone()),
        })
        .collect();
    let test = run_mailgate(&restored_env, &["servers", "test", "Gmail"]).await;
    let stdout = String::from_utf8_lossy(&test.stdout);
    assert!(
        test.status.success() && stdout.trim_end().ends_with("Connection Test Successful!"),
        "{stdout}{}",
        String::from_utf8_lossy(&test.stderr)
    );
    std::fs::remove_dir_all(&restored).unwrap();
    t.finish().await;
}

/// On PostgreSQL, `mailgate backup` copies nothing: it says to use pg_dump, with the command,
/// and fails so that a script notices.
#[test]
fn backup_on_postgresql_prints_the_pg_dump_command() {
    let dir = temp_dir("backup-pg");
    let url = postgres_admin_url().replace("postgres@", "postgres:hunter2@");
    let out = mailgate(&[
        ("MAILGATE_DATA_DIR", dir.display().to_string()),
        ("MAILGATE_DATABASE_URL", url),
    ])
    .args(["backup", "/tmp/mailgate.dump"])
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "pg_dump --format=custom --file=/tmp/mailgate.dump 'postgres://postgres:***@"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// `mailgate incoming list|test|fetch` do from the shell what the page's buttons do.
#[tokio::test]
async fn incoming_servers_are_listed_tested_and_fetched_from_the_shell() {
    let t = spawn(Db::Sqlite).await;
    t.sending_as_alice().await;
    t.gsim
        .world()
        .append_message(
            ALICE,
            "INBOX",
            b"Subject: shell\r\n\r\nhi\r\n".to_vec(),
            Default::default(),
        )
        .unwrap();
    t.app
        .create_incoming(&mailgate::domain::incoming::IncomingDraft {
            name: "Support".into(),
            username: ALICE.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let env = t.process_env();
    let list = run_mailgate(&env, &["incoming", "list"]).await;
    let stdout = String::from_utf8_lossy(&list.stdout);
    assert!(
        stdout.contains("Support") && stdout.contains("Not Confirmed"),
        "{stdout}"
    );
    let fetch_first = run_mailgate(&env, &["incoming", "fetch", "Support"]).await;
    assert!(!fetch_first.status.success());
    assert!(
        String::from_utf8_lossy(&fetch_first.stderr).contains("Test & Confirm this server first")
    );
    let test = run_mailgate(&env, &["incoming", "test", "Support"]).await;
    assert!(
        test.status.success()
            && String::from_utf8_lossy(&test.stdout)
                .starts_with("Connection Test Successful! INBOX holds 1 message;"),
        "{}{}",
        String::from_utf8_lossy(&test.stdout),
        String::from_utf8_lossy(&test.stderr)
    );
    let unknown = run_mailgate(&env, &["incoming", "test", "Nope"]).await;
    assert!(!unknown.status.success());
    assert!(
        String::from_utf8_lossy(&unknown.stderr)
            .contains("no incoming mail server is named \"Nope\"")
    );
    t.finish().await;
}
