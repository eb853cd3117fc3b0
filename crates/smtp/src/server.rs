//! The server half: one SMTP submission session over any stream, for applications that speak
//! SMTP and not OAuth. Commands are parsed by smtp-proto (Stalwart's parser); what a login is
//! worth and where a message goes is the caller's, behind [`Relay`]. The session speaks the
//! protocol, holds its limits and answers honestly: the 250 after DATA is the relay's, given
//! only once the message is stored.
//!
//! STARTTLS ends the session ([`Ended::StartTls`]): the caller performs the handshake and starts
//! a new one on the secured stream, without a greeting. Whatever the client sent after STARTTLS
//! before the handshake is dropped with the session, so nothing typed in clear can be taken as
//! said under TLS (the STARTTLS command injection of CVE-2011-0411).

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use smtp_proto::request::receiver::{DataReceiver, RequestReceiver};
use smtp_proto::{Error as ParseError, Request};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::Reply;

/// A SASL response line longer than this is refused (RFC 4954 allows 12,288 for AUTH).
const MAX_SASL_LINE: usize = 12_288;
/// Bad commands tolerated before the session is closed.
const MAX_ERRORS: usize = 10;

/// What the session needs to know of where it runs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The name in the greeting and the EHLO reply.
    pub hostname: String,
    /// The largest message accepted, announced as SIZE.
    pub max_size: usize,
    pub max_recipients: usize,
    /// The longest wait for the client's next command or data.
    pub timeout: Duration,
    /// STARTTLS is offered: a certificate is configured and this stream is not TLS yet.
    pub offer_starttls: bool,
    /// AUTH may be used as the stream is: it is TLS, the peer is on loopback, or the admin
    /// allowed passwords in plain text.
    pub auth_allowed: bool,
}

/// A message's envelope, as the client gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub from: String,
    pub recipients: Vec<String>,
    /// Who logged in, if anyone.
    pub user: Option<String>,
    /// The name the client gave in EHLO or HELO, for the trace header.
    pub client_name: String,
}

/// What the session asks of its caller.
pub trait Relay: Sync {
    /// Whether a client must log in before MAIL (it may not when it is on a trusted network).
    fn needs_auth(&self) -> bool;
    /// A login; `Ok` with the name to remember, or the refusal to send (535 for bad credentials,
    /// 454 when this peer failed too often).
    fn authenticate(
        &self,
        user: &str,
        password: &str,
    ) -> impl Future<Output = Result<String, Reply>> + Send;
    /// Whether `user` (if logged in) may send as `from`; the refusal otherwise.
    fn accept_sender(
        &self,
        user: Option<&str>,
        from: &str,
    ) -> impl Future<Output = Result<(), Reply>> + Send;
    /// Stores the message; `Ok` with its queue id only once it is durably stored, otherwise the
    /// reply to send (451 when the store cannot commit).
    fn submit(
        &self,
        envelope: &Envelope,
        message: Vec<u8>,
    ) -> impl Future<Output = Result<String, Reply>> + Send;
    /// Resolves when the service is stopping: a session waiting for its client then says
    /// 421 and ends. A session never stops mid-submit, so nothing stored goes unanswered.
    fn stopping(&self) -> impl Future<Output = ()> + Send {
        std::future::pending()
    }
}

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The client said QUIT.
    Quit,
    /// The client asked for TLS and was told 220: hand the stream to the TLS handshake, then
    /// serve it again with `greet` false.
    StartTls,
    /// The client went away.
    Closed,
    /// The client was silent too long; it was told 421.
    TimedOut,
    /// Too many bad commands; the client was told 421.
    TooManyErrors,
    /// The service is stopping; the client was told 421.
    ShuttingDown,
}

/// A step of the session, or how it ended.
type Step<T> = Result<T, Ended>;

/// Serves one session on `stream` until it ends. `greet` is false on a stream just secured by
/// STARTTLS, where the client speaks first (EHLO again).
pub async fn serve<S, R>(stream: &mut S, relay: &R, config: &ServerConfig, greet: bool) -> Ended
where
    S: AsyncRead + AsyncWrite + Unpin,
    R: Relay,
{
    let mut session = Session {
        stream,
        config,
        stopping: Box::pin(relay.stopping()),
        pending: Vec::new(),
        out: Vec::new(),
        requests: RequestReceiver::default(),
        user: None,
        client_name: String::new(),
        from: None,
        recipients: Vec::new(),
        errors: 0,
    };
    let ended = match session.run(relay, greet).await {
        Ok(ended) | Err(ended) => ended,
    };
    // A last 421 may still be queued; a client that went away will not read it anyway.
    let _ = session.flush().await;
    ended
}

