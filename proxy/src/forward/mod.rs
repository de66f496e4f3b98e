//! The `/v1` data path: validation, client token, project, provider key, upstream, streamed response.
//!
//! Steps, in order (each may end the request with a [`ProxyError`]):
//! 1. request id: a fresh UUIDv4, sent upstream and returned as `X-Request-ID` (client values ignored);
//! 2. CORS preflight: `OPTIONS` answers 204 without authentication and never reaches the upstream;
//! 3. path safety (no `.`/`..` segments, `//`, encoded dots or slashes: 400), method (405) and
//!    endpoint prefix (404) allow-lists of the provider;
//! 4. client token ([`crate::tokens`]): 401/429 per the token error table, checked without counting;
//! 5. concurrency limit (`MAX_CONCURRENT_REQUESTS`, 503): only an authenticated request takes a
//!    slot, so unauthenticated clients (and their bodies) cannot exhaust them;
//! 6. body read with the `MAX_REQUEST_SIZE` limit (413) and the body read timeout (408, see
//!    [`crate::body_deadline`]), then the param whitelist on POSTed JSON objects (the body is parsed
//!    once, also for its `model`), then the origin rules (`required_headers: [origin]`,
//!    `allowed_origins`);
//! 7. project active (403) ([`crate::projects`]), then the circuit breaker of the request's project,
//!    route and model ([`crate::breaker`]: 503 `circuit_open` while open), then the project's rate limits
//!    ([`crate::ratelimit`]: 429, or 503 when fail-closed), before anything is counted, then the HTTP
//!    cache lookup ([`crate::cache`]): a hit is served here (no quota, no upstream); on a miss the
//!    token is admitted atomically (quota), then the provider key is loaded (503);
//! 8. upstream through the one pooled client; `REQUEST_TIMEOUT` bounds the wait for response headers
//!    (504), transport errors are 502;
//! 9. the response body is passed through frame by frame, never buffered: SSE chunks reach the client
//!    as the upstream sends them; a body idle for `REQUEST_TIMEOUT` is ended with an error. If the
//!    client goes away the body is dropped, which drops the upstream request. The body wrapper of
//!    [`body`] is the tap point after the upstream response: it sees every frame and the end (or
//!    abort) of the exchange, and records metrics, the request log and the instrumentation event
//!    ([`crate::events`]) there. A cacheable response is tee'd into the cache by
//!    [`crate::cache::HttpCache::on_response`].
//!
//! Submodules: [`validate`] (steps 3 and 6), [`header_rules`] (header rules and CORS; the names
//! are in [`crate::headers`]), [`body`] (step 9).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::{IntoResponse, Response};
use http::header::{self, HeaderValue};
use http::{Method, Uri};
use http_body_util::Full;
use llm_proxy_store::AuditOutcome;
use tokio::sync::OwnedSemaphorePermit;
use uuid::Uuid;

use crate::audit::{self, Action, Actor};
use crate::breaker::BreakerKey;
use crate::cache::Lookup;
use crate::clock::{Precision, Rfc3339};
use crate::config::Provider;
use crate::error::{ErrorCode, ProxyError};
use crate::events::RequestFacts;
use crate::headers::{
    PROXY_NAME, X_PROXY, X_PROXY_FIRST_RESPONSE_AT, X_PROXY_ID, X_PROXY_RECEIVED_AT, X_REQUEST_ID,
    X_UPSTREAM_REQUEST_START, X_UPSTREAM_REQUEST_STOP, strip_hop_by_hop,
};
use crate::proxy_state::ProxyState;

mod body;
mod header_rules;
mod validate;

use body::{Exchange, IdleTimer, InFlight, TrackedBody};
use header_rules::{EXPOSED_HEADERS, preflight, prepare_upstream_headers};
use validate::{check_origin, check_params, check_path, matched_endpoint, read_body, route_label};

/// What is known about a request before it is forwarded.
struct RequestContext {
    id: Uuid,
    /// `id` as the `X-Request-ID` value, formatted once for both directions.
    id_header: HeaderValue,
    received_at: Rfc3339,
    started: Instant,
    method: Method,
    path: String,
    /// The allowed endpoint the path falls under (`None`: refused as `endpoint_not_found`).
    endpoint: Option<Arc<str>>,
    origin: Option<HeaderValue>,
    client_ip: Option<IpAddr>,
}

