//! Benchmark harness of `llm-proxy` (issue #6); nothing here ships.
//!
//! Modules: [`stats`] (percentiles, medians of rounds, ratios), [`net`] (accept loop and pooled
//! client with `TCP_NODELAY`), [`mock`] (the mock upstream), [`passthrough`] (the bare
//! pass-through reference), [`loadgen`] (closed- and open-loop driver), [`results`] (the JSON file) and [`report`]
//! (Markdown and the targets of the issue), [`runner`] (one interleaved run of every scenario)
//! with [`process`] (pinned child processes) and [`machine`] (facts and `/proc` readers);
//! [`gate`] is the callgrind regression gate; [`error`] is the one error type.

pub mod error;
pub mod gate;
pub mod loadgen;
pub mod machine;
pub mod mock;
pub mod net;
pub mod passthrough;
pub mod process;
pub mod report;
pub mod results;
pub mod runner;
pub mod stats;
