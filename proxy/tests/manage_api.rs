//! Black-box tests of the management API: the real router served on 127.0.0.1:0 over a real
//! SQLite store (and PostgreSQL for the happy path), a real audit trail and a recording cache
//! invalidator.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers fail loudly

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use llm_proxy::audit::Audit;
use llm_proxy::client_ip::TrustedProxies;
use llm_proxy::config::AuditConfig;
use llm_proxy::manage::{CacheInvalidator, ManageState, router};
use llm_proxy::secret::Secret;
use llm_proxy_store::{Driver, EncryptionKey, Store, StoreConfig, TokenHash, connect};
use sqlx::Connection as _;

pub const MANAGEMENT_TOKEN: &str = "test-management-token-4f9d2c7e1a";
pub const PROVIDER_KEY: &str = "sk-provider-secret-0123456789abcdef";

/// Removes its directory when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    fn new() -> Self {
        let path = std::env::temp_dir().join(format!("llm-proxy-manage-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Records invalidations, as the data path's token cache would receive them.
#[derive(Default)]
pub struct RecordingInvalidator {
    pub tokens: Mutex<Vec<TokenHash>>,
    pub projects: Mutex<Vec<String>>,
}

impl CacheInvalidator for RecordingInvalidator {
    fn token_changed(&self, hash: &TokenHash) {
        self.tokens.lock().unwrap().push(hash.clone());
    }
    fn project_changed(&self, project_id: &str) {
        self.projects.lock().unwrap().push(project_id.to_owned());
    }
}

#[derive(Clone, Copy, Debug)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// One HTTP exchange.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Asserts a JSON error with this status and code.
    pub fn assert_error(&self, status: StatusCode, code: &str) {
        assert_eq!(self.status, status, "{}", self.text());
        assert_eq!(
            self.headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok()),
            Some("application/json"),
            "errors are JSON"
        );
        let body = self.json();
        assert_eq!(body["code"], code, "{body}");
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{body}"
        );
    }
}

/// The management router served on an ephemeral port.
pub struct Harness {
    pub base: String,
    pub store: Arc<dyn Store>,
    pub audit: Audit,
    pub invalidator: Arc<RecordingInvalidator>,
    pub audit_file: PathBuf,
    client: Client<HttpConnector, Full<Bytes>>,
    _dir: TempDir,
}

impl Harness {
    pub async fn start(backend: Backend) -> Self {
        Self::start_with_key(backend, None).await
    }

    /// Starts with provider keys encrypted at rest under `key`.
    pub async fn start_with_key(backend: Backend, key: Option<EncryptionKey>) -> Self {
        Self::start_with(backend, key, TrustedProxies::default()).await
    }

    /// Starts on SQLite, believing the forwarding headers of `trusted` peers.
    pub async fn start_trusting(trusted: &str) -> Self {
        let trusted = TrustedProxies::parse(trusted).unwrap();
        Self::start_with(Backend::Sqlite, None, trusted).await
    }

    async fn start_with(
        backend: Backend,
        key: Option<EncryptionKey>,
        trusted_proxies: TrustedProxies,
    ) -> Self {
        let dir = TempDir::new();
        let driver = match backend {
            Backend::Sqlite => Driver::Sqlite {
                path: dir.0.join("db").join("proxy.db"),
            },
            Backend::Postgres => Driver::Postgres {
                url: fresh_pg_database().await,
            },
        };
        let store = connect(&StoreConfig {
            encryption_key: key,
            ..StoreConfig::new(driver)
        })
        .await
        .unwrap();
        let audit_file = dir.0.join("audit").join("audit.log");
        let audit = Audit::start(
            &AuditConfig {
                enabled: true,
                log_file: Some(audit_file.clone()),
                create_dir: true,
                store_in_db: true,
            },
            Arc::clone(&store),
        )
        .await
        .unwrap();
        let invalidator = Arc::new(RecordingInvalidator::default());
        let state = ManageState::new(
            Arc::clone(&store),
            Secret::new(MANAGEMENT_TOKEN),
            audit.clone(),
            invalidator.clone(),
            trusted_proxies,
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            base: format!("http://{addr}"),
            store,
            audit,
            invalidator,
            audit_file,
            client: Client::builder(TokioExecutor::new()).build_http(),
            _dir: dir,
        }
    }

