//! Benchmark harness of `llm-proxy` (issue #6); nothing here ships.
//!
//! Modules: [`stats`] (percentiles, medians of rounds, ratios), [`net`] (accept loop and pooled
//! client with `TCP_NODELAY`), [`mock`] (the mock upstream), [`passthrough`] (the bare
//! pass-through reference), [`loadgen`] (closed- and open-loop driver).

pub mod loadgen;
pub mod mock;
pub mod net;
pub mod passthrough;
pub mod stats;
