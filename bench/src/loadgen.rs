//! The load driver: closed loop (fixed concurrency, for a request count or a duration) and open
//! loop (fixed arrival rate, latency measured from the intended send time so a slow server cannot
//! hide its queueing: no coordinated omission). Records total latency, time to first body byte and
//! gaps between body frames (for SSE streams).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::net::DriverClient;
use crate::stats::{Latencies, Percentiles};

/// One kind of request, sent over and over.
#[derive(Debug, Clone, Default)]
pub struct RequestSpec {
    /// Full URI, e.g. `http://127.0.0.1:8080/v1/chat/completions`.
    pub uri: Uri,
    pub body: Bytes,
    /// Value of the `Authorization` header, if any.
    pub authorization: Option<HeaderValue>,
    /// The status a successful exchange has (200, or 401 for the rejection scenario).
    pub expected_status: StatusCode,
    /// Further request headers (e.g. the client's `Cache-Control` opt-in).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// A response header a successful exchange must carry (e.g. `X-PROXY-CACHE: hit`); an
    /// answer without it counts as an unexpected status.
    pub required_header: Option<(HeaderName, HeaderValue)>,
}

impl RequestSpec {
    fn build(&self) -> Result<Request<Full<Bytes>>, http::Error> {
        let mut builder = Request::builder()
            .method(Method::POST)
            .uri(self.uri.clone())
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(authorization) = &self.authorization {
            builder = builder.header(header::AUTHORIZATION, authorization.clone());
        }
        for (name, value) in &self.headers {
            builder = builder.header(name, value.clone());
        }
        builder.body(Full::new(self.body.clone()))
    }
}

/// When a closed loop stops.
#[derive(Debug, Clone, Copy)]
pub enum Stop {
    /// After this many requests in total.
    Requests(u64),
    /// After this long (requests in flight finish and count).
    Duration(Duration),
}

/// What one load run measured.
#[derive(Debug, Clone, Default)]
pub struct LoadResult {
    /// Send to end of body, expected-status exchanges only.
    pub latency: Latencies,
    /// Send to first body frame.
    pub first_byte: Latencies,
    /// Between consecutive body frames of one response.
    pub frame_gaps: Latencies,
    pub expected: u64,
    pub unexpected_status: u64,
    pub transport_errors: u64,
    pub elapsed: Duration,
}

impl LoadResult {
    /// Expected-status exchanges per second.
    pub fn rps(&self) -> f64 {
        let seconds = self.elapsed.as_secs_f64();
        if seconds > 0.0 {
            self.expected as f64 / seconds
        } else {
            0.0
        }
    }

    fn merge(&mut self, other: &LoadResult) {
        self.latency.merge(&other.latency);
        self.first_byte.merge(&other.first_byte);
        self.frame_gaps.merge(&other.frame_gaps);
        self.expected += other.expected;
        self.unexpected_status += other.unexpected_status;
        self.transport_errors += other.transport_errors;
    }

    /// Adds a later run of the same target: counts, latencies and elapsed time add up.
    pub fn append(&mut self, later: &LoadResult) {
        self.merge(later);
        self.elapsed += later.elapsed;
    }

    pub fn summary(&self) -> LoadSummary {
        LoadSummary {
            rps: self.rps(),
            latency: self.latency.summary(),
            first_byte: self.first_byte.summary(),
            frame_gaps: self.frame_gaps.summary(),
            expected: self.expected,
            unexpected_status: self.unexpected_status,
            transport_errors: self.transport_errors,
            elapsed_s: self.elapsed.as_secs_f64(),
        }
    }
}

/// The serialisable digest of a [`LoadResult`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LoadSummary {
    pub rps: f64,
    pub latency: Percentiles,
    pub first_byte: Percentiles,
    pub frame_gaps: Percentiles,
    pub expected: u64,
    pub unexpected_status: u64,
    pub transport_errors: u64,
    pub elapsed_s: f64,
}

