//! One reconcile of an `LlmProxy`: validate → ensure generated Secrets → dereference → render →
//! apply → delete unwanted children (only when the wanted set changed since the last sweep) →
//! observe → status (written only when it changed) → Events.
//! The error policy waits for a change on spec problems and backs off exponentially otherwise.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash as _, Hasher as _};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ObjectReference, PersistentVolumeClaim};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;

use crate::apply::{Applier, ApplyReport};
use crate::build;
use crate::controller::OperatorConfig;
use crate::crd::{LlmProxy, LlmProxyStatus};
use crate::dereference::dereference;
use crate::error::Error;
use crate::metrics::Metrics;
use crate::render::{self, FIELD_MANAGER};
use crate::sources::{Origin, SecretSources};
use crate::status::{self, DEGRADED, Observed, Outcome, READY};

/// Longest backoff after repeated API failures.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Shared state of the reconciler.
pub struct Context {
    /// API client.
    pub client: Client,
    /// Operator configuration.
    pub config: OperatorConfig,
    /// Event recorder (events.k8s.io).
    pub recorder: Recorder,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    failures: Mutex<HashMap<String, u32>>,
    unseen_status: UnseenStatuses,
    swept: SweptChildren,
}

/// Most objects whose last sweep [`SweptChildren`] remembers; when full it forgets them all (each
/// then sweeps once more), so deleted objects cannot grow it without bound.
const MAX_SWEPT: usize = 10_000;

/// The wanted children of each object (by uid) as of its last successful sweep for unwanted ones.
///
/// Sweeping lists every child kind (about a dozen list requests per reconcile, every resync). A
/// child becomes unwanted only when the wanted set changes (spec, referenced Secrets, the
/// ServiceMonitor CRD), so a sweep with the same set as the last one would find nothing: it is
/// skipped. The map lives as long as one leadership term (the context is rebuilt on each), so a
/// restart or a new leader, which may have missed changes, sweeps everything once.
#[derive(Default)]
struct SweptChildren(Mutex<HashMap<String, u64>>);

impl SweptChildren {
    /// A fingerprint of the wanted set (child names and whether ServiceMonitors are swept too).
    fn fingerprint(children: &[serde_json::Value], service_monitor_crd_served: bool) -> u64 {
        let mut names: Vec<String> = children.iter().map(crate::apply::display_name).collect();
        names.sort_unstable();
        let mut hasher = DefaultHasher::new();
        names.hash(&mut hasher);
        service_monitor_crd_served.hash(&mut hasher);
        hasher.finish()
    }

    fn is_current(&self, uid: &str, fingerprint: u64) -> bool {
        self.0
            .lock()
            .is_ok_and(|swept| swept.get(uid) == Some(&fingerprint))
    }

    fn record(&self, uid: &str, fingerprint: u64) {
        if let Ok(mut swept) = self.0.lock() {
            if swept.len() >= MAX_SWEPT && !swept.contains_key(uid) {
                swept.clear();
            }
            swept.insert(uid.to_owned(), fingerprint);
        }
    }
}

/// Status writes of this operator that the controller's cache may not show yet, by object uid.
#[derive(Default)]
pub struct UnseenStatuses(Mutex<HashMap<String, UnseenStatus>>);

impl UnseenStatuses {
    /// The freshest status of the object `uid` whose cached copy holds `cached`.
    ///
    /// The controller's cache can lag behind our own status write (under load a reconcile may start
    /// before the watch delivered it). Reconciling from that stale copy would stamp new
    /// `lastTransitionTime`s, write the same status again and repeat its Events. While the cache
    /// still shows what our write replaced, the status we wrote is the truth (the operator is the
    /// only writer of status); once it shows anything else, the cache wins and the entry is dropped,
    /// so the map only holds writes in flight.
    pub fn freshest(&self, uid: &str, cached: Option<&LlmProxyStatus>) -> Option<LlmProxyStatus> {
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

    pub fn remember(&self, uid: &str, before: Option<LlmProxyStatus>, written: LlmProxyStatus) {
        if let Ok(mut unseen) = self.0.lock() {
            unseen.insert(uid.to_owned(), UnseenStatus { before, written });
        }
    }
}

/// A status this operator wrote that the watch may not have delivered yet.
struct UnseenStatus {
    /// The status the write replaced.
    before: Option<LlmProxyStatus>,
    written: LlmProxyStatus,
}

impl Context {
    /// A context for `client`.
    pub fn new(
        client: Client,
        config: OperatorConfig,
        recorder: Recorder,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            client,
            config,
            recorder,
            metrics,
            failures: Mutex::new(HashMap::new()),
            unseen_status: UnseenStatuses::default(),
            swept: SweptChildren::default(),
        }
    }

