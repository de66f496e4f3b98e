//! The HTTP response cache through HTTP: hits, misses, storing rules, per-project isolation, quota,
//! POST opt-in, TTL expiry, SSE replay, conditionals, purge, and the Redis backend (real Redis from
//! `LLM_PROXY_TEST_REDIS_URL`, provided by `scripts/test-services.sh`; those tests fail, never skip,
//! when it is unset), including an unreachable Redis and two proxies sharing one.

// Test helpers outside #[test] functions fail loudly on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{CHAT_BODY, CHAT_STREAM_BODY, Harness, Options, Reply};
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use llm_proxy_env as env;
use llm_proxy_mocks::openai::{Behaviour, SSE_DONE, sse_chunk};

const DEADLINE: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(20);

fn redis_url() -> String {
    std::env::var("LLM_PROXY_TEST_REDIS_URL")
        .expect("LLM_PROXY_TEST_REDIS_URL must be set: run through scripts/test-services.sh")
}

/// Options of a harness whose cache uses the test Redis under a key prefix of its own.
fn redis_options(prefix: &str) -> Options {
    Options {
        env: vec![
            (env::HTTP_CACHE_BACKEND, "redis".into()),
            (env::REDIS_CACHE_URL, redis_url()),
            (env::REDIS_CACHE_KEY_PREFIX, prefix.into()),
        ],
        ..Options::default()
    }
}

fn unique_prefix() -> String {
    format!("llm-proxy-test:{}:", uuid::Uuid::new_v4().simple())
}

/// Makes the mock answer with these extra headers.
fn answer_with(h: &Harness, headers: &[(&str, &str)]) {
    h.mock.set_behaviour(Behaviour {
        response_headers: headers
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect(),
        ..Behaviour::default()
    });
}

async fn call(
    h: &Harness,
    method: Method,
    path: &str,
    token: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Reply {
    let mut builder = Request::builder()
        .method(method)
        .uri(h.url(path))
        .header("authorization", format!("Bearer {token}"));
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    h.send(
        builder
            .body(Full::new(Bytes::from(body.to_owned())))
            .unwrap(),
    )
    .await
}

async fn get(h: &Harness, token: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    call(h, Method::GET, path, token, headers, "").await
}

fn cache_status(reply: &Reply) -> &str {
    reply
        .headers
        .get("cache-status")
        .map_or("", |v| v.to_str().unwrap())
}

/// Repeats `request` until its `Cache-Status` starts with `status` (stores to Redis are not
/// awaited by the request) or the deadline passes.
async fn until_status<F, Fut>(status: &str, mut request: F) -> Reply
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Reply>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let reply = request().await;
        if cache_status(&reply).starts_with(status) || tokio::time::Instant::now() > deadline {
            return reply;
        }
        tokio::time::sleep(POLL).await;
    }
}

const WITH_HEAD_YAML: &str = r#"
apis:
  openai:
    base_url: "{base_url}"
    allowed_endpoints: [/v1/chat/completions, /v1/models]
    allowed_methods: [GET, HEAD, POST]
"#;