struct Session<'a, S> {
    stream: &'a mut S,
    config: &'a ServerConfig,
    stopping: Pin<Box<dyn Future<Output = ()> + Send + 'a>>,
    /// Bytes read and not yet consumed.
    pending: Vec<u8>,
    /// Replies not yet written: pipelined commands get their replies in one write.
    out: Vec<u8>,
    requests: RequestReceiver,
    user: Option<String>,
    client_name: String,
    from: Option<String>,
    recipients: Vec<String>,
    errors: usize,
}

/// A command, owned, so the parser's buffer can be reused.
enum Command {
    Ehlo(String),
    Helo(String),
    Mail { from: String, size: usize },
    Rcpt(String),
    Data,
    Auth { mechanism: u64, initial: String },
    StartTls,
    Rset,
    Noop,
    Vrfy,
    Quit,
    Other(&'static str),
}

impl Command {
    fn from_request(request: Request<std::borrow::Cow<'_, str>>) -> Self {
        match request {
            Request::Ehlo { host } => Command::Ehlo(host.into_owned()),
            Request::Helo { host } | Request::Lhlo { host } => Command::Helo(host.into_owned()),
            Request::Mail { from } => Command::Mail {
                from: from.address.into_owned(),
                size: from.size,
            },
            Request::Rcpt { to } => Command::Rcpt(to.address.into_owned()),
            Request::Data => Command::Data,
            Request::Auth {
                mechanism,
                initial_response,
            } => Command::Auth {
                mechanism,
                initial: initial_response.into_owned(),
            },
            Request::StartTls => Command::StartTls,
            Request::Rset => Command::Rset,
            Request::Noop { .. } => Command::Noop,
            Request::Vrfy { .. } => Command::Vrfy,
            Request::Quit => Command::Quit,
            other => Command::Other(other.name()),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<'_, S> {
    async fn run<R: Relay>(&mut self, relay: &R, greet: bool) -> Step<Ended> {
        if greet {
            let greeting = format!("{} ESMTP mailgate", self.config.hostname);
            self.reply(220, &[&greeting]);
        }
        loop {
            let command = self.next_command().await?;
            match command {
                Command::Ehlo(name) => {
                    self.reset();
                    self.client_name = name;
                    let lines = self.capabilities();
                    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
                    self.reply(250, &lines);
                }
                Command::Helo(name) => {
                    self.reset();
                    self.client_name = name;
                    let hostname = self.config.hostname.clone();
                    self.reply(250, &[&hostname]);
                }
                Command::StartTls if self.config.offer_starttls => {
                    self.reply(220, &["2.0.0 Ready to start TLS"]);
                    self.flush().await?;
                    return Ok(Ended::StartTls);
                }
                Command::StartTls => self.reply(502, &["5.5.1 STARTTLS is not offered here"]),
                Command::Auth { mechanism, initial } => {
                    self.auth(relay, mechanism, initial).await?
                }
                Command::Mail { from, size } => self.mail(relay, from, size).await,
                Command::Rcpt(to) => self.rcpt(to),
                Command::Data => self.data(relay).await?,
                Command::Rset => {
                    self.reset();
                    self.reply(250, &["2.0.0 OK"]);
                }
                Command::Noop => self.reply(250, &["2.0.0 OK"]),
                Command::Vrfy => self.reply(252, &["2.5.0 Cannot verify the user, but will try"]),
                Command::Quit => {
                    self.reply(221, &["2.0.0 Bye"]);
                    self.flush().await?;
                    return Ok(Ended::Quit);
                }
                Command::Other(name) => {
                    let text = format!("5.5.1 {name} is not offered here");
                    self.refuse(502, &text)?;
                }
            }
        }
    }

    fn capabilities(&self) -> Vec<String> {
        let mut lines = vec![
            self.config.hostname.clone(),
            "PIPELINING".to_string(),
            "8BITMIME".to_string(),
            "SMTPUTF8".to_string(),
            "ENHANCEDSTATUSCODES".to_string(),
            format!("SIZE {}", self.config.max_size),
        ];
        if self.config.offer_starttls {
            lines.push("STARTTLS".to_string());
        }
        if self.config.auth_allowed {
            lines.push("AUTH PLAIN LOGIN".to_string());
        }
        lines
    }

    fn reset(&mut self) {
        self.from = None;
        self.recipients.clear();
    }

    async fn auth<R: Relay>(&mut self, relay: &R, mechanism: u64, initial: String) -> Step<()> {
        if !self.config.auth_allowed {
            return self.refuse(538, "5.7.11 Encryption required: STARTTLS first");
        }
        if self.user.is_some() {
            return self.refuse(503, "5.5.1 Already authenticated");
        }
        if self.from.is_some() {
            return self.refuse(503, "5.5.1 AUTH is not allowed during a transaction");
        }
        let (user, password) = match mechanism {
            smtp_proto::AUTH_PLAIN => {
                let response = if initial.is_empty() {
                    self.reply(334, &[""]);
                    self.sasl_line().await?
                } else {
                    initial
                };
                match plain(&response) {
                    Some(credentials) => credentials,
                    None => return self.refuse(501, "5.5.2 Malformed AUTH PLAIN response"),
                }
            }
            smtp_proto::AUTH_LOGIN => {
                let user = if initial.is_empty() {
                    self.reply(334, &["VXNlcm5hbWU6"]);
                    self.sasl_line().await?
                } else {
                    initial
                };
                self.reply(334, &["UGFzc3dvcmQ6"]);
                let password = self.sasl_line().await?;
                match (decode(&user), decode(&password)) {
                    (Some(user), Some(password)) => (user, password),
                    _ => return self.refuse(501, "5.5.2 Malformed AUTH LOGIN response"),
                }
            }
            _ => return self.refuse(504, "5.5.4 Use AUTH PLAIN or AUTH LOGIN"),
        };
        match relay.authenticate(&user, &password).await {
            Ok(name) => {
                self.user = Some(name);
                self.reply(235, &["2.7.0 Authentication successful"]);
            }
            Err(refusal) => self.send(&refusal),
        }
        Ok(())
    }

    async fn mail<R: Relay>(&mut self, relay: &R, from: String, size: usize) {
        if relay.needs_auth() && self.user.is_none() {
            return self.reply(530, &["5.7.0 Authentication required"]);
        }
        if self.from.is_some() {
            return self.reply(503, &["5.5.1 A transaction is already open; RSET first"]);
        }
        if size > self.config.max_size {
            let text = format!(
                "5.3.4 Message size exceeds the limit of {} bytes",
                self.config.max_size
            );
            return self.reply(552, &[&text]);
        }
        match relay.accept_sender(self.user.as_deref(), &from).await {
            Ok(()) => {
                self.from = Some(from);
                self.reply(250, &["2.1.0 OK"]);
            }
            Err(refusal) => self.send(&refusal),
        }
    }

    fn rcpt(&mut self, to: String) {
        if self.from.is_none() {
            return self.reply(503, &["5.5.1 MAIL first"]);
        }
        if to.is_empty() {
            return self.reply(501, &["5.1.3 A recipient address is required"]);
        }
        if self.recipients.len() >= self.config.max_recipients {
            let text = format!(
                "4.5.3 Too many recipients: at most {} per message",
                self.config.max_recipients
            );
            return self.reply(452, &[&text]);
        }
        self.recipients.push(to);
        self.reply(250, &["2.1.5 OK"]);
    }

    async fn data<R: Relay>(&mut self, relay: &R) -> Step<()> {
        let Some(from) = self.from.clone() else {
            self.reply(503, &["5.5.1 MAIL first"]);
            return Ok(());
        };
        if self.recipients.is_empty() {
            self.reply(554, &["5.5.1 No valid recipients"]);
            return Ok(());
        }
        self.reply(354, &["Go ahead, end with <CRLF>.<CRLF>"]);
        let mut receiver = DataReceiver::new();
        let mut message = Vec::new();
        let mut too_big = false;
        loop {
            if self.pending.is_empty() {
                self.read_more().await?;
            }
            let mut bytes = self.pending.iter();
            let done = receiver.ingest(&mut bytes, &mut message);
            let consumed = self.pending.len() - bytes.as_slice().len();
            self.pending.drain(..consumed);
            if message.len() > self.config.max_size {
                // Read to the end of the message, keeping none of it.
                too_big = true;
                message.clear();
            }
            if done {
                break;
            }
        }
        let envelope = Envelope {
            from,
            recipients: std::mem::take(&mut self.recipients),
            user: self.user.clone(),
            client_name: self.client_name.clone(),
        };
        self.from = None;
        if too_big {
            let text = format!(
                "5.3.4 Message size exceeds the limit of {} bytes",
                self.config.max_size
            );
            self.reply(552, &[&text]);
            return Ok(());
        }
        match relay.submit(&envelope, message).await {
            Ok(id) => {
                let text = format!("2.0.0 OK {id}");
                self.reply(250, &[&text]);
            }
            Err(refusal) => self.send(&refusal),
        }
        Ok(())
    }

    /// The next command, parsed; bad lines are answered here and counted.
    async fn next_command(&mut self) -> Step<Command> {
        loop {
            if self.pending.is_empty() {
                self.read_more().await?;
            }
            let mut bytes = self.pending.iter();
            let parsed = self.requests.ingest(&mut bytes).map(Command::from_request);
            let consumed = self.pending.len() - bytes.as_slice().len();
            self.pending.drain(..consumed);
            match parsed {
                Ok(command) => return Ok(command),
                Err(ParseError::NeedsMoreData { .. }) => {
                    if self.pending.is_empty() {
                        self.read_more().await?;
                    }
                }
                Err(e) => {
                    let (code, text) = parse_refusal(&e);
                    self.refuse(code, text)?;
                }
            }
        }
    }

    /// One line of a SASL exchange, without its line end; `*` cancels (RFC 4954).
    async fn sasl_line(&mut self) -> Step<String> {
        loop {
            if let Some(end) = self.pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=end).collect();
                let line = String::from_utf8_lossy(&line).trim_end().to_string();
                return Ok(line);
            }
            if self.pending.len() > MAX_SASL_LINE {
                self.pending.clear();
                self.reply(500, &["5.5.6 Authentication line too long"]);
                return Ok(String::new());
            }
            self.read_more().await?;
        }
    }

