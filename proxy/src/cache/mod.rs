//! The HTTP response cache of `/v1` (spec §1.5, without upstream's bugs): which requests use it,
//! lookup and serving of hits (including `304` for matching conditionals and SSE replay frame by
//! frame), storing cacheable responses from a tap on their body, and purges.
//!
//! Owns: keys ([`key`]), caching rules ([`policy`]), entries ([`entry`]), the bounded in-memory
//! backend ([`memory`]) and the Redis backend ([`redis`]). The data path (the `forward` module) calls
//! [`HttpCache::plan`] after the token and project checks, [`HttpCache::lookup`] /
//! [`HttpCache::serve`] before admission (a hit is not counted against the quota and never reaches
//! the upstream), and [`HttpCache::on_response`] on the upstream response.
//!
//! Storing never delays the client: the body is tee'd frame by frame up to
//! `HTTP_CACHE_MAX_OBJECT_BYTES` and stored only when it ended cleanly (a truncated, failed or
//! client-aborted capture is dropped). Redis writes run in spawned tasks bounded by a semaphore;
//! when all are busy the entry is dropped and counted. A Redis error or timeout makes the request
//! bypass the cache (counted, and `/ready` shows `cache: degraded`).

pub mod entry;
pub mod key;
pub mod memory;
pub mod policy;
pub mod redis;

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use chrono::{DateTime, Utc};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Uri};
use http_body::Frame;
use tokio::sync::Semaphore;

use crate::clock::{Precision, Rfc3339};
use crate::config::{HttpCacheBackend, HttpCacheConfig};
use crate::headers::{CACHE_STATUS, X_PROXY_CACHE, X_PROXY_CACHE_KEY, X_PROXY_FIRST_RESPONSE_AT};
use crate::metrics::Metrics;
use crate::redis_link::{ConnectionManager, FeatureHealth};
use entry::{CachedResponse, now_ms};
use key::CacheKey;
use memory::MemoryBackend;
use policy::{CacheControl, Eligibility, Storability};
use redis::{RedisBackend, Unavailable, escape_glob};

/// Redis stores running at once; more are dropped and counted.
const MAX_PENDING_STORES: usize = 64;

/// The response cache; cheap to clone.
#[derive(Clone)]
pub struct HttpCache(Arc<Inner>);

struct Inner {
    backend: Backend,
    key_prefix: String,
    stream_responses: bool,
    max_object_bytes: u64,
    default_ttl: Duration,
    metrics: Arc<Metrics>,
    store_slots: Arc<Semaphore>,
}

enum Backend {
    Memory(MemoryBackend),
    Redis(Arc<RedisBackend>),
}

/// What the cache decided about one request before the upstream is asked.
pub struct CachePlan {
    key: CacheKey,
    storage_key: String,
    request: CacheControl,
    /// Why the lookup was skipped or failed; `None` after a real lookup (a miss).
    bypass: Option<&'static str>,
    /// Whether the response may be stored (false after a Redis failure or for a `no-store` request).
    may_store: bool,
}

/// Which purge a management call asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurgeSelector {
    /// Only this project's entries; `None` = every project.
    pub project_id: Option<String>,
    pub target: PurgeTarget,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PurgeTarget {
    /// Every variant of one method + URL (the resource hash).
    Resource(String),
    /// Every entry whose public key (`X-PROXY-CACHE-KEY`) starts with this.
    KeyPrefix(String),
}

impl PurgeSelector {
    /// An exact purge of `method` + the path and query of `uri`.
    pub fn exact(project_id: Option<String>, method: &str, uri: &Uri) -> Self {
        let method = method.trim().to_ascii_uppercase();
        Self {
            project_id,
            target: PurgeTarget::Resource(key::resource_hash(&method, uri.path(), uri.query())),
        }
    }

    /// Whether an entry of `project` with public key `public_id` is selected.
    pub fn matches(&self, project: &str, public_id: &str) -> bool {
        if self.project_id.as_deref().is_some_and(|p| p != project) {
            return false;
        }
        match &self.target {
            PurgeTarget::Resource(resource) => public_id
                .split_once(':')
                .is_some_and(|(r, _)| r == resource),
            PurgeTarget::KeyPrefix(prefix) => public_id.starts_with(prefix.as_str()),
        }
    }

    fn redis_pattern(&self, key_prefix: &str) -> String {
        let project = self
            .project_id
            .as_deref()
            .map_or_else(|| "*".to_owned(), escape_glob);
        let tail = match &self.target {
            PurgeTarget::Resource(resource) => format!("{resource}:*"),
            PurgeTarget::KeyPrefix(prefix) => format!("{}*", escape_glob(prefix)),
        };
        format!("{}{project}:{tail}", escape_glob(key_prefix))
    }
}

