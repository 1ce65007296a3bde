"""OpenAI batches: a JSONL file becomes one job per line, at batch priority.

Lines are ordinary job rows (``batch_id``, ``custom_id``, ``line``), written
in the same transaction as the batch, so the counts are read from the jobs
themselves and cannot drift. Whoever settles a batch's last line (a worker,
the sweep, or a cancel) finalizes it: output and error files in OpenAI's
line format, then the final status. Finalizing twice writes the same files.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import structlog
from pydantic import BaseModel, ConfigDict, Field

from auth import audit
from auth.context import Caller
from server.errors import Conflict, HearthError, InvalidRequest, NotFound
from server.jobs import files, states, store
from server.jobs.requests import build_payload
from server.jobs.service import check_backlog, send_now
from server.settings import Settings
from workers import protocol
from workers.specs import ModelCatalog

log = structlog.get_logger(__name__)

BATCH_CANCEL = "batch.cancel"
_WINDOW = re.compile(r"^([1-9][0-9]{0,3})([mhd])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}
_SEND_CHUNK = 500


class BatchCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input_file_id: str
    endpoint: str
    completion_window: str = "24h"
    metadata: dict[str, str] | None = Field(None, max_length=16)


def _window(value: str) -> timedelta:
    match = _WINDOW.match(value)
    if not match:
        raise InvalidRequest(
            f"Invalid completion_window {value!r}; use a duration such as '24h'.",
            param="completion_window",
        )
    return timedelta(**{_UNITS[match[2]]: int(match[1])})


def new_batch_id() -> str:
    return f"batch_{uuid.uuid4().hex}"


def _error(exc: HearthError) -> dict[str, Any]:
    return {**exc.to_dict(), "status": exc.status, "type": exc.type}


def _read_lines(path: Path) -> list[tuple[int, dict[str, Any]]]:
    items = []
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if raw.strip():
                items.append((number, json.loads(raw)))
    return items


def _line_jobs(
    *, items, batch_id: str, body: BatchCreate, caller: Caller,
    settings: Settings, catalog: ModelCatalog, deadline,
) -> list[store.NewJob]:  # fmt: skip
    jobs = []
    for number, item in items:
        if item["url"] != body.endpoint:
            raise InvalidRequest(
                f"Line {number} of file {body.input_file_id!r} is for "
                f"{item['url']!r}, but the batch is for {body.endpoint!r}; "
                "a batch takes one endpoint.",
                param="input_file_id",
            )
        fields: dict[str, Any] = {}
        try:
            spec, payload = build_payload(
                endpoint=body.endpoint, body=item["body"], catalog=catalog
            )
            model = spec.name
        except HearthError as exc:
            # OpenAI's way: a bad line fails on its own, in the error file.
            model, payload = str(item["body"].get("model")), {}
            fields = {"state": states.FAILED, "error": _error(exc)}
        jobs.append(
            store.NewJob(
                tenant=caller.tenant, key_id=caller.key_id, endpoint=body.endpoint,
                model=model, request=item["body"], payload=payload,
                priority=states.BATCH_PRIORITY,
                queue=protocol.queue_name(settings.namespace, model, "batch"),
                max_attempts=settings.job_max_attempts, deadline=deadline,
                batch_id=batch_id, custom_id=item["custom_id"], line=number,
                **fields,
            )
        )  # fmt: skip
    return jobs


async def create(
    *, pool: asyncpg.Pool, settings: Settings, catalog: ModelCatalog,
    caller: Caller, body: BatchCreate,
) -> dict[str, Any]:  # fmt: skip
    states.endpoint_type(body.endpoint)
    window = _window(body.completion_window)
    source = await files.get_file(
        pool, tenant=caller.tenant, file_id=body.input_file_id
    )
    if source["purpose"] != "batch":
        raise InvalidRequest(
            f"File {body.input_file_id!r} has purpose {source['purpose']!r}; "
            "upload the batch input with purpose 'batch'.",
            param="input_file_id",
        )
    path = files.path_of(files.files_dir(settings), source["id"])
    items = await anyio.to_thread.run_sync(_read_lines, path)
    batch_id = new_batch_id()

    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            "INSERT INTO batches (id, tenant, key_id, endpoint, input_file_id,"
            " completion_window, metadata, status, in_progress_at, expires_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, 'in_progress', now(),"
            " now() + $8::interval) RETURNING expires_at",
            batch_id, caller.tenant, caller.key_id, body.endpoint,
            body.input_file_id, body.completion_window,
            json.dumps(body.metadata) if body.metadata else None, window,
        )  # fmt: skip
        jobs = _line_jobs(
            items=items, batch_id=batch_id, body=body, caller=caller,
            settings=settings, catalog=catalog, deadline=row["expires_at"],
        )  # fmt: skip
        queued = [j for j in jobs if j.state == states.QUEUED]
        await check_backlog(conn, settings, len(queued))
        await store.insert_jobs(conn, jobs)

    log.info("batch created", batch_id=batch_id, lines=len(jobs), queued=len(queued))
    rows = [{"id": j.id, "attempt": 0, "queue": j.queue} for j in queued]
    for start in range(0, len(rows), _SEND_CHUNK):
        await send_now(pool, rows[start : start + _SEND_CHUNK])
    if not queued:
        async with pool.acquire() as conn:
            await finalize_if_done(
                conn, batch_id=batch_id, folder=files.files_dir(settings)
            )
    return await get(pool, tenant=caller.tenant, batch_id=batch_id)


async def _counts(conn, batch_ids: list[str]) -> dict[str, dict[str, int]]:
    rows = await conn.fetch(
        "SELECT batch_id, count(*) AS total,"
        " count(*) FILTER (WHERE state = 'succeeded') AS completed,"
        " count(*) FILTER (WHERE state = 'failed') AS failed"
        " FROM jobs WHERE batch_id = ANY($1::text[]) GROUP BY batch_id",
        batch_ids,
    )
    counts = {b: {"total": 0, "completed": 0, "failed": 0} for b in batch_ids}
    for r in rows:
        counts[r["batch_id"]] = {
            "total": r["total"], "completed": r["completed"], "failed": r["failed"]
        }  # fmt: skip
    return counts


def _row(record) -> dict[str, Any]:
    row = dict(record)
    for name in ("metadata", "errors"):
        if isinstance(row.get(name), str):
            row[name] = json.loads(row[name])
    return row


async def get(conn, *, tenant: str, batch_id: str) -> dict[str, Any]:
    from server.jobs import public

    record = await conn.fetchrow(
        "SELECT * FROM batches WHERE id = $1 AND tenant = $2", batch_id, tenant
    )
    if record is None:
        raise NotFound(f"No batch {batch_id!r}; list yours with GET /v1/batches.")
    counts = await _counts(conn, [batch_id])
    return public.batch(_row(record), counts[batch_id])


async def list_batches(
    conn, *, tenant: str, limit: int, after: str | None
) -> tuple[list[dict[str, Any]], bool]:
    from server.jobs import public

    records = await conn.fetch(
        "SELECT * FROM batches WHERE tenant = $1"
        " AND ($2::text IS NULL OR (created_at, id) < (SELECT created_at, id"
        "      FROM batches WHERE id = $2 AND tenant = $1))"
        " ORDER BY created_at DESC, id DESC LIMIT $3",
        tenant, after, limit + 1,
    )  # fmt: skip
    page = [_row(r) for r in records[:limit]]
    counts = await _counts(conn, [r["id"] for r in page])
    return [public.batch(r, counts[r["id"]]) for r in page], len(records) > limit


async def cancel(
    *, pool: asyncpg.Pool, settings: Settings, caller: Caller, batch_id: str,
    client_ip: str | None,
) -> dict[str, Any]:  # fmt: skip
    """Stop a batch: queued lines never run, running ones finish; the batch
    is cancelled (with what finished in its output file) once none run."""
    async with pool.acquire() as conn, conn.transaction():
        status = await conn.fetchval(
            "SELECT status FROM batches WHERE id = $1 AND tenant = $2 FOR UPDATE",
            batch_id, caller.tenant,
        )  # fmt: skip
        if status is None:
            raise NotFound(f"No batch {batch_id!r}; list yours with GET /v1/batches.")
        if status not in ("validating", "in_progress", "cancelling"):
            raise Conflict(
                f"Batch {batch_id!r} is already {status}; only a batch in "
                "progress can be cancelled."
            )
        await conn.execute(
            "UPDATE batches SET status = 'cancelling',"
            " cancelling_at = coalesce(cancelling_at, now()) WHERE id = $1",
            batch_id,
        )
        dropped = await conn.fetchval(
            "WITH c AS (UPDATE jobs SET state = 'cancelled', finished_at = now()"
            " WHERE batch_id = $1 AND state = 'queued' RETURNING 1)"
            " SELECT count(*) FROM c",
            batch_id,
        )
        await audit.record(
            conn,
            actor=f"key:{caller.key_id}" if caller.key_id else caller.tenant,
            actor_key_id=caller.key_id, tenant=caller.tenant, action=BATCH_CANCEL,
            target=batch_id, client_ip=client_ip, outcome="success",
            detail={"was": status, "lines_cancelled": dropped},
        )  # fmt: skip
    log.info("batch cancelling", batch_id=batch_id, lines_cancelled=dropped)
    async with pool.acquire() as conn:
        await finalize_if_done(
            conn, batch_id=batch_id, folder=files.files_dir(settings)
        )
    return await get(pool, tenant=caller.tenant, batch_id=batch_id)


# --- finalizing -----------------------------------------------------------


def _request_id(job_id: str) -> str:
    return "batch_req_" + job_id.removeprefix("job_")


_UNRUN = {
    states.CANCELLED: ("batch_cancelled", "The batch was cancelled before this "
                       "request ran."),
    states.EXPIRED: ("batch_expired", "This request could not be run before the "
                     "batch's completion window expired."),
}  # fmt: skip


def output_line(row: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
    """(is it an output line rather than an error line, the line)."""
    line = {"id": _request_id(row["id"]), "custom_id": row["custom_id"]}
    if row["state"] == states.SUCCEEDED:
        response = {"status_code": 200, "request_id": row["id"], "body": row["result"]}
        return True, {**line, "response": response, "error": None}
    if row["state"] in _UNRUN:
        code, message = _UNRUN[row["state"]]
        return False, {
            **line, "response": None, "error": {"code": code, "message": message}
        }  # fmt: skip
    error = row["error"] or {}
    body = {
        "error": {
            "message": error.get("message"),
            "type": error.get("type", "server_error"),
            "param": error.get("param"),
            "code": error.get("code"),
        }
    }
    response = {
        "status_code": error.get("status", 500), "request_id": row["id"], "body": body
    }  # fmt: skip
    return False, {**line, "response": response, "error": None}


def _write(folder: Path, file_id: str, lines: list[bytes]) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{file_id}.{uuid.uuid4().hex}"
    with open(tmp, "wb") as handle:
        handle.writelines(lines)
    os.replace(tmp, files.path_of(folder, file_id))
    return sum(len(line) for line in lines)


async def _collect(conn, batch_id: str) -> tuple[list[bytes], list[bytes], bool]:
    output: list[bytes] = []
    errors: list[bytes] = []
    expired = False
    async with conn.transaction():
        async for record in conn.cursor(
            "SELECT id, custom_id, state, result, error FROM jobs"
            " WHERE batch_id = $1 ORDER BY line",
            batch_id,
            prefetch=500,
        ):
            row = store.as_dict(record)
            expired = expired or row["state"] == states.EXPIRED
            good, line = output_line(row)
            text = (json.dumps(line, separators=(",", ":")) + "\n").encode()
            (output if good else errors).append(text)
    return output, errors, expired


async def finalize_if_done(
    conn: asyncpg.Connection, *, batch_id: str, folder: Path
) -> str | None:
    """Write the files and the final status if no line is queued or running;
    returns the final status, or None if the batch is not done."""
    async with conn.transaction():
        batch = await conn.fetchrow(
            "SELECT tenant, status FROM batches WHERE id = $1 FOR UPDATE", batch_id
        )
        if batch is None or batch["status"] not in (
            "in_progress", "finalizing", "cancelling",
        ):  # fmt: skip
            return None
        active = await conn.fetchval(
            "SELECT count(*) FROM jobs WHERE batch_id = $1"
            " AND state IN ('queued', 'running')",
            batch_id,
        )
        if active:
            return None
        if batch["status"] == "in_progress":
            await conn.execute(
                "UPDATE batches SET status = 'finalizing', finalizing_at = now()"
                " WHERE id = $1",
                batch_id,
            )

    output, errors, expired = await _collect(conn, batch_id)
    out_id, err_id = f"file-{batch_id}-output", f"file-{batch_id}-errors"
    out_size = await anyio.to_thread.run_sync(_write, folder, out_id, output)
    err_size = await anyio.to_thread.run_sync(_write, folder, err_id, errors)
    if batch["status"] == "cancelling":
        final = "cancelled"
    else:
        final = "expired" if expired else "completed"

    async with conn.transaction():
        for file_id, size, count, kind in (
            (out_id, out_size, len(output), "output"),
            (err_id, err_size, len(errors), "errors"),
        ):
            await files.insert_file(
                conn, file_id=file_id, tenant=batch["tenant"],
                purpose="batch_output", filename=f"{batch_id}_{kind}.jsonl",
                size=size, lines=count,
            )  # fmt: skip
        done = await conn.fetchval(
            "UPDATE batches SET status = $2, output_file_id = $3, error_file_id = $4,"
            f" {final}_at = now()"
            " WHERE id = $1 AND status IN ('finalizing', 'cancelling') RETURNING id",
            batch_id, final, out_id if output else None, err_id if errors else None,
        )  # fmt: skip
    if done:
        log.info(
            "batch finalized", batch_id=batch_id, status=final,
            succeeded=len(output), failed=len(errors),
        )  # fmt: skip
    return final if done else None
