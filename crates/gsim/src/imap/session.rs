//! One IMAP session, answering as Gmail does.

use std::collections::BTreeSet;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use super::parse::{
    FetchItem, MessageView, Section, SequenceSet, Token, parse_fetch_items, parse_search, tokenize,
};
use crate::net::{Conn, Line, ReadError, Wire, handshake_timeout};
use crate::sasl;
use crate::world::{ConnectionSlot, Protocol, StoredMessage, World, canonical_mailbox, session_id};

const MAX_LINE: usize = 16 * 1024;
const MAX_LITERAL: usize = 64 * 1024;

const CAPABILITY_BEFORE_AUTH: &str = "* CAPABILITY IMAP4rev1 UNSELECT IDLE NAMESPACE QUOTA ID XLIST CHILDREN X-GM-EXT-1 XYZZY SASL-IR AUTH=XOAUTH2 AUTH=PLAIN AUTH=PLAIN-CLIENTTOKEN AUTH=OAUTHBEARER\r\n";
const CAPABILITY_AFTER_AUTH: &str = "* CAPABILITY IMAP4rev1 UNSELECT IDLE NAMESPACE QUOTA ID XLIST CHILDREN X-GM-EXT-1 UIDPLUS COMPRESS=DEFLATE ENABLE MOVE CONDSTORE ESEARCH UTF8=ACCEPT LIST-EXTENDED LIST-STATUS LITERAL- SPECIAL-USE APPENDLIMIT=35651584\r\n";
const FLAGS: &str = "\\Answered \\Flagged \\Draft \\Deleted \\Seen $NotPhishing $Phishing";

pub async fn serve_connection(
    world: Arc<World>,
    acceptor: TlsAcceptor,
    tcp: TcpStream,
    peer: SocketAddr,
) {
    world.with(|s| s.counters.imap_connections += 1);
    let Ok(Ok(tls)) = tokio::time::timeout(
        handshake_timeout(&world, |s| s.settings.imap.idle_timeout_ms),
        acceptor.accept(tcp),
    )
    .await
    else {
        return;
    };
    let changes = world.subscribe_changes();
    let mut session = Session {
        world,
        wire: Wire::new(Conn::Tls(Box::new(tls)), peer),
        id: session_id(),
        account: None,
        slot: None,
        selected: None,
        changes,
    };
    let _ = session.run().await;
    session.wire.close().await;
}

struct Selected {
    name: String,
    read_only: bool,
    /// EXISTS as last told to the client, so NOOP and IDLE report growth.
    exists: usize,
}

struct Session {
    world: Arc<World>,
    wire: Wire,
    id: String,
    account: Option<String>,
    slot: Option<ConnectionSlot>,
    selected: Option<Selected>,
    changes: tokio::sync::watch::Receiver<u64>,
}

enum Flow {
    Go,
    Stop,
}

enum Input {
    Line(String),
    Stop,
}

impl Session {
    async fn run(&mut self) -> io::Result<()> {
        let greeting = format!(
            "* OK Gimap ready for requests from {} {}\r\n",
            self.wire.peer.ip(),
            self.id
        );
        self.send(&greeting).await?;
        loop {
            let line = match self.read_command().await? {
                Input::Line(line) => line,
                Input::Stop => return Ok(()),
            };
            if let Flow::Stop = self.command(&line).await? {
                return Ok(());
            }
        }
    }

    fn offers_idle(&self) -> bool {
        self.world.with(|s| s.settings.imap.offer_idle)
    }

    /// Gmail's list, without IDLE when the settings say so.
    fn capabilities(&self, list: &str) -> String {
        if self.offers_idle() {
            list.to_string()
        } else {
            list.replace(" IDLE", "")
        }
    }

    fn idle(&self) -> Duration {
        Duration::from_millis(self.world.with(|s| s.settings.imap.idle_timeout_ms))
    }

    async fn send(&mut self, text: &str) -> io::Result<()> {
        self.wire.write(text.as_bytes()).await
    }

    async fn tagged(&mut self, tag: &str, text: &str) -> io::Result<Flow> {
        self.send(&format!("{tag} {text}\r\n")).await?;
        Ok(Flow::Go)
    }

