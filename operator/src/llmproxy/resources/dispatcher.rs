//! The dispatcher Deployment (`<name>-dispatcher`): the chart's `dispatcher-deployment.yaml`, plus
//! probes on the dispatcher's health port (the chart had none).

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{Container, ContainerPort, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use llm_proxy_env as env;

use super::COMPONENT_DISPATCHER;
use super::pod::{self, from_secret, literal, non_empty};
use super::proxy::redis_env;
use crate::crd::LlmProxySpec;
use crate::llmproxy::validate::ValidatedProxy;

/// Name of the dispatcher's health port.
pub const HEALTH_PORT_NAME: &str = "health";

/// Whether the dispatcher writes to its own PVC (file backend with persistence).
pub fn uses_pvc(spec: &LlmProxySpec) -> bool {
    spec.dispatcher.service == "file" && spec.dispatcher.persistence.enabled
}

/// The endpoint passed to `--endpoint`: the configured one, else the backend's default.
pub fn endpoint(spec: &LlmProxySpec) -> String {
    let dispatcher = &spec.dispatcher;
    if !dispatcher.endpoint.is_empty() {
        return dispatcher.endpoint.clone();
    }
    match dispatcher.service.as_str() {
        "lunary" => env::DISPATCHER_DEFAULT_LUNARY_ENDPOINT,
        "helicone" => env::DISPATCHER_DEFAULT_HELICONE_ENDPOINT,
        _ => env::DISPATCHER_DEFAULT_FILE_ENDPOINT,
    }
    .to_owned()
}

/// The dispatcher Deployment.
pub fn deployment(ctx: &ValidatedProxy<'_>, config_hash: &str) -> Deployment {
    let spec = &ctx.spec;
    let dispatcher = &spec.dispatcher;
    let affinity = ctx.dispatcher_affinity.clone();

    let mut env_vars = vec![
        literal(
            env::DISPATCHER_HEALTH_ADDR,
            &format!(":{}", env::DISPATCHER_HEALTH_PORT),
        ),
        literal(env::LLM_PROXY_EVENT_BUS, &spec.event_bus()),
    ];
    env_vars.extend(redis_env(ctx));
    if let Some(key) = &ctx.sources.dispatcher_api_key {
        env_vars.push(from_secret(env::LLM_PROXY_API_KEY, key));
    }

    // The root filesystem is read-only: the file sink needs a writable data directory even
    // without persistence (the chart then wrote into the image and failed).
    let data_volume =
        pod::data_volume(uses_pvc(spec).then(|| super::storage::dispatcher_pvc_name(ctx)));
    let (tmp, tmp_mount) = pod::empty_dir("tmp", "/tmp");

    let container = Container {
        name: COMPONENT_DISPATCHER.into(),
        image: Some(pod::image_reference(&spec.image)),
        image_pull_policy: Some(spec.image.pull_policy.clone()),
        args: Some(vec![
            "dispatcher".into(),
            "--service".into(),
            dispatcher.service.clone(),
            "--endpoint".into(),
            endpoint(spec),
            "--buffer".into(),
            dispatcher.config.buffer_size.to_string(),
            "--batch-size".into(),
            dispatcher.config.batch_size.to_string(),
        ]),
        ports: Some(vec![ContainerPort {
            name: Some(HEALTH_PORT_NAME.into()),
            container_port: i32::from(env::DISPATCHER_HEALTH_PORT),
            protocol: Some("TCP".into()),
            ..ContainerPort::default()
        }]),
        env: Some(env_vars),
        liveness_probe: Some(pod::http_probe(env::HEALTH_PATH, HEALTH_PORT_NAME, 10, 30)),
        readiness_probe: Some(pod::http_probe(env::READY_PATH, HEALTH_PORT_NAME, 5, 10)),
        resources: Some(dispatcher.resources.clone()),
        security_context: Some(
            dispatcher
                .security_context
                .clone()
                .unwrap_or_else(|| spec.security_context.clone()),
        ),
        volume_mounts: Some(vec![tmp_mount, pod::mount("data", env::CONTAINER_DATA_DIR)]),
        ..Container::default()
    };

    Deployment {
        metadata: ctx.metadata(ctx.child_name(COMPONENT_DISPATCHER), COMPONENT_DISPATCHER),
        spec: Some(DeploymentSpec {
            replicas: Some(dispatcher.replica_count),
            selector: LabelSelector {
                match_labels: Some(ctx.selector_labels(COMPONENT_DISPATCHER)),
                match_expressions: None,
            },
            template: PodTemplateSpec {
                metadata: Some(pod::template_metadata(
                    ctx.labels(COMPONENT_DISPATCHER),
                    Default::default(),
                    config_hash,
                )),
                spec: Some(PodSpec {
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    image_pull_secrets: non_empty(spec.image_pull_secrets.clone()),
                    security_context: Some(
                        dispatcher
                            .pod_security_context
                            .clone()
                            .unwrap_or_else(|| spec.pod_security_context.clone()),
                    ),
                    containers: vec![container],
                    volumes: Some(vec![tmp, data_volume]),
                    node_selector: non_empty(dispatcher.node_selector.clone()),
                    affinity,
                    tolerations: non_empty(dispatcher.tolerations.clone()),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        status: None,
    }
}
