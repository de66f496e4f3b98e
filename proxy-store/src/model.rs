//! Domain types of the store: projects, token records, audit events and the inputs and outcomes
//! of the store's operations.

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::token::TokenHash;

/// A project: a provider API key and the tokens issued against it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Project {
    /// UUIDv4, generated at creation.
    pub id: String,
    /// Unique name.
    pub name: String,
    /// The provider key as stored: `enc:v1:…` when encrypted, plaintext otherwise. Never log it.
    pub api_key: String,
    /// Inactive projects cannot be proxied nor receive new tokens.
    pub is_active: bool,
    /// When the project was last deactivated; cleared on reactivation.
    pub deactivated_at: Option<DateTime<Utc>>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// Request rate limits of the project (none by default).
    #[sqlx(flatten)]
    pub rate_limits: ProjectRateLimits,
}

/// A request rate limit: at most `requests` requests per window of `window_seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RateLimit {
    /// Requests admitted per window (at least 1).
    pub requests: u64,
    /// Window length in seconds (at least 1).
    pub window_seconds: u64,
}

impl RateLimit {
    /// A limit from its two stored columns; `None` unless both are set and positive.
    fn from_columns(requests: Option<i64>, window_seconds: Option<i64>) -> Option<Self> {
        let requests = u64::try_from(requests?).ok().filter(|&n| n > 0)?;
        let window_seconds = u64::try_from(window_seconds?).ok().filter(|&n| n > 0)?;
        Some(Self {
            requests,
            window_seconds,
        })
    }

    /// The two columns of a limit (`NULL`s for no limit), as the databases store them.
    pub fn to_columns(limit: Option<Self>) -> (Option<i64>, Option<i64>) {
        match limit {
            Some(limit) => (
                i64::try_from(limit.requests).ok(),
                i64::try_from(limit.window_seconds).ok(),
            ),
            None => (None, None),
        }
    }
}

/// The rate limits of a project, each optional: per token of the project and for the project as a
/// whole.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ProjectRateLimits {
    /// Limit of each token of the project.
    pub per_token: Option<RateLimit>,
    /// Limit shared by every token of the project.
    pub per_project: Option<RateLimit>,
}

impl<'r, R: sqlx::Row> sqlx::FromRow<'r, R> for ProjectRateLimits
where
    &'r str: sqlx::ColumnIndex<R>,
    Option<i64>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    fn from_row(row: &'r R) -> Result<Self, sqlx::Error> {
        Ok(Self {
            per_token: RateLimit::from_columns(
                row.try_get("rate_limit_token_requests")?,
                row.try_get("rate_limit_token_window_seconds")?,
            ),
            per_project: RateLimit::from_columns(
                row.try_get("rate_limit_project_requests")?,
                row.try_get("rate_limit_project_window_seconds")?,
            ),
        })
    }
}

/// A stored token. The plaintext token is never stored, only its hash.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct TokenRecord {
    /// Management id of the token (used in `/manage/tokens/{id}`).
    pub id: Uuid,
    /// SHA-256 of the token string: the lookup key of the data path.
    #[sqlx(try_from = "String")]
    pub token_hash: TokenHash,
    /// Owning project.
    pub project_id: String,
    /// Expiry; `None` = never.
    pub expires_at: Option<DateTime<Utc>>,
    /// Revoked tokens are inactive.
    pub is_active: bool,
    /// When the token was revoked.
    pub deactivated_at: Option<DateTime<Utc>>,
    /// Requests admitted so far (cache hits excluded).
    pub request_count: i64,
    /// Lifetime quota; `None` = unlimited.
    pub max_requests: Option<i64>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last admitted request.
    pub last_used_at: Option<DateTime<Utc>>,
    /// Requests served from the HTTP cache.
    pub cache_hit_count: i64,
}

impl TokenRecord {
    /// Whether the token has a positive lifetime quota (checked atomically on every request).
    pub fn is_limited(&self) -> bool {
        self.max_requests.is_some_and(|max| max > 0)
    }
}

/// Result of one atomic admission attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Counted; the record after the increment.
    Admitted(TokenRecord),
    /// No token with that hash.
    NotFound,
    /// Revoked.
    Inactive,
    /// Past `expires_at`.
    Expired,
    /// The owning project is inactive.
    ProjectInactive,
    /// `request_count` reached `max_requests`.
    QuotaExceeded,
}