    async fn read_line(&mut self) -> io::Result<Option<Line>> {
        match self.wire.read_line(MAX_LINE, self.idle()).await {
            Ok(line) => Ok(Some(line)),
            Err(ReadError::Idle) => {
                self.send("* BYE Session expired, please login again.\r\n")
                    .await?;
                Ok(None)
            }
            Err(ReadError::Closed) => Ok(None),
        }
    }

    /// One command, with any literals (`{n}` / `{n+}`) folded in as quoted strings.
    async fn read_command(&mut self) -> io::Result<Input> {
        let mut command = String::new();
        loop {
            let line = match self.read_line().await? {
                Some(Line::Complete(line)) => String::from_utf8_lossy(&line).into_owned(),
                Some(Line::TooLong) => {
                    self.send("* BAD Line too long\r\n").await?;
                    continue;
                }
                None => return Ok(Input::Stop),
            };
            let Some((before, size, sync)) = literal_marker(&line) else {
                command.push_str(&line);
                return Ok(Input::Line(command));
            };
            command.push_str(before);
            if size > MAX_LITERAL {
                if sync {
                    // The client waits for "+" and will not send the literal: refuse and go on.
                    let tag = command.split(' ').next().unwrap_or("*").to_string();
                    self.tagged(&tag, "BAD Literal too large").await?;
                    command.clear();
                    continue;
                }
                self.send("* BYE Literal too large\r\n").await?;
                return Ok(Input::Stop);
            }
            if sync {
                self.send("+ go ahead\r\n").await?;
            }
            let Ok(bytes) = self.wire.read_exact(size, self.idle()).await else {
                return Ok(Input::Stop);
            };
            let text = String::from_utf8_lossy(&bytes);
            command.push('"');
            command.push_str(&text.replace('\\', "\\\\").replace('"', "\\\""));
            command.push('"');
        }
    }

    async fn command(&mut self, line: &str) -> io::Result<Flow> {
        let mut parts = line.splitn(3, ' ');
        let tag = parts.next().unwrap_or_default().to_string();
        let verb = parts.next().unwrap_or_default().to_ascii_uppercase();
        let args = parts.next().unwrap_or_default().to_string();
        if tag.is_empty() || verb.is_empty() {
            return self
                .tagged(
                    if tag.is_empty() { "*" } else { &tag },
                    "BAD Could not parse command",
                )
                .await;
        }
        let authenticated = self.account.is_some();
        match verb.as_str() {
            "CAPABILITY" => {
                let list = if authenticated {
                    CAPABILITY_AFTER_AUTH
                } else {
                    CAPABILITY_BEFORE_AUTH
                };
                let list = self.capabilities(list);
                self.send(&list).await?;
                let done = format!("OK Thats all she wrote! {}", self.id);
                self.tagged(&tag, &done).await
            }
            "NOOP" => {
                self.report_growth().await?;
                self.tagged(&tag, "OK Success").await
            }
            "LOGOUT" => {
                self.send("* BYE LOGOUT Requested\r\n").await?;
                self.tagged(&tag, "OK 73 good day (Success)").await?;
                Ok(Flow::Stop)
            }
            "ID" => {
                let id = format!(
                    "* ID (\"name\" \"GImap\" \"vendor\" \"Google, Inc.\" \"support-url\" \"https://support.google.com/mail\" \"version\" \"gmail_imap_220520.08_p0\" \"remote-host\" \"{}\")\r\n",
                    self.wire.peer.ip()
                );
                self.send(&id).await?;
                self.tagged(&tag, "OK Success").await
            }
            "AUTHENTICATE" if !authenticated => self.authenticate(&tag, &args).await,
            "LOGIN" if !authenticated => {
                self.world.with(|s| s.counters.imap_logins.record(false));
                self.tagged(
                    &tag,
                    "NO [AUTHENTICATIONFAILED] Invalid credentials (Failure)",
                )
                .await
            }
            "AUTHENTICATE" | "LOGIN" => self.tagged(&tag, "BAD Already authenticated").await,
            _ if !authenticated => {
                self.tagged(
                    &tag,
                    "BAD Command can be issued only in authenticated state",
                )
                .await
            }
            "SELECT" => self.select(&tag, &args, false).await,
            "EXAMINE" => self.select(&tag, &args, true).await,
            "LIST" | "XLIST" => self.list(&tag).await,
            "UID" => {
                let mut rest = args.splitn(2, ' ');
                let sub = rest.next().unwrap_or_default().to_ascii_uppercase();
                let sub_args = rest.next().unwrap_or_default().to_string();
                self.selected_command(&tag, &sub, &sub_args, true).await
            }
            "SEARCH" | "FETCH" | "STORE" | "EXPUNGE" | "CLOSE" | "UNSELECT" | "IDLE" => {
                self.selected_command(&tag, &verb, &args, false).await
            }
            _ => self.tagged(&tag, "BAD Unknown command").await,
        }
    }

