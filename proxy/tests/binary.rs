//! The real `llm-proxy` binary: configuration errors, secrets kept out of logs, graceful shutdown.

// Test helpers outside #[test] functions fail loudly on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{CHAT_BODY, CHAT_STREAM_BODY, MANAGEMENT_TOKEN, PROVIDER_KEY, TempDir};
use http::Request;
use http_body_util::{BodyExt, Full};
use llm_proxy_env as env;
use llm_proxy_mocks::openai::{Behaviour, MockOpenAi, SSE_DONE};
use tokio::process::Command;

/// Runs the binary to completion and returns (exit code, stderr).
async fn run_to_exit(mut command: Command) -> (Option<i32>, String) {
    let output = tokio::time::timeout(Duration::from_secs(20), command.output())
        .await
        .expect("the binary exits")
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn configuration_errors_name_the_variable_and_exit_2() {
    let dir = TempDir::new();
    // (variables, expected message, secret that must not be echoed)
    type Case = (
        Vec<(&'static str, &'static str)>,
        &'static str,
        Option<&'static str>,
    );
    let cases: Vec<Case> = vec![
        (
            vec![(env::MANAGEMENT_TOKEN, "")],
            "MANAGEMENT_TOKEN is required",
            None,
        ),
        (vec![(env::DB_DRIVER, "mysql")], "DB_DRIVER=\"mysql\"", None),
        (
            vec![(env::DB_DRIVER, "postgres")],
            "DATABASE_URL is required",
            None,
        ),
        (
            vec![(env::REQUIRE_ENCRYPTION_KEY, "true")],
            "ENCRYPTION_KEY is required",
            None,
        ),
        (
            vec![(env::ENCRYPTION_KEY, "c2VjcmV0LWJ1dC1zaG9ydA==")],
            "ENCRYPTION_KEY",
            Some("c2VjcmV0LWJ1dC1zaG9ydA=="),
        ),
        (
            vec![(env::LISTEN_ADDR, "nowhere")],
            "LISTEN_ADDR=\"nowhere\"",
            None,
        ),
        (
            vec![(env::REQUEST_TIMEOUT, "30")],
            "REQUEST_TIMEOUT=\"30\"",
            None,
        ),
        (vec![(env::LOG_FORMAT, "xml")], "LOG_FORMAT=\"xml\"", None),
    ];
    for (vars, expected, secret) in cases {
        let mut command = common::proxy_command(&dir);
        for (name, value) in &vars {
            command.env(name, value);
        }
        let (code, stderr) = run_to_exit(command).await;
        assert_eq!(code, Some(2), "{vars:?}: {stderr}");
        assert!(stderr.contains(expected), "{vars:?}: {stderr}");
        if let Some(secret) = secret {
            assert!(!stderr.contains(secret), "secret echoed: {stderr}");
        }
    }
    let mut invalid_yaml = common::proxy_command(&dir);
    let path = dir.0.join("providers.yaml");
    std::fs::write(
        &path,
        "apis: {openai: {base_url: https://x, allowed_endpoints: [], allowed_methods: [GET]}}",
    )
    .unwrap();
    invalid_yaml.env(env::API_CONFIG_PATH, &path);
    let (code, stderr) = run_to_exit(invalid_yaml).await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("allowed_endpoints must not be empty"),
        "{stderr}"
    );
}

#[tokio::test]
async fn version_subcommand_prints_the_version() {
    let dir = TempDir::new();
    let mut command = common::proxy_command(&dir);
    command.arg("version");
    let output = command.output().await.unwrap();
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains(env!("CARGO_PKG_VERSION")));
}

#[tokio::test]
async fn migrate_up_and_status() {
    let dir = TempDir::new();
    let mut up = common::proxy_command(&dir);
    up.args(["migrate", "up"]);
    let output = up.output().await.unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut status = common::proxy_command(&dir);
    status.args(["migrate", "status"]);
    let output = status.output().await.unwrap();
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("applied") && !text.contains("pending"),
        "{text}"
    );
}

/// A `/v1/chat/completions` request of `CHAT_BODY` with `token`.
fn chat_request(addr: &str, token: &str) -> Request<Full<Bytes>> {
    Request::post(format!("http://{addr}/v1/chat/completions"))
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(CHAT_BODY.as_bytes())))
        .unwrap()
}

