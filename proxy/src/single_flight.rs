//! Coalesces concurrent cache fills of one key: the first caller that misses loads from the
//! store, the others wait for it to finish and then read the cache it filled. Without it, a cache
//! entry expiring under a burst (the project-active cache lives 5 s) sends every request of the
//! burst to the database at once, each waiting for a connection and for the others' queries.
//!
//! Only keys being loaded are held, so the map is bounded by the requests in flight.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::OwnedMutexGuard;

/// The loads in flight, by key.
pub struct SingleFlight<K> {
    loads: Mutex<HashMap<K, Arc<tokio::sync::Mutex<()>>>>,
}

impl<K> Default for SingleFlight<K> {
    fn default() -> Self {
        Self {
            loads: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Hash + Eq + Clone> SingleFlight<K> {
    /// Runs `load` when no other caller is loading `key` and returns its output; otherwise waits
    /// until that caller is done (or gave up) and returns `None`: the caller then looks in its cache
    /// again, and loads by itself if the entry is still missing (the other load failed, was
    /// cancelled, or found nothing worth caching).
    pub async fn lead_or_wait<T>(&self, key: &K, load: impl Future<Output = T>) -> Option<T> {
        let (leader, running) = {
            let mut loads = self.loads.lock().unwrap_or_else(PoisonError::into_inner);
            match loads.get(key) {
                Some(running) => (None, running.clone()),
                None => {
                    let running = Arc::new(tokio::sync::Mutex::new(()));
                    // A new mutex is free: the lock cannot fail.
                    let guard = running.clone().try_lock_owned().ok();
                    loads.insert(key.clone(), running.clone());
                    (guard, running)
                }
            }
        };
        match leader {
            Some(guard) => {
                let _leading = Leading {
                    flights: self,
                    key,
                    running: &running,
                    _guard: guard,
                };
                Some(load.await)
            }
            None => {
                drop(running.lock().await);
                None
            }
        }
    }

    /// How many keys are being loaded (for tests).
    #[cfg(test)]
    fn in_flight(&self) -> usize {
        self.loads
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// The leader's turn; dropping it (load done or future cancelled) forgets the key and then wakes
/// the waiters, so a waiter that loads again starts a fresh flight.
struct Leading<'a, K: Hash + Eq> {
    flights: &'a SingleFlight<K>,
    key: &'a K,
    running: &'a Arc<tokio::sync::Mutex<()>>,
    _guard: OwnedMutexGuard<()>,
}

impl<K: Hash + Eq> Drop for Leading<'_, K> {
    fn drop(&mut self) {
        let mut loads = self
            .flights
            .loads
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if loads
            .get(self.key)
            .is_some_and(|current| Arc::ptr_eq(current, self.running))
        {
            loads.remove(self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn concurrent_callers_share_one_load_and_the_key_is_forgotten() {
        let flights = SingleFlight::<String>::default();
        let key = "p".to_owned();
        let loads = AtomicUsize::new(0);
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let leader = flights.lead_or_wait(&key, async {
            loads.fetch_add(1, Ordering::SeqCst);
            let _ = released.await;
            "loaded"
        });
        let follower = flights.lead_or_wait(&key, async {
            loads.fetch_add(1, Ordering::SeqCst);
            "loaded again"
        });
        let (led, followed, ()) = tokio::join!(leader, follower, async {
            // Both futures have been polled once (join polls in order) before this runs.
            assert_eq!(flights.in_flight(), 1);
            let _ = release.send(());
        });
        assert_eq!(led, Some("loaded"));
        assert_eq!(followed, None, "the follower waited instead of loading");
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        assert_eq!(flights.in_flight(), 0);
    }

    #[tokio::test]
    async fn a_cancelled_leader_releases_its_waiters_and_its_key() {
        let flights = SingleFlight::<String>::default();
        let key = "p".to_owned();
        let mut leader = Box::pin(flights.lead_or_wait(&key, std::future::pending::<()>()));
        assert!(futures::poll!(leader.as_mut()).is_pending());
        let mut follower = Box::pin(flights.lead_or_wait(&key, async {}));
        assert!(futures::poll!(follower.as_mut()).is_pending());
        drop(leader);
        assert_eq!(follower.await, None);
        assert_eq!(flights.in_flight(), 0);
        assert_eq!(flights.lead_or_wait(&key, async { 7 }).await, Some(7));
    }
}
