//! What every kind's reconciler shares: the API client, the operator's configuration, the Event
//! recorder and the metrics. A kind's own context adds its [`Memory`](crate::memory::Memory).

use std::sync::Arc;

use kube::Client;
use kube::runtime::events::Recorder;

use crate::config::OperatorConfig;
use crate::metrics::Metrics;

/// Shared state of all reconcilers of one leadership term.
#[derive(Clone)]
pub struct Shared {
    /// API client.
    pub client: Client,
    /// Operator configuration.
    pub config: OperatorConfig,
    /// Event recorder (events.k8s.io).
    pub recorder: Recorder,
    /// Metrics.
    pub metrics: Arc<Metrics>,
}