#[tokio::test]
async fn public_responses_are_served_from_memory_without_the_upstream() {
    let h = Harness::with(Options {
        providers_yaml: Some(WITH_HEAD_YAML.to_owned()),
        ..Options::default()
    })
    .await;
    answer_with(
        &h,
        &[
            ("cache-control", "public, max-age=60"),
            ("set-cookie", "session=abc"),
            ("etag", "\"v1\""),
        ],
    );
    let token = h.token(None, None).await;
    let first = get(&h, &token, "/v1/models?b=2&a=1", &[]).await;
    assert_eq!(first.status, 200);
    assert_eq!(cache_status(&first), "llm-proxy; stored; ttl=60");
    assert_eq!(first.headers["x-proxy-cache"], "stored");
    let key = first.headers["x-proxy-cache-key"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(!key.contains(&token) && !key.contains(common::PROVIDER_KEY));

    // Query order does not matter.
    let hit = get(&h, &token, "/v1/models?a=1&b=2", &[]).await;
    assert_eq!(hit.status, 200);
    assert!(
        cache_status(&hit).starts_with("llm-proxy; hit; ttl="),
        "{:?}",
        hit.headers
    );
    assert_eq!(hit.headers["x-proxy-cache"], "hit");
    assert_eq!(hit.headers["x-proxy-cache-key"], key.as_str());
    assert_eq!(hit.body, first.body);
    assert_eq!(hit.headers["content-type"], "application/json");
    assert!(hit.headers.get("set-cookie").is_none());
    assert!(hit.headers.contains_key("date") && hit.headers.contains_key("age"));
    assert!(
        hit.headers.contains_key("x-request-id") && hit.headers.contains_key("x-proxy-received-at")
    );
    assert_ne!(hit.headers["x-request-id"], first.headers["x-request-id"]);
    assert_eq!(h.mock.requests().len(), 1);

    // HEAD is its own resource; its hit has no body.
    let head = call(&h, Method::HEAD, "/v1/models", &token, &[], "").await;
    assert_eq!(cache_status(&head), "llm-proxy; stored; ttl=60");
    let head_hit = call(&h, Method::HEAD, "/v1/models", &token, &[], "").await;
    assert!(cache_status(&head_hit).starts_with("llm-proxy; hit"));
    assert!(head_hit.body.is_empty());

    // A matching conditional gets 304 from the cache.
    let conditional = get(
        &h,
        &token,
        "/v1/models?a=1&b=2",
        &[("if-none-match", "\"v1\"")],
    )
    .await;
    assert_eq!(conditional.status, 304);
    assert!(cache_status(&conditional).starts_with("llm-proxy; conditional-hit"));
    assert_eq!(conditional.headers["etag"], "\"v1\"");
    assert!(conditional.body.is_empty());
    let other = get(
        &h,
        &token,
        "/v1/models?a=1&b=2",
        &[("if-none-match", "\"v0\"")],
    )
    .await;
    assert_eq!(other.status, 200);
    assert_eq!(h.mock.requests().len(), 2);

    let summary = get(&h, &token, "/metrics", &[]).await.json();
    assert_eq!(summary["cache_hits"], 4);
    assert_eq!(summary["cache_stores"], 2);
}

#[tokio::test]
async fn the_accept_headers_select_variants_and_client_no_cache_revalidates() {
    let h = Harness::start().await;
    answer_with(
        &h,
        &[("cache-control", "public, max-age=60"), ("vary", "Accept")],
    );
    let token = h.token(None, None).await;
    let json = [("accept", "application/json")];
    let text = [("accept", "text/plain")];
    assert_eq!(
        cache_status(&get(&h, &token, "/v1/models", &json).await),
        "llm-proxy; stored; ttl=60"
    );
    assert_eq!(
        cache_status(&get(&h, &token, "/v1/models", &text).await),
        "llm-proxy; stored; ttl=60"
    );
    assert!(
        cache_status(&get(&h, &token, "/v1/models", &json).await).starts_with("llm-proxy; hit")
    );
    assert_eq!(h.mock.requests().len(), 2);
    // Other request headers do not split entries.
    let other = get(
        &h,
        &token,
        "/v1/models",
        &[("accept", "text/plain"), ("x-other", "1")],
    )
    .await;
    assert!(cache_status(&other).starts_with("llm-proxy; hit"));

    for revalidate in ["no-cache", "max-age=0"] {
        let fresh = get(
            &h,
            &token,
            "/v1/models",
            &[("accept", "text/plain"), ("cache-control", revalidate)],
        )
        .await;
        assert_eq!(
            cache_status(&fresh),
            "llm-proxy; stored; ttl=60",
            "{revalidate}"
        );
    }
    assert_eq!(h.mock.requests().len(), 4);
    let no_store = get(&h, &token, "/v1/models", &[("cache-control", "no-store")]).await;
    assert_eq!(cache_status(&no_store), "llm-proxy; bypass");
    assert_eq!(no_store.headers["x-proxy-cache"], "bypass");
}

#[tokio::test]
async fn responses_that_forbid_or_do_not_allow_shared_caching_are_not_stored() {
    let h = Harness::start().await;
    let token = h.token(None, None).await;
    for (headers, path) in [
        (
            vec![("cache-control", "no-store, public, max-age=60")],
            "/v1/models?case=no-store",
        ),
        (
            vec![("cache-control", "private, max-age=60")],
            "/v1/models?case=private",
        ),
        (
            vec![("cache-control", "max-age=60")],
            "/v1/models?case=not-public",
        ),
        (vec![], "/v1/models?case=none"),
        (
            vec![("cache-control", "public, max-age=60"), ("vary", "Origin")],
            "/v1/models?case=vary",
        ),
        (
            vec![("cache-control", "public, max-age=60"), ("vary", "*")],
            "/v1/models?case=vary-star",
        ),
    ] {
        answer_with(&h, &headers);
        let before = h.mock.requests().len();
        for _ in 0..2 {
            let reply = get(&h, &token, path, &[]).await;
            assert_eq!(reply.status, 200);
            assert_eq!(cache_status(&reply), "llm-proxy; miss", "{path}");
            assert!(reply.headers.get("x-proxy-cache").is_none(), "{path}");
        }
        assert_eq!(h.mock.requests().len(), before + 2, "{path}");
    }
    // Error statuses are not stored either.
    h.mock.set_behaviour(Behaviour {
        status: http::StatusCode::INTERNAL_SERVER_ERROR,
        response_headers: vec![("cache-control".into(), "public, max-age=60".into())],
        ..Behaviour::default()
    });
    for _ in 0..2 {
        assert_eq!(
            cache_status(&get(&h, &token, "/v1/models?case=500", &[]).await),
            "llm-proxy; miss"
        );
    }
}

#[tokio::test]
async fn projects_never_share_entries() {
    let h = Harness::start().await;
    answer_with(&h, &[("cache-control", "public, max-age=60")]);
    let token = h.token(None, None).await;
    let created = h
        .manage(
            Method::POST,
            "/manage/projects",
            Some(&format!(
                r#"{{"name":"other","api_key":"{}"}}"#,
                common::PROVIDER_KEY
            )),
        )
        .await;
    let other_project = created.json()["id"].as_str().unwrap().to_owned();
    let other_token = common::issue_token(h.store.as_ref(), &other_project, None, None).await;
    let mine = get(&h, &token, "/v1/models", &[]).await;
    let theirs = get(&h, &other_token, "/v1/models", &[]).await;
    assert_eq!(cache_status(&mine), "llm-proxy; stored; ttl=60");
    assert_eq!(cache_status(&theirs), "llm-proxy; stored; ttl=60");
    assert_eq!(h.mock.requests().len(), 2);
    assert!(
        cache_status(&get(&h, &other_token, "/v1/models", &[]).await).starts_with("llm-proxy; hit")
    );
    // A bad token never reaches the cache.
    get(&h, "sk-bad", "/v1/models", &[])
        .await
        .assert_error(401, "invalid_token");
}

#[tokio::test]
async fn hits_are_not_counted_against_the_quota_but_recorded_as_cache_hits() {
    let h = Harness::start().await;
    let mut events = h.events.subscribe().unwrap();
    answer_with(&h, &[("cache-control", "public, max-age=60")]);
    let token = h.token(Some(2), None).await;
    assert_eq!(get(&h, &token, "/v1/models", &[]).await.status, 200);
    for _ in 0..4 {
        let hit = get(&h, &token, "/v1/models", &[]).await;
        assert_eq!(hit.status, 200);
        assert!(cache_status(&hit).starts_with("llm-proxy; hit"));
    }
    assert_eq!(h.mock.requests().len(), 1);

    let mut statuses = Vec::new();
    while statuses.len() < 5 {
        let event = tokio::time::timeout(DEADLINE, events.recv())
            .await
            .unwrap()
            .unwrap();
        statuses.push(event.cache_status.clone());
    }
    assert_eq!(statuses[0].as_deref(), Some("stored"));
    assert!(
        statuses[1..].iter().all(|s| s.as_deref() == Some("hit")),
        "{statuses:?}"
    );

    let hash = llm_proxy_store::hash_token(&token);
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let record = loop {
        let record = h.store.token_by_hash(&hash).await.unwrap().unwrap();
        if record.cache_hit_count == 4 || tokio::time::Instant::now() > deadline {
            break record;
        }
        tokio::time::sleep(POLL).await;
    };
    assert_eq!(record.cache_hit_count, 4);
    assert_eq!(record.request_count, 1);

    // An exhausted token gets no hits either.
    let exhausted = h.token(Some(1), None).await;
    assert_eq!(get(&h, &exhausted, "/v1/models?x=1", &[]).await.status, 200);
    get(&h, &exhausted, "/v1/models?x=1", &[])
        .await
        .assert_error(429, "rate_limit_exceeded");
}

#[tokio::test]
async fn post_is_cached_only_with_the_clients_opt_in() {
    let h = Harness::start().await;
    let token = h.token(None, None).await;
    let json = ("content-type", "application/json");
    let opt_in = [json, ("cache-control", "public, max-age=60")];
    let path = "/v1/chat/completions";
    for _ in 0..2 {
        let plain = call(&h, Method::POST, path, &token, &[json], CHAT_BODY).await;
        assert!(plain.headers.get("cache-status").is_none());
    }
    let stored = call(&h, Method::POST, path, &token, &opt_in, CHAT_BODY).await;
    assert_eq!(cache_status(&stored), "llm-proxy; stored (forced); ttl=60");
    assert_eq!(stored.headers["x-proxy-cache"], "stored");
    let hit = call(&h, Method::POST, path, &token, &opt_in, CHAT_BODY).await;
    assert!(cache_status(&hit).starts_with("llm-proxy; hit"));
    assert_eq!(hit.headers["cache-control"], "public, max-age=60");
    assert_eq!(hit.body, stored.body);
    let other_body = CHAT_BODY.replace("hi", "hello");
    let miss = call(&h, Method::POST, path, &token, &opt_in, &other_body).await;
    assert_eq!(cache_status(&miss), "llm-proxy; stored (forced); ttl=60");
    assert_eq!(h.mock.requests().len(), 4);

    // A response that forbids storing wins over the opt-in.
    answer_with(&h, &[("cache-control", "no-store")]);
    let body = CHAT_BODY.replace("hi", "no-store");
    for _ in 0..2 {
        let reply = call(&h, Method::POST, path, &token, &opt_in, &body).await;
        assert_eq!(cache_status(&reply), "llm-proxy; miss");
    }
}

#[tokio::test]
async fn a_post_body_over_the_object_limit_is_not_cached() {
    let h = Harness::with(Options {
        env: vec![(env::HTTP_CACHE_MAX_OBJECT_BYTES, "16".into())],
        ..Options::default()
    })
    .await;
    let token = h.token(None, None).await;
    let headers = [
        ("content-type", "application/json"),
        ("cache-control", "public, max-age=60"),
    ];
    let reply = call(
        &h,
        Method::POST,
        "/v1/chat/completions",
        &token,
        &headers,
        CHAT_BODY,
    )
    .await;
    assert_eq!(reply.status, 200);
    assert!(reply.headers.get("cache-status").is_none());
    // The response (about 1.4 KB) is over the limit too.
    answer_with(&h, &[("cache-control", "public, max-age=60")]);
    for _ in 0..2 {
        assert_eq!(
            cache_status(&get(&h, &token, "/v1/models", &[]).await),
            "llm-proxy; miss"
        );
    }
}

#[tokio::test]
async fn entries_expire_after_their_ttl() {
    let h = Harness::start().await;
    // Two seconds leave a loaded machine time for the immediate hit.
    answer_with(&h, &[("cache-control", "public, max-age=2")]);
    let token = h.token(None, None).await;
    let stored = get(&h, &token, "/v1/models", &[]).await;
    assert_eq!(cache_status(&stored), "llm-proxy; stored; ttl=2");
    let hit = get(&h, &token, "/v1/models", &[]).await;
    assert!(cache_status(&hit).starts_with("llm-proxy; hit"));
    let expired = until_status("llm-proxy; stored", || get(&h, &token, "/v1/models", &[])).await;
    assert_eq!(cache_status(&expired), "llm-proxy; stored; ttl=2");
    assert_eq!(h.mock.requests().len(), 2);
}

#[tokio::test]
async fn default_ttl_applies_to_public_responses_without_max_age() {
    let h = Harness::with(Options {
        env: vec![(env::HTTP_CACHE_DEFAULT_TTL, "42s".into())],
        ..Options::default()
    })
    .await;
    answer_with(&h, &[("cache-control", "public")]);
    let token = h.token(None, None).await;
    assert_eq!(
        cache_status(&get(&h, &token, "/v1/models", &[]).await),
        "llm-proxy; stored; ttl=42"
    );
}

/// Starts a streamed chat completion with the client's extra `headers`; the body is left unread.
async fn stream_request(
    h: &Harness,
    token: &str,
    headers: &[(&str, &str)],
) -> http::Response<hyper::body::Incoming> {
    let mut builder = Request::post(h.url("/v1/chat/completions"))
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json");
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let request = builder
        .body(Full::new(Bytes::from(CHAT_STREAM_BODY)))
        .unwrap();
    h.client.request(request).await.unwrap()
}

/// Reads a streamed response body frame by frame.
async fn frames(
    h: &Harness,
    token: &str,
    headers: &[(&str, &str)],
) -> (http::HeaderMap, Vec<Bytes>) {
    let (parts, mut body) = stream_request(h, token, headers).await.into_parts();
    let mut frames = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            frames.push(data);
        }
    }
    (parts.headers, frames)
}