    /// Sends a request; `auth` is the whole Authorization header value.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        auth: Option<&str>,
        content_type: Option<&str>,
        body: impl Into<Bytes>,
    ) -> Reply {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if let Some(auth) = auth {
            request = request.header(header::AUTHORIZATION, auth);
        }
        if let Some(content_type) = content_type {
            request = request.header(header::CONTENT_TYPE, content_type);
        }
        let response = self
            .client
            .request(request.body(Full::new(body.into())).unwrap())
            .await
            .unwrap();
        let (parts, body) = response.into_parts();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body: body.collect().await.unwrap().to_bytes(),
        }
    }

    /// An authenticated call with an optional JSON body.
    pub async fn call(&self, method: Method, path: &str, body: Option<serde_json::Value>) -> Reply {
        let auth = format!("Bearer {MANAGEMENT_TOKEN}");
        match body {
            Some(body) => {
                self.send(
                    method,
                    path,
                    Some(&auth),
                    Some("application/json"),
                    body.to_string(),
                )
                .await
            }
            None => {
                self.send(method, path, Some(&auth), None, Bytes::new())
                    .await
            }
        }
    }

    /// Creates a project and returns its id.
    pub async fn project(&self, name: &str) -> String {
        let reply = self
            .call(
                Method::POST,
                "/manage/projects",
                Some(serde_json::json!({"name": name, "api_key": PROVIDER_KEY})),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
        reply.json()["id"].as_str().unwrap().to_owned()
    }
}

