-- Cache invalidation across replicas: every change of a token or project that the data path
-- caches is announced on the `llm_proxy_invalidation` channel (`NOTIFY`), delivered to every
-- listening replica when the transaction commits. Payloads name a token by its hash (never its
-- string) or a project by its id; `flush` asks for every cache to be dropped (a project id too
-- long for a payload). Usage updates (request_count, last_used_at, cache_hit_count) notify
-- nothing: the triggers' WHEN clauses leave them out, so the request path's writes cost no
-- function call.
CREATE FUNCTION llm_proxy_notify_token() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('llm_proxy_invalidation', 'token:' || OLD.token_hash);
    IF TG_OP = 'UPDATE' AND NEW.token_hash IS DISTINCT FROM OLD.token_hash THEN
        PERFORM pg_notify('llm_proxy_invalidation', 'token:' || NEW.token_hash);
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER tokens_notify_update AFTER UPDATE ON tokens FOR EACH ROW
    WHEN (OLD.is_active IS DISTINCT FROM NEW.is_active
          OR OLD.expires_at IS DISTINCT FROM NEW.expires_at
          OR OLD.max_requests IS DISTINCT FROM NEW.max_requests
          OR OLD.token_hash IS DISTINCT FROM NEW.token_hash
          OR OLD.project_id IS DISTINCT FROM NEW.project_id)
    EXECUTE FUNCTION llm_proxy_notify_token();

CREATE TRIGGER tokens_notify_delete AFTER DELETE ON tokens FOR EACH ROW
    EXECUTE FUNCTION llm_proxy_notify_token();

CREATE FUNCTION llm_proxy_notify_project() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF octet_length(OLD.id) <= 4000 THEN
        PERFORM pg_notify('llm_proxy_invalidation', 'project:' || OLD.id);
    ELSE
        PERFORM pg_notify('llm_proxy_invalidation', 'flush');
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER projects_notify_update AFTER UPDATE ON projects FOR EACH ROW
    WHEN (OLD.* IS DISTINCT FROM NEW.*)
    EXECUTE FUNCTION llm_proxy_notify_project();

CREATE TRIGGER projects_notify_delete AFTER DELETE ON projects FOR EACH ROW
    EXECUTE FUNCTION llm_proxy_notify_project();
