//! A client session over any stream: greeting, EHLO, STARTTLS (the handshake is the caller's),
//! AUTH, pipelined MAIL/RCPT/DATA, the message, RSET, QUIT. Every wait for a reply and every write
//! is bounded by the command timeout, so a peer that stops answering or reading is caught.

use std::future::Future;
use std::time::Duration;

use secrecy::ExposeSecret;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::dot::DotStuffer;
use crate::sasl::{Credentials, decode_challenge};
use crate::{Command, Error, Reply, Stage, reply};

/// The final reply may take this many command timeouts (60 s → 10 minutes, as RFC 5321 says).
const FINAL_REPLY_FACTOR: u32 = 10;
/// How much of a message goes per write; each write has the command timeout to itself.
const BODY_CHUNK: usize = 64 * 1024;

pub struct ClientSession<S> {
    stream: S,
    buffer: Vec<u8>,
    timeout: Duration,
    ehlo_name: String,
    greeting: Reply,
    /// EHLO keywords, uppercase (`AUTH XOAUTH2 ...`, `SIZE 35882577`, ...).
    capabilities: Vec<String>,
    abandoned: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> ClientSession<S> {
    /// Reads the greeting, which must be 220, and says EHLO. `timeout` bounds each wait.
    pub async fn greet(stream: S, timeout: Duration, ehlo_name: &str) -> Result<Self, Error> {
        let mut session = ClientSession {
            stream,
            buffer: Vec::new(),
            timeout,
            ehlo_name: ehlo_name.to_string(),
            greeting: Reply::new(0, &[]),
            capabilities: Vec::new(),
            abandoned: false,
        };
        session.greeting = session.expect(Stage::Greeting, &[220]).await?;
        session.ehlo().await?;
        Ok(session)
    }

    /// STARTTLS: on the server's 220 the stream goes to `upgrade` (the TLS handshake, the
    /// caller's business), and the session starts over on what comes back with a new EHLO.
    pub async fn starttls<T, F, Fut>(mut self, upgrade: F) -> Result<ClientSession<T>, Error>
    where
        T: AsyncRead + AsyncWrite + Unpin,
        F: FnOnce(S) -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        if !self.offers("STARTTLS") {
            return Err(Error::NoStartTls);
        }
        self.command(Command::StartTls, &[220]).await?;
        let stream = upgrade(self.stream).await?;
        // Whatever the server sent before the handshake is not trusted (RFC 3207 §6): the
        // buffer and the capabilities are dropped, and EHLO asks again.
        let mut session = ClientSession {
            stream,
            buffer: Vec::new(),
            timeout: self.timeout,
            ehlo_name: self.ehlo_name,
            greeting: self.greeting,
            capabilities: Vec::new(),
            abandoned: false,
        };
        session.ehlo().await?;
        Ok(session)
    }

    async fn ehlo(&mut self) -> Result<(), Error> {
        let name = self.ehlo_name.clone();
        self.capabilities = self
            .command(Command::Ehlo(&name), &[250])
            .await?
            .lines
            .iter()
            .skip(1)
            .map(|l| l.trim().to_ascii_uppercase())
            .collect();
        Ok(())
    }

    pub fn greeting(&self) -> &Reply {
        &self.greeting
    }

    /// The EHLO keywords with their parameters, uppercase.
    pub fn capabilities(&self) -> &[String] {
        &self.capabilities
    }

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

    /// The stream, to ask it about TLS.
    pub fn get_ref(&self) -> &S {
        &self.stream
    }

    /// Sends one command and reads the reply, which must have one of `expected` codes.
    pub async fn command(
        &mut self,
        command: Command<'_>,
        expected: &[u16],
    ) -> Result<Reply, Error> {
        let mut line = Vec::new();
        command.encode(&mut line)?;
        self.send(command.stage(), &line).await?;
        self.expect(command.stage(), expected).await
    }

    async fn send(&mut self, stage: Stage, bytes: &[u8]) -> Result<(), Error> {
        let write = async {
            self.stream.write_all(bytes).await?;
            self.stream.flush().await
        };
        match tokio::time::timeout(self.timeout, write).await {
            Err(_) => Err(self.timed_out(stage)),
            Ok(Err(_)) => Err(Error::Closed(stage)),
            Ok(Ok(())) => Ok(()),
        }
    }

    fn timed_out(&self, stage: Stage) -> Error {
        Error::Timeout {
            stage,
            secs: self.timeout.as_secs(),
        }
    }

    async fn expect(&mut self, stage: Stage, expected: &[u16]) -> Result<Reply, Error> {
        let reply = self.read_reply(stage).await?;
        if expected.contains(&reply.code) {
            Ok(reply)
        } else {
            Err(Error::refused(stage, reply))
        }
    }

