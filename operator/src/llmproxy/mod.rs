//! The `LlmProxy` kind: one reconcile is a straight line, each step once, one module each —
//! [`dereference`] (everything read from the API) → [`validate`] (into a [`ValidatedProxy`]) →
//! [`resources`] (pure builders) → [`apply`](crate::apply) (server-side apply, create-once,
//! sweep of unwanted children) → [`status`] (from the previous status, the observed children
//! and the outcome; written only when it changed) and the Events it announces.
//! The error policy waits for a change on spec problems and backs off exponentially otherwise.

pub mod dereference;
pub mod resources;
pub mod sources;
pub mod status;
pub mod validate;

use std::sync::Arc;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ObjectReference, PersistentVolumeClaim};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, Resource, ResourceExt};
use serde_json::json;
use tracing::Instrument as _;

use self::dereference::{Dereferenced, ReferencedData};
use self::resources::storage::data_pvc_name;
use self::sources::SecretSources;
use self::status::{Observed, Outcome};
use self::validate::ValidatedProxy;
use crate::apply::{Applier, ApplyReport};
use crate::cache::Cache;
use crate::config::OperatorConfig;
use crate::context::Shared;
use crate::crd::{LlmProxy, LlmProxyStatus};
use crate::error::Error;
use crate::kinds::{DEPLOYMENT, PERSISTENT_VOLUME_CLAIM};
use crate::memory::{Memory, SweptChildren};
use crate::vocabulary::FIELD_MANAGER;

/// The kind's name in metrics, logs and errors.
pub const KIND: &str = "LlmProxy";

/// Everything the `LlmProxy` reconciler works with.
pub struct Context {
    /// What all kinds share.
    pub shared: Shared,
    /// The controller's caches of children and Secrets.
    pub cache: Cache,
    /// What this kind's controller remembers between reconciles.
    pub memory: Memory<LlmProxyStatus>,
}

impl Context {
    /// A context with empty memory, reading through `cache`.
    pub fn new(shared: Shared, cache: Cache) -> Self {
        Self {
            shared,
            cache,
            memory: Memory::default(),
        }
    }
}

/// Every child object the operator applies for `proxy` with `referenced` data, in apply order:
/// validate → build, the pure part of a reconcile (`render -f` and the golden tests run it). The
/// generated management-token Secret is not included: it is created once, never applied.
pub fn render(
    proxy: &LlmProxy,
    referenced: &ReferencedData,
    config: &OperatorConfig,
) -> Result<Vec<serde_json::Value>, Error> {
    let validated = validate::validate(proxy, referenced.clone(), config)?;
    resources::all(&validated)
}

/// Serializes objects as a multi-document YAML stream (`---` separated).
pub fn to_multi_doc_yaml(
    objects: &[serde_json::Value],
) -> Result<String, serde_saphyr::SerializeError> {
    let mut out = String::new();
    for object in objects {
        out.push_str("---\n");
        out.push_str(&serde_saphyr::to_string(object)?);
    }
    Ok(out)
}

fn object_key(guard: &DeserializeGuard<LlmProxy>) -> String {
    format!(
        "{}/{}",
        guard.namespace().unwrap_or_default(),
        guard.name_any()
    )
}

/// The reconciler entry point of the controller: one span per reconcile carries the object.
pub async fn reconcile(
    guard: Arc<DeserializeGuard<LlmProxy>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let meta = guard.meta();
    let span = tracing::info_span!(
        "reconcile",
        kind = KIND,
        namespace = meta.namespace.as_deref().unwrap_or_default(),
        name = meta.name.as_deref().unwrap_or_default(),
        generation = meta.generation.unwrap_or_default(),
    );
    async move {
        let _timer = ctx.shared.metrics.start_reconcile(KIND);
        let proxy = match &guard.0 {
            Ok(proxy) => proxy,
            Err(invalid) => return Err(report_invalid_object(&ctx, invalid).await),
        };
        let result = reconcile_proxy(proxy, &ctx).await;
        if result.is_ok() {
            ctx.memory.backoff.reset(&object_key(&guard));
        }
        result
    }
    .instrument(span)
    .await
}

