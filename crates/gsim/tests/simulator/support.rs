//! Test harness: a gsim with known clients and accounts, a raw line client over TCP or TLS that
//! trusts gsim's CA (never skips verification), and helpers to get tokens.

use std::net::SocketAddr;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use gsim::config::{AccountConfig, ClientConfig, ClientType, PublishingStatus};
use gsim::{Config, Gsim, MintRequest};
use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

pub const WEB_CLIENT: &str = "111-web.apps.googleusercontent.com";
pub const WEB_SECRET: &str = "GOCSPX-web-secret";
pub const TESTING_CLIENT: &str = "222-testing.apps.googleusercontent.com";
pub const TESTING_SECRET: &str = "GOCSPX-testing-secret";
pub const DESKTOP_CLIENT: &str = "333-desktop.apps.googleusercontent.com";
pub const DESKTOP_SECRET: &str = "GOCSPX-desktop-secret";
pub const REDIRECT: &str = "https://mail.example.com/google_gmail/confirm";
pub const ALICE: &str = "alice@gmail.com";
pub const BOB: &str = "bob@example.com";
pub const CAROL: &str = "carol@gmail.com";

/// A web client in Production, a web client in Testing with Alice as the only test user, a desktop
/// client; accounts Alice (with an alias), Bob and Carol.
pub fn config() -> Config {
    let mut config = Config::empty();
    let mut web = ClientConfig::web(WEB_CLIENT, WEB_SECRET, &[REDIRECT]);
    web.name = "Web App".into();
    let mut testing = ClientConfig::web(TESTING_CLIENT, TESTING_SECRET, &[REDIRECT]);
    testing.name = "Testing App".into();
    testing.publishing_status = PublishingStatus::Testing;
    testing.test_users = vec![ALICE.into()];
    let mut desktop = ClientConfig::web(DESKTOP_CLIENT, DESKTOP_SECRET, &[]);
    desktop.kind = ClientType::Desktop;
    desktop.name = "Desktop App".into();
    config.clients = vec![web, testing, desktop];
    let mut alice = AccountConfig::new(ALICE);
    alice.name = Some("Alice".into());
    alice.aliases = vec!["sales@alice.example".into()];
    config.accounts = vec![alice, AccountConfig::new(BOB), AccountConfig::new(CAROL)];
    config
}

pub async fn start() -> Gsim {
    start_with(config()).await
}

pub async fn start_with(config: Config) -> Gsim {
    Gsim::start(config, None).await.expect("gsim starts")
}

/// An access token for Gmail, minted as if the user had consented in the browser.
pub fn mail_token(gsim: &Gsim, email: &str) -> String {
    tokens(gsim, WEB_CLIENT, email, &["https://mail.google.com/"])["access_token"]
        .as_str()
        .unwrap()
        .to_string()
}