/// Handles every method on `/v1/*`.
pub async fn handle(State(state): State<Arc<ProxyState>>, request: Request) -> Response {
    let path = request.uri().path().to_owned();
    let id = request_id();
    let ctx = RequestContext {
        id,
        id_header: request_id_header(id),
        received_at: Rfc3339::now(Precision::Nanos),
        started: Instant::now(),
        method: request.method().clone(),
        endpoint: matched_endpoint(&state.provider, &path).cloned(),
        path,
        origin: request.headers().get(header::ORIGIN).cloned(),
        client_ip: request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip()),
    };
    let in_flight = InFlight::start(state.metrics.clone());

    if ctx.method == Method::OPTIONS {
        let response = preflight(request.headers(), ctx.origin.as_ref());
        return finish(&state, ctx, response, None, in_flight, false, None);
    }
    let mut facts = RequestFacts::default();
    let mut permit = None;
    let mut breaker_key = None;
    let mut cors = true;
    let outcome = forward(
        &state,
        &ctx,
        request,
        &mut facts,
        &mut permit,
        &mut breaker_key,
    )
    .await;
    let response = match outcome {
        Ok(response) => {
            record_breaker(&state, breaker_key.as_ref(), response.status());
            response
        }
        Err(err) => {
            if err.is_upstream_failure() {
                record_breaker(&state, breaker_key.as_ref(), err.status());
            }
            // Upstream behaviour: the breaker's 503 carries no CORS headers.
            cors = !matches!(err, ProxyError::CircuitOpen);
            audit_refusal(&state, &ctx, &facts, &err);
            local_error(&state, &ctx, err)
        }
    };
    finish(&state, ctx, response, permit, in_flight, cors, Some(facts))
}

/// Records the status of a request that was sent upstream (`key` is `None` for the others).
fn record_breaker(state: &ProxyState, key: Option<&BreakerKey>, status: http::StatusCode) {
    if let Some(key) = key
        && state.breakers.record(key, status)
    {
        state.metrics.record_circuit_opened(key.route.clone());
        tracing::warn!(
            project_id = %key.project_id,
            route = %key.route,
            model = key.model.as_deref().unwrap_or(""),
            "circuit breaker opened"
        );
    }
}

/// Takes one of the `MAX_CONCURRENT_REQUESTS` admission slots (kept until the response body ends).
fn admission_slot(state: &ProxyState) -> Result<Option<OwnedSemaphorePermit>, ProxyError> {
    match &state.limiter {
        Some(limiter) => match limiter.clone().try_acquire_owned() {
            Ok(permit) => Ok(Some(permit)),
            Err(_) => Err(ProxyError::Overloaded),
        },
        None => Ok(None),
    }
}

