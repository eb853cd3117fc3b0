//! Everything gsim knows: OAuth clients, Gmail accounts, issued tokens, mailboxes, the delivery log,
//! counters and armed faults. One mutex guards it and is never held across an await, so every
//! protocol handler sees a consistent world and no handler can stall another.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use rand::Rng;
use rand::distr::{Alphanumeric, SampleString};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::clock::Clock;
use crate::config::{
    AccountConfig, ClientConfig, Config, ImapSettings, OauthSettings, SmtpSettings,
};
use crate::oauth::flow::{AuthCode, Flow};
use crate::oauth::id_token::IdTokenSigner;

pub const MAIL_SCOPE: &str = "https://mail.google.com/";

pub struct World {
    pub clock: Clock,
    state: Mutex<State>,
    changes: watch::Sender<u64>,
    /// Bumped to release the sessions held by `hold` faults.
    releases: watch::Sender<u64>,
    pub signer: IdTokenSigner,
    /// gsim's own HTTP base URL, for the discovery document.
    pub http_base: String,
}

#[derive(Default, Serialize, Deserialize)]
pub struct State {
    pub clients: BTreeMap<String, ClientConfig>,
    pub accounts: BTreeMap<String, Account>,
    pub refresh_tokens: HashMap<String, RefreshToken>,
    pub access_tokens: HashMap<String, AccessToken>,
    /// (account, client_id) pairs the user has consented to at least once.
    pub grants: BTreeSet<(String, String)>,
    pub mailboxes: BTreeMap<String, BTreeMap<String, Mailbox>>,
    pub deliveries: Vec<Delivery>,
    pub next_delivery_id: u64,
    /// Acceptance times per account over the last 24 h, for the daily quota.
    pub sent: BTreeMap<String, VecDeque<i64>>,
    pub clock_offset: i64,
    #[serde(skip)]
    pub flows: HashMap<String, Flow>,
    #[serde(skip)]
    pub codes: HashMap<String, AuthCode>,
    #[serde(skip)]
    pub counters: Counters,
    #[serde(skip)]
    pub faults: Faults,
    #[serde(skip)]
    pub settings: Settings,
    #[serde(skip)]
    pub connections: HashMap<(Protocol, String), usize>,
}

#[derive(Default, Clone, Serialize, Deserialize)]
pub struct Settings {
    pub oauth: OauthSettings,
    pub smtp: SmtpSettings,
    pub imap: ImapSettings,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Account {
    pub email: String,
    pub password: String,
    pub name: String,
    pub aliases: Vec<String>,
    pub daily_send_limit: u32,
    /// Google's stable numeric user id, the id_token's `sub`.
    pub sub: String,
}

impl Account {
    fn from_config(cfg: &AccountConfig, existing_sub: Option<String>) -> Self {
        let email = cfg.email.to_ascii_lowercase();
        let name = cfg
            .name
            .clone()
            .unwrap_or_else(|| email.split('@').next().unwrap_or_default().to_string());
        Self {
            sub: existing_sub.unwrap_or_else(|| {
                let mut rng = rand::rng();
                format!("1{:020}", rng.random_range(0..10u64.pow(19)))
            }),
            email,
            password: cfg.password.clone(),
            name,
            aliases: cfg.aliases.iter().map(|a| a.to_ascii_lowercase()).collect(),
            daily_send_limit: cfg.daily_send_limit,
        }
    }

