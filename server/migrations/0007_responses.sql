-- Stored Responses API responses (server/response_store.py).
--
-- OpenAI stores a response unless the request says "store": false, so that
-- it can be read back and a later turn can name it in previous_response_id.
-- The row keeps the final response object as returned, and the
-- conversation so far as message items: the earlier turns (from the
-- previous response), this turn's input, then this turn's output last.
-- previous_response_id is no foreign key: deleting one turn leaves the
-- turns that continued from it readable. Reads filter by tenant.

CREATE TABLE IF NOT EXISTS responses (
    id                    text PRIMARY KEY,
    tenant                text        NOT NULL,
    response              jsonb       NOT NULL,
    conversation          jsonb       NOT NULL,
    previous_response_id  text,
    created_at            timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS responses_tenant_idx ON responses (tenant, created_at);