async fn forward(
    state: &ProxyState,
    ctx: &RequestContext,
    request: Request,
    facts: &mut RequestFacts,
    permit: &mut Option<OwnedSemaphorePermit>,
    breaker_key: &mut Option<BreakerKey>,
) -> Result<Response, ProxyError> {
    let provider = &state.provider;
    let (parts, body) = request.into_parts();
    check_path(&ctx.path)?;
    if !provider.allowed_methods.contains(&parts.method) {
        return Err(ProxyError::MethodNotAllowed);
    }
    if ctx.endpoint.is_none() {
        return Err(ProxyError::EndpointNotFound);
    }
    // The client token before the body: a client without a valid token never holds an admission
    // slot, and its body is never read.
    let authorization = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let identified = state.tokens.identify(authorization).await?;
    facts.project_id = Some(identified.record.project_id.clone());
    facts.token_id = Some(identified.record.id);
    state.tokens.check(&identified)?;
    *permit = admission_slot(state)?;
    let body = read_body(&parts.headers, body, state.max_request_size).await?;
    facts.body = body.clone();
    let model = check_params(provider, &parts.method, &parts.headers, &body)?;
    check_origin(provider, &parts.headers)?;

    // Project active, then its rate limits, before the quota is counted: a rate-limited request
    // consumes nothing.
    let limits = state.projects.admit(&identified.record.project_id).await?;
    let key = BreakerKey::new(
        &identified.record.project_id,
        route_label(ctx.endpoint.as_ref()),
        model.as_deref(),
    );
    if state.breakers.is_open(&key) {
        return Err(ProxyError::CircuitOpen);
    }
    state
        .rate_limits
        .check(identified.record.id, &identified.record.project_id, &limits)
        .await?;

    // HTTP cache lookup: a hit is served here, neither counted against the quota nor sent upstream.
    let mut cache_plan = state.cache.as_ref().and_then(|cache| {
        let project_id = &identified.record.project_id;
        cache.plan(project_id, &parts.method, &parts.uri, &parts.headers, &body)
    });
    if let (Some(cache), Some(plan)) = (&state.cache, cache_plan.as_mut())
        && let Lookup::Hit(entry) = cache.lookup(plan).await
    {
        let (response, label) = cache.serve(plan, &entry, &parts.method, &parts.headers);
        state.tokens.record_cache_hit(&identified);
        facts.cache_status = Some(label);
        return Ok(response);
    }

    // From here on the request is meant for the upstream: its outcome counts for the breaker (a
    // cache hit says nothing about the upstream and neither counts nor resets it).
    *breaker_key = Some(key);
    let token = state.tokens.admit(identified).await?;
    let authorization = state
        .projects
        .upstream_authorization(&token.project_id)
        .await?;

    let uri = upstream_uri(&provider.base_url, &parts.uri)?;
    let sent_at = since_epoch();
    let start_nanos = as_nanos(sent_at);
    let mut headers = parts.headers;
    prepare_upstream_headers(&mut headers, &parts.uri, &ctx.id_header, start_nanos);
    headers.insert(header::AUTHORIZATION, authorization);
    headers.insert(
        X_PROXY_ID,
        HeaderValue::try_from(token.project_id.as_str()).map_err(|_| ProxyError::UpstreamAuth)?,
    );
    let mut upstream_request = http::Request::new(Full::new(body));
    *upstream_request.method_mut() = parts.method;
    *upstream_request.uri_mut() = uri;
    *upstream_request.headers_mut() = headers;

    let wait = state.request_timeout.min(provider.response_header_timeout);
    let upstream = match tokio::time::timeout(wait, state.client.request(upstream_request)).await {
        Err(_) => return Err(ProxyError::UpstreamTimeout),
        Ok(Err(err)) => return Err(ProxyError::UpstreamUnreachable(error_chain(&err))),
        Ok(Ok(response)) => response,
    };
    // One clock reading for the latency, the answer's arrival and the start of the proxy's answer
    // (wall-clock readings, as the headers carry them; a clock step shows as a zero latency).
    let stopped = since_epoch();
    state
        .metrics
        .record_upstream_latency(stopped.saturating_sub(sent_at));

    let (mut parts, incoming) = upstream.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    parts
        .headers
        .insert(X_UPSTREAM_REQUEST_START, HeaderValue::from(start_nanos));
    parts.headers.insert(
        X_UPSTREAM_REQUEST_STOP,
        HeaderValue::from(as_nanos(stopped)),
    );
    let first_response_at =
        Rfc3339::at(stopped.as_secs(), stopped.subsec_nanos(), Precision::Nanos);
    if let Ok(at) = HeaderValue::from_str(first_response_at.as_str()) {
        parts.headers.insert(X_PROXY_FIRST_RESPONSE_AT, at);
    }
    let body = match (&state.cache, cache_plan) {
        (Some(cache), Some(plan)) => {
            let (body, label) =
                cache.on_response(plan, parts.status, &mut parts.headers, Body::new(incoming));
            facts.cache_status = Some(label);
            body
        }
        _ => Body::new(incoming),
    };
    Ok(Response::from_parts(parts, body))
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
    event.token_id = facts.token_id.map(|id| id.to_string());
    event.client_ip = ctx.client_ip.map(|ip| ip.to_string());
    event.method = Some(ctx.method.to_string());
    event.path = Some(ctx.path.clone());
    event.reason = Some(err.code().to_owned());
    state.audit.record(event);
}

/// Turns a local error into its response and counts it.
fn local_error(state: &ProxyState, ctx: &RequestContext, err: ProxyError) -> Response {
    state.metrics.record_error(err.code());
    let allow = matches!(err, ProxyError::MethodNotAllowed).then(|| allow_header(&state.provider));
    match &err {
        ProxyError::Store(_) | ProxyError::UpstreamUnreachable(_) => {
            tracing::warn!(request_id = %ctx.id, code = err.code(), error = %err, "request failed")
        }
        _ => {
            tracing::debug!(request_id = %ctx.id, code = err.code(), error = %err, "request refused")
        }
    }
    let mut response = err.into_response();
    if let Some(Ok(allow)) = allow {
        response.headers_mut().insert(header::ALLOW, allow);
    }
    response
}

