//! The SMTP relay edge: listeners for applications that speak SMTP and not OAuth. Each
//! connection runs the SMTP crate's server session against a [`gate::Gate`]; a message is
//! answered 250 only once the queue has committed it, and then the queue's rules apply.
//!
//! Two listeners: submission with STARTTLS (default 127.0.0.1:2525) and, optionally, TLS from
//! the first byte (port 465 style). At most `max_sessions` sessions run at once, and at most
//! `max_sessions_per_ip` from one address outside the trusted networks (so one misbehaving
//! device or an idle flood from one host cannot hold them all); the next connection is told
//! 421 and closed. On stop, no new connection is taken, and each session
//! says 421 at its next wait for the client (never in the middle of storing a message).

pub mod certificate;
pub mod gate;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mailgate_smtp::server::{Ended, ServerConfig, serve};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::app::App;
use crate::app::relay::RelayListening;
use certificate::{CertificateError, RelayCertificate};
use gate::Gate;

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// RFC 5321 §4.5.3.2 asks servers to wait 5 minutes for a command.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("cannot listen for the relay on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Certificate(#[from] CertificateError),
}

/// The relay's bound listeners, before they serve.
pub struct RelayListeners {
    submission: Option<TcpListener>,
    implicit_tls: Option<TcpListener>,
    acceptor: TlsAcceptor,
}

impl RelayListeners {
    /// Binds what the configuration asks for; None when the relay is off.
    pub async fn bind(app: &App) -> Result<Option<Self>, RelayError> {
        let config = &app.config.relay;
        if config.addr.is_none() && config.tls_addr.is_none() {
            return Ok(None);
        }
        let certificate = RelayCertificate::load(config, &app.config.data_dir, app.now())?;
        let bind = |addr: Option<SocketAddr>| async move {
            match addr {
                None => Ok(None),
                Some(addr) => TcpListener::bind(addr)
                    .await
                    .map(Some)
                    .map_err(|source| RelayError::Bind { addr, source }),
            }
        };
        let submission = bind(config.addr).await?;
        let implicit_tls = bind(config.tls_addr).await?;
        let local = |l: &Option<TcpListener>| l.as_ref().and_then(|l| l.local_addr().ok());
        let _ = app.relay.listening.set(RelayListening {
            addr: local(&submission),
            tls_addr: local(&implicit_tls),
            certificate: certificate.info.clone(),
        });
        Ok(Some(Self {
            submission,
            implicit_tls,
            acceptor: TlsAcceptor::from(certificate.server_config),
        }))
    }

    /// Serves until `stop` turns true, then waits for the sessions to end.
    pub async fn run(self, app: Arc<App>, stop: watch::Receiver<bool>) {
        let shared = Arc::new(Shared {
            sessions: Arc::new(Semaphore::new(app.config.relay.max_sessions)),
            per_address: Mutex::new(HashMap::new()),
            app,
            acceptor: self.acceptor,
            stop,
            running: Mutex::new(JoinSet::new()),
        });
        let mut loops = JoinSet::new();
        for (listener, implicit) in [(self.submission, false), (self.implicit_tls, true)] {
            if let Some(listener) = listener {
                loops.spawn(accept(Arc::clone(&shared), listener, implicit));
            }
        }
        while loops.join_next().await.is_some() {}
        // No listener takes connections any more: what runs now is all there will be.
        let mut running =
            std::mem::take(&mut *shared.running.lock().unwrap_or_else(|p| p.into_inner()));
        while running.join_next().await.is_some() {}
    }
}

struct Shared {
    app: Arc<App>,
    acceptor: TlsAcceptor,
    sessions: Arc<Semaphore>,
    /// Open sessions per client address (trusted networks are not counted).
    per_address: Mutex<HashMap<IpAddr, usize>>,
    stop: watch::Receiver<bool>,
    running: Mutex<JoinSet<()>>,
}

