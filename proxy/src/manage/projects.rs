//! `/manage/projects`: create, list, read and update projects, revoke all their tokens.
//! Provider keys are accepted in full, stored encrypted (when configured) and only ever returned
//! obfuscated.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use llm_proxy_store::crypto::is_encrypted;
use llm_proxy_store::token::looks_obfuscated;
use llm_proxy_store::{NewProject, Project, ProjectUpdate, ProviderKey, Store, obfuscate_api_key};
use serde::{Deserialize, Serialize};

use super::ManageState;
use super::error::{JsonBody, ManageError, PathId};
use super::guard::{AuditDetails, with_details};

/// Longest accepted project name.
const MAX_NAME_CHARS: usize = 200;

/// Body of `POST /manage/projects`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateProject {
    name: String,
    api_key: String,
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
    let hint = obfuscate_api_key(api_key.expose());
    let project = state
        .store
        .create_project(NewProject { name, api_key })
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
    if name.is_none() && api_key.is_none() && body.is_active.is_none() {
        return Err(ManageError::Validation("no fields to update".into()));
    }
    let new_key_hint = api_key.as_ref().map(|key| obfuscate_api_key(key.expose()));
    let update = ProjectUpdate {
        name,
        api_key,
        is_active: body.is_active,
        revoke_tokens: body.revoke_tokens,
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
