//! The audit trail: management and proxy actions recorded without blocking the caller.
//!
//! [`Audit::record`] pushes an event into a bounded channel and returns at once; a background task
//! writes each event to the database (`AUDIT_STORE_IN_DB`) and appends it as one JSON line to
//! `AUDIT_LOG_FILE`, fsynced per event. When the channel is full the event is dropped and counted.
//! [`Audit::flush`] waits until everything recorded before it is written (used at shutdown).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use llm_proxy_store::{AuditEvent, AuditOutcome, Store};
use serde::Serialize;
use tokio::io::AsyncWriteExt as _;
use tokio::sync::{mpsc, oneshot};

use crate::config::AuditConfig;

/// Events buffered between `record` and the writer task.
pub const AUDIT_QUEUE_CAPACITY: usize = 1024;

/// Audited actions (spec §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    TokenCreate,
    TokenRead,
    TokenUpdate,
    TokenRevoke,
    TokenRevokeBatch,
    TokenList,
    ProjectCreate,
    ProjectRead,
    ProjectUpdate,
    ProjectDelete,
    ProjectList,
    ProxyRequest,
    AdminAccess,
    AuditList,
    AuditShow,
    CachePurge,
}

impl Action {
    /// The stored name, for example `token.create`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TokenCreate => "token.create",
            Self::TokenRead => "token.read",
            Self::TokenUpdate => "token.update",
            Self::TokenRevoke => "token.revoke",
            Self::TokenRevokeBatch => "token.revoke_batch",
            Self::TokenList => "token.list",
            Self::ProjectCreate => "project.create",
            Self::ProjectRead => "project.read",
            Self::ProjectUpdate => "project.update",
            Self::ProjectDelete => "project.delete",
            Self::ProjectList => "project.list",
            Self::ProxyRequest => "proxy_request",
            Self::AdminAccess => "admin.access",
            Self::AuditList => "audit.list",
            Self::AuditShow => "audit.show",
            Self::CachePurge => "cache.purge",
        }
    }
}

/// Who acted (spec §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    System,
    Anonymous,
    Admin,
    ManagementApi,
}

impl Actor {
    /// The stored name, for example `management_api`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::System => "system",
            Self::Anonymous => "anonymous",
            Self::Admin => "admin",
            Self::ManagementApi => "management_api",
        }
    }
}

/// A new event for `action` by `actor`, stamped now.
pub fn event(action: Action, actor: Actor, outcome: AuditOutcome) -> AuditEvent {
    AuditEvent::new(action.as_str(), actor.as_str(), outcome)
}

/// Why the audit trail cannot start.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The audit file or its directory cannot be opened or created.
    #[error("cannot open the audit log {path}: {source}")]
    OpenFile {
        path: PathBuf,
        source: std::io::Error,
    },
}

enum Message {
    Event(Box<AuditEvent>),
    Flush(oneshot::Sender<()>),
}

struct Shared {
    sender: mpsc::Sender<Message>,
    dropped: AtomicU64,
}

/// Handle of the audit trail. Cheap to clone; [`Audit::disabled`] records nothing.
#[derive(Clone)]
pub struct Audit {
    shared: Option<Arc<Shared>>,
}

impl std::fmt::Debug for Audit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Audit")
            .field("enabled", &self.shared.is_some())
            .field("dropped", &self.dropped_count())
            .finish()
    }
}

impl Audit {
    /// An audit trail that discards every event (`AUDIT_ENABLED=false`).
    pub fn disabled() -> Self {
        Self { shared: None }
    }

    /// Opens the audit file (creating its directory when configured) and spawns the writer task.
    /// `store` receives the events when `AUDIT_STORE_IN_DB` is on.
    pub async fn start(config: &AuditConfig, store: Arc<dyn Store>) -> Result<Self, AuditError> {
        if !config.enabled {
            return Ok(Self::disabled());
        }
        let file = match &config.log_file {
            Some(path) => Some(open_log_file(path, config.create_dir).await?),
            None => None,
        };
        let store = config.store_in_db.then_some(store);
        let (sender, receiver) = mpsc::channel(AUDIT_QUEUE_CAPACITY);
        tokio::spawn(write_events(receiver, store, file));
        Ok(Self {
            shared: Some(Arc::new(Shared {
                sender,
                dropped: AtomicU64::new(0),
            })),
        })
    }

