"""SQL for vector stores and their files (server/migrations/0005).

A vector store is a row in ``vector_stores`` over one collection; its
files are the collection's documents, each named by the /v1/files upload
it came from (``source_file_id``), or by its own file for a document
uploaded through /v1/collections. A file's status is read from its
document and its ingestion job, never stored twice. Every read a caller
can reach filters by tenant in SQL.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from retrieval.store import Conn, row_of
from retrieval.store import dumps as _dumps
from server.errors import Conflict, NotFound

# OpenAI's four file statuses, from the document's state and its job's.
# A failed attempt that will be retried is still in progress.
FILE_STATUS = (
    "CASE WHEN d.state = 'ready' THEN 'completed'"
    " WHEN j.state = 'cancelled' THEN 'cancelled'"
    " WHEN j.state IN ('queued', 'running') THEN 'in_progress'"
    " WHEN d.state = 'failed' OR j.state IN ('failed', 'expired') THEN 'failed'"
    " ELSE 'in_progress' END"
)
FILE_ID = "coalesce(d.source_file_id, d.file_id, d.id)"

_FILE_SELECT = (
    f"SELECT {FILE_ID} AS id, d.id AS document_id, d.tenant, d.collection_id,"
    " d.filename, d.metadata, d.bytes, d.error, d.created_at, d.job_id,"
    " d.file_chunk_tokens, d.file_chunk_overlap, d.text,"
    f" j.error AS job_error, {FILE_STATUS} AS status"
    " FROM documents d LEFT JOIN jobs j ON j.id = d.job_id"
)


def _counts(where: str) -> str:
    """File counts (and bytes indexed) of the documents matching ``where``."""
    return (
        " CROSS JOIN LATERAL (SELECT"
        "   count(*) FILTER (WHERE s = 'in_progress') AS in_progress,"
        "   count(*) FILTER (WHERE s = 'completed') AS completed,"
        "   count(*) FILTER (WHERE s = 'failed') AS failed,"
        "   count(*) FILTER (WHERE s = 'cancelled') AS cancelled,"
        "   count(*) AS total,"
        "   coalesce(sum(b) FILTER (WHERE s = 'completed'), 0)::bigint"
        "     AS usage_bytes"
        f"   FROM (SELECT {FILE_STATUS} AS s, d.bytes AS b FROM documents d"
        f"         LEFT JOIN jobs j ON j.id = d.job_id WHERE {where}) f) counts"
    )


_STORE_SELECT = (
    "SELECT v.*, c.description, c.embedding_model, c.chunk_tokens,"
    " c.chunk_overlap, counts.*"
    " FROM vector_stores v JOIN collections c ON c.id = v.collection_id"
    + _counts("d.collection_id = v.collection_id")
)
_BATCH_SELECT = "SELECT b.*, counts.* FROM vector_store_file_batches b" + _counts(
    "d.file_batch_id = b.id"
)


def new_vector_store_id() -> str:
    return f"vs_{uuid.uuid4().hex}"


def new_batch_id() -> str:
    return f"vsfb_{uuid.uuid4().hex}"


def _row(record: asyncpg.Record | None) -> dict[str, Any] | None:
    return row_of(record, ("metadata", "error", "job_error"))


def _page(
    rows: list[asyncpg.Record], limit: int, *, backwards: bool
) -> tuple[list[dict], bool]:
    """A page of ``limit`` rows, read one past it to know if more follow;
    a ``before`` page was read backwards and is turned the right way."""
    page = [_row(r) for r in rows[:limit]]
    if backwards:
        page.reverse()
    return page, len(rows) > limit


def _walk(order: str, *, backwards: bool) -> tuple[str, str]:
    """How rows past a cursor compare with it, and the SQL order to read
    them in. A ``before`` cursor reads backwards from it, nearest first;
    the caller puts that page back in ``order``."""
    if order == "desc":
        return (">", "ASC") if backwards else ("<", "DESC")
    return ("<", "DESC") if backwards else (">", "ASC")


def _missing(vector_store_id: str) -> NotFound:
    return NotFound(
        f"No vector store {vector_store_id!r}; list yours with GET /v1/vector_stores."
    )


# Vector stores.


async def insert_vector_store(
    conn: Conn, *, vector_store_id: str, tenant: str, collection_id: str,
    name: str, metadata: dict[str, str], expires_after_days: int | None,
) -> None:  # fmt: skip
    await conn.execute(
        "INSERT INTO vector_stores (id, tenant, collection_id, name, metadata,"
        " expires_after_days) VALUES ($1, $2, $3, $4, $5::jsonb, $6)",
        vector_store_id, tenant, collection_id, name, _dumps(metadata),
        expires_after_days,
    )  # fmt: skip


async def get_vector_store(
    conn: Conn, *, tenant: str, vector_store_id: str
) -> dict[str, Any]:
    row = await conn.fetchrow(
        f"{_STORE_SELECT} WHERE v.tenant = $1 AND v.id = $2", tenant, vector_store_id
    )
    if row is None:
        raise _missing(vector_store_id)
    return _row(row)


async def list_vector_stores(
    conn: Conn, *, tenant: str, limit: int, order: str, after: str | None,
    before: str | None,
) -> tuple[list[dict[str, Any]], bool]:  # fmt: skip
    """A page in ``order`` of creation; ``after``/``before`` are ids."""
    beyond, direction = _walk(order, backwards=before is not None)
    rows = await conn.fetch(
        f"{_STORE_SELECT} WHERE v.tenant = $1"
        f" AND ($2::text IS NULL OR (v.created_at, v.id) {beyond} (SELECT"
        "      created_at, id FROM vector_stores WHERE id = $2 AND tenant = $1))"
        f" ORDER BY v.created_at {direction}, v.id {direction} LIMIT $3",
        tenant, after or before, limit + 1,
    )  # fmt: skip
    return _page(rows, limit, backwards=before is not None)


async def update_vector_store(
    conn: Conn, *, tenant: str, vector_store_id: str, changes: dict[str, Any]
) -> None:
    """Set the given columns (name, metadata, expires_after_days)."""
    sets, values = [], [vector_store_id, tenant]
    for column in ("name", "metadata", "expires_after_days"):
        if column in changes:
            value = changes[column]
            values.append(_dumps(value) if column == "metadata" else value)
            cast = "::jsonb" if column == "metadata" else ""
            sets.append(f"{column} = ${len(values)}{cast}")
    if not sets:
        await get_vector_store(conn, tenant=tenant, vector_store_id=vector_store_id)
        return
    done = await conn.fetchval(
        f"UPDATE vector_stores SET {', '.join(sets)}, last_active_at = now()"
        " WHERE id = $1 AND tenant = $2 RETURNING id",
        *values,
    )
    if done is None:
        raise _missing(vector_store_id)


async def touch(conn: Conn, *, vector_store_ids: list[str]) -> None:
    """Note a use: an expiry policy counts from the last one."""
    await conn.execute(
        "UPDATE vector_stores SET last_active_at = now() WHERE id = ANY($1)",
        vector_store_ids,
    )


# Their files.


async def insert_file_document(
    conn: asyncpg.Connection, *, tenant: str, collection_id: str,
    source_file_id: str, filename: str, attributes: dict[str, Any],
    file_id: str, sha256: str, size: int, chunk_tokens: int | None,
    chunk_overlap: int | None,
) -> dict[str, Any]:  # fmt: skip
    """The document of an attached file, queued; Conflict if attached."""
    try:
        row = await conn.fetchrow(
            "INSERT INTO documents (id, tenant, collection_id, filename, metadata,"
            " file_id, source_file_id, content_sha256, bytes, state, stage,"
            " file_chunk_tokens, file_chunk_overlap) VALUES ($1, $2, $3, $4,"
            " $5::jsonb, $6, $7, $8, $9, 'queued', 'queued', $10, $11)"
            " RETURNING id, filename, content_sha256",
            f"doc_{uuid.uuid4().hex}", tenant, collection_id, filename,
            _dumps(attributes), file_id, source_file_id, sha256, size,
            chunk_tokens, chunk_overlap,
        )  # fmt: skip
    except asyncpg.UniqueViolationError as exc:
        raise Conflict(
            f"File {source_file_id!r} is already attached to this vector store."
        ) from exc
    return dict(row)


async def get_file(
    conn: Conn, *, tenant: str, collection_id: str, file_id: str
) -> dict[str, Any]:
    row = await conn.fetchrow(
        f"{_FILE_SELECT} WHERE d.tenant = $1 AND d.collection_id = $2"
        f" AND {FILE_ID} = $3",
        tenant, collection_id, file_id,
    )  # fmt: skip
    if row is None:
        raise NotFound(
            f"No file {file_id!r} in this vector store; list them with "
            "GET /v1/vector_stores/{vector_store_id}/files."
        )
    return _row(row)


async def list_files(
    conn: Conn, *, tenant: str, collection_id: str, limit: int, order: str,
    after: str | None, before: str | None, status: str | None,
    batch_id: str | None = None,
) -> tuple[list[dict[str, Any]], bool]:  # fmt: skip
    """A page of the store's files (of one batch, when given)."""
    beyond, direction = _walk(order, backwards=before is not None)
    rows = await conn.fetch(
        f"{_FILE_SELECT} WHERE d.tenant = $1 AND d.collection_id = $2"
        f" AND ($3::text IS NULL OR {FILE_STATUS} = $3)"
        " AND ($6::text IS NULL OR d.file_batch_id = $6)"
        f" AND ($4::text IS NULL OR (d.created_at, d.id) {beyond} (SELECT"
        "      created_at, id FROM documents d WHERE d.tenant = $1"
        f"      AND d.collection_id = $2 AND {FILE_ID} = $4))"
        f" ORDER BY d.created_at {direction}, d.id {direction} LIMIT $5",
        tenant, collection_id, status, after or before, limit + 1, batch_id,
    )  # fmt: skip
    return _page(rows, limit, backwards=before is not None)


