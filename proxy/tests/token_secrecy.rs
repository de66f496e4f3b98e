//! A client token cannot be recovered from anything the proxy shows or keeps: the management API,
//! the audit trail, the events on the Redis stream, the database files and the logs. And the tokens
//! of earlier builds, whose management id revealed them, are refused and revoked.

// Test helpers outside #[test] functions fail loudly on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashSet;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use bytes::Bytes;
use common::{CHAT_BODY, MANAGEMENT_TOKEN, PROVIDER_KEY, Reply, TempDir};
use http::{Method, Request};
use http_body_util::Full;
use llm_proxy_env as env;
use llm_proxy_mocks::openai::MockOpenAi;
use llm_proxy_store::{NewToken, hash_token};
use serde_json::{Value, json};
use uuid::Uuid;

const TOKENS: usize = 60;

async fn call(addr: &str, method: Method, path: &str, auth: &str, body: Option<Value>) -> Reply {
    let mut request = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .header("authorization", format!("Bearer {auth}"));
    let body = match body {
        Some(json) => {
            request = request.header("content-type", "application/json");
            Bytes::from(json.to_string())
        }
        None => Bytes::new(),
    };
    common::send(
        &common::http_client(),
        request.body(Full::new(body)).unwrap(),
    )
    .await
}

fn text(reply: &Reply) -> String {
    String::from_utf8_lossy(&reply.body).into_owned()
}

/// Every UUID written anywhere in `haystack` (hyphenated or simple).
fn uuids_in(haystack: &str) -> Vec<Uuid> {
    let bytes = haystack.as_bytes();
    let mut found = Vec::new();
    for start in 0..bytes.len() {
        if !bytes[start].is_ascii_hexdigit() || (start > 0 && bytes[start - 1].is_ascii_hexdigit())
        {
            continue;
        }
        for len in [36, 32] {
            if let Some(uuid) = haystack
                .get(start..start + len)
                .and_then(|c| Uuid::try_parse(c).ok())
            {
                found.push(uuid);
            }
        }
    }
    found.sort();
    found.dedup();
    found
}

/// The ways an identifier could be turned into a token string, as the earlier builds did (and
/// their obvious variants).
fn derivations_of(id: Uuid) -> Vec<String> {
    let bytes = id.as_bytes();
    [
        URL_SAFE_NO_PAD.encode(bytes),
        URL_SAFE.encode(bytes),
        STANDARD.encode(bytes),
        id.simple().to_string(),
        id.hyphenated().to_string(),
    ]
    .into_iter()
    .flat_map(|encoded| {
        [
            format!("sk-{encoded}"),
            format!("sk-llmp_{encoded}"),
            encoded,
        ]
    })
    .collect()
}

