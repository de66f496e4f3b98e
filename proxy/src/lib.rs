//! The `llm-proxy` data plane.

pub mod config;
pub mod secret;
