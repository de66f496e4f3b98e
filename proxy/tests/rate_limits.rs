//! Request rate limits: per-project configuration through `/manage/projects`, enforcement in memory
//! and in Redis (the shared test server of `scripts/test-services.sh`, `LLM_PROXY_TEST_REDIS_URL`,
//! and private `redis-server`s for outages), two `llm-proxy` processes sharing one limit, and the
//! fail-open/fail-closed policies.

// Test helpers outside #[test] functions fail loudly on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use common::{CHAT_BODY, Harness, MANAGEMENT_TOKEN, Options, Reply, TempDir};
use http::{Method, Request};
use http_body_util::Full;
use llm_proxy::ratelimit::duration_text;
use llm_proxy_env as env;
use llm_proxy_mocks::openai::{Behaviour, MockOpenAi};
use llm_proxy_mocks::redis_server::PrivateRedis;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;

fn redis_url() -> String {
    std::env::var("LLM_PROXY_TEST_REDIS_URL").expect(
        "LLM_PROXY_TEST_REDIS_URL must be set: run the tests through scripts/test-services.sh",
    )
}

/// Environment of a proxy counting in Redis at `url`, under a prefix of its own.
fn redis_env(url: &str, prefix: &str, fail_open: bool) -> Vec<(&'static str, String)> {
    vec![
        (env::DISTRIBUTED_RATE_LIMIT_ENABLED, "true".into()),
        (env::REDIS_URL, url.to_owned()),
        (env::DISTRIBUTED_RATE_LIMIT_PREFIX, prefix.to_owned()),
        (env::DISTRIBUTED_RATE_LIMIT_FALLBACK, fail_open.to_string()),
    ]
}

fn unique_prefix() -> String {
    format!("rl-test-{}:", uuid::Uuid::new_v4())
}

async fn harness(env: Vec<(&'static str, String)>) -> Harness {
    Harness::with(Options {
        env,
        ..Options::default()
    })
    .await
}

/// PATCHes the harness project's `rate_limits` and checks the answer.
async fn set_limits(h: &Harness, limits: Value) {
    let reply = h
        .manage(
            Method::PATCH,
            &format!("/manage/projects/{}", h.project.id),
            Some(&json!({ "rate_limits": limits }).to_string()),
        )
        .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
}

fn limit(requests: u64, window_seconds: u64) -> Value {
    json!({"requests": requests, "window_seconds": window_seconds})
}

/// Asserts the OpenAI-shaped 429 of a rate limit and its headers.
fn assert_rate_limited(reply: &Reply, limit: u64, scope: &str) {
    assert_eq!(reply.status, 429, "{:?}", reply.body);
    assert_eq!(reply.headers["content-type"], "application/json");
    let body = reply.json();
    let error = &body["error"];
    assert_eq!(error["type"], "requests", "{body}");
    assert_eq!(error["code"], "rate_limit_exceeded", "{body}");
    assert!(error["param"].is_null(), "{body}");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.starts_with(&format!("Rate limit reached for requests of this {scope}")),
        "{message}"
    );
    assert_eq!(body.as_object().unwrap().len(), 1, "{body}");
    let retry_after: u64 = reply.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1, "{retry_after}");
    assert_eq!(
        reply.headers["x-ratelimit-limit-requests"],
        limit.to_string().as_str()
    );
    assert_eq!(reply.headers["x-ratelimit-remaining-requests"], "0");
    assert_eq!(
        reply.headers["x-ratelimit-reset-requests"],
        duration_text(retry_after).as_str()
    );
}

/// Prometheus value of the sample line starting with `series`, 0 when absent.
fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

