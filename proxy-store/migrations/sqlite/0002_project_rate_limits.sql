-- Per-project request rate limits set through the management API. Each scope (per token of the
-- project, the project as a whole) is a pair of columns, both NULL (no limit) or both set.
ALTER TABLE projects ADD COLUMN rate_limit_token_requests INTEGER;
ALTER TABLE projects ADD COLUMN rate_limit_token_window_seconds INTEGER;
ALTER TABLE projects ADD COLUMN rate_limit_project_requests INTEGER;
ALTER TABLE projects ADD COLUMN rate_limit_project_window_seconds INTEGER;