async def set_attributes(
    conn: Conn, *, document_id: str, attributes: dict[str, Any]
) -> None:
    await conn.execute(
        "UPDATE documents SET metadata = $2::jsonb, updated_at = now()"
        " WHERE id = $1",
        document_id, _dumps(attributes),
    )  # fmt: skip


async def attributes(conn: Conn, *, collection_ids: list[str]) -> dict[str, dict]:
    """Each document's attributes, by document id, for filtering."""
    rows = await conn.fetch(
        "SELECT id, metadata FROM documents WHERE collection_id = ANY($1)",
        collection_ids,
    )
    return {r["id"]: _row(r)["metadata"] for r in rows}


async def file_ids(conn: Conn, *, document_ids: list[str]) -> dict[str, str]:
    """The vector store file id of each document."""
    rows = await conn.fetch(
        f"SELECT d.id, {FILE_ID} AS file_id FROM documents d WHERE d.id = ANY($1)",
        document_ids,
    )
    return {r["id"]: r["file_id"] for r in rows}


# Batches of files.


async def insert_batch(
    conn: Conn, *, batch_id: str, tenant: str, vector_store_id: str
) -> None:
    await conn.execute(
        "INSERT INTO vector_store_file_batches (id, tenant, vector_store_id)"
        " VALUES ($1, $2, $3)",
        batch_id, tenant, vector_store_id,
    )  # fmt: skip


