//! queue-bench: how fast mailgate accepts messages through its API and delivers them to Gmail
//! (gsim), against a bare XOAUTH2 client over the same number of sessions, for SQLite and
//! PostgreSQL in the same run. Each phase of each run starts a fresh installation and a release
//! `mailgate serve` process. Medians of R runs are reported; see BENCHMARKS.md.
//!
//!   cargo build --release -p mailgate -p mailgate-bench
//!   target/release/queue-bench [--messages N] [--clients C] [--runs R] [--history H]
//!                              [--latency-us 0,100,250,500,1000] [--backends sqlite,postgres]
//!                              [--instances I]
//!
//! Per run and backend:
//! - ingest: C API clients submit N messages while delivery runs; the last 202 and the last
//!   delivery are timed; start-to-ready and the idle memory are read before the first request;
//! - drain, for each one-way latency L of the wire to gsim (0: gsim itself): N messages already
//!   queued, timed from the ready line to the last delivery; then the direct client sends N over
//!   the same number of sessions through the same wire to the same gsim;
//! - history: the drain with no latency and H sent messages (and their attempts) already in the
//!   database;
//! - memory: H messages queued; peak resident memory once the first N are delivered;
//! - on PostgreSQL, with I instances (I > 1) on the one database: the ingest, the clients
//!   spread over the instances' APIs, and the drain at each latency, beside one instance's in
//!   the same run; with the most Gmail sessions the account had open at once.

use mailgate_bench::{accepted_so_far, delivered, direct, install, median, per_sec, wire};

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use gsim::Gsim;
use install::{Installation, submission};
use mailgate::app::delivery::CONNECTIONS_PER_ACCOUNT;

struct Options {
    messages: usize,
    clients: usize,
    runs: usize,
    history: usize,
    latencies_us: Vec<u64>,
    backends: Vec<String>,
    instances: usize,
}

fn options() -> anyhow::Result<Options> {
    let mut o = Options {
        messages: 2000,
        clients: 16,
        runs: 3,
        history: 100_000,
        latencies_us: vec![0, 100, 250, 500, 1000],
        backends: vec!["sqlite".into(), "postgres".into()],
        instances: 3,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    for pair in args.chunks(2) {
        let value = pair.get(1).context("every option takes a value")?;
        match pair[0].as_str() {
            "--messages" => o.messages = value.parse()?,
            "--clients" => o.clients = value.parse()?,
            "--runs" => o.runs = value.parse()?,
            "--history" => o.history = value.parse()?,
            "--latency-us" => {
                o.latencies_us = value.split(',').map(str::parse).collect::<Result<_, _>>()?;
            }
            "--backends" => o.backends = value.split(',').map(str::to_string).collect(),
            "--instances" => o.instances = value.parse()?,
            other => bail!("unknown option {other}"),
        }
    }
    Ok(o)
}

#[derive(Default)]
struct Run {
    accepted: f64,
    delivered: f64,
    ready_ms: f64,
    idle_mib: f64,
    /// Per latency: (drain, direct client, direct client pipelining across messages).
    drains: Vec<(f64, f64, f64)>,
    /// Per latency: mailgate's CPU milliseconds per message in the drain.
    drain_cpu: Vec<f64>,
    drain_history: f64,
    queued_peak_mib: f64,
    logins: u64,
    /// With several instances on PostgreSQL.
    shared: Option<SharedRun>,
}

#[derive(Default)]
struct SharedRun {
    accepted: f64,
    delivered: f64,
    /// Per latency.
    drains: Vec<f64>,
    drain_cpu: Vec<f64>,
    /// The most Gmail sessions the account had open at once, over all phases.
    peak_sessions: u64,
}

/// What one ingest measured.
struct Ingest {
    accepted: f64,
    delivered: f64,
    ready_ms: f64,
    idle_mib: f64,
    logins: u64,
}

/// C API clients submit N messages while delivery runs, spread over `instances` instances.
async fn ingest(
    gsim: &Gsim,
    backend: &str,
    o: &Options,
    instances: usize,
) -> anyhow::Result<Ingest> {
    let install = Installation::new(gsim, backend, gsim.endpoints().smtp_starttls).await?;
    let before = accepted_so_far(gsim);
    let logins_before = gsim.world().counters().smtp_logins.ok;
    let served = install.serve_instances(instances)?;
    let ready_ms = served[0].0.ready.as_secs_f64() * 1000.0;
    let idle_mib = served[0].0.memory_mib()?.0;
    let urls: Vec<String> = served
        .iter()
        .map(|(_, port, _)| format!("http://127.0.0.1:{port}/api/v1/messages"))
        .collect();
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut clients = tokio::task::JoinSet::new();
    for client in 0..o.clients {
        let (url, key, next, total) = (
            urls[client % urls.len()].clone(),
            install.api_key.clone(),
            next.clone(),
            o.messages,
        );
        clients.spawn(async move {
            let http = reqwest::Client::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= total {
                    return Ok::<_, anyhow::Error>(());
                }
                let response = http
                    .post(&url)
                    .bearer_auth(&key)
                    .json(&submission(i))
                    .send()
                    .await?;
                if response.status() != 202 {
                    bail!("submission {i}: {}", response.status());
                }
            }
        });
    }
    for result in clients.join_all().await {
        result?;
    }
    let accepted = per_sec(o.messages, started.elapsed());
    delivered(gsim, before, o.messages).await?;
    let measured = Ingest {
        accepted,
        delivered: per_sec(o.messages, started.elapsed()),
        ready_ms,
        idle_mib,
        logins: gsim.world().counters().smtp_logins.ok - logins_before,
    };
    for (instance, _, _) in served {
        instance.stop().await?;
    }
    install.remove().await?;
    Ok(measured)
}

