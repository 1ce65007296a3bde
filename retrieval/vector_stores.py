"""OpenAI's vector stores, built on collections: create, attach, search.

A vector store owns one collection (named after the store's id, so
``/v1/collections/vs_...`` shows it too). Attaching a /v1/files upload
makes it a document of that collection whose bytes are a private link to
the upload's, indexed by the ordinary ingestion job; detaching it deletes
the document and the link, never the upload, as OpenAI does.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import redis.asyncio as aioredis
import structlog

from auth.context import Caller
from openai_compat import vector_stores as wire
from retrieval import attribute_filters, search, service, store
from retrieval import vector_store_sql as sql
from retrieval.chunking import OVERLAP_TOKENS, TARGET_TOKENS
from server.dispatch import Dispatcher
from server.errors import Conflict, InvalidRequest, NotFound
from server.jobs import files, states
from server.jobs import service as job_service
from server.jobs import store as job_store
from server.settings import Settings
from workers import protocol
from workers.specs import ModelCatalog

log = structlog.get_logger(__name__)

VECTOR_STORE_CREATE = "vector_store.create"
VECTOR_STORE_UPDATE = "vector_store.update"
VECTOR_STORE_DELETE = "vector_store.delete"
FILE_CREATE = "vector_store.file.create"
FILE_UPDATE = "vector_store.file.update"
FILE_DELETE = "vector_store.file.delete"
BATCH_CREATE = "vector_store.file_batch.create"
BATCH_CANCEL = "vector_store.file_batch.cancel"
_HASH_BLOCK = 1 << 20


async def _upload(pool: asyncpg.Pool, caller: Caller, file_id: str) -> dict:
    upload = await files.get_file(pool, tenant=caller.tenant, file_id=file_id)
    if upload["purpose"] != "assistants":
        raise InvalidRequest(
            f"File {file_id!r} was uploaded with purpose {upload['purpose']!r}; "
            "vector stores take files uploaded with purpose 'assistants'.",
            param="file_id",
        )
    return upload


def usable(vector_store: dict[str, Any]) -> None:
    if wire.is_expired(vector_store):
        raise InvalidRequest(
            f"Vector store {vector_store['id']!r} has expired; create a new one.",
            param="vector_store_id",
        )


async def create(
    *, pool: asyncpg.Pool, settings: Settings, caller: Caller,
    body: wire.VectorStoreCreate, embedding_model: str, client_ip: str | None,
) -> dict[str, Any]:  # fmt: skip
    """A new vector store with ``body.file_ids`` attached (and queued)."""
    metadata = attribute_filters.check_metadata(body.metadata, "metadata")
    sizes = body.chunking_strategy.sizes() if body.chunking_strategy else None
    tokens, overlap = sizes or (TARGET_TOKENS, OVERLAP_TOKENS)
    file_ids = list(dict.fromkeys(body.file_ids))
    for file_id in file_ids:
        await _upload(pool, caller, file_id)
    if file_ids:
        await store.require_chunks_table(pool)

    vector_store_id = sql.new_vector_store_id()
    days = body.expires_after.days if body.expires_after else None
    async with pool.acquire() as conn, conn.transaction():
        collection = await store.create_collection(
            conn, tenant=caller.tenant, name=vector_store_id,
            description=body.description, metadata={},
            embedding_model=embedding_model, chunk_tokens=tokens,
            chunk_overlap=overlap,
        )  # fmt: skip
        await sql.insert_vector_store(
            conn, vector_store_id=vector_store_id, tenant=caller.tenant,
            collection_id=collection["id"], name=body.name or "",
            metadata=metadata, expires_after_days=days,
        )  # fmt: skip
        await service.record(
            conn, caller, VECTOR_STORE_CREATE, vector_store_id, client_ip,
            {"collection_id": collection["id"], "files": len(file_ids)},
        )  # fmt: skip

    made = await get(pool, caller, vector_store_id)
    for file_id in file_ids:
        await attach(
            pool=pool, settings=settings, caller=caller, vector_store=made,
            file_id=file_id, attributes=None, chunking=None, client_ip=client_ip,
        )  # fmt: skip
    return await get(pool, caller, vector_store_id)


async def get(pool: asyncpg.Pool, caller: Caller, vector_store_id: str) -> dict:
    return await sql.get_vector_store(
        pool, tenant=caller.tenant, vector_store_id=vector_store_id
    )


async def update(
    *, pool: asyncpg.Pool, caller: Caller, vector_store_id: str,
    body: wire.VectorStoreUpdate, client_ip: str | None,
) -> dict[str, Any]:  # fmt: skip
    changes: dict[str, Any] = {}
    if body.name is not None:
        changes["name"] = body.name
    if body.metadata is not None:
        changes["metadata"] = attribute_filters.check_metadata(
            body.metadata, "metadata"
        )
    if "expires_after" in body.model_fields_set:
        after = body.expires_after
        changes["expires_after_days"] = after.days if after else None
    async with pool.acquire() as conn, conn.transaction():
        await sql.update_vector_store(
            conn, tenant=caller.tenant, vector_store_id=vector_store_id,
            changes=changes,
        )  # fmt: skip
        await service.record(
            conn, caller, VECTOR_STORE_UPDATE, vector_store_id, client_ip,
            {"changed": sorted(changes)},
        )  # fmt: skip
    return await get(pool, caller, vector_store_id)


async def delete(
    *, pool: asyncpg.Pool, settings: Settings, caller: Caller,
    vector_store_id: str, client_ip: str | None,
) -> None:  # fmt: skip
    """Delete the store, its collection, chunks and private links; the
    uploads stay in /v1/files."""
    async with pool.acquire() as conn, conn.transaction():
        found = await sql.get_vector_store(
            conn, tenant=caller.tenant, vector_store_id=vector_store_id
        )
        _, file_ids = await store.delete_collection(
            conn, tenant=caller.tenant, ref=found["collection_id"]
        )
        await service.record(
            conn, caller, VECTOR_STORE_DELETE, vector_store_id, client_ip,
            {"collection_id": found["collection_id"], "files": len(file_ids)},
        )  # fmt: skip
        await service.remove_files(conn, settings, caller.tenant, file_ids)


def _link(folder: Path, source_id: str, link_id: str) -> str:
    """Give the document its own name for the upload's bytes (a hard link,
    or a copy across file systems); their SHA-256."""
    source, target = files.path_of(folder, source_id), files.path_of(folder, link_id)
    try:
        os.link(source, target)
    except FileNotFoundError as exc:
        raise NotFound(
            f"The bytes of file {source_id!r} are gone; upload the file again."
        ) from exc
    except OSError:
        shutil.copyfile(source, target)
    digest = hashlib.sha256()
    with open(target, "rb") as handle:
        while block := handle.read(_HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


async def attach(
    *, pool: asyncpg.Pool, settings: Settings, caller: Caller,
    vector_store: dict[str, Any], file_id: str, attributes: dict | None,
    chunking: wire.ChunkingStrategy | None, client_ip: str | None,
    batch_id: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Attach an upload and queue its ingestion; the vector store file row.
    Attaching a file again answers with the one already there (now in
    ``batch_id``, when given)."""
    upload = await _upload(pool, caller, file_id)
    attributes = attribute_filters.check_attributes(attributes, "attributes")
    sizes = chunking.sizes() if chunking else None
    await store.require_chunks_table(pool)
    usable(vector_store)
    try:
        found = await file(pool, caller, vector_store, file_id)
    except NotFound:
        pass
    else:
        if batch_id:
            await sql.join_batch(pool, document_id=found["document_id"],
                                 batch_id=batch_id)  # fmt: skip
        return found
    await job_service.check_backlog(pool, settings, 1)

    folder = files.files_dir(settings)
    link_id = files.new_file_id()
    sha256 = await anyio.to_thread.run_sync(_link, folder, file_id, link_id)
    collection = {
        "id": vector_store["collection_id"],
        "embedding_model": vector_store["embedding_model"],
    }
    try:
        async with pool.acquire() as conn, conn.transaction():
            document = await sql.insert_file_document(
                conn, tenant=caller.tenant, collection_id=collection["id"],
                source_file_id=file_id, filename=upload["filename"],
                attributes=attributes, file_id=link_id, sha256=sha256,
                size=upload["bytes"], chunk_tokens=sizes[0] if sizes else None,
                chunk_overlap=sizes[1] if sizes else None,
            )  # fmt: skip
            job, _ = await job_store.insert_job(
                conn, service.ingestion_job(caller, settings, collection, document)
            )
            await store.set_job(conn, document_id=document["id"], job_id=job["id"])
            if batch_id:
                await sql.join_batch(
                    conn, document_id=document["id"], batch_id=batch_id
                )
            await service.record(
                conn, caller, FILE_CREATE, file_id, client_ip,
                {"vector_store_id": vector_store["id"],
                 "document_id": document["id"]},
            )  # fmt: skip
            await sql.touch(conn, vector_store_ids=[vector_store["id"]])
    except BaseException:
        files.path_of(folder, link_id).unlink(missing_ok=True)
        raise
    await job_service.send_now(pool, [job])
    log.info(
        "vector store file attached", vector_store_id=vector_store["id"],
        document_id=document["id"], job_id=job["id"],
    )  # fmt: skip
    return await file(pool, caller, vector_store, file_id)