pub fn tokens(gsim: &Gsim, client: &str, email: &str, scopes: &[&str]) -> Value {
    gsim.world()
        .mint_tokens(&MintRequest {
            client_id: client.into(),
            email: email.into(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            offline: true,
        })
        .unwrap()
}

pub fn xoauth2(user: &str, token: &str) -> String {
    STANDARD.encode(format!("user={user}\x01auth=Bearer {token}\x01\x01"))
}

pub fn oauthbearer(user: &str, token: &str) -> String {
    STANDARD.encode(format!(
        "n,a={user},\x01host=smtp.gmail.com\x01port=587\x01auth=Bearer {token}\x01\x01"
    ))
}

pub fn http() -> reqwest::Client {
    // With the workspace's reqwest features, a client needs a process-wide rustls provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

pub fn tls_connector(gsim: &Gsim) -> TlsConnector {
    let pem = std::fs::read(&gsim.endpoints().ca_cert).unwrap();
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

enum Stream {
    Plain(BufReader<TcpStream>),
    Tls(Box<BufReader<TlsStream<TcpStream>>>),
    Gone,
}

/// A client that speaks lines, for byte-exact transcripts.
pub struct Raw {
    stream: Stream,
    connector: TlsConnector,
}

impl Raw {
    pub async fn plain(gsim: &Gsim, addr: SocketAddr) -> Self {
        let tcp = TcpStream::connect(addr).await.unwrap();
        Self {
            stream: Stream::Plain(BufReader::new(tcp)),
            connector: tls_connector(gsim),
        }
    }

    pub async fn tls(gsim: &Gsim, addr: SocketAddr) -> Self {
        let mut raw = Self::plain(gsim, addr).await;
        raw.upgrade().await;
        raw
    }

    pub async fn smtp(gsim: &Gsim) -> Self {
        Self::plain(gsim, gsim.endpoints().smtp_starttls).await
    }

    /// Connected to 587, greeted, STARTTLS done and EHLO sent again: ready for AUTH.
    pub async fn smtp_ready(gsim: &Gsim) -> (Self, String) {
        let mut raw = Self::smtp(gsim).await;
        let greeting = raw.reply().await;
        let id = session_id(&greeting);
        raw.send("EHLO client.example").await;
        raw.reply().await;
        raw.send("STARTTLS").await;
        assert_eq!(raw.reply().await, "220 2.0.0 Ready to start TLS\r\n");
        raw.upgrade().await;
        raw.send("EHLO client.example").await;
        raw.reply().await;
        (raw, id)
    }

    /// Ready for MAIL FROM: authenticated as `email`.
    pub async fn smtp_authenticated(gsim: &Gsim, email: &str) -> (Self, String) {
        let token = mail_token(gsim, email);
        let (mut raw, id) = Self::smtp_ready(gsim).await;
        raw.send(&format!("AUTH XOAUTH2 {}", xoauth2(email, &token)))
            .await;
        assert_eq!(raw.reply().await, "235 2.7.0 Accepted\r\n");
        (raw, id)
    }

    pub async fn upgrade(&mut self) {
        let Stream::Plain(reader) = std::mem::replace(&mut self.stream, Stream::Gone) else {
            panic!("already TLS");
        };
        let tcp = reader.into_inner();
        let name = ServerName::try_from("127.0.0.1").unwrap();
        let tls = self.connector.connect(name, tcp).await.unwrap();
        self.stream = Stream::Tls(Box::new(BufReader::new(tls)));
    }

    pub async fn send(&mut self, line: &str) {
        self.send_bytes(format!("{line}\r\n").as_bytes()).await;
    }

    pub async fn send_bytes(&mut self, bytes: &[u8]) {
        match &mut self.stream {
            Stream::Plain(s) => {
                s.get_mut().write_all(bytes).await.unwrap();
                s.get_mut().flush().await.unwrap();
            }
            Stream::Tls(s) => {
                s.get_mut().write_all(bytes).await.unwrap();
                s.get_mut().flush().await.unwrap();
            }
            Stream::Gone => panic!("no stream"),
        }
    }

    /// One line with its CRLF, or "" at end of stream.
    pub async fn line(&mut self) -> String {
        let mut buf = Vec::new();
        let read = match &mut self.stream {
            Stream::Plain(s) => s.read_until(b'\n', &mut buf).await,
            Stream::Tls(s) => s.read_until(b'\n', &mut buf).await,
            Stream::Gone => panic!("no stream"),
        };
        read.unwrap_or(0);
        String::from_utf8(buf).unwrap()
    }

    pub async fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut buf = vec![0; n];
        match &mut self.stream {
            Stream::Plain(s) => s.read_exact(&mut buf).await.unwrap(),
            Stream::Tls(s) => s.read_exact(&mut buf).await.unwrap(),
            Stream::Gone => panic!("no stream"),
        };
        buf
    }

    /// A whole SMTP reply: lines up to the one with a space after the code.
    pub async fn reply(&mut self) -> String {
        let mut reply = String::new();
        loop {
            let line = self.line().await;
            reply.push_str(&line);
            if line.len() < 4 || line.as_bytes()[3] == b' ' {
                return reply;
            }
        }
    }

    /// IMAP: lines up to and including the tagged one.
    pub async fn until_tagged(&mut self, tag: &str) -> String {
        let mut out = String::new();
        loop {
            let line = self.line().await;
            out.push_str(&line);
            if line.is_empty() || line.starts_with(&format!("{tag} ")) {
                return out;
            }
        }
    }

    /// True when the server closed the connection.
    pub async fn closed(&mut self) -> bool {
        self.line().await.is_empty()
    }
}

/// `220 smtp.gmail.com ESMTP 7sm10895420igt.6 - gsmtp` -> `7sm10895420igt.6`
pub fn session_id(greeting: &str) -> String {
    greeting
        .split_whitespace()
        .nth(3)
        .expect("greeting carries a session id")
        .to_string()
}

/// Runs the browser part of the flow over HTTP: GET the auth URL and follow gsim's pages by
/// choosing `email`, continuing past the warning, and allowing. Returns the final redirect.
pub async fn consent(gsim: &Gsim, query: &[(&str, &str)], email: &str) -> String {
    let base = &gsim.endpoints().http;
    let client = http();
    let page = client
        .get(format!("{base}/o/oauth2/v2/auth"))
        .query(query)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200, "chooser expected");
    let html = page.text().await.unwrap();
    let flow = hidden(&html, "flow");
    let mut response = client
        .post(format!("{base}/o/oauth2/v2/auth/choose"))
        .form(&[("flow", flow.as_str()), ("email", email)])
        .send()
        .await
        .unwrap();
    loop {
        if response.status().is_redirection() {
            return location(&response);
        }
        assert_eq!(response.status(), 200);
        let html = response.text().await.unwrap();
        let (path, action) = if html.contains("/o/oauth2/v2/auth/continue") {
            ("continue", "continue")
        } else {
            ("consent", "allow")
        };
        response = client
            .post(format!("{base}/o/oauth2/v2/auth/{path}"))
            .form(&[("flow", flow.as_str()), ("action", action)])
            .send()
            .await
            .unwrap();
    }
}

pub fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker).expect("hidden field") + marker.len();
    let end = html[start..].find('"').unwrap() + start;
    html[start..end].to_string()
}

pub fn location(response: &reqwest::Response) -> String {
    response.headers()["location"].to_str().unwrap().to_string()
}

/// The query parameters of a redirect URL, decoded.
pub fn query_of(url: &str) -> Vec<(String, String)> {
    let query = url.split_once('?').map(|(_, q)| q).unwrap_or_default();
    form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

pub fn param(url: &str, name: &str) -> Option<String> {
    query_of(url)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

pub async fn token_request(gsim: &Gsim, form: &[(&str, &str)]) -> (u16, Value) {
    let response = http()
        .post(format!("{}/token", gsim.endpoints().http))
        .form(form)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}
