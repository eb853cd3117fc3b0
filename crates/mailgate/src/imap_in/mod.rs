//! Incoming IMAP, the transport half: dial TCP, the verified TLS handshake, and async-imap's
//! client on the stream; then what the fetcher asks of a session: XOAUTH2, SELECT, the UIDs past
//! a point, the messages, `\Seen`, IDLE; folder names in IMAP's modified UTF-7. Every step is generic over the stream (tests play
//! Gmail's bytes from a script) and bounded in time. What a failure means for the incoming
//! server's status is decided in `domain/incoming.rs`.

use std::sync::Arc;
use std::time::Duration;

use async_imap::extensions::idle::IdleResponse;
use async_imap::{Authenticator, Client, Session};
use futures_util::TryStreamExt;
use secrecy::{ExposeSecret, SecretString};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// A session with Gmail's IMAP server.
pub type ImapSession = Session<TlsStream<TcpStream>>;

/// UIDs fetched in one command: a batch is stored in one transaction.
pub const FETCH_BATCH: usize = 50;

#[derive(Debug, thiserror::Error)]
pub enum ImapError {
    #[error("cannot connect to {target}: {detail}")]
    Connect { target: String, detail: String },
    #[error("TLS with {host} failed: {detail}")]
    Tls { host: String, detail: String },
    /// The server refused a command: its words (`[AUTHENTICATIONFAILED] Invalid credentials`,
    /// `[ALERT] Too many simultaneous connections.`, `[NONEXISTENT] Unknown Mailbox`).
    #[error("{command} refused: {text}")]
    Refused { command: &'static str, text: String },
    /// The connection ended (a `BYE`, a reset, an idle session the server closed).
    #[error("the IMAP connection was closed: {0}")]
    Closed(String),
    #[error("no answer to {0} in time")]
    Timeout(&'static str),
    #[error("IMAP: {0}")]
    Protocol(String),
}

impl ImapError {
    fn from_imap(command: &'static str, e: async_imap::error::Error) -> Self {
        use async_imap::error::Error;
        match e {
            Error::No(text) | Error::Bad(text) => Self::Refused {
                command,
                text: server_words(&text),
            },
            Error::Io(e) => Self::Closed(e.to_string()),
            Error::ConnectionLost => Self::Closed("the server hung up".into()),
            other => Self::Protocol(other.to_string()),
        }
    }
}

/// The server's refusal as it said it. async-imap hands it over as
/// `code: Some(Alert), info: Some("Too many simultaneous connections. (Failure)")`; Gmail said
/// `[ALERT] Too many simultaneous connections. (Failure)`, which is what a reader should see.
fn server_words(text: &str) -> String {
    let code = text
        .split_once("code: Some(")
        .and_then(|(_, rest)| rest.split(|c: char| !c.is_ascii_alphanumeric()).next())
        .map(str::to_ascii_uppercase);
    let info = text.split_once("info: Some(\"").and_then(|(_, rest)| {
        rest.rsplit_once("\")")
            .map(|(info, _)| info.replace("\\\"", "\""))
    });
    match (code, info) {
        (Some(code), Some(info)) => format!("[{code}] {info}"),
        (None, Some(info)) => info,
        (Some(code), None) => format!("[{code}]"),
        (None, None) => text.trim().to_string(),
    }
}

/// What SELECT said of the folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Folder {
    pub uidvalidity: u32,
    pub uidnext: Option<u32>,
    pub exists: u32,
}

/// How an IDLE ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Woken {
    /// The server told of a change (new mail, most often).
    NewData,
    /// Nothing came before the timeout: time to renew the IDLE (or the token).
    Timeout,
    /// The caller asked (Fetch Now, a stop).
    Asked,
}

#[derive(Clone)]
pub struct ImapConnector {
    tls: TlsConnector,
    connect_timeout: Duration,
    pub command_timeout: Duration,
}

impl ImapConnector {
    pub fn new(tls: Arc<rustls::ClientConfig>, command_timeout: Duration) -> Self {
        Self {
            tls: TlsConnector::from(tls),
            connect_timeout: Duration::from_secs(10),
            command_timeout,
        }
    }

    /// TCP, then TLS verified for `host` (IMAP on 993 is TLS from the first byte).
    pub async fn connect(&self, host: &str, port: u16) -> Result<TlsStream<TcpStream>, ImapError> {
        let tcp = crate::tls::dial(host, port, self.connect_timeout)
            .await
            .map_err(imap_error)?;
        crate::tls::handshake(&self.tls, host, tcp, self.connect_timeout)
            .await
            .map_err(imap_error)
    }
}

