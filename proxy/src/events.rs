//! Instrumentation events: one per `/v1` exchange, captured on the data path and handed to the event
//! bus (`llm-proxy-events`) without waiting.
//!
//! The request body (POST, PUT, PATCH) is captured up to `OBSERVABILITY_MAX_REQUEST_BODY_BYTES`, the
//! response body up to `OBSERVABILITY_MAX_RESPONSE_BODY_BYTES` while it streams to the client (never
//! delaying a frame). The event is published when the response ends, fails, or is dropped because the
//! client left; in that case it carries what was seen and `ClientAborted`.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode, header};
use llm_proxy_events::{EventPublisher, InstrumentationEvent};
use uuid::Uuid;

use crate::config::ObservabilityConfig;

/// The bus and the capture limits.
pub struct EventTap {
    publisher: EventPublisher,
    max_request_body: usize,
    max_response_body: usize,
}

/// What the data path learned about the request before the upstream answered.
#[derive(Debug, Default)]
pub struct RequestFacts {
    /// The whole request body as received (captured up to the limit when the event is built).
    pub body: Bytes,
    pub project_id: Option<String>,
    pub token_id: Option<Uuid>,
    /// `X-PROXY-CACHE` value (`hit`, `miss`, `stored`, …) when the HTTP cache took part.
    pub cache_status: Option<&'static str>,
}

/// An event being filled while the response streams.
pub struct Recording {
    publisher: EventPublisher,
    event: InstrumentationEvent,
    response_limit: usize,
}

impl EventTap {
    pub fn new(publisher: EventPublisher, config: &ObservabilityConfig) -> Self {
        Self {
            publisher,
            max_request_body: config.max_request_body_bytes,
            max_response_body: config.max_response_body_bytes,
        }
    }

    /// Whether an event would reach anyone (see [`EventPublisher::has_audience`]); when not, the data
    /// path records nothing.
    pub fn is_heard(&self) -> bool {
        self.publisher.has_audience()
    }

    /// Starts the event of a response about to be sent.
    pub fn record(
        &self,
        request_id: Uuid,
        method: &Method,
        path: &str,
        facts: RequestFacts,
        status: StatusCode,
        response_headers: &HeaderMap,
    ) -> Recording {
        let captures_body = matches!(*method, Method::POST | Method::PUT | Method::PATCH);
        let mut truncated = false;
        let request_body = if captures_body {
            truncated = facts.body.len() > self.max_request_body;
            facts
                .body
                .slice(..facts.body.len().min(self.max_request_body))
                .to_vec()
        } else {
            Vec::new()
        };
        let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (name, value) in response_headers {
            if let Ok(value) = value.to_str() {
                headers
                    .entry(name.as_str().to_owned())
                    .or_default()
                    .push(value.to_owned());
            }
        }
        let streaming = response_headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("text/event-stream"));
        Recording {
            publisher: self.publisher.clone(),
            event: InstrumentationEvent {
                request_id: request_id.to_string(),
                method: method.to_string(),
                path: path.to_owned(),
                status: status.as_u16(),
                response_headers: headers,
                request_body,
                project_id: facts.project_id,
                token_id: facts.token_id.map(|id| id.to_string()),
                streaming,
                truncated,
                cache_status: facts.cache_status.map(str::to_owned),
                ..InstrumentationEvent::default()
            },
            response_limit: self.max_response_body,
        }
    }
}

impl Recording {
    /// Adds a response frame to the capture (up to the limit).
    pub fn observe(&mut self, data: &[u8]) {
        let room = self
            .response_limit
            .saturating_sub(self.event.response_body.len());
        if data.len() > room {
            self.event.truncated = true;
        }
        self.event
            .response_body
            .extend_from_slice(data.get(..room.min(data.len())).unwrap_or_default());
    }

    /// Publishes the event without waiting.
    pub fn publish(mut self, duration: Duration, client_aborted: bool) {
        self.event.duration = duration;
        self.event.client_aborted = client_aborted;
        self.publisher.publish(self.event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tap(max_request: usize, max_response: usize) -> EventTap {
        EventTap {
            publisher: EventPublisher::in_memory(8),
            max_request_body: max_request,
            max_response_body: max_response,
        }
    }

    #[tokio::test]
    async fn bodies_are_captured_up_to_their_limits() {
        let tap = tap(4, 6);
        let mut subscription = tap.publisher.subscribe().unwrap();
        let facts = RequestFacts {
            body: Bytes::from_static(b"0123456789"),
            project_id: Some("p".into()),
            token_id: Some(Uuid::nil()),
            cache_status: None,
        };
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, "text/event-stream".parse().unwrap());
        let mut recording = tap.record(
            Uuid::nil(),
            &Method::POST,
            "/v1/x",
            facts,
            StatusCode::OK,
            &headers,
        );
        recording.observe(b"abcd");
        recording.observe(b"efgh");
        recording.publish(Duration::from_millis(5), true);
        let event = subscription.recv().await.unwrap();
        assert_eq!(event.request_body, b"0123");
        assert_eq!(event.response_body, b"abcdef");
        assert!(event.truncated && event.streaming && event.client_aborted);
        assert_eq!(event.project_id.as_deref(), Some("p"));
        assert_eq!(event.duration, Duration::from_millis(5));
    }

    #[tokio::test]
    async fn get_requests_capture_no_request_body() {
        let tap = tap(100, 100);
        let mut subscription = tap.publisher.subscribe().unwrap();
        let facts = RequestFacts {
            body: Bytes::from_static(b"ignored"),
            ..RequestFacts::default()
        };
        tap.record(
            Uuid::nil(),
            &Method::GET,
            "/v1/models",
            facts,
            StatusCode::OK,
            &HeaderMap::new(),
        )
        .publish(Duration::ZERO, false);
        let event = subscription.recv().await.unwrap();
        assert!(event.request_body.is_empty() && !event.truncated && !event.streaming);
    }
}
