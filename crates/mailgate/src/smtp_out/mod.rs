//! Outgoing SMTP, the transport half: dial TCP, perform the verified TLS handshakes (implicit,
//! or the STARTTLS upgrade the session hands over), and give the stream to the protocol crate's
//! client session. What the replies mean is decided in `domain/` and `app/`.

mod stream;

use std::sync::Arc;
use std::time::Duration;

use mailgate_smtp::ClientSession;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::domain::{Security, Stage};
pub use mailgate_smtp::Error as SmtpError;
pub use stream::Stream;

/// A session with an outgoing server, over TCP or TLS.
pub type SmtpSession = ClientSession<Stream>;

/// Where to connect and how.
#[derive(Debug, Clone)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub security: Security,
}

#[derive(Clone)]
pub struct SmtpConnector {
    tls: TlsConnector,
    ehlo_name: String,
    connect_timeout: Duration,
    command_timeout: Duration,
}

impl SmtpConnector {
    /// `command_timeout` bounds each wait for a reply and each write of a part of a message.
    pub fn new(tls: Arc<rustls::ClientConfig>, command_timeout: Duration) -> Self {
        Self {
            tls: TlsConnector::from(tls),
            ehlo_name: "mailgate.localhost".to_string(),
            connect_timeout: Duration::from_secs(10),
            command_timeout,
        }
    }

    /// Connects, reads the greeting, says EHLO, and secures the session as `target` asks.
    pub async fn connect(&self, target: &Target) -> Result<SmtpSession, SmtpError> {
        let tcp = self.dial(target).await?;
        let stream = match target.security {
            Security::Tls => Stream::Tls(Box::new(self.handshake(&target.host, tcp).await?)),
            Security::StartTls | Security::None => Stream::Plain(tcp),
        };
        let session = ClientSession::greet(stream, self.command_timeout, &self.ehlo_name).await?;
        if target.security != Security::StartTls {
            return Ok(session);
        }
        session
            .starttls(|stream| async move {
                match stream {
                    Stream::Plain(tcp) => Ok(Stream::Tls(Box::new(
                        self.handshake(&target.host, tcp).await?,
                    ))),
                    Stream::Tls(_) => Err(SmtpError::Protocol {
                        stage: Stage::StartTls,
                        detail: "STARTTLS on a secured session".into(),
                    }),
                }
            })
            .await
    }

    async fn dial(&self, target: &Target) -> Result<TcpStream, SmtpError> {
        crate::tls::dial(&target.host, target.port, self.connect_timeout)
            .await
            .map_err(smtp_error)
    }

    async fn handshake(
        &self,
        host: &str,
        tcp: TcpStream,
    ) -> Result<TlsStream<TcpStream>, SmtpError> {
        crate::tls::handshake(&self.tls, host, tcp, self.connect_timeout)
            .await
            .map_err(smtp_error)
    }
}

fn smtp_error(e: crate::tls::DialError) -> SmtpError {
    match e {
        crate::tls::DialError::Connect(target, detail) => SmtpError::Connect { target, detail },
        crate::tls::DialError::Tls(host, detail) => SmtpError::Tls { host, detail },
    }
}
