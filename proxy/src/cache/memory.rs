//! The in-memory backend: a moka cache bounded by `HTTP_CACHE_MAX_BYTES` (entries weigh their body
//! and headers) with each entry's own TTL.

use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::Expiry;
use moka::sync::Cache;

use super::PurgeSelector;
use super::entry::CachedResponse;
use super::key::split_storage_key;

pub struct MemoryBackend {
    cache: Cache<String, Arc<CachedResponse>>,
}

struct EntryTtl;

impl Expiry<String, Arc<CachedResponse>> for EntryTtl {
    fn expire_after_create(
        &self,
        _key: &String,
        value: &Arc<CachedResponse>,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(value.remaining())
    }
}

impl MemoryBackend {
    pub fn new(max_bytes: u64) -> Self {
        let cache = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|key: &String, value: &Arc<CachedResponse>| {
                u32::try_from(key.len() + value.weight()).unwrap_or(u32::MAX)
            })
            .expire_after(EntryTtl)
            .build();
        Self { cache }
    }

    pub fn get(&self, key: &str) -> Option<Arc<CachedResponse>> {
        self.cache
            .get(key)
            .filter(|entry| !entry.remaining().is_zero())
    }

    pub fn insert(&self, key: String, entry: CachedResponse) {
        self.cache.insert(key, Arc::new(entry));
    }

    /// Removes the matching entries; returns how many.
    pub fn purge(&self, prefix: &str, selector: &PurgeSelector) -> u64 {
        let mut deleted = 0;
        for (key, _) in self.cache.iter() {
            if let Some((project, public_id)) = split_storage_key(&key, prefix)
                && selector.matches(project, public_id)
                && self.cache.remove(key.as_str()).is_some()
            {
                deleted += 1;
            }
        }
        deleted
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::cache::PurgeTarget;
    use crate::cache::entry::now_ms;

    fn entry(body_len: usize, ttl_ms: u64) -> CachedResponse {
        CachedResponse {
            status: 200,
            headers: Vec::new(),
            body: Bytes::from(vec![b'x'; body_len]),
            stored_at_ms: now_ms(),
            expires_at_ms: now_ms() + ttl_ms,
        }
    }

    #[test]
    fn the_byte_bound_evicts_entries() {
        let memory = MemoryBackend::new(10_000);
        for n in 0..20 {
            memory.insert(format!("p:{n:064}:v"), entry(1_000, 60_000));
        }
        memory.cache.run_pending_tasks();
        assert!(memory.cache.weighted_size() <= 10_000);
        assert!(memory.cache.entry_count() < 20);
    }

    #[test]
    fn expired_entries_are_not_returned_and_purges_count() {
        let memory = MemoryBackend::new(1_000_000);
        memory.insert("x:p:r:v1".into(), entry(1, 0));
        assert!(memory.get("x:p:r:v1").is_none());
        memory.insert("x:p:r:v2".into(), entry(1, 60_000));
        memory.insert("x:q:r:v3".into(), entry(1, 60_000));
        let project_p = PurgeSelector {
            project_id: Some("p".into()),
            target: PurgeTarget::KeyPrefix(String::new()),
        };
        assert_eq!(memory.purge("x:", &project_p), 1);
        assert!(memory.get("x:q:r:v3").is_some());
    }
}