    /// Whether Gmail lets this account send with `address` in From: its own address or a verified
    /// "Send mail as" alias.
    pub fn may_send_as(&self, address: &str) -> bool {
        let address = address.to_ascii_lowercase();
        address == self.email || self.aliases.contains(&address)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Death {
    Revoked,
    Expired,
    PasswordChanged,
    /// The 101st live token for the same account and client silently killed this, the oldest.
    Cap,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RefreshToken {
    pub token: String,
    pub client_id: String,
    pub account: String,
    pub scopes: Vec<String>,
    pub issued_at: i64,
    /// Testing-mode apps: seven days after consent.
    pub expires_at: Option<i64>,
    pub dead: Option<Death>,
}

impl RefreshToken {
    pub fn is_live(&self, now: i64) -> bool {
        self.dead.is_none() && self.expires_at.is_none_or(|t| now < t)
    }

    pub fn death(&self, now: i64) -> Option<Death> {
        self.dead
            .or_else(|| (!self.is_live(now)).then_some(Death::Expired))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessToken {
    pub client_id: String,
    pub account: String,
    pub scopes: Vec<String>,
    pub expires_at: i64,
    pub refresh_token: Option<String>,
    pub revoked: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Mailbox {
    pub uidvalidity: u32,
    pub uidnext: u32,
    pub messages: Vec<StoredMessage>,
}

impl Mailbox {
    fn new() -> Self {
        let mut rng = rand::rng();
        Self {
            uidvalidity: rng.random_range(1..=u32::MAX / 2),
            uidnext: 1,
            messages: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredMessage {
    pub uid: u32,
    pub flags: BTreeSet<String>,
    pub internal_date: i64,
    #[serde(with = "base64_bytes")]
    pub raw: Vec<u8>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Delivery {
    pub id: u64,
    pub time: i64,
    /// The authenticated Gmail account that sent it.
    pub account: String,
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    pub message_id: Option<String>,
    /// The From header as the client wrote it, when Gmail rewrote it.
    pub original_from: Option<String>,
    pub session: String,
    #[serde(with = "base64_bytes")]
    pub raw: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Smtp,
    Imap,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct Outcomes {
    pub ok: u64,
    pub failed: u64,
}

impl Outcomes {
    pub fn record(&mut self, ok: bool) {
        if ok {
            self.ok += 1;
        } else {
            self.failed += 1;
        }
    }
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct Counters {
    /// grant_type -> outcome (`ok` or the OAuth error code) -> count.
    pub token_requests: BTreeMap<String, BTreeMap<String, u64>>,
    pub smtp_connections: u64,
    pub smtp_logins: Outcomes,
    pub imap_connections: u64,
    pub imap_logins: Outcomes,
    pub messages_accepted: u64,
    pub revocations: u64,
    /// SMTP sessions a `hold` fault is holding right now.
    pub smtp_held: u64,
    /// Per account, the most authenticated SMTP sessions it had open at once: what a client
    /// (or several instances of one) asked of Gmail's concurrency limit.
    pub smtp_peak_sessions: BTreeMap<String, u64>,
}

/// Where in an SMTP session a fault fires: just before gsim would answer that command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmtpStage {
    Greeting,
    Ehlo,
    Starttls,
    Auth,
    Mail,
    Rcpt,
    Data,
    /// After the message body's final dot, instead of accepting it.
    DataEnd,
    /// After the message was delivered, instead of the `250` that says so: the client cannot
    /// tell whether Gmail has it.
    Delivered,
    Rset,
    Noop,
    Quit,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SmtpFault {
    pub stage: SmtpStage,
    /// Sent instead of the normal reply; `\n` separates lines. `None` with `close` drops the
    /// connection silently.
    #[serde(default)]
    pub reply: Option<String>,
    #[serde(default)]
    pub close: bool,
    /// Holds the session at this stage, saying nothing, until the control API releases held
    /// sessions; then the fault acts (with neither reply nor close, the session carries on as if
    /// nothing had happened): a slow server, or one that hangs.
    #[serde(default)]
    pub hold: bool,
    #[serde(default = "one")]
    pub count: u32,
    /// Only sessions of this account (as authenticated) are hit; `None` hits every session.
    #[serde(default)]
    pub account: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TokenFault {
    /// Answer the next `count` token requests with this HTTP status (500 or 503, as Google does
    /// when it is having a bad day).
    Status { status: u16, count: u32 },
    /// Hold the next `count` token requests this long before answering normally.
    Stall { seconds: f64, count: u32 },
}

fn one() -> u32 {
    1
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct Faults {
    pub smtp: Vec<SmtpFault>,
    pub token: VecDeque<TokenFault>,
}

impl World {
    pub fn new(config: &Config, http_base: String, saved: Option<State>) -> anyhow::Result<Self> {
        let mut state = saved.unwrap_or_default();
        state.settings = Settings {
            oauth: config.oauth.clone(),
            smtp: config.smtp.clone(),
            imap: config.imap.clone(),
        };
        for client in &config.clients {
            state.put_client(client.clone());
        }
        for account in &config.accounts {
            state.put_account(account);
        }
        let (changes, _) = watch::channel(0);
        Ok(Self {
            clock: Clock::new(state.clock_offset),
            state: Mutex::new(state),
            changes,
            releases: watch::channel(0).0,
            signer: IdTokenSigner::new()?,
            http_base,
        })
    }

    /// Runs `f` on the locked world. Keep `f` short and free of I/O.
    pub fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.lock())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock would poison it; the data is still consistent enough for
        // a simulator, so carry on rather than take every later connection down with it.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    pub fn notify_mailbox_change(&self) {
        self.changes.send_modify(|n| *n += 1);
    }

    pub fn subscribe_changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Waits, saying nothing, until the sessions held now are released. Counted in
    /// `smtp_held` meanwhile, so a test can wait for a session to be held.
    pub async fn hold_session(&self) {
        let mut releases = self.releases.subscribe();
        releases.borrow_and_update();
        self.with(|s| s.counters.smtp_held += 1);
        self.notify_mailbox_change();
        let _ = releases.changed().await;
        self.with(|s| s.counters.smtp_held = s.counters.smtp_held.saturating_sub(1));
        self.notify_mailbox_change();
    }

    /// Lets every held session go on.
    pub fn release_held(&self) {
        self.releases.send_modify(|n| *n += 1);
    }

    pub fn append_message(
        &self,
        account: &str,
        mailbox: &str,
        raw: Vec<u8>,
        flags: BTreeSet<String>,
    ) -> Option<u32> {
        let now = self.now();
        let uid = self.with(|s| s.append(account, mailbox, raw, flags, now));
        if uid.is_some() {
            self.notify_mailbox_change();
        }
        uid
    }

    /// Gives the mailbox a new UIDVALIDITY and numbers its messages again from 1, as a server
    /// does after rebuilding its index: every UID a client kept means nothing now. Returns the
    /// new UIDVALIDITY.
    pub fn renumber_mailbox(&self, account: &str, mailbox: &str) -> Option<u32> {
        let account = account.to_ascii_lowercase();
        let name = canonical_mailbox(mailbox);
        let validity = self.with(|s| {
            let mbox = s.mailboxes.get_mut(&account)?.get_mut(&name)?;
            let old = mbox.uidvalidity;
            while mbox.uidvalidity == old {
                mbox.uidvalidity = rand::rng().random_range(1..=u32::MAX / 2);
            }
            for (uid, message) in (1..).zip(mbox.messages.iter_mut()) {
                message.uid = uid;
            }
            mbox.uidnext = u32::try_from(mbox.messages.len()).unwrap_or(u32::MAX - 1) + 1;
            Some(mbox.uidvalidity)
        });
        if validity.is_some() {
            self.notify_mailbox_change();
        }
        validity
    }

    pub fn save(&self, dir: &Path) -> anyhow::Result<()> {
        let json = self.with(|s| {
            s.clock_offset = self.clock.offset();
            serde_json::to_vec(s)
        })?;
        let tmp = dir.join("state.json.tmp");
        std::fs::write(&tmp, json)?;
        std::fs::rename(tmp, dir.join("state.json"))?;
        Ok(())
    }

    pub fn load_saved(dir: &Path) -> anyhow::Result<Option<State>> {
        match std::fs::read(dir.join("state.json")) {
            Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes)?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Holds a connection slot for an authenticated account, or says the account has too many.
    pub fn claim_connection(
        self: &Arc<Self>,
        protocol: Protocol,
        account: &str,
    ) -> Option<ConnectionSlot> {
        let key = (protocol, account.to_string());
        self.with(|s| {
            let max = match protocol {
                Protocol::Smtp => s.settings.smtp.max_connections_per_account,
                Protocol::Imap => s.settings.imap.max_connections_per_account,
            };
            let open = s.connections.entry(key.clone()).or_default();
            if *open >= max {
                return None;
            }
            *open += 1;
            let now_open = *open as u64;
            if protocol == Protocol::Smtp {
                let peak = s
                    .counters
                    .smtp_peak_sessions
                    .entry(account.to_string())
                    .or_default();
                *peak = (*peak).max(now_open);
            }
            Some(ConnectionSlot {
                world: Arc::clone(self),
                key,
            })
        })
    }
}

/// Releases an account's connection slot when the session ends, however it ends.
pub struct ConnectionSlot {
    world: Arc<World>,
    key: (Protocol, String),
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.world.with(|s| {
            if let Some(open) = s.connections.get_mut(&self.key) {
                *open = open.saturating_sub(1);
            }
        });
    }
}

impl State {
    pub fn put_client(&mut self, client: ClientConfig) {
        self.clients.insert(client.client_id.clone(), client);
    }

    pub fn put_account(&mut self, cfg: &AccountConfig) {
        let key = cfg.email.to_ascii_lowercase();
        let sub = self.accounts.get(&key).map(|a| a.sub.clone());
        self.accounts
            .insert(key.clone(), Account::from_config(cfg, sub));
        self.mailboxes
            .entry(key)
            .or_default()
            .entry("INBOX".to_string())
            .or_insert_with(Mailbox::new);
    }

    /// The account an address reaches: its own address or one of its aliases.
    pub fn account_for_address(&self, address: &str) -> Option<&Account> {
        let address = address.to_ascii_lowercase();
        self.accounts.get(&address).or_else(|| {
            self.accounts
                .values()
                .find(|a| a.aliases.contains(&address))
        })
    }

    pub fn append(
        &mut self,
        account: &str,
        mailbox: &str,
        raw: Vec<u8>,
        flags: BTreeSet<String>,
        now: i64,
    ) -> Option<u32> {
        let account = account.to_ascii_lowercase();
        if !self.accounts.contains_key(&account) {
            return None;
        }
        let name = canonical_mailbox(mailbox);
        let mbox = self
            .mailboxes
            .entry(account)
            .or_default()
            .entry(name)
            .or_insert_with(Mailbox::new);
        let uid = mbox.uidnext;
        mbox.uidnext += 1;
        mbox.messages.push(StoredMessage {
            uid,
            flags,
            internal_date: now,
            raw,
        });
        Some(uid)
    }

    pub fn count_token_request(&mut self, grant: &str, outcome: &str) {
        *self
            .counters
            .token_requests
            .entry(if grant.is_empty() { "none" } else { grant }.to_string())
            .or_default()
            .entry(outcome.to_string())
            .or_default() += 1;
    }

    /// Takes one shot of the first armed fault for this stage and account.
    pub fn take_smtp_fault(
        &mut self,
        stage: SmtpStage,
        account: Option<&str>,
    ) -> Option<SmtpFault> {
        let index = self.faults.smtp.iter().position(|f| {
            f.stage == stage
                && f.count > 0
                && f.account
                    .as_deref()
                    .is_none_or(|a| Some(a.to_ascii_lowercase().as_str()) == account)
        })?;
        let fault = &mut self.faults.smtp[index];
        fault.count -= 1;
        let shot = fault.clone();
        if fault.count == 0 {
            self.faults.smtp.remove(index);
        }
        Some(shot)
    }

    pub fn take_token_fault(&mut self) -> Option<TokenFault> {
        let front = self.faults.token.front_mut()?;
        let (shot, left) = match front {
            TokenFault::Status { status, count } => {
                *count -= 1;
                (
                    TokenFault::Status {
                        status: *status,
                        count: 1,
                    },
                    *count,
                )
            }
            TokenFault::Stall { seconds, count } => {
                *count -= 1;
                (
                    TokenFault::Stall {
                        seconds: *seconds,
                        count: 1,
                    },
                    *count,
                )
            }
        };
        if left == 0 {
            self.faults.token.pop_front();
        }
        Some(shot)
    }

    /// Messages this account may still send in the rolling 24 hours ending now.
    pub fn quota_left(&mut self, account: &str, now: i64) -> u32 {
        let Some(limit) = self.accounts.get(account).map(|a| a.daily_send_limit) else {
            return 0;
        };
        let sent = self.sent.entry(account.to_string()).or_default();
        while sent.front().is_some_and(|&t| t <= now - 86_400) {
            sent.pop_front();
        }
        limit.saturating_sub(u32::try_from(sent.len()).unwrap_or(u32::MAX))
    }
}

/// IMAP's INBOX is case-insensitive; other names are kept as given.
pub fn canonical_mailbox(name: &str) -> String {
    if name.eq_ignore_ascii_case("INBOX") {
        "INBOX".to_string()
    } else {
        name.to_string()
    }
}

pub fn random_from(charset: &[u8], len: usize) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| charset[rng.random_range(0..charset.len())] as char)
        .collect()
}

pub const URL_SAFE: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const LOWER: &[u8] = b"abcdefghijklmnopqrstuvwxyz";
const LOWER_DIGITS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
const DIGITS: &[u8] = b"0123456789";

/// Gmail's per-session id as it appears in replies, e.g. `7sm10895420igt.6`.
pub fn session_id() -> String {
    let mut rng = rand::rng();
    format!(
        "{}sm{}{}.{}",
        random_from(LOWER_DIGITS, rng.random_range(1..=3)),
        random_from(DIGITS, 8),
        random_from(LOWER, 3),
        rng.random_range(1..200)
    )
}

/// Access tokens vary in length (Google: "must support variable token sizes").
pub fn new_access_token() -> String {
    let len = rand::rng().random_range(150..=230);
    format!("ya29.a0{}", random_from(URL_SAFE, len))
}

pub fn new_refresh_token() -> String {
    let len = rand::rng().random_range(95..=105);
    format!("1//0{}", random_from(URL_SAFE, len))
}

pub fn new_auth_code() -> String {
    let len = rand::rng().random_range(68..=76);
    format!("4/0A{}", random_from(URL_SAFE, len))
}

pub fn new_opaque_id() -> String {
    Alphanumeric.sample_string(&mut rand::rng(), 32)
}

mod base64_bytes {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}
