//! The middleware around every management route: request metadata, authentication (constant
//! time), the audit record of the call, and JSON bodies for axum's own 405 responses.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use llm_proxy_store::{AuditEvent, AuditOutcome};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq as _;

use super::error::{ErrorReason, ManageError};
use super::{ManageState, ROUTES, Subject, find_route};
use crate::audit::{Action, Actor, event};
use crate::secret::Secret;

const REQUEST_ID_HEADER: &str = "x-request-id";
const CORRELATION_ID_HEADER: &str = "x-correlation-id";
/// Longest header value copied into an audit record.
const MAX_AUDITED_HEADER_LEN: usize = 256;

/// Audit details a handler attaches to its successful response.
#[derive(Debug, Clone, Default)]
pub struct AuditDetails {
    /// Project concerned, when not in the path.
    pub project_id: Option<String>,
    /// Token concerned (management id), when not in the path.
    pub token_id: Option<String>,
    /// Extra details as a JSON object.
    pub metadata: Option<serde_json::Value>,
}

/// Attaches audit details to a response.
pub fn with_details(response: impl IntoResponse, details: AuditDetails) -> Response {
    let mut response = response.into_response();
    response.extensions_mut().insert(details);
    response
}

/// Answers paths under `/manage` that match no route (after authentication).
pub async fn unknown_route() -> ManageError {
    ManageError::NotFound("route")
}

/// Authenticates, runs the handler, audits the call and stamps `X-Request-ID`.
pub async fn guard(State(state): State<ManageState>, request: Request, next: Next) -> Response {
    let request_id = header_text(request.headers(), REQUEST_ID_HEADER)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let matched = request
        .extensions()
        .get::<MatchedPath>()
        .map(|matched| matched.as_str().to_owned());
    let route = matched
        .as_deref()
        .and_then(|path| find_route(request.method(), path));
    let mut record = event(
        route.map_or(Action::AdminAccess, |route| route.action),
        Actor::ManagementApi,
        AuditOutcome::Success,
    );
    record.request_id = Some(request_id.clone());
    record.correlation_id =
        header_text(request.headers(), CORRELATION_ID_HEADER).or_else(|| Some(request_id.clone()));
    record.client_ip = client_ip(&request);
    record.method = Some(request.method().to_string());
    record.path = Some(truncate(request.uri().path()));
    record.user_agent = header_text(request.headers(), header::USER_AGENT.as_str());
    if let (Some(route), Some(matched)) = (route, matched.as_deref()) {
        let id = path_id(matched, request.uri().path());
        match route.subject {
            Subject::Project => record.project_id = id,
            Subject::Token => record.token_id = id,
            Subject::AuditEvent | Subject::None => {}
        }
    }

    let response = match authenticate(&state.management_token, request.headers()) {
        Ok(()) => json_method_not_allowed(next.run(request).await, matched.as_deref()),
        Err(error) => {
            record.actor = Actor::Anonymous.as_str().to_owned();
            error.into_response()
        }
    };
    complete(&mut record, &response);
    state.audit.record(record);
    stamp_request_id(response, &request_id)
}

/// Fills the outcome and the handler's details into the audit record.
fn complete(record: &mut AuditEvent, response: &Response) {
    let status = response.status();
    record.outcome = if status.is_server_error() {
        AuditOutcome::Error
    } else if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        AuditOutcome::Denied
    } else if status.is_client_error() {
        AuditOutcome::Failure
    } else {
        AuditOutcome::Success
    };
    if let Some(ErrorReason(reason)) = response.extensions().get::<ErrorReason>() {
        record.reason = Some(reason.clone());
    }
    if let Some(details) = response.extensions().get::<AuditDetails>() {
        if details.project_id.is_some() {
            record.project_id.clone_from(&details.project_id);
        }
        if details.token_id.is_some() {
            record.token_id.clone_from(&details.token_id);
        }
        record.metadata = details.metadata.as_ref().map(ToString::to_string);
    }
}

/// Checks `Authorization: Bearer <MANAGEMENT_TOKEN>` in constant time (both sides are hashed
/// first, so not even the length leaks).
fn authenticate(expected: &Secret, headers: &HeaderMap) -> Result<(), ManageError> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|token| !token.is_empty())
        .ok_or(ManageError::MissingCredentials)?;
    let presented = Sha256::digest(presented.as_bytes());
    let expected = Sha256::digest(expected.expose().as_bytes());
    if bool::from(presented.as_slice().ct_eq(expected.as_slice())) {
        Ok(())
    } else {
        Err(ManageError::InvalidCredentials)
    }
}

/// Replaces the empty body of axum's 405 (a method missing from [`ROUTES`]) by a JSON error with
/// the `Allow` header of the route table.
fn json_method_not_allowed(response: Response, matched: Option<&str>) -> Response {
    if response.status() != StatusCode::METHOD_NOT_ALLOWED
        || response.extensions().get::<ErrorReason>().is_some()
    {
        return response;
    }
    let allow = ROUTES
        .iter()
        .filter(|route| Some(route.path) == matched)
        .map(|route| route.method.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    ManageError::MethodNotAllowed {
        allow,
        message: "method not allowed",
    }
    .into_response()
}

fn stamp_request_id(mut response: Response, request_id: &str) -> Response {
    if let Ok(value) = HeaderValue::from_str(request_id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    response
}

/// A printable header value, truncated for the audit record.
fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(str::trim)
        .filter(|value| !value.is_empty())
        .map(truncate)
}

fn truncate(value: &str) -> String {
    value.chars().take(MAX_AUDITED_HEADER_LEN).collect()
}

/// Client IP: first `X-Forwarded-For` entry, then `X-Real-IP`, then the peer address.
fn client_ip(request: &Request) -> Option<String> {
    let headers = request.headers();
    header_text(headers, "x-forwarded-for")
        .and_then(|list| list.split(',').next().map(|ip| ip.trim().to_owned()))
        .filter(|ip| !ip.is_empty())
        .or_else(|| header_text(headers, "x-real-ip"))
        .or_else(|| {
            request
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(addr)| addr.ip().to_string())
        })
}

/// The value of `{id}` in `path`, given the route's matched pattern.
fn path_id(pattern: &str, path: &str) -> Option<String> {
    pattern
        .split('/')
        .zip(path.split('/'))
        .find(|(pattern, _)| *pattern == "{id}")
        .map(|(_, id)| truncate(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(authorization: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(authorization).unwrap(),
        );
        headers
    }

    #[test]
    fn bearer_scheme_is_case_insensitive_and_token_must_match() {
        let expected = Secret::new("management-secret");
        assert!(authenticate(&expected, &headers("Bearer management-secret")).is_ok());
        assert!(authenticate(&expected, &headers("bearer  management-secret ")).is_ok());
        assert!(matches!(
            authenticate(&expected, &headers("Bearer wrong")),
            Err(ManageError::InvalidCredentials)
        ));
        assert!(matches!(
            authenticate(&expected, &headers("Basic management-secret")),
            Err(ManageError::MissingCredentials)
        ));
        assert!(matches!(
            authenticate(&expected, &headers("Bearer ")),
            Err(ManageError::MissingCredentials)
        ));
        assert!(matches!(
            authenticate(&expected, &HeaderMap::new()),
            Err(ManageError::MissingCredentials)
        ));
    }

    #[test]
    fn path_ids_follow_the_pattern() {
        assert_eq!(
            path_id(
                "/manage/projects/{id}/tokens/revoke",
                "/manage/projects/p1/tokens/revoke"
            ),
            Some("p1".to_owned())
        );
        assert_eq!(path_id("/manage/projects", "/manage/projects"), None);
    }
}
