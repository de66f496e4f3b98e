//! An in-memory Kubernetes API server for tests, faithful enough that the real kube-runtime
//! `Controller`, `watcher` and `reflector` run against it unchanged.
//!
//! [`FakeApiServer::start`] serves HTTP on `127.0.0.1:0`; [`FakeApiServer::client`] gives a
//! [`kube::Client`] for it and [`FakeApiServer::kubeconfig_yaml`] a kubeconfig for a real binary.
//! Test-side accessors read objects directly, count requests, list writes, inject faults, drop open
//! watches and play the deployment controller ([`FakeApiServer::mark_deployment_available`]).
//!
//! What it does: built-in kinds the operator uses plus kinds registered by CRDs created through the
//! API (deleted with the CRD); discovery (`/api`, `/api/v1`, `/apis`, `/apis/{group}/{version}`,
//! `/version`); GET, LIST (label selectors equality- and set-based, field selectors on
//! `metadata.name`/`metadata.namespace`, all namespaces at the cluster path), WATCH (replay after a
//! resourceVersion, synthetic ADDED for none/"0", `sendInitialEvents`, bookmarks, `timeoutSeconds`,
//! 410 Expired past the retained history, selector transitions as ADDED/DELETED), POST, PUT, PATCH
//! (server-side apply, merge, JSON patch, strategic merge treated as merge), DELETE with owner-reference
//! cascade, the `/status` subresource, uid, resourceVersion, generation, creationTimestamp,
//! managedFields, `PartialObjectMetadata` responses, and `Status` error bodies.
//!
//! Deviations from a real API server (also listed in `docs/testing.md`):
//! - No authentication, authorization, admission (mutating or validating webhooks, CEL rules),
//!   defaulting, OpenAPI schema validation or pruning; only object names are validated.
//! - Server-side apply is simplified: a field set is the set of leaf paths through maps; lists are
//!   owned atomically (no associative list merge by key); conflicts compare values at overlapping paths.
//!   Writes other than apply take over the fields whose values they changed (operation `Update`);
//!   client-supplied managedFields are ignored.
//! - Strategic merge patches are plain merge patches (no `$patch` directives, lists replaced).
//! - No pagination: `limit` is ignored and no `continue` token is returned.
//! - Garbage collection is synchronous, in the DELETE request: dependents whose owners are all gone
//!   are deleted at once (`propagationPolicy: Orphan` keeps them), and an object created with owners
//!   that are all gone is deleted right after its creation. Deleting a Namespace deletes its
//!   contents at once (no Terminating phase). Finalizers and `deletionTimestamp` are not supported:
//!   deletion is immediate. DELETE of a collection is not supported.
//! - A CRD is Established the moment it is created; deleting it deletes its objects at once. Objects of
//!   a CRD are stored once per group and resource, whatever the version (no conversion).
//! - `metadata.generation` is kept for every kind (a real server leaves it unset on ConfigMaps,
//!   Secrets and other kinds without a spec).
//! - core/v1 Events and events.k8s.io/v1 Events are separate stores (a real server shares them).
//! - `dryRun` is rejected with 400 rather than emulated. Only the `status` subresource exists.
//! - Namespaces `default` and `kube-system` exist at start; namespaced objects need an existing namespace.

mod controls;
mod error;
mod fields;
mod http;
mod registry;
mod selector;
mod store;
mod watch;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use kube::Resource;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch as signal;

pub use controls::{FaultRule, RequestRecord, Verb, WriteRecord};
pub use error::ApiError;

use controls::Controls;
use store::{PatchBody, Store, Writer};

/// The state behind one lock: objects and the test controls.
pub(crate) struct ServerState {
    pub store: Store,
    pub controls: Controls,
}

