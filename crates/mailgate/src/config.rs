//! Configuration: defaults, then a TOML file (`--config`), then `MAILGATE_*` environment variables,
//! which win, layered by figment. Every key has a default, so `mailgate serve` needs none. A key mailgate does not know
//! is an error in the file (a typo must not silently fall back to a default) and a warning in the
//! environment (other tools may share the prefix).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use secrecy::SecretString;
use serde::Deserialize;
use url::Url;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("{key}: {message}")]
    Value { key: String, message: String },
}

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Value {
        key: key.to_string(),
        message: message.into(),
    }
}

/// Where Google lives. Tests and the local demo point these at gsim.
#[derive(Debug, Clone)]
pub struct GoogleEndpoints {
    pub auth_url: Url,
    pub token_url: Url,
    pub revoke_url: Url,
    pub certs_url: Url,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for HostPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

#[derive(Debug, Clone)]
pub enum SecretKeySource {
    /// `MAILGATE_SECRET_KEY`: base64 of 32 bytes.
    Inline(SecretString),
    /// A file holding the key, created with mode 0600 on first start.
    File(PathBuf),
}

#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub database_url: String,
    pub secret_key: SecretKeySource,
    pub http_addr: SocketAddr,
    /// The URL browsers use to reach mailgate, without a trailing slash.
    pub public_url: Url,
    pub google: GoogleEndpoints,
    /// What choosing "Gmail OAuth" fills in as SMTP host and port.
    pub gmail_smtp: HostPort,
    pub gmail_imap: HostPort,
    pub extra_ca_file: Option<PathBuf>,
    /// Largest message accepted for sending, in bytes.
    pub max_message_size: usize,
    /// Days the bodies of messages that reached an end (sent, failed, cancelled) are kept.
    pub retention_days: i64,
    /// Days the records of such messages, and their attempts, are kept.
    pub history_days: i64,
    /// Seconds an SMTP server may take to answer a command or to take the next part of a message.
    pub smtp_timeout_secs: u64,
    /// Seconds without a heartbeat after which an instance counts as dead and the others take
    /// back the messages it held.
    pub instance_timeout_secs: i64,
    /// Seconds a browser or API client may take to send its request head, or to send the next
    /// piece of its body.
    pub http_timeout_secs: u64,
    /// Reverse proxies whose `X-Forwarded-For` names the client; nobody else's is believed.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    pub relay: RelayConfig,
    /// Things worth telling the operator at start (unknown environment variables).
    pub warnings: Vec<String>,
}

/// The SMTP relay's listeners and rules (`[relay]` in the file, `MAILGATE_RELAY_*`).
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// The submission listener (STARTTLS); None turns it off.
    pub addr: Option<SocketAddr>,
    /// A second listener speaking TLS from the first byte (port 465 style).
    pub tls_addr: Option<SocketAddr>,
    /// The certificate chain and key, PEM; without them a self-signed pair is made on first
    /// start and kept in the data directory.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// The name in the greeting, the EHLO reply, the Received header and the self-signed
    /// certificate.
    pub hostname: String,
    /// Clients here may send without logging in (devices that cannot authenticate).
    pub trusted_networks: Vec<ipnet::IpNet>,
    /// AUTH over a connection that is neither TLS nor loopback.
    pub allow_plaintext_auth: bool,
    pub max_sessions: usize,
    /// Sessions from one address outside `trusted_networks` (loopback is one address).
    pub max_sessions_per_ip: usize,
    /// Recipients per message; more than Gmail's 100 go out as several messages.
    pub max_recipients: usize,
}

