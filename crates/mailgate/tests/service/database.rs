//! The database: embedded migrations, a newer schema refused, and PostgreSQL doing everything
//! SQLite does.

use std::collections::BTreeMap;
use std::sync::Arc;

use mailgate::app::{App, StartError};
use mailgate::clock::SystemClock;
use mailgate::config::Config;
use mailgate::store::StoreError;
use reqwest::StatusCode;
use sqlx::Row;

use crate::support::*;

fn config_of(t: &TestApp) -> Config {
    let env: BTreeMap<String, String> = [
        (
            "MAILGATE_DATA_DIR".to_string(),
            t.data_dir.display().to_string(),
        ),
        ("MAILGATE_DATABASE_URL".to_string(), t.database_url.clone()),
    ]
    .into_iter()
    .collect();
    Config::from_sources(None, &env).unwrap()
}

#[tokio::test]
async fn a_database_from_a_newer_mailgate_is_refused_with_a_message_saying_so() {
    let t = spawn(Db::SqliteFile).await;
    let status = t.app.store.schema_status().await.unwrap();
    assert!(status.is_current());
    // Reopening a current database is a no-op.
    App::open(config_of(&t), Arc::new(SystemClock))
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, installed_on, success, checksum, execution_time) \
         VALUES (99991231000000, 'from the future', CURRENT_TIMESTAMP, TRUE, X'00', 0)",
    )
    .execute(t.app.store.pool())
    .await
    .unwrap();
    let error = App::open(config_of(&t), Arc::new(SystemClock))
        .await
        .err()
        .unwrap();
    assert!(
        matches!(
            error,
            StartError::Store(StoreError::NewerSchema {
                found: 99991231000000,
                ..
            })
        ),
        "{error}"
    );
    let message = error.to_string();
    assert!(
        message.contains(
            "written by a newer mailgate (schema version 99991231000000; this mailgate knows up to"
        ),
        "{message}"
    );
    t.finish().await;
}

#[tokio::test]
async fn postgres_runs_the_whole_seed_flow_with_tokens_sealed() {
    let t = spawn(Db::Postgres).await;
    assert_eq!(t.app.store.backend(), mailgate::store::Backend::Postgres);
    let id = t.ready_to_connect().await;
    assert_eq!(t.connect(id, ALICE).await.status, StatusCode::SEE_OTHER);
    let page = t.visit(&format!("/servers/{id}")).await;
    assert!(page.has("Gmail Token Valid"));
    let report = t.app.test_server(id).await.unwrap();
    assert!(report.ok, "{report:?}");
    let row =
        sqlx::query("SELECT refresh_token_sealed, access_token_sealed FROM google_connections")
            .fetch_one(t.app.store.pool())
            .await
            .unwrap();
    let refresh = t.refresh_token_at_google(ALICE);
    for column in ["refresh_token_sealed", "access_token_sealed"] {
        let sealed: Vec<u8> = row.try_get(column).unwrap();
        assert!(
            !sealed.windows(4).any(|w| w == b"1//0" || w == b"ya29"),
            "{column} is sealed"
        );
        assert!(
            !sealed
                .windows(refresh.len())
                .any(|w| w == refresh.as_bytes())
        );
    }
    let settings = sqlx::query("SELECT COUNT(*) AS n FROM settings WHERE value LIKE '%GOCSPX%'")
        .fetch_one(t.app.store.pool())
        .await
        .unwrap();
    assert_eq!(settings.try_get::<i64, _>("n").unwrap(), 0);
    // A forged state is refused on PostgreSQL too.
    assert_eq!(
        t.get("/google_gmail/confirm?state=forged&code=x")
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    t.finish().await;
}

#[tokio::test]
async fn the_database_knows_its_key_a_lost_key_file_is_not_replaced_and_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let t = spawn(Db::SqliteFile).await;
    t.create_admin().await;
    t.save_credentials().await;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let db = t.data_dir.join("mailgate.db");
    for file in [db.clone(), t.data_dir.join("mailgate.db-wal")] {
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }
    assert_eq!(mode(&t.data_dir), 0o700);

    let key = t.data_dir.join("secret.key");
    let original = std::fs::read(&key).unwrap();
    std::fs::remove_file(&key).unwrap();
    let error = App::open(config_of(&t), Arc::new(SystemClock))
        .await
        .err()
        .expect("a missing key with sealed secrets stops the start")
        .to_string();
    assert!(
        error.contains(&key.display().to_string()) && error.contains("missing"),
        "{error}"
    );
    assert!(!key.exists(), "no new key was made over the old secrets");

    mailgate::crypto::write_new_private_file(
        &key,
        b"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
    )
    .unwrap();
    let error = App::open(config_of(&t), Arc::new(SystemClock))
        .await
        .err()
        .expect("another key stops the start")
        .to_string();
    assert!(
        error.contains("not the key this database was set up with"),
        "{error}"
    );
    assert!(error.contains(&key.display().to_string()), "{error}");

    // The original key, even left readable by others, is taken back and tightened.
    std::fs::remove_file(&key).unwrap();
    std::fs::write(&key, &original).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let app = App::open(config_of(&t), Arc::new(SystemClock))
        .await
        .unwrap();
    assert!(app.google_settings().await.unwrap().client_secret.is_some());
    assert_eq!(mode(&key), 0o600);
    t.finish().await;
}

