//! The `/v1` data path: validation, client token, project, provider key, upstream, streamed response.
//!
//! Steps, in order (each may end the request with a [`ProxyError`]):
//! 1. request id: a fresh UUIDv4, sent upstream and returned as `X-Request-ID` (client values ignored);
//! 2. CORS preflight: `OPTIONS` answers 204 without authentication and never reaches the upstream;
//! 3. concurrency limit (`MAX_CONCURRENT_REQUESTS`, 503) and circuit breaker (503 while open);
//! 4. path safety (no `.`/`..` segments, `//`, encoded dots or slashes: 400), method (405) and
//!    endpoint prefix (404) allow-lists of the provider;
//! 5. body read with the `MAX_REQUEST_SIZE` limit (413), then the param whitelist on POSTed JSON
//!    objects (the body is parsed once);
//! 6. origin rules (`required_headers: [origin]`, `allowed_origins`);
//! 7. client token ([`crate::tokens`]): 401/429 per the token error table;
//! 8. project active (403) and provider key (503) ([`crate::projects`]);
//! 9. upstream through the one pooled client; `REQUEST_TIMEOUT` bounds the wait for response headers
//!    (504), transport errors are 502;
//! 10. the response body is passed through frame by frame, never buffered: SSE chunks reach the client
//!     as the upstream sends them; a body idle for `REQUEST_TIMEOUT` is ended with an error. If the client goes away the body is dropped, which drops the
//!     upstream request. [`TrackedBody`] is the tap point after the upstream response: it sees every
//!     frame and the end (or abort) of the exchange, and records metrics, the request log and the
//!     instrumentation event ([`crate::events`]) there.

use std::future::Future as _;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use chrono::{SecondsFormat, Utc};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Uri};
use http_body::{Frame, SizeHint};
use http_body_util::{BodyExt, Full, Limited};
use llm_proxy_store::AuditOutcome;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use uuid::Uuid;

use crate::audit::{self, Action, Actor, Audit};
use crate::breaker::CircuitBreaker;
use crate::config::Provider;
use crate::error::{ErrorCode, ProxyError};
use crate::events::{EventTap, Recording, RequestFacts};
use crate::metrics::Metrics;
use crate::projects::ProjectGate;
use crate::tokens::TokenAuthority;
use crate::upstream::UpstreamClient;

const PROXY_NAME: &str = "llm-proxy";
const PROXY_VERSION: &str = env!("CARGO_PKG_VERSION");
const EXPOSED_HEADERS: &str =
    "X-Request-ID, X-Proxy-ID, X-LLM-Proxy-Remote-Duration, X-LLM-Proxy-Remote-Duration-Ms";
const PREFLIGHT_METHODS: &str = "GET, POST, PUT, PATCH, DELETE, OPTIONS";
const PREFLIGHT_DEFAULT_HEADERS: &str = "Authorization, Content-Type, X-Requested-With";
/// Longest parameter value echoed in a `param_not_allowed` message.
const MAX_ECHOED_VALUE: usize = 100;

/// Client headers that identify the client's address; never forwarded.
const CLIENT_IP_HEADERS: &[&str] = &[
    "x-forwarded-for",
    "x-real-ip",
    "cf-connecting-ip",
    "cf-ipcountry",
    "x-client-ip",
    "x-original-forwarded-for",
];
/// Hop-by-hop headers (RFC 9110 §7.6.1), never forwarded in either direction.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Shared state of the `/v1` handler.
pub struct ProxyState {
    pub provider: Provider,
    pub client: UpstreamClient,
    pub tokens: TokenAuthority,
    pub projects: ProjectGate,
    pub breaker: CircuitBreaker,
    /// `None` = unlimited.
    pub limiter: Option<Arc<Semaphore>>,
    pub metrics: Arc<Metrics>,
    /// Bound on the wait for upstream response headers.
    pub request_timeout: Duration,
    pub max_request_size: u64,
    /// `None` when `OBSERVABILITY_ENABLED=false`.
    pub events: Option<EventTap>,
    pub audit: Audit,
}

/// What is known about a request before it is forwarded.
struct RequestContext {
    id: Uuid,
    received_at: String,
    started: Instant,
    method: Method,
    path: String,
    route: String,
    origin: Option<HeaderValue>,
    client_ip: Option<String>,
}