/// Sends one request from `sent_at` (the intended send time) and records it into `result`.
async fn exchange(
    client: &DriverClient,
    spec: &RequestSpec,
    sent_at: Instant,
    result: &mut LoadResult,
) {
    let Ok(request) = spec.build() else {
        result.transport_errors += 1;
        return;
    };
    let response = match client.request(request).await {
        Ok(response) => response,
        Err(_) => {
            result.transport_errors += 1;
            return;
        }
    };
    let as_expected = response.status() == spec.expected_status
        && spec
            .required_header
            .as_ref()
            .is_none_or(|(name, value)| response.headers().get(name) == Some(value));
    let mut body = response.into_body();
    let mut previous_frame: Option<Instant> = None;
    loop {
        match body.frame().await {
            Some(Ok(frame)) => {
                if frame.data_ref().is_none_or(|data| data.is_empty()) {
                    continue;
                }
                let now = Instant::now();
                match previous_frame {
                    None => result.first_byte.record(now - sent_at),
                    Some(previous) => result.frame_gaps.record(now - previous),
                }
                previous_frame = Some(now);
            }
            Some(Err(_)) => {
                result.transport_errors += 1;
                return;
            }
            None => break,
        }
    }
    if as_expected {
        result.latency.record(sent_at.elapsed());
        result.expected += 1;
    } else {
        result.unexpected_status += 1;
    }
}

/// Runs `concurrency` workers, each sending its next request as soon as the previous one ended.
pub async fn closed_loop(
    client: &DriverClient,
    spec: &RequestSpec,
    concurrency: usize,
    stop: Stop,
) -> LoadResult {
    let issued = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = match stop {
        Stop::Duration(duration) => Some(started + duration),
        Stop::Requests(_) => None,
    };
    let limit = match stop {
        Stop::Requests(count) => count,
        Stop::Duration(_) => u64::MAX,
    };
    let mut workers = Vec::with_capacity(concurrency);
    for _ in 0..concurrency.max(1) {
        let client = client.clone();
        let spec = spec.clone();
        let issued = issued.clone();
        workers.push(tokio::spawn(async move {
            let mut result = LoadResult::default();
            loop {
                if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                    break;
                }
                if issued.fetch_add(1, Ordering::Relaxed) >= limit {
                    break;
                }
                exchange(&client, &spec, Instant::now(), &mut result).await;
            }
            result
        }));
    }
    collect(workers, started).await
}

/// Sends `rate` requests per second for `duration`, each at its scheduled instant whatever the
/// state of earlier ones; at most `max_in_flight` at once (later ones count as transport errors).
pub async fn open_loop(
    client: &DriverClient,
    spec: &RequestSpec,
    rate: f64,
    duration: Duration,
    max_in_flight: usize,
) -> LoadResult {
    let started = Instant::now();
    let total = (rate * duration.as_secs_f64()).floor() as u64;
    let in_flight = Arc::new(Semaphore::new(max_in_flight.max(1)));
    let mut refused = 0u64;
    let mut tasks = Vec::new();
    for index in 0..total {
        let scheduled =
            started + Duration::from_secs_f64(index as f64 / rate.max(f64::MIN_POSITIVE));
        tokio::time::sleep_until(scheduled).await;
        let Ok(permit) = in_flight.clone().try_acquire_owned() else {
            refused += 1;
            continue;
        };
        let client = client.clone();
        let spec = spec.clone();
        tasks.push(tokio::spawn(async move {
            let mut result = LoadResult::default();
            exchange(&client, &spec, scheduled, &mut result).await;
            drop(permit);
            result
        }));
    }
    let mut result = collect(tasks, started).await;
    result.transport_errors += refused;
    result
}

