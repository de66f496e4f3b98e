//! The dispatcher end to end: events published to a real Redis stream (`LLM_PROXY_TEST_REDIS_URL`
//! from scripts/test-services.sh) are delivered to the mock Lunary and Helicone receivers and to the
//! file sink, with retries, permanent failures, malformed entries and a killed dispatcher.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers outside #[test] fns

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use llm_proxy_dispatcher::config::Destination;
use llm_proxy_dispatcher::metrics::DispatcherMetrics;
use llm_proxy_dispatcher::{Dispatcher, DispatcherArgs, DispatcherConfig, RetryPolicy, Service};
use llm_proxy_env as env;
use llm_proxy_events::{EventPublisher, InstrumentationEvent, RedisSettings, StreamTarget, Usage};
use llm_proxy_mocks::helicone::MockHelicone;
use llm_proxy_mocks::lunary::{MockLunary, RecordedRequest};
use llm_proxy_mocks::redis_server::PrivateRedis;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(20);

fn redis_url() -> String {
    std::env::var("LLM_PROXY_TEST_REDIS_URL").expect(
        "LLM_PROXY_TEST_REDIS_URL is not set: run the tests through scripts/test-services.sh",
    )
}

fn unique_key(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("dispatch-{test}-{}-{nanos}", std::process::id())
}

fn connection() -> redis::aio::ConnectionManager {
    let url = redis_url();
    RedisSettings::from_lookup(&|name| (name == env::REDIS_URL).then(|| url.clone()))
        .unwrap()
        .connection_manager(Duration::from_secs(10))
        .unwrap()
}

/// A config for `service` reading `stream` as `consumer`, with fast reads, claims and retries.
fn config(
    service: Service,
    endpoint: &str,
    stream: &str,
    consumer: &str,
    batch_size: u64,
) -> DispatcherConfig {
    config_with(
        "redis-streams",
        &redis_url(),
        service,
        endpoint,
        stream,
        consumer,
        batch_size,
    )
}

fn config_with(
    bus: &str,
    redis: &str,
    service: Service,
    endpoint: &str,
    stream: &str,
    consumer: &str,
    batch_size: u64,
) -> DispatcherConfig {
    let vars: HashMap<&str, String> = HashMap::from([
        (env::LLM_PROXY_EVENT_BUS, bus.to_string()),
        (env::REDIS_URL, redis.to_string()),
        (env::REDIS_STREAM_KEY, stream.to_string()),
        (env::REDIS_CONSUMER_NAME, consumer.to_string()),
        (env::REDIS_STREAM_BLOCK_TIME, "100ms".to_string()),
        (env::REDIS_STREAM_CLAIM_TIME, "500ms".to_string()),
        (env::SHUTDOWN_TIMEOUT, "5s".to_string()),
    ]);
    let args = DispatcherArgs {
        service: Some(service.as_str().to_string()),
        endpoint: Some(endpoint.to_string()),
        api_key: Some("test-api-key".to_string()),
        buffer: Some("1000".to_string()),
        batch_size: Some(batch_size.to_string()),
        health_addr: Some("127.0.0.1:0".to_string()),
    };
    let mut config = DispatcherConfig::from_lookup(args, &|name| vars.get(name).cloned()).unwrap();
    config.retry = RetryPolicy {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(100),
    };
    config
}

struct Running {
    metrics: Arc<DispatcherMetrics>,
    health_url: String,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), llm_proxy_dispatcher::DispatcherError>>,
}

async fn start(config: DispatcherConfig) -> Running {
    let dispatcher = Dispatcher::new(config);
    let metrics = dispatcher.metrics();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let health_url = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(dispatcher.serve(listener, shutdown.clone()));
    Running {
        metrics,
        health_url,
        shutdown,
        task,
    }
}