async fn seed(dir: &TempDir, max_requests: Option<i64>) -> String {
    let (store, project) = common::seed_sqlite_project(dir).await;
    common::issue_token(store.as_ref(), &project.id, max_requests, None).await
}

#[tokio::test]
async fn logs_never_contain_tokens_or_keys() {
    let dir = TempDir::new();
    let mock = MockOpenAi::start().await.unwrap();
    let token = seed(&dir, Some(1)).await;
    let running = common::start_binary(&dir, &[(env::OPENAI_API_URL, mock.url())]).await;
    let client = common::http_client();
    let url = format!(
        "http://{}/v1/chat/completions?api_key={token}",
        running.addr
    );
    for _ in 0..3 {
        let reply = common::send(
            &client,
            Request::post(url.as_str())
                .header("authorization", format!("Bearer {token}"))
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from_static(CHAT_BODY.as_bytes())))
                .unwrap(),
        )
        .await;
        assert!(reply.status == 200 || reply.status == 429);
    }
    let manage = common::send(
        &client,
        Request::get(format!("http://{}/manage/projects", running.addr))
            .header("authorization", format!("Bearer {MANAGEMENT_TOKEN}"))
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await;
    assert_eq!(manage.status, 200);
    let audit_log = dir.0.join("audit.log");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let audit = std::fs::read_to_string(&audit_log).unwrap_or_default();
        if audit.contains("project.list") {
            assert!(audit.contains("\"client_ip\":\"127.0.0.1\""), "{audit}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no audit record of the management call"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut logs = running.logs.clone();
    let all = tokio::time::timeout(
        Duration::from_secs(5),
        logs.wait_for(|all| all.matches("\"message\":\"request\"").count() >= 3),
    )
    .await
    .expect("three request log lines")
    .unwrap()
    .clone();
    for secret in [token.as_str(), MANAGEMENT_TOKEN, PROVIDER_KEY] {
        assert!(!all.contains(secret), "secret in logs:\n{all}");
    }
    let request_line = all
        .lines()
        .find(|l| l.contains("\"message\":\"request\""))
        .unwrap();
    let json: serde_json::Value = serde_json::from_str(request_line).unwrap();
    assert_eq!(
        json["path"], "/v1/chat/completions",
        "no query string in the log"
    );
    for field in ["request_id", "method", "status", "duration_ms"] {
        assert!(json.get(field).is_some(), "{field} missing: {request_line}");
    }
}

#[tokio::test]
async fn sigterm_lets_an_in_flight_stream_finish() {
    let dir = TempDir::new();
    let mock = MockOpenAi::start().await.unwrap();
    mock.set_behaviour(Behaviour {
        stream_chunks: 8,
        chunk_interval: Duration::from_millis(150),
        ..Behaviour::default()
    });
    let token = seed(&dir, None).await;
    let mut running = common::start_binary(
        &dir,
        &[
            (env::OPENAI_API_URL, mock.url()),
            (env::SHUTDOWN_TIMEOUT, "20s".into()),
        ],
    )
    .await;
    let client = common::http_client();
    let response = client
        .request(
            Request::post(format!("http://{}/v1/chat/completions", running.addr))
                .header("authorization", format!("Bearer {token}"))
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from_static(CHAT_STREAM_BODY.as_bytes())))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut received = Vec::new();
    let first = tokio::time::timeout(Duration::from_secs(5), body.frame())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    received.extend_from_slice(first.data_ref().unwrap());
    let pid = running.child.id().unwrap();
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let mut logs = running.logs.clone();
    tokio::time::timeout(
        Duration::from_secs(5),
        logs.wait_for(|all| all.contains("shutting down")),
    )
    .await
    .expect("shutdown starts")
    .unwrap();
    while let Some(frame) = tokio::time::timeout(Duration::from_secs(5), body.frame())
        .await
        .unwrap()
    {
        if let Ok(data) = frame.unwrap().into_data() {
            received.extend_from_slice(&data);
        }
    }
    assert!(
        String::from_utf8_lossy(&received).ends_with(SSE_DONE),
        "the stream was cut by the shutdown"
    );
    let status = tokio::time::timeout(Duration::from_secs(10), running.child.wait())
        .await
        .expect("the process exits")
        .unwrap();
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn text_logs_are_human_text_in_the_log_file() {
    let dir = TempDir::new();
    let log_file = dir.0.join("proxy.log");
    let mut command = common::proxy_command(&dir);
    command
        .env(env::LOG_FORMAT, "text")
        .env(env::LOG_FILE, &log_file);
    let mut child = command.spawn().unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let text = loop {
        let text = std::fs::read_to_string(&log_file).unwrap_or_default();
        if text.contains("llm-proxy listening") {
            break text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no start-up line in {log_file:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    child.kill().await.unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("llm-proxy listening"))
        .unwrap();
    assert!(
        !line.trim_start().starts_with('{'),
        "text format wrote JSON: {line}"
    );
    assert!(
        line.contains("INFO") && line.contains("addr=127.0.0.1:"),
        "{line}"
    );
}

#[tokio::test]
async fn events_reach_the_redis_stream() {
    let dir = TempDir::new();
    let mock = MockOpenAi::start().await.unwrap();
    let token = seed(&dir, None).await;
    let (redis_url, stream_key, vars) = common::redis_stream_env(&mock);
    let mut running = common::start_binary(&dir, &vars).await;
    let reply = common::send(&common::http_client(), chat_request(&running.addr, &token)).await;
    assert_eq!(reply.status, 200);
    let request_id = reply.headers["x-request-id"].to_str().unwrap().to_owned();

    let events = common::stream_events(&redis_url, &stream_key, 1).await;
    let data = &events[0];
    let event: serde_json::Value = serde_json::from_str(data).unwrap();
    assert_eq!(event["RequestID"], request_id.as_str());
    assert_eq!(event["Status"], 200);
    assert!(
        !data.contains(&token) && !data.contains(PROVIDER_KEY),
        "secrets in the event"
    );
    running.child.kill().await.unwrap();
}

#[tokio::test]
async fn dispatcher_subcommand_rejects_a_missing_api_key_with_exit_2() {
    let dir = TempDir::new();
    let mut command = common::proxy_command(&dir);
    command
        .args(["dispatcher", "--service", "lunary"])
        .env(env::LLM_PROXY_EVENT_BUS, "redis-streams");
    let (code, stderr) = run_to_exit(command).await;
    assert_eq!(code, Some(2), "stderr: {stderr}");
    assert!(
        stderr.contains(env::LLM_PROXY_API_KEY) && stderr.contains("lunary"),
        "stderr: {stderr}"
    );
}

#[tokio::test]
async fn dispatcher_subcommand_serves_health_and_stops_on_sigterm() {
    let redis_url = std::env::var("LLM_PROXY_TEST_REDIS_URL")
        .expect("LLM_PROXY_TEST_REDIS_URL must be set: run through scripts/test-services.sh");
    let dir = TempDir::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut command = common::proxy_command(&dir);
    command
        .args(["dispatcher", "--service", "file", "--health-addr"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--endpoint")
        .arg(dir.0.join("events.jsonl"))
        .env(env::LLM_PROXY_EVENT_BUS, "redis-streams")
        .env(env::REDIS_URL, &redis_url)
        .env(
            env::REDIS_STREAM_KEY,
            format!("dispatcher-binary-{}", uuid::Uuid::new_v4()),
        );
    let mut child = command.spawn().unwrap();
    let client = common::http_client();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let request = Request::get(format!("http://127.0.0.1:{port}/health"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        if let Ok(Ok(response)) =
            tokio::time::timeout(Duration::from_secs(1), client.request(request)).await
            && response.status() == 200
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the dispatcher never answered /health"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pid = child.id().unwrap();
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("the dispatcher stops after SIGTERM")
        .unwrap();
    assert!(status.success(), "exit status {status:?}");
}

/// Events published to the stream so far, by request id.
async fn stream_request_ids(redis_url: &str, stream_key: &str) -> Vec<String> {
    common::stream_data(redis_url, stream_key)
        .await
        .iter()
        .filter_map(|data| serde_json::from_str::<serde_json::Value>(data).ok())
        .filter_map(|event| event["RequestID"].as_str().map(str::to_owned))
        .collect()
}

async fn ready_checks(addr: &str) -> serde_json::Value {
    let reply = common::send(
        &common::http_client(),
        Request::get(format!("http://{addr}/ready"))
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await;
    assert_eq!(reply.status, 200, "Redis never makes the proxy unready");
    serde_json::from_slice::<serde_json::Value>(&reply.body).unwrap()["checks"].clone()
}

#[tokio::test]
async fn a_redis_restart_keeps_the_proxy_serving_and_the_buffered_events_arrive() {
    let mut redis = llm_proxy_mocks::redis_server::PrivateRedis::start_on_free_port()
        .await
        .unwrap();
    let redis_url = redis.url();
    let stream_key = format!("proxy-restart-test-{}", uuid::Uuid::new_v4());
    let dir = TempDir::new();
    let mock = MockOpenAi::start().await.unwrap();
    let token = seed(&dir, None).await;
    let mut running = common::start_binary(
        &dir,
        &[
            (env::OPENAI_API_URL, mock.url()),
            (env::LLM_PROXY_EVENT_BUS, "redis".into()),
            (env::REDIS_URL, redis_url.clone()),
            (env::REDIS_STREAM_KEY, stream_key.clone()),
        ],
    )
    .await;
    let client = common::http_client();
    let chat = || common::send(&client, chat_request(&running.addr, &token));
    let request_id =
        |reply: &common::Reply| reply.headers["x-request-id"].to_str().unwrap().to_owned();
    let deadline = || tokio::time::Instant::now() + Duration::from_secs(20);

    let before = chat().await;
    assert_eq!(before.status, 200);
    let first = request_id(&before);
    let until = deadline();
    while !stream_request_ids(&redis_url, &stream_key)
        .await
        .contains(&first)
    {
        assert!(
            tokio::time::Instant::now() < until,
            "the first event never arrived"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    redis.kill();
    let mut during = Vec::new();
    for _ in 0..3 {
        let reply = chat().await;
        assert_eq!(
            reply.status, 200,
            "a Redis outage never fails a /v1 request"
        );
        during.push(request_id(&reply));
    }
    let until = deadline();
    while ready_checks(&running.addr).await["event_bus"] != "degraded" {
        assert!(
            tokio::time::Instant::now() < until,
            "/ready never reported the event bus degraded"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    redis.restart().await.unwrap();
    let until = deadline();
    loop {
        let seen = stream_request_ids(&redis_url, &stream_key).await;
        if during.iter().all(|id| seen.contains(id)) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "events buffered during the outage never arrived: {seen:?} vs {during:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(ready_checks(&running.addr).await["event_bus"], "ok");
    running.child.kill().await.unwrap();
}

#[tokio::test]
async fn events_spooled_while_redis_was_down_are_replayed_by_the_next_proxy_process() {
    let mut redis = llm_proxy_mocks::redis_server::PrivateRedis::start_on_free_port()
        .await
        .unwrap();
    let redis_url = redis.url();
    redis.kill();
    let stream_key = format!("proxy-spool-test-{}", uuid::Uuid::new_v4());
    let dir = TempDir::new();
    let mock = MockOpenAi::start().await.unwrap();
    let token = seed(&dir, None).await;
    let vars = [
        (env::OPENAI_API_URL, mock.url()),
        (env::LLM_PROXY_EVENT_BUS, "redis".into()),
        (env::REDIS_URL, redis_url.clone()),
        (env::REDIS_STREAM_KEY, stream_key.clone()),
    ];
    let mut running = common::start_binary(&dir, &vars).await;
    let client = common::http_client();
    let mut sent = Vec::new();
    for _ in 0..5 {
        let reply = common::send(&client, chat_request(&running.addr, &token)).await;
        assert_eq!(reply.status, 200);
        sent.push(reply.headers["x-request-id"].to_str().unwrap().to_owned());
    }
    let spool = dir.0.join("event-spool.jsonl");
    let until = tokio::time::Instant::now() + Duration::from_secs(20);
    while std::fs::read_to_string(&spool)
        .unwrap_or_default()
        .lines()
        .count()
        < sent.len()
    {
        assert!(
            tokio::time::Instant::now() < until,
            "the events never reached the spool"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(ready_checks(&running.addr).await["event_bus"], "degraded");
    let pid = running.child.id().unwrap();
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    tokio::time::timeout(Duration::from_secs(20), running.child.wait())
        .await
        .expect("the proxy stops after SIGTERM")
        .unwrap();

    redis.restart().await.unwrap();
    let mut restarted = common::start_binary(&dir, &vars).await;
    let until = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let seen = stream_request_ids(&redis_url, &stream_key).await;
        if seen.len() >= sent.len() {
            assert_eq!(seen[..sent.len()], sent[..], "replayed in publish order");
            break;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "the spooled events never arrived: {seen:?} vs {sent:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    restarted.child.kill().await.unwrap();
}
