//! In-repo test servers standing in for services that cannot run here.
//!
//! - [`openai`]: a mock OpenAI upstream for the proxy's black-box tests;
//! - [`lunary`], [`helicone`]: mock receivers of the dispatcher's backends;
//! - [`redis_server`]: not a mock but a private real `redis-server` for tests that stop Redis.

pub mod helicone;
pub mod lunary;
pub mod openai;
pub mod redis_server;
