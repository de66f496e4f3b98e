//! The client-token error table, quota atomicity and revocation, through HTTP.

// Test helpers outside #[test] functions fail loudly on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use common::{CHAT_BODY, Harness, PROVIDER_KEY};
use http::{Method, Request};
use http_body_util::Full;

async fn with_authorization(h: &Harness, authorization: Option<&str>) -> common::Reply {
    let mut builder =
        Request::post(h.url("/v1/chat/completions")).header("content-type", "application/json");
    if let Some(value) = authorization {
        builder = builder.header("authorization", value);
    }
    h.send(
        builder
            .body(Full::new(Bytes::from_static(CHAT_BODY.as_bytes())))
            .unwrap(),
    )
    .await
}

#[tokio::test]
async fn a_valid_token_is_proxied_with_the_provider_key() {
    let h = Harness::start().await;
    let token = h.token(None, None).await;
    let reply = h.chat(&token, CHAT_BODY).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, llm_proxy_mocks::openai::chat_completion());
    let received = h.mock.requests();
    assert_eq!(received.len(), 1);
    let upstream = &received[0];
    assert_eq!(
        upstream.headers["authorization"],
        format!("Bearer {PROVIDER_KEY}").as_str()
    );
    for (name, value) in upstream.headers.iter() {
        assert!(
            !value
                .as_bytes()
                .windows(token.len())
                .any(|w| w == token.as_bytes()),
            "client token forwarded in {name}"
        );
    }
    assert_eq!(upstream.body, CHAT_BODY);
    assert_eq!(upstream.headers["x-proxy-id"], h.project.id.as_str());
    assert_eq!(
        upstream.headers["x-request-id"],
        reply.headers["x-request-id"]
    );
}

#[tokio::test]
async fn missing_and_malformed_authorization_is_401_invalid_token() {
    let h = Harness::start().await;
    let valid = h.token(None, None).await;
    let missing = with_authorization(&h, None).await;
    missing.assert_error(401, "invalid_token");
    assert_eq!(
        missing.json()["description"],
        "missing or invalid authorization header"
    );
    for header in [
        "Basic abc",
        "Bearer",
        "Bearer   ",
        &valid.clone(),
        &format!("Token {valid}"),
    ] {
        with_authorization(&h, Some(header))
            .await
            .assert_error(401, "invalid_token");
    }
    let shapes = [
        "sk-short".to_owned(),
        format!("{valid}x"),
        format!("tkn_{}", &valid[3..]),
        format!("sk-{}", "!".repeat(22)),
        format!("sk-{}", "A".repeat(22)),
        "sk-AAAAAAAAAAAAAAAAAAAAAA".to_owned(),
    ];
    for shape in shapes {
        let reply = with_authorization(&h, Some(&format!("Bearer {shape}"))).await;
        reply.assert_error(401, "invalid_token");
        assert_eq!(
            reply.json()["description"],
            "invalid token format",
            "{shape}"
        );
    }
    // A header value that is not visible ASCII cannot hold a token: refused as a malformed header.
    let non_ascii = Request::post(h.url("/v1/chat/completions"))
        .header(
            "authorization",
            http::HeaderValue::from_bytes("Bearer sk-ünïcödé-tökén".as_bytes()).unwrap(),
        )
        .body(Full::new(Bytes::from_static(CHAT_BODY.as_bytes())))
        .unwrap();
    h.send(non_ascii).await.assert_error(401, "invalid_token");
    let lower = with_authorization(&h, Some(&format!("bearer {valid}"))).await;
    assert_eq!(lower.status, 200, "the scheme is case-insensitive");
    assert_eq!(
        h.mock.requests().len(),
        1,
        "only the valid request reached the upstream"
    );
}

#[tokio::test]
async fn unknown_token_is_401_token_not_found() {
    let h = Harness::start().await;
    let unknown = llm_proxy_store::generate_token().unwrap();
    h.chat(&unknown, CHAT_BODY)
        .await
        .assert_error(401, "token_not_found");
}