fn imap_error(e: crate::tls::DialError) -> ImapError {
    match e {
        crate::tls::DialError::Connect(target, detail) => ImapError::Connect { target, detail },
        crate::tls::DialError::Tls(host, detail) => ImapError::Tls { host, detail },
    }
}

/// SASL XOAUTH2: the first challenge (empty) gets the bearer string; a second one is Google's
/// error report, which SASL wants acknowledged with an empty response before the NO.
struct XOAuth2<'a> {
    user: &'a str,
    token: &'a SecretString,
    sent: bool,
}

impl Authenticator for XOAuth2<'_> {
    type Response = Vec<u8>;

    fn process(&mut self, _challenge: &[u8]) -> Vec<u8> {
        if self.sent {
            return Vec::new();
        }
        self.sent = true;
        format!(
            "user={}\u{1}auth=Bearer {}\u{1}\u{1}",
            self.user,
            self.token.expose_secret()
        )
        .into_bytes()
    }
}

async fn within<T>(
    limit: Duration,
    command: &'static str,
    work: impl Future<Output = Result<T, ImapError>>,
) -> Result<T, ImapError> {
    tokio::time::timeout(limit, work)
        .await
        .map_err(|_| ImapError::Timeout(command))?
}

/// Reads the greeting and logs in with XOAUTH2.
pub async fn login<S>(
    stream: S,
    user: &str,
    token: &SecretString,
    limit: Duration,
) -> Result<Session<S>, ImapError>
where
    S: AsyncRead + AsyncWrite + Unpin + std::fmt::Debug + Send,
{
    within(limit, "the greeting and AUTHENTICATE", async {
        let mut client = Client::new(stream);
        match client.read_response().await {
            Ok(Some(_greeting)) => {}
            Ok(None) => return Err(ImapError::Closed("no greeting".into())),
            Err(e) => return Err(ImapError::Closed(e.to_string())),
        }
        let xoauth2 = XOAuth2 {
            user,
            token,
            sent: false,
        };
        client
            .authenticate("XOAUTH2", xoauth2)
            .await
            .map_err(|(e, _)| ImapError::from_imap("AUTHENTICATE", e))
    })
    .await
}

/// A folder name as IMAP carries it (RFC 3501 §5.1.3, "modified UTF-7"): printable ASCII as it
/// is but `&` as `&-`; every other run of characters as `&`, the base64 of its UTF-16BE with `,`
/// for `/` and no padding, and `-`. Gmail shows the labels decoded ("Aufträge" travels as
/// `Auftr&AOQ-ge`).
pub fn mailbox_name(folder: &str) -> String {
    use base64::Engine;
    use base64::engine::{GeneralPurpose, GeneralPurposeConfig};
    const ALPHABET: base64::alphabet::Alphabet = match base64::alphabet::Alphabet::new(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,",
    ) {
        Ok(alphabet) => alphabet,
        Err(_) => panic!("the modified base64 alphabet"),
    };
    const MODIFIED_BASE64: GeneralPurpose = GeneralPurpose::new(
        &ALPHABET,
        GeneralPurposeConfig::new().with_encode_padding(false),
    );
    fn close(run: &mut Vec<u8>, out: &mut String) {
        if !run.is_empty() {
            out.push('&');
            out.push_str(&MODIFIED_BASE64.encode(&run));
            out.push('-');
            run.clear();
        }
    }
    let mut out = String::with_capacity(folder.len());
    // The UTF-16BE bytes of the run of characters under way that are not printable ASCII.
    let mut run = Vec::new();
    for c in folder.chars() {
        if (' '..='~').contains(&c) {
            close(&mut run, &mut out);
            if c == '&' {
                out.push_str("&-");
            } else {
                out.push(c);
            }
        } else {
            for unit in c.encode_utf16(&mut [0; 2]) {
                run.extend_from_slice(&unit.to_be_bytes());
            }
        }
    }
    close(&mut run, &mut out);
    out
}

