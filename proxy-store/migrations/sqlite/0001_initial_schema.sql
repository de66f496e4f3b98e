-- Final-state schema of the upstream proxy (projects, tokens keyed by id with a unique token
-- hash, audit events whose outcome includes denied and error).
CREATE TABLE projects (
    id             TEXT PRIMARY KEY NOT NULL,
    name           TEXT NOT NULL UNIQUE,
    api_key        TEXT NOT NULL,
    is_active      BOOLEAN NOT NULL DEFAULT TRUE,
    deactivated_at DATETIME,
    created_at     DATETIME NOT NULL,
    updated_at     DATETIME NOT NULL
);

CREATE TABLE tokens (
    id              BLOB PRIMARY KEY NOT NULL,
    token_hash      TEXT NOT NULL UNIQUE,
    project_id      TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    expires_at      DATETIME,
    is_active       BOOLEAN NOT NULL DEFAULT TRUE,
    deactivated_at  DATETIME,
    request_count   INTEGER NOT NULL DEFAULT 0,
    max_requests    INTEGER,
    created_at      DATETIME NOT NULL,
    last_used_at    DATETIME,
    cache_hit_count INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX idx_tokens_project_id ON tokens(project_id);
CREATE INDEX idx_tokens_expires_at ON tokens(expires_at);
CREATE INDEX idx_tokens_is_active ON tokens(is_active);

CREATE TABLE audit_events (
    id             BLOB PRIMARY KEY NOT NULL,
    timestamp      DATETIME NOT NULL,
    action         TEXT NOT NULL,
    actor          TEXT NOT NULL,
    project_id     TEXT,
    request_id     TEXT,
    correlation_id TEXT,
    client_ip      TEXT,
    method         TEXT,
    path           TEXT,
    user_agent     TEXT,
    outcome        TEXT NOT NULL CHECK (outcome IN ('success', 'failure', 'denied', 'error')),
    reason         TEXT,
    token_id       TEXT,
    metadata       TEXT
);
CREATE INDEX idx_audit_timestamp ON audit_events(timestamp);
CREATE INDEX idx_audit_action ON audit_events(action);
CREATE INDEX idx_audit_project_id ON audit_events(project_id);
CREATE INDEX idx_audit_client_ip ON audit_events(client_ip);
CREATE INDEX idx_audit_request_id ON audit_events(request_id);
CREATE INDEX idx_audit_outcome ON audit_events(outcome);
CREATE INDEX idx_audit_ip_action ON audit_events(client_ip, action);
