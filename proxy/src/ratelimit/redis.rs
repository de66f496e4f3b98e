//! Counters in Redis, shared by every replica: one Lua script checks and counts all the counters of
//! a request atomically, so replicas sharing a limit of N admit exactly N per window.
//!
//! A window starts at the first request of a key (`INCR` = 1 sets `PEXPIRE`), so there is no
//! boundary at which two windows' worth of requests pass; `PTTL` gives the time to the reset.

use std::time::Duration;

use redis::Script;

use super::{Check, Verdict};
use crate::redis_link::ConnectionManager;

/// Bound on one script call: rate limiting must not add a noticeable wait when Redis is slow or
/// gone.
pub const REDIS_TIMEOUT: Duration = Duration::from_millis(250);

/// KEYS: the counters. ARGV: per key, its limit and its window in milliseconds. Returns `{1}` when
/// admitted (every counter incremented), `{0, i, pttl}` when counter `i` (1-based) is exhausted
/// (nothing incremented).
const CHECK_SCRIPT: &str = r"
for i = 1, #KEYS do
  local count = tonumber(redis.call('GET', KEYS[i]) or '0')
  if count >= tonumber(ARGV[2 * i - 1]) then
    local ttl = redis.call('PTTL', KEYS[i])
    if ttl < 0 then
      redis.call('PEXPIRE', KEYS[i], ARGV[2 * i])
      ttl = tonumber(ARGV[2 * i])
    end
    return {0, i, ttl}
  end
end
for i = 1, #KEYS do
  if redis.call('INCR', KEYS[i]) == 1 then
    redis.call('PEXPIRE', KEYS[i], ARGV[2 * i])
  end
end
return {1}
";

/// Why a Redis check gave no verdict.
#[derive(Debug, thiserror::Error)]
pub enum RedisCheckError {
    #[error("redis did not answer within {REDIS_TIMEOUT:?}")]
    Timeout,
    #[error("redis error: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("unexpected script reply {0:?}")]
    Reply(Vec<i64>),
}

pub struct RedisCounters {
    connection: ConnectionManager,
    script: Script,
}

impl RedisCounters {
    pub fn new(connection: ConnectionManager) -> Self {
        Self {
            connection,
            script: Script::new(CHECK_SCRIPT),
        }
    }

    /// Checks and counts `checks` atomically.
    pub async fn check(&self, checks: &[Check]) -> Result<Verdict, RedisCheckError> {
        let mut invocation = self.script.prepare_invoke();
        for check in checks {
            let window_ms = check.limit.window_seconds.saturating_mul(1000);
            invocation
                .key(&check.key)
                .arg(check.limit.requests)
                .arg(window_ms);
        }
        // The manager is a cheap handle on one multiplexed connection.
        let mut connection = self.connection.clone();
        let reply: Vec<i64> =
            tokio::time::timeout(REDIS_TIMEOUT, invocation.invoke_async(&mut connection))
                .await
                .map_err(|_| RedisCheckError::Timeout)??;
        match reply.as_slice() {
            [1] => Ok(Verdict::Admitted),
            [0, index, ttl_ms] => {
                let index = usize::try_from(*index)
                    .ok()
                    .and_then(|i| i.checked_sub(1))
                    .filter(|&i| i < checks.len());
                match index {
                    Some(index) => Ok(Verdict::Denied {
                        index,
                        reset: Duration::from_millis(u64::try_from(*ttl_ms).unwrap_or(0)),
                    }),
                    None => Err(RedisCheckError::Reply(reply)),
                }
            }
            _ => Err(RedisCheckError::Reply(reply)),
        }
    }
}
