//! The runtime wiring, at the top of the crate: serves metrics and health, (optionally) holds a
//! Lease so only one replica writes, and runs one controller per kind and watched namespace
//! (today `LlmProxy`), each watching its objects and their children.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::ListParams;
use kube::core::DeserializeGuard;
use kube::runtime::controller::{Config as ControllerConfig, Controller};
use kube::runtime::events::Reporter;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use tokio::sync::watch;

use crate::cache::{Cache, trim_owner};
use crate::config::{LeaderElection, OperatorConfig, default_identity};
use crate::context::Shared;
use crate::crd::LlmProxy;
use crate::error::StartError;
use crate::events::Publisher;
use crate::leader::LeaderLease;
use crate::llmproxy::sources::SecretSources;
use crate::llmproxy::{self, Context};
use crate::metrics::{self, Metrics};
use crate::vocabulary::FIELD_MANAGER;

/// How often the operator checks again for the CRD when it is not installed.
const CRD_RETRY_INTERVAL: Duration = Duration::from_secs(10);
/// A cloneable "stop" signal built from a one-shot future.
#[derive(Clone)]
struct Stop(watch::Receiver<bool>);

impl Stop {
    fn new(
        trigger: impl Future<Output = ()> + Send + 'static,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = watch::channel(false);
        let task = tokio::spawn(async move {
            trigger.await;
            let _ = tx.send(true);
        });
        (Self(rx), task)
    }

    fn is_stopped(&self) -> bool {
        *self.0.borrow()
    }

    fn wait(&self) -> impl Future<Output = ()> + Send + Sync + 'static {
        let mut rx = self.0.clone();
        async move {
            // An error means the sender is gone, which only happens after it sent `true`.
            let _ = rx.wait_for(|stopped| *stopped).await;
        }
    }
}

/// Runs until `shutdown` resolves, recording into `metrics`.
pub async fn run(
    client: kube::Client,
    config: OperatorConfig,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let (stop, stop_task) = Stop::new(shutdown);
    let server = match config.metrics_addr {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr).await?;
            let router = metrics::router(metrics.clone());
            let stop = stop.clone();
            Some(tokio::spawn(async move {
                if let Err(e) = axum::serve(listener, router)
                    .with_graceful_shutdown(stop.wait())
                    .await
                {
                    tracing::error!(error = %e, "metrics server failed");
                }
            }))
        }
        None => None,
    };

    match config.leader_election.clone() {
        None => {
            metrics.leader.set(1);
            run_controllers(client, config, metrics.clone(), stop.clone()).await
        }
        Some(election) => {
            run_with_lease(client, config, election, metrics.clone(), stop.clone()).await
        }
    }
    metrics.set_ready(false);
    // Stop the metrics server too when the controllers ended for another reason than `shutdown`.
    stop_task.abort();
    if let Some(server) = server {
        server.abort();
        let _ = server.await;
    }
    Ok(())
}

async fn run_with_lease(
    client: Client,
    config: OperatorConfig,
    election: LeaderElection,
    metrics: Arc<Metrics>,
    stop: Stop,
) {
    let lease = Arc::new(LeaderLease::new(client.clone(), election.clone()));
    // A standby is healthy and ready: it is doing its job.
    metrics.set_ready(true);
    loop {
        tracing::info!(identity = %election.identity, lease = %election.lease_name, "waiting for leadership");
        tokio::select! {
            () = lease.acquire() => {}
            () = stop.wait() => return,
        }
        tracing::info!(identity = %election.identity, "became leader");
        metrics.leader.set(1);
        let (lost_tx, lost_rx) = watch::channel(false);
        let holder = {
            let lease = lease.clone();
            tokio::spawn(async move {
                lease.hold().await;
                let _ = lost_tx.send(true);
            })
        };
        let leading = Stop(merge_stops(stop.clone(), lost_rx));
        run_controllers(client.clone(), config.clone(), metrics.clone(), leading).await;
        holder.abort();
        metrics.leader.set(0);
        if stop.is_stopped() {
            if let Err(e) = lease.release().await {
                tracing::warn!(error = %e, "cannot release the lease");
            }
            return;
        }
        tracing::warn!(identity = %election.identity, "lost leadership; standing by");
    }
}

/// A receiver that turns true when either `stop` fires or `lost` turns true.
fn merge_stops(stop: Stop, mut lost: watch::Receiver<bool>) -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        tokio::select! {
            () = stop.wait() => {}
            _ = lost.wait_for(|l| *l) => {}
        }
        let _ = tx.send(true);
    });
    rx
}

/// Waits until the LlmProxy CRD is served; false when stopped first.
async fn wait_for_crd(api: &Api<LlmProxy>, stop: &Stop) -> bool {
    loop {
        match api.list(&ListParams::default().limit(1)).await {
            Ok(_) => return true,
            Err(kube::Error::Api(status)) if status.code == 404 => tracing::warn!(
                "the LlmProxy CRD (llmproxies.llm-proxy.io) is not installed; apply crds/ or the operator chart. Retrying in {}s",
                CRD_RETRY_INTERVAL.as_secs()
            ),
            Err(e) => tracing::warn!(error = %e, "cannot list LlmProxy objects; retrying"),
        }
        tokio::select! {
            () = tokio::time::sleep(CRD_RETRY_INTERVAL) => {}
            () = stop.wait() => return false,
        }
    }
}

fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    <K as Resource>::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

async fn run_controllers(
    client: Client,
    config: OperatorConfig,
    metrics: Arc<Metrics>,
    stop: Stop,
) {
    let probe: Api<LlmProxy> = match config.watch_namespaces.first() {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    if !wait_for_crd(&probe, &stop).await {
        return;
    }
    let identity = config
        .leader_election
        .as_ref()
        .map(|l| l.identity.clone())
        .unwrap_or_else(default_identity);
    let events = Publisher::new(
        client.clone(),
        Reporter {
            controller: FIELD_MANAGER.into(),
            instance: Some(identity),
        },
    );
    let shared = Shared {
        client: client.clone(),
        config: config.clone(),
        events,
        metrics: metrics.clone(),
    };
    metrics.set_ready(true);
    let namespaces: Vec<Option<String>> = if config.watch_namespaces.is_empty() {
        vec![None]
    } else {
        config.watch_namespaces.iter().cloned().map(Some).collect()
    };
    let controllers = namespaces
        .into_iter()
        .map(|ns| run_controller(client.clone(), ns, shared.clone(), stop.clone()));
    futures::future::join_all(controllers).await;
}

async fn run_controller(client: Client, namespace: Option<String>, shared: Shared, stop: Stop) {
    let ns = namespace.as_deref();
    tracing::info!(
        namespace = ns.unwrap_or("*"),
        "starting the LlmProxy controller"
    );
    // The watches stop when `_watches` is dropped, on every return.
    let (cache, feeds, _watches) = Cache::new(&client, ns, shared.config.discovery_interval);
    tokio::select! {
        filled = cache.ready() => if !filled {
            tracing::error!("the controller's watches stopped before its caches were filled");
            return;
        },
        () = stop.wait() => return,
    }
    let discovery_changes = service_monitor_changes(cache.service_monitor_answers());
    let ctx = Arc::new(Context::new(shared, cache));

    let (proxies, writer) = reflector::store::<DeserializeGuard<LlmProxy>>();
    let proxy_events = watcher(
        scoped(&client, ns),
        watcher::Config::default().any_semantic(),
    )
    .modify(trim_owner)
    .reflect(writer)
    .applied_objects();
    let mut controller = Controller::for_stream(proxy_events, proxies.clone())
        .with_config(
            ControllerConfig::default().concurrency(ctx.shared.config.reconcile_concurrency),
        )
        .reconcile_all_on(discovery_changes)
        .owns_stream(feeds.deployments)
        .owns_stream(feeds.claims)
        .watches_stream(feeds.secrets, move |secret| {
            proxies_using_secret(&proxies, &secret)
        });
    for (resource, feed) in feeds.metadata {
        controller = controller.owns_stream_with(feed, resource);
    }
    controller
        .graceful_shutdown_on(stop.wait())
        .run(llmproxy::reconcile, llmproxy::error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => tracing::debug!(object = %object, "reconciled"),
                Err(e) => tracing::debug!(error = %e, "reconcile not completed"),
            }
        })
        .await;
}

/// Yields whenever the discovery's answer changes after the first (the ServiceMonitor CRD was
/// installed or removed), so every LlmProxy is reconciled at once.
fn service_monitor_changes(
    served: watch::Receiver<Option<bool>>,
) -> impl futures::Stream<Item = ()> + Send + 'static {
    let first = *served.borrow();
    futures::stream::unfold((served, first), |(mut served, mut last)| async move {
        loop {
            served.changed().await.ok()?;
            let now = *served.borrow_and_update();
            let changed = matches!((last, now), (Some(before), Some(after)) if before != after);
            last = now;
            if changed {
                tracing::info!(
                    served = now,
                    "the ServiceMonitor CRD changed; reconciling every LlmProxy"
                );
                return Some(((), (served, last)));
            }
        }
    })
}

/// LlmProxies that own `secret` or reference it in their spec (so a changed Secret rolls the pods).
fn proxies_using_secret(
    store: &Store<DeserializeGuard<LlmProxy>>,
    secret: &Secret,
) -> Vec<ObjectRef<DeserializeGuard<LlmProxy>>> {
    let secret_name = secret.name_any();
    let namespace = secret.namespace();
    store
        .state()
        .iter()
        .filter(|guard| guard.namespace() == namespace)
        .filter(|guard| {
            let owned = secret
                .owner_references()
                .iter()
                .any(|o| Some(&o.uid) == guard.meta().uid.as_ref());
            let referenced = guard.0.as_ref().is_ok_and(|proxy| {
                SecretSources::resolve(&proxy.name_any(), &proxy.spec)
                    .referenced()
                    .any(|s| s.name == secret_name)
            });
            owned || referenced
        })
        .map(|guard| ObjectRef::from_obj(guard.as_ref()))
        .collect()
}