    /// The next reply, whatever its code.
    pub async fn read_reply(&mut self, stage: Stage) -> Result<Reply, Error> {
        loop {
            match reply::parse(&mut self.buffer) {
                Ok(Some(reply)) => return Ok(reply),
                Ok(None) => {}
                Err(e) => {
                    return Err(Error::Protocol {
                        stage,
                        detail: e.to_string(),
                    });
                }
            }
            let mut chunk = [0u8; 4096];
            let read = tokio::time::timeout(self.timeout, self.stream.read(&mut chunk))
                .await
                .map_err(|_| self.timed_out(stage))?
                .map_err(|_| Error::Closed(stage))?;
            if read == 0 {
                return Err(Error::Closed(stage));
            }
            self.buffer.extend_from_slice(&chunk[..read]);
        }
    }

    /// AUTH with `credentials`. For XOAUTH2 and OAUTHBEARER a `334` is Google's error report:
    /// the session acknowledges it as SASL asks, reads the final refusal (`535`), and reports both,
    /// the challenge decoded. LOGIN answers the server's two prompts.
    pub async fn auth(&mut self, credentials: Credentials<'_>) -> Result<(), Error> {
        let stage = Stage::Auth;
        let initial = credentials.initial_response();
        let mut line = Vec::new();
        Command::Auth {
            mechanism: credentials.mechanism(),
            initial: initial.as_ref().map(|i| i.expose_secret()),
        }
        .encode(&mut line)?;
        self.send(stage, &line).await?;
        let mut reply = self.read_reply(stage).await?;
        if let Some(answers) = credentials.login_answers() {
            for answer in answers {
                if reply.code != 334 {
                    break;
                }
                self.send_line(stage, answer.expose_secret()).await?;
                reply = self.read_reply(stage).await?;
            }
        } else if reply.code == 334
            && let Some(acknowledgement) = credentials.error_acknowledgement()
        {
            let challenge = reply.lines.first().and_then(|l| decode_challenge(l));
            self.send_line(stage, acknowledgement).await?;
            let reply = self.read_reply(stage).await?;
            return Err(Error::Refused {
                stage,
                reply,
                challenge,
            });
        }
        match reply.code {
            235 => Ok(()),
            _ => Err(Error::refused(stage, reply)),
        }
    }

    async fn send_line(&mut self, stage: Stage, text: &str) -> Result<(), Error> {
        let mut line = Vec::with_capacity(text.len() + 2);
        line.extend_from_slice(text.as_bytes());
        line.extend_from_slice(b"\r\n");
        self.send(stage, &line).await
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
    ) -> Result<Vec<(String, Reply)>, Error> {
        if recipients.is_empty() {
            return Err(Error::BadArgument {
                stage: Stage::RcptTo,
                what: "a message needs at least one recipient",
            });
        }
        let (rcpt_replies, data_reply) = if self.offers("PIPELINING") {
            let mut batch = Vec::with_capacity(32 * (recipients.len() + 2));
            encode_envelope(&mut batch, from, recipients)?;
            self.send(Stage::MailFrom, &batch).await?;
            self.read_envelope(recipients).await?
        } else {
            self.stepwise_envelope(from, recipients).await?
        };
        self.judge_envelope(recipients, rcpt_replies, data_reply)
    }

