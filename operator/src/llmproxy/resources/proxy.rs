//! The proxy Deployment (`<name>`): the chart's `deployment.yaml`, env in the chart's order.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{Container, ContainerPort, EnvVar, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use llm_proxy_env as env;

use super::pod::{self, from_secret, literal, non_empty};
use super::{COMPONENT_POSTGRESQL, COMPONENT_PROXY};
use crate::llmproxy::validate::ValidatedProxy;

/// Name of the proxy container (the chart's name).
pub const CONTAINER_NAME: &str = "llm-proxy";
/// Name of the container port the Service and probes target.
pub const PORT_NAME: &str = "http";
/// Port of the dev PostgreSQL.
pub const POSTGRES_PORT: i32 = 5432;

/// The proxy's environment, in the chart's order.
pub fn env_vars(ctx: &ValidatedProxy<'_>) -> Vec<EnvVar> {
    let spec = &ctx.spec;
    let sources = &ctx.sources;
    // 1. the env map, sorted (BTreeMap order), as literals
    let mut vars: Vec<EnvVar> = spec
        .effective_env()
        .iter()
        .map(|(k, v)| literal(k, v))
        .collect();
    // 2. the management token
    vars.push(from_secret(
        env::MANAGEMENT_TOKEN,
        &sources.management_token,
    ));
    // 3. in-cluster PostgreSQL through $(PGPASSWORD) expansion, 4. else an external URL
    if let Some(password) = &sources.postgres_password {
        let pg = &spec.postgresql;
        vars.push(from_secret("PGPASSWORD", password));
        vars.push(literal(
            env::DATABASE_URL,
            &format!(
                "postgres://{}:$(PGPASSWORD)@{}:{POSTGRES_PORT}/{}?sslmode={}",
                pg.auth.username,
                ctx.child_name(COMPONENT_POSTGRESQL),
                pg.auth.database,
                pg.ssl_mode
            ),
        ));
    } else if let Some(url) = &sources.database_url {
        vars.push(from_secret(env::DATABASE_URL, url));
    }
    // 5. Redis
    vars.extend(redis_env(ctx));
    // HEAD: the encryption key
    if let Some(key) = &sources.encryption_key {
        vars.push(from_secret(env::ENCRYPTION_KEY, key));
    }
    vars
}

/// `REDIS_ADDR`, `REDIS_DB` and `REDIS_PASSWORD` when an external Redis is configured.
pub fn redis_env(ctx: &ValidatedProxy<'_>) -> Vec<EnvVar> {
    let redis = &ctx.spec.redis.external;
    if redis.addr.is_empty() {
        return Vec::new();
    }
    let mut vars = vec![
        literal(env::REDIS_ADDR, &redis.addr),
        literal(env::REDIS_DB, &redis.db.to_string()),
    ];
    if let Some(password) = &ctx.sources.redis_password {
        vars.push(from_secret(env::REDIS_PASSWORD, password));
    }
    vars
}

/// The proxy Deployment. `replicas` is left out under autoscaling so the HPA owns it.
pub fn deployment(ctx: &ValidatedProxy<'_>, config_hash: &str) -> Deployment {
    let spec = &ctx.spec;

    let data_volume = pod::data_volume(
        spec.persistence
            .enabled
            .then(|| super::storage::data_pvc_name(&ctx.name)),
    );
    let (tmp, tmp_mount) = pod::empty_dir("tmp", "/tmp");
    let (logs, logs_mount) = pod::empty_dir("logs", "/app/logs");
    let mut volumes = vec![tmp, data_volume, logs];
    let mut mounts = vec![
        tmp_mount,
        pod::mount("data", env::CONTAINER_DATA_DIR),
        logs_mount,
    ];
    // No empty volume at /app/config: it would hide the providers file (upstream bug).
    if let Some((config, config_mount)) = super::providers::volume(ctx) {
        volumes.push(config);
        mounts.push(config_mount);
    }

    let selector = ctx.selector_labels(COMPONENT_PROXY);
    let mut pod_labels = spec.pod_labels.clone();
    pod_labels.extend(ctx.labels(COMPONENT_PROXY));

    let container = Container {
        name: CONTAINER_NAME.into(),
        image: Some(pod::image_reference(&spec.image)),
        image_pull_policy: Some(spec.image.pull_policy.clone()),
        args: Some(vec!["server".into()]),
        ports: Some(vec![ContainerPort {
            name: Some(PORT_NAME.into()),
            container_port: spec.service.target_port,
            protocol: Some("TCP".into()),
            ..ContainerPort::default()
        }]),
        env: Some(env_vars(ctx)),
        liveness_probe: Some(
            ctx.liveness_probe
                .clone()
                .unwrap_or_else(|| pod::http_probe(env::LIVE_PATH, PORT_NAME, 10, 30)),
        ),
        readiness_probe: Some(
            ctx.readiness_probe
                .clone()
                .unwrap_or_else(|| pod::http_probe(env::READY_PATH, PORT_NAME, 5, 10)),
        ),
        resources: Some(spec.resources.clone()),
        security_context: Some(spec.security_context.clone()),
        volume_mounts: Some(mounts),
        ..Container::default()
    };

    Deployment {
        metadata: ctx.metadata(ctx.name.clone(), COMPONENT_PROXY),
        spec: Some(DeploymentSpec {
            replicas: (!spec.autoscaling.enabled).then_some(spec.replica_count),
            selector: LabelSelector {
                match_labels: Some(selector),
                match_expressions: None,
            },
            template: PodTemplateSpec {
                metadata: Some(pod::template_metadata(
                    pod_labels,
                    spec.pod_annotations.clone(),
                    config_hash,
                )),
                spec: Some(PodSpec {
                    // The proxy never calls the Kubernetes API; Service-link variables could shadow its own env.
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    image_pull_secrets: non_empty(spec.image_pull_secrets.clone()),
                    security_context: Some(spec.pod_security_context.clone()),
                    containers: vec![container],
                    volumes: Some(volumes),
                    node_selector: non_empty(spec.node_selector.clone()),
                    affinity: ctx.affinity.clone(),
                    tolerations: non_empty(spec.tolerations.clone()),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        status: None,
    }
}

/// Annotations of the Service: its own plus the metrics ones when metrics are on.
pub fn service_annotations(ctx: &ValidatedProxy<'_>) -> BTreeMap<String, String> {
    let spec = &ctx.spec;
    let mut annotations = spec.service.annotations.clone();
    if spec.metrics.enabled {
        annotations.extend(spec.metrics.annotations.clone());
    }
    annotations
}