    fn reset_failures(&self, key: &str) {
        if let Ok(mut failures) = self.failures.lock() {
            failures.remove(key);
        }
    }

    /// Records one more failure of `key` and returns the backoff before the next attempt.
    fn next_backoff(&self, key: &str) -> Duration {
        let attempts = match self.failures.lock() {
            Ok(mut failures) => {
                let count = failures.entry(key.to_owned()).or_insert(0);
                *count = count.saturating_add(1);
                *count
            }
            Err(_) => 1,
        };
        backoff(attempts)
    }
}

/// Exponential backoff: 1s, 2s, 4s, … capped at [`MAX_BACKOFF`].
pub fn backoff(attempts: u32) -> Duration {
    let exponent = attempts.saturating_sub(1).min(16);
    Duration::from_secs(1u64 << exponent).min(MAX_BACKOFF)
}

fn object_key(guard: &DeserializeGuard<LlmProxy>) -> String {
    format!(
        "{}/{}",
        guard.namespace().unwrap_or_default(),
        guard.name_any()
    )
}

/// The reconciler entry point of the controller.
pub async fn reconcile(
    guard: Arc<DeserializeGuard<LlmProxy>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let _timer = ctx.metrics.start_reconcile();
    let proxy = match &guard.0 {
        Ok(proxy) => proxy,
        Err(invalid) => {
            let error = Error::InvalidObject(invalid.error.clone());
            let reference = ObjectReference {
                api_version: Some(LlmProxy::api_version(&()).into_owned()),
                kind: Some(LlmProxy::kind(&()).into_owned()),
                name: invalid.metadata.name.clone(),
                namespace: invalid.metadata.namespace.clone(),
                uid: invalid.metadata.uid.clone(),
                ..ObjectReference::default()
            };
            publish(
                &ctx,
                &reference,
                EventType::Warning,
                error.category(),
                &error.to_string(),
            )
            .await;
            return Err(error);
        }
    };
    let result = reconcile_proxy(proxy, &ctx).await;
    if result.is_ok() {
        ctx.reset_failures(&object_key(&guard));
    }
    result
}

async fn reconcile_proxy(proxy: &LlmProxy, ctx: &Context) -> Result<Action, Error> {
    let namespace = proxy
        .namespace()
        .ok_or(Error::MissingMetadata("namespace"))?;
    let name = proxy
        .metadata
        .name
        .clone()
        .ok_or(Error::MissingMetadata("name"))?;
    let sources = SecretSources::resolve(&name, &proxy.spec);
    let reference = proxy.object_ref(&());

    let mut report = ApplyReport::default();
    let (outcome, service_monitor_crd_served, result) = if proxy.spec.suspend {
        (Outcome::Suspended, None, Ok(()))
    } else {
        match apply_children(proxy, ctx, &namespace, &name, &sources, &mut report).await {
            Ok(served) => (Outcome::Applied, served, Ok(())),
            Err(e) => (
                Outcome::Failed {
                    reason: e.category().to_owned(),
                    message: e.to_string(),
                },
                None,
                Err(e),
            ),
        }
    };

    for (reason, entries) in [
        ("Created", &report.created),
        ("Updated", &report.updated),
        ("Deleted", &report.deleted),
    ] {
        if !entries.is_empty() {
            publish(
                ctx,
                &reference,
                EventType::Normal,
                reason,
                &format!("{reason} {}", entries.join(", ")),
            )
            .await;
        }
    }

    let observed = observe(ctx, proxy, &namespace, &name, service_monitor_crd_served).await?;
    let now = Time(
        k8s_openapi::jiff::Timestamp::from_second(k8s_openapi::jiff::Timestamp::now().as_second())
            .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
    );
    let management_token_secret = Some(sources.management_token.name.clone());
    let uid = proxy.metadata.uid.clone().unwrap_or_default();
    let old_status = ctx.unseen_status.freshest(&uid, proxy.status.as_ref());
    let new_status = if old_status == proxy.status {
        status::compute(proxy, management_token_secret, &observed, &outcome, now)
    } else {
        let mut fresh = proxy.clone();
        fresh.status = old_status.clone();
        status::compute(&fresh, management_token_secret, &observed, &outcome, now)
    };
    if old_status.as_ref() != Some(&new_status) {
        patch_status(ctx, &namespace, &name, &new_status).await?;
        announce_transitions(ctx, &reference, old_status.as_ref(), &new_status).await;
        ctx.unseen_status
            .remember(&uid, proxy.status.clone(), new_status);
    }

    result.map(|()| Action::requeue(ctx.config.resync_interval))
}

