//! The harness's one error type: what can stop a benchmark run, the report or the gate.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{0} did not become ready within {1:?}")]
    NotReady(String, std::time::Duration),
    #[error("set-up call {call} failed: {detail}")]
    Setup { call: &'static str, detail: String },
    #[error("{0}")]
    Gate(String),
}

impl BenchError {
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let context = context.into();
        move |source| Self::Io { context, source }
    }
}
