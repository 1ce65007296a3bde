-- Security: tenants and their default limits, API keys (hashes only), the
-- key behind each usage record, and the append-only audit log.
-- Plain PostgreSQL: nothing here needs pgvector.

CREATE TABLE IF NOT EXISTS tenants (
    name                text PRIMARY KEY,
    created_at          timestamptz NOT NULL DEFAULT now(),
    -- Defaults for this tenant's keys; NULL falls back to the server's.
    requests_per_minute integer CHECK (requests_per_minute > 0),
    tokens_per_minute   integer CHECK (tokens_per_minute > 0),
    tokens_per_day      integer CHECK (tokens_per_day > 0),
    max_concurrent      integer CHECK (max_concurrent > 0)
);

CREATE TABLE IF NOT EXISTS api_keys (
    -- The public part of the key (hk-<id>.<secret>), shown in listings.
    id                  text PRIMARY KEY,
    secret_sha256       bytea       NOT NULL,
    tenant              text        NOT NULL REFERENCES tenants (name),
    name                text,
    scopes              text[]      NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    expires_at          timestamptz,
    revoked_at          timestamptz,
    last_used_at        timestamptz,
    rotated_from        text REFERENCES api_keys (id),
    requests_per_minute integer CHECK (requests_per_minute > 0),
    tokens_per_minute   integer CHECK (tokens_per_minute > 0),
    tokens_per_day      integer CHECK (tokens_per_day > 0),
    max_concurrent      integer CHECK (max_concurrent > 0)
);

CREATE INDEX IF NOT EXISTS api_keys_tenant_idx ON api_keys (tenant);
-- "Are there any usable keys?" is asked often while there are none.
CREATE INDEX IF NOT EXISTS api_keys_active_idx ON api_keys (expires_at)
    WHERE revoked_at IS NULL;

ALTER TABLE requests ADD COLUMN IF NOT EXISTS key_id text;
CREATE INDEX IF NOT EXISTS requests_tenant_key_idx ON requests (tenant, key_id);

CREATE TABLE IF NOT EXISTS audit_log (
    id            bigserial PRIMARY KEY,
    at            timestamptz NOT NULL DEFAULT now(),
    -- Who: the key (NULL for the CLI or an unknown bearer) and its tenant.
    actor         text        NOT NULL,
    actor_key_id  text,
    tenant        text,
    action        text        NOT NULL,
    target        text,
    client_ip     text,
    outcome       text        NOT NULL,
    detail        jsonb       NOT NULL DEFAULT '{}'::jsonb
);

CREATE INDEX IF NOT EXISTS audit_log_tenant_at_idx ON audit_log (tenant, at);

-- Append-only. The embedded PostgreSQL runs the app as a superuser, so a
-- GRANT cannot stop it; a trigger can. It stops application code and SQL
-- typed by mistake, not a superuser who disables the trigger on purpose.
CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

DROP TRIGGER IF EXISTS audit_log_no_change ON audit_log;
CREATE TRIGGER audit_log_no_change
    BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();

DROP TRIGGER IF EXISTS audit_log_no_truncate ON audit_log;
CREATE TRIGGER audit_log_no_truncate
    BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();

-- For deployments that connect as a non-owner role, the grant says the same.
REVOKE UPDATE, DELETE, TRUNCATE ON audit_log FROM PUBLIC;
