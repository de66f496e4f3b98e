//! The middleware around every management route: request metadata, authentication (constant
//! time), the audit record of the call (failed authentication bounded per window:
//! [`FailedAuthAudit`]), and JSON bodies for axum's own 405 responses.

use std::net::SocketAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

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
use crate::client_ip::TrustedProxies;
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
    record.client_ip = client_ip(&state.trusted_proxies, &request);
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

    let authenticated = authenticate(&state.management_token, request.headers());
    let (recorded, summary) = state
        .failed_auth
        .observe(authenticated.is_err(), Instant::now());
    if let Some(summary) = summary {
        state.audit.record(summary);
    }
    let response = match authenticated {
        Ok(()) => json_method_not_allowed(next.run(request).await, matched.as_deref()),
        Err(error) => {
            record.actor = Actor::Anonymous.as_str().to_owned();
            error.into_response()
        }
    };
    if recorded {
        complete(&mut record, &response);
        state.audit.record(record);
    }
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

/// Client IP: the peer, or what a trusted proxy forwarded for ([`crate::client_ip`]).
fn client_ip(trusted: &TrustedProxies, request: &Request) -> Option<String> {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    trusted
        .client_ip(peer, request.headers())
        .map(|ip| ip.to_string())
}

/// Bounds the audit records of failed authentication, which anyone can cause: in each
/// [`FAILED_AUTH_WINDOW`] the first [`FAILED_AUTH_RECORDED`] are recorded one by one, the rest are
/// counted and recorded as one `admin.access` event (`reason` says so, `metadata`
/// `{"suppressed": n, "window_seconds": 10}`) with the first management call after the window.
#[derive(Debug, Default)]
pub struct FailedAuthAudit {
    window: Mutex<FailedAuthWindow>,
}

#[derive(Debug, Default)]
struct FailedAuthWindow {
    started: Option<Instant>,
    recorded: u32,
    suppressed: u64,
}

/// Length of a failed-authentication audit window.
pub const FAILED_AUTH_WINDOW: Duration = Duration::from_secs(10);
/// Failed authentications recorded one by one per window.
pub const FAILED_AUTH_RECORDED: u32 = 20;

impl FailedAuthAudit {
    /// Closes the window if it is over: the summary of what it suppressed, if anything.
    fn roll(&self, window: &mut FailedAuthWindow, now: Instant) -> Option<AuditEvent> {
        let over = window
            .started
            .is_none_or(|started| now.duration_since(started) >= FAILED_AUTH_WINDOW);
        if !over {
            return None;
        }
        let suppressed = std::mem::take(window).suppressed;
        window.started = Some(now);
        (suppressed > 0).then(|| {
            let mut summary = event(Action::AdminAccess, Actor::Anonymous, AuditOutcome::Denied);
            summary.reason = Some("failed authentications not recorded one by one".to_owned());
            summary.metadata = Some(
                serde_json::json!({
                    "suppressed": suppressed,
                    "window_seconds": FAILED_AUTH_WINDOW.as_secs()
                })
                .to_string(),
            );
            summary
        })
    }

    /// Called for every management call: (whether a failed authentication is recorded one by one,
    /// the summary of the window that just closed).
    fn observe(&self, failed: bool, now: Instant) -> (bool, Option<AuditEvent>) {
        let mut window = self.window.lock().unwrap_or_else(PoisonError::into_inner);
        let summary = self.roll(&mut window, now);
        if !failed {
            return (true, summary);
        }
        if window.recorded < FAILED_AUTH_RECORDED {
            window.recorded += 1;
            (true, summary)
        } else {
            window.suppressed += 1;
            (false, summary)
        }
    }
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
    fn failed_authentication_is_recorded_up_to_the_bound_then_summarised_per_window() {
        let audit = FailedAuthAudit::default();
        let start = Instant::now();
        let recorded = (0..100)
            .filter(|_| {
                let (recorded, summary) = audit.observe(true, start);
                assert!(summary.is_none());
                recorded
            })
            .count();
        assert_eq!(recorded, FAILED_AUTH_RECORDED as usize);
        // An authenticated call is always recorded and does not count.
        assert!(audit.observe(false, start).0);
        let later = start + FAILED_AUTH_WINDOW;
        let (recorded, summary) = audit.observe(true, later);
        assert!(recorded, "a new window records again");
        let summary = summary.map(|event| (event.action, event.outcome, event.metadata));
        assert_eq!(
            summary,
            Some((
                "admin.access".to_owned(),
                AuditOutcome::Denied,
                Some(r#"{"suppressed":80,"window_seconds":10}"#.to_owned())
            ))
        );
        // A window without suppressed failures leaves no summary.
        assert!(audit.observe(true, later + FAILED_AUTH_WINDOW).1.is_none());
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