async fn report_invalid_object(
    ctx: &Context,
    invalid: &kube::core::error_boundary::InvalidObject,
) -> Error {
    let error = Error::InvalidObject {
        kind: KIND,
        reason: invalid.error.clone(),
    };
    let reference = ObjectReference {
        api_version: Some(LlmProxy::api_version(&()).into_owned()),
        kind: Some(LlmProxy::kind(&()).into_owned()),
        name: invalid.metadata.name.clone(),
        namespace: invalid.metadata.namespace.clone(),
        uid: invalid.metadata.uid.clone(),
        ..ObjectReference::default()
    };
    ctx.shared
        .events
        .publish(
            &reference,
            EventType::Warning,
            error.category(),
            &error.to_string(),
        )
        .await;
    error
}

async fn reconcile_proxy(proxy: &LlmProxy, ctx: &Context) -> Result<Action, Error> {
    let missing = |field| Error::MissingMetadata { kind: KIND, field };
    let namespace = proxy.namespace().ok_or_else(|| missing("namespace"))?;
    let name = proxy.metadata.name.clone().ok_or_else(|| missing("name"))?;
    let uid = proxy.uid().ok_or_else(|| missing("uid"))?;
    let reference = proxy.object_ref(&());
    let sources = SecretSources::resolve(&name, &proxy.spec);

    // 1. dereference
    let Dereferenced {
        referenced,
        observed: observed_children,
    } = dereference::dereference(
        &ctx.shared.client,
        &ctx.cache,
        &namespace,
        &name,
        &proxy.spec,
        &sources,
    )
    .await?;

    // 2.–4. validate, build, apply (nothing is written while suspended)
    let management_token_secret = sources.management_token.name.clone();
    let mut report = ApplyReport::default();
    let (outcome, service_monitor_crd_served, result) = if proxy.spec.suspend {
        (Outcome::Suspended, false, Ok(()))
    } else {
        let applier = Applier::new(
            ctx.shared.client.clone(),
            &ctx.cache,
            &ctx.memory.verified,
            namespace.clone(),
            name.clone(),
            uid.clone(),
        );
        match converge(proxy, sources, referenced, ctx, &applier, &uid, &mut report).await {
            Ok(served) => (Outcome::Applied, served, Ok(())),
            Err(e) => (
                Outcome::Failed {
                    reason: e.category().to_owned(),
                    message: e.to_string(),
                },
                false,
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
            let note = format!("{reason} {}", entries.join(", "));
            ctx.shared
                .events
                .publish(&reference, EventType::Normal, reason, &note)
                .await;
        }
    }

    // 5. status: the children as this pass left them
    let observed = observe(
        proxy,
        &name,
        observed_children,
        &report,
        &outcome,
        service_monitor_crd_served,
    )?;
    let previous = ctx
        .memory
        .unseen_status
        .freshest(&uid, proxy.status.as_ref());
    let new_status = status::compute(
        proxy,
        previous.as_ref(),
        Some(management_token_secret),
        &observed,
        &outcome,
        now(),
    );
    if previous.as_ref() != Some(&new_status) {
        patch_status(ctx, &namespace, &name, &new_status).await?;
        for event in status::transitions(previous.as_ref(), &new_status) {
            let type_ = if event.warning {
                EventType::Warning
            } else {
                EventType::Normal
            };
            ctx.shared
                .events
                .publish(&reference, type_, &event.reason, &event.note)
                .await;
        }
        ctx.memory
            .unseen_status
            .remember(&uid, proxy.status.clone(), new_status);
    }

    result.map(|()| Action::requeue(ctx.shared.config.resync_interval))
}

/// Steps 2–4: validate, build, apply (and sweep when the wanted set changed). Returns whether
/// the ServiceMonitor CRD is served.
async fn converge(
    proxy: &LlmProxy,
    sources: SecretSources,
    referenced: ReferencedData,
    ctx: &Context,
    applier: &Applier<'_>,
    uid: &str,
    report: &mut ApplyReport,
) -> Result<bool, Error> {
    let validated: ValidatedProxy<'_> =
        validate::validate_with_sources(proxy, sources, referenced, &ctx.shared.config)?;
    if let Some(secret) = resources::secrets::generated_management_secret(&validated)
        && applier.create_if_absent(&secret).await?
    {
        report.created.push(format!(
            "Secret/{}",
            validated.sources.management_token.name
        ));
    }
    let children = resources::all(&validated)?;
    applier.apply_all(&children, report).await?;
    let monitors_swept = validated.referenced.service_monitor_crd_served;
    let wanted = SweptChildren::fingerprint(resources::names(&children), monitors_swept);
    if !ctx.memory.swept.is_current(uid, wanted) {
        applier
            .delete_unwanted(&children, monitors_swept, report)
            .await?;
        ctx.memory.swept.record(uid, wanted);
    }
    Ok(monitors_swept)
}

/// The observed children after this pass: what dereference read, replaced by what this pass
/// wrote (the API server's answer to the write is the newer state).
fn observe(
    proxy: &LlmProxy,
    name: &str,
    mut children: dereference::ObservedChildren,
    report: &ApplyReport,
    outcome: &Outcome,
    service_monitor_crd_served: bool,
) -> Result<Observed, Error> {
    let written = |kind: &str, child: &str| -> Result<Option<serde_json::Value>, Error> {
        let entry = format!("{kind}/{child}");
        report
            .written(&entry)
            .map(|object| serde_json::to_value(object).map_err(|e| Error::serialization(&entry, e)))
            .transpose()
    };
    if let Some(deployment) = written(DEPLOYMENT.kind, name)? {
        children.deployment = Some(
            serde_json::from_value::<Deployment>(deployment)
                .map_err(|e| Error::serialization(format!("Deployment/{name}"), e))?,
        );
    }
    let pvc_name = data_pvc_name(name);
    if let Some(pvc) = written(PERSISTENT_VOLUME_CLAIM.kind, &pvc_name)? {
        children.data_pvc = Some(
            serde_json::from_value::<PersistentVolumeClaim>(pvc).map_err(|e| {
                Error::serialization(format!("PersistentVolumeClaim/{pvc_name}"), e)
            })?,
        );
    }
    let metrics = &proxy.spec.metrics;
    let monitor_requested = metrics.enabled && metrics.service_monitor.enabled;
    Ok(Observed {
        deployment: children.deployment,
        data_pvc_phase: proxy.spec.persistence.enabled.then(|| {
            children
                .data_pvc
                .and_then(|p| p.status)
                .and_then(|s| s.phase)
        }),
        service_monitor_crd_served: match outcome {
            Outcome::Applied if monitor_requested => Some(service_monitor_crd_served),
            _ => None,
        },
    })
}

/// Now, to the second (status times carry no sub-second part).
fn now() -> Time {
    use k8s_openapi::jiff::Timestamp;
    Time(Timestamp::from_second(Timestamp::now().as_second()).unwrap_or(Timestamp::UNIX_EPOCH))
}

async fn patch_status(
    ctx: &Context,
    namespace: &str,
    name: &str,
    status: &LlmProxyStatus,
) -> Result<(), Error> {
    let api: Api<LlmProxy> = Api::namespaced(ctx.shared.client.clone(), namespace);
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
    .await
    .map_err(|e| Error::kube(format!("write the status of {KIND} {namespace}/{name}"), e))?;
    Ok(())
}

/// The controller's error policy: spec problems wait for a change (the LlmProxy or a watched
/// Secret), everything else retries with per-object exponential backoff.
pub fn error_policy(
    guard: Arc<DeserializeGuard<LlmProxy>>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
    ctx.shared.metrics.failed(KIND, error.category());
    let key = object_key(&guard);
    tracing::warn!(kind = KIND, object = %key, category = error.category(), error = %error, "reconcile failed");
    if error.is_spec_problem() {
        Action::await_change()
    } else {
        Action::requeue(ctx.memory.backoff.next(&key))
    }
}
