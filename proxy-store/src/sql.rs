//! The SQL shared by both backends.
//!
//! SQLite and PostgreSQL accept the same statements here (`$n` placeholders, `RETURNING`,
//! `TRUE`/`FALSE`), so one macro implements [`crate::Store`] for each pool type; only the
//! case-insensitive `LIKE` operator differs.

use chrono::{DateTime, Utc};

use crate::model::AuditQuery;

macro_rules! project_columns {
    () => {
        "id, name, api_key, is_active, deactivated_at, created_at, updated_at, \
         rate_limit_token_requests, rate_limit_token_window_seconds, \
         rate_limit_project_requests, rate_limit_project_window_seconds"
    };
}

macro_rules! token_columns {
    () => {
        "id, token_hash, project_id, expires_at, is_active, deactivated_at, request_count, \
         max_requests, created_at, last_used_at, cache_hit_count"
    };
}

macro_rules! audit_columns {
    () => {
        "id, timestamp, action, actor, project_id, request_id, correlation_id, client_ip, method, \
         path, user_agent, outcome, reason, token_id, metadata"
    };
}

pub(crate) use {audit_columns, project_columns, token_columns};

/// Columns matched by the audit `search` filter.
const SEARCH_COLUMNS: &[&str] = &[
    "action",
    "actor",
    "project_id",
    "request_id",
    "correlation_id",
    "client_ip",
    "method",
    "path",
    "user_agent",
    "reason",
    "token_id",
    "metadata",
];

/// A value bound to an audit filter placeholder.
pub(crate) enum FilterValue {
    Text(String),
    Time(DateTime<Utc>),
}

/// The `WHERE` clause of an audit query and its values, bound as `$1..$n` in order.
pub(crate) struct AuditFilter {
    pub(crate) clause: String,
    pub(crate) values: Vec<FilterValue>,
}

impl AuditFilter {
    /// Builds the clause; `like` is the case-insensitive LIKE operator of the backend.
    pub(crate) fn new(query: &AuditQuery, like: &str) -> Self {
        let mut conditions: Vec<String> = Vec::new();
        let mut values = Vec::new();
        let exact = [
            ("action", &query.action),
            ("client_ip", &query.client_ip),
            ("project_id", &query.project_id),
            ("actor", &query.actor),
            ("request_id", &query.request_id),
            ("correlation_id", &query.correlation_id),
            ("method", &query.method),
            ("path", &query.path),
        ];
        for (column, value) in exact {
            if let Some(value) = value {
                values.push(FilterValue::Text(value.clone()));
                conditions.push(format!("{column} = ${}", values.len()));
            }
        }
        if let Some(outcome) = query.outcome {
            values.push(FilterValue::Text(outcome.as_str().to_owned()));
            conditions.push(format!("outcome = ${}", values.len()));
        }
        if let Some(search) = query.search.as_deref().filter(|s| !s.is_empty()) {
            values.push(FilterValue::Text(format!("%{}%", escape_like(search))));
            let n = values.len();
            let any = SEARCH_COLUMNS
                .iter()
                .map(|column| format!("{column} {like} ${n} ESCAPE '\\'"))
                .collect::<Vec<_>>()
                .join(" OR ");
            conditions.push(format!("({any})"));
        }
        if let Some(start) = query.start_time {
            values.push(FilterValue::Time(start));
            conditions.push(format!("timestamp >= ${}", values.len()));
        }
        if let Some(end) = query.end_time {
            values.push(FilterValue::Time(end));
            conditions.push(format!("timestamp <= ${}", values.len()));
        }
        let clause = if conditions.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conditions.join(" AND "))
        };
        Self { clause, values }
    }
}

