//! relay-bench: messages per second through mailgate's SMTP relay, against a direct XOAUTH2
//! client and against email-oauth2-proxy, on loopback with the same upstream (gsim), for one
//! message per session and for 20. Medians of R runs; see BENCHMARKS.md.
//!
//!   python3 -m venv /var/tmp/emailproxy-venv && /var/tmp/emailproxy-venv/bin/pip install emailproxy
//!   cargo build --release -p mailgate -p mailgate-bench
//!   target/release/relay-bench [--messages N] [--proxy-messages P] [--clients C] [--runs R]
//!                              [--instances I]
//!
//! email-oauth2-proxy gets P messages (at least one session per client): at its rate, N would
//! take the better part of an hour.
//!
//! Each path has C clients sending at once, each client opening sessions one after another:
//! - relay: STARTTLS (verifying the relay's certificate) and AUTH PLAIN with a relay
//!   credential; timed until gsim has every message (the relay's 250 comes sooner: it is the
//!   queue's commit, and delivery follows);
//! - direct: STARTTLS to gsim and AUTH XOAUTH2 with an access token minted beforehand, as an
//!   application that does OAuth itself and caches its token;
//! - email-oauth2-proxy (`emailproxy --no-gui`): plain SMTP on loopback with AUTH PLAIN, the
//!   proxy then speaking STARTTLS and XOAUTH2 to gsim, its tokens stored encrypted as after its
//!   first authorisation. It does not queue: its 250 is gsim's.
//!
//! The relay is measured on SQLite, then on PostgreSQL with one instance and with I instances
//! on the one database, the clients spread over their relays, in the same run.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use gsim::Gsim;
use mailgate::domain::Security;
use mailgate::smtp_out::{SmtpConnector, Target};
use mailgate_bench::install::{ACCOUNT, CLIENT_ID, CLIENT_SECRET, Installation, RECIPIENT, mint};
use mailgate_bench::{accepted_so_far, delivered, median, per_sec};
use mailgate_smtp::Credentials;
use secrecy::SecretString;

const PER_SESSION: [usize; 2] = [1, 20];
/// The password clients give email-oauth2-proxy; it decrypts the stored tokens.
const PROXY_PASSWORD: &str = "bench proxy password";

struct Options {
    messages: usize,
    proxy_messages: usize,
    clients: usize,
    runs: usize,
    instances: usize,
}

