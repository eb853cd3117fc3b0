//! One SMTP session, command by command, answering as Gmail does.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use super::delivery::{Envelope, deliver};
use super::replies;
use crate::net::{Conn, Line, ReadError, Wire, handshake_timeout};
use crate::sasl;
use crate::world::{ConnectionSlot, Protocol, SmtpStage, World};

/// Commands are short; the longest legitimate one is AUTH with a 2 KB access token in base64.
const MAX_COMMAND: usize = 12 * 1024;

enum Flow {
    Go,
    Stop,
}

enum ClientLine {
    Got(Vec<u8>),
    Stop,
}

pub async fn serve_connection(
    world: Arc<World>,
    acceptor: TlsAcceptor,
    tcp: TcpStream,
    peer: SocketAddr,
    implicit_tls: bool,
) {
    world.with(|s| s.counters.smtp_connections += 1);
    let conn = if implicit_tls {
        match tokio::time::timeout(
            handshake_timeout(&world, |s| s.settings.smtp.idle_timeout_ms),
            acceptor.accept(tcp),
        )
        .await
        {
            Ok(Ok(tls)) => Conn::Tls(Box::new(tls)),
            _ => return,
        }
    } else {
        Conn::Plain(tcp)
    };
    let mut session = Session {
        world,
        wire: Wire::new(conn, peer),
        acceptor,
        id: crate::world::session_id(),
        greeted: false,
        account: None,
        slot: None,
        mail_from: None,
        rcpts: Vec::new(),
        chunks: None,
    };
    // 587 greets as smtp.gmail.com, 465 as mx.google.com (google.md §3).
    let host = if implicit_tls {
        "mx.google.com"
    } else {
        "smtp.gmail.com"
    };
    let _ = session.run(host).await;
    session.wire.close().await;
}

struct Session {
    world: Arc<World>,
    wire: Wire,
    acceptor: TlsAcceptor,
    id: String,
    greeted: bool,
    account: Option<String>,
    slot: Option<ConnectionSlot>,
    mail_from: Option<String>,
    rcpts: Vec<String>,
    /// A BDAT transfer in progress.
    chunks: Option<Body>,
}

#[derive(Default)]
struct Body {
    data: Vec<u8>,
    oversize: bool,
}

impl Body {
    fn push(&mut self, bytes: &[u8], max: usize) {
        if self.oversize || self.data.len() + bytes.len() > max {
            self.oversize = true;
            self.data = Vec::new();
        } else {
            self.data.extend_from_slice(bytes);
        }
    }
}

impl Session {
    async fn run(&mut self, host: &str) -> io::Result<()> {
        if let Some(flow) = self.fault(SmtpStage::Greeting).await? {
            if matches!(flow, Flow::Stop) {
                return Ok(());
            }
        } else {
            self.send(&replies::greeting(host, &self.id)).await?;
        }
        loop {
            let line = match self.read_line(MAX_COMMAND).await? {
                ClientLine::Got(line) => line,
                ClientLine::Stop => return Ok(()),
            };
            if let Flow::Stop = self.command(&line).await? {
                return Ok(());
            }
        }
    }

    fn idle(&self) -> Duration {
        Duration::from_millis(self.world.with(|s| s.settings.smtp.idle_timeout_ms))
    }

    fn max_size(&self) -> usize {
        self.world.with(|s| s.settings.smtp.max_message_size)
    }

    async fn send(&mut self, text: &str) -> io::Result<()> {
        self.wire.write(text.as_bytes()).await
    }

    async fn reply(&mut self, text: &str) -> io::Result<Flow> {
        self.send(text).await?;
        Ok(Flow::Go)
    }

    /// Reads the next line, answering an idle client with Gmail's timeout and an overlong line
    /// with an error (then reading on).
    async fn read_line(&mut self, max: usize) -> io::Result<ClientLine> {
        loop {
            match self.wire.read_line(max, self.idle()).await {
                Ok(Line::Complete(line)) => return Ok(ClientLine::Got(line)),
                Ok(Line::TooLong) => self.send(&replies::line_too_long(&self.id)).await?,
                Err(ReadError::Idle) => {
                    self.send(&replies::idle_timeout(&self.id)).await?;
                    return Ok(ClientLine::Stop);
                }
                Err(ReadError::Closed) => return Ok(ClientLine::Stop),
            }
        }
    }

