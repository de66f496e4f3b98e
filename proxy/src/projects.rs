//! Project gate and provider keys: whether a project may be proxied, and the key that replaces the
//! client's token upstream.
//!
//! Two bounded TTL caches over one store call (`project_access`): the active flag and the rate
//! limits (`LLM_PROXY_ACTIVE_CACHE_*`, short) and the decrypted provider key
//! (`LLM_PROXY_API_KEY_CACHE_*`).
//! The management API clears both for a project through [`ProjectGate::invalidate`].

use std::sync::Arc;
use std::time::Duration;

use llm_proxy_store::{ProjectAccess, ProjectRateLimits, ProviderKey, Store};
use moka::sync::Cache;

use crate::error::ProxyError;

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

pub struct ProjectGate {
    store: Arc<dyn Store>,
    enforce_active: bool,
    active: Cache<String, ProjectFacts>,
    keys: Cache<String, ProviderKey>,
}

impl ProjectGate {
    pub fn new(store: Arc<dyn Store>, settings: ProjectSettings) -> Self {
        Self {
            store,
            enforce_active: settings.enforce_active,
            active: Cache::builder()
                .max_capacity(settings.active_max)
                .time_to_live(settings.active_ttl)
                .build(),
            keys: Cache::builder()
                .max_capacity(settings.key_max)
                .time_to_live(settings.key_ttl)
                .build(),
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
        if let Some(facts) = self.active.get(project_id) {
            return Ok(facts);
        }
        let access = self.load(project_id).await?;
        Ok(access
            .map(|a| ProjectFacts {
                is_active: a.is_active,
                rate_limits: a.rate_limits,
            })
            .unwrap_or_default())
    }

    /// The decrypted provider key of the project.
    pub async fn provider_key(&self, project_id: &str) -> Result<ProviderKey, ProxyError> {
        if let Some(key) = self.keys.get(project_id) {
            return Ok(key);
        }
        let access = self.load(project_id).await.map_err(|err| {
            tracing::warn!(error = %err, project_id, "provider key lookup failed");
            ProxyError::UpstreamAuth
        })?;
        access
            .map(|a| a.api_key)
            .filter(|key| !key.expose().is_empty())
            .ok_or(ProxyError::UpstreamAuth)
    }

    /// Forgets what is cached about a project.
    pub fn invalidate(&self, project_id: &str) {
        self.active.invalidate(project_id);
        self.keys.invalidate(project_id);
    }

    async fn load(&self, project_id: &str) -> Result<Option<ProjectAccess>, ProxyError> {
        let access = self.store.project_access(project_id).await?;
        match &access {
            Some(a) => {
                let facts = ProjectFacts {
                    is_active: a.is_active,
                    rate_limits: a.rate_limits,
                };
                self.active.insert(project_id.to_owned(), facts);
                if !a.api_key.expose().is_empty() {
                    self.keys.insert(project_id.to_owned(), a.api_key.clone());
                }
            }
            None => self
                .active
                .insert(project_id.to_owned(), ProjectFacts::default()),
        }
        Ok(access)
    }
}
