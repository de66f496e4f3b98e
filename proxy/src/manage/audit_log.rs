//! `/manage/audit`: the stored audit events, filtered and paginated in SQL.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use llm_proxy_store::model::{DEFAULT_AUDIT_PAGE_SIZE, MAX_AUDIT_PAGE_SIZE};
use llm_proxy_store::{AuditEvent, AuditOutcome, AuditQuery};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::ManageState;
use super::error::{ManageError, PathId, QueryParams};

/// Query of `GET /manage/audit`; values are parsed here for precise error messages.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    action: Option<String>,
    client_ip: Option<String>,
    project_id: Option<String>,
    outcome: Option<String>,
    actor: Option<String>,
    request_id: Option<String>,
    correlation_id: Option<String>,
    method: Option<String>,
    path: Option<String>,
    search: Option<String>,
    start_time: Option<String>,
    end_time: Option<String>,
    page: Option<String>,
    page_size: Option<String>,
}

/// Response of `GET /manage/audit`.
#[derive(Debug, Serialize)]
pub struct AuditList {
    events: Vec<AuditEvent>,
    pagination: Pagination,
}

/// Position of a page in the filtered events.
#[derive(Debug, Serialize)]
pub struct Pagination {
    page: u32,
    page_size: u32,
    total_count: i64,
    total_pages: i64,
    has_next: bool,
    has_prev: bool,
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|value| !value.trim().is_empty())
}

fn parse_time(name: &str, value: Option<String>) -> Result<Option<DateTime<Utc>>, ManageError> {
    non_empty(value)
        .map(|value| {
            DateTime::parse_from_rfc3339(value.trim())
                .map(|time| time.with_timezone(&Utc))
                .map_err(|_| {
                    ManageError::Validation(format!("{name} must be an RFC 3339 timestamp"))
                })
        })
        .transpose()
}

fn parse_number(
    name: &str,
    value: Option<String>,
    default: u32,
    max: u32,
) -> Result<u32, ManageError> {
    let Some(value) = non_empty(value) else {
        return Ok(default);
    };
    value
        .trim()
        .parse::<u32>()
        .ok()
        .filter(|number| (1..=max).contains(number))
        .ok_or_else(|| {
            ManageError::Validation(format!("{name} must be an integer between 1 and {max}"))
        })
}

impl TryFrom<ListParams> for AuditQuery {
    type Error = ManageError;

    fn try_from(params: ListParams) -> Result<Self, ManageError> {
        let outcome = non_empty(params.outcome)
            .map(|outcome| {
                outcome.trim().parse::<AuditOutcome>().map_err(|_| {
                    ManageError::Validation(
                        "outcome must be one of success, failure, denied, error".into(),
                    )
                })
            })
            .transpose()?;
        Ok(Self {
            action: non_empty(params.action),
            client_ip: non_empty(params.client_ip),
            project_id: non_empty(params.project_id),
            outcome,
            actor: non_empty(params.actor),
            request_id: non_empty(params.request_id),
            correlation_id: non_empty(params.correlation_id),
            method: non_empty(params.method),
            path: non_empty(params.path),
            search: non_empty(params.search),
            start_time: parse_time("start_time", params.start_time)?,
            end_time: parse_time("end_time", params.end_time)?,
            page: parse_number("page", params.page, 1, u32::MAX)?,
            page_size: parse_number(
                "page_size",
                params.page_size,
                DEFAULT_AUDIT_PAGE_SIZE,
                MAX_AUDIT_PAGE_SIZE,
            )?,
        })
    }
}

/// `GET /manage/audit`.
pub async fn list(
    State(state): State<ManageState>,
    QueryParams(params): QueryParams<ListParams>,
) -> Result<Json<AuditList>, ManageError> {
    let query = AuditQuery::try_from(params)?;
    let page = state.store.list_audit(&query).await?;
    let page_size = i64::from(query.page_size);
    let total_pages = (page.total_count + page_size - 1) / page_size;
    let current = i64::from(query.page);
    Ok(Json(AuditList {
        events: page.events,
        pagination: Pagination {
            page: query.page,
            page_size: query.page_size,
            total_count: page.total_count,
            total_pages,
            has_next: current < total_pages,
            has_prev: current > 1,
        },
    }))
}

/// `GET /manage/audit/{id}`.
pub async fn get_one(
    State(state): State<ManageState>,
    PathId(id): PathId<String>,
) -> Result<Json<AuditEvent>, ManageError> {
    let id = Uuid::parse_str(&id).map_err(|_| ManageError::InvalidId("audit event"))?;
    let event = state
        .store
        .get_audit(id)
        .await?
        .ok_or(ManageError::NotFound("audit event"))?;
    Ok(Json(event))
}