    /// Writes what is queued, then waits for more from the client.
    async fn read_more(&mut self) -> Step<()> {
        self.flush().await?;
        let mut chunk = [0u8; 8192];
        let read = tokio::select! {
            read = tokio::time::timeout(self.config.timeout, self.stream.read(&mut chunk)) => read,
            () = &mut self.stopping => {
                self.reply(421, &["4.3.2 Service shutting down, try again later"]);
                let _ = self.flush().await;
                return Err(Ended::ShuttingDown);
            }
        };
        let read = match read {
            Err(_) => {
                self.reply(421, &["4.4.2 Idle too long, closing connection"]);
                let _ = self.flush().await;
                return Err(Ended::TimedOut);
            }
            Ok(Err(_)) | Ok(Ok(0)) => return Err(Ended::Closed),
            Ok(Ok(n)) => n,
        };
        self.pending.extend_from_slice(&chunk[..read]);
        Ok(())
    }

    async fn flush(&mut self) -> Step<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let write = async {
            self.stream.write_all(&self.out).await?;
            self.stream.flush().await
        };
        match tokio::time::timeout(self.config.timeout, write).await {
            Ok(Ok(())) => {
                self.out.clear();
                Ok(())
            }
            _ => Err(Ended::Closed),
        }
    }

    fn reply(&mut self, code: u16, lines: &[&str]) {
        self.send(&Reply::new(code, lines));
    }

