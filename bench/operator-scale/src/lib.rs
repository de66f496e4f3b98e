//! Operator-scale benchmark (issue #6, "Operator scale"): the real `llm-proxy-operator` binary,
//! as a child process, against the in-memory fake API server with many `LlmProxy` objects.
//!
//! Modules: [`samples`] (the objects, cycled from `config/samples/`), [`scenario`] (one run:
//! start, burst of objects, convergence, steady-state window), [`results`] (the JSON file) and
//! [`report`] (the generated `docs/operator-benchmarks.md`). Machine facts, `/proc` readers, child
//! processes and the error type come from the proxy benchmark (`llm-proxy-bench`).

pub mod report;
pub mod results;
pub mod samples;
pub mod scenario;
