//! The controller's read side, for any kind of owner: reflector stores filled by the same watches
//! that trigger reconciles, so a reconcile that finds nothing changed reads nothing from the API.
//!
//! What is kept is what a reconcile needs, not the objects: the children's metadata (the
//! Deployment's replicas and status and the PVC's status besides), every Secret with each value
//! replaced by its sha256 (a Secret's values never stay in the operator's memory), and whether
//! the ServiceMonitor CRD is served (asked of API discovery periodically). `managedFields` and kubectl's
//! last-applied annotation are dropped from everything, the owners included.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::BoxStream;
use futures::{FutureExt as _, StreamExt as _};
use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::{ApiResource, DynamicObject, PartialObjectMeta};
use kube::runtime::reflector::{self, ObjectRef, Store, store::Writer};
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Api, Client, Resource};
use sha2::{Digest as _, Sha256};
use tokio::sync::watch;

use crate::error::Error;
use crate::kinds::{
    CHILD_KINDS, ChildKind, DEPLOYMENT, PERSISTENT_VOLUME_CLAIM, SECRET, SERVICE_MONITOR,
};
use crate::vocabulary::{APPLIED_HASH_ANNOTATION, FIELD_MANAGER, LABEL_MANAGED_BY};

/// kubectl's copy of the last client-side applied object: large, and unused here.
const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// A stream of watched objects, as a controller trigger takes them.
pub type Feed<K> = BoxStream<'static, Result<K, watcher::Error>>;

/// The metadata of a child, as the controller cache holds it.
pub type ChildMeta = PartialObjectMeta<DynamicObject>;

/// How many watched objects a feed holds for the controller before its watch waits.
const FEED_BUFFER: usize = 1024;

/// The tasks running the watches that fill a [`Cache`], each its own (so the cache fills, and
/// can be waited for, before the controller runs); dropping it stops them.
pub struct Watches(Vec<tokio::task::JoinHandle<()>>);

/// What the watches of a [`Cache`] saw, for the controller's triggers.
pub struct Feeds {
    /// The children's Deployments.
    pub deployments: Feed<Deployment>,
    /// The children's PersistentVolumeClaims.
    pub claims: Feed<PersistentVolumeClaim>,
    /// Every Secret of the watched namespace(s).
    pub secrets: Feed<Secret>,
    /// The metadata of every other child kind (ServiceMonitors only while their CRD is served).
    pub metadata: Vec<(ApiResource, Feed<ChildMeta>)>,
}

/// What a cache knows about one child.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// The cache for its kind is not filled: ask the API.
    Unknown,
    /// No such object.
    Absent,
    /// The object exists, as last seen.
    Present {
        /// Its `metadata.resourceVersion`.
        resource_version: Option<String>,
        /// Its applied-hash annotation.
        applied_hash: Option<String>,
    },
}

/// The stores of one controller (one watched namespace, or all).
#[derive(Clone)]
pub struct Cache {
    deployments: Store<Deployment>,
    claims: Store<PersistentVolumeClaim>,
    secrets: Store<Secret>,
    metadata: Vec<(&'static ChildKind, Store<ChildMeta>)>,
    service_monitor_served: watch::Receiver<Option<bool>>,
}

fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Metadata-only requests for `resource`: `Api<PartialObjectMeta<_>>` asks for
/// `PartialObjectMetadata`.
fn scoped_metadata(
    client: &Client,
    namespace: Option<&str>,
    resource: &ApiResource,
) -> Api<ChildMeta> {
    match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, resource),
        None => Api::all_with(client.clone(), resource),
    }
}