/// Shared between the HTTP handlers, watch tasks and the test-side handle.
pub(crate) struct Shared {
    state: Mutex<ServerState>,
    /// Bumped to end every open watch.
    pub drop_watches: signal::Sender<u64>,
    /// Bumped after every request and test-side change, so tests can await conditions.
    activity: signal::Sender<u64>,
    pub open_watches: AtomicUsize,
}

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, ServerState> {
        // A panicking test thread cannot leave the state half-written: every mutation is a single
        // store call, so a poisoned lock is still consistent.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn notify_activity(&self) {
        self.activity
            .send_modify(|count| *count = count.wrapping_add(1));
    }
}

/// A running fake API server; stops when dropped.
pub struct FakeApiServer {
    shared: Arc<Shared>,
    url: String,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.server.abort();
        self.shared.drop_watches.send_modify(|epoch| *epoch += 1);
    }
}

/// The manager name the fake uses when it plays the deployment controller.
const DEPLOYMENT_CONTROLLER: &str = "kube-controller-manager";
/// The manager name the fake uses when it plays the persistent-volume binder.
const VOLUME_BINDER: &str = "persistentvolume-binder";
/// The manager name of objects created test-side with [`FakeApiServer::create_dynamic`].
const TEST_CLIENT: &str = "fake-apiserver-test";

fn deployments_info(state: &ServerState) -> Result<registry::ResourceInfo, ApiError> {
    state
        .store
        .registry
        .lookup("apps", "v1", "deployments")
        .cloned()
        .ok_or(ApiError::UnknownResource)
}

/// Sets a Deployment's status to rolled out and available for its current generation.
fn mark_available(
    store: &mut Store,
    info: &registry::ResourceInfo,
    namespace: &str,
    name: &str,
) -> Result<(), ApiError> {
    let deployment = store.get(info, Some(namespace), name)?;
    let replicas = deployment
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let generation = deployment
        .pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let now = store::now_timestamp();
    let status = json!({"status": {
        "observedGeneration": generation,
        "replicas": replicas,
        "updatedReplicas": replicas,
        "readyReplicas": replicas,
        "availableReplicas": replicas,
        "conditions": [
            {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
             "message": "Deployment has minimum availability.", "lastUpdateTime": now, "lastTransitionTime": now},
            {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable",
             "message": format!("ReplicaSet \"{name}\" has successfully progressed."), "lastUpdateTime": now, "lastTransitionTime": now},
        ],
    }});
    let writer = Writer {
        manager: DEPLOYMENT_CONTROLLER,
        subresource: Some("status"),
    };
    store.patch(
        info,
        Some(namespace),
        name,
        PatchBody::Merge(status),
        writer,
    )?;
    Ok(())
}

impl FakeApiServer {
    /// Starts a server on `127.0.0.1:0`.
    ///
    /// # Panics
    /// When no loopback port can be bound (the test environment is broken).
    #[allow(clippy::expect_used)]
    pub async fn start() -> Self {
        Self::try_start()
            .await
            .expect("bind the fake API server on 127.0.0.1:0")
    }

