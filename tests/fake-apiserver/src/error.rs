//! The API error type of the fake server and its one mapping to a Kubernetes `Status` response.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Every failure the fake API server can answer with; rendered as `Status` JSON in [`IntoResponse`].
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{plural}{group_suffix} \"{name}\" not found", group_suffix = group_suffix(group))]
    NotFound {
        group: String,
        plural: String,
        name: String,
    },
    #[error("the server could not find the requested resource")]
    UnknownResource,
    #[error("{plural}{group_suffix} \"{name}\" already exists", group_suffix = group_suffix(group))]
    AlreadyExists {
        group: String,
        plural: String,
        name: String,
    },
    #[error(
        "Operation cannot be fulfilled on {plural}{group_suffix} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
        group_suffix = group_suffix(group)
    )]
    StaleResourceVersion {
        group: String,
        plural: String,
        name: String,
    },
    #[error("Apply failed with {count} conflict(s): {details}")]
    ApplyConflict { count: usize, details: String },
    #[error("{kind} \"{name}\" is invalid: {message}")]
    Invalid {
        kind: String,
        name: String,
        message: String,
    },
    #[error("{0}")]
    BadRequest(String),
    #[error("the server does not allow this method on the requested resource")]
    MethodNotAllowed,
    #[error("unsupported patch content type {0:?}")]
    UnsupportedMediaType(String),
    #[error("injected fault: {reason}")]
    InjectedFault { code: u16, reason: String },
}

fn group_suffix(group: &str) -> String {
    if group.is_empty() {
        String::new()
    } else {
        format!(".{group}")
    }
}

impl ApiError {
    /// The HTTP status code and the Kubernetes `reason` of this error.
    pub fn code_and_reason(&self) -> (StatusCode, &'static str) {
        match self {
            Self::NotFound { .. } | Self::UnknownResource => (StatusCode::NOT_FOUND, "NotFound"),
            Self::AlreadyExists { .. } => (StatusCode::CONFLICT, "AlreadyExists"),
            Self::StaleResourceVersion { .. } | Self::ApplyConflict { .. } => {
                (StatusCode::CONFLICT, "Conflict")
            }
            Self::Invalid { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "Invalid"),
            Self::BadRequest(_) => (StatusCode::BAD_REQUEST, "BadRequest"),
            Self::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed"),
            Self::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "UnsupportedMediaType")
            }
            Self::InjectedFault { code, .. } => {
                let status =
                    StatusCode::from_u16(*code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                let reason = match *code {
                    409 => "Conflict",
                    429 => "TooManyRequests",
                    503 => "ServiceUnavailable",
                    _ => "InternalError",
                };
                (status, reason)
            }
        }
    }

    /// The `Status` object a real API server sends for this error.
    pub fn to_status_json(&self) -> serde_json::Value {
        let (code, reason) = self.code_and_reason();
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.to_string(),
            "reason": reason,
            "code": code.as_u16(),
        });
        let details = match self {
            Self::NotFound {
                group,
                plural,
                name,
            }
            | Self::AlreadyExists {
                group,
                plural,
                name,
            }
            | Self::StaleResourceVersion {
                group,
                plural,
                name,
            } => Some(json!({"name": name, "group": group, "kind": plural})),
            Self::Invalid { kind, name, .. } => Some(json!({"name": name, "kind": kind})),
            _ => None,
        };
        if let (Some(details), Some(map)) = (details, status.as_object_mut()) {
            map.insert("details".to_owned(), details);
        }
        status
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (code, _) = self.code_and_reason();
        let mut response = (code, axum::Json(self.to_status_json())).into_response();
        if code == StatusCode::TOO_MANY_REQUESTS {
            response
                .headers_mut()
                .insert("retry-after", axum::http::HeaderValue::from_static("1"));
        }
        response
    }
}
