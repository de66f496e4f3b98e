//! `ProxyError`: every way a `/v1` request can fail locally, and its single mapping to an HTTP response.
//!
//! Bodies are `{"error": ..., "code": ..., "description"?: ...}` with `Content-Type: application/json`.
//! The exception is [`ProxyError::RateLimited`]: its 429 has OpenAI's error shape and rate-limit
//! headers (see [`rate_limited_response`]).
//! Messages never contain a token, a key or a database detail; those go to the logs (masked) instead.

use axum::Json;
use axum::http::StatusCode;
use axum::http::header::{self, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::ratelimit::{RateLimitDenial, RateLimitRefusal, duration_text};

/// A locally generated `/v1` failure.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("request path is not allowed")]
    InvalidPath,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("endpoint not allowed")]
    EndpointNotFound,
    #[error("request body larger than the limit")]
    BodyTooLarge,
    #[error("request body could not be read")]
    BodyUnreadable,
    #[error("request body did not arrive within the body read timeout")]
    BodyTimeout,
    #[error("JSON request body is not a JSON object")]
    InvalidJson,
    #[error("parameter {param} has a value outside the whitelist")]
    ParamNotAllowed {
        param: String,
        value: String,
        patterns: Vec<String>,
    },
    #[error("Origin header required")]
    OriginRequired,
    #[error("origin not allowed")]
    OriginNotAllowed,
    #[error("missing or malformed Authorization header")]
    MissingToken,
    #[error("malformed client token: {0}")]
    TokenFormat(#[from] llm_proxy_store::TokenFormatError),
    #[error("token not found")]
    TokenNotFound,
    #[error("token revoked")]
    TokenInactive,
    /// An `sk-` + base64url(UUIDv7) token whose management id is that UUID: issued by a build of
    /// this project before the token format change (up to b4f15da), computable by anyone who saw its id (see `llm_proxy_store::token`).
    #[error("token derivable from its id")]
    TokenSuperseded,
    #[error("token expired")]
    TokenExpired,
    #[error("token quota exhausted")]
    QuotaExceeded,
    #[error("project inactive")]
    ProjectInactive,
    #[error("database unavailable: {0}")]
    Store(#[from] llm_proxy_store::StoreError),
    #[error("no usable provider key for the project")]
    UpstreamAuth,
    #[error("too many concurrent requests")]
    Overloaded,
    #[error("circuit breaker open")]
    CircuitOpen,
    #[error("upstream unreachable: {0}")]
    UpstreamUnreachable(String),
    #[error("upstream did not answer in time")]
    UpstreamTimeout,
    #[error("no such route")]
    RouteNotFound,
    #[error("request rate limit reached ({} per {}s)", .0.limit.requests, .0.limit.window_seconds)]
    RateLimited(RateLimitDenial),
    #[error("rate-limit counters unreachable (fail-closed)")]
    RateLimitUnavailable,
}

#[derive(Serialize)]
struct ErrorBody {
    error: String,
    code: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'static str>,
}

impl ProxyError {
    /// HTTP status of the error.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::InvalidPath
            | Self::BodyUnreadable
            | Self::InvalidJson
            | Self::ParamNotAllowed { .. }
            | Self::OriginRequired => StatusCode::BAD_REQUEST,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::EndpointNotFound | Self::RouteNotFound => StatusCode::NOT_FOUND,
            Self::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::OriginNotAllowed | Self::ProjectInactive => StatusCode::FORBIDDEN,
            Self::MissingToken
            | Self::TokenFormat(_)
            | Self::TokenNotFound
            | Self::TokenInactive
            | Self::TokenSuperseded
            | Self::TokenExpired => StatusCode::UNAUTHORIZED,
            Self::QuotaExceeded | Self::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Store(_)
            | Self::UpstreamAuth
            | Self::Overloaded
            | Self::CircuitOpen
            | Self::RateLimitUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::UpstreamUnreachable(_) => StatusCode::BAD_GATEWAY,
            Self::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// Stable machine-readable code (also the `code` label of the error metric).
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidPath => "invalid_path",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::EndpointNotFound => "endpoint_not_found",
            Self::BodyTooLarge => "request_too_large",
            Self::BodyUnreadable => "invalid_request_body",
            Self::BodyTimeout => "request_body_timeout",
            Self::InvalidJson => "invalid_json",
            Self::ParamNotAllowed { .. } => "param_not_allowed",
            Self::OriginRequired => "origin_required",
            Self::OriginNotAllowed => "origin_not_allowed",
            Self::MissingToken | Self::TokenFormat(_) => "invalid_token",
            Self::TokenNotFound => "token_not_found",
            Self::TokenInactive => "token_inactive",
            Self::TokenSuperseded => "token_superseded",
            Self::TokenExpired => "token_expired",
            Self::QuotaExceeded => "rate_limit_exceeded",
            Self::ProjectInactive => "project_inactive",
            Self::Store(_) => "service_unavailable",
            Self::UpstreamAuth => "upstream_auth_error",
            Self::Overloaded => "too_many_concurrent_requests",
            Self::CircuitOpen => "circuit_open",
            Self::UpstreamUnreachable(_) => "upstream_error",
            Self::UpstreamTimeout => "timeout",
            Self::RouteNotFound => "not_found",
            Self::RateLimited(_) => "rate_limit_exceeded",
            Self::RateLimitUnavailable => "rate_limit_unavailable",
        }
    }

    fn message(&self) -> String {
        match self {
            Self::InvalidPath => "Invalid request path".to_owned(),
            Self::MethodNotAllowed => "Method not allowed".to_owned(),
            Self::EndpointNotFound => "Endpoint not found".to_owned(),
            Self::BodyTooLarge => "Request body too large".to_owned(),
            Self::BodyUnreadable => "Request body could not be read".to_owned(),
            Self::BodyTimeout => "Request body not received in time".to_owned(),
            Self::InvalidJson => "Request body must be a JSON object".to_owned(),
            Self::ParamNotAllowed {
                param,
                value,
                patterns,
            } => format!(
                "Parameter '{param}' value '{value}' is not allowed. Allowed patterns: [{}]",
                patterns.join(" ")
            ),
            Self::OriginRequired => "Origin header required".to_owned(),
            Self::OriginNotAllowed => "Origin not allowed".to_owned(),
            Self::MissingToken | Self::TokenFormat(_) => "Invalid token".to_owned(),
            Self::TokenNotFound => "Token not found".to_owned(),
            Self::TokenInactive => "Token is inactive".to_owned(),
            Self::TokenSuperseded => {
                "Token was issued by an earlier build and is no longer accepted; issue a new one"
                    .to_owned()
            }
            Self::TokenExpired => "Token has expired".to_owned(),
            Self::QuotaExceeded => "Rate limit exceeded".to_owned(),
            Self::ProjectInactive => "Project is inactive".to_owned(),
            Self::Store(_) => "Service temporarily unavailable".to_owned(),
            Self::UpstreamAuth => "Upstream authentication error".to_owned(),
            Self::Overloaded => "Too many concurrent requests".to_owned(),
            Self::CircuitOpen => "Upstream unavailable (circuit breaker open)".to_owned(),
            Self::UpstreamUnreachable(_) => "Proxy error".to_owned(),
            Self::UpstreamTimeout => "Request timeout".to_owned(),
            Self::RouteNotFound => "Not found".to_owned(),
            Self::RateLimited(denial) => denial.message(),
            Self::RateLimitUnavailable => "Rate limiting temporarily unavailable".to_owned(),
        }
    }

    fn description(&self) -> Option<&'static str> {
        match self {
            Self::MissingToken => Some("missing or invalid authorization header"),
            Self::TokenFormat(_) => Some("invalid token format"),
            Self::UpstreamAuth => Some("failed to load upstream API key"),
            _ => None,
        }
    }

    /// Whether the breaker counts this error as an upstream failure. Local overload does not: it
    /// says nothing about the upstream, and opening the breaker would turn a burst into an outage.
    pub fn is_upstream_failure(&self) -> bool {
        matches!(self, Self::UpstreamUnreachable(_) | Self::UpstreamTimeout)
    }
}

