//! The `llm-proxy-operator` library.