async fn collect(tasks: Vec<tokio::task::JoinHandle<LoadResult>>, started: Instant) -> LoadResult {
    let mut total = LoadResult::default();
    for task in tasks {
        match task.await {
            Ok(result) => total.merge(&result),
            Err(_) => total.transport_errors += 1,
        }
    }
    total.elapsed = started.elapsed();
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appended_runs_add_their_time_and_counts() {
        let run = |expected, seconds| LoadResult {
            expected,
            elapsed: Duration::from_secs(seconds),
            ..LoadResult::default()
        };
        let mut total = run(100, 1);
        total.append(&run(300, 1));
        assert_eq!(total.expected, 400);
        assert_eq!(total.rps(), 200.0);
    }
    use crate::mock::{self, MockSettings};

    async fn mock_uri(settings: MockSettings) -> Uri {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(mock::serve(listener, settings));
        format!("http://{addr}/v1/chat/completions")
            .parse()
            .unwrap()
    }

    fn settings(chunks: usize) -> MockSettings {
        MockSettings {
            delay: Duration::ZERO,
            stream_chunks: chunks,
            chunk_interval: Duration::from_millis(1),
        }
    }

    #[tokio::test]
    async fn closed_loop_sends_exactly_the_requested_count() {
        let spec = RequestSpec {
            uri: mock_uri(settings(0)).await,
            body: Bytes::from_static(b"{\"model\":\"m\"}"),
            authorization: None,
            expected_status: StatusCode::OK,
            ..RequestSpec::default()
        };
        let result = closed_loop(&crate::net::pooled_client(), &spec, 4, Stop::Requests(50)).await;
        assert_eq!(result.expected, 50);
        assert_eq!(result.unexpected_status + result.transport_errors, 0);
        assert_eq!(result.latency.count(), 50);
        assert_eq!(result.first_byte.count(), 50);
    }

    #[tokio::test]
    async fn streams_record_one_gap_per_frame_after_the_first() {
        let spec = RequestSpec {
            uri: mock_uri(settings(5)).await,
            body: Bytes::from_static(b"{\"stream\":true}"),
            authorization: None,
            expected_status: StatusCode::OK,
            ..RequestSpec::default()
        };
        let result = closed_loop(&crate::net::pooled_client(), &spec, 1, Stop::Requests(2)).await;
        assert_eq!(result.expected, 2);
        // 5 content chunks + usage + [DONE] = 7 frames at most; loopback may coalesce the last ones.
        let gaps = result.frame_gaps.count();
        assert!((8..=12).contains(&gaps), "gaps recorded: {gaps}");
    }

    #[tokio::test]
    async fn an_unexpected_status_is_counted_not_timed() {
        let spec = RequestSpec {
            uri: mock_uri(settings(0)).await,
            body: Bytes::from_static(b"{}"),
            authorization: None,
            expected_status: StatusCode::UNAUTHORIZED,
            ..RequestSpec::default()
        };
        let result = closed_loop(&crate::net::pooled_client(), &spec, 2, Stop::Requests(6)).await;
        assert_eq!(result.expected, 0);
        assert_eq!(result.unexpected_status, 6);
        assert_eq!(result.latency.count(), 0);
    }

    #[tokio::test]
    async fn open_loop_sends_rate_times_duration() {
        let spec = RequestSpec {
            uri: mock_uri(settings(0)).await,
            body: Bytes::from_static(b"{}"),
            authorization: None,
            expected_status: StatusCode::OK,
            ..RequestSpec::default()
        };
        let result = open_loop(
            &crate::net::pooled_client(),
            &spec,
            200.0,
            Duration::from_millis(100),
            64,
        )
        .await;
        assert_eq!(
            result.expected + result.transport_errors + result.unexpected_status,
            20
        );
        assert_eq!(result.unexpected_status, 0);
    }

    #[tokio::test]
    async fn extra_headers_are_sent_and_a_missing_required_header_is_unexpected() {
        let spec = RequestSpec {
            uri: mock_uri(settings(0)).await,
            body: Bytes::from_static(b"{}"),
            authorization: None,
            expected_status: StatusCode::OK,
            headers: vec![(
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=600"),
            )],
            required_header: Some((
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )),
        };
        let client = crate::net::pooled_client();
        let present = closed_loop(&client, &spec, 1, Stop::Requests(3)).await;
        assert_eq!(present.expected, 3);
        let absent = RequestSpec {
            required_header: Some((
                HeaderName::from_static("x-proxy-cache"),
                HeaderValue::from_static("hit"),
            )),
            ..spec
        };
        let missing = closed_loop(&client, &absent, 1, Stop::Requests(3)).await;
        assert_eq!(missing.expected, 0);
        assert_eq!(missing.unexpected_status, 3);
        assert_eq!(missing.latency.count(), 0);
    }
}
