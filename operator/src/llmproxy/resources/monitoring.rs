//! Monitoring children: the prometheus-operator ServiceMonitor (`<name>`, only when its CRD is
//! served) and the Grafana dashboard ConfigMap (`<name>-dashboard`, from `assets/`).

use k8s_openapi::api::core::v1::ConfigMap;
use serde_json::json;

use super::pod::non_empty;
use super::{COMPONENT_DASHBOARD, COMPONENT_PROXY};
use crate::kinds::SERVICE_MONITOR;
use crate::llmproxy::validate::ValidatedProxy;

/// Key of the dashboard JSON in the ConfigMap (the chart's).
pub const DASHBOARD_KEY: &str = "llm-proxy.json";
/// The dashboard over the proxy's Prometheus metrics.
pub const DASHBOARD_JSON: &str = include_str!("../../../assets/llm-proxy-dashboard.json");

/// The ServiceMonitor scraping the proxy Service (a plain JSON object: no typed API in k8s-openapi).
pub fn service_monitor(ctx: &ValidatedProxy<'_>) -> serde_json::Value {
    let metrics = &ctx.spec.metrics;
    let monitor = &metrics.service_monitor;
    let mut metadata = ctx.metadata(ctx.name.clone(), COMPONENT_PROXY);
    let mut labels = monitor.labels.clone();
    labels.extend(ctx.labels(COMPONENT_PROXY));
    metadata.labels = Some(labels);
    let mut endpoint = json!({
        "port": metrics.port_name,
        "path": metrics.path,
        "interval": monitor.interval,
        "scrapeTimeout": monitor.scrape_timeout,
    });
    if let Some(map) = endpoint.as_object_mut() {
        if let Some(honor) = monitor.honor_labels {
            map.insert("honorLabels".into(), honor.into());
        }
        if !monitor.relabelings.is_empty() {
            map.insert("relabelings".into(), monitor.relabelings.clone().into());
        }
        if !monitor.metric_relabelings.is_empty() {
            map.insert(
                "metricRelabelings".into(),
                monitor.metric_relabelings.clone().into(),
            );
        }
    }
    json!({
        "apiVersion": SERVICE_MONITOR.api_version(),
        "kind": SERVICE_MONITOR.kind,
        "metadata": metadata,
        "spec": {
            "selector": {"matchLabels": ctx.selector_labels(COMPONENT_PROXY)},
            "endpoints": [endpoint],
        },
    })
}

/// The dashboard ConfigMap the Grafana sidecar picks up by label.
pub fn dashboard(ctx: &ValidatedProxy<'_>) -> ConfigMap {
    let spec = &ctx.spec.metrics.grafana_dashboard;
    let mut metadata = ctx.metadata(ctx.child_name(COMPONENT_DASHBOARD), COMPONENT_DASHBOARD);
    let mut labels = spec.labels.clone();
    labels.extend(ctx.labels(COMPONENT_DASHBOARD));
    metadata.labels = Some(labels);
    metadata.annotations = non_empty(spec.annotations.clone());
    ConfigMap {
        metadata,
        data: Some(
            [(DASHBOARD_KEY.to_owned(), DASHBOARD_JSON.to_owned())]
                .into_iter()
                .collect(),
        ),
        ..ConfigMap::default()
    }
}
