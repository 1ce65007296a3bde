-- One row per finished API request: the usage record that keys, quotas and
-- the audit log build on.
CREATE TABLE IF NOT EXISTS requests (
    id              bigserial PRIMARY KEY,
    request_id      text        NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    tenant          text        NOT NULL DEFAULT 'local',
    endpoint        text        NOT NULL,
    model           text,
    status          integer     NOT NULL,
    error_code      text,
    prompt_tokens   integer     NOT NULL DEFAULT 0,
    completion_tokens integer   NOT NULL DEFAULT 0,
    latency_ms      double precision NOT NULL,
    streamed        boolean     NOT NULL DEFAULT false
);

CREATE INDEX IF NOT EXISTS requests_created_at_idx ON requests (created_at);
CREATE INDEX IF NOT EXISTS requests_tenant_model_idx ON requests (tenant, model);
