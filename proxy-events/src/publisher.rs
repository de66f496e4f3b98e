//! Publishing instrumentation events without ever waiting on I/O in the caller.
//!
//! [`EventPublisher::publish`] only hands the event to a bounded in-process structure:
//! - in-memory bus: a bounded `tokio::sync::broadcast` ring shared by all subscribers; a subscriber
//!   that falls behind loses the oldest events and the loss is counted as `lagged`;
//! - Redis Streams: a bounded queue drained by one background writer that `XADD`s the events. While
//!   Redis is unreachable the writer keeps retrying with capped backoff, the queue holds what it can,
//!   and everything beyond it is dropped and counted. [`EventPublisher::shutdown`] flushes the queue
//!   within a bound. With a spool ([`EventPublisher::redis_streams_spooled`], the server's default)
//!   the writer instead moves the events into a bounded local file ([`crate::spool`]) as soon as
//!   Redis refuses a batch or a write takes longer than [`SLOW_WRITE`], keeps draining the queue
//!   into it, and replays it in publish order before any newer event once Redis answers. Delivery
//!   is at least once, in publish order: a batch Redis applied but did not confirm (timeout,
//!   connection cut) is written again, and a spool left by a process that died is replayed whole by
//!   the next one.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::event::InstrumentationEvent;
use crate::settings::StreamSettings;
use crate::spool::{Spool, SpoolError, SpoolSettings};
use llm_proxy_env::EventBusKind;

/// Events written to Redis in one pipeline.
const WRITE_BATCH: usize = 64;
/// First and largest pause between attempts to reach Redis.
const RETRY_INITIAL_BACKOFF: Duration = Duration::from_millis(100);
const RETRY_MAX_BACKOFF: Duration = Duration::from_secs(5);
/// A write to Redis still unanswered after this long moves its batch and the queue to the spool.
pub const SLOW_WRITE: Duration = Duration::from_millis(200);
/// Response timeout of the publisher's Redis commands.
pub const PUBLISHER_REDIS_TIMEOUT: Duration = Duration::from_secs(5);

/// Counters of the publishing side, shared with the background writer.
#[derive(Debug, Clone, Default)]
pub struct PublisherMetrics {
    /// Events accepted by the bus.
    pub published: Counter,
    /// Events dropped because the queue was full, the bus was shut down, or the flush bound expired.
    pub dropped: Counter,
    /// Events an in-memory subscriber missed because it fell behind.
    pub lagged: Counter,
    /// Events written to the Redis stream.
    pub written: Counter,
    /// Failed attempts to write to Redis.
    pub write_errors: Counter,
    /// 1 while the bus can deliver (always 1 in memory), 0 while Redis is unreachable.
    pub connected: Gauge,
}

impl PublisherMetrics {
    /// Registers the counters under `llm_proxy_event_bus_*`.
    pub fn register(&self, registry: &mut Registry) {
        let sub = registry.sub_registry_with_prefix("llm_proxy_event_bus");
        sub.register(
            "published",
            "Events accepted by the event bus",
            self.published.clone(),
        );
        sub.register(
            "dropped",
            "Events dropped (queue full, shutdown or flush bound)",
            self.dropped.clone(),
        );
        sub.register(
            "lagged",
            "Events missed by slow in-memory subscribers",
            self.lagged.clone(),
        );
        sub.register(
            "written",
            "Events written to the Redis stream",
            self.written.clone(),
        );
        sub.register(
            "write_errors",
            "Failed attempts to write to Redis",
            self.write_errors.clone(),
        );
        sub.register(
            "connected",
            "1 when the event bus can deliver, 0 when degraded",
            self.connected.clone(),
        );
    }
}

/// What `/ready` and the metrics endpoint report about the bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BusHealth {
    /// The configured bus.
    pub kind: EventBusKind,
    /// False while the last attempt to write to Redis failed, and while events wait in the spool.
    pub connected: bool,
    /// Events waiting in the queue.
    pub queued: usize,
}

/// Where to append events in Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamTarget {
    /// The stream key.
    pub stream_key: String,
    /// Approximate MAXLEN; 0 = no trimming.
    pub max_len: u64,
}

impl From<&StreamSettings> for StreamTarget {
    fn from(settings: &StreamSettings) -> Self {
        Self {
            stream_key: settings.stream_key.clone(),
            max_len: settings.max_len,
        }
    }
}

