//! What a controller remembers between reconciles, the same for every kind: per-object backoff,
//! status writes its cache has not shown yet, the wanted children as of the last sweep, and the
//! version of each child last found to hold what the operator applies.
//! Every map is keyed by object (uid or `namespace/name`) and bounded.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash as _, Hasher as _};
use std::sync::Mutex;
use std::time::Duration;

/// Longest backoff after repeated API failures.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Most objects each map remembers; when full it forgets them all (each object then pays once
/// more what the memory saves), so deleted objects cannot grow it without bound.
pub const MAX_REMEMBERED: usize = 10_000;

/// The memory of one kind's controller; `S` is the kind's status type.
pub struct Memory<S> {
    /// Consecutive failures per object key.
    pub backoff: Backoff,
    /// Status writes not yet seen in the cache.
    pub unseen_status: UnseenStatuses<S>,
    /// Wanted children as of the last sweep.
    pub swept: SweptChildren,
    /// The resourceVersion of each child last verified to match what was applied.
    pub verified: VerifiedChildren,
}

impl<S> Default for Memory<S> {
    fn default() -> Self {
        Self {
            backoff: Backoff::default(),
            unseen_status: UnseenStatuses::default(),
            swept: SweptChildren::default(),
            verified: VerifiedChildren::default(),
        }
    }
}

/// Most children [`VerifiedChildren`] remembers (several per object).
pub const MAX_REMEMBERED_CHILDREN: usize = 100_000;

fn insert_bounded<V>(map: &mut HashMap<String, V>, key: &str, value: V) {
    insert_bounded_to(map, MAX_REMEMBERED, key, value);
}

fn insert_bounded_to<V>(map: &mut HashMap<String, V>, bound: usize, key: &str, value: V) {
    if map.len() >= bound && !map.contains_key(key) {
        map.clear();
    }
    map.insert(key.to_owned(), value);
}

/// Exponential backoff: 1s, 2s, 4s, … capped at [`MAX_BACKOFF`].
pub fn backoff(attempts: u32) -> Duration {
    let exponent = attempts.saturating_sub(1).min(16);
    Duration::from_secs(1u64 << exponent).min(MAX_BACKOFF)
}

/// Consecutive failures per object key.
#[derive(Default)]
pub struct Backoff(Mutex<HashMap<String, u32>>);

impl Backoff {
    /// Forgets the failures of `key` (after a successful reconcile).
    pub fn reset(&self, key: &str) {
        if let Ok(mut failures) = self.0.lock() {
            failures.remove(key);
        }
    }

    /// Records one more failure of `key` and returns the backoff before the next attempt.
    pub fn next(&self, key: &str) -> Duration {
        let attempts = match self.0.lock() {
            Ok(mut failures) => {
                let count = failures.get(key).copied().unwrap_or(0).saturating_add(1);
                insert_bounded(&mut failures, key, count);
                count
            }
            Err(_) => 1,
        };
        backoff(attempts)
    }
}

/// The wanted children of each object (by uid) as of its last successful sweep for unwanted ones.
///
/// Sweeping looks at every child kind. A child becomes unwanted only when the wanted set changes
/// (spec, referenced Secrets, the ServiceMonitor CRD), so a sweep with the same set as the last
/// one would find nothing: it is skipped. The map lives as long as one leadership term (the memory
/// is rebuilt on each), so a restart or a new leader, which may have missed changes, sweeps
/// everything once.
#[derive(Default)]
pub struct SweptChildren(Mutex<HashMap<String, u64>>);

impl SweptChildren {
    /// A fingerprint of the wanted set: the children's `Kind/name`s, in any order, and `extra`
    /// (whatever else changes which kinds are swept).
    pub fn fingerprint(
        names: impl IntoIterator<Item = String>,
        extra: impl std::hash::Hash,
    ) -> u64 {
        let mut names: Vec<String> = names.into_iter().collect();
        names.sort_unstable();
        let mut hasher = DefaultHasher::new();
        names.hash(&mut hasher);
        extra.hash(&mut hasher);
        hasher.finish()
    }

