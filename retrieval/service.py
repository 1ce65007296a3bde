"""The API's side of ingestion: place documents, start their jobs, audit.

One job per document, so a file that cannot be parsed fails its own job
and nobody else's. The document rows, their files' rows and their jobs are
committed together; the job messages are sent after the commit (the jobs
outbox), so a broker outage delays ingestion but loses nothing.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import structlog

from auth import audit
from auth.context import Caller
from retrieval import store
from retrieval.pipeline import ENDPOINT
from retrieval.uploads import Stored
from server.jobs import files, states
from server.jobs import service as job_service
from server.jobs import store as job_store
from server.settings import Settings
from workers import protocol

log = structlog.get_logger(__name__)

COLLECTION_CREATE = "collection.create"
COLLECTION_UPDATE = "collection.update"
COLLECTION_DELETE = "collection.delete"
DOCUMENT_CREATE = "document.create"
DOCUMENT_REPLACE = "document.replace"
DOCUMENT_DELETE = "document.delete"


def actor(caller: Caller) -> str:
    return f"key:{caller.key_id}" if caller.key_id else caller.tenant


async def record(
    conn: asyncpg.Connection, caller: Caller, action: str, target: str,
    client_ip: str | None, detail: dict[str, Any] | None = None,
) -> None:  # fmt: skip
    await audit.record(
        conn, actor=actor(caller), actor_key_id=caller.key_id, tenant=caller.tenant,
        action=action, target=target, client_ip=client_ip, outcome="success",
        detail=detail or {},
    )  # fmt: skip


def ingestion_job(
    caller: Caller, settings: Settings, collection, document
) -> job_store.NewJob:
    """The job that indexes ``document``, on its embedding model's batch queue."""
    model = collection["embedding_model"]
    return job_store.NewJob(
        tenant=caller.tenant,
        key_id=caller.key_id,
        endpoint=ENDPOINT,
        model=model,
        request={
            "collection_id": collection["id"],
            "document_id": document["id"],
            "filename": document["filename"],
        },
        payload={"document_id": document["id"], "sha256": document["content_sha256"]},
        priority=states.BATCH_PRIORITY,
        queue=protocol.queue_name(settings.namespace, model, "batch"),
        max_attempts=settings.job_max_attempts,
    )


async def ingest(
    *, pool: asyncpg.Pool, settings: Settings, caller: Caller,
    collection: dict[str, Any], stored: list[Stored], client_ip: str | None,
) -> list[dict[str, Any]]:  # fmt: skip
    """Place each stored file as a document; (document, action, job) rows."""
    await job_service.check_backlog(pool, settings, len(stored))
    folder = files.files_dir(settings)
    placed, jobs, unused = [], [], []

    async with pool.acquire() as conn, conn.transaction():
        for item in stored:
            await files.insert_file(
                conn, file_id=item.file_id, tenant=caller.tenant,
                purpose="assistants", filename=item.filename, size=item.size,
                lines=0,
            )  # fmt: skip
            outcome = await store.place_document(
                conn, tenant=caller.tenant, collection_id=collection["id"],
                incoming=store.Incoming(
                    filename=item.filename, title=item.title,
                    metadata=item.metadata, file_id=item.file_id,
                    sha256=item.sha256, size=item.size,
                ),
            )  # fmt: skip
            doc = outcome.document
            job = None
            if outcome.action == "unchanged":
                unused.append(item.file_id)
            else:
                if outcome.stale_file_id:
                    unused.append(outcome.stale_file_id)
                job, _ = await job_store.insert_job(
                    conn, ingestion_job(caller, settings, collection, doc)
                )
                await store.set_job(conn, document_id=doc["id"], job_id=job["id"])
                doc["job_id"] = job["id"]
                jobs.append(job)
                action = (
                    DOCUMENT_CREATE if outcome.action == "created" else DOCUMENT_REPLACE
                )
                await record(conn, caller, action, doc["id"], client_ip,
                             {"collection_id": collection["id"],
                              "sha256": item.sha256})  # fmt: skip
            placed.append({"document": doc, "action": outcome.action, "job": job})
        await _forget_files(conn, caller.tenant, unused)

    for file_id in unused:
        files.path_of(folder, file_id).unlink(missing_ok=True)
    if jobs:
        await job_service.send_now(pool, jobs)
    log.info(
        "documents accepted", collection_id=collection["id"], jobs=len(jobs),
        unchanged=len(stored) - len(jobs),
    )  # fmt: skip
    return placed


async def _forget_files(conn, tenant: str, file_ids: list[str]) -> None:
    if file_ids:
        await conn.execute(
            "UPDATE files SET deleted_at = now() WHERE tenant = $1 AND id = ANY($2)",
            tenant, file_ids,
        )  # fmt: skip


async def remove_files(conn, settings: Settings, tenant: str, ids: list[str]) -> None:
    await _forget_files(conn, tenant, ids)
    folder = files.files_dir(settings)
    for file_id in ids:
        files.path_of(folder, file_id).unlink(missing_ok=True)