#[tokio::test]
async fn cached_streams_replay_frame_by_frame_and_broken_streams_are_not_stored() {
    let h = Harness::with(Options {
        env: vec![(env::HTTP_CACHE_STREAM_RESPONSES, "true".into())],
        ..Options::default()
    })
    .await;
    let token = h.token(None, None).await;
    let opt_in = [("cache-control", "public, max-age=60")];
    h.mock.set_behaviour(Behaviour {
        stream_chunks: 3,
        chunk_interval: Duration::from_millis(1),
        ..Behaviour::default()
    });
    let (headers, _) = frames(&h, &token, &opt_in).await;
    assert_eq!(
        headers["cache-status"],
        "llm-proxy; stored (forced); ttl=60"
    );
    let (headers, replay) = frames(&h, &token, &opt_in).await;
    assert!(
        headers["cache-status"]
            .to_str()
            .unwrap()
            .starts_with("llm-proxy; hit")
    );
    assert_eq!(headers["content-type"], "text/event-stream");
    let expected: Vec<Bytes> = (0..3)
        .map(|n| Bytes::from(sse_chunk(n)))
        .chain([Bytes::from_static(SSE_DONE.as_bytes())])
        .collect();
    assert_eq!(replay, expected);
    assert_eq!(h.mock.requests().len(), 1);

    // An upstream that dies mid-stream: nothing is stored.
    h.mock.set_behaviour(Behaviour {
        stream_chunks: 3,
        die_after_chunks: Some(2),
        ..Behaviour::default()
    });
    let dying = [("cache-control", "public, max-age=61")];
    for _ in 0..2 {
        let response = stream_request(&h, &token, &dying).await;
        assert_eq!(
            response.headers()["cache-status"],
            "llm-proxy; stored (forced); ttl=61"
        );
        assert!(response.into_body().collect().await.is_err());
    }
    assert_eq!(h.mock.requests().len(), 3);

    // A client that leaves early: nothing is stored.
    h.mock.set_behaviour(Behaviour {
        stream_chunks: 50,
        chunk_interval: Duration::from_millis(20),
        ..Behaviour::default()
    });
    let leaving = [("cache-control", "public, max-age=62")];
    let response = stream_request(&h, &token, &leaving).await;
    let mut body = response.into_body();
    body.frame().await.unwrap().unwrap();
    drop(body);
    assert!(
        h.mock
            .wait_until(DEADLINE, |m| m.abandoned_requests().contains(&3))
            .await
    );
    h.mock.set_behaviour(Behaviour {
        stream_chunks: 1,
        ..Behaviour::default()
    });
    let (headers, _) = frames(&h, &token, &leaving).await;
    assert_eq!(
        headers["cache-status"],
        "llm-proxy; stored (forced); ttl=62"
    );
}