/// The proxy's handle on the event bus; cheap to clone.
#[derive(Clone)]
pub struct EventPublisher {
    inner: Arc<Inner>,
}

struct Inner {
    sink: Sink,
    metrics: PublisherMetrics,
    connected: Arc<AtomicBool>,
    stop: CancellationToken,
    writer: tokio::sync::Mutex<Option<JoinHandle<()>>>,
}

enum Sink {
    InMemory(broadcast::Sender<Arc<InstrumentationEvent>>),
    RedisStreams(mpsc::Sender<InstrumentationEvent>),
}

impl EventPublisher {
    /// An in-process bus whose subscribers each see up to `buffer` unread events.
    pub fn in_memory(buffer: usize) -> Self {
        let (sender, _) = broadcast::channel(buffer.max(1));
        let metrics = PublisherMetrics::default();
        metrics.connected.set(1);
        Self {
            inner: Arc::new(Inner {
                sink: Sink::InMemory(sender),
                metrics,
                connected: Arc::new(AtomicBool::new(true)),
                stop: CancellationToken::new(),
                writer: tokio::sync::Mutex::new(None),
            }),
        }
    }

    /// A Redis Streams bus holding up to `buffer` unwritten events. Spawns the background writer on
    /// the current Tokio runtime; it does not wait for Redis to be reachable (events queue meanwhile).
    pub fn redis_streams(
        connection: redis::aio::ConnectionManager,
        target: StreamTarget,
        buffer: usize,
    ) -> Self {
        Self::spawn_writer(
            connection,
            target,
            buffer,
            None,
            PublisherMetrics::default(),
        )
    }

    /// A Redis Streams bus like [`Self::redis_streams`] whose writer overflows into the spool file of
    /// `spool` instead of dropping while Redis is unreachable, and first replays what an earlier
    /// process left in it. Fails when the file cannot be created or read.
    pub fn redis_streams_spooled(
        connection: redis::aio::ConnectionManager,
        target: StreamTarget,
        buffer: usize,
        spool: &SpoolSettings,
    ) -> Result<Self, SpoolError> {
        let metrics = PublisherMetrics::default();
        let spool = Spool::open(spool, metrics.dropped.clone())?;
        Ok(Self::spawn_writer(
            connection,
            target,
            buffer,
            Some(spool),
            metrics,
        ))
    }

    fn spawn_writer(
        connection: redis::aio::ConnectionManager,
        target: StreamTarget,
        buffer: usize,
        spool: Option<Spool>,
        metrics: PublisherMetrics,
    ) -> Self {
        let (sender, receiver) = mpsc::channel(buffer.max(1));
        // Optimistic until the first write says otherwise (or a spool waits to be replayed).
        let ready = spool.as_ref().is_none_or(Spool::is_empty);
        metrics.connected.set(i64::from(ready));
        let connected = Arc::new(AtomicBool::new(ready));
        let stop = CancellationToken::new();
        let writer = StreamWriter {
            connection,
            target,
            metrics: metrics.clone(),
            connected: connected.clone(),
        };
        let handle = match spool {
            None => tokio::spawn(writer.run(receiver, stop.clone())),
            Some(spool) => tokio::spawn(writer.run_spooled(spool, receiver, stop.clone())),
        };
        Self {
            inner: Arc::new(Inner {
                sink: Sink::RedisStreams(sender),
                metrics,
                connected,
                stop,
                writer: tokio::sync::Mutex::new(Some(handle)),
            }),
        }
    }

    /// The bus selected by `kind`: in memory, or Redis Streams over a new connection manager from
    /// `redis` (no connection is attempted here). Call from within a Tokio runtime.
    pub fn from_settings(
        kind: EventBusKind,
        redis: &crate::RedisSettings,
        stream: &StreamSettings,
    ) -> Result<Self, redis::RedisError> {
        match kind {
            EventBusKind::InMemory => Ok(Self::in_memory(stream.buffer_size)),
            EventBusKind::RedisStreams => Ok(Self::redis_streams(
                redis.connection_manager(PUBLISHER_REDIS_TIMEOUT)?,
                StreamTarget::from(stream),
                stream.buffer_size,
            )),
        }
    }

