//! The operator's runtime configuration (flags and environment, parsed once by `main`).

use std::net::SocketAddr;
use std::time::Duration;

/// How often API discovery is asked whether the ServiceMonitor CRD is served.
pub const DEFAULT_DISCOVERY_INTERVAL: Duration = Duration::from_secs(30);

/// How many objects a controller reconciles at once by default.
pub const DEFAULT_RECONCILE_CONCURRENCY: u16 = 16;

/// Default image of the development PostgreSQL StatefulSet.
pub const DEFAULT_POSTGRES_IMAGE: &str = "docker.io/library/postgres:17";

/// Runtime configuration of the operator.
#[derive(Debug, Clone, PartialEq)]
pub struct OperatorConfig {
    /// Namespaces to watch; empty = all namespaces.
    pub watch_namespaces: Vec<String>,
    /// Lease-based leader election; `None` = always lead (single replica).
    pub leader_election: Option<LeaderElection>,
    /// Address of `/metrics`, `/healthz` and `/readyz`; `None` = no server (tests).
    pub metrics_addr: Option<SocketAddr>,
    /// Image of the development PostgreSQL.
    pub postgres_image: String,
    /// Requeue interval of a healthy object (periodic drift check).
    pub resync_interval: Duration,
    /// How often discovery is re-checked for the ServiceMonitor CRD; when it appears or goes away,
    /// every LlmProxy is reconciled (instead of waiting for the resync).
    pub discovery_interval: Duration,
    /// Objects a controller reconciles at once (a burst queues instead of holding every
    /// reconcile's requests and memory at the same time).
    pub reconcile_concurrency: u16,
}

impl Default for OperatorConfig {
    fn default() -> Self {
        Self {
            watch_namespaces: Vec::new(),
            leader_election: None,
            metrics_addr: None,
            postgres_image: DEFAULT_POSTGRES_IMAGE.to_owned(),
            resync_interval: Duration::from_secs(300),
            discovery_interval: DEFAULT_DISCOVERY_INTERVAL,
            reconcile_concurrency: DEFAULT_RECONCILE_CONCURRENCY,
        }
    }
}

/// Lease-based leader election settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderElection {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub lease_name: String,
    /// This replica's identity (the pod name).
    pub identity: String,
    /// How long a lease is valid without renewal.
    pub lease_duration: Duration,
    /// How often the leader renews (and a standby retries).
    pub renew_interval: Duration,
}

/// Identity used when `POD_NAME` is not set: the host name, else a random id.
pub fn default_identity() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| format!("llm-proxy-operator-{:016x}", rand::random::<u64>()))
}
