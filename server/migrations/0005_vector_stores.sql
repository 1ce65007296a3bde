-- OpenAI's vector stores over collections (retrieval/vector_store_sql.py).
--
-- A vector store is a collection plus what OpenAI's object carries and a
-- collection does not: a name that need not be unique, string metadata,
-- an expiry policy and the time it was last used. A file attached to it
-- is a document whose source_file_id names the /v1/files upload; the
-- document's own file_id is a private link to the same bytes, so deleting
-- the document leaves the upload alone and deleting the upload leaves the
-- document indexable. Two attached files may share a name, so the rule of
-- one document per file name holds only for documents uploaded directly.
-- A file's chunking strategy may differ from its store's: the file_chunk_*
-- columns override the collection's when set. Reads that a caller reaches
-- filter by tenant (retrieval/vector_store_sql.py).

ALTER TABLE documents ADD COLUMN IF NOT EXISTS source_file_id text;
ALTER TABLE documents ADD COLUMN IF NOT EXISTS file_chunk_tokens integer;
ALTER TABLE documents ADD COLUMN IF NOT EXISTS file_chunk_overlap integer;
ALTER TABLE documents DROP CONSTRAINT IF EXISTS documents_collection_id_filename_key;
CREATE UNIQUE INDEX IF NOT EXISTS documents_filename_key
    ON documents (collection_id, filename) WHERE source_file_id IS NULL;
CREATE UNIQUE INDEX IF NOT EXISTS documents_source_file_key
    ON documents (collection_id, source_file_id) WHERE source_file_id IS NOT NULL;

CREATE TABLE IF NOT EXISTS vector_stores (
    id                  text PRIMARY KEY,
    tenant              text        NOT NULL,
    collection_id       text        NOT NULL UNIQUE
                            REFERENCES collections (id) ON DELETE CASCADE,
    name                text        NOT NULL DEFAULT '',
    metadata            jsonb       NOT NULL DEFAULT '{}'::jsonb,
    -- OpenAI's expires_after: {"anchor": "last_active_at", "days": n}.
    expires_after_days  integer,
    last_active_at      timestamptz NOT NULL DEFAULT now(),
    created_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS vector_stores_tenant_idx
    ON vector_stores (tenant, created_at, id);

-- A batch of files attached together (OpenAI's file_batches); its counts
-- are read from the documents it holds.
CREATE TABLE IF NOT EXISTS vector_store_file_batches (
    id                  text PRIMARY KEY,
    tenant              text        NOT NULL,
    vector_store_id     text        NOT NULL
                            REFERENCES vector_stores (id) ON DELETE CASCADE,
    cancelled_at        timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE documents ADD COLUMN IF NOT EXISTS file_batch_id text;
CREATE INDEX IF NOT EXISTS documents_file_batch_idx
    ON documents (file_batch_id) WHERE file_batch_id IS NOT NULL;