/// The settings as layered by figment, before they are checked: every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
    secret_key_file: Option<PathBuf>,
    http_addr: Option<String>,
    public_url: Option<String>,
    extra_ca_file: Option<PathBuf>,
    max_message_size: Option<usize>,
    retention_days: Option<i64>,
    history_days: Option<i64>,
    smtp_timeout_secs: Option<u64>,
    instance_timeout_secs: Option<i64>,
    http_timeout_secs: Option<u64>,
    trusted_proxies: Option<OneOrMany>,
    #[serde(default)]
    google: FileGoogle,
    #[serde(default)]
    gmail: FileGmail,
    #[serde(default)]
    relay: FileRelay,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRelay {
    addr: Option<String>,
    tls_addr: Option<String>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    hostname: Option<String>,
    trusted_networks: Option<OneOrMany>,
    allow_plaintext_auth: Option<BoolText>,
    max_sessions: Option<usize>,
    max_sessions_per_ip: Option<usize>,
    max_recipients: Option<usize>,
}

/// A boolean from the file, or its text from the environment.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum BoolText {
    Bool(bool),
    Text(String),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileGoogle {
    auth_url: Option<String>,
    token_url: Option<String>,
    revoke_url: Option<String>,
    certs_url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileGmail {
    smtp: Option<String>,
    imap: Option<String>,
}

/// `trusted_proxies`: a TOML list, or a comma-separated string from the environment.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    Many(Vec<String>),
    One(String),
}

impl OneOrMany {
    fn items(self) -> Vec<String> {
        match self {
            OneOrMany::Many(items) => items,
            OneOrMany::One(list) => list
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect(),
        }
    }
}

/// Keys whose environment value is a number (the others are taken as text, whatever they look
/// like: a data dir named `1` is still a path).
const NUMERIC_KEYS: &[&str] = &[
    "max_message_size",
    "retention_days",
    "history_days",
    "smtp_timeout_secs",
    "instance_timeout_secs",
    "http_timeout_secs",
    "relay.max_sessions",
    "relay.max_sessions_per_ip",
    "relay.max_recipients",
];

/// Secrets that may come from a file instead (`MAILGATE_DATABASE_URL_FILE`, as Docker and
/// systemd credentials provide them), so they need not sit in the environment.
const SECRET_FILE_KEYS: &[&str] = &["MAILGATE_DATABASE_URL"];

/// Every environment variable mailgate reads, with the file key it overrides.
pub const ENV_KEYS: &[(&str, &str)] = &[
    ("MAILGATE_DATA_DIR", "data_dir"),
    ("MAILGATE_DATABASE_URL", "database_url"),
    (
        "MAILGATE_DATABASE_URL_FILE",
        "(a file holding database_url)",
    ),
    ("MAILGATE_SECRET_KEY", "(environment only)"),
    ("MAILGATE_SECRET_KEY_FILE", "secret_key_file"),
    ("MAILGATE_HTTP_ADDR", "http_addr"),
    ("MAILGATE_PUBLIC_URL", "public_url"),
    ("MAILGATE_EXTRA_CA_FILE", "extra_ca_file"),
    ("MAILGATE_GOOGLE_AUTH_URL", "google.auth_url"),
    ("MAILGATE_GOOGLE_TOKEN_URL", "google.token_url"),
    ("MAILGATE_GOOGLE_REVOKE_URL", "google.revoke_url"),
    ("MAILGATE_GOOGLE_CERTS_URL", "google.certs_url"),
    ("MAILGATE_GMAIL_SMTP", "gmail.smtp"),
    ("MAILGATE_GMAIL_IMAP", "gmail.imap"),
    ("MAILGATE_MAX_MESSAGE_SIZE", "max_message_size"),
    ("MAILGATE_RETENTION_DAYS", "retention_days"),
    ("MAILGATE_HISTORY_DAYS", "history_days"),
    ("MAILGATE_SMTP_TIMEOUT_SECS", "smtp_timeout_secs"),
    ("MAILGATE_INSTANCE_TIMEOUT_SECS", "instance_timeout_secs"),
    ("MAILGATE_HTTP_TIMEOUT_SECS", "http_timeout_secs"),
    ("MAILGATE_TRUSTED_PROXIES", "trusted_proxies"),
    ("MAILGATE_RELAY_ADDR", "relay.addr"),
    ("MAILGATE_RELAY_TLS_ADDR", "relay.tls_addr"),
    ("MAILGATE_RELAY_CERT_FILE", "relay.cert_file"),
    ("MAILGATE_RELAY_KEY_FILE", "relay.key_file"),
    ("MAILGATE_RELAY_HOSTNAME", "relay.hostname"),
    ("MAILGATE_RELAY_TRUSTED_NETWORKS", "relay.trusted_networks"),
    (
        "MAILGATE_RELAY_ALLOW_PLAINTEXT_AUTH",
        "relay.allow_plaintext_auth",
    ),
    ("MAILGATE_RELAY_MAX_SESSIONS", "relay.max_sessions"),
    (
        "MAILGATE_RELAY_MAX_SESSIONS_PER_IP",
        "relay.max_sessions_per_ip",
    ),
    ("MAILGATE_RELAY_MAX_RECIPIENTS", "relay.max_recipients"),
    ("MAILGATE_LOG", "(environment only)"),
    ("MAILGATE_LOG_FORMAT", "(environment only)"),
];

