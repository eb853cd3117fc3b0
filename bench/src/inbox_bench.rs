//! inbox-bench: incoming mail from gsim's IMAP to an application's webhook, through a release
//! `mailgate serve`. Medians of R runs on SQLite and on PostgreSQL; see BENCHMARKS.md.
//!
//!   cargo build --release -p mailgate -p mailgate-bench
//!   target/release/inbox-bench [--messages N] [--live L] [--runs R] [--backends sqlite,postgres]
//!
//! Each run, with a fresh gsim and installation:
//! - N messages of about 2 KB wait in the INBOX (a third of them already \Seen, as when a phone
//!   read them first);
//! - direct read: mailgate's own IMAP adapter logs in and fetches them all, in the batches the
//!   fetcher uses, and nothing else: the ceiling the IMAP path allows;
//! - catch-up: an Incoming Mail Server with a webhook is confirmed, `mailgate serve` starts, and
//!   the clock runs from its ready line until the webhook has acknowledged all N (each stored
//!   in the database first, then POSTed, signed, one after another in UID order); the bench
//!   also notes when the last was stored (a count read every 5 ms from its own connection);
//! - live: L messages appended one at a time while mailgate waits in IDLE, each timed from
//!   its arrival at gsim to the webhook's request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use gsim::Gsim;
use mailgate::app::App;
use mailgate::domain::incoming::IncomingDraft;
use mailgate::imap_in::{self, FETCH_BATCH};
use mailgate_bench::install::{ACCOUNT, Installation};
use mailgate_bench::{median, per_sec, start_gsim};
use tokio::sync::watch;

struct Options {
    messages: usize,
    live: usize,
    runs: usize,
    backends: Vec<String>,
}

fn options() -> anyhow::Result<Options> {
    let mut o = Options {
        messages: 2000,
        live: 50,
        runs: 3,
        backends: vec!["sqlite".into(), "postgres".into()],
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    for pair in args.chunks(2) {
        let value = pair.get(1).context("every option takes a value")?;
        match pair[0].as_str() {
            "--messages" => o.messages = value.parse()?,
            "--live" => o.live = value.parse()?,
            "--runs" => o.runs = value.parse()?,
            "--backends" => o.backends = value.split(',').map(str::to_string).collect(),
            other => bail!("unknown option {other}"),
        }
    }
    Ok(o)
}

/// About 2 KB, as a person writes to a support address.
fn message(n: usize) -> Vec<u8> {
    format!(
        "From: Customer {n} <customer{n}@example.net>\r\nTo: <{ACCOUNT}>\r\nSubject: inbox bench {n}\r\n\
         Message-ID: <bench-{n}@example.net>\r\nDate: Sun, 6 Dec 2026 10:00:00 +0000\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{}\r\n",
        "Hello, my order has not arrived yet; could you look into it? ".repeat(30)
    )
    .into_bytes()
}

fn append(gsim: &Gsim, n: usize) -> anyhow::Result<()> {
    let flags = if n.is_multiple_of(3) {
        ["\\Seen".to_string()].into()
    } else {
        Default::default()
    };
    gsim.world()
        .append_message(ACCOUNT, "INBOX", message(n), flags)
        .context("gsim has no INBOX for the account")?;
    Ok(())
}

/// The application's webhook: answers 204 at once, notes when each subject first arrived and
/// how many requests came.
struct Sink {
    url: String,
    arrived: Arc<Mutex<HashMap<String, Instant>>>,
    requests: Arc<Mutex<usize>>,
    changes: watch::Receiver<usize>,
}

#[derive(Clone)]
struct SinkState {
    arrived: Arc<Mutex<HashMap<String, Instant>>>,
    requests: Arc<Mutex<usize>>,
    changes: Arc<watch::Sender<usize>>,
}

async fn receive(State(s): State<SinkState>, body: Bytes) -> StatusCode {
    let now = Instant::now();
    let subject = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["subject"].as_str().map(str::to_string))
        .unwrap_or_default();
    *s.requests.lock().expect("sink lock") += 1;
    let count = {
        let mut arrived = s.arrived.lock().expect("sink lock");
        arrived.entry(subject).or_insert(now);
        arrived.len()
    };
    s.changes.send_replace(count);
    StatusCode::NO_CONTENT
}

impl Sink {
    async fn start() -> anyhow::Result<Self> {
        let (tx, changes) = watch::channel(0);
        let state = SinkState {
            arrived: Arc::default(),
            requests: Arc::default(),
            changes: Arc::new(tx),
        };
        let (arrived, requests) = (Arc::clone(&state.arrived), Arc::clone(&state.requests));
        let router = axum::Router::new()
            .route("/inbound", axum::routing::post(receive))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/inbound", listener.local_addr()?);
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok(Self {
            url,
            arrived,
            requests,
            changes,
        })
    }

    /// Waits until `n` different messages have arrived.
    async fn wait_for(&mut self, n: usize) -> anyhow::Result<()> {
        tokio::time::timeout(
            Duration::from_secs(300),
            self.changes.wait_for(|count| *count >= n),
        )
        .await
        .context("the webhook stopped receiving")??;
        Ok(())
    }

    fn arrived_at(&self, subject: &str) -> Option<Instant> {
        self.arrived.lock().ok()?.get(subject).copied()
    }
}

struct Run {
    direct_per_sec: f64,
    stored_per_sec: f64,
    catch_up_per_sec: f64,
    cpu_ms_per_message: f64,
    live_ms: Vec<f64>,
    peak_mib: f64,
    repeated: usize,
}

