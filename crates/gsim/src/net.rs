//! Byte plumbing shared by the SMTP and IMAP servers: a stream that may turn into TLS mid-session,
//! read line by line with a length bound and an idle timeout, so no client can exhaust memory or
//! hold a task forever.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

pub enum Conn {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// Only while a STARTTLS handshake holds the socket.
    Upgrading,
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Conn::Upgrading => Poll::Ready(Err(io::ErrorKind::NotConnected.into())),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Conn::Upgrading => Poll::Ready(Err(io::ErrorKind::NotConnected.into())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Conn::Upgrading => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Conn::Upgrading => Poll::Ready(Ok(())),
        }
    }
}

#[derive(Debug)]
pub enum ReadError {
    /// The client said nothing for the idle timeout.
    Idle,
    /// The client closed the connection (or it broke).
    Closed,
}

impl From<io::Error> for ReadError {
    fn from(_: io::Error) -> Self {
        ReadError::Closed
    }
}

pub enum Line {
    Complete(Vec<u8>),
    /// The line exceeded the bound; its bytes were discarded up to the next LF.
    TooLong,
}

pub struct Wire {
    conn: Conn,
    buf: Vec<u8>,
    pub peer: SocketAddr,
}

const CHUNK: usize = 8192;

impl Wire {
    pub fn new(conn: Conn, peer: SocketAddr) -> Self {
        Self {
            conn,
            buf: Vec::with_capacity(CHUNK),
            peer,
        }
    }

    pub fn is_tls(&self) -> bool {
        matches!(self.conn, Conn::Tls(_))
    }

    /// Reads one line without its CRLF (a bare LF also ends it).
    pub async fn read_line(&mut self, max: usize, idle: Duration) -> Result<Line, ReadError> {
        let mut discarding = false;
        loop {
            if let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.buf.drain(..=pos).collect();
                if discarding {
                    return Ok(Line::TooLong);
                }
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                if line.len() > max {
                    return Ok(Line::TooLong);
                }
                return Ok(Line::Complete(line));
            }
            if self.buf.len() > max {
                discarding = true;
                self.buf.clear();
            }
            self.fill(idle).await?;
        }
    }

    /// Reads exactly `n` bytes (a BDAT chunk or an IMAP literal); the caller bounds `n`.
    pub async fn read_exact(&mut self, n: usize, idle: Duration) -> Result<Vec<u8>, ReadError> {
        while self.buf.len() < n {
            self.fill(idle).await?;
        }
        Ok(self.buf.drain(..n).collect())
    }

    /// Reads and drops `n` bytes without holding them.
    pub async fn skip(&mut self, mut n: usize, idle: Duration) -> Result<(), ReadError> {
        loop {
            let take = n.min(self.buf.len());
            self.buf.drain(..take);
            n -= take;
            if n == 0 {
                return Ok(());
            }
            self.fill(idle).await?;
        }
    }

    async fn fill(&mut self, idle: Duration) -> Result<(), ReadError> {
        let mut chunk = [0u8; CHUNK];
        let read = tokio::time::timeout(idle, self.conn.read(&mut chunk))
            .await
            .map_err(|_| ReadError::Idle)??;
        if read == 0 {
            return Err(ReadError::Closed);
        }
        self.buf.extend_from_slice(&chunk[..read]);
        Ok(())
    }

    /// Waits until the client sends something (or goes away) without consuming it.
    pub async fn readable(&mut self, idle: Duration) -> Result<(), ReadError> {
        if self.buf.is_empty() {
            self.fill(idle).await?;
        }
        Ok(())
    }

    pub async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.conn.write_all(bytes).await?;
        self.conn.flush().await
    }

    pub async fn close(&mut self) {
        let _ = self.conn.shutdown().await;
    }

    /// Upgrades a plain connection. Bytes the client pipelined after STARTTLS are discarded: they
    /// were sent in clear and must not be read as if they came over TLS (RFC 3207 §6).
    pub async fn start_tls(&mut self, acceptor: &TlsAcceptor) -> io::Result<()> {
        self.buf.clear();
        match std::mem::replace(&mut self.conn, Conn::Upgrading) {
            Conn::Plain(tcp) => {
                let tls = acceptor.accept(tcp).await?;
                self.conn = Conn::Tls(Box::new(tls));
                Ok(())
            }
            other => {
                self.conn = other;
                Err(io::ErrorKind::InvalidInput.into())
            }
        }
    }
}

/// Accepts connections until `shutdown` flips, running each in its own task. Sessions still open
/// at shutdown are aborted with the loop.
pub async fn accept_loop<F, Fut>(
    listener: tokio::net::TcpListener,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
    handle: F,
) where
    F: Fn(TcpStream, SocketAddr) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let mut sessions = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    let _ = tcp.set_nodelay(true);
                    sessions.spawn(handle(tcp, peer));
                }
                Err(e) => tracing::warn!("accept failed: {e}"),
            },
        }
    }
    sessions.abort_all();
}

/// A TLS handshake that never finishes (a half-open client) must not hold a task forever.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The handshake gets the session's idle timeout, capped at [`HANDSHAKE_TIMEOUT`].
pub fn handshake_timeout(
    world: &crate::world::World,
    idle_ms: impl FnOnce(&crate::world::State) -> u64,
) -> Duration {
    let idle = Duration::from_millis(world.with(|s| idle_ms(s)));
    idle.min(HANDSHAKE_TIMEOUT)
}
