//! One behaviour suite run against both backends: SQLite in a temporary directory and PostgreSQL in
//! a fresh database per test (created from `LLM_PROXY_TEST_DATABASE_URL`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers fail loudly

use std::path::PathBuf;
use std::sync::Arc;

use base64::Engine as _;
use chrono::{Duration, Utc};
use llm_proxy_store::{
    Admission, AuditEvent, AuditOutcome, AuditQuery, CryptoError, Driver, EncryptionKey,
    NewProject, NewToken, ProjectRateLimits, ProjectUpdate, ProviderKey, RateLimit, Store,
    StoreConfig, StoreError, TokenRecord, TokenUpdate, UsageDelta, connect, generate_token,
    hash_token, migrate_up, migration_status,
};
use sqlx::Connection as _;

const PG_URL_VAR: &str = "LLM_PROXY_TEST_DATABASE_URL";

#[derive(Clone, Copy, Debug)]
enum Backend {
    Sqlite,
    Postgres,
}

/// Removes its directory when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let path = std::env::temp_dir().join(format!("llm-proxy-store-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A database for one test: its configuration and the directory to clean up.
struct TestDb {
    config: StoreConfig,
    _dir: Option<TempDir>,
}

impl TestDb {
    async fn new(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => {
                let dir = TempDir::new();
                let path = dir.0.join("nested").join("llm-proxy.db");
                Self {
                    config: StoreConfig::new(Driver::Sqlite { path }),
                    _dir: Some(dir),
                }
            }
            Backend::Postgres => Self {
                config: StoreConfig::new(Driver::Postgres {
                    url: fresh_pg_database().await,
                }),
                _dir: None,
            },
        }
    }

    fn with_key(mut self, key: Option<EncryptionKey>) -> Self {
        self.config.encryption_key = key;
        self
    }

    async fn open(&self) -> Arc<dyn Store> {
        connect(&self.config).await.unwrap()
    }
}