/// The 429 of a rate limit, shaped like OpenAI's own (`{"error": {"message", "type", "param",
/// "code"}}`) so OpenAI clients back off as they do upstream.
#[derive(Serialize)]
struct OpenAiErrorBody {
    error: OpenAiError,
}

#[derive(Serialize)]
struct OpenAiError {
    message: String,
    #[serde(rename = "type")]
    kind: &'static str,
    param: Option<()>,
    code: &'static str,
}

fn rate_limited_response(denial: &RateLimitDenial, code: &'static str) -> Response {
    let body = OpenAiErrorBody {
        error: OpenAiError {
            message: denial.message(),
            kind: "requests",
            param: None,
            code,
        },
    };
    let retry_after = denial.retry_after_seconds();
    let headers = [
        (header::RETRY_AFTER.as_str(), retry_after.to_string()),
        (
            "x-ratelimit-limit-requests",
            denial.limit.requests.to_string(),
        ),
        ("x-ratelimit-remaining-requests", "0".to_owned()),
        ("x-ratelimit-reset-requests", duration_text(retry_after)),
    ];
    let mut response = (StatusCode::TOO_MANY_REQUESTS, Json(body)).into_response();
    for (name, value) in headers {
        if let Ok(value) = HeaderValue::try_from(value) {
            response
                .headers_mut()
                .insert(HeaderName::from_static(name), value);
        }
    }
    response
}

impl IntoResponse for ProxyError {
    fn into_response(self) -> Response {
        if let Self::RateLimited(denial) = &self {
            let mut response = rate_limited_response(denial, self.code());
            response.extensions_mut().insert(ErrorCode(self.code()));
            return response;
        }
        let body = ErrorBody {
            error: self.message(),
            code: self.code(),
            description: self.description(),
        };
        let mut response = (self.status(), Json(body)).into_response();
        response.extensions_mut().insert(ErrorCode(self.code()));
        response
    }
}

impl From<RateLimitRefusal> for ProxyError {
    fn from(refusal: RateLimitRefusal) -> Self {
        match refusal {
            RateLimitRefusal::Denied(denial) => Self::RateLimited(denial),
            RateLimitRefusal::Unavailable => Self::RateLimitUnavailable,
        }
    }
}

/// Marks a response as a local error (read by metrics and the request log).
#[derive(Debug, Clone, Copy)]
pub struct ErrorCode(pub &'static str);
