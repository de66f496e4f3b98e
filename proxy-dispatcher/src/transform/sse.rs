//! Merging an OpenAI server-sent-event stream into one `chat.completion` object.
//!
//! Only streams with at least two JSON `data:` events (`[DONE]` excluded) are merged: the content of
//! every `choices[0].delta.content` (or `choices[0].text` for legacy completions) is concatenated,
//! the last `finish_reason` wins, and the last `usage` object is kept.

use serde_json::{Map, Value, json};

/// The merged object, or `None` when `text` is not such a stream.
pub fn merge_openai_stream(text: &str) -> Option<Value> {
    let chunks: Vec<Value> = text
        .lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .map(str::trim)
        .filter(|data| *data != "[DONE]")
        .filter_map(|data| serde_json::from_str::<Value>(data).ok())
        .filter(Value::is_object)
        .collect();
    if chunks.len() < 2 {
        return None;
    }
    let first = chunks.first()?;
    let mut content = String::new();
    let mut role = None;
    let mut finish_reason = Value::Null;
    let mut usage = None;
    for chunk in &chunks {
        if let Some(choice) = chunk.get("choices").and_then(|choices| choices.get(0)) {
            let delta = choice.get("delta");
            if let Some(text) = delta.and_then(|d| d.get("content")).and_then(Value::as_str) {
                content.push_str(text);
            } else if let Some(text) = choice.get("text").and_then(Value::as_str) {
                content.push_str(text);
            }
            if let Some(found) = delta.and_then(|d| d.get("role")).and_then(Value::as_str) {
                role = Some(found.to_string());
            }
            if let Some(reason) = choice
                .get("finish_reason")
                .filter(|reason| !reason.is_null())
            {
                finish_reason = reason.clone();
            }
        }
        if let Some(found) = chunk.get("usage").filter(|found| found.is_object()) {
            usage = Some(found.clone());
        }
    }
    let mut merged = Map::new();
    for key in ["id", "created", "model", "system_fingerprint"] {
        if let Some(value) = first.get(key) {
            merged.insert(key.to_string(), value.clone());
        }
    }
    merged.insert("object".to_string(), Value::from("chat.completion"));
    merged.insert(
        "choices".to_string(),
        json!([{
            "index": 0,
            "message": {"role": role.unwrap_or_else(|| "assistant".to_string()), "content": content},
            "finish_reason": finish_reason,
        }]),
    );
    if let Some(usage) = usage {
        merged.insert("usage".to_string(), usage);
    }
    Some(Value::Object(merged))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_a_chat_stream_with_usage() {
        let stream = "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n\
data: {\"id\":\"chatcmpl-1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"},\"finish_reason\":null}]}\n\n\
data: {\"id\":\"chatcmpl-1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"},\"finish_reason\":\"stop\"}]}\n\n\
data: {\"id\":\"chatcmpl-1\",\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2,\"total_tokens\":7}}\n\n\
data: [DONE]\n\n";
        let merged = merge_openai_stream(stream).unwrap();
        assert_eq!(
            merged,
            json!({
                "id": "chatcmpl-1",
                "created": 1700000000,
                "model": "gpt-4o",
                "object": "chat.completion",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
            })
        );
    }

    #[test]
    fn single_event_and_non_sse_text_are_not_merged() {
        assert!(merge_openai_stream("data: {\"id\":\"x\"}\n\ndata: [DONE]\n\n").is_none());
        assert!(merge_openai_stream("{\"id\":\"x\"}").is_none());
        assert!(merge_openai_stream("event: ping\ndata: hello\n\ndata: world\n\n").is_none());
    }
}
