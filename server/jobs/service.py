"""The API's side of jobs: submit (row first, then message), cancel, retry."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

import anyio
import asyncpg
import redis.asyncio as aioredis
import structlog
from pydantic import BaseModel, ConfigDict, Field

from auth import audit
from auth.context import Caller
from server.errors import BrokerUnavailable, Conflict, JobBacklogFull, NotFound
from server.jobs import outbox, states, store, webhooks
from server.jobs.requests import build_payload
from server.settings import Settings
from workers import protocol
from workers.specs import ModelCatalog

log = structlog.get_logger(__name__)

JOB_CANCEL = "job.cancel"
_SEND_BUDGET_S = 3.0


class JobCreate(BaseModel):
    """POST /v1/jobs."""

    model_config = ConfigDict(extra="forbid")

    endpoint: str | None = Field(
        None,
        description="/v1/chat/completions, /v1/completions or /v1/embeddings;"
        " guessed from the request when omitted.",
    )
    request: dict[str, Any]
    priority: str | int = "default"
    idempotency_key: str | None = Field(None, min_length=1, max_length=255)
    deadline: datetime | None = None
    webhook_url: str | None = Field(None, max_length=2048)
    max_attempts: int | None = Field(None, ge=1, le=20)

    def resolved_endpoint(self) -> str:
        if self.endpoint:
            return self.endpoint
        for field, endpoint in (
            ("messages", states.CHAT),
            ("input", states.EMBEDDING),
            ("prompt", states.COMPLETION),
        ):
            if field in self.request:
                return endpoint
        return states.CHAT


def request_sha256(endpoint: str, request: dict[str, Any]) -> str:
    text = json.dumps([endpoint, request], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


async def check_backlog(pool: asyncpg.Pool, settings: Settings, adding: int) -> None:
    waiting = await store.backlog(pool)
    if waiting + adding > settings.job_backlog_max:
        raise JobBacklogFull(
            f"The job backlog is full ({waiting} queued, limit "
            f"{settings.job_backlog_max}); retry after the delay in Retry-After.",
            retry_after=30,
        )


async def send_now(pool: asyncpg.Pool, rows: list[dict[str, Any]]) -> None:
    """Send messages for committed rows and mark them sent. A broker that is
    down leaves them in the outbox, where the sweep finds them."""
    messages = [outbox.pending(row) for row in rows]
    sent: list[str] = []
    try:
        # kombu can spend tens of seconds reconnecting to a broker that is
        # down; the job is saved, so answer instead of waiting on it. A send
        # that completes later only duplicates a message, which the claim
        # ignores.
        with anyio.move_on_after(_SEND_BUDGET_S):
            sent = await anyio.to_thread.run_sync(
                outbox.send, messages, abandon_on_cancel=True
            )
    except BrokerUnavailable as exc:
        log.warning("jobs left in the outbox", jobs=len(rows), error=exc.message)
        return
    if len(sent) < len(rows):
        log.warning("jobs left in the outbox", jobs=len(rows) - len(sent))
    await store.mark_sent(pool, sent)


async def submit(
    *,
    pool: asyncpg.Pool,
    settings: Settings,
    catalog: ModelCatalog,
    caller: Caller,
    body: JobCreate,
) -> tuple[dict[str, Any], bool]:
    """Save the job and send its message; (job, False) for a known key."""
    endpoint = body.resolved_endpoint()
    spec, payload = build_payload(endpoint=endpoint, body=body.request, catalog=catalog)
    priority = states.parse_priority(body.priority)
    webhook = (
        webhooks.check_url(body.webhook_url, settings) if body.webhook_url else None
    )
    digest = request_sha256(endpoint, body.request)
    await check_backlog(pool, settings, 1)

    new = store.NewJob(
        tenant=caller.tenant,
        key_id=caller.key_id,
        endpoint=endpoint,
        model=spec.name,
        request=body.request,
        payload=payload,
        priority=priority,
        queue=protocol.queue_name(
            settings.namespace, spec.name, states.queue_class(priority)
        ),
        max_attempts=body.max_attempts or settings.job_max_attempts,
        idempotency_key=body.idempotency_key,
        request_sha256=digest,
        deadline=body.deadline,
        webhook_url=webhook,
    )
    job, created = await store.insert_job(pool, new)
    if not created:
        if job["request_sha256"] != digest:
            raise Conflict(
                f"Idempotency key {body.idempotency_key!r} was used for a "
                f"different request (job {job['id']}); use a new key.",
                param="idempotency_key",
            )
        return job, False

    await send_now(pool, [job])
    log.info("job accepted", job_id=job["id"], model=spec.name, priority=priority)
    return job, True


async def _found(job: dict | None, job_id: str) -> dict:
    if job is None:
        raise NotFound(f"No job {job_id!r}; list yours with GET /v1/jobs.")
    return job


async def cancel(
    *,
    pool: asyncpg.Pool,
    redis: aioredis.Redis,
    namespace: str,
    caller: Caller,
    job_id: str,
    client_ip: str | None,
) -> dict[str, Any]:
    """Cancel, audit, and tell a running worker to stop."""
    async with pool.acquire() as conn, conn.transaction():
        job, before = await store.cancel_job(conn, tenant=caller.tenant, job_id=job_id)
        job = await _found(job, job_id)
        if before not in states.ACTIVE:
            raise Conflict(
                f"Job {job_id!r} is already {before}; only queued or running "
                "jobs can be cancelled."
            )
        await audit.record(
            conn,
            actor=f"key:{caller.key_id}" if caller.key_id else caller.tenant,
            actor_key_id=caller.key_id,
            tenant=caller.tenant,
            action=JOB_CANCEL,
            target=job_id,
            client_ip=client_ip,
            outcome="success",
            detail={"was": before},
        )
    if before == states.RUNNING:
        # The generation checks this key between steps, and stops.
        await redis.set(
            protocol.cancel_key(namespace, job_id), 1, ex=protocol.CANCEL_TTL_S
        )
    log.info("job cancelled", job_id=job_id, was=before)
    return job


async def retry(
    *, pool: asyncpg.Pool, settings: Settings, caller: Caller, job_id: str
) -> dict[str, Any]:
    async with pool.acquire() as conn, conn.transaction():
        job, before = await store.retry_job(
            conn,
            tenant=caller.tenant,
            job_id=job_id,
            more_attempts=settings.job_max_attempts,
        )
        job = await _found(job, job_id)
        if before != states.FAILED:
            raise Conflict(
                f"Job {job_id!r} is {before}; only a failed job can be retried."
            )
    await send_now(pool, [job])
    log.info("job retried", job_id=job_id, attempt=job["attempt"] + 1)
    return job
