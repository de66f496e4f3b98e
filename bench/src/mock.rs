//! The benchmark's mock OpenAI upstream: an instant (or delayed) chat completion of about 1.4 KB
//! with `usage`, or, when the request body asks for `"stream": true`, an SSE response of N content
//! chunks paced on deadlines (`start + i × interval`, so pacing does not drift with scheduling).
//!
//! It keeps no record of requests (unlike `llm_proxy_mocks::openai`, whose per-request log grows
//! without bound and would skew memory and latency under load).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::{self, StreamExt};
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Either, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use tokio::net::TcpListener;
use tokio::time::Instant;

/// What the mock answers.
#[derive(Debug, Clone, Copy)]
pub struct MockSettings {
    /// Wait before the response headers.
    pub delay: Duration,
    /// Content chunks of a streamed response (before the usage chunk and `[DONE]`).
    pub stream_chunks: usize,
    /// Pause between two chunks.
    pub chunk_interval: Duration,
}

/// Size the non-streamed completion is padded to (the 1.4 KB of the peers' benchmarks).
pub const COMPLETION_BYTES: usize = 1_400;

type StreamedBody =
    StreamBody<futures::stream::BoxStream<'static, Result<Frame<Bytes>, Infallible>>>;
/// The mock's response body: a fixed completion or a paced SSE stream.
pub type MockBody = Either<Full<Bytes>, StreamedBody>;

/// Serves the mock on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, settings: MockSettings) -> std::io::Result<()> {
    let completion = Bytes::from(completion_body());
    let settings = Arc::new(settings);
    crate::net::serve(listener, move |request| {
        let completion = completion.clone();
        let settings = settings.clone();
        async move { answer(request, &settings, completion).await }
    })
    .await
}

async fn answer(
    request: Request<Incoming>,
    settings: &MockSettings,
    completion: Bytes,
) -> Response<MockBody> {
    let body = match request.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return status_only(StatusCode::BAD_REQUEST),
    };
    if !settings.delay.is_zero() {
        tokio::time::sleep(settings.delay).await;
    }
    if asks_for_stream(&body) {
        let mut response = Response::new(Either::Right(sse_body(settings)));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        response
    } else {
        let mut response = Response::new(Either::Left(Full::new(completion)));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    }
}

fn status_only(status: StatusCode) -> Response<MockBody> {
    let mut response = Response::new(Either::Left(Full::new(Bytes::new())));
    *response.status_mut() = status;
    response
}

/// Whether the JSON body has `"stream": true` (a byte search: the mock must stay cheaper than
/// anything it measures, so it does not parse JSON).
pub fn asks_for_stream(body: &[u8]) -> bool {
    let compact = body
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect::<Vec<u8>>();
    const PATTERN: &[u8] = b"\"stream\":true";
    compact.windows(PATTERN.len()).any(|w| w == PATTERN)
}

fn sse_body(settings: &MockSettings) -> StreamedBody {
    let chunks = settings.stream_chunks;
    let interval = settings.chunk_interval;
    let start = Instant::now();
    let frames = stream::unfold(0usize, move |index| async move {
        if index > chunks + 1 {
            return None;
        }
        let event = if index < chunks {
            if index > 0 {
                let offset = interval.saturating_mul(u32::try_from(index).unwrap_or(u32::MAX));
                tokio::time::sleep_until(start + offset).await;
            }
            content_chunk(index)
        } else if index == chunks {
            usage_chunk(chunks)
        } else {
            "data: [DONE]\n\n".to_owned()
        };
        Some((Ok(Frame::data(Bytes::from(event))), index + 1))
    });
    StreamBody::new(frames.boxed())
}

fn content_chunk(index: usize) -> String {
    format!(
        "data: {{\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"gpt-4o-mini\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"tok{index} \"}},\"finish_reason\":null}}]}}\n\n"
    )
}

fn usage_chunk(chunks: usize) -> String {
    format!(
        "data: {{\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"gpt-4o-mini\",\"choices\":[],\"usage\":{{\"prompt_tokens\":12,\"completion_tokens\":{chunks},\"total_tokens\":{}}}}}\n\n",
        chunks + 12
    )
}

/// A chat completion with `usage`, its content padded so the body is [`COMPLETION_BYTES`] long.
pub fn completion_body() -> String {
    let template = |content: &str| {
        format!(
            "{{\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion\",\"created\":1700000000,\"model\":\"gpt-4o-mini\",\"choices\":[{{\"index\":0,\"message\":{{\"role\":\"assistant\",\"content\":\"{content}\"}},\"finish_reason\":\"stop\"}}],\"usage\":{{\"prompt_tokens\":12,\"completion_tokens\":300,\"total_tokens\":312}}}}"
        )
    };
    let frame_len = template("").len();
    let filler = "lorem ipsum ".repeat(COMPLETION_BYTES / 12 + 1);
    let content = filler
        .get(..COMPLETION_BYTES.saturating_sub(frame_len))
        .unwrap_or_default();
    template(content)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completion_is_valid_json_of_the_advertised_size_with_usage() {
        let body = completion_body();
        assert_eq!(body.len(), COMPLETION_BYTES);
        let value: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(value["usage"]["total_tokens"], 312);
    }

    #[test]
    fn stream_detection_ignores_whitespace_and_false() {
        assert!(asks_for_stream(br#"{"model":"m","stream": true}"#));
        assert!(asks_for_stream(br#"{"stream" :	true}"#));
        assert!(!asks_for_stream(br#"{"model":"m","stream":false}"#));
        assert!(!asks_for_stream(br#"{"model":"m"}"#));
    }

    #[test]
    fn chunks_are_valid_sse_json() {
        for event in [content_chunk(3), usage_chunk(64)] {
            let json = event
                .strip_prefix("data: ")
                .and_then(|rest| rest.strip_suffix("\n\n"))
                .unwrap();
            let _: serde_json::Value = serde_json::from_str(json).unwrap();
        }
    }
}