async fn prometheus(h: &Harness) -> String {
    let reply = h
        .send(
            Request::get(h.url("/metrics/prometheus"))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await;
    String::from_utf8(reply.body.to_vec()).unwrap()
}

async fn ready_checks(h: &Harness) -> Value {
    let reply = h
        .send(
            Request::get(h.url("/ready"))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, 200, "Redis never makes the proxy unready");
    reply.json()["checks"].clone()
}

#[tokio::test]
async fn limits_round_trip_through_the_management_api() {
    let h = Harness::start().await;
    let created = h
        .manage(
            Method::POST,
            "/manage/projects",
            Some(
                &json!({"name": "limited", "api_key": "sk-provider-0123456789",
                        "rate_limits": {"per_token": limit(5, 60)}})
                .to_string(),
            ),
        )
        .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let created = created.json();
    assert_eq!(
        created["rate_limits"],
        json!({"per_token": limit(5, 60), "per_project": null})
    );
    let path = format!("/manage/projects/{}", created["id"].as_str().unwrap());
    assert_eq!(
        h.manage(Method::GET, &path, None).await.json()["rate_limits"],
        created["rate_limits"]
    );

    // Without `rate_limits`: no limit in either scope, shown as nulls.
    let plain = h
        .manage(
            Method::GET,
            &format!("/manage/projects/{}", h.project.id),
            None,
        )
        .await;
    assert_eq!(
        plain.json()["rate_limits"],
        json!({"per_token": null, "per_project": null})
    );

    // PATCH: a scope sent replaces, a scope absent stays, `null` clears.
    let patch = |body: Value| {
        let h = &h;
        let path = path.clone();
        async move {
            let reply = h
                .manage(Method::PATCH, &path, Some(&body.to_string()))
                .await;
            assert_eq!(reply.status, 200, "{:?}", reply.body);
            reply.json()["rate_limits"].clone()
        }
    };
    assert_eq!(
        patch(json!({"rate_limits": {"per_project": limit(100, 86_400)}})).await,
        json!({"per_token": limit(5, 60), "per_project": limit(100, 86_400)})
    );
    assert_eq!(
        patch(json!({"name": "limited-renamed"})).await,
        json!({"per_token": limit(5, 60), "per_project": limit(100, 86_400)})
    );
    assert_eq!(
        patch(json!({"rate_limits": {"per_token": null}})).await,
        json!({"per_token": null, "per_project": limit(100, 86_400)})
    );
    assert_eq!(
        patch(json!({"rate_limits": {"per_token": limit(1, 1)}})).await,
        json!({"per_token": limit(1, 1), "per_project": limit(100, 86_400)})
    );
    assert_eq!(
        patch(json!({"rate_limits": null})).await,
        json!({"per_token": null, "per_project": null})
    );
    let listed = h.manage(Method::GET, "/manage/projects", None).await.json();
    let listed = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "limited-renamed")
        .unwrap()
        .clone();
    assert_eq!(
        listed["rate_limits"],
        json!({"per_token": null, "per_project": null})
    );
}

