//! Use cases: what an admin, the CLI or a background loop can ask of mailgate. Each edge (web page,
//! CLI command) calls these; none of them knows about HTTP.

pub mod admins;
pub mod api_keys;
pub mod connect_gmail;
pub mod delivery;
pub mod doctor;
pub mod gmail_login;
pub mod incoming;
pub mod outbox;
mod private_files;
pub mod relay;
pub mod servers;
pub mod settings;
pub mod sign_in_limits;
pub mod test_connection;
pub mod tokens;

use std::sync::Arc;

use crate::clock::{SharedClock, Timestamp};
use crate::config::Config;
use crate::crypto::{CryptoError, Sealer};
use crate::domain::FieldErrors;
use crate::google::{GoogleClient, GoogleError};
use crate::smtp_out::SmtpConnector;
use crate::store::{Store, StoreError};
use crate::tls::TlsError;

pub struct App {
    pub config: Arc<Config>,
    pub store: Store,
    pub sealer: Sealer,
    pub google: GoogleClient,
    pub smtp: SmtpConnector,
    pub imap: crate::imap_in::ImapConnector,
    /// For webhooks: TLS verified, no redirects followed.
    pub webhooks: reqwest::Client,
    /// This run of this instance: a random id that owns its leases, slots and reservations, so
    /// two instances never share one whatever their host names and ports.
    pub instance_id: String,
    pub clock: SharedClock,
    pub metrics: crate::metrics::Metrics,
    /// Rung when a message is queued, so delivery starts at once rather than at the next look.
    pub outbox_wake: tokio::sync::Notify,
    /// The relay's listeners and open sessions.
    pub relay: relay::RelayStatus,
    /// Counts settled delivery attempts, for whoever waits on delivery (tests, `mailgate send`).
    pub settled: tokio::sync::watch::Sender<u64>,
    /// Counts the delivery loop's passes over the queue (renew leases, claim), for whoever must
    /// know that a pass happened after some change (tests).
    pub passes: tokio::sync::watch::Sender<u64>,
    /// Rung when incoming servers change, so their fetchers start or stop at once.
    pub incoming_changed: tokio::sync::Notify,
    /// Counts Google connections made, made again or removed, here or on another instance, so
    /// incoming fetchers start a fresh session (`connect_gmail.rs`).
    pub connections_changed: tokio::sync::watch::Sender<u64>,
    /// The connections as this instance last saw them (`Store::connections_fingerprint`).
    connections_seen: std::sync::Mutex<Option<(i64, i64)>>,
    /// Counts fetch passes that stored mail, and webhook deliveries, for whoever waits on
    /// incoming mail (tests, `mailgate incoming fetch`).
    pub inbox_progress: tokio::sync::watch::Sender<u64>,
    tokens: tokens::RefreshLocks,
    sign_in_limits: sign_in_limits::SignInLimits,
    /// The outgoing servers as routing last read them (see `App::routes`).
    routes: std::sync::Mutex<Option<(std::time::Instant, Arc<Vec<crate::domain::MailServer>>)>>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Google(#[from] GoogleError),
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
}

/// Failures of a use case, for the edge to present.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Invalid(FieldErrors),
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl App {
    /// Opens the data directory, the secret key and the database (running migrations), and builds
    /// the clients. Shared by `serve`, the CLI and the tests.
    pub async fn open(config: Config, clock: SharedClock) -> Result<Arc<Self>, StartError> {
        if config.database_url.starts_with("sqlite:")
            || matches!(config.secret_key, crate::config::SecretKeySource::File(_))
        {
            private_files::data_dir(&config.data_dir)?;
        }
        if let crate::config::SecretKeySource::File(path) = &config.secret_key {
            private_files::key_file(path);
        }
        private_files::sqlite_files(&config.database_url);
        let store = Store::connect(&config.database_url).await?;
        store.migrate().await?;
        // The database remembers its key: a lost key file is not silently replaced, and a wrong
        // key stops the start instead of failing on each secret later.
        let key_check = store.key_check().await?;
        let fresh = key_check.is_none() && !store.holds_sealed_secrets().await?;
        let sealer = Sealer::load(&config.secret_key, fresh)?;
        let key_check = match key_check {
            Some(check) => check,
            None => {
                // Two instances starting on a new database at once: the first check written
                // wins, and the other instance, with another key, stops here.
                store
                    .put_key_check(&sealer.key_check(), clock.now())
                    .await?;
                store.key_check().await?.unwrap_or_default()
            }
        };
        if !sealer.opens_key_check(&key_check) {
            return Err(CryptoError::WrongKey(config.secret_key.describe()).into());
        }
        let tls = crate::tls::client_config(config.extra_ca_file.as_deref())?;
        let google = GoogleClient::new(config.google.clone(), Arc::clone(&tls))?;
        let smtp_timeout = std::time::Duration::from_secs(config.smtp_timeout_secs);
        let webhooks = reqwest::Client::builder()
            .tls_backend_preconfigured((*tls).clone())
            .connect_timeout(std::time::Duration::from_secs(10))
            .timeout(std::time::Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("mailgate/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| GoogleError::Unavailable(format!("HTTP client setup: {e}")))?;
        Ok(Arc::new(Self {
            config: Arc::new(config),
            store,
            sealer,
            google,
            smtp: SmtpConnector::new(Arc::clone(&tls), smtp_timeout),
            imap: crate::imap_in::ImapConnector::new(tls, smtp_timeout),
            webhooks,
            instance_id: format!("{}-{}", hostname(), &crate::crypto::random_token()[..12]),
            clock,
            metrics: crate::metrics::Metrics::default(),
            outbox_wake: tokio::sync::Notify::new(),
            relay: relay::RelayStatus::default(),
            settled: tokio::sync::watch::channel(0).0,
            passes: tokio::sync::watch::channel(0).0,
            incoming_changed: tokio::sync::Notify::new(),
            connections_changed: tokio::sync::watch::channel(0).0,
            connections_seen: std::sync::Mutex::new(None),
            inbox_progress: tokio::sync::watch::channel(0).0,
            tokens: tokens::RefreshLocks::default(),
            sign_in_limits: sign_in_limits::SignInLimits::default(),
            routes: std::sync::Mutex::new(None),
        }))
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }
}

/// The machine's name, for the instance id and the Overview.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "mailgate".into())
}
