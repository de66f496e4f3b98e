//! The management API's error type and its single mapping to HTTP: a JSON body
//! `{"error": "...", "code": "..."}` with `Content-Type: application/json`.

use axum::Json;
use axum::extract::FromRequest;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use llm_proxy_store::StoreError;
use serde::Serialize;

/// Everything a management call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ManageError {
    /// No or malformed `Authorization` header.
    #[error("missing or invalid Authorization header")]
    MissingCredentials,
    /// Wrong management token.
    #[error("invalid management token")]
    InvalidCredentials,
    /// The body is not JSON.
    #[error("invalid JSON body: {0}")]
    MalformedJson(String),
    /// The body is JSON of the wrong shape (unknown field, wrong type, missing field).
    #[error("invalid request body: {0}")]
    InvalidBody(String),
    /// The body is not declared as `application/json`.
    #[error("expected Content-Type: application/json")]
    UnsupportedMediaType,
    /// The body exceeds the management body limit.
    #[error("request body too large")]
    PayloadTooLarge,
    /// A query parameter is malformed.
    #[error("invalid query parameter: {0}")]
    InvalidQuery(String),
    /// A field or parameter has a value outside its domain.
    #[error("{0}")]
    Validation(String),
    /// A path id is not a valid id.
    #[error("invalid {0} id")]
    InvalidId(&'static str),
    /// The resource does not exist.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// Tokens cannot be created for an inactive project.
    #[error("cannot create tokens for inactive projects")]
    ProjectInactive,
    /// A unique value is taken.
    #[error("{0} already exists")]
    Conflict(&'static str),
    /// The method is not supported on this path.
    #[error("{message}")]
    MethodNotAllowed {
        /// Value of the `Allow` header.
        allow: String,
        /// Explanation.
        message: &'static str,
    },
    /// A backend other than the database (the cache's Redis) did not answer.
    #[error("{0} unavailable")]
    Unavailable(&'static str),
    /// The database failed.
    #[error("internal server error")]
    Store(#[source] StoreError),
    /// The operating system's random source failed while making a token.
    #[error("internal server error")]
    RandomSource(#[from] llm_proxy_store::RandomSourceError),
}

impl From<StoreError> for ManageError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Conflict(what) => Self::Conflict(what),
            other => Self::Store(other),
        }
    }
}

impl From<JsonRejection> for ManageError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::MissingJsonContentType(_) => Self::UnsupportedMediaType,
            JsonRejection::JsonSyntaxError(e) => Self::MalformedJson(e.body_text()),
            JsonRejection::JsonDataError(e) => Self::InvalidBody(redact_quoted(&e.body_text())),
            other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => Self::PayloadTooLarge,
            other => Self::MalformedJson(other.body_text()),
        }
    }
}

impl From<QueryRejection> for ManageError {
    fn from(rejection: QueryRejection) -> Self {
        Self::InvalidQuery(redact_quoted(&rejection.body_text()))
    }
}

/// Removes the quoted values serde puts in type errors (`invalid type: string "…"`): a client may
/// have sent a secret in the wrong field, and error texts reach responses and the audit log.
fn redact_quoted(text: &str) -> String {
    let mut redacted = String::with_capacity(text.len());
    let mut inside = false;
    for c in text.chars() {
        if c == '"' {
            if !inside {
                redacted.push_str("\"…\"");
            }
            inside = !inside;
        } else if !inside {
            redacted.push(c);
        }
    }
    redacted
}

impl From<PathRejection> for ManageError {
    fn from(_: PathRejection) -> Self {
        Self::InvalidId("path")
    }
}

impl ManageError {
    fn status(&self) -> StatusCode {
        match self {
            Self::MissingCredentials | Self::InvalidCredentials => StatusCode::UNAUTHORIZED,
            Self::MalformedJson(_)
            | Self::InvalidQuery(_)
            | Self::Validation(_)
            | Self::InvalidId(_) => StatusCode::BAD_REQUEST,
            Self::InvalidBody(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::ProjectInactive => StatusCode::FORBIDDEN,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::Store(_) | Self::RandomSource(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::MissingCredentials | Self::InvalidCredentials => "unauthorized",
            Self::MalformedJson(_) => "invalid_json",
            Self::InvalidBody(_) => "invalid_body",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::PayloadTooLarge => "payload_too_large",
            Self::InvalidQuery(_) => "invalid_query",
            Self::Validation(_) => "validation_error",
            Self::InvalidId(_) => "invalid_id",
            Self::NotFound(_) => "not_found",
            Self::ProjectInactive => "project_inactive",
            Self::Conflict(_) => "conflict",
            Self::MethodNotAllowed { .. } => "method_not_allowed",
            Self::Store(_) | Self::RandomSource(_) => "internal_error",
            Self::Unavailable(_) => "service_unavailable",
        }
    }
}

/// The error body of every management error.
#[derive(Serialize)]
pub struct ErrorBody {
    /// Human-readable message.
    pub error: String,
    /// Stable machine-readable code.
    pub code: &'static str,
}

/// The error text, kept on the response so the audit middleware can record it as the reason.
#[derive(Debug, Clone)]
pub struct ErrorReason(pub String);

impl IntoResponse for ManageError {
    fn into_response(self) -> Response {
        match &self {
            Self::Store(error) => tracing::error!(%error, "management API storage failure"),
            Self::RandomSource(error) => tracing::error!(%error, "token generation failed"),
            _ => {}
        }
        let status = self.status();
        let message = self.to_string();
        let mut response = (
            status,
            Json(ErrorBody {
                error: message.clone(),
                code: self.code(),
            }),
        )
            .into_response();
        if let Self::MethodNotAllowed { allow, .. } = &self
            && let Ok(allow) = HeaderValue::from_str(allow)
        {
            response.headers_mut().insert(header::ALLOW, allow);
        }
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response.extensions_mut().insert(ErrorReason(message));
        response
    }
}

#[cfg(test)]
mod tests {
    use super::redact_quoted;

    #[test]
    fn quoted_values_are_redacted_from_error_texts() {
        assert_eq!(
            redact_quoted(r#"is_active: invalid type: string "sk-secret", expected a boolean"#),
            r#"is_active: invalid type: string "…", expected a boolean"#
        );
        assert_eq!(
            redact_quoted("unknown field `extra`"),
            "unknown field `extra`"
        );
    }
}

/// `axum::Json` whose rejections are [`ManageError`]s.
#[derive(Debug, FromRequest)]
#[from_request(via(Json), rejection(ManageError))]
pub struct JsonBody<T>(pub T);

/// `axum::extract::Query` whose rejections are [`ManageError`]s.
#[derive(Debug, axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ManageError))]
pub struct QueryParams<T>(pub T);

/// `axum::extract::Path` whose rejections are [`ManageError`]s.
#[derive(Debug, axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ManageError))]
pub struct PathId<T>(pub T);
