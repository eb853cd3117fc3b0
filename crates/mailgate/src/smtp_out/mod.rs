//! Outgoing SMTP: a client that reports every stage with the server's own reply. Hand-written
//! because the XOAUTH2 failure is a `334` challenge followed by a `535`, and the common crates lose
//! one or the other (see design/CRATES.md); mailgate must show both.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rustls_pki_types::ServerName;
use secrecy::{ExposeSecret, SecretString};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::domain::{Reply, Security, Stage};

/// Where to connect and how.
#[derive(Debug, Clone)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub security: Security,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum SmtpError {
    #[error("could not connect to {target}: {detail}")]
    Connect { target: String, detail: String },
    #[error("TLS with {host} failed: {detail}")]
    Tls { host: String, detail: String },
    #[error("the server did not offer STARTTLS")]
    NoStartTls,
    #[error("no answer within {secs} s at {stage}")]
    Timeout { stage: Stage, secs: u64 },
    #[error("the server closed the connection at {0}")]
    Closed(Stage),
    #[error("the server refused {stage}: {}", reply.text())]
    Refused {
        stage: Stage,
        reply: Reply,
        /// The decoded XOAUTH2 challenge (Google's JSON), when the refusal came after one.
        challenge: Option<String>,
    },
    #[error("the server's answer at {stage} makes no sense: {detail}")]
    Protocol { stage: Stage, detail: String },
}

impl SmtpError {
    pub fn stage(&self) -> Stage {
        match self {
            SmtpError::Connect { .. } => Stage::Connect,
            SmtpError::Tls { .. } => Stage::Tls,
            SmtpError::NoStartTls => Stage::StartTls,
            SmtpError::Timeout { stage, .. }
            | SmtpError::Closed(stage)
            | SmtpError::Refused { stage, .. }
            | SmtpError::Protocol { stage, .. } => *stage,
        }
    }

    pub fn reply(&self) -> Option<&Reply> {
        match self {
            SmtpError::Refused { reply, .. } => Some(reply),
            _ => None,
        }
    }
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
        let _ = tcp.set_nodelay(true);
        let stream = match target.security {
            Security::Tls => Stream::Tls(Box::new(self.handshake(&target.host, tcp).await?)),
            Security::StartTls | Security::None => Stream::Plain(tcp),
        };
        let mut session = SmtpSession {
            stream,
            buffer: Vec::new(),
            timeout: self.command_timeout,
            greeting: Reply {
                code: 0,
                lines: Vec::new(),
            },
            capabilities: Vec::new(),
            tls: None,
            abandoned: false,
        };
        session.greeting = session.expect(Stage::Greeting, &[220]).await?;
        session.ehlo(&self.ehlo_name).await?;
        if target.security == Security::StartTls {
            if !session.offers("STARTTLS") {
                return Err(SmtpError::NoStartTls);
            }
            session.command(Stage::StartTls, "STARTTLS", &[220]).await?;
            let Stream::Plain(tcp) = std::mem::replace(&mut session.stream, Stream::Gone) else {
                return Err(SmtpError::Protocol {
                    stage: Stage::StartTls,
                    detail: "STARTTLS on a secured session".into(),
                });
            };
            // Anything the server sent before the handshake is not trusted (RFC 3207 §6).
            session.buffer.clear();
            session.stream = Stream::Tls(Box::new(self.handshake(&target.host, tcp).await?));
            session.ehlo(&self.ehlo_name).await?;
        }
        if let Stream::Tls(tls) = &session.stream {
            let (_, connection) = tls.get_ref();
            session.tls = Some(format!(
                "{:?}, {:?}",
                connection
                    .protocol_version()
                    .unwrap_or(rustls::ProtocolVersion::Unknown(0)),
                connection
                    .negotiated_cipher_suite()
                    .map(|s| s.suite())
                    .unwrap_or(rustls::CipherSuite::Unknown(0))
            ));
        }
        Ok(session)
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

enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    Gone,
}

impl AsyncRead for Stream {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => std::pin::Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_read(cx, buf),
            Stream::Gone => std::task::Poll::Ready(Err(io::ErrorKind::NotConnected.into())),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => std::pin::Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_write(cx, buf),
            Stream::Gone => std::task::Poll::Ready(Err(io::ErrorKind::NotConnected.into())),
        }
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => std::pin::Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_flush(cx),
            Stream::Gone => std::task::Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => std::pin::Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_shutdown(cx),
            Stream::Gone => std::task::Poll::Ready(Ok(())),
        }
    }
}

