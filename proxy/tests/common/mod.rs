//! Shared harness of the proxy's black-box tests: the real router on a loopback port 0, a real
//! SQLite (or PostgreSQL) store, the mock OpenAI upstream, and a plain hyper client.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use llm_proxy::app::{self, ProxyCaches};
use llm_proxy::audit::Audit;
use llm_proxy::breaker::BreakerPolicy;
use llm_proxy::config::ServerConfig;
use llm_proxy::metrics::Metrics;
use llm_proxy_env as env;
use llm_proxy_events::EventPublisher;
use llm_proxy_mocks::openai::MockOpenAi;
use llm_proxy_store::{NewProject, NewToken, Project, ProviderKey, Store};

pub const MANAGEMENT_TOKEN: &str = "test-management-token-0123456789abcdef";
pub const PROVIDER_KEY: &str = "sk-provider-secret-key-0123456789";

/// A private temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> Self {
        let path = std::env::temp_dir().join(format!("llm-proxy-test-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }
}

impl Default for TempDir {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// How to start a harness.
#[derive(Default)]
pub struct Options {
    pub env: Vec<(&'static str, String)>,
    /// YAML of the provider file (`{base_url}` is replaced by the mock's URL); `None` = fallback.
    pub providers_yaml: Option<String>,
    pub breaker: BreakerPolicy,
    /// PostgreSQL URL of a fresh database instead of SQLite.
    pub postgres_url: Option<String>,
}

pub struct Harness {
    pub addr: SocketAddr,
    pub mock: MockOpenAi,
    pub store: Arc<dyn Store>,
    pub caches: Arc<ProxyCaches>,
    pub metrics: Arc<Metrics>,
    /// The in-memory event bus of the data path.
    pub events: EventPublisher,
    pub project: Project,
    pub client: Client<HttpConnector, Full<Bytes>>,
    server: tokio::task::JoinHandle<()>,
    _dir: TempDir,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.server.abort();
    }
}

pub fn http_client() -> Client<HttpConnector, Full<Bytes>> {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build(connector)
}

impl Harness {
    pub async fn start() -> Self {
        Self::with(Options::default()).await
    }

    /// The default harness on a fresh PostgreSQL database instead of SQLite.
    pub async fn on_postgres() -> Self {
        Self::with(Options {
            postgres_url: Some(fresh_pg_database().await),
            ..Options::default()
        })
        .await
    }

    pub async fn with(options: Options) -> Self {
        let mock = MockOpenAi::start().await.unwrap();
        let dir = TempDir::new();
        let mut vars: Vec<(String, String)> = vec![
            (env::MANAGEMENT_TOKEN.into(), MANAGEMENT_TOKEN.into()),
            (env::OPENAI_API_URL.into(), mock.url()),
            (
                env::DATABASE_PATH.into(),
                dir.0.join("proxy.db").display().to_string(),
            ),
            (env::LISTEN_ADDR.into(), "127.0.0.1:0".into()),
            (
                env::API_CONFIG_PATH.into(),
                dir.0.join("absent.yaml").display().to_string(),
            ),
            (
                env::AUDIT_LOG_FILE.into(),
                dir.0.join("audit.log").display().to_string(),
            ),
        ];
        if let Some(yaml) = &options.providers_yaml {
            let path = dir.0.join("providers.yaml");
            std::fs::write(&path, yaml.replace("{base_url}", &mock.url())).unwrap();
            vars.push((env::API_CONFIG_PATH.into(), path.display().to_string()));
        }
        if let Some(url) = &options.postgres_url {
            vars.push((env::DB_DRIVER.into(), "postgres".into()));
            vars.push((env::DATABASE_URL.into(), url.clone()));
        }
        for (name, value) in &options.env {
            vars.push(((*name).into(), value.clone()));
        }
        let config = ServerConfig::from_lookup(|name| {
            vars.iter()
                .rev()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        })
        .unwrap();
        let store = llm_proxy_store::connect(&config.store).await.unwrap();
        let audit = Audit::start(&config.audit, store.clone()).await.unwrap();
        let events = EventPublisher::in_memory(config.observability.buffer_size);
        let app = app::build(
            &config,
            app::Dependencies {
                breaker: options.breaker,
                redis: llm_proxy::redis_link::shared_connection(&config).unwrap(),
                ..app::Dependencies::new(store.clone(), audit, Some(events.clone()))
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(llm_proxy::connections::serve(
            listener,
            app.service,
            config.connections,
            app.metrics.clone(),
            tokio_util::sync::CancellationToken::new(),
        ));
        let project = new_project(store.as_ref()).await;
        Self {
            addr,
            mock,
            store,
            caches: app.caches,
            metrics: app.metrics,
            events,
            project,
            client: http_client(),
            server,
            _dir: dir,
        }
    }

    /// A harness whose project-active cache entries expire after `ttl` (e.g. `1ms`, `0`), and a
    /// token whose project was cached active by a first request, then deactivated in the database
    /// directly, as an edit behind the proxy's back would be (no `/manage`, so no cache is
    /// invalidated).
    pub async fn with_project_deactivated_behind_its_back(
        ttl: &str,
        postgres_url: Option<String>,
    ) -> (Self, String) {
        let h = Self::with(Options {
            env: vec![(env::LLM_PROXY_ACTIVE_CACHE_TTL, ttl.to_owned())],
            postgres_url,
            ..Options::default()
        })
        .await;
        let token = h.token(None, None).await;
        assert_eq!(h.chat(&token, CHAT_BODY).await.status, 200, "first use");
        let update = llm_proxy_store::ProjectUpdate {
            is_active: Some(false),
            ..Default::default()
        };
        let updated = h.store.update_project(&h.project.id, update).await;
        assert!(updated.unwrap().is_some(), "the project exists");
        (h, token)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Issues a token for the harness project.
    pub async fn token(
        &self,
        max_requests: Option<i64>,
        expires_at: Option<DateTime<Utc>>,
    ) -> String {
        issue_token(
            self.store.as_ref(),
            &self.project.id,
            max_requests,
            expires_at,
        )
        .await
    }

    /// Creates another project (same provider key) and issues a token for it.
    pub async fn other_project_token(&self) -> String {
        let project = new_project(self.store.as_ref()).await;
        issue_token(self.store.as_ref(), &project.id, None, None).await
    }

    pub async fn send(&self, request: Request<Full<Bytes>>) -> Reply {
        send(&self.client, request).await
    }

    /// Calls the management API with the management token.
    pub async fn manage(&self, method: Method, path: &str, json: Option<&str>) -> Reply {
        let mut builder = Request::builder()
            .method(method)
            .uri(self.url(path))
            .header("authorization", format!("Bearer {MANAGEMENT_TOKEN}"));
        if json.is_some() {
            builder = builder.header("content-type", "application/json");
        }
        let body = Full::new(Bytes::from(json.unwrap_or_default().to_owned()));
        self.send(builder.body(body).unwrap()).await
    }

    /// POSTs a chat completion with `token`.
    pub async fn chat(&self, token: &str, body: &str) -> Reply {
        self.send(
            Request::post(self.url("/v1/chat/completions"))
                .header("authorization", format!("Bearer {token}"))
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(body.to_owned())))
                .unwrap(),
        )
        .await
    }
}

/// A fresh project with the mock's provider key.
async fn new_project(store: &dyn Store) -> Project {
    store
        .create_project(NewProject {
            name: format!("project-{}", uuid::Uuid::new_v4()),
            api_key: ProviderKey::new(PROVIDER_KEY),
            rate_limits: Default::default(),
        })
        .await
        .unwrap()
}

pub async fn issue_token(
    store: &dyn Store,
    project_id: &str,
    max_requests: Option<i64>,
    expires_at: Option<DateTime<Utc>>,
) -> String {
    let token = llm_proxy_store::generate_token().unwrap();
    let id = uuid::Uuid::now_v7();
    store
        .create_token(NewToken {
            id,
            token_hash: llm_proxy_store::hash_token(&token),
            project_id: project_id.to_owned(),
            expires_at: expires_at.or_else(|| Some(Utc::now() + chrono::Duration::hours(1))),
            max_requests,
        })
        .await
        .unwrap();
    token
}

/// Creates the SQLite database of [`proxy_command`] on `dir` with one project, before the binary runs.
pub async fn seed_sqlite_project(dir: &TempDir) -> (Arc<dyn Store>, Project) {
    let store = llm_proxy_store::connect(&llm_proxy_store::StoreConfig::new(
        llm_proxy_store::Driver::Sqlite {
            path: dir.0.join("proxy.db"),
        },
    ))
    .await
    .unwrap();
    let project = store
        .create_project(NewProject {
            name: "binary-test".into(),
            api_key: ProviderKey::new(PROVIDER_KEY),
            rate_limits: Default::default(),
        })
        .await
        .unwrap();
    (store, project)
}

/// The test Redis (`LLM_PROXY_TEST_REDIS_URL`) and the variables that make the binary publish its
/// events to a fresh stream on it, with `mock` as upstream: (Redis URL, stream key, variables).
pub fn redis_stream_env(mock: &MockOpenAi) -> (String, String, Vec<(&'static str, String)>) {
    let redis_url = std::env::var("LLM_PROXY_TEST_REDIS_URL")
        .expect("LLM_PROXY_TEST_REDIS_URL must be set: run through scripts/test-services.sh");
    let stream_key = format!("proxy-binary-test-{}", uuid::Uuid::new_v4());
    let vars = vec![
        (env::OPENAI_API_URL, mock.url()),
        (env::LLM_PROXY_EVENT_BUS, "redis-streams".into()),
        (env::REDIS_URL, redis_url.clone()),
        (env::REDIS_STREAM_KEY, stream_key.clone()),
    ];
    (redis_url, stream_key, vars)
}

/// The `data` of every event on `stream_key` now (nothing while Redis cannot be reached).
pub async fn stream_data(redis_url: &str, stream_key: &str) -> Vec<String> {
    let Ok(client) = redis::Client::open(redis_url) else {
        return Vec::new();
    };
    let Ok(mut connection) = client.get_multiplexed_async_connection().await else {
        return Vec::new();
    };
    let entries: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(stream_key)
        .arg("-")
        .arg("+")
        .query_async(&mut connection)
        .await
        .unwrap_or_default();
    entries
        .ids
        .iter()
        .filter_map(|entry| entry.get::<String>("data"))
        .collect()
}

/// The `data` of every event on `stream_key`, once there are at least `count` (fails after 20 s).
pub async fn stream_events(redis_url: &str, stream_key: &str, count: usize) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let events = stream_data(redis_url, stream_key).await;
        if events.len() >= count {
            return events;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {count} events on {stream_key}",
            events.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The `llm-proxy` binary on `dir` (SQLite database, absent providers file, audit log), with a clean
/// environment, a loopback port 0, piped output, and killed when dropped.
pub fn proxy_command(dir: &TempDir) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_llm-proxy"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env(env::MANAGEMENT_TOKEN, MANAGEMENT_TOKEN)
        .env(env::DATABASE_PATH, dir.0.join("proxy.db"))
        .env(env::API_CONFIG_PATH, dir.0.join("absent.yaml"))
        .env(env::AUDIT_LOG_FILE, dir.0.join("audit.log"))
        .env(
            env::LLM_PROXY_EVENT_SPOOL_PATH,
            dir.0.join("event-spool.jsonl"),
        )
        .env(env::LISTEN_ADDR, "127.0.0.1:0")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    command
}

/// A running binary whose stdout (JSON logs) is collected in the background.
pub struct Running {
    pub child: tokio::process::Child,
    pub addr: String,
    pub logs: tokio::sync::watch::Receiver<String>,
}

/// Starts the binary on `dir` with debug JSON logs and waits for its listening line.
pub async fn start_binary(dir: &TempDir, extra: &[(&str, String)]) -> Running {
    let mut command = proxy_command(dir);
    command
        .env(env::LOG_LEVEL, "debug")
        .env(env::LOG_FORMAT, "json");
    for (name, value) in extra {
        command.env(name, value);
    }
    let mut child = command.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (sender, mut logs) = tokio::sync::watch::channel(String::new());
    tokio::spawn(async move {
        let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
        while let Ok(Some(line)) = lines.next_line().await {
            sender.send_modify(|all| {
                all.push_str(&line);
                all.push('\n');
            });
        }
    });
    let listening = tokio::time::timeout(
        Duration::from_secs(20),
        logs.wait_for(|all| all.contains("llm-proxy listening")),
    )
    .await
    .expect("the binary starts listening")
    .unwrap()
    .clone();
    let line = listening
        .lines()
        .find(|l| l.contains("llm-proxy listening"))
        .unwrap();
    let json: serde_json::Value = serde_json::from_str(line).unwrap();
    let addr = json["addr"].as_str().unwrap().to_owned();
    Running { child, addr, logs }
}

pub const CHAT_BODY: &str = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#;
pub const CHAT_STREAM_BODY: &str =
    r#"{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;

/// A complete response.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| panic!("not JSON: {:?}", String::from_utf8_lossy(&self.body)))
    }

    /// Asserts a local JSON error with `status` and `code`.
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(
            self.status.as_u16(),
            status,
            "body: {}",
            String::from_utf8_lossy(&self.body)
        );
        assert_eq!(self.headers["content-type"], "application/json");
        let json = self.json();
        assert_eq!(json["code"], code, "{json}");
        assert!(json["error"].is_string(), "{json}");
    }
}

pub async fn send(
    client: &Client<HttpConnector, Full<Bytes>>,
    request: Request<Full<Bytes>>,
) -> Reply {
    let response = tokio::time::timeout(Duration::from_secs(20), client.request(request))
        .await
        .expect("response within 20 s")
        .unwrap();
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

pub fn request(method: Method, url: &str) -> http::request::Builder {
    Request::builder().method(method).uri(url)
}

/// A new, empty PostgreSQL database on the test server (`LLM_PROXY_TEST_DATABASE_URL`, provided by
/// `scripts/test-services.sh`; fails, never skips, when it is unset); returns its URL.
pub async fn fresh_pg_database() -> String {
    use sqlx::Connection as _;
    let admin_url = std::env::var("LLM_PROXY_TEST_DATABASE_URL")
        .expect("LLM_PROXY_TEST_DATABASE_URL must be set: run through scripts/test-services.sh");
    let name = format!("proxy_test_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::postgres::PgConnection::connect(&admin_url)
        .await
        .unwrap();
    // The name is generated above from a UUID: no injection possible.
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .unwrap();
    admin.close().await.unwrap();
    let (base, _) = admin_url.rsplit_once('/').unwrap();
    format!("{base}/{name}")
}
