//! The delivery loop: read a batch → transform → send in chunks → acknowledge what the backend
//! accepted (or refused for good).
//!
//! Retryable failures are retried with capped exponential backoff for as long as it takes; the
//! entries stay unacknowledged meanwhile, so a dispatcher that dies loses nothing: its pending
//! entries are redelivered to the same consumer name on restart, or claimed by another consumer
//! after `REDIS_STREAM_CLAIM_TIME`. Malformed entries, events not shipped by design and events the
//! backend refused for good are acknowledged and counted.

use std::sync::Arc;
use std::time::{Duration, Instant};

use llm_proxy_events::{Delivery, StreamConsumer, StreamEntry};
use tokio_util::sync::CancellationToken;

use crate::backend::{Backend, SendError};
use crate::config::RetryPolicy;
use crate::metrics::{DispatcherMetrics, RecentDeliveries};
use crate::transform::{EventPayload, Transformer};

/// Pause after a failed Redis operation, doubled up to the cap.
const REDIS_RETRY_INITIAL: Duration = Duration::from_millis(200);
const REDIS_RETRY_MAX: Duration = Duration::from_secs(5);
/// How often the pending gauge is refreshed.
const PENDING_SAMPLE_INTERVAL: Duration = Duration::from_secs(10);

/// One event on its way to the backend.
struct Unit {
    entry_id: String,
    request_id: String,
    payload: EventPayload,
}

/// The outcome of sending one chunk.
enum ChunkOutcome {
    Delivered,
    Refused,
    /// Shutdown arrived while waiting to retry; the entries stay pending.
    Interrupted,
}

/// Consumes the stream and feeds the backend.
pub struct DeliveryLoop {
    consumer: StreamConsumer,
    backend: Backend,
    transformer: Transformer,
    metrics: Arc<DispatcherMetrics>,
    chunk_size: usize,
    retry: RetryPolicy,
    recent: RecentDeliveries,
    last_pending_sample: Option<Instant>,
}

impl DeliveryLoop {
    /// A loop over `consumer` sending at most `chunk_size` events per backend request.
    pub fn new(
        consumer: StreamConsumer,
        backend: Backend,
        transformer: Transformer,
        metrics: Arc<DispatcherMetrics>,
        chunk_size: usize,
        retry: RetryPolicy,
    ) -> Self {
        let chunk_size = backend.max_batch(chunk_size);
        Self {
            consumer,
            backend,
            transformer,
            metrics,
            chunk_size,
            retry,
            recent: RecentDeliveries::default(),
            last_pending_sample: None,
        }
    }

