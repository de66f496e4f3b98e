//! The bare pass-through, the physical-limit reference: forwards method, path, headers and body
//! stream to the upstream with one pooled client and streams the response back. No auth, no JSON,
//! no events: whatever the real proxy adds beyond this is its own cost.

use std::sync::Arc;

use bytes::Bytes;
use http::uri::{Authority, Scheme};
use http::{Request, Response, StatusCode, Uri, header};
use http_body_util::{Either, Empty};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use tokio::net::TcpListener;

/// The pass-through's response body: the upstream's, or empty on a 502.
pub type PassBody = Either<Incoming, Empty<Bytes>>;

/// Serves the pass-through on `listener`, forwarding to `upstream` (`http://host:port`).
pub async fn serve(listener: TcpListener, upstream: Authority) -> std::io::Result<()> {
    let client: Arc<Client<HttpConnector, Incoming>> = Arc::new(crate::net::pooled_client());
    let upstream = Arc::new(upstream);
    crate::net::serve(listener, move |request| {
        let client = client.clone();
        let upstream = upstream.clone();
        async move { forward(&client, &upstream, request).await }
    })
    .await
}

async fn forward(
    client: &Client<HttpConnector, Incoming>,
    upstream: &Authority,
    request: Request<Incoming>,
) -> Response<PassBody> {
    let (mut parts, body) = request.into_parts();
    let mut uri = Uri::builder()
        .scheme(Scheme::HTTP)
        .authority(upstream.clone());
    if let Some(path_and_query) = parts.uri.path_and_query() {
        uri = uri.path_and_query(path_and_query.clone());
    }
    let Ok(uri) = uri.build() else {
        return bad_gateway();
    };
    parts.uri = uri;
    // The client sets Host from the URI.
    parts.headers.remove(header::HOST);
    match client.request(Request::from_parts(parts, body)).await {
        Ok(response) => response.map(Either::Left),
        Err(_) => bad_gateway(),
    }
}

fn bad_gateway() -> Response<PassBody> {
    let mut response = Response::new(Either::Right(Empty::new()));
    *response.status_mut() = StatusCode::BAD_GATEWAY;
    response
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http_body_util::{BodyExt, Full};

    use super::*;
    use crate::mock::{self, MockSettings};

    async fn spawn_server<F>(serve: impl FnOnce(TcpListener) -> F) -> std::net::SocketAddr
    where
        F: std::future::Future<Output = std::io::Result<()>> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(listener));
        addr
    }

    #[tokio::test]
    async fn forwards_path_and_body_and_streams_the_answer_back() {
        let settings = MockSettings {
            delay: Duration::ZERO,
            stream_chunks: 3,
            chunk_interval: Duration::from_millis(1),
        };
        let mock = spawn_server(|listener| mock::serve(listener, settings)).await;
        let authority: Authority = mock.to_string().parse().unwrap();
        let bare = spawn_server(|listener| serve(listener, authority)).await;
        let client: crate::net::DriverClient = crate::net::pooled_client();

        let request = |body: &'static [u8]| {
            Request::post(format!("http://{bare}/v1/chat/completions"))
                .body(Full::new(Bytes::from_static(body)))
                .unwrap()
        };
        let response = client.request(request(b"{\"model\":\"m\"}")).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, Bytes::from(mock::completion_body()));

        let response = client.request(request(b"{\"stream\":true}")).await.unwrap();
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "text/event-stream"
        );
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8(body.to_vec()).unwrap();
        assert_eq!(text.matches("data: ").count(), 3 + 2, "{text}");
        assert!(text.ends_with("data: [DONE]\n\n"));
    }

    #[tokio::test]
    async fn an_unreachable_upstream_is_a_502() {
        let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let authority: Authority = closed.local_addr().unwrap().to_string().parse().unwrap();
        drop(closed);
        let bare = spawn_server(|listener| serve(listener, authority)).await;
        let client: crate::net::DriverClient = crate::net::pooled_client();
        let response = client
            .request(
                Request::post(format!("http://{bare}/v1/x"))
                    .body(Full::new(Bytes::new()))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    }
}