/// A purge could not run (Redis unavailable).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PurgeFailed(#[from] Unavailable);

/// What a lookup found.
pub enum Lookup {
    Hit(Arc<CachedResponse>),
    Miss,
}

impl HttpCache {
    /// The cache of `config`, or `None` when caching is disabled. `shared_redis` is the process's
    /// shared connection, used by the `redis` backend unless `REDIS_CACHE_URL` gives it its own;
    /// the returned health is `Some` for the `redis` backend (for `/ready`).
    pub fn from_config(
        config: &HttpCacheConfig,
        shared_redis: Option<&ConnectionManager>,
        metrics: Arc<Metrics>,
    ) -> (Option<Self>, Option<Arc<FeatureHealth>>) {
        if !config.enabled {
            return (None, None);
        }
        let (backend, health) = match config.backend {
            HttpCacheBackend::InMemory => {
                (Backend::Memory(MemoryBackend::new(config.max_bytes)), None)
            }
            HttpCacheBackend::Redis => {
                let connection = match &config.redis {
                    Some(settings) => crate::redis_link::connect_lazy(settings).ok(),
                    None => shared_redis.cloned(),
                };
                let Some(connection) = connection else {
                    tracing::error!(
                        "HTTP cache: no Redis connection for the redis backend; caching disabled"
                    );
                    return (None, None);
                };
                let health = FeatureHealth::new("cache");
                let backend = RedisBackend::new(connection, config.redis_timeout, health.clone());
                (Backend::Redis(Arc::new(backend)), Some(health))
            }
        };
        let cache = Self(Arc::new(Inner {
            backend,
            key_prefix: config.key_prefix.clone(),
            stream_responses: config.stream_responses,
            max_object_bytes: config.max_object_bytes,
            default_ttl: config.default_ttl,
            metrics,
            store_slots: Arc::new(Semaphore::new(MAX_PENDING_STORES)),
        }));
        (Some(cache), health)
    }