    /// Fires an armed fault for this stage; `Some` means the fault replaced the normal reply.
    async fn fault(&mut self, stage: SmtpStage) -> io::Result<Option<Flow>> {
        let account = self.account.clone();
        let Some(fault) = self
            .world
            .with(|s| s.take_smtp_fault(stage, account.as_deref()))
        else {
            return Ok(None);
        };
        if fault.hold {
            self.world.hold_session().await;
            if fault.reply.is_none() && !fault.close {
                return Ok(None);
            }
        }
        if let Some(reply) = &fault.reply {
            self.send(&replies::fault(reply, &self.id)).await?;
        }
        // A fault without a reply and without close would leave the client waiting forever.
        Ok(Some(if fault.close || fault.reply.is_none() {
            Flow::Stop
        } else {
            Flow::Go
        }))
    }

    fn reset_transaction(&mut self) {
        self.mail_from = None;
        self.rcpts.clear();
        self.chunks = None;
    }

    async fn command(&mut self, line: &[u8]) -> io::Result<Flow> {
        let text = String::from_utf8_lossy(line);
        let (verb, args) = text.split_once(' ').unwrap_or((&text, ""));
        let args = args.trim();
        match verb.to_ascii_uppercase().as_str() {
            "EHLO" => self.ehlo(args, true).await,
            "HELO" => self.ehlo(args, false).await,
            "STARTTLS" => self.starttls().await,
            "AUTH" => self.auth(args).await,
            "MAIL" => self.mail(args).await,
            "RCPT" => self.rcpt(args).await,
            "DATA" => self.data().await,
            "BDAT" => self.bdat(args).await,
            "RSET" => {
                if let Some(flow) = self.fault(SmtpStage::Rset).await? {
                    return Ok(flow);
                }
                self.reset_transaction();
                self.reply(&replies::flushed(&self.id)).await
            }
            "NOOP" => {
                if let Some(flow) = self.fault(SmtpStage::Noop).await? {
                    return Ok(flow);
                }
                self.reply(&replies::noop(&self.id)).await
            }
            "QUIT" => {
                if self.fault(SmtpStage::Quit).await?.is_none() {
                    self.send(&replies::closing(&self.id)).await?;
                }
                Ok(Flow::Stop)
            }
            "VRFY" => self.reply(&replies::vrfy(&self.id)).await,
            "HELP" => self.reply(&replies::help(&self.id)).await,
            _ => self.reply(&replies::unrecognized(&self.id)).await,
        }
    }

    async fn ehlo(&mut self, args: &str, extended: bool) -> io::Result<Flow> {
        if let Some(flow) = self.fault(SmtpStage::Ehlo).await? {
            return Ok(flow);
        }
        if args.is_empty() {
            self.send(&replies::empty_helo(&self.id)).await?;
            return Ok(Flow::Stop);
        }
        self.greeted = true;
        self.reset_transaction();
        let reply = if extended {
            replies::ehlo(
                &self.wire.peer.ip().to_string(),
                self.wire.is_tls(),
                self.max_size(),
            )
        } else {
            replies::helo()
        };
        self.reply(&reply).await
    }

    async fn starttls(&mut self) -> io::Result<Flow> {
        if self.wire.is_tls() {
            return self.reply(&replies::tls_already_active(&self.id)).await;
        }
        if let Some(flow) = self.fault(SmtpStage::Starttls).await? {
            return Ok(flow);
        }
        self.send(replies::READY_TLS).await?;
        let acceptor = self.acceptor.clone();
        match tokio::time::timeout(
            handshake_timeout(&self.world, |s| s.settings.smtp.idle_timeout_ms),
            self.wire.start_tls(&acceptor),
        )
        .await
        {
            Ok(Ok(())) => {
                // RFC 3207: the client starts over with EHLO; nothing from before TLS counts.
                self.greeted = false;
                self.reset_transaction();
                Ok(Flow::Go)
            }
            _ => Ok(Flow::Stop),
        }
    }

