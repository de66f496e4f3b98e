//! The repository trait shared by the data path and the management API.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::error::StoreError;
use crate::model::{
    Admission, AuditEvent, AuditPage, AuditQuery, NewProject, NewToken, Project, ProjectAccess,
    ProjectUpdate, ProjectUpdated, RevokeSummary, TokenRecord, TokenUpdate, UsageDelta,
};
use crate::token::TokenHash;

/// Persistence of projects, tokens and audit events. Implemented for SQLite and PostgreSQL; used
/// as `Arc<dyn Store>`.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Whether this process is the database's only writer: SQLite runs as a single instance by
    /// design (one replica, `Recreate` rollouts), PostgreSQL is shared by replicas. A single
    /// writer's caches and quota leases cannot miss a change made elsewhere through the API.
    fn single_writer(&self) -> bool;

    /// Checks that the database is reachable (for `/ready`).
    async fn ping(&self) -> Result<(), StoreError>;

    /// Looks a token up by the hash of its string.
    async fn token_by_hash(&self, hash: &TokenHash) -> Result<Option<TokenRecord>, StoreError>;

    /// One atomic statement: increments `request_count` and sets `last_used_at` iff the token
    /// exists, is active, is unexpired at `now`, its project is active, and it is unlimited or
    /// under its quota. Otherwise classifies why. `k` concurrent calls on a token with
    /// `max_requests = k` admit exactly `k`.
    async fn admit(&self, hash: &TokenHash, now: DateTime<Utc>) -> Result<Admission, StoreError>;

    /// Reserves `count` requests of a limited token's quota in one atomic statement: increments
    /// `request_count` by `count` and sets `last_used_at` iff every condition of [`Store::admit`]
    /// holds and `request_count + count <= max_requests` (so reservations never over-admit).
    /// A `count` of 0 re-checks those conditions without reserving anything (a lease renewal).
    /// `None` when the whole chunk does not fit or the token is not admissible: callers fall back to
    /// [`Store::admit`], which classifies. Unused reservations are returned as negative
    /// [`UsageDelta::requests`] through [`Store::record_usage`].
    async fn reserve(
        &self,
        hash: &TokenHash,
        now: DateTime<Utc>,
        count: i64,
    ) -> Result<Option<TokenRecord>, StoreError>;

    /// Adds batched usage (requests of unlimited tokens, cache hits, and negative requests: unused
    /// quota reservations returned) in one transaction; `request_count` never goes below zero.
    /// Unknown hashes are ignored.
    async fn record_usage(&self, batch: &[UsageDelta]) -> Result<(), StoreError>;

    /// The project's active flag and decrypted provider key.
    async fn project_access(&self, project_id: &str) -> Result<Option<ProjectAccess>, StoreError>;

    /// Stores one audit event.
    async fn insert_audit(&self, event: &AuditEvent) -> Result<(), StoreError>;

    /// Creates an active project; a taken name is [`StoreError::Conflict`].
    async fn create_project(&self, project: NewProject) -> Result<Project, StoreError>;

    /// All projects, oldest first.
    async fn list_projects(&self) -> Result<Vec<Project>, StoreError>;

    /// One project.
    async fn get_project(&self, id: &str) -> Result<Option<Project>, StoreError>;

    /// Applies a partial update in one transaction; `None` when the project does not exist.
    /// Deactivation sets `deactivated_at`, reactivation clears it; `revoke_tokens` revokes every
    /// active token of the project.
    async fn update_project(
        &self,
        id: &str,
        update: ProjectUpdate,
    ) -> Result<Option<ProjectUpdated>, StoreError>;

    /// Stores a new token (by hash). A missing project is a database (foreign key) error: check
    /// the project first.
    async fn create_token(&self, token: NewToken) -> Result<TokenRecord, StoreError>;

    /// All tokens, or the tokens of one project, newest first.
    async fn list_tokens(&self, project_id: Option<&str>) -> Result<Vec<TokenRecord>, StoreError>;

    /// One token by management id.
    async fn get_token(&self, id: Uuid) -> Result<Option<TokenRecord>, StoreError>;

    /// Applies a partial update; `None` when the token does not exist. Revoking sets
    /// `deactivated_at`, reactivating clears it.
    async fn update_token(
        &self,
        id: Uuid,
        update: TokenUpdate,
    ) -> Result<Option<TokenRecord>, StoreError>;

    /// Revokes a token (idempotent: an inactive token stays as it is); `None` when it does not
    /// exist.
    async fn revoke_token(&self, id: Uuid) -> Result<Option<TokenRecord>, StoreError>;

    /// Revokes every active token of a project; `None` when the project does not exist.
    async fn revoke_project_tokens(
        &self,
        project_id: &str,
    ) -> Result<Option<RevokeSummary>, StoreError>;

    /// One page of audit events matching the filters, newest first.
    async fn list_audit(&self, query: &AuditQuery) -> Result<AuditPage, StoreError>;

    /// One audit event.
    async fn get_audit(&self, id: Uuid) -> Result<Option<AuditEvent>, StoreError>;
}