    async fn authenticate(&mut self, tag: &str, args: &str) -> io::Result<Flow> {
        let mut parts = args.split_ascii_whitespace();
        let mechanism = parts.next().unwrap_or_default().to_ascii_uppercase();
        let initial = parts.next().map(str::to_string);
        if !matches!(
            mechanism.as_str(),
            "XOAUTH2" | "OAUTHBEARER" | "PLAIN" | "PLAIN-CLIENTTOKEN"
        ) {
            return self
                .tagged(
                    tag,
                    "NO [CANNOT] Unsupported authentication mechanism (Failure)",
                )
                .await;
        }
        let response = match initial {
            Some(ir) => ir,
            None => {
                self.send("+ \r\n").await?;
                match self.read_line().await? {
                    Some(Line::Complete(line)) => String::from_utf8_lossy(&line).into_owned(),
                    Some(Line::TooLong) => {
                        return self
                            .tagged(tag, &format!("NO Invalid SASL argument. {}", self.id))
                            .await;
                    }
                    None => return Ok(Flow::Stop),
                }
            }
        };
        if response == "*" {
            return self.tagged(tag, "BAD Authentication cancelled").await;
        }
        let invalid = format!("NO Invalid SASL argument. {}", self.id);
        let Ok(decoded) = sasl::decode(response.as_bytes()) else {
            self.world.with(|s| s.counters.imap_logins.record(false));
            return self.tagged(tag, &invalid).await;
        };
        let bearer = match mechanism.as_str() {
            "XOAUTH2" => sasl::parse_xoauth2(&decoded),
            "OAUTHBEARER" => sasl::parse_oauthbearer(&decoded),
            _ => {
                // Passwords are refused: Gmail wants OAuth from software.
                self.world.with(|s| s.counters.imap_logins.record(false));
                return self
                    .tagged(
                        tag,
                        "NO [AUTHENTICATIONFAILED] Invalid credentials (Failure)",
                    )
                    .await;
            }
        };
        let Ok(bearer) = bearer else {
            self.world.with(|s| s.counters.imap_logins.record(false));
            return self.tagged(tag, &invalid).await;
        };
        let now = self.world.now();
        let Some(account) = self.world.with(|s| s.mail_login(&bearer, now)) else {
            self.world.with(|s| s.counters.imap_logins.record(false));
            let challenge = if mechanism == "XOAUTH2" {
                sasl::XOAUTH2_FAILURE_CHALLENGE.to_string()
            } else {
                sasl::oauthbearer_failure_challenge()
            };
            self.send(&format!("+ {challenge}\r\n")).await?;
            // Whatever the client answers (the empty response SASL wants, or imaplib re-sending its
            // auth string), the verdict is the same.
            return match self.read_line().await? {
                Some(_) => {
                    self.tagged(
                        tag,
                        "NO [AUTHENTICATIONFAILED] Invalid credentials (Failure)",
                    )
                    .await
                }
                None => Ok(Flow::Stop),
            };
        };
        let Some(slot) = self.world.claim_connection(Protocol::Imap, &account) else {
            self.world.with(|s| s.counters.imap_logins.record(false));
            return self
                .tagged(
                    tag,
                    "NO [ALERT] Too many simultaneous connections. (Failure)",
                )
                .await;
        };
        self.world.with(|s| s.counters.imap_logins.record(true));
        let list = self.capabilities(CAPABILITY_AFTER_AUTH);
        self.send(&list).await?;
        let ok = format!("OK {account} authenticated (Success)");
        self.account = Some(account);
        self.slot = Some(slot);
        self.tagged(tag, &ok).await
    }

