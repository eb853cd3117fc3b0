//! queue-bench: how fast mailgate accepts messages through its API and delivers them to Gmail
//! (gsim), for SQLite and PostgreSQL in the same run. Each run starts a fresh installation and a
//! release `mailgate serve` process, submits N messages with C concurrent clients, and times the
//! last 202 and the last delivery. Medians of R runs are reported; see BENCHMARKS.md.
//!
//!   cargo build --release -p mailgate -p mailgate-bench
//!   target/release/queue-bench [--messages N] [--clients C] [--runs R] [--backends sqlite,postgres]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use gsim::config::{AccountConfig, ClientConfig, PublishingStatus};
use gsim::{Gsim, MintRequest};
use mailgate::app::App;
use mailgate::clock::SystemClock;
use mailgate::config::Config;
use mailgate::domain::ServerDraft;
use mailgate::store::{GoogleSettings, NewConnection};
use secrecy::SecretString;

const CLIENT_ID: &str = "900000000001-benchclient00000000000000000000.apps.googleusercontent.com";
const CLIENT_SECRET: &str = "GOCSPX-bench";
const ACCOUNT: &str = "bench@example.com";
const RECIPIENT: &str = "sink@example.com";

struct Options {
    messages: usize,
    clients: usize,
    runs: usize,
    backends: Vec<String>,
}

fn options() -> anyhow::Result<Options> {
    let mut o = Options {
        messages: 2000,
        clients: 16,
        runs: 5,
        backends: vec!["sqlite".into(), "postgres".into()],
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    for pair in args.chunks(2) {
        let value = pair.get(1).context("every option takes a value")?;
        match pair[0].as_str() {
            "--messages" => o.messages = value.parse()?,
            "--clients" => o.clients = value.parse()?,
            "--runs" => o.runs = value.parse()?,
            "--backends" => o.backends = value.split(',').map(str::to_string).collect(),
            other => bail!("unknown option {other}"),
        }
    }
    Ok(o)
}

fn mailgate_bin() -> String {
    std::env::var("MAILGATE_BIN").unwrap_or_else(|_| {
        let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
        format!("{target}/release/mailgate")
    })
}

struct Run {
    accepted_per_sec: f64,
    /// All N delivered, timed from the first submission.
    delivered_per_sec: f64,
    /// Delivery alone: what was left after the last 202, over the time it took.
    drain_per_sec: f64,
    logins: u64,
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// A fresh installation configured and connected as an admin would have done it.
async fn prepare(gsim: &Gsim, env: &BTreeMap<String, String>) -> anyhow::Result<String> {
    let config = Config::from_sources(None, env)?;
    let app = App::open(config, Arc::new(SystemClock)).await?;
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
    let smtp = gsim.endpoints().smtp_starttls;
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
    let tokens = gsim.world().mint_tokens(&MintRequest {
        client_id: CLIENT_ID.into(),
        email: ACCOUNT.into(),
        scopes: vec![
            "https://mail.google.com/".into(),
            "openid".into(),
            "email".into(),
        ],
        offline: true,
    })?;
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
    let key = app
        .create_api_key("bench", mailgate::app::api_keys::KeyScope::Submit)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    app.store.close().await;
    Ok(key)
}

fn serve(env: &BTreeMap<String, String>) -> anyhow::Result<Child> {
    let mut child = Command::new(mailgate_bin())
        .envs(env)
        .env("MAILGATE_LOG", "mailgate=warn")
        .arg("serve")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("cannot start {} (build it with --release)", mailgate_bin()))?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().context("stdout")?).read_line(&mut line)?;
    if !line.starts_with("mailgate is ready") {
        let _ = child.kill();
        bail!("mailgate did not start: {line}");
    }
    Ok(child)
}

