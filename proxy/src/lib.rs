//! The `llm-proxy` data plane.
