//! The `llm-proxy-operator` library: the `LlmProxy` CRD, the pure render pipeline
//! (validate → build), and the controller that applies it to a cluster.
//!
//! Reconcile pipeline (one module each): [`dereference`] → [`validate`] → [`render`] / [`build`] →
//! [`apply`] → [`status`], wired by [`reconcile`] and run by [`controller`].

pub mod apply;
pub mod build;
pub mod controller;
pub mod crd;
pub mod dereference;
pub mod error;
pub mod leader;
pub mod metrics;
pub mod rbac;
pub mod reconcile;
pub mod render;
pub mod sources;
pub mod status;
pub mod validate;

pub use error::Error;
pub use rbac::{RbacRule, required_rbac};
pub use render::{
    APP_NAME, APPLIED_HASH_ANNOTATION, CONFIG_HASH_ANNOTATION, FIELD_MANAGER, GENERATED_ANNOTATION,
    LABEL_COMPONENT, LABEL_INSTANCE, LABEL_MANAGED_BY, LABEL_NAME, ReferencedData,
};