/// N queued messages drained from the ready line, through a wire of `latency` one way, with
/// `history` sent ones in the database. Returns messages per second, and with an empty history
/// also the direct client's over the same wire and number of sessions, plain and pipelined.
async fn drain(
    gsim: &Gsim,
    backend: &str,
    o: &Options,
    latency: Duration,
    history: usize,
    instances: usize,
) -> anyhow::Result<Drain> {
    let smtp = wire::delayed(gsim.endpoints().smtp_starttls, latency)?;
    let install = Installation::new(gsim, backend, smtp).await?;
    install.load(o.messages, history).await?;
    let before = accepted_so_far(gsim);
    // Timed from the first instance's ready line: it starts delivering at once.
    let started = Instant::now();
    let served = install.serve_instances(instances)?;
    let started = started + served[0].0.ready;
    delivered(gsim, before, o.messages).await?;
    let rate = per_sec(o.messages, started.elapsed());
    let mut cpu = 0.0;
    for (instance, _, _) in &served {
        cpu += instance.cpu_seconds()?;
    }
    #[allow(clippy::cast_precision_loss)]
    let cpu_ms = cpu * 1000.0 / o.messages as f64;
    for (instance, _, _) in served {
        instance.stop().await?;
    }
    let mut direct = None;
    if history == 0 && instances == 1 {
        let app = install.open().await?;
        let body: Vec<u8> = sqlx::Row::try_get(
            &sqlx::query("SELECT body FROM messages LIMIT 1")
                .fetch_one(app.store.pool())
                .await?,
            "body",
        )?;
        let plain = direct::send(
            gsim,
            &app,
            &body,
            o.messages,
            CONNECTIONS_PER_ACCOUNT,
            false,
        )
        .await?;
        let pipelined =
            direct::send(gsim, &app, &body, o.messages, CONNECTIONS_PER_ACCOUNT, true).await?;
        direct = Some((plain, pipelined));
        app.store.close().await;
    }
    install.remove().await?;
    Ok(Drain {
        rate,
        cpu_ms,
        direct,
    })
}

/// What one drain measured: messages per second, mailgate's CPU per message (every instance's,
/// user and system: less at the scheduler's mercy than the rate), and with an empty history the
/// direct client's rates over the same wire, plain and pipelined.
struct Drain {
    rate: f64,
    cpu_ms: f64,
    direct: Option<(f64, f64)>,
}

