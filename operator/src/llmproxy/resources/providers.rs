//! The providers ConfigMap (`<name>-providers`): the spec's `providers` value as the proxy's
//! `api_providers.yaml`, mounted at `/app/config` (where `API_CONFIG_PATH` points by default).
//! Without `providers` nothing is rendered or mounted, so the proxy's built-in fallback applies.

use k8s_openapi::api::core::v1::{ConfigMap, ConfigMapVolumeSource, Volume, VolumeMount};

use super::COMPONENT_PROXY;
use crate::crd::LlmProxySpec;
use crate::error::Error;
use crate::llmproxy::validate::ValidatedProxy;

/// Suffix of the ConfigMap name (the chart's `<fullname>-providers`).
pub const CONFIGMAP_SUFFIX: &str = "providers";
/// Key of the providers file in the ConfigMap (the file name `API_CONFIG_PATH` defaults to).
pub const PROVIDERS_FILE: &str = "api_providers.yaml";
/// Directory the ConfigMap is mounted at (`./config` relative to the image's working directory).
pub const CONFIG_DIR: &str = "/app/config";
/// Name of the pod volume.
pub const VOLUME_NAME: &str = "config";

/// The `providers` value when set, with Helm's truthiness (null and empty values count as unset).
pub fn configured(spec: &LlmProxySpec) -> Option<&serde_json::Value> {
    spec.providers.as_ref().filter(|value| match value {
        serde_json::Value::Null => false,
        serde_json::Value::Object(map) => !map.is_empty(),
        serde_json::Value::Array(items) => !items.is_empty(),
        serde_json::Value::String(text) => !text.is_empty(),
        serde_json::Value::Bool(flag) => *flag,
        serde_json::Value::Number(_) => true,
    })
}

/// The providers file content, when `providers` is set.
pub fn providers_yaml(spec: &LlmProxySpec) -> Result<Option<String>, Error> {
    configured(spec)
        .map(serde_saphyr::to_string)
        .transpose()
        .map_err(Error::from)
}

/// The ConfigMap, when `providers` is set.
pub fn config_map(ctx: &ValidatedProxy<'_>) -> Result<Option<ConfigMap>, Error> {
    Ok(providers_yaml(ctx.spec)?.map(|yaml| ConfigMap {
        metadata: ctx.metadata(ctx.child_name(CONFIGMAP_SUFFIX), COMPONENT_PROXY),
        data: Some([(PROVIDERS_FILE.to_owned(), yaml)].into_iter().collect()),
        ..ConfigMap::default()
    }))
}

/// The read-only volume and mount of the ConfigMap, when `providers` is set.
pub fn volume(ctx: &ValidatedProxy<'_>) -> Option<(Volume, VolumeMount)> {
    configured(ctx.spec)?;
    Some((
        Volume {
            name: VOLUME_NAME.to_owned(),
            config_map: Some(ConfigMapVolumeSource {
                name: ctx.child_name(CONFIGMAP_SUFFIX),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        },
        VolumeMount {
            name: VOLUME_NAME.to_owned(),
            mount_path: CONFIG_DIR.to_owned(),
            read_only: Some(true),
            ..VolumeMount::default()
        },
    ))
}
