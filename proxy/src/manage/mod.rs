//! The management API (`/manage/*`): projects, tokens, the audit log and HTTP cache purges, behind
//! the management token.
//!
//! Every route is listed once in [`ROUTES`]; the router is built from that table and the OpenAPI
//! test compares it with `proxy/openapi.yaml`. One middleware ([`guard`]) authenticates every
//! request (unknown `/manage` paths included, so 401 comes before 404), audits every call and
//! gives axum's own 405s a JSON body. Errors map to HTTP in [`error::ManageError`] only.

pub mod audit_log;
pub mod cache;
pub mod error;
mod guard;
pub mod projects;
pub mod tokens;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::Method;
use axum::routing::{MethodRouter, any, delete, get, patch, post};
use llm_proxy_store::{Store, TokenHash};

use crate::audit::{Action, Audit};
use crate::client_ip::TrustedProxies;
use crate::secret::Secret;

pub use error::ManageError;
pub use guard::{FAILED_AUTH_RECORDED, FAILED_AUTH_WINDOW};

/// Largest accepted management request body.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Lets the management API drop cached token and project state of the data path, so a revocation
/// takes effect on the very next proxied request, and read the data path's quota reservations.
pub trait CacheInvalidator: Send + Sync {
    /// The token with this hash was revoked or changed.
    fn token_changed(&self, hash: &TokenHash);
    /// The project was deactivated, reactivated or changed (provider key, name).
    fn project_changed(&self, project_id: &str);
    /// Anything cached may be stale (the invalidation channel of the `revocation` module had a
    /// gap): drop every cached token and project.
    fn everything_changed(&self) {}
    /// The HTTP response cache, for purges; `None` when caching is disabled.
    fn http_cache(&self) -> Option<crate::cache::HttpCache> {
        None
    }
    /// Requests of the token this process reserved (counted in the database's `request_count`)
    /// and has not served yet; token responses subtract them, so they show what was admitted.
    fn unserved_reservation(&self, _hash: &TokenHash) -> i64 {
        0
    }
}

/// What the management handlers share.
#[derive(Clone)]
pub struct ManageState {
    /// Projects, tokens and audit events.
    pub store: Arc<dyn Store>,
    /// The bearer token of the API (`MANAGEMENT_TOKEN`).
    pub management_token: Secret,
    /// Every call is recorded here.
    pub audit: Audit,
    /// Called after every change that affects the data path.
    pub invalidator: Arc<dyn CacheInvalidator>,
    /// Whose forwarding headers name the client in the audit trail.
    trusted_proxies: Arc<TrustedProxies>,
    /// Bounds the audit records of failed authentication.
    failed_auth: Arc<guard::FailedAuthAudit>,
}

impl ManageState {
    pub fn new(
        store: Arc<dyn Store>,
        management_token: Secret,
        audit: Audit,
        invalidator: Arc<dyn CacheInvalidator>,
        trusted_proxies: TrustedProxies,
    ) -> Self {
        Self {
            store,
            management_token,
            audit,
            invalidator,
            trusted_proxies: Arc::new(trusted_proxies),
            failed_auth: Arc::default(),
        }
    }
}

/// Which id a route's `{id}` path parameter names, for the audit record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    /// No path id.
    None,
    /// `{id}` is a project id.
    Project,
    /// `{id}` is a token id.
    Token,
    /// `{id}` is an audit event id.
    AuditEvent,
}

/// One route of the management API.
pub struct ManageRoute {
    /// HTTP method.
    pub method: Method,
    /// Path with axum parameters (`{id}`), including the `/manage` prefix.
    pub path: &'static str,
    /// Audited action.
    pub action: Action,
    /// What `{id}` names.
    pub subject: Subject,
    handler: fn() -> MethodRouter<ManageState>,
}

/// Every route of the management API.
pub const ROUTES: &[ManageRoute] = &[
    ManageRoute {
        method: Method::GET,
        path: "/manage/projects",
        action: Action::ProjectList,
        subject: Subject::None,
        handler: || get(projects::list),
    },
    ManageRoute {
        method: Method::POST,
        path: "/manage/projects",
        action: Action::ProjectCreate,
        subject: Subject::None,
        handler: || post(projects::create),
    },
    ManageRoute {
        method: Method::GET,
        path: "/manage/projects/{id}",
        action: Action::ProjectRead,
        subject: Subject::Project,
        handler: || get(projects::get_one),
    },
    ManageRoute {
        method: Method::PATCH,
        path: "/manage/projects/{id}",
        action: Action::ProjectUpdate,
        subject: Subject::Project,
        handler: || patch(projects::update),
    },
    ManageRoute {
        method: Method::DELETE,
        path: "/manage/projects/{id}",
        action: Action::ProjectDelete,
        subject: Subject::Project,
        handler: || delete(projects::delete),
    },
    ManageRoute {
        method: Method::POST,
        path: "/manage/projects/{id}/tokens/revoke",
        action: Action::TokenRevokeBatch,
        subject: Subject::Project,
        handler: || post(projects::revoke_tokens),
    },
    ManageRoute {
        method: Method::GET,
        path: "/manage/tokens",
        action: Action::TokenList,
        subject: Subject::None,
        handler: || get(tokens::list),
    },
    ManageRoute {
        method: Method::POST,
        path: "/manage/tokens",
        action: Action::TokenCreate,
        subject: Subject::None,
        handler: || post(tokens::create),
    },
    ManageRoute {
        method: Method::GET,
        path: "/manage/tokens/{id}",
        action: Action::TokenRead,
        subject: Subject::Token,
        handler: || get(tokens::get_one),
    },
    ManageRoute {
        method: Method::PATCH,
        path: "/manage/tokens/{id}",
        action: Action::TokenUpdate,
        subject: Subject::Token,
        handler: || patch(tokens::update),
    },
    ManageRoute {
        method: Method::DELETE,
        path: "/manage/tokens/{id}",
        action: Action::TokenRevoke,
        subject: Subject::Token,
        handler: || delete(tokens::revoke),
    },
    ManageRoute {
        method: Method::GET,
        path: "/manage/audit",
        action: Action::AuditList,
        subject: Subject::None,
        handler: || get(audit_log::list),
    },
    ManageRoute {
        method: Method::GET,
        path: "/manage/audit/{id}",
        action: Action::AuditShow,
        subject: Subject::AuditEvent,
        handler: || get(audit_log::get_one),
    },
    ManageRoute {
        method: Method::POST,
        path: "/manage/cache/purge",
        action: Action::CachePurge,
        subject: Subject::None,
        handler: || post(cache::purge),
    },
];

/// Finds the route of a method and matched path.
pub fn find_route(method: &Method, path: &str) -> Option<&'static ManageRoute> {
    ROUTES
        .iter()
        .find(|route| route.method == *method && route.path == path)
}

/// The management router; its paths include the `/manage` prefix. It has no fallback, so it can
/// be merged into the server's router.
pub fn router(state: ManageState) -> Router {
    let routes = ROUTES.iter().fold(Router::new(), |router, route| {
        router.route(route.path, (route.handler)())
    });
    routes
        .route("/manage", any(guard::unknown_route))
        .route("/manage/", any(guard::unknown_route))
        .route("/manage/{*rest}", any(guard::unknown_route))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::guard,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}