/// SELECT (read-write: \Seen may be set later).
pub async fn select<S>(
    session: &mut Session<S>,
    folder: &str,
    limit: Duration,
) -> Result<Folder, ImapError>
where
    S: AsyncRead + AsyncWrite + Unpin + std::fmt::Debug + Send,
{
    within(limit, "SELECT", async {
        let mailbox = session
            .select(mailbox_name(folder))
            .await
            .map_err(|e| ImapError::from_imap("SELECT", e))?;
        let uidvalidity = mailbox
            .uid_validity
            .ok_or_else(|| ImapError::Protocol(format!("SELECT {folder} gave no UIDVALIDITY")))?;
        Ok(Folder {
            uidvalidity,
            uidnext: mailbox.uid_next,
            exists: mailbox.exists,
        })
    })
    .await
}

/// The UIDs above `last`, in order. (`UID SEARCH UID n:*` also names the last message when n
/// is past it, so the answer is filtered.)
pub async fn uids_after<S>(
    session: &mut Session<S>,
    last: u32,
    limit: Duration,
) -> Result<Vec<u32>, ImapError>
where
    S: AsyncRead + AsyncWrite + Unpin + std::fmt::Debug + Send,
{
    within(limit, "UID SEARCH", async {
        let found = session
            .uid_search(format!("UID {}:*", last.saturating_add(1)))
            .await
            .map_err(|e| ImapError::from_imap("UID SEARCH", e))?;
        let mut uids: Vec<u32> = found.into_iter().filter(|uid| *uid > last).collect();
        uids.sort_unstable();
        Ok(uids)
    })
    .await
}

/// The messages with these UIDs, raw, in UID order, without setting \Seen (BODY.PEEK).
pub async fn fetch<S>(
    session: &mut Session<S>,
    uids: &[u32],
    limit: Duration,
) -> Result<Vec<(u32, Vec<u8>)>, ImapError>
where
    S: AsyncRead + AsyncWrite + Unpin + std::fmt::Debug + Send,
{
    within(limit, "UID FETCH", async {
        let set = uid_set(uids);
        let fetched: Vec<_> = session
            .uid_fetch(&set, "(UID BODY.PEEK[])")
            .await
            .map_err(|e| ImapError::from_imap("UID FETCH", e))?
            .try_collect()
            .await
            .map_err(|e| ImapError::from_imap("UID FETCH", e))?;
        let mut messages: Vec<(u32, Vec<u8>)> = fetched
            .iter()
            .filter_map(|f| Some((f.uid?, f.body()?.to_vec())))
            .filter(|(uid, _)| uids.contains(uid))
            .collect();
        messages.sort_by_key(|(uid, _)| *uid);
        messages.dedup_by_key(|(uid, _)| *uid);
        Ok(messages)
    })
    .await
}

/// Sets \Seen on these UIDs.
pub async fn mark_seen<S>(
    session: &mut Session<S>,
    uids: &[u32],
    limit: Duration,
) -> Result<(), ImapError>
where
    S: AsyncRead + AsyncWrite + Unpin + std::fmt::Debug + Send,
{
    within(limit, "UID STORE", async {
        let _: Vec<_> = session
            .uid_store(uid_set(uids), "+FLAGS.SILENT (\\Seen)")
            .await
            .map_err(|e| ImapError::from_imap("UID STORE", e))?
            .try_collect()
            .await
            .map_err(|e| ImapError::from_imap("UID STORE", e))?;
        Ok(())
    })
    .await
}

/// IDLE until the server tells of a change, `timeout` passes, or `asked` resolves; then DONE,
/// and the session is back.
pub async fn idle<S>(
    session: Session<S>,
    timeout: Duration,
    asked: impl Future<Output = ()>,
    limit: Duration,
) -> Result<(Session<S>, Woken), ImapError>
where
    S: AsyncRead + AsyncWrite + Unpin + std::fmt::Debug + Send,
{
    let mut handle = session.idle();
    within(limit, "IDLE", async {
        handle
            .init()
            .await
            .map_err(|e| ImapError::from_imap("IDLE", e))
    })
    .await?;
    let woken = {
        let (wait, interrupt) = handle.wait_with_timeout(timeout);
        tokio::pin!(wait);
        let mut interrupt = Some(interrupt);
        tokio::pin!(asked);
        let response = tokio::select! {
            response = &mut wait => response,
            () = &mut asked => {
                // Dropping the stop source ends the wait; it is then read to its end, so the
                // stream stays in step with the server.
                interrupt.take();
                wait.await
            }
        };
        match response.map_err(|e| ImapError::from_imap("IDLE", e))? {
            IdleResponse::NewData(data) => {
                if let async_imap::imap_proto::Response::Data {
                    status: async_imap::imap_proto::Status::Bye,
                    outcome,
                    ..
                } = data.parsed()
                {
                    return Err(ImapError::Closed(
                        outcome
                            .information
                            .as_deref()
                            .unwrap_or("the server said BYE")
                            .to_string(),
                    ));
                }
                Woken::NewData
            }
            IdleResponse::Timeout => Woken::Timeout,
            IdleResponse::ManualInterrupt => Woken::Asked,
        }
    };
    let session = within(limit, "DONE", async {
        handle
            .done()
            .await
            .map_err(|e| ImapError::from_imap("IDLE", e))
    })
    .await?;
    // Unilateral answers seen meanwhile are not needed: the next search reads the folder.
    while session.unsolicited_responses.try_recv().is_ok() {}
    Ok((session, woken))
}