#[tokio::test]
async fn streams_are_not_cached_unless_enabled() {
    let h = Harness::start().await;
    let token = h.token(None, None).await;
    let opt_in = [("cache-control", "public, max-age=60")];
    for _ in 0..2 {
        let (headers, _) = frames(&h, &token, &opt_in).await;
        assert_eq!(headers["cache-status"], "llm-proxy; miss");
    }
}

async fn purge(h: &Harness, body: &str) -> Reply {
    h.manage(Method::POST, "/manage/cache/purge", Some(body))
        .await
}

#[tokio::test]
async fn purge_removes_every_variant_of_a_url_or_a_key_prefix() {
    let h = Harness::start().await;
    answer_with(&h, &[("cache-control", "public, max-age=60")]);
    let token = h.token(None, None).await;
    for accept in ["application/json", "text/plain"] {
        get(&h, &token, "/v1/models?a=1", &[("accept", accept)]).await;
    }
    let kept = get(&h, &token, "/v1/files", &[]).await;
    assert_eq!(h.mock.requests().len(), 3);

    let exact = purge(
        &h,
        r#"{"method":"GET","url":"https://api.openai.com/v1/models?a=1"}"#,
    )
    .await;
    assert_eq!(exact.status, 200, "{:?}", exact.body);
    assert_eq!(exact.json(), serde_json::json!({"deleted": 2}));
    assert_eq!(
        cache_status(&get(&h, &token, "/v1/models?a=1", &[("accept", "text/plain")]).await),
        "llm-proxy; stored; ttl=60"
    );
    assert!(cache_status(&get(&h, &token, "/v1/files", &[]).await).starts_with("llm-proxy; hit"));

    let other_project = format!(
        r#"{{"method":"GET","url":"/v1/files","prefix":"","project_id":"{}-x"}}"#,
        h.project.id
    );
    assert_eq!(purge(&h, &other_project).await.json()["deleted"], 0);
    let key = kept.headers["x-proxy-cache-key"].to_str().unwrap();
    let by_prefix = format!(
        r#"{{"method":"GET","url":"/v1/files","prefix":"{}","project_id":"{}"}}"#,
        &key[..10],
        h.project.id
    );
    assert_eq!(purge(&h, &by_prefix).await.json()["deleted"], 1);
    let everything = purge(&h, r#"{"method":"GET","url":"/","prefix":""}"#).await;
    assert_eq!(everything.json()["deleted"], 1);
    assert_eq!(
        cache_status(&get(&h, &token, "/v1/files", &[]).await),
        "llm-proxy; stored; ttl=60"
    );

    // The audit trail is written in the background.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let audit = loop {
        let audit = h
            .manage(Method::GET, "/manage/audit?action=cache.purge", None)
            .await
            .json();
        if audit["pagination"]["total_count"] == 4 || tokio::time::Instant::now() > deadline {
            break audit;
        }
        tokio::time::sleep(POLL).await;
    };
    assert_eq!(audit["pagination"]["total_count"], 4, "{audit}");
    let metadata = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["metadata"].as_str().unwrap().to_owned())
        .collect::<Vec<_>>();
    assert!(
        metadata.iter().any(|m| m.contains(r#""kind":"exact""#)),
        "{metadata:?}"
    );
}

#[tokio::test]
async fn purge_errors() {
    let h = Harness::start().await;
    for (body, code, message) in [
        (
            r#"{"url":"/v1/models"}"#,
            "validation_error",
            "method and url are required",
        ),
        (
            r#"{"method":"GET"}"#,
            "validation_error",
            "method and url are required",
        ),
        (
            r#"{"method":"GET","url":"models"}"#,
            "validation_error",
            "invalid URL",
        ),
        (
            r#"{"method":"GET","url":"http://a b/"}"#,
            "validation_error",
            "invalid URL",
        ),
        (
            r#"{"method":"GE T","url":"/v1/models"}"#,
            "validation_error",
            "invalid method",
        ),
        (r#"{"method":"GET","#, "invalid_json", ""),
    ] {
        let reply = purge(&h, body).await;
        assert_eq!(reply.status, 400, "{body}");
        assert_eq!(reply.json()["code"], code, "{body}");
        assert!(
            reply.json()["error"].as_str().unwrap().contains(message),
            "{body}"
        );
    }
    let unknown_field = purge(&h, r#"{"method":"GET","url":"/v1/models","all":true}"#).await;
    unknown_field.assert_error(422, "invalid_body");
    let unauthenticated = h
        .send(
            Request::post(h.url("/manage/cache/purge"))
                .body(Full::new(Bytes::from(
                    r#"{"method":"GET","url":"/v1/models"}"#,
                )))
                .unwrap(),
        )
        .await;
    assert_eq!(unauthenticated.status, 401);

    let disabled = Harness::with(Options {
        env: vec![(env::HTTP_CACHE_ENABLED, "false".into())],
        ..Options::default()
    })
    .await;
    let reply = purge(&disabled, r#"{"method":"GET","url":"/v1/models"}"#).await;
    reply.assert_error(400, "validation_error");
    assert_eq!(reply.json()["error"], "caching is disabled");
    // Without a cache, responses carry no cache headers.
    answer_with(&disabled, &[("cache-control", "public, max-age=60")]);
    let token = disabled.token(None, None).await;
    assert!(
        get(&disabled, &token, "/v1/models", &[])
            .await
            .headers
            .get("cache-status")
            .is_none()
    );
}

#[tokio::test]
async fn the_redis_backend_serves_stores_and_purges() {
    let prefix = unique_prefix();
    let h = Harness::with(redis_options(&prefix)).await;
    answer_with(&h, &[("cache-control", "public, max-age=60")]);
    let token = h.token(None, None).await;
    assert_eq!(
        cache_status(&get(&h, &token, "/v1/models", &[]).await),
        "llm-proxy; stored; ttl=60"
    );
    let hit = until_status("llm-proxy; hit", || get(&h, &token, "/v1/models", &[])).await;
    assert!(
        cache_status(&hit).starts_with("llm-proxy; hit"),
        "{:?}",
        hit.headers
    );
    assert_eq!(
        hit.body,
        llm_proxy_mocks::openai::chat_completion().as_bytes()
    );
    let ready = get(&h, &token, "/ready", &[]).await.json();
    assert_eq!(ready["checks"]["cache"], "ok");

    let exact = purge(&h, r#"{"method":"GET","url":"/v1/models"}"#).await;
    assert_eq!(exact.json()["deleted"], 1);
    let mut connection = redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut connection)
        .await
        .unwrap();
    assert!(keys.is_empty(), "{keys:?}");
    assert_eq!(
        cache_status(&get(&h, &token, "/v1/models", &[]).await),
        "llm-proxy; stored; ttl=60"
    );
    // The store is not awaited by the request: wait for the key.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let stored = loop {
        let stored: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}*"))
            .query_async(&mut connection)
            .await
            .unwrap();
        if !stored.is_empty() || tokio::time::Instant::now() > deadline {
            break stored;
        }
        tokio::time::sleep(POLL).await;
    };
    // The key names the project and two hashes, nothing else; Redis expires it with the entry.
    assert_eq!(stored.len(), 1);
    for key in stored {
        let ttl_ms: i64 = redis::cmd("PTTL")
            .arg(&key)
            .query_async(&mut connection)
            .await
            .unwrap();
        assert!((1..=60_000).contains(&ttl_ms), "{ttl_ms}");
        let rest = key.strip_prefix(&prefix).unwrap();
        assert!(rest.starts_with(&format!("{}:", h.project.id)), "{key}");
        assert!(!key.contains(&token));
    }
}

#[tokio::test]
async fn without_redis_cache_url_the_shared_redis_connection_is_used() {
    let prefix = unique_prefix();
    let h = Harness::with(Options {
        env: vec![
            (env::HTTP_CACHE_BACKEND, "redis".into()),
            (env::REDIS_URL, redis_url()),
            (env::REDIS_CACHE_KEY_PREFIX, prefix.clone()),
        ],
        ..Options::default()
    })
    .await;
    answer_with(&h, &[("cache-control", "public, max-age=60")]);
    let token = h.token(None, None).await;
    let stored = get(&h, &token, "/v1/models", &[]).await;
    assert_eq!(cache_status(&stored), "llm-proxy; stored; ttl=60");
    let hit = until_status("llm-proxy; hit", || get(&h, &token, "/v1/models", &[])).await;
    assert!(
        cache_status(&hit).starts_with("llm-proxy; hit"),
        "{:?}",
        hit.headers
    );
    assert_eq!(
        get(&h, &token, "/ready", &[]).await.json()["checks"]["cache"],
        "ok"
    );
}

#[tokio::test]
async fn two_proxies_on_one_redis_share_entries() {
    let prefix = unique_prefix();
    let database = common::fresh_pg_database().await;
    let with_db = |prefix: &str| Options {
        postgres_url: Some(database.clone()),
        ..redis_options(prefix)
    };
    let first = Harness::with(with_db(&prefix)).await;
    let second = Harness::with(with_db(&prefix)).await;
    answer_with(&first, &[("cache-control", "public, max-age=60")]);
    let token = first.token(None, None).await;
    assert_eq!(
        cache_status(&get(&first, &token, "/v1/models", &[]).await),
        "llm-proxy; stored; ttl=60"
    );
    let hit = until_status("llm-proxy; hit", || get(&second, &token, "/v1/models", &[])).await;
    assert!(
        cache_status(&hit).starts_with("llm-proxy; hit"),
        "{:?}",
        hit.headers
    );
    assert!(second.mock.requests().is_empty());
}

#[tokio::test]
async fn an_unreachable_redis_is_bypassed_counted_and_reported() {
    let port = llm_proxy_mocks::redis_server::PrivateRedis::free_port().unwrap();
    let h = Harness::with(Options {
        env: vec![
            (env::HTTP_CACHE_BACKEND, "redis".into()),
            (env::REDIS_CACHE_URL, format!("redis://127.0.0.1:{port}/")),
            (env::REDIS_CACHE_TIMEOUT, "200ms".into()),
        ],
        ..Options::default()
    })
    .await;
    answer_with(&h, &[("cache-control", "public, max-age=60")]);
    let token = h.token(None, None).await;
    for _ in 0..2 {
        let reply = get(&h, &token, "/v1/models", &[]).await;
        assert_eq!(reply.status, 200);
        assert_eq!(cache_status(&reply), "llm-proxy; bypass");
    }
    assert_eq!(h.mock.requests().len(), 2);
    let ready = get(&h, &token, "/ready", &[]).await;
    assert_eq!(ready.status, 200);
    assert_eq!(ready.json()["checks"]["cache"], "degraded");
    let metrics = String::from_utf8(
        get(&h, &token, "/metrics/prometheus", &[])
            .await
            .body
            .to_vec(),
    )
    .unwrap();
    assert!(
        metrics.contains("llm_proxy_cache_bypasses_total{reason=\"redis_unavailable\"} 2"),
        "{metrics}"
    );
    assert_eq!(
        get(&h, &token, "/metrics", &[]).await.json()["cache_bypass"],
        2
    );
    let purge = purge(&h, r#"{"method":"GET","url":"/v1/models"}"#).await;
    purge.assert_error(503, "service_unavailable");
}
