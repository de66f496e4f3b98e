use std::sync::Arc;

use llm_proxy_operator::metrics::{self, Metrics};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    response
}

#[tokio::test]
async fn health_readiness_and_metrics_endpoints() {
    let metrics = Arc::new(Metrics::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server =
        tokio::spawn(axum::serve(listener, metrics::router(metrics.clone())).into_future());

    assert!(get(addr, "/healthz").await.starts_with("HTTP/1.1 200"));
    assert!(
        get(addr, "/readyz").await.starts_with("HTTP/1.1 503"),
        "not ready before the controller starts"
    );
    metrics.set_ready(true);
    assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 200"));

    {
        let _timer = metrics.start_reconcile("LlmProxy");
    }
    metrics.failed("LlmProxy", "InvalidSpec");
    let body = get(addr, "/metrics").await;
    assert!(
        body.contains("llm_proxy_operator_reconciles_total{kind=\"LlmProxy\"} 1"),
        "{body}"
    );
    assert!(
        body.contains("llm_proxy_operator_reconcile_failures_total{kind=\"LlmProxy\",category=\"InvalidSpec\"} 1"),
        "{body}"
    );
    assert!(
        body.contains("llm_proxy_operator_reconcile_duration_seconds_count{kind=\"LlmProxy\"} 1"),
        "{body}"
    );
    server.abort();
}
