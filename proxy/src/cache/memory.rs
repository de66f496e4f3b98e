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