/// Creates an empty database on the test server and returns its URL.
pub async fn fresh_pg_database() -> String {
    let Ok(admin_url) = std::env::var("LLM_PROXY_TEST_DATABASE_URL") else {
        panic!(
            "LLM_PROXY_TEST_DATABASE_URL is not set: run `make test` or \
             `scripts/test-services.sh cargo nextest run -p llm-proxy`"
        );
    };
    let name = format!("manage_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(&admin_url).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .unwrap();
    admin.close().await.unwrap();
    let (base, query) = match admin_url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (admin_url.as_str(), String::new()),
    };
    let (server, _) = base.rsplit_once('/').unwrap();
    format!("{server}/{name}{query}")
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

use llm_proxy::manage::ROUTES;
use llm_proxy_store::{AuditOutcome, AuditQuery, hash_token, validate_token_format};
use serde_json::json;

/// A concrete path for a route pattern.
fn concrete(path: &str) -> String {
    path.replace("{id}", "0191a0b0-0000-7000-8000-000000000000")
}

#[tokio::test]
async fn every_route_and_unknown_paths_require_the_management_token() {
    let h = Harness::start(Backend::Sqlite).await;
    let mut targets: Vec<(Method, String)> = ROUTES
        .iter()
        .map(|r| (r.method.clone(), concrete(r.path)))
        .collect();
    targets.push((Method::GET, "/manage".into()));
    targets.push((Method::GET, "/manage/nope".into()));
    targets.push((Method::PUT, "/manage/projects".into()));
    targets.push((Method::GET, "/manage/projects/x/y/z".into()));
    for (method, path) in targets {
        for auth in [
            None,
            Some("Bearer wrong-token"),
            Some("Basic dXNlcjpwYXNz"),
            Some("Bearer"),
        ] {
            let reply = h
                .send(method.clone(), &path, auth, None, Bytes::new())
                .await;
            reply.assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
            assert_eq!(
                reply.headers.get(header::WWW_AUTHENTICATE).unwrap(),
                "Bearer"
            );
        }
    }
    let lower = h
        .send(
            Method::GET,
            "/manage/projects",
            Some(&format!("bearer {MANAGEMENT_TOKEN}")),
            None,
            Bytes::new(),
        )
        .await;
    assert_eq!(lower.status, StatusCode::OK);
}

#[tokio::test]
async fn the_router_serves_exactly_the_route_table() {
    let h = Harness::start(Backend::Sqlite).await;
    for route in ROUTES {
        let body =
            (route.method == Method::POST || route.method == Method::PATCH).then(|| json!({}));
        let reply = h
            .call(route.method.clone(), &concrete(route.path), body)
            .await;
        assert_ne!(
            reply.json()["error"],
            "route not found",
            "{} {}",
            route.method,
            route.path
        );
        let expected_405 = route.method == Method::DELETE && route.path == "/manage/projects/{id}";
        assert_eq!(
            reply.status == StatusCode::METHOD_NOT_ALLOWED,
            expected_405,
            "{} {}",
            route.method,
            route.path
        );
    }
    let unknown = h.call(Method::GET, "/manage/nope", None).await;
    unknown.assert_error(StatusCode::NOT_FOUND, "not_found");
    let wrong_method = h.call(Method::PUT, "/manage/tokens", None).await;
    wrong_method.assert_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    assert_eq!(
        wrong_method.headers.get(header::ALLOW).unwrap(),
        "GET, POST"
    );
}

#[tokio::test]
async fn openapi_document_describes_exactly_the_management_routes() {
    #[derive(serde::Deserialize)]
    struct Document {
        openapi: String,
        paths: std::collections::BTreeMap<
            String,
            std::collections::BTreeMap<String, serde::de::IgnoredAny>,
        >,
    }
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.yaml")).unwrap();
    let document: Document = serde_saphyr::from_str(&text).unwrap();
    assert_eq!(document.openapi, "3.0.3");
    const METHODS: &[&str] = &["get", "post", "put", "patch", "delete", "head", "options"];
    let mut documented: Vec<(String, String)> = document
        .paths
        .iter()
        .filter(|(path, _)| path.starts_with("/manage"))
        .flat_map(|(path, ops)| {
            ops.keys()
                .filter(|op| METHODS.contains(&op.as_str()))
                .map(move |op| (op.to_uppercase(), path.clone()))
        })
        .collect();
    documented.sort();
    let mut served: Vec<(String, String)> = ROUTES
        .iter()
        .map(|r| (r.method.to_string(), r.path.to_owned()))
        .collect();
    served.sort();
    assert_eq!(documented, served);
    for path in [
        "/v1/{path}",
        "/health",
        "/live",
        "/ready",
        "/metrics",
        "/metrics/prometheus",
    ] {
        assert!(document.paths.contains_key(path), "{path} is documented");
    }
}

#[tokio::test]
async fn project_lifecycle_never_echoes_the_provider_key() {
    let h = Harness::start(Backend::Sqlite).await;
    let mut bodies = Vec::new();

    let created = h
        .call(
            Method::POST,
            "/manage/projects",
            Some(json!({"name": " alpha ", "api_key": PROVIDER_KEY})),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text());
    let project = created.json();
    assert_eq!(project["name"], "alpha");
    assert_eq!(project["api_key"], "sk-provi...cdef");
    assert_eq!(project["is_active"], true);
    assert!(project.get("deactivated_at").is_none());
    let id = project["id"].as_str().unwrap().to_owned();
    bodies.push(created.text());

    let listed = h.call(Method::GET, "/manage/projects", None).await;
    assert_eq!(listed.status, StatusCode::OK);
    assert_eq!(listed.json().as_array().unwrap().len(), 1);
    bodies.push(listed.text());
    let one = h
        .call(Method::GET, &format!("/manage/projects/{id}"), None)
        .await;
    assert_eq!(
        (one.status, one.json()["api_key"].clone()),
        (StatusCode::OK, json!("sk-provi...cdef"))
    );
    bodies.push(one.text());
    h.call(Method::GET, "/manage/projects/missing", None)
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");

    h.call(
        Method::POST,
        "/manage/projects",
        Some(json!({"name": "alpha", "api_key": "sk-other-key-123456789"})),
    )
    .await
    .assert_error(StatusCode::CONFLICT, "conflict");
    for bad in [
        json!({"name": "", "api_key": PROVIDER_KEY}),
        json!({"name": "beta", "api_key": "  "}),
        json!({"name": "beta", "api_key": "sk-provi...cdef"}),
        json!({"name": "beta", "api_key": "ab****"}),
    ] {
        h.call(Method::POST, "/manage/projects", Some(bad))
            .await
            .assert_error(StatusCode::BAD_REQUEST, "validation_error");
    }

    let path = format!("/manage/projects/{id}");
    h.project("taken").await;
    h.call(Method::PATCH, &path, Some(json!({"name": "taken"})))
        .await
        .assert_error(StatusCode::CONFLICT, "conflict");
    let renamed = h
        .call(
            Method::PATCH,
            &path,
            Some(json!({"name": "gamma", "api_key": ""})),
        )
        .await;
    assert_eq!(
        (renamed.status, renamed.json()["name"].clone()),
        (StatusCode::OK, json!("gamma"))
    );
    assert_eq!(
        renamed.json()["api_key"],
        "sk-provi...cdef",
        "empty api_key leaves the key unchanged"
    );
    bodies.push(renamed.text());
    let rekeyed = h
        .call(
            Method::PATCH,
            &path,
            Some(json!({"api_key": "sk-second-provider-key-XYZW"})),
        )
        .await;
    assert_eq!(rekeyed.json()["api_key"], "sk-secon...XYZW");
    bodies.push(rekeyed.text());
    h.call(
        Method::PATCH,
        &path,
        Some(json!({"api_key": "sk-secon...XYZW"})),
    )
    .await
    .assert_error(StatusCode::BAD_REQUEST, "validation_error");
    h.call(Method::PATCH, &path, Some(json!({})))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "validation_error");
    h.call(Method::PATCH, &path, Some(json!({"revoke_tokens": true})))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "validation_error");
    h.call(
        Method::PATCH,
        "/manage/projects/missing",
        Some(json!({"is_active": false})),
    )
    .await
    .assert_error(StatusCode::NOT_FOUND, "not_found");

    let token = h
        .call(
            Method::POST,
            "/manage/tokens",
            Some(json!({"project_id": id, "duration_minutes": 60})),
        )
        .await;
    let plaintext = token.json()["token"].as_str().unwrap().to_owned();
    let deactivated = h
        .call(
            Method::PATCH,
            &path,
            Some(json!({"is_active": false, "revoke_tokens": true})),
        )
        .await;
    assert_eq!(deactivated.status, StatusCode::OK, "{}", deactivated.text());
    assert_eq!(deactivated.json()["is_active"], false);
    assert!(deactivated.json()["deactivated_at"].is_string());
    assert!(
        h.invalidator
            .tokens
            .lock()
            .unwrap()
            .contains(&hash_token(&plaintext))
    );
    assert!(h.invalidator.projects.lock().unwrap().contains(&id));
    let reactivated = h
        .call(Method::PATCH, &path, Some(json!({"is_active": true})))
        .await;
    assert!(reactivated.json().get("deactivated_at").is_none());

    let deleted = h.call(Method::DELETE, &path, None).await;
    deleted.assert_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    assert_eq!(deleted.headers.get(header::ALLOW).unwrap(), "GET, PATCH");
    assert_eq!(
        h.call(Method::GET, &path, None).await.status,
        StatusCode::OK,
        "still there"
    );

    for body in bodies {
        assert!(
            !body.contains(PROVIDER_KEY) && !body.contains("sk-second-provider-key-XYZW"),
            "{body}"
        );
    }
}