    /// Checks that apply to every command of a mail transaction, in Gmail's order.
    async fn transaction_gate(&mut self, stage: SmtpStage) -> io::Result<Option<Flow>> {
        if !self.wire.is_tls() {
            return self
                .reply(&replies::must_starttls(&self.id))
                .await
                .map(Some);
        }
        if !self.greeted {
            return self.reply(&replies::helo_first(&self.id)).await.map(Some);
        }
        if let Some(flow) = self.fault(stage).await? {
            return Ok(Some(flow));
        }
        if self.account.is_none() {
            return self.reply(&replies::want_auth(&self.id)).await.map(Some);
        }
        Ok(None)
    }

    async fn auth(&mut self, args: &str) -> io::Result<Flow> {
        if !self.wire.is_tls() {
            return self.reply(&replies::must_starttls(&self.id)).await;
        }
        if !self.greeted {
            return self.reply(&replies::helo_first(&self.id)).await;
        }
        if let Some(flow) = self.fault(SmtpStage::Auth).await? {
            return Ok(flow);
        }
        if self.account.is_some() {
            return self.reply(&replies::already_authenticated(&self.id)).await;
        }
        let mut parts = args.split_ascii_whitespace();
        let mechanism = parts.next().unwrap_or_default().to_ascii_uppercase();
        let initial = parts.next().map(|s| s.as_bytes().to_vec());
        match mechanism.as_str() {
            "XOAUTH2" | "OAUTHBEARER" => self.auth_bearer(&mechanism, initial).await,
            "PLAIN" | "LOGIN" | "XOAUTH" | "PLAIN-CLIENTTOKEN" => {
                self.auth_password(&mechanism, initial).await
            }
            "" => self.reply(&replies::syntax_error(&self.id)).await,
            _ => self.reply(&replies::unrecognized_auth(&self.id)).await,
        }
    }

    /// The client's SASL response: the initial response if it sent one, else after a `334`.
    async fn sasl_response(
        &mut self,
        initial: Option<Vec<u8>>,
        prompt: &str,
    ) -> io::Result<ClientLine> {
        if let Some(initial) = initial {
            return Ok(ClientLine::Got(initial));
        }
        self.send(&format!("334 {prompt}\r\n")).await?;
        self.read_line(MAX_COMMAND).await
    }

    async fn auth_bearer(&mut self, mechanism: &str, initial: Option<Vec<u8>>) -> io::Result<Flow> {
        let response = match self.sasl_response(initial, "").await? {
            ClientLine::Got(r) => r,
            ClientLine::Stop => return Ok(Flow::Stop),
        };
        if response == b"*" {
            return self.reply(&replies::auth_aborted(&self.id)).await;
        }
        let Ok(decoded) = sasl::decode(&response) else {
            self.world.with(|s| s.counters.smtp_logins.record(false));
            return self.reply(&replies::cannot_decode(&self.id)).await;
        };
        let bearer = if mechanism == "XOAUTH2" {
            sasl::parse_xoauth2(&decoded)
        } else {
            sasl::parse_oauthbearer(&decoded)
        };
        let now = self.world.now();
        let account = bearer
            .ok()
            .and_then(|b| self.world.with(|s| s.mail_login(&b, now)));
        let Some(account) = account else {
            self.world.with(|s| s.counters.smtp_logins.record(false));
            let challenge = if mechanism == "XOAUTH2" {
                sasl::XOAUTH2_FAILURE_CHALLENGE.to_string()
            } else {
                sasl::oauthbearer_failure_challenge()
            };
            self.send(&format!("334 {challenge}\r\n")).await?;
            // Gmail answers 535 to whatever comes next: the empty line SASL asks for, or a command
            // from a client that ignored the 334 (Flectra's MAIL FROM).
            return match self.read_line(MAX_COMMAND).await? {
                ClientLine::Got(_) => self.reply(&replies::bad_credentials(&self.id)).await,
                ClientLine::Stop => Ok(Flow::Stop),
            };
        };
        let Some(slot) = self.world.claim_connection(Protocol::Smtp, &account) else {
            self.world.with(|s| s.counters.smtp_logins.record(false));
            self.send(&replies::try_again_later()).await?;
            return Ok(Flow::Stop);
        };
        self.world.with(|s| s.counters.smtp_logins.record(true));
        self.account = Some(account);
        self.slot = Some(slot);
        self.reply(replies::AUTH_ACCEPTED).await
    }

