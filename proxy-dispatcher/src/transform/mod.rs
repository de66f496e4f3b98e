//! Turning an [`InstrumentationEvent`] into the [`EventPayload`] the backends receive (spec §5).
//!
//! Non-POST events are dropped. The request body becomes `input` (JSON when it parses, else a
//! string), the response body becomes `output` through [`output::decode_output`], and token usage
//! comes from the event (what the proxy saw) or, for the OpenAI completion endpoints, from the
//! response's `usage` object. Tokens are not counted locally when no usage was reported: no
//! tokenizer is bundled (see docs/dispatcher.md).

mod output;
mod sse;

use chrono::{SecondsFormat, Utc};
use serde::Serialize;
use serde_json::{Map, Value};

use llm_proxy_events::InstrumentationEvent;

pub use output::decode_output;

/// Paths whose JSON responses carry OpenAI `usage`.
const USAGE_PATHS: &[&str] = &["/v1/completions", "/v1/chat/completions"];
const THREADS_PATH_PREFIX: &str = "/v1/threads/";

/// The event as sent to Lunary (and the file sink); Helicone's body is derived from it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventPayload {
    /// Always `llm`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Always `start`.
    pub event: &'static str,
    /// A fresh UUID per transformation.
    #[serde(rename = "runId")]
    pub run_id: String,
    /// When the dispatcher transformed the event (RFC 3339, UTC).
    pub timestamp: String,
    /// The event's `LogID`.
    pub log_id: i64,
    /// `method`, `path`, `status`, `duration_ms`, `request_id` [, `response_headers`].
    pub metadata: Map<String, Value>,
    /// The request body.
    pub input: Value,
    /// The decoded response body.
    pub output: Value,
    /// Prompt and completion tokens, when known.
    #[serde(rename = "tokensUsage", skip_serializing_if = "Option::is_none")]
    pub tokens_usage: Option<TokensUsage>,
}

/// Token counts of one exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TokensUsage {
    /// Prompt tokens.
    pub prompt: u64,
    /// Completion tokens.
    pub completion: u64,
}

impl TokensUsage {
    /// Total as Helicone expects it.
    pub fn total(self) -> u64 {
        self.prompt.saturating_add(self.completion)
    }
}

/// Builds payloads; holds the options that do not change per event.
#[derive(Debug, Clone, Copy, Default)]
pub struct Transformer {
    /// `LLM_PROXY_DISPATCHER_VERBOSE`: add `metadata.response_headers`.
    pub verbose: bool,
}

impl Transformer {
    /// The payload for `event`, or `None` for events that are not shipped (non-POST).
    pub fn transform(&self, event: &InstrumentationEvent) -> Option<EventPayload> {
        if !event.method.eq_ignore_ascii_case("POST") {
            return None;
        }
        let mut metadata = Map::new();
        metadata.insert("method".into(), Value::from(event.method.clone()));
        metadata.insert("path".into(), Value::from(event.path.clone()));
        metadata.insert("status".into(), Value::from(event.status));
        metadata.insert(
            "duration_ms".into(),
            Value::from(u64::try_from(event.duration.as_millis()).unwrap_or(u64::MAX)),
        );
        metadata.insert("request_id".into(), Value::from(event.request_id.clone()));
        if self.verbose {
            metadata.insert(
                "response_headers".into(),
                serde_json::to_value(&event.response_headers).unwrap_or(Value::Null),
            );
        }
        let output = decode_output(&event.response_headers, &event.response_body);
        let tokens_usage = event
            .usage
            .map(|usage| TokensUsage {
                prompt: usage.prompt_tokens,
                completion: usage.completion_tokens,
            })
            .or_else(|| usage_from_output(&event.path, &output));
        Some(EventPayload {
            kind: "llm",
            event: "start",
            run_id: uuid::Uuid::new_v4().to_string(),
            timestamp: Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
            log_id: event.log_id,
            metadata,
            input: decode_input(&event.request_body),
            output,
            tokens_usage,
        })
    }
}

/// JSON request bodies are embedded as JSON; text as a string; anything else is omitted.
fn decode_input(body: &[u8]) -> Value {
    if body.is_empty() {
        return Value::Null;
    }
    if let Ok(json) = serde_json::from_slice::<Value>(body) {
        return json;
    }
    match std::str::from_utf8(body) {
        Ok(text) if output::looks_like_multipart(text) => {
            Value::from("<multipart request omitted>")
        }
        Ok(text) => Value::from(text),
        Err(_) => Value::from("<binary request omitted>"),
    }
}