/// A one-line message from Alice to Bob, as an API client would have queued it.
fn queued(id: String, server_id: i64, subject: &str) -> mailgate::store::NewMessage {
    mailgate::store::NewMessage {
        message_id: format!("<{id}@example.com>"),
        id,
        server_id,
        mail_from: ALICE.into(),
        rcpt_to: vec![BOB.to_string()],
        from_header: ALICE.into(),
        subject: subject.into(),
        body: b"x".to_vec(),
        origin: mailgate::domain::message::Edge::Api,
        api_key_id: None,
        idempotency_key: None,
        request_hash: None,
        bounce_to: None,
    }
}

/// Many workers marking their final dots at once each get their own answer (true for their
/// lease, false for a lost one), and every true mark is on disk.
#[tokio::test]
async fn concurrent_final_dot_marks_each_get_their_own_answer() {
    use mailgate::store::Store;
    let dir = std::env::temp_dir().join(format!(
        "mailgate-marks-{}",
        mailgate::crypto::random_token()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let store = Store::connect(&format!("sqlite://{}/marks.db", dir.display()))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    sqlx::query(
        "INSERT INTO mail_servers (name, auth_method, host, port, security, priority, created_at, updated_at) \
         VALUES ('S', 'none', '127.0.0.1', 9, 'none', 10, 0, 0)",
    )
    .execute(store.pool())
    .await
    .unwrap();
    let server: i64 = sqlx::query("SELECT id FROM mail_servers")
        .fetch_one(store.pool())
        .await
        .unwrap()
        .try_get("id")
        .unwrap();
    for i in 0..40 {
        let id = format!("m{i:03}");
        store
            .insert_message(queued(id.clone(), server, "s"), 1)
            .await
            .unwrap();
    }
    let claimed = store
        .claim_messages("test", "L", 2, 600, 100, &[])
        .await
        .unwrap();
    assert_eq!(claimed.len(), 40);
    let store = Arc::new(store);
    let marks: Vec<_> = claimed
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let store = store.clone();
            let id = m.id.clone();
            // Every fourth worker lost its lease.
            let lease = if i % 4 == 0 {
                "stale".to_string()
            } else {
                m.lease.clone()
            };
            tokio::spawn(async move {
                let marked = store.mark_dot(&id, &lease, 3).await.unwrap();
                (id, marked)
            })
        })
        .collect();
    let mut answers = Vec::new();
    for mark in marks {
        answers.push(mark.await.unwrap());
    }
    for (i, (id, marked)) in answers.iter().enumerate() {
        assert_eq!(*marked, i % 4 != 0, "{id}");
        let dot_at: Option<i64> = sqlx::query("SELECT dot_at FROM messages WHERE id = $1")
            .bind(id)
            .fetch_one(store.pool())
            .await
            .unwrap()
            .try_get("dot_at")
            .unwrap();
        assert_eq!(dot_at.is_some(), *marked, "{id}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Group commit: writes that arrive together share one transaction, and one that fails (here a
/// second message with an id already taken) is rolled back alone: every other write of its
/// batch is on disk, and each caller hears its own answer.
async fn one_failing_write_leaves_the_rest_of_its_batch_committed(db: Db) {
    use mailgate::store::{Inserted, Store};
    let t = spawn(db).await;
    let server = t.sending_as_alice().await;
    let store = Arc::new(Store::connect(&t.database_url).await.unwrap());
    let writes: Vec<_> = (0..40)
        .map(|i| {
            let store = store.clone();
            // Every tenth write reuses the id of the one before it.
            let id = format!("g{:03}", if i % 10 == 9 { i - 1 } else { i });
            tokio::spawn(async move {
                let message = queued(id.clone(), server, &format!("write {i}"));
                (id, store.insert_message(message, 1).await)
            })
        })
        .collect();
    let mut answers: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for write in writes {
        let (id, answer) = write.await.unwrap();
        let entry = answers.entry(id).or_default();
        match answer {
            Ok(Inserted::New) => entry.0 += 1,
            Err(StoreError::Duplicate(_)) => entry.1 += 1,
            Ok(Inserted::Existing { .. }) => panic!("no Idempotency-Key was given"),
            Err(e) => panic!("unexpected failure: {e}"),
        }
    }
    assert_eq!(answers.len(), 36);
    for (id, (new, duplicate)) in &answers {
        assert_eq!(*new, 1, "{id}: exactly one write of this id commits");
        let expected = usize::from(id.ends_with('8'));
        assert_eq!(*duplicate, expected, "{id}: the second write is refused");
    }
    let on_disk: i64 = sqlx::query("SELECT COUNT(*) AS n FROM messages WHERE id LIKE 'g%'")
        .fetch_one(store.pool())
        .await
        .unwrap()
        .try_get("n")
        .unwrap();
    assert_eq!(on_disk, 36);
    let (written, commits) = store.group_commits();
    assert_eq!(written, 40);
    assert!(commits < 40, "40 concurrent writes took {commits} commits");
    store.close().await;
    t.finish().await;
}

#[tokio::test]
async fn one_failing_write_leaves_the_rest_of_its_batch_committed_on_sqlite() {
    one_failing_write_leaves_the_rest_of_its_batch_committed(Db::Sqlite).await;
}

#[tokio::test]
async fn one_failing_write_leaves_the_rest_of_its_batch_committed_on_postgres() {
    one_failing_write_leaves_the_rest_of_its_batch_committed(Db::Postgres).await;
}

/// PostgreSQL's TLS is verified: a server whose certificate no trusted authority signed (this
/// machine's, self-signed) is refused under `sslmode=verify-full`, the mode mailgate gives every
/// server off loopback, instead of being used unchecked.
#[tokio::test]
async fn a_postgres_certificate_nobody_signed_is_refused() {
    let url = format!("{}?sslmode=verify-full", postgres_admin_url());
    let refused = match mailgate::store::Store::connect(&url).await {
        Ok(store) => {
            store.close().await;
            panic!("connected to a server whose certificate nobody vouches for");
        }
        Err(e) => e.to_string(),
    };
    // (A server without TLS at all is refused too, for that.)
    let why = refused.to_lowercase();
    assert!(
        why.contains("certificate") || why.contains("tls") || why.contains("ssl"),
        "refused for its certificate: {refused}"
    );
    // The same server on loopback without sslmode: mailgate's configuration says `disable`.
    let env: std::collections::BTreeMap<String, String> =
        [("MAILGATE_DATABASE_URL".to_string(), postgres_admin_url())].into();
    let config = mailgate::config::Config::from_sources(None, &env).unwrap();
    assert!(config.database_url.ends_with("sslmode=disable"));
    let store = mailgate::store::Store::connect(&config.database_url)
        .await
        .unwrap();
    store.close().await;
}

/// The daily limit's reservations, on the default engine: whatever the owners ask and however
/// many ask at once, recorded plus held sends never pass the limit; a hold written whole after
/// sends were recorded frees what it no longer needs.
#[tokio::test]
async fn reservations_never_grant_past_the_limit() {
    let t = spawn(Db::Sqlite).await;
    // The running instance's own store: SQLite is one process's (the reservations share its
    // writer), and on PostgreSQL its pool is as any instance's.
    let store = Arc::new(t.app.store.clone());
    let now = t.app.now();
    let account = "limited@gmail.com";
    let owners: Vec<&'static str> = (0..20)
        .map(|i| &*Box::leak(format!("o{i}").into_boxed_str()))
        .chain(["a", "b", "c"])
        .collect();
    // Live instances, or the running one's heartbeat would forget their holds.
    for owner in &owners {
        store
            .register_instance(&mailgate::store::InstanceRecord {
                id: owner.to_string(),
                host: "test".into(),
                http_addr: "-".into(),
                started_at: now,
                heartbeat_at: now,
            })
            .await
            .unwrap();
    }
    let reserve = |owner: &'static str, holding: i64, want: i64| {
        let store = store.clone();
        async move {
            store
                .reserve_sends(account, owner, holding, want, 5, now)
                .await
                .unwrap()
        }
    };
    assert_eq!(reserve("a", 0, 4).await.granted, 4);
    let b = reserve("b", 0, 4).await;
    assert_eq!((b.granted, b.held_elsewhere), (1, 4), "only what a left");
    // a records its 4 sends and writes its hold whole: nothing on its way, nothing left.
    for _ in 0..4 {
        sqlx::query(
            "INSERT INTO account_sends (account, hour, sent) VALUES ($1, $2, 1) \
             ON CONFLICT (account, hour) DO UPDATE SET sent = account_sends.sent + 1",
        )
        .bind(account)
        .bind(now / 3600)
        .execute(store.pool())
        .await
        .unwrap();
    }
    store.release_sends(account, "a", 0).await.unwrap();
    let again = reserve("c", 0, 4).await;
    assert_eq!(
        (again.granted, again.sent),
        (0, 4),
        "4 sent and b's 1 held: full"
    );
    store.release_sends(account, "b", 0).await.unwrap();
    // Twenty owners at once, one send each, for the one send left (the pool's connections
    // opened first, so the reservations overlap).
    let mut open = Vec::new();
    for _ in 0..store.pool().options().get_max_connections() {
        open.push(store.pool().acquire().await.unwrap());
    }
    drop(open);
    let grants = futures_join(owners[..20].iter().map(|o| reserve(o, 0, 1))).await;
    assert_eq!(grants.iter().map(|r| r.granted).sum::<i64>(), 1);
    t.finish().await;
}

async fn futures_join<
    F: std::future::Future<Output = mailgate::store::Reservation> + Send + 'static,
>(
    futures: impl Iterator<Item = F>,
) -> Vec<mailgate::store::Reservation> {
    let tasks: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for task in tasks {
        out.push(task.await.unwrap());
    }
    out
}