impl Drop for Watches {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// Runs the watch `events` in a task that trims each object, stores it through `writer` and
/// passes it on; returns the store and the stream of what was stored.
fn feed<K>(
    tasks: &mut Vec<tokio::task::JoinHandle<()>>,
    writer: Writer<K>,
    events: impl futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
    trim: fn(&mut K),
) -> (Store<K>, Feed<K>)
where
    K: Resource + Clone + Send + Sync + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + Send + Sync,
{
    let store = writer.as_reader();
    let (sender, receiver) = tokio::sync::mpsc::channel(FEED_BUFFER);
    let mut touched = events
        .modify(trim)
        .reflect(writer)
        .touched_objects()
        .boxed();
    tasks.push(tokio::spawn(async move {
        while let Some(object) = touched.next().await {
            if sender.send(object).await.is_err() {
                return;
            }
        }
    }));
    let stream = futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|object| (object, receiver))
    })
    .boxed();
    (store, stream)
}

impl Cache {
    /// A cache of the children (labelled as managed by the operator) and Secrets in `namespace`
    /// (`None`: every namespace), what its watches see, and the watches (running from now on).
    /// API discovery is asked every `discovery_interval` whether the ServiceMonitor CRD is
    /// served; ServiceMonitors are watched while it is.
    pub fn new(
        client: &Client,
        namespace: Option<&str>,
        discovery_interval: Duration,
    ) -> (Self, Feeds, Watches) {
        let (served, service_monitor_served) = watch::channel(None);
        let mut tasks = vec![tokio::spawn(discover_service_monitors(
            client.clone(),
            discovery_interval,
            served,
        ))];
        let children = watcher::Config::default()
            .labels(&format!("{LABEL_MANAGED_BY}={FIELD_MANAGER}"))
            .any_semantic();

        let (deployments, deployments_feed) = feed(
            &mut tasks,
            Writer::default(),
            watcher(scoped(client, namespace), children.clone()),
            trim_deployment,
        );
        let (claims, claims_feed) = feed(
            &mut tasks,
            Writer::default(),
            watcher(scoped(client, namespace), children.clone()),
            trim_claim,
        );
        let (secrets, secrets_feed) = feed(
            &mut tasks,
            Writer::default(),
            watcher(
                scoped(client, namespace),
                watcher::Config::default().any_semantic(),
            ),
            digest_secret,
        );

        let mut metadata = Vec::new();
        let mut metadata_feeds = Vec::new();
        let metadata_kinds = CHILD_KINDS
            .iter()
            .filter(|kind| ![SECRET, DEPLOYMENT, PERSISTENT_VOLUME_CLAIM].contains(kind));
        for kind in metadata_kinds {
            let resource = kind.api_resource();
            let events = watcher(
                scoped_metadata(client, namespace, &resource),
                children.clone(),
            );
            let (store, stream) =
                feed(&mut tasks, Writer::new(resource.clone()), events, trim_meta);
            metadata.push((kind, store));
            metadata_feeds.push((resource, stream));
        }
        let resource = SERVICE_MONITOR.api_resource();
        let api = scoped_metadata(client, namespace, &resource);
        let events = while_served(service_monitor_served.clone(), move || {
            watcher(api.clone(), children.clone()).boxed()
        });
        let (store, stream) = feed(&mut tasks, Writer::new(resource.clone()), events, trim_meta);
        metadata.push((&SERVICE_MONITOR, store));
        metadata_feeds.push((resource, stream));

        let cache = Self {
            deployments,
            claims,
            secrets,
            metadata,
            service_monitor_served,
        };
        let feeds = Feeds {
            deployments: deployments_feed,
            claims: claims_feed,
            secrets: secrets_feed,
            metadata: metadata_feeds,
        };
        (cache, feeds, Watches(tasks))
    }

    /// Waits until every store has been filled once and the discovery has answered; false when
    /// the watches stopped first.
    pub async fn ready(&self) -> bool {
        let stores = async {
            self.deployments.wait_until_ready().await?;
            self.claims.wait_until_ready().await?;
            self.secrets.wait_until_ready().await?;
            for (kind, store) in &self.metadata {
                if **kind != SERVICE_MONITOR {
                    store.wait_until_ready().await?;
                }
            }
            Ok::<(), reflector::store::WriterDropped>(())
        };
        let mut served = self.service_monitor_served.clone();
        stores.await.is_ok() && served.wait_for(Option::is_some).await.is_ok()
    }

