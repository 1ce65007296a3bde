"""GET /healthz (the process is alive) and /readyz (it can serve)."""

from __future__ import annotations

import anyio
from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from auth.policy import Public
from server.deps import CatalogDep, DispatcherDep, PoolDep

router = APIRouter(tags=["health"], dependencies=[Depends(Public())])

_CHECK_TIMEOUT_S = 3


@router.get("/healthz")
async def healthz() -> dict:
    """Liveness: answers while the process runs."""
    return {"status": "ok"}


async def _check_broker(dispatcher) -> str | None:
    try:
        with anyio.fail_after(_CHECK_TIMEOUT_S):
            await dispatcher.redis.ping()
            await dispatcher.broker_ping()
    except Exception as exc:
        return f"broker or Redis unreachable: {exc or type(exc).__name__}"
    return None


async def _check_database(pool) -> str | None:
    if pool is None:
        return "database not connected"
    try:
        with anyio.fail_after(_CHECK_TIMEOUT_S):
            await pool.fetchval("SELECT 1")
    except Exception as exc:
        return f"database unreachable: {exc or type(exc).__name__}"
    return None


@router.get("/readyz")
async def readyz(catalog: CatalogDep, dispatcher: DispatcherDep, pool: PoolDep):
    """Readiness: broker, database and a live worker for every enabled model."""
    checks: dict[str, str] = {}
    problems = []

    for name, problem in (
        ("broker", await _check_broker(dispatcher)),
        ("database", await _check_database(pool)),
    ):
        checks[name] = problem or "ok"
        if problem:
            problems.append(problem)

    for spec in catalog:
        if spec.workers == 0:
            continue
        try:
            live = await dispatcher.live_workers(spec.name)
        except Exception:
            live = 0
        checks[f"model:{spec.name}"] = f"{live} worker(s)" if live else "no worker"
        if not live:
            problems.append(f"no live worker for model {spec.name!r}")

    status = "ready" if not problems else "not_ready"
    body = {"status": status, "checks": checks, "problems": problems}
    return JSONResponse(body, status_code=200 if not problems else 503)