async def file(
    pool: asyncpg.Pool, caller: Caller, vector_store: dict[str, Any], file_id: str
) -> dict[str, Any]:
    return await sql.get_file(
        pool, tenant=caller.tenant, collection_id=vector_store["collection_id"],
        file_id=file_id,
    )  # fmt: skip


async def set_attributes(
    *, pool: asyncpg.Pool, caller: Caller, vector_store: dict[str, Any],
    file_id: str, attributes: dict | None, client_ip: str | None,
) -> dict[str, Any]:  # fmt: skip
    attributes = attribute_filters.check_attributes(attributes, "attributes")
    async with pool.acquire() as conn, conn.transaction():
        row = await file(conn, caller, vector_store, file_id)
        await sql.set_attributes(
            conn, document_id=row["document_id"], attributes=attributes
        )
        await service.record(
            conn, caller, FILE_UPDATE, file_id, client_ip,
            {"vector_store_id": vector_store["id"]},
        )  # fmt: skip
    return await file(pool, caller, vector_store, file_id)


async def detach(
    *, pool: asyncpg.Pool, settings: Settings, caller: Caller,
    vector_store: dict[str, Any], file_id: str, client_ip: str | None,
) -> None:  # fmt: skip
    """Delete the file's document, chunks and private link. A job still
    queued for it finds the document gone and does nothing."""
    async with pool.acquire() as conn, conn.transaction():
        row = await file(conn, caller, vector_store, file_id)
        document = await store.delete_document(
            conn, tenant=caller.tenant, collection_id=vector_store["collection_id"],
            document_id=row["document_id"],
        )  # fmt: skip
        await service.record(
            conn, caller, FILE_DELETE, file_id, client_ip,
            {"vector_store_id": vector_store["id"],
             "document_id": row["document_id"]},
        )  # fmt: skip
        if document["file_id"]:
            await service.remove_files(
                conn, settings, caller.tenant, [document["file_id"]]
            )


