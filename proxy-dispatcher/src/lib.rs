//! The llm-proxy event dispatcher (under construction).
