//! Revocation across replicas: the PostgreSQL invalidation listener.
//!
//! Replicas sharing a PostgreSQL database cache token records and project facts for minutes
//! (`LLM_PROXY_TOKEN_CACHE_TTL`, `LLM_PROXY_ACTIVE_CACHE_TTL`, `LLM_PROXY_API_KEY_CACHE_TTL`).
//! Database triggers announce every change of a cached token or project on a `NOTIFY` channel
//! ([`llm_proxy_store::INVALIDATION_CHANNEL`]) when its transaction commits, whatever made it
//! (another replica's `/manage`, this one's, an edit with `psql`). Each replica runs one
//! background task ([`spawn`]) that `LISTEN`s on a dedicated connection and applies each
//! notification through the same [`CacheInvalidator`] the management API calls, so a revocation,
//! expiry change or project deactivation made through any replica is refused by every replica
//! within milliseconds (notifications of its own changes are harmless: one more invalidation).
//! Nothing is added to the request path: it reads the caches as before.
//!
//! When the listener's connection is lost (database restart, network, `pg_terminate_backend`; a
//! connection cut silently is noticed by a probe after [`PROBE`]`.after` without notifications),
//! notifications sent meanwhile are lost: the channel is *down*, `/ready` reports `revocation:
//! degraded` (never unready) and `llm_proxy_revocation_channel_up` is 0; another replica's change
//! then applies within the cache TTL, as without the listener. The task reconnects with a capped
//! backoff ([`RECONNECT_MIN`] doubling up to [`RECONNECT_MAX`]); once listening again, it drops
//! every cache wholesale (changes during the gap were missed) and the channel is up again. The
//! first connection at start-up does the same, so nothing cached before it was listening is kept.
//!
//! On SQLite the process is the database's only writer and every change goes through its own
//! `/manage`: there is no listener, and `/ready` reports `revocation: not_applicable`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use llm_proxy_store::{Invalidation, InvalidationListener, StoreError};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::task::JoinHandle;

use crate::manage::CacheInvalidator;

/// How the listener checks a quiet connection: a connection cut without a reset (a network
/// partition) delivers nothing and reports no error, so after `after` without a notification it
/// runs `SELECT 1` and reconnects unless that answers within `timeout`.
#[derive(Debug, Clone, Copy)]
pub struct Probe {
    pub after: Duration,
    pub timeout: Duration,
}

/// The probe of the server: a silently dead connection is noticed within about 20 s.
pub const PROBE: Probe = Probe {
    after: Duration::from_secs(15),
    timeout: Duration::from_secs(5),
};

/// First wait before reconnecting the listener.
pub const RECONNECT_MIN: Duration = Duration::from_millis(100);
/// Longest wait between reconnection attempts.
pub const RECONNECT_MAX: Duration = Duration::from_secs(5);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

/// Whether the invalidation channel is up, and what it delivered.
#[derive(Debug, Default)]
pub struct RevocationChannel {
    up: AtomicBool,
    up_gauge: Gauge,
    received: Family<KindLabels, Counter>,
}

impl RevocationChannel {
    /// A channel not connected yet.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Whether the listener is connected and listening.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::SeqCst)
    }

    /// Invalidations received of `kind` (`token`, `project`, `flush`, `reconnect`).
    pub fn received(&self, kind: &'static str) -> u64 {
        self.received.get_or_create(&KindLabels { kind }).get()
    }

    /// Adds `llm_proxy_revocation_channel_up` and `llm_proxy_revocation_invalidations_total`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "revocation_channel_up",
            "1 while the PostgreSQL invalidation listener is connected (revocations by other \
             replicas apply within 1 s); 0 while it reconnects (they apply within the cache TTL)",
            self.up_gauge.clone(),
        );
        registry.register(
            "revocation_invalidations",
            "Cache invalidations received from the invalidation channel, by kind (token, project, \
             flush; reconnect: every cache dropped after a gap)",
            self.received.clone(),
        );
    }

    fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
        self.up_gauge.set(i64::from(up));
    }

    fn count(&self, kind: &'static str) {
        self.received.get_or_create(&KindLabels { kind }).inc();
    }
}