impl Running {
    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(WAIT, self.task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
}

async fn publish(stream: &str, events: impl IntoIterator<Item = InstrumentationEvent>) {
    let publisher = EventPublisher::redis_streams(
        connection(),
        StreamTarget {
            stream_key: stream.to_string(),
            max_len: 0,
        },
        1000,
    );
    for event in events {
        publisher.publish(event);
    }
    publisher.shutdown(WAIT).await;
    assert_eq!(publisher.metrics().dropped.get(), 0);
}

async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    tokio::time::timeout(WAIT, async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}

async fn pending(stream: &str) -> u64 {
    let mut conn = connection();
    let summary: redis::Value = redis::cmd("XPENDING")
        .arg(stream)
        .arg("llm-proxy-dispatchers")
        .query_async(&mut conn)
        .await
        .unwrap();
    match summary {
        redis::Value::Array(items) => match items.first() {
            Some(redis::Value::Int(count)) => u64::try_from(*count).unwrap(),
            other => panic!("unexpected XPENDING reply {other:?}"),
        },
        other => panic!("unexpected XPENDING reply {other:?}"),
    }
}

fn chat_event(request_id: &str, answer: &str) -> InstrumentationEvent {
    InstrumentationEvent {
        request_id: request_id.to_string(),
        method: "POST".into(),
        path: "/v1/chat/completions".into(),
        status: 200,
        duration: Duration::from_millis(250),
        response_headers: BTreeMap::from([("Content-Type".into(), vec!["application/json".into()])]),
        response_body: format!(r#"{{"id":"{request_id}","choices":[{{"message":{{"role":"assistant","content":"{answer}"}}}}]}}"#)
            .into_bytes(),
        request_body: br#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#.to_vec(),
        usage: Some(Usage { prompt_tokens: 5, completion_tokens: 2, total_tokens: 7 }),
        ..InstrumentationEvent::default()
    }
}

/// Every event of every accepted Lunary request, in arrival order.
fn lunary_events(requests: &[RecordedRequest]) -> Vec<Value> {
    requests
        .iter()
        .filter(|request| request.status.is_success())
        .flat_map(|request| request.json().as_array().cloned().unwrap_or_default())
        .collect()
}

fn request_id_of(payload: &Value) -> String {
    payload["metadata"]["request_id"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn lunary_receives_batches_with_the_bearer_key_and_entries_are_acked() {
    let lunary = MockLunary::start().await.unwrap();
    let stream = unique_key("lunary");
    let running = start(config(Service::Lunary, &lunary.url(), &stream, "d1", 2)).await;
    let mut get = chat_event("r-get", "x");
    get.method = "GET".into();
    publish(
        &stream,
        [
            chat_event("r1", "one"),
            chat_event("r2", "two"),
            chat_event("r3", "three"),
            get,
        ],
    )
    .await;

    wait_until("3 events delivered", || {
        running.metrics.delivered.get() == 3
    })
    .await;
    let requests = lunary.requests();
    assert_eq!(requests.len(), 2, "3 events in batches of 2");
    for request in &requests {
        assert_eq!(request.method, http::Method::POST);
        assert_eq!(request.path, "/v1/runs/ingest");
        assert_eq!(request.authorization(), Some("Bearer test-api-key"));
        assert_eq!(request.headers["content-type"], "application/json");
    }
    let events = lunary_events(&requests);
    assert_eq!(
        events.iter().map(request_id_of).collect::<Vec<_>>(),
        ["r1", "r2", "r3"]
    );
    let first = events[0].as_object().unwrap();
    assert_eq!(
        first.keys().map(String::as_str).collect::<Vec<_>>(),
        [
            "event",
            "input",
            "log_id",
            "metadata",
            "output",
            "runId",
            "timestamp",
            "tokensUsage",
            "type"
        ]
    );
    assert_eq!(first["type"], "llm");
    assert_eq!(first["event"], "start");
    assert_eq!(first["log_id"], 0);
    assert_eq!(
        first["metadata"],
        json!({"method":"POST","path":"/v1/chat/completions","status":200,"duration_ms":250,"request_id":"r1"})
    );
    assert_eq!(
        first["input"],
        json!({"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]})
    );
    assert_eq!(
        first["output"],
        json!({"id":"r1","choices":[{"message":{"role":"assistant","content":"one"}}]})
    );
    assert_eq!(first["tokensUsage"], json!({"prompt":5,"completion":2}));

    wait_until("GET skipped", || running.metrics.skipped.get() == 1).await;
    assert_eq!(running.metrics.received.get(), 4);
    assert_eq!(running.metrics.retries.get(), 0);
    assert_eq!(pending(&stream).await, 0);

    let metrics_text = http_get(&format!("{}/metrics", running.health_url)).await;
    assert!(
        metrics_text.contains("llm_proxy_dispatcher_delivered_total 3"),
        "{metrics_text}"
    );
    assert!(
        http_get(&format!("{}/ready", running.health_url))
            .await
            .contains("ready")
    );
    running.stop().await;
}

#[tokio::test]
async fn helicone_gets_one_exact_request_per_event_with_output() {
    let helicone = MockHelicone::start().await.unwrap();
    let stream = unique_key("helicone");
    let running = start(config(
        Service::Helicone,
        &helicone.url(),
        &stream,
        "d1",
        100,
    ))
    .await;
    let mut without_output = chat_event("r-empty", "");
    without_output.response_body.clear();
    publish(&stream, [chat_event("h1", "hello"), without_output]).await;

    wait_until("event delivered", || running.metrics.delivered.get() == 1).await;
    wait_until("event without output skipped", || {
        running.metrics.skipped.get() == 1
    })
    .await;
    let requests = helicone.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.path, "/custom/v1/log");
    assert_eq!(request.authorization(), Some("Bearer test-api-key"));
    let mut body = request.json();
    let timing = body.as_object_mut().unwrap().remove("timing").unwrap();
    assert_eq!(
        body,
        json!({
            "providerRequest": {
                "url": "/v1/chat/completions",
                "json": {"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]},
                "meta": {"method":"POST","path":"/v1/chat/completions","request_id":"h1",
                         "provider":"openai","Helicone-Provider":"openai"},
            },
            "providerResponse": {
                "status": 200,
                "headers": {},
                "json": {"id":"h1","choices":[{"message":{"role":"assistant","content":"hello"}}],
                         "usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}},
            },
        })
    );
    let start_ms = timing["startTime"]["seconds"].as_i64().unwrap() * 1000
        + timing["startTime"]["milliseconds"].as_i64().unwrap();
    let end_ms = timing["endTime"]["seconds"].as_i64().unwrap() * 1000
        + timing["endTime"]["milliseconds"].as_i64().unwrap();
    assert_eq!(end_ms - start_ms, 250);
    assert_eq!(pending(&stream).await, 0);
    running.stop().await;
}

#[tokio::test]
async fn failed_sends_are_retried_until_the_backend_accepts() {
    let lunary = MockLunary::start().await.unwrap();
    lunary.respond_with([500, 429, 503]);
    let stream = unique_key("retry");
    let running = start(config(Service::Lunary, &lunary.url(), &stream, "d1", 100)).await;
    publish(&stream, [chat_event("r1", "one")]).await;

    wait_until("delivered after retries", || {
        running.metrics.delivered.get() == 1
    })
    .await;
    assert_eq!(running.metrics.retries.get(), 3);
    let statuses: Vec<u16> = lunary
        .requests()
        .iter()
        .map(|request| request.status.as_u16())
        .collect();
    assert_eq!(statuses, [500, 429, 503, 200]);
    assert!(
        lunary
            .requests()
            .iter()
            .all(|request| request.json() == lunary.requests()[0].json())
    );
    assert_eq!(running.metrics.permanent_failures.get(), 0);
    assert_eq!(pending(&stream).await, 0);
    running.stop().await;
}

#[tokio::test]
async fn permanent_refusals_are_counted_and_acked() {
    let lunary = MockLunary::start().await.unwrap();
    lunary.respond_with([400]);
    let stream = unique_key("permanent");
    let running = start(config(Service::Lunary, &lunary.url(), &stream, "d1", 100)).await;
    publish(&stream, [chat_event("r1", "one")]).await;
    wait_until("permanent failure", || {
        running.metrics.permanent_failures.get() == 1
    })
    .await;
    assert_eq!(running.metrics.delivered.get(), 0);
    assert_eq!(running.metrics.retries.get(), 0);
    assert_eq!(lunary.requests().len(), 1);
    assert_eq!(pending(&stream).await, 0);
    running.stop().await;

    // Helicone's 500 is permanent too (as upstream); its 429 is retried.
    let helicone = MockHelicone::start().await.unwrap();
    helicone.respond_with([429, 500]);
    let stream = unique_key("permanent-helicone");
    let running = start(config(
        Service::Helicone,
        &helicone.url(),
        &stream,
        "d1",
        100,
    ))
    .await;
    publish(&stream, [chat_event("h1", "one")]).await;
    wait_until("permanent failure", || {
        running.metrics.permanent_failures.get() == 1
    })
    .await;
    assert_eq!(running.metrics.retries.get(), 1);
    assert_eq!(pending(&stream).await, 0);
    running.stop().await;
}

#[tokio::test]
async fn malformed_entries_are_acked_and_counted_and_repeats_are_counted() {
    let lunary = MockLunary::start().await.unwrap();
    let stream = unique_key("malformed");
    let running = start(config(Service::Lunary, &lunary.url(), &stream, "d1", 100)).await;
    let mut conn = connection();
    for (field, value) in [("data", "{not json"), ("payload", "x")] {
        let _: String = redis::cmd("XADD")
            .arg(&stream)
            .arg("*")
            .arg(field)
            .arg(value)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    publish(&stream, [chat_event("same", "a"), chat_event("same", "a")]).await;
    wait_until("malformed counted", || running.metrics.malformed.get() == 2).await;
    wait_until("both copies delivered", || {
        running.metrics.delivered.get() == 2
    })
    .await;
    assert_eq!(running.metrics.duplicates.get(), 1);
    assert_eq!(pending(&stream).await, 0);
    running.stop().await;
}

#[tokio::test]
async fn file_service_appends_one_json_line_per_event() {
    let dir = std::env::temp_dir().join(unique_key("file"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("events.jsonl");
    let stream = unique_key("file");
    let config = config(Service::File, path.to_str().unwrap(), &stream, "d1", 2);
    assert_eq!(config.destination, Destination::File(path.clone()));
    let running = start(config).await;
    publish(&stream, (0..5).map(|i| chat_event(&format!("f{i}"), "x"))).await;
    wait_until("5 events written", || running.metrics.delivered.get() == 5).await;
    running.stop().await;

    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(
        lines.iter().map(request_id_of).collect::<Vec<_>>(),
        ["f0", "f1", "f2", "f3", "f4"]
    );
    assert!(
        lines
            .iter()
            .all(|line| line["type"] == "llm" && line["tokensUsage"]["prompt"] == 5)
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn a_killed_dispatcher_loses_nothing_and_redeliveries_are_counted() {
    let lunary = MockLunary::start().await.unwrap();
    lunary.set_delay(Duration::from_millis(1500));
    let stream = unique_key("kill");
    let first = start(config(Service::Lunary, &lunary.url(), &stream, "doomed", 2)).await;
    publish(&stream, (0..6).map(|i| chat_event(&format!("k{i}"), "x"))).await;

    // The second batch reached the backend but its answer is still on the way: kill now.
    lunary
        .wait_for_requests(2, WAIT)
        .await
        .expect("two batches sent");
    first.task.abort();
    let _ = first.task.await;
    assert!(
        pending(&stream).await >= 2,
        "the unanswered batch stays pending"
    );

    // Another dispatcher claims the dead one's entries once they are idle for the claim time.
    lunary.set_delay(Duration::ZERO);
    let second = start(config(
        Service::Lunary,
        &lunary.url(),
        &stream,
        "survivor",
        2,
    ))
    .await;
    wait_until("all events delivered", || {
        let ids: std::collections::BTreeSet<String> = lunary_events(&lunary.requests())
            .iter()
            .map(request_id_of)
            .collect();
        ids.len() == 6
    })
    .await;
    let received = lunary_events(&lunary.requests());
    assert!(
        received.len() > 6,
        "the batch in flight at the kill was delivered twice"
    );
    assert!(second.metrics.redelivered.get() >= 2);
    assert_eq!(pending(&stream).await, 0);
    second.stop().await;
}

/// A GET with hyper, returning the body as text.
async fn http_get(url: &str) -> String {
    http_get_status(url).await.1
}

/// A GET with hyper, returning the status and the body as text.
async fn http_get_status(url: &str) -> (u16, String) {
    use http_body_util::BodyExt as _;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let response = client.get(url.parse().unwrap()).await.unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn ready_is_503_while_redis_is_unreachable_and_health_stays_up() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let unreachable = format!("redis://127.0.0.1:{port}/");
    let config = config_with(
        "redis-streams",
        &unreachable,
        Service::File,
        "/tmp/unused.jsonl",
        "s",
        "d1",
        10,
    );
    let running = start(config).await;
    wait_until("a failed Redis operation", || {
        running.metrics.redis_errors.get() >= 1
    })
    .await;
    assert_eq!(
        http_get_status(&format!("{}/health", running.health_url))
            .await
            .0,
        200
    );
    let (status, body) = http_get_status(&format!("{}/ready", running.health_url)).await;
    assert_eq!(status, 503, "{body}");
    let started = std::time::Instant::now();
    running.stop().await;
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn in_memory_bus_only_serves_health_with_the_file_service() {
    let config = config_with(
        "in-memory",
        &redis_url(),
        Service::File,
        "/tmp/unused.jsonl",
        "s",
        "d1",
        10,
    );
    let running = start(config).await;
    let (status, _) = http_get_status(&format!("{}/ready", running.health_url)).await;
    assert_eq!(status, 200);
    assert_eq!(running.metrics.received.get(), 0);
    running.stop().await;
}

#[tokio::test]
async fn shutdown_is_bounded_while_the_backend_keeps_failing_and_leaves_entries_pending() {
    let lunary = MockLunary::start().await.unwrap();
    lunary.set_default_status(503);
    let stream = unique_key("shutdown");
    let running = start(config(Service::Lunary, &lunary.url(), &stream, "d1", 100)).await;
    publish(&stream, [chat_event("s1", "x")]).await;
    wait_until("retries", || running.metrics.retries.get() >= 2).await;
    let started = std::time::Instant::now();
    running.stop().await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(
        pending(&stream).await,
        1,
        "the undelivered event stays pending for the next dispatcher"
    );
}

#[tokio::test]
async fn dispatcher_recovers_when_redis_restarts() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("redis://127.0.0.1:{port}/");
    let redis = PrivateRedis::start(port).await.unwrap();
    let lunary = MockLunary::start().await.unwrap();
    let stream = unique_key("restart");
    let config = config_with(
        "redis-streams",
        &url,
        Service::Lunary,
        &lunary.url(),
        &stream,
        "d1",
        10,
    );
    let running = start(config).await;
    let publisher = |url: &str| {
        let settings =
            RedisSettings::from_lookup(&|name| (name == env::REDIS_URL).then(|| url.to_string()))
                .unwrap();
        EventPublisher::redis_streams(
            settings.connection_manager(Duration::from_secs(5)).unwrap(),
            StreamTarget {
                stream_key: stream.clone(),
                max_len: 0,
            },
            100,
        )
    };
    let before = publisher(&url);
    before.publish(chat_event("before", "x"));
    before.shutdown(WAIT).await;
    wait_until("first event delivered", || {
        running.metrics.delivered.get() == 1
    })
    .await;
    assert!(running.metrics.is_ready());

    drop(redis);
    wait_until("not ready", || !running.metrics.is_ready()).await;
    assert_eq!(
        http_get_status(&format!("{}/ready", running.health_url))
            .await
            .0,
        503
    );

    // The restarted server is empty: the dispatcher re-creates the group and goes on.
    let _redis = PrivateRedis::start(port).await.unwrap();
    let after = publisher(&url);
    after.publish(chat_event("after", "y"));
    after.shutdown(WAIT).await;
    wait_until("second event delivered", || {
        running.metrics.delivered.get() == 2
    })
    .await;
    assert!(running.metrics.is_ready());
    let ids: Vec<String> = lunary_events(&lunary.requests())
        .iter()
        .map(request_id_of)
        .collect();
    assert_eq!(ids, ["before", "after"]);
    running.stop().await;
}

/// Log lines captured by a test subscriber.
#[derive(Clone, Default)]
struct CapturedLogs(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for CapturedLogs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn logs_never_contain_the_api_key_or_the_redis_password() {
    let logs = CapturedLogs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let lunary = MockLunary::start().await.unwrap();
    lunary.respond_with([503, 400]);
    let stream = unique_key("secrets");
    // A Redis URL with a password, on a closed port: the failure is logged, the password is not.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let with_password = format!("redis://:redis-pw-secret@127.0.0.1:{port}/");
    let unreachable = start(config_with(
        "redis-streams",
        &with_password,
        Service::Lunary,
        &lunary.url(),
        &stream,
        "d1",
        10,
    ))
    .await;
    wait_until("a Redis failure", || {
        unreachable.metrics.redis_errors.get() >= 1
    })
    .await;
    unreachable.stop().await;

    let running = start(config(Service::Lunary, &lunary.url(), &stream, "d1", 10)).await;
    publish(&stream, [chat_event("secret-test", "x")]).await;
    wait_until("permanent failure after a retry", || {
        running.metrics.permanent_failures.get() == 1
    })
    .await;
    running.stop().await;

    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        text.contains("backend send failed"),
        "the retry was logged: {text}"
    );
    assert!(
        text.contains("backend refused events"),
        "the refusal was logged: {text}"
    );
    assert!(!text.contains("test-api-key"), "{text}");
    assert!(!text.contains("redis-pw-secret"), "{text}");
}