    /// Queues an event without waiting. A full queue drops the event and counts it.
    pub fn record(&self, event: AuditEvent) {
        let Some(shared) = &self.shared else {
            return;
        };
        if shared
            .sender
            .try_send(Message::Event(Box::new(event)))
            .is_err()
        {
            let dropped = shared.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped.is_power_of_two() {
                tracing::warn!(dropped, "audit queue full: audit events dropped");
            }
        }
    }

    /// Events dropped because the queue was full.
    pub fn dropped_count(&self) -> u64 {
        self.shared
            .as_ref()
            .map_or(0, |shared| shared.dropped.load(Ordering::Relaxed))
    }

    /// Waits until every event recorded before this call is written.
    pub async fn flush(&self) {
        let Some(shared) = &self.shared else {
            return;
        };
        let (done, written) = oneshot::channel();
        if shared.sender.send(Message::Flush(done)).await.is_ok() {
            // An error means the writer stopped; nothing is left to wait for.
            let _ = written.await;
        }
    }
}

async fn open_log_file(path: &Path, create_dir: bool) -> Result<tokio::fs::File, AuditError> {
    let open_error = |source| AuditError::OpenFile {
        path: path.to_path_buf(),
        source,
    };
    if create_dir && let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        tokio::fs::create_dir_all(dir).await.map_err(open_error)?;
    }
    tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o644)
        .open(path)
        .await
        .map_err(open_error)
}

/// The writer task: drains the queue until every handle is dropped.
async fn write_events(
    mut receiver: mpsc::Receiver<Message>,
    store: Option<Arc<dyn Store>>,
    mut file: Option<tokio::fs::File>,
) {
    while let Some(message) = receiver.recv().await {
        match message {
            Message::Event(event) => {
                if let Some(file) = file.as_mut()
                    && let Err(error) = append_line(file, &event).await
                {
                    tracing::warn!(%error, action = %event.action, "cannot append audit event to file");
                }
                if let Some(store) = &store
                    && let Err(error) = store.insert_audit(&event).await
                {
                    tracing::warn!(%error, action = %event.action, "cannot store audit event");
                }
            }
            Message::Flush(done) => {
                let _ = done.send(());
            }
        }
    }
}

async fn append_line(file: &mut tokio::fs::File, event: &AuditEvent) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(&FileRecord::from(event))?;
    line.push(b'\n');
    file.write_all(&line).await?;
    file.sync_data().await
}

/// One line of the audit file (spec §4 format): HTTP fields and the metadata go into `details`.
#[derive(Serialize)]
struct FileRecord<'a> {
    timestamp: chrono::DateTime<chrono::Utc>,
    action: &'a str,
    actor: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    project_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    correlation_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_ip: Option<&'a str>,
    result: AuditOutcome,
    #[serde(skip_serializing_if = "serde_json::Map::is_empty")]
    details: serde_json::Map<String, serde_json::Value>,
}

impl<'a> From<&'a AuditEvent> for FileRecord<'a> {
    fn from(event: &'a AuditEvent) -> Self {
        let mut details = event
            .metadata
            .as_deref()
            .and_then(|metadata| serde_json::from_str::<serde_json::Value>(metadata).ok())
            .and_then(|value| match value {
                serde_json::Value::Object(map) => Some(map),
                _ => None,
            })
            .unwrap_or_default();
        let fields = [
            ("http_method", &event.method),
            ("endpoint", &event.path),
            ("user_agent", &event.user_agent),
            ("error", &event.reason),
            ("token_id", &event.token_id),
        ];
        for (key, value) in fields {
            if let Some(value) = value {
                details.insert(key.to_owned(), value.clone().into());
            }
        }
        Self {
            timestamp: event.timestamp,
            action: &event.action,
            actor: &event.actor,
            project_id: event.project_id.as_deref(),
            request_id: event.request_id.as_deref(),
            correlation_id: event.correlation_id.as_deref(),
            client_ip: event.client_ip.as_deref(),
            result: event.outcome,
            details,
        }
    }
}
