//! In-repo test servers standing in for services that cannot run here.
//!
//! - [`openai`]: a mock OpenAI upstream for the proxy's black-box tests.

pub mod helicone;
pub mod lunary;
pub mod openai;
