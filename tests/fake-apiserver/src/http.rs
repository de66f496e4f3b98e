//! HTTP routing: turns a request path and method into a discovery answer or a verb on a resource,
//! applies injected faults, records requests and writes, and renders objects and lists.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::Shared;
use crate::controls::{RequestRecord, Verb, WriteRecord};
use crate::error::ApiError;
use crate::registry::ResourceInfo;
use crate::selector::{FieldSelector, LabelSelector};
use crate::store::{PatchBody, Writer};
use crate::watch::{self, WatchRequest};

/// A request addressed to a resource (as opposed to discovery).
#[derive(Debug, Clone)]
struct Target {
    group: String,
    version: String,
    plural: String,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
}

enum Route {
    Version,
    CoreVersions,
    Groups,
    ResourceList { group: String, version: String },
    Resource(Target),
}

fn parse_route(path: &str) -> Option<Route> {
    let segments: Vec<&str> = path
        .split('/')
        .filter(|segment| !segment.is_empty())
        .collect();
    let (group, version, rest) = match segments.as_slice() {
        ["version"] => return Some(Route::Version),
        ["api"] => return Some(Route::CoreVersions),
        ["apis"] => return Some(Route::Groups),
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return None,
    };
    let owned = |text: &&str| (*text).to_owned();
    let (namespace, resource_path) = match rest {
        [] => {
            return Some(Route::ResourceList {
                group: group.to_owned(),
                version: version.to_owned(),
            });
        }
        // `/api/v1/namespaces/{name}[/status]` addresses a Namespace itself.
        ["namespaces", namespace, plural, tail @ ..]
            if *plural != "status" && *plural != "finalize" =>
        {
            let mut resource_path = vec![*plural];
            resource_path.extend_from_slice(tail);
            (Some(owned(namespace)), resource_path)
        }
        other => (None, other.to_vec()),
    };
    let (plural, name, subresource) = match resource_path.as_slice() {
        [plural] => (owned(plural), None, None),
        [plural, name] => (owned(plural), Some(owned(name)), None),
        [plural, name, subresource] => (owned(plural), Some(owned(name)), Some(owned(subresource))),
        _ => return None,
    };
    Some(Route::Resource(Target {
        group: group.to_owned(),
        version: version.to_owned(),
        plural,
        namespace,
        name,
        subresource,
    }))
}

/// An object as served at `info`'s version; as `PartialObjectMetadata` when the client asked for it.
pub fn present(info: &ResourceInfo, object: &Value, partial_metadata: bool) -> Value {
    if partial_metadata {
        return json!({
            "apiVersion": "meta.k8s.io/v1",
            "kind": "PartialObjectMetadata",
            "metadata": object.get("metadata").cloned().unwrap_or_else(|| json!({})),
        });
    }
    let mut object = object.clone();
    if let Some(map) = object.as_object_mut() {
        map.insert("apiVersion".to_owned(), Value::from(info.api_version()));
        map.insert("kind".to_owned(), Value::from(info.kind.clone()));
    }
    object
}

fn wants_partial_metadata(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|accept| accept.to_str().ok())
        .is_some_and(|accept| accept.contains("as=PartialObjectMetadata"))
}

fn verb_of(
    method: &Method,
    target: &Target,
    params: &HashMap<String, String>,
) -> Result<Verb, ApiError> {
    let watching = params
        .get("watch")
        .is_some_and(|value| value == "true" || value == "1");
    match (method.as_str(), target.name.is_some()) {
        ("GET", true) => Ok(Verb::Get),
        ("GET", false) if watching => Ok(Verb::Watch),
        ("GET", false) => Ok(Verb::List),
        ("POST", false) => Ok(Verb::Create),
        ("PUT", true) => Ok(Verb::Update),
        ("PATCH", true) => Ok(Verb::Patch),
        ("DELETE", true) => Ok(Verb::Delete),
        _ => Err(ApiError::MethodNotAllowed),
    }
}

/// The field manager of a write: `fieldManager`, else the User-Agent's product name, as a real server does.
fn field_manager(params: &HashMap<String, String>, headers: &HeaderMap) -> String {
    params.get("fieldManager").cloned().unwrap_or_else(|| {
        headers
            .get(header::USER_AGENT)
            .and_then(|agent| agent.to_str().ok())
            .and_then(|agent| agent.split('/').next())
            .filter(|product| !product.is_empty())
            .unwrap_or("unknown")
            .to_owned()
    })
}

fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|error| ApiError::BadRequest(format!("invalid JSON body: {error}")))
}

