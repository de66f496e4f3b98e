//! The main happy path on PostgreSQL (`LLM_PROXY_TEST_DATABASE_URL`, provided by
//! `scripts/test-services.sh`; the test fails, never skips, when it is unset).

// Test helpers outside #[test] functions fail loudly on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{CHAT_BODY, CHAT_STREAM_BODY, Harness, Options, PROVIDER_KEY};
use llm_proxy_mocks::openai::SSE_DONE;
use sqlx::Connection as _;

async fn fresh_database() -> String {
    let admin_url = std::env::var("LLM_PROXY_TEST_DATABASE_URL")
        .expect("LLM_PROXY_TEST_DATABASE_URL must be set: run through scripts/test-services.sh");
    let name = format!("proxy_test_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::postgres::PgConnection::connect(&admin_url)
        .await
        .unwrap();
    // The name is generated above from a UUID: no injection possible.
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .unwrap();
    admin.close().await.unwrap();
    let (base, _) = admin_url.rsplit_once('/').unwrap();
    format!("{base}/{name}")
}

#[tokio::test]
async fn proxying_works_on_postgres() {
    let h = Harness::with(Options {
        postgres_url: Some(fresh_database().await),
        ..Options::default()
    })
    .await;
    let limited = h.token(Some(2), None).await;
    let reply = h.chat(&limited, CHAT_BODY).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        h.mock.requests()[0].headers["authorization"],
        format!("Bearer {PROVIDER_KEY}").as_str()
    );
    let stream = h.chat(&limited, CHAT_STREAM_BODY).await;
    assert!(String::from_utf8_lossy(&stream.body).ends_with(SSE_DONE));
    h.chat(&limited, CHAT_BODY)
        .await
        .assert_error(429, "rate_limit_exceeded");
    let unlimited = h.token(None, None).await;
    assert_eq!(h.chat(&unlimited, CHAT_BODY).await.status, 200);
    let (unknown, _) = llm_proxy_store::generate_token();
    h.chat(&unknown, CHAT_BODY)
        .await
        .assert_error(401, "token_not_found");
}
