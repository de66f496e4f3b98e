//! The llm-proxy event dispatcher (`llm-proxy dispatcher`).
//!
//! Reads instrumentation events from the Redis stream as a member of a consumer group, turns each
//! into an [`transform::EventPayload`], ships it to a file, Lunary or Helicone, and acknowledges an
//! entry only after the backend accepted (or refused for good) its event: at-least-once delivery.
//! A small HTTP server reports `/health`, `/ready` and `/metrics`. See docs/dispatcher.md.
//!
//! The proxy binary calls [`run`] with the parsed [`DispatcherArgs`] and a shutdown token.

pub mod backend;
pub mod config;
mod delivery;
mod health;
pub mod metrics;
pub mod transform;

use std::sync::Arc;

use llm_proxy_events::{CONSUMER_TIMEOUT_MARGIN, ConsumerSettings, EventBusKind, StreamConsumer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::backend::{Backend, FileBackend, HeliconeBackend, HttpClient, LunaryBackend};
use crate::config::Destination;
pub use crate::config::{
    DispatcherArgs, DispatcherConfig, DispatcherConfigError, RetryPolicy, Service,
};
use crate::delivery::DeliveryLoop;
pub use crate::health::router as health_router;
use crate::metrics::DispatcherMetrics;
use crate::transform::Transformer;

/// Why the dispatcher could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum DispatcherError {
    /// Invalid flags or environment.
    #[error(transparent)]
    Config(#[from] DispatcherConfigError),
    /// The Redis client could not be created.
    #[error("cannot set up the Redis client: {0}")]
    Redis(#[source] redis::RedisError),
    /// The health server could not listen or failed.
    #[error("health server on {addr}: {source}")]
    HealthServer {
        /// The address.
        addr: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Parses the environment, binds the health server and dispatches until `shutdown` is cancelled.
pub async fn run(args: DispatcherArgs, shutdown: CancellationToken) -> Result<(), DispatcherError> {
    let config = DispatcherConfig::from_env(args)?;
    let listener = TcpListener::bind(config.health_addr)
        .await
        .map_err(|source| DispatcherError::HealthServer {
            addr: config.health_addr.to_string(),
            source,
        })?;
    Dispatcher::new(config).serve(listener, shutdown).await
}

/// A configured dispatcher; [`Dispatcher::serve`] runs it.
pub struct Dispatcher {
    config: DispatcherConfig,
    metrics: Arc<DispatcherMetrics>,
}

impl Dispatcher {
    /// A dispatcher for `config` (nothing is connected yet).
    pub fn new(config: DispatcherConfig) -> Self {
        Self {
            config,
            metrics: Arc::new(DispatcherMetrics::default()),
        }
    }

    /// Its metrics, shared with the health server.
    pub fn metrics(&self) -> Arc<DispatcherMetrics> {
        self.metrics.clone()
    }

    /// Serves the health endpoints on `listener` and delivers events until `shutdown`; then
    /// finishes the current batch within `SHUTDOWN_TIMEOUT`. Everything runs inside the returned
    /// future: dropping it stops the dispatcher at once (unacknowledged entries are redelivered).
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> Result<(), DispatcherError> {
        let addr = listener
            .local_addr()
            .map(|addr| addr.to_string())
            .unwrap_or_default();
        // Also stops the health server when the delivery side cannot start.
        let stop_server = shutdown.child_token();
        let server_stopped = stop_server.clone();
        let router = health_router(self.metrics.clone());
        let server = async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move { server_stopped.cancelled().await })
                .await
        };
        let work = async {
            let result = match self.config.bus {
                EventBusKind::InMemory => {
                    tracing::warn!(
                        "{}=in-memory: this dispatcher has its own in-process bus and receives no events \
                         from proxies; use redis-streams to dispatch events",
                        llm_proxy_env::LLM_PROXY_EVENT_BUS
                    );
                    self.metrics.set_ready(true);
                    shutdown.cancelled().await;
                    Ok(())
                }
                EventBusKind::RedisStreams => match self.delivery_loop() {
                    Ok(delivery) => {
                        let delivery = delivery.run(shutdown.clone());
                        tokio::pin!(delivery);
                        tokio::select! {
                            () = &mut delivery => {}
                            () = shutdown.cancelled() => {
                                if tokio::time::timeout(self.config.shutdown_timeout, &mut delivery).await.is_err() {
                                    tracing::warn!("dispatcher did not finish its batch within the shutdown \
                                                    timeout; unacknowledged entries will be redelivered");
                                }
                            }
                        }
                        Ok(())
                    }
                    Err(error) => Err(error),
                },
            };
            if result.is_err() {
                stop_server.cancel();
            }
            result
        };
        let (served, worked) = tokio::join!(server, work);
        worked?;
        served.map_err(|source| DispatcherError::HealthServer { addr, source })
    }

    fn delivery_loop(&self) -> Result<DeliveryLoop, DispatcherError> {
        let config = &self.config;
        let connection = config
            .redis
            .connection_manager(config.stream.block + CONSUMER_TIMEOUT_MARGIN)
            .map_err(DispatcherError::Redis)?;
        let mut consumer_settings =
            ConsumerSettings::new(&config.stream, config.consumer_name.clone());
        consumer_settings.read_count = consumer_settings.read_count.min(config.buffer);
        let consumer = StreamConsumer::new(connection, consumer_settings);
        tracing::info!(
            service = config.service.as_str(),
            destination = ?config.destination,
            redis = config.redis.display_address(),
            "dispatcher starting"
        );
        Ok(DeliveryLoop::new(
            consumer,
            build_backend(&config.destination),
            Transformer {
                verbose: config.verbose,
            },
            self.metrics.clone(),
            config.batch_size,
            config.retry,
        ))
    }
}

fn build_backend(destination: &Destination) -> Backend {
    match destination {
        Destination::File(path) => Backend::File(FileBackend::new(path.clone())),
        Destination::Lunary { endpoint, api_key } => Backend::Lunary(LunaryBackend::new(
            HttpClient::new(),
            endpoint.clone(),
            api_key.clone(),
        )),
        Destination::Helicone { endpoint, api_key } => Backend::Helicone(HeliconeBackend::new(
            HttpClient::new(),
            endpoint.clone(),
            api_key.clone(),
        )),
    }
}
