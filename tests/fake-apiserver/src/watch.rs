//! WATCH: a streaming response of newline-delimited `WatchEvent` JSON. It replays the changes after
//! the requested resourceVersion (or, for none/"0", synthetic ADDED events for the current objects),
//! then streams live changes until `timeoutSeconds`, the client leaving, or a test dropping all watches.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;

use crate::Shared;
use crate::http::present;
use crate::registry::ResourceInfo;
use crate::selector::{FieldSelector, LabelSelector};
use crate::store::{ChangeEvent, ChangeKind, Store};

/// A real server picks 30–60 minutes when the client gives no timeout.
const DEFAULT_WATCH_TIMEOUT: Duration = Duration::from_secs(1800);
const STREAM_BUFFER: usize = 64;

/// What one watch asked for.
pub struct WatchRequest {
    pub info: ResourceInfo,
    pub namespace: Option<String>,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    pub resource_version: Option<u64>,
    pub timeout: Option<Duration>,
    pub bookmarks: bool,
    pub send_initial_events: bool,
    pub partial_metadata: bool,
}

impl WatchRequest {
    fn matches(&self, object: &Value) -> bool {
        let namespace_matches = self.namespace.as_deref().is_none_or(|namespace| {
            object
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                == Some(namespace)
        });
        namespace_matches && self.labels.matches(object) && self.fields.matches(object)
    }

    /// The event type this watcher sees for a change, honouring selector transitions.
    fn event_type(&self, event: &ChangeEvent) -> Option<&'static str> {
        if event.group != self.info.group || event.plural != self.info.plural {
            return None;
        }
        let now_matches = self.matches(&event.object);
        match event.kind {
            ChangeKind::Added => now_matches.then_some("ADDED"),
            ChangeKind::Deleted => now_matches.then_some("DELETED"),
            ChangeKind::Modified => {
                let matched_before = event
                    .previous
                    .as_ref()
                    .is_some_and(|previous| self.matches(previous));
                match (matched_before, now_matches) {
                    (true, true) => Some("MODIFIED"),
                    (false, true) => Some("ADDED"),
                    (true, false) => Some("DELETED"),
                    (false, false) => None,
                }
            }
        }
    }

    fn line(&self, event_type: &str, object: &Value) -> Bytes {
        let object = present(&self.info, object, self.partial_metadata);
        encode_line(event_type, object)
    }

    fn bookmark(&self, resource_version: u64, initial_events_end: bool) -> Bytes {
        let mut metadata = json!({"resourceVersion": resource_version.to_string()});
        if initial_events_end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let object = json!({"apiVersion": self.info.api_version(), "kind": self.info.kind, "metadata": metadata});
        encode_line("BOOKMARK", object)
    }
}

fn encode_line(event_type: &str, object: Value) -> Bytes {
    let mut line = json!({"type": event_type, "object": object}).to_string();
    line.push('\n');
    Bytes::from(line)
}

fn expired(requested: u64) -> Bytes {
    encode_line(
        "ERROR",
        json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": format!("too old resource version: {requested}"),
            "reason": "Expired", "code": 410,
        }),
    )
}

/// Starts a watch; the snapshot and the live subscription are taken under the state lock, so no
/// change is missed or duplicated between them.
/// Called with the server state locked (`store` comes from it).
pub fn start_locked(shared: &Arc<Shared>, store: &Store, request: WatchRequest) -> Response {
    let mut drop_signal = shared.drop_watches.subscribe();
    let (initial, closes_after_initial, mut live, snapshot_version) = {
        let snapshot_version = store.current_resource_version();
        let mut initial = Vec::new();
        let mut closes_after_initial = false;
        match request
            .resource_version
            .filter(|version| *version > 0 && !request.send_initial_events)
        {
            Some(version) => match store.history_since(version) {
                Some(events) => {
                    for event in events {
                        if let Some(event_type) = request.event_type(&event) {
                            initial.push(request.line(event_type, &event.object));
                        }
                    }
                }
                None => {
                    initial.push(expired(version));
                    closes_after_initial = true;
                }
            },
            None => {
                for object in store.list(
                    &request.info,
                    request.namespace.as_deref(),
                    &request.labels,
                    &request.fields,
                ) {
                    initial.push(request.line("ADDED", &object));
                }
                if request.send_initial_events {
                    initial.push(request.bookmark(snapshot_version, true));
                }
            }
        }
        (
            initial,
            closes_after_initial,
            store.subscribe(),
            snapshot_version,
        )
    };
    let (sender, receiver) = mpsc::channel::<Result<Bytes, Infallible>>(STREAM_BUFFER);
    let body_stream = futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|line| (line, receiver))
    });
    let timeout = request.timeout.unwrap_or(DEFAULT_WATCH_TIMEOUT);
    let watch_counter = Arc::clone(shared);
    watch_counter.open_watches.fetch_add(1, Ordering::SeqCst);
    tokio::spawn(async move {
        let _open = OpenWatchGuard(watch_counter);
        for line in initial {
            if sender.send(Ok(line)).await.is_err() {
                return;
            }
        }
        if closes_after_initial {
            return;
        }
        let mut last_version = snapshot_version;
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                received = live.recv() => match received {
                    Ok(event) => {
                        last_version = event.resource_version;
                        if let Some(event_type) = request.event_type(&event)
                            && sender.send(Ok(request.line(event_type, &event.object))).await.is_err()
                        {
                            return;
                        }
                    }
                    // A lagging watcher is disconnected; it resumes from history with its last version.
                    Err(RecvError::Lagged(_) | RecvError::Closed) => return,
                },
                _ = drop_signal.changed() => return,
                () = sender.closed() => return,
                () = &mut deadline => {
                    if request.bookmarks {
                        let _ = sender.send(Ok(request.bookmark(last_version, false))).await;
                    }
                    return;
                }
            }
        }
    });
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        Body::from_stream(body_stream),
    )
        .into_response()
}

struct OpenWatchGuard(Arc<Shared>);

impl Drop for OpenWatchGuard {
    fn drop(&mut self) {
        self.0.open_watches.fetch_sub(1, Ordering::SeqCst);
        self.0.notify_activity();
    }
}
