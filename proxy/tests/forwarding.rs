//! The `/v1` data path through HTTP: headers, streaming, cancellation, upstream failures, circuit
//! breaker, CORS, validation and bad input.

// Test helpers outside #[test] functions fail loudly on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{CHAT_BODY, CHAT_STREAM_BODY, Harness, Options};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use llm_proxy::breaker::BreakerPolicy;
use llm_proxy_env as env;
use llm_proxy_mocks::openai::{Behaviour, SSE_DONE, sse_chunk};

fn empty() -> Full<Bytes> {
    Full::new(Bytes::new())
}

fn body(text: &str) -> Full<Bytes> {
    Full::new(Bytes::from(text.to_owned()))
}

#[tokio::test]
async fn headers_are_rewritten_both_ways() {
    let h = Harness::start().await;
    let token = h.token(None, None).await;
    let reply = h
        .send(
            Request::post(h.url("/v1/chat/completions?stream=false"))
                .header("authorization", format!("Bearer {token}"))
                .header("content-type", "application/json")
                .header("x-forwarded-for", "203.0.113.7")
                .header("x-real-ip", "203.0.113.7")
                .header("cf-connecting-ip", "203.0.113.7")
                .header("x-request-id", "client-chosen-id")
                .header("openai-organization", "org-123")
                .header("origin", "https://app.example.com")
                .body(body(CHAT_BODY))
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, 200);
    let upstream = &h.mock.requests()[0];
    assert_eq!(upstream.path_and_query, "/v1/chat/completions?stream=false");
    for stripped in ["x-forwarded-for", "x-real-ip", "cf-connecting-ip"] {
        assert!(
            upstream.headers.get(stripped).is_none(),
            "{stripped} forwarded"
        );
    }
    assert_eq!(upstream.headers["openai-organization"], "org-123");
    assert_eq!(upstream.headers["x-proxy"], "llm-proxy");
    assert!(upstream.headers.contains_key("x-proxy-version"));
    assert!(upstream.headers.contains_key("x-upstream-request-start"));
    let request_id = reply.headers["x-request-id"].to_str().unwrap();
    assert_ne!(request_id, "client-chosen-id");
    assert!(uuid::Uuid::parse_str(request_id).is_ok());
    assert_eq!(upstream.headers["x-request-id"], request_id);
    assert_eq!(reply.headers["x-proxy"], "llm-proxy");
    assert_eq!(
        reply.headers["openai-processing-ms"], "42",
        "upstream headers pass through"
    );
    for timing in [
        "x-proxy-received-at",
        "x-proxy-first-response-at",
        "x-upstream-request-start",
        "x-upstream-request-stop",
    ] {
        assert!(reply.headers.contains_key(timing), "{timing} missing");
    }
    assert_eq!(
        reply.headers["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert!(reply.headers.get_all("vary").iter().any(|v| v == "Origin"));
}

#[tokio::test]
async fn streaming_passes_each_chunk_unmerged_and_in_time() {
    let h = Harness::start().await;
    h.mock.set_behaviour(Behaviour {
        stream_chunks: 5,
        chunk_interval: Duration::from_millis(300),
        ..Behaviour::default()
    });
    let token = h.token(None, None).await;
    let response = h
        .client
        .request(
            Request::post(h.url("/v1/chat/completions"))
                .header("authorization", format!("Bearer {token}"))
                .header("content-type", "application/json")
                .body(body(CHAT_STREAM_BODY))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut body = response.into_body();
    let mut received: Vec<(Bytes, Instant)> = Vec::new();
    while let Some(frame) = tokio::time::timeout(Duration::from_secs(5), body.frame())
        .await
        .unwrap()
    {
        if let Ok(data) = frame.unwrap().into_data() {
            received.push((data, Instant::now()));
        }
    }
    let sends = h.mock.chunk_send_times(0);
    assert_eq!(sends.len(), 5);
    let expected: Vec<String> = (0..5).map(sse_chunk).chain([SSE_DONE.to_owned()]).collect();
    let texts: Vec<String> = received
        .iter()
        .map(|(b, _)| String::from_utf8(b.to_vec()).unwrap())
        .collect();
    assert_eq!(texts, expected, "frames arrive one by one, byte for byte");
    for i in 0..4 {
        assert!(
            received[i].1 < sends[i + 1],
            "chunk {i} arrived only after chunk {} was sent",
            i + 1
        );
    }
}

#[tokio::test]
async fn a_departing_client_cancels_the_upstream_request() {
    let h = Harness::start().await;
    h.mock.set_behaviour(Behaviour {
        stream_chunks: 50,
        chunk_interval: Duration::from_millis(100),
        ..Behaviour::default()
    });
    let token = h.token(None, None).await;
    let response = h
        .client
        .request(
            Request::post(h.url("/v1/chat/completions"))
                .header("authorization", format!("Bearer {token}"))
                .header("content-type", "application/json")
                .body(body(CHAT_STREAM_BODY))
                .unwrap(),
        )
        .await
        .unwrap();
    let mut body = response.into_body();
    let first = tokio::time::timeout(Duration::from_secs(5), body.frame())
        .await
        .unwrap();
    assert!(first.is_some());
    drop(body);
    let cancelled = h
        .mock
        .wait_until(Duration::from_secs(5), |m| {
            m.abandoned_requests() == vec![0]
        })
        .await;
    assert!(cancelled, "the upstream request was not dropped");
    assert!(h.mock.chunk_send_times(0).len() < 50);
}

#[tokio::test]
async fn a_client_leaving_before_headers_cancels_the_upstream_request() {
    let h = Harness::start().await;
    h.mock.set_behaviour(Behaviour {
        delay_before_headers: Duration::from_secs(10),
        ..Behaviour::default()
    });
    let token = h.token(None, None).await;
    let client = h.client.clone();
    let request = Request::post(h.url("/v1/chat/completions"))
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(body(CHAT_BODY))
        .unwrap();
    let pending = tokio::spawn(async move { client.request(request).await });
    assert!(
        h.mock
            .wait_until(Duration::from_secs(5), |m| m.requests().len() == 1)
            .await
    );
    pending.abort();
    let cancelled = h
        .mock
        .wait_until(Duration::from_secs(5), |m| {
            m.abandoned_requests() == vec![0]
        })
        .await;
    assert!(cancelled, "the upstream request outlived its client");
}

#[tokio::test]
async fn upstream_errors_pass_through_and_transport_failures_are_502() {
    let h = Harness::start().await;
    let token = h.token(None, None).await;
    h.mock.set_behaviour(Behaviour {
        status: StatusCode::BAD_GATEWAY,
        error_body: Some(r#"{"error":{"message":"bad gateway upstream"}}"#.to_owned()),
        ..Behaviour::default()
    });
    let reply = h.chat(&token, CHAT_BODY).await;
    assert_eq!(reply.status, 502);
    assert_eq!(reply.json()["error"]["message"], "bad gateway upstream");

    let unreachable = Harness::with(Options {
        env: vec![(env::OPENAI_API_URL, "http://127.0.0.1:9".to_owned())],
        ..Options::default()
    })
    .await;
    let token = unreachable.token(None, None).await;
    let reply = unreachable.chat(&token, CHAT_BODY).await;
    reply.assert_error(502, "upstream_error");
    assert_eq!(reply.json()["error"], "Proxy error");
}

#[tokio::test]
async fn slow_upstream_headers_are_504() {
    let h = Harness::with(Options {
        env: vec![(env::REQUEST_TIMEOUT, "300ms".to_owned())],
        ..Options::default()
    })
    .await;
    h.mock.set_behaviour(Behaviour {
        delay_before_headers: Duration::from_secs(3),
        ..Behaviour::default()
    });
    let token = h.token(None, None).await;
    let started = Instant::now();
    h.chat(&token, CHAT_BODY).await.assert_error(504, "timeout");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn streams_outlive_the_request_timeout() {
    let h = Harness::with(Options {
        env: vec![(env::REQUEST_TIMEOUT, "1s".to_owned())],
        ..Options::default()
    })
    .await;
    h.mock.set_behaviour(Behaviour {
        stream_chunks: 8,
        chunk_interval: Duration::from_millis(300),
        ..Behaviour::default()
    });
    let token = h.token(None, None).await;
    let reply = h.chat(&token, CHAT_STREAM_BODY).await;
    assert_eq!(reply.status, 200);
    assert!(
        String::from_utf8_lossy(&reply.body).ends_with(SSE_DONE),
        "stream was cut"
    );
}

#[tokio::test]
async fn the_circuit_breaker_opens_after_five_failures_and_recovers() {
    let h = Harness::with(Options {
        breaker: BreakerPolicy::new(5, Duration::from_millis(500)),
        ..Options::default()
    })
    .await;
    let token = h.token(None, None).await;
    h.mock.set_behaviour(Behaviour {
        status: StatusCode::SERVICE_UNAVAILABLE,
        ..Behaviour::default()
    });
    for _ in 0..5 {
        assert_eq!(h.chat(&token, CHAT_BODY).await.status, 503);
    }
    let open = h.chat(&token, CHAT_BODY).await;
    open.assert_error(503, "circuit_open");
    assert_eq!(
        open.json()["error"],
        "Upstream unavailable (circuit breaker open)"
    );
    assert_eq!(
        h.mock.requests().len(),
        5,
        "an open breaker does not call the upstream"
    );
    h.mock.set_behaviour(Behaviour::default());
    tokio::time::sleep(Duration::from_millis(600)).await; // the breaker's cool-down is time-based by design
    assert_eq!(h.chat(&token, CHAT_BODY).await.status, 200);
}

#[tokio::test]
async fn one_projects_upstream_timeouts_open_only_its_own_breaker() {
    let h = Harness::with(Options {
        env: vec![(env::REQUEST_TIMEOUT, "200ms".into())],
        breaker: BreakerPolicy::new(5, Duration::from_secs(60)),
        ..Options::default()
    })
    .await;
    let a = h.token(None, None).await;
    let b = h.other_project_token().await;
    h.mock.set_behaviour(Behaviour {
        delay_before_headers: Duration::from_secs(5),
        ..Behaviour::default()
    });
    for _ in 0..5 {
        h.chat(&a, CHAT_BODY).await.assert_error(504, "timeout");
    }
    h.chat(&a, CHAT_BODY)
        .await
        .assert_error(503, "circuit_open");
    let reached = h.mock.requests().len();
    h.mock.set_behaviour(Behaviour::default());
    assert_eq!(
        h.chat(&b, CHAT_BODY).await.status,
        200,
        "project B is served"
    );
    assert_eq!(
        h.mock.requests().len(),
        reached + 1,
        "B reached the upstream"
    );
    h.chat(&a, CHAT_BODY)
        .await
        .assert_error(503, "circuit_open");
    let metrics = h
        .send(
            common::request(Method::GET, &h.url("/metrics/prometheus"))
                .body(empty())
                .unwrap(),
        )
        .await;
    let text = String::from_utf8(metrics.body.to_vec()).unwrap();
    assert!(text.contains("llm_proxy_circuit_breaker_open 1"), "{text}");
    assert!(
        text.contains(r#"llm_proxy_circuit_breaker_opens_total{route="/v1/chat/completions"} 1"#),
        "{text}"
    );
}

#[tokio::test]
async fn one_failing_model_opens_only_its_own_breaker() {
    let h = Harness::with(Options {
        breaker: BreakerPolicy::new(3, Duration::from_secs(60)),
        ..Options::default()
    })
    .await;
    let token = h.token(None, None).await;
    let mini = CHAT_BODY.replace("gpt-4o", "gpt-4o-mini");
    h.mock.set_behaviour(Behaviour {
        status: StatusCode::BAD_GATEWAY,
        ..Behaviour::default()
    });
    for _ in 0..3 {
        assert_eq!(h.chat(&token, CHAT_BODY).await.status, 502);
    }
    h.mock.set_behaviour(Behaviour::default());
    h.chat(&token, CHAT_BODY)
        .await
        .assert_error(503, "circuit_open");
    assert_eq!(
        h.chat(&token, &mini).await.status,
        200,
        "another model is served"
    );
    h.chat(&token, CHAT_BODY)
        .await
        .assert_error(503, "circuit_open");
}

#[tokio::test]
async fn cors_preflight_needs_no_token_and_never_reaches_the_upstream() {
    let h = Harness::start().await;
    let reply = h
        .send(
            common::request(Method::OPTIONS, &h.url("/v1/chat/completions"))
                .header("origin", "https://app.example.com")
                .header("access-control-request-method", "POST")
                .header(
                    "access-control-request-headers",
                    "authorization, content-type, x-custom",
                )
                .body(empty())
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, 204);
    assert_eq!(reply.headers["access-control-allow-origin"], "*");
    assert_eq!(
        reply.headers["access-control-allow-headers"],
        "authorization, content-type, x-custom"
    );
    assert_eq!(reply.headers["access-control-max-age"], "86400");
    assert!(
        reply.headers["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("POST")
    );
    let without_origin = h
        .send(
            common::request(Method::OPTIONS, &h.url("/v1/anything"))
                .body(empty())
                .unwrap(),
        )
        .await;
    assert_eq!(without_origin.status, 204);
    assert!(
        without_origin
            .headers
            .get("access-control-allow-origin")
            .is_none()
    );
    assert!(h.mock.requests().is_empty());
}

#[tokio::test]
async fn local_errors_carry_cors_headers_when_an_origin_is_present() {
    let h = Harness::start().await;
    let reply = h
        .send(
            Request::post(h.url("/v1/chat/completions"))
                .header("origin", "https://app.example.com")
                .body(body(CHAT_BODY))
                .unwrap(),
        )
        .await;
    reply.assert_error(401, "invalid_token");
    assert_eq!(
        reply.headers["access-control-allow-origin"],
        "https://app.example.com"
    );
    let exposed = reply.headers["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    for name in ["x-request-id", "retry-after", "x-ratelimit-reset-requests"] {
        assert!(
            exposed.split(", ").any(|exposed| exposed == name),
            "{name} not exposed: {exposed}"
        );
    }
}

const WHITELIST_YAML: &str = r#"
apis:
  openai:
    base_url: "{base_url}"
    allowed_endpoints: [/v1/chat/completions, /v1/models]
    allowed_methods: [GET, POST]
    param_whitelist:
      model: [gpt-4o, "gpt-4.1-*"]
    allowed_origins: [https://app.example.com]
    required_headers: [origin]
"#;

async fn post_with(
    h: &Harness,
    token: &str,
    content_type: &str,
    origin: Option<&str>,
    payload: &str,
) -> common::Reply {
    let mut builder = Request::post(h.url("/v1/chat/completions"))
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", content_type);
    if let Some(origin) = origin {
        builder = builder.header("origin", origin);
    }
    h.send(builder.body(body(payload)).unwrap()).await
}

#[tokio::test]
async fn the_param_whitelist_applies_to_posted_json() {
    let h = Harness::with(Options {
        providers_yaml: Some(WHITELIST_YAML.to_owned()),
        ..Options::default()
    })
    .await;
    let token = h.token(None, None).await;
    let origin = Some("https://app.example.com");
    for allowed in [
        r#"{"model":"gpt-4o"}"#,
        r#"{"model":"gpt-4.1-mini"}"#,
        r#"{"messages":[]}"#,
    ] {
        assert_eq!(
            post_with(&h, &token, "application/json", origin, allowed)
                .await
                .status,
            200,
            "{allowed}"
        );
    }
    let refused = post_with(
        &h,
        &token,
        "application/json",
        origin,
        r#"{"model":"gpt-3.5-turbo"}"#,
    )
    .await;
    refused.assert_error(400, "param_not_allowed");
    assert!(
        refused.json()["error"]
            .as_str()
            .unwrap()
            .contains("'model' value 'gpt-3.5-turbo'")
    );
    for sneaky in [
        r#"{"model":["gpt-4o"]}"#,
        r#"{"model":{"name":"gpt-4o"}}"#,
        r#"{"model":null}"#,
    ] {
        post_with(&h, &token, "application/json", origin, sneaky)
            .await
            .assert_error(400, "param_not_allowed");
    }
    post_with(
        &h,
        &token,
        "application/json; charset=utf-8",
        origin,
        r#"{"model":"evil"}"#,
    )
    .await
    .assert_error(400, "param_not_allowed");
    for not_object in ["[1,2]", "\"text\"", "{not json", ""] {
        post_with(&h, &token, "application/json", origin, not_object)
            .await
            .assert_error(400, "invalid_json");
    }
    assert_eq!(h.mock.requests().len(), 3);
}

#[tokio::test]
async fn origin_rules_are_enforced() {
    let h = Harness::with(Options {
        providers_yaml: Some(WHITELIST_YAML.to_owned()),
        ..Options::default()
    })
    .await;
    let token = h.token(None, None).await;
    post_with(&h, &token, "application/json", None, CHAT_BODY)
        .await
        .assert_error(400, "origin_required");
    let wrong = post_with(
        &h,
        &token,
        "application/json",
        Some("https://evil.example.com"),
        CHAT_BODY,
    )
    .await;
    wrong.assert_error(403, "origin_not_allowed");
    assert_eq!(
        post_with(
            &h,
            &token,
            "application/json",
            Some("https://app.example.com"),
            CHAT_BODY
        )
        .await
        .status,
        200
    );
    let method = h
        .send(
            common::request(Method::DELETE, &h.url("/v1/models/x"))
                .header("origin", "https://app.example.com")
                .body(empty())
                .unwrap(),
        )
        .await;
    method.assert_error(405, "method_not_allowed");
    assert_eq!(method.headers["allow"], "GET, POST");
}

#[tokio::test]
async fn health_and_metrics_routes_answer_405_as_json_with_allow() {
    let h = Harness::start().await;
    for path in [
        "/health",
        "/live",
        "/ready",
        "/metrics",
        "/metrics/prometheus",
    ] {
        let reply = h
            .send(
                common::request(Method::POST, &h.url(path))
                    .body(empty())
                    .unwrap(),
            )
            .await;
        reply.assert_error(405, "method_not_allowed");
        assert_eq!(reply.headers["allow"], "GET,HEAD", "{path}");
    }
}

#[tokio::test]
async fn bad_input_gets_clean_client_errors() {
    let h = Harness::with(Options {
        env: vec![(env::MAX_REQUEST_SIZE, "1KiB".to_owned())],
        ..Options::default()
    })
    .await;
    let token = h.token(None, None).await;
    let huge = format!(r#"{{"model":"gpt-4o","pad":"{}"}}"#, "x".repeat(4096));
    h.chat(&token, &huge)
        .await
        .assert_error(413, "request_too_large");
    // Without Content-Length (chunked upload) the limit still applies while reading.
    let chunks =
        futures::stream::iter((0..8).map(|_| {
            Ok::<_, std::io::Error>(http_body::Frame::data(Bytes::from(vec![b'a'; 512])))
        }));
    let streamed = http_body_util::StreamBody::new(chunks);
    let raw = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::StreamBody<_>>();
    let response = raw
        .request(
            Request::post(h.url("/v1/chat/completions"))
                .header("authorization", format!("Bearer {token}"))
                .body(streamed)
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 413);

    let malformed = h.chat(&token, "{\"model\": ").await;
    assert_eq!(
        malformed.status, 400,
        "the upstream's own 400 passes through"
    );
    let bad_utf8 = h
        .send(
            Request::post(h.url("/v1/chat/completions"))
                .header("authorization", format!("Bearer {token}"))
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from_static(b"{\"model\":\"\xff\xfe\"}")))
                .unwrap(),
        )
        .await;
    assert_eq!(bad_utf8.status, 400);
    let wrong_type = h
        .send(
            Request::post(h.url("/v1/chat/completions"))
                .header("authorization", format!("Bearer {token}"))
                .header("content-type", "text/plain")
                .body(body("hello"))
                .unwrap(),
        )
        .await;
    assert!(wrong_type.status.is_client_error(), "{}", wrong_type.status);

    for trick in [
        "/v1/../manage/projects",
        "/v1/chat/../../manage/projects",
        "/v1/%2e%2e/manage/projects",
        "/v1/%2E%2E/%2E%2E/manage",
        "/v1/models%2F..%2F..%2Fmanage",
        "/v1//manage/projects",
        "/v1/./models",
    ] {
        let reply = h
            .send(
                common::request(Method::GET, &h.url(trick))
                    .header("authorization", format!("Bearer {token}"))
                    .header(
                        "authorization",
                        format!("Bearer {}", common::MANAGEMENT_TOKEN),
                    )
                    .body(empty())
                    .unwrap(),
            )
            .await;
        reply.assert_error(400, "invalid_path");
    }
    for unknown in ["/", "/v2/models", "/v1", "/v1/", "/admin", "/manage-x"] {
        let reply = h
            .send(
                common::request(Method::GET, &h.url(unknown))
                    .body(empty())
                    .unwrap(),
            )
            .await;
        reply.assert_error(404, "not_found");
    }
    let endpoint = h
        .send(
            common::request(Method::GET, &h.url("/v1/threads"))
                .header("authorization", format!("Bearer {token}"))
                .body(empty())
                .unwrap(),
        )
        .await;
    endpoint.assert_error(404, "endpoint_not_found");
    let method = h
        .send(
            common::request(Method::PATCH, &h.url("/v1/models"))
                .body(empty())
                .unwrap(),
        )
        .await;
    method.assert_error(405, "method_not_allowed");
    let upstream_paths: Vec<String> = h
        .mock
        .requests()
        .iter()
        .map(|r| r.path_and_query.clone())
        .collect();
    assert!(
        upstream_paths.iter().all(|p| p == "/v1/chat/completions"),
        "{upstream_paths:?}"
    );
}

#[tokio::test]
async fn concurrent_requests_beyond_the_limit_get_503() {
    let h = Harness::with(Options {
        env: vec![(env::MAX_CONCURRENT_REQUESTS, "1".to_owned())],
        ..Options::default()
    })
    .await;
    h.mock.set_behaviour(Behaviour {
        delay_before_headers: Duration::from_millis(800),
        ..Behaviour::default()
    });
    let token = h.token(None, None).await;
    let client = h.client.clone();
    let first = Request::post(h.url("/v1/chat/completions"))
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(body(CHAT_BODY))
        .unwrap();
    let slow = tokio::spawn(async move { common::send(&client, first).await.status });
    assert!(
        h.mock
            .wait_until(Duration::from_secs(5), |m| m.requests().len() == 1)
            .await
    );
    h.chat(&token, CHAT_BODY)
        .await
        .assert_error(503, "too_many_concurrent_requests");
    assert_eq!(slow.await.unwrap(), 200);
    assert_eq!(
        h.chat(&token, CHAT_BODY).await.status,
        200,
        "the permit is released with the response"
    );
}

#[tokio::test]
async fn health_ready_live_and_metrics() {
    let h = Harness::start().await;
    let health = h
        .send(
            common::request(Method::GET, &h.url("/health"))
                .body(empty())
                .unwrap(),
        )
        .await;
    assert_eq!(health.status, 200);
    assert_eq!(health.json()["status"], "ok");
    assert!(health.json()["version"].is_string() && health.json()["timestamp"].is_string());
    let live = h
        .send(
            common::request(Method::GET, &h.url("/live"))
                .body(empty())
                .unwrap(),
        )
        .await;
    assert_eq!(live.status, 200);
    let ready = h
        .send(
            common::request(Method::GET, &h.url("/ready"))
                .body(empty())
                .unwrap(),
        )
        .await;
    assert_eq!(ready.status, 200);
    assert_eq!(ready.json()["checks"]["database"], "ok");
    assert_eq!(ready.json()["checks"]["event_bus"], "ok");

    let token = h.token(None, None).await;
    assert_eq!(h.chat(&token, CHAT_BODY).await.status, 200);
    h.chat("sk-bad", CHAT_BODY)
        .await
        .assert_error(401, "invalid_token");
    let summary = h
        .send(
            common::request(Method::GET, &h.url("/metrics"))
                .body(empty())
                .unwrap(),
        )
        .await;
    let json = summary.json();
    assert_eq!(json["request_count"], 2);
    assert_eq!(json["error_count"], 1);
    for key in [
        "uptime_seconds",
        "cache_hits",
        "cache_misses",
        "cache_bypass",
        "cache_stores",
    ] {
        assert!(json.get(key).is_some(), "{key} missing");
    }
    let text = h
        .send(
            common::request(Method::GET, &h.url("/metrics/prometheus"))
                .body(empty())
                .unwrap(),
        )
        .await;
    assert!(
        text.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = String::from_utf8(text.body.to_vec()).unwrap();
    for metric in [
        "llm_proxy_http_requests_total{method=\"POST\",route=\"/v1/chat/completions\",status_class=\"2xx\"} 1",
        "llm_proxy_token_rejections_total{reason=\"invalid_token\"} 1",
        "llm_proxy_proxy_errors_total{code=\"invalid_token\"} 1",
        "llm_proxy_circuit_breaker_open 0",
        "llm_proxy_in_flight_requests",
        "llm_proxy_upstream_duration_seconds_count 1",
        "llm_proxy_usage_updates_dropped_total 0",
    ] {
        assert!(text.contains(metric), "{metric} missing in\n{text}");
    }
}

#[tokio::test]
async fn metrics_can_be_switched_off() {
    let h = Harness::with(Options {
        env: vec![(env::ENABLE_METRICS, "false".to_owned())],
        ..Options::default()
    })
    .await;
    let reply = h
        .send(
            common::request(Method::GET, &h.url("/metrics"))
                .body(empty())
                .unwrap(),
        )
        .await;
    reply.assert_error(404, "not_found");
}

#[tokio::test]
async fn each_exchange_publishes_an_instrumentation_event() {
    let h = Harness::start().await;
    let mut events = h.events.subscribe().unwrap();
    let token = h.token(None, None).await;
    let reply = h.chat(&token, CHAT_BODY).await;
    assert_eq!(reply.status, 200);
    let event = tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        event.request_id,
        reply.headers["x-request-id"].to_str().unwrap()
    );
    assert_eq!(
        (event.method.as_str(), event.path.as_str(), event.status),
        ("POST", "/v1/chat/completions", 200)
    );
    assert_eq!(event.request_body, CHAT_BODY.as_bytes());
    assert_eq!(
        event.response_body,
        llm_proxy_mocks::openai::chat_completion().as_bytes()
    );
    assert_eq!(event.project_id.as_deref(), Some(h.project.id.as_str()));
    assert!(event.token_id.is_some());
    assert!(!event.streaming && !event.client_aborted && !event.truncated);
    assert!(event.duration > Duration::ZERO);

    h.chat("sk-bad", CHAT_BODY)
        .await
        .assert_error(401, "invalid_token");
    let refused = tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(refused.status, 401);
    assert!(refused.project_id.is_none());
}

#[tokio::test]
async fn an_aborted_stream_publishes_what_was_seen() {
    let h = Harness::start().await;
    let mut events = h.events.subscribe().unwrap();
    h.mock.set_behaviour(Behaviour {
        stream_chunks: 50,
        chunk_interval: Duration::from_millis(100),
        ..Behaviour::default()
    });
    let token = h.token(None, None).await;
    let response = h
        .client
        .request(
            Request::post(h.url("/v1/chat/completions"))
                .header("authorization", format!("Bearer {token}"))
                .header("content-type", "application/json")
                .body(body(CHAT_STREAM_BODY))
                .unwrap(),
        )
        .await
        .unwrap();
    let mut stream = response.into_body();
    let first = tokio::time::timeout(Duration::from_secs(5), stream.frame())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let first = first.into_data().unwrap();
    drop(stream);
    let event = tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(event.streaming && event.client_aborted);
    assert!(
        event.response_body.starts_with(&first),
        "the captured body holds what was seen"
    );
    assert!(event.response_body.len() < 50 * first.len());
}

#[tokio::test]
async fn a_stream_that_stalls_longer_than_the_request_timeout_is_ended() {
    let h = Harness::with(Options {
        env: vec![(env::REQUEST_TIMEOUT, "300ms".to_owned())],
        ..Options::default()
    })
    .await;
    h.mock.set_behaviour(Behaviour {
        stream_chunks: 3,
        chunk_interval: Duration::from_secs(3),
        ..Behaviour::default()
    });
    let token = h.token(None, None).await;
    let response = h
        .client
        .request(
            Request::post(h.url("/v1/chat/completions"))
                .header("authorization", format!("Bearer {token}"))
                .header("content-type", "application/json")
                .body(body(CHAT_STREAM_BODY))
                .unwrap(),
        )
        .await
        .unwrap();
    let started = Instant::now();
    let collected = tokio::time::timeout(Duration::from_secs(5), response.into_body().collect())
        .await
        .unwrap();
    assert!(
        collected.is_err(),
        "a stalled stream ends with an error, not a clean end"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(
        h.mock
            .wait_until(Duration::from_secs(5), |m| m.abandoned_requests()
                == vec![0])
            .await
    );
}

#[tokio::test]
async fn the_breaker_gauge_follows_the_cool_down() {
    let h = Harness::with(Options {
        breaker: BreakerPolicy::new(1, Duration::from_millis(300)),
        ..Options::default()
    })
    .await;
    let token = h.token(None, None).await;
    h.mock.set_behaviour(Behaviour {
        status: StatusCode::BAD_GATEWAY,
        ..Behaviour::default()
    });
    assert_eq!(h.chat(&token, CHAT_BODY).await.status, 502);
    let scrape = || async {
        let reply = h
            .send(
                common::request(Method::GET, &h.url("/metrics/prometheus"))
                    .body(empty())
                    .unwrap(),
            )
            .await;
        String::from_utf8(reply.body.to_vec()).unwrap()
    };
    assert!(scrape().await.contains("llm_proxy_circuit_breaker_open 1"));
    tokio::time::sleep(Duration::from_millis(400)).await; // the cool-down is time-based by design
    assert!(scrape().await.contains("llm_proxy_circuit_breaker_open 0"));
}

#[tokio::test]
async fn http2_clients_with_prior_knowledge_are_served() {
    // The server tells HTTP/2 from HTTP/1.1 by the connection's first bytes (h2c, no TLS).
    let h = Harness::start().await;
    let token = h.token(None, None).await;
    let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
    connector.set_nodelay(true);
    let h2 = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build(connector);
    let chat = Request::post(h.url("/v1/chat/completions"))
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(CHAT_BODY.as_bytes())))
        .unwrap();
    let reply = common::send(&h2, chat).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert!(reply.headers.contains_key("x-request-id"));
    assert_eq!(reply.json()["object"], "chat.completion");
    let health = Request::get(h.url("/health"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(common::send(&h2, health).await.status, StatusCode::OK);
}

/// On SQLite an expired project entry keeps serving while one background load refreshes it, so a
/// project used after an idle spell does not wait for the database; an edit of the database behind
/// the proxy's back (not through `/manage`) shows once that load is done.
#[tokio::test]
async fn on_sqlite_an_expired_project_entry_serves_while_it_reloads() {
    let (h, token) = Harness::with_project_deactivated_behind_its_back("1ms", None).await;
    // Lets the 1 ms TTL run out (time passing, not synchronisation: nothing is waited for).
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(
        h.chat(&token, CHAT_BODY).await.status,
        200,
        "the expired entry serves this request and starts the reload"
    );
    let mut refused = None;
    for _ in 0..500 {
        let reply = h.chat(&token, CHAT_BODY).await;
        if reply.status != 200 {
            refused = Some(reply);
            break;
        }
    }
    refused
        .expect("the background reload applies the deactivation")
        .assert_error(403, "project_inactive");
}

/// A zero project-active TTL keeps every lookup on the store, also on SQLite: an edit behind the
/// proxy's back applies to the very next request.
#[tokio::test]
async fn a_zero_project_ttl_checks_the_store_on_every_request() {
    let (h, token) = Harness::with_project_deactivated_behind_its_back("0", None).await;
    h.chat(&token, CHAT_BODY)
        .await
        .assert_error(403, "project_inactive");
}