/// A server that floods lines must not exhaust memory.
const MAX_LINE: usize = 4096;
const MAX_REPLY_LINES: usize = 64;
/// The final reply may take this many command timeouts (60 s → 10 minutes, as RFC 5321 says).
const FINAL_REPLY_FACTOR: u32 = 10;
/// How much of a message goes per write; each write has the command timeout to itself.
const BODY_CHUNK: usize = 64 * 1024;

pub struct SmtpSession {
    stream: Stream,
    buffer: Vec<u8>,
    timeout: Duration,
    pub greeting: Reply,
    /// EHLO keywords, uppercase (`AUTH XOAUTH2 ...`, `SIZE 35882577`, ...).
    pub capabilities: Vec<String>,
    /// Protocol and cipher, once secured.
    pub tls: Option<String>,
    abandoned: bool,
}

impl SmtpSession {
    pub fn offers(&self, keyword: &str) -> bool {
        self.capabilities
            .iter()
            .any(|c| c.split(' ').next() == Some(keyword))
    }

    pub fn offers_auth(&self, mechanism: &str) -> bool {
        self.capabilities.iter().any(|c| {
            let mut words = c.split(' ');
            words.next() == Some("AUTH") && words.any(|m| m == mechanism)
        })
    }

    pub fn is_secure(&self) -> bool {
        matches!(self.stream, Stream::Tls(_))
    }

    async fn ehlo(&mut self, name: &str) -> Result<(), SmtpError> {
        let reply = self
            .command(Stage::Ehlo, &format!("EHLO {name}"), &[250])
            .await?;
        self.capabilities = reply
            .lines
            .iter()
            .skip(1)
            .map(|l| l.trim().to_ascii_uppercase())
            .collect();
        Ok(())
    }

    /// Sends one command line and reads the reply, which must have one of `expected` codes.
    pub async fn command(
        &mut self,
        stage: Stage,
        line: &str,
        expected: &[u16],
    ) -> Result<Reply, SmtpError> {
        self.send(stage, format!("{line}\r\n").as_bytes()).await?;
        self.expect(stage, expected).await
    }

    async fn send(&mut self, stage: Stage, bytes: &[u8]) -> Result<(), SmtpError> {
        let write = async {
            self.stream.write_all(bytes).await?;
            self.stream.flush().await
        };
        match tokio::time::timeout(self.timeout, write).await {
            Err(_) => Err(SmtpError::Timeout {
                stage,
                secs: self.timeout.as_secs(),
            }),
            Ok(Err(_)) => Err(SmtpError::Closed(stage)),
            Ok(Ok(())) => Ok(()),
        }
    }

    async fn expect(&mut self, stage: Stage, expected: &[u16]) -> Result<Reply, SmtpError> {
        let reply = self.read_reply(stage).await?;
        if expected.contains(&reply.code) {
            Ok(reply)
        } else {
            Err(SmtpError::Refused {
                stage,
                reply,
                challenge: None,
            })
        }
    }

    pub async fn read_reply(&mut self, stage: Stage) -> Result<Reply, SmtpError> {
        let mut lines = Vec::new();
        loop {
            let line = self.read_line(stage).await?;
            let protocol = |detail: String| SmtpError::Protocol { stage, detail };
            let code: u16 = line
                .get(..3)
                .and_then(|c| c.parse().ok())
                .filter(|c| (200..600).contains(c))
                .ok_or_else(|| protocol(format!("not an SMTP reply: {line:?}")))?;
            let separator = line.as_bytes().get(3).copied().unwrap_or(b' ');
            lines.push(line.get(4..).unwrap_or_default().to_string());
            if separator == b' ' {
                return Ok(Reply { code, lines });
            }
            if separator != b'-' || lines.len() > MAX_REPLY_LINES {
                return Err(protocol(format!("malformed reply line {line:?}")));
            }
        }
    }