/// `history` messages queued; the peak resident memory once the first N are delivered.
async fn memory(gsim: &Gsim, backend: &str, o: &Options, run: &mut Run) -> anyhow::Result<()> {
    let install = Installation::new(gsim, backend, gsim.endpoints().smtp_starttls).await?;
    install.load(o.history, 0).await?;
    let before = accepted_so_far(gsim);
    let served = install.serve()?;
    delivered(gsim, before, o.messages).await?;
    run.queued_peak_mib = served.memory_mib()?.1;
    served.stop().await?;
    install.remove().await
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let o = options()?;
    let gsim = mailgate_bench::start_gsim().await?;
    println!(
        "{} messages of ~1 KB, {} API clients, {} sessions, {} in history, {} runs per backend, release mailgate at {}",
        o.messages,
        o.clients,
        CONNECTIONS_PER_ACCOUNT,
        o.history,
        o.runs,
        install::mailgate_bin()
    );
    if o.latencies_us.first() != Some(&0) {
        bail!("--latency-us must start with 0: the history drain is compared with it");
    }
    let mut results = Vec::new();
    for backend in &o.backends {
        let mut runs = Vec::new();
        for _ in 0..o.runs {
            let mut run = Run::default();
            let one = ingest(&gsim, backend, &o, 1).await?;
            (
                run.accepted,
                run.delivered,
                run.ready_ms,
                run.idle_mib,
                run.logins,
            ) = (
                one.accepted,
                one.delivered,
                one.ready_ms,
                one.idle_mib,
                one.logins,
            );
            for latency in &o.latencies_us {
                let latency = Duration::from_micros(*latency);
                let drain = drain(&gsim, backend, &o, latency, 0, 1).await?;
                let (plain, pipelined) = drain.direct.unwrap_or((f64::NAN, f64::NAN));
                run.drains.push((drain.rate, plain, pipelined));
                run.drain_cpu.push(drain.cpu_ms);
            }
            // --history 0 measures ingest and drains alone (as when profiling them).
            if o.history > 0 {
                run.drain_history = drain(&gsim, backend, &o, Duration::ZERO, o.history, 1)
                    .await?
                    .rate;
                memory(&gsim, backend, &o, &mut run).await?;
            }
            if backend == "postgres" && o.instances > 1 {
                gsim.world().reset_smtp_peaks();
                let many = ingest(&gsim, backend, &o, o.instances).await?;
                let mut shared = SharedRun {
                    accepted: many.accepted,
                    delivered: many.delivered,
                    ..Default::default()
                };
                for latency in &o.latencies_us {
                    let latency = Duration::from_micros(*latency);
                    let drain = drain(&gsim, backend, &o, latency, 0, o.instances).await?;
                    shared.drains.push(drain.rate);
                    shared.drain_cpu.push(drain.cpu_ms);
                }
                shared.peak_sessions = gsim
                    .world()
                    .counters()
                    .smtp_peak_sessions
                    .get(install::ACCOUNT)
                    .copied()
                    .unwrap_or(0);
                run.shared = Some(shared);
            }
            gsim.world().clear_deliveries();
            runs.push(run);
        }
        results.push((backend.clone(), runs));
    }
    gsim.stop().await;
    report(&results, &o.latencies_us, o.instances);
    Ok(())
}

