//! `/manage/tokens`: issue, list, read, update and revoke client tokens. The plaintext token is
//! returned once, by creation; afterwards tokens are addressed by their management id.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Duration, Utc};
use llm_proxy_store::{NewToken, TokenRecord, TokenUpdate, generate_token, hash_token};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::error::{JsonBody, ManageError, PathId, QueryParams};
use super::guard::{AuditDetails, with_details};
use super::{CacheInvalidator, ManageState};

/// Longest token lifetime: one year.
pub const MAX_DURATION_MINUTES: i64 = 525_600;

/// Body of `POST /manage/tokens`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    project_id: String,
    duration_minutes: i64,
    max_requests: Option<i64>,
}

/// Body of `PATCH /manage/tokens/{id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchToken {
    is_active: Option<bool>,
    max_requests: Option<i64>,
}

/// Query of `GET /manage/tokens`.
#[derive(Debug, Deserialize)]
pub struct ListParams {
    #[serde(rename = "projectId")]
    project_id: Option<String>,
}

/// Response of `POST /manage/tokens`: the only response that contains the token itself.
#[derive(Debug, Serialize)]
pub struct CreatedToken {
    id: Uuid,
    token: String,
    project_id: String,
    expires_at: Option<DateTime<Utc>>,
    max_requests: Option<i64>,
}

/// A token as listed: everything but the secret.
#[derive(Debug, Serialize)]
pub struct TokenResponse {
    id: Uuid,
    project_id: String,
    expires_at: Option<DateTime<Utc>>,
    is_active: bool,
    deactivated_at: Option<DateTime<Utc>>,
    request_count: i64,
    max_requests: Option<i64>,
    created_at: DateTime<Utc>,
    last_used_at: Option<DateTime<Utc>>,
    cache_hit_count: i64,
}

impl TokenResponse {
    /// `request_count` counts requests admitted: the ones this process reserved ahead for the
    /// token and has not served yet are left out (see `crate::tokens`).
    fn new(token: TokenRecord, invalidator: &dyn CacheInvalidator) -> Self {
        let unserved = invalidator.unserved_reservation(&token.token_hash);
        Self {
            id: token.id,
            project_id: token.project_id,
            expires_at: token.expires_at,
            is_active: token.is_active,
            deactivated_at: token.deactivated_at,
            request_count: (token.request_count - unserved).max(0),
            max_requests: token.max_requests,
            created_at: token.created_at,
            last_used_at: token.last_used_at,
            cache_hit_count: token.cache_hit_count,
        }
    }
}

fn parse_id(id: &str) -> Result<Uuid, ManageError> {
    Uuid::parse_str(id).map_err(|_| ManageError::InvalidId("token"))
}

/// `0` means unlimited; negative quotas are invalid.
fn validated_quota(max_requests: i64) -> Result<Option<i64>, ManageError> {
    if max_requests < 0 {
        return Err(ManageError::Validation("max_requests must be >= 0".into()));
    }
    Ok((max_requests > 0).then_some(max_requests))
}

/// `POST /manage/tokens`.
pub async fn create(
    State(state): State<ManageState>,
    JsonBody(body): JsonBody<CreateToken>,
) -> Result<Response, ManageError> {
    let project_id = body.project_id.trim();
    if project_id.is_empty() {
        return Err(ManageError::Validation("project_id is required".into()));
    }
    if !(1..=MAX_DURATION_MINUTES).contains(&body.duration_minutes) {
        return Err(ManageError::Validation(format!(
            "duration_minutes must be between 1 and {MAX_DURATION_MINUTES}"
        )));
    }
    let max_requests = body
        .max_requests
        .map(validated_quota)
        .transpose()?
        .flatten();
    let project = state
        .store
        .get_project(project_id)
        .await?
        .ok_or(ManageError::NotFound("project"))?;
    if !project.is_active {
        return Err(ManageError::ProjectInactive);
    }
    let token = generate_token()?;
    let record = state
        .store
        .create_token(NewToken {
            id: Uuid::now_v7(),
            token_hash: hash_token(&token),
            project_id: project.id,
            expires_at: Some(llm_proxy_store::now() + Duration::minutes(body.duration_minutes)),
            max_requests,
        })
        .await?;
    // The data path may remember this hash as unknown (see crate::tokens).
    state.invalidator.token_changed(&record.token_hash);
    let details = AuditDetails {
        project_id: Some(record.project_id.clone()),
        token_id: Some(record.id.to_string()),
        metadata: None,
    };
    let created = CreatedToken {
        id: record.id,
        token,
        project_id: record.project_id,
        expires_at: record.expires_at,
        max_requests: record.max_requests,
    };
    Ok(with_details((StatusCode::CREATED, Json(created)), details))
}

/// `GET /manage/tokens[?projectId=…]`.
pub async fn list(
    State(state): State<ManageState>,
    QueryParams(params): QueryParams<ListParams>,
) -> Result<Response, ManageError> {
    let project_id = params.project_id.filter(|id| !id.is_empty());
    let tokens = state.store.list_tokens(project_id.as_deref()).await?;
    let invalidator = &*state.invalidator;
    let body: Vec<TokenResponse> = tokens
        .into_iter()
        .map(|token| TokenResponse::new(token, invalidator))
        .collect();
    let details = AuditDetails {
        project_id,
        ..AuditDetails::default()
    };
    Ok(with_details(Json(body), details))
}

/// `GET /manage/tokens/{id}`.
pub async fn get_one(
    State(state): State<ManageState>,
    PathId(id): PathId<String>,
) -> Result<Response, ManageError> {
    let token = state
        .store
        .get_token(parse_id(&id)?)
        .await?
        .ok_or(ManageError::NotFound("token"))?;
    Ok(with_project(token, &*state.invalidator))
}

/// `PATCH /manage/tokens/{id}`.
pub async fn update(
    State(state): State<ManageState>,
    PathId(id): PathId<String>,
    JsonBody(body): JsonBody<PatchToken>,
) -> Result<Response, ManageError> {
    let id = parse_id(&id)?;
    if body.is_active.is_none() && body.max_requests.is_none() {
        return Err(ManageError::Validation("no fields to update".into()));
    }
    let update = TokenUpdate {
        is_active: body.is_active,
        max_requests: body.max_requests.map(validated_quota).transpose()?,
    };
    let token = state
        .store
        .update_token(id, update)
        .await?
        .ok_or(ManageError::NotFound("token"))?;
    state.invalidator.token_changed(&token.token_hash);
    Ok(with_project(token, &*state.invalidator))
}

/// `DELETE /manage/tokens/{id}`: revokes (idempotent).
pub async fn revoke(
    State(state): State<ManageState>,
    PathId(id): PathId<String>,
) -> Result<Response, ManageError> {
    let token = state
        .store
        .revoke_token(parse_id(&id)?)
        .await?
        .ok_or(ManageError::NotFound("token"))?;
    state.invalidator.token_changed(&token.token_hash);
    let details = AuditDetails {
        project_id: Some(token.project_id),
        ..AuditDetails::default()
    };
    Ok(with_details(
        StatusCode::NO_CONTENT.into_response(),
        details,
    ))
}

fn with_project(token: TokenRecord, invalidator: &dyn CacheInvalidator) -> Response {
    let details = AuditDetails {
        project_id: Some(token.project_id.clone()),
        ..AuditDetails::default()
    };
    with_details(Json(TokenResponse::new(token, invalidator)), details)
}
