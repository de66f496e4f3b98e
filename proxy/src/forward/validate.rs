//! Request checks of the `/v1` path: path safety, method and endpoint allow-lists, body size, the
//! param whitelist and the origin rules of the provider.

use std::sync::{Arc, LazyLock};

use axum::body::Body;
use bytes::Bytes;
use http::Method;
use http::header::{self, HeaderMap};
use http_body_util::{BodyExt, Limited};

use crate::config::Provider;
use crate::error::ProxyError;

/// Longest parameter value echoed in a `param_not_allowed` message.
pub(super) const MAX_ECHOED_VALUE: usize = 100;

/// Rejects paths that a normalising server could resolve elsewhere than they look.
pub(super) fn check_path(path: &str) -> Result<(), ProxyError> {
    let rest = path
        .strip_prefix("/v1/")
        .ok_or(ProxyError::InvalidPath)?
        .as_bytes();
    // One pass: `.`/`..` and empty (`//`) segments, backslashes, and an encoded dot, slash,
    // backslash or NUL (`%2e`, `%2f`, `%5c`, `%00`, any case).
    let mut segment_start = 0;
    for index in 0..=rest.len() {
        let byte = rest.get(index).copied();
        let suspicious = match byte {
            None | Some(b'/') => {
                let segment = rest.get(segment_start..index).unwrap_or_default();
                segment_start = index + 1;
                segment == b"." || segment == b".." || (byte.is_some() && segment.is_empty())
            }
            Some(b'\\') => true,
            Some(b'%') => matches!(
                (
                    rest.get(index + 1),
                    rest.get(index + 2).map(u8::to_ascii_lowercase)
                ),
                (Some(b'2'), Some(b'e' | b'f'))
                    | (Some(b'5'), Some(b'c'))
                    | (Some(b'0'), Some(b'0'))
            ),
            Some(_) => false,
        };
        if suspicious {
            return Err(ProxyError::InvalidPath);
        }
    }
    Ok(())
}

/// The allowed endpoint `path` falls under. Endpoints match on whole path segments: `/v1/models`
/// allows `/v1/models/gpt-4o`, not `/v1/modelsX`.
pub(super) fn matched_endpoint<'a>(provider: &'a Provider, path: &str) -> Option<&'a Arc<str>> {
    provider.allowed_endpoints.iter().find(|endpoint| {
        path.strip_prefix(&***endpoint)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    })
}

/// Metric label of a path: the allowed endpoint it falls under, or `other`.
pub(super) fn route_label(endpoint: Option<&Arc<str>>) -> Arc<str> {
    static OTHER: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from("other"));
    endpoint.unwrap_or(&OTHER).clone()
}

pub(super) async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: u64,
) -> Result<Bytes, ProxyError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Err(ProxyError::BodyTooLarge);
    }
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) if err.is::<http_body_util::LengthLimitError>() => Err(ProxyError::BodyTooLarge),
        Err(err) if crate::body_deadline::is_body_deadline(&*err) => Err(ProxyError::BodyTimeout),
        Err(_) => Err(ProxyError::BodyUnreadable),
    }
}

pub(super) fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}

/// Applies the param whitelist to POSTed JSON and returns the `model` the body names (`None` for
/// other requests, bodies that are not JSON objects and models that are not strings). The body is
/// parsed once either way: whole when a whitelist applies, otherwise only its `model` field is
/// decoded and the rest skipped.
///
/// Unlike upstream, `application/json; charset=utf-8` is JSON too (otherwise a parameter would
/// bypass the whitelist), and a JSON body that is not an object is refused rather than waved through.
pub(super) fn check_params(
    provider: &Provider,
    method: &Method,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Option<String>, ProxyError> {
    #[derive(serde::Deserialize)]
    struct ModelField<'a> {
        #[serde(borrow, default)]
        model: Option<std::borrow::Cow<'a, str>>,
    }
    if method != Method::POST || !is_json(headers) {
        return Ok(None);
    }
    if provider.param_whitelist.is_empty() {
        return Ok(serde_json::from_slice::<ModelField<'_>>(body)
            .ok()
            .and_then(|field| field.model)
            .map(std::borrow::Cow::into_owned));
    }
    let parsed: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| ProxyError::InvalidJson)?;
    let object = parsed.as_object().ok_or(ProxyError::InvalidJson)?;
    for rule in &provider.param_whitelist {
        let Some(value) = object.get(&rule.field) else {
            continue;
        };
        let text = match value {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            serde_json::Value::Bool(b) => Some(b.to_string()),
            _ => None,
        };
        if !text.as_deref().is_some_and(|t| rule.allows(t)) {
            let shown = text.unwrap_or_else(|| value.to_string());
            return Err(ProxyError::ParamNotAllowed {
                param: rule.field.clone(),
                value: shown.chars().take(MAX_ECHOED_VALUE).collect(),
                patterns: rule.patterns.clone(),
            });
        }
    }
    Ok(object
        .get("model")
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned))
}

pub(super) fn check_origin(provider: &Provider, headers: &HeaderMap) -> Result<(), ProxyError> {
    let origin = headers.get(header::ORIGIN);
    match origin {
        None if provider.origin_required => Err(ProxyError::OriginRequired),
        Some(origin) if !provider.allowed_origins.is_empty() => {
            let allowed = origin
                .to_str()
                .is_ok_and(|o| provider.allowed_origins.iter().any(|a| a == o));
            if allowed {
                Ok(())
            } else {
                Err(ProxyError::OriginNotAllowed)
            }
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::fallback_provider;

    #[test]
    fn path_tricks_are_rejected() {
        for bad in [
            "/v1/../manage/projects",
            "/v1/chat/../../manage",
            "/v1/./models",
            "/v1//models",
            "/v1/%2e%2e/manage",
            "/v1/%2E%2E/manage",
            "/v1/models%2f..%2fmanage",
            "/v1/models\\..\\manage",
            "/v1/models%00",
            "/v1/models%2F..",
            "/v1/models%5Cx",
            "/v1/models%5c",
            "/v2/models",
            "/v1",
            "/v1/models/.",
            "/v1/models/..",
            "/v1/models//",
            "/v1/%2e",
        ] {
            assert!(check_path(bad).is_err(), "{bad} should be rejected");
        }
        assert!(check_path("/v1/chat/completions").is_ok());
        assert!(check_path("/v1/models/gpt-4o.1").is_ok());
        assert!(
            check_path("/v1/models/").is_ok(),
            "a trailing slash is no trick"
        );
        assert!(check_path("/v1/.well").is_ok() && check_path("/v1/a..b").is_ok());
        assert!(
            check_path("/v1/models/a%20b%2").is_ok(),
            "other escapes pass"
        );
    }

    #[test]
    fn endpoints_match_on_segments() {
        let provider = fallback_provider("http://127.0.0.1:1").unwrap();
        let endpoint_allowed = |path| matched_endpoint(&provider, path).is_some();
        assert!(endpoint_allowed("/v1/models"));
        assert!(endpoint_allowed("/v1/models/gpt-4o"));
        assert!(!endpoint_allowed("/v1/modelsX"));
        assert!(!endpoint_allowed("/v1/threads"));
        let route = |path| route_label(matched_endpoint(&provider, path));
        assert_eq!(&*route("/v1/models/x"), "/v1/models");
        assert_eq!(&*route("/v1/unknown"), "other");
    }
}
