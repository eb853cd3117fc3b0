//! A fresh mailgate installation for one run: its database (SQLite file or PostgreSQL
//! database), its configuration pointing at gsim, a Gmail server connected as an admin would
//! connect it, an API key, a queue or a history loaded in bulk, and the release
//! `mailgate serve` process itself.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use gsim::{Gsim, MintRequest};
use mailgate::app::App;
use mailgate::clock::SystemClock;
use mailgate::config::Config;
use mailgate::domain::ServerDraft;
use mailgate::domain::message::Submission;
use mailgate::store::{GoogleSettings, NewConnection};
use secrecy::SecretString;

pub const CLIENT_ID: &str =
    "900000000001-benchclient00000000000000000000.apps.googleusercontent.com";
pub const CLIENT_SECRET: &str = "GOCSPX-bench";
pub const ACCOUNT: &str = "bench@example.com";
/// Not a gsim account: Gmail relays it onward, and no simulated inbox fills up.
pub const RECIPIENT: &str = "sink@elsewhere.example";

pub fn mailgate_bin() -> String {
    std::env::var("MAILGATE_BIN").unwrap_or_else(|_| {
        let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
        format!("{target}/release/mailgate")
    })
}

/// The message every run sends, as the API takes it: about a kilobyte of text.
pub fn submission(i: usize) -> serde_json::Value {
    serde_json::json!({
        "from": ACCOUNT, "to": [RECIPIENT], "subject": format!("bench {i}"),
        "text": "A short message of about a kilobyte. ".repeat(25),
    })
}

pub struct Installation {
    pub dir: PathBuf,
    pub env: BTreeMap<String, String>,
    pub port: u16,
    /// The SMTP relay's submission port.
    pub relay_port: u16,
    pub api_key: String,
    postgres_admin: Option<(String, String)>,
}