    fn account(&self) -> String {
        self.account.clone().unwrap_or_default()
    }

    /// The selected mailbox's messages now, or None when it no longer exists.
    fn messages(&self, name: &str) -> Option<(u32, Vec<StoredMessage>)> {
        let account = self.account();
        self.world.with(|s| {
            let mbox = s.mailboxes.get(&account)?.get(name)?;
            Some((mbox.uidvalidity, mbox.messages.clone()))
        })
    }

    async fn select(&mut self, tag: &str, args: &str, read_only: bool) -> io::Result<Flow> {
        self.selected = None;
        let name = match tokenize(args).as_deref() {
            // Labels are kept as people see them; the wire carries modified UTF-7.
            Some([token]) => token
                .text()
                .and_then(super::mailbox_name::decode)
                .map(|label| canonical_mailbox(&label)),
            _ => None,
        };
        let Some(name) = name else {
            return self.tagged(tag, "BAD Could not parse command").await;
        };
        let account = self.account();
        let found = self.world.with(|s| {
            let mbox = s.mailboxes.get(&account)?.get(&name)?;
            let unseen = mbox
                .messages
                .iter()
                .position(|m| !m.flags.contains("\\Seen"));
            Some((mbox.uidvalidity, mbox.uidnext, mbox.messages.len(), unseen))
        });
        let Some((uidvalidity, uidnext, exists, unseen)) = found else {
            return self
                .tagged(tag, "NO [NONEXISTENT] Unknown Mailbox (Failure)")
                .await;
        };
        let mut out = format!(
            "* FLAGS ({FLAGS})\r\n\
             * OK [PERMANENTFLAGS ({FLAGS} \\*)] Flags permitted.\r\n\
             * OK [UIDVALIDITY {uidvalidity}] UIDs valid.\r\n\
             * {exists} EXISTS\r\n\
             * 0 RECENT\r\n"
        );
        if let Some(first) = unseen {
            out.push_str(&format!("* OK [UNSEEN {}] First unseen.\r\n", first + 1));
        }
        out.push_str(&format!("* OK [UIDNEXT {uidnext}] Predicted next UID.\r\n"));
        self.send(&out).await?;
        self.selected = Some(Selected {
            name: name.clone(),
            read_only,
            exists,
        });
        let mode = if read_only { "READ-ONLY" } else { "READ-WRITE" };
        let wire = super::mailbox_name::encode(&name);
        self.tagged(tag, &format!("OK [{mode}] {wire} selected. (Success)"))
            .await
    }

    async fn list(&mut self, tag: &str) -> io::Result<Flow> {
        let account = self.account();
        let names: Vec<String> = self.world.with(|s| {
            s.mailboxes
                .get(&account)
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default()
        });
        let mut out = String::new();
        for name in names {
            let wire = super::mailbox_name::encode(&name);
            out.push_str(&format!("* LIST (\\HasNoChildren) \"/\" \"{wire}\"\r\n"));
        }
        self.send(&out).await?;
        self.tagged(tag, "OK Success").await
    }

