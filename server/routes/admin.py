"""Operator views and actions: workers, queues and the model registry.

Reading is for any admin key. Purging a queue or stopping a worker affects
every tenant, so those need the install's operator: an admin key of tenant
``local``, or the open (no keys) mode; both actions are audited. Reloading
the models is open to any admin key (audited too): it only applies what the
operator wrote in the models file.
"""

from __future__ import annotations

from typing import Annotated

import structlog
from fastapi import APIRouter, Depends, Request

from auth import audit
from auth.authenticate import client_ip
from auth.context import LOCAL_TENANT, Caller, current_account
from auth.policy import Scoped
from auth.scopes import ADMIN
from server import ops_views
from server.deps import CatalogDep, DispatcherDep, ModelReloaderDep, PoolDep
from server.errors import NotFound, PermissionDenied
from server.request_stats import request_stats

log = structlog.get_logger(__name__)

router = APIRouter(
    prefix="/admin", tags=["admin"], dependencies=[Depends(Scoped(ADMIN))]
)


def _caller() -> Caller:
    # The router's Scoped(ADMIN) has already authenticated this request.
    account = current_account()
    if account is None:
        raise RuntimeError("auth.middleware.Accounting is not installed")
    return account.caller


AdminCaller = Annotated[Caller, Depends(_caller)]

QUEUE_PURGE = "queue.purge"
WORKER_SHUTDOWN = "worker.shutdown"
MODELS_RELOAD = "models.reload"


def _operator(caller: Caller, action: str) -> None:
    if caller.via == "open" or caller.tenant == LOCAL_TENANT:
        return
    raise PermissionDenied(
        f"{action} affects every tenant; use an admin key of tenant "
        f"{LOCAL_TENANT!r} (`hearth keys create --tenant {LOCAL_TENANT} "
        "--scopes admin`)."
    )


async def _audit(pool, request: Request, caller: Caller, **fields) -> None:
    await audit.record(
        pool,
        actor=f"key:{caller.key_id}" if caller.key_id else caller.tenant,
        actor_key_id=caller.key_id,
        tenant=caller.tenant,
        client_ip=client_ip(request),
        outcome="success",
        **fields,
    )


@router.get("/workers")
async def list_workers(dispatcher: DispatcherDep) -> dict:
    """Workers with a heartbeat: host, pid, models, queues, state, tasks."""
    return {"object": "list", "data": await ops_views.list_workers(dispatcher)}


@router.get("/queues")
async def list_queues(dispatcher: DispatcherDep, catalog: CatalogDep) -> dict:
    """Every model queue: depth, consumers and the oldest message's age."""
    data = await ops_views.list_queues(dispatcher, catalog)
    return {"object": "list", "data": data}


@router.get("/models")
async def list_models(dispatcher: DispatcherDep, catalog: CatalogDep) -> dict:
    """The model registry: kind, backend, source, limits, queues, live workers."""
    data = await ops_views.describe_models(dispatcher, catalog)
    return {"object": "list", "data": data}


@router.post("/models/reload")
async def reload_models(
    request: Request, caller: AdminCaller, reloader: ModelReloaderDep, pool: PoolDep
) -> dict:
    """Re-read the models file: added models get workers, removed ones stop.

    Under ``hearth up`` the supervisor starts workers for added models and
    stops those of removed models once they are idle; the answer says what
    it did (``workers``), or is null where no supervisor manages workers.
    """
    report = await reloader.reload()
    await _audit(
        pool, request, caller, action=MODELS_RELOAD, target="models",
        detail={k: report[k] for k in ("generation", "added", "removed", "changed")},
    )  # fmt: skip
    return report


@router.get("/requests")
async def recent_requests(caller: AdminCaller, pool: PoolDep) -> dict:
    """The last hour's throughput by minute, and the newest requests.

    The operator (open mode) sees every tenant; a tenant's admin its own.
    """
    tenant = None if caller.via == "open" else caller.tenant
    return {"object": "request_stats", **await request_stats(pool, tenant=tenant)}


@router.post("/queues/{name}/purge")
async def purge_queue(
    name: str,
    request: Request,
    caller: AdminCaller,
    dispatcher: DispatcherDep,
    catalog: CatalogDep,
    pool: PoolDep,
) -> dict:
    """Drop every message waiting in one queue (running tasks carry on)."""
    known = ops_views.known_queues(dispatcher.namespace, catalog)
    if name not in known:
        raise NotFound(
            f"No queue {name!r}; list them at GET /admin/queues.", param="name"
        )
    _operator(caller, "Purging a queue")
    purged = await ops_views.purge_queue(name)
    await _audit(
        pool, request, caller, action=QUEUE_PURGE, target=name,
        detail={"purged": purged},
    )  # fmt: skip
    log.warning("queue purged", queue=name, purged=purged)
    return {"object": "queue.purge", "queue": name, "purged": purged}


@router.post("/workers/{worker_id}/shutdown")
async def shutdown_worker(
    worker_id: str,
    request: Request,
    caller: AdminCaller,
    dispatcher: DispatcherDep,
    pool: PoolDep,
) -> dict:
    """Warm shutdown of one worker: it finishes its tasks, then exits.

    Under ``hearth up`` the supervisor then starts a fresh one, which makes
    this a way to recycle a worker.
    """
    workers = {w["id"] for w in await ops_views.list_workers(dispatcher)}
    if worker_id not in workers:
        raise NotFound(
            f"No worker {worker_id!r}; list them at GET /admin/workers.",
            param="worker_id",
        )
    _operator(caller, "Stopping a worker")
    await ops_views.shutdown_worker(worker_id)
    await _audit(pool, request, caller, action=WORKER_SHUTDOWN, target=worker_id)
    log.warning("worker shutdown requested", worker_id=worker_id)
    return {"object": "worker.shutdown", "worker": worker_id, "sent": True}