/// Writes children; returns whether the ServiceMonitor CRD is served (when one is requested).
async fn apply_children(
    proxy: &LlmProxy,
    ctx: &Context,
    namespace: &str,
    name: &str,
    sources: &SecretSources,
    report: &mut ApplyReport,
) -> Result<Option<bool>, Error> {
    crate::validate::validate(&proxy.spec)?;
    let uid = proxy.uid().ok_or(Error::MissingMetadata("uid"))?;
    let applier = Applier::new(
        ctx.client.clone(),
        namespace.to_owned(),
        name.to_owned(),
        uid.clone(),
    );

    if sources.management_token.origin == Origin::Generated {
        let placeholder = render::ReferencedData::default();
        let render_ctx = render::context(proxy, &placeholder, &ctx.config)?;
        let secret = build::secrets::generated_management_secret(&render_ctx);
        if applier.create_if_absent(&secret).await? {
            report
                .created
                .push(format!("Secret/{}", sources.management_token.name));
        }
    }

    let referenced = dereference(&ctx.client, namespace, &proxy.spec, sources).await?;
    let children = render::render(proxy, &referenced, &ctx.config)?;
    applier.apply_all(&children, report).await?;
    let wanted = SweptChildren::fingerprint(&children, referenced.service_monitor_crd_served);
    if !ctx.swept.is_current(&uid, wanted) {
        applier
            .delete_unwanted(&children, referenced.service_monitor_crd_served, report)
            .await?;
        ctx.swept.record(&uid, wanted);
    }

    let metrics = &proxy.spec.metrics;
    Ok((metrics.enabled && metrics.service_monitor.enabled)
        .then_some(referenced.service_monitor_crd_served))
}

async fn observe(
    ctx: &Context,
    proxy: &LlmProxy,
    namespace: &str,
    name: &str,
    service_monitor_crd_served: Option<bool>,
) -> Result<Observed, Error> {
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), namespace);
    let deployment = deployments.get_opt(name).await?;
    let data_pvc_phase = if proxy.spec.persistence.enabled {
        let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), namespace);
        let pvc = pvcs.get_opt(&format!("{name}-data")).await?;
        Some(pvc.and_then(|p| p.status).and_then(|s| s.phase))
    } else {
        None
    };
    Ok(Observed {
        deployment,
        data_pvc_phase,
        service_monitor_crd_served,
    })
}

async fn patch_status(
    ctx: &Context,
    namespace: &str,
    name: &str,
    status: &LlmProxyStatus,
) -> Result<(), Error> {
    let api: Api<LlmProxy> = Api::namespaced(ctx.client.clone(), namespace);
    let patch = json!({
        "apiVersion": LlmProxy::api_version(&()),
        "kind": LlmProxy::kind(&()),
        "status": status,
    });
    api.patch_status(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}

fn condition<'a>(
    status: Option<&'a LlmProxyStatus>,
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    status.and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
}