    /// Whether the ServiceMonitor CRD is served, as the last discovery found (false before the first).
    pub fn service_monitor_served(&self) -> bool {
        self.service_monitor_served.borrow().unwrap_or(false)
    }

    /// The discovery's answers as they come (`None` until the first).
    pub fn service_monitor_answers(&self) -> watch::Receiver<Option<bool>> {
        self.service_monitor_served.clone()
    }

    /// The cached Deployment `namespace/name` (metadata, replicas and status only).
    pub fn deployment(&self, namespace: &str, name: &str) -> Option<Arc<Deployment>> {
        self.deployments
            .get(&ObjectRef::new(name).within(namespace))
    }

    /// The cached PersistentVolumeClaim `namespace/name` (metadata and status only).
    pub fn claim(&self, namespace: &str, name: &str) -> Option<Arc<PersistentVolumeClaim>> {
        self.claims.get(&ObjectRef::new(name).within(namespace))
    }

    /// The cached Secret `namespace/name`: its data holds the sha256 of each value, not the value.
    pub fn secret(&self, namespace: &str, name: &str) -> Option<Arc<Secret>> {
        self.secrets.get(&ObjectRef::new(name).within(namespace))
    }

    /// What the cache knows about the child `kind` `namespace/name`.
    pub fn child(&self, kind: &ChildKind, namespace: &str, name: &str) -> Lookup {
        let known = |meta: Option<&ObjectMeta>| match meta {
            Some(meta) => Lookup::Present {
                resource_version: meta.resource_version.clone(),
                applied_hash: meta
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(APPLIED_HASH_ANNOTATION))
                    .cloned(),
            },
            None => Lookup::Absent,
        };
        match *kind {
            DEPLOYMENT => known(
                self.deployment(namespace, name)
                    .as_ref()
                    .map(|d| &d.metadata),
            ),
            PERSISTENT_VOLUME_CLAIM => {
                known(self.claim(namespace, name).as_ref().map(|c| &c.metadata))
            }
            SECRET => known(self.secret(namespace, name).as_ref().map(|s| &s.metadata)),
            _ => {
                let Some((_, store)) = self.metadata.iter().find(|(k, _)| *k == kind) else {
                    return Lookup::Unknown;
                };
                if !is_filled(store) {
                    return Lookup::Unknown;
                }
                let reference = ObjectRef::new_with(name, kind.api_resource()).within(namespace);
                known(store.get(&reference).as_ref().map(|m| &m.metadata))
            }
        }
    }

    /// The metadata of every cached child of `kind` in `namespace` that `keep` accepts; `None`
    /// when the cache for the kind is not filled.
    pub fn children(
        &self,
        kind: &ChildKind,
        namespace: &str,
        keep: impl Fn(&ObjectMeta) -> bool,
    ) -> Option<Vec<ObjectMeta>> {
        fn select<K>(
            store: &Store<K>,
            namespace: &str,
            keep: impl Fn(&ObjectMeta) -> bool,
        ) -> Vec<ObjectMeta>
        where
            K: Resource + Clone,
            K::DynamicType: Eq + std::hash::Hash + Clone,
        {
            store
                .state()
                .iter()
                .map(|object| object.meta())
                .filter(|meta| meta.namespace.as_deref() == Some(namespace) && keep(meta))
                .cloned()
                .collect()
        }
        match *kind {
            DEPLOYMENT => Some(select(&self.deployments, namespace, keep)),
            PERSISTENT_VOLUME_CLAIM => Some(select(&self.claims, namespace, keep)),
            SECRET => Some(select(&self.secrets, namespace, keep)),
            _ => {
                let (_, store) = self.metadata.iter().find(|(k, _)| *k == kind)?;
                is_filled(store).then(|| select(store, namespace, keep))
            }
        }
    }
}

