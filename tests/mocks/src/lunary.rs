//! A mock Lunary ingestion endpoint (`POST /v1/runs/ingest`), plus the recording receiver it is
//! built on (also used by [`crate::helicone`]).
//!
//! The receiver is an axum server on `127.0.0.1:0`. Knobs: a queue of statuses answered to the
//! next requests (e.g. `500` then `200`), the status once the queue is empty (default `200`), and a
//! delay before answering. It records every request on arrival (method, path, headers including
//! `Authorization`, body) with the status it is going to get, like a real backend that processes a
//! request even when the client goes away before the answer (which is how duplicates arise).
//!
//! Deviations from the real service, on purpose: any path and method is answered, the API key is
//! recorded but never checked, and the body is not validated (tests assert on it instead). Success
//! bodies are `{}`; error bodies are `{"error":"mock status <code>"}`.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::sync::watch;

/// Path of Lunary's ingestion endpoint.
pub const LUNARY_INGEST_PATH: &str = "/v1/runs/ingest";

/// One received request.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// HTTP method.
    pub method: Method,
    /// Path and query.
    pub path: String,
    /// Request headers.
    pub headers: HeaderMap,
    /// Raw body.
    pub body: Bytes,
    /// The status the mock answers (after its delay).
    pub status: StatusCode,
}

impl RecordedRequest {
    /// The body parsed as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// The `Authorization` header, if any.
    pub fn authorization(&self) -> Option<&str> {
        self.headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
    }
}

#[derive(Default)]
struct Knobs {
    queued_statuses: VecDeque<StatusCode>,
    default_status: Option<StatusCode>,
    delay: Duration,
}

struct Shared {
    knobs: Mutex<Knobs>,
    requests: Mutex<Vec<RecordedRequest>>,
    received: watch::Sender<usize>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A running recording receiver; stopped when dropped.
pub struct RecordingReceiver {
    addr: SocketAddr,
    path: &'static str,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl RecordingReceiver {
    /// Starts a receiver whose [`RecordingReceiver::url`] points at `path`.
    pub async fn start(path: &'static str) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (received, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            knobs: Mutex::default(),
            requests: Mutex::default(),
            received,
        });
        let app = Router::new().fallback(record).with_state(shared.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            addr,
            path,
            shared,
            server,
        })
    }

    /// The endpoint URL, e.g. `http://127.0.0.1:PORT/v1/runs/ingest`.
    pub fn url(&self) -> String {
        format!("http://{}{}", self.addr, self.path)
    }

    /// Answers the next requests with these statuses, in order.
    pub fn respond_with(&self, statuses: impl IntoIterator<Item = u16>) {
        let mut knobs = lock(&self.shared.knobs);
        knobs.queued_statuses.extend(
            statuses
                .into_iter()
                .filter_map(|code| StatusCode::from_u16(code).ok()),
        );
    }

    /// The status once the queue is empty (default 200).
    pub fn set_default_status(&self, status: u16) {
        lock(&self.shared.knobs).default_status = StatusCode::from_u16(status).ok();
    }

    /// Waits this long before answering each request.
    pub fn set_delay(&self, delay: Duration) {
        lock(&self.shared.knobs).delay = delay;
    }

    /// Every received request so far.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.requests).clone()
    }

    /// The received requests answered (or to be answered) with a 2xx.
    pub fn accepted(&self) -> Vec<RecordedRequest> {
        self.requests()
            .into_iter()
            .filter(|request| request.status.is_success())
            .collect()
    }

    /// Waits until at least `count` requests were received; returns them, or `None` after `timeout`.
    pub async fn wait_for_requests(
        &self,
        count: usize,
        timeout: Duration,
    ) -> Option<Vec<RecordedRequest>> {
        let mut received = self.shared.received.subscribe();
        tokio::time::timeout(timeout, received.wait_for(|seen| *seen >= count))
            .await
            .ok()?
            .ok()?;
        Some(self.requests())
    }
}

impl Drop for RecordingReceiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn record(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let (status, delay) = {
        let mut knobs = lock(&shared.knobs);
        let status = knobs
            .queued_statuses
            .pop_front()
            .or(knobs.default_status)
            .unwrap_or(StatusCode::OK);
        (status, knobs.delay)
    };
    lock(&shared.requests).push(RecordedRequest {
        method: parts.method,
        path: parts
            .uri
            .path_and_query()
            .map(ToString::to_string)
            .unwrap_or_default(),
        headers: parts.headers,
        body,
        status,
    });
    shared.received.send_modify(|received| *received += 1);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let body = if status.is_success() {
        "{}".to_string()
    } else {
        format!(r#"{{"error":"mock status {}"}}"#, status.as_u16())
    };
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// A mock Lunary: a [`RecordingReceiver`] at [`LUNARY_INGEST_PATH`].
pub struct MockLunary;

impl MockLunary {
    /// Starts one on `127.0.0.1:0`.
    pub async fn start() -> std::io::Result<RecordingReceiver> {
        RecordingReceiver::start(LUNARY_INGEST_PATH).await
    }
}