/// Handles every method on `/v1/*`.
pub async fn handle(State(state): State<Arc<ProxyState>>, request: Request) -> Response {
    let path = request.uri().path().to_owned();
    let ctx = RequestContext {
        id: Uuid::new_v4(),
        received_at: Utc::now().to_rfc3339_opts(SecondsFormat::Nanos, true),
        started: Instant::now(),
        method: request.method().clone(),
        route: route_label(&state.provider, &path),
        path,
        origin: request.headers().get(header::ORIGIN).cloned(),
        client_ip: request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip().to_string()),
    };
    let in_flight = InFlight::start(state.metrics.clone());

    if ctx.method == Method::OPTIONS {
        let response = preflight(request.headers(), ctx.origin.as_ref());
        return finish(&state, &ctx, response, None, in_flight, false, None);
    }
    let permit = match &state.limiter {
        Some(limiter) => match limiter.clone().try_acquire_owned() {
            Ok(permit) => Some(permit),
            Err(_) => {
                let response = local_error(&state, &ctx, ProxyError::Overloaded);
                let facts = Some(RequestFacts::default());
                return finish(&state, &ctx, response, None, in_flight, true, facts);
            }
        },
        None => None,
    };
    if state.breaker.is_open() {
        state.metrics.set_circuit_open(true);
        let response = local_error(&state, &ctx, ProxyError::CircuitOpen);
        // Upstream behaviour: the breaker's 503 carries no CORS headers.
        let facts = Some(RequestFacts::default());
        return finish(&state, &ctx, response, permit, in_flight, false, facts);
    }
    let mut facts = RequestFacts::default();
    let response = match forward(&state, &ctx, request, &mut facts).await {
        Ok(response) => {
            state.breaker.record(response.status());
            response
        }
        Err(err) => {
            if err.is_upstream_failure() {
                state.breaker.record(err.status());
            }
            audit_refusal(&state, &ctx, &facts, &err);
            local_error(&state, &ctx, err)
        }
    };
    state.metrics.set_circuit_open(state.breaker.is_open());
    finish(&state, &ctx, response, permit, in_flight, true, Some(facts))
}

async fn forward(
    state: &ProxyState,
    ctx: &RequestContext,
    request: Request,
    facts: &mut RequestFacts,
) -> Result<Response, ProxyError> {
    let provider = &state.provider;
    let (parts, body) = request.into_parts();
    check_path(&ctx.path)?;
    if !provider.allowed_methods.contains(&parts.method) {
        return Err(ProxyError::MethodNotAllowed);
    }
    if !endpoint_allowed(provider, &ctx.path) {
        return Err(ProxyError::EndpointNotFound);
    }
    let body = read_body(&parts.headers, body, state.max_request_size).await?;
    facts.body = body.clone();
    check_params(provider, &parts.method, &parts.headers, &body)?;
    check_origin(provider, &parts.headers)?;

    let authorization = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let identified = state.tokens.identify(authorization).await?;
    facts.project_id = Some(identified.record.project_id.clone());
    facts.token_id = Some(identified.record.id.to_string());
    let token = state.tokens.admit(identified).await?;
    state.projects.ensure_active(&token.project_id).await?;
    let key = state.projects.provider_key(&token.project_id).await?;

    let uri = upstream_uri(&provider.base_url, &parts.uri)?;
    let start_nanos = unix_nanos();
    let mut headers = parts.headers;
    prepare_upstream_headers(&mut headers, &parts.uri, ctx.id, start_nanos);
    let mut bearer = HeaderValue::try_from(format!("Bearer {}", key.expose()))
        .map_err(|_| ProxyError::UpstreamAuth)?;
    bearer.set_sensitive(true);
    headers.insert(header::AUTHORIZATION, bearer);
    headers.insert(
        HeaderName::from_static("x-proxy-id"),
        HeaderValue::try_from(token.project_id.as_str()).map_err(|_| ProxyError::UpstreamAuth)?,
    );
    let mut upstream_request = http::Request::new(Full::new(body));
    *upstream_request.method_mut() = parts.method;
    *upstream_request.uri_mut() = uri;
    *upstream_request.headers_mut() = headers;

    let sent = Instant::now();
    let wait = state.request_timeout.min(provider.response_header_timeout);
    let upstream = match tokio::time::timeout(wait, state.client.request(upstream_request)).await {
        Err(_) => return Err(ProxyError::UpstreamTimeout),
        Ok(Err(err)) => return Err(ProxyError::UpstreamUnreachable(error_chain(&err))),
        Ok(Ok(response)) => response,
    };
    state.metrics.record_upstream_latency(sent.elapsed());
    let stop_nanos = unix_nanos();

    let (mut parts, incoming) = upstream.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    let timing = [
        ("x-upstream-request-start", start_nanos.to_string()),
        ("x-upstream-request-stop", stop_nanos.to_string()),
        (
            "x-proxy-first-response-at",
            Utc::now().to_rfc3339_opts(SecondsFormat::Nanos, true),
        ),
    ];
    for (name, value) in timing {
        if let Ok(value) = HeaderValue::try_from(value) {
            parts.headers.insert(HeaderName::from_static(name), value);
        }
    }
    Ok(Response::from_parts(parts, Body::new(incoming)))
}

