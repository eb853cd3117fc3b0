//! gsim's TOML configuration: listeners, OAuth clients and Gmail accounts.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// Gmail's advertised `SIZE`.
pub const GMAIL_MAX_MESSAGE_SIZE: usize = 35_882_577;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub listen: Listen,
    #[serde(default)]
    pub oauth: OauthSettings,
    #[serde(default)]
    pub smtp: SmtpSettings,
    #[serde(default)]
    pub imap: ImapSettings,
    #[serde(default)]
    pub clients: Vec<ClientConfig>,
    #[serde(default)]
    pub accounts: Vec<AccountConfig>,
}

/// Ports on 127.0.0.1; 0 picks any free port.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Listen {
    #[serde(default)]
    pub http: u16,
    #[serde(default)]
    pub smtp_starttls: u16,
    #[serde(default)]
    pub smtp_tls: u16,
    #[serde(default)]
    pub imap_tls: u16,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OauthSettings {
    /// Skip the account chooser and consent page: tests that are not about them get a code at once.
    #[serde(default)]
    pub auto_consent: bool,
    #[serde(default = "default_code_lifetime")]
    pub code_lifetime_secs: i64,
    #[serde(default = "default_access_lifetime")]
    pub access_token_lifetime_secs: i64,
}

impl Default for OauthSettings {
    fn default() -> Self {
        Self {
            auto_consent: false,
            code_lifetime_secs: default_code_lifetime(),
            access_token_lifetime_secs: default_access_lifetime(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpSettings {
    #[serde(default = "default_max_message_size")]
    pub max_message_size: usize,
    /// Gmail drops idle sessions with `451 4.4.2`; its real timeout is unconfirmed ("minutes").
    #[serde(default = "default_smtp_idle_ms")]
    pub idle_timeout_ms: u64,
    /// Gmail caps concurrent sessions per user with `421 4.7.0`; the real figure is unconfirmed.
    #[serde(default = "default_smtp_connections")]
    pub max_connections_per_account: usize,
    #[serde(default = "default_max_recipients")]
    pub max_recipients: usize,
}

impl Default for SmtpSettings {
    fn default() -> Self {
        Self {
            max_message_size: default_max_message_size(),
            idle_timeout_ms: default_smtp_idle_ms(),
            max_connections_per_account: default_smtp_connections(),
            max_recipients: default_max_recipients(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ImapSettings {
    #[serde(default = "default_imap_connections")]
    pub max_connections_per_account: usize,
    #[serde(default = "default_imap_idle_ms")]
    pub idle_timeout_ms: u64,
    /// Offer IDLE (Gmail does); off, the server plays one that does not, for clients' polling.
    #[serde(default = "default_true")]
    pub offer_idle: bool,
}

fn default_true() -> bool {
    true
}

impl Default for ImapSettings {
    fn default() -> Self {
        Self {
            max_connections_per_account: default_imap_connections(),
            idle_timeout_ms: default_imap_idle_ms(),
            offer_idle: true,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientType {
    Web,
    Desktop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PublishingStatus {
    Testing,
    Production,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    pub client_id: String,
    pub client_secret: String,
    #[serde(rename = "type", default = "default_client_type")]
    pub kind: ClientType,
    /// The app name Google shows on its consent and error pages.
    #[serde(default = "default_app_name")]
    pub name: String,
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    #[serde(default = "default_publishing_status")]
    pub publishing_status: PublishingStatus,
    #[serde(default)]
    pub test_users: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AccountConfig {
    pub email: String,
    #[serde(default = "default_password")]
    pub password: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub aliases: Vec<String>,
    #[serde(default = "default_daily_send_limit")]
    pub daily_send_limit: u32,
}

impl AccountConfig {
    pub fn new(email: &str) -> Self {
        Self {
            email: email.to_string(),
            password: default_password(),
            name: None,
            aliases: Vec::new(),
            daily_send_limit: default_daily_send_limit(),
        }
    }
}

impl ClientConfig {
    pub fn web(client_id: &str, client_secret: &str, redirect_uris: &[&str]) -> Self {
        Self {
            client_id: client_id.to_string(),
            client_secret: client_secret.to_string(),
            kind: ClientType::Web,
            name: default_app_name(),
            redirect_uris: redirect_uris.iter().map(|s| s.to_string()).collect(),
            publishing_status: PublishingStatus::Production,
            test_users: Vec::new(),
        }
    }
}

pub const DEMO_CLIENT_ID: &str =
    "104346170925-gsimdemo0mailgate0local0000000000.apps.googleusercontent.com";
pub const DEMO_CLIENT_SECRET: &str = "GOCSPX-gsim-demo-secret-not-a-real-one";
pub const DEMO_TEST_USER: &str = "alice@gmail.com";
pub const DEMO_OTHER_USER: &str = "bob@example.com";

impl Config {
    /// What `gsim serve` runs without `--config`: one web client in Testing with one test user, and
    /// a second account that is not a test user (to show Google's 403 access_denied).
    pub fn demo() -> Self {
        let mut client = ClientConfig::web(
            DEMO_CLIENT_ID,
            DEMO_CLIENT_SECRET,
            &[
                "http://127.0.0.1:8069/google_gmail/confirm",
                "http://localhost:8069/google_gmail/confirm",
            ],
        );
        client.name = "mailgate".to_string();
        client.publishing_status = PublishingStatus::Testing;
        client.test_users = vec![DEMO_TEST_USER.to_string()];
        let mut alice = AccountConfig::new(DEMO_TEST_USER);
        alice.name = Some("Alice Example".to_string());
        alice.aliases = vec!["sales@alice.example".to_string()];
        let mut bob = AccountConfig::new(DEMO_OTHER_USER);
        bob.name = Some("Bob Example".to_string());
        bob.daily_send_limit = 2000;
        Self {
            listen: Listen::default(),
            oauth: OauthSettings::default(),
            smtp: SmtpSettings::default(),
            imap: ImapSettings::default(),
            clients: vec![client],
            accounts: vec![alice, bob],
        }
    }

    /// No clients, no accounts: tests add exactly what they need.
    pub fn empty() -> Self {
        Self {
            clients: Vec::new(),
            accounts: Vec::new(),
            ..Self::demo()
        }
    }

    pub fn from_toml(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }

    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read config {}: {e}", path.display()))?;
        Self::from_toml(&text).map_err(|e| anyhow::anyhow!("config {}: {e}", path.display()))
    }
}

fn default_code_lifetime() -> i64 {
    600
}
fn default_access_lifetime() -> i64 {
    3599
}
fn default_max_message_size() -> usize {
    GMAIL_MAX_MESSAGE_SIZE
}
fn default_smtp_idle_ms() -> u64 {
    600_000
}
fn default_imap_idle_ms() -> u64 {
    1_800_000
}
fn default_smtp_connections() -> usize {
    15
}
fn default_max_recipients() -> usize {
    100
}
fn default_imap_connections() -> usize {
    15
}
fn default_client_type() -> ClientType {
    ClientType::Web
}
fn default_app_name() -> String {
    "gsim app".to_string()
}
fn default_publishing_status() -> PublishingStatus {
    PublishingStatus::Testing
}
fn default_password() -> String {
    "correct horse battery staple".to_string()
}
fn default_daily_send_limit() -> u32 {
    500
}
