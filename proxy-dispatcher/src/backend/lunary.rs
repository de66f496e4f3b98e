//! Lunary: the whole chunk as one JSON array, `Authorization: Bearer <key>`.

use super::{HttpClient, SendError, StatusPolicy, classify};
use crate::transform::EventPayload;

/// Posts batches to a Lunary ingestion endpoint.
pub struct LunaryBackend {
    client: HttpClient,
    endpoint: http::Uri,
    api_key: String,
}

impl LunaryBackend {
    /// A backend posting to `endpoint` with `api_key`.
    pub fn new(client: HttpClient, endpoint: http::Uri, api_key: String) -> Self {
        Self {
            client,
            endpoint,
            api_key,
        }
    }

    /// Sends the chunk as one request.
    pub async fn send(&self, payloads: &[EventPayload]) -> Result<(), SendError> {
        let body = serde_json::to_vec(payloads)
            .map_err(|error| SendError::Permanent(format!("cannot encode batch: {error}")))?;
        let status = self
            .client
            .post_json(&self.endpoint, &self.api_key, body)
            .await?;
        classify(status, StatusPolicy::ClientErrorsPermanent)
    }
}
