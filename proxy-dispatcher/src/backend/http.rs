//! The one pooled HTTPS client of the dispatcher (hyper-util legacy client, rustls with ring and
//! the webpki roots, TCP_NODELAY on every connection).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::SendError;

/// Upper bound of one backend request, as upstream.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A cheap-to-clone handle on the shared connection pool.
#[derive(Clone)]
pub struct HttpClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl HttpClient {
    /// Builds the pool (no connection is opened yet).
    pub fn new() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.enforce_http(false);
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        Self {
            client: Client::builder(TokioExecutor::new()).build(https),
        }
    }

    /// POSTs `body` as JSON with a bearer key; returns the status once the response body is read.
    pub async fn post_json(
        &self,
        url: &http::Uri,
        api_key: &str,
        body: Vec<u8>,
    ) -> Result<http::StatusCode, SendError> {
        let request = http::Request::post(url.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::AUTHORIZATION, format!("Bearer {api_key}"))
            .body(Full::new(Bytes::from(body)))
            .map_err(|error| SendError::Permanent(format!("cannot build request: {error}")))?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|error| SendError::Retryable(format!("request failed: {error}")))?;
            let status = response.status();
            // Read the body so the connection goes back to the pool.
            response.into_body().collect().await.map_err(|error| {
                SendError::Retryable(format!("reading response failed: {error}"))
            })?;
            Ok(status)
        };
        tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| {
                SendError::Retryable(format!("no response within {}s", REQUEST_TIMEOUT.as_secs()))
            })?
    }
}

impl Default for HttpClient {
    fn default() -> Self {
        Self::new()
    }
}
