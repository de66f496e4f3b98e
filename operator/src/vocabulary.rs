//! The names every kind's children share: the field manager, the label and annotation keys, and
//! small helpers over them. The bottom of the crate: it imports nothing from it.

/// Field manager of every server-side apply (and the Event reporter).
pub const FIELD_MANAGER: &str = "llm-proxy-operator";
/// `app.kubernetes.io/name` label key (value [`APP_NAME`]).
pub const LABEL_NAME: &str = "app.kubernetes.io/name";
/// `app.kubernetes.io/instance` label key (value: the owning resource's name).
pub const LABEL_INSTANCE: &str = "app.kubernetes.io/instance";
/// `app.kubernetes.io/component` label key.
pub const LABEL_COMPONENT: &str = "app.kubernetes.io/component";
/// `app.kubernetes.io/managed-by` label key (value [`FIELD_MANAGER`]).
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// Value of [`LABEL_NAME`].
pub const APP_NAME: &str = "llm-proxy";
/// Pod-template annotation: sha256 of the rendered config and of every referenced Secret's data.
pub const CONFIG_HASH_ANNOTATION: &str = "llm-proxy.io/config-hash";
/// Child annotation: sha256 of the object as last applied (lets a no-op reconcile skip the write).
pub const APPLIED_HASH_ANNOTATION: &str = "llm-proxy.io/applied-hash";
/// Annotation marking a generated Secret (created once, never patched, never orphan-deleted).
pub const GENERATED_ANNOTATION: &str = "llm-proxy.io/generated";

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
