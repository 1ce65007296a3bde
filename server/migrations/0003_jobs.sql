-- Durable jobs, their event log, uploaded files and OpenAI batches.
-- Each job row is the source of truth for its state; the broker only carries
-- a pointer to it (job id and attempt), sent after the row is committed.

CREATE TABLE IF NOT EXISTS files (
    id          text PRIMARY KEY,
    tenant      text        NOT NULL,
    purpose     text        NOT NULL,
    filename    text        NOT NULL,
    bytes       bigint      NOT NULL,
    lines       integer     NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT now(),
    deleted_at  timestamptz
);

CREATE INDEX IF NOT EXISTS files_tenant_idx ON files (tenant, created_at);

CREATE TABLE IF NOT EXISTS batches (
    id                  text PRIMARY KEY,
    tenant              text        NOT NULL,
    key_id              text,
    endpoint            text        NOT NULL,
    input_file_id       text        NOT NULL,
    completion_window   text        NOT NULL,
    metadata            jsonb,
    status              text        NOT NULL,
    errors              jsonb,
    output_file_id      text,
    error_file_id       text,
    created_at          timestamptz NOT NULL DEFAULT now(),
    in_progress_at      timestamptz,
    expires_at          timestamptz NOT NULL,
    finalizing_at       timestamptz,
    completed_at        timestamptz,
    failed_at           timestamptz,
    expired_at          timestamptz,
    cancelling_at       timestamptz,
    cancelled_at        timestamptz
);

CREATE INDEX IF NOT EXISTS batches_tenant_idx ON batches (tenant, created_at);
CREATE INDEX IF NOT EXISTS batches_open_idx ON batches (status)
    WHERE status IN ('in_progress', 'finalizing', 'cancelling');

CREATE TABLE IF NOT EXISTS jobs (
    id              text PRIMARY KEY,
    tenant          text        NOT NULL,
    key_id          text,
    endpoint        text        NOT NULL,
    model           text        NOT NULL,
    -- The request as the client sent it, and the worker's payload built
    -- from it when it was validated.
    request         jsonb       NOT NULL,
    payload         jsonb       NOT NULL,
    priority        smallint    NOT NULL,
    queue           text        NOT NULL,
    state           text        NOT NULL CHECK (state IN ('queued', 'running',
                        'succeeded', 'failed', 'cancelled', 'expired')),
    idempotency_key text,
    request_sha256  text,
    deadline        timestamptz,
    webhook_url     text,
    -- Attempts started so far; a message carries the attempt it may start.
    attempt         integer     NOT NULL DEFAULT 0,
    max_attempts    integer     NOT NULL,
    attempts        jsonb       NOT NULL DEFAULT '[]'::jsonb,
    worker          text,
    progress        jsonb,
    result          jsonb,
    error           jsonb,
    -- Outbox: NULL until the task message for the next attempt is sent.
    sent_at         timestamptz,
    not_before      timestamptz,
    batch_id        text REFERENCES batches (id),
    custom_id       text,
    line            integer,
    created_at      timestamptz NOT NULL DEFAULT now(),
    started_at      timestamptz,
    finished_at     timestamptz
);

CREATE UNIQUE INDEX IF NOT EXISTS jobs_idempotency_idx
    ON jobs (tenant, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_tenant_created_idx ON jobs (tenant, created_at);
CREATE INDEX IF NOT EXISTS jobs_active_idx ON jobs (state, queue, created_at)
    WHERE state IN ('queued', 'running');
CREATE INDEX IF NOT EXISTS jobs_outbox_idx ON jobs (created_at)
    WHERE state = 'queued' AND sent_at IS NULL;
CREATE INDEX IF NOT EXISTS jobs_batch_idx ON jobs (batch_id, line)
    WHERE batch_id IS NOT NULL;

-- Every state change and progress note, in order: what /v1/jobs/{id}/events
-- replays (the id is the SSE event id, so a client resumes after a restart).
CREATE TABLE IF NOT EXISTS job_events (
    id      bigserial PRIMARY KEY,
    job_id  text        NOT NULL,
    at      timestamptz NOT NULL DEFAULT now(),
    kind    text        NOT NULL,
    data    jsonb       NOT NULL
);

CREATE INDEX IF NOT EXISTS job_events_job_idx ON job_events (job_id, id);

-- A trigger rather than application code, so that no writer (API, worker,
-- sweep, CLI) can change a job's state without leaving its event.
CREATE OR REPLACE FUNCTION jobs_state_event() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' OR NEW.state IS DISTINCT FROM OLD.state
       OR NEW.attempt IS DISTINCT FROM OLD.attempt THEN
        INSERT INTO job_events (job_id, kind, data) VALUES (
            NEW.id, 'state',
            jsonb_build_object('state', NEW.state, 'attempt', NEW.attempt,
                               'error', NEW.error));
    END IF;
    RETURN NULL;
END;
$$;

DROP TRIGGER IF EXISTS jobs_state_event ON jobs;
CREATE TRIGGER jobs_state_event AFTER INSERT OR UPDATE ON jobs
    FOR EACH ROW EXECUTE FUNCTION jobs_state_event();
