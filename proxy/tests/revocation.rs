//! Revocation across replicas: two real `llm-proxy` processes on one PostgreSQL database
//! (`LLM_PROXY_TEST_DATABASE_URL`); a change made through one replica's `/manage` is refused by
//! the other within 1 s while it is under load, and the invalidation listener's outages show in
//! `/ready` and the metrics.

// Test helpers outside #[test] functions fail loudly on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::{CHAT_BODY, MANAGEMENT_TOKEN, PROVIDER_KEY, Reply, Running, TempDir};
use http::{Method, Request};
use http_body_util::Full;
use llm_proxy_env as env;
use llm_proxy_mocks::openai::MockOpenAi;
use serde_json::json;
use sqlx::Connection as _;
use tokio::time::Instant;

/// The revocation bound with the channel up.
const BOUND: Duration = Duration::from_secs(1);

struct Replicas {
    a: Running,
    b: Running,
    url: String,
    _mock: MockOpenAi,
    _dirs: (TempDir, TempDir),
}

async fn replicas() -> Replicas {
    let mock = MockOpenAi::start().await.unwrap();
    let url = common::fresh_pg_database().await;
    let vars = [
        (env::DB_DRIVER, "postgres".to_owned()),
        (env::DATABASE_URL, url.clone()),
        (env::OPENAI_API_URL, mock.url()),
    ];
    let dirs = (TempDir::new(), TempDir::new());
    let a = common::start_binary(&dirs.0, &vars).await;
    let b = common::start_binary(&dirs.1, &vars).await;
    for replica in [&a, &b] {
        wait_for_revocation(replica, "ok").await;
    }
    Replicas {
        a,
        b,
        url,
        _mock: mock,
        _dirs: dirs,
    }
}

async fn call(addr: &str, method: Method, path: &str, body: Option<serde_json::Value>) -> Reply {
    let mut builder = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .header("authorization", format!("Bearer {MANAGEMENT_TOKEN}"));
    if body.is_some() {
        builder = builder.header("content-type", "application/json");
    }
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    common::send(
        &common::http_client(),
        builder.body(Full::new(Bytes::from(body))).unwrap(),
    )
    .await
}

async fn chat(addr: &str, token: &str) -> Reply {
    common::send(
        &common::http_client(),
        Request::post(format!("http://{addr}/v1/chat/completions"))
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(CHAT_BODY)))
            .unwrap(),
    )
    .await
}

async fn ready(replica: &Running) -> serde_json::Value {
    call(&replica.addr, Method::GET, "/ready", None)
        .await
        .json()
}