    async fn selected_command(
        &mut self,
        tag: &str,
        verb: &str,
        args: &str,
        by_uid: bool,
    ) -> io::Result<Flow> {
        let Some(name) = self.selected.as_ref().map(|s| s.name.clone()) else {
            return self
                .tagged(tag, "BAD Command can be issued only in selected state")
                .await;
        };
        match verb {
            "SEARCH" => self.search(tag, &name, args, by_uid).await,
            "FETCH" => self.fetch(tag, &name, args, by_uid).await,
            "STORE" => self.store(tag, &name, args, by_uid).await,
            "EXPUNGE" => {
                self.expunge(&name).await?;
                self.tagged(tag, "OK Success").await
            }
            "CLOSE" => {
                self.expunge_quietly(&name);
                self.selected = None;
                self.tagged(tag, "OK Returned to authenticated state. (Success)")
                    .await
            }
            "UNSELECT" => {
                self.selected = None;
                self.tagged(tag, "OK Returned to authenticated state. (Success)")
                    .await
            }
            "IDLE" if !by_uid && self.offers_idle() => self.idle_until_done(tag, &name).await,
            _ => self.tagged(tag, "BAD Unknown command").await,
        }
    }

    async fn search(
        &mut self,
        tag: &str,
        name: &str,
        args: &str,
        by_uid: bool,
    ) -> io::Result<Flow> {
        let Some(key) = tokenize(args).as_deref().and_then(parse_search) else {
            return self.tagged(tag, "BAD Could not parse command").await;
        };
        let Some((_, messages)) = self.messages(name) else {
            return self.tagged(tag, "NO Mailbox vanished (Failure)").await;
        };
        let count = u32::try_from(messages.len()).unwrap_or(u32::MAX);
        let largest_uid = messages.last().map_or(0, |m| m.uid);
        let mut out = String::from("* SEARCH");
        for (index, m) in messages.iter().enumerate() {
            let seq = u32::try_from(index + 1).unwrap_or(u32::MAX);
            let flags: Vec<String> = m.flags.iter().cloned().collect();
            let view = MessageView {
                seq,
                uid: m.uid,
                count,
                largest_uid,
                flags: &flags,
            };
            if key.matches(&view) {
                out.push_str(&format!(" {}", if by_uid { m.uid } else { seq }));
            }
        }
        out.push_str("\r\n");
        self.send(&out).await?;
        self.tagged(tag, "OK SEARCH completed (Success)").await
    }

    /// The messages a sequence set names, with their sequence numbers.
    fn resolve(messages: &[StoredMessage], set: &SequenceSet, by_uid: bool) -> Vec<(u32, usize)> {
        let count = u32::try_from(messages.len()).unwrap_or(u32::MAX);
        let largest_uid = messages.last().map_or(0, |m| m.uid);
        messages
            .iter()
            .enumerate()
            .filter_map(|(index, m)| {
                let seq = u32::try_from(index + 1).unwrap_or(u32::MAX);
                let hit = if by_uid {
                    set.contains(m.uid, largest_uid)
                } else {
                    set.contains(seq, count)
                };
                hit.then_some((seq, index))
            })
            .collect()
    }

    async fn fetch(&mut self, tag: &str, name: &str, args: &str, by_uid: bool) -> io::Result<Flow> {
        let parsed = tokenize(args).and_then(|tokens| {
            let (first, rest) = tokens.split_first()?;
            Some((SequenceSet::parse(first.text()?)?, parse_fetch_items(rest)?))
        });
        let Some((set, mut items)) = parsed else {
            return self.tagged(tag, "BAD Could not parse command").await;
        };
        if by_uid && !items.contains(&FetchItem::Uid) {
            items.insert(0, FetchItem::Uid);
        }
        let read_only = self.selected.as_ref().is_some_and(|s| s.read_only);
        let marks_seen = !read_only
            && items
                .iter()
                .any(|i| matches!(i, FetchItem::Body { peek: false, .. }));
        if marks_seen && !items.contains(&FetchItem::Flags) {
            items.push(FetchItem::Flags);
        }
        let account = self.account();
        let Some((_, messages)) = self.messages(name) else {
            return self.tagged(tag, "NO Mailbox vanished (Failure)").await;
        };
        let hits = Self::resolve(&messages, &set, by_uid);
        if marks_seen {
            let uids: BTreeSet<u32> = hits.iter().map(|&(_, i)| messages[i].uid).collect();
            self.world.with(|s| {
                if let Some(mbox) = s.mailboxes.get_mut(&account).and_then(|m| m.get_mut(name)) {
                    for m in mbox.messages.iter_mut().filter(|m| uids.contains(&m.uid)) {
                        m.flags.insert("\\Seen".to_string());
                    }
                }
            });
        }
        let mut out: Vec<u8> = Vec::new();
        for (seq, index) in hits {
            let m = &messages[index];
            let mut parts: Vec<Vec<u8>> = Vec::new();
            for item in &items {
                parts.push(match item {
                    FetchItem::Uid => format!("UID {}", m.uid).into_bytes(),
                    FetchItem::Flags => {
                        let mut flags = m.flags.clone();
                        if marks_seen {
                            flags.insert("\\Seen".to_string());
                        }
                        format!("FLAGS ({})", join(&flags)).into_bytes()
                    }
                    FetchItem::Size => format!("RFC822.SIZE {}", m.raw.len()).into_bytes(),
                    FetchItem::InternalDate => {
                        format!("INTERNALDATE \"{}\"", internal_date(m.internal_date)).into_bytes()
                    }
                    FetchItem::Body { section, name, .. } => {
                        let bytes = section_bytes(&m.raw, *section);
                        let mut part = format!("{name} {{{}}}\r\n", bytes.len()).into_bytes();
                        part.extend_from_slice(bytes);
                        part
                    }
                });
            }
            out.extend_from_slice(format!("* {seq} FETCH (").as_bytes());
            out.extend_from_slice(&parts.join(&b' '));
            out.extend_from_slice(b")\r\n");
        }
        self.wire.write(&out).await?;
        self.tagged(tag, "OK Success").await
    }

