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
