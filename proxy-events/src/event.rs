//! The instrumentation event: one record per proxied `/v1` request, as it travels on the bus.
//!
//! The JSON keys are those of the upstream Go struct (no json tags, so Go field names), so events
//! written by either implementation can be read by the other. Our additions use the same style and
//! are optional on input: an upstream event without them deserializes with their defaults.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// One proxied request and its response, captured by the proxy and shipped by the dispatcher.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstrumentationEvent {
    /// Never set by the proxy (kept for wire compatibility).
    #[serde(rename = "LogID", default)]
    pub log_id: i64,
    /// The proxy's request id (`X-Request-ID`).
    #[serde(rename = "RequestID", default)]
    pub request_id: String,
    /// HTTP method of the client request.
    #[serde(rename = "Method", default)]
    pub method: String,
    /// Request path, e.g. `/v1/chat/completions`.
    #[serde(rename = "Path", default)]
    pub path: String,
    /// Status code returned to the client.
    #[serde(rename = "Status", default)]
    pub status: u16,
    /// Time from request received to response finished; integer nanoseconds on the wire.
    #[serde(rename = "Duration", default, with = "duration_nanos")]
    pub duration: Duration,
    /// Response headers, `{name: [values]}`.
    #[serde(
        rename = "ResponseHeaders",
        default,
        deserialize_with = "null_as_default"
    )]
    pub response_headers: BTreeMap<String, Vec<String>>,
    /// Captured response body (possibly truncated, see `truncated`); base64 on the wire.
    #[serde(rename = "ResponseBody", default, with = "base64_bytes")]
    pub response_body: Vec<u8>,
    /// Captured request body (possibly truncated); base64 on the wire.
    #[serde(rename = "RequestBody", default, with = "base64_bytes")]
    pub request_body: Vec<u8>,
    /// Project of the client token.
    #[serde(rename = "ProjectID", default, skip_serializing_if = "Option::is_none")]
    pub project_id: Option<String>,
    /// Id of the client token (never the token itself).
    #[serde(rename = "TokenID", default, skip_serializing_if = "Option::is_none")]
    pub token_id: Option<String>,
    /// Whether the response was an SSE stream.
    #[serde(rename = "Streaming", default)]
    pub streaming: bool,
    /// Value of `X-PROXY-CACHE` (`miss`, `bypass`, …) when the cache took part.
    #[serde(
        rename = "CacheStatus",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub cache_status: Option<String>,
    /// Token usage, when the response carried it.
    #[serde(rename = "Usage", default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// A captured body was cut at its capture limit.
    #[serde(rename = "Truncated", default)]
    pub truncated: bool,
    /// The client went away before the response finished.
    #[serde(rename = "ClientAborted", default)]
    pub client_aborted: bool,
}

/// OpenAI-style token usage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Tokens of the prompt.
    #[serde(default)]
    pub prompt_tokens: u64,
    /// Tokens of the completion.
    #[serde(default)]
    pub completion_tokens: u64,
    /// Sum of both, as reported by the provider.
    #[serde(default)]
    pub total_tokens: u64,
}

/// Go encodes nil maps and slices as `null`; treat that like an absent field.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

mod duration_nanos {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_i64(i64::try_from(value.as_nanos()).unwrap_or(i64::MAX))
    }

    /// Negative durations (clock steps on the producer) become zero rather than failing the event.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let nanos = Option::<i64>::deserialize(deserializer)?.unwrap_or(0);
        Ok(Duration::from_nanos(u64::try_from(nanos).unwrap_or(0)))
    }
}

mod base64_bytes {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&STANDARD.encode(value))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        match Option::<String>::deserialize(deserializer)? {
            None => Ok(Vec::new()),
            Some(text) => STANDARD
                .decode(text.as_bytes())
                .map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> InstrumentationEvent {
        InstrumentationEvent {
            log_id: 0,
            request_id: "req-1".into(),
            method: "POST".into(),
            path: "/v1/chat/completions".into(),
            status: 200,
            duration: Duration::from_millis(1500),
            response_headers: BTreeMap::from([(
                "Content-Type".to_string(),
                vec!["application/json".to_string()],
            )]),
            response_body: br#"{"ok":true}"#.to_vec(),
            request_body: br#"{"model":"m"}"#.to_vec(),
            project_id: Some("p1".into()),
            token_id: Some("t1".into()),
            streaming: true,
            cache_status: Some("miss".into()),
            usage: Some(Usage {
                prompt_tokens: 3,
                completion_tokens: 4,
                total_tokens: 7,
            }),
            truncated: true,
            client_aborted: false,
        }
    }

    #[test]
    fn round_trips_through_json() {
        let event = sample();
        let json = serde_json::to_string(&event).unwrap();
        let back: InstrumentationEvent = serde_json::from_str(&json).unwrap();
        assert_eq!(back, event);
    }

    #[test]
    fn uses_upstream_key_names_and_encodings() {
        let value = serde_json::to_value(sample()).unwrap();
        assert_eq!(value["LogID"], 0);
        assert_eq!(value["RequestID"], "req-1");
        assert_eq!(value["Duration"], 1_500_000_000_i64);
        assert_eq!(
            value["ResponseHeaders"]["Content-Type"][0],
            "application/json"
        );
        assert_eq!(value["ResponseBody"], "eyJvayI6dHJ1ZX0=");
        assert_eq!(value["Usage"]["total_tokens"], 7);
        assert_eq!(value["ProjectID"], "p1");
    }

    #[test]
    fn accepts_an_upstream_event_without_our_additions() {
        let json = r#"{"LogID":0,"RequestID":"r","Method":"GET","Path":"/v1/models","Status":200,
            "Duration":42,"ResponseHeaders":null,"ResponseBody":null,"RequestBody":""}"#;
        let event: InstrumentationEvent = serde_json::from_str(json).unwrap();
        assert_eq!(event.duration, Duration::from_nanos(42));
        assert!(event.response_headers.is_empty());
        assert!(event.response_body.is_empty());
        assert_eq!(event.usage, None);
        assert!(!event.streaming);
        let minimal: InstrumentationEvent = serde_json::from_str("{}").unwrap();
        assert_eq!(minimal, InstrumentationEvent::default());
    }

    #[test]
    fn rejects_invalid_base64_and_clamps_negative_durations() {
        assert!(serde_json::from_str::<InstrumentationEvent>(r#"{"ResponseBody":"%%%"}"#).is_err());
        let event: InstrumentationEvent = serde_json::from_str(r#"{"Duration":-5}"#).unwrap();
        assert_eq!(event.duration, Duration::ZERO);
    }
}