async def create_batch(
    *, pool: asyncpg.Pool, settings: Settings, caller: Caller,
    vector_store: dict[str, Any], entries: list[wire.BatchFile],
    client_ip: str | None,
) -> dict[str, Any]:  # fmt: skip
    """Attach several uploads as one batch (each its own document and job)."""
    for entry in entries:
        await _upload(pool, caller, entry.file_id)
    await store.require_chunks_table(pool)
    usable(vector_store)
    batch_id = sql.new_batch_id()
    async with pool.acquire() as conn, conn.transaction():
        await sql.insert_batch(
            conn, batch_id=batch_id, tenant=caller.tenant,
            vector_store_id=vector_store["id"],
        )  # fmt: skip
        await service.record(
            conn, caller, BATCH_CREATE, batch_id, client_ip,
            {"vector_store_id": vector_store["id"], "files": len(entries)},
        )  # fmt: skip
    for entry in entries:
        await attach(
            pool=pool, settings=settings, caller=caller, vector_store=vector_store,
            file_id=entry.file_id, attributes=entry.attributes,
            chunking=entry.chunking_strategy, client_ip=client_ip,
            batch_id=batch_id,
        )  # fmt: skip
    return await batch(pool, caller, vector_store, batch_id)


async def batch(
    pool: asyncpg.Pool, caller: Caller, vector_store: dict[str, Any], batch_id: str
) -> dict[str, Any]:
    return await sql.get_batch(
        pool, tenant=caller.tenant, vector_store_id=vector_store["id"],
        batch_id=batch_id,
    )  # fmt: skip


