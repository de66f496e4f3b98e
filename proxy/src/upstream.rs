//! The one pooled HTTP client to the upstream provider.
//!
//! HTTP/1.1 and HTTP/2 (ALPN) over rustls with the webpki roots, or plain HTTP; `TCP_NODELAY` on every
//! connection; idle connections kept per the provider's settings.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::config::Provider;

/// Client type of the data path; request bodies are already buffered (size-limited) bytes.
pub type UpstreamClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
const TCP_KEEPALIVE: Duration = Duration::from_secs(30);

/// Builds the pooled client for `provider`.
pub fn build_client(provider: &Provider) -> UpstreamClient {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(CONNECT_TIMEOUT));
    http.set_keepalive(Some(TCP_KEEPALIVE));
    let https = HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(provider.idle_connection_timeout)
        .pool_max_idle_per_host(provider.max_idle_conns_per_host)
        .build(https)
}