/// Polls `/ready` until its `revocation` check reads `state` (fails after 20 s).
async fn wait_for_revocation(replica: &Running, state: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ready = ready(replica).await;
        if ready["checks"]["revocation"] == state {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "revocation never {state}: {ready}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn prometheus(replica: &Running) -> String {
    let reply = call(&replica.addr, Method::GET, "/metrics/prometheus", None).await;
    String::from_utf8_lossy(&reply.body).into_owned()
}

/// A new project and an unlimited token of it, created through replica `addr`: (project id,
/// token id, token).
async fn project_and_token(addr: &str) -> (String, String, String) {
    let name = format!("revocation-{}", uuid::Uuid::new_v4());
    let project = call(
        addr,
        Method::POST,
        "/manage/projects",
        Some(json!({"name": name, "api_key": PROVIDER_KEY})),
    )
    .await;
    assert_eq!(project.status, 201, "{:?}", project.body);
    let project_id = project.json()["id"].as_str().unwrap().to_owned();
    let token = call(
        addr,
        Method::POST,
        "/manage/tokens",
        Some(json!({"project_id": project_id, "duration_minutes": 60})),
    )
    .await;
    assert_eq!(token.status, 201, "{:?}", token.body);
    let json = token.json();
    assert!(json["max_requests"].is_null(), "unlimited: {json}");
    (
        project_id,
        json["id"].as_str().unwrap().to_owned(),
        json["token"].as_str().unwrap().to_owned(),
    )
}

/// One request of the load: when it was sent and answered, and its status.
#[derive(Debug, Clone, Copy)]
struct Sample {
    sent: Instant,
    answered: Instant,
    status: u16,
}

/// Keeps `workers` concurrent request loops on `addr` with `token` until `stop` is set.
fn load(
    addr: &str,
    token: &str,
    workers: usize,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> (Arc<Mutex<Vec<Sample>>>, Vec<tokio::task::JoinHandle<()>>) {
    let samples = Arc::new(Mutex::new(Vec::new()));
    let tasks = (0..workers)
        .map(|_| {
            let (addr, token, stop, samples) = (
                addr.to_owned(),
                token.to_owned(),
                stop.clone(),
                samples.clone(),
            );
            tokio::spawn(async move {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let sent = Instant::now();
                    let status = chat(&addr, &token).await.status.as_u16();
                    let answered = Instant::now();
                    samples.lock().unwrap().push(Sample {
                        sent,
                        answered,
                        status,
                    });
                }
            })
        })
        .collect();
    (samples, tasks)
}

/// Warms the token on B, puts B under load, applies `revoke` through A, and checks that B refuses
/// the token within [`BOUND`] of A's answer and admits nothing sent after its first refusal.
async fn revoked_on_the_other_replica_within_a_second<F, Fut>(revoke: F)
where
    F: FnOnce(String, String, String) -> Fut,
    Fut: std::future::Future<Output = Reply>,
{
    let r = replicas().await;
    let (project_id, token_id, token) = project_and_token(&r.a.addr).await;
    for _ in 0..3 {
        assert_eq!(chat(&r.b.addr, &token).await.status, 200, "warm on B");
    }
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (samples, tasks) = load(&r.b.addr, &token, 4, stop.clone());
    // Let the load run (and be admitted) before the revocation.
    let deadline = Instant::now() + Duration::from_secs(10);
    while samples
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.status == 200)
        .count()
        < 20
    {
        assert!(Instant::now() < deadline, "load admitted on B");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let reply = revoke(r.a.addr.clone(), project_id, token_id).await;
    let revoked = Instant::now();
    assert!(
        reply.status.is_success(),
        "{}: {:?}",
        reply.status,
        reply.body
    );
    let deadline = revoked + Duration::from_secs(5);
    let first_refusal = loop {
        let refused = samples
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.status != 200)
            .map(|s| s.answered)
            .min();
        if let Some(at) = refused
            && Instant::now() > at + Duration::from_millis(200)
        {
            break at;
        }
        assert!(Instant::now() < deadline, "B never refused the token");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }
    let samples = samples.lock().unwrap().clone();
    let late = first_refusal.saturating_duration_since(revoked);
    assert!(
        late <= BOUND,
        "B's first refusal came {late:?} after the revocation"
    );
    let admitted_after: Vec<_> = samples
        .iter()
        .filter(|s| s.sent >= first_refusal && s.status == 200)
        .collect();
    assert!(
        admitted_after.is_empty(),
        "{} requests admitted after the first refusal",
        admitted_after.len()
    );
    let refused: Vec<u16> = samples
        .iter()
        .filter(|s| s.status != 200)
        .map(|s| s.status)
        .collect();
    assert!(
        refused.iter().all(|status| matches!(status, 401 | 403)),
        "refusals: {refused:?}"
    );
    assert!(
        prometheus(&r.b)
            .await
            .contains("llm_proxy_revocation_channel_up 1"),
        "the channel is reported up"
    );
}

#[tokio::test]
async fn a_token_deleted_through_one_replica_is_refused_by_the_other_within_a_second() {
    revoked_on_the_other_replica_within_a_second(|a, _, token_id| async move {
        call(
            &a,
            Method::DELETE,
            &format!("/manage/tokens/{token_id}"),
            None,
        )
        .await
    })
    .await;
}

