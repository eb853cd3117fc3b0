//! gsim: a simulator of Google's OAuth 2.0 endpoints and Gmail's SMTP and IMAP servers, built to
//! `shared/spec/google.md`. mailgate's tests, benchmarks and local demo run against it.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let gsim = gsim::Gsim::start(gsim::Config::demo(), None).await?;
//! println!("{}", gsim.endpoints().to_json());
//! gsim.stop().await;
//! # Ok(()) }
//! ```

pub mod clock;
pub mod config;
mod control;
mod imap;
mod net;
pub mod oauth;
pub mod sasl;
mod smtp;
mod tls;
pub mod world;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

pub use config::Config;
pub use control::{
    AccountPatch, ClientPatch, ControlError, ImapSettingsPatch, MintRequest, RefreshTokenInfo,
    SmtpSettingsPatch,
};
pub use world::{Delivery, SmtpFault, SmtpStage, TokenFault, World};

/// Where a running gsim listens; printed as one JSON line by `gsim serve`.
#[derive(Debug, Clone, Serialize)]
pub struct Endpoints {
    pub http: String,
    pub smtp_starttls: SocketAddr,
    pub smtp_tls: SocketAddr,
    pub imap_tls: SocketAddr,
    pub ca_cert: PathBuf,
}

impl Endpoints {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

pub struct Gsim {
    endpoints: Endpoints,
    world: Arc<World>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    state_dir: PathBuf,
    /// A directory gsim made for itself (no `--state-dir`), removed at stop.
    temporary: bool,
}

impl Gsim {
    /// Starts every listener on 127.0.0.1 and returns once all accept connections.
    ///
    /// With a `state_dir`, the CA and the world (tokens, mailboxes, deliveries) survive restarts;
    /// without one, gsim works in a temporary directory removed at stop.
    pub async fn start(config: Config, state_dir: Option<PathBuf>) -> anyhow::Result<Self> {
        let (state_dir, temporary) = match state_dir {
            Some(dir) => (dir, false),
            None => (temporary_dir(), true),
        };
        std::fs::create_dir_all(&state_dir)?;
        let tls = tls::load_or_create(&state_dir)?;
        let acceptor = TlsAcceptor::from(tls.server_config);

        let bind = |port: u16| TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port)));
        let http = bind(config.listen.http).await?;
        let smtp_starttls = bind(config.listen.smtp_starttls).await?;
        let smtp_tls = bind(config.listen.smtp_tls).await?;
        let imap_tls = bind(config.listen.imap_tls).await?;
        let endpoints = Endpoints {
            http: format!("http://{}", http.local_addr()?),
            smtp_starttls: smtp_starttls.local_addr()?,
            smtp_tls: smtp_tls.local_addr()?,
            imap_tls: imap_tls.local_addr()?,
            ca_cert: tls.ca_cert_path,
        };
        let saved = if temporary {
            None
        } else {
            World::load_saved(&state_dir)?
        };
        let world = Arc::new(World::new(&config, endpoints.http.clone(), saved)?);
        let (shutdown, _) = watch::channel(false);

        let app: Router = oauth::router()
            .merge(control::router())
            .with_state(Arc::clone(&world));
        let mut stop = shutdown.subscribe();
        let mut tasks = vec![tokio::spawn(async move {
            let serve = axum::serve(http, app).with_graceful_shutdown(async move {
                let _ = stop.changed().await;
            });
            if let Err(e) = serve.await {
                tracing::error!("http server stopped: {e}");
            }
        })];
        for (listener, implicit) in [(smtp_starttls, false), (smtp_tls, true)] {
            let world = Arc::clone(&world);
            let acceptor = acceptor.clone();
            tasks.push(tokio::spawn(net::accept_loop(
                listener,
                shutdown.subscribe(),
                move |tcp, peer| {
                    smtp::serve_connection(
                        Arc::clone(&world),
                        acceptor.clone(),
                        tcp,
                        peer,
                        implicit,
                    )
                },
            )));
        }
        {
            let world = Arc::clone(&world);
            tasks.push(tokio::spawn(net::accept_loop(
                imap_tls,
                shutdown.subscribe(),
                move |tcp, peer| {
                    imap::serve_connection(Arc::clone(&world), acceptor.clone(), tcp, peer)
                },
            )));
        }
        Ok(Self {
            endpoints,
            world,
            shutdown,
            tasks,
            state_dir,
            temporary,
        })
    }

    pub fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }

    /// The simulated world, for tests that arrange or inspect it directly.
    pub fn world(&self) -> &Arc<World> {
        &self.world
    }

    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// Stops every listener, closes open sessions and saves the world (when it has a state dir).
    pub async fn stop(mut self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
        if !self.temporary
            && let Err(e) = self.world.save(&self.state_dir)
        {
            tracing::error!("could not save gsim state: {e}");
        }
    }
}

impl Drop for Gsim {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        if self.temporary {
            let _ = std::fs::remove_dir_all(&self.state_dir);
        }
    }
}

fn temporary_dir() -> PathBuf {
    std::env::temp_dir().join(format!(
        "gsim-{}-{}",
        std::process::id(),
        world::random_from(b"abcdefghijklmnopqrstuvwxyz0123456789", 10)
    ))
}
