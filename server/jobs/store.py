"""SQL for jobs, shared by the API (its pool) and the workers (jobdb).

Every read that a caller can reach takes the tenant and filters by it in
SQL. The worker-side writes are guarded by state and attempt, which is what
makes a redelivered or late task harmless.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from server.jobs import states

_JSON = ("request", "payload", "attempts", "progress", "result", "error")

Conn = asyncpg.Connection | asyncpg.Pool


def new_job_id() -> str:
    return f"job_{uuid.uuid4().hex}"


def _dumps(value: Any) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"))


def as_dict(record: asyncpg.Record | None) -> dict[str, Any] | None:
    if record is None:
        return None
    row = dict(record)
    for name in _JSON:
        if isinstance(row.get(name), str):
            row[name] = json.loads(row[name])
    return row


@dataclass(kw_only=True)
class NewJob:
    tenant: str
    key_id: str | None
    endpoint: str
    model: str
    request: dict[str, Any]
    payload: dict[str, Any]
    priority: int
    queue: str
    max_attempts: int
    idempotency_key: str | None = None
    request_sha256: str | None = None
    deadline: datetime | None = None
    webhook_url: str | None = None
    batch_id: str | None = None
    custom_id: str | None = None
    line: int | None = None
    id: str = ""
    # A batch line that failed validation is born failed and never sent.
    state: str = states.QUEUED
    error: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        self.id = self.id or new_job_id()

    def record(self) -> tuple:
        finished = None if self.state == states.QUEUED else datetime.now().astimezone()
        return (
            self.id, self.tenant, self.key_id, self.endpoint, self.model,
            _dumps(self.request), _dumps(self.payload), self.priority, self.queue,
            self.state, self.idempotency_key, self.request_sha256, self.deadline,
            self.webhook_url, self.max_attempts, self.batch_id, self.custom_id,
            self.line, _dumps(self.error), finished,
        )  # fmt: skip


_COLUMNS = (
    "id, tenant, key_id, endpoint, model, request, payload, priority, queue,"
    " state, idempotency_key, request_sha256, deadline, webhook_url,"
    " max_attempts, batch_id, custom_id, line, error, finished_at"
)
_CASTS = (
    "$1, $2, $3, $4, $5, $6::jsonb, $7::jsonb, $8, $9, $10, $11, $12, $13,"
    " $14, $15, $16, $17, $18, $19::jsonb, $20"
)


async def insert_job(conn: Conn, job: NewJob) -> tuple[dict[str, Any], bool]:
    """Insert ``job``; with an idempotency key already used, the existing job
    and False."""
    row = await conn.fetchrow(
        f"INSERT INTO jobs ({_COLUMNS}) VALUES ({_CASTS})"
        " ON CONFLICT (tenant, idempotency_key) WHERE idempotency_key IS NOT NULL"
        " DO NOTHING RETURNING *",
        *job.record(),
    )
    if row is not None:
        return as_dict(row), True
    existing = await conn.fetchrow(
        "SELECT * FROM jobs WHERE tenant = $1 AND idempotency_key = $2",
        job.tenant, job.idempotency_key,
    )  # fmt: skip
    return as_dict(existing), False


async def insert_jobs(conn: asyncpg.Connection, jobs: list[NewJob]) -> None:
    """Many at once (a batch's lines), inside the caller's transaction."""
    await conn.executemany(
        f"INSERT INTO jobs ({_COLUMNS}) VALUES ({_CASTS})",
        [job.record() for job in jobs],
    )


async def get_job(conn: Conn, *, tenant: str, job_id: str) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        "SELECT * FROM jobs WHERE id = $1 AND tenant = $2", job_id, tenant
    )
    return as_dict(row)


async def queue_position(conn: Conn, job: dict[str, Any]) -> int | None:
    if job["state"] != states.QUEUED:
        return None
    ahead = await conn.fetchval(
        "SELECT count(*) FROM jobs WHERE state = 'queued' AND queue = $1"
        " AND (created_at, id) < ($2, $3)",
        job["queue"], job["created_at"], job["id"],
    )  # fmt: skip
    return ahead + 1


async def backlog(conn: Conn) -> int:
    return await conn.fetchval("SELECT count(*) FROM jobs WHERE state = 'queued'")


@dataclass(kw_only=True)
class JobFilter:
    tenant: str
    state: str | None = None
    endpoint: str | None = None
    model: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    batch_id: str | None = None
    after: str | None = None
    limit: int = 20


async def list_jobs(conn: Conn, where: JobFilter) -> tuple[list[dict], bool]:
    """Newest first; ``after`` is the last id of the previous page."""
    rows = await conn.fetch(
        "SELECT * FROM jobs WHERE tenant = $1"
        " AND ($2::text IS NULL OR state = $2)"
        " AND ($3::text IS NULL OR endpoint = $3)"
        " AND ($4::text IS NULL OR model = $4)"
        " AND ($5::timestamptz IS NULL OR created_at >= $5)"
        " AND ($6::timestamptz IS NULL OR created_at < $6)"
        " AND ($7::text IS NULL OR batch_id = $7)"
        " AND ($8::text IS NULL OR (created_at, id) < (SELECT created_at, id"
        "      FROM jobs WHERE id = $8 AND tenant = $1))"
        " ORDER BY created_at DESC, id DESC LIMIT $9",
        where.tenant, where.state, where.endpoint, where.model,
        where.created_after, where.created_before, where.batch_id, where.after,
        where.limit + 1,
    )  # fmt: skip
    return [as_dict(r) for r in rows[: where.limit]], len(rows) > where.limit


async def cancel_job(
    conn: asyncpg.Connection, *, tenant: str, job_id: str
) -> tuple[dict[str, Any] | None, str | None]:
    """Cancel a queued or running job, in the caller's transaction; returns
    the job and the state it was in (None if unknown to this tenant)."""
    before = await conn.fetchval(
        "SELECT state FROM jobs WHERE id = $1 AND tenant = $2 FOR UPDATE",
        job_id, tenant,
    )  # fmt: skip
    if before is None or before not in states.ACTIVE:
        return await get_job(conn, tenant=tenant, job_id=job_id), before
    row = await conn.fetchrow(
        "UPDATE jobs SET state = 'cancelled', finished_at = now(),"
        " attempts = CASE WHEN state = 'running' THEN jsonb_set(attempts,"
        "   ARRAY[(jsonb_array_length(attempts) - 1)::text],"
        "   (attempts -> -1) || jsonb_build_object('outcome', 'cancelled',"
        "   'ended_at', extract(epoch FROM now())))"
        "   ELSE attempts END"
        " WHERE id = $1 AND tenant = $2 RETURNING *",
        job_id, tenant,
    )  # fmt: skip
    return as_dict(row), before


async def retry_job(
    conn: asyncpg.Connection, *, tenant: str, job_id: str, more_attempts: int
) -> tuple[dict[str, Any] | None, str | None]:
    """Put a failed job back in the outbox with a fresh budget of attempts."""
    before = await conn.fetchval(
        "SELECT state FROM jobs WHERE id = $1 AND tenant = $2 FOR UPDATE",
        job_id, tenant,
    )  # fmt: skip
    if before != states.FAILED:
        return await get_job(conn, tenant=tenant, job_id=job_id), before
    row = await conn.fetchrow(
        "UPDATE jobs SET state = 'queued', error = NULL, result = NULL,"
        " finished_at = NULL, not_before = NULL, sent_at = NULL, worker = NULL,"
        " max_attempts = attempt + $3"
        " WHERE id = $1 AND tenant = $2 RETURNING *",
        job_id, tenant, more_attempts,
    )  # fmt: skip
    return as_dict(row), before


async def mark_sent(conn: Conn, job_ids: list[str]) -> None:
    await conn.execute(
        "UPDATE jobs SET sent_at = now() WHERE id = ANY($1::text[])"
        " AND state = 'queued' AND sent_at IS NULL",
        job_ids,
    )


async def events_after(
    conn: Conn, *, job_id: str, after: int, limit: int = 200
) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT id, kind, data, at FROM job_events WHERE job_id = $1 AND id > $2"
        " ORDER BY id LIMIT $3",
        job_id, after, limit,
    )  # fmt: skip
    return [
        {
            "id": r["id"],
            "kind": r["kind"],
            "at": r["at"].timestamp(),
            **json.loads(r["data"]),
        }
        for r in rows
    ]


# --- the worker's side ----------------------------------------------------


async def claim(
    conn: asyncpg.Connection, *, job_id: str, attempt: int, worker: str
) -> dict[str, Any] | None:
    """Start ``attempt`` of a queued job; None if this message is stale (the
    attempt already started, the job finished, was cancelled or expired) or
    the job's deadline has passed (``expire_due`` ends it)."""
    row = await conn.fetchrow(
        "UPDATE jobs SET state = 'running', attempt = $2, worker = $3,"
        " started_at = now(), progress = NULL, attempts = attempts ||"
        "   jsonb_build_array(jsonb_build_object('attempt', $2::int,"
        "   'worker', $3::text, 'started_at', extract(epoch FROM now())))"
        " WHERE id = $1 AND state = 'queued' AND attempt = $2 - 1"
        " AND (not_before IS NULL OR not_before <= now())"
        " AND (deadline IS NULL OR deadline > now())"
        " RETURNING *",
        job_id, attempt, worker,
    )  # fmt: skip
    return as_dict(row)


@dataclass(frozen=True, kw_only=True)
class Settled:
    job_id: str
    state: str
    batch_id: str | None
    webhook_url: str | None


_EXPIRE = (
    "UPDATE jobs SET state = 'expired', finished_at = now(),"
    " error = jsonb_build_object('code', 'expired', 'status', 408, 'message',"
    "   'The job did not start before its deadline.')"
    " WHERE state = 'queued' AND deadline <= now() {}"
    " RETURNING id, state, batch_id, webhook_url"
)


async def expire_due(conn: Conn, *, job_id: str | None = None) -> list[Settled]:
    """Expire queued jobs past their deadline: every one, or ``job_id`` only.
    Returns those this call expired, for their batches and webhooks."""
    if job_id is None:
        rows = await conn.fetch(_EXPIRE.format(""))
    else:
        rows = await conn.fetch(_EXPIRE.format("AND id = $1"), job_id)
    return [
        Settled(job_id=r["id"], state=r["state"], batch_id=r["batch_id"],
                webhook_url=r["webhook_url"])
        for r in rows
    ]  # fmt: skip


async def settle(
    conn: asyncpg.Connection,
    *,
    job_id: str,
    attempt: int,
    result: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
    retry_in_s: float | None = None,
) -> Settled | None:
    """End ``attempt`` of a running job: succeeded (``result``), back to the
    outbox after ``retry_in_s`` (a transient ``error``), or failed. None if
    the attempt is no longer the job's running one: nothing is written."""
    if result is not None:
        state, outcome = states.SUCCEEDED, "succeeded"
    elif retry_in_s is not None:
        state, outcome = states.QUEUED, (error or {}).get("code", "error")
    else:
        state, outcome = states.FAILED, (error or {}).get("code", "error")
    note = {"outcome": outcome, "ended_at": time.time()}
    if error is not None:
        note["error"] = error
    row = await conn.fetchrow(
        "UPDATE jobs SET state = $3, result = $4::jsonb, error = $5::jsonb,"
        " attempts = jsonb_set(attempts,"
        "   ARRAY[(jsonb_array_length(attempts) - 1)::text],"
        "   (attempts -> -1) || $6::jsonb),"
        " finished_at = CASE WHEN $3 = 'queued' THEN NULL ELSE now() END,"
        " not_before = CASE WHEN $3 = 'queued'"
        "   THEN now() + $7 * interval '1 second' END,"
        " sent_at = CASE WHEN $3 = 'queued' THEN NULL ELSE sent_at END"
        " WHERE id = $1 AND state = 'running' AND attempt = $2"
        " RETURNING id, state, batch_id, webhook_url",
        job_id, attempt, state, _dumps(result),
        _dumps(error if state != states.SUCCEEDED else None), _dumps(note),
        retry_in_s or 0.0,
    )  # fmt: skip
    if row is None:
        return None
    return Settled(
        job_id=row["id"],
        state=row["state"],
        batch_id=row["batch_id"],
        webhook_url=row["webhook_url"],
    )


async def note_progress(
    conn: Conn, *, job_id: str, attempt: int, progress: dict[str, Any]
) -> None:
    await conn.execute(
        "WITH u AS (UPDATE jobs SET progress = $3::jsonb WHERE id = $1"
        "  AND attempt = $2 AND state = 'running' RETURNING id)"
        " INSERT INTO job_events (job_id, kind, data)"
        " SELECT id, 'progress', $3::jsonb FROM u",
        job_id, attempt, _dumps(progress),
    )  # fmt: skip


async def job_state(conn: Conn, job_id: str) -> tuple[str, int] | None:
    row = await conn.fetchrow("SELECT state, attempt FROM jobs WHERE id = $1", job_id)
    return (row["state"], row["attempt"]) if row else None