    fn send(&mut self, reply: &Reply) {
        reply.encode(&mut self.out);
    }

    /// A refusal of a bad command, counted: too many and the session is closed.
    fn refuse(&mut self, code: u16, text: &str) -> Step<()> {
        self.reply(code, &[text]);
        self.errors += 1;
        if self.errors >= MAX_ERRORS {
            self.reply(421, &["4.7.0 Too many errors, closing connection"]);
            return Err(Ended::TooManyErrors);
        }
        Ok(())
    }
}

fn parse_refusal(e: &ParseError) -> (u16, &'static str) {
    match e {
        ParseError::UnknownCommand => (500, "5.5.1 Unrecognized command"),
        ParseError::InvalidSenderAddress => (501, "5.1.7 Bad sender address syntax"),
        ParseError::InvalidRecipientAddress => (501, "5.1.3 Bad recipient address syntax"),
        ParseError::ResponseTooLong => (500, "5.5.2 Line too long"),
        ParseError::UnsupportedParameter { .. } | ParseError::InvalidParameter { .. } => {
            (555, "5.5.4 Unsupported or invalid parameter")
        }
        _ => (501, "5.5.4 Syntax error"),
    }
}

fn decode(text: &str) -> Option<String> {
    String::from_utf8(STANDARD.decode(text.trim()).ok()?).ok()
}

/// AUTH PLAIN's response: authorization identity, user and password, NUL-separated (RFC 4616).
/// An authorization identity other than the user's own is not supported.
fn plain(response: &str) -> Option<(String, String)> {
    let decoded = STANDARD.decode(response.trim()).ok()?;
    let mut parts = decoded.split(|b| *b == 0);
    let (authz, user, password) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || (!authz.is_empty() && authz != user) {
        return None;
    }
    Some((
        String::from_utf8(user.to_vec()).ok()?,
        String::from_utf8(password.to_vec()).ok()?,
    ))
}