async def get_batch(
    conn: Conn, *, tenant: str, vector_store_id: str, batch_id: str
) -> dict[str, Any]:
    row = await conn.fetchrow(
        f"{_BATCH_SELECT} WHERE b.tenant = $1 AND b.vector_store_id = $2"
        " AND b.id = $3",
        tenant, vector_store_id, batch_id,
    )  # fmt: skip
    if row is None:
        raise NotFound(
            f"No file batch {batch_id!r} in vector store {vector_store_id!r}."
        )
    return dict(row)


async def join_batch(conn: Conn, *, document_id: str, batch_id: str) -> None:
    await conn.execute(
        "UPDATE documents SET file_batch_id = $2 WHERE id = $1", document_id, batch_id
    )


async def active_batch_jobs(conn: Conn, *, batch_id: str) -> list[str]:
    """The ingestion jobs of the batch still queued or running."""
    rows = await conn.fetch(
        "SELECT j.id FROM documents d JOIN jobs j ON j.id = d.job_id"
        " WHERE d.file_batch_id = $1 AND j.state IN ('queued', 'running')",
        batch_id,
    )
    return [r["id"] for r in rows]


async def mark_cancelled(conn: Conn, *, batch_id: str) -> None:
    await conn.execute(
        "UPDATE vector_store_file_batches SET cancelled_at = now() WHERE id = $1",
        batch_id,
    )