async fn run_once(gsim: &Gsim, backend: &str, o: &Options) -> anyhow::Result<Run> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let dir = std::env::temp_dir().join(format!("queue-bench-{}-{port}", std::process::id()));
    let database_url = match backend {
        "sqlite" => format!("sqlite://{}/mailgate.db", dir.display()),
        "postgres" => {
            let admin = std::env::var("MAILGATE_TEST_POSTGRES")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
            sqlx::any::install_default_drivers();
            let pool = sqlx::AnyPool::connect(&admin).await?;
            let name = format!("queue_bench_{port}");
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name}"
            )))
            .execute(&pool)
            .await?;
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&pool)
                .await?;
            pool.close().await;
            format!(
                "{}/{name}",
                admin.rsplit_once('/').map(|(s, _)| s).unwrap_or(&admin)
            )
        }
        other => bail!("unknown backend {other}"),
    };
    let e = gsim.endpoints();
    let env: BTreeMap<String, String> = [
        ("MAILGATE_DATA_DIR", dir.display().to_string()),
        ("MAILGATE_DATABASE_URL", database_url),
        ("MAILGATE_HTTP_ADDR", format!("127.0.0.1:{port}")),
        ("MAILGATE_PUBLIC_URL", format!("http://127.0.0.1:{port}")),
        ("MAILGATE_GOOGLE_TOKEN_URL", format!("{}/token", e.http)),
        (
            "MAILGATE_GOOGLE_CERTS_URL",
            format!("{}/oauth2/v3/certs", e.http),
        ),
        ("MAILGATE_EXTRA_CA_FILE", e.ca_cert.display().to_string()),
        // Gmail servers always connect to the configured Gmail endpoint: here, gsim's.
        ("MAILGATE_GMAIL_SMTP", e.smtp_starttls.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let key = prepare(gsim, &env).await?;
    let mut child = serve(&env)?;
    gsim.world().clear_deliveries();
    let logins_before = gsim.world().counters().smtp_logins.ok;
    let mut changes = gsim.world().subscribe_changes();

    let url = format!("http://127.0.0.1:{port}/api/v1/messages");
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..o.clients {
        let (url, key, next, total) = (url.clone(), key.clone(), next.clone(), o.messages);
        clients.spawn(async move {
            let http = reqwest::Client::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= total {
                    return Ok::<_, anyhow::Error>(());
                }
                let body = serde_json::json!({
                    "from": ACCOUNT, "to": [RECIPIENT], "subject": format!("bench {i}"),
                    "text": "A short message of about a kilobyte. ".repeat(25),
                });
                let response = http.post(&url).bearer_auth(&key).json(&body).send().await?;
                if response.status() != 202 {
                    bail!("submission {i}: {}", response.status());
                }
            }
        });
    }
    for result in clients.join_all().await {
        result?;
    }
    let accepted = started.elapsed();
    let delivered_at_accept = gsim.world().deliveries(0).len();
    while gsim.world().deliveries(0).len() < o.messages {
        tokio::time::timeout(Duration::from_secs(120), changes.changed())
            .await
            .context("deliveries stopped")??;
    }
    let delivered = started.elapsed();
    let drain = delivered.saturating_sub(accepted).as_secs_f64();
    let logins = gsim.world().counters().smtp_logins.ok - logins_before;
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()?;
    tokio::task::spawn_blocking(move || child.wait()).await??;
    let _ = std::fs::remove_dir_all(&dir);
    #[allow(clippy::cast_precision_loss)]
    let n = o.messages as f64;
    #[allow(clippy::cast_precision_loss)]
    let drained = (o.messages - delivered_at_accept) as f64;
    Ok(Run {
        accepted_per_sec: n / accepted.as_secs_f64(),
        delivered_per_sec: n / delivered.as_secs_f64(),
        // Nothing left to drain means delivery kept pace with submission.
        drain_per_sec: if drained > 0.0 {
            drained / drain
        } else {
            f64::INFINITY
        },
        logins,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let o = options()?;
    let mut config = gsim::Config::empty();
    let mut client = ClientConfig::web(CLIENT_ID, CLIENT_SECRET, &[]);
    client.publishing_status = PublishingStatus::Production;
    config.clients = vec![client];
    let mut account = AccountConfig::new(ACCOUNT);
    account.daily_send_limit = u32::MAX;
    config.accounts = vec![account, AccountConfig::new(RECIPIENT)];
    // The recipient's INBOX would hold every message; the delivery log is what is counted.
    let gsim = Gsim::start(config, None).await?;
    println!(
        "{} messages of ~1 KB, {} concurrent API clients, {} runs per backend, release mailgate at {}",
        o.messages,
        o.clients,
        o.runs,
        mailgate_bin()
    );
    println!(
        "| backend | accepted msg/s (median) | delivered msg/s (median) | drain msg/s (median) | SMTP logins | runs (accepted / delivered / drain) |"
    );
    println!("|---|---|---|---|---|---|");
    for backend in &o.backends {
        let mut runs = Vec::new();
        for _ in 0..o.runs {
            runs.push(run_once(&gsim, backend, &o).await?);
        }
        let each: Vec<String> = runs
            .iter()
            .map(|r| {
                format!(
                    "{:.0} / {:.0} / {:.0}",
                    r.accepted_per_sec, r.delivered_per_sec, r.drain_per_sec
                )
            })
            .collect();
        println!(
            "| {backend} | {:.0} | {:.0} | {:.0} | {} | {} |",
            median(runs.iter().map(|r| r.accepted_per_sec).collect()),
            median(runs.iter().map(|r| r.delivered_per_sec).collect()),
            median(runs.iter().map(|r| r.drain_per_sec).collect()),
            runs.iter().map(|r| r.logins).max().unwrap_or(0),
            each.join(", ")
        );
    }
    gsim.stop().await;
    Ok(())
}