    /// Whether the last sweep of `uid` was for the same wanted set.
    pub fn is_current(&self, uid: &str, fingerprint: u64) -> bool {
        self.0
            .lock()
            .is_ok_and(|swept| swept.get(uid) == Some(&fingerprint))
    }

    /// Records a successful sweep of `uid`.
    pub fn record(&self, uid: &str, fingerprint: u64) {
        if let Ok(mut swept) = self.0.lock() {
            insert_bounded(&mut swept, uid, fingerprint);
        }
    }
}

/// The resourceVersion at which each child (by `namespace/Kind/name`) last held what the operator
/// applies: written by this operator, or read and compared field by field.
///
/// Any change to an object changes its resourceVersion, so while the cache shows the remembered
/// version and the applied-hash is the one wanted, the child cannot have drifted and the drift
/// check needs no read. The map lives as long as one leadership term.
#[derive(Default)]
pub struct VerifiedChildren(Mutex<HashMap<String, String>>);

impl VerifiedChildren {
    /// Whether `child` was verified at `resource_version`.
    pub fn is_current(&self, child: &str, resource_version: Option<&str>) -> bool {
        resource_version.is_some_and(|version| {
            self.0
                .lock()
                .is_ok_and(|verified| verified.get(child).map(String::as_str) == Some(version))
        })
    }

    /// Whether anything is remembered for `child` (it existed at some point of this term).
    pub fn remembers(&self, child: &str) -> bool {
        self.0
            .lock()
            .is_ok_and(|verified| verified.contains_key(child))
    }

    /// Records that `child` held what was applied at `resource_version`.
    pub fn record(&self, child: &str, resource_version: Option<&str>) {
        let Ok(mut verified) = self.0.lock() else {
            return;
        };
        match resource_version {
            Some(version) => insert_bounded_to(
                &mut verified,
                MAX_REMEMBERED_CHILDREN,
                child,
                version.to_owned(),
            ),
            None => {
                verified.remove(child);
            }
        }
    }
}

/// Status writes of this operator that the controller's cache may not show yet, by object uid.
pub struct UnseenStatuses<S>(Mutex<HashMap<String, UnseenStatus<S>>>);

impl<S> Default for UnseenStatuses<S> {
    fn default() -> Self {
        Self(Mutex::new(HashMap::new()))
    }
}

/// A status this operator wrote that the watch may not have delivered yet.
struct UnseenStatus<S> {
    /// The status the write replaced.
    before: Option<S>,
    written: S,
}

impl<S: Clone + PartialEq> UnseenStatuses<S> {
    /// The freshest status of the object `uid` whose cached copy holds `cached`.
    ///
    /// The controller's cache can lag behind our own status write (under load a reconcile may start
    /// before the watch delivered it). Reconciling from that stale copy would stamp new
    /// `lastTransitionTime`s, write the same status again and repeat its Events. While the cache
    /// still shows what our write replaced, our write is the truth (the operator is the only
    /// writer of status); once it shows anything else, the cache wins and the entry is dropped,
    /// so the map only holds writes in flight.
    pub fn freshest(&self, uid: &str, cached: Option<&S>) -> Option<S> {
        let Ok(mut unseen) = self.0.lock() else {
            return cached.cloned();
        };
        match unseen.get(uid) {
            Some(entry) if entry.before.as_ref() == cached => Some(entry.written.clone()),
            Some(_) => {
                unseen.remove(uid);
                cached.cloned()
            }
            None => cached.cloned(),
        }
    }

