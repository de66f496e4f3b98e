//! A stored response and its encoding in Redis (JSON, body in base64).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// A response as the cache keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedResponse {
    pub status: u16,
    /// Kept headers (see [`super::policy::keeps_header`]), in order, UTF-8 values only.
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    pub stored_at_ms: u64,
    pub expires_at_ms: u64,
}

#[derive(Serialize, Deserialize)]
struct Wire<'a> {
    status: u16,
    headers: Vec<(String, String)>,
    body: std::borrow::Cow<'a, str>,
    stored_at_ms: u64,
    expires_at_ms: u64,
}

impl CachedResponse {
    /// Time to live from now (zero once expired).
    pub fn remaining(&self) -> Duration {
        Duration::from_millis(self.expires_at_ms.saturating_sub(now_ms()))
    }

    /// Seconds since the entry was stored (`Age`).
    pub fn age_seconds(&self) -> u64 {
        now_ms().saturating_sub(self.stored_at_ms) / 1000
    }

    /// Approximate size in memory, for the in-memory bound.
    pub fn weight(&self) -> usize {
        self.body.len()
            + self
                .headers
                .iter()
                .map(|(n, v)| n.len() + v.len() + 16)
                .sum::<usize>()
            + 64
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn encode(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(&Wire {
            status: self.status,
            headers: self.headers.clone(),
            body: STANDARD.encode(&self.body).into(),
            stored_at_ms: self.stored_at_ms,
            expires_at_ms: self.expires_at_ms,
        })
    }

    /// `None` for anything that is not a valid entry (treated as a miss).
    pub fn decode(data: &[u8]) -> Option<Self> {
        let wire: Wire<'_> = serde_json::from_slice(data).ok()?;
        Some(Self {
            status: wire.status,
            headers: wire.headers,
            body: STANDARD.decode(wire.body.as_bytes()).ok()?.into(),
            stored_at_ms: wire.stored_at_ms,
            expires_at_ms: wire.expires_at_ms,
        })
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_garbage_is_rejected() {
        let entry = CachedResponse {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: Bytes::from_static(b"\x00{\"a\":1}"),
            stored_at_ms: 1,
            expires_at_ms: 2,
        };
        let encoded = entry.encode().unwrap();
        assert_eq!(CachedResponse::decode(&encoded), Some(entry.clone()));
        assert_eq!(CachedResponse::decode(b"not json"), None);
        assert_eq!(entry.header("Content-Type"), Some("application/json"));
        assert_eq!(entry.remaining(), Duration::ZERO);
    }
}
