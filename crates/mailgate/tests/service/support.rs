//! The harness: mailgate on port 0 against an in-process gsim, with a browser-like HTTP client
//! (cookie jar, no automatic redirects) and helpers for the seed's steps.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;

use gsim::config::{AccountConfig, ClientConfig, PublishingStatus};
use gsim::{Config as GsimConfig, Gsim};
use mailgate::app::App;
use mailgate::clock::OffsetClock;
use mailgate::config::Config;
use mailgate::startup::Application;
use reqwest::StatusCode;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub const CLIENT_ID: &str = "777000000001-mailgatetests0000000000000000.apps.googleusercontent.com";
pub const CLIENT_SECRET: &str = "GOCSPX-mailgate-test-secret-0123456789";
pub const ALICE: &str = "alice@gmail.com";
pub const BOB: &str = "bob@example.com";
pub const ADMIN: &str = "admin@example.com";
pub const ADMIN_PASSWORD: &str = "correct horse battery staple";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Db {
    /// The default engine: SQLite, or PostgreSQL under `MAILGATE_TEST_ENGINE=postgres`.
    Sqlite,
    /// SQLite whatever the environment says: the test is about SQLite's files themselves.
    SqliteFile,
    Postgres,
}

pub struct TestApp {
    pub base: String,
    pub app: Arc<App>,
    pub clock: Arc<OffsetClock>,
    pub gsim: Gsim,
    pub http: reqwest::Client,
    pub data_dir: PathBuf,
    pub database_url: String,
    /// The environment mailgate was started with.
    pub env: BTreeMap<String, String>,
    postgres_db: Option<String>,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

pub struct Page {
    pub status: StatusCode,
    pub location: Option<String>,
    pub body: String,
}

impl Page {
    /// Whether the page shows `text`, as a reader sees it (entities decoded).
    pub fn has(&self, text: &str) -> bool {
        self.body.contains(text) || unescape(&self.body).contains(text)
    }
}

fn unescape(html: &str) -> String {
    html.replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&#34;", "\"")
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&#60;", "<")
        .replace("&#62;", ">")
        .replace("&#x2b;", "+")
        .replace("&amp;", "&")
}

/// The gsim side: a web client in Testing (Alice is its test user), Alice and Bob.
pub fn gsim_config(redirect_uri: &str) -> GsimConfig {
    let mut config = GsimConfig::empty();
    let mut client = ClientConfig::web(CLIENT_ID, CLIENT_SECRET, &[redirect_uri]);
    client.name = "mailgate tests".into();
    client.publishing_status = PublishingStatus::Testing;
    client.test_users = vec![ALICE.into()];
    config.clients = vec![client];
    config.accounts = vec![AccountConfig::new(ALICE), AccountConfig::new(BOB)];
    config
}

pub fn postgres_admin_url() -> String {
    std::env::var("MAILGATE_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

async fn admin_pool() -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    sqlx::AnyPool::connect(&postgres_admin_url())
        .await
        .expect("PostgreSQL reachable (start it: pg_ctlcluster ... main start)")
}

/// A new, empty PostgreSQL database: its URL and name (for [`drop_postgres_database`]).
pub async fn new_postgres_database() -> (String, String) {
    let name = format!(
        "mailgate_test_{}",
        mailgate::crypto::random_token()
            .to_ascii_lowercase()
            .replace(['-', '_'], "")
            .chars()
            .take(16)
            .collect::<String>()
    );
    let pool = admin_pool().await;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let url = postgres_admin_url();
    let server = url.rsplit_once('/').map(|(s, _)| s.to_string()).unwrap();
    (format!("{server}/{name}"), name)
}

pub async fn drop_postgres_database(name: &str) {
    let pool = admin_pool().await;
    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&pool)
    .await;
}

/// `MAILGATE_TEST_ENGINE=postgres` runs every test written for the default engine on
/// PostgreSQL instead (`.ci/run` runs the suite both ways).
pub fn default_engine(db: Db) -> Db {
    match std::env::var("MAILGATE_TEST_ENGINE").as_deref() {
        Ok("postgres") if db == Db::Sqlite => Db::Postgres,
        _ => db,
    }
}

pub async fn spawn(db: Db) -> TestApp {
    spawn_with(db, |_| {}).await
}

/// A deployed installation: mailgate says it is reached at `public_url` (not where it listens).
pub async fn spawn_at_public_url(public_url: &str) -> TestApp {
    spawn_with(Db::Sqlite, |env| {
        env.insert("MAILGATE_PUBLIC_URL".into(), public_url.into());
    })
    .await
}

/// Starts gsim and mailgate; `tweak` may change mailgate's environment before it starts.
pub async fn spawn_with(db: Db, tweak: impl FnOnce(&mut BTreeMap<String, String>)) -> TestApp {
    let db = default_engine(db);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let gsim = Gsim::start(gsim_config(&format!("{base}/google_gmail/confirm")), None)
        .await
        .unwrap();
    let data_dir = std::env::temp_dir().join(format!(
        "mailgate-test-{}-{}",
        std::process::id(),
        mailgate::crypto::random_token()
    ));
    let (database_url, postgres_db) = match db {
        Db::Sqlite | Db::SqliteFile => (
            format!("sqlite://{}", data_dir.join("mailgate.db").display()),
            None,
        ),
        Db::Postgres => {
            let (url, name) = new_postgres_database().await;
            (url, Some(name))
        }
    };
    let endpoints = gsim.endpoints().clone();
    let mut env: BTreeMap<String, String> = [
        ("MAILGATE_DATA_DIR", data_dir.display().to_string()),
        ("MAILGATE_DATABASE_URL", database_url.clone()),
        ("MAILGATE_PUBLIC_URL", base.clone()),
        (
            "MAILGATE_HTTP_ADDR",
            listener.local_addr().unwrap().to_string(),
        ),
        (
            "MAILGATE_GOOGLE_AUTH_URL",
            format!("{}/o/oauth2/v2/auth", endpoints.http),
        ),
        (
            "MAILGATE_GOOGLE_TOKEN_URL",
            format!("{}/token", endpoints.http),
        ),
        (
            "MAILGATE_GOOGLE_REVOKE_URL",
            format!("{}/revoke", endpoints.http),
        ),
        (
            "MAILGATE_GOOGLE_CERTS_URL",
            format!("{}/oauth2/v3/certs", endpoints.http),
        ),
        ("MAILGATE_GMAIL_SMTP", endpoints.smtp_starttls.to_string()),
        ("MAILGATE_GMAIL_IMAP", endpoints.imap_tls.to_string()),
        (
            "MAILGATE_EXTRA_CA_FILE",
            endpoints.ca_cert.display().to_string(),
        ),
        // Tests run side by side: each relay on a port of its own.
        ("MAILGATE_RELAY_ADDR", "127.0.0.1:0".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    tweak(&mut env);
    let config = Config::from_sources(None, &env).unwrap();
    let started_with = env.clone();
    let clock = Arc::new(OffsetClock::default());
    let application = Application::build_on(listener, config, clock.clone())
        .await
        .unwrap();
    let app = application.app();
    let (shutdown, stop) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        application
            .run_until_stopped(async move {
                let _ = stop.await;
            })
            .await
            .unwrap();
    });
    TestApp {
        base,
        app,
        clock,
        gsim,
        http: browser(),
        data_dir,
        database_url,
        env: started_with,
        postgres_db,
        shutdown: Some(shutdown),
        server: Some(server),
    }
}

pub fn browser() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

impl TestApp {
    /// A new browser at the sign-in page, and the CSRF token its form carries.
    pub async fn guest_at_login(&self) -> (reqwest::Client, String) {
        let guest = browser();
        let page = guest.get(self.url("/login")).send().await.unwrap();
        let csrf = hidden(&page.text().await.unwrap(), "_csrf").expect("the sign-in form");
        (guest, csrf)
    }
}

pub fn hidden(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let end = html[start..].find('"')? + start;
    Some(
        html[start..end]
            .replace("&#x2b;", "+")
            .replace("&amp;", "&"),
    )
}

fn query_param(url: &str, name: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}{path}", self.base)
        }
    }

    async fn page(response: reqwest::Response) -> Page {
        Page {
            status: response.status(),
            location: response
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            body: response.text().await.unwrap(),
        }
    }

    pub async fn get(&self, path: &str) -> Page {
        Self::page(self.http.get(self.url(path)).send().await.unwrap()).await
    }

    /// GET, following redirects within mailgate, as a browser would show the result.
    pub async fn visit(&self, path: &str) -> Page {
        let mut page = self.get(path).await;
        let mut hops = 0;
        while let Some(to) = page
            .location
            .clone()
            .filter(|_| page.status.is_redirection())
        {
            hops += 1;
            assert!(hops < 5, "redirect loop");
            page = self.get(&to).await;
        }
        page
    }

    pub async fn post(&self, path: &str, form: &[(&str, &str)]) -> Page {
        Self::page(
            self.http
                .post(self.url(path))
                .form(form)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    /// POST with the signed-in admin's CSRF token, as mailgate's own forms do.
    pub async fn submit(&self, path: &str, form: &[(&str, &str)]) -> Page {
        let csrf = self.csrf().await;
        let mut fields: Vec<(&str, &str)> = vec![("_csrf", csrf.as_str())];
        fields.extend_from_slice(form);
        self.post(path, &fields).await
    }

    pub async fn csrf(&self) -> String {
        let page = self.get("/settings").await;
        hidden(&page.body, "_csrf").expect("a signed-in page carries a CSRF token")
    }

    /// The first admin, through the printed setup link; leaves the client signed in.
    pub async fn create_admin(&self) {
        let link = self.app.setup_link().await.unwrap().expect("no admin yet");
        // The link names the public URL, which need not resolve here; mailgate is at `base`.
        let path = &link[link.find("/setup").unwrap()..];
        let form_page = self.get(path).await;
        assert_eq!(form_page.status, StatusCode::OK);
        let csrf = hidden(&form_page.body, "_csrf").unwrap();
        let token = hidden(&form_page.body, "token").unwrap();
        let done = self
            .post(
                "/setup",
                &[
                    ("_csrf", &csrf),
                    ("token", &token),
                    ("email", ADMIN),
                    ("password", ADMIN_PASSWORD),
                    ("confirm", ADMIN_PASSWORD),
                ],
            )
            .await;
        assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
        assert_eq!(done.location.as_deref(), Some("/settings"));
    }

    /// Signs the admin in again (after the clock moved past the session), if need be.
    pub async fn sign_in(&self) {
        let login = self.get("/login").await;
        if login.status.is_redirection() {
            return;
        }
        let csrf = hidden(&login.body, "_csrf").unwrap();
        let done = self
            .post(
                "/login",
                &[
                    ("_csrf", &csrf),
                    ("email", ADMIN),
                    ("password", ADMIN_PASSWORD),
                ],
            )
            .await;
        assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    }

    pub async fn save_credentials(&self) {
        let page = self
            .submit(
                "/settings",
                &[
                    ("custom_email_servers", "1"),
                    ("client_id", CLIENT_ID),
                    ("client_secret", CLIENT_SECRET),
                    ("test_recipient", ""),
                ],
            )
            .await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    }

    pub async fn create_gmail_server(&self, name: &str, username: &str) -> i64 {
        let smtp = self.gsim.endpoints().smtp_starttls;
        let page = self
            .submit(
                "/servers",
                &[
                    ("name", name),
                    ("auth", "gmail"),
                    ("username", username),
                    ("password", ""),
                    ("host", "127.0.0.1"),
                    ("port", &smtp.port().to_string()),
                    ("security", "starttls"),
                    ("from_filter", ""),
                    ("priority", "10"),
                ],
            )
            .await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
        page.location
            .unwrap()
            .trim_start_matches("/servers/")
            .parse()
            .unwrap()
    }

    /// Admin, credentials and a Gmail server for Alice: everything before "Connect".
    pub async fn ready_to_connect(&self) -> i64 {
        self.create_admin().await;
        self.save_credentials().await;
        self.create_gmail_server("Gmail", ALICE).await
    }

    /// Clicks "Connect your Gmail account" and returns where mailgate sends the browser.
    pub async fn click_connect(&self, server_id: i64) -> String {
        let page = self
            .submit(&format!("/servers/{server_id}/connect"), &[])
            .await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
        page.location.unwrap()
    }

    /// Goes through gsim's pages as `email` would, returning Google's redirect back to mailgate.
    pub async fn consent_at_google(&self, auth_url: &str, email: &str, allow: bool) -> String {
        let google = browser();
        let html = google
            .get(auth_url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let flow = hidden(&html, "flow").expect("gsim's account chooser");
        let gsim = &self.gsim.endpoints().http;
        let mut response = google
            .post(format!("{gsim}/o/oauth2/v2/auth/choose"))
            .form(&[("flow", flow.as_str()), ("email", email)])
            .send()
            .await
            .unwrap();
        loop {
            if response.status().is_redirection() {
                return response.headers()["location"].to_str().unwrap().to_string();
            }
            assert_eq!(response.status(), 200, "gsim page");
            let html = response.text().await.unwrap();
            let (path, action) = if html.contains("/o/oauth2/v2/auth/continue") {
                ("continue", "continue")
            } else if allow {
                ("consent", "allow")
            } else {
                ("consent", "deny")
            };
            response = google
                .post(format!("{gsim}/o/oauth2/v2/auth/{path}"))
                .form(&[("flow", flow.as_str()), ("action", action)])
                .send()
                .await
                .unwrap();
        }
    }

    /// The whole "Connect your Gmail account" round trip; returns the callback page.
    pub async fn connect(&self, server_id: i64, email: &str) -> Page {
        let to_google = self.click_connect(server_id).await;
        let back = self.consent_at_google(&to_google, email, true).await;
        self.get(&back).await
    }

    /// Turns the OAuth client at gsim into a "Desktop app" client (the seed FAQ "Application Type").
    pub fn make_client_desktop(&self) {
        self.gsim
            .world()
            .patch_client(
                CLIENT_ID,
                gsim::ClientPatch {
                    kind: Some(gsim::config::ClientType::Desktop),
                    ..Default::default()
                },
            )
            .unwrap();
    }

    /// Publishes the OAuth client at gsim ("In production"), so accounts that are not test
    /// users (Bob) reach Google's consent too.
    pub fn publish_client(&self) {
        self.gsim
            .world()
            .patch_client(
                CLIENT_ID,
                gsim::ClientPatch {
                    publishing_status: Some(gsim::config::PublishingStatus::Production),
                    ..Default::default()
                },
            )
            .unwrap();
    }

    /// Connected and ready to send: admin, credentials, Alice's Gmail server, consent. Returns
    /// the server id.
    pub async fn sending_as_alice(&self) -> i64 {
        let id = self.ready_to_connect().await;
        assert_eq!(self.connect(id, ALICE).await.status, StatusCode::SEE_OTHER);
        id
    }

    /// Alice's Gmail server, through gsim's SMTP, with mailgate's own daily limit set to `limit`.
    pub async fn set_daily_limit(&self, server: i64, limit: u32) {
        let port = self.gsim.endpoints().smtp_starttls.port().to_string();
        let limit = limit.to_string();
        let page = self
            .submit(
                &format!("/servers/{server}"),
                &[
                    ("name", "Gmail"),
                    ("auth", "gmail"),
                    ("username", ALICE),
                    ("host", "127.0.0.1"),
                    ("port", &port),
                    ("security", "starttls"),
                    ("daily_limit", &limit),
                ],
            )
            .await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    }

    pub async fn api_key(&self) -> String {
        self.app
            .create_api_key("tests", mailgate::app::api_keys::KeyScope::Submit)
            .await
            .unwrap()
    }

    /// GET `path` as JSON, with an API key when given.
    pub async fn get_json(&self, path: &str, key: Option<&str>) -> serde_json::Value {
        let mut request = self.http.get(self.url(path));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        request.send().await.unwrap().json().await.unwrap()
    }

    /// GET /api/v1/messages/{id} with an API key.
    pub async fn message_status(&self, key: &str, id: &str) -> serde_json::Value {
        self.get_json(&format!("/api/v1/messages/{id}"), Some(key))
            .await
    }

    /// POST /api/v1/messages with an API key.
    pub async fn send(
        &self,
        key: &str,
        body: &serde_json::Value,
    ) -> (StatusCode, serde_json::Value) {
        self.send_with(key, body, None).await
    }

    pub async fn send_with(
        &self,
        key: &str,
        body: &serde_json::Value,
        idempotency_key: Option<&str>,
    ) -> (StatusCode, serde_json::Value) {
        let mut request = self
            .http
            .post(self.url("/api/v1/messages"))
            .bearer_auth(key)
            .json(body);
        if let Some(k) = idempotency_key {
            request = request.header("Idempotency-Key", k);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        (
            status,
            response.json().await.unwrap_or(serde_json::Value::Null),
        )
    }

    /// Waits until message `id` reaches `state`, woken by each settled attempt (no sleeping).
    pub async fn wait_state(&self, id: &str, state: &str) -> mailgate::store::MessageRecord {
        let mut settled = self.app.settled.subscribe();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let (record, _) = self.app.message(id).await.unwrap();
            if record.state.code() == state {
                return record;
            }
            if tokio::time::timeout_at(deadline, settled.changed())
                .await
                .is_err()
            {
                panic!(
                    "message {id} is {} after 20 s, expected {state}",
                    record.state
                );
            }
        }
    }

    /// Moves mailgate's clock and tells delivery to look at the queue again.
    pub fn advance_and_wake(&self, secs: i64) {
        self.clock.advance(secs);
        self.app.outbox_wake.notify_one();
    }

    /// Everything the database holds, as bytes: the SQLite files, or every PostgreSQL row as
    /// text (bytea in hex), for tests that look for secrets in clear.
    pub async fn db_files(&self) -> Vec<u8> {
        if self.app.store.backend() == mailgate::store::Backend::Postgres {
            use sqlx::Row;
            let tables: Vec<String> = sqlx::query(
                "SELECT table_name::text AS name FROM information_schema.tables WHERE table_schema = 'public'",
            )
            .fetch_all(self.app.store.pool())
            .await
            .unwrap()
            .iter()
            .map(|r| r.get("name"))
            .collect();
            let mut bytes = Vec::new();
            for table in tables {
                let rows: String = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT COALESCE(string_agg(t::text, E'\\n'), '') AS rows FROM \"{table}\" t"
                )))
                .fetch_one(self.app.store.pool())
                .await
                .unwrap()
                .get("rows");
                bytes.extend(rows.into_bytes());
            }
            assert!(!bytes.is_empty(), "the database holds rows");
            return bytes;
        }
        let mut bytes = Vec::new();
        for entry in std::fs::read_dir(&self.data_dir).unwrap() {
            let path = entry.unwrap().path();
            if path.to_string_lossy().contains("mailgate.db") {
                bytes.extend(std::fs::read(&path).unwrap());
            }
        }
        bytes
    }

    pub fn refresh_token_at_google(&self, email: &str) -> String {
        self.gsim
            .world()
            .refresh_tokens(Some(email))
            .into_iter()
            .find(|t| t.live)
            .expect("a live refresh token")
            .token
    }

    /// Stops the in-process service but keeps its data and gsim, so a `mailgate` process can take
    /// over the same database.
    pub async fn stop_service(&mut self) {
        if let Some(stop) = self.shutdown.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }

    /// The environment a `mailgate` process needs to run this installation against gsim.
    pub fn process_env(&self) -> Vec<(&'static str, String)> {
        let endpoints = self.gsim.endpoints();
        vec![
            ("MAILGATE_DATA_DIR", self.data_dir.display().to_string()),
            ("MAILGATE_DATABASE_URL", self.database_url.clone()),
            ("MAILGATE_PUBLIC_URL", self.base.clone()),
            (
                "MAILGATE_HTTP_ADDR",
                self.base.trim_start_matches("http://").to_string(),
            ),
            (
                "MAILGATE_GOOGLE_AUTH_URL",
                format!("{}/o/oauth2/v2/auth", endpoints.http),
            ),
            (
                "MAILGATE_GOOGLE_TOKEN_URL",
                format!("{}/token", endpoints.http),
            ),
            (
                "MAILGATE_GOOGLE_REVOKE_URL",
                format!("{}/revoke", endpoints.http),
            ),
            (
                "MAILGATE_GOOGLE_CERTS_URL",
                format!("{}/oauth2/v3/certs", endpoints.http),
            ),
            ("MAILGATE_GMAIL_SMTP", endpoints.smtp_starttls.to_string()),
            ("MAILGATE_GMAIL_IMAP", endpoints.imap_tls.to_string()),
            (
                "MAILGATE_EXTRA_CA_FILE",
                endpoints.ca_cert.display().to_string(),
            ),
            ("MAILGATE_RELAY_ADDR", "127.0.0.1:0".to_string()),
        ]
    }

    pub async fn finish(mut self) {
        if let Some(stop) = self.shutdown.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
        if let Some(name) = self.postgres_db.take() {
            drop_postgres_database(&name).await;
        }
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// Another mailgate on the same database, in this process: a second instance behind the same
/// public URL, as behind a load balancer.
pub struct Instance {
    pub base: String,
    pub app: Arc<App>,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl TestApp {
    pub async fn another_instance(&self) -> Instance {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let mut env = self.env.clone();
        env.insert(
            "MAILGATE_HTTP_ADDR".into(),
            listener.local_addr().unwrap().to_string(),
        );
        let config = Config::from_sources(None, &env).unwrap();
        let application = Application::build_on(listener, config, self.clock.clone())
            .await
            .unwrap();
        let app = application.app();
        let (shutdown, stop) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            application
                .run_until_stopped(async move {
                    let _ = stop.await;
                })
                .await
                .unwrap();
        });
        Instance {
            base,
            app,
            shutdown: Some(shutdown),
            server: Some(server),
        }
    }
}