    /// Remembers that `written` replaced `before` on the object `uid`.
    pub fn remember(&self, uid: &str, before: Option<S>, written: S) {
        if let Ok(mut unseen) = self.0.lock() {
            insert_bounded(&mut unseen, uid, UnseenStatus { before, written });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sweep_is_remembered_per_wanted_set_and_forgotten_when_full() {
        let names = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let wanted = names(&["Service/a", "Secret/a"]);
        let reordered = names(&["Secret/a", "Service/a"]);
        let fewer = names(&["Service/a"]);
        let fingerprint = SweptChildren::fingerprint(wanted.clone(), false);
        assert_eq!(fingerprint, SweptChildren::fingerprint(reordered, false));
        assert_ne!(
            fingerprint,
            SweptChildren::fingerprint(fewer.clone(), false)
        );
        assert_ne!(fingerprint, SweptChildren::fingerprint(wanted, true));

        let swept = SweptChildren::default();
        assert!(!swept.is_current("uid-1", fingerprint), "never swept");
        swept.record("uid-1", fingerprint);
        assert!(swept.is_current("uid-1", fingerprint));
        assert!(!swept.is_current("uid-1", SweptChildren::fingerprint(fewer, false)));
        assert!(!swept.is_current("uid-2", fingerprint), "per object");

        for i in 1..MAX_REMEMBERED {
            swept.record(&format!("other-{i}"), fingerprint);
        }
        assert!(
            swept.is_current("uid-1", fingerprint),
            "room for all so far"
        );
        swept.record("one-too-many", fingerprint);
        assert!(
            !swept.is_current("uid-1", fingerprint),
            "a full map forgets everything: each object sweeps once more"
        );
        assert!(swept.is_current("one-too-many", fingerprint));
    }

    #[test]
    fn a_cache_that_has_not_seen_our_write_yields_the_written_status() {
        let unseen = UnseenStatuses::<i32>::default();
        unseen.remember("uid", Some(1), 2);
        assert_eq!(
            unseen.freshest("uid", Some(&1)),
            Some(2),
            "stale cache: our write is the truth"
        );
        assert_eq!(unseen.freshest("uid", Some(&2)), Some(2));
        // The cache caught up: the entry is gone, the cache is used from now on.
        assert_eq!(unseen.freshest("uid", Some(&1)), Some(1));
        assert_eq!(unseen.freshest("other", None), None);
    }

    #[test]
    fn a_status_changed_by_someone_else_wins_over_our_memory() {
        let unseen = UnseenStatuses::<i32>::default();
        unseen.remember("uid", None, 2);
        assert_eq!(unseen.freshest("uid", Some(&7)), Some(7));
        assert_eq!(unseen.freshest("uid", None), None, "entry dropped");
    }

    #[test]
    fn a_child_is_verified_only_at_the_remembered_version() {
        let verified = VerifiedChildren::default();
        assert!(
            !verified.is_current("ns/Service/a", Some("1")),
            "never verified"
        );
        verified.record("ns/Service/a", Some("1"));
        assert!(verified.is_current("ns/Service/a", Some("1")));
        assert!(
            !verified.is_current("ns/Service/a", Some("2")),
            "changed since"
        );
        assert!(!verified.is_current("ns/Service/a", None));
        assert!(!verified.is_current("ns/Service/b", Some("1")), "per child");
        assert!(verified.remembers("ns/Service/a"));
        verified.record("ns/Service/a", None);
        assert!(!verified.is_current("ns/Service/a", Some("1")), "forgotten");
        assert!(!verified.remembers("ns/Service/a"));
    }

    #[test]
    fn backoff_doubles_per_failure_and_resets() {
        let failures = Backoff::default();
        assert_eq!(failures.next("a"), Duration::from_secs(1));
        assert_eq!(failures.next("a"), Duration::from_secs(2));
        assert_eq!(failures.next("b"), Duration::from_secs(1), "per object");
        failures.reset("a");
        assert_eq!(failures.next("a"), Duration::from_secs(1));
        assert_eq!(backoff(40), MAX_BACKOFF);
    }
}
