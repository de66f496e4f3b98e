//! Chart defaults (`values.yaml`), used by serde.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, PodSecurityContext, ResourceRequirements, SecurityContext,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::spec::{IngressHost, IngressPath, VolumeSpec};

pub fn one() -> i32 {
    1
}
pub fn yes() -> bool {
    true
}
pub fn max_replicas() -> i32 {
    10
}
pub fn cpu_target() -> Option<i32> {
    Some(80)
}
pub fn image_repository() -> String {
    "llm-proxy".into()
}
pub fn pull_policy() -> String {
    "IfNotPresent".into()
}
pub fn service_type() -> String {
    "ClusterIP".into()
}
pub fn port() -> i32 {
    i32::from(llm_proxy_env::PROXY_PORT)
}
pub fn ingress_hosts() -> Vec<IngressHost> {
    vec![IngressHost {
        host: "chart-example.local".into(),
        paths: vec![IngressPath {
            path: "/".into(),
            path_type: "Prefix".into(),
        }],
    }]
}
pub fn pod_security_context() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(1000),
        run_as_group: Some(1000),
        fs_group: Some(1000),
        ..PodSecurityContext::default()
    }
}
pub fn security_context() -> SecurityContext {
    SecurityContext {
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            add: None,
        }),
        read_only_root_filesystem: Some(true),
        allow_privilege_escalation: Some(false),
        ..SecurityContext::default()
    }
}
fn resources(
    limit_cpu: &str,
    limit_mem: &str,
    req_cpu: &str,
    req_mem: &str,
) -> ResourceRequirements {
    let pair = |cpu: &str, mem: &str| {
        BTreeMap::from([
            ("cpu".to_owned(), Quantity(cpu.into())),
            ("memory".to_owned(), Quantity(mem.into())),
        ])
    };
    ResourceRequirements {
        limits: Some(pair(limit_cpu, limit_mem)),
        requests: Some(pair(req_cpu, req_mem)),
        ..ResourceRequirements::default()
    }
}
pub fn proxy_resources() -> ResourceRequirements {
    resources("1000m", "512Mi", "100m", "128Mi")
}
pub fn postgres_resources() -> ResourceRequirements {
    resources("500m", "256Mi", "100m", "128Mi")
}
pub fn dispatcher_resources() -> ResourceRequirements {
    resources("500m", "256Mi", "100m", "128Mi")
}
pub fn llmproxy() -> String {
    "llmproxy".into()
}
pub fn admin_password_key() -> String {
    "postgres-password".into()
}
pub fn user_password_key() -> String {
    "password".into()
}
pub fn ssl_mode() -> String {
    // The official postgres image serves no TLS: `require` could never connect.
    "disable".into()
}
pub fn postgres_persistence() -> VolumeSpec {
    VolumeSpec {
        enabled: true,
        size: Quantity("8Gi".into()),
        storage_class: String::new(),
    }
}
pub fn dispatcher_persistence() -> VolumeSpec {
    VolumeSpec {
        enabled: true,
        size: Quantity("10Gi".into()),
        storage_class: String::new(),
    }
}
pub fn dispatcher_service() -> String {
    "file".into()
}
pub fn buffer_size() -> i32 {
    1000
}
pub fn batch_size() -> i32 {
    100
}
pub fn metrics_path() -> String {
    llm_proxy_env::PROMETHEUS_PATH.into()
}
pub fn port_name() -> String {
    "http".into()
}
pub fn metrics_annotations() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("prometheus.io/scrape".to_owned(), "true".to_owned()),
        (
            "prometheus.io/path".to_owned(),
            llm_proxy_env::PROMETHEUS_PATH.to_owned(),
        ),
        (
            "prometheus.io/port".to_owned(),
            llm_proxy_env::PROXY_PORT.to_string(),
        ),
    ])
}
pub fn interval() -> String {
    "30s".into()
}
pub fn scrape_timeout() -> String {
    "10s".into()
}
pub fn dashboard_labels() -> BTreeMap<String, String> {
    BTreeMap::from([("grafana_dashboard".to_owned(), "1".to_owned())])
}
pub fn data_size() -> Quantity {
    Quantity("1Gi".into())
}
pub fn access_mode() -> String {
    "ReadWriteOnce".into()
}