/// Events for condition changes: a Warning for each new error, Normal when the proxy becomes ready.
async fn announce_transitions(
    ctx: &Context,
    reference: &ObjectReference,
    old: Option<&LlmProxyStatus>,
    new: &LlmProxyStatus,
) {
    if let Some(degraded) = condition(Some(new), DEGRADED).filter(|c| c.status == "True") {
        let previous = condition(old, DEGRADED);
        if previous.is_none_or(|p| p.status != "True" || p.message != degraded.message) {
            publish(
                ctx,
                reference,
                EventType::Warning,
                &degraded.reason,
                &degraded.message,
            )
            .await;
        }
    }
    if let Some(ready) = condition(Some(new), READY).filter(|c| c.status == "True")
        && condition(old, READY).is_none_or(|p| p.status != "True")
    {
        publish(
            ctx,
            reference,
            EventType::Normal,
            "RolledOut",
            &ready.message,
        )
        .await;
    }
    if let Some(monitor) =
        condition(Some(new), status::SERVICE_MONITOR).filter(|c| c.status == "False")
        && condition(old, status::SERVICE_MONITOR).is_none_or(|p| p.status != "False")
    {
        publish(
            ctx,
            reference,
            EventType::Warning,
            &monitor.reason,
            &monitor.message,
        )
        .await;
    }
}

/// Publishes an Event; a failure to publish is logged, never fatal.
async fn publish(
    ctx: &Context,
    reference: &ObjectReference,
    type_: EventType,
    reason: &str,
    note: &str,
) {
    let event = Event {
        type_,
        reason: reason.to_owned(),
        note: Some(note.chars().take(1024).collect()),
        action: "Reconcile".to_owned(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, reference).await {
        tracing::warn!(error = %e, reason, "cannot publish Event");
    }
}

/// The controller's error policy: spec problems wait for a change (the LlmProxy or a watched
/// Secret), everything else retries with per-object exponential backoff.
pub fn error_policy(
    guard: Arc<DeserializeGuard<LlmProxy>>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
    ctx.metrics.failed(error.category());
    let key = object_key(&guard);
    tracing::warn!(object = %key, category = error.category(), error = %error, "reconcile failed");
    if error.is_spec_problem() {
        Action::await_change()
    } else {
        Action::requeue(ctx.next_backoff(&key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sweep_is_remembered_per_wanted_set_and_forgotten_when_full() {
        let child = |kind: &str, name: &str| json!({"apiVersion": "v1", "kind": kind, "metadata": {"name": name}});
        let wanted = [child("Service", "a"), child("Secret", "a")];
        let reordered = [child("Secret", "a"), child("Service", "a")];
        let fewer = [child("Service", "a")];
        let fingerprint = SweptChildren::fingerprint(&wanted, false);
        assert_eq!(fingerprint, SweptChildren::fingerprint(&reordered, false));
        assert_ne!(fingerprint, SweptChildren::fingerprint(&fewer, false));
        assert_ne!(fingerprint, SweptChildren::fingerprint(&wanted, true));

        let swept = SweptChildren::default();
        assert!(!swept.is_current("uid-1", fingerprint), "never swept");
        swept.record("uid-1", fingerprint);
        assert!(swept.is_current("uid-1", fingerprint));
        assert!(!swept.is_current("uid-1", SweptChildren::fingerprint(&fewer, false)));
        assert!(!swept.is_current("uid-2", fingerprint), "per object");

        for i in 1..MAX_SWEPT {
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

    fn status(replicas: i32) -> LlmProxyStatus {
        LlmProxyStatus {
            replicas,
            ..LlmProxyStatus::default()
        }
    }

    #[test]
    fn a_cache_that_has_not_seen_our_write_yields_the_written_status() {
        let unseen = UnseenStatuses::default();
        let (old, written) = (status(1), status(2));
        unseen.remember("uid", Some(old.clone()), written.clone());
        assert_eq!(
            unseen.freshest("uid", Some(&old)),
            Some(written.clone()),
            "stale cache: our write is the truth"
        );
        assert_eq!(
            unseen.freshest("uid", Some(&written)),
            Some(written.clone())
        );
        // The cache caught up: the entry is gone, the cache is used from now on.
        assert_eq!(unseen.freshest("uid", Some(&old)), Some(old.clone()));
        assert_eq!(unseen.freshest("other", None), None);
    }

    #[test]
    fn a_status_changed_by_someone_else_wins_over_our_memory() {
        let unseen = UnseenStatuses::default();
        unseen.remember("uid", None, status(2));
        let external = status(7);
        assert_eq!(unseen.freshest("uid", Some(&external)), Some(external));
        assert_eq!(unseen.freshest("uid", None), None, "entry dropped");
    }
}
