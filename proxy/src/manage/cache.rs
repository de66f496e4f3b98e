//! `POST /manage/cache/purge`: removes HTTP cache entries ([`crate::cache`]).
//!
//! Body `{"method", "url", "prefix"?, "project_id"?}`; `method` and `url` are required even for a
//! prefix purge (as upstream). Without `prefix` every stored variant (any `Accept*` headers, any POST
//! body) of `method` + the path and query of `url` is removed; with `prefix` every entry whose
//! `X-PROXY-CACHE-KEY` starts with it. `project_id` limits either to one project. Answers
//! `{"deleted": n}`.

use axum::Json;
use axum::extract::State;
use axum::response::Response;
use http::{Method, Uri};
use serde::Deserialize;
use serde_json::json;

use super::ManageState;
use super::error::{JsonBody, ManageError};
use super::guard::{AuditDetails, with_details};
use crate::cache::{PurgeSelector, PurgeTarget};

/// Body of `POST /manage/cache/purge`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PurgeRequest {
    method: Option<String>,
    url: Option<String>,
    prefix: Option<String>,
    project_id: Option<String>,
}

/// Purges cache entries.
pub async fn purge(
    State(state): State<ManageState>,
    JsonBody(request): JsonBody<PurgeRequest>,
) -> Result<Response, ManageError> {
    let Some(cache) = state.invalidator.http_cache() else {
        return Err(ManageError::Validation("caching is disabled".to_owned()));
    };
    let selector = selector(request)?;
    let deleted = cache.purge(&selector).await.map_err(|err| {
        tracing::warn!(error = %err, "cache purge failed");
        ManageError::Unavailable("cache")
    })?;
    let kind = match selector.target {
        PurgeTarget::Resource(_) => "exact",
        PurgeTarget::KeyPrefix(_) => "prefix",
    };
    let details = AuditDetails {
        project_id: selector.project_id.clone(),
        metadata: Some(json!({"kind": kind, "deleted": deleted})),
        ..AuditDetails::default()
    };
    Ok(with_details(Json(json!({"deleted": deleted})), details))
}

fn selector(request: PurgeRequest) -> Result<PurgeSelector, ManageError> {
    let required = || ManageError::Validation("method and url are required".to_owned());
    let method = request
        .method
        .filter(|m| !m.trim().is_empty())
        .ok_or_else(required)?;
    let url = request
        .url
        .filter(|u| !u.trim().is_empty())
        .ok_or_else(required)?;
    let invalid_url = || ManageError::Validation("invalid URL".to_owned());
    if Method::from_bytes(method.trim().as_bytes()).is_err() {
        return Err(ManageError::Validation("invalid method".to_owned()));
    }
    let uri: Uri = url.trim().parse().map_err(|_| invalid_url())?;
    let absolute = matches!(uri.scheme_str(), Some("http" | "https")) && uri.authority().is_some();
    if !(absolute || url.trim().starts_with('/')) {
        return Err(invalid_url());
    }
    let project_id = request.project_id.filter(|p| !p.is_empty());
    Ok(match request.prefix {
        Some(prefix) => PurgeSelector {
            project_id,
            target: PurgeTarget::KeyPrefix(prefix),
        },
        None => PurgeSelector::exact(project_id, &method, &uri),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: Option<&str>, url: Option<&str>) -> PurgeRequest {
        PurgeRequest {
            method: method.map(str::to_owned),
            url: url.map(str::to_owned),
            prefix: None,
            project_id: None,
        }
    }

    #[test]
    fn method_and_url_are_validated() {
        for (method, url, message) in [
            (None, Some("/v1/models"), "method and url are required"),
            (Some("GET"), Some(" "), "method and url are required"),
            (Some("GET"), Some("models"), "invalid URL"),
            (Some("GET"), Some("ftp://host/v1"), "invalid URL"),
            (Some("GET"), Some("http://exa mple/"), "invalid URL"),
            (Some("GE T"), Some("/v1/models"), "invalid method"),
        ] {
            let err = selector(request(method, url)).unwrap_err();
            assert_eq!(err.to_string(), message, "{method:?} {url:?}");
        }
        let absolute = selector(request(
            Some("get"),
            Some("https://api.example/v1/models?a=1"),
        ))
        .unwrap();
        let relative = selector(request(Some("GET"), Some("/v1/models?a=1"))).unwrap();
        assert_eq!(absolute, relative);
    }
}
