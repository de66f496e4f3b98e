//! Slow and hostile clients, at small scale, against the real router and its connection handling
//! (`llm_proxy::connections`): trickling bodies without a token take no admission slot, a body that
//! does not arrive is 408, connections that send no headers are closed, and connections beyond the
//! cap are refused with a clear answer — while normal traffic is still served — and request heads the
//! HTTP parser refuses get JSON errors too.

// Test helpers outside #[test] functions fail loudly on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{CHAT_BODY, Harness, Options};
use llm_proxy_env as env;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest wait for something the proxy must do by itself (a failure guard, not a measurement).
const GUARD: Duration = Duration::from_secs(15);

async fn harness(vars: &[(&'static str, &str)]) -> Harness {
    Harness::with(Options {
        env: vars.iter().map(|(k, v)| (*k, (*v).to_owned())).collect(),
        ..Options::default()
    })
    .await
}

/// A connection that has sent the head of a chat request announcing a body it never sends.
async fn trickling_body(h: &Harness, authorization: Option<&str>) -> TcpStream {
    let mut stream = TcpStream::connect(h.addr).await.unwrap();
    let auth = authorization
        .map(|value| format!("authorization: {value}\r\n"))
        .unwrap_or_default();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: proxy\r\ncontent-type: application/json\r\n\
         {auth}content-length: 100000\r\n\r\n{{\"model\":"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream
}

/// Everything the proxy sends on `stream` until it closes it (fails after [`GUARD`]).
async fn read_until_closed(stream: &mut TcpStream) -> String {
    let mut received = Vec::new();
    tokio::time::timeout(GUARD, stream.read_to_end(&mut received))
        .await
        .expect("the proxy closes the connection")
        .unwrap_or_default();
    String::from_utf8_lossy(&received).into_owned()
}

#[tokio::test]
async fn unauthenticated_trickling_bodies_take_no_admission_slot() {
    let h = harness(&[(env::MAX_CONCURRENT_REQUESTS, "3")]).await;
    let token = h.token(None, None).await;
    let mut tricklers = Vec::new();
    for authorization in [None, Some("Bearer sk-llmp_not-a-token"), Some("Basic abc")] {
        for _ in 0..3 {
            tricklers.push(trickling_body(&h, authorization).await);
        }
    }
    // Each gets its 401 without the body being read.
    for stream in &mut tricklers {
        let mut head = [0_u8; 12];
        tokio::time::timeout(GUARD, stream.read_exact(&mut head))
            .await
            .expect("an answer before the body")
            .unwrap();
        assert_eq!(&head, b"HTTP/1.1 401");
    }
    for _ in 0..5 {
        let reply = h.chat(&token, CHAT_BODY).await;
        assert_eq!(
            reply.status,
            200,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
    }
    drop(tricklers);
}

#[tokio::test]
async fn an_authenticated_body_that_does_not_arrive_is_408_and_frees_its_slot() {
    let h = harness(&[
        (env::MAX_CONCURRENT_REQUESTS, "1"),
        (env::LLM_PROXY_BODY_READ_TIMEOUT, "300ms"),
    ])
    .await;
    let token = h.token(None, None).await;
    let mut stream = trickling_body(&h, Some(&format!("Bearer {token}"))).await;
    let answer = read_until_closed(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.contains("\"code\":\"request_body_timeout\""),
        "{answer}"
    );
    assert!(h.mock.requests().is_empty(), "nothing reached the upstream");
    // The one slot is free again.
    assert_eq!(h.chat(&token, CHAT_BODY).await.status, 200);
}

#[tokio::test]
async fn connections_that_send_no_complete_head_are_closed() {
    let h = harness(&[(env::LLM_PROXY_HEADER_READ_TIMEOUT, "300ms")]).await;
    // Nothing at all (the protocol is never known).
    let mut silent = TcpStream::connect(h.addr).await.unwrap();
    // Half a head.
    let mut half = TcpStream::connect(h.addr).await.unwrap();
    half.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nhost: proxy\r\n")
        .await
        .unwrap();
    // A complete exchange, then an idle keep-alive connection.
    let mut idle = TcpStream::connect(h.addr).await.unwrap();
    idle.write_all(b"GET /health HTTP/1.1\r\nhost: proxy\r\n\r\n")
        .await
        .unwrap();
    for stream in [&mut silent, &mut half] {
        let answer = read_until_closed(stream).await;
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
            "{answer}"
        );
    }
    let answer = read_until_closed(&mut idle).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(answer.matches("HTTP/1.1").count(), 1);
}

#[tokio::test]
async fn connections_beyond_the_cap_are_refused_and_normal_traffic_is_served_again() {
    let h = harness(&[
        (env::LLM_PROXY_MAX_CONNECTIONS, "4"),
        (env::LLM_PROXY_HEADER_READ_TIMEOUT, "500ms"),
    ])
    .await;
    let token = h.token(None, None).await;
    // Four tricklers hold every connection slot until the header timeout closes them.
    let mut tricklers = Vec::new();
    for _ in 0..4 {
        let mut stream = TcpStream::connect(h.addr).await.unwrap();
        stream.write_all(b"POST /v1/chat").await.unwrap();
        tricklers.push(stream);
    }
    let mut refused = String::new();
    let deadline = tokio::time::Instant::now() + GUARD;
    while refused.is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "never refused");
        let mut extra = TcpStream::connect(h.addr).await.unwrap();
        let answer = read_until_closed(&mut extra).await;
        if answer.contains("too_many_connections") {
            refused = answer;
        }
    }
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    let metrics = h.metrics.encode().unwrap();
    assert!(
        metrics.lines().any(
            |l| l.starts_with("llm_proxy_client_connections_refused_total") && !l.ends_with(" 0")
        ),
        "{metrics}"
    );
    // The tricklers are cut by the header timeout; normal requests are served again.
    for stream in &mut tricklers {
        read_until_closed(stream).await;
    }
    let deadline = tokio::time::Instant::now() + GUARD;
    loop {
        let mut probe = TcpStream::connect(h.addr).await.unwrap();
        probe
            .write_all(b"GET /health HTTP/1.1\r\nhost: proxy\r\nconnection: close\r\n\r\n")
            .await
            .ok();
        if read_until_closed(&mut probe)
            .await
            .starts_with("HTTP/1.1 200")
        {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never served again");
    }
    assert_eq!(h.chat(&token, CHAT_BODY).await.status, 200);
}

#[tokio::test]
async fn request_heads_the_parser_refuses_get_json_errors() {
    let h = harness(&[]).await;
    // More header lines than the parser takes (a small request, read whole, so closing the
    // connection does not reset it before the answer is read).
    let headers: String = (0..150).map(|i| format!("x-h{i}: v\r\n")).collect();
    let oversized = format!("GET /health HTTP/1.1\r\nhost: proxy\r\n{headers}\r\n");
    let cases = [
        (b"GARBAGE\r\n\r\n".to_vec(), "HTTP/1.1 400", "bad_request"),
        (
            b"GET /health HTTP/1.1\r\nbad header line\r\n\r\n".to_vec(),
            "HTTP/1.1 400",
            "bad_request",
        ),
        (
            oversized.into_bytes(),
            "HTTP/1.1 431",
            "request_header_too_large",
        ),
    ];
    for (request, status, code) in cases {
        let mut stream = TcpStream::connect(h.addr).await.unwrap();
        // The proxy may answer and close before it has read everything.
        let _ = stream.write_all(&request).await;
        let answer = read_until_closed(&mut stream).await;
        assert!(answer.starts_with(status), "{answer}");
        assert!(
            answer.contains("content-type: application/json"),
            "{answer}"
        );
        let body = answer
            .split_once("\r\n\r\n")
            .map(|(_, body)| body)
            .unwrap_or_default();
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["code"], code, "{answer}");
    }
}