impl Config {
    /// Reads the process environment and the optional file.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let env: BTreeMap<String, String> = std::env::vars()
            .filter(|(k, _)| k.starts_with("MAILGATE_"))
            .collect();
        Self::from_sources(file, &env)
    }

    /// The layering itself, with the environment passed in so tests can build configs exactly.
    pub fn from_sources(
        file: Option<&Path>,
        env: &BTreeMap<String, String>,
    ) -> Result<Self, ConfigError> {
        let text = match file {
            Some(path) => std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })?,
            None => String::new(),
        };
        // The file is checked on its own first: toml names a typo with its line and column,
        // and a mistake in the file is the file's, whatever the environment says.
        if let (Some(path), Err(e)) = (file, toml::from_str::<RawConfig>(&text)) {
            return Err(ConfigError::File {
                path: path.to_path_buf(),
                message: e.message().to_string(),
            });
        }
        let warnings = env
            .keys()
            .filter(|k| !ENV_KEYS.iter().any(|(known, _)| known == k))
            .map(|k| format!("unknown environment variable {k} ignored"))
            .collect();
        let overrides = environment_overrides(env)?;
        let mut figment = Figment::new().merge(Toml::string(&text));
        for (key, value) in &overrides {
            figment = figment.merge(Serialized::default(key, value));
        }
        // The file passed on its own, so what fails now is a value from the environment.
        let raw: RawConfig = figment
            .extract()
            .map_err(|e| invalid(&e.path.join("."), e.kind.to_string()))?;
        let env_only = |key: &str| env.get(key).cloned();

        let data_dir = raw
            .data_dir
            .unwrap_or_else(|| PathBuf::from("mailgate-data"));
        let database_url = database_url(raw.database_url, &data_dir)?;
        let secret_key = match env_only("MAILGATE_SECRET_KEY") {
            Some(key) => SecretKeySource::Inline(SecretString::from(key)),
            None => SecretKeySource::File(
                raw.secret_key_file
                    .unwrap_or_else(|| data_dir.join("secret.key")),
            ),
        };
        let http_addr_text = raw
            .http_addr
            .unwrap_or_else(|| "127.0.0.1:8069".to_string());
        let http_addr: SocketAddr = http_addr_text.parse().map_err(|_| {
            invalid(
                "http_addr",
                format!("`{http_addr_text}` is not an address like 127.0.0.1:8069"),
            )
        })?;
        let public_url = parse_public_url(
            &raw.public_url
                .unwrap_or_else(|| "http://127.0.0.1:8069".to_string()),
        )?;
        let g = raw.google;
        let google = GoogleEndpoints {
            auth_url: google_url(
                "google.auth_url",
                g.auth_url,
                "https://accounts.google.com/o/oauth2/v2/auth",
            )?,
            token_url: google_url(
                "google.token_url",
                g.token_url,
                "https://oauth2.googleapis.com/token",
            )?,
            revoke_url: google_url(
                "google.revoke_url",
                g.revoke_url,
                "https://oauth2.googleapis.com/revoke",
            )?,
            certs_url: google_url(
                "google.certs_url",
                g.certs_url,
                "https://www.googleapis.com/oauth2/v3/certs",
            )?,
        };
        let gmail_smtp = host_port("gmail.smtp", raw.gmail.smtp, "smtp.gmail.com:587")?;
        let gmail_imap = host_port("gmail.imap", raw.gmail.imap, "imap.gmail.com:993")?;
        let extra_ca_file = raw.extra_ca_file;
        let max_message_size = number(
            "max_message_size",
            raw.max_message_size,
            crate::domain::message::DEFAULT_MAX_SIZE,
        )?;
        let retention_days = number("retention_days", raw.retention_days, 7)?;
        let history_days = number("history_days", raw.history_days, 90)?;
        let smtp_timeout_secs = number("smtp_timeout_secs", raw.smtp_timeout_secs, 60)?;
        let instance_timeout_secs = number("instance_timeout_secs", raw.instance_timeout_secs, 15)?;
        let http_timeout_secs = number("http_timeout_secs", raw.http_timeout_secs, 30)?;
        let trusted_proxies = raw
            .trusted_proxies
            .map(OneOrMany::items)
            .unwrap_or_default()
            .iter()
            .map(|text| {
                text.parse().map_err(|_| {
                    invalid(
                        "trusted_proxies",
                        format!("`{text}` is not an IP address like 127.0.0.1 or ::1"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let relay = relay_config(raw.relay, &public_url)?;
        Ok(Self {
            data_dir,
            database_url,
            secret_key,
            http_addr,
            public_url,
            google,
            gmail_smtp,
            gmail_imap,
            extra_ca_file,
            max_message_size,
            retention_days,
            history_days,
            smtp_timeout_secs,
            instance_timeout_secs,
            http_timeout_secs,
            trusted_proxies,
            relay,
            warnings,
        })
    }

    /// The exact URI to register in Google's console as "Authorized redirect URI".
    pub fn redirect_uri(&self) -> String {
        format!("{}/google_gmail/confirm", self.public_base())
    }

    /// The public URL as a prefix for paths: no trailing slash.
    pub fn public_base(&self) -> String {
        self.public_url.as_str().trim_end_matches('/').to_string()
    }

    pub fn public_url_is_https(&self) -> bool {
        self.public_url.scheme() == "https"
    }

    /// Google refuses http redirect URIs except on loopback (odoo/docker#536).
    pub fn public_url_rejected_by_google(&self) -> bool {
        !self.public_url_is_https() && !is_loopback_host(&self.public_url)
    }
}

pub fn is_loopback_host(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// A positive number, else the default.
fn number<T: PartialOrd + Default + Copy>(
    key: &str,
    value: Option<T>,
    default: T,
) -> Result<T, ConfigError> {
    let value = value.unwrap_or(default);
    if value <= T::default() {
        return Err(invalid(key, "must be more than 0"));
    }
    Ok(value)
}

/// The environment's settings as figment key paths (`MAILGATE_GOOGLE_TOKEN_URL` →
/// `google.token_url`), through the one table of known variables; `*_FILE` secrets are read.
fn environment_overrides(
    env: &BTreeMap<String, String>,
) -> Result<Vec<(&'static str, figment::value::Value)>, ConfigError> {
    let mut overrides = Vec::new();
    for &(name, key) in ENV_KEYS {
        if key.starts_with('(') {
            continue;
        }
        let from_file = SECRET_FILE_KEYS
            .contains(&name)
            .then(|| env.get(&format!("{name}_FILE")))
            .flatten();
        let text = match (env.get(name), from_file) {
            (Some(text), _) => text.clone(),
            (None, Some(path)) => std::fs::read_to_string(path)
                .map(|t| t.trim_end_matches(['\r', '\n']).to_string())
                .map_err(|e| invalid(key, format!("cannot read {name}_FILE `{path}`: {e}")))?,
            (None, None) => continue,
        };
        let value = if NUMERIC_KEYS.contains(&key) {
            text.trim()
                .parse::<u64>()
                .map(figment::value::Value::from)
                .map_err(|_| invalid(key, format!("`{text}` is not a number")))?
        } else {
            figment::value::Value::from(text)
        };
        overrides.push((key, value));
    }
    Ok(overrides)
}

fn relay_config(raw: FileRelay, public_url: &Url) -> Result<RelayConfig, ConfigError> {
    // An empty value turns a listener off.
    let listener = |key: &str, value: Option<String>, default: Option<&str>| {
        let text = value.or(default.map(str::to_string)).unwrap_or_default();
        let text = text.trim();
        if text.is_empty() {
            return Ok(None);
        }
        text.parse::<SocketAddr>().map(Some).map_err(|_| {
            invalid(
                key,
                format!("`{text}` is not an address like 127.0.0.1:2525 (empty turns it off)"),
            )
        })
    };
    let addr = listener("relay.addr", raw.addr, Some("127.0.0.1:2525"))?;
    let tls_addr = listener("relay.tls_addr", raw.tls_addr, None)?;
    if raw.cert_file.is_some() != raw.key_file.is_some() {
        return Err(invalid(
            "relay.cert_file",
            "give both relay.cert_file and relay.key_file, or neither (a self-signed pair is made)",
        ));
    }
    let hostname = raw
        .hostname
        .or_else(|| public_url.host_str().map(str::to_string))
        .unwrap_or_else(|| "localhost".to_string());
    if hostname.is_empty()
        || !hostname
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-_[]:".contains(&b))
    {
        return Err(invalid(
            "relay.hostname",
            format!("`{hostname}` is not a host name"),
        ));
    }
    let trusted_networks = raw
        .trusted_networks
        .map(OneOrMany::items)
        .unwrap_or_default()
        .iter()
        .map(|text| {
            text.parse::<ipnet::IpNet>()
                .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| {
                    invalid(
                        "relay.trusted_networks",
                        format!("`{text}` is not a network like 192.168.1.0/24 or an address"),
                    )
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let allow_plaintext_auth = match raw.allow_plaintext_auth {
        None => false,
        Some(BoolText::Bool(b)) => b,
        Some(BoolText::Text(text)) => match text.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => true,
            "false" | "0" | "no" | "off" | "" => false,
            _ => {
                return Err(invalid(
                    "relay.allow_plaintext_auth",
                    format!("`{text}` is neither true nor false"),
                ));
            }
        },
    };
    Ok(RelayConfig {
        addr,
        tls_addr,
        cert_file: raw.cert_file,
        key_file: raw.key_file,
        hostname,
        trusted_networks,
        allow_plaintext_auth,
        max_sessions: number("relay.max_sessions", raw.max_sessions, 100)?,
        max_sessions_per_ip: number("relay.max_sessions_per_ip", raw.max_sessions_per_ip, 25)?,
        max_recipients: number("relay.max_recipients", raw.max_recipients, 1000)?,
    })
}

/// A URL fit for messages and logs: its password, if any, replaced by `***`.
/// The engine is chosen by the URL: `postgres://` (or `postgresql://`) for PostgreSQL,
/// `sqlite://path` or a bare file path for SQLite (the default, in the data directory).
/// Anything else with a scheme is refused, naming the forms that are accepted.
fn database_url(given: Option<String>, data_dir: &std::path::Path) -> Result<String, ConfigError> {
    let Some(url) = given.map(|u| u.trim().to_string()) else {
        return Ok(format!(
            "sqlite://{}",
            data_dir.join("mailgate.db").display()
        ));
    };
    if url.starts_with("sqlite:") {
        return Ok(url);
    }
    if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        return postgres_tls(url);
    }
    // A scheme is letters before "://" or a ":" that comes before any "/" (as in `mysql:...`);
    // a Windows-style drive letter is not on offer here.
    let scheme_like = url.contains("://")
        || url
            .split_once(':')
            .is_some_and(|(before, _)| !before.is_empty() && !before.contains('/'));
    if url.is_empty() || scheme_like {
        return Err(invalid(
            "database_url",
            format!(
                "`{}` is not a database mailgate can use: give postgres://user@host/database for PostgreSQL, or sqlite:///path/to/mailgate.db or a file path for SQLite",
                redacted(&url)
            ),
        ));
    }
    Ok(format!("sqlite://{url}"))
}

/// PostgreSQL over a network is TLS, verified, as everything else mailgate talks to: without an
/// `sslmode`, a server off this machine gets `verify-full` (the public roots, or `sslrootcert`
/// for a private CA) and one on loopback or a Unix socket gets `disable` (TLS to oneself protects
/// nothing and costs every query). The modes that encrypt without checking who answers are
/// refused rather than half-trusted.
fn postgres_tls(url: String) -> Result<String, ConfigError> {
    let parsed = Url::parse(&url).map_err(|e| {
        invalid(
            "database_url",
            format!("`{}` is not a valid URL ({e})", redacted(&url)),
        )
    })?;
    let param = |name: &str| {
        parsed
            .query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    match param("sslmode").as_deref() {
        Some("verify-full" | "verify-ca" | "disable") => Ok(url),
        Some(mode @ ("allow" | "prefer" | "require")) => Err(invalid(
            "database_url",
            format!(
                "sslmode={mode} encrypts without checking the server's certificate; use sslmode=verify-full (add sslrootcert=/path/to/ca.pem for a private CA), or sslmode=disable for a server on a network you trust"
            ),
        )),
        Some(mode) => Err(invalid(
            "database_url",
            format!("sslmode={mode} is not one of verify-full, verify-ca, disable"),
        )),
        None => {
            let host = param("host").or_else(|| parsed.host_str().map(str::to_string));
            let local = host.as_deref().is_none_or(|h| {
                h.is_empty()
                    || h.starts_with('/')
                    || h == "localhost"
                    || h.trim_matches(['[', ']'])
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback())
            });
            let mode = if local { "disable" } else { "verify-full" };
            let joiner = if parsed.query().is_some() { '&' } else { '?' };
            Ok(format!("{url}{joiner}sslmode={mode}"))
        }
    }
}

pub fn redacted(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(_) => url.to_string(),
        // Unparseable: anything between "//" and "@" may be credentials.
        Err(_) => match (url.find("//"), url.rfind('@')) {
            (Some(start), Some(at)) if at > start => {
                format!("{}//***{}", &url[..start], &url[at..])
            }
            _ => url.to_string(),
        },
    }
}

fn parse_public_url(text: &str) -> Result<Url, ConfigError> {
    let url = Url::parse(text).map_err(|e| invalid("public_url", format!("`{text}`: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(invalid(
            "public_url",
            format!("`{text}` must be an http:// or https:// URL"),
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid(
            "public_url",
            format!("`{text}` must not carry a query or a fragment"),
        ));
    }
    Ok(url)
}

/// Google's endpoints must be https; plain http is allowed only on loopback, for gsim.
fn google_url(key: &str, value: Option<String>, default: &str) -> Result<Url, ConfigError> {
    let text = value.unwrap_or_else(|| default.to_string());
    let url = Url::parse(&text).map_err(|e| invalid(key, format!("`{text}`: {e}")))?;
    match url.scheme() {
        "https" => Ok(url),
        "http" if is_loopback_host(&url) => Ok(url),
        _ => Err(invalid(
            key,
            format!("`{text}` must use https (plain http only for 127.0.0.1 or localhost)"),
        )),
    }
}

fn host_port(key: &str, value: Option<String>, default: &str) -> Result<HostPort, ConfigError> {
    let text = value.unwrap_or_else(|| default.to_string());
    let (host, port) = text
        .rsplit_once(':')
        .ok_or_else(|| invalid(key, format!("`{text}` is not host:port")))?;
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| invalid(key, format!("`{text}`: the port must be 1-65535")))?;
    if host.is_empty() {
        return Err(invalid(key, format!("`{text}` has no host")));
    }
    Ok(HostPort {
        host: host.to_string(),
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_need_nothing() {
        let config = Config::from_sources(None, &env(&[])).unwrap();
        assert_eq!(config.http_addr.to_string(), "127.0.0.1:8069");
        assert_eq!(
            config.redirect_uri(),
            "http://127.0.0.1:8069/google_gmail/confirm"
        );
        assert_eq!(config.database_url, "sqlite://mailgate-data/mailgate.db");
        assert_eq!(config.gmail_smtp.to_string(), "smtp.gmail.com:587");
        assert!(!config.public_url_rejected_by_google());
        assert!(config.warnings.is_empty());
    }

    #[test]
    fn environment_wins_over_the_file_and_unknown_keys_are_named() {
        let dir = std::env::temp_dir().join(format!("mailgate-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("mailgate.toml");
        std::fs::write(
            &file,
            "http_addr = \"127.0.0.1:9000\"\npublic_url = \"https://mail.example.com/\"\n[gmail]\nsmtp = \"127.0.0.1:2525\"\n",
        )
        .unwrap();
        let config = Config::from_sources(
            Some(&file),
            &env(&[
                ("MAILGATE_HTTP_ADDR", "127.0.0.1:9001"),
                ("MAILGATE_TYPO", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(config.http_addr.to_string(), "127.0.0.1:9001");
        assert_eq!(
            config.redirect_uri(),
            "https://mail.example.com/google_gmail/confirm"
        );
        assert_eq!(config.gmail_smtp.port, 2525);
        assert_eq!(
            config.warnings,
            vec!["unknown environment variable MAILGATE_TYPO ignored"]
        );

        std::fs::write(&file, "htp_addr = \"x\"\n").unwrap();
        let error = Config::from_sources(Some(&file), &env(&[]))
            .unwrap_err()
            .to_string();
        assert!(error.contains("htp_addr"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_values_name_their_key() {
        let error = Config::from_sources(None, &env(&[("MAILGATE_HTTP_ADDR", "nope")]))
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("http_addr: `nope`"), "{error}");
        let error = Config::from_sources(
            None,
            &env(&[(
                "MAILGATE_GOOGLE_TOKEN_URL",
                "http://oauth2.example.com/token",
            )]),
        )
        .unwrap_err()
        .to_string();
        assert!(error.starts_with("google.token_url:"), "{error}");
        let error = Config::from_sources(
            None,
            &env(&[("MAILGATE_DATABASE_URL", "mysql://mailgate:hunter2@db/mail")]),
        )
        .unwrap_err()
        .to_string();
        assert!(!error.contains("hunter2"), "{error}");
        assert!(error.contains("mysql://mailgate:***@db/mail"), "{error}");
        assert_eq!(redacted("pg://u:p@h:5/d?x"), "pg://u:***@h:5/d?x");
        assert!(
            Config::from_sources(
                None,
                &env(&[("MAILGATE_GOOGLE_TOKEN_URL", "http://127.0.0.1:9/token")])
            )
            .is_ok()
        );
    }

    #[test]
    fn layers_merge_nested_keys_lists_numbers_and_secret_files() {
        let dir = std::env::temp_dir().join(format!("mailgate-layers-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("mailgate.toml");
        std::fs::write(
            &file,
            "retention_days = 3\ntrusted_proxies = [\"10.0.0.1\"]\n[google]\ntoken_url = \"http://127.0.0.1:1/token\"\ncerts_url = \"http://127.0.0.1:1/certs\"\n",
        )
        .unwrap();
        let url_file = dir.join("database-url");
        std::fs::write(&url_file, "postgres://mailgate:s3cret@db/mail\n").unwrap();
        let config = Config::from_sources(
            Some(&file),
            &env(&[
                ("MAILGATE_GOOGLE_TOKEN_URL", "http://127.0.0.1:2/token"),
                ("MAILGATE_TRUSTED_PROXIES", "127.0.0.1, ::1"),
                ("MAILGATE_HISTORY_DAYS", " 30 "),
                ("MAILGATE_DATABASE_URL_FILE", url_file.to_str().unwrap()),
            ]),
        )
        .unwrap();
        assert_eq!(config.google.token_url.as_str(), "http://127.0.0.1:2/token");
        assert_eq!(
            config.google.certs_url.as_str(),
            "http://127.0.0.1:1/certs",
            "the file's sibling key stays"
        );
        assert_eq!(
            config.trusted_proxies.len(),
            2,
            "the environment's list replaces the file's"
        );
        assert_eq!((config.retention_days, config.history_days), (3, 30));
        assert_eq!(
            config.database_url,
            "postgres://mailgate:s3cret@db/mail?sslmode=verify-full"
        );
        assert!(config.warnings.is_empty(), "{:?}", config.warnings);

        let error = Config::from_sources(None, &env(&[("MAILGATE_MAX_MESSAGE_SIZE", "25MB")]))
            .unwrap_err()
            .to_string();
        assert_eq!(error, "max_message_size: `25MB` is not a number");
        std::fs::write(&file, "smtp_timeout_secs = \"soon\"\n").unwrap();
        let error = Config::from_sources(Some(&file), &env(&[]))
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("config file ") && error.contains("\"soon\""),
            "{error}"
        );
        let error = Config::from_sources(
            None,
            &env(&[("MAILGATE_DATABASE_URL_FILE", "/nonexistent/url")]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.starts_with("database_url: cannot read MAILGATE_DATABASE_URL_FILE"),
            "{error}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_database_url_chooses_the_engine() {
        let url = |given: &str| {
            Config::from_sources(None, &env(&[("MAILGATE_DATABASE_URL", given)]))
                .map(|c| c.database_url)
                .map_err(|e| e.to_string())
        };
        assert_eq!(
            url("postgres://u@db/mail").unwrap(),
            "postgres://u@db/mail?sslmode=verify-full"
        );
        assert_eq!(
            url("postgresql://u@db/m?application_name=mg").unwrap(),
            "postgresql://u@db/m?application_name=mg&sslmode=verify-full"
        );
        assert_eq!(
            url("postgres://u@127.0.0.1:5432/m").unwrap(),
            "postgres://u@127.0.0.1:5432/m?sslmode=disable"
        );
        assert_eq!(
            url("postgres://u@[::1]/m").unwrap(),
            "postgres://u@[::1]/m?sslmode=disable"
        );
        assert_eq!(
            url("postgres:///m?host=/var/run/postgresql").unwrap(),
            "postgres:///m?host=/var/run/postgresql&sslmode=disable"
        );
        assert_eq!(
            url("postgres://u@db/m?sslmode=verify-ca&sslrootcert=/ca.pem").unwrap(),
            "postgres://u@db/m?sslmode=verify-ca&sslrootcert=/ca.pem"
        );
        for unverified in ["require", "prefer", "allow"] {
            let error =
                url(&format!("postgres://u:hunter2@db/m?sslmode={unverified}")).unwrap_err();
            assert!(
                error.contains("without checking the server's certificate")
                    && error.contains("sslmode=verify-full"),
                "{error}"
            );
        }
        assert_eq!(
            url("sqlite:///var/lib/m.db").unwrap(),
            "sqlite:///var/lib/m.db"
        );
        assert_eq!(
            url("/var/lib/mailgate/m.db").unwrap(),
            "sqlite:///var/lib/mailgate/m.db"
        );
        assert_eq!(url("data/m.db").unwrap(), "sqlite://data/m.db");
        for refused in [
            "mysql://root:hunter2@db/mail",
            "mariadb:db",
            "redis://x",
            "",
        ] {
            let error = url(refused).unwrap_err();
            assert!(
                error.starts_with("database_url: ")
                    && error.contains("postgres://user@host/database")
                    && error.contains("sqlite:///path/to/mailgate.db or a file path"),
                "{error}"
            );
            assert!(!error.contains("hunter2"), "{error}");
        }
    }

    #[test]
    fn http_public_url_off_loopback_is_flagged() {
        let config = Config::from_sources(
            None,
            &env(&[("MAILGATE_PUBLIC_URL", "http://mail.example.com")]),
        )
        .unwrap();
        assert!(config.public_url_rejected_by_google());
    }
}
