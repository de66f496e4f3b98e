//! `/manage/projects`: create, list, read and update projects, revoke all their tokens.
//! Provider keys are accepted in full, stored encrypted (when configured) and only ever returned
//! obfuscated. Each project may carry request rate limits (`rate_limits`: per token of the
//! project and for the project as a whole), enforced by [`crate::ratelimit`].

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use llm_proxy_store::crypto::is_encrypted;
use llm_proxy_store::token::looks_obfuscated;
use llm_proxy_store::{
    NewProject, Project, ProjectRateLimits, ProjectUpdate, ProviderKey, RateLimit, Store,
    obfuscate_api_key,
};
use serde::{Deserialize, Deserializer, Serialize};

use super::ManageState;
use super::error::{JsonBody, ManageError, PathId};
use super::guard::{AuditDetails, with_details};

/// Longest accepted project name.
const MAX_NAME_CHARS: usize = 200;

/// Longest accepted rate-limit window: one day.
const MAX_WINDOW_SECONDS: u64 = 86_400;

/// Body of `POST /manage/projects`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateProject {
    name: String,
    api_key: String,
    #[serde(default)]
    rate_limits: Option<RateLimitsBody>,
}

/// Body of `PATCH /manage/projects/{id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchProject {
    name: Option<String>,
    api_key: Option<String>,
    is_active: Option<bool>,
    #[serde(default)]
    revoke_tokens: bool,
    /// Absent = unchanged; `null` clears both scopes.
    #[serde(default, deserialize_with = "present")]
    rate_limits: Option<Option<RateLimitsBody>>,
}

/// `rate_limits` of a request body. Each scope: absent = unchanged (none on create), `null` =
/// no limit, an object = this limit.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitsBody {
    #[serde(default, deserialize_with = "present")]
    per_token: Option<Option<RateLimitBody>>,
    #[serde(default, deserialize_with = "present")]
    per_project: Option<Option<RateLimitBody>>,
}

/// One limit as sent; signed so that a negative value gets a validation message, not a type error.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitBody {
    requests: i64,
    window_seconds: i64,
}

/// Tells a field sent as `null` (`Some(None)`) from an absent one (`None`, via `#[serde(default)]`).
fn present<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(deserializer).map(Some)
}

/// A limit as returned by the API.
#[derive(Debug, Serialize)]
pub struct RateLimitResponse {
    requests: u64,
    window_seconds: u64,
}

/// `rate_limits` of a project as returned by the API; `null` = no limit in that scope.
#[derive(Debug, Serialize)]
pub struct RateLimitsResponse {
    per_token: Option<RateLimitResponse>,
    per_project: Option<RateLimitResponse>,
}

impl From<ProjectRateLimits> for RateLimitsResponse {
    fn from(limits: ProjectRateLimits) -> Self {
        let shown = |limit: Option<RateLimit>| {
            limit.map(|l| RateLimitResponse {
                requests: l.requests,
                window_seconds: l.window_seconds,
            })
        };
        Self {
            per_token: shown(limits.per_token),
            per_project: shown(limits.per_project),
        }
    }
}

/// A project as returned by the API, with its provider key obfuscated.
#[derive(Debug, Serialize)]
pub struct ProjectResponse {
    id: String,
    name: String,
    api_key: String,
    is_active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    deactivated_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    rate_limits: RateLimitsResponse,
}

impl ProjectResponse {
    fn new(project: Project, key_hint: String) -> Self {
        Self {
            id: project.id,
            name: project.name,
            api_key: key_hint,
            is_active: project.is_active,
            deactivated_at: project.deactivated_at,
            created_at: project.created_at,
            updated_at: project.updated_at,
            rate_limits: project.rate_limits.into(),
        }
    }
}

/// Body of `POST /manage/projects/{id}/tokens/revoke`.
#[derive(Debug, Serialize)]
pub struct RevokeTokensResponse {
    revoked_count: usize,
    already_revoked_count: i64,
    total_tokens: i64,
}