/// The `Allow` header of a 405: the provider's allowed methods.
fn allow_header(provider: &Provider) -> Result<HeaderValue, http::header::InvalidHeaderValue> {
    let methods: Vec<&str> = provider
        .allowed_methods
        .iter()
        .map(Method::as_str)
        .collect();
    HeaderValue::from_str(&methods.join(", "))
}

/// Adds the proxy's own headers and wraps the body so its end is observed. `facts` is `None` for
/// responses that publish no event (CORS preflight).
fn finish(
    state: &Arc<ProxyState>,
    ctx: RequestContext,
    mut response: Response,
    permit: Option<OwnedSemaphorePermit>,
    in_flight: InFlight,
    cors: bool,
    facts: Option<RequestFacts>,
) -> Response {
    let headers = response.headers_mut();
    headers.insert(X_REQUEST_ID, ctx.id_header);
    headers.insert(X_PROXY, HeaderValue::from_static(PROXY_NAME));
    if let Ok(received) = HeaderValue::from_str(ctx.received_at.as_str()) {
        headers.insert(X_PROXY_RECEIVED_AT, received);
    }
    if cors && let Some(origin) = ctx.origin {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(EXPOSED_HEADERS),
        );
        headers.append(header::VARY, HeaderValue::from_static("Origin"));
    }
    let status = response.status();
    let error_code = response.extensions().get::<ErrorCode>().map(|c| c.0);
    let recording = match (&state.events, facts) {
        (Some(tap), Some(facts)) if tap.is_heard() => Some(tap.record(
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
                method: ctx.method,
                path: ctx.path,
                route: route_label(ctx.endpoint.as_ref()),
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

fn upstream_uri(base: &Uri, client: &Uri) -> Result<Uri, ProxyError> {
    // A base without a path (the usual case) takes the client's path and query as they are:
    // cloning the parsed parts is cheaper than formatting and parsing the whole URI again.
    if base.path().trim_end_matches('/').is_empty()
        && let (Some(scheme), Some(authority)) = (base.scheme(), base.authority())
    {
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(scheme.clone());
        parts.authority = Some(authority.clone());
        parts.path_and_query = Some(
            client
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/")),
        );
        return Uri::from_parts(parts).map_err(|_| ProxyError::InvalidPath);
    }
    let scheme = base.scheme_str().unwrap_or("https");
    let authority = base.authority().map(|a| a.as_str()).unwrap_or_default();
    let prefix = base.path().trim_end_matches('/');
    let path_and_query = client.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    format!("{scheme}://{authority}{prefix}{path_and_query}")
        .parse()
        .map_err(|_| ProxyError::InvalidPath)
}

/// A random (version 4) request id from the thread-local generator: `Uuid::new_v4` asks the kernel
/// (`getrandom`) on every call, a system call per request for an id that needs no secrecy.
fn request_id() -> Uuid {
    uuid::Builder::from_random_bytes(rand::random()).into_uuid()
}

fn request_id_header(id: Uuid) -> HeaderValue {
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let text = id.hyphenated().encode_lower(&mut text);
    // A hyphenated UUID is always a valid header value.
    HeaderValue::from_str(text).unwrap_or(HeaderValue::from_static(""))
}

fn since_epoch() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// Nanoseconds since the Unix epoch (a `u64` lasts until 2554).
fn as_nanos(since_epoch: Duration) -> u64 {
    u64::try_from(since_epoch.as_nanos()).unwrap_or(u64::MAX)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_uri_keeps_the_base_path_and_query() {
        let base: Uri = "https://api.example.com/openai".parse().unwrap();
        let client: Uri = "/v1/models?limit=2".parse().unwrap();
        assert_eq!(
            upstream_uri(&base, &client).unwrap().to_string(),
            "https://api.example.com/openai/v1/models?limit=2"
        );
        for base in ["http://127.0.0.1:9090", "http://127.0.0.1:9090/"] {
            let base: Uri = base.parse().unwrap();
            assert_eq!(
                upstream_uri(&base, &client).unwrap().to_string(),
                "http://127.0.0.1:9090/v1/models?limit=2"
            );
        }
    }
}
