//! Pieces shared by the pod templates: env entries, probes, image reference, volumes, template
//! metadata, spec overrides.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    EnvVar, EnvVarSource, HTTPGetAction, PersistentVolumeClaimVolumeSource, Probe,
    SecretKeySelector, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::crd::Image;
use crate::llmproxy::sources::SecretSource;
use crate::vocabulary::CONFIG_HASH_ANNOTATION;

/// Tag used when `image.tag` is empty (the chart's appVersion).
pub const DEFAULT_IMAGE_TAG: &str = "latest";

/// `repository:tag`, the tag defaulting like the chart's.
pub fn image_reference(image: &Image) -> String {
    let tag = if image.tag.is_empty() {
        DEFAULT_IMAGE_TAG
    } else {
        &image.tag
    };
    format!("{}:{tag}", image.repository)
}

/// A literal env entry.
pub fn literal(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.to_owned()),
        value_from: None,
    }
}

/// An env entry read from a Secret key.
pub fn from_secret(name: &str, source: &SecretSource) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: source.name.clone(),
                key: source.key.clone(),
                optional: None,
            }),
            ..EnvVarSource::default()
        }),
    }
}

/// An HTTP GET probe on a named port.
pub fn http_probe(path: &str, port: &str, initial_delay: i32, period: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::String(port.to_owned()),
            ..HTTPGetAction::default()
        }),
        initial_delay_seconds: Some(initial_delay),
        period_seconds: Some(period),
        timeout_seconds: Some(5),
        failure_threshold: Some(3),
        ..Probe::default()
    }
}

/// An emptyDir volume and its mount.
pub fn empty_dir(name: &str, mount_path: &str) -> (Volume, VolumeMount) {
    (
        Volume {
            name: name.to_owned(),
            empty_dir: Some(Default::default()),
            ..Volume::default()
        },
        mount(name, mount_path),
    )
}

/// A mount of the volume `name`.
pub fn mount(name: &str, mount_path: &str) -> VolumeMount {
    VolumeMount {
        name: name.to_owned(),
        mount_path: mount_path.to_owned(),
        ..VolumeMount::default()
    }
}

/// `None` for an empty collection (keeps rendered objects free of empty fields).
pub fn non_empty<C: IsEmpty>(collection: C) -> Option<C> {
    (!collection.is_empty()).then_some(collection)
}

/// Collections [`non_empty`] accepts.
pub trait IsEmpty {
    /// Whether there is nothing in it.
    fn is_empty(&self) -> bool;
}

impl<T> IsEmpty for Vec<T> {
    fn is_empty(&self) -> bool {
        Vec::is_empty(self)
    }
}

impl<K, V> IsEmpty for std::collections::BTreeMap<K, V> {
    fn is_empty(&self) -> bool {
        std::collections::BTreeMap::is_empty(self)
    }
}

/// The `data` volume: the PersistentVolumeClaim `claim` when there is one, else an emptyDir.
pub fn data_volume(claim: Option<String>) -> Volume {
    match claim {
        Some(claim_name) => Volume {
            name: "data".into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name,
                read_only: None,
            }),
            ..Volume::default()
        },
        None => Volume {
            name: "data".into(),
            empty_dir: Some(Default::default()),
            ..Volume::default()
        },
    }
}

/// A pod template's metadata: `labels`, and `annotations` with the config hash (so the pods roll
/// when the configuration or a referenced Secret changes).
pub fn template_metadata(
    labels: BTreeMap<String, String>,
    mut annotations: BTreeMap<String, String>,
    config_hash: &str,
) -> ObjectMeta {
    annotations.insert(CONFIG_HASH_ANNOTATION.to_owned(), config_hash.to_owned());
    ObjectMeta {
        labels: Some(labels),
        annotations: Some(annotations),
        ..ObjectMeta::default()
    }
}