/// Asks API discovery whether the ServiceMonitor CRD is served every `interval` and publishes
/// each answer on `served`. A failed check is logged and skipped.
async fn discover_service_monitors(
    client: Client,
    interval: Duration,
    served: watch::Sender<Option<bool>>,
) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match service_monitor_served(&client).await {
            Ok(now) => {
                served.send_replace(Some(now));
            }
            Err(e) => {
                tracing::warn!(error = %e, "API discovery of the ServiceMonitor CRD failed; retrying")
            }
        }
    }
}

/// Whether `servicemonitors.monitoring.coreos.com/v1` is served (API discovery, no CRD read access
/// needed).
pub async fn service_monitor_served(client: &Client) -> Result<bool, Error> {
    let group_version = SERVICE_MONITOR.api_version();
    match client.list_api_group_resources(&group_version).await {
        Ok(list) => Ok(list
            .resources
            .iter()
            .any(|r| r.name == SERVICE_MONITOR.plural)),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(false),
        Err(e) => Err(Error::kube(format!("discover {group_version}"), e)),
    }
}

fn is_filled<K: Resource + Clone>(store: &Store<K>) -> bool
where
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    matches!(store.wait_until_ready().now_or_never(), Some(Ok(())))
}

/// The events of `watch()` while `served` is `Some(true)`: started when it turns true, dropped
/// when it turns false, started afresh (with a new initial list) when it turns true again. When
/// it is dropped, an empty relist follows: with the CRD, the API server deleted every object of
/// the kind, and the store must not show them.
fn while_served<K: Send + 'static>(
    served: watch::Receiver<Option<bool>>,
    watch: impl Fn() -> Feed<watcher::Event<K>> + Send + Sync + 'static,
) -> impl futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static {
    let watch = Arc::new(watch);
    futures::stream::unfold(served, move |mut served| {
        let watch = watch.clone();
        async move {
            served.wait_for(|served| *served == Some(true)).await.ok()?;
            let mut stop = served.clone();
            let until_unserved = async move {
                let _ = stop.wait_for(|served| *served != Some(true)).await;
            };
            let emptied =
                futures::stream::iter([Ok(watcher::Event::Init), Ok(watcher::Event::InitDone)]);
            Some((
                watch().take_until(Box::pin(until_unserved)).chain(emptied),
                served,
            ))
        }
    })
    .flatten()
}

fn trim_meta_fields(meta: &mut ObjectMeta) {
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove(LAST_APPLIED_ANNOTATION);
    }
}

/// Drops the fields no reconcile reads from an owner before it is cached.
pub fn trim_owner<K: Resource>(owner: &mut K) {
    trim_meta_fields(owner.meta_mut());
}

fn trim_meta(object: &mut ChildMeta) {
    trim_meta_fields(&mut object.metadata);
}

fn trim_deployment(deployment: &mut Deployment) {
    trim_meta_fields(&mut deployment.metadata);
    if let Some(spec) = deployment.spec.as_mut() {
        *spec = DeploymentSpec {
            replicas: spec.replicas,
            ..DeploymentSpec::default()
        };
    }
}

fn trim_claim(claim: &mut PersistentVolumeClaim) {
    trim_meta_fields(&mut claim.metadata);
    claim.spec = None;
}

/// sha256 of a Secret value: what the cache keeps instead of the value.
pub fn secret_digest(value: &[u8]) -> Vec<u8> {
    Sha256::digest(value).to_vec()
}