impl Installation {
    /// A fresh installation of `backend` whose Gmail is reached at `smtp` (gsim's SMTP, or a
    /// delayed wire in front of it).
    pub async fn new(gsim: &Gsim, backend: &str, smtp: SocketAddr) -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let relay_port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let dir = std::env::temp_dir().join(format!("queue-bench-{}-{port}", std::process::id()));
        let mut postgres_admin = None;
        let database_url = match backend {
            "sqlite" => format!("sqlite://{}/mailgate.db", dir.display()),
            "postgres" => {
                let admin = std::env::var("MAILGATE_TEST_POSTGRES")
                    .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
                let name = format!("queue_bench_{port}");
                admin_sql(&admin, &format!("DROP DATABASE IF EXISTS {name}")).await?;
                admin_sql(&admin, &format!("CREATE DATABASE {name}")).await?;
                let url = format!(
                    "{}/{name}",
                    admin.rsplit_once('/').map(|(s, _)| s).unwrap_or(&admin)
                );
                postgres_admin = Some((admin, name));
                url
            }
            other => bail!("unknown backend {other}"),
        };
        let e = gsim.endpoints();
        let env: BTreeMap<String, String> = [
            ("MAILGATE_DATA_DIR", dir.display().to_string()),
            ("MAILGATE_DATABASE_URL", database_url),
            ("MAILGATE_HTTP_ADDR", format!("127.0.0.1:{port}")),
            ("MAILGATE_RELAY_ADDR", format!("127.0.0.1:{relay_port}")),
            ("MAILGATE_PUBLIC_URL", format!("http://127.0.0.1:{port}")),
            ("MAILGATE_GOOGLE_TOKEN_URL", format!("{}/token", e.http)),
            (
                "MAILGATE_GOOGLE_CERTS_URL",
                format!("{}/oauth2/v3/certs", e.http),
            ),
            ("MAILGATE_EXTRA_CA_FILE", e.ca_cert.display().to_string()),
            // Gmail servers always connect to the configured Gmail endpoint: here, gsim's.
            ("MAILGATE_GMAIL_SMTP", smtp.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let mut installation = Self {
            dir,
            env,
            port,
            relay_port,
            api_key: String::new(),
            postgres_admin,
        };
        let app = installation.open().await?;
        installation.api_key = connect_gmail(gsim, &app, smtp).await?;
        app.store.close().await;
        Ok(installation)
    }

    /// The installation as a library, in this process (for loading it, or borrowing its
    /// SMTP connector).
    pub async fn open(&self) -> anyhow::Result<Arc<App>> {
        let config = Config::from_sources(None, &self.env)?;
        Ok(App::open(config, Arc::new(SystemClock)).await?)
    }

    /// `queued` messages due now and `history` messages sent two days ago (with their attempt
    /// and their daily count), copied in bulk from one message accepted the normal way.
    pub async fn load(&self, queued: usize, history: usize) -> anyhow::Result<()> {
        let app = self.open().await?;
        let template = app
            .submit(
                &serde_json::from_value::<Submission>(submission(0))?,
                mailgate::app::outbox::Origin::CLI,
            )
            .await?
            .id;
        let copy = |state: &str, at: i64, count: usize, tag: &str| {
            format!(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {count}) \
                 INSERT INTO messages (id, state, server_id, mail_from, rcpt_to, message_id, from_header, subject, size, body, \
                 attempts, next_attempt_at, created_at, updated_at, sent_at, origin) \
                 SELECT t.id || '{tag}' || CAST(n.i + 100000000 AS TEXT), '{state}', t.server_id, t.mail_from, t.rcpt_to, \
                 t.message_id, t.from_header, t.subject, t.size, t.body, {attempts}, {at}, {at}, {at}, {sent_at}, t.origin \
                 FROM n, messages t WHERE t.id = '{template}'",
                attempts = i64::from(state == "sent"),
                sent_at = if state == "sent" {
                    at.to_string()
                } else {
                    "NULL".into()
                },
            )
        };
        let now = app.now();
        let pool = app.store.pool();
        if history > 0 {
            let then = now - 2 * 86_400;
            sqlx::query(sqlx::AssertSqlSafe(copy("sent", then, history, "h")))
                .execute(pool)
                .await?;
            sqlx::query(
                "INSERT INTO attempts (message_id, at, outcome, stage, reply, detail) \
                 SELECT id, created_at, 'sent', 'data_end', '250 2.0.0 OK', '250 2.0.0 OK' FROM messages WHERE state = 'sent'",
            )
            .execute(pool)
            .await?;
            sqlx::query("INSERT INTO account_sends (account, hour, sent) VALUES ($1, $2, $3)")
                .bind(ACCOUNT)
                .bind(then / 3600)
                .bind(i64::try_from(history)?)
                .execute(pool)
                .await?;
        }
        // The template itself is one of the queued.
        if queued > 1 {
            sqlx::query(sqlx::AssertSqlSafe(copy("queued", now, queued - 1, "q")))
                .execute(pool)
                .await?;
        }
        app.store.close().await;
        Ok(())
    }

    /// Starts the release `mailgate serve` and waits for its ready line.
    pub fn serve(&self) -> anyhow::Result<Served> {
        self.serve_at(self.port, self.relay_port)
    }

    /// `count` instances on this installation's database (PostgreSQL), each with ports of its
    /// own, as behind a load balancer: the first at `port`, the others where the system puts
    /// them. Returns them with their HTTP and relay ports.
    pub fn serve_instances(&self, count: usize) -> anyhow::Result<Vec<(Served, u16, u16)>> {
        let mut served = vec![(self.serve()?, self.port, self.relay_port)];
        for _ in 1..count {
            let free = || -> anyhow::Result<u16> {
                Ok(std::net::TcpListener::bind("127.0.0.1:0")?
                    .local_addr()?
                    .port())
            };
            let (port, relay_port) = (free()?, free()?);
            served.push((self.serve_at(port, relay_port)?, port, relay_port));
        }
        Ok(served)
    }

    fn serve_at(&self, port: u16, relay_port: u16) -> anyhow::Result<Served> {
        let started = Instant::now();
        let mut child = Command::new(mailgate_bin())
            .envs(&self.env)
            .env("MAILGATE_HTTP_ADDR", format!("127.0.0.1:{port}"))
            .env("MAILGATE_RELAY_ADDR", format!("127.0.0.1:{relay_port}"))
            .env("MAILGATE_LOG", "mailgate=warn")
            .arg("serve")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| {
                format!("cannot start {} (build it with --release)", mailgate_bin())
            })?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().context("stdout")?).read_line(&mut line)?;
        let ready = started.elapsed();
        if !line.starts_with("mailgate is ready") {
            let _ = child.kill();
            bail!("mailgate did not start: {line}");
        }
        Ok(Served { child, ready })
    }

    pub async fn remove(self) -> anyhow::Result<()> {
        let _ = std::fs::remove_dir_all(&self.dir);
        if let Some((admin, name)) = &self.postgres_admin {
            admin_sql(admin, &format!("DROP DATABASE IF EXISTS {name}")).await?;
        }
        Ok(())
    }
}

