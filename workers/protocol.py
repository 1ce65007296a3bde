"""What the API and the workers agree on: queue names, Redis keys, events.

A request travels as a Celery task carrying a JSON payload. Its results come
back as events on a Redis stream named after the request id, read by the API
with XREAD; streams (unlike pub/sub) keep events written before the reader
arrives. The API asks a worker to stop by setting the request's cancel key.

Event shapes (the ``e`` field of each stream entry, JSON):

    {"type": "delta", "index": 0, "text": "..."}
    {"type": "choice_end", "index": 0, "finish_reason": "stop"|"length"}
    {"type": "embeddings", "dim": 384, "b64": "<float32 little-endian>"}
    {"type": "done", "usage": {"prompt_tokens": n, "completion_tokens": m}}
    {"type": "error", "error": {"code": ..., "message": ..., "param": ...}}

Every request ends with exactly one ``done`` or ``error``.
"""

from __future__ import annotations

import json
from typing import Any, Literal

Priority = Literal["interactive", "batch"]

GENERATE_TASK = "hearth.generate"
EMBED_TASK = "hearth.embed"
PRUNE_TASK = "hearth.maintenance.prune_workers"
# Durable jobs (server/jobs): run one attempt; sweep outbox, retries, lost
# workers and batches.
JOB_TASK = "hearth.job.run"
JOB_SWEEP_TASK = "hearth.maintenance.sweep_jobs"

EVENTS_TTL_S = 300
CANCEL_TTL_S = 600


def queue_name(namespace: str, model: str, priority: Priority = "interactive") -> str:
    base = f"{namespace}.model.{model}"
    return base if priority == "interactive" else f"{base}.{priority}"


def model_queues(namespace: str, model: str) -> list[str]:
    """Queues a worker for ``model`` consumes, most urgent first."""
    return [queue_name(namespace, model, p) for p in ("interactive", "batch")]


def maintenance_queue(namespace: str) -> str:
    return f"{namespace}.maintenance"


def events_key(namespace: str, request_id: str) -> str:
    return f"{namespace}:events:{request_id}"


def cancel_key(namespace: str, request_id: str) -> str:
    return f"{namespace}:cancel:{request_id}"


def live_key(namespace: str, model: str) -> str:
    """Sorted set of worker ids serving ``model``, scored by last heartbeat."""
    return f"{namespace}:live:{model}"


def worker_key(namespace: str, worker_id: str) -> str:
    return f"{namespace}:worker:{worker_id}"


def models_generation_key(namespace: str) -> str:
    """A counter the API bumps on each model reload; the supervisor and the
    other API replicas follow it (server.model_registry)."""
    return f"{namespace}:models:generation"


def models_applied_key(namespace: str) -> str:
    """What the supervisor did for the latest reload it saw (JSON)."""
    return f"{namespace}:models:applied"


def supervisor_key(namespace: str) -> str:
    """Present (with a short expiry) while a ``hearth up`` supervisor runs."""
    return f"{namespace}:supervisor"


def encode_event(event: dict[str, Any]) -> dict[str, str]:
    return {"e": json.dumps(event, separators=(",", ":"))}


def decode_event(fields: dict[bytes | str, bytes | str]) -> dict[str, Any]:
    raw = fields.get(b"e", fields.get("e"))
    if isinstance(raw, bytes):
        raw = raw.decode()
    return json.loads(raw or "{}")
