"""SQL for collections, documents and chunks, for the API and the workers.

Every read a caller can reach takes the tenant and filters by it in SQL.
A document's chunks are replaced in one transaction, under the
collection's and then the document's row lock, and only if the document
still holds the bytes that were parsed: a search sees the old chunks or
the new ones, never a mix, and a slow attempt cannot overwrite a newer
upload.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any, Literal

import asyncpg

from server.errors import Conflict, NotFound, RetrievalUnavailable

Conn = asyncpg.Connection | asyncpg.Pool

_JSON = ("metadata", "progress", "error")


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def row_of(
    record: asyncpg.Record | None, json_columns: tuple[str, ...] = _JSON
) -> dict[str, Any] | None:
    """The record as a dict, its JSON columns decoded."""
    if record is None:
        return None
    row = dict(record)
    for name in json_columns:
        if isinstance(row.get(name), str):
            row[name] = json.loads(row[name])
    return row


def dumps(value: Any) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"))


async def require_chunks_table(conn: Conn) -> None:
    if await conn.fetchval("SELECT to_regclass('chunks') IS NULL"):
        raise RetrievalUnavailable(
            "This database has no pgvector, so documents cannot be indexed or "
            "searched; use the embedded PostgreSQL (unset HEARTH_DATABASE_URL) or "
            "install pgvector and run `SELECT hearth_retrieval_schema()`."
        )


# Collections.


async def lock_collection(
    conn: Conn, collection_id: str, *, strength: Literal["UPDATE", "NO KEY UPDATE"]
) -> bool:
    """Lock the collection's row (False if it is gone). Everything that
    writes or deletes chunks takes this lock first, as the lexical
    index's triggers update the row: a delete and an indexing job that
    took their locks in opposite orders would deadlock."""
    found = await conn.fetchval(
        f"SELECT 1 FROM collections WHERE id = $1 FOR {strength}", collection_id
    )
    return found is not None


async def create_collection(
    conn: Conn, *, tenant: str, name: str, description: str | None,
    metadata: dict, embedding_model: str, chunk_tokens: int, chunk_overlap: int,
) -> dict[str, Any]:  # fmt: skip
    row = await conn.fetchrow(
        "INSERT INTO collections (id, tenant, name, description, metadata,"
        " embedding_model, chunk_tokens, chunk_overlap)"
        " VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $8)"
        " ON CONFLICT (tenant, name) DO NOTHING RETURNING *",
        new_id("col"), tenant, name, description, dumps(metadata),
        embedding_model, chunk_tokens, chunk_overlap,
    )  # fmt: skip
    if row is None:
        raise Conflict(
            f"A collection named {name!r} already exists; pick another name or "
            "use the existing one (GET /v1/collections).",
            param="name",
        )
    return row_of(row)


async def get_collection(conn: Conn, *, tenant: str, ref: str) -> dict[str, Any]:
    """By id or by name: the CLI and people use names."""
    row = await conn.fetchrow(
        "SELECT c.*, (SELECT count(*) FROM documents d WHERE d.collection_id = c.id)"
        " AS document_count FROM collections c"
        " WHERE c.tenant = $1 AND (c.id = $2 OR c.name = $2)",
        tenant, ref,
    )  # fmt: skip
    if row is None:
        raise NotFound(f"No collection {ref!r}; list yours with GET /v1/collections.")
    return row_of(row)


async def list_collections(
    conn: Conn, *, tenant: str, limit: int, after: str | None
) -> tuple[list[dict[str, Any]], bool]:
    rows = await conn.fetch(
        "SELECT c.*, (SELECT count(*) FROM documents d WHERE d.collection_id = c.id)"
        " AS document_count FROM collections c WHERE c.tenant = $1"
        " AND ($2::text IS NULL OR (c.created_at, c.id) < (SELECT created_at, id"
        "      FROM collections WHERE id = $2 AND tenant = $1))"
        " ORDER BY c.created_at DESC, c.id DESC LIMIT $3",
        tenant, after, limit + 1,
    )  # fmt: skip
    return [row_of(r) for r in rows[:limit]], len(rows) > limit


async def update_collection(
    conn: Conn, *, tenant: str, ref: str, name: str | None,
    description: str | None, metadata: dict | None,
) -> dict[str, Any]:  # fmt: skip
    found = await get_collection(conn, tenant=tenant, ref=ref)
    try:
        await conn.execute(
            "UPDATE collections SET name = coalesce($3, name),"
            " description = coalesce($4, description),"
            " metadata = coalesce($5::jsonb, metadata), updated_at = now()"
            " WHERE id = $1 AND tenant = $2",
            found["id"], tenant, name, description, dumps(metadata),
        )  # fmt: skip
    except asyncpg.UniqueViolationError as exc:
        raise Conflict(
            f"A collection named {name!r} already exists; pick another name.",
            param="name",
        ) from exc
    return await get_collection(conn, tenant=tenant, ref=found["id"])


async def delete_collection(
    conn: asyncpg.Connection, *, tenant: str, ref: str
) -> tuple[dict[str, Any], list[str]]:
    """Delete it with its documents and chunks; the file ids to remove."""
    found = await get_collection(conn, tenant=tenant, ref=ref)
    file_ids = await conn.fetch(
        "SELECT file_id FROM documents WHERE collection_id = $1 AND tenant = $2"
        " AND file_id IS NOT NULL",
        found["id"], tenant,
    )  # fmt: skip
    # The row goes too, so the strongest lock, before any chunk.
    await lock_collection(conn, found["id"], strength="UPDATE")
    if await conn.fetchval("SELECT to_regclass('chunks') IS NOT NULL"):
        await conn.execute("DELETE FROM chunks WHERE collection_id = $1", found["id"])
    await conn.execute(
        "DELETE FROM collections WHERE id = $1 AND tenant = $2", found["id"], tenant
    )
    return found, [r["file_id"] for r in file_ids]


# Documents.

_DOC_COLUMNS = (
    "id, tenant, collection_id, filename, title, metadata, file_id,"
    " content_sha256, indexed_sha256, bytes, format, pages, state, stage,"
    " progress, error, job_id, chunk_count, created_at, updated_at"
)


@dataclass(kw_only=True)
class Incoming:
    filename: str
    title: str | None
    metadata: dict
    file_id: str
    sha256: str
    size: int


@dataclass(kw_only=True)
class Placed:
    """What an upload did: ``created``, ``replaced`` or ``unchanged``."""

    document: dict[str, Any]
    action: str
    stale_file_id: str | None = None


async def place_document(
    conn: asyncpg.Connection, *, tenant: str, collection_id: str, incoming: Incoming
) -> Placed:
    """Insert a new document, or point an existing one (same file name) at
    new bytes. The same bytes again, under any name, change nothing."""
    same = await conn.fetchrow(
        f"SELECT {_DOC_COLUMNS} FROM documents WHERE collection_id = $1"
        " AND tenant = $2 AND content_sha256 = $3 AND state <> 'failed'",
        collection_id, tenant, incoming.sha256,
    )  # fmt: skip
    if same is not None:
        return Placed(document=row_of(same), action="unchanged")

    old = await conn.fetchrow(
        "SELECT id, file_id FROM documents WHERE collection_id = $1 AND tenant = $2"
        " AND filename = $3 AND source_file_id IS NULL FOR UPDATE",
        collection_id, tenant, incoming.filename,
    )  # fmt: skip
    if old is None:
        row = await conn.fetchrow(
            "INSERT INTO documents (id, tenant, collection_id, filename, title,"
            " metadata, file_id, content_sha256, bytes, state, stage)"
            " VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8, $9, 'queued', 'queued')"
            f" RETURNING {_DOC_COLUMNS}",
            new_id("doc"), tenant, collection_id, incoming.filename, incoming.title,
            dumps(incoming.metadata), incoming.file_id, incoming.sha256,
            incoming.size,
        )  # fmt: skip
        return Placed(document=row_of(row), action="created")

    # Its old chunks stay searchable until the new ones replace them.
    row = await conn.fetchrow(
        "UPDATE documents SET title = coalesce($2, title),"
        " metadata = $3::jsonb, file_id = $4, content_sha256 = $5, bytes = $6,"
        " state = 'queued', stage = 'queued', progress = NULL, error = NULL,"
        " updated_at = now() WHERE id = $1"
        f" RETURNING {_DOC_COLUMNS}",
        old["id"], incoming.title, dumps(incoming.metadata), incoming.file_id,
        incoming.sha256, incoming.size,
    )  # fmt: skip
    return Placed(document=row_of(row), action="replaced", stale_file_id=old["file_id"])


async def set_job(conn: Conn, *, document_id: str, job_id: str) -> None:
    await conn.execute(
        "UPDATE documents SET job_id = $2 WHERE id = $1", document_id, job_id
    )


async def get_document(
    conn: Conn, *, tenant: str, collection_id: str, document_id: str
) -> dict[str, Any]:
    row = await conn.fetchrow(
        f"SELECT {_DOC_COLUMNS} FROM documents"
        " WHERE id = $1 AND tenant = $2 AND collection_id = $3",
        document_id, tenant, collection_id,
    )  # fmt: skip
    if row is None:
        raise NotFound(
            f"No document {document_id!r} in this collection; list them with "
            "GET /v1/collections/{id}/documents."
        )
    return row_of(row)


async def list_documents(
    conn: Conn, *, tenant: str, collection_id: str, limit: int, after: str | None,
    state: str | None = None,
) -> tuple[list[dict[str, Any]], bool]:  # fmt: skip
    rows = await conn.fetch(
        f"SELECT {_DOC_COLUMNS} FROM documents WHERE tenant = $1"
        " AND collection_id = $2 AND ($5::text IS NULL OR state = $5)"
        " AND ($3::text IS NULL OR (created_at, id) > (SELECT created_at, id"
        "      FROM documents WHERE id = $3 AND tenant = $1))"
        " ORDER BY created_at, id LIMIT $4",
        tenant, collection_id, after, limit + 1, state,
    )  # fmt: skip
    return [row_of(r) for r in rows[:limit]], len(rows) > limit


async def delete_document(
    conn: asyncpg.Connection, *, tenant: str, collection_id: str, document_id: str
) -> dict[str, Any]:
    found = await get_document(
        conn, tenant=tenant, collection_id=collection_id, document_id=document_id
    )
    await lock_collection(conn, collection_id, strength="NO KEY UPDATE")
    if await conn.fetchval("SELECT to_regclass('chunks') IS NOT NULL"):
        await conn.execute("DELETE FROM chunks WHERE document_id = $1", document_id)
    await conn.execute("DELETE FROM documents WHERE id = $1", document_id)
    return found


# The pipeline's writes (worker side).


async def document_for_job(conn: Conn, *, document_id: str) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        # A vector store file may chunk differently from its store.
        "SELECT d.*, c.embedding_model,"
        " coalesce(d.file_chunk_tokens, c.chunk_tokens) AS chunk_tokens,"
        " coalesce(d.file_chunk_overlap, c.chunk_overlap) AS chunk_overlap"
        " FROM documents d JOIN collections c ON c.id = d.collection_id"
        " WHERE d.id = $1",
        document_id,
    )
    return row_of(row)


async def note_stage(
    conn: Conn, *, document_id: str, sha256: str, stage: str, progress: dict
) -> None:
    await conn.execute(
        "UPDATE documents SET state = 'processing', stage = $3,"
        " progress = $4::jsonb, updated_at = now()"
        " WHERE id = $1 AND content_sha256 = $2",
        document_id, sha256, stage, dumps(progress),
    )  # fmt: skip


async def fail_document(
    conn: Conn, *, document_id: str, sha256: str, error: dict
) -> None:
    await conn.execute(
        "UPDATE documents SET state = 'failed', stage = 'failed', error = $3::jsonb,"
        " updated_at = now() WHERE id = $1 AND content_sha256 = $2",
        document_id, sha256, dumps(error),
    )  # fmt: skip


@dataclass(kw_only=True)
class ChunkRow:
    ordinal: int
    text: str
    context: str | None
    section: str | None
    page_start: int | None
    page_end: int | None
    char_start: int
    char_end: int
    tokens: int
    embedding: list[float]
    lexical: str


async def replace_chunks(
    conn: asyncpg.Connection, *, document_id: str, sha256: str, text: str,
    format: str, pages: int | None, title: str | None, rows: list[ChunkRow],
) -> bool:  # fmt: skip
    """Swap the document's chunks for ``rows`` in one transaction; False
    (nothing written) if the document was deleted or got newer bytes."""
    async with conn.transaction():
        collection_id = await conn.fetchval(
            "SELECT collection_id FROM documents WHERE id = $1", document_id
        )
        if collection_id is None or not await lock_collection(
            conn, collection_id, strength="NO KEY UPDATE"
        ):
            return False
        doc = await conn.fetchrow(
            "SELECT tenant, collection_id, content_sha256 FROM documents"
            " WHERE id = $1 FOR UPDATE",
            document_id,
        )
        if doc is None or doc["content_sha256"] != sha256:
            return False
        await conn.execute("DELETE FROM chunks WHERE document_id = $1", document_id)
        # One statement, so that the lexical index's trigger runs once.
        await conn.execute(
            "INSERT INTO chunks (tenant, collection_id, document_id, ordinal, text,"
            " context, section, page_start, page_end, char_start, char_end, tokens,"
            " embedding, tsv) SELECT $1, $2, $3, r.ordinal, r.text, r.context,"
            " r.section, r.page_start, r.page_end, r.char_start, r.char_end,"
            " r.tokens, r.embedding::vector, to_tsvector('english', r.lexical)"
            " FROM unnest($4::int[], $5::text[], $6::text[], $7::text[], $8::int[],"
            " $9::int[], $10::int[], $11::int[], $12::int[], $13::text[],"
            " $14::text[]) AS r(ordinal, text, context, section, page_start,"
            " page_end, char_start, char_end, tokens, embedding, lexical)",
            doc["tenant"], doc["collection_id"], document_id,
            *_columns(rows, "ordinal", "text", "context", "section", "page_start",
                      "page_end", "char_start", "char_end", "tokens"),
            [_vector(r.embedding) for r in rows], [r.lexical for r in rows],
        )  # fmt: skip
        await conn.execute(
            "UPDATE documents SET state = 'ready', stage = 'done', error = NULL,"
            " indexed_sha256 = content_sha256, chunk_count = $2, text = $3,"
            " format = $4, pages = $5, title = coalesce(title, $6),"
            " updated_at = now() WHERE id = $1",
            document_id, len(rows), text, format, pages, title,
        )  # fmt: skip
    return True


def _columns(rows: list[ChunkRow], *names: str) -> list[list]:
    return [[getattr(r, name) for r in rows] for name in names]


def _vector(values: list[float]) -> str:
    return "[" + ",".join(f"{v:.7g}" for v in values) + "]"
