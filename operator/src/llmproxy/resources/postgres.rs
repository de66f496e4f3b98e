//! The development PostgreSQL (`postgresql.enabled`): a one-replica StatefulSet and a ClusterIP
//! Service, both `<name>-postgresql`, selected by the `postgresql` component label so the proxy's
//! selectors never match its pods (the chart's MySQL bug, spec §9.15).

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, ExecAction, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, SeccompProfile,
    SecurityContext, Service, ServicePort, ServiceSpec, Volume, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::COMPONENT_POSTGRESQL;
use super::pod::{self, from_secret, literal};
use super::proxy::POSTGRES_PORT;
use crate::llmproxy::validate::ValidatedProxy;

/// uid/gid of the `postgres` user in the official Debian-based image.
const POSTGRES_UID: i64 = 999;
const DATA_MOUNT: &str = "/var/lib/postgresql/data";

/// The Service the proxy's `DATABASE_URL` points at.
pub fn service(ctx: &ValidatedProxy<'_>) -> Service {
    Service {
        metadata: ctx.metadata(ctx.child_name(COMPONENT_POSTGRESQL), COMPONENT_POSTGRESQL),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            ports: Some(vec![ServicePort {
                name: Some(COMPONENT_POSTGRESQL.into()),
                port: POSTGRES_PORT,
                target_port: Some(IntOrString::String(COMPONENT_POSTGRESQL.into())),
                protocol: Some("TCP".into()),
                ..ServicePort::default()
            }]),
            selector: Some(ctx.selector_labels(COMPONENT_POSTGRESQL)),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// The StatefulSet running the official PostgreSQL image.
pub fn stateful_set(ctx: &ValidatedProxy<'_>, config_hash: &str) -> StatefulSet {
    let pg = &ctx.spec.postgresql;
    let name = ctx.child_name(COMPONENT_POSTGRESQL);
    let mut env = vec![
        literal("POSTGRES_USER", &pg.auth.username),
        literal("POSTGRES_DB", &pg.auth.database),
    ];
    if let Some(password) = &ctx.sources.postgres_password {
        env.push(from_secret("POSTGRES_PASSWORD", password));
    }
    env.push(literal("PGDATA", &format!("{DATA_MOUNT}/pgdata")));
    let ready_check = Probe {
        exec: Some(ExecAction {
            command: Some(vec![
                "pg_isready".into(),
                "-h".into(),
                "127.0.0.1".into(),
                "-U".into(),
                pg.auth.username.clone(),
                "-d".into(),
                pg.auth.database.clone(),
            ]),
        }),
        initial_delay_seconds: Some(5),
        period_seconds: Some(10),
        timeout_seconds: Some(5),
        failure_threshold: Some(6),
        ..Probe::default()
    };
    let persistence = &pg.primary.persistence;
    let (volumes, claims) = if persistence.enabled {
        let claim = PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some("data".into()),
                labels: Some(ctx.labels(COMPONENT_POSTGRESQL)),
                ..ObjectMeta::default()
            },
            spec: Some(PersistentVolumeClaimSpec {
                access_modes: Some(vec!["ReadWriteOnce".into()]),
                resources: Some(VolumeResourceRequirements {
                    requests: Some(
                        [("storage".to_owned(), persistence.size.clone())]
                            .into_iter()
                            .collect(),
                    ),
                    limits: None,
                }),
                storage_class_name: (!persistence.storage_class.is_empty())
                    .then(|| persistence.storage_class.clone()),
                ..PersistentVolumeClaimSpec::default()
            }),
            status: None,
        };
        (None, Some(vec![claim]))
    } else {
        (
            Some(vec![Volume {
                name: "data".into(),
                empty_dir: Some(Default::default()),
                ..Volume::default()
            }]),
            None,
        )
    };
    // The root filesystem is read-only: the server writes only to its data, socket and temp dirs.
    let (run, run_mount) = pod::empty_dir("run", "/var/run/postgresql");
    let (tmp, tmp_mount) = pod::empty_dir("tmp", "/tmp");
    let volumes = Some(
        [run, tmp]
            .into_iter()
            .chain(volumes.into_iter().flatten())
            .collect(),
    );

    StatefulSet {
        metadata: ctx.metadata(name.clone(), COMPONENT_POSTGRESQL),
        spec: Some(StatefulSetSpec {
            replicas: Some(1),
            service_name: Some(name),
            selector: LabelSelector {
                match_labels: Some(ctx.selector_labels(COMPONENT_POSTGRESQL)),
                match_expressions: None,
            },
            template: PodTemplateSpec {
                metadata: Some(pod::template_metadata(
                    ctx.labels(COMPONENT_POSTGRESQL),
                    Default::default(),
                    config_hash,
                )),
                spec: Some(PodSpec {
                    automount_service_account_token: Some(false),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(POSTGRES_UID),
                        run_as_group: Some(POSTGRES_UID),
                        fs_group: Some(POSTGRES_UID),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".into(),
                            localhost_profile: None,
                        }),
                        ..PodSecurityContext::default()
                    }),
                    containers: vec![Container {
                        name: COMPONENT_POSTGRESQL.into(),
                        image: Some(ctx.config.postgres_image.clone()),
                        env: Some(env),
                        ports: Some(vec![ContainerPort {
                            name: Some(COMPONENT_POSTGRESQL.into()),
                            container_port: POSTGRES_PORT,
                            protocol: Some("TCP".into()),
                            ..ContainerPort::default()
                        }]),
                        liveness_probe: Some(Probe {
                            initial_delay_seconds: Some(30),
                            period_seconds: Some(30),
                            ..ready_check.clone()
                        }),
                        readiness_probe: Some(ready_check),
                        resources: Some(pg.primary.resources.clone()),
                        security_context: Some(SecurityContext {
                            capabilities: Some(Capabilities {
                                drop: Some(vec!["ALL".into()]),
                                add: None,
                            }),
                            read_only_root_filesystem: Some(true),
                            allow_privilege_escalation: Some(false),
                            ..SecurityContext::default()
                        }),
                        volume_mounts: Some(vec![
                            pod::mount("data", DATA_MOUNT),
                            run_mount,
                            tmp_mount,
                        ]),
                        ..Container::default()
                    }],
                    volumes,
                    ..PodSpec::default()
                }),
            },
            volume_claim_templates: claims,
            ..StatefulSetSpec::default()
        }),
        status: None,
    }
}