    /// Starts a server on `127.0.0.1:0`, reporting a failure to bind.
    pub async fn try_start() -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let shared = Arc::new(Shared {
            state: Mutex::new(ServerState {
                store: Store::new(),
                controls: Controls::default(),
            }),
            drop_watches: signal::channel(0).0,
            activity: signal::channel(0).0,
            open_watches: AtomicUsize::new(0),
        });
        let router = axum::Router::new()
            .fallback(http::handle)
            .with_state(Arc::clone(&shared));
        let server = tokio::spawn(async move {
            // The server runs until the handle aborts it; an accept error ends it early and the
            // test then fails on connection errors, which name the cause.
            let _ = axum::serve(listener, router).await;
        });
        Ok(Self {
            shared,
            url: format!("http://{address}"),
            server,
        })
    }

    /// The base URL, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A client for this server (default namespace `default`).
    ///
    /// # Panics
    /// Never for the `http://127.0.0.1:port` URL this server has; kube only fails on TLS set-up.
    #[allow(clippy::expect_used)]
    pub fn client(&self) -> kube::Client {
        let url = self.url.parse().expect("the server URL is a valid URI");
        kube::Client::try_from(kube::Config::new(url)).expect("a plain-HTTP kube client builds")
    }

    /// A kubeconfig pointing at this server, for running a real binary with `KUBECONFIG`.
    pub fn kubeconfig_yaml(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {url}\n\
             contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: default\n\
             current-context: fake\nusers:\n- name: fake\n  user: {{}}\n",
            url = self.url
        )
    }

    /// A stored object of a typed kind, as the server holds it.
    pub fn get<K>(&self, namespace: Option<&str>, name: &str) -> Option<K>
    where
        K: Resource<DynamicType = ()> + DeserializeOwned,
    {
        let object = self.get_dynamic(&K::group(&()), &K::plural(&()), namespace, name)?;
        serde_json::from_value(object).ok()
    }

    /// Every stored object of a typed kind, across namespaces.
    pub fn list<K>(&self) -> Vec<K>
    where
        K: Resource<DynamicType = ()> + DeserializeOwned,
    {
        self.list_dynamic(&K::group(&()), &K::plural(&()))
            .into_iter()
            .filter_map(|object| serde_json::from_value(object).ok())
            .collect()
    }

    /// A stored object by group (empty for core), plural, namespace and name.
    pub fn get_dynamic(
        &self,
        group: &str,
        plural: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<Value> {
        self.list_dynamic(group, plural).into_iter().find(|object| {
            object.pointer("/metadata/name").and_then(Value::as_str) == Some(name)
                && object
                    .pointer("/metadata/namespace")
                    .and_then(Value::as_str)
                    == namespace
        })
    }

    /// Every stored object of a group (empty for core) and plural.
    pub fn list_dynamic(&self, group: &str, plural: &str) -> Vec<Value> {
        self.shared.lock().store.objects_of(group, plural)
    }

    /// Whether `group/version` `plural` is currently served (e.g. after its CRD was created).
    pub fn is_served(&self, group: &str, version: &str, plural: &str) -> bool {
        self.shared
            .lock()
            .store
            .registry
            .lookup(group, version, plural)
            .is_some()
    }

    /// Every request to a resource endpoint so far, in order.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.lock().controls.requests.clone()
    }

    /// A position in the request log, for [`FakeApiServer::requests_since`].
    pub fn request_mark(&self) -> usize {
        self.shared.lock().controls.requests.len()
    }

    /// The requests after `mark`.
    pub fn requests_since(&self, mark: usize) -> Vec<RequestRecord> {
        self.shared
            .lock()
            .controls
            .requests
            .iter()
            .skip(mark)
            .cloned()
            .collect()
    }

    /// How many requests with `verb` went to resource `plural`.
    pub fn request_count(&self, verb: Verb, plural: &str) -> usize {
        self.shared
            .lock()
            .controls
            .requests
            .iter()
            .filter(|request| request.verb == verb && request.resource == plural)
            .count()
    }

    /// Every successful write request so far, in order.
    pub fn writes(&self) -> Vec<WriteRecord> {
        self.shared.lock().controls.writes.clone()
    }

    /// A position in the write log, for [`FakeApiServer::writes_since`].
    pub fn write_mark(&self) -> usize {
        self.shared.lock().controls.writes.len()
    }

    /// The writes after `mark`.
    pub fn writes_since(&self, mark: usize) -> Vec<WriteRecord> {
        self.shared
            .lock()
            .controls
            .writes
            .iter()
            .skip(mark)
            .cloned()
            .collect()
    }

    /// Arms a fault; rules are consumed in the order they were added.
    pub fn inject_fault(&self, rule: FaultRule) {
        self.shared.lock().controls.faults.push(rule);
    }

    /// Disarms every remaining fault.
    pub fn clear_faults(&self) {
        self.shared.lock().controls.faults.clear();
    }

    /// Ends every open watch stream, as an API server restart or a load balancer would.
    pub fn drop_watches(&self) {
        self.shared.drop_watches.send_modify(|epoch| *epoch += 1);
    }

    /// Watch streams currently open.
    pub fn open_watches(&self) -> usize {
        self.shared.open_watches.load(Ordering::SeqCst)
    }

    /// Creates an object test-side (as `kubectl apply` before the test would), by group (empty for
    /// core), version and plural; not in the request or write log. Watches see it as usual.
    pub fn create_dynamic(
        &self,
        group: &str,
        version: &str,
        plural: &str,
        namespace: Option<&str>,
        object: Value,
    ) -> Result<Value, ApiError> {
        let mut state = self.shared.lock();
        let info = state
            .store
            .registry
            .lookup(group, version, plural)
            .cloned()
            .ok_or(ApiError::UnknownResource)?;
        let created = state.store.create(
            &info,
            namespace,
            object,
            Writer {
                manager: TEST_CLIENT,
                subresource: None,
            },
        )?;
        drop(state);
        self.shared.notify_activity();
        Ok(created)
    }

    /// How many stored objects of `group`/`plural` satisfy `predicate`, without copying them
    /// (cheap enough to poll over thousands of objects).
    pub fn count_where(
        &self,
        group: &str,
        plural: &str,
        predicate: impl Fn(&Value) -> bool,
    ) -> usize {
        self.shared
            .lock()
            .store
            .count_where(group, plural, predicate)
    }

    /// Plays the deployment controller: sets the Deployment's status to fully rolled out and
    /// available for its current generation, through the status subresource (not in the write log).
    pub fn mark_deployment_available(&self, namespace: &str, name: &str) -> Result<(), ApiError> {
        let mut state = self.shared.lock();
        let info = deployments_info(&state)?;
        mark_available(&mut state.store, &info, namespace, name)?;
        drop(state);
        self.shared.notify_activity();
        Ok(())
    }

    /// [`FakeApiServer::mark_deployment_available`] for every Deployment whose status has not
    /// observed its current generation yet; returns how many were marked.
    pub fn mark_deployments_available(&self) -> Result<usize, ApiError> {
        let mut state = self.shared.lock();
        let info = deployments_info(&state)?;
        let lagging = state.store.keys_where("apps", "deployments", |deployment| {
            deployment.pointer("/status/observedGeneration")
                != deployment.pointer("/metadata/generation")
        });
        for (namespace, name) in &lagging {
            mark_available(&mut state.store, &info, namespace, name)?;
        }
        drop(state);
        if !lagging.is_empty() {
            self.shared.notify_activity();
        }
        Ok(lagging.len())
    }

    /// Plays the volume binder: every PersistentVolumeClaim not yet `Bound` becomes `Bound` (status
    /// subresource, not in the write log); returns how many changed.
    pub fn bind_persistent_volume_claims(&self) -> Result<usize, ApiError> {
        let mut state = self.shared.lock();
        let info = state
            .store
            .registry
            .lookup("", "v1", "persistentvolumeclaims")
            .cloned()
            .ok_or(ApiError::UnknownResource)?;
        let pending = state
            .store
            .keys_where("", "persistentvolumeclaims", |claim| {
                claim.pointer("/status/phase").and_then(Value::as_str) != Some("Bound")
            });
        for (namespace, name) in &pending {
            state.store.patch(
                &info,
                Some(namespace),
                name,
                PatchBody::Merge(json!({"status": {"phase": "Bound"}})),
                Writer {
                    manager: VOLUME_BINDER,
                    subresource: Some("status"),
                },
            )?;
        }
        drop(state);
        if !pending.is_empty() {
            self.shared.notify_activity();
        }
        Ok(pending.len())
    }

    /// Awaits `condition` (re-checked after every request or change) until `timeout`; returns its
    /// last value. Use instead of sleeping.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        mut condition: impl FnMut(&Self) -> bool,
    ) -> bool {
        let mut activity = self.shared.activity.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            activity.mark_unchanged();
            if condition(self) {
                return true;
            }
            if !matches!(
                tokio::time::timeout_at(deadline, activity.changed()).await,
                Ok(Ok(()))
            ) {
                return condition(self);
            }
        }
    }
}