/// The obfuscated provider key of a stored project (decrypted first when encrypted).
async fn key_hint(store: &dyn Store, project: &Project) -> Result<String, ManageError> {
    if !is_encrypted(&project.api_key) {
        return Ok(obfuscate_api_key(&project.api_key));
    }
    let access = store
        .project_access(&project.id)
        .await?
        .ok_or(ManageError::NotFound("project"))?;
    Ok(obfuscate_api_key(access.api_key.expose()))
}

fn validated_name(name: &str) -> Result<String, ManageError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(ManageError::Validation("name must not be empty".into()));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(ManageError::Validation(format!(
            "name must be at most {MAX_NAME_CHARS} characters"
        )));
    }
    Ok(name.to_owned())
}

fn validated_api_key(key: &str) -> Result<ProviderKey, ManageError> {
    let key = key.trim();
    if key.is_empty() {
        return Err(ManageError::Validation("api_key must not be empty".into()));
    }
    if looks_obfuscated(key) {
        return Err(ManageError::Validation(
            "cannot save obfuscated API key - please provide the full API key".into(),
        ));
    }
    Ok(ProviderKey::new(key))
}

/// Checks one limit; `field` names it in the message (`rate_limits.per_token`).
fn validated_limit(field: &str, limit: &RateLimitBody) -> Result<RateLimit, ManageError> {
    let requests = u64::try_from(limit.requests)
        .ok()
        .filter(|&n| n >= 1)
        .ok_or_else(|| ManageError::Validation(format!("{field}.requests must be at least 1")))?;
    let window_seconds = u64::try_from(limit.window_seconds)
        .ok()
        .filter(|&s| (1..=MAX_WINDOW_SECONDS).contains(&s))
        .ok_or_else(|| {
            ManageError::Validation(format!(
                "{field}.window_seconds must be between 1 and {MAX_WINDOW_SECONDS}"
            ))
        })?;
    Ok(RateLimit {
        requests,
        window_seconds,
    })
}

/// Validates one scope: `None` = absent, `Some(None)` = cleared, `Some(Some(_))` = set.
fn validated_scope(
    field: &str,
    scope: Option<Option<RateLimitBody>>,
) -> Result<Option<Option<RateLimit>>, ManageError> {
    scope
        .map(|limit| limit.map(|l| validated_limit(field, &l)).transpose())
        .transpose()
}

/// The per-token and per-project changes of a body's `rate_limits`.
type ScopeChanges = (Option<Option<RateLimit>>, Option<Option<RateLimit>>);

fn validated_limits(body: RateLimitsBody) -> Result<ScopeChanges, ManageError> {
    Ok((
        validated_scope("rate_limits.per_token", body.per_token)?,
        validated_scope("rate_limits.per_project", body.per_project)?,
    ))
}

/// `GET /manage/projects`.
pub async fn list(
    State(state): State<ManageState>,
) -> Result<Json<Vec<ProjectResponse>>, ManageError> {
    let projects = state.store.list_projects().await?;
    let mut listed = Vec::with_capacity(projects.len());
    for project in projects {
        let hint = key_hint(&*state.store, &project).await?;
        listed.push(ProjectResponse::new(project, hint));
    }
    Ok(Json(listed))
}

/// `POST /manage/projects`.
pub async fn create(
    State(state): State<ManageState>,
    JsonBody(body): JsonBody<CreateProject>,
) -> Result<Response, ManageError> {
    let name = validated_name(&body.name)?;
    let api_key = validated_api_key(&body.api_key)?;
    let (per_token, per_project) = body
        .rate_limits
        .map(validated_limits)
        .transpose()?
        .unwrap_or_default();
    let rate_limits = ProjectRateLimits {
        per_token: per_token.flatten(),
        per_project: per_project.flatten(),
    };
    let hint = obfuscate_api_key(api_key.expose());
    let project = state
        .store
        .create_project(NewProject {
            name,
            api_key,
            rate_limits,
        })
        .await?;
    let details = AuditDetails {
        project_id: Some(project.id.clone()),
        ..AuditDetails::default()
    };
    Ok(with_details(
        (
            StatusCode::CREATED,
            Json(ProjectResponse::new(project, hint)),
        ),
        details,
    ))
}

