use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let filter = std::env::var("MAILGATE_LOG")
        .ok()
        .and_then(|f| tracing_subscriber::EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new("mailgate=info"));
    let logs = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    // One JSON object per line for log shippers; readable lines otherwise.
    if std::env::var("MAILGATE_LOG_FORMAT").as_deref() == Ok("json") {
        logs.json().init();
    } else {
        logs.init();
    }
    match mailgate::cli::run(mailgate::cli::Cli::parse()).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("mailgate: {e:#}");
            ExitCode::FAILURE
        }
    }
}
