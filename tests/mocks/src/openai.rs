//! A mock OpenAI upstream: an axum server on `127.0.0.1:0` with knobs for the behaviours the proxy
//! must handle, and an observable record of what it received.
//!
//! Knobs ([`Behaviour`]): a fixed status and error body, a delay before the response headers, SSE
//! streaming with N chunks at a given pacing, dying mid-stream, and extra response headers.
//! Observations: every received
//! request (method, path and query, headers including `Authorization`, body), the instant each SSE
//! chunk was handed to the connection, and requests whose client went away before the response was
//! complete.
//!
//! Deviations from the real API, on purpose:
//! - Every path and method is answered; there is no routing, model validation or authentication.
//!   The `Authorization` header is only recorded, never checked.
//! - A response streams when the JSON body has `"stream": true` or the query has `stream=true`.
//! - A POST whose body is not JSON gets OpenAI's 400 `invalid_request_error` shape, simplified.
//! - The completion content is fixed filler; `usage` numbers are constants, not token counts.
//! - Dying mid-stream closes the body with an error after the configured chunk, without the
//!   `[DONE]` sentinel (the real API would not do this on purpose; networks do).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use futures::StreamExt;
use tokio::sync::Notify;

/// What the mock answers to the next requests.
#[derive(Debug, Clone)]
pub struct Behaviour {
    /// Status of non-streaming responses (`200` = a chat completion).
    pub status: StatusCode,
    /// Body sent with a non-2xx `status` (default: an OpenAI-style error object).
    pub error_body: Option<String>,
    /// Wait before sending the response headers.
    pub delay_before_headers: Duration,
    /// Number of SSE chunks of a streaming response (before `[DONE]`).
    pub stream_chunks: usize,
    /// Pause between two SSE chunks.
    pub chunk_interval: Duration,
    /// End the stream with an error after this many chunks.
    pub die_after_chunks: Option<usize>,
    /// Headers set on every response (replacing the mock's own of the same name), e.g.
    /// `Cache-Control` or `ETag` for cache tests.
    pub response_headers: Vec<(String, String)>,
}

impl Default for Behaviour {
    fn default() -> Self {
        Self {
            status: StatusCode::OK,
            error_body: None,
            delay_before_headers: Duration::ZERO,
            stream_chunks: 5,
            chunk_interval: Duration::from_millis(10),
            die_after_chunks: None,
            response_headers: Vec::new(),
        }
    }
}

/// One request as the mock received it.
#[derive(Debug, Clone)]
pub struct ReceivedRequest {
    pub method: Method,
    /// Path and query, exactly as received.
    pub path_and_query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

#[derive(Default)]
struct Record {
    requests: Vec<ReceivedRequest>,
    /// `(request index, chunk index, instant the chunk was handed to the connection)`.
    chunk_sends: Vec<(usize, usize, Instant)>,
    /// Indices of requests whose client went away before the response was complete.
    abandoned: Vec<usize>,
}

struct Shared {
    behaviour: Mutex<Behaviour>,
    record: Mutex<Record>,
    changed: Notify,
}

impl Shared {
    fn record(&self) -> MutexGuard<'_, Record> {
        self.record
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A running mock upstream; stops when dropped.
pub struct MockOpenAi {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl MockOpenAi {
    /// Starts the mock on an ephemeral loopback port with the default behaviour.
    pub async fn start() -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            behaviour: Mutex::new(Behaviour::default()),
            record: Mutex::new(Record::default()),
            changed: Notify::new(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            addr,
            shared,
            server,
        })
    }

    /// Base URL, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Replaces the behaviour for the following requests.
    pub fn set_behaviour(&self, behaviour: Behaviour) {
        *self
            .shared
            .behaviour
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = behaviour;
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<ReceivedRequest> {
        self.shared.record().requests.clone()
    }

    /// Instants at which the chunks of the `request`-th request were sent, in order.
    pub fn chunk_send_times(&self, request: usize) -> Vec<Instant> {
        self.shared
            .record()
            .chunk_sends
            .iter()
            .filter(|(r, _, _)| *r == request)
            .map(|(_, _, at)| *at)
            .collect()
    }

    /// Indices of requests whose client went away before the response was complete.
    pub fn abandoned_requests(&self) -> Vec<usize> {
        self.shared.record().abandoned.clone()
    }

    /// Waits until `condition` holds for the record, or `timeout` passes; returns whether it held.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        condition: impl Fn(&MockOpenAi) -> bool,
    ) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.shared.changed.notified();
            if condition(self) {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return condition(self);
            }
        }
    }
}