/// Usage accumulated by the data path for one token, flushed in batches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageDelta {
    /// The token.
    pub hash: TokenHash,
    /// Requests to add to `request_count`; negative to return unused quota reservations.
    pub requests: i64,
    /// Cache hits to add to `cache_hit_count`.
    pub cache_hits: i64,
    /// Latest use in the batch; `last_used_at` only moves forward.
    pub last_used_at: DateTime<Utc>,
}

/// A decrypted provider API key. `Debug` and `Display` never print it.
#[derive(Clone, PartialEq, Eq)]
pub struct ProviderKey(String);

impl ProviderKey {
    /// Wraps a plaintext key.
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into())
    }

    /// The plaintext key, for the upstream `Authorization` header only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for ProviderKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl std::fmt::Display for ProviderKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

/// What the data path needs of a project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectAccess {
    /// Whether requests of the project are allowed.
    pub is_active: bool,
    /// The decrypted provider key.
    pub api_key: ProviderKey,
    /// The project's request rate limits.
    pub rate_limits: ProjectRateLimits,
}

/// Input of project creation.
#[derive(Debug, Clone)]
pub struct NewProject {
    /// Unique name.
    pub name: String,
    /// Plaintext provider key; encrypted by the store when a key is configured.
    pub api_key: ProviderKey,
    /// Request rate limits (`ProjectRateLimits::default()` = none).
    pub rate_limits: ProjectRateLimits,
}

/// A partial project update; `None` leaves a field unchanged.
#[derive(Debug, Clone, Default)]
pub struct ProjectUpdate {
    /// New name.
    pub name: Option<String>,
    /// New plaintext provider key.
    pub api_key: Option<ProviderKey>,
    /// Activate or deactivate.
    pub is_active: Option<bool>,
    /// Revoke every active token of the project in the same transaction (the management API
    /// allows it only together with `is_active: Some(false)`).
    pub revoke_tokens: bool,
    /// New per-token limit: `Some(None)` removes it.
    pub per_token_limit: Option<Option<RateLimit>>,
    /// New per-project limit: `Some(None)` removes it.
    pub per_project_limit: Option<Option<RateLimit>>,
}

/// Result of a project update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectUpdated {
    /// The project after the update.
    pub project: Project,
    /// Hashes of the tokens revoked by this update (empty without `revoke_tokens`).
    pub revoked_tokens: Vec<TokenHash>,
}

/// Input of token creation: the caller generates the token and passes only its hash.
#[derive(Debug, Clone)]
pub struct NewToken {
    /// Management id (the UUIDv7 the token encodes).
    pub id: Uuid,
    /// Hash of the token string.
    pub token_hash: TokenHash,
    /// Owning project.
    pub project_id: String,
    /// Expiry; `None` = never.
    pub expires_at: Option<DateTime<Utc>>,
    /// Quota; `None` = unlimited.
    pub max_requests: Option<i64>,
}

/// A partial token update; `None` leaves a field unchanged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenUpdate {
    /// Activate or revoke.
    pub is_active: Option<bool>,
    /// New quota: `Some(None)` = unlimited.
    pub max_requests: Option<Option<i64>>,
}

/// Counts of a bulk revocation of a project's tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokeSummary {
    /// Hashes of the tokens this call revoked.
    pub revoked: Vec<TokenHash>,
    /// Tokens that were already inactive.
    pub already_revoked: i64,
    /// All tokens of the project.
    pub total: i64,
}

/// Outcome of an audited action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditOutcome {
    /// The action succeeded.
    Success,
    /// The action failed because of the request (validation, not found).
    Failure,
    /// The action was refused (authentication, inactive project).
    Denied,
    /// The action failed because of the server (database).
    Error,
}

impl AuditOutcome {
    /// The stored and serialised name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
            Self::Denied => "denied",
            Self::Error => "error",
        }
    }
}

/// A stored outcome that is none of the four names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown audit outcome {0:?}")]
pub struct UnknownOutcome(pub String);

impl std::str::FromStr for AuditOutcome {
    type Err = UnknownOutcome;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "success" => Ok(Self::Success),
            "failure" => Ok(Self::Failure),
            "denied" => Ok(Self::Denied),
            "error" => Ok(Self::Error),
            other => Err(UnknownOutcome(other.to_owned())),
        }
    }
}