fn parse_patch(
    headers: &HeaderMap,
    params: &HashMap<String, String>,
    body: &[u8],
) -> Result<PatchBody, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    let media_type = content_type.split(';').next().unwrap_or_default().trim();
    match media_type {
        "application/apply-patch+yaml" => {
            let object = match serde_json::from_slice::<Value>(body) {
                Ok(object) => object,
                Err(_) => {
                    let text = std::str::from_utf8(body).map_err(|_| {
                        ApiError::BadRequest("the apply body is not UTF-8".to_owned())
                    })?;
                    serde_saphyr::from_str::<Value>(text).map_err(|error| {
                        ApiError::BadRequest(format!("invalid YAML body: {error}"))
                    })?
                }
            };
            let force = params.get("force").is_some_and(|value| value == "true");
            Ok(PatchBody::Apply { object, force })
        }
        "application/merge-patch+json" | "application/strategic-merge-patch+json" => {
            Ok(PatchBody::Merge(parse_json(body)?))
        }
        "application/json-patch+json" => serde_json::from_slice(body)
            .map(PatchBody::Json)
            .map_err(|error| ApiError::BadRequest(format!("invalid JSON patch: {error}"))),
        other => Err(ApiError::UnsupportedMediaType(other.to_owned())),
    }
}

fn is_orphaning(params: &HashMap<String, String>, body: &[u8]) -> bool {
    let from_body = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|options| {
            options
                .get("propagationPolicy")
                .and_then(Value::as_str)
                .map(|policy| policy == "Orphan")
        })
        .unwrap_or(false);
    from_body
        || params
            .get("propagationPolicy")
            .is_some_and(|policy| policy == "Orphan")
}

fn parse_version(text: Option<&String>) -> Result<Option<u64>, ApiError> {
    match text.map(String::as_str) {
        None | Some("") => Ok(None),
        Some(text) => text
            .parse()
            .map(Some)
            .map_err(|_| ApiError::BadRequest(format!("invalid resourceVersion {text:?}"))),
    }
}

/// The single entry point of the fake server.
pub async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let response = match parse_route(uri.path()) {
        None => ApiError::UnknownResource.into_response(),
        Some(Route::Version) => Json(json!({
            "major": "1", "minor": "33", "gitVersion": "v1.33.0-fake", "platform": "linux/amd64",
        }))
        .into_response(),
        Some(Route::CoreVersions) => {
            Json(shared.lock().store.registry.core_versions()).into_response()
        }
        Some(Route::Groups) => Json(shared.lock().store.registry.group_list()).into_response(),
        Some(Route::ResourceList { group, version }) => {
            match shared.lock().store.registry.resource_list(&group, &version) {
                Some(list) => Json(list).into_response(),
                None => ApiError::UnknownResource.into_response(),
            }
        }
        Some(Route::Resource(target)) => handle_resource(
            &shared,
            &method,
            uri.path(),
            &headers,
            &params,
            &body,
            target,
        ),
    };
    shared.notify_activity();
    response
}

fn handle_resource(
    shared: &Arc<Shared>,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    params: &HashMap<String, String>,
    body: &[u8],
    target: Target,
) -> Response {
    let verb = match verb_of(method, &target, params) {
        Ok(verb) => verb,
        Err(error) => return error.into_response(),
    };
    let outcome = {
        let mut state = shared.lock();
        let fault = state.controls.take_fault(verb, &target.plural);
        let outcome = match fault {
            Some(code) => Err(ApiError::InjectedFault {
                code,
                reason: format!("{verb} {}", target.plural),
            }),
            None => execute(
                shared,
                &mut state,
                &ResourceRequest {
                    verb,
                    path,
                    headers,
                    params,
                    body,
                    target: &target,
                },
            ),
        };
        let status = match &outcome {
            Ok(response) => response.status().as_u16(),
            Err(error) => error.code_and_reason().0.as_u16(),
        };
        state.controls.requests.push(RequestRecord {
            verb,
            path: path.to_owned(),
            resource: target.plural.clone(),
            namespace: target.namespace.clone(),
            name: target.name.clone(),
            subresource: target.subresource.clone(),
            status,
        });
        outcome
    };
    outcome.unwrap_or_else(IntoResponse::into_response)
}

/// One routed request to a resource endpoint.
struct ResourceRequest<'a> {
    verb: Verb,
    path: &'a str,
    headers: &'a HeaderMap,
    params: &'a HashMap<String, String>,
    body: &'a [u8],
    target: &'a Target,
}