    /// Runs until `shutdown` is cancelled. A batch being sent is finished (its retries stop at
    /// shutdown); the caller bounds the whole by `SHUTDOWN_TIMEOUT`.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut redis_backoff = REDIS_RETRY_INITIAL;
        while !shutdown.is_cancelled() {
            if !self.metrics.is_ready() {
                if let Err(error) = self.consumer.ensure_group().await {
                    self.redis_failed(&error);
                    if !pause(redis_backoff, &shutdown).await {
                        break;
                    }
                    redis_backoff = (redis_backoff * 2).min(REDIS_RETRY_MAX);
                    continue;
                }
                tracing::info!(
                    stream = %self.consumer.settings().stream_key,
                    group = %self.consumer.settings().group,
                    consumer = %self.consumer.settings().consumer,
                    "dispatcher consuming"
                );
                self.metrics.set_ready(true);
            }
            let batch = tokio::select! {
                batch = self.consumer.next_batch() => batch,
                () = shutdown.cancelled() => break,
            };
            match batch {
                Ok(entries) => {
                    redis_backoff = REDIS_RETRY_INITIAL;
                    self.process(entries, &shutdown).await;
                    self.sample_pending().await;
                }
                Err(error) => {
                    self.redis_failed(&error);
                    if !pause(redis_backoff, &shutdown).await {
                        break;
                    }
                    redis_backoff = (redis_backoff * 2).min(REDIS_RETRY_MAX);
                }
            }
        }
        tracing::info!("dispatcher stopped reading");
    }

    fn redis_failed(&self, error: &llm_proxy_events::ConsumerError) {
        self.metrics.redis_errors.inc();
        if self.metrics.is_ready() {
            tracing::warn!(error = %error, "dispatcher lost Redis; retrying");
        }
        self.metrics.set_ready(false);
    }

    async fn process(&mut self, entries: Vec<StreamEntry>, shutdown: &CancellationToken) {
        let mut settled = Vec::new();
        let mut units = Vec::with_capacity(entries.len());
        for entry in entries {
            self.metrics.received.inc();
            if entry.delivery == Delivery::Redelivered {
                self.metrics.redelivered.inc();
            }
            match entry.payload {
                Err(reason) => {
                    tracing::warn!(entry = %entry.id, reason = %reason, "dropping malformed stream entry");
                    self.metrics.malformed.inc();
                    settled.push(entry.id);
                }
                Ok(event) => match self.transformer.transform(&event) {
                    Some(payload) if self.backend.accepts(&payload) => {
                        units.push(Unit {
                            entry_id: entry.id,
                            request_id: event.request_id,
                            payload,
                        });
                    }
                    _ => {
                        self.metrics.skipped.inc();
                        settled.push(entry.id);
                    }
                },
            }
        }
        self.ack(&settled).await;
        for chunk in units.chunks(self.chunk_size) {
            let ids: Vec<String> = chunk.iter().map(|unit| unit.entry_id.clone()).collect();
            match self.send_chunk(chunk, shutdown).await {
                ChunkOutcome::Delivered => {
                    self.ack(&ids).await;
                    self.metrics.delivered.inc_by(chunk.len() as u64);
                    for unit in chunk {
                        if self.recent.record(&unit.request_id) {
                            self.metrics.duplicates.inc();
                        }
                    }
                }
                ChunkOutcome::Refused => {
                    self.ack(&ids).await;
                    self.metrics.permanent_failures.inc_by(chunk.len() as u64);
                }
                ChunkOutcome::Interrupted => return,
            }
        }
    }

    async fn send_chunk(&self, chunk: &[Unit], shutdown: &CancellationToken) -> ChunkOutcome {
        let payloads: Vec<EventPayload> = chunk.iter().map(|unit| unit.payload.clone()).collect();
        let mut backoff = self.retry.initial;
        loop {
            match self.backend.send(&payloads).await {
                Ok(()) => return ChunkOutcome::Delivered,
                Err(SendError::Permanent(reason)) => {
                    tracing::warn!(events = chunk.len(), reason = %reason, "backend refused events; dropping them");
                    return ChunkOutcome::Refused;
                }
                Err(SendError::Retryable(reason)) => {
                    self.metrics.retries.inc();
                    tracing::warn!(events = chunk.len(), reason = %reason, retry_in_ms = backoff.as_millis() as u64, "backend send failed");
                    if !pause(backoff, shutdown).await {
                        return ChunkOutcome::Interrupted;
                    }
                    backoff = (backoff * 2).min(self.retry.max);
                }
            }
        }
    }

    /// Acknowledges settled entries. A failed XACK only means a later redelivery (counted).
    async fn ack(&mut self, ids: &[String]) {
        if let Err(error) = self.consumer.ack(ids).await {
            self.redis_failed(&error);
        }
    }

    async fn sample_pending(&mut self) {
        if self
            .last_pending_sample
            .is_some_and(|at| at.elapsed() < PENDING_SAMPLE_INTERVAL)
        {
            return;
        }
        self.last_pending_sample = Some(Instant::now());
        match self.consumer.pending_count().await {
            Ok(count) => {
                self.metrics
                    .pending
                    .set(i64::try_from(count).unwrap_or(i64::MAX));
            }
            Err(error) => self.redis_failed(&error),
        }
    }
}

/// Sleeps for `duration`; false when shutdown arrived first.
async fn pause(duration: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        () = tokio::time::sleep(duration) => true,
        () = shutdown.cancelled() => false,
    }
}
