//! The instrumentation event bus of llm-proxy.
//!
//! - [`InstrumentationEvent`]: the wire type, compatible with the upstream Go proxy.
//! - [`EventPublisher`]: what the proxy's request path calls; never waits on I/O.
//! - [`StreamConsumer`]: what the dispatcher reads the Redis stream with; acknowledges only on request.
//! - [`RedisSettings`], [`StreamSettings`], [`SpoolSettings`]: configuration from the environment,
//!   read through `llm-proxy-env`'s reader; [`EventBusKind`] is the contract's, re-exported.

mod consumer;
mod event;
mod publisher;
mod settings;
pub mod spool;

pub use consumer::{
    CONSUMER_TIMEOUT_MARGIN, ConsumerError, ConsumerSettings, Delivery, MalformedEntry,
    StreamConsumer, StreamEntry,
};
pub use event::{InstrumentationEvent, Usage};
pub use llm_proxy_env::EventBusKind;
pub use publisher::{
    BusHealth, EventPublisher, EventSubscription, PUBLISHER_REDIS_TIMEOUT, PublisherMetrics,
    SLOW_WRITE, StreamTarget,
};
pub use settings::{RedisSettings, StreamSettings};
pub use spool::{SpoolError, SpoolSettings};