/// `LOGOUT`, best effort: the connection ends either way.
pub async fn logout<S>(mut session: Session<S>, limit: Duration)
where
    S: AsyncRead + AsyncWrite + Unpin + std::fmt::Debug + Send,
{
    let _ = tokio::time::timeout(limit, session.logout()).await;
}

/// `1,2,5` as IMAP wants it (runs collapsed: `1:2,5`).
fn uid_set(uids: &[u32]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut iter = uids.iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end + 1)) {
            end += 1;
            iter.next();
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}:{end}")
        });
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream};

    const LIMIT: Duration = Duration::from_secs(5);
    const GREETING: &str = "* OK Gimap ready for requests from 127.0.0.1 x1\r\n";
    const CHALLENGE: &str = "eyJzdGF0dXMiOiI0MDAiLCJzY2hlbWVzIjoiQmVhcmVyIiwic2NvcGUiOiJodHRwczovL21haWwuZ29vZ2xlLmNvbS8ifQ==";

    /// Plays Gmail's side: for each step, reads the client's next line, checks it starts (after
    /// its tag) with the expected text, and answers with the reply, `{tag}` standing for the
    /// client's tag. Returns what the client sent.
    fn gmail(
        script: Vec<(&'static str, String)>,
    ) -> (DuplexStream, tokio::task::JoinHandle<Vec<String>>) {
        let (client, server) = tokio::io::duplex(1 << 20);
        let played = tokio::spawn(async move {
            let (read, mut write) = tokio::io::split(server);
            let mut read = BufReader::new(read);
            write.write_all(GREETING.as_bytes()).await.unwrap();
            let mut heard = Vec::new();
            let mut tag = String::new();
            for (expect, reply) in script {
                let mut line = String::new();
                read.read_line(&mut line).await.unwrap();
                let line = line.trim_end().to_string();
                let rest = match line.split_once(' ') {
                    Some((t, rest))
                        if t.starts_with('A') && t[1..].chars().all(|c| c.is_ascii_digit()) =>
                    {
                        tag = t.to_string();
                        rest.to_string()
                    }
                    _ => line.clone(),
                };
                assert!(
                    rest.starts_with(expect),
                    "expected {expect:?}, the client sent {line:?}"
                );
                heard.push(line);
                write
                    .write_all(reply.replace("{tag}", &tag).as_bytes())
                    .await
                    .unwrap();
            }
            heard
        });
        (client, played)
    }

    fn token() -> SecretString {
        SecretString::from("ya29.token".to_string())
    }

    #[tokio::test]
    async fn a_fetch_pass_logs_in_selects_searches_fetches_and_marks_seen() {
        let message = "Subject: hi\r\n\r\nhello\r\n";
        let (stream, gmail) = gmail(vec![
            ("AUTHENTICATE XOAUTH2", "+ \r\n".into()),
            ("", "{tag} OK alice@gmail.com authenticated (Success)\r\n".into()),
            ("SELECT \"INBOX\"", "* FLAGS (\\Seen)\r\n* OK [UIDVALIDITY 77] UIDs valid.\r\n* 2 EXISTS\r\n* 0 RECENT\r\n* OK [UIDNEXT 13] Predicted next UID.\r\n{tag} OK [READ-WRITE] INBOX selected. (Success)\r\n".into()),
            ("UID SEARCH UID 11:*", "* SEARCH 11 12\r\n{tag} OK SEARCH completed (Success)\r\n".into()),
            ("UID FETCH 11:12 (UID BODY.PEEK[])", format!(
                "* 1 FETCH (UID 11 BODY[] {{{n}}}\r\n{message})\r\n* 2 FETCH (UID 12 BODY[] {{{n}}}\r\n{message})\r\n{{tag}} OK Success\r\n",
                n = message.len()
            )),
            ("UID STORE 11:12 +FLAGS.SILENT (\\Seen)", "{tag} OK Success\r\n".into()),
        ]);
        let mut session = login(stream, "alice@gmail.com", &token(), LIMIT)
            .await
            .unwrap();
        let folder = select(&mut session, "INBOX", LIMIT).await.unwrap();
        assert_eq!(
            folder,
            Folder {
                uidvalidity: 77,
                uidnext: Some(13),
                exists: 2
            }
        );
        let uids = uids_after(&mut session, 10, LIMIT).await.unwrap();
        assert_eq!(uids, vec![11, 12]);
        let fetched = fetch(&mut session, &uids, LIMIT).await.unwrap();
        assert_eq!(
            fetched,
            vec![
                (11, message.as_bytes().to_vec()),
                (12, message.as_bytes().to_vec())
            ]
        );
        mark_seen(&mut session, &uids, LIMIT).await.unwrap();
        let heard = gmail.await.unwrap();
        // The bearer string, base64, as its own line after the continuation.
        use base64::Engine;
        let sent = base64::engine::general_purpose::STANDARD
            .decode(&heard[1])
            .unwrap();
        assert_eq!(
            sent,
            b"user=alice@gmail.com\x01auth=Bearer ya29.token\x01\x01"
        );
    }

    #[test]
    fn folder_names_travel_in_modified_utf7() {
        // RFC 3501 §5.1.3's own example, then Gmail labels people use.
        assert_eq!(
            mailbox_name("~peter/mail/台北/日本語"),
            "~peter/mail/&U,BTFw-/&ZeVnLIqe-"
        );
        assert_eq!(mailbox_name("Aufträge"), "Auftr&AOQ-ge");
        assert_eq!(
            mailbox_name("[Gmail]/Отправленные"),
            "[Gmail]/&BB4EQgQ,BEAEMAQyBDsENQQ9BD0ESwQ1-"
        );
        assert_eq!(mailbox_name("Q&A"), "Q&-A");
        assert_eq!(mailbox_name("INBOX"), "INBOX");
        // Outside the BMP: a surrogate pair in one run.
        assert_eq!(mailbox_name("📬 Orders"), "&2D3c7A- Orders");
    }

    #[tokio::test]
    async fn a_non_ascii_folder_is_selected_by_its_encoded_name() {
        let (stream, gmail) = gmail(vec![
            ("AUTHENTICATE XOAUTH2", "+ \r\n".into()),
            ("", "{tag} OK Success\r\n".into()),
            (
                "SELECT \"Auftr&AOQ-ge\"",
                "* 0 EXISTS\r\n* OK [UIDVALIDITY 7] UIDs valid.\r\n* OK [UIDNEXT 1] Predicted next UID.\r\n{tag} OK [READ-WRITE] Auftr&AOQ-ge selected. (Success)\r\n".into(),
            ),
        ]);
        let mut session = login(stream, "alice@gmail.com", &token(), LIMIT)
            .await
            .unwrap();
        let folder = select(&mut session, "Aufträge", LIMIT).await.unwrap();
        assert_eq!(folder.uidvalidity, 7);
        assert!(
            gmail
                .await
                .unwrap()
                .iter()
                .any(|l| l.ends_with("SELECT \"Auftr&AOQ-ge\""))
        );
    }

    #[tokio::test]
    async fn a_search_past_the_last_message_names_none() {
        let (stream, _gmail) = gmail(vec![
            ("AUTHENTICATE XOAUTH2", "+ \r\n".into()),
            ("", "{tag} OK Success\r\n".into()),
            (
                "UID SEARCH UID 13:*",
                "* SEARCH 12\r\n{tag} OK SEARCH completed (Success)\r\n".into(),
            ),
        ]);
        let mut session = login(stream, "alice@gmail.com", &token(), LIMIT)
            .await
            .unwrap();
        assert!(
            uids_after(&mut session, 12, LIMIT)
                .await
                .unwrap()
                .is_empty()
        );
    }

    #[tokio::test]
    async fn a_refused_token_is_acknowledged_and_reported_in_gmails_words() {
        let (stream, gmail) = gmail(vec![
            ("AUTHENTICATE XOAUTH2", "+ \r\n".into()),
            ("", format!("+ {CHALLENGE}\r\n")),
            (
                "",
                "{tag} NO [AUTHENTICATIONFAILED] Invalid credentials (Failure)\r\n".into(),
            ),
        ]);
        let Err(e) = login(stream, "alice@gmail.com", &token(), LIMIT).await else {
            panic!("logged in");
        };
        assert!(
            matches!(&e, ImapError::Refused { command: "AUTHENTICATE", text } if text.contains("[AUTHENTICATIONFAILED] Invalid credentials")),
            "{e:?}"
        );
        let heard = gmail.await.unwrap();
        assert_eq!(
            heard[2], "",
            "the error challenge is answered with an empty line"
        );
    }

    #[tokio::test]
    async fn the_connection_cap_is_reported_with_its_alert() {
        let (stream, _gmail) = gmail(vec![
            ("AUTHENTICATE XOAUTH2", "+ \r\n".into()),
            (
                "",
                "{tag} NO [ALERT] Too many simultaneous connections. (Failure)\r\n".into(),
            ),
        ]);
        let Err(e) = login(stream, "alice@gmail.com", &token(), LIMIT).await else {
            panic!("logged in");
        };
        assert!(
            e.to_string()
                .contains("[ALERT] Too many simultaneous connections."),
            "{e}"
        );
    }

    #[tokio::test]
    async fn idle_wakes_on_new_mail_and_ends_with_done() {
        let (stream, gmail) = gmail(vec![
            ("AUTHENTICATE XOAUTH2", "+ \r\n".into()),
            ("", "{tag} OK Success\r\n".into()),
            ("IDLE", "+ idling\r\n* 3 EXISTS\r\n".into()),
            ("DONE", "{tag} OK IDLE terminated (Success)\r\n".into()),
        ]);
        let session = login(stream, "alice@gmail.com", &token(), LIMIT)
            .await
            .unwrap();
        let (_session, woken) = idle(
            session,
            Duration::from_secs(60),
            std::future::pending(),
            LIMIT,
        )
        .await
        .unwrap();
        assert_eq!(woken, Woken::NewData);
        assert_eq!(
            gmail.await.unwrap().last().map(String::as_str),
            Some("DONE")
        );
    }

    #[tokio::test]
    async fn idle_ends_when_asked() {
        let (stream, _gmail) = gmail(vec![
            ("AUTHENTICATE XOAUTH2", "+ \r\n".into()),
            ("", "{tag} OK Success\r\n".into()),
            ("IDLE", "+ idling\r\n".into()),
            ("DONE", "{tag} OK IDLE terminated (Success)\r\n".into()),
        ]);
        let session = login(stream, "alice@gmail.com", &token(), LIMIT)
            .await
            .unwrap();
        let (_session, woken) = idle(session, Duration::from_secs(60), async {}, LIMIT)
            .await
            .unwrap();
        assert_eq!(woken, Woken::Asked);
    }

    #[tokio::test]
    async fn a_session_gmail_expires_during_idle_is_closed() {
        let (stream, _gmail) = gmail(vec![
            ("AUTHENTICATE XOAUTH2", "+ \r\n".into()),
            ("", "{tag} OK Success\r\n".into()),
            (
                "IDLE",
                "+ idling\r\n* BYE Session expired, please login again.\r\n".into(),
            ),
        ]);
        let session = login(stream, "alice@gmail.com", &token(), LIMIT)
            .await
            .unwrap();
        let Err(e) = idle(
            session,
            Duration::from_secs(60),
            std::future::pending(),
            LIMIT,
        )
        .await
        else {
            panic!("idle went on");
        };
        assert!(
            matches!(&e, ImapError::Closed(text) if text.contains("Session expired")),
            "{e:?}"
        );
    }

    #[test]
    fn refusals_read_as_the_server_wrote_them() {
        assert_eq!(
            server_words(
                "code: Some(Alert), info: Some(\"Too many simultaneous connections. (Failure)\")"
            ),
            "[ALERT] Too many simultaneous connections. (Failure)"
        );
        assert_eq!(
            server_words(
                "code: None, info: Some(\"[AUTHENTICATIONFAILED] Invalid credentials (Failure)\")"
            ),
            "[AUTHENTICATIONFAILED] Invalid credentials (Failure)"
        );
        assert_eq!(server_words("outcome: x"), "outcome: x");
    }

    #[test]
    fn uid_sets_collapse_runs() {
        assert_eq!(uid_set(&[1, 2, 3, 5, 7, 8]), "1:3,5,7:8");
        assert_eq!(uid_set(&[9]), "9");
    }
}