    async fn store(&mut self, tag: &str, name: &str, args: &str, by_uid: bool) -> io::Result<Flow> {
        if self.selected.as_ref().is_some_and(|s| s.read_only) {
            return self
                .tagged(tag, "NO STORE attempt on READ-ONLY folder (Failure)")
                .await;
        }
        let parsed = tokenize(args).and_then(|tokens| match tokens.as_slice() {
            [set, action, flags @ ..] if !flags.is_empty() => {
                let flags: Vec<String> = match flags {
                    [Token::List(list)] => list
                        .iter()
                        .map(|t| t.text().map(str::to_string))
                        .collect::<Option<_>>()?,
                    atoms => atoms
                        .iter()
                        .map(|t| t.text().map(str::to_string))
                        .collect::<Option<_>>()?,
                };
                Some((
                    SequenceSet::parse(set.text()?)?,
                    action.text()?.to_ascii_uppercase(),
                    flags,
                ))
            }
            _ => None,
        });
        let Some((set, action, flags)) = parsed else {
            return self.tagged(tag, "BAD Could not parse command").await;
        };
        let silent = action.ends_with(".SILENT");
        let mode = action.trim_end_matches(".SILENT");
        if !matches!(mode, "FLAGS" | "+FLAGS" | "-FLAGS") {
            return self.tagged(tag, "BAD Could not parse command").await;
        }
        let account = self.account();
        let updated: Option<Vec<(u32, u32, BTreeSet<String>)>> = self.world.with(|s| {
            let mbox = s.mailboxes.get_mut(&account)?.get_mut(name)?;
            let hits = Self::resolve(&mbox.messages, &set, by_uid);
            let mut updated = Vec::new();
            for (seq, index) in hits {
                let m = &mut mbox.messages[index];
                match mode {
                    "FLAGS" => m.flags = flags.iter().cloned().collect(),
                    "+FLAGS" => m.flags.extend(flags.iter().cloned()),
                    _ => m.flags.retain(|f| !flags.contains(f)),
                }
                updated.push((seq, m.uid, m.flags.clone()));
            }
            Some(updated)
        });
        let Some(updated) = updated else {
            return self.tagged(tag, "NO Mailbox vanished (Failure)").await;
        };
        if !silent {
            let mut out = String::new();
            for (seq, uid, flags) in updated {
                let uid_part = if by_uid {
                    format!("UID {uid} ")
                } else {
                    String::new()
                };
                out.push_str(&format!(
                    "* {seq} FETCH ({uid_part}FLAGS ({}))\r\n",
                    join(&flags)
                ));
            }
            self.send(&out).await?;
        }
        self.tagged(tag, "OK Success").await
    }