#[tokio::test]
async fn token_lifecycle_and_validation() {
    let h = Harness::start(Backend::Sqlite).await;
    let project = h.project("p").await;
    let other = h.project("q").await;

    let created = h
        .call(
            Method::POST,
            "/manage/tokens",
            Some(json!({"project_id": project, "duration_minutes": 30, "max_requests": 5})),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text());
    let body = created.json();
    let plaintext = body["token"].as_str().unwrap().to_owned();
    assert_eq!(
        validate_token_format(&plaintext),
        Ok(llm_proxy_store::TokenShape::Issued)
    );
    assert_eq!(body["max_requests"], 5);
    assert!(body["expires_at"].is_string());
    let id = body["id"].as_str().unwrap().to_owned();
    let stored = h
        .store
        .token_by_hash(&hash_token(&plaintext))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.id.to_string(), id, "stored by hash");

    let unlimited = h
        .call(
            Method::POST,
            "/manage/tokens",
            Some(json!({"project_id": other, "duration_minutes": 1, "max_requests": 0})),
        )
        .await;
    assert_eq!(unlimited.json()["max_requests"], serde_json::Value::Null);

    let all = h.call(Method::GET, "/manage/tokens", None).await;
    assert_eq!(all.json().as_array().unwrap().len(), 2);
    let filtered = h
        .call(
            Method::GET,
            &format!("/manage/tokens?projectId={project}"),
            None,
        )
        .await;
    let filtered = filtered.json();
    assert_eq!(filtered.as_array().unwrap().len(), 1);
    assert!(
        filtered[0].get("token").is_none(),
        "listing never shows the token"
    );
    for reply in [
        &all,
        &h.call(Method::GET, &format!("/manage/tokens/{id}"), None)
            .await,
    ] {
        assert!(!reply.text().contains(&plaintext));
    }

    let path = format!("/manage/tokens/{id}");
    let patched = h
        .call(Method::PATCH, &path, Some(json!({"max_requests": 0})))
        .await;
    assert_eq!(
        (patched.status, patched.json()["max_requests"].clone()),
        (StatusCode::OK, serde_json::Value::Null)
    );
    h.call(Method::PATCH, &path, Some(json!({})))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "validation_error");
    h.call(Method::PATCH, &path, Some(json!({"max_requests": -1})))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "validation_error");

    let revoked = h.call(Method::DELETE, &path, None).await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT);
    assert!(
        h.invalidator
            .tokens
            .lock()
            .unwrap()
            .contains(&hash_token(&plaintext))
    );
    assert_eq!(
        h.call(Method::DELETE, &path, None).await.status,
        StatusCode::NO_CONTENT,
        "idempotent"
    );
    assert_eq!(
        h.call(Method::GET, &path, None).await.json()["is_active"],
        false
    );

    let unknown = "0191a0b0-0000-7000-8000-000000000000";
    h.call(Method::GET, &format!("/manage/tokens/{unknown}"), None)
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
    h.call(Method::DELETE, &format!("/manage/tokens/{unknown}"), None)
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
    h.call(
        Method::PATCH,
        &format!("/manage/tokens/{unknown}"),
        Some(json!({"is_active": false})),
    )
    .await
    .assert_error(StatusCode::NOT_FOUND, "not_found");
    h.call(Method::GET, "/manage/tokens/not-a-uuid", None)
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_id");
    h.call(Method::DELETE, "/manage/tokens/not-a-uuid", None)
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_id");

    for (bad, status, code) in [
        (
            json!({"project_id": project, "duration_minutes": 0}),
            StatusCode::BAD_REQUEST,
            "validation_error",
        ),
        (
            json!({"project_id": project, "duration_minutes": 525_601}),
            StatusCode::BAD_REQUEST,
            "validation_error",
        ),
        (
            json!({"project_id": project, "duration_minutes": 10, "max_requests": -1}),
            StatusCode::BAD_REQUEST,
            "validation_error",
        ),
        (
            json!({"project_id": " ", "duration_minutes": 10}),
            StatusCode::BAD_REQUEST,
            "validation_error",
        ),
        (
            json!({"project_id": "missing", "duration_minutes": 10}),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            json!({"project_id": project}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            json!({"project_id": project, "duration_minutes": "ten"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
    ] {
        h.call(Method::POST, "/manage/tokens", Some(bad))
            .await
            .assert_error(status, code);
    }
    let max = h
        .call(
            Method::POST,
            "/manage/tokens",
            Some(json!({"project_id": project, "duration_minutes": 525_600})),
        )
        .await;
    assert_eq!(max.status, StatusCode::CREATED);

    let revoke_all = h
        .call(
            Method::POST,
            &format!("/manage/projects/{project}/tokens/revoke"),
            None,
        )
        .await;
    assert_eq!(revoke_all.status, StatusCode::OK);
    assert_eq!(
        revoke_all.json(),
        json!({"revoked_count": 1, "already_revoked_count": 1, "total_tokens": 2})
    );
    let max_hash = hash_token(max.json()["token"].as_str().unwrap());
    assert!(
        h.invalidator.tokens.lock().unwrap().contains(&max_hash),
        "bulk revocation invalidates every revoked token"
    );
    h.call(Method::POST, "/manage/projects/missing/tokens/revoke", None)
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");

    h.call(
        Method::PATCH,
        &format!("/manage/projects/{project}"),
        Some(json!({"is_active": false})),
    )
    .await;
    h.call(
        Method::POST,
        "/manage/tokens",
        Some(json!({"project_id": project, "duration_minutes": 10})),
    )
    .await
    .assert_error(StatusCode::FORBIDDEN, "project_inactive");
}

#[tokio::test]
async fn malformed_requests_get_clear_json_errors() {
    let h = Harness::start(Backend::Sqlite).await;
    let auth = format!("Bearer {MANAGEMENT_TOKEN}");
    let json_type = Some("application/json");
    h.send(
        Method::POST,
        "/manage/projects",
        Some(&auth),
        json_type,
        "{not json",
    )
    .await
    .assert_error(StatusCode::BAD_REQUEST, "invalid_json");
    h.send(Method::POST, "/manage/projects", Some(&auth), json_type, "")
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_json");
    h.send(
        Method::POST,
        "/manage/projects",
        Some(&auth),
        Some("text/plain"),
        r#"{"name":"a","api_key":"k12345"}"#,
    )
    .await
    .assert_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
    h.send(
        Method::POST,
        "/manage/projects",
        Some(&auth),
        None,
        r#"{"name":"a","api_key":"k12345"}"#,
    )
    .await
    .assert_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
    h.send(
        Method::POST,
        "/manage/projects",
        Some(&auth),
        json_type,
        r#"{"name":"a","api_key":"k12345","extra":1}"#,
    )
    .await
    .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body");
    h.send(
        Method::POST,
        "/manage/projects",
        Some(&auth),
        json_type,
        r#"["name"]"#,
    )
    .await
    .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body");
    let misplaced = h
        .send(
            Method::POST,
            "/manage/tokens",
            Some(&auth),
            json_type,
            format!(r#"{{"project_id":"p","duration_minutes":"{PROVIDER_KEY}"}}"#),
        )
        .await;
    misplaced.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body");
    assert!(
        !misplaced.text().contains(PROVIDER_KEY),
        "{}",
        misplaced.text()
    );
    let huge = format!(
        r#"{{"name":"a","api_key":"{}"}}"#,
        "k".repeat(1024 * 1024 + 1)
    );
    h.send(
        Method::POST,
        "/manage/projects",
        Some(&auth),
        json_type,
        huge,
    )
    .await
    .assert_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    h.send(
        Method::GET,
        "/manage/projects/%FF",
        Some(&auth),
        None,
        Bytes::new(),
    )
    .await
    .assert_error(StatusCode::BAD_REQUEST, "invalid_id");
}

#[tokio::test]
async fn audit_log_is_written_filtered_and_paginated() {
    let h = Harness::start(Backend::Sqlite).await;
    let project = h.project("audited").await;
    h.send(
        Method::GET,
        "/manage/projects",
        Some("Bearer wrong"),
        None,
        Bytes::new(),
    )
    .await;
    h.call(Method::GET, "/manage/projects/missing", None).await;
    // Three authorised listings plus the denied one above: four `project.list` events.
    for _ in 0..3 {
        h.call(Method::GET, "/manage/projects", None).await;
    }
    h.audit.flush().await;

    let created = h
        .call(Method::GET, "/manage/audit?action=project.create", None)
        .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.text());
    let created = created.json();
    assert_eq!(created["pagination"]["total_count"], 1);
    let event = &created["events"][0];
    assert_eq!(event["actor"], "management_api");
    assert_eq!(event["outcome"], "success");
    assert_eq!(event["project_id"], project.as_str());
    assert_eq!(event["method"], "POST");
    assert_eq!(event["path"], "/manage/projects");
    assert_eq!(event["client_ip"], "127.0.0.1");
    assert!(event["request_id"].is_string());

    let denied = h
        .call(Method::GET, "/manage/audit?outcome=denied", None)
        .await
        .json();
    assert_eq!(denied["pagination"]["total_count"], 1);
    assert_eq!(denied["events"][0]["actor"], "anonymous");
    assert_eq!(denied["events"][0]["reason"], "invalid management token");
    let failed = h
        .call(Method::GET, "/manage/audit?outcome=failure", None)
        .await
        .json();
    assert_eq!(failed["events"][0]["reason"], "project not found");
    assert_eq!(failed["events"][0]["project_id"], "missing");

    let page = h
        .call(
            Method::GET,
            "/manage/audit?action=project.list&page=2&page_size=3",
            None,
        )
        .await
        .json();
    assert_eq!(page["events"].as_array().unwrap().len(), 1);
    assert_eq!(
        page["pagination"],
        json!({"page": 2, "page_size": 3, "total_count": 4, "total_pages": 2, "has_next": false, "has_prev": true})
    );

    let id = event["id"].as_str().unwrap();
    let one = h
        .call(Method::GET, &format!("/manage/audit/{id}"), None)
        .await;
    assert_eq!(one.json()["action"], "project.create");
    h.call(Method::GET, "/manage/audit/not-a-uuid", None)
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_id");
    h.call(
        Method::GET,
        "/manage/audit/0191a0b0-0000-7000-8000-000000000000",
        None,
    )
    .await
    .assert_error(StatusCode::NOT_FOUND, "not_found");
    for bad in [
        "page_size=101",
        "page_size=0",
        "page=abc",
        "outcome=bogus",
        "start_time=yesterday",
    ] {
        h.call(Method::GET, &format!("/manage/audit?{bad}"), None)
            .await
            .assert_error(StatusCode::BAD_REQUEST, "validation_error");
    }
    h.call(Method::GET, "/manage/audit?unknown=1", None)
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_query");

    h.audit.flush().await;
    let stored = h
        .store
        .list_audit(&AuditQuery {
            outcome: Some(AuditOutcome::Denied),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(stored.total_count, 1);
    let file = std::fs::read_to_string(&h.audit_file).unwrap();
    let lines: Vec<serde_json::Value> = file
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let total = h
        .store
        .list_audit(&AuditQuery::default())
        .await
        .unwrap()
        .total_count;
    assert_eq!(
        i64::try_from(lines.len()).unwrap(),
        total,
        "file and database hold the same events"
    );
    assert_eq!(lines[0]["action"], "project.create");
    assert_eq!(lines[0]["result"], "success");
    assert_eq!(lines[0]["details"]["http_method"], "POST");
    assert!(!file.contains(MANAGEMENT_TOKEN) && !file.contains(PROVIDER_KEY));
}

/// Captures log output of the tests on this thread.
#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn secrets_never_reach_the_logs() {
    let logs = LogBuffer::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let h = Harness::start(Backend::Sqlite).await;
    let project = h.project("logged").await;
    let token = h
        .call(
            Method::POST,
            "/manage/tokens",
            Some(json!({"project_id": project, "duration_minutes": 5})),
        )
        .await;
    let plaintext = token.json()["token"].as_str().unwrap().to_owned();
    h.send(
        Method::GET,
        "/manage/projects",
        Some(&format!("Bearer {MANAGEMENT_TOKEN}x")),
        None,
        Bytes::new(),
    )
    .await;
    h.call(
        Method::PATCH,
        &format!("/manage/projects/{project}"),
        Some(json!({"api_key": PROVIDER_KEY, "is_active": false})),
    )
    .await;
    h.audit.flush().await;

    let captured = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        !captured.is_empty(),
        "the subscriber captured the test's logs"
    );
    for secret in [MANAGEMENT_TOKEN, PROVIDER_KEY, plaintext.as_str()] {
        assert!(!captured.contains(secret), "a secret reached the logs");
    }
}

#[tokio::test]
async fn happy_path_on_postgres() {
    let h = Harness::start(Backend::Postgres).await;
    let project = h.project("pg").await;
    assert_eq!(
        h.call(Method::GET, &format!("/manage/projects/{project}"), None)
            .await
            .json()["api_key"],
        "sk-provi...cdef"
    );
    let token = h
        .call(
            Method::POST,
            "/manage/tokens",
            Some(json!({"project_id": project, "duration_minutes": 5, "max_requests": 2})),
        )
        .await;
    assert_eq!(token.status, StatusCode::CREATED);
    let id = token.json()["id"].as_str().unwrap().to_owned();
    let listed = h
        .call(
            Method::GET,
            &format!("/manage/tokens?projectId={project}"),
            None,
        )
        .await
        .json();
    assert_eq!(listed[0]["id"], id.as_str());
    assert_eq!(
        h.call(
            Method::PATCH,
            &format!("/manage/tokens/{id}"),
            Some(json!({"max_requests": 9}))
        )
        .await
        .json()["max_requests"],
        9
    );
    assert_eq!(
        h.call(Method::DELETE, &format!("/manage/tokens/{id}"), None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    let revoke = h
        .call(
            Method::POST,
            &format!("/manage/projects/{project}/tokens/revoke"),
            None,
        )
        .await
        .json();
    assert_eq!(
        revoke,
        json!({"revoked_count": 0, "already_revoked_count": 1, "total_tokens": 1})
    );
    h.call(
        Method::POST,
        "/manage/projects",
        Some(json!({"name": "pg", "api_key": "sk-another-key-123456"})),
    )
    .await
    .assert_error(StatusCode::CONFLICT, "conflict");
    h.audit.flush().await;
    let audit = h
        .call(
            Method::GET,
            "/manage/audit?actor=management_api&page_size=100",
            None,
        )
        .await
        .json();
    assert!(
        audit["pagination"]["total_count"].as_i64().unwrap() >= 7,
        "{audit}"
    );
}

#[tokio::test]
async fn encrypted_provider_keys_are_shown_obfuscated_from_their_plaintext() {
    let key = EncryptionKey::from_base64("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").unwrap();
    let h = Harness::start_with_key(Backend::Sqlite, Some(key)).await;
    let id = h.project("encrypted").await;
    let stored = h.store.get_project(&id).await.unwrap().unwrap();
    assert!(stored.api_key.starts_with("enc:v1:"), "encrypted at rest");
    let one = h
        .call(Method::GET, &format!("/manage/projects/{id}"), None)
        .await;
    assert_eq!(one.json()["api_key"], "sk-provi...cdef");
    let listed = h.call(Method::GET, "/manage/projects", None).await;
    assert_eq!(listed.json()[0]["api_key"], "sk-provi...cdef");
    let renamed = h
        .call(
            Method::PATCH,
            &format!("/manage/projects/{id}"),
            Some(json!({"name": "renamed"})),
        )
        .await;
    assert_eq!(renamed.json()["api_key"], "sk-provi...cdef");
    for reply in [&one, &listed, &renamed] {
        assert!(!reply.text().contains("enc:v1:") && !reply.text().contains(PROVIDER_KEY));
    }
}

#[tokio::test]
async fn a_database_failure_is_a_generic_500_that_reveals_nothing() {
    let h = Harness::start(Backend::Sqlite).await;
    let project = h.project("broken-database").await;
    let database = h._dir.0.join("db").join("proxy.db");
    let mut raw = sqlx::SqliteConnection::connect(&format!("sqlite://{}", database.display()))
        .await
        .unwrap();
    sqlx::query("DROP TABLE tokens")
        .execute(&mut raw)
        .await
        .unwrap();

    let listed = h.call(Method::GET, "/manage/tokens", None).await;
    let created = h
        .call(
            Method::POST,
            "/manage/tokens",
            Some(json!({"project_id": project, "duration_minutes": 5})),
        )
        .await;
    for reply in [&listed, &created] {
        reply.assert_error(StatusCode::INTERNAL_SERVER_ERROR, "internal_error");
        assert_eq!(reply.json()["error"], "internal server error");
        let text = reply.text().to_lowercase();
        for detail in ["table", "sqlite", "sql", PROVIDER_KEY] {
            assert!(
                !text.contains(&detail.to_lowercase()),
                "{detail} leaked: {text}"
            );
        }
    }
    // What does not touch the broken table keeps working.
    let fetched = h
        .call(Method::GET, &format!("/manage/projects/{project}"), None)
        .await;
    assert_eq!(fetched.status, StatusCode::OK, "{}", fetched.text());
}

/// The audit record of the one `project.list` call made with `forwarded` headers.
async fn audited_client_ip(h: &Harness, forwarded: &[(&str, &str)]) -> serde_json::Value {
    let mut request = Request::builder()
        .method(Method::GET)
        .uri(format!("{}/manage/projects", h.base))
        .header(header::AUTHORIZATION, format!("Bearer {MANAGEMENT_TOKEN}"));
    for (name, value) in forwarded {
        request = request.header(*name, *value);
    }
    let reply = h
        .client
        .request(request.body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::OK);
    h.audit.flush().await;
    let listed = h
        .call(Method::GET, "/manage/audit?action=project.list", None)
        .await
        .json();
    listed["events"][0]["client_ip"].clone()
}

#[tokio::test]
async fn forwarding_headers_of_an_untrusted_peer_do_not_name_the_audited_client() {
    let h = Harness::start(Backend::Sqlite).await;
    let forged = [
        ("x-forwarded-for", "203.0.113.9"),
        ("x-real-ip", "203.0.113.8"),
    ];
    assert_eq!(audited_client_ip(&h, &forged).await, "127.0.0.1");
}

#[tokio::test]
async fn a_trusted_proxy_names_the_client_and_cannot_be_bypassed_by_a_forged_entry() {
    let h = Harness::start_trusting("127.0.0.0/8").await;
    // The client forged the left entry; the trusted proxy appended the address it saw.
    let forwarded = [("x-forwarded-for", "10.10.10.10, 203.0.113.9")];
    assert_eq!(audited_client_ip(&h, &forwarded).await, "203.0.113.9");
}

#[tokio::test]
async fn unauthenticated_floods_write_a_bounded_number_of_audit_records() {
    let h = Harness::start(Backend::Sqlite).await;
    for i in 0..300 {
        let auth = format!("Bearer wrong-{i}");
        let reply = h
            .send(
                Method::GET,
                "/manage/projects",
                Some(&auth),
                None,
                Bytes::new(),
            )
            .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    }
    h.audit.flush().await;
    let denied = h
        .call(Method::GET, "/manage/audit?outcome=denied", None)
        .await
        .json();
    let count = denied["pagination"]["total_count"]
        .as_u64()
        .unwrap_or(u64::MAX);
    // One window, or two if the run straddles a window boundary (plus its summary).
    let bound = 2 * u64::from(llm_proxy::manage::FAILED_AUTH_RECORDED) + 1;
    assert!(count >= 20 && count <= bound, "{count} denied records");
}

#[tokio::test]
async fn the_bare_management_prefix_asks_for_authentication_first() {
    let h = Harness::start(Backend::Sqlite).await;
    for path in ["/manage", "/manage/", "/manage/nothing/here"] {
        let anonymous = h.send(Method::GET, path, None, None, Bytes::new()).await;
        assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(anonymous.json()["code"], "unauthorized");
        let authorised = h.call(Method::GET, path, None).await;
        assert_eq!(authorised.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(authorised.json()["code"], "not_found");
    }
}
