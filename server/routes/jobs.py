"""/v1/jobs: durable asynchronous inference."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated

import anyio
from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse

from auth.authenticate import client_ip
from auth.context import Caller
from auth.policy import Scoped
from auth.scopes import INFERENCE, READ
from openai_compat.lists import page
from server.deps import CatalogDep, DispatcherDep, PoolDep, SettingsDep
from server.errors import InvalidRequest, NotFound
from server.jobs import public, service, states, store

router = APIRouter(prefix="/v1", tags=["jobs"])

Submitter = Annotated[Caller, Depends(Scoped(INFERENCE))]
Reader = Annotated[Caller, Depends(Scoped(INFERENCE, READ))]

_POLL_S = 0.25
_KEEPALIVE_S = 15.0


async def _job(pool, caller: Caller, job_id: str) -> dict:
    job = await store.get_job(pool, tenant=caller.tenant, job_id=job_id)
    if job is None:
        raise NotFound(f"No job {job_id!r}; list yours with GET /v1/jobs.")
    return job


@router.post("/jobs", status_code=202)
async def create_job(
    body: service.JobCreate,
    caller: Submitter,
    pool: PoolDep,
    settings: SettingsDep,
    catalog: CatalogDep,
    idempotency_key: Annotated[str | None, Header()] = None,
):
    """Accept an inference request as a job; 202 with its id at once."""
    if idempotency_key and not body.idempotency_key:
        body = body.model_copy(update={"idempotency_key": idempotency_key})
    job, created = await service.submit(
        pool=pool, settings=settings, catalog=catalog, caller=caller, body=body
    )
    position = await store.queue_position(pool, job)
    return JSONResponse(
        public.job(job, position=position),
        status_code=202 if created else 200,
        headers={"Location": f"/v1/jobs/{job['id']}"},
    )


@router.get("/jobs")
async def list_jobs(
    caller: Reader,
    pool: PoolDep,
    state: Annotated[str | None, Query()] = None,
    type: Annotated[str | None, Query()] = None,
    model: Annotated[str | None, Query()] = None,
    created_after: Annotated[datetime | None, Query()] = None,
    created_before: Annotated[datetime | None, Query()] = None,
    batch_id: Annotated[str | None, Query()] = None,
    after: Annotated[str | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> dict:
    """The caller's jobs, newest first; ``?state=failed`` is the dead letters."""
    if state is not None and state not in states.STATES:
        raise InvalidRequest(
            f"Unknown state {state!r}; use one of {', '.join(states.STATES)}.",
            param="state",
        )
    endpoint = None
    if type is not None:
        by_type = {v: k for k, v in states.ENDPOINT_TYPES.items()}
        if type not in by_type:
            raise InvalidRequest(
                f"Unknown type {type!r}; use one of {', '.join(by_type)}.",
                param="type",
            )
        endpoint = by_type[type]
    rows, more = await store.list_jobs(
        pool,
        store.JobFilter(
            tenant=caller.tenant, state=state, endpoint=endpoint, model=model,
            created_after=created_after, created_before=created_before,
            batch_id=batch_id, after=after, limit=limit,
        ),
    )  # fmt: skip
    data = [public.job(row, full=False) for row in rows]
    return page(data, has_more=more)


@router.get("/jobs/{job_id}")
async def get_job(job_id: str, caller: Reader, pool: PoolDep) -> dict:
    """State, timestamps, attempts, queue position, progress, result or error."""
    job = await _job(pool, caller, job_id)
    return public.job(job, position=await store.queue_position(pool, job))


def _sse(event: dict) -> bytes:
    data = {k: v for k, v in event.items() if k not in ("id", "kind")}
    text = json.dumps(data, separators=(",", ":"))
    return f"id: {event['id']}\nevent: {event['kind']}\ndata: {text}\n\n".encode()


async def _follow(pool, job_id: str, after: int) -> AsyncIterator[bytes]:
    quiet = 0.0
    while True:
        events = await store.events_after(pool, job_id=job_id, after=after)
        for event in events:
            after = event["id"]
            yield _sse(event)
            if event["kind"] == "state" and event["state"] in states.FINISHED:
                return
        if events:
            quiet = 0.0
            continue
        if quiet >= _KEEPALIVE_S:
            quiet = 0.0
            yield b": keep-alive\n\n"
        await anyio.sleep(_POLL_S)
        quiet += _POLL_S


@router.get("/jobs/{job_id}/events")
async def job_events(
    job_id: str,
    caller: Reader,
    pool: PoolDep,
    last_event_id: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    """Server-sent events of the job's states and progress, in order, ending
    with its final state. Events carry ids: reconnect with Last-Event-ID to
    resume after the last one seen (the log is in the database)."""
    await _job(pool, caller, job_id)
    try:
        after = int(last_event_id or 0)
    except ValueError:
        raise InvalidRequest(
            f"Last-Event-ID {last_event_id!r} is not an event id; send the "
            "id of the last event received, or omit it.",
            param="Last-Event-ID",
        ) from None
    return StreamingResponse(
        _follow(pool, job_id, after),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.post("/jobs/{job_id}/cancel")
async def cancel_job(
    job_id: str,
    caller: Submitter,
    pool: PoolDep,
    dispatcher: DispatcherDep,
    request: Request,
) -> dict:
    """A queued job never runs; a running one stops and frees its worker."""
    job = await service.cancel(
        pool=pool, redis=dispatcher.redis, namespace=dispatcher.namespace,
        caller=caller, job_id=job_id, client_ip=client_ip(request),
    )  # fmt: skip
    return public.job(job)


@router.post("/jobs/{job_id}/retry")
async def retry_job(
    job_id: str, caller: Submitter, pool: PoolDep, settings: SettingsDep
) -> dict:
    """Run a failed job again, with a fresh budget of attempts."""
    job = await service.retry(
        pool=pool, settings=settings, caller=caller, job_id=job_id
    )
    return public.job(job, position=await store.queue_position(pool, job))
