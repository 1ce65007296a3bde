"""Operator views: the workers that serve which models, and their load."""

from __future__ import annotations

import time

from fastapi import APIRouter, Depends

from auth.policy import Scoped
from auth.scopes import ADMIN
from server.deps import DispatcherDep
from workers import protocol

router = APIRouter(
    prefix="/admin", tags=["admin"], dependencies=[Depends(Scoped(ADMIN))]
)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


@router.get("/workers")
async def list_workers(dispatcher: DispatcherDep) -> dict:
    """Workers with a recent heartbeat: host, pid, models, queues, load."""
    redis = dispatcher.redis
    pattern = protocol.worker_key(dispatcher.namespace, "*")
    now = time.time()
    workers = []
    async for key in redis.scan_iter(match=pattern, count=200):
        fields = {_text(k): _text(v) for k, v in (await redis.hgetall(key)).items()}
        if not fields:
            continue
        seen = float(fields.get("seen_at", 0))
        workers.append(
            {
                "id": _text(key).split(":worker:", 1)[1],
                "host": fields.get("host"),
                "pid": int(fields.get("pid", 0)),
                "models": [m for m in fields.get("models", "").split(",") if m],
                "queues": [q for q in fields.get("queues", "").split(",") if q],
                "inflight": int(fields.get("inflight", 0)),
                "uptime_s": round(now - float(fields.get("started_at", now)), 1),
                "last_seen_s": round(now - seen, 1),
                "alive": now - seen < 3 * dispatcher.settings.worker_heartbeat_s,
            }
        )
    workers.sort(key=lambda w: w["id"])
    return {"object": "list", "data": workers}
