//! PersistentVolumeClaims: `<name>-data` (SQLite data directory) and `<name>-dispatcher` (file sink).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimSpec, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::{COMPONENT_DISPATCHER, COMPONENT_PROXY};
use crate::llmproxy::validate::ValidatedProxy;

/// Name of the SQLite data PVC.
pub fn data_pvc_name(proxy_name: &str) -> String {
    format!("{proxy_name}-data")
}

/// Name of the dispatcher's file-sink PVC.
pub fn dispatcher_pvc_name(ctx: &ValidatedProxy<'_>) -> String {
    ctx.child_name(COMPONENT_DISPATCHER)
}

fn pvc(
    ctx: &ValidatedProxy<'_>,
    name: String,
    component: &str,
    access_mode: &str,
    size: &Quantity,
    storage_class: &str,
) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ctx.metadata(name, component),
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec![access_mode.to_owned()]),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([("storage".to_owned(), size.clone())])),
                limits: None,
            }),
            storage_class_name: (!storage_class.is_empty()).then(|| storage_class.to_owned()),
            ..PersistentVolumeClaimSpec::default()
        }),
        status: None,
    }
}

/// The SQLite data PVC (`persistence.enabled`).
pub fn data_pvc(ctx: &ValidatedProxy<'_>) -> PersistentVolumeClaim {
    let p = &ctx.spec.persistence;
    pvc(
        ctx,
        data_pvc_name(&ctx.name),
        COMPONENT_PROXY,
        &p.access_mode,
        &p.size,
        &p.storage_class,
    )
}

/// The dispatcher's file-sink PVC (`ReadWriteOnce`, as the chart).
pub fn dispatcher_pvc(ctx: &ValidatedProxy<'_>) -> PersistentVolumeClaim {
    let p = &ctx.spec.dispatcher.persistence;
    pvc(
        ctx,
        dispatcher_pvc_name(ctx),
        COMPONENT_DISPATCHER,
        "ReadWriteOnce",
        &p.size,
        &p.storage_class,
    )
}
