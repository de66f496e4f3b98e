//! Mock servers for tests.