    /// Password mechanisms: Google refuses passwords from software (the reason OAuth exists here).
    async fn auth_password(
        &mut self,
        mechanism: &str,
        initial: Option<Vec<u8>>,
    ) -> io::Result<Flow> {
        let prompts: &[&str] = if mechanism == "LOGIN" {
            &["VXNlcm5hbWU6", "UGFzc3dvcmQ6"]
        } else {
            &[""]
        };
        let mut initial = initial;
        for prompt in prompts {
            match self.sasl_response(initial.take(), prompt).await? {
                ClientLine::Got(r) if r == b"*" => {
                    return self.reply(&replies::auth_aborted(&self.id)).await;
                }
                ClientLine::Got(r) if sasl::decode(&r).is_err() => {
                    return self.reply(&replies::cannot_decode(&self.id)).await;
                }
                ClientLine::Got(_) => {}
                ClientLine::Stop => return Ok(Flow::Stop),
            }
        }
        self.world.with(|s| s.counters.smtp_logins.record(false));
        self.reply(&replies::bad_credentials(&self.id)).await
    }

    async fn mail(&mut self, args: &str) -> io::Result<Flow> {
        if let Some(flow) = self.transaction_gate(SmtpStage::Mail).await? {
            return Ok(flow);
        }
        if self.mail_from.is_some() {
            return self.reply(&replies::nested_mail(&self.id)).await;
        }
        let Some((address, params)) = parse_path(args, "FROM:") else {
            return self.reply(&replies::syntax_error(&self.id)).await;
        };
        let declared_size = params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("SIZE"))
            .and_then(|(_, v)| v.parse::<usize>().ok());
        if declared_size.is_some_and(|size| size > self.max_size()) {
            return self.reply(&replies::too_big(&self.id)).await;
        }
        let account = self.account.clone().unwrap_or_default();
        let now = self.world.now();
        if self.world.with(|s| s.quota_left(&account, now)) == 0 {
            return self.reply(&replies::quota_exceeded(&self.id)).await;
        }
        self.mail_from = Some(address);
        self.rcpts.clear();
        self.reply(&replies::mail_ok(&self.id)).await
    }

    async fn rcpt(&mut self, args: &str) -> io::Result<Flow> {
        if let Some(flow) = self.transaction_gate(SmtpStage::Rcpt).await? {
            return Ok(flow);
        }
        if self.mail_from.is_none() {
            return self.reply(&replies::mail_first(&self.id)).await;
        }
        let Some((address, _)) = parse_path(args, "TO:") else {
            return self.reply(&replies::syntax_error(&self.id)).await;
        };
        if !is_mailbox(&address) {
            return self
                .reply(&replies::bad_recipient(&address, &self.id))
                .await;
        }
        let max = self.world.with(|s| s.settings.smtp.max_recipients);
        if self.rcpts.len() >= max {
            return self.reply(&replies::too_many_recipients(&self.id)).await;
        }
        self.rcpts.push(address);
        self.reply(&replies::rcpt_ok(&self.id)).await
    }

    /// Ready for a message body, or the reply that says why not.
    async fn body_gate(&mut self, stage: SmtpStage) -> io::Result<Option<Flow>> {
        if let Some(flow) = self.transaction_gate(stage).await? {
            return Ok(Some(flow));
        }
        if self.mail_from.is_none() {
            return self.reply(&replies::mail_first(&self.id)).await.map(Some);
        }
        if self.rcpts.is_empty() {
            return self.reply(&replies::rcpt_first(&self.id)).await.map(Some);
        }
        Ok(None)
    }

    async fn data(&mut self) -> io::Result<Flow> {
        if let Some(flow) = self.body_gate(SmtpStage::Data).await? {
            return Ok(flow);
        }
        self.send(&replies::go_ahead(&self.id)).await?;
        let max = self.max_size();
        let mut body = Body::default();
        loop {
            let line = match self.wire.read_line(max, self.idle()).await {
                Ok(Line::Complete(line)) => line,
                Ok(Line::TooLong) => {
                    body.oversize = true;
                    continue;
                }
                Err(ReadError::Idle) => {
                    self.send(&replies::idle_timeout(&self.id)).await?;
                    return Ok(Flow::Stop);
                }
                Err(ReadError::Closed) => return Ok(Flow::Stop),
            };
            if line == b"." {
                break;
            }
            let unstuffed = line.strip_prefix(b".").unwrap_or(&line);
            body.push(unstuffed, max);
            body.push(b"\r\n", max);
        }
        self.finish_message(body).await
    }

    async fn bdat(&mut self, args: &str) -> io::Result<Flow> {
        let mut parts = args.split_ascii_whitespace();
        let Some(size) = parts.next().and_then(|s| s.parse::<usize>().ok()) else {
            // Without a size we cannot tell where the chunk ends; the session cannot go on.
            self.send(&replies::syntax_error(&self.id)).await?;
            return Ok(Flow::Stop);
        };
        let last = parts.next().is_some_and(|p| p.eq_ignore_ascii_case("LAST"));
        // RFC 3030: the chunk is read whatever the verdict, so the stream stays in step.
        let max = self.max_size();
        let mut body = self.chunks.take().unwrap_or_default();
        if body.oversize || body.data.len() + size > max {
            body.oversize = true;
            body.data = Vec::new();
            if self.wire.skip(size, self.idle()).await.is_err() {
                return Ok(Flow::Stop);
            }
        } else {
            match self.wire.read_exact(size, self.idle()).await {
                Ok(bytes) => body.push(&bytes, max),
                Err(_) => return Ok(Flow::Stop),
            }
        }
        let stage = if last {
            SmtpStage::DataEnd
        } else {
            SmtpStage::Data
        };
        if let Some(flow) = self.body_gate(stage).await? {
            self.chunks = None;
            return Ok(flow);
        }
        if last {
            self.finish_message(body).await
        } else {
            self.chunks = Some(body);
            self.reply(&replies::chunk_ok(&self.id)).await
        }
    }

    async fn finish_message(&mut self, body: Body) -> io::Result<Flow> {
        let mail_from = self.mail_from.take().unwrap_or_default();
        let rcpts = std::mem::take(&mut self.rcpts);
        self.chunks = None;
        if let Some(flow) = self.fault(SmtpStage::DataEnd).await? {
            return Ok(flow);
        }
        if body.oversize {
            return self.reply(&replies::too_big(&self.id)).await;
        }
        let account = self.account.clone().unwrap_or_default();
        let peer_ip = self.wire.peer.ip().to_string();
        deliver(
            &self.world,
            &Envelope {
                account: &account,
                session: &self.id,
                peer_ip: &peer_ip,
                mail_from: &mail_from,
                rcpt_to: &rcpts,
            },
            &body.data,
        );
        if let Some(flow) = self.fault(SmtpStage::Delivered).await? {
            return Ok(flow);
        }
        let now = self.world.now();
        self.reply(&replies::accepted(now, &self.id)).await
    }
}

