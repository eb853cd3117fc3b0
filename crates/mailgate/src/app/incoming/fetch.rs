//! Fetching: the one IMAP login (a token, XOAUTH2, one forced refresh on a refusal, then
//! "Reconnect needed"), catching up on a folder by UID, and the loop that keeps a connection
//! open with IDLE (polling where IDLE is not offered), reconnecting with backoff.

use std::time::Duration;

use secrecy::SecretString;
use tokio::sync::watch;

use crate::app::App;
use crate::app::tokens::{REFRESH_MARGIN, TokenError};
use crate::clock::Timestamp;
use crate::domain::incoming::{IncomingServer, IncomingStatus, summarize};
use crate::imap_in::{self, FETCH_BATCH, Folder, ImapError, ImapSession, Woken};
use crate::store::{HeldSlot, NewInbound};

/// IMAP connections per account mailgate allows itself; Gmail allows 15 across all of a user's
/// clients, and the user's phone and laptop need theirs.
pub const CONNECTIONS_PER_ACCOUNT: i64 = 2;
/// IDLE is renewed before Gmail's 29-minute limit.
const IDLE_RENEW: Duration = Duration::from_secs(25 * 60);
/// Waits after a failure: doubling from the first to the last.
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_LAST: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error(transparent)]
    Imap(#[from] ImapError),
    /// A fresh token was refused too: the Google connection is marked "Reconnect needed".
    #[error("Gmail refused a fresh token at IMAP login: {0}")]
    Rejected(String),
    #[error("both IMAP connections mailgate allows this account are in use")]
    NoSlot,
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

impl FetchError {
    /// What the incoming server's status says.
    pub fn status(&self) -> IncomingStatus {
        match self {
            Self::Token(TokenError::ReconnectNeeded(reason)) => {
                IncomingStatus::ReconnectNeeded(reason.clone())
            }
            Self::Token(TokenError::NotConnected(account)) => {
                IncomingStatus::ReconnectNeeded(format!(
                    "{account} is not connected to Google: click \"Connect your Gmail account\""
                ))
            }
            Self::Rejected(reason) => IncomingStatus::ReconnectNeeded(reason.clone()),
            Self::Imap(ImapError::Refused { text, .. }) if text.contains("[ALERT]") => {
                IncomingStatus::Failing(format!("Gmail says: {text}"))
            }
            other => IncomingStatus::Failing(other.to_string()),
        }
    }
}

/// An IMAP session, with the account's connection slot it holds (a `session_slots` row keyed
/// `imap:<account>`, shared by instances).
pub struct Connection {
    pub session: ImapSession,
    pub slot: HeldSlot,
    pub token_expires_at: Option<Timestamp>,
}

impl App {
    /// Logs in to Gmail's IMAP server as `account`, within the account's connection cap.
    pub async fn imap_login(&self, account: &str) -> Result<Connection, FetchError> {
        let slot = self
            .store
            .hold_session_slot(
                &format!("imap:{account}"),
                &self.instance_id,
                CONNECTIONS_PER_ACCOUNT,
                self.now(),
                (),
            )
            .await?
            .ok_or(FetchError::NoSlot)?;
        match self.imap_login_in_slot(account).await {
            Ok((session, token_expires_at)) => Ok(Connection {
                session,
                slot,
                token_expires_at,
            }),
            Err(e) => {
                slot.release().await;
                Err(e)
            }
        }
    }

    async fn imap_login_in_slot(
        &self,
        account: &str,
    ) -> Result<(ImapSession, Option<Timestamp>), FetchError> {
        let endpoint = &self.config.gmail_imap;
        let limit = self.imap.command_timeout;
        let mut forced = false;
        loop {
            let token: SecretString = self.access_token(account, forced).await?;
            let stream = self.imap.connect(&endpoint.host, endpoint.port).await?;
            match imap_in::login(stream, account, &token, limit).await {
                Ok(session) => {
                    if let Err(e) = self.store.mark_connection_valid(account, self.now()).await {
                        tracing::warn!(account, "cannot note the valid login: {e}");
                    }
                    let expires = self
                        .store
                        .connection(account)
                        .await?
                        .and_then(|c| c.access_expires_at);
                    return Ok((session, expires));
                }
                Err(ImapError::Refused { text, .. })
                    if text.contains("AUTHENTICATIONFAILED") && !forced =>
                {
                    forced = true;
                }
                Err(ImapError::Refused { text, .. }) if text.contains("AUTHENTICATIONFAILED") => {
                    let reason = format!("Gmail refused a fresh token at IMAP login: {text}");
                    self.store
                        .mark_reconnect_needed(account, &reason, self.now())
                        .await?;
                    return Err(FetchError::Rejected(text));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Logs out and gives the account's connection slot back.
    pub async fn imap_logout(&self, connection: Connection) {
        imap_in::logout(connection.session, self.imap.command_timeout).await;
        connection.slot.release().await;
    }

    /// One short-lived connection ("Test & Confirm", "Fetch Now"): logs in, lets `work` use
    /// the session, and logs out whatever `work` answered.
    pub async fn on_one_imap_connection<T>(
        &self,
        account: &str,
        work: impl AsyncFnOnce(&mut ImapSession) -> Result<T, FetchError>,
    ) -> Result<T, FetchError> {
        let mut connection = self.imap_login(account).await?;
        let done = work(&mut connection.session).await;
        self.imap_logout(connection).await;
        done
    }

    /// SELECTs the server's folder and stores every message past where fetching stood. Returns
    /// the folder and how many messages were stored.
    pub async fn catch_up(
        &self,
        server: &IncomingServer,
        session: &mut ImapSession,
    ) -> Result<(Folder, usize), FetchError> {
        let limit = self.imap.command_timeout;
        let folder = imap_in::select(session, &server.folder, limit).await?;
        let uidvalidity = i64::from(folder.uidvalidity);
        let current = self
            .store
            .incoming_server(server.id)
            .await?
            .ok_or_else(|| ImapError::Protocol("the incoming server was deleted".into()))?;
        let mut last = current.last_uid;
        if current.uidvalidity != Some(uidvalidity) {
            // The first fetch, or the folder's UIDs were renumbered: fetch it all again; after a
            // renumbering, what is already stored is recognised and not stored twice.
            let refetch_through = match current.uidvalidity {
                None => 0,
                Some(_) => folder.uidnext.map_or(i64::MAX, |next| i64::from(next) - 1),
            };
            if current.uidvalidity.is_some() {
                tracing::warn!(
                    server = server.id,
                    folder = %server.folder,
                    "the folder's UIDVALIDITY changed: fetching it again, skipping what is stored"
                );
            }
            self.store
                .restart_folder(server.id, uidvalidity, refetch_through)
                .await?;
            last = 0;
        }
        let mut stored = 0;
        loop {
            let uids =
                imap_in::uids_after(session, u32::try_from(last).unwrap_or(0), limit).await?;
            if uids.is_empty() {
                break;
            }
            for chunk in uids.chunks(FETCH_BATCH) {
                // A batch of big messages takes longer than one command's wait.
                let fetched = imap_in::fetch(session, chunk, limit * 10).await?;
                let now = self.now();
                let batch: Vec<NewInbound> = fetched
                    .into_iter()
                    .map(|(uid, raw)| NewInbound {
                        id: inbound_id(now, server.id, uidvalidity, uid),
                        uid: i64::from(uid),
                        summary: summarize(&raw),
                        content_hash: crate::crypto::sha256_hex(&raw),
                        raw,
                    })
                    .collect();
                stored += self
                    .store
                    .store_fetched(
                        server.id,
                        &server.folder,
                        uidvalidity,
                        &batch,
                        server.webhook_url.is_some(),
                        now,
                    )
                    .await?;
                if server.mark_seen {
                    imap_in::mark_seen(session, chunk, limit).await?;
                }
                if let Some(highest) = chunk.last() {
                    last = i64::from(*highest);
                }
                self.inbox_progress.send_modify(|n| *n += 1);
            }
        }
        Ok((folder, stored))
    }

    /// Keeps `server`'s folder fetched until `stop` turns true: a connection with IDLE (or a
    /// poll every interval), caught up whenever the server tells of new mail; after a failure,
    /// the status says why and the connection is made again, waiting longer each time.
    pub async fn keep_fetching(&self, server: &IncomingServer, mut stop: watch::Receiver<bool>) {
        let mut wait = RETRY_FIRST;
        let mut connections = self.connections_changed.subscribe();
        while !*stop.borrow() {
            connections.mark_unchanged();
            match self.fetch_session(server, &mut stop).await {
                Ok(()) => wait = RETRY_FIRST,
                Err(e) => {
                    let status = e.status();
                    tracing::warn!(server = server.id, "incoming: {e}");
                    if let Err(e) = self
                        .store
                        .set_incoming_status(server.id, &status, self.now())
                        .await
                    {
                        tracing::error!("cannot record the incoming server's status: {e}");
                    }
                    self.inbox_progress.send_modify(|n| *n += 1);
                    let reconnected = tokio::select! {
                        _ = tokio::time::sleep(wait) => false,
                        _ = stop.changed() => false,
                        // The admin reconnected a Google account: perhaps this one.
                        _ = connections.changed() => true,
                    };
                    wait = if reconnected {
                        RETRY_FIRST
                    } else {
                        (wait * 2).min(RETRY_LAST)
                    };
                }
            }
        }
    }

    /// One connection's life: login, catch up, then IDLE (or poll) and catch up again until a
    /// stop, or until the token nears its end (the next login takes a fresh one).
    async fn fetch_session(
        &self,
        server: &IncomingServer,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<(), FetchError> {
        let Connection {
            session,
            slot,
            token_expires_at,
        } = self.imap_login(&server.username).await?;
        let result = self.fetch_on(server, session, token_expires_at, stop).await;
        slot.release().await;
        result
    }

    async fn fetch_on(
        &self,
        server: &IncomingServer,
        mut session: ImapSession,
        token_expires_at: Option<Timestamp>,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<(), FetchError> {
        let limit = self.imap.command_timeout;
        // A Google account connected or disconnected, here or (within a heartbeat) on another
        // instance: the session ends and the next login says whether this account still has
        // its connection. Disconnect thus stops the fetcher at once; other accounts' fetchers
        // log in again once, which costs little.
        let mut accounts = self.connections_changed.subscribe();
        let offers_idle = session
            .capabilities()
            .await
            .map(|c| c.has_str("IDLE"))
            .unwrap_or(false);
        loop {
            if let Err(e) = self.catch_up(server, &mut session).await {
                imap_in::logout(session, limit).await;
                return Err(e);
            }
            self.store
                .set_incoming_status(server.id, &IncomingStatus::Ok, self.now())
                .await?;
            self.inbox_progress.send_modify(|n| *n += 1);
            let token_left = token_expires_at.map_or(IDLE_RENEW, |at| {
                Duration::from_secs(u64::try_from(at - REFRESH_MARGIN - self.now()).unwrap_or(0))
            });
            if token_left.is_zero() || *stop.borrow() {
                imap_in::logout(session, limit).await;
                return Ok(());
            }
            if !offers_idle {
                let every = Duration::from_secs(u64::try_from(server.interval_secs).unwrap_or(300));
                tokio::select! {
                    _ = tokio::time::sleep(every.min(token_left)) => continue,
                    _ = stop.changed() => {}
                    _ = accounts.changed() => {}
                }
                imap_in::logout(session, limit).await;
                return Ok(());
            }
            let asked = {
                let mut stop = stop.clone();
                let mut accounts = accounts.clone();
                async move {
                    tokio::select! {
                        _ = stop.changed() => {}
                        _ = accounts.changed() => {}
                    }
                }
            };
            let (idled, woken) =
                imap_in::idle(session, IDLE_RENEW.min(token_left), asked, limit).await?;
            session = idled;
            if woken == Woken::Asked || *stop.borrow() {
                imap_in::logout(session, limit).await;
                return Ok(());
            }
        }
    }
}

/// Ids that sort as the messages arrived: the second, then the server, UIDVALIDITY and UID.
fn inbound_id(now: Timestamp, server: i64, uidvalidity: i64, uid: u32) -> String {
    format!("{now:010x}{server:06x}{uidvalidity:08x}{uid:08x}")
}