async fn accept(shared: Arc<Shared>, listener: TcpListener, implicit_tls: bool) {
    let mut stop = shared.stop.clone();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|stop| *stop) => return,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // Out of file descriptors and the like: wait a little rather than spin.
                tracing::warn!(error = %e, "relay accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let ip = peer.ip().to_canonical();
        let relay = &shared.app.config.relay;
        let trusted = relay.trusted_networks.iter().any(|net| net.contains(&ip));
        let Some(address) = AddressSlot::take(&shared, ip, trusted) else {
            refuse(
                stream,
                "421 4.7.0 Too many connections from your address, try again later",
            );
            continue;
        };
        let Ok(permit) = Arc::clone(&shared.sessions).try_acquire_owned() else {
            refuse(stream, "421 4.3.2 Too many connections, try again later");
            continue;
        };
        let session = Arc::clone(&shared);
        let mut running = shared.running.lock().unwrap_or_else(|p| p.into_inner());
        while running.try_join_next().is_some() {}
        running.spawn(async move {
            let _permit = permit;
            let _open = session.app.relay.session();
            connection(&session, stream, peer, address, implicit_tls).await;
        });
    }
}

/// Says why and hangs up, without holding up the accept loop.
fn refuse(mut stream: TcpStream, reply: &'static str) {
    tokio::spawn(async move {
        let _ = stream.write_all(format!("{reply}\r\n").as_bytes()).await;
    });
}

/// One of an address's sessions; gives it back when dropped.
struct AddressSlot {
    shared: Arc<Shared>,
    ip: Option<IpAddr>,
}

impl AddressSlot {
    /// None when the address already has `max_sessions_per_ip` sessions. Trusted networks are
    /// not counted: they are the admin's own devices.
    fn take(shared: &Arc<Shared>, ip: IpAddr, trusted: bool) -> Option<Self> {
        let slot = |ip| {
            Some(Self {
                shared: Arc::clone(shared),
                ip,
            })
        };
        if trusted {
            return slot(None);
        }
        let limit = shared.app.config.relay.max_sessions_per_ip;
        let mut counts = shared.per_address.lock().unwrap_or_else(|p| p.into_inner());
        let open = counts.entry(ip).or_insert(0);
        if *open >= limit {
            return None;
        }
        *open += 1;
        slot(Some(ip))
    }

    /// From the trusted networks, which take no place.
    fn trusted(&self) -> bool {
        self.ip.is_none()
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let Some(ip) = self.ip else {
            return;
        };
        let mut counts = self
            .shared
            .per_address
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(open) = counts.get_mut(&ip) {
            *open -= 1;
            if *open == 0 {
                counts.remove(&ip);
            }
        }
    }
}

/// One client's connection. Its address's place is given back before the connection closes,
/// so a client that saw it close may connect again at once.
async fn connection(
    shared: &Shared,
    stream: TcpStream,
    peer: SocketAddr,
    address: AddressSlot,
    implicit_tls: bool,
) {
    let _ = stream.set_nodelay(true);
    let relay = &shared.app.config.relay;
    let ip = peer.ip().to_canonical();
    let trusted = address.trusted();
    let gate = |tls: bool| Gate {
        app: Arc::clone(&shared.app),
        peer: ip,
        tls,
        trusted,
        stopping: shared.stop.clone(),
        login: Mutex::new(None),
    };
    let config = |tls: bool| ServerConfig {
        hostname: relay.hostname.clone(),
        max_size: shared.app.config.max_message_size,
        max_recipients: relay.max_recipients,
        timeout: COMMAND_TIMEOUT,
        offer_starttls: !tls,
        auth_allowed: tls || ip.is_loopback() || relay.allow_plaintext_auth,
    };
    let mut stream = stream;
    let greet = if implicit_tls {
        true
    } else {
        match serve(&mut stream, &gate(false), &config(false), true).await {
            Ended::StartTls => false,
            _ => {
                drop(address);
                return;
            }
        }
    };
    let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, shared.acceptor.accept(stream));
    let mut tls = match handshake.await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "relay TLS handshake failed");
            return;
        }
        Err(_) => return,
    };
    // RFC 3207: what was said before TLS is forgotten; the client starts over with EHLO.
    serve(&mut tls, &gate(true), &config(true), greet).await;
    drop(address);
    let _ = tls.shutdown().await;
}
