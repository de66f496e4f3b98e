//! Helicone: one `POST` per event to the custom-log endpoint, body shape of spec §5.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use super::{HttpClient, SendError, StatusPolicy, classify};
use crate::transform::EventPayload;

/// Posts single events to Helicone.
pub struct HeliconeBackend {
    client: HttpClient,
    endpoint: http::Uri,
    api_key: String,
}

impl HeliconeBackend {
    /// A backend posting to `endpoint` with `api_key`.
    pub fn new(client: HttpClient, endpoint: http::Uri, api_key: String) -> Self {
        Self {
            client,
            endpoint,
            api_key,
        }
    }

    /// Sends one event. 400 and 500 are permanent (as upstream), like every other 4xx but 408/429.
    pub async fn send(&self, payload: &EventPayload) -> Result<(), SendError> {
        let body = serde_json::to_vec(&helicone_body(payload))
            .map_err(|error| SendError::Permanent(format!("cannot encode event: {error}")))?;
        let status = self
            .client
            .post_json(&self.endpoint, &self.api_key, body)
            .await?;
        classify(status, StatusPolicy::ClientErrorsAnd500Permanent)
    }
}

/// The Helicone custom-log body for `payload`:
/// `{providerRequest:{url,json,meta}, providerResponse:{status,headers,json[,note]}, timing:{startTime,endTime}}`.
pub fn helicone_body(payload: &EventPayload) -> Value {
    let path = payload
        .metadata
        .get("path")
        .and_then(Value::as_str)
        .filter(|path| !path.is_empty());
    let mut meta = Map::new();
    for (key, value) in &payload.metadata {
        if let Value::String(text) = value {
            meta.insert(key.clone(), Value::from(text.clone()));
        }
    }
    meta.insert("provider".into(), Value::from("openai"));
    meta.insert("Helicone-Provider".into(), Value::from("openai"));
    let request_json = match &payload.input {
        Value::Object(_) => payload.input.clone(),
        Value::Null => json!({}),
        other => json!({ "input": other }),
    };
    let mut provider_response = Map::new();
    let status = payload
        .metadata
        .get("status")
        .and_then(Value::as_u64)
        .unwrap_or(200);
    provider_response.insert("status".into(), Value::from(status));
    provider_response.insert("headers".into(), json!({}));
    let mut response_json = match &payload.output {
        Value::Object(object) => object.clone(),
        _ => Map::new(),
    };
    if let Value::String(note) = &payload.output {
        provider_response.insert("note".into(), Value::from(note.clone()));
    }
    if let Some(usage) = payload.tokens_usage {
        response_json.insert(
            "usage".into(),
            json!({"prompt_tokens": usage.prompt, "completion_tokens": usage.completion, "total_tokens": usage.total()}),
        );
    }
    provider_response.insert("json".into(), Value::Object(response_json));
    let end = DateTime::parse_from_rfc3339(&payload.timestamp)
        .map(|at| at.with_timezone(&Utc))
        .unwrap_or_else(|_| Utc::now());
    let duration_ms = payload
        .metadata
        .get("duration_ms")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let start = end - chrono::Duration::milliseconds(duration_ms);
    json!({
        "providerRequest": {
            "url": path.unwrap_or("custom-model-nopath"),
            "json": request_json,
            "meta": meta,
        },
        "providerResponse": provider_response,
        "timing": {"startTime": timing(start), "endTime": timing(end)},
    })
}

fn timing(at: DateTime<Utc>) -> Value {
    json!({"seconds": at.timestamp(), "milliseconds": at.timestamp_subsec_millis()})
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::transform::TokensUsage;

    #[test]
    fn body_has_the_upstream_shape_with_usage_injected() {
        let mut metadata = Map::new();
        metadata.insert("method".into(), json!("POST"));
        metadata.insert("path".into(), json!("/v1/chat/completions"));
        metadata.insert("status".into(), json!(201));
        metadata.insert("duration_ms".into(), json!(1500));
        metadata.insert("request_id".into(), json!("req-1"));
        let payload = EventPayload {
            kind: "llm",
            event: "start",
            run_id: "run".into(),
            timestamp: "2026-01-02T03:04:05.678Z".into(),
            log_id: 0,
            metadata,
            input: json!({"model": "gpt-4o"}),
            output: json!({"id": "c1"}),
            tokens_usage: Some(TokensUsage {
                prompt: 3,
                completion: 4,
            }),
        };
        assert_eq!(
            helicone_body(&payload),
            json!({
                "providerRequest": {
                    "url": "/v1/chat/completions",
                    "json": {"model": "gpt-4o"},
                    "meta": {"method": "POST", "path": "/v1/chat/completions", "request_id": "req-1",
                             "provider": "openai", "Helicone-Provider": "openai"},
                },
                "providerResponse": {
                    "status": 201,
                    "headers": {},
                    "json": {"id": "c1", "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}},
                },
                "timing": {
                    "startTime": {"seconds": 1767323044, "milliseconds": 178},
                    "endTime": {"seconds": 1767323045, "milliseconds": 678},
                },
            })
        );
    }

    #[test]
    fn text_output_becomes_a_note_and_missing_path_a_placeholder() {
        let payload = EventPayload {
            kind: "llm",
            event: "start",
            run_id: "run".into(),
            timestamp: "2026-01-02T03:04:05Z".into(),
            log_id: 0,
            metadata: Map::new(),
            input: json!("raw prompt"),
            output: json!("<binary response omitted>"),
            tokens_usage: None,
        };
        let body = helicone_body(&payload);
        assert_eq!(body["providerRequest"]["url"], "custom-model-nopath");
        assert_eq!(
            body["providerRequest"]["json"],
            json!({"input": "raw prompt"})
        );
        assert_eq!(body["providerResponse"]["status"], 200);
        assert_eq!(body["providerResponse"]["json"], json!({}));
        assert_eq!(
            body["providerResponse"]["note"],
            "<binary response omitted>"
        );
    }
}
