-- Okapi BM25 for lexical search (retrieval/search.py).
--
-- ts_rank over a GIN match has to score every chunk that shares a word
-- with the query, and a question's words are common: at 100,000 chunks
-- that is tens of thousands of rows per search. Instead each collection
-- keeps an inverted index of its own: a row per (collection, term) with
-- the term's document frequency, and a posting per (term, chunk) with the
-- term's frequency, the chunk's length and an impact (the BM25 term-
-- frequency part at the time of writing). A search reads only the
-- highest-impact postings of each query term, then scores them exactly.
--
-- Triggers on chunks keep all of it in step, in the transaction that
-- writes or deletes the chunks, whatever the writer. The collection's
-- row holds its chunk count and total length; the triggers update it
-- before any term, and Hearth's writers and deleters lock it before any
-- document or chunk (retrieval/store.py), so that everything that changes
-- one collection's chunks queues on that row instead of deadlocking.
--
-- Like the chunks, this needs pgvector's schema first: the function that
-- creates the retrieval tables now creates these too.

ALTER TABLE collections ADD COLUMN IF NOT EXISTS lexical_chunks bigint NOT NULL DEFAULT 0;
ALTER TABLE collections ADD COLUMN IF NOT EXISTS lexical_length bigint NOT NULL DEFAULT 0;

-- BM25's document length: tokens, not distinct words.
CREATE OR REPLACE FUNCTION hearth_tsv_length(tsv tsvector) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
    SELECT coalesce(sum(coalesce(array_length(positions, 1), 1)), 0)
    FROM unnest(tsv)
$fn$;

-- Index chunks given as three parallel arrays (the trigger's new rows,
-- or every chunk when the index is first built).
CREATE OR REPLACE FUNCTION hearth_lexical_add(
    ids bigint[], collection_ids text[], tsvs tsvector[]
) RETURNS void LANGUAGE plpgsql AS $fn$
BEGIN
    UPDATE collections c
    SET lexical_chunks = c.lexical_chunks + a.chunks,
        lexical_length = c.lexical_length + a.length
    FROM (SELECT collection_id, count(*) AS chunks,
                 sum(hearth_tsv_length(tsv)) AS length
          FROM unnest(ids, collection_ids, tsvs) AS k(id, collection_id, tsv)
          GROUP BY collection_id) a
    WHERE c.id = a.collection_id;

    INSERT INTO lexical_terms AS t (collection_id, term, df)
    SELECT k.collection_id, u.lexeme, count(*)
    FROM unnest(ids, collection_ids, tsvs) AS k(id, collection_id, tsv)
    JOIN collections c ON c.id = k.collection_id, unnest(k.tsv) u
    GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (collection_id, term) DO UPDATE SET df = t.df + excluded.df;

    -- Materialized, so that each chunk's length is counted once rather
    -- than once per term.
    WITH sized AS MATERIALIZED (
        SELECT k.id, k.collection_id, k.tsv,
               hearth_tsv_length(k.tsv) AS length,
               greatest(c.lexical_length::real
                        / greatest(c.lexical_chunks, 1), 1) AS avgdl
        FROM unnest(ids, collection_ids, tsvs) AS k(id, collection_id, tsv)
        JOIN collections c ON c.id = k.collection_id
    )
    INSERT INTO lexical_postings (term_id, chunk_id, tf, length, impact)
    SELECT t.id, s.id, f.tf, s.length,
           f.tf / (f.tf + 1.2 * (0.25 + 0.75 * s.length / s.avgdl))
    FROM sized s
    CROSS JOIN LATERAL unnest(s.tsv) u
    CROSS JOIN LATERAL (
        SELECT coalesce(array_length(u.positions, 1), 1) AS tf) f
    JOIN lexical_terms t ON t.collection_id = s.collection_id AND t.term = u.lexeme;
END;
$fn$;

CREATE OR REPLACE FUNCTION hearth_lexical_added() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    PERFORM hearth_lexical_add(array_agg(id), array_agg(collection_id),
                               array_agg(tsv))
    FROM added;
    RETURN NULL;