    async fn read_line(&mut self, stage: Stage) -> Result<String, SmtpError> {
        loop {
            if let Some(pos) = self.buffer.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.buffer.drain(..=pos).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(String::from_utf8_lossy(&line).into_owned());
            }
            if self.buffer.len() > MAX_LINE {
                return Err(SmtpError::Protocol {
                    stage,
                    detail: "a reply line longer than 4 KB".into(),
                });
            }
            let mut chunk = [0u8; 4096];
            let read = tokio::time::timeout(self.timeout, self.stream.read(&mut chunk))
                .await
                .map_err(|_| SmtpError::Timeout {
                    stage,
                    secs: self.timeout.as_secs(),
                })?
                .map_err(|_| SmtpError::Closed(stage))?;
            if read == 0 {
                return Err(SmtpError::Closed(stage));
            }
            self.buffer.extend_from_slice(&chunk[..read]);
        }
    }

    /// AUTH XOAUTH2. On refusal Gmail sends `334 <base64 JSON>`; mailgate answers with the empty
    /// line SASL asks for, reads the final `535`, and reports both.
    pub async fn auth_xoauth2(
        &mut self,
        user: &str,
        token: &SecretString,
    ) -> Result<(), SmtpError> {
        let initial = STANDARD.encode(format!(
            "user={user}\x01auth=Bearer {}\x01\x01",
            token.expose_secret()
        ));
        self.send(
            Stage::Auth,
            format!("AUTH XOAUTH2 {initial}\r\n").as_bytes(),
        )
        .await?;
        let reply = self.read_reply(Stage::Auth).await?;
        match reply.code {
            235 => Ok(()),
            334 => {
                let challenge = reply
                    .lines
                    .first()
                    .and_then(|b64| STANDARD.decode(b64.trim()).ok())
                    .map(|json| String::from_utf8_lossy(&json).into_owned());
                self.send(Stage::Auth, b"\r\n").await?;
                let reply = self.read_reply(Stage::Auth).await?;
                Err(SmtpError::Refused {
                    stage: Stage::Auth,
                    reply,
                    challenge,
                })
            }
            _ => Err(SmtpError::Refused {
                stage: Stage::Auth,
                reply,
                challenge: None,
            }),
        }
    }

    /// AUTH PLAIN, for servers that take a username and password.
    pub async fn auth_plain(
        &mut self,
        user: &str,
        password: &SecretString,
    ) -> Result<(), SmtpError> {
        let initial = STANDARD.encode(format!("\0{user}\0{}", password.expose_secret()));
        self.command(Stage::Auth, &format!("AUTH PLAIN {initial}"), &[235])
            .await
            .map(|_| ())
    }

    pub async fn mail_from(&mut self, from: &str) -> Result<Reply, SmtpError> {
        self.command(Stage::MailFrom, &format!("MAIL FROM:<{from}>"), &[250])
            .await
    }

    pub async fn rcpt_to(&mut self, to: &str) -> Result<Reply, SmtpError> {
        self.command(Stage::RcptTo, &format!("RCPT TO:<{to}>"), &[250, 251])
            .await
    }

    pub async fn data(&mut self) -> Result<Reply, SmtpError> {
        self.command(Stage::Data, "DATA", &[354]).await
    }

    /// The message after a 354, dot-stuffed with CRLF line ends, without the final dot (see
    /// [`Self::end_data`]). Written in chunks, each with its own timeout: a large message over a
    /// slow link goes as long as it keeps moving, and a peer that stops reading is caught.
    pub async fn write_body(&mut self, message: &[u8]) -> Result<(), SmtpError> {
        let mut out = Vec::with_capacity(BODY_CHUNK + BODY_CHUNK / 32);
        let mut at_line_start = true;
        let mut previous = 0u8;
        for &byte in message {
            if byte == b'\n' && previous != b'\r' {
                out.push(b'\r');
            }
            if at_line_start && byte == b'.' {
                out.push(b'.');
            }
            out.push(byte);
            at_line_start = byte == b'\n';
            previous = byte;
            if out.len() >= BODY_CHUNK {
                self.send(Stage::Data, &out).await?;
                out.clear();
            }
        }
        if !at_line_start {
            out.extend_from_slice(b"\r\n");
        }
        self.send(Stage::Data, &out).await
    }

    /// The final dot, and the server's verdict on the message. Once this is called, a failure
    /// other than a reply leaves the outcome unknown: the server may have taken the message.
    pub async fn end_data(&mut self) -> Result<Reply, SmtpError> {
        self.send(Stage::DataEnd, b".\r\n").await?;
        // The server takes in what is still in flight and checks the message before it answers:
        // RFC 5321 §4.5.3.2.6 gives the final reply 10 minutes against 5 for a command. Giving up
        // early makes an unknown outcome of a message that was about to be accepted.
        let command_timeout = self.timeout;
        self.timeout = command_timeout.saturating_mul(FINAL_REPLY_FACTOR);
        let verdict = self.expect(Stage::DataEnd, &[250]).await;
        self.timeout = command_timeout;
        verdict
    }

    /// The start of a transaction: MAIL, RCPT for each recipient, DATA. With PIPELINING (Gmail
    /// offers it) the commands go in one write and their replies are read in order, so a message
    /// costs two round trips instead of three plus one per recipient. `Ok` means the server said
    /// 354 and waits for the message; it carries the recipients refused for good. A temporary
    /// refusal of any recipient refuses the whole message (`Err`), and the session must not be
    /// reused when that happened after DATA: only hanging up discards the half-begun message.
    pub async fn open_data(
        &mut self,
        from: &str,
        recipients: &[String],
    ) -> Result<Vec<(String, Reply)>, SmtpError> {
        let pipelined = self.offers("PIPELINING");
        let mut rcpt_replies = Vec::with_capacity(recipients.len());
        let data_reply;
        if pipelined {
            let mut batch = format!("MAIL FROM:<{from}>\r\n");
            for r in recipients {
                batch.push_str(&format!("RCPT TO:<{r}>\r\n"));
            }
            batch.push_str("DATA\r\n");
            self.send(Stage::MailFrom, batch.as_bytes()).await?;
            // Every reply is read, whatever it says, to stay in step with the server. A refused
            // MAIL is the news even if the server then hangs up (421) before the other replies.
            let mail = self.read_reply(Stage::MailFrom).await?;
            let refused_mail = |mail: Reply| SmtpError::Refused {
                stage: Stage::MailFrom,
                reply: mail,
                challenge: None,
            };
            let mut rest = Vec::with_capacity(recipients.len());
            let mut data = None;
            let mut broken = None;
            for _ in recipients {
                match self.read_reply(Stage::RcptTo).await {
                    Ok(r) => rest.push(r),
                    Err(e) => {
                        broken = Some(e);
                        break;
                    }
                }
            }
            if broken.is_none() {
                match self.read_reply(Stage::Data).await {
                    Ok(r) => data = Some(r),
                    Err(e) => broken = Some(e),
                }
            }
            match (mail.code, broken, data) {
                (250, None, Some(data)) => {
                    rcpt_replies = rest;
                    data_reply = data;
                }
                (250, Some(e), _) => return Err(e),
                _ => return Err(refused_mail(mail)),
            }
        } else {
            self.mail_from(from).await?;
            for r in recipients {
                rcpt_replies.push(
                    match self
                        .command(Stage::RcptTo, &format!("RCPT TO:<{r}>"), &[250, 251])
                        .await
                    {
                        Ok(reply) => reply,
                        Err(SmtpError::Refused { reply, .. }) => reply,
                        Err(e) => return Err(e),
                    },
                );
                if rcpt_replies.last().is_some_and(|r| r.is_temporary()) {
                    return Err(SmtpError::Refused {
                        stage: Stage::RcptTo,
                        reply: rcpt_replies.pop().unwrap_or(Reply {
                            code: 450,
                            lines: Vec::new(),
                        }),
                        challenge: None,
                    });
                }
            }
            data_reply = if rcpt_replies.iter().any(Reply::is_positive) {
                self.command(Stage::Data, "DATA", &[354]).await?
            } else {
                Reply {
                    code: 0,
                    lines: Vec::new(),
                }
            };
        }
        let mut refused = Vec::new();
        let mut temporary = None;
        for (r, reply) in recipients.iter().zip(rcpt_replies) {
            if reply.is_temporary() && temporary.is_none() {
                temporary = Some(reply);
            } else if !reply.is_positive() {
                refused.push((r.clone(), reply));
            }
        }
        if data_reply.code == 354 && (temporary.is_some() || refused.len() == recipients.len()) {
            // DATA is open but the message must not go: hanging up is the only way to drop it.
            self.abandoned = true;
        }
        if let Some(reply) = temporary {
            return Err(SmtpError::Refused {
                stage: Stage::RcptTo,
                reply,
                challenge: None,
            });
        }
        if refused.len() == recipients.len() {
            let (_, reply) = refused.swap_remove(0);
            return Err(SmtpError::Refused {
                stage: Stage::RcptTo,
                reply,
                challenge: None,
            });
        }
        if data_reply.code != 354 {
            return Err(SmtpError::Refused {
                stage: Stage::Data,
                reply: data_reply,
                challenge: None,
            });
        }
        Ok(refused)
    }

    /// True when the session was left mid-transaction and must be closed, not reused.
    pub fn abandoned(&self) -> bool {
        self.abandoned
    }

    pub async fn rset(&mut self) -> Result<Reply, SmtpError> {
        self.command(Stage::MailFrom, "RSET", &[250]).await
    }

    /// Says goodbye; a server that already hung up is fine too.
    pub async fn quit(mut self) {
        if self.send(Stage::Quit, b"QUIT\r\n").await.is_ok() {
            let _ = self.read_reply(Stage::Quit).await;
        }
        let _ = self.stream.shutdown().await;
    }

    /// Hangs up without QUIT. After a `354`, this is how a client abandons a message: the server
    /// never sees the final dot, so nothing is delivered.
    pub async fn abandon(mut self) {
        let _ = self.stream.shutdown().await;
    }
}
