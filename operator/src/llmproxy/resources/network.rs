//! The proxy Service (`<name>`) and the optional Ingress (`<name>`).

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec, IngressTLS, ServiceBackendPort,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::COMPONENT_PROXY;
use super::pod::non_empty;
use super::proxy::{PORT_NAME, service_annotations};
use crate::llmproxy::validate::ValidatedProxy;

/// The proxy Service: `service.port` → container port `http`.
pub fn service(ctx: &ValidatedProxy<'_>) -> Service {
    let spec = &ctx.spec;
    let mut metadata = ctx.metadata(ctx.name.clone(), COMPONENT_PROXY);
    metadata.annotations = non_empty(service_annotations(ctx));
    Service {
        metadata,
        spec: Some(ServiceSpec {
            type_: Some(spec.service.type_.clone()),
            ports: Some(vec![ServicePort {
                name: Some(PORT_NAME.into()),
                port: spec.service.port,
                target_port: Some(IntOrString::String(PORT_NAME.into())),
                protocol: Some("TCP".into()),
                ..ServicePort::default()
            }]),
            selector: Some(ctx.selector_labels(COMPONENT_PROXY)),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// The Ingress routing every configured host and path to the Service.
pub fn ingress(ctx: &ValidatedProxy<'_>) -> Ingress {
    let spec = &ctx.spec.ingress;
    let backend = IngressBackend {
        service: Some(IngressServiceBackend {
            name: ctx.name.clone(),
            port: Some(ServiceBackendPort {
                number: Some(ctx.spec.service.port),
                name: None,
            }),
        }),
        resource: None,
    };
    let rules = spec
        .hosts
        .iter()
        .map(|host| IngressRule {
            host: Some(host.host.clone()),
            http: Some(HTTPIngressRuleValue {
                paths: host
                    .paths
                    .iter()
                    .map(|p| HTTPIngressPath {
                        path: Some(p.path.clone()),
                        path_type: if p.path_type.is_empty() {
                            "Prefix".into()
                        } else {
                            p.path_type.clone()
                        },
                        backend: backend.clone(),
                    })
                    .collect(),
            }),
        })
        .collect();
    let tls = spec
        .tls
        .iter()
        .map(|t| IngressTLS {
            hosts: Some(t.hosts.clone()),
            secret_name: (!t.secret_name.is_empty()).then(|| t.secret_name.clone()),
        })
        .collect();
    let mut metadata = ctx.metadata(ctx.name.clone(), COMPONENT_PROXY);
    metadata.annotations = non_empty(spec.annotations.clone());
    Ingress {
        metadata,
        spec: Some(IngressSpec {
            ingress_class_name: (!spec.class_name.is_empty()).then(|| spec.class_name.clone()),
            rules: Some(rules),
            tls: non_empty(tls),
            ..IngressSpec::default()
        }),
        status: None,
    }
}
