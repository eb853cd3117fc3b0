//! The command line: `serve`, `migrate`, `backup`, `admin create`, `doctor`, `send`,
//! `api-keys`, `relay-credentials`, `servers list|test`, `incoming list|test|fetch`.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use secrecy::SecretString;

use crate::app::App;
use crate::app::api_keys::KeyScope;
use crate::clock::{SystemClock, format_utc};
use crate::config::Config;
use crate::startup::Application;

#[derive(Parser)]
#[command(
    name = "mailgate",
    version,
    about = "Send and receive mail through Gmail with Google OAuth"
)]
pub struct Cli {
    /// TOML configuration file; MAILGATE_* environment variables override it.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the admin web app (SQLite in ./mailgate-data unless configured otherwise).
    Serve,
    /// Bring the database schema up to date, then exit.
    Migrate,
    /// Copy the SQLite database, consistently, while mailgate runs (on PostgreSQL: prints the
    /// pg_dump command to use instead).
    Backup {
        /// Where the copy goes; it must not exist yet.
        file: PathBuf,
    },
    /// Manage administrators.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Check the Google setup (OAuth client, secret, clock, each Gmail server); exit status 1 when
    /// a check fails.
    Doctor {
        /// Print the results as JSON, for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Queue a message (or every message of an mbox file) for delivery.
    Send(Box<SendArgs>),
    /// API keys for the JSON API.
    ApiKeys {
        #[command(subcommand)]
        command: ApiKeysCommand,
    },
    /// Credentials ("app passwords") for applications sending through the SMTP relay.
    RelayCredentials {
        #[command(subcommand)]
        command: RelayCredentialsCommand,
    },
    /// Outgoing mail servers.
    Servers {
        #[command(subcommand)]
        command: ServersCommand,
    },
    /// Incoming mail servers.
    Incoming {
        #[command(subcommand)]
        command: IncomingCommand,
    },
}

#[derive(Subcommand)]
enum IncomingCommand {
    /// List the incoming mail servers, their state and how fetching goes.
    List,
    /// "Test & Confirm" the server with this Name; exit status 1 on failure.
    Test { name: String },
    /// "Fetch Now" for the server with this Name (a running `serve` hands what is stored to
    /// the webhook); exit status 1 on failure.
    Fetch { name: String },
}

#[derive(clap::Args)]
struct SendArgs {
    #[arg(long, required_unless_present_any = ["raw", "mbox"], conflicts_with_all = ["raw", "mbox"])]
    from: Option<String>,
    /// Repeat for more recipients.
    #[arg(long)]
    to: Vec<String>,
    #[arg(long)]
    cc: Vec<String>,
    #[arg(long)]
    bcc: Vec<String>,
    #[arg(long)]
    subject: Option<String>,
    /// The plain text body; `-` reads it from standard input.
    #[arg(long)]
    text: Option<String>,
    #[arg(long)]
    html_file: Option<PathBuf>,
    /// A file to attach; repeat for more.
    #[arg(long)]
    attach: Vec<PathBuf>,
    /// Send this RFC 5322 file as it is (recipients from its To, Cc and Bcc).
    #[arg(long, conflicts_with = "mbox")]
    raw: Option<PathBuf>,
    /// With --raw: the envelope recipients, instead of the file's To, Cc and Bcc (as
    /// `sendmail` takes them); repeat for more.
    #[arg(long, requires = "raw")]
    envelope_to: Vec<String>,
    /// Send every message of this mbox file, with a progress bar.
    #[arg(long)]
    mbox: Option<PathBuf>,
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Create an administrator; the password is read from standard input.
    Create {
        #[arg(long)]
        email: String,
    },
}

#[derive(Subcommand)]
enum ApiKeysCommand {
    /// Create a key and print it, alone on standard output: it is shown only this once.
    Create {
        /// What uses the key, e.g. "Flectra".
        #[arg(long)]
        name: String,
        /// `submit` sends and reads its own messages; `admin` reads every message.
        #[arg(long, default_value = "submit", value_parser = ["submit", "admin"])]
        scope: String,
    },
    /// List the keys (never the keys themselves: only their first characters).
    List,
    /// Revoke the key with this id (see `list`).
    Revoke { id: i64 },
}

#[derive(Subcommand)]
enum RelayCredentialsCommand {
    /// Create a credential and print its password, alone on standard output: it is shown only
    /// this once. The name is the SMTP username.
    Create {
        /// What uses it, e.g. "flectra"; letters, digits and . _ @ + -.
        #[arg(long)]
        name: String,
        /// Addresses or @domains it may send as (repeat, or separate with commas); none: any
        /// address an outgoing mail server sends as.
        #[arg(long)]
        sender: Vec<String>,
    },
    /// List the credentials (never the passwords: only their first characters).
    List,
    /// Revoke the credential with this id (see `list`).
    Revoke { id: i64 },
}

#[derive(Subcommand)]
enum ServersCommand {
    /// List the outgoing mail servers and their Google connection state.
    List,
    /// Run "Test Connection" for the server with this Description.
    Test { name: String },
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let config = Config::load(cli.config.as_deref())?;
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    match cli.command {
        Command::Serve => serve(config).await,
        Command::Migrate => {
            let app = App::open(config, Arc::new(SystemClock)).await?;
            let status = app.store.schema_status().await?;
            println!(
                "database schema is current (version {})",
                status.applied.unwrap_or_default()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Backup { file } => backup(&config, &file).await,
        Command::Admin {
            command: AdminCommand::Create { email },
        } => {
            let app = App::open(config, Arc::new(SystemClock)).await?;
            let password = read_password()?;
            app.create_admin(&email, password).await?;
            println!(
                "admin {email} created; sign in at {}/login",
                app.config.public_base()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Doctor { json } => {
            let app = App::open(config, Arc::new(SystemClock)).await?;
            doctor(&app, json).await
        }
        Command::Send(args) => {
            let app = App::open(config, Arc::new(SystemClock)).await?;
            send(&app, *args).await
        }
        Command::ApiKeys { command } => {
            let app = App::open(config, Arc::new(SystemClock)).await?;
            api_keys(&app, command).await
        }
        Command::RelayCredentials { command } => {
            let app = App::open(config, Arc::new(SystemClock)).await?;
            relay_credentials(&app, command).await
        }
        Command::Servers { command } => {
            let app = App::open(config, Arc::new(SystemClock)).await?;
            match command {
                ServersCommand::List => list_servers(&app).await,
                ServersCommand::Test { name } => test_server(&app, &name).await,
            }
        }
        Command::Incoming { command } => {
            let app = App::open(config, Arc::new(SystemClock)).await?;
            incoming(&app, command).await
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<ExitCode> {
    // Listen for signals before anything is printed: a supervisor may stop mailgate the moment it
    // sees the first line.
    let shutdown = shutdown_signal()?;
    let application = Application::build(config, Arc::new(SystemClock)).await?;
    let app = application.app();
    let addr = application.local_addr();
    tracing::info!(
        "mailgate listening on http://{addr} (public URL {})",
        app.config.public_base()
    );
    if let Some(relay) = app.relay.listening.get() {
        for (addr, how) in [(relay.addr, "STARTTLS"), (relay.tls_addr, "TLS")] {
            if let Some(addr) = addr {
                tracing::info!(
                    "SMTP relay listening on {addr} ({how}; certificate SHA-256 {})",
                    relay.certificate.fingerprint
                );
            }
        }
    }
    if let Some(link) = app.setup_link().await? {
        // Printed, never logged: whoever reads the console may create the admin, once.
        println!("No admin yet. Create one within the hour at:\n  {link}");
        let _ = std::io::stdout().flush();
    } else {
        println!("mailgate is ready at {}", app.config.public_base());
    }
    application.run_until_stopped(shutdown).await?;
    tracing::info!("mailgate stopped");
    Ok(ExitCode::SUCCESS)
}

async fn incoming(app: &App, command: IncomingCommand) -> anyhow::Result<ExitCode> {
    let servers = app.incoming_servers().await?;
    let named = |name: &str| {
        servers
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.id)
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "no incoming mail server is named \"{name}\" (see `mailgate incoming list`)"
                )
            })
    };
    match command {
        IncomingCommand::List => {
            if servers.is_empty() {
                println!("no incoming mail servers");
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "{:<24} {:<30} {:<16} {:<14} STATUS",
                "NAME", "ACCOUNT", "FOLDER", "STATE"
            );
            for s in &servers {
                let state = if s.confirmed {
                    "Confirmed"
                } else {
                    "Not Confirmed"
                };
                println!(
                    "{:<24} {:<30} {:<16} {:<14} {}",
                    s.name,
                    s.username,
                    s.folder,
                    state,
                    s.status.label()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        IncomingCommand::Test { name } => match app.test_and_confirm(named(&name)?).await {
            Ok(report) => {
                println!("Connection Test Successful! {report}; the server is Confirmed.");
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                eprintln!("{e}");
                Ok(ExitCode::FAILURE)
            }
        },
        IncomingCommand::Fetch { name } => match app.fetch_now(named(&name)?).await {
            Ok(report) => {
                println!("Fetched {report}.");
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                eprintln!("Fetch failed: {e}");
                Ok(ExitCode::FAILURE)
            }
        },
    }
}

/// A consistent copy of the SQLite database. The store is opened without migrating: a backup
/// taken before an upgrade must hold the schema from before it.
async fn backup(config: &Config, file: &std::path::Path) -> anyhow::Result<ExitCode> {
    use crate::store::{Backend, Store};
    let store = Store::connect(&config.database_url).await?;
    if store.backend() == Backend::Postgres {
        store.close().await;
        eprintln!(
            "The database is PostgreSQL: back it up with pg_dump, which copies it consistently while mailgate runs:\n  pg_dump --format=custom --file={} '{}'\nRestore with pg_restore --clean --dbname=<url> into a stopped installation. Keep the secret key ({}) with the dump: the tokens in it open only with that key.",
            file.display(),
            crate::config::redacted(&config.database_url),
            config.secret_key.describe()
        );
        return Ok(ExitCode::FAILURE);
    }
    if file.exists() {
        store.close().await;
        anyhow::bail!(
            "{} already exists; give a new file name (a backup never overwrites)",
            file.display()
        );
    }
    let copied = store.copy_to(file).await;
    let version = store.schema_status().await.map(|s| s.applied);
    store.close().await;
    copied?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600))?;
    }
    let size = std::fs::metadata(file)?.len();
    println!(
        "backed up to {} ({size} bytes, schema version {}); keep the secret key ({}) with it: the tokens in it open only with that key",
        file.display(),
        version.ok().flatten().unwrap_or_default(),
        config.secret_key.describe()
    );
    Ok(ExitCode::SUCCESS)
}

/// SIGTERM or SIGINT, registered now, awaited later.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}

fn read_password() -> anyhow::Result<SecretString> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("Password (at least 12 characters; it will be shown as you type): ");
    }
    let mut line = String::new();
    stdin.lock().read_line(&mut line)?;
    let password = line.trim_end_matches(['\r', '\n']).to_string();
    if password.is_empty() {
        anyhow::bail!("no password on standard input");
    }
    Ok(SecretString::from(password))
}

async fn api_keys(app: &App, command: ApiKeysCommand) -> anyhow::Result<ExitCode> {
    match command {
        ApiKeysCommand::Create { name, scope } => {
            let scope = KeyScope::parse(&scope)
                .ok_or_else(|| anyhow::anyhow!("--scope must be submit or admin"))?;
            let key = app.create_api_key(&name, scope).await?;
            println!("{key}");
        }
        ApiKeysCommand::List => {
            for key in app.api_keys().await? {
                let state = usage(key.revoked_at, key.last_used_at);
                println!(
                    "{}\t{}\t{}…\t{}\t{state}",
                    key.id,
                    key.name,
                    key.prefix,
                    key.scope.code()
                );
            }
        }
        ApiKeysCommand::Revoke { id } => {
            app.revoke_api_key(id).await?;
            println!("API key {id} revoked");
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn relay_credentials(
    app: &App,
    command: RelayCredentialsCommand,
) -> anyhow::Result<ExitCode> {
    match command {
        RelayCredentialsCommand::Create { name, sender } => {
            let password = app
                .create_relay_credential(&name, &sender.join(","))
                .await?;
            println!("{password}");
        }
        RelayCredentialsCommand::List => {
            for c in app.relay_credentials().await? {
                let state = usage(c.revoked_at, c.last_used_at);
                let senders = if c.senders.is_empty() {
                    "any sender".to_string()
                } else {
                    c.senders.lines().collect::<Vec<_>>().join(",")
                };
                println!("{}\t{}\t{}…\t{senders}\t{state}", c.id, c.name, c.prefix);
            }
        }
        RelayCredentialsCommand::Revoke { id } => {
            app.revoke_relay_credential(id).await?;
            println!("relay credential {id} revoked");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// "revoked …", "last used …" or "never used".
fn usage(revoked_at: Option<i64>, last_used_at: Option<i64>) -> String {
    match (revoked_at, last_used_at) {
        (Some(at), _) => format!("revoked {}", format_utc(at)),
        (None, Some(at)) => format!("last used {}", format_utc(at)),
        (None, None) => "never used".into(),
    }
}

async fn list_servers(app: &App) -> anyhow::Result<ExitCode> {
    let servers = app.server_summaries().await?;
    if servers.is_empty() {
        println!("no outgoing mail servers");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<24} {:<22} {:<30} {:<28} GMAIL",
        "DESCRIPTION", "AUTHENTICATE WITH", "USERNAME", "SMTP"
    );
    for s in servers {
        let badge = match &s.badge {
            Some(crate::domain::TokenBadge::ReconnectNeeded { reason, .. }) => {
                format!("Reconnect needed: {reason}")
            }
            Some(b) => b.label().to_string(),
            None => "-".into(),
        };
        println!(
            "{:<24} {:<22} {:<30} {:<28} {badge}",
            s.server.name,
            s.server.auth.label(),
            s.server.username.clone().unwrap_or_default(),
            format!(
                "{}:{} {}",
                s.server.host,
                s.server.port,
                s.server.security.label()
            )
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn test_server(app: &App, name: &str) -> anyhow::Result<ExitCode> {
    let Some(server) = app.store.server_by_name(name).await? else {
        anyhow::bail!(
            "no outgoing mail server is described as `{name}` (see `mailgate servers list`)"
        );
    };
    let report = app.test_server(server.id).await?;
    for step in &report.steps {
        println!("  ✓ {step}");
    }
    match &report.failure {
        None => {
            println!("{}", crate::app::test_connection::TestReport::SUCCESS);
            Ok(ExitCode::SUCCESS)
        }
        Some(f) => {
            println!(
                "Connection Test Failed at {} ({}): {}",
                f.stage,
                format_utc(report.at),
                f.message
            );
            if let Some(reply) = &f.reply {
                println!("The server replied:\n{reply}");
            }
            if let Some(challenge) = &f.challenge {
                println!("Google's XOAUTH2 challenge: {challenge}");
            }
            if let Some(fix) = &f.fix {
                println!("What to do: {fix}");
            }
            Ok(ExitCode::FAILURE)
        }
    }
}

async fn doctor(app: &App, json: bool) -> anyhow::Result<ExitCode> {
    let report = app.doctor().await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for check in &report.checks {
            println!(
                "[{}] {}: {}",
                check.status.label(),
                check.title,
                check.detail
            );
            if let Some(fix) = &check.fix {
                println!("       fix: {fix}");
            }
        }
    }
    Ok(if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn content_type(path: &std::path::Path) -> &'static str {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("pdf") => "application/pdf",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("txt") => "text/plain",
        Some("csv") => "text/csv",
        Some("html" | "htm") => "text/html",
        Some("zip") => "application/zip",
        Some("ics") => "text/calendar",
        _ => "application/octet-stream",
    }
}

async fn send(app: &App, args: SendArgs) -> anyhow::Result<ExitCode> {
    use crate::domain::message::{AddressInput, AttachmentInput, Submission, split_mbox};
    use base64::Engine;

    if let Some(path) = &args.mbox {
        let data = std::fs::read(path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        let messages = split_mbox(&data);
        if messages.is_empty() {
            anyhow::bail!(
                "{} holds no message (an mbox starts each one with a `From ` line)",
                path.display()
            );
        }
        let bar = indicatif::ProgressBar::new(messages.len() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} queued {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        let mut refused = Vec::new();
        for (i, raw) in messages.iter().enumerate() {
            if let Err(e) = app.submit_raw(raw).await {
                refused.push(format!("message {}: {e}", i + 1));
                bar.set_message(format!("({} refused)", refused.len()));
            }
            bar.inc(1);
        }
        bar.finish();
        println!(
            "queued {} of {} messages from {}",
            messages.len() - refused.len(),
            messages.len(),
            path.display()
        );
        for line in &refused {
            println!("  refused {line}");
        }
        return Ok(if refused.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    let accepted = if let Some(path) = &args.raw {
        let raw = std::fs::read(path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        app.submit_raw_to(&raw, &args.envelope_to).await?
    } else {
        let text = match args.text.as_deref() {
            Some("-") => {
                let mut body = String::new();
                std::io::Read::read_to_string(&mut std::io::stdin(), &mut body)?;
                Some(body)
            }
            other => other.map(str::to_string),
        };
        let html = args
            .html_file
            .as_ref()
            .map(std::fs::read_to_string)
            .transpose()?;
        let mut attachments = Vec::new();
        for path in &args.attach {
            let bytes = std::fs::read(path)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
            attachments.push(AttachmentInput {
                filename: path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "attachment".into()),
                content_type: content_type(path).into(),
                content: base64::engine::general_purpose::STANDARD.encode(bytes),
            });
        }
        let list = |v: &[String]| v.iter().cloned().map(AddressInput::Plain).collect();
        let submission = Submission {
            from: args.from.clone().map(AddressInput::Plain),
            to: list(&args.to),
            cc: list(&args.cc),
            bcc: list(&args.bcc),
            subject: args.subject.clone(),
            text,
            html,
            attachments,
            ..Default::default()
        };
        app.submit(&submission, crate::app::outbox::Origin::CLI)
            .await?
    };
    println!("queued {}", accepted.id);
    Ok(ExitCode::SUCCESS)
}