#[tokio::test]
async fn no_field_anywhere_reveals_an_issued_token() {
    let dir = TempDir::new();
    let mock = MockOpenAi::start().await.unwrap();
    let (redis_url, stream_key, vars) = common::redis_stream_env(&mock);
    let mut running = common::start_binary(&dir, &vars).await;
    let addr = running.addr.clone();
    let manage = |method: Method, path: String, body: Option<Value>| {
        let addr = addr.clone();
        async move { call(&addr, method, &path, MANAGEMENT_TOKEN, body).await }
    };

    // Everything an observer could read, except the one response that shows each token.
    let mut shown = String::new();
    let project = manage(
        Method::POST,
        "/manage/projects".into(),
        Some(json!({"name": "secrecy", "api_key": PROVIDER_KEY})),
    )
    .await;
    assert_eq!(project.status, 201, "{}", text(&project));
    shown.push_str(&text(&project));
    let project_id = project.json()["id"].as_str().unwrap().to_owned();

    let mut issued: Vec<(String, String)> = Vec::new();
    for i in 0..TOKENS {
        let max_requests = if i % 2 == 0 { json!(100) } else { json!(null) };
        let created = manage(
            Method::POST,
            "/manage/tokens".into(),
            Some(json!({"project_id": project_id, "duration_minutes": 60, "max_requests": max_requests})),
        )
        .await;
        assert_eq!(created.status, 201, "{}", text(&created));
        let mut body = created.json();
        let token = body["token"].as_str().unwrap().to_owned();
        body.as_object_mut().unwrap().remove("token");
        shown.push_str(&body.to_string());
        let id = body["id"].as_str().unwrap().to_owned();
        issued.push((id, token));
    }
    for (_, token) in &issued {
        let reply = call(
            &running.addr,
            Method::POST,
            "/v1/chat/completions",
            token,
            Some(serde_json::from_str(CHAT_BODY).unwrap()),
        )
        .await;
        assert_eq!(reply.status, 200, "{}", text(&reply));
    }
    let (patched, deleted) = (&issued[0].0, &issued[1].0);
    let patch = manage(
        Method::PATCH,
        format!("/manage/tokens/{patched}"),
        Some(json!({"max_requests": 5})),
    )
    .await;
    assert_eq!(patch.status, 200, "{}", text(&patch));
    shown.push_str(&text(&patch));
    let delete = manage(Method::DELETE, format!("/manage/tokens/{deleted}"), None).await;
    assert_eq!(delete.status, 204);
    for (id, _) in &issued {
        let one = manage(Method::GET, format!("/manage/tokens/{id}"), None).await;
        assert_eq!(one.status, 200);
        shown.push_str(&text(&one));
    }
    let list = manage(Method::GET, "/manage/tokens".into(), None).await;
    assert_eq!(list.json().as_array().map(Vec::len), Some(TOKENS));
    shown.push_str(&text(&list));
    let revoke_all = manage(
        Method::POST,
        format!("/manage/projects/{project_id}/tokens/revoke"),
        None,
    )
    .await;
    assert_eq!(revoke_all.status, 200, "{}", text(&revoke_all));
    shown.push_str(&text(&revoke_all));

    // Events: one per /v1 request on the Redis stream.
    let events = common::stream_events(&redis_url, &stream_key, TOKENS).await;
    let mut event_ids = 0;
    for data in &events {
        let event: Value = serde_json::from_str(data).unwrap();
        event_ids += usize::from(event["TokenID"].as_str().is_some_and(|id| !id.is_empty()));
        shown.push_str(data);
    }
    assert!(event_ids >= TOKENS, "the events carry the token ids");

    // The audit trail, through the API (every page) and in its file.
    let mut audit_text = String::new();
    for page in 1.. {
        let audit = manage(
            Method::GET,
            format!("/manage/audit?page_size=100&page={page}"),
            None,
        )
        .await;
        assert_eq!(audit.status, 200, "{}", text(&audit));
        audit_text.push_str(&text(&audit));
        if audit.json()["pagination"]["has_next"] != true {
            break;
        }
    }
    assert!(
        issued
            .iter()
            .all(|(id, _)| audit_text.contains(id.as_str())),
        "the audit trail names every token by id"
    );
    shown.push_str(&audit_text);

    // Stop the proxy so the database files hold everything, then read them raw.
    running.child.kill().await.unwrap();
    let logs = running.logs.borrow().clone();
    assert!(
        logs.contains("\"message\":\"request\""),
        "request logs: {logs}"
    );
    shown.push_str(&logs);
    shown.push_str(&std::fs::read_to_string(dir.0.join("audit.log")).unwrap());
    for file in ["proxy.db", "proxy.db-wal"] {
        if let Ok(bytes) = std::fs::read(dir.0.join(file)) {
            shown.push_str(&String::from_utf8_lossy(&bytes));
        }
    }

    let identifiers = uuids_in(&shown);
    assert!(
        identifiers.len() > TOKENS,
        "ids found: {}",
        identifiers.len()
    );
    let derivable: HashSet<String> = identifiers
        .iter()
        .flat_map(|id| derivations_of(*id))
        .collect();
    // Every 12-character piece of every token's secret, looked for in one pass over everything shown.
    const PIECE: usize = 12;
    let mut pieces = HashSet::new();
    for (id, token) in &issued {
        assert!(
            identifiers.iter().any(|seen| seen.to_string() == *id),
            "{id} not seen"
        );
        assert!(
            !derivable.contains(token),
            "the token {id} is computable from an identifier"
        );
        let secret = &token.as_bytes()["sk-llmp_".len()..];
        pieces.extend(secret.windows(PIECE));
    }
    let readable = shown
        .as_bytes()
        .windows(PIECE)
        .filter(|w| pieces.contains(w))
        .count();
    assert_eq!(readable, 0, "pieces of tokens are readable somewhere");
}