    /// Hands `event` to the bus without waiting; when the queue is full the event is dropped and counted.
    pub fn publish(&self, event: InstrumentationEvent) {
        let metrics = &self.inner.metrics;
        match &self.inner.sink {
            Sink::InMemory(sender) => {
                // An error only means nobody subscribes right now: nothing to deliver to.
                let _ = sender.send(Arc::new(event));
                metrics.published.inc();
            }
            Sink::RedisStreams(sender) => match sender.try_send(event) {
                Ok(()) => {
                    metrics.published.inc();
                }
                Err(_) => {
                    metrics.dropped.inc();
                }
            },
        }
    }

    /// Whether a published event can reach anyone. An in-memory bus without subscribers discards
    /// every event, so the data path skips capturing bodies for it; Redis Streams always has an
    /// audience (the stream itself).
    pub fn has_audience(&self) -> bool {
        match &self.inner.sink {
            Sink::InMemory(sender) => sender.receiver_count() > 0,
            Sink::RedisStreams(_) => true,
        }
    }

    /// A new subscriber of the in-memory bus (it sees events published from now on); `None` on Redis,
    /// where the dispatcher reads the stream with a [`crate::StreamConsumer`] instead.
    pub fn subscribe(&self) -> Option<EventSubscription> {
        match &self.inner.sink {
            Sink::InMemory(sender) => Some(EventSubscription {
                receiver: sender.subscribe(),
                lagged: self.inner.metrics.lagged.clone(),
            }),
            Sink::RedisStreams(_) => None,
        }
    }

    /// The counters, for registration in a Prometheus registry or for tests.
    pub fn metrics(&self) -> &PublisherMetrics {
        &self.inner.metrics
    }

    /// Current health of the bus.
    pub fn health(&self) -> BusHealth {
        match &self.inner.sink {
            Sink::InMemory(_) => BusHealth {
                kind: EventBusKind::InMemory,
                connected: true,
                queued: 0,
            },
            Sink::RedisStreams(sender) => BusHealth {
                kind: EventBusKind::RedisStreams,
                connected: self.inner.connected.load(Ordering::Relaxed),
                queued: sender.max_capacity() - sender.capacity(),
            },
        }
    }

    /// Stops accepting events and writes the queued ones, giving up after `bound`; what could not be
    /// written by then is counted as dropped. Idempotent.
    pub async fn shutdown(&self, bound: Duration) {
        self.inner.stop.cancel();
        let Some(mut handle) = self.inner.writer.lock().await.take() else {
            return;
        };
        if tokio::time::timeout(bound, &mut handle).await.is_err() {
            handle.abort();
            let queued = self.health().queued;
            self.inner.metrics.dropped.inc_by(queued as u64);
            tracing::warn!(dropped = queued, "event bus flush did not finish in time");
        }
    }
}

/// One subscriber of the in-memory bus.
pub struct EventSubscription {
    receiver: broadcast::Receiver<Arc<InstrumentationEvent>>,
    lagged: Counter,
}

