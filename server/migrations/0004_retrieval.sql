-- Collections, documents and their chunks (retrieval/).
--
-- Collections and documents are plain tables. Chunks need pgvector (HNSW
-- for vectors; a tsvector for words), so they are created only where the
-- extension can be installed (the embedded PostgreSQL ships it). On a
-- PostgreSQL without it the migration still records itself: collections
-- and documents work, and ingestion and search answer 503
-- retrieval_unavailable saying to install pgvector and run
-- `SELECT hearth_retrieval_schema()`, which creates the rest.

CREATE TABLE IF NOT EXISTS collections (
    id              text PRIMARY KEY,
    tenant          text        NOT NULL,
    name            text        NOT NULL,
    description     text,
    metadata        jsonb       NOT NULL DEFAULT '{}'::jsonb,
    embedding_model text        NOT NULL,
    chunk_tokens    integer     NOT NULL,
    chunk_overlap   integer     NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant, name)
);

CREATE TABLE IF NOT EXISTS documents (
    id              text PRIMARY KEY,
    tenant          text        NOT NULL,
    collection_id   text        NOT NULL
                        REFERENCES collections (id) ON DELETE CASCADE,
    -- As the user named it: shown, never used as a path.
    filename        text        NOT NULL,
    title           text,
    metadata        jsonb       NOT NULL DEFAULT '{}'::jsonb,
    -- The bytes waiting for (or being) indexed, and those indexed now.
    file_id         text,
    content_sha256  text        NOT NULL,
    indexed_sha256  text,
    bytes           bigint      NOT NULL,
    format          text,
    pages           integer,
    state           text        NOT NULL CHECK (state IN
                        ('queued', 'processing', 'ready', 'failed')),
    stage           text,
    progress        jsonb,
    error           jsonb,
    job_id          text,
    chunk_count     integer     NOT NULL DEFAULT 0,
    -- The extracted text the chunks' offsets point into.
    text            text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (collection_id, filename)
);
CREATE INDEX IF NOT EXISTS documents_tenant_idx
    ON documents (tenant, collection_id, created_at);
CREATE INDEX IF NOT EXISTS documents_sha_idx
    ON documents (collection_id, content_sha256);

CREATE OR REPLACE FUNCTION hearth_retrieval_schema() RETURNS boolean
LANGUAGE plpgsql AS $fn$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'vector')
    THEN
        RAISE NOTICE 'pgvector is not installed: retrieval tables not created';
        RETURN false;
    END IF;
    CREATE EXTENSION IF NOT EXISTS vector;

    EXECUTE $ddl$
    CREATE TABLE IF NOT EXISTS chunks (
        id              bigserial PRIMARY KEY,
        tenant          text        NOT NULL,
        collection_id   text        NOT NULL,
        document_id     text        NOT NULL
                            REFERENCES documents (id) ON DELETE CASCADE,
        ordinal         integer     NOT NULL,
        text            text        NOT NULL,
        context         text,
        section         text,
        page_start      integer,
        page_end        integer,
        char_start      integer     NOT NULL,
        char_end        integer     NOT NULL,
        tokens          integer     NOT NULL,
        embedding       vector(384) NOT NULL,
        tsv             tsvector    NOT NULL
    );
    CREATE INDEX IF NOT EXISTS chunks_document_idx ON chunks (document_id, ordinal);
    CREATE INDEX IF NOT EXISTS chunks_collection_idx ON chunks (collection_id);
    CREATE INDEX IF NOT EXISTS chunks_tsv_idx ON chunks USING gin (tsv);
    CREATE INDEX IF NOT EXISTS chunks_embedding_idx
        ON chunks USING hnsw (embedding vector_cosine_ops);
    $ddl$;
    RETURN true;
END;
$fn$;

SELECT hearth_retrieval_schema();