#[tokio::test]
async fn a_token_deactivated_through_one_replica_is_refused_by_the_other_within_a_second() {
    revoked_on_the_other_replica_within_a_second(|a, _, token_id| async move {
        call(
            &a,
            Method::PATCH,
            &format!("/manage/tokens/{token_id}"),
            Some(json!({"is_active": false})),
        )
        .await
    })
    .await;
}

#[tokio::test]
async fn a_project_wide_revocation_through_one_replica_is_refused_by_the_other_within_a_second() {
    revoked_on_the_other_replica_within_a_second(|a, project_id, _| async move {
        call(
            &a,
            Method::POST,
            &format!("/manage/projects/{project_id}/tokens/revoke"),
            None,
        )
        .await
    })
    .await;
}

#[tokio::test]
async fn a_project_deactivated_through_one_replica_is_refused_by_the_other_within_a_second() {
    revoked_on_the_other_replica_within_a_second(|a, project_id, _| async move {
        call(
            &a,
            Method::PATCH,
            &format!("/manage/projects/{project_id}"),
            Some(json!({"is_active": false})),
        )
        .await
    })
    .await;
}

/// Runs `sql` on the test server's admin database.
async fn admin(sql: String) {
    let admin_url = std::env::var("LLM_PROXY_TEST_DATABASE_URL").unwrap();
    let mut admin = sqlx::postgres::PgConnection::connect(&admin_url)
        .await
        .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .execute(&mut admin)
        .await
        .unwrap();
    admin.close().await.unwrap();
}