impl EventSubscription {
    /// The next event; `None` once the bus is gone. Events missed by falling behind are counted.
    pub async fn recv(&mut self) -> Option<Arc<InstrumentationEvent>> {
        loop {
            match self.receiver.recv().await {
                Ok(event) => return Some(event),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    self.lagged.inc_by(missed);
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

/// The background task that moves queued events into the Redis stream.
struct StreamWriter {
    connection: redis::aio::ConnectionManager,
    target: StreamTarget,
    metrics: PublisherMetrics,
    connected: Arc<AtomicBool>,
}

impl StreamWriter {
    async fn run(
        mut self,
        mut queue: mpsc::Receiver<InstrumentationEvent>,
        stop: CancellationToken,
    ) {
        let mut batch = Vec::with_capacity(WRITE_BATCH);
        loop {
            let first = tokio::select! {
                biased;
                event = queue.recv() => event,
                () = stop.cancelled() => {
                    // Refuse new events; those already queued are still received below.
                    queue.close();
                    queue.recv().await
                }
            };
            let Some(first) = first else {
                return;
            };
            batch.push(first);
            while batch.len() < WRITE_BATCH {
                match queue.try_recv() {
                    Ok(event) => batch.push(event),
                    Err(_) => break,
                }
            }
            self.write_until_accepted(&batch).await;
            batch.clear();
        }
    }

    /// Retries with capped exponential backoff until Redis accepts the batch; the queue meanwhile
    /// holds new events up to its bound.
    async fn write_until_accepted(&mut self, batch: &[InstrumentationEvent]) {
        let (pipeline, count) = self.build_pipeline(batch);
        if count == 0 {
            return;
        }
        let mut backoff = RETRY_INITIAL_BACKOFF;
        loop {
            match pipeline.query_async::<()>(&mut self.connection).await {
                Ok(()) => {
                    if !self.connected.swap(true, Ordering::Relaxed) {
                        tracing::info!("event bus: Redis reachable again");
                    }
                    self.metrics.connected.set(1);
                    self.metrics.written.inc_by(count);
                    return;
                }
                Err(error) => {
                    self.metrics.write_errors.inc();
                    self.metrics.connected.set(0);
                    if self.connected.swap(false, Ordering::Relaxed) {
                        tracing::warn!(error = %error, "event bus degraded: cannot write to Redis; buffering");
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(RETRY_MAX_BACKOFF);
                }
            }
        }
    }

    /// The XADDs of `batch`, and how many events they hold.
    fn build_pipeline(&self, batch: &[InstrumentationEvent]) -> (redis::Pipeline, u64) {
        let lines = self.to_lines(batch);
        (xadds(&self.target, &lines), lines.len() as u64)
    }

    /// The JSON of each event; one that cannot be serialized is dropped and counted.
    fn to_lines(&self, batch: &[InstrumentationEvent]) -> Vec<String> {
        batch
            .iter()
            .filter_map(|event| match serde_json::to_string(event) {
                Ok(json) => Some(json),
                Err(error) => {
                    self.metrics.dropped.inc();
                    tracing::warn!(error = %error, "dropping an event that cannot be serialized");
                    None
                }
            })
            .collect()
    }

    /// The writer with a spool: never waits on Redis while the queue fills.
    async fn run_spooled(
        self,
        mut spool: Spool,
        mut queue: mpsc::Receiver<InstrumentationEvent>,
        stop: CancellationToken,
    ) {
        let mut backoff = RETRY_INITIAL_BACKOFF;
        let mut retry_at = tokio::time::Instant::now();
        let mut queue_open = true;
        let mut batch = Vec::with_capacity(WRITE_BATCH);
        loop {
            if !spool.is_empty() {
                self.set_connected(false, None);
                if tokio::time::Instant::now() < retry_at {
                    // Wait for the next attempt, spooling what arrives meanwhile.
                    tokio::select! {
                        biased;
                        () = stop.cancelled(), if queue_open && !stop_seen(&queue) => queue.close(),
                        event = queue.recv(), if queue_open => match event {
                            Some(event) => {
                                batch.push(event);
                                drain_into(&mut queue, &mut batch);
                                let lines = self.to_lines(&batch);
                                spool.append(&lines);
                                batch.clear();
                            }
                            None => queue_open = false,
                        },
                        () = tokio::time::sleep_until(retry_at) => {}
                    }
                    continue;
                }
                let (lines, end) = match spool.read_batch(WRITE_BATCH) {
                    Ok(read) => read,
                    Err(error) => {
                        tracing::warn!(error = %error, "event spool unreadable; discarding it");
                        spool.discard();
                        continue;
                    }
                };
                let (result, _) = self
                    .write_spooling(&lines, true, &mut spool, &mut queue, &mut queue_open)
                    .await;
                match result {
                    Ok(()) => {
                        self.metrics.written.inc_by(lines.len() as u64);
                        spool.commit(end);
                        backoff = RETRY_INITIAL_BACKOFF;
                        if spool.is_empty() {
                            self.set_connected(true, None);
                        }
                    }
                    Err(error) => {
                        self.write_failed(&error);
                        retry_at = tokio::time::Instant::now() + backoff;
                        backoff = (backoff * 2).min(RETRY_MAX_BACKOFF);
                    }
                }
                continue;
            }
            if !queue_open {
                return;
            }
            let first = tokio::select! {
                biased;
                event = queue.recv() => event,
                () = stop.cancelled(), if !stop_seen(&queue) => {
                    queue.close();
                    continue;
                }
            };
            let Some(first) = first else {
                return;
            };
            batch.push(first);
            drain_into(&mut queue, &mut batch);
            let lines = self.to_lines(&batch);
            batch.clear();
            if lines.is_empty() {
                continue;
            }
            let (result, spooled_to) = self
                .write_spooling(&lines, false, &mut spool, &mut queue, &mut queue_open)
                .await;
            match result {
                Ok(()) => {
                    self.metrics.written.inc_by(lines.len() as u64);
                    if let Some(end) = spooled_to {
                        spool.commit(end);
                    }
                    if spool.is_empty() {
                        self.set_connected(true, None);
                    }
                }
                Err(error) => {
                    if spooled_to.is_none() {
                        spool.append(&lines);
                    }
                    self.write_failed(&error);
                    retry_at = tokio::time::Instant::now() + backoff;
                    backoff = (backoff * 2).min(RETRY_MAX_BACKOFF);
                }
            }
        }
    }

    /// Writes `lines` to Redis while moving what the queue receives into the spool: from the start
    /// when `lines` are already in the spool (a replay), else once the write has been pending for
    /// [`SLOW_WRITE`], the batch first so the spool keeps publish order. Returns the outcome and,
    /// when the batch was spooled here, the spool offset after it.
    async fn write_spooling(
        &self,
        lines: &[String],
        in_spool: bool,
        spool: &mut Spool,
        queue: &mut mpsc::Receiver<InstrumentationEvent>,
        queue_open: &mut bool,
    ) -> (redis::RedisResult<()>, Option<u64>) {
        let pipeline = xadds(&self.target, lines);
        // A clone (a handle on the same connection) so the spool can be written meanwhile.
        let mut connection = self.connection.clone();
        let write = pipeline.query_async::<()>(&mut connection);
        tokio::pin!(write);
        let slow = tokio::time::sleep(SLOW_WRITE);
        tokio::pin!(slow);
        let mut draining = in_spool;
        let mut spooled_to = None;
        loop {
            tokio::select! {
                biased;
                result = &mut write => return (result, spooled_to),
                () = &mut slow, if !draining => {
                    spooled_to = Some(spool.append(lines));
                    draining = true;
                    self.set_connected(false, None);
                }
                event = queue.recv(), if draining && *queue_open => match event {
                    Some(event) => {
                        spool.append(&self.to_lines(std::slice::from_ref(&event)));
                    }
                    None => *queue_open = false,
                },
            }
        }
    }

    fn write_failed(&self, error: &redis::RedisError) {
        self.metrics.write_errors.inc();
        self.set_connected(false, Some(error));
    }

    fn set_connected(&self, connected: bool, error: Option<&redis::RedisError>) {
        self.metrics.connected.set(i64::from(connected));
        let was = self.connected.swap(connected, Ordering::Relaxed);
        match (was, connected) {
            (false, true) => tracing::info!("event bus: Redis reachable again, spool replayed"),
            (true, false) => match error {
                Some(error) => {
                    tracing::warn!(error = %error, "event bus degraded: cannot write to Redis; spooling")
                }
                None => tracing::warn!("event bus degraded: Redis is slow; spooling"),
            },
            _ => {}
        }
    }
}

/// Moves already queued events into `batch`, up to [`WRITE_BATCH`].
fn drain_into(
    queue: &mut mpsc::Receiver<InstrumentationEvent>,
    batch: &mut Vec<InstrumentationEvent>,
) {
    while batch.len() < WRITE_BATCH {
        match queue.try_recv() {
            Ok(event) => batch.push(event),
            Err(_) => break,
        }
    }
}

/// Whether the queue was already closed after the stop signal.
fn stop_seen(queue: &mpsc::Receiver<InstrumentationEvent>) -> bool {
    queue.is_closed()
}

/// The XADDs of `lines` (event JSON).
fn xadds(target: &StreamTarget, lines: &[String]) -> redis::Pipeline {
    let mut pipeline = redis::pipe();
    for json in lines {
        let command = pipeline.cmd("XADD").arg(&target.stream_key);
        if target.max_len > 0 {
            command.arg("MAXLEN").arg("~").arg(target.max_len);
        }
        command.arg("*").arg("data").arg(json).ignore();
    }
    pipeline
}
