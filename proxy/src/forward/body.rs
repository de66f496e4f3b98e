//! The response body of a `/v1` exchange: frames pass through untouched while the exchange is
//! observed (bytes, captured event body, idle time), and its end, failure or abandonment is
//! recorded once (metrics, request log, instrumentation event).

use std::future::Future as _;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use bytes::Bytes;
use http::{Method, StatusCode};
use http_body::{Frame, SizeHint};
use tokio::sync::OwnedSemaphorePermit;
use uuid::Uuid;

use crate::events::Recording;
use crate::metrics::Metrics;

/// Counts a request as in flight until dropped.
pub(super) struct InFlight(Arc<Metrics>);

impl InFlight {
    pub(super) fn start(metrics: Arc<Metrics>) -> Self {
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
pub(super) struct Exchange {
    pub(super) metrics: Arc<Metrics>,
    pub(super) request_id: Uuid,
    pub(super) method: Method,
    pub(super) path: String,
    pub(super) route: Arc<str>,
    pub(super) status: StatusCode,
    pub(super) error_code: Option<&'static str>,
    pub(super) started: Instant,
    pub(super) bytes: u64,
    pub(super) recording: Option<Recording>,
    pub(super) _permit: Option<OwnedSemaphorePermit>,
    pub(super) _in_flight: InFlight,
}

#[derive(Debug, Clone, Copy)]
enum Outcome {
    Complete,
    UpstreamFailed,
    UpstreamIdle,
    ClientGone,
}

impl Outcome {
    /// The request log's `outcome` value.
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Complete => "Complete",
            Outcome::UpstreamFailed => "UpstreamFailed",
            Outcome::UpstreamIdle => "UpstreamIdle",
            Outcome::ClientGone => "ClientGone",
        }
    }
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
        // Plain `&str` fields: the log formatter writes them without going through `fmt`.
        let mut id_text = [0u8; uuid::fmt::Hyphenated::LENGTH];
        tracing::info!(
            request_id = self.request_id.hyphenated().encode_lower(&mut id_text) as &str,
            method = self.method.as_str(),
            path = self.path.as_str(),
            status = self.status.as_u16(),
            duration_ms = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
            bytes = self.bytes,
            code = self.error_code.unwrap_or(""),
            outcome = outcome.as_str(),
            "request"
        );
    }
}

/// The response body: frames pass through untouched; the exchange is recorded at its end.
///
/// A body that produces nothing for `REQUEST_TIMEOUT` (an upstream that stalls mid-stream) is ended
/// with an error, so a stuck upstream cannot hold a connection forever; an upstream that keeps
/// sending is never cut, however long the stream lasts.
pub(super) struct TrackedBody {
    pub(super) inner: Body,
    pub(super) exchange: Option<Exchange>,
    pub(super) idle: IdleTimer,
}

/// The idle limit of a response body, armed only while the body is waiting: a body whose frames are
/// ready whenever polled (a buffered completion) never touches the timer wheel, and a stream reads
/// the clock once per wait rather than once per frame.
pub(super) struct IdleTimer {
    limit: Duration,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    /// A frame arrived since the deadline was set: the next wait starts a new idle period.
    stale: bool,
}

impl IdleTimer {
    pub(super) fn new(limit: Duration) -> Self {
        Self {
            limit,
            sleep: None,
            stale: true,
        }
    }

    fn frame_arrived(&mut self) {
        self.stale = true;
    }

    /// Called when the body is pending: whether the idle limit has passed since the last frame.
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        if self.stale {
            self.stale = false;
            let deadline = tokio::time::Instant::now() + self.limit;
            match self.sleep.as_mut() {
                Some(sleep) => sleep.as_mut().reset(deadline),
                None => self.sleep = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
        }
        self.sleep
            .as_mut()
            .is_some_and(|sleep| sleep.as_mut().poll(cx).is_ready())
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
            if self.exchange.is_some() && self.idle.expired(cx) {
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
        self.idle.frame_arrived();
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
    use std::task::Context;

    use futures::task::noop_waker_ref;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_idle_limit_counts_from_the_last_frame_and_only_while_waiting() {
        let mut cx = Context::from_waker(noop_waker_ref());
        let mut idle = IdleTimer::new(Duration::from_millis(100));
        assert!(idle.sleep.is_none(), "no timer before the body waits");
        assert!(!idle.expired(&mut cx));
        tokio::time::advance(Duration::from_millis(60)).await;
        idle.frame_arrived();
        assert!(!idle.expired(&mut cx), "a frame starts a new idle period");
        tokio::time::advance(Duration::from_millis(60)).await;
        assert!(
            !idle.expired(&mut cx),
            "120 ms since the start, 60 since the frame"
        );
        tokio::time::advance(Duration::from_millis(50)).await;
        assert!(idle.expired(&mut cx), "110 ms without a frame");
    }
}