    /// Decides whether the request uses the cache; `None` when it does not take part (methods other
    /// than GET/HEAD, POST without opt-in).
    pub fn plan(
        &self,
        project_id: &str,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Option<CachePlan> {
        let request = CacheControl::parse(headers);
        let body_hash = match policy::eligibility(method, &request, body, self.0.max_object_bytes) {
            Eligibility::Eligible { body_hash } => body_hash,
            Eligibility::NotInvolved => return None,
            Eligibility::BodyTooLarge => {
                self.0.metrics.record_cache_bypass("body_too_large");
                return None;
            }
        };
        let forced_ttl = (*method == Method::POST)
            .then(|| request.client_forced_ttl())
            .flatten();
        let key = CacheKey::new(
            project_id,
            method.as_str(),
            uri.path(),
            uri.query(),
            headers,
            body_hash.as_deref(),
            forced_ttl,
        );
        let bypass = if request.no_store {
            Some("request_no_store")
        } else if request.wants_revalidation() {
            Some("revalidate")
        } else {
            None
        };
        Some(CachePlan {
            storage_key: key.storage_key(&self.0.key_prefix),
            key,
            request,
            bypass,
            may_store: !request.no_store,
        })
    }

    /// Looks the request up (unless the plan bypasses the cache); counts hits, misses and bypasses.
    pub async fn lookup(&self, plan: &mut CachePlan) -> Lookup {
        if let Some(reason) = plan.bypass {
            self.0.metrics.record_cache_bypass(reason);
            return Lookup::Miss;
        }
        let found = match &self.0.backend {
            Backend::Memory(memory) => memory.get(&plan.storage_key),
            Backend::Redis(redis) => match redis.get(&plan.storage_key).await {
                Ok(found) => found.map(Arc::new),
                Err(err) => {
                    tracing::debug!(error = %err, "cache lookup failed; bypassing");
                    plan.bypass = Some("redis_unavailable");
                    plan.may_store = false;
                    self.0.metrics.record_cache_bypass("redis_unavailable");
                    return Lookup::Miss;
                }
            },
        };
        match found.filter(|entry| !entry.remaining().is_zero()) {
            Some(entry) => {
                self.0.metrics.record_cache_hit();
                Lookup::Hit(entry)
            }
            None => {
                self.0.metrics.record_cache_miss();
                Lookup::Miss
            }
        }
    }

    /// The response of a hit: the stored status, headers and body (none for HEAD), timing headers
    /// and `Date` refreshed, or `304` when the client's conditionals match. Returns the
    /// `X-PROXY-CACHE` value too (for the instrumentation event).
    pub fn serve(
        &self,
        plan: &CachePlan,
        entry: &CachedResponse,
        method: &Method,
        request_headers: &HeaderMap,
    ) -> (axum::response::Response, &'static str) {
        let not_modified = (*method == Method::GET || *method == Method::HEAD)
            && conditionals_match(entry, request_headers);
        let ttl = entry.remaining().as_secs();
        let (label, status_text) = if not_modified {
            (
                "conditional-hit",
                format!("llm-proxy; conditional-hit; ttl={ttl}"),
            )
        } else {
            ("hit", format!("llm-proxy; hit; ttl={ttl}"))
        };
        let mut headers = HeaderMap::with_capacity(entry.headers.len() + 8);
        for (name, value) in &entry.headers {
            if not_modified
                && !matches!(
                    name.as_str(),
                    "cache-control"
                        | "etag"
                        | "last-modified"
                        | "vary"
                        | "expires"
                        | "content-location"
                )
            {
                continue;
            }
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::try_from(value.as_str()),
            ) {
                headers.append(name, value);
            }
        }
        let now = Utc::now();
        if let Ok(date) = HeaderValue::try_from(now.format("%a, %d %b %Y %H:%M:%S GMT").to_string())
        {
            headers.insert(header::DATE, date);
        }
        headers.insert(header::AGE, HeaderValue::from(entry.age_seconds()));
        if let Ok(at) = HeaderValue::from_str(Rfc3339::now(Precision::Nanos).as_str()) {
            headers.insert(X_PROXY_FIRST_RESPONSE_AT, at);
        }
        self.stamp(&mut headers, plan, &status_text, Some(label));
        let status = if not_modified {
            StatusCode::NOT_MODIFIED
        } else {
            StatusCode::from_u16(entry.status).unwrap_or(StatusCode::OK)
        };
        let body = if not_modified || *method == Method::HEAD {
            Body::empty()
        } else if policy::is_event_stream(&headers) {
            let frames: Vec<Result<Bytes, std::convert::Infallible>> =
                sse_frames(&entry.body).into_iter().map(Ok).collect();
            Body::from_stream(futures::stream::iter(frames))
        } else {
            Body::from(entry.body.clone())
        };
        let mut response = axum::response::Response::new(body);
        *response.status_mut() = status;
        *response.headers_mut() = headers;
        (response, label)
    }