/// Starts the listener on `url`. It applies notifications to `caches` and ends once they are
/// gone (the application was dropped).
pub fn spawn(
    url: String,
    caches: Weak<dyn CacheInvalidator>,
    channel: Arc<RevocationChannel>,
    probe: Probe,
) -> JoinHandle<()> {
    tokio::spawn(run(url, caches, channel, probe))
}

async fn run(
    url: String,
    caches: Weak<dyn CacheInvalidator>,
    channel: Arc<RevocationChannel>,
    probe: Probe,
) {
    let mut backoff = RECONNECT_MIN;
    let mut connected_before = false;
    loop {
        if caches.strong_count() == 0 {
            return;
        }
        let mut listener = match InvalidationListener::connect(&url).await {
            Ok(listener) => listener,
            Err(err) => {
                tracing::warn!(error = %err, retry_in = ?backoff, "invalidation listener cannot connect; other replicas' revocations apply within the cache TTL");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(RECONNECT_MAX);
                continue;
            }
        };
        backoff = RECONNECT_MIN;
        // Listening from here on: whatever was cached before may have missed a change.
        let Some(target) = caches.upgrade() else {
            return;
        };
        target.everything_changed();
        drop(target);
        channel.count("reconnect");
        channel.set_up(true);
        if connected_before {
            tracing::info!("invalidation listener reconnected; caches dropped");
        } else {
            tracing::info!("invalidation listener connected");
        }
        connected_before = true;
        let err = loop {
            let payload = match tokio::time::timeout(probe.after, listener.next()).await {
                Ok(Ok(payload)) => payload,
                Ok(Err(err)) => break err,
                Err(_quiet) => match tokio::time::timeout(probe.timeout, listener.probe()).await {
                    Ok(Ok(())) => continue,
                    Ok(Err(err)) => break err,
                    Err(_) => break StoreError::ListenerLost,
                },
            };
            let Some(target) = caches.upgrade() else {
                return;
            };
            apply(target.as_ref(), &channel, &payload);
        };
        channel.set_up(false);
        tracing::warn!(error = %err, "invalidation listener lost its connection; reconnecting (other replicas' revocations apply within the cache TTL meanwhile)");
        // A connection that is lost as soon as it is made does not spin (nor flush the caches
        // in a loop).
        tokio::time::sleep(RECONNECT_MIN).await;
    }
}

/// Applies one notification's payload.
fn apply(caches: &dyn CacheInvalidator, channel: &RevocationChannel, payload: &str) {
    match Invalidation::parse(payload) {
        Some(Invalidation::Token(hash)) => {
            caches.token_changed(&hash);
            channel.count("token");
        }
        Some(Invalidation::Project(id)) => {
            caches.project_changed(&id);
            channel.count("project");
        }
        Some(Invalidation::All) => {
            caches.everything_changed();
            channel.count("flush");
        }
        None => {
            // Unknown payloads come from a newer version's triggers: drop everything to be safe.
            tracing::warn!(
                payload_bytes = payload.len(),
                "unknown invalidation payload; caches dropped"
            );
            caches.everything_changed();
            channel.count("flush");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use llm_proxy_store::TokenHash;

    use super::*;

    #[derive(Default)]
    struct Recording(Mutex<Vec<String>>);

    impl CacheInvalidator for Recording {
        fn token_changed(&self, hash: &TokenHash) {
            self.0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(format!("token {hash}"));
        }
        fn project_changed(&self, project_id: &str) {
            self.0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(format!("project {project_id}"));
        }
        fn everything_changed(&self) {
            self.0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push("all".into());
        }
    }

    #[test]
    fn each_payload_reaches_the_same_invalidation_as_manage() {
        let caches = Recording::default();
        let channel = RevocationChannel::default();
        let hash = llm_proxy_store::hash_token("sk-test");
        apply(&caches, &channel, &format!("token:{hash}"));
        apply(&caches, &channel, "project:p1");
        apply(&caches, &channel, "flush");
        apply(&caches, &channel, "something-new:x");
        let calls = caches.0.lock().map(|c| c.clone()).unwrap_or_default();
        assert_eq!(
            calls,
            vec![
                format!("token {hash}"),
                "project p1".into(),
                "all".into(),
                "all".into()
            ]
        );
        assert_eq!(channel.received("token"), 1);
        assert_eq!(channel.received("project"), 1);
        assert_eq!(channel.received("flush"), 2);
    }
}