/// Logs in with the app's IMAP adapter and fetches every message, as the fetcher does but
/// without storing or handing over anything.
async fn direct_read(app: &App, n: usize) -> anyhow::Result<f64> {
    let limit = app.imap.command_timeout;
    let started = Instant::now();
    let mut connection = app
        .imap_login(ACCOUNT)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    imap_in::select(&mut connection.session, "INBOX", limit).await?;
    let uids = imap_in::uids_after(&mut connection.session, 0, limit).await?;
    let mut fetched = 0;
    for chunk in uids.chunks(FETCH_BATCH) {
        fetched += imap_in::fetch(&mut connection.session, chunk, limit)
            .await?
            .len();
    }
    let took = started.elapsed();
    app.imap_logout(connection).await;
    if fetched != n {
        bail!("the direct read fetched {fetched} of {n}");
    }
    Ok(per_sec(n, took))
}

async fn run(backend: &str, o: &Options) -> anyhow::Result<Run> {
    let gsim = start_gsim().await?;
    let endpoints = gsim.endpoints().clone();
    let mut install = Installation::new(&gsim, backend, endpoints.smtp_starttls).await?;
    install
        .env
        .insert("MAILGATE_GMAIL_IMAP".into(), endpoints.imap_tls.to_string());
    let mut sink = Sink::start().await?;
    for n in 0..o.messages {
        append(&gsim, n)?;
    }

    let app = install.open().await?;
    let direct_per_sec = direct_read(&app, o.messages).await?;
    let (id, _secret) = app
        .create_incoming(&IncomingDraft {
            name: "Support".into(),
            username: ACCOUNT.into(),
            folder: "INBOX".into(),
            interval: "5".into(),
            mark_seen: false,
            webhook_url: sink.url.clone(),
        })
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    app.test_and_confirm(id)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    app.store.close().await;

    let served = install.serve()?;
    let started = Instant::now();
    let stored = tokio::spawn(all_stored(
        install.env["MAILGATE_DATABASE_URL"].clone(),
        o.messages,
        started,
    ));
    sink.wait_for(o.messages).await?;
    let catch_up = started.elapsed();
    let stored = stored.await??;
    let cpu = served.cpu_seconds()?;

    let mut live_ms = Vec::with_capacity(o.live);
    for i in 0..o.live {
        let n = o.messages + i;
        let appended = Instant::now();
        append(&gsim, n)?;
        sink.wait_for(n + 1).await?;
        let arrived = sink
            .arrived_at(&format!("inbox bench {n}"))
            .context("the live message's subject")?;
        live_ms.push(arrived.duration_since(appended).as_secs_f64() * 1000.0);
    }
    let (_, peak_mib) = served.memory_mib()?;
    served.stop().await?;
    let total = o.messages + o.live;
    let requests = *sink.requests.lock().map_err(|_| anyhow::anyhow!("sink"))?;
    install.remove().await?;
    #[allow(clippy::cast_precision_loss)]
    Ok(Run {
        direct_per_sec,
        stored_per_sec: per_sec(o.messages, stored),
        catch_up_per_sec: per_sec(o.messages, catch_up),
        cpu_ms_per_message: cpu * 1000.0 / o.messages as f64,
        live_ms,
        peak_mib,
        repeated: requests.saturating_sub(total),
    })
}

/// When the database first held `n` incoming messages, counted from `started`.
async fn all_stored(url: String, n: usize, started: Instant) -> anyhow::Result<Duration> {
    let store = mailgate::store::Store::connect(&url).await?;
    let n = i64::try_from(n)?;
    loop {
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM inbox_messages")
            .fetch_one(store.pool())
            .await?;
        if count >= n {
            let took = started.elapsed();
            store.close().await;
            return Ok(took);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn percentile(mut values: Vec<f64>, p: f64) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let index = ((values.len() as f64 - 1.0) * p).round() as usize;
    values.get(index).copied().unwrap_or(f64::NAN)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let o = options()?;
    println!(
        "inbox-bench: {} messages waiting, {} live, {} runs",
        o.messages, o.live, o.runs
    );
    println!(
        "| backend | run | direct read/s | catch-up stored/s | catch-up to webhook/s | CPU ms/message | live median ms | live p95 ms | peak RSS MiB | repeated |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for backend in &o.backends {
        let mut runs = Vec::new();
        for r in 1..=o.runs {
            let run = run(backend, &o).await?;
            println!(
                "| {backend} | {r} | {:.0} | {:.0} | {:.0} | {:.3} | {:.1} | {:.1} | {:.1} | {} |",
                run.direct_per_sec,
                run.stored_per_sec,
                run.catch_up_per_sec,
                run.cpu_ms_per_message,
                median(run.live_ms.clone()),
                percentile(run.live_ms.clone(), 0.95),
                run.peak_mib,
                run.repeated
            );
            runs.push(run);
        }
        let m = |f: &dyn Fn(&Run) -> f64| median(runs.iter().map(f).collect());
        println!(
            "| {backend} | **median** | {:.0} | {:.0} | {:.0} | {:.3} | {:.1} | {:.1} | {:.1} | {} |",
            m(&|r| r.direct_per_sec),
            m(&|r| r.stored_per_sec),
            m(&|r| r.catch_up_per_sec),
            m(&|r| r.cpu_ms_per_message),
            m(&|r| median(r.live_ms.clone())),
            m(&|r| percentile(r.live_ms.clone(), 0.95)),
            m(&|r| r.peak_mib),
            runs.iter().map(|r| r.repeated).sum::<usize>()
        );
    }
    Ok(())
}