async fn admin_sql(admin_url: &str, sql: &str) -> anyhow::Result<()> {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(admin_url).await?;
    sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
        .execute(&pool)
        .await?;
    pool.close().await;
    Ok(())
}

/// Gmail Credentials, an outgoing Gmail server, its connection, an admin and an API key, as an
/// admin would have set them up. Returns the API key.
async fn connect_gmail(gsim: &Gsim, app: &App, smtp: SocketAddr) -> anyhow::Result<String> {
    app.store
        .save_google_settings(
            &app.sealer,
            &GoogleSettings {
                custom_email_servers: true,
                client_id: Some(CLIENT_ID.into()),
                client_secret: Some(SecretString::from(CLIENT_SECRET.to_string())),
                test_recipient: None,
            },
            app.now(),
        )
        .await?;
    app.create_server(&ServerDraft {
        name: "Gmail".into(),
        auth: "gmail".into(),
        username: ACCOUNT.into(),
        host: smtp.ip().to_string(),
        port: smtp.port().to_string(),
        security: "starttls".into(),
        priority: "10".into(),
        daily_limit: "1000000".into(),
        ..Default::default()
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let tokens = mint(gsim)?;
    let text = |k: &str| SecretString::from(tokens[k].as_str().unwrap_or_default().to_string());
    app.store
        .save_connection(
            &app.sealer,
            &NewConnection {
                email: ACCOUNT,
                client_id: CLIENT_ID,
                scope: "https://mail.google.com/ openid https://www.googleapis.com/auth/userinfo.email",
                refresh_token: &text("refresh_token"),
                access_token: &text("access_token"),
                access_expires_at: app.now() + 3599,
                refresh_expires_at: None,
            },
            app.now(),
        )
        .await?;
    app.create_admin(
        "admin@example.com",
        SecretString::from("bench admin passphrase".to_string()),
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    app.create_api_key("bench", mailgate::app::api_keys::KeyScope::Submit)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))
}

/// Tokens for the bench account, as Google's consent would have issued them.
pub fn mint(gsim: &Gsim) -> anyhow::Result<serde_json::Value> {
    Ok(gsim.world().mint_tokens(&MintRequest {
        client_id: CLIENT_ID.into(),
        email: ACCOUNT.into(),
        scopes: vec![
            "https://mail.google.com/".into(),
            "openid".into(),
            "email".into(),
        ],
        offline: true,
    })?)
}

/// A running `mailgate serve`.
pub struct Served {
    child: Child,
    /// From spawning the process to its ready line.
    pub ready: Duration,
}

impl Served {
    /// Resident memory now and at its peak, in MiB, from /proc.
    pub fn memory_mib(&self) -> anyhow::Result<(f64, f64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let field = |name: &str| -> anyhow::Result<f64> {
            let line = status
                .lines()
                .find(|l| l.starts_with(name))
                .with_context(|| format!("no {name} in /proc status"))?;
            let kib: f64 = line
                .split_whitespace()
                .nth(1)
                .context("no value")?
                .parse()?;
            Ok(kib / 1024.0)
        };
        Ok((field("VmRSS:")?, field("VmHWM:")?))
    }

    /// CPU time the process used so far (user and system), from /proc: what a message costs,
    /// less at the mercy of the scheduler than elapsed time.
    pub fn cpu_seconds(&self) -> anyhow::Result<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))?;
        // The fields after the command name, which is in parentheses and may hold spaces.
        let after = stat.rsplit_once(')').context("no command in /proc stat")?.1;
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks: f64 = fields
            .get(11..13)
            .context("short /proc stat")?
            .iter()
            .map(|f| f.parse::<f64>())
            .sum::<Result<f64, _>>()?;
        // USER_HZ is 100 on Linux.
        Ok(ticks / 100.0)
    }

    /// SIGTERM, and wait for the graceful stop.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        tokio::task::spawn_blocking(move || self.child.wait()).await??;
        Ok(())
    }
}