/// `GET /manage/projects/{id}`.
pub async fn get_one(
    State(state): State<ManageState>,
    PathId(id): PathId<String>,
) -> Result<Json<ProjectResponse>, ManageError> {
    let project = state
        .store
        .get_project(&id)
        .await?
        .ok_or(ManageError::NotFound("project"))?;
    let hint = key_hint(&*state.store, &project).await?;
    Ok(Json(ProjectResponse::new(project, hint)))
}

/// `PATCH /manage/projects/{id}`.
pub async fn update(
    State(state): State<ManageState>,
    PathId(id): PathId<String>,
    JsonBody(body): JsonBody<PatchProject>,
) -> Result<Response, ManageError> {
    let name = body.name.as_deref().map(validated_name).transpose()?;
    // An empty key means "unchanged", as upstream clients send the field blank.
    let api_key = body
        .api_key
        .as_deref()
        .filter(|key| !key.trim().is_empty())
        .map(validated_api_key)
        .transpose()?;
    if body.revoke_tokens && body.is_active != Some(false) {
        return Err(ManageError::Validation(
            "revoke_tokens requires is_active=false".into(),
        ));
    }
    let (per_token_limit, per_project_limit) = match body.rate_limits {
        None => (None, None),
        Some(None) => (Some(None), Some(None)),
        Some(Some(limits)) => validated_limits(limits)?,
    };
    if name.is_none()
        && api_key.is_none()
        && body.is_active.is_none()
        && per_token_limit.is_none()
        && per_project_limit.is_none()
    {
        return Err(ManageError::Validation("no fields to update".into()));
    }
    let new_key_hint = api_key.as_ref().map(|key| obfuscate_api_key(key.expose()));
    let update = ProjectUpdate {
        name,
        api_key,
        is_active: body.is_active,
        revoke_tokens: body.revoke_tokens,
        per_token_limit,
        per_project_limit,
    };
    let updated = state
        .store
        .update_project(&id, update)
        .await?
        .ok_or(ManageError::NotFound("project"))?;
    state.invalidator.project_changed(&id);
    for hash in &updated.revoked_tokens {
        state.invalidator.token_changed(hash);
    }
    let hint = match new_key_hint {
        Some(hint) => hint,
        None => key_hint(&*state.store, &updated.project).await?,
    };
    let details = AuditDetails {
        metadata: body
            .revoke_tokens
            .then(|| serde_json::json!({ "tokens_revoked": updated.revoked_tokens.len() })),
        ..AuditDetails::default()
    };
    Ok(with_details(
        Json(ProjectResponse::new(updated.project, hint)),
        details,
    ))
}

/// `DELETE /manage/projects/{id}`: projects are deactivated, never deleted.
pub async fn delete() -> ManageError {
    ManageError::MethodNotAllowed {
        allow: "GET, PATCH".to_owned(),
        message: "project deletion is not permitted",
    }
}

/// `POST /manage/projects/{id}/tokens/revoke`.
pub async fn revoke_tokens(
    State(state): State<ManageState>,
    PathId(id): PathId<String>,
) -> Result<Response, ManageError> {
    let summary = state
        .store
        .revoke_project_tokens(&id)
        .await?
        .ok_or(ManageError::NotFound("project"))?;
    for hash in &summary.revoked {
        state.invalidator.token_changed(hash);
    }
    let body = RevokeTokensResponse {
        revoked_count: summary.revoked.len(),
        already_revoked_count: summary.already_revoked,
        total_tokens: summary.total,
    };
    let details = AuditDetails {
        metadata: Some(serde_json::json!({ "tokens_revoked": body.revoked_count })),
        ..AuditDetails::default()
    };
    Ok(with_details(Json(body), details))
}