    /// Decides about storing the upstream response, sets the cache headers, and returns the body
    /// (tee'd into the cache when stored) and the `X-PROXY-CACHE` value for the event.
    pub fn on_response(
        &self,
        plan: CachePlan,
        status: StatusCode,
        headers: &mut HeaderMap,
        body: Body,
    ) -> (Body, &'static str) {
        let decision = if plan.may_store {
            policy::storability(
                status,
                headers,
                &plan.request,
                self.0.stream_responses,
                self.0.default_ttl,
            )
        } else {
            Storability::Skip("bypassed")
        };
        let too_large = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|length| length > self.0.max_object_bytes);
        let (ttl, forced) = match decision {
            Storability::Store { .. } if too_large => {
                self.0.metrics.record_cache_store_skipped("too_large");
                return self.not_stored(plan, headers, body);
            }
            Storability::Store { ttl, forced } => (ttl, forced),
            Storability::Skip(reason) => {
                if reason != "bypassed" {
                    self.0.metrics.record_cache_store_skipped(reason);
                }
                return self.not_stored(plan, headers, body);
            }
        };
        let mut kept: Vec<(String, String)> = headers
            .iter()
            .filter(|(name, _)| policy::keeps_header(name))
            .filter(|(name, _)| !(forced && **name == header::CACHE_CONTROL))
            .filter_map(|(name, value)| {
                Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
            })
            .collect();
        if forced {
            kept.push((
                "cache-control".to_owned(),
                format!("public, max-age={}", ttl.as_secs()),
            ));
        }
        let (label, text) = if forced {
            (
                "stored",
                format!("llm-proxy; stored (forced); ttl={}", ttl.as_secs()),
            )
        } else {
            (
                "stored",
                format!("llm-proxy; stored; ttl={}", ttl.as_secs()),
            )
        };
        self.stamp(headers, &plan, &text, Some(label));
        let capture = Capture {
            cache: self.clone(),
            storage_key: plan.storage_key,
            status: status.as_u16(),
            headers: kept,
            ttl,
            buffer: Some(BytesMut::new()),
        };
        (
            Body::new(CaptureBody {
                inner: body,
                capture: Some(capture),
            }),
            label,
        )
    }

    fn not_stored(
        &self,
        plan: CachePlan,
        headers: &mut HeaderMap,
        body: Body,
    ) -> (Body, &'static str) {
        if plan.bypass.is_some() {
            self.stamp(headers, &plan, "llm-proxy; bypass", Some("bypass"));
            (body, "bypass")
        } else {
            self.stamp(headers, &plan, "llm-proxy; miss", None);
            (body, "miss")
        }
    }

    fn stamp(
        &self,
        headers: &mut HeaderMap,
        plan: &CachePlan,
        cache_status: &str,
        x_proxy_cache: Option<&'static str>,
    ) {
        if let Ok(value) = HeaderValue::try_from(cache_status) {
            headers.insert(CACHE_STATUS, value);
        }
        if let Some(value) = x_proxy_cache {
            headers.insert(X_PROXY_CACHE, HeaderValue::from_static(value));
        }
        if let Ok(value) = HeaderValue::try_from(plan.key.public_id()) {
            headers.insert(X_PROXY_CACHE_KEY, value);
        }
    }

    /// Stores a complete capture: in memory at once, in Redis from a spawned task (dropped and
    /// counted when [`MAX_PENDING_STORES`] are already running).
    fn store(&self, storage_key: String, entry: CachedResponse) {
        match &self.0.backend {
            Backend::Memory(memory) => {
                memory.insert(storage_key, entry);
                self.0.metrics.record_cache_store();
            }
            Backend::Redis(redis) => {
                let Ok(permit) = self.0.store_slots.clone().try_acquire_owned() else {
                    self.0.metrics.record_cache_store_skipped("queue_full");
                    return;
                };
                let redis = redis.clone();
                let metrics = self.0.metrics.clone();
                tokio::spawn(async move {
                    match redis.set(&storage_key, &entry).await {
                        Ok(()) => metrics.record_cache_store(),
                        Err(err) => {
                            tracing::debug!(error = %err, "cache store failed");
                            metrics.record_cache_store_skipped("redis_unavailable");
                        }
                    }
                    drop(permit);
                });
            }
        }
    }

    /// Deletes the selected entries; returns how many.
    pub async fn purge(&self, selector: &PurgeSelector) -> Result<u64, PurgeFailed> {
        match &self.0.backend {
            Backend::Memory(memory) => Ok(memory.purge(&self.0.key_prefix, selector)),
            Backend::Redis(redis) => Ok(redis
                .purge(&selector.redis_pattern(&self.0.key_prefix))
                .await?),
        }
    }
}

/// `If-None-Match` (weak comparison, `*`) against the stored `ETag`, else `If-Modified-Since`
/// against the stored `Last-Modified`.
fn conditionals_match(entry: &CachedResponse, request: &HeaderMap) -> bool {
    if let Some(if_none_match) = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
    {
        let Some(etag) = entry.header("etag") else {
            return false;
        };
        let weak = |tag: &str| tag.trim().trim_start_matches("W/").to_owned();
        return if_none_match
            .split(',')
            .any(|tag| tag.trim() == "*" || weak(tag) == weak(etag));
    }
    let since = request
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| DateTime::parse_from_rfc2822(v).ok());
    let modified = entry
        .header("last-modified")
        .and_then(|v| DateTime::parse_from_rfc2822(v).ok());
    matches!((since, modified), (Some(since), Some(modified)) if modified <= since)
}

/// Splits an SSE body into its events (each ends with a blank line), as they were sent.
fn sse_frames(body: &Bytes) -> Vec<Bytes> {
    let mut frames = Vec::new();
    let mut start = 0;
    let data = body.as_ref();
    let mut index = 0;
    while index < data.len() {
        let end = if data[index..].starts_with(b"\n\n") {
            Some(index + 2)
        } else if data[index..].starts_with(b"\r\n\r\n") {
            Some(index + 4)
        } else {
            None
        };
        match end {
            Some(end) => {
                frames.push(body.slice(start..end));
                start = end;
                index = end;
            }
            None => index += 1,
        }
    }
    if start < data.len() {
        frames.push(body.slice(start..));
    }
    frames
}

/// A response being captured for the cache.
struct Capture {
    cache: HttpCache,
    storage_key: String,
    status: u16,
    headers: Vec<(String, String)>,
    ttl: Duration,
    /// `None` once the body outgrew `HTTP_CACHE_MAX_OBJECT_BYTES`.
    buffer: Option<BytesMut>,
}