END;
$fn$;

CREATE OR REPLACE FUNCTION hearth_lexical_removed() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    DELETE FROM lexical_postings p USING removed r WHERE p.chunk_id = r.id;

    -- A deleted collection took its statistics with it (ON DELETE
    -- CASCADE); only live collections need theirs lowered.
    UPDATE collections c
    SET lexical_chunks = c.lexical_chunks - a.chunks,
        lexical_length = c.lexical_length - a.length
    FROM (SELECT collection_id, count(*) AS chunks,
                 sum(hearth_tsv_length(tsv)) AS length
          FROM removed GROUP BY collection_id) a
    WHERE c.id = a.collection_id;

    UPDATE lexical_terms t SET df = t.df - g.n
    FROM (SELECT r.collection_id, u.lexeme AS term, count(*) AS n
          FROM removed r JOIN collections c ON c.id = r.collection_id,
               unnest(r.tsv) u
          GROUP BY 1, 2 ORDER BY 1, 2) g
    WHERE t.collection_id = g.collection_id AND t.term = g.term;

    DELETE FROM lexical_terms t
    USING (SELECT DISTINCT r.collection_id, u.lexeme AS term
           FROM removed r, unnest(r.tsv) u) g
    WHERE t.collection_id = g.collection_id AND t.term = g.term AND t.df <= 0;
    RETURN NULL;
END;
$fn$;

CREATE OR REPLACE FUNCTION hearth_lexical_schema() RETURNS void
LANGUAGE plpgsql AS $fn$
BEGIN
    -- Words are searched through the postings, not the chunks' GIN index
    -- (which the chunks' own schema function still creates).
    DROP INDEX IF EXISTS chunks_tsv_idx;
    IF to_regclass('lexical_postings') IS NOT NULL THEN
        RETURN;
    END IF;
    CREATE TABLE lexical_terms (
        id              bigserial PRIMARY KEY,
        collection_id   text    NOT NULL
                            REFERENCES collections (id) ON DELETE CASCADE,
        term            text    NOT NULL,
        df              integer NOT NULL,
        UNIQUE (collection_id, term)
    );
    -- No foreign keys: the triggers keep postings in step, and a check per
    -- posting would double the cost of writing them.
    CREATE TABLE lexical_postings (
        term_id         bigint  NOT NULL,
        chunk_id        bigint  NOT NULL,
        tf              integer NOT NULL,
        length          integer NOT NULL,
        impact          real    NOT NULL
    );

    -- Existing chunks, before the triggers exist.
    PERFORM hearth_lexical_add(array_agg(id), array_agg(collection_id),
                               array_agg(tsv))
    FROM chunks;

    CREATE INDEX lexical_postings_term_idx ON lexical_postings
        (term_id, impact DESC) INCLUDE (chunk_id, tf, length);
    CREATE INDEX lexical_postings_chunk_idx ON lexical_postings (chunk_id);
    CREATE TRIGGER chunks_lexical_added AFTER INSERT ON chunks
        REFERENCING NEW TABLE AS added
        FOR EACH STATEMENT EXECUTE FUNCTION hearth_lexical_added();
    CREATE TRIGGER chunks_lexical_removed AFTER DELETE ON chunks
        REFERENCING OLD TABLE AS removed
        FOR EACH STATEMENT EXECUTE FUNCTION hearth_lexical_removed();
END;
$fn$;

-- The retrieval schema is the chunks (0004) and then their lexical index.
ALTER FUNCTION hearth_retrieval_schema() RENAME TO hearth_chunks_schema;

CREATE FUNCTION hearth_retrieval_schema() RETURNS boolean
LANGUAGE plpgsql AS $fn$
BEGIN
    IF NOT hearth_chunks_schema() THEN
        RETURN false;
    END IF;
    PERFORM hearth_lexical_schema();
    RETURN true;
END;
$fn$;

SELECT hearth_retrieval_schema();