#[tokio::test]
async fn tokens_of_earlier_builds_are_refused_and_revoked_while_upstream_tokens_keep_working() {
    let dir = TempDir::new();
    let (store, project) = common::seed_sqlite_project(&dir).await;
    let token_with = |id: Uuid, token: &str| NewToken {
        id,
        token_hash: hash_token(token),
        project_id: project.id.clone(),
        expires_at: Some(chrono::Utc::now() + chrono::Duration::hours(1)),
        max_requests: None,
    };
    // An earlier build of this project: the token is `sk-` + base64url of its own id.
    let earlier_id = Uuid::now_v7();
    let earlier = llm_proxy_store::derivable_token_of(earlier_id);
    store
        .create_token(token_with(earlier_id, &earlier))
        .await
        .unwrap();
    // The upstream proxy: the same shape, but the id is an independent random UUID.
    let upstream = format!("sk-{}", URL_SAFE_NO_PAD.encode(Uuid::now_v7().as_bytes()));
    let upstream_id = Uuid::new_v4();
    store
        .create_token(token_with(upstream_id, &upstream))
        .await
        .unwrap();
    drop(store);

    let mock = MockOpenAi::start().await.unwrap();
    let mut running = common::start_binary(&dir, &[(env::OPENAI_API_URL, mock.url())]).await;
    let chat = |token: String| {
        let addr = running.addr.clone();
        async move {
            let body = Some(serde_json::from_str(CHAT_BODY).unwrap());
            call(&addr, Method::POST, "/v1/chat/completions", &token, body).await
        }
    };
    chat(earlier.clone())
        .await
        .assert_error(401, "token_superseded");
    assert_eq!(chat(upstream.clone()).await.status, 200);

    let manage = |path: String| {
        let addr = running.addr.clone();
        async move { call(&addr, Method::GET, &path, MANAGEMENT_TOKEN, None).await }
    };
    let earlier_record = manage(format!("/manage/tokens/{earlier_id}")).await.json();
    assert_eq!(earlier_record["is_active"], false, "{earlier_record}");
    let upstream_record = manage(format!("/manage/tokens/{upstream_id}")).await.json();
    assert_eq!(upstream_record["is_active"], true, "{upstream_record}");
    let audit = manage("/manage/audit?action=token.revoke".into()).await;
    let audit = audit.json();
    let events = audit["events"].as_array().cloned().unwrap_or_default();
    assert!(
        events
            .iter()
            .any(|event| event["token_id"] == earlier_id.to_string() && event["actor"] == "system"),
        "{audit}"
    );
    let logs = running.logs.borrow().clone();
    assert!(
        logs.contains("revoked a token issued before the token-format change"),
        "{logs}"
    );
    assert!(!logs.contains(&earlier) && !logs.contains(&upstream));
    running.child.kill().await.unwrap();
}

#[tokio::test]
async fn a_mistyped_or_made_up_token_is_refused_as_malformed() {
    let dir = TempDir::new();
    let mock = MockOpenAi::start().await.unwrap();
    let mut running = common::start_binary(&dir, &[(env::OPENAI_API_URL, mock.url())]).await;
    let made_up = format!("sk-llmp_{}", "a".repeat(38));
    let mut mistyped = llm_proxy_store::generate_token().unwrap().into_bytes();
    mistyped[20] = if mistyped[20] == b'x' { b'y' } else { b'x' };
    for token in [made_up, String::from_utf8(mistyped).unwrap()] {
        let body = Some(serde_json::from_str(CHAT_BODY).unwrap());
        let reply = call(
            &running.addr,
            Method::POST,
            "/v1/chat/completions",
            &token,
            body,
        )
        .await;
        reply.assert_error(401, "invalid_token");
    }
    assert!(mock.requests().is_empty());
    running.child.kill().await.unwrap();
}
