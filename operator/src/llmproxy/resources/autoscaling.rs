//! The HorizontalPodAutoscaler (`autoscaling/v2`, `<name>`) targeting the proxy Deployment.

use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec, MetricSpec,
    MetricTarget, ResourceMetricSource,
};

use super::COMPONENT_PROXY;
use crate::llmproxy::validate::ValidatedProxy;

fn utilization(resource: &str, percent: i32) -> MetricSpec {
    MetricSpec {
        type_: "Resource".into(),
        resource: Some(ResourceMetricSource {
            name: resource.into(),
            target: MetricTarget {
                type_: "Utilization".into(),
                average_utilization: Some(percent),
                ..MetricTarget::default()
            },
        }),
        ..MetricSpec::default()
    }
}

/// The HPA with a CPU and/or memory utilization metric.
pub fn hpa(ctx: &ValidatedProxy<'_>) -> HorizontalPodAutoscaler {
    let spec = &ctx.spec.autoscaling;
    let metrics = [
        spec.target_cpu_utilization_percentage
            .map(|p| utilization("cpu", p)),
        spec.target_memory_utilization_percentage
            .map(|p| utilization("memory", p)),
    ]
    .into_iter()
    .flatten()
    .collect();
    HorizontalPodAutoscaler {
        metadata: ctx.metadata(ctx.name.clone(), COMPONENT_PROXY),
        spec: Some(HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some("apps/v1".into()),
                kind: "Deployment".into(),
                name: ctx.name.clone(),
            },
            min_replicas: Some(spec.min_replicas),
            max_replicas: spec.max_replicas,
            metrics: Some(metrics),
            behavior: None,
        }),
        status: None,
    }
}
