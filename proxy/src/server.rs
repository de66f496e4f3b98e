//! The `server` process: store, application, listener and graceful shutdown.
//!
//! Every accepted socket gets `TCP_NODELAY`. On SIGTERM or SIGINT the listener stops accepting,
//! in-flight requests and streams continue, and the process exits when they are done or when
//! `SHUTDOWN_TIMEOUT` has passed.

use llm_proxy_events::{EventPublisher, StreamTarget};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::app;
use crate::audit::{Audit, AuditError};
use crate::config::{EventBusKind, ServerConfig};
use crate::redis_link::ConnectionManager;

/// Longest wait for the last usage flush at exit (connections cut by the shutdown timeout may
/// still hold the queue open).
const USAGE_FLUSH_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Longest wait for queued instrumentation events to reach Redis at exit.
const EVENT_FLUSH_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Why the server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("database: {0}")]
    Store(#[from] llm_proxy_store::StoreError),
    #[error("audit: {0}")]
    Audit(#[from] AuditError),
    #[error("event bus: {0}")]
    EventBus(String),
    #[error("redis: {0}")]
    Redis(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("server: {0}")]
    Serve(std::io::Error),
}

/// Runs the server until a shutdown signal, then drains.
pub async fn run(config: ServerConfig) -> Result<(), ServerError> {
    let store = llm_proxy_store::connect(&config.store).await?;
    let audit = Audit::start(&config.audit, store.clone()).await?;
    revoke_derivable_tokens(&*store, &audit).await?;
    let redis = crate::redis_link::shared_connection(&config)
        .map_err(|e| ServerError::Redis(e.to_string()))?;
    let events = if config.observability.enabled {
        Some(event_publisher(&config, redis.clone())?)
    } else {
        None
    };
    let listener = TcpListener::bind(config.listen_addr)
        .await
        .map_err(|source| ServerError::Bind {
            addr: config.listen_addr,
            source,
        })?;
    let local_addr = listener.local_addr().map_err(ServerError::Serve)?;
    let app::App {
        service,
        caches,
        metrics,
        usage_flusher,
        ..
    } = app::build(
        &config,
        app::Dependencies {
            redis,
            ..app::Dependencies::new(store.clone(), audit, events.clone())
        },
    );
    // Only the service (through /v1 and the management API's invalidator) may keep the data path's
    // state alive, so the usage queue closes with it.
    drop(caches);
    tracing::info!(
        addr = %local_addr,
        provider = %config.provider.name,
        upstream = %config.provider.base_url,
        "llm-proxy listening"
    );

    let shutdown = CancellationToken::new();
    let serve = crate::connections::serve(
        listener,
        service,
        config.connections,
        metrics,
        shutdown.clone(),
    );
    let mut server = tokio::spawn(serve);

    let stopped_early = tokio::select! {
        result = &mut server => Some(result),
        () = shutdown_signal() => None,
    };
    let result = match stopped_early {
        Some(result) => result,
        None => {
            tracing::info!(timeout = ?config.shutdown_timeout, "shutting down: draining in-flight requests");
            shutdown.cancel();
            match tokio::time::timeout(config.shutdown_timeout, &mut server).await {
                Ok(result) => result,
                Err(_) => {
                    tracing::warn!("shutdown timeout reached; closing remaining connections");
                    server.abort();
                    Ok(())
                }
            }
        }
    };
    // The service (and with it the usage queue's sender) is gone: the flusher writes what is left.
    match tokio::time::timeout(USAGE_FLUSH_GRACE, usage_flusher).await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => tracing::warn!(error = %err, "usage flusher ended abnormally"),
        Err(_) => tracing::warn!("usage flusher did not finish; some usage counts may be lost"),
    }
    if let Some(events) = &events {
        events.shutdown(EVENT_FLUSH_GRACE).await;
    }
    result.map_err(|join_error| ServerError::Serve(std::io::Error::other(join_error)))
}

/// The bus selected by `LLM_PROXY_EVENT_BUS`, holding up to `OBSERVABILITY_BUFFER_SIZE` events.
fn event_publisher(
    config: &ServerConfig,
    redis: Option<ConnectionManager>,
) -> Result<EventPublisher, ServerError> {
    let buffer = config.observability.buffer_size;
    match config.event_bus {
        EventBusKind::InMemory => Ok(EventPublisher::in_memory(buffer)),
        EventBusKind::RedisStreams => {
            let connection = redis.ok_or_else(|| {
                ServerError::EventBus("the Redis connection was not created".to_owned())
            })?;
            let target = StreamTarget {
                stream_key: config.redis.stream_key.clone(),
                max_len: config.redis.stream_max_len,
            };
            match &config.redis.event_spool {
                None => Ok(EventPublisher::redis_streams(connection, target, buffer)),
                Some(spool) => {
                    EventPublisher::redis_streams_spooled(connection, target, buffer, spool)
                        .map_err(|err| ServerError::EventBus(err.to_string()))
                }
            }
        }
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot listen for SIGTERM; only SIGINT stops the server");
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}

/// Revokes the tokens of earlier builds whose id reveals them (see
/// [`llm_proxy_store::revoke_derivable_tokens`]), with one audit event and one log line each (the
/// id only). The data path refuses them anyway; this makes `/manage` show them as revoked.
async fn revoke_derivable_tokens(
    store: &dyn llm_proxy_store::Store,
    audit: &Audit,
) -> Result<(), ServerError> {
    for token in llm_proxy_store::revoke_derivable_tokens(store).await? {
        tracing::warn!(
            token_id = %token.id,
            project_id = %token.project_id,
            "revoked a token issued before the token-format change: its id reveals it; issue a new one"
        );
        let mut event = crate::audit::event(
            crate::audit::Action::TokenRevoke,
            crate::audit::Actor::System,
            llm_proxy_store::AuditOutcome::Success,
        );
        event.project_id = Some(token.project_id);
        event.token_id = Some(token.id.to_string());
        event.reason =
            Some("token derivable from its id (issued before the token-format change)".into());
        audit.record(event);
    }
    Ok(())
}