#[tokio::test]
async fn a_lost_listener_shows_degraded_then_recovers_and_drops_what_it_may_have_missed() {
    let r = replicas().await;
    let (_, token_id, token) = project_and_token(&r.a.addr).await;
    assert_eq!(chat(&r.b.addr, &token).await.status, 200, "cached on B");
    // The name was generated by common::fresh_pg_database from a UUID.
    let name = r.url.rsplit('/').next().unwrap().to_owned();
    // New connections to the database are refused (superusers included) until re-allowed, so the
    // listeners cannot reconnect; the replicas' pools keep their open connections.
    admin(format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false")).await;
    admin(format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = '{name}' AND application_name = '{}'",
        llm_proxy_store::postgres::LISTENER_APPLICATION_NAME
    ))
    .await;
    wait_for_revocation(&r.b, "degraded").await;
    let degraded = ready(&r.b).await;
    assert_eq!(degraded["status"], "ready", "never unready: {degraded}");
    assert!(
        prometheus(&r.b)
            .await
            .contains("llm_proxy_revocation_channel_up 0")
    );

    // Revoked while B cannot hear about it: B keeps its cached record (the cache TTL bound).
    let revoked = call(
        &r.a.addr,
        Method::DELETE,
        &format!("/manage/tokens/{token_id}"),
        None,
    )
    .await;
    assert!(revoked.status.is_success(), "{:?}", revoked.body);

    admin(format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true")).await;
    wait_for_revocation(&r.b, "ok").await;
    // Reconnected: everything cached during the gap was dropped, so the revocation applies.
    chat(&r.b.addr, &token)
        .await
        .assert_error(401, "token_inactive");
    let metrics = prometheus(&r.b).await;
    assert!(
        metrics.contains("llm_proxy_revocation_channel_up 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("llm_proxy_revocation_invalidations_total{kind=\"reconnect\"} 2"),
        "{metrics}"
    );
}

#[tokio::test]
async fn on_sqlite_the_revocation_check_is_not_applicable() {
    let h = common::Harness::start().await;
    let ready = h
        .send(
            common::request(Method::GET, &h.url("/ready"))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await;
    assert_eq!(ready.json()["checks"]["revocation"], "not_applicable");
}

/// A TCP forwarder to the test PostgreSQL server whose connections can be frozen: bytes stop
/// flowing while both sockets stay open, as in a network partition (no reset, no error).
struct Forwarder {
    addr: std::net::SocketAddr,
    /// One flag per connection accepted so far.
    connections: Arc<Mutex<Vec<tokio::sync::watch::Sender<bool>>>>,
}

impl Forwarder {
    async fn start(upstream: String) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(Mutex::new(Vec::new()));
        let registry = connections.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let server = tokio::net::TcpStream::connect(&upstream).await.unwrap();
                let (frozen, watch) = tokio::sync::watch::channel(false);
                registry.lock().unwrap().push(frozen);
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::spawn(pipe(client_read, server_write, watch.clone()));
                tokio::spawn(pipe(server_read, client_write, watch));
            }
        });
        Self { addr, connections }
    }

    /// Freezes every connection made so far; later ones flow.
    fn freeze(&self) {
        for frozen in self.connections.lock().unwrap().iter() {
            frozen.send_replace(true);
        }
    }
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut frozen: tokio::sync::watch::Receiver<bool>,
) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let read = tokio::select! {
            read = from.read(&mut buffer) => read,
            _ = frozen.wait_for(|frozen| *frozen) => break,
        };
        match read {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if to.write_all(&buffer[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
    // Frozen: hold both halves open and forward nothing.
    std::future::pending::<()>().await;
    drop((from, to));
}

#[derive(Default)]
struct Recording(Mutex<Vec<String>>);

impl llm_proxy::manage::CacheInvalidator for Recording {
    fn token_changed(&self, hash: &llm_proxy_store::TokenHash) {
        self.0.lock().unwrap().push(format!("token {hash}"));
    }
    fn project_changed(&self, project_id: &str) {
        self.0.lock().unwrap().push(format!("project {project_id}"));
    }
    fn everything_changed(&self) {
        self.0.lock().unwrap().push("all".into());
    }
}

#[tokio::test]
async fn a_silently_cut_listener_connection_is_noticed_by_the_probe_and_replaced() {
    use llm_proxy::revocation::{self, Probe, RevocationChannel};
    let url = common::fresh_pg_database().await;
    // Creates the schema (and its triggers).
    let store = llm_proxy_store::connect(&llm_proxy_store::StoreConfig::new(
        llm_proxy_store::Driver::Postgres { url: url.clone() },
    ))
    .await
    .unwrap();
    let (authority, rest) = url.split_once("://").unwrap();
    let (credentials, host_and_path) = rest.split_once('@').unwrap();
    let (host, database) = host_and_path.split_once('/').unwrap();
    let forwarder = Forwarder::start(host.to_owned()).await;
    let forwarded = format!("{authority}://{credentials}@{}/{database}", forwarder.addr);
    let caches = Arc::new(Recording::default());
    let weak: std::sync::Weak<Recording> = Arc::downgrade(&caches);
    let channel = RevocationChannel::new();
    let probe = Probe {
        after: Duration::from_millis(200),
        timeout: Duration::from_millis(500),
    };
    let listener = revocation::spawn(forwarded, weak, channel.clone(), probe);
    let until = |up: bool| {
        let channel = channel.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            while channel.is_up() != up {
                assert!(
                    Instant::now() < deadline,
                    "the channel never became up={up}"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    until(true).await;
    forwarder.freeze();
    until(false).await;
    until(true).await;
    assert_eq!(channel.received("reconnect"), 2, "dropped the caches twice");

    // The new connection delivers.
    let project = store
        .create_project(llm_proxy_store::NewProject {
            name: "probed".into(),
            api_key: llm_proxy_store::ProviderKey::new(PROVIDER_KEY),
            rate_limits: Default::default(),
        })
        .await
        .unwrap();
    let update = llm_proxy_store::ProjectUpdate {
        is_active: Some(false),
        ..Default::default()
    };
    store.update_project(&project.id, update).await.unwrap();
    let expected = format!("project {}", project.id);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !caches.0.lock().unwrap().contains(&expected) {
        assert!(Instant::now() < deadline, "{:?}", caches.0.lock().unwrap());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    listener.abort();
}