/// Markdown tables of the medians, each run's value in parentheses. The history comparison
/// uses the first latency's drain (0 ms), the one the history drain runs at.
fn report(results: &[(String, Vec<Run>)], latencies: &[u64], instances: usize) {
    let m = |runs: &[Run], f: fn(&Run) -> f64| median(runs.iter().map(f).collect());
    let each = |runs: &[Run], f: fn(&Run) -> f64| {
        runs.iter()
            .map(|r| format!("{:.0}", f(r)))
            .collect::<Vec<_>>()
            .join(" / ")
    };
    println!(
        "\n| backend | API ingest msg/s | end to end msg/s | SMTP logins | start to ready ms | idle RSS MiB |"
    );
    println!("|---|---|---|---|---|---|");
    for (backend, runs) in results {
        println!(
            "| {backend} | {:.0} ({}) | {:.0} ({}) | {} | {:.0} ({}) | {:.1} |",
            m(runs, |r| r.accepted),
            each(runs, |r| r.accepted),
            m(runs, |r| r.delivered),
            each(runs, |r| r.delivered),
            runs.iter().map(|r| r.logins).max().unwrap_or(0),
            m(runs, |r| r.ready_ms),
            each(runs, |r| r.ready_ms),
            m(runs, |r| r.idle_mib),
        );
    }
    println!(
        "\n| backend | one-way latency to gsim | drain msg/s | mailgate CPU ms/msg | direct client msg/s | drain / direct | direct, pipelined msg/s | drain / pipelined |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let list = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.0}"))
            .collect::<Vec<_>>()
            .join(" / ")
    };
    for (backend, runs) in results {
        for (i, latency) in latencies.iter().enumerate() {
            let column = |f: fn(&(f64, f64, f64)) -> f64| -> Vec<f64> {
                runs.iter().map(|r| f(&r.drains[i])).collect()
            };
            let (drains, plain, pipelined) = (column(|d| d.0), column(|d| d.1), column(|d| d.2));
            let drain = median(drains.clone());
            let cpu: Vec<f64> = runs.iter().map(|r| r.drain_cpu[i]).collect();
            let (direct, best) = (median(plain.clone()), median(pipelined.clone()));
            println!(
                "| {backend} | {latency} µs | {drain:.0} ({}) | {:.3} ({}) | {direct:.0} ({}) | {:.2} | {best:.0} ({}) | {:.2} |",
                list(&drains),
                median(cpu.clone()),
                cpu.iter()
                    .map(|c| format!("{c:.3}"))
                    .collect::<Vec<_>>()
                    .join(" / "),
                list(&plain),
                drain / direct,
                list(&pipelined),
                drain / best
            );
        }
    }
    for (backend, runs) in results {
        let shared: Vec<&SharedRun> = runs.iter().filter_map(|r| r.shared.as_ref()).collect();
        if shared.is_empty() {
            continue;
        }
        println!(
            "\n| {backend} | API ingest msg/s | end to end msg/s |{} most Gmail sessions at once |",
            latencies
                .iter()
                .map(|l| format!(" drain at {l} µs msg/s |"))
                .collect::<String>()
        );
        println!("|---|---|---|{}---|", "---|".repeat(latencies.len()));
        let one = |f: fn(&Run) -> f64| {
            let v: Vec<f64> = runs.iter().map(f).collect();
            format!("{:.0} ({})", median(v.clone()), list(&v))
        };
        let many = |f: fn(&SharedRun) -> f64| {
            let v: Vec<f64> = shared.iter().map(|r| f(r)).collect();
            format!("{:.0} ({})", median(v.clone()), list(&v))
        };
        // A drain's rate, with mailgate's CPU per message (all instances together).
        let cell = |rates: Vec<f64>, cpu: Vec<f64>| {
            format!(
                " {:.0} ({}), {:.3} ms CPU |",
                median(rates.clone()),
                list(&rates),
                median(cpu)
            )
        };
        let drains_one: String = (0..latencies.len())
            .map(|i| {
                cell(
                    runs.iter().map(|r| r.drains[i].0).collect(),
                    runs.iter().map(|r| r.drain_cpu[i]).collect(),
                )
            })
            .collect();
        let drains_many: String = (0..latencies.len())
            .map(|i| {
                cell(
                    shared.iter().map(|r| r.drains[i]).collect(),
                    shared.iter().map(|r| r.drain_cpu[i]).collect(),
                )
            })
            .collect();
        println!(
            "| 1 instance | {} | {} |{drains_one} (not counted) |",
            one(|r| r.accepted),
            one(|r| r.delivered)
        );
        println!(
            "| {instances} instances | {} | {} |{drains_many} {} |",
            many(|r| r.accepted),
            many(|r| r.delivered),
            shared.iter().map(|r| r.peak_sessions).max().unwrap_or(0)
        );
    }
    if results
        .iter()
        .all(|(_, runs)| runs.iter().all(|r| r.drain_history == 0.0))
    {
        return;
    }
    println!(
        "\n| backend | drain, empty history msg/s | drain, history full msg/s | history / empty | peak RSS with the history queued, MiB |"
    );
    println!("|---|---|---|---|---|");
    for (backend, runs) in results {
        let empty = median(runs.iter().map(|r| r.drains[0].0).collect());
        let history = m(runs, |r| r.drain_history);
        println!(
            "| {backend} | {empty:.0} | {history:.0} ({}) | {:.2} | {:.1} ({}) |",
            each(runs, |r| r.drain_history),
            history / empty,
            m(runs, |r| r.queued_peak_mib),
            each(runs, |r| r.queued_peak_mib),
        );
    }
}