/// Records refusals the audit trail keeps (spec §1.2): an inactive project (`denied`) and a database
/// failure during admission (`error`).
fn audit_refusal(state: &ProxyState, ctx: &RequestContext, facts: &RequestFacts, err: &ProxyError) {
    let outcome = match err {
        ProxyError::ProjectInactive => AuditOutcome::Denied,
        ProxyError::Store(_) => AuditOutcome::Error,
        _ => return,
    };
    let mut event = audit::event(Action::ProxyRequest, Actor::Anonymous, outcome);
    event.request_id = Some(ctx.id.to_string());
    event.project_id = facts.project_id.clone();
    event.token_id = facts.token_id.clone();
    event.client_ip = ctx.client_ip.clone();
    event.method = Some(ctx.method.to_string());
    event.path = Some(ctx.path.clone());
    event.reason = Some(err.code().to_owned());
    state.audit.record(event);
}

/// Turns a local error into its response and counts it.
fn local_error(state: &ProxyState, ctx: &RequestContext, err: ProxyError) -> Response {
    state.metrics.record_error(err.code());
    match &err {
        ProxyError::Store(_) | ProxyError::UpstreamUnreachable(_) => {
            tracing::warn!(request_id = %ctx.id, code = err.code(), error = %err, "request failed")
        }
        _ => {
            tracing::debug!(request_id = %ctx.id, code = err.code(), error = %err, "request refused")
        }
    }
    err.into_response()
}

/// Adds the proxy's own headers and wraps the body so its end is observed. `facts` is `None` for
/// responses that publish no event (CORS preflight).
fn finish(
    state: &Arc<ProxyState>,
    ctx: &RequestContext,
    mut response: Response,
    permit: Option<OwnedSemaphorePermit>,
    in_flight: InFlight,
    cors: bool,
    facts: Option<RequestFacts>,
) -> Response {
    let headers = response.headers_mut();
    if let Ok(id) = HeaderValue::try_from(ctx.id.to_string()) {
        headers.insert(HeaderName::from_static("x-request-id"), id);
    }
    headers.insert(
        HeaderName::from_static("x-proxy"),
        HeaderValue::from_static(PROXY_NAME),
    );
    if let Ok(received) = HeaderValue::try_from(ctx.received_at.as_str()) {
        headers.insert(HeaderName::from_static("x-proxy-received-at"), received);
    }
    if cors && let Some(origin) = &ctx.origin {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(EXPOSED_HEADERS),
        );
        headers.append(header::VARY, HeaderValue::from_static("Origin"));
    }
    let status = response.status();
    let error_code = response.extensions().get::<ErrorCode>().map(|c| c.0);
    let recording = match (&state.events, facts) {
        (Some(tap), Some(facts)) => Some(tap.record(
            ctx.id,
            &ctx.method,
            &ctx.path,
            facts,
            status,
            response.headers(),
        )),
        _ => None,
    };
    response.map(|inner| {
        Body::new(TrackedBody {
            inner,
            exchange: Some(Exchange {
                metrics: state.metrics.clone(),
                request_id: ctx.id,
                method: ctx.method.clone(),
                path: ctx.path.clone(),
                route: ctx.route.clone(),
                status,
                error_code,
                started: ctx.started,
                bytes: 0,
                recording,
                _permit: permit,
                _in_flight: in_flight,
            }),
            idle: IdleTimer::new(state.request_timeout),
        })
    })
}

