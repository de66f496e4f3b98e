//! Integration tests of the operator library (one binary): CRD, samples and golden renders,
//! validation messages (pure and CEL), builders, status computation, apply helpers.

// Test helpers outside `#[test]` functions fail loudly on broken fixtures, as the tests themselves do.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod builders;
mod cli;
mod crd;
mod metrics;
mod samples;
mod status;
mod support;
mod validation;
