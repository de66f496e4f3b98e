//! Project gate and provider keys: whether a project may be proxied, and the key that replaces the
//! client's token upstream.
//!
//! Two bounded TTL caches ([`TtlMap`]) over one store call (`project_access`): the active flag and the rate
//! limits (`LLM_PROXY_ACTIVE_CACHE_*`, short) and the decrypted provider key, kept as the ready
//! `Authorization: Bearer <key>` value (sensitive) so a request copies no secret
//! (`LLM_PROXY_API_KEY_CACHE_*`).
//! The management API clears both for a project through [`ProjectGate::invalidate`]. Concurrent
//! misses of one project share one store call ([`SingleFlight`]).
//!
//! On SQLite (a store this process alone writes), an expired entry is still served and one
//! background load refreshes it, so a project used after an idle spell does not make its first
//! requests wait for the database; the TTLs then only bound how late an edit of the database
//! file behind the proxy's back shows (on the first request after expiry plus one load; a zero
//! TTL keeps every lookup on the store, as before). On a
//! shared database (PostgreSQL) an expired entry is reloaded before the request goes on, and
//! another replica's change is invalidated when its notification arrives (the `revocation` module);
//! while the invalidation listener is disconnected, it applies within the TTL.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::HeaderValue;
use llm_proxy_store::{ProjectAccess, ProjectRateLimits, ProviderKey, Store};

use crate::error::ProxyError;
use crate::single_flight::SingleFlight;
use crate::ttl_map::TtlMap;

/// Settings of the project caches.
#[derive(Debug, Clone, Copy)]
pub struct ProjectSettings {
    pub enforce_active: bool,
    pub active_ttl: Duration,
    pub active_max: u64,
    pub key_ttl: Duration,
    pub key_max: u64,
}

/// What the active cache keeps of a project.
#[derive(Debug, Clone, Copy, Default)]
struct ProjectFacts {
    /// `false` also for a project that does not exist.
    is_active: bool,
    rate_limits: ProjectRateLimits,
}

impl ProjectFacts {
    /// The facts of what the store returned; a project that does not exist is inactive.
    fn of(access: Option<&ProjectAccess>) -> Self {
        access.map_or_else(Self::default, |a| Self {
            is_active: a.is_active,
            rate_limits: a.rate_limits,
        })
    }
}

/// Outcome of [`ProjectGate::load`].
enum Loaded {
    /// This request called the store; `None` for a project that does not exist.
    Here(Option<ProjectAccess>),
    /// A concurrent request did; what it cached.
    Elsewhere(ProjectFacts),
}

pub struct ProjectGate {
    store: Arc<dyn Store>,
    enforce_active: bool,
    /// Expired entries are served while one background load refreshes them: only on a store this
    /// process alone writes ([`Store::single_writer`]), where every change goes through its own
    /// `/manage` and is invalidated at once, so an expired entry is as good as a fresh one, and
    /// only with non-zero TTLs.
    /// On a shared database an expired entry waits for the reload, so another replica's change
    /// applies within the TTL.
    refresh_in_background: bool,
    caches: Arc<Caches>,
    loads: SingleFlight<String>,
}

struct Caches {
    active: TtlMap<String, ProjectFacts>,
    keys: TtlMap<String, HeaderValue>,
    /// Bumped by every invalidation, so a load that read the store before a `/manage` change
    /// does not leave what it read in the caches.
    invalidations: AtomicU64,
}

impl ProjectGate {
    pub fn new(store: Arc<dyn Store>, settings: ProjectSettings) -> Self {
        Self {
            // A zero TTL asks for a store call on every lookup: it keeps that on the request path
            // (serving stale would start a background load per request instead).
            refresh_in_background: store.single_writer()
                && !settings.active_ttl.is_zero()
                && !settings.key_ttl.is_zero(),
            store,
            enforce_active: settings.enforce_active,
            caches: Arc::new(Caches {
                active: TtlMap::new(settings.active_max, settings.active_ttl),
                keys: TtlMap::new(settings.key_max, settings.key_ttl),
                invalidations: AtomicU64::new(0),
            }),
            loads: SingleFlight::default(),
        }
    }

    /// Refuses inactive (or vanished) projects when enforcement is on; returns the project's rate
    /// limits (none for a project that does not exist). One cache lookup serves both.
    pub async fn admit(&self, project_id: &str) -> Result<ProjectRateLimits, ProxyError> {
        let facts = self.facts(project_id).await?;
        if self.enforce_active && !facts.is_active {
            return Err(ProxyError::ProjectInactive);
        }
        Ok(facts.rate_limits)
    }

    async fn facts(&self, project_id: &str) -> Result<ProjectFacts, ProxyError> {
        if let Some(facts) = self.cached(&self.caches.active, project_id) {
            return Ok(facts);
        }
        Ok(match self.load(project_id).await? {
            Loaded::Here(access) => ProjectFacts::of(access.as_ref()),
            Loaded::Elsewhere(facts) => facts,
        })
    }

    /// The upstream `Authorization` value of the project: `Bearer <decrypted provider key>`,
    /// marked sensitive.
    pub async fn upstream_authorization(
        &self,
        project_id: &str,
    ) -> Result<HeaderValue, ProxyError> {
        if let Some(value) = self.cached(&self.caches.keys, project_id) {
            return Ok(value);
        }
        let access = self.load(project_id).await.map_err(|err| {
            tracing::warn!(error = %err, project_id, "provider key lookup failed");
            ProxyError::UpstreamAuth
        })?;
        match access {
            Loaded::Here(access) => access
                .and_then(|a| bearer(&a.api_key))
                .ok_or(ProxyError::UpstreamAuth),
            // Another request loaded the project meanwhile: its key, if usable, is cached.
            Loaded::Elsewhere(_) => self
                .caches
                .keys
                .get(project_id)
                .ok_or(ProxyError::UpstreamAuth),
        }
    }