impl TryFrom<String> for AuditOutcome {
    type Error = UnknownOutcome;

    fn try_from(value: String) -> Result<Self, UnknownOutcome> {
        value.parse()
    }
}

/// One audit event (a row of `audit_events`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct AuditEvent {
    /// UUIDv7 (time-ordered).
    pub id: Uuid,
    /// When the action happened.
    pub timestamp: DateTime<Utc>,
    /// Action name, for example `token.create` or `proxy_request`.
    pub action: String,
    /// Who acted: `management_api`, `system`, `anonymous` or `admin`.
    pub actor: String,
    /// Project concerned.
    pub project_id: Option<String>,
    /// Request id of the HTTP exchange.
    pub request_id: Option<String>,
    /// Correlation id of the HTTP exchange.
    pub correlation_id: Option<String>,
    /// Client IP.
    pub client_ip: Option<String>,
    /// HTTP method.
    pub method: Option<String>,
    /// HTTP path.
    pub path: Option<String>,
    /// Client user agent.
    pub user_agent: Option<String>,
    /// Outcome.
    #[sqlx(try_from = "String")]
    pub outcome: AuditOutcome,
    /// Why the action failed or was denied.
    pub reason: Option<String>,
    /// Management id of the token concerned (never the token itself).
    pub token_id: Option<String>,
    /// Further details as a JSON object string.
    pub metadata: Option<String>,
}

impl AuditEvent {
    /// A new event with a fresh id, stamped now, with every optional field empty.
    pub fn new(action: impl Into<String>, actor: impl Into<String>, outcome: AuditOutcome) -> Self {
        Self {
            id: Uuid::now_v7(),
            timestamp: crate::now(),
            action: action.into(),
            actor: actor.into(),
            project_id: None,
            request_id: None,
            correlation_id: None,
            client_ip: None,
            method: None,
            path: None,
            user_agent: None,
            outcome,
            reason: None,
            token_id: None,
            metadata: None,
        }
    }
}

/// Default audit page size.
pub const DEFAULT_AUDIT_PAGE_SIZE: u32 = 20;
/// Largest audit page size.
pub const MAX_AUDIT_PAGE_SIZE: u32 = 100;

/// Filters and page of an audit listing. Text filters match exactly, except `search` (a
/// case-insensitive substring over every text column).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditQuery {
    /// Exact action.
    pub action: Option<String>,
    /// Exact client IP.
    pub client_ip: Option<String>,
    /// Exact project id.
    pub project_id: Option<String>,
    /// Exact outcome.
    pub outcome: Option<AuditOutcome>,
    /// Exact actor.
    pub actor: Option<String>,
    /// Exact request id.
    pub request_id: Option<String>,
    /// Exact correlation id.
    pub correlation_id: Option<String>,
    /// Exact HTTP method.
    pub method: Option<String>,
    /// Exact path.
    pub path: Option<String>,
    /// Substring searched in every text column.
    pub search: Option<String>,
    /// Events at or after this time.
    pub start_time: Option<DateTime<Utc>>,
    /// Events at or before this time.
    pub end_time: Option<DateTime<Utc>>,
    /// 1-based page.
    pub page: u32,
    /// Events per page, 1..=100.
    pub page_size: u32,
}

impl Default for AuditQuery {
    fn default() -> Self {
        Self {
            action: None,
            client_ip: None,
            project_id: None,
            outcome: None,
            actor: None,
            request_id: None,
            correlation_id: None,
            method: None,
            path: None,
            search: None,
            start_time: None,
            end_time: None,
            page: 1,
            page_size: DEFAULT_AUDIT_PAGE_SIZE,
        }
    }
}

impl AuditQuery {
    /// The page clamped to >= 1.
    pub fn effective_page(&self) -> u32 {
        self.page.max(1)
    }

    /// The page size clamped to 1..=100.
    pub fn effective_page_size(&self) -> u32 {
        self.page_size.clamp(1, MAX_AUDIT_PAGE_SIZE)
    }
}

/// One page of audit events, newest first, with the number of events matching the filters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditPage {
    /// The events of the page.
    pub events: Vec<AuditEvent>,
    /// Events matching the filters over all pages.
    pub total_count: i64,
}
