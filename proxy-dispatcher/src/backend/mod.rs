//! The destinations of dispatched events: `file`, `lunary` and `helicone`.
//!
//! A backend sends a chunk of payloads and says whether it was accepted, failed in a way worth
//! retrying, or was refused for good. Status codes are classified here, in one place.

mod file;
mod helicone;
mod http;
mod lunary;

use crate::transform::EventPayload;

pub use file::FileBackend;
pub use helicone::{HeliconeBackend, helicone_body};
pub use http::HttpClient;
pub use lunary::LunaryBackend;

/// Why a send did not succeed. Never contains the API key or the payload.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Worth trying again later (network error, timeout, 429, most 5xx).
    #[error("retryable: {0}")]
    Retryable(String),
    /// The backend refused the events; retrying cannot help.
    #[error("permanent: {0}")]
    Permanent(String),
}

/// The configured backend.
pub enum Backend {
    /// JSONL file.
    File(FileBackend),
    /// Lunary ingestion API.
    Lunary(LunaryBackend),
    /// Helicone custom-log API.
    Helicone(HeliconeBackend),
}

impl Backend {
    /// Payloads per `send` call: Helicone takes one event per request.
    pub fn max_batch(&self, configured: usize) -> usize {
        match self {
            Self::Helicone(_) => 1,
            Self::File(_) | Self::Lunary(_) => configured.max(1),
        }
    }

    /// Whether the backend takes this payload at all (Helicone skips events without output).
    pub fn accepts(&self, payload: &EventPayload) -> bool {
        match self {
            Self::Helicone(_) => !payload.output.is_null(),
            Self::File(_) | Self::Lunary(_) => true,
        }
    }

    /// Sends `payloads` (at most [`Backend::max_batch`] of them).
    pub async fn send(&self, payloads: &[EventPayload]) -> Result<(), SendError> {
        match self {
            Self::File(backend) => backend.append(payloads).await,
            Self::Lunary(backend) => backend.send(payloads).await,
            Self::Helicone(backend) => {
                for payload in payloads {
                    backend.send(payload).await?;
                }
                Ok(())
            }
        }
    }
}

/// Which statuses are permanent, per backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StatusPolicy {
    /// 4xx except 408 and 429 are permanent; everything else retryable.
    ClientErrorsPermanent,
    /// As above, and 500 too (Helicone answers 500 for bodies it cannot process, as upstream).
    ClientErrorsAnd500Permanent,
}

fn classify(status: ::http::StatusCode, policy: StatusPolicy) -> Result<(), SendError> {
    if status.is_success() {
        return Ok(());
    }
    let retryable_client_error = matches!(status.as_u16(), 408 | 429);
    let permanent = (status.is_client_error() && !retryable_client_error)
        || (policy == StatusPolicy::ClientErrorsAnd500Permanent && status.as_u16() == 500);
    if permanent {
        Err(SendError::Permanent(format!("backend answered {status}")))
    } else {
        Err(SendError::Retryable(format!("backend answered {status}")))
    }
}

#[cfg(test)]
mod tests {
    use ::http::StatusCode;

    use super::*;

    #[test]
    fn statuses_are_classified_per_policy() {
        let lunary = StatusPolicy::ClientErrorsPermanent;
        let helicone = StatusPolicy::ClientErrorsAnd500Permanent;
        assert!(classify(StatusCode::OK, lunary).is_ok());
        assert!(classify(StatusCode::ACCEPTED, helicone).is_ok());
        for (status, policy, permanent) in [
            (400, lunary, true),
            (401, lunary, true),
            (408, lunary, false),
            (429, lunary, false),
            (500, lunary, false),
            (503, lunary, false),
            (400, helicone, true),
            (429, helicone, false),
            (500, helicone, true),
            (502, helicone, false),
        ] {
            let result = classify(StatusCode::from_u16(status).unwrap(), policy);
            assert_eq!(
                matches!(result, Err(SendError::Permanent(_))),
                permanent,
                "{status} {policy:?}"
            );
        }
    }
}