/// Replaces each value of `secret` by its sha256 (`stringData`, which the API server folds into
/// `data`, is folded here too, `data` winning).
pub fn digest_secret(secret: &mut Secret) {
    trim_meta_fields(&mut secret.metadata);
    let mut digests: BTreeMap<String, ByteString> = BTreeMap::new();
    for (key, value) in secret.string_data.take().into_iter().flatten() {
        digests.insert(key, ByteString(secret_digest(value.as_bytes())));
    }
    for (key, value) in secret.data.take().into_iter().flatten() {
        digests.insert(key, ByteString(secret_digest(&value.0)));
    }
    secret.data = Some(digests);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cached_secret_holds_digests_never_values() {
        let mut secret = Secret {
            data: Some(BTreeMap::from([(
                "key".to_owned(),
                ByteString(b"sk-live-123".to_vec()),
            )])),
            string_data: Some(BTreeMap::from([
                ("key".to_owned(), "ignored: data wins".to_owned()),
                ("other".to_owned(), "plain".to_owned()),
            ])),
            ..Secret::default()
        };
        digest_secret(&mut secret);
        let data = secret.data.unwrap_or_default();
        assert_eq!(data["key"].0, secret_digest(b"sk-live-123"));
        assert_eq!(data["other"].0, secret_digest(b"plain"));
        assert!(secret.string_data.is_none());
        let text = format!("{data:?}");
        assert!(!text.contains("sk-live") && !text.contains("plain"));
    }

    #[test]
    fn a_watch_runs_while_its_crd_is_served_and_its_objects_go_with_the_crd() {
        let (served, receiver) = watch::channel(None);
        let started = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = started.clone();
        let mut events = Box::pin(while_served::<ChildMeta>(receiver, move || {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            futures::stream::pending().boxed()
        }));
        fn is_pending(events: &mut (impl futures::Stream + Unpin)) -> bool {
            futures::FutureExt::now_or_never(events.next()).is_none()
        }
        assert!(is_pending(&mut events));
        served.send_replace(Some(false));
        assert!(is_pending(&mut events));
        assert_eq!(
            started.load(std::sync::atomic::Ordering::SeqCst),
            0,
            "not served: no watch"
        );
        served.send_replace(Some(true));
        assert!(
            is_pending(&mut events),
            "the watch runs and has nothing to say"
        );
        assert_eq!(started.load(std::sync::atomic::Ordering::SeqCst), 1);
        served.send_replace(Some(false));
        // Both at once, without waiting for anything else.
        let mut next = || futures::FutureExt::now_or_never(events.next()).flatten();
        assert!(matches!(next(), Some(Ok(watcher::Event::Init))));
        assert!(
            matches!(next(), Some(Ok(watcher::Event::InitDone))),
            "an empty relist"
        );
        assert!(is_pending(&mut events));
        served.send_replace(Some(true));
        assert!(is_pending(&mut events));
        assert_eq!(
            started.load(std::sync::atomic::Ordering::SeqCst),
            2,
            "started afresh"
        );
    }

    #[test]
    fn trimming_keeps_what_a_reconcile_reads() {
        let mut deployment: Deployment = serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": "demo", "namespace": "ns", "generation": 3, "resourceVersion": "7",
                "annotations": {"llm-proxy.io/applied-hash": "abc", LAST_APPLIED_ANNOTATION: "{}"},
                "managedFields": [{"manager": "x"}],
            },
            "spec": {"replicas": 2, "selector": {}, "template": {"spec": {"containers": [{"name": "c"}]}}},
            "status": {"availableReplicas": 2, "observedGeneration": 3},
        }))
        .unwrap_or_default();
        trim_deployment(&mut deployment);
        assert_eq!(deployment.metadata.generation, Some(3));
        assert_eq!(deployment.metadata.resource_version.as_deref(), Some("7"));
        let annotations = deployment.metadata.annotations.clone().unwrap_or_default();
        assert_eq!(
            annotations
                .get("llm-proxy.io/applied-hash")
                .map(String::as_str),
            Some("abc")
        );
        assert!(!annotations.contains_key(LAST_APPLIED_ANNOTATION));
        assert!(deployment.metadata.managed_fields.is_none());
        let spec = deployment.spec.clone().unwrap_or_default();
        assert_eq!(spec.replicas, Some(2));
        assert!(spec.template.spec.is_none(), "the pod template is dropped");
        assert_eq!(
            deployment.status.and_then(|s| s.available_replicas),
            Some(2)
        );
    }
}
