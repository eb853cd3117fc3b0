//! `gsim serve`: the simulator as a process, for the local demo and the browser tests.

use std::io::Write;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use gsim::{Config, Gsim};

#[derive(Parser)]
#[command(
    name = "gsim",
    version,
    about = "A simulator of Google OAuth and Gmail SMTP/IMAP"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Listen on 127.0.0.1 and print the endpoints as one JSON line once ready.
    Serve {
        /// TOML file with listeners, OAuth clients and accounts (see the crate README).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Keeps the CA and the simulated world across restarts.
        #[arg(long)]
        state_dir: Option<PathBuf>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "gsim=info".into()),
        )
        .init();
    let Command::Serve { config, state_dir } = Cli::parse().command;
    let config = match config {
        Some(path) => Config::load(&path)?,
        None => Config::demo(),
    };
    // Signals are registered before the ready line: whoever reads it may stop gsim at once.
    let stop = shutdown_signal()?;
    let gsim = Gsim::start(config, state_dir).await?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", gsim.endpoints().to_json())?;
        out.flush()?;
    }
    stop.await;
    gsim.stop().await;
    Ok(())
}

/// SIGTERM or SIGINT, registered now, awaited later.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
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
