//! The audit trail against a real SQLite store and a real file: events reach both, the file
//! directory is created, a full queue drops and counts instead of blocking, disabled records nothing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers fail loudly

use std::path::PathBuf;
use std::sync::Arc;

use llm_proxy::audit::{AUDIT_QUEUE_CAPACITY, Action, Actor, Audit, AuditError, event};
use llm_proxy::config::AuditConfig;
use llm_proxy_store::{AuditOutcome, AuditQuery, Driver, Store, StoreConfig, connect};

/// Removes its directory when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let path = std::env::temp_dir().join(format!("llm-proxy-audit-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn store(dir: &TempDir) -> Arc<dyn Store> {
    connect(&StoreConfig::new(Driver::Sqlite {
        path: dir.0.join("audit.db"),
    }))
    .await
    .unwrap()
}

fn config(file: Option<PathBuf>, create_dir: bool, store_in_db: bool) -> AuditConfig {
    AuditConfig {
        enabled: true,
        log_file: file,
        create_dir,
        store_in_db,
    }
}

#[tokio::test]
async fn events_reach_the_database_and_the_jsonl_file() {
    let dir = TempDir::new();
    let store = store(&dir).await;
    let file = dir.0.join("nested").join("audit.log");
    let audit = Audit::start(&config(Some(file.clone()), true, true), Arc::clone(&store))
        .await
        .unwrap();

    let mut denied = event(Action::ProxyRequest, Actor::System, AuditOutcome::Denied);
    denied.project_id = Some("p1".into());
    denied.reason = Some("Project is inactive".into());
    denied.metadata = Some(r#"{"status":403}"#.into());
    audit.record(denied.clone());
    audit.record(event(
        Action::TokenCreate,
        Actor::ManagementApi,
        AuditOutcome::Success,
    ));
    audit.flush().await;

    let stored = store.list_audit(&AuditQuery::default()).await.unwrap();
    assert_eq!(stored.total_count, 2);
    assert_eq!(store.get_audit(denied.id).await.unwrap(), Some(denied));

    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["action"], "proxy_request");
    assert_eq!(lines[0]["actor"], "system");
    assert_eq!(lines[0]["result"], "denied");
    assert_eq!(lines[0]["project_id"], "p1");
    assert_eq!(
        lines[0]["details"],
        serde_json::json!({"status": 403, "error": "Project is inactive"})
    );
    assert!(lines[1].get("details").is_none());
    assert_eq!(audit.dropped_count(), 0);
}

#[tokio::test]
async fn database_storage_and_the_file_are_optional() {
    let dir = TempDir::new();
    let store = store(&dir).await;
    let audit = Audit::start(&config(None, true, false), Arc::clone(&store))
        .await
        .unwrap();
    audit.record(event(
        Action::ProjectList,
        Actor::ManagementApi,
        AuditOutcome::Success,
    ));
    audit.flush().await;
    assert_eq!(
        store
            .list_audit(&AuditQuery::default())
            .await
            .unwrap()
            .total_count,
        0
    );
}

#[tokio::test]
async fn a_missing_directory_is_an_error_without_create_dir() {
    let dir = TempDir::new();
    let store = store(&dir).await;
    let file = dir.0.join("absent").join("audit.log");
    let error = Audit::start(&config(Some(file), false, true), store)
        .await
        .err();
    assert!(
        matches!(error, Some(AuditError::OpenFile { .. })),
        "{error:?}"
    );
}

#[tokio::test]
async fn disabled_audit_records_nothing() {
    let dir = TempDir::new();
    let store = store(&dir).await;
    let file = dir.0.join("audit.log");
    let disabled = AuditConfig {
        enabled: false,
        log_file: Some(file.clone()),
        create_dir: true,
        store_in_db: true,
    };
    let audit = Audit::start(&disabled, Arc::clone(&store)).await.unwrap();
    audit.record(event(
        Action::TokenRevoke,
        Actor::ManagementApi,
        AuditOutcome::Success,
    ));
    audit.flush().await;
    Audit::disabled().record(event(
        Action::TokenRevoke,
        Actor::ManagementApi,
        AuditOutcome::Success,
    ));
    assert!(!file.exists());
    assert_eq!(
        store
            .list_audit(&AuditQuery::default())
            .await
            .unwrap()
            .total_count,
        0
    );
}

/// On a current-thread runtime the writer cannot run until the test yields, so recording more
/// than the queue holds must drop exactly the excess, without blocking.
#[tokio::test(flavor = "current_thread")]
async fn a_full_queue_drops_and_counts_instead_of_blocking() {
    let dir = TempDir::new();
    let store = store(&dir).await;
    let audit = Audit::start(&config(None, true, true), Arc::clone(&store))
        .await
        .unwrap();
    let excess = 25;
    for _ in 0..AUDIT_QUEUE_CAPACITY + excess {
        audit.record(event(
            Action::ProxyRequest,
            Actor::System,
            AuditOutcome::Success,
        ));
    }
    assert_eq!(audit.dropped_count(), u64::try_from(excess).unwrap());
    audit.flush().await;
    let stored = store.list_audit(&AuditQuery::default()).await.unwrap();
    assert_eq!(
        stored.total_count,
        i64::try_from(AUDIT_QUEUE_CAPACITY).unwrap()
    );
}
