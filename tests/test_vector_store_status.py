"""A vector store file's status comes from its document and its ingestion
job; a batch's counts from its files; cancelling a batch cancels their
jobs. The real app in-process on a scratch PostgreSQL without pgvector, so
documents and jobs are placed directly and no worker runs."""

from __future__ import annotations

import json

from retrieval import store as retrieval_store
from retrieval import vector_store_sql
from server.jobs import store as job_store
from tests import authutil
from tests.authutil import EMBED, running

database_url = authutil.database_url
settings = authutil.settings


async def _attach(api, store: dict, file_id: str, batch_id: str) -> dict:
    """A document and a queued ingestion job for ``file_id``, in the batch."""
    row = await vector_store_sql.get_vector_store(
        api.pool, tenant="local", vector_store_id=store["id"]
    )
    async with api.pool.acquire() as conn:
        document = await vector_store_sql.insert_file_document(
            conn, tenant="local", collection_id=row["collection_id"],
            source_file_id=file_id, filename=f"{file_id}.txt", attributes={},
            file_id=f"link-{file_id}", sha256=file_id.ljust(64, "0"), size=10,
            chunk_tokens=None, chunk_overlap=None,
        )  # fmt: skip
        job, _ = await job_store.insert_job(conn, job_store.NewJob(
            tenant="local", key_id=None, endpoint="/v1/collections/documents",
            model=EMBED, request={}, payload={}, priority=1, queue="nowhere",
            max_attempts=1,
        ))  # fmt: skip
        await retrieval_store.set_job(
            conn, document_id=document["id"], job_id=job["id"]
        )
        await vector_store_sql.join_batch(
            conn, document_id=document["id"], batch_id=batch_id
        )
    return {"document": document["id"], "job": job["id"]}


async def test_file_status_counts_and_batch_cancel(settings):
    async with running(settings) as api:
        made = await api.client.post("/v1/vector_stores", json={"name": "s"})
        assert made.status_code == 200, made.text
        store = made.json()
        batch_id = vector_store_sql.new_batch_id()
        await vector_store_sql.insert_batch(
            api.pool, batch_id=batch_id, tenant="local", vector_store_id=store["id"]
        )
        placed = {
            name: await _attach(api, store, name, batch_id)
            for name in ("ready", "broken", "retrying", "exhausted", "waiting")
        }
        pool = api.pool
        await pool.execute(
            "UPDATE documents SET state = 'ready' WHERE id = $1",
            placed["ready"]["document"],
        )
        error = json.dumps({"code": "unparseable_document", "message": "not a pdf"})
        await pool.execute(
            "UPDATE documents SET state = 'failed', error = $2::jsonb WHERE id = $1",
            placed["broken"]["document"], error,
        )  # fmt: skip
        await pool.execute(
            "UPDATE jobs SET state = 'failed' WHERE id = $1", placed["broken"]["job"]
        )
        # A failed attempt that will be retried: the job is queued again.
        await pool.execute(
            "UPDATE documents SET state = 'failed', error = $2::jsonb WHERE id = $1",
            placed["retrying"]["document"], error,
        )  # fmt: skip
        lost = json.dumps({"code": "worker_lost", "message": "the worker died"})
        await pool.execute(
            "UPDATE jobs SET state = 'failed', error = $2::jsonb WHERE id = $1",
            placed["exhausted"]["job"], lost,
        )  # fmt: skip

        base = f"/v1/vector_stores/{store['id']}"
        files = {
            f["id"]: f for f in (await api.client.get(f"{base}/files")).json()["data"]
        }
        assert {name: f["status"] for name, f in files.items()} == {
            "ready": "completed", "broken": "failed", "retrying": "in_progress",
            "exhausted": "failed", "waiting": "in_progress",
        }  # fmt: skip
        assert files["broken"]["last_error"] == {
            "code": "invalid_file", "message": "not a pdf"
        }  # fmt: skip
        assert files["exhausted"]["last_error"]["code"] == "server_error"
        assert files["ready"]["last_error"] is None
        assert files["ready"]["usage_bytes"] == 10
        assert files["waiting"]["usage_bytes"] == 0
        one = await api.client.get(f"{base}/files/waiting")
        assert one.headers["openai-poll-after-ms"] == "250"

        counts = (await api.client.get(base)).json()["file_counts"]
        assert counts == {"in_progress": 2, "completed": 1, "failed": 2,
                          "cancelled": 0, "total": 5}  # fmt: skip
        failed = await api.client.get(f"{base}/files", params={"filter": "failed"})
        assert {f["id"] for f in failed.json()["data"]} == {"broken", "exhausted"}

        cancelled = await api.client.post(f"{base}/file_batches/{batch_id}/cancel")
        assert cancelled.status_code == 200, cancelled.text
        body = cancelled.json()
        assert body["object"] == "vector_store.files_batch"
        assert body["status"] == "cancelled"
        assert body["file_counts"]["cancelled"] == 2
        assert body["file_counts"]["in_progress"] == 0
        states = await pool.fetch(
            "SELECT id, state FROM jobs WHERE id = ANY($1)",
            [placed["retrying"]["job"], placed["waiting"]["job"]],
        )
        assert {r["state"] for r in states} == {"cancelled"}
        listed = await api.client.get(
            f"{base}/file_batches/{batch_id}/files", params={"filter": "cancelled"}
        )
        assert {f["id"] for f in listed.json()["data"]} == {"retrying", "waiting"}

        again = await api.client.post(f"{base}/file_batches/{batch_id}/cancel")
        assert again.status_code == 409
        assert again.json()["error"]["code"] == "conflict"
        audit = await api.audit_rows(action="vector_store.file_batch.cancel")
        assert [r["target"] for r in audit] == [batch_id]