    fn expunge_quietly(&mut self, name: &str) -> Vec<u32> {
        let account = self.account();
        let removed = self.world.with(|s| {
            let Some(mbox) = s.mailboxes.get_mut(&account).and_then(|m| m.get_mut(name)) else {
                return Vec::new();
            };
            let mut removed = Vec::new();
            let mut seq = 1u32;
            mbox.messages.retain(|m| {
                let keep = !m.flags.contains("\\Deleted");
                if keep {
                    seq += 1;
                } else {
                    removed.push(seq);
                }
                keep
            });
            removed
        });
        if let Some(selected) = self.selected.as_mut() {
            selected.exists = selected.exists.saturating_sub(removed.len());
        }
        removed
    }

    async fn expunge(&mut self, name: &str) -> io::Result<()> {
        let removed = self.expunge_quietly(name);
        let out: String = removed
            .iter()
            .map(|seq| format!("* {seq} EXPUNGE\r\n"))
            .collect();
        self.send(&out).await
    }

    /// Tells the client about messages that arrived since it last heard.
    async fn report_growth(&mut self) -> io::Result<()> {
        let Some(name) = self.selected.as_ref().map(|s| s.name.clone()) else {
            return Ok(());
        };
        let now = self.messages(&name).map_or(0, |(_, m)| m.len());
        if let Some(selected) = self.selected.as_mut()
            && now != selected.exists
        {
            selected.exists = now;
            self.send(&format!("* {now} EXISTS\r\n")).await?;
        }
        Ok(())
    }

    async fn idle_until_done(&mut self, tag: &str, _name: &str) -> io::Result<Flow> {
        self.send("+ idling\r\n").await?;
        self.changes.mark_unchanged();
        self.report_growth().await?;
        loop {
            let idle = self.idle();
            tokio::select! {
                ready = self.wire.readable(idle) => {
                    if ready.is_err() {
                        return Ok(Flow::Stop);
                    }
                    return match self.read_line().await? {
                        Some(Line::Complete(line)) if line.eq_ignore_ascii_case(b"DONE") => {
                            self.tagged(tag, "OK IDLE terminated (Success)").await
                        }
                        Some(_) => self.tagged(tag, "BAD Could not parse command").await,
                        None => Ok(Flow::Stop),
                    };
                }
                changed = self.changes.changed() => {
                    if changed.is_err() {
                        return Ok(Flow::Stop);
                    }
                    self.report_growth().await?;
                }
            }
        }
    }
}

/// `A001 LOGIN {5}` -> ("A001 LOGIN ", 5, sync).
fn literal_marker(line: &str) -> Option<(&str, usize, bool)> {
    let open = line.rfind('{')?;
    let inner = line[open + 1..].strip_suffix('}')?;
    let (digits, sync) = match inner.strip_suffix('+') {
        Some(d) => (d, false),
        None => (inner, true),
    };
    let size = digits.parse().ok()?;
    Some((&line[..open], size, sync))
}

fn join(flags: &BTreeSet<String>) -> String {
    flags
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(" ")
}

fn section_bytes(raw: &[u8], section: Section) -> &[u8] {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
        .unwrap_or(raw.len());
    match section {
        Section::Full => raw,
        Section::Header => &raw[..split],
        Section::Text => &raw[split..],
    }
}

fn internal_date(unix: i64) -> String {
    let format = time::macros::format_description!(
        "[day padding:space]-[month repr:short]-[year] [hour]:[minute]:[second] +0000"
    );
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_markers() {
        assert_eq!(literal_marker("A LOGIN {5}"), Some(("A LOGIN ", 5, true)));
        assert_eq!(literal_marker("A LOGIN {5+}"), Some(("A LOGIN ", 5, false)));
        assert_eq!(literal_marker("A NOOP"), None);
        assert_eq!(literal_marker("A X {x}"), None);
    }

    #[test]
    fn internal_dates_use_imap_format() {
        assert_eq!(internal_date(0), " 1-Jan-1970 00:00:00 +0000");
    }
}