impl Drop for MockOpenAi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Marks a request abandoned when dropped before [`Completion::done`].
struct Completion {
    shared: Arc<Shared>,
    request: usize,
    done: bool,
}

impl Completion {
    fn done(mut self) {
        self.done = true;
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        if !self.done {
            self.shared.record().abandoned.push(self.request);
            self.shared.changed.notify_waiters();
        }
    }
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let behaviour = shared
        .behaviour
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let index = {
        let mut record = shared.record();
        record.requests.push(ReceivedRequest {
            method: parts.method.clone(),
            path_and_query: path_and_query.clone(),
            headers: parts.headers.clone(),
            body: body.clone(),
        });
        record.requests.len() - 1
    };
    shared.changed.notify_waiters();
    let completion = Completion {
        shared: shared.clone(),
        request: index,
        done: false,
    };

    if !behaviour.delay_before_headers.is_zero() {
        tokio::time::sleep(behaviour.delay_before_headers).await;
    }
    let json: Option<serde_json::Value> = serde_json::from_slice(&body).ok();
    if parts.method == Method::POST && !body.is_empty() && json.is_none() {
        completion.done();
        return json_response(
            StatusCode::BAD_REQUEST,
            r#"{"error":{"message":"We could not parse the JSON body of your request.","type":"invalid_request_error","param":null,"code":null}}"#.to_owned(),
        );
    }
    if !behaviour.status.is_success() {
        completion.done();
        let body = behaviour.error_body.clone().unwrap_or_else(|| {
            r#"{"error":{"message":"mock upstream error","type":"server_error","param":null,"code":null}}"#.to_owned()
        });
        return json_response(behaviour.status, body);
    }
    let wants_stream = json
        .as_ref()
        .and_then(|j| j.get("stream"))
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false)
        || path_and_query.contains("stream=true");
    let extra_headers = behaviour.response_headers.clone();
    let mut response = if wants_stream {
        stream_response(shared, behaviour, completion)
    } else {
        completion.done();
        json_response(StatusCode::OK, chat_completion())
    };
    for (name, value) in extra_headers {
        if let (Ok(name), Ok(value)) = (
            header::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

fn json_response(status: StatusCode, body: String) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
        .headers_mut()
        .insert("openai-processing-ms", HeaderValue::from_static("42"));
    response
}

/// Text of the `n`-th SSE chunk, as the mock sends it (a whole `data:` frame).
pub fn sse_chunk(n: usize) -> String {
    format!(
        "data: {{\"id\":\"chatcmpl-mock\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"gpt-4o-mini\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"chunk-{n} \"}},\"finish_reason\":null}}]}}\n\n"
    )
}

/// The final SSE frame.
pub const SSE_DONE: &str = "data: [DONE]\n\n";

fn stream_response(shared: Arc<Shared>, behaviour: Behaviour, completion: Completion) -> Response {
    let request = completion.request;
    let frames = futures::stream::unfold((0usize, Some(completion)), move |(n, completion)| {
        let shared = shared.clone();
        let behaviour = behaviour.clone();
        async move {
            let completion = completion?;
            if n > 0 && n <= behaviour.stream_chunks {
                tokio::time::sleep(behaviour.chunk_interval).await;
            }
            if behaviour.die_after_chunks == Some(n) {
                completion.done();
                return Some((
                    Err(std::io::Error::other("mock upstream died mid-stream")),
                    (n + 1, None),
                ));
            }
            if n == behaviour.stream_chunks {
                completion.done();
                return Some((Ok(Bytes::from_static(SSE_DONE.as_bytes())), (n + 1, None)));
            }
            shared
                .record()
                .chunk_sends
                .push((request, n, Instant::now()));
            shared.changed.notify_waiters();
            Some((Ok(Bytes::from(sse_chunk(n))), (n + 1, Some(completion))))
        }
    });
    let mut response = Response::new(Body::from_stream(
        frames.map(|r: Result<Bytes, std::io::Error>| r),
    ));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// A non-streaming chat completion of about 1.4 KB, with `usage`.
pub fn chat_completion() -> String {
    let content = "This is a mock completion from the in-repo OpenAI stand-in. ".repeat(18);
    serde_json::json!({
        "id": "chatcmpl-mock-0001",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": content.trim_end(), "refusal": null},
            "logprobs": null,
            "finish_reason": "stop"
        }],
        "usage": {
            "prompt_tokens": 19,
            "completion_tokens": 210,
            "total_tokens": 229,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0, "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}
        },
        "service_tier": "default",
        "system_fingerprint": "fp_mock"
    })
    .to_string()
}