#[tokio::test]
async fn invalid_limits_are_refused_with_a_clear_error() {
    let h = Harness::start().await;
    let project_path = format!("/manage/projects/{}", h.project.id);
    let validation = [
        (
            json!({"per_token": {"requests": 0, "window_seconds": 60}}),
            "rate_limits.per_token.requests must be at least 1",
        ),
        (
            json!({"per_project": {"requests": -3, "window_seconds": 60}}),
            "rate_limits.per_project.requests must be at least 1",
        ),
        (
            json!({"per_token": {"requests": 1, "window_seconds": 0}}),
            "rate_limits.per_token.window_seconds must be between 1 and 86400",
        ),
        (
            json!({"per_project": {"requests": 1, "window_seconds": 86_401}}),
            "rate_limits.per_project.window_seconds must be between 1 and 86400",
        ),
    ];
    for (limits, message) in validation {
        let create = json!({"name": format!("p-{}", uuid::Uuid::new_v4()),
                            "api_key": "sk-provider-0123456789", "rate_limits": limits});
        let patch = json!({ "rate_limits": limits });
        for reply in [
            h.manage(Method::POST, "/manage/projects", Some(&create.to_string()))
                .await,
            h.manage(Method::PATCH, &project_path, Some(&patch.to_string()))
                .await,
        ] {
            assert_eq!(reply.status, 400, "{limits}: {:?}", reply.body);
            assert_eq!(
                reply.json(),
                json!({"error": message, "code": "validation_error"})
            );
        }
    }
    // Wrong shapes are body errors (422), as for every other field.
    let shapes = [
        json!({"per_token": {"requests": 1}}),
        json!({"per_token": {"requests": "5", "window_seconds": 60}}),
        json!({"per_token": {"requests": 1, "window_seconds": 60, "burst": 2}}),
        json!({"per_minute": limit(1, 60)}),
        json!({"per_token": 5}),
        json!("5/min"),
    ];
    for limits in shapes {
        let reply = h
            .manage(
                Method::PATCH,
                &project_path,
                Some(&json!({ "rate_limits": limits }).to_string()),
            )
            .await;
        assert_eq!(reply.status, 422, "{limits}: {:?}", reply.body);
        assert_eq!(reply.json()["code"], "invalid_body");
    }
    // An empty `rate_limits` object changes nothing.
    let empty = h
        .manage(Method::PATCH, &project_path, Some(r#"{"rate_limits":{}}"#))
        .await;
    assert_eq!(empty.status, 400);
    assert_eq!(
        empty.json(),
        json!({"error": "no fields to update", "code": "validation_error"})
    );
    // Nothing was stored by the refused calls.
    let stored = h.manage(Method::GET, &project_path, None).await.json();
    assert_eq!(
        stored["rate_limits"],
        json!({"per_token": null, "per_project": null})
    );
}

#[tokio::test]
async fn memory_limits_admit_n_then_answer_an_openai_shaped_429_without_counting_quota() {
    let h = Harness::start().await;
    set_limits(&h, json!({"per_token": limit(3, 60)})).await;
    let token = h.token(Some(4), None).await;
    for _ in 0..3 {
        assert_eq!(h.chat(&token, CHAT_BODY).await.status, 200);
    }
    let refused = h
        .send(
            Request::post(h.url("/v1/chat/completions"))
                .header("authorization", format!("Bearer {token}"))
                .header("content-type", "application/json")
                .header("origin", "https://app.example.com")
                .body(Full::new(Bytes::from_static(CHAT_BODY.as_bytes())))
                .unwrap(),
        )
        .await;
    assert_rate_limited(&refused, 3, "token");
    assert_eq!(
        refused.headers["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert!(refused.headers.contains_key("x-request-id"));
    assert_rate_limited(&h.chat(&token, CHAT_BODY).await, 3, "token");
    assert_eq!(
        h.mock.requests().len(),
        3,
        "refused requests never go upstream"
    );

    // Another token of the project has its own window.
    let other = h.token(None, None).await;
    assert_eq!(h.chat(&other, CHAT_BODY).await.status, 200);

    // Lifting the limit applies at once (the management API clears the project cache), and the
    // refusals consumed none of the quota of 4: one request is left, then the quota's own 429.
    set_limits(&h, json!({"per_token": null})).await;
    assert_eq!(h.chat(&token, CHAT_BODY).await.status, 200);
    h.chat(&token, CHAT_BODY)
        .await
        .assert_error(429, "rate_limit_exceeded");

    let text = prometheus(&h).await;
    assert_eq!(
        metric(
            &text,
            "llm_proxy_rate_limit_decisions_total{scope=\"token\",outcome=\"denied\"}"
        ),
        2.0,
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            "llm_proxy_rate_limit_decisions_total{scope=\"token\",outcome=\"allowed\"}"
        ),
        4.0,
        "{text}"
    );
    // In memory there is no Redis feature to report.
    assert!(ready_checks(&h).await.get("rate_limits").is_none());
}

#[tokio::test]
async fn upstream_rate_limit_headers_pass_through_untouched() {
    let h = Harness::start().await;
    h.mock.set_behaviour(Behaviour {
        response_headers: vec![
            ("x-ratelimit-limit-requests".into(), "10000".into()),
            ("x-ratelimit-remaining-requests".into(), "9999".into()),
        ],
        ..Behaviour::default()
    });
    set_limits(&h, json!({"per_token": limit(1, 60)})).await;
    let token = h.token(None, None).await;
    let served = h.chat(&token, CHAT_BODY).await;
    assert_eq!(served.status, 200);
    assert_eq!(served.headers["x-ratelimit-limit-requests"], "10000");
    assert_eq!(served.headers["x-ratelimit-remaining-requests"], "9999");
    assert!(!served.headers.contains_key("retry-after"));
    assert_rate_limited(&h.chat(&token, CHAT_BODY).await, 1, "token");
}

#[tokio::test]
async fn a_project_limit_is_shared_by_its_tokens() {
    let h = Harness::start().await;
    set_limits(&h, json!({"per_project": limit(4, 60)})).await;
    let first = h.token(None, None).await;
    let second = h.token(None, None).await;
    for token in [&first, &second, &first, &second] {
        assert_eq!(h.chat(token, CHAT_BODY).await.status, 200);
    }
    assert_rate_limited(&h.chat(&first, CHAT_BODY).await, 4, "project");
    assert_rate_limited(&h.chat(&second, CHAT_BODY).await, 4, "project");
}

#[tokio::test]
async fn redis_limits_apply_the_env_default_and_hide_token_ids() {
    let url = redis_url();
    let prefix = unique_prefix();
    let mut vars = redis_env(&url, &prefix, true);
    vars.push((env::DISTRIBUTED_RATE_LIMIT_MAX, "2".into()));
    vars.push((env::DISTRIBUTED_RATE_LIMIT_WINDOW, "1m".into()));
    vars.push((env::DISTRIBUTED_RATE_LIMIT_KEY_SECRET, "key-secret".into()));
    let h = harness(vars).await;

    // No limit of its own: the env default (2 per minute and token) applies.
    let token = h.token(None, None).await;
    assert_eq!(h.chat(&token, CHAT_BODY).await.status, 200);
    assert_eq!(h.chat(&token, CHAT_BODY).await.status, 200);
    assert_rate_limited(&h.chat(&token, CHAT_BODY).await, 2, "token");

    // The project's own per-token limit replaces the default; per project counts too.
    set_limits(
        &h,
        json!({"per_token": limit(3, 60), "per_project": limit(100, 60)}),
    )
    .await;
    let other = h.token(None, None).await;
    for _ in 0..3 {
        assert_eq!(h.chat(&other, CHAT_BODY).await.status, 200);
    }
    assert_rate_limited(&h.chat(&other, CHAT_BODY).await, 3, "token");

    let client = redis::Client::open(url.as_str()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut connection)
        .await
        .unwrap();
    keys.sort();
    assert_eq!(keys.len(), 3, "{keys:?}");
    let project_key = format!("{prefix}p:{}", h.project.id);
    assert!(keys.contains(&project_key), "{keys:?}");
    let project_count: i64 = redis::cmd("GET")
        .arg(&project_key)
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(project_count, 3, "refused requests are not counted");
    let tokens = h.manage(Method::GET, "/manage/tokens", None).await.json();
    for record in tokens.as_array().unwrap() {
        let id = record["id"].as_str().unwrap();
        assert!(keys.iter().all(|k| !k.contains(id)), "{keys:?} show {id}");
    }
    for key in keys.iter().filter(|k| **k != project_key) {
        let hex = key.strip_prefix(&format!("{prefix}t:")).unwrap();
        assert_eq!(hex.len(), 64, "{key}");
        let ttl: i64 = redis::cmd("PTTL")
            .arg(key)
            .query_async(&mut connection)
            .await
            .unwrap();
        assert!((1..=60_000).contains(&ttl), "{key}: {ttl}");
    }
    assert_eq!(ready_checks(&h).await["rate_limits"], "ok");
}

#[tokio::test]
async fn unreachable_redis_fails_open_or_closed_and_is_counted() {
    let closed_port = PrivateRedis::free_port().unwrap();
    let nowhere = format!("redis://127.0.0.1:{closed_port}/");

    let open = harness(redis_env(&nowhere, &unique_prefix(), true)).await;
    let token = open.token(None, None).await;
    for _ in 0..2 {
        assert_eq!(open.chat(&token, CHAT_BODY).await.status, 200);
    }
    let text = prometheus(&open).await;
    assert_eq!(
        metric(
            &text,
            "llm_proxy_rate_limit_backend_errors_total{policy=\"fail_open\"}"
        ),
        2.0,
        "{text}"
    );
    assert_eq!(ready_checks(&open).await["rate_limits"], "degraded");

    let closed = harness(redis_env(&nowhere, &unique_prefix(), false)).await;
    let token = closed.token(Some(5), None).await;
    let refused = closed.chat(&token, CHAT_BODY).await;
    refused.assert_error(503, "rate_limit_unavailable");
    assert!(!String::from_utf8_lossy(&refused.body).contains(&closed_port.to_string()));
    assert!(closed.mock.requests().is_empty());
    let text = prometheus(&closed).await;
    assert_eq!(
        metric(
            &text,
            "llm_proxy_rate_limit_backend_errors_total{policy=\"fail_closed\"}"
        ),
        1.0,
        "{text}"
    );
    assert_eq!(ready_checks(&closed).await["rate_limits"], "degraded");
    // Refused before the quota is counted.
    let tokens = closed
        .manage(Method::GET, "/manage/tokens", None)
        .await
        .json();
    assert_eq!(tokens[0]["request_count"], 0, "{tokens}");
}

#[tokio::test]
async fn limiting_resumes_after_a_redis_restart() {
    let mut redis = PrivateRedis::start_on_free_port().await.unwrap();
    let mut vars = redis_env(&redis.url(), &unique_prefix(), false);
    vars.push((env::DISTRIBUTED_RATE_LIMIT_MAX, "2".into()));
    let h = harness(vars).await;
    let token = h.token(None, None).await;
    assert_eq!(h.chat(&token, CHAT_BODY).await.status, 200);
    assert_eq!(h.chat(&token, CHAT_BODY).await.status, 200);
    assert_rate_limited(&h.chat(&token, CHAT_BODY).await, 2, "token");

    redis.kill();
    h.chat(&token, CHAT_BODY)
        .await
        .assert_error(503, "rate_limit_unavailable");
    assert_eq!(ready_checks(&h).await["rate_limits"], "degraded");

    // A fresh, empty server on the same port: counting starts over once the connection is back.
    redis.restart().await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let first = loop {
        let reply = h.chat(&token, CHAT_BODY).await;
        if reply.status != 503 {
            break reply;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "rate limiting did not reach the restarted Redis"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(first.status, 200, "{:?}", first.body);
    assert_eq!(h.chat(&token, CHAT_BODY).await.status, 200);
    assert_rate_limited(&h.chat(&token, CHAT_BODY).await, 2, "token");
    assert_eq!(ready_checks(&h).await["rate_limits"], "ok");
}

/// A running `llm-proxy` binary.
struct Proxy {
    _child: Child,
    addr: String,
}

async fn spawn_proxy(dir: &TempDir, vars: &[(&str, String)]) -> Proxy {
    let mut command = common::proxy_command(dir);
    command.env(env::LOG_FORMAT, "json").stderr(Stdio::null());
    for (name, value) in vars {
        command.env(name, value);
    }
    let mut child = command.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains("llm-proxy listening") {
                let json: Value = serde_json::from_str(&line).unwrap();
                return json["addr"].as_str().unwrap().to_owned();
            }
        }
        panic!("the binary exited before listening");
    })
    .await
    .expect("the binary starts listening");
    // Keep draining the logs so the process never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Proxy {
        _child: child,
        addr,
    }
}

#[tokio::test]
async fn two_processes_sharing_a_limit_admit_exactly_n() {
    const LIMIT: u64 = 7;
    const REQUESTS: usize = 24;
    let dir = TempDir::new();
    let mock = MockOpenAi::start().await.unwrap();
    let vars: Vec<(&str, String)> = redis_env(&redis_url(), &unique_prefix(), false)
        .into_iter()
        .chain([(env::OPENAI_API_URL, mock.url())])
        .collect();
    let first = spawn_proxy(&dir, &vars).await;
    let second = spawn_proxy(&dir, &vars).await;
    let client = common::http_client();

    let manage = |method: Method, addr: &str, path: &str, body: Value| {
        Request::builder()
            .method(method)
            .uri(format!("http://{addr}{path}"))
            .header("authorization", format!("Bearer {MANAGEMENT_TOKEN}"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap()
    };
    let project = common::send(
        &client,
        manage(
            Method::POST,
            &first.addr,
            "/manage/projects",
            json!({"name": "shared", "api_key": "sk-provider-0123456789",
                   "rate_limits": {"per_project": limit(LIMIT, 3600)}}),
        ),
    )
    .await;
    assert_eq!(project.status, 201, "{:?}", project.body);
    let project_id = project.json()["id"].as_str().unwrap().to_owned();
    let mut tokens = Vec::new();
    for addr in [&first.addr, &second.addr] {
        let issued = common::send(
            &client,
            manage(
                Method::POST,
                addr,
                "/manage/tokens",
                json!({"project_id": project_id, "duration_minutes": 60}),
            ),
        )
        .await;
        assert!(issued.status.is_success(), "{:?}", issued.body);
        tokens.push(issued.json()["token"].as_str().unwrap().to_owned());
    }

    let mut requests = tokio::task::JoinSet::new();
    for i in 0..REQUESTS {
        let client = client.clone();
        let addr = [&first.addr, &second.addr][i % 2].clone();
        let token = tokens[i / 2 % 2].clone();
        requests.spawn(async move {
            common::send(
                &client,
                Request::post(format!("http://{addr}/v1/chat/completions"))
                    .header("authorization", format!("Bearer {token}"))
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from_static(CHAT_BODY.as_bytes())))
                    .unwrap(),
            )
            .await
        });
    }
    let mut admitted = 0;
    while let Some(reply) = requests.join_next().await {
        let reply = reply.unwrap();
        match reply.status.as_u16() {
            200 => admitted += 1,
            _ => assert_rate_limited(&reply, LIMIT, "project"),
        }
    }
    assert_eq!(admitted, LIMIT, "two processes share one counter");
    assert_eq!(mock.requests().len(), LIMIT as usize);
}