fn preflight(headers: &HeaderMap, origin: Option<&HeaderValue>) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    if origin.is_some() {
        let out = response.headers_mut();
        out.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
        out.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static(PREFLIGHT_METHODS),
        );
        let requested = headers
            .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
            .cloned()
            .unwrap_or(HeaderValue::from_static(PREFLIGHT_DEFAULT_HEADERS));
        out.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, requested);
        out.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(EXPOSED_HEADERS),
        );
        out.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("86400"),
        );
    }
    response
}

/// Rejects paths that a normalising server could resolve elsewhere than they look.
fn check_path(path: &str) -> Result<(), ProxyError> {
    let lowered = path.to_ascii_lowercase();
    let suspicious = !path.starts_with("/v1/")
        || path.contains("//")
        || path.contains('\\')
        || ["%2e", "%2f", "%5c", "%00"]
            .iter()
            .any(|enc| lowered.contains(enc))
        || path
            .split('/')
            .any(|segment| segment == "." || segment == "..");
    if suspicious {
        Err(ProxyError::InvalidPath)
    } else {
        Ok(())
    }
}

/// Allowed endpoints match on whole path segments: `/v1/models` allows `/v1/models/gpt-4o`, not
/// `/v1/modelsX`.
fn endpoint_allowed(provider: &Provider, path: &str) -> bool {
    matched_endpoint(provider, path).is_some()
}

fn matched_endpoint<'a>(provider: &'a Provider, path: &str) -> Option<&'a str> {
    provider
        .allowed_endpoints
        .iter()
        .map(|e| e.trim_end_matches('/'))
        .find(|endpoint| {
            path.strip_prefix(endpoint)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        })
}

/// Metric label of a path: the allowed endpoint it falls under, or `other`.
fn route_label(provider: &Provider, path: &str) -> String {
    matched_endpoint(provider, path)
        .unwrap_or("other")
        .to_owned()
}

async fn read_body(headers: &HeaderMap, body: Body, limit: u64) -> Result<Bytes, ProxyError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Err(ProxyError::BodyTooLarge);
    }
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) if err.is::<http_body_util::LengthLimitError>() => Err(ProxyError::BodyTooLarge),
        Err(_) => Err(ProxyError::BodyUnreadable),
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}

/// Applies the param whitelist to POSTed JSON.
///
/// Unlike upstream, `application/json; charset=utf-8` is JSON too (otherwise a parameter would
/// bypass the whitelist), and a JSON body that is not an object is refused rather than waved through.
fn check_params(
    provider: &Provider,
    method: &Method,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<(), ProxyError> {
    if provider.param_whitelist.is_empty() || method != Method::POST || !is_json(headers) {
        return Ok(());
    }
    let parsed: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| ProxyError::InvalidJson)?;
    let object = parsed.as_object().ok_or(ProxyError::InvalidJson)?;
    for rule in &provider.param_whitelist {
        let Some(value) = object.get(&rule.field) else {
            continue;
        };
        let text = match value {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            serde_json::Value::Bool(b) => Some(b.to_string()),
            _ => None,
        };
        if !text.as_deref().is_some_and(|t| rule.allows(t)) {
            let shown = text.unwrap_or_else(|| value.to_string());
            return Err(ProxyError::ParamNotAllowed {
                param: rule.field.clone(),
                value: shown.chars().take(MAX_ECHOED_VALUE).collect(),
                patterns: rule.patterns.clone(),
            });
        }
    }
    Ok(())
}

fn check_origin(provider: &Provider, headers: &HeaderMap) -> Result<(), ProxyError> {
    let origin = headers.get(header::ORIGIN);
    match origin {
        None if provider.origin_required => Err(ProxyError::OriginRequired),
        Some(origin) if !provider.allowed_origins.is_empty() => {
            let allowed = origin
                .to_str()
                .is_ok_and(|o| provider.allowed_origins.iter().any(|a| a == o));
            if allowed {
                Ok(())
            } else {
                Err(ProxyError::OriginNotAllowed)
            }
        }
        _ => Ok(()),
    }
}

