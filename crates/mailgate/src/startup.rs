//! Building and running the service; `main` and the tests share this, so tests run the real thing
//! on port 0.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::app::delivery::Dispatcher;
use crate::app::incoming::Receivers;
use crate::app::{App, StartError};
use crate::clock::SharedClock;
use crate::config::Config;
use crate::relay::RelayListeners;

pub struct Application {
    listener: TcpListener,
    relay: Option<RelayListeners>,
    app: Arc<App>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Start(#[from] StartError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Relay(#[from] crate::relay::RelayError),
    #[error("the web server stopped: {0}")]
    Serve(std::io::Error),
}

impl Application {
    pub async fn build(config: Config, clock: SharedClock) -> Result<Self, ServeError> {
        let addr = config.http_addr;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Bind { addr, source })?;
        Self::build_on(listener, config, clock).await
    }

    /// With a listener bound beforehand: tests bind port 0 first, because the public URL (and so
    /// the redirect URI registered at Google) contains the port.
    pub async fn build_on(
        listener: TcpListener,
        config: Config,
        clock: SharedClock,
    ) -> Result<Self, ServeError> {
        let app = App::open(config, clock).await?;
        let relay = RelayListeners::bind(&app).await?;
        Ok(Self {
            listener,
            relay,
            app,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    pub fn app(&self) -> Arc<App> {
        Arc::clone(&self.app)
    }

    /// Serves the web app and the relay and runs delivery until `shutdown` resolves; then stops
    /// taking requests and messages, lets delivery finish the messages in hand, and closes the
    /// database.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let router = crate::web::router(Arc::clone(&self.app));
        let (stop_delivery, stopped) = tokio::sync::watch::channel(false);
        let delivery = tokio::spawn(Dispatcher::new(Arc::clone(&self.app)).run(stopped.clone()));
        let incoming = tokio::spawn(Receivers::new(Arc::clone(&self.app)).run(stopped));
        let timeout = std::time::Duration::from_secs(self.app.config.http_timeout_secs);
        let (stop_relay, relay_stopping) = tokio::sync::watch::channel(false);
        let relay = self
            .relay
            .map(|relay| tokio::spawn(relay.run(Arc::clone(&self.app), relay_stopping)));
        let served = crate::web::server::serve(self.listener, router, timeout, shutdown).await;
        let _ = stop_relay.send(true);
        if let Some(relay) = relay {
            let _ = relay.await;
        }
        let _ = stop_delivery.send(true);
        let _ = incoming.await;
        let _ = delivery.await;
        self.app.store.close().await;
        served.map_err(ServeError::Serve)
    }
}
