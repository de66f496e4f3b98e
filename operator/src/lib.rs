//! The `llm-proxy-operator` library: the custom resources, the pure render pipeline and the
//! controllers that apply it to a cluster.
//!
//! Layers, bottom to top (a module imports only from the layers below it):
//! - vocabulary: [`vocabulary`] (field manager, labels, annotations), [`kinds`] (the child-kind
//!   table), [`config`] (the operator's runtime configuration), [`crd`] (the resources' types, CEL
//!   and defaults);
//! - kind-generic machinery: [`error`], [`metrics`], [`events`], [`memory`], [`cache`],
//!   [`context`], [`apply`];
//! - one module per kind, each a straight pipeline — dereference → validate → build → apply →
//!   status: [`llmproxy`];
//! - runtime wiring: [`leader`], [`controller`]; [`rbac`] lists what it needs.
//!
//! docs/operator.md, "Developing", has the recipe for adding a kind.

pub mod apply;
pub mod cache;
pub mod config;
pub mod context;
pub mod controller;
pub mod crd;
pub mod error;
pub mod events;
pub mod kinds;
pub mod leader;
pub mod llmproxy;
pub mod memory;
pub mod metrics;
pub mod rbac;
pub mod vocabulary;

pub use error::Error;
pub use rbac::{RbacRule, required_rbac};
pub use vocabulary::{
    APP_NAME, APPLIED_HASH_ANNOTATION, CONFIG_HASH_ANNOTATION, FIELD_MANAGER, GENERATED_ANNOTATION,
    LABEL_COMPONENT, LABEL_INSTANCE, LABEL_MANAGED_BY, LABEL_NAME,
};