fn execute(
    shared: &Arc<Shared>,
    state: &mut crate::ServerState,
    request: &ResourceRequest<'_>,
) -> Result<Response, ApiError> {
    let &ResourceRequest {
        verb,
        path,
        headers,
        params,
        body,
        target,
    } = request;
    let info = state
        .store
        .registry
        .lookup(&target.group, &target.version, &target.plural)
        .cloned()
        .ok_or(ApiError::UnknownResource)?;
    let namespace = target.namespace.as_deref();
    if !info.namespaced && namespace.is_some() {
        return Err(ApiError::UnknownResource);
    }
    if info.namespaced && namespace.is_none() && !matches!(verb, Verb::List | Verb::Watch) {
        return Err(ApiError::MethodNotAllowed);
    }
    match target.subresource.as_deref() {
        None => {}
        Some("status")
            if info.has_status && matches!(verb, Verb::Get | Verb::Update | Verb::Patch) => {}
        Some(_) => return Err(ApiError::UnknownResource),
    }
    if params.contains_key("dryRun") {
        return Err(ApiError::BadRequest(
            "dryRun is not supported by the fake API server".to_owned(),
        ));
    }
    let partial = wants_partial_metadata(headers);
    let name = target.name.as_deref().unwrap_or_default();
    let manager = field_manager(params, headers);
    let writer = Writer {
        manager: &manager,
        subresource: target.subresource.as_deref(),
    };
    let labels = LabelSelector::parse(params.get("labelSelector").map_or("", String::as_str))?;
    let fields = FieldSelector::parse(params.get("fieldSelector").map_or("", String::as_str))?;
    let store = &mut state.store;
    let (object, changed) = match verb {
        Verb::Get => {
            return Ok(
                Json(present(&info, &store.get(&info, namespace, name)?, partial)).into_response(),
            );
        }
        Verb::List => {
            let items: Vec<Value> = store
                .list(&info, namespace, &labels, &fields)
                .iter()
                .map(|object| present(&info, object, partial))
                .collect();
            let (api_version, kind) = if partial {
                (
                    "meta.k8s.io/v1".to_owned(),
                    "PartialObjectMetadataList".to_owned(),
                )
            } else {
                (info.api_version(), format!("{}List", info.kind))
            };
            return Ok(Json(json!({
                "apiVersion": api_version,
                "kind": kind,
                "metadata": {"resourceVersion": store.current_resource_version().to_string()},
                "items": items,
            }))
            .into_response());
        }
        Verb::Watch => {
            let request = WatchRequest {
                info,
                namespace: target.namespace.clone(),
                labels,
                fields,
                resource_version: parse_version(params.get("resourceVersion"))?,
                timeout: params
                    .get("timeoutSeconds")
                    .and_then(|seconds| seconds.parse().ok())
                    .map(Duration::from_secs),
                bookmarks: params
                    .get("allowWatchBookmarks")
                    .is_some_and(|value| value == "true"),
                send_initial_events: params
                    .get("sendInitialEvents")
                    .is_some_and(|value| value == "true"),
                partial_metadata: partial,
            };
            return Ok(watch::start_locked(shared, store, request));
        }
        Verb::Create => (
            store.create(&info, namespace, parse_json(body)?, writer)?,
            true,
        ),
        Verb::Update => store.replace(&info, namespace, name, parse_json(body)?, writer)?,
        Verb::Patch => {
            let patch = parse_patch(headers, params, body)?;
            if matches!(patch, PatchBody::Apply { .. }) && !params.contains_key("fieldManager") {
                return Err(ApiError::Invalid {
                    kind: "PatchOptions.meta.k8s.io".to_owned(),
                    name: String::new(),
                    message: "fieldManager: Required value: is required for apply patch".to_owned(),
                });
            }
            store.patch(&info, namespace, name, patch, writer)?
        }
        Verb::Delete => (
            store.delete(&info, namespace, name, is_orphaning(params, body))?,
            true,
        ),
    };
    let status = if verb == Verb::Create {
        axum::http::StatusCode::CREATED
    } else {
        axum::http::StatusCode::OK
    };
    state.controls.writes.push(WriteRecord {
        verb,
        path: path.to_owned(),
        kind: info.kind.clone(),
        namespace: object
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .map(str::to_owned),
        name: object
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or(name)
            .to_owned(),
        subresource: target.subresource.clone(),
        changed,
    });
    Ok((status, Json(present(&info, &object, partial))).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_paths_are_told_apart_from_namespaced_resources() {
        let Some(Route::Resource(target)) = parse_route("/api/v1/namespaces/team/status") else {
            panic!("expected a resource route");
        };
        assert_eq!(
            (
                target.plural.as_str(),
                target.name.as_deref(),
                target.subresource.as_deref()
            ),
            ("namespaces", Some("team"), Some("status"))
        );
        let Some(Route::Resource(target)) =
            parse_route("/apis/apps/v1/namespaces/team/deployments/web/status")
        else {
            panic!("expected a resource route");
        };
        assert_eq!(target.namespace.as_deref(), Some("team"));
        assert_eq!(target.name.as_deref(), Some("web"));
        assert!(parse_route("/healthz").is_none());
    }
}