/// `usage` of an OpenAI completion, chat completion or threads response.
fn usage_from_output(path: &str, output: &Value) -> Option<TokensUsage> {
    let path = path.split('?').next().unwrap_or(path);
    if !USAGE_PATHS.contains(&path) && !path.starts_with(THREADS_PATH_PREFIX) {
        return None;
    }
    let usage = output.get("usage")?;
    let prompt = usage.get("prompt_tokens").and_then(Value::as_u64);
    let completion = usage.get("completion_tokens").and_then(Value::as_u64);
    if prompt.is_none() && completion.is_none() {
        return None;
    }
    Some(TokensUsage {
        prompt: prompt.unwrap_or(0),
        completion: completion.unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use llm_proxy_events::Usage;
    use serde_json::json;

    use super::*;

    fn chat_event(body: &[u8]) -> InstrumentationEvent {
        InstrumentationEvent {
            request_id: "req-42".into(),
            method: "POST".into(),
            path: "/v1/chat/completions".into(),
            status: 200,
            duration: Duration::from_millis(1234),
            response_headers: BTreeMap::from([(
                "Content-Type".into(),
                vec!["application/json".into()],
            )]),
            response_body: body.to_vec(),
            request_body: br#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#
                .to_vec(),
            ..InstrumentationEvent::default()
        }
    }

    #[test]
    fn builds_the_payload_of_a_chat_completion_with_usage() {
        let event = chat_event(
            br#"{"id":"c1","choices":[{"message":{"content":"hello"}}],"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11}}"#,
        );
        let payload = Transformer::default().transform(&event).unwrap();
        let value = serde_json::to_value(&payload).unwrap();
        assert_eq!(value["type"], "llm");
        assert_eq!(value["event"], "start");
        assert_eq!(value["log_id"], 0);
        assert_eq!(
            value["metadata"],
            json!({"method":"POST","path":"/v1/chat/completions","status":200,"duration_ms":1234,"request_id":"req-42"})
        );
        assert_eq!(value["input"]["model"], "gpt-4o");
        assert_eq!(value["output"]["choices"][0]["message"]["content"], "hello");
        assert_eq!(value["tokensUsage"], json!({"prompt":9,"completion":2}));
        assert!(uuid::Uuid::parse_str(value["runId"].as_str().unwrap()).is_ok());
        assert!(chrono::DateTime::parse_from_rfc3339(value["timestamp"].as_str().unwrap()).is_ok());
    }

    #[test]
    fn non_post_events_are_dropped_and_verbose_adds_headers() {
        let mut event = chat_event(b"{}");
        event.method = "GET".into();
        assert!(Transformer::default().transform(&event).is_none());
        event.method = "POST".into();
        let payload = Transformer { verbose: true }.transform(&event).unwrap();
        assert_eq!(
            payload.metadata["response_headers"],
            json!({"Content-Type":["application/json"]})
        );
    }

    #[test]
    fn usage_from_the_event_wins_and_other_paths_have_none() {
        let mut event = chat_event(br#"{"usage":{"prompt_tokens":1,"completion_tokens":1}}"#);
        event.usage = Some(Usage {
            prompt_tokens: 5,
            completion_tokens: 6,
            total_tokens: 11,
        });
        let payload = Transformer::default().transform(&event).unwrap();
        assert_eq!(
            payload.tokens_usage,
            Some(TokensUsage {
                prompt: 5,
                completion: 6
            })
        );

        let mut embeddings = chat_event(br#"{"usage":{"prompt_tokens":3,"total_tokens":3}}"#);
        embeddings.path = "/v1/embeddings".into();
        assert_eq!(
            Transformer::default()
                .transform(&embeddings)
                .unwrap()
                .tokens_usage,
            None
        );
        let no_usage = chat_event(br#"{"choices":[]}"#);
        assert_eq!(
            Transformer::default()
                .transform(&no_usage)
                .unwrap()
                .tokens_usage,
            None
        );
    }

    #[test]
    fn a_streamed_chat_completion_is_merged_and_its_usage_extracted() {
        let mut event = chat_event(
            b"data: {\"id\":\"s1\",\"model\":\"gpt-4o\",\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"Hi\"}}]}\n\n\
data: {\"id\":\"s1\",\"choices\":[{\"delta\":{\"content\":\" there\"},\"finish_reason\":\"stop\"}]}\n\n\
data: {\"id\":\"s1\",\"choices\":[],\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":2,\"total_tokens\":6}}\n\n\
data: [DONE]\n\n",
        );
        event.streaming = true;
        event.response_headers =
            BTreeMap::from([("Content-Type".into(), vec!["text/event-stream".into()])]);
        let payload = Transformer::default().transform(&event).unwrap();
        assert_eq!(
            payload.output,
            json!({
                "id": "s1",
                "model": "gpt-4o",
                "object": "chat.completion",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi there"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6}
            })
        );
        assert_eq!(
            payload.tokens_usage,
            Some(TokensUsage {
                prompt: 4,
                completion: 2
            })
        );
    }

    #[test]
    fn inputs_that_are_not_json_become_strings_or_are_omitted() {
        assert_eq!(decode_input(b""), Value::Null);
        assert_eq!(decode_input(b"plain text"), json!("plain text"));
        assert_eq!(
            decode_input(&[0xff, 0xfe, 0x00]),
            json!("<binary request omitted>")
        );
        let multipart = b"--boundary\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nabc\r\n--boundary--";
        assert_eq!(
            decode_input(multipart),
            json!("<multipart request omitted>")
        );
    }
}
