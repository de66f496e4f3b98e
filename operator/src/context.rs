//! What every kind's reconciler shares: the API client, the operator's configuration, the Event
//! Event publisher and the metrics. A kind's own context adds its [`Memory`](crate::memory::Memory).

use std::sync::Arc;

use kube::Client;

use crate::config::OperatorConfig;
use crate::events::Publisher;
use crate::metrics::Metrics;

/// Shared state of all reconcilers of one leadership term.
#[derive(Clone)]
pub struct Shared {
    /// API client.
    pub client: Client,
    /// Operator configuration.
    pub config: OperatorConfig,
    /// Event publisher (events.k8s.io).
    pub events: Publisher,
    /// Metrics.
    pub metrics: Arc<Metrics>,
}
