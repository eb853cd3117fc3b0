//! What the benchmarks share: a fresh installation and its `mailgate serve` process
//! (`install`), the bare XOAUTH2 client they are measured against (`direct`), and a wire with
//! latency in front of gsim (`wire`). The benchmarks are the binaries: `queue_bench.rs`
//! (the queue's ingest and drain), `relay_bench.rs` (the SMTP relay against
//! email-oauth2-proxy) and `inbox_bench.rs` (incoming mail from IMAP to a webhook).

pub mod direct;
pub mod install;
pub mod wire;

use std::time::Duration;

use gsim::Gsim;
use gsim::config::{AccountConfig, ClientConfig, PublishingStatus};

/// gsim with the bench's OAuth client and its one account, without a daily limit.
pub async fn start_gsim() -> anyhow::Result<Gsim> {
    let mut config = gsim::Config::empty();
    let mut client = ClientConfig::web(install::CLIENT_ID, install::CLIENT_SECRET, &[]);
    client.publishing_status = PublishingStatus::Production;
    config.clients = vec![client];
    let mut account = AccountConfig::new(install::ACCOUNT);
    account.daily_send_limit = u32::MAX;
    config.accounts = vec![account];
    Gsim::start(config, None).await
}

/// Messages gsim has accepted since it started.
pub fn accepted_so_far(gsim: &Gsim) -> u64 {
    gsim.world().counters().messages_accepted
}

/// Waits until gsim has accepted `n` messages more than `before`.
pub async fn delivered(gsim: &Gsim, before: u64, n: usize) -> anyhow::Result<()> {
    use anyhow::Context;
    let mut changes = gsim.world().subscribe_changes();
    let n = u64::try_from(n)?;
    while accepted_so_far(gsim) - before < n {
        tokio::time::timeout(Duration::from_secs(120), changes.changed())
            .await
            .context("deliveries stopped")??;
    }
    Ok(())
}

#[allow(clippy::cast_precision_loss)]
pub fn per_sec(n: usize, took: Duration) -> f64 {
    n as f64 / took.as_secs_f64()
}

pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}