/// Creates an empty database on the test server and returns its URL.
async fn fresh_pg_database() -> String {
    let Ok(admin_url) = std::env::var(PG_URL_VAR) else {
        panic!(
            "{PG_URL_VAR} is not set: run `make test` or \
             `scripts/test-services.sh cargo nextest run -p llm-proxy-store`"
        );
    };
    let name = format!("store_{}", uuid::Uuid::new_v4().simple());
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

fn key(byte: u8) -> EncryptionKey {
    let encoded = base64::engine::general_purpose::STANDARD.encode([byte; 32]);
    EncryptionKey::from_base64(&encoded).unwrap()
}

async fn project(store: &dyn Store, name: &str) -> llm_proxy_store::Project {
    store
        .create_project(NewProject {
            name: name.into(),
            api_key: ProviderKey::new("sk-provider-0123456789"),
            rate_limits: Default::default(),
        })
        .await
        .unwrap()
}

/// Creates a token and returns its plaintext and record.
async fn token(
    store: &dyn Store,
    project_id: &str,
    expires_in: Option<Duration>,
    max_requests: Option<i64>,
) -> (String, TokenRecord) {
    let plaintext = generate_token().unwrap();
    let id = uuid::Uuid::now_v7();
    let record = store
        .create_token(NewToken {
            id,
            token_hash: hash_token(&plaintext),
            project_id: project_id.into(),
            expires_at: expires_in.map(|d| llm_proxy_store::now() + d),
            max_requests,
        })
        .await
        .unwrap();
    (plaintext, record)
}

mod cases {
    use super::*;

    pub async fn projects_crud_and_unique_name(backend: Backend) {
        let db = TestDb::new(backend).await;
        let store = db.open().await;
        store.ping().await.unwrap();
        let alpha = project(&*store, "alpha").await;
        assert!(alpha.is_active);
        assert_eq!(
            uuid::Uuid::parse_str(&alpha.id).unwrap().get_version_num(),
            4
        );
        assert_eq!(alpha.created_at, alpha.updated_at);
        let beta = project(&*store, "beta").await;

        let duplicate = store
            .create_project(NewProject {
                name: "alpha".into(),
                api_key: ProviderKey::new("other"),
                rate_limits: Default::default(),
            })
            .await;
        assert!(
            matches!(duplicate, Err(StoreError::Conflict(_))),
            "{duplicate:?}"
        );

        let listed = store.list_projects().await.unwrap();
        assert_eq!(
            listed.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
            ["alpha", "beta"]
        );
        assert_eq!(
            store.get_project(&alpha.id).await.unwrap(),
            Some(alpha.clone())
        );
        assert_eq!(store.get_project("missing").await.unwrap(), None);

        let renamed = store
            .update_project(
                &alpha.id,
                ProjectUpdate {
                    name: Some("gamma".into()),
                    ..Default::default()
                },
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(renamed.project.name, "gamma");
        assert_eq!(renamed.project.api_key, alpha.api_key);
        assert!(renamed.project.updated_at >= alpha.updated_at);
        let clash = store
            .update_project(
                &beta.id,
                ProjectUpdate {
                    name: Some("gamma".into()),
                    ..Default::default()
                },
            )
            .await;
        assert!(matches!(clash, Err(StoreError::Conflict(_))), "{clash:?}");
        let missing = store
            .update_project("missing", ProjectUpdate::default())
            .await
            .unwrap();
        assert!(missing.is_none());
    }

    pub async fn deactivation_revokes_tokens_and_reactivation_clears_it(backend: Backend) {
        let db = TestDb::new(backend).await;
        let store = db.open().await;
        let p = project(&*store, "p").await;
        let (_, a) = token(&*store, &p.id, None, None).await;
        let (_, b) = token(&*store, &p.id, None, Some(3)).await;
        store.revoke_token(b.id).await.unwrap();

        let updated = store
            .update_project(
                &p.id,
                ProjectUpdate {
                    is_active: Some(false),
                    revoke_tokens: true,
                    ..Default::default()
                },
            )
            .await
            .unwrap()
            .unwrap();
        assert!(!updated.project.is_active);
        let deactivated_at = updated.project.deactivated_at.unwrap();
        assert_eq!(updated.revoked_tokens, vec![a.token_hash.clone()]);
        assert!(!store.get_token(a.id).await.unwrap().unwrap().is_active);

        let again = store
            .update_project(
                &p.id,
                ProjectUpdate {
                    is_active: Some(false),
                    ..Default::default()
                },
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            again.project.deactivated_at,
            Some(deactivated_at),
            "first deactivation time kept"
        );

        let reactivated = store
            .update_project(
                &p.id,
                ProjectUpdate {
                    is_active: Some(true),
                    ..Default::default()
                },
            )
            .await
            .unwrap()
            .unwrap();
        assert!(reactivated.project.is_active);
        assert_eq!(reactivated.project.deactivated_at, None);
        assert!(
            !store.get_token(a.id).await.unwrap().unwrap().is_active,
            "tokens stay revoked"
        );
    }

    pub async fn provider_keys_are_encrypted_at_rest(backend: Backend) {
        let db = TestDb::new(backend).await.with_key(Some(key(1)));
        let store = db.open().await;
        let p = project(&*store, "secret").await;
        assert!(p.api_key.starts_with("enc:v1:"));
        assert!(!p.api_key.contains("sk-provider-0123456789"));
        let access = store.project_access(&p.id).await.unwrap().unwrap();
        assert_eq!(access.api_key.expose(), "sk-provider-0123456789");
        assert!(access.is_active);
        assert_eq!(format!("{:?}", access.api_key), "[redacted]");
        assert!(store.project_access("missing").await.unwrap().is_none());

        let patched = store
            .update_project(
                &p.id,
                ProjectUpdate {
                    api_key: Some(ProviderKey::new("sk-new-key-abcdefgh")),
                    ..Default::default()
                },
            )
            .await
            .unwrap()
            .unwrap();
        assert!(patched.project.api_key.starts_with("enc:v1:"));
        let access = store.project_access(&p.id).await.unwrap().unwrap();
        assert_eq!(access.api_key.expose(), "sk-new-key-abcdefgh");

        let wrong = TestDb {
            config: StoreConfig {
                encryption_key: Some(key(2)),
                ..db.config.clone()
            },
            _dir: None,
        };
        let error = wrong.open().await.project_access(&p.id).await.unwrap_err();
        assert!(
            matches!(error, StoreError::Crypto(CryptoError::WrongKey)),
            "{error:?}"
        );
        let keyless = TestDb {
            config: StoreConfig {
                encryption_key: None,
                ..db.config.clone()
            },
            _dir: None,
        };
        let error = keyless
            .open()
            .await
            .project_access(&p.id)
            .await
            .unwrap_err();
        assert!(
            matches!(error, StoreError::Crypto(CryptoError::KeyMissing)),
            "{error:?}"
        );
    }

    pub async fn legacy_plaintext_keys_still_work_with_a_key(backend: Backend) {
        let db = TestDb::new(backend).await;
        let p = project(&*db.open().await, "legacy").await;
        assert_eq!(p.api_key, "sk-provider-0123456789");
        let keyed = TestDb {
            config: StoreConfig {
                encryption_key: Some(key(3)),
                ..db.config.clone()
            },
            _dir: None,
        };
        let access = keyed
            .open()
            .await
            .project_access(&p.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(access.api_key.expose(), "sk-provider-0123456789");
    }

    pub async fn token_lifecycle(backend: Backend) {
        let db = TestDb::new(backend).await;
        let store = db.open().await;
        let p = project(&*store, "p").await;
        let q = project(&*store, "q").await;
        let (plaintext, t) = token(&*store, &p.id, Some(Duration::minutes(5)), Some(10)).await;
        let (_, u) = token(&*store, &q.id, None, None).await;
        assert_eq!(t.token_hash, hash_token(&plaintext));
        assert_eq!(
            (t.request_count, t.cache_hit_count, t.max_requests),
            (0, 0, Some(10))
        );
        assert!(t.is_active && t.last_used_at.is_none() && t.is_limited() && !u.is_limited());

        assert_eq!(
            store.token_by_hash(&t.token_hash).await.unwrap(),
            Some(t.clone())
        );
        assert_eq!(
            store
                .token_by_hash(&hash_token("sk-unknown"))
                .await
                .unwrap(),
            None
        );
        assert_eq!(store.get_token(t.id).await.unwrap(), Some(t.clone()));
        assert_eq!(store.get_token(uuid::Uuid::now_v7()).await.unwrap(), None);
        assert_eq!(store.list_tokens(None).await.unwrap().len(), 2);
        assert_eq!(
            store.list_tokens(Some(&p.id)).await.unwrap(),
            vec![t.clone()]
        );
        assert!(store.list_tokens(Some("missing")).await.unwrap().is_empty());

        let duplicate = store
            .create_token(NewToken {
                id: uuid::Uuid::now_v7(),
                token_hash: t.token_hash.clone(),
                project_id: p.id.clone(),
                expires_at: None,
                max_requests: None,
            })
            .await;
        assert!(
            matches!(duplicate, Err(StoreError::Conflict(_))),
            "{duplicate:?}"
        );

        let unlimited = store
            .update_token(
                t.id,
                TokenUpdate {
                    max_requests: Some(None),
                    ..Default::default()
                },
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(unlimited.max_requests, None);
        assert!(unlimited.is_active);
        let unchanged = store
            .update_token(t.id, TokenUpdate::default())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(unchanged, unlimited);
        assert!(
            store
                .update_token(uuid::Uuid::now_v7(), TokenUpdate::default())
                .await
                .unwrap()
                .is_none()
        );

        let revoked = store.revoke_token(t.id).await.unwrap().unwrap();
        assert!(!revoked.is_active);
        let revoked_at = revoked.deactivated_at.unwrap();
        let again = store.revoke_token(t.id).await.unwrap().unwrap();
        assert_eq!(
            again.deactivated_at,
            Some(revoked_at),
            "revocation is idempotent"
        );
        assert!(
            store
                .revoke_token(uuid::Uuid::now_v7())
                .await
                .unwrap()
                .is_none()
        );

        let reactivated = store
            .update_token(
                t.id,
                TokenUpdate {
                    is_active: Some(true),
                    max_requests: Some(Some(4)),
                },
            )
            .await
            .unwrap()
            .unwrap();
        assert!(reactivated.is_active);
        assert_eq!(
            (reactivated.deactivated_at, reactivated.max_requests),
            (None, Some(4))
        );
    }

    pub async fn bulk_revocation_counts(backend: Backend) {
        let db = TestDb::new(backend).await;
        let store = db.open().await;
        let p = project(&*store, "p").await;
        let (_, a) = token(&*store, &p.id, None, None).await;
        let (_, b) = token(&*store, &p.id, None, None).await;
        let (_, c) = token(&*store, &p.id, None, None).await;
        store.revoke_token(c.id).await.unwrap();
        let summary = store.revoke_project_tokens(&p.id).await.unwrap().unwrap();
        let mut revoked = summary.revoked.clone();
        revoked.sort();
        let mut expected = vec![a.token_hash, b.token_hash];
        expected.sort();
        assert_eq!(
            (revoked, summary.already_revoked, summary.total),
            (expected, 1, 3)
        );
        let second = store.revoke_project_tokens(&p.id).await.unwrap().unwrap();
        assert_eq!(
            (second.revoked.len(), second.already_revoked, second.total),
            (0, 3, 3)
        );
        assert!(
            store
                .revoke_project_tokens("missing")
                .await
                .unwrap()
                .is_none()
        );
        let empty = project(&*store, "empty").await;
        let none = store
            .revoke_project_tokens(&empty.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (none.revoked.len(), none.already_revoked, none.total),
            (0, 0, 0)
        );
    }

    pub async fn admission_is_counted_and_classified(backend: Backend) {
        let db = TestDb::new(backend).await;
        let store = db.open().await;
        let p = project(&*store, "p").await;
        let now = llm_proxy_store::now();

        assert_eq!(
            store.admit(&hash_token("sk-unknown"), now).await.unwrap(),
            Admission::NotFound
        );

        let (_, limited) = token(&*store, &p.id, Some(Duration::hours(1)), Some(2)).await;
        let Admission::Admitted(first) = store.admit(&limited.token_hash, now).await.unwrap()
        else {
            panic!("first request must be admitted");
        };
        assert_eq!((first.request_count, first.last_used_at), (1, Some(now)));
        assert!(matches!(
            store.admit(&limited.token_hash, now).await.unwrap(),
            Admission::Admitted(_)
        ));
        assert_eq!(
            store.admit(&limited.token_hash, now).await.unwrap(),
            Admission::QuotaExceeded
        );
        assert_eq!(
            store
                .get_token(limited.id)
                .await
                .unwrap()
                .unwrap()
                .request_count,
            2
        );

        let (_, zero_is_unlimited) = token(&*store, &p.id, None, Some(0)).await;
        for _ in 0..3 {
            assert!(matches!(
                store
                    .admit(&zero_is_unlimited.token_hash, now)
                    .await
                    .unwrap(),
                Admission::Admitted(_)
            ));
        }

        let (_, expiring) = token(&*store, &p.id, Some(Duration::minutes(1)), None).await;
        let later = now + Duration::minutes(2);
        assert_eq!(
            store.admit(&expiring.token_hash, later).await.unwrap(),
            Admission::Expired
        );

        let (_, revoked) = token(&*store, &p.id, None, None).await;
        store.revoke_token(revoked.id).await.unwrap();
        assert_eq!(
            store.admit(&revoked.token_hash, now).await.unwrap(),
            Admission::Inactive
        );

        let (_, of_inactive) = token(&*store, &p.id, None, None).await;
        store
            .update_project(
                &p.id,
                ProjectUpdate {
                    is_active: Some(false),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(
            store.admit(&of_inactive.token_hash, now).await.unwrap(),
            Admission::ProjectInactive
        );
        assert_eq!(
            store
                .get_token(of_inactive.id)
                .await
                .unwrap()
                .unwrap()
                .request_count,
            0
        );
    }

    pub async fn quota_is_atomic_under_concurrency(backend: Backend) {
        let db = TestDb::new(backend).await;
        let store = db.open().await;
        let p = project(&*store, "p").await;
        let (_, t) = token(&*store, &p.id, None, Some(7)).await;
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..50 {
            let store = Arc::clone(&store);
            let hash = t.token_hash.clone();
            tasks.spawn(async move { store.admit(&hash, Utc::now()).await });
        }
        let mut admitted = 0;
        let mut refused = 0;
        while let Some(result) = tasks.join_next().await {
            match result.unwrap().unwrap() {
                Admission::Admitted(_) => admitted += 1,
                Admission::QuotaExceeded => refused += 1,
                other => panic!("unexpected admission {other:?}"),
            }
        }
        assert_eq!((admitted, refused), (7, 43));
        assert_eq!(
            store.get_token(t.id).await.unwrap().unwrap().request_count,
            7
        );
    }

    /// Reservations, admissions, usage batches, audit inserts and token creation at once, more of
    /// them than the pool has connections: every write lands exactly once (on SQLite they queue for
    /// the one writer connection; a write that waited for a second one while holding it would
    /// deadlock and fail with the acquire timeout).
    pub async fn concurrent_writes_all_land(backend: Backend) {
        let db = TestDb::new(backend).await;
        let store = db.open().await;
        let p = project(&*store, "p").await;
        let (_, limited) = token(&*store, &p.id, None, Some(1_000)).await;
        let (_, unlimited) = token(&*store, &p.id, None, None).await;
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..40 {
            let store = Arc::clone(&store);
            let limited = limited.token_hash.clone();
            let unlimited = unlimited.token_hash.clone();
            let project_id = p.id.clone();
            tasks.spawn(async move {
                let now = Utc::now();
                let reserved = store.reserve(&limited, now, 3).await.unwrap();
                assert!(reserved.is_some(), "reservation {i} refused");
                let admitted = store.admit(&limited, now).await.unwrap();
                assert!(matches!(admitted, Admission::Admitted(_)), "{admitted:?}");
                let usage = UsageDelta {
                    hash: unlimited,
                    requests: 2,
                    cache_hits: 1,
                    last_used_at: now,
                };
                store.record_usage(&[usage]).await.unwrap();
                let event = AuditEvent::new("token.create", "test", AuditOutcome::Success);
                store.insert_audit(&event).await.unwrap();
                token(&*store, &project_id, None, None).await;
            });
        }
        while let Some(result) = tasks.join_next().await {
            result.unwrap();
        }
        let count = |id| {
            let store = Arc::clone(&store);
            async move { store.get_token(id).await.unwrap().unwrap() }
        };
        assert_eq!(count(limited.id).await.request_count, 40 * 4);
        let unlimited = count(unlimited.id).await;
        assert_eq!(
            (unlimited.request_count, unlimited.cache_hit_count),
            (80, 40)
        );
        assert_eq!(store.list_tokens(Some(&p.id)).await.unwrap().len(), 42);
        let audit = store.list_audit(&AuditQuery::default()).await.unwrap();
        assert_eq!(audit.total_count, 40);
    }

    pub async fn quota_reservations_never_over_admit(backend: Backend) {
        let db = TestDb::new(backend).await;
        let store = db.open().await;
        // Quota leases on a single writer last longer (see llm-proxy's tokens module).
        assert_eq!(store.single_writer(), matches!(backend, Backend::Sqlite));
        let p = project(&*store, "p").await;
        let (_, t) = token(&*store, &p.id, None, Some(10)).await;
        let count = |store: Arc<dyn Store>| async move {
            store.get_token(t.id).await.unwrap().unwrap().request_count
        };
        let now = Utc::now();
        let first = store.reserve(&t.token_hash, now, 4).await.unwrap().unwrap();
        assert_eq!(first.request_count, 4);
        assert!(
            store
                .reserve(&t.token_hash, now, 4)
                .await
                .unwrap()
                .is_some()
        );
        // 8 + 4 > 10: the whole chunk is refused and nothing is counted.
        assert_eq!(store.reserve(&t.token_hash, now, 4).await.unwrap(), None);
        assert_eq!(count(store.clone()).await, 8);
        assert!(
            store
                .reserve(&t.token_hash, now, 2)
                .await
                .unwrap()
                .is_some()
        );
        assert_eq!(
            store.admit(&t.token_hash, now).await.unwrap(),
            Admission::QuotaExceeded
        );
        // Unused reservations come back as negative usage; the count never goes below zero.
        let give_back = |requests| UsageDelta {
            hash: t.token_hash.clone(),
            requests,
            cache_hits: 0,
            last_used_at: now,
        };
        store.record_usage(&[give_back(-3)]).await.unwrap();
        assert_eq!(count(store.clone()).await, 7);
        store.record_usage(&[give_back(-100)]).await.unwrap();
        assert_eq!(count(store.clone()).await, 0);

        // Concurrent chunks of 3 on a quota of 10: three fit, never a fourth.
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..20 {
            let store = Arc::clone(&store);
            let hash = t.token_hash.clone();
            tasks.spawn(async move { store.reserve(&hash, Utc::now(), 3).await });
        }
        let mut granted = 0;
        while let Some(result) = tasks.join_next().await {
            granted += i32::from(result.unwrap().unwrap().is_some());
        }
        assert_eq!(granted, 3);
        assert_eq!(count(store.clone()).await, 9);
        // A reservation of 0 (a lease renewal) re-checks the token and counts nothing.
        let renewed = store.reserve(&t.token_hash, now, 0).await.unwrap().unwrap();
        assert_eq!(renewed.request_count, 9);
        assert_eq!(count(store.clone()).await, 9);

        // Nothing is reserved for unlimited, revoked, expired tokens or inactive projects.
        let (_, unlimited) = token(&*store, &p.id, None, None).await;
        assert_eq!(
            store.reserve(&unlimited.token_hash, now, 2).await.unwrap(),
            None
        );
        let (_, expiring) = token(&*store, &p.id, Some(Duration::seconds(1)), Some(5)).await;
        let later = Utc::now() + Duration::seconds(5);
        assert_eq!(
            store.reserve(&expiring.token_hash, later, 2).await.unwrap(),
            None
        );
        let (_, revoked) = token(&*store, &p.id, None, Some(5)).await;
        store.revoke_token(revoked.id).await.unwrap();
        assert_eq!(
            store.reserve(&revoked.token_hash, now, 2).await.unwrap(),
            None
        );
        assert_eq!(
            store.reserve(&revoked.token_hash, now, 0).await.unwrap(),
            None
        );
        store
            .update_project(
                &p.id,
                ProjectUpdate {
                    is_active: Some(false),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(store.reserve(&t.token_hash, now, 1).await.unwrap(), None);
        assert_eq!(
            store
                .reserve(&hash_token("sk-unknown"), now, 1)
                .await
                .unwrap(),
            None
        );
    }

    pub async fn usage_batches_add_up(backend: Backend) {
        let db = TestDb::new(backend).await;
        let store = db.open().await;
        let p = project(&*store, "p").await;
        let (_, t) = token(&*store, &p.id, None, None).await;
        let t1 = llm_proxy_store::now();
        let t0 = t1 - Duration::seconds(30);
        store.record_usage(&[]).await.unwrap();
        store
            .record_usage(&[
                UsageDelta {
                    hash: t.token_hash.clone(),
                    requests: 3,
                    cache_hits: 0,
                    last_used_at: t1,
                },
                UsageDelta {
                    hash: t.token_hash.clone(),
                    requests: 2,
                    cache_hits: 4,
                    last_used_at: t0,
                },
                UsageDelta {
                    hash: hash_token("sk-unknown"),
                    requests: 1,
                    cache_hits: 1,
                    last_used_at: t1,
                },
            ])
            .await
            .unwrap();
        let after = store.get_token(t.id).await.unwrap().unwrap();
        assert_eq!((after.request_count, after.cache_hit_count), (5, 4));
        assert_eq!(
            after.last_used_at,
            Some(t1),
            "last_used_at never moves backwards"
        );
        let t2 = t1 + Duration::seconds(5);
        store
            .record_usage(&[UsageDelta {
                hash: t.token_hash.clone(),
                requests: 0,
                cache_hits: 2,
                last_used_at: t2,
            }])
            .await
            .unwrap();
        let after = store.get_token(t.id).await.unwrap().unwrap();
        assert_eq!(
            (after.cache_hit_count, after.last_used_at),
            (6, Some(t1)),
            "cache hits are not uses"
        );
    }

    pub async fn audit_filters_and_pagination(backend: Backend) {
        let db = TestDb::new(backend).await;
        let store = db.open().await;
        let base = llm_proxy_store::now() - Duration::hours(1);
        let mut inserted = Vec::new();
        for i in 0..25 {
            let outcome = if i % 5 == 0 {
                AuditOutcome::Denied
            } else {
                AuditOutcome::Success
            };
            let action = if i % 2 == 0 {
                "token.create"
            } else {
                "project.update"
            };
            let mut event = AuditEvent::new(action, "management_api", outcome);
            event.timestamp = base + Duration::minutes(i);
            event.project_id = Some(format!("project-{}", i % 3));
            event.request_id = Some(format!("req-{i}"));
            event.client_ip = Some("10.0.0.1".into());
            event.method = Some("POST".into());
            event.path = Some("/manage/tokens".into());
            event.metadata = Some(format!(r#"{{"note":"Entry_{i} 100%"}}"#));
            store.insert_audit(&event).await.unwrap();
            inserted.push(event);
        }

        let page1 = store
            .list_audit(&AuditQuery {
                page_size: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(page1.total_count, 25);
        assert_eq!(page1.events.len(), 10);
        assert_eq!(
            page1.events[0], inserted[24],
            "newest first, stored as inserted"
        );
        let page3 = store
            .list_audit(&AuditQuery {
                page: 3,
                page_size: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(page3.events.len(), 5);
        assert_eq!(page3.events[4], inserted[0]);
        let beyond = store
            .list_audit(&AuditQuery {
                page: 9,
                page_size: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!((beyond.events.len(), beyond.total_count), (0, 25));
        let defaults = store.list_audit(&AuditQuery::default()).await.unwrap();
        assert_eq!(defaults.events.len(), 20);
        let clamped = store
            .list_audit(&AuditQuery {
                page: 0,
                page_size: 1000,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(clamped.events.len(), 25);

        let denied = store
            .list_audit(&AuditQuery {
                outcome: Some(AuditOutcome::Denied),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(denied.total_count, 5);
        assert!(
            denied
                .events
                .iter()
                .all(|e| e.outcome == AuditOutcome::Denied)
        );
        let combined = AuditQuery {
            action: Some("token.create".into()),
            project_id: Some("project-0".into()),
            ..Default::default()
        };
        let combined = store.list_audit(&combined).await.unwrap();
        assert_eq!(combined.total_count, 5); // i in {0, 6, 12, 18, 24}
        let by_request = AuditQuery {
            request_id: Some("req-7".into()),
            ..Default::default()
        };
        assert_eq!(
            store.list_audit(&by_request).await.unwrap().events,
            vec![inserted[7].clone()]
        );

        let search = AuditQuery {
            search: Some("entry_1".into()),
            ..Default::default()
        };
        assert_eq!(
            store.list_audit(&search).await.unwrap().total_count,
            11,
            "case-insensitive substring: 1, 10..19"
        );
        let literal = AuditQuery {
            search: Some("entr_".into()),
            ..Default::default()
        };
        assert_eq!(
            store.list_audit(&literal).await.unwrap().total_count,
            0,
            "`_` is literal, not a wildcard"
        );
        let percent = AuditQuery {
            search: Some("0%".into()),
            ..Default::default()
        };
        assert_eq!(store.list_audit(&percent).await.unwrap().total_count, 25);

        let window = AuditQuery {
            start_time: Some(base + Duration::minutes(10)),
            end_time: Some(base + Duration::minutes(14)),
            ..Default::default()
        };
        let window = store.list_audit(&window).await.unwrap();
        assert_eq!(window.total_count, 5, "both bounds inclusive");

        assert_eq!(
            store.get_audit(inserted[3].id).await.unwrap(),
            Some(inserted[3].clone())
        );
        assert_eq!(store.get_audit(uuid::Uuid::now_v7()).await.unwrap(), None);
    }

    pub async fn project_rate_limits_round_trip(backend: Backend) {
        let db = TestDb::new(backend).await;
        let store = db.open().await;
        let plain = project(&*store, "no-limits").await;
        assert_eq!(plain.rate_limits, ProjectRateLimits::default());

        let per_token = RateLimit {
            requests: 5,
            window_seconds: 60,
        };
        let per_project = RateLimit {
            requests: 100,
            window_seconds: 86_400,
        };
        let limited = store
            .create_project(NewProject {
                name: "limited".into(),
                api_key: ProviderKey::new("sk-provider-0123456789"),
                rate_limits: ProjectRateLimits {
                    per_token: Some(per_token),
                    per_project: None,
                },
            })
            .await
            .unwrap();
        assert_eq!(limited.rate_limits.per_token, Some(per_token));
        assert_eq!(limited.rate_limits.per_project, None);
        assert_eq!(
            store.get_project(&limited.id).await.unwrap(),
            Some(limited.clone())
        );
        let access = store.project_access(&limited.id).await.unwrap().unwrap();
        assert_eq!(access.rate_limits, limited.rate_limits);

        // Setting one scope leaves the other as it is; other updates keep both.
        let both = store
            .update_project(
                &limited.id,
                ProjectUpdate {
                    per_project_limit: Some(Some(per_project)),
                    ..Default::default()
                },
            )
            .await
            .unwrap()
            .unwrap()
            .project;
        assert_eq!(
            both.rate_limits,
            ProjectRateLimits {
                per_token: Some(per_token),
                per_project: Some(per_project),
            }
        );
        let renamed = store
            .update_project(
                &limited.id,
                ProjectUpdate {
                    name: Some("limited-renamed".into()),
                    ..Default::default()
                },
            )
            .await
            .unwrap()
            .unwrap()
            .project;
        assert_eq!(renamed.rate_limits, both.rate_limits);

        // `Some(None)` clears a scope.
        let cleared = store
            .update_project(
                &limited.id,
                ProjectUpdate {
                    per_token_limit: Some(None),
                    ..Default::default()
                },
            )
            .await
            .unwrap()
            .unwrap()
            .project;
        assert_eq!(cleared.rate_limits.per_token, None);
        assert_eq!(cleared.rate_limits.per_project, Some(per_project));
        let listed = store.list_projects().await.unwrap();
        let listed = listed.iter().find(|p| p.id == limited.id).unwrap();
        assert_eq!(listed.rate_limits, cleared.rate_limits);
    }

    pub async fn migrations_are_reported_and_idempotent(backend: Backend) {
        let db = TestDb::new(backend).await;
        let before = migration_status(&db.config).await.unwrap();
        assert!(!before.is_empty());
        assert!(before.iter().all(|m| !m.applied), "{before:?}");
        migrate_up(&db.config).await.unwrap();
        migrate_up(&db.config).await.unwrap();
        let after = migration_status(&db.config).await.unwrap();
        assert!(after.iter().all(|m| m.applied), "{after:?}");
        assert_eq!(after[0].version, 1);
        assert_eq!(after[0].description, "initial schema");
        db.open().await.ping().await.unwrap();
    }

    pub async fn replicas_migrate_concurrently(backend: Backend) {
        let db = TestDb::new(backend).await;
        let config = db.config.clone();
        let mut starts = tokio::task::JoinSet::new();
        for _ in 0..4 {
            let config = config.clone();
            starts.spawn(async move { connect(&config).await.map(|_| ()) });
        }
        while let Some(result) = starts.join_next().await {
            result.unwrap().unwrap();
        }
        let status = migration_status(&config).await.unwrap();
        assert!(status.iter().all(|m| m.applied), "{status:?}");
    }
}

macro_rules! suite {
    ($backend:expr) => {
        use super::{Backend, cases};

        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn projects_crud_and_unique_name() {
            cases::projects_crud_and_unique_name($backend).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn deactivation_revokes_tokens_and_reactivation_clears_it() {
            cases::deactivation_revokes_tokens_and_reactivation_clears_it($backend).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn provider_keys_are_encrypted_at_rest() {
            cases::provider_keys_are_encrypted_at_rest($backend).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn legacy_plaintext_keys_still_work_with_a_key() {
            cases::legacy_plaintext_keys_still_work_with_a_key($backend).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn token_lifecycle() {
            cases::token_lifecycle($backend).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn bulk_revocation_counts() {
            cases::bulk_revocation_counts($backend).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn admission_is_counted_and_classified() {
            cases::admission_is_counted_and_classified($backend).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn quota_is_atomic_under_concurrency() {
            cases::quota_is_atomic_under_concurrency($backend).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn concurrent_writes_all_land() {
            cases::concurrent_writes_all_land($backend).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn quota_reservations_never_over_admit() {
            cases::quota_reservations_never_over_admit($backend).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn usage_batches_add_up() {
            cases::usage_batches_add_up($backend).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn audit_filters_and_pagination() {
            cases::audit_filters_and_pagination($backend).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn project_rate_limits_round_trip() {
            cases::project_rate_limits_round_trip($backend).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn migrations_are_reported_and_idempotent() {
            cases::migrations_are_reported_and_idempotent($backend).await;
        }
    };
}

mod sqlite {
    suite!(Backend::Sqlite);
}

mod postgres {
    suite!(Backend::Postgres);

    /// Replicas start together: sqlx's advisory lock serialises their migrations. (SQLite serves a
    /// single replica, so it has no such case.)
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn replicas_migrate_concurrently() {
        cases::replicas_migrate_concurrently(Backend::Postgres).await;
    }
}

#[tokio::test]
async fn connection_errors_never_reveal_the_database_password() {
    let unparsable = StoreConfig::new(Driver::Postgres {
        url: "postgres://user:hunter2@[::1".into(),
    });
    let error = connect(&unparsable).await.err().unwrap();
    assert!(matches!(error, StoreError::InvalidDatabaseUrl));
    assert!(!error.to_string().contains("hunter2"));
    assert!(!format!("{unparsable:?}").contains("hunter2"));

    let mut unreachable = StoreConfig::new(Driver::Postgres {
        url: "postgres://user:hunter2@127.0.0.1:1/db".into(),
    });
    unreachable.max_idle = 0;
    let error = connect(&unreachable).await.err().unwrap();
    assert!(matches!(error, StoreError::Connect(_)), "{error:?}");
    assert!(!error.to_string().contains("hunter2"));
    assert!(!format!("{error:?}").contains("hunter2"));
}

#[tokio::test]
async fn sqlite_reports_an_uncreatable_directory() {
    let dir = TempDir::new();
    let blocker = dir.0.join("file");
    std::fs::write(&blocker, b"not a directory").unwrap();
    let config = StoreConfig::new(Driver::Sqlite {
        path: blocker.join("sub").join("db.sqlite"),
    });
    let error = connect(&config).await.err().unwrap();
    assert!(matches!(error, StoreError::CreateDir { .. }), "{error:?}");
}
