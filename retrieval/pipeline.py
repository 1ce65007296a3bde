"""The ingestion job, as a worker runs it: parse, chunk, embed, index.

The job's message names only the job; its payload names the document and
the bytes' hash, and the bytes stay in the data directory. Nothing is
written to the index until the last step, which swaps the document's
chunks in one transaction, so a worker killed on the way leaves the old
chunks (or none) and the redelivered attempt starts over cleanly.

The job runs on the collection's embedding model's batch queue, on a
worker that hosts that model: embedding goes straight to the hosted
backend, whose dynamic batching merges it with interactive requests
(which that worker's queues serve first).
"""

from __future__ import annotations

import time
from typing import Any

import structlog

from retrieval import chunking, lexical, sandbox, store
from server.errors import HearthError, InvalidRequest
from server.jobs import files
from server.jobs import store as job_store
from server.metrics import CHUNKS_INDEXED, DOCUMENTS_INDEXED
from server.settings import get_settings
from workers.hosting import hosted
from workers.job_sink import JobCancelled, cancel_requested
from workers.jobdb import worker_database

log = structlog.get_logger(__name__)

ENDPOINT = "/v1/collections/documents"
EMBED_BATCH = 64


class _Progress:
    def __init__(self, job: dict[str, Any], document_id: str, sha256: str) -> None:
        self.job_id, self.attempt = job["id"], job["attempt"]
        self.document_id, self.sha256 = document_id, sha256

    def __call__(self, stage: str, **counts: int) -> None:
        """Note the stage; stop here if the job was cancelled, so that a
        cancelled job never writes its chunks."""
        state = hosted()
        if cancel_requested(state.redis, namespace=state.namespace, job_id=self.job_id):
            raise JobCancelled()
        progress = {"stage": stage, "document_id": self.document_id, **counts}
        db = worker_database()
        db.run(
            store.note_stage, document_id=self.document_id, sha256=self.sha256,
            stage=stage, progress=progress,
        )  # fmt: skip
        db.run(
            job_store.note_progress, job_id=self.job_id, attempt=self.attempt,
            progress=progress,
        )  # fmt: skip


def run(job: dict[str, Any]) -> dict[str, Any]:
    """Index the job's document; the job's result. Raises HearthError."""
    document_id, sha256 = job["payload"]["document_id"], job["payload"]["sha256"]
    doc = worker_database().run(store.document_for_job, document_id=document_id)
    if doc is None or doc["content_sha256"] != sha256:
        # Deleted, or replaced by a newer upload whose own job indexes it.
        log.info("document superseded", document_id=document_id)
        DOCUMENTS_INDEXED.labels("superseded").inc()
        return {"document_id": document_id, "state": "superseded", "chunks": 0}

    try:
        return _index(job, doc, sha256)
    except JobCancelled:
        DOCUMENTS_INDEXED.labels("cancelled").inc()
        worker_database().run(
            store.fail_document, document_id=document_id, sha256=sha256,
            error={"code": "cancelled", "message": "The ingestion job was "
                   "cancelled before the document was indexed; upload it again "
                   "to index it."},
        )  # fmt: skip
        raise
    except Exception as exc:
        # Counted per attempt: a retried document counts again.
        DOCUMENTS_INDEXED.labels("failed").inc()
        if isinstance(exc, HearthError):
            worker_database().run(
                store.fail_document, document_id=document_id, sha256=sha256,
                error={"code": exc.code, "message": exc.message},
            )  # fmt: skip
        raise


def _index(job: dict[str, Any], doc: dict[str, Any], sha256: str) -> dict[str, Any]:
    started = time.perf_counter()
    progress = _Progress(job, doc["id"], sha256)
    path = files.path_of(files.files_dir(get_settings()), doc["file_id"] or "")

    progress("parsing")
    parsed = sandbox.parse_file(path, doc["filename"])
    title = doc["title"] or parsed.title
    chunks = chunking.chunk(
        parsed, target=doc["chunk_tokens"], overlap=doc["chunk_overlap"]
    )
    progress("embedding", chunks=len(chunks), embedded=0)

    vectors = _embed(job, doc, chunks, title, progress)
    progress("indexing", chunks=len(chunks), embedded=len(chunks))
    rows = [
        store.ChunkRow(
            ordinal=c.index, text=c.text, context=c.context(title),
            section=c.section, page_start=c.page_start, page_end=c.page_end,
            char_start=c.start, char_end=c.end, tokens=c.tokens,
            embedding=vector, lexical=lexical.document_text(c.context(title), c.text),
        )
        for c, vector in zip(chunks, vectors, strict=True)
    ]  # fmt: skip
    written = worker_database().run(
        store.replace_chunks, document_id=doc["id"], sha256=sha256,
        text=parsed.text, format=parsed.format, pages=parsed.pages, title=title,
        rows=rows,
    )  # fmt: skip
    DOCUMENTS_INDEXED.labels("indexed" if written else "superseded").inc()
    if written:
        CHUNKS_INDEXED.labels(doc["embedding_model"]).inc(len(rows))
    log.info(
        "document indexed" if written else "document superseded",
        document_id=doc["id"], chunks=len(rows), format=parsed.format,
        duration_ms=round((time.perf_counter() - started) * 1000, 1),
    )  # fmt: skip
    return {
        "document_id": doc["id"],
        "state": "ready" if written else "superseded",
        "chunks": len(rows),
        "format": parsed.format,
        "pages": parsed.pages,
    }


def _embed(job, doc, chunks, title, progress) -> list[list[float]]:
    backend = hosted().embedding_backend(doc["embedding_model"])
    # Local embedders serve interactive callers first; remote engines
    # schedule their own work.
    embed = getattr(backend, "embed_background", backend.embed)
    texts = [f"{c.context(title)}\n{c.text}".strip() for c in chunks]
    vectors: list[list[float]] = []
    for at in range(0, len(texts), EMBED_BATCH):
        batch, _ = embed(
            request_id=f"{job['id']}-{at}", texts=texts[at : at + EMBED_BATCH]
        )
        vectors.extend(row.tolist() for row in batch)
        if len(texts) > EMBED_BATCH:
            progress("embedding", chunks=len(texts), embedded=len(vectors))
    if vectors and len(vectors[0]) != 384:
        raise InvalidRequest(
            f"Embedding model {doc['embedding_model']!r} gives {len(vectors[0])} "
            "dimensions; collections store 384. Use all-minilm-l6-v2."
        )
    return vectors
