"""GET /metrics: Prometheus text for every process of this install."""

from __future__ import annotations

import anyio
from fastapi import APIRouter, Depends, Response
from prometheus_client import CONTENT_TYPE_LATEST

from auth.policy import Public
from server.deps import CatalogDep, DispatcherDep, PoolDep
from server.metrics_scrape import render, sample_system

# Public like /healthz, so Prometheus needs no key; no label holds a tenant,
# a key or client text. Keep the port off networks that should not see load.
router = APIRouter(tags=["health"], dependencies=[Depends(Public())])


@router.get("/metrics", include_in_schema=False)
async def metrics(
    catalog: CatalogDep, dispatcher: DispatcherDep, pool: PoolDep
) -> Response:
    """Prometheus exposition: HTTP, tasks, tokens, queues, workers, jobs."""
    sample = await sample_system(dispatcher, catalog, pool)
    # Multiprocess mode reads one file per process: keep it off the loop.
    body = await anyio.to_thread.run_sync(render, sample)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
