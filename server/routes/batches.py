"""/v1/batches: OpenAI's Batch API on local models."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from auth.authenticate import client_ip
from auth.context import Caller
from auth.policy import Scoped
from auth.scopes import INFERENCE, READ
from openai_compat.lists import page
from server.deps import CatalogDep, PoolDep, SettingsDep
from server.jobs import batches

router = APIRouter(prefix="/v1", tags=["batches"])

Writer = Annotated[Caller, Depends(Scoped(INFERENCE))]
Reader = Annotated[Caller, Depends(Scoped(INFERENCE, READ))]


@router.post("/batches")
async def create_batch(
    body: batches.BatchCreate,
    caller: Writer,
    pool: PoolDep,
    settings: SettingsDep,
    catalog: CatalogDep,
) -> dict:
    """Run every line of an uploaded JSONL file, at batch priority."""
    return await batches.create(
        pool=pool, settings=settings, catalog=catalog, caller=caller, body=body
    )


@router.get("/batches")
async def list_batches(
    caller: Reader,
    pool: PoolDep,
    after: Annotated[str | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> dict:
    """The caller's batches, newest first."""
    data, more = await batches.list_batches(
        pool, tenant=caller.tenant, limit=limit, after=after
    )
    return page(data, has_more=more)


@router.get("/batches/{batch_id}")
async def get_batch(batch_id: str, caller: Reader, pool: PoolDep) -> dict:
    """Status, request_counts and, once done, the output and error files."""
    return await batches.get(pool, tenant=caller.tenant, batch_id=batch_id)


@router.post("/batches/{batch_id}/cancel")
async def cancel_batch(
    batch_id: str,
    caller: Writer,
    pool: PoolDep,
    settings: SettingsDep,
    request: Request,
) -> dict:
    """Queued lines never run; the batch ends cancelled with partial output."""
    return await batches.cancel(
        pool=pool, settings=settings, caller=caller, batch_id=batch_id,
        client_ip=client_ip(request),
    )  # fmt: skip