    /// Forgets what is cached about a project.
    pub fn invalidate(&self, project_id: &str) {
        self.caches.invalidate(project_id);
    }

    /// Forgets everything cached (after a gap in the invalidation channel).
    pub fn invalidate_all(&self) {
        self.caches.invalidate_all();
    }

    /// A cached value; on a single-writer store also an expired one, whose refresh this call then
    /// starts in the background when it is the first to see it expired.
    fn cached<V: Clone>(&self, map: &TtlMap<String, V>, project_id: &str) -> Option<V> {
        if !self.refresh_in_background {
            return map.get(project_id);
        }
        let (value, refresh) = map.get_or_stale(project_id)?;
        if refresh {
            let store = self.store.clone();
            let caches = self.caches.clone();
            let project_id = project_id.to_owned();
            tokio::spawn(async move {
                if let Err(err) = caches.fill(store.as_ref(), &project_id).await {
                    tracing::warn!(error = %err, project_id, "project refresh failed; the cached facts stay in use");
                }
            });
        }
        Some(value)
    }

    /// Loads the project from the store, unless a concurrent request just did and cached it.
    async fn load(&self, project_id: &str) -> Result<Loaded, ProxyError> {
        let key = project_id.to_owned();
        let store = self.store.as_ref();
        if let Some(loaded) = self
            .loads
            .lead_or_wait(&key, self.caches.fill(store, project_id))
            .await
        {
            return Ok(Loaded::Here(loaded?));
        }
        if let Some(facts) = self.caches.active.get(project_id) {
            return Ok(Loaded::Elsewhere(facts));
        }
        Ok(Loaded::Here(self.caches.fill(store, project_id).await?))
    }
}

impl Caches {
    /// One store call; fills both caches unless the project was invalidated meanwhile.
    async fn fill(
        &self,
        store: &dyn Store,
        project_id: &str,
    ) -> Result<Option<ProjectAccess>, ProxyError> {
        let generation = self.generation();
        let access = store.project_access(project_id).await?;
        self.insert(project_id, access.as_ref(), generation);
        Ok(access)
    }

    /// Counts invalidations; read before a store call and handed to [`Self::insert`].
    fn generation(&self) -> u64 {
        self.invalidations.load(Ordering::SeqCst)
    }

    /// Caches what a load read, unless an invalidation came after `generation`: the store may have
    /// answered with the facts a concurrent `/manage` change replaced.
    fn insert(&self, project_id: &str, access: Option<&ProjectAccess>, generation: u64) {
        self.active
            .insert(project_id.to_owned(), ProjectFacts::of(access));
        if let Some(value) = access.and_then(|a| bearer(&a.api_key)) {
            self.keys.insert(project_id.to_owned(), value);
        }
        // Checked after inserting: an invalidation that comes later removes the entries itself.
        if self.generation() != generation {
            self.active.invalidate(project_id);
            self.keys.invalidate(project_id);
        }
    }

    fn invalidate(&self, project_id: &str) {
        self.invalidations.fetch_add(1, Ordering::SeqCst);
        self.active.invalidate(project_id);
        self.keys.invalidate(project_id);
    }

    fn invalidate_all(&self) {
        self.invalidations.fetch_add(1, Ordering::SeqCst);
        self.active.clear();
        self.keys.clear();
    }
}

/// `Bearer <key>` as a sensitive header value; `None` for an empty key or one that cannot be a
/// header value.
fn bearer(key: &ProviderKey) -> Option<HeaderValue> {
    if key.expose().is_empty() {
        return None;
    }
    let mut value = HeaderValue::try_from(format!("Bearer {}", key.expose())).ok()?;
    value.set_sensitive(true);
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caches() -> Caches {
        Caches {
            active: TtlMap::new(16, Duration::from_secs(60)),
            keys: TtlMap::new(16, Duration::from_secs(60)),
            invalidations: AtomicU64::new(0),
        }
    }

    fn access(is_active: bool) -> ProjectAccess {
        ProjectAccess {
            is_active,
            api_key: ProviderKey::new("sk-provider-old"),
            rate_limits: ProjectRateLimits::default(),
        }
    }

    #[test]
    fn a_load_that_read_the_store_before_an_invalidation_caches_nothing() {
        let caches = caches();
        let generation = caches.generation();
        // `/manage` deactivates the project while the load's store call is in flight; the store
        // answered with the facts from before.
        caches.invalidate("p");
        caches.insert("p", Some(&access(true)), generation);
        assert!(caches.active.get("p").is_none(), "the old active flag");
        assert!(caches.keys.get("p").is_none(), "the old provider key");

        // A load that started after the change caches what it read.
        let generation = caches.generation();
        caches.insert("p", Some(&access(false)), generation);
        assert!(caches.active.get("p").is_some_and(|facts| !facts.is_active));
        assert!(caches.keys.get("p").is_some());
    }

    #[test]
    fn an_invalidation_of_another_project_also_skips_the_fill() {
        // The counter is global: harmless (the next request loads again), and never stale.
        let caches = caches();
        let generation = caches.generation();
        caches.invalidate("q");
        caches.insert("p", Some(&access(true)), generation);
        assert!(caches.active.get("p").is_none());
    }
}
