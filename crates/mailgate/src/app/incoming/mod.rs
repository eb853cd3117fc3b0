//! Incoming mail: Incoming Mail Servers read over IMAP with the account's Google connection and
//! handed to the application by webhook and API. One job per file: `servers.rs` what the admin
//! does (the form, Test & Confirm, Fetch Now), `fetch.rs` logging in and fetching by UID with
//! IDLE, `webhook.rs` handing messages over in order; this file runs one worker per confirmed
//! server, on the one instance that holds the server's lease.

pub mod fetch;
pub mod servers;
mod webhook;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::App;
use crate::domain::incoming::IncomingServer;

/// How often the runner looks for servers to start or stop (and at once when they change).
const LOOK_EVERY: Duration = Duration::from_secs(2);

fn lease_name(server_id: i64) -> String {
    format!("incoming:{server_id}")
}

/// The fetching and delivering workers of this instance.
pub struct Receivers {
    app: Arc<App>,
    running: Mutex<HashMap<i64, Worker>>,
}

struct Worker {
    /// The server's `updated_at` when the worker started: a change restarts it.
    version: i64,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Receivers {
    pub fn new(app: Arc<App>) -> Arc<Self> {
        Arc::new(Self {
            app,
            running: Mutex::new(HashMap::new()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Worker>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs until `shutdown` flips, then stops every worker and waits for them.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        // Not before the delivery loop's first pass: by then this instance is registered, and
        // on SQLite what a crashed run held (its leases among it) is free again.
        let mut passes = self.app.passes.subscribe();
        if *passes.borrow_and_update() == 0 {
            tokio::select! {
                _ = passes.changed() => {}
                _ = shutdown.changed() => {}
            }
        }
        loop {
            if *shutdown.borrow() {
                break;
            }
            self.look().await;
            tokio::select! {
                _ = tokio::time::sleep(LOOK_EVERY) => {}
                _ = self.app.incoming_changed.notified() => {}
                _ = shutdown.changed() => {}
            }
        }
        let workers: Vec<Worker> = self.lock().drain().map(|(_, w)| w).collect();
        for worker in &workers {
            let _ = worker.stop.send(true);
        }
        for worker in workers {
            let _ = worker.task.await;
        }
    }

    /// Stops the workers of servers deleted, unconfirmed, changed or whose lease another
    /// instance holds now; starts one for each confirmed server whose lease this instance
    /// gets. A worker that is stopping keeps its place until it has ended, so a server never
    /// has two here.
    async fn look(&self) {
        let app = &self.app;
        let servers = match app.store.incoming_servers().await {
            Ok(servers) => servers,
            Err(e) => {
                tracing::error!("incoming servers: {e}");
                return;
            }
        };
        let wanted: HashMap<i64, IncomingServer> = servers
            .into_iter()
            .filter(|s| s.confirmed)
            .map(|s| (s.id, s))
            .collect();
        let mine: Vec<i64> = self.lock().keys().copied().collect();
        let mut lost = Vec::new();
        for id in mine {
            match app.store.lease_holder(&lease_name(id)).await {
                Ok(holder) if holder.as_deref() != Some(app.instance_id.as_str()) => lost.push(id),
                _ => {}
            }
        }
        {
            let mut running = self.lock();
            running.retain(|id, worker| {
                if worker.task.is_finished() {
                    return false;
                }
                let current = wanted
                    .get(id)
                    .is_some_and(|s| s.updated_at == worker.version);
                if !current || lost.contains(id) {
                    let _ = worker.stop.send(true);
                }
                true
            });
        }
        for (id, server) in wanted {
            if self.lock().contains_key(&id) {
                continue;
            }
            match app
                .store
                .take_lease(&lease_name(id), &app.instance_id, app.now())
                .await
            {
                Ok(true) => {
                    let (stop, stopped) = watch::channel(false);
                    let version = server.updated_at;
                    let task = tokio::spawn(work(Arc::clone(app), server, stopped));
                    self.lock().insert(
                        id,
                        Worker {
                            version,
                            stop,
                            task,
                        },
                    );
                }
                Ok(false) => {}
                Err(e) => tracing::error!(server = id, "cannot take the incoming lease: {e}"),
            }
        }
    }
}

/// One server's worker: fetching and delivering side by side, under the server's lease.
async fn work(app: Arc<App>, server: IncomingServer, stop: watch::Receiver<bool>) {
    tracing::info!(server = server.id, folder = %server.folder, "fetching {}", server.username);
    let deliver = {
        let (app, server, stop) = (Arc::clone(&app), server.clone(), stop.clone());
        tokio::spawn(async move { app.keep_delivering(&server, stop).await })
    };
    app.keep_fetching(&server, stop).await;
    let _ = deliver.await;
    if let Err(e) = app
        .store
        .free_lease(&lease_name(server.id), &app.instance_id)
        .await
    {
        tracing::warn!(server = server.id, "cannot free the incoming lease: {e}");
    }
}