/// `FROM:<a@b> SIZE=10` -> ("a@b", [("SIZE", "10")]). The keyword is case-insensitive and may be
/// followed by spaces before the path.
fn parse_path(args: &str, keyword: &str) -> Option<(String, Vec<(String, String)>)> {
    let head = args.get(..keyword.len())?;
    if !head.eq_ignore_ascii_case(keyword) {
        return None;
    }
    let rest = args[keyword.len()..].trim_start();
    let rest = rest.strip_prefix('<')?;
    let end = rest.find('>')?;
    let address = rest[..end].trim().to_string();
    if address.contains([' ', '<', '>']) {
        return None;
    }
    let params = rest[end + 1..]
        .split_ascii_whitespace()
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (p.to_string(), String::new()),
        })
        .collect();
    Some((address, params))
}

fn is_mailbox(address: &str) -> bool {
    match address.rsplit_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_parse_with_params() {
        assert_eq!(
            parse_path("FROM:<a@b.c> SIZE=10 BODY=8BITMIME", "FROM:"),
            Some((
                "a@b.c".to_string(),
                vec![
                    ("SIZE".to_string(), "10".to_string()),
                    ("BODY".to_string(), "8BITMIME".to_string())
                ]
            ))
        );
        assert_eq!(
            parse_path("from: <>", "FROM:").map(|p| p.0),
            Some(String::new())
        );
        assert_eq!(parse_path("TO:a@b.c", "TO:"), None);
        assert_eq!(parse_path("T", "TO:"), None);
    }

    #[test]
    fn mailboxes_need_a_local_part_and_a_domain() {
        assert!(is_mailbox("a@b.c"));
        assert!(!is_mailbox("a@b"));
        assert!(!is_mailbox("@b.c"));
        assert!(!is_mailbox("nobody"));
    }
}
