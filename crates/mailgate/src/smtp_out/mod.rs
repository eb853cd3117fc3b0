//! Outgoing SMTP, the transport half: dial TCP, perform the verified TLS handshakes (implicit,
//! or the STARTTLS upgrade the session hands over), and give the stream to the protocol crate's
//! client session. What the replies mean is decided in `domain/` and `app/`.

mod stream;

use std::sync::Arc;
use std::time::Duration;

use mailgate_smtp::ClientSession;
use rustls_pki_types::ServerName;
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
        let address = format!("{}:{}", target.host, target.port);
        let tcp = tokio::time::timeout(self.connect_timeout, TcpStream::connect(&address))
            .await
            .map_err(|_| SmtpError::Connect {
                target: address.clone(),
                detail: format!("no answer within {} s", self.connect_timeout.as_secs()),
            })?
            .map_err(|e| SmtpError::Connect {
                target: address.clone(),
                detail: e.to_string(),
            })?;
        // Pipelined commands go in one write; waiting for Nagle would cost a round trip each.
        let _ = tcp.set_nodelay(true);
        Ok(tcp)
    }

    async fn handshake(
        &self,
        host: &str,
        tcp: TcpStream,
    ) -> Result<TlsStream<TcpStream>, SmtpError> {
        let fail = |detail: String| SmtpError::Tls {
            host: host.to_string(),
            detail,
        };
        let name = ServerName::try_from(host.to_string())
            .map_err(|_| fail(format!("`{host}` is not a valid TLS server name")))?;
        tokio::time::timeout(self.connect_timeout, self.tls.connect(name, tcp))
            .await
            .map_err(|_| fail("the handshake did not finish in time".into()))?
            .map_err(|e| fail(e.to_string()))
    }
}