impl Instance {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.shutdown.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }
}

pub fn param(url: &str, name: &str) -> Option<String> {
    query_param(url, name)
}

/// Starts `mailgate serve` with `env` and returns once it is ready (it has bound its port and
/// opened the database). Blocking waits run off the runtime: the in-process gsim must keep
/// answering meanwhile.
pub async fn serve(env: &[(&'static str, String)], stderr: Stdio) -> Child {
    let env = env.to_vec();
    tokio::task::spawn_blocking(move || {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mailgate"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env)
            .arg("serve")
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.starts_with("mailgate is ready at"), "{line}");
        child
    })
    .await
    .unwrap()
}

pub async fn wait(mut child: Child) -> ExitStatus {
    tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap()
}

/// SIGTERM, as a service manager stops it, then waits for the exit.
pub async fn stop(child: Child) -> ExitStatus {
    signal(child, "-TERM").await
}

/// SIGKILL: a crash at the worst moment. Waits for the exit.
pub async fn kill(child: Child) -> ExitStatus {
    signal(child, "-KILL").await
}

async fn signal(child: Child, signal: &str) -> ExitStatus {
    Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    wait(child).await
}

/// Alice's Gmail server with room for a burst (mailgate's daily limit and gsim's), and an API
/// key.
pub async fn ready_for_a_burst(t: &TestApp) -> String {
    let server = t.sending_as_alice().await;
    t.set_daily_limit(server, 100_000).await;
    t.gsim
        .world()
        .patch_account(
            ALICE,
            gsim::AccountPatch {
                daily_send_limit: Some(100_000),
                ..Default::default()
            },
        )
        .unwrap();
    t.api_key().await
}

/// Gmail refusing the login twice (the stored token, then the fresh one) with its 535.
pub fn refused_logins() -> gsim::SmtpFault {
    gsim::SmtpFault {
        stage: gsim::SmtpStage::Auth,
        reply: Some("535-5.7.8 Username and Password not accepted. Learn more at\n535 5.7.8 https://support.google.com/mail/?p=BadCredentials {id} - gsmtp".into()),
        close: false,
        hold: false,
        count: 2,
        account: None,
    }
}