fn options() -> anyhow::Result<Options> {
    let mut o = Options {
        messages: 2000,
        proxy_messages: 40,
        clients: 8,
        runs: 3,
        instances: 3,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    for pair in args.chunks(2) {
        let value = pair.get(1).context("every option takes a value")?;
        match pair[0].as_str() {
            "--messages" => o.messages = value.parse()?,
            "--proxy-messages" => o.proxy_messages = value.parse()?,
            "--clients" => o.clients = value.parse()?,
            "--runs" => o.runs = value.parse()?,
            "--instances" => o.instances = value.parse()?,
            other => bail!("unknown option {other}"),
        }
    }
    Ok(o)
}

/// About a kilobyte, as an application writes it.
fn message() -> Vec<u8> {
    format!(
        "From: <{ACCOUNT}>\r\nTo: <{RECIPIENT}>\r\nSubject: relay bench\r\nMessage-ID: <bench@relay.example>\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{}\r\n",
        "A short message of about a kilobyte. ".repeat(25)
    )
    .into_bytes()
}

enum Login {
    Plain {
        user: String,
        password: SecretString,
    },
    XOAuth2(SecretString),
}

/// `clients` at once send `total` messages, `per_session` per session, client `c` to
/// `targets[c % targets.len()]`; how long it took.
async fn send(
    connector: &SmtpConnector,
    targets: &[Target],
    login: Login,
    total: usize,
    per_session: usize,
    clients: usize,
) -> anyhow::Result<Duration> {
    let body = Arc::new(message());
    let login = Arc::new(login);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut running = tokio::task::JoinSet::new();
    for client in 0..clients {
        let (connector, target, login, next, body) = (
            connector.clone(),
            targets[client % targets.len()].clone(),
            Arc::clone(&login),
            Arc::clone(&next),
            Arc::clone(&body),
        );
        running.spawn(async move {
            let rcpt = vec![RECIPIENT.to_string()];
            loop {
                let first = next.fetch_add(per_session, Ordering::Relaxed);
                if first >= total {
                    return Ok::<_, anyhow::Error>(());
                }
                let mut session = connector.connect(&target).await?;
                match &*login {
                    Login::Plain { user, password } => {
                        session.auth(Credentials::Plain { user, password }).await?;
                    }
                    Login::XOAuth2(token) => {
                        session
                            .auth(Credentials::XOAuth2 {
                                user: ACCOUNT,
                                token,
                            })
                            .await?;
                    }
                }
                for _ in first..(first + per_session).min(total) {
                    session.open_data(ACCOUNT, &rcpt).await?;
                    session.write_body(&body).await?;
                    session.end_data().await?;
                }
                session.quit().await;
            }
        });
    }
    for result in running.join_all().await {
        result?;
    }
    Ok(started.elapsed())
}

/// One relay measurement on `backend` with `instances` instances, the clients spread over
/// their relays: (250s per second, deliveries per second).
async fn relay(
    gsim: &Gsim,
    o: &Options,
    per_session: usize,
    backend: &str,
    instances: usize,
) -> anyhow::Result<(f64, f64)> {
    let install = Installation::new(gsim, backend, gsim.endpoints().smtp_starttls).await?;
    let app = install.open().await?;
    let password = app
        .create_relay_credential("bench", "")
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    app.store.close().await;
    let served = install.serve_instances(instances)?;
    let tls = mailgate::tls::client_config(Some(&install.dir.join("relay-cert.pem")))?;
    let connector = SmtpConnector::new(tls, Duration::from_secs(30));
    let targets: Vec<Target> = served
        .iter()
        .map(|(_, _, relay_port)| Target {
            host: "127.0.0.1".into(),
            port: *relay_port,
            security: Security::StartTls,
        })
        .collect();
    let login = Login::Plain {
        user: "bench".into(),
        password: SecretString::from(password),
    };
    let before = accepted_so_far(gsim);
    let started = Instant::now();
    let accepted = send(
        &connector,
        &targets,
        login,
        o.messages,
        per_session,
        o.clients,
    )
    .await?;
    delivered(gsim, before, o.messages).await?;
    let all = started.elapsed();
    for (instance, _, _) in served {
        instance.stop().await?;
    }
    install.remove().await?;
    Ok((per_sec(o.messages, accepted), per_sec(o.messages, all)))
}

async fn direct(gsim: &Gsim, o: &Options, per_session: usize) -> anyhow::Result<f64> {
    let token = SecretString::from(
        mint(gsim)?["access_token"]
            .as_str()
            .context("no access token")?
            .to_string(),
    );
    let tls = mailgate::tls::client_config(Some(&gsim.endpoints().ca_cert))?;
    let connector = SmtpConnector::new(tls, Duration::from_secs(30));
    let smtp = gsim.endpoints().smtp_starttls;
    let target = Target {
        host: smtp.ip().to_string(),
        port: smtp.port(),
        security: Security::StartTls,
    };
    let took = send(
        &connector,
        &[target],
        Login::XOAuth2(token),
        o.messages,
        per_session,
        o.clients,
    )
    .await?;
    Ok(per_sec(o.messages, took))
}

fn emailproxy_bin() -> PathBuf {
    std::env::var("EMAILPROXY_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from("/var/tmp/emailproxy-venv"))
        .join("bin")
}

struct Proxy {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Proxy {
    fn start(gsim: &Gsim) -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let dir = std::env::temp_dir().join(format!("relay-bench-proxy-{port}"));
        std::fs::create_dir_all(&dir)?;
        let config = dir.join("emailproxy.config");
        let tokens = mint(gsim)?;
        let seed = serde_json::json!({
            "local_port": port,
            "gsim_smtp_port": gsim.endpoints().smtp_starttls.port(),
            "gsim_http": gsim.endpoints().http,
            "account": ACCOUNT,
            "password": PROXY_PASSWORD,
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "access_token": tokens["access_token"],
            "refresh_token": tokens["refresh_token"],
        });
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("emailproxy/seed.py");
        let seeded = Command::new(emailproxy_bin().join("python"))
            .arg(script)
            .arg(&config)
            .arg(seed.to_string())
            .status()
            .context("no emailproxy venv (see the top of relay_bench.rs)")?;
        if !seeded.success() {
            bail!("seeding email-oauth2-proxy's configuration failed");
        }
        let child = Command::new(emailproxy_bin().join("emailproxy"))
            .args(["--no-gui", "--config-file"])
            .arg(&config)
            .arg("--log-file")
            .arg(dir.join("emailproxy.log"))
            // Trusting gsim's CA as the proxy would trust Google's: through OpenSSL's default.
            .env("SSL_CERT_FILE", &gsim.endpoints().ca_cert)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start emailproxy")?;
        Ok(Self { child, port, dir })
    }

    /// Waits until the proxy greets (it has no ready line; its port is the sign).
    async fn ready(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("email-oauth2-proxy did not listen within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn emailproxy(gsim: &Gsim, o: &Options, per_session: usize) -> anyhow::Result<f64> {
    let proxy = Proxy::start(gsim)?;
    proxy.ready().await?;
    let tls = mailgate::tls::client_config(None)?;
    let connector = SmtpConnector::new(tls, Duration::from_secs(120));
    let target = Target {
        host: "127.0.0.1".into(),
        port: proxy.port,
        security: Security::None,
    };
    let login = Login::Plain {
        user: ACCOUNT.into(),
        password: SecretString::from(PROXY_PASSWORD.to_string()),
    };
    // Every client gets at least one session's worth, so the proxy serves them all at once.
    let messages = o.proxy_messages.max(per_session * o.clients);
    let took = send(
        &connector,
        &[target],
        login,
        messages,
        per_session,
        o.clients,
    )
    .await;
    proxy.stop();
    Ok(per_sec(messages, took?))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let o = options()?;
    let gsim = mailgate_bench::start_gsim().await?;
    println!(
        "{} messages of ~1 KB ({} through email-oauth2-proxy), {} clients at once, {} runs, release mailgate at {}",
        o.messages,
        o.proxy_messages,
        o.clients,
        o.runs,
        mailgate_bench::install::mailgate_bin()
    );
    // Per messages-per-session: runs of (relay 250s, relay delivered, direct, emailproxy, relay
    // delivered on PostgreSQL with one instance, and with I).
    let mut rows: Vec<(usize, Vec<[f64; 6]>)> = PER_SESSION.iter().map(|k| (*k, vec![])).collect();
    for run in 0..o.runs {
        for (per_session, runs) in &mut rows {
            let (accepted, delivered) = relay(&gsim, &o, *per_session, "sqlite", 1).await?;
            let direct = direct(&gsim, &o, *per_session).await?;
            let proxy = emailproxy(&gsim, &o, *per_session).await?;
            let (_, postgres) = relay(&gsim, &o, *per_session, "postgres", 1).await?;
            let (_, shared) = relay(&gsim, &o, *per_session, "postgres", o.instances).await?;
            eprintln!(
                "run {run}, {per_session}/session: relay {accepted:.0} accepted, {delivered:.0} delivered; direct {direct:.0}; emailproxy {proxy:.1}; PostgreSQL {postgres:.0}, {} instances {shared:.0}",
                o.instances
            );
            runs.push([accepted, delivered, direct, proxy, postgres, shared]);
            gsim.world().clear_deliveries();
        }
    }
    gsim.stop().await;
    let m = |runs: &[[f64; 6]], i: usize| median(runs.iter().map(|r| r[i]).collect());
    let each = |runs: &[[f64; 6]], i: usize| {
        runs.iter()
            .map(|r| format!("{:.1}", r[i]))
            .collect::<Vec<_>>()
            .join(" / ")
    };
    println!(
        "\n| Messages per session | Relay: 250s/s | Relay: delivered/s | Direct XOAUTH2/s | email-oauth2-proxy/s | Relay ÷ proxy | Relay ÷ direct |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (per_session, runs) in &rows {
        println!(
            "| {per_session} | {:.0} ({}) | {:.0} ({}) | {:.0} ({}) | {:.2} ({}) | {:.0}× | {:.2} |",
            m(runs, 0),
            each(runs, 0),
            m(runs, 1),
            each(runs, 1),
            m(runs, 2),
            each(runs, 2),
            m(runs, 3),
            each(runs, 3),
            m(runs, 1) / m(runs, 3),
            m(runs, 1) / m(runs, 2),
        );
    }
    println!(
        "\n| Messages per session | SQLite, 1 instance: delivered/s | PostgreSQL, 1 instance | PostgreSQL, {} instances | {} ÷ 1 on PostgreSQL |",
        o.instances, o.instances
    );
    println!("|---|---|---|---|---|");
    for (per_session, runs) in &rows {
        println!(
            "| {per_session} | {:.0} ({}) | {:.0} ({}) | {:.0} ({}) | {:.2} |",
            m(runs, 1),
            each(runs, 1),
            m(runs, 4),
            each(runs, 4),
            m(runs, 5),
            each(runs, 5),
            m(runs, 5) / m(runs, 4),
        );
    }
    Ok(())
}