    /// What the replies to an envelope mean: the recipients refused for good, or why the message
    /// cannot go (and whether an open DATA condemns the session).
    fn judge_envelope(
        &mut self,
        recipients: &[String],
        rcpt_replies: Vec<Reply>,
        data_reply: Reply,
    ) -> Result<Vec<(String, Reply)>, Error> {
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
            return Err(Error::refused(Stage::RcptTo, reply));
        }
        if refused.len() == recipients.len() {
            let (_, reply) = refused.swap_remove(0);
            return Err(Error::refused(Stage::RcptTo, reply));
        }
        if data_reply.code != 354 {
            return Err(Error::refused(Stage::Data, data_reply));
        }
        Ok(refused)
    }

    /// The replies to a pipelined MAIL, every RCPT and DATA, every one read whatever it says, to
    /// stay in step with the server.
    async fn read_envelope(&mut self, recipients: &[String]) -> Result<(Vec<Reply>, Reply), Error> {
        // A refused MAIL is the news even if the server then hangs up (421) before the others.
        let mail = self.read_reply(Stage::MailFrom).await?;
        let mut rcpt_replies = Vec::with_capacity(recipients.len());
        let mut broken = None;
        for _ in recipients {
            match self.read_reply(Stage::RcptTo).await {
                Ok(r) => rcpt_replies.push(r),
                Err(e) => {
                    broken = Some(e);
                    break;
                }
            }
        }
        let data = match broken {
            Some(e) => Err(e),
            None => self.read_reply(Stage::Data).await,
        };
        if mail.code != 250 {
            if data.as_ref().is_ok_and(|d| d.code == 354) {
                self.abandoned = true;
            }
            return Err(Error::refused(Stage::MailFrom, mail));
        }
        Ok((rcpt_replies, data?))
    }

    /// One command at a time, for servers without PIPELINING; DATA only once a recipient is
    /// taken, and no further RCPT after a temporary refusal.
    async fn stepwise_envelope(
        &mut self,
        from: &str,
        recipients: &[String],
    ) -> Result<(Vec<Reply>, Reply), Error> {
        self.command(Command::Mail(from), &[250]).await?;
        let mut rcpt_replies = Vec::with_capacity(recipients.len());
        for r in recipients {
            let reply = match self.command(Command::Rcpt(r), &[250, 251]).await {
                Ok(reply) => reply,
                Err(Error::Refused { reply, .. }) => reply,
                Err(e) => return Err(e),
            };
            if reply.is_temporary() {
                return Err(Error::refused(Stage::RcptTo, reply));
            }
            rcpt_replies.push(reply);
        }
        let data = if rcpt_replies.iter().any(Reply::is_positive) {
            self.command(Command::Data, &[354]).await?
        } else {
            // Nobody to send to: DATA is not opened, the caller reads the RCPT refusals.
            Reply::new(0, &[])
        };
        Ok((rcpt_replies, data))
    }

    /// The message after a 354, dot-stuffed with CRLF line ends, without the final dot (see
    /// [`Self::end_data`]). Written in chunks, each with its own timeout: a large message over a
    /// slow link goes as long as it keeps moving, and a peer that stops reading is caught.
    pub async fn write_body(&mut self, message: &[u8]) -> Result<(), Error> {
        let mut stuffer = DotStuffer::default();
        let mut out = Vec::with_capacity(BODY_CHUNK + BODY_CHUNK / 16);
        for chunk in message.chunks(BODY_CHUNK) {
            stuffer.push(chunk, &mut out);
            self.send(Stage::Data, &out).await?;
            out.clear();
        }
        stuffer.finish(&mut out);
        if out.is_empty() {
            return Ok(());
        }
        self.send(Stage::Data, &out).await
    }

    /// The final dot, and the server's verdict on the message. Once this is called, a failure
    /// other than a reply leaves the outcome unknown: the server may have taken the message.
    pub async fn end_data(&mut self) -> Result<Reply, Error> {
        self.send(Stage::DataEnd, b".\r\n").await?;
        self.final_reply().await
    }

    /// The final dot, with the next message's MAIL, RCPT and DATA behind it in the same write:
    /// RFC 2920 lets message content open a group, so messages back to back on one session cost
    /// one round trip each instead of two. Nothing of the next message can be delivered before
    /// its own final dot. Returns this message's verdict (as [`Self::end_data`]) and the next
    /// one's opening (as [`Self::open_data`]). Without PIPELINING it is one, then the other.
    pub async fn end_data_and_open(
        &mut self,
        from: &str,
        recipients: &[String],
    ) -> (Result<Reply, Error>, Result<Vec<(String, Reply)>, Error>) {
        let mut batch = b".\r\n".to_vec();
        if !self.offers("PIPELINING")
            || recipients.is_empty()
            || encode_envelope(&mut batch, from, recipients).is_err()
        {
            let verdict = self.end_data().await;
            let next = match &verdict {
                Ok(_) | Err(Error::Refused { .. }) => self.open_data(from, recipients).await,
                Err(_) => Err(Error::Closed(Stage::MailFrom)),
            };
            return (verdict, next);
        }
        if let Err(e) = self.send(Stage::DataEnd, &batch).await {
            return (Err(e), Err(Error::Closed(Stage::MailFrom)));
        }
        let verdict = self.final_reply().await;
        let next = match &verdict {
            // The server answered the dot and reads on: the next replies are the envelope's.
            Ok(_) | Err(Error::Refused { .. }) => match self.read_envelope(recipients).await {
                Ok((rcpt_replies, data_reply)) => {
                    self.judge_envelope(recipients, rcpt_replies, data_reply)
                }
                Err(e) => Err(e),
            },
            Err(_) => Err(Error::Closed(Stage::MailFrom)),
        };
        (verdict, next)
    }

    /// The server's verdict after the final dot.
    async fn final_reply(&mut self) -> Result<Reply, Error> {
        // The server takes in what is still in flight and checks the message before it answers:
        // RFC 5321 §4.5.3.2.6 gives the final reply 10 minutes against 5 for a command. Giving up
        // early makes an unknown outcome of a message that was about to be accepted.
        let command_timeout = self.timeout;
        self.timeout = command_timeout.saturating_mul(FINAL_REPLY_FACTOR);
        let verdict = self.expect(Stage::DataEnd, &[250]).await;
        self.timeout = command_timeout;
        verdict
    }

    /// True when the session was left mid-transaction and must be closed, not reused.
    pub fn abandoned(&self) -> bool {
        self.abandoned
    }

    pub async fn rset(&mut self) -> Result<Reply, Error> {
        self.command(Command::Rset, &[250]).await
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

/// MAIL, every RCPT and DATA, for one pipelined write.
fn encode_envelope(batch: &mut Vec<u8>, from: &str, recipients: &[String]) -> Result<(), Error> {
    Command::Mail(from).encode(batch)?;
    for r in recipients {
        Command::Rcpt(r).encode(batch)?;
    }
    Command::Data.encode(batch)
}