/// Escapes `LIKE` wildcards so a search matches literally.
fn escape_like(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// Implements [`crate::Store`] for `$store` (a struct with `pool: sqlx::Pool<$db>` for reads,
/// `writer: sqlx::Pool<$db>` for every statement that writes, and
/// `encryption_key: Option<EncryptionKey>`).
macro_rules! impl_store {
    ($store:ident, $db:ty, like = $like:literal, single_writer = $single_writer:literal) => {
        #[async_trait::async_trait]
        impl $crate::store::Store for $store {
            fn single_writer(&self) -> bool {
                $single_writer
            }

            async fn ping(&self) -> Result<(), $crate::StoreError> {
                sqlx::query("SELECT 1").execute(&self.pool).await?;
                Ok(())
            }

            async fn token_by_hash(
                &self,
                hash: &$crate::TokenHash,
            ) -> Result<Option<$crate::TokenRecord>, $crate::StoreError> {
                let token = sqlx::query_as::<$db, $crate::TokenRecord>(concat!(
                    "SELECT ",
                    $crate::sql::token_columns!(),
                    " FROM tokens WHERE token_hash = $1"
                ))
                .bind(hash.as_str())
                .fetch_optional(&self.pool)
                .await?;
                Ok(token)
            }

            async fn admit(
                &self,
                hash: &$crate::TokenHash,
                now: chrono::DateTime<chrono::Utc>,
            ) -> Result<$crate::Admission, $crate::StoreError> {
                use $crate::Admission;
                // A concurrent change can make a refused token admissible between the update and
                // its classification; retry a few times before giving up.
                for _ in 0..3 {
                    let admitted = sqlx::query_as::<$db, $crate::TokenRecord>(concat!(
                        "UPDATE tokens SET request_count = request_count + 1, last_used_at = $2 \
                         WHERE token_hash = $1 AND is_active \
                         AND (expires_at IS NULL OR expires_at > $2) \
                         AND (max_requests IS NULL OR max_requests <= 0 \
                              OR request_count < max_requests) \
                         AND EXISTS (SELECT 1 FROM projects p \
                                     WHERE p.id = tokens.project_id AND p.is_active) \
                         RETURNING ",
                        $crate::sql::token_columns!()
                    ))
                    .bind(hash.as_str())
                    .bind(now)
                    .fetch_optional(&self.writer)
                    .await?;
                    if let Some(record) = admitted {
                        return Ok(Admission::Admitted(record));
                    }
                    let state = sqlx::query_as::<
                        $db,
                        (
                            bool,
                            Option<chrono::DateTime<chrono::Utc>>,
                            i64,
                            Option<i64>,
                            bool,
                        ),
                    >(
                        "SELECT t.is_active, t.expires_at, t.request_count, t.max_requests, \
                         p.is_active FROM tokens t JOIN projects p ON p.id = t.project_id \
                         WHERE t.token_hash = $1",
                    )
                    .bind(hash.as_str())
                    .fetch_optional(&self.writer)
                    .await?;
                    let refusal = match state {
                        None => Some(Admission::NotFound),
                        Some((false, ..)) => Some(Admission::Inactive),
                        Some((_, Some(expires_at), ..)) if expires_at <= now => {
                            Some(Admission::Expired)
                        }
                        Some((.., false)) => Some(Admission::ProjectInactive),
                        Some((_, _, count, Some(max), _)) if max > 0 && count >= max => {
                            Some(Admission::QuotaExceeded)
                        }
                        Some(_) => None,
                    };
                    if let Some(refusal) = refusal {
                        return Ok(refusal);
                    }
                }
                Err($crate::StoreError::Contention)
            }

            async fn reserve(
                &self,
                hash: &$crate::TokenHash,
                now: chrono::DateTime<chrono::Utc>,
                count: i64,
            ) -> Result<Option<$crate::TokenRecord>, $crate::StoreError> {
                let reserved = sqlx::query_as::<$db, $crate::TokenRecord>(concat!(
                    "UPDATE tokens SET request_count = request_count + $3, last_used_at = $2 \
                     WHERE token_hash = $1 AND is_active \
                     AND (expires_at IS NULL OR expires_at > $2) \
                     AND max_requests > 0 AND request_count + $3 <= max_requests \
                     AND EXISTS (SELECT 1 FROM projects p \
                                 WHERE p.id = tokens.project_id AND p.is_active) \
                     RETURNING ",
                    $crate::sql::token_columns!()
                ))
                .bind(hash.as_str())
                .bind(now)
                .bind(count)
                .fetch_optional(&self.writer)
                .await?;
                Ok(reserved)
            }

            async fn record_usage(
                &self,
                batch: &[$crate::UsageDelta],
            ) -> Result<(), $crate::StoreError> {
                if batch.is_empty() {
                    return Ok(());
                }
                let mut tx = self.writer.begin().await?;
                for delta in batch {
                    sqlx::query(
                        "UPDATE tokens SET request_count = CASE WHEN request_count + $2 < 0 \
                                                THEN 0 ELSE request_count + $2 END, \
                         cache_hit_count = cache_hit_count + $3, \
                         last_used_at = CASE WHEN $2 > 0 AND (last_used_at IS NULL \
                                                OR last_used_at < $4) \
                                        THEN $4 ELSE last_used_at END \
                         WHERE token_hash = $1",
                    )
                    .bind(delta.hash.as_str())
                    .bind(delta.requests)
                    .bind(delta.cache_hits)
                    .bind(delta.last_used_at)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn project_access(
                &self,
                project_id: &str,
            ) -> Result<Option<$crate::ProjectAccess>, $crate::StoreError> {
                let project = sqlx::query_as::<$db, $crate::Project>(concat!(
                    "SELECT ",
                    $crate::sql::project_columns!(),
                    " FROM projects WHERE id = $1"
                ))
                .bind(project_id)
                .fetch_optional(&self.pool)
                .await?;
                let Some(project) = project else {
                    return Ok(None);
                };
                let api_key =
                    $crate::crypto::decrypt_stored(self.encryption_key.as_ref(), &project.api_key)?;
                Ok(Some($crate::ProjectAccess {
                    is_active: project.is_active,
                    api_key: $crate::ProviderKey::new(api_key),
                    rate_limits: project.rate_limits,
                }))
            }

            async fn insert_audit(
                &self,
                event: &$crate::AuditEvent,
            ) -> Result<(), $crate::StoreError> {
                sqlx::query(concat!(
                    "INSERT INTO audit_events (",
                    $crate::sql::audit_columns!(),
                    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
                ))
                .bind(event.id)
                .bind(event.timestamp)
                .bind(event.action.as_str())
                .bind(event.actor.as_str())
                .bind(event.project_id.as_deref())
                .bind(event.request_id.as_deref())
                .bind(event.correlation_id.as_deref())
                .bind(event.client_ip.as_deref())
                .bind(event.method.as_deref())
                .bind(event.path.as_deref())
                .bind(event.user_agent.as_deref())
                .bind(event.outcome.as_str())
                .bind(event.reason.as_deref())
                .bind(event.token_id.as_deref())
                .bind(event.metadata.as_deref())
                .execute(&self.writer)
                .await?;
                Ok(())
            }

            async fn create_project(
                &self,
                project: $crate::NewProject,
            ) -> Result<$crate::Project, $crate::StoreError> {
                let api_key = $crate::crypto::encrypt_for_storage(
                    self.encryption_key.as_ref(),
                    project.api_key.expose(),
                )?;
                let now = $crate::now();
                let (token_requests, token_window) =
                    $crate::RateLimit::to_columns(project.rate_limits.per_token);
                let (project_requests, project_window) =
                    $crate::RateLimit::to_columns(project.rate_limits.per_project);
                sqlx::query_as::<$db, $crate::Project>(concat!(
                    "INSERT INTO projects (id, name, api_key, is_active, created_at, updated_at, \
                     rate_limit_token_requests, rate_limit_token_window_seconds, \
                     rate_limit_project_requests, rate_limit_project_window_seconds) \
                     VALUES ($1, $2, $3, TRUE, $4, $4, $5, $6, $7, $8) RETURNING ",
                    $crate::sql::project_columns!()
                ))
                .bind(uuid::Uuid::new_v4().to_string())
                .bind(project.name)
                .bind(api_key)
                .bind(now)
                .bind(token_requests)
                .bind(token_window)
                .bind(project_requests)
                .bind(project_window)
                .fetch_one(&self.writer)
                .await
                .map_err(|e| {
                    $crate::StoreError::conflict_or_database(e, "a project with this name")
                })
            }

            async fn list_projects(&self) -> Result<Vec<$crate::Project>, $crate::StoreError> {
                let projects = sqlx::query_as::<$db, $crate::Project>(concat!(
                    "SELECT ",
                    $crate::sql::project_columns!(),
                    " FROM projects ORDER BY created_at, id"
                ))
                .fetch_all(&self.pool)
                .await?;
                Ok(projects)
            }

            async fn get_project(
                &self,
                id: &str,
            ) -> Result<Option<$crate::Project>, $crate::StoreError> {
                let project = sqlx::query_as::<$db, $crate::Project>(concat!(
                    "SELECT ",
                    $crate::sql::project_columns!(),
                    " FROM projects WHERE id = $1"
                ))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
                Ok(project)
            }

            async fn update_project(
                &self,
                id: &str,
                update: $crate::ProjectUpdate,
            ) -> Result<Option<$crate::ProjectUpdated>, $crate::StoreError> {
                let api_key = update
                    .api_key
                    .as_ref()
                    .map(|key| {
                        $crate::crypto::encrypt_for_storage(
                            self.encryption_key.as_ref(),
                            key.expose(),
                        )
                    })
                    .transpose()?;
                let now = $crate::now();
                let (token_requests, token_window) =
                    $crate::RateLimit::to_columns(update.per_token_limit.flatten());
                let (project_requests, project_window) =
                    $crate::RateLimit::to_columns(update.per_project_limit.flatten());
                let mut tx = self.writer.begin().await?;
                let project = sqlx::query_as::<$db, $crate::Project>(concat!(
                    "UPDATE projects SET name = COALESCE($2, name), \
                     api_key = COALESCE($3, api_key), \
                     is_active = COALESCE($4, is_active), \
                     deactivated_at = CASE WHEN $4 IS NULL THEN deactivated_at \
                                           WHEN $4 THEN NULL \
                                           WHEN is_active THEN $5 \
                                           ELSE deactivated_at END, \
                     rate_limit_token_requests = CASE WHEN $6 THEN $7 \
                                           ELSE rate_limit_token_requests END, \
                     rate_limit_token_window_seconds = CASE WHEN $6 THEN $8 \
                                           ELSE rate_limit_token_window_seconds END, \
                     rate_limit_project_requests = CASE WHEN $9 THEN $10 \
                                           ELSE rate_limit_project_requests END, \
                     rate_limit_project_window_seconds = CASE WHEN $9 THEN $11 \
                                           ELSE rate_limit_project_window_seconds END, \
                     updated_at = $5 WHERE id = $1 RETURNING ",
                    $crate::sql::project_columns!()
                ))
                .bind(id)
                .bind(update.name)
                .bind(api_key)
                .bind(update.is_active)
                .bind(now)
                .bind(update.per_token_limit.is_some())
                .bind(token_requests)
                .bind(token_window)
                .bind(update.per_project_limit.is_some())
                .bind(project_requests)
                .bind(project_window)
                .fetch_optional(&mut *tx)
                .await
                .map_err(|e| {
                    $crate::StoreError::conflict_or_database(e, "a project with this name")
                })?;
                let Some(project) = project else {
                    return Ok(None);
                };
                let revoked_tokens = if update.revoke_tokens {
                    sqlx::query_scalar::<$db, String>(
                        "UPDATE tokens SET is_active = FALSE, deactivated_at = $2 \
                         WHERE project_id = $1 AND is_active RETURNING token_hash",
                    )
                    .bind(id)
                    .bind(now)
                    .fetch_all(&mut *tx)
                    .await?
                } else {
                    Vec::new()
                };
                tx.commit().await?;
                Ok(Some($crate::ProjectUpdated {
                    project,
                    revoked_tokens: $crate::sql::into_hashes(revoked_tokens)?,
                }))
            }

            async fn create_token(
                &self,
                token: $crate::NewToken,
            ) -> Result<$crate::TokenRecord, $crate::StoreError> {
                sqlx::query_as::<$db, $crate::TokenRecord>(concat!(
                    "INSERT INTO tokens (id, token_hash, project_id, expires_at, is_active, \
                     request_count, max_requests, created_at, cache_hit_count) \
                     VALUES ($1, $2, $3, $4, TRUE, 0, $5, $6, 0) RETURNING ",
                    $crate::sql::token_columns!()
                ))
                .bind(token.id)
                .bind(token.token_hash.as_str())
                .bind(token.project_id)
                .bind(token.expires_at)
                .bind(token.max_requests)
                .bind($crate::now())
                .fetch_one(&self.writer)
                .await
                .map_err(|e| $crate::StoreError::conflict_or_database(e, "this token"))
            }

            async fn list_tokens(
                &self,
                project_id: Option<&str>,
            ) -> Result<Vec<$crate::TokenRecord>, $crate::StoreError> {
                let tokens = sqlx::query_as::<$db, $crate::TokenRecord>(concat!(
                    "SELECT ",
                    $crate::sql::token_columns!(),
                    " FROM tokens WHERE ($1 IS NULL OR project_id = $1) \
                     ORDER BY created_at DESC, id DESC"
                ))
                .bind(project_id)
                .fetch_all(&self.pool)
                .await?;
                Ok(tokens)
            }

            async fn get_token(
                &self,
                id: uuid::Uuid,
            ) -> Result<Option<$crate::TokenRecord>, $crate::StoreError> {
                let token = sqlx::query_as::<$db, $crate::TokenRecord>(concat!(
                    "SELECT ",
                    $crate::sql::token_columns!(),
                    " FROM tokens WHERE id = $1"
                ))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
                Ok(token)
            }

            async fn update_token(
                &self,
                id: uuid::Uuid,
                update: $crate::TokenUpdate,
            ) -> Result<Option<$crate::TokenRecord>, $crate::StoreError> {
                let token = sqlx::query_as::<$db, $crate::TokenRecord>(concat!(
                    "UPDATE tokens SET is_active = COALESCE($2, is_active), \
                     deactivated_at = CASE WHEN $2 IS NULL THEN deactivated_at \
                                           WHEN $2 THEN NULL \
                                           WHEN is_active THEN $3 \
                                           ELSE deactivated_at END, \
                     max_requests = CASE WHEN $4 THEN $5 ELSE max_requests END \
                     WHERE id = $1 RETURNING ",
                    $crate::sql::token_columns!()
                ))
                .bind(id)
                .bind(update.is_active)
                .bind($crate::now())
                .bind(update.max_requests.is_some())
                .bind(update.max_requests.flatten())
                .fetch_optional(&self.writer)
                .await?;
                Ok(token)
            }

            async fn revoke_token(
                &self,
                id: uuid::Uuid,
            ) -> Result<Option<$crate::TokenRecord>, $crate::StoreError> {
                let token = sqlx::query_as::<$db, $crate::TokenRecord>(concat!(
                    "UPDATE tokens SET is_active = FALSE, \
                     deactivated_at = CASE WHEN is_active THEN $2 ELSE deactivated_at END \
                     WHERE id = $1 RETURNING ",
                    $crate::sql::token_columns!()
                ))
                .bind(id)
                .bind($crate::now())
                .fetch_optional(&self.writer)
                .await?;
                Ok(token)
            }

            async fn revoke_project_tokens(
                &self,
                project_id: &str,
            ) -> Result<Option<$crate::RevokeSummary>, $crate::StoreError> {
                let mut tx = self.writer.begin().await?;
                let revoked = sqlx::query_scalar::<$db, String>(
                    "UPDATE tokens SET is_active = FALSE, deactivated_at = $2 \
                     WHERE project_id = $1 AND is_active RETURNING token_hash",
                )
                .bind(project_id)
                .bind($crate::now())
                .fetch_all(&mut *tx)
                .await?;
                let projects =
                    sqlx::query_scalar::<$db, i64>("SELECT COUNT(*) FROM projects WHERE id = $1")
                        .bind(project_id)
                        .fetch_one(&mut *tx)
                        .await?;
                if projects == 0 {
                    return Ok(None);
                }
                let total = sqlx::query_scalar::<$db, i64>(
                    "SELECT COUNT(*) FROM tokens WHERE project_id = $1",
                )
                .bind(project_id)
                .fetch_one(&mut *tx)
                .await?;
                tx.commit().await?;
                let revoked = $crate::sql::into_hashes(revoked)?;
                let already_revoked = total - i64::try_from(revoked.len()).unwrap_or(i64::MAX);
                Ok(Some($crate::RevokeSummary {
                    revoked,
                    already_revoked,
                    total,
                }))
            }

            async fn list_audit(
                &self,
                query: &$crate::AuditQuery,
            ) -> Result<$crate::AuditPage, $crate::StoreError> {
                use $crate::sql::FilterValue;
                let filter = $crate::sql::AuditFilter::new(query, $like);
                let count_sql = format!("SELECT COUNT(*) FROM audit_events{}", filter.clause);
                let mut count = sqlx::query_scalar::<$db, i64>(sqlx::AssertSqlSafe(count_sql));
                for value in &filter.values {
                    count = match value {
                        FilterValue::Text(text) => count.bind(text.clone()),
                        FilterValue::Time(time) => count.bind(*time),
                    };
                }
                let total_count = count.fetch_one(&self.pool).await?;

                let limit = i64::from(query.effective_page_size());
                let offset = i64::from(query.effective_page() - 1) * limit;
                let n = filter.values.len();
                let page_sql = format!(
                    concat!(
                        "SELECT ",
                        $crate::sql::audit_columns!(),
                        " FROM audit_events{} ORDER BY timestamp DESC, id DESC LIMIT ${} OFFSET ${}"
                    ),
                    filter.clause,
                    n + 1,
                    n + 2
                );
                let mut page =
                    sqlx::query_as::<$db, $crate::AuditEvent>(sqlx::AssertSqlSafe(page_sql));
                for value in &filter.values {
                    page = match value {
                        FilterValue::Text(text) => page.bind(text.clone()),
                        FilterValue::Time(time) => page.bind(*time),
                    };
                }
                let events = page.bind(limit).bind(offset).fetch_all(&self.pool).await?;
                Ok($crate::AuditPage {
                    events,
                    total_count,
                })
            }

            async fn get_audit(
                &self,
                id: uuid::Uuid,
            ) -> Result<Option<$crate::AuditEvent>, $crate::StoreError> {
                let event = sqlx::query_as::<$db, $crate::AuditEvent>(concat!(
                    "SELECT ",
                    $crate::sql::audit_columns!(),
                    " FROM audit_events WHERE id = $1"
                ))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
                Ok(event)
            }
        }
    };
}

pub(crate) use impl_store;

/// Converts hashes read back from the database.
pub(crate) fn into_hashes(raw: Vec<String>) -> Result<Vec<crate::TokenHash>, crate::StoreError> {
    raw.into_iter()
        .map(|hash| {
            crate::TokenHash::try_from(hash)
                .map_err(|e| crate::StoreError::Database(sqlx::Error::Decode(Box::new(e))))
        })
        .collect()
}