async def cancel_batch(
    *, pool: asyncpg.Pool, redis: aioredis.Redis, namespace: str, caller: Caller,
    vector_store: dict[str, Any], batch_id: str, client_ip: str | None,
) -> dict[str, Any]:  # fmt: skip
    """Cancel the batch's ingestion jobs still queued or running; files
    already indexed stay. A running job is told to stop, as any job."""
    running = []
    async with pool.acquire() as conn, conn.transaction():
        found = await batch(conn, caller, vector_store, batch_id)
        if not found["in_progress"] or found["cancelled_at"]:
            raise Conflict(
                f"File batch {batch_id!r} is {wire.batch_status(found)}; only a "
                "batch in progress can be cancelled."
            )
        for job_id in await sql.active_batch_jobs(conn, batch_id=batch_id):
            _, before = await job_store.cancel_job(
                conn, tenant=caller.tenant, job_id=job_id
            )
            if before == states.RUNNING:
                running.append(job_id)
        await sql.mark_cancelled(conn, batch_id=batch_id)
        await service.record(
            conn, caller, BATCH_CANCEL, batch_id, client_ip,
            {"vector_store_id": vector_store["id"], "jobs": len(running)},
        )  # fmt: skip
    for job_id in running:
        await redis.set(
            protocol.cancel_key(namespace, job_id), 1, ex=protocol.CANCEL_TTL_S
        )
    return await batch(pool, caller, vector_store, batch_id)


# Search, for /search and for the Responses API's file_search tool.


async def for_search(
    pool: asyncpg.Pool, caller: Caller, vector_store_ids: list[str]
) -> list[dict[str, Any]]:
    """The caller's stores, each usable, all on one embedding model."""
    found = [await get(pool, caller, ref) for ref in dict.fromkeys(vector_store_ids)]
    for vector_store in found:
        usable(vector_store)
    models = {v["embedding_model"] for v in found}
    if len(models) > 1:
        raise InvalidRequest(
            f"The vector stores use different embedding models ({sorted(models)}); "
            "search each one separately.",
            param="vector_store_ids",
        )
    return found


async def allowed_documents(
    pool: asyncpg.Pool, collection_ids: list[str], rule
) -> list[str] | None:
    """The documents passing an attribute filter; None for no filter."""
    if rule is None:
        return None
    attributes = await sql.attributes(pool, collection_ids=collection_ids)
    return [
        document_id
        for document_id, values in attributes.items()
        if attribute_filters.matches(rule, values)
    ]


def similarity(hit: search.Hit) -> float:
    """OpenAI's score, from 0 to 1: the chunk's cosine similarity to the
    query (0 for a chunk that only the word ranking found)."""
    return min(1.0, max(0.0, hit.dense or 0.0))


async def results(pool: asyncpg.Pool, hits: list[search.Hit]) -> list[dict]:
    """file_id, filename, score, attributes and text of each hit."""
    ids = await sql.file_ids(pool, document_ids=[h.row["document_id"] for h in hits])
    found = []
    for hit in hits:
        attributes = hit.row["metadata"]
        if isinstance(attributes, str):
            attributes = json.loads(attributes)
        found.append({
            "file_id": ids.get(hit.row["document_id"], hit.row["document_id"]),
            "filename": hit.row["filename"], "score": similarity(hit),
            "attributes": attributes or {}, "text": hit.row["text"],
        })  # fmt: skip
    return found


async def run_search(
    *, pool: asyncpg.Pool, dispatcher: Dispatcher, catalog: ModelCatalog,
    caller: Caller, vector_store: dict[str, Any], body: wire.SearchRequest,
) -> list[dict[str, Any]]:  # fmt: skip
    """Hybrid search of one store, in fused order; hits under the score
    threshold are left out."""
    queries = body.queries()
    usable(vector_store)
    await store.require_chunks_table(pool)
    collection_ids = [vector_store["collection_id"]]
    allowed = await allowed_documents(pool, collection_ids, body.filters)
    await sql.touch(pool, vector_store_ids=[vector_store["id"]])
    if allowed == []:
        return []

    text = "\n".join(queries)
    vector = await search.embed_query(
        dispatcher, catalog, vector_store["embedding_model"], text
    )
    hits = await search.search(
        pool, tenant=caller.tenant, collections=collection_ids, query=text,
        vector=vector, mode="hybrid", top_k=body.max_num_results, where=None,
        documents=allowed,
    )  # fmt: skip
    threshold = (body.ranking_options and body.ranking_options.score_threshold) or 0
    return [
        {
            "file_id": found["file_id"],
            "filename": found["filename"],
            "score": found["score"],
            "attributes": found["attributes"],
            "content": [{"type": "text", "text": found["text"]}],
        }
        for found in await results(pool, hits)
        if found["score"] >= threshold
    ]