impl Capture {
    fn observe(&mut self, data: &Bytes) {
        if let Some(buffer) = &mut self.buffer {
            if (buffer.len() + data.len()) as u64 > self.cache.0.max_object_bytes {
                self.buffer = None;
                self.cache.0.metrics.record_cache_store_skipped("too_large");
            } else {
                buffer.extend_from_slice(data);
            }
        }
    }

    fn complete(self) {
        let Some(buffer) = self.buffer else { return };
        let stored_at_ms = now_ms();
        let entry = CachedResponse {
            status: self.status,
            headers: self.headers,
            body: buffer.freeze(),
            stored_at_ms,
            expires_at_ms: stored_at_ms
                .saturating_add(u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX)),
        };
        self.cache.store(self.storage_key, entry);
    }

    fn abandon(self) {
        if self.buffer.is_some() {
            self.cache
                .0
                .metrics
                .record_cache_store_skipped("incomplete");
        }
    }
}

/// The upstream body with a capture tee: frames pass on unchanged; the capture is stored only at a
/// clean end of the body.
struct CaptureBody {
    inner: Body,
    capture: Option<Capture>,
}

impl http_body::Body for CaptureBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(capture)) = (frame.data_ref(), self.capture.as_mut()) {
                    capture.observe(data);
                }
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(capture) = self.capture.take() {
                    capture.abandon();
                }
            }
            Poll::Ready(None) => {
                if let Some(capture) = self.capture.take() {
                    capture.complete();
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for CaptureBody {
    fn drop(&mut self) {
        if let Some(capture) = self.capture.take() {
            // A body dropped at its end (hyper may stop polling after the last frame) is complete.
            if http_body::Body::is_end_stream(&self.inner) {
                capture.complete();
            } else {
                capture.abandon();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_bodies_split_into_their_events() {
        let body = Bytes::from_static(b"data: a\n\ndata: b\r\n\r\ndata: [DONE]\n\ntail");
        let frames = sse_frames(&body);
        assert_eq!(
            frames,
            vec![
                Bytes::from_static(b"data: a\n\n"),
                Bytes::from_static(b"data: b\r\n\r\n"),
                Bytes::from_static(b"data: [DONE]\n\n"),
                Bytes::from_static(b"tail"),
            ]
        );
    }

    #[test]
    fn purge_selectors_match_and_build_patterns() {
        let uri: Uri = "https://api.example/v1/models?b=2&a=1".parse().unwrap();
        let exact = PurgeSelector::exact(Some("p1".into()), "get", &uri);
        let resource = key::resource_hash("GET", "/v1/models", Some("a=1&b=2"));
        assert!(exact.matches("p1", &format!("{resource}:abc")));
        assert!(!exact.matches("p2", &format!("{resource}:abc")));
        assert!(!exact.matches("p1", "other:abc"));
        assert_eq!(exact.redis_pattern("llm:"), format!("llm:p1:{resource}:*"));
        let prefix = PurgeSelector {
            project_id: None,
            target: PurgeTarget::KeyPrefix("ab*".into()),
        };
        assert!(prefix.matches("any", "ab*cd:ef"));
        assert_eq!(prefix.redis_pattern("llm:"), "llm:*:ab\\**");
    }

    #[test]
    fn conditionals_compare_validators() {
        let entry = CachedResponse {
            status: 200,
            headers: vec![
                ("etag".into(), "W/\"v1\"".into()),
                (
                    "last-modified".into(),
                    "Wed, 21 Oct 2015 07:28:00 GMT".into(),
                ),
            ],
            body: Bytes::new(),
            stored_at_ms: 0,
            expires_at_ms: 0,
        };
        let request = |name: HeaderName, value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(name, value.parse().unwrap());
            headers
        };
        assert!(conditionals_match(
            &entry,
            &request(header::IF_NONE_MATCH, "\"v0\", \"v1\"")
        ));
        assert!(conditionals_match(
            &entry,
            &request(header::IF_NONE_MATCH, "*")
        ));
        assert!(!conditionals_match(
            &entry,
            &request(header::IF_NONE_MATCH, "\"v2\"")
        ));
        assert!(conditionals_match(
            &entry,
            &request(header::IF_MODIFIED_SINCE, "Wed, 21 Oct 2015 07:28:00 GMT")
        ));
        assert!(!conditionals_match(
            &entry,
            &request(header::IF_MODIFIED_SINCE, "Tue, 20 Oct 2015 07:28:00 GMT")
        ));
        assert!(!conditionals_match(&entry, &HeaderMap::new()));
    }
}
