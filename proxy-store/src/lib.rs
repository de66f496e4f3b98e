//! Persistence of the llm-proxy data plane.