fn upstream_uri(base: &Uri, client: &Uri) -> Result<Uri, ProxyError> {
    let scheme = base.scheme_str().unwrap_or("https");
    let authority = base.authority().map(|a| a.as_str()).unwrap_or_default();
    let prefix = base.path().trim_end_matches('/');
    let path_and_query = client.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    format!("{scheme}://{authority}{prefix}{path_and_query}")
        .parse()
        .map_err(|_| ProxyError::InvalidPath)
}

fn prepare_upstream_headers(headers: &mut HeaderMap, uri: &Uri, id: Uuid, start_nanos: u128) {
    strip_hop_by_hop(headers);
    for name in CLIENT_IP_HEADERS {
        headers.remove(*name);
    }
    let spoofable: Vec<HeaderName> = headers
        .keys()
        .filter(|name| {
            name.as_str().starts_with("x-proxy") || name.as_str().starts_with("x-upstream-")
        })
        .cloned()
        .collect();
    for name in spoofable {
        headers.remove(name);
    }
    headers.remove(header::HOST);
    headers.remove(header::CONTENT_LENGTH);
    headers.remove(header::AUTHORIZATION);
    if headers.get(header::ACCEPT).is_none_or(|v| v.is_empty())
        && uri
            .query()
            .is_some_and(|q| q.split('&').any(|pair| pair == "stream=true"))
    {
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static("text/event-stream"),
        );
    }
    headers.insert(
        HeaderName::from_static("x-proxy"),
        HeaderValue::from_static(PROXY_NAME),
    );
    headers.insert(
        HeaderName::from_static("x-proxy-version"),
        HeaderValue::from_static(PROXY_VERSION),
    );
    if let Ok(value) = HeaderValue::try_from(id.to_string()) {
        headers.insert(HeaderName::from_static("x-request-id"), value);
    }
    if let Ok(value) = HeaderValue::try_from(start_nanos.to_string()) {
        headers.insert(HeaderName::from_static("x-upstream-request-start"), value);
    }
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::try_from(name.trim()).ok())
        .collect();
    for name in listed {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(*name);
    }
}

fn unix_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
}

/// The error and its sources, for the log (hyper's top-level message alone says little).
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Counts a request as in flight until dropped.
struct InFlight(Arc<Metrics>);

impl InFlight {
    fn start(metrics: Arc<Metrics>) -> Self {
        metrics.in_flight().inc();
        Self(metrics)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight().dec();
    }
}

/// What is recorded when a response body ends, fails or is dropped by a departing client.
struct Exchange {
    metrics: Arc<Metrics>,
    request_id: Uuid,
    method: Method,
    path: String,
    route: String,
    status: StatusCode,
    error_code: Option<&'static str>,
    started: Instant,
    bytes: u64,
    recording: Option<Recording>,
    _permit: Option<OwnedSemaphorePermit>,
    _in_flight: InFlight,
}

#[derive(Debug, Clone, Copy)]
enum Outcome {
    Complete,
    UpstreamFailed,
    UpstreamIdle,
    ClientGone,
}

impl Exchange {
    fn end(self, outcome: Outcome) {
        let duration = self.started.elapsed();
        if let Some(recording) = self.recording {
            recording.publish(duration, matches!(outcome, Outcome::ClientGone));
        }
        self.metrics.record_response(
            self.method.as_str(),
            &self.route,
            self.status.as_u16(),
            duration,
        );
        tracing::info!(
            request_id = %self.request_id,
            method = %self.method,
            path = %self.path,
            status = self.status.as_u16(),
            duration_ms = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
            bytes = self.bytes,
            code = self.error_code.unwrap_or(""),
            outcome = ?outcome,
            "request"
        );
    }
}

/// The response body: frames pass through untouched; the exchange is recorded at its end.
///
/// A body that produces nothing for `REQUEST_TIMEOUT` (an upstream that stalls mid-stream) is ended
/// with an error, so a stuck upstream cannot hold a connection forever; an upstream that keeps
/// sending is never cut, however long the stream lasts.
struct TrackedBody {
    inner: Body,
    exchange: Option<Exchange>,
    idle: IdleTimer,
}