#[tokio::test]
async fn an_unknown_token_is_remembered_until_the_management_api_touches_it() {
    let h = Harness::start().await;
    let token = llm_proxy_store::generate_token().unwrap();
    let id = uuid::Uuid::now_v7();
    h.chat(&token, CHAT_BODY)
        .await
        .assert_error(401, "token_not_found");
    // Created behind the proxy's back: still answered from the negative cache ...
    h.store
        .create_token(llm_proxy_store::NewToken {
            id,
            token_hash: llm_proxy_store::hash_token(&token),
            project_id: h.project.id.clone(),
            expires_at: None,
            max_requests: None,
        })
        .await
        .unwrap();
    h.chat(&token, CHAT_BODY)
        .await
        .assert_error(401, "token_not_found");
    // ... until a change through /manage clears its hash (creation does the same).
    let patched = h
        .manage(
            Method::PATCH,
            &format!("/manage/tokens/{id}"),
            Some(r#"{"max_requests":0}"#),
        )
        .await;
    assert_eq!(patched.status, 200, "{:?}", patched.body);
    assert_eq!(h.chat(&token, CHAT_BODY).await.status, 200);
}

#[tokio::test]
async fn expired_token_is_401_token_expired() {
    let h = Harness::start().await;
    let expired = h
        .token(None, Some(Utc::now() - chrono::Duration::minutes(1)))
        .await;
    h.chat(&expired, CHAT_BODY)
        .await
        .assert_error(401, "token_expired");
    let expired_limited = h
        .token(Some(10), Some(Utc::now() - chrono::Duration::minutes(1)))
        .await;
    h.chat(&expired_limited, CHAT_BODY)
        .await
        .assert_error(401, "token_expired");
    assert!(h.mock.requests().is_empty());
}

#[tokio::test]
async fn exhausted_quota_is_429_rate_limit_exceeded() {
    let h = Harness::start().await;
    let token = h.token(Some(2), None).await;
    assert_eq!(h.chat(&token, CHAT_BODY).await.status, 200);
    assert_eq!(h.chat(&token, CHAT_BODY).await.status, 200);
    h.chat(&token, CHAT_BODY)
        .await
        .assert_error(429, "rate_limit_exceeded");
    assert_eq!(h.mock.requests().len(), 2);
}

/// Sends `n` concurrent chat requests and returns their statuses.
async fn concurrent_chats(h: &Harness, token: &str, n: usize) -> Vec<u16> {
    let mut tasks = Vec::new();
    for _ in 0..n {
        let client = h.client.clone();
        let url = h.url("/v1/chat/completions");
        let token = token.to_owned();
        tasks.push(tokio::spawn(async move {
            common::send(
                &client,
                Request::post(url)
                    .header("authorization", format!("Bearer {token}"))
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from_static(CHAT_BODY.as_bytes())))
                    .unwrap(),
            )
            .await
            .status
            .as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    statuses
}

#[tokio::test]
async fn quota_is_atomic_under_concurrency() {
    let h = Harness::start().await;
    let token = h.token(Some(5), None).await;
    let statuses = concurrent_chats(&h, &token, 20).await;
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        5,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        15,
        "{statuses:?}"
    );
    assert_eq!(h.mock.requests().len(), 5);
}

/// Revokes `token` through `DELETE /manage/tokens/{id}`.
async fn revoke(h: &Harness, token: &str) {
    let hash = llm_proxy_store::hash_token(token);
    let record = h.store.token_by_hash(&hash).await.unwrap().unwrap();
    let revoked = h
        .manage(
            Method::DELETE,
            &format!("/manage/tokens/{}", record.id),
            None,
        )
        .await;
    assert_eq!(revoked.status, 204, "{:?}", revoked.body);
}

#[tokio::test]
async fn revocation_applies_to_the_next_request() {
    let h = Harness::start().await;
    for max_requests in [None, Some(100)] {
        let token = h.token(max_requests, None).await;
        assert_eq!(
            h.chat(&token, CHAT_BODY).await.status,
            200,
            "token cached by a first use"
        );
        revoke(&h, &token).await;
        h.chat(&token, CHAT_BODY)
            .await
            .assert_error(401, "token_inactive");
    }
}

#[tokio::test]
async fn tokens_in_use_are_told_apart_on_every_request() {
    // Each token's hash is remembered after its first use; a mix-up between two remembered
    // tokens would serve one with the other's record.
    let h = Harness::start().await;
    let kept = h.token(None, None).await;
    let revoked = h.token(Some(100), None).await;
    for token in [&kept, &revoked] {
        assert_eq!(h.chat(token, CHAT_BODY).await.status, 200);
    }
    revoke(&h, &revoked).await;
    for _ in 0..3 {
        assert_eq!(h.chat(&kept, CHAT_BODY).await.status, 200);
        h.chat(&revoked, CHAT_BODY)
            .await
            .assert_error(401, "token_inactive");
    }
}

/// Serves 4 bursts of 16 on a hot limited token; checks that the database counts at most two
/// chunks reserved ahead and that `/manage` shows exactly the requests admitted. Returns the
/// token's hash and the requests served.
async fn hot_limited_token(h: &Harness) -> (llm_proxy_store::TokenHash, i64) {
    let token = h.token(Some(1_000), None).await;
    let mut served = 0;
    for _ in 0..4 {
        let statuses = concurrent_chats(h, &token, 16).await;
        assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
        served += statuses.len();
    }
    assert_eq!(h.mock.requests().len(), served);
    let served = served as i64;
    let hash = llm_proxy_store::hash_token(&token);
    let counted = h.store.token_by_hash(&hash).await.unwrap().unwrap();
    // A chunk is at most an eighth of the quota not yet counted: two outstanding chunks stay
    // within a quarter of it.
    assert!(
        (served..=served + 1_000 / 4).contains(&counted.request_count),
        "at most two chunks reserved ahead: {}",
        counted.request_count
    );
    // `/manage` leaves this process's unserved reservation out; a reservation ahead still in
    // flight is in the database before it is in the lease, hence the (short) wait. Without the
    // correction the count would stay above `served` until the lease ends (60 s on SQLite).
    let path = format!("/manage/tokens/{}", counted.id);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let listed = h.manage(Method::GET, &path, None).await.json();
        if listed["request_count"] == served {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/manage shows {} requests for {served} served",
            listed["request_count"]
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (hash, served)
}

#[tokio::test]
async fn hot_limited_token_reservations_are_not_shown_as_used() {
    hot_limited_token(&Harness::start().await).await;
}

#[tokio::test]
async fn hot_limited_token_reservations_are_returned_on_a_shared_database() {
    let h = Harness::on_postgres().await;
    let (hash, served) = hot_limited_token(&h).await;
    // The lease ends 1 s after its last reservation on PostgreSQL (60 s on SQLite, the only
    // writer of its file); its unused part then goes back to the database.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let record = h.store.token_by_hash(&hash).await.unwrap().unwrap();
        if record.request_count == served {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "reservation not returned: {} counted for {served} served",
            record.request_count
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn management_changes_end_a_hot_lease_at_once() {
    let h = Harness::start().await;
    for change in ["revoke", "quota"] {
        let token = h.token(Some(1_000), None).await;
        for _ in 0..3 {
            let statuses = concurrent_chats(&h, &token, 16).await;
            assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
        }
        let hash = llm_proxy_store::hash_token(&token);
        let record = h.store.token_by_hash(&hash).await.unwrap().unwrap();
        let path = format!("/manage/tokens/{}", record.id);
        let (changed, status, code) = match change {
            "revoke" => (
                h.manage(Method::DELETE, &path, None).await,
                401,
                "token_inactive",
            ),
            _ => (
                h.manage(Method::PATCH, &path, Some(r#"{"max_requests":48}"#))
                    .await,
                429,
                "rate_limit_exceeded",
            ),
        };
        assert!(changed.status.is_success(), "{change}: {:?}", changed.body);
        h.chat(&token, CHAT_BODY).await.assert_error(status, code);
    }
    assert_eq!(h.mock.requests().len(), 2 * 48);
}

#[tokio::test]
async fn inactive_project_is_403_project_inactive() {
    let h = Harness::start().await;
    let unlimited = h.token(None, None).await;
    let limited = h.token(Some(10), None).await;
    assert_eq!(h.chat(&unlimited, CHAT_BODY).await.status, 200);
    let patched = h
        .manage(
            Method::PATCH,
            &format!("/manage/projects/{}", h.project.id),
            Some(r#"{"is_active":false}"#),
        )
        .await;
    assert_eq!(patched.status, 200, "{:?}", patched.body);
    h.chat(&unlimited, CHAT_BODY)
        .await
        .assert_error(403, "project_inactive");
    h.chat(&limited, CHAT_BODY)
        .await
        .assert_error(403, "project_inactive");
    assert_eq!(h.mock.requests().len(), 1);
    let query = llm_proxy_store::AuditQuery {
        action: Some("proxy_request".into()),
        project_id: Some(h.project.id.clone()),
        page: 1,
        page_size: 10,
        ..llm_proxy_store::AuditQuery::default()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let page = loop {
        let page = h.store.list_audit(&query).await.unwrap();
        if page.total_count >= 2 || tokio::time::Instant::now() > deadline {
            break page;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        page.total_count, 2,
        "one denied proxy_request audit event per refusal"
    );
    for event in &page.events {
        assert_eq!(event.outcome, llm_proxy_store::AuditOutcome::Denied);
        assert_eq!(event.reason.as_deref(), Some("project_inactive"));
        assert_eq!(event.client_ip.as_deref(), Some("127.0.0.1"));
        assert!(event.token_id.is_some());
    }
}

#[tokio::test]
async fn unlimited_usage_is_recorded_in_the_background() {
    let h = Harness::start().await;
    let token = h.token(None, None).await;
    for _ in 0..3 {
        assert_eq!(h.chat(&token, CHAT_BODY).await.status, 200);
    }
    let hash = llm_proxy_store::hash_token(&token);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let record = h.store.token_by_hash(&hash).await.unwrap().unwrap();
        if record.request_count == 3 {
            assert!(record.last_used_at.is_some());
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "usage not flushed: {}",
            record.request_count
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn token_errors_never_echo_the_token() {
    let h = Harness::start().await;
    let unknown = llm_proxy_store::generate_token().unwrap();
    let reply = h
        .send(
            common::request(Method::GET, &h.url("/v1/models"))
                .header("authorization", format!("Bearer {unknown}"))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await;
    reply.assert_error(401, "token_not_found");
    assert!(!String::from_utf8_lossy(&reply.body).contains(&unknown));
}

#[tokio::test]
async fn a_project_without_a_usable_key_is_503_upstream_auth_error() {
    let h = Harness::start().await;
    let project = h
        .store
        .create_project(llm_proxy_store::NewProject {
            name: "keyless".into(),
            api_key: llm_proxy_store::ProviderKey::new(""),
            rate_limits: Default::default(),
        })
        .await
        .unwrap();
    let token = common::issue_token(h.store.as_ref(), &project.id, None, None).await;
    let reply = h.chat(&token, CHAT_BODY).await;
    reply.assert_error(503, "upstream_auth_error");
    assert_eq!(
        reply.json()["description"],
        "failed to load upstream API key"
    );
    assert!(h.mock.requests().is_empty());
}