struct IdleTimer {
    limit: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl IdleTimer {
    fn new(limit: Duration) -> Self {
        Self {
            limit,
            sleep: Box::pin(tokio::time::sleep(limit)),
        }
    }

    fn restart(&mut self) {
        let deadline = tokio::time::Instant::now() + self.limit;
        self.sleep.as_mut().reset(deadline);
    }
}

impl http_body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if polled.is_pending() {
            if self.exchange.is_some() && self.idle.sleep.as_mut().poll(cx).is_ready() {
                if let Some(exchange) = self.exchange.take() {
                    exchange.end(Outcome::UpstreamIdle);
                }
                let stalled = std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "upstream sent nothing within REQUEST_TIMEOUT",
                );
                return Poll::Ready(Some(Err(axum::Error::new(stalled))));
            }
            return Poll::Pending;
        }
        self.idle.restart();
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(exchange)) = (frame.data_ref(), self.exchange.as_mut()) {
                    exchange.bytes += data.len() as u64;
                    if let Some(recording) = exchange.recording.as_mut() {
                        recording.observe(data);
                    }
                }
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(exchange) = self.exchange.take() {
                    exchange.end(Outcome::UpstreamFailed);
                }
            }
            Poll::Ready(None) => {
                if let Some(exchange) = self.exchange.take() {
                    exchange.end(Outcome::Complete);
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for TrackedBody {
    fn drop(&mut self) {
        if let Some(exchange) = self.exchange.take() {
            let outcome = if http_body::Body::is_end_stream(&self.inner) {
                Outcome::Complete
            } else {
                Outcome::ClientGone
            };
            exchange.end(outcome);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::fallback_provider;

    #[test]
    fn path_tricks_are_rejected() {
        for bad in [
            "/v1/../manage/projects",
            "/v1/chat/../../manage",
            "/v1/./models",
            "/v1//models",
            "/v1/%2e%2e/manage",
            "/v1/%2E%2E/manage",
            "/v1/models%2f..%2fmanage",
            "/v1/models\\..\\manage",
            "/v1/models%00",
            "/v2/models",
        ] {
            assert!(check_path(bad).is_err(), "{bad} should be rejected");
        }
        assert!(check_path("/v1/chat/completions").is_ok());
        assert!(check_path("/v1/models/gpt-4o.1").is_ok());
    }

    #[test]
    fn endpoints_match_on_segments() {
        let provider = fallback_provider("http://127.0.0.1:1").unwrap();
        assert!(endpoint_allowed(&provider, "/v1/models"));
        assert!(endpoint_allowed(&provider, "/v1/models/gpt-4o"));
        assert!(!endpoint_allowed(&provider, "/v1/modelsX"));
        assert!(!endpoint_allowed(&provider, "/v1/threads"));
        assert_eq!(route_label(&provider, "/v1/models/x"), "/v1/models");
        assert_eq!(route_label(&provider, "/v1/unknown"), "other");
    }

    #[test]
    fn upstream_uri_keeps_the_base_path_and_query() {
        let base: Uri = "https://api.example.com/openai".parse().unwrap();
        let client: Uri = "/v1/models?limit=2".parse().unwrap();
        assert_eq!(
            upstream_uri(&base, &client).unwrap().to_string(),
            "https://api.example.com/openai/v1/models?limit=2"
        );
    }

    #[test]
    fn upstream_headers_drop_client_identity_and_hop_by_hop() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("x-forwarded-for", "1.2.3.4"),
            ("x-real-ip", "1.2.3.4"),
            ("connection", "keep-alive, x-custom-hop"),
            ("x-custom-hop", "1"),
            ("authorization", "Bearer sk-client"),
            ("x-proxy-id", "spoofed"),
            ("x-request-id", "client-chosen"),
            ("openai-organization", "org-1"),
        ] {
            headers.insert(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        let id = Uuid::new_v4();
        prepare_upstream_headers(&mut headers, &"/v1/x?stream=true".parse().unwrap(), id, 7);
        for gone in [
            "x-forwarded-for",
            "x-real-ip",
            "connection",
            "x-custom-hop",
            "authorization",
            "x-proxy-id",
        ] {
            assert!(headers.get(gone).is_none(), "{gone} forwarded");
        }
        assert_eq!(headers["x-request-id"], id.to_string().as_str());
        assert_eq!(headers["openai-organization"], "org-1");
        assert_eq!(headers["accept"], "text/event-stream");
        assert_eq!(headers["x-upstream-request-start"], "7");
    }
}
