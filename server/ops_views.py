"""What operators see: workers from their heartbeats, queues from the broker.

Shared by the admin API, ``hearth status`` (through the API) and the
dashboard, so all three show the same numbers.
"""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import anyio

from server.dispatch import Dispatcher
from server.metrics_scrape import oldest_message_age
from workers import protocol
from workers.celery_app import celery_app
from workers.specs import ModelCatalog, ModelSpec, bundled_specs


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else value


def _split(value: str) -> list[str]:
    return [item for item in value.split(",") if item]


def _current_tasks(raw: str, now: float) -> list[dict[str, Any]]:
    try:
        tasks = json.loads(raw) if raw else []
    except ValueError:
        return []
    for task in tasks:
        task["running_s"] = round(now - float(task.pop("started_at", now)), 1)
    return tasks


async def list_workers(dispatcher: Dispatcher) -> list[dict[str, Any]]:
    """Workers with a heartbeat: identity, models, queues, state and tasks."""
    redis = dispatcher.redis
    pattern = protocol.worker_key(dispatcher.namespace, "*")
    now = time.time()
    workers = []
    async for key in redis.scan_iter(match=pattern, count=200):
        fields = {_text(k): _text(v) for k, v in (await redis.hgetall(key)).items()}
        if not fields:
            continue
        seen = float(fields.get("seen_at", 0))
        alive = now - seen < 3 * dispatcher.settings.worker_heartbeat_s
        inflight = int(fields.get("inflight", 0))
        workers.append(
            {
                "id": _text(key).split(":worker:", 1)[1],
                "host": fields.get("host"),
                "pid": int(fields.get("pid", 0)),
                "models": _split(fields.get("models", "")),
                "queues": _split(fields.get("queues", "")),
                "state": "busy" if inflight else "idle" if alive else "stale",
                "inflight": inflight,
                "current_tasks": _current_tasks(fields.get("tasks", ""), now),
                "uptime_s": round(now - float(fields.get("started_at", now)), 1),
                "last_seen_s": round(now - seen, 1),
                "alive": alive,
            }
        )
    workers.sort(key=lambda w: w["id"])
    return workers


def known_queues(namespace: str, catalog: ModelCatalog) -> dict[str, dict[str, str]]:
    """Every queue this install routes to, with its model and priority."""
    queues = {}
    for spec in catalog:
        for priority in ("interactive", "batch"):
            name = protocol.queue_name(namespace, spec.name, priority)
            queues[name] = {"model": spec.name, "priority": priority}
    queues[protocol.maintenance_queue(namespace)] = {
        "model": None,
        "priority": "maintenance",
    }
    return queues


async def list_queues(
    dispatcher: Dispatcher, catalog: ModelCatalog
) -> list[dict[str, Any]]:
    """Depth, consumers (live workers reading it) and the oldest message's age."""
    workers = [w for w in await list_workers(dispatcher) if w["alive"]]
    queues = []
    for name, about in known_queues(dispatcher.namespace, catalog).items():
        queues.append(
            {
                "name": name,
                **about,
                "depth": await dispatcher.queue_depth(name),
                "consumers": sum(name in w["queues"] for w in workers),
                "oldest_age_s": round(await oldest_message_age(dispatcher, name), 3),
            }
        )
    return queues


async def purge_queue(name: str) -> int:
    """Drop every message waiting in ``name``; how many there were."""

    def purge() -> int:
        with celery_app.connection_for_write() as conn:
            return conn.default_channel.queue_purge(name) or 0

    return await anyio.to_thread.run_sync(purge)


async def shutdown_worker(worker_id: str) -> None:
    """Ask one worker (its Celery node name) for a warm shutdown.

    A worker never replies to this command (it raises WorkerShutdown at
    once), so nothing waits for an answer.
    """

    def send() -> None:
        celery_app.control.shutdown(destination=[worker_id], reply=False)

    await anyio.to_thread.run_sync(send)


def _without_credentials(url: str) -> str:
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit(parts._replace(netloc=netloc))


def _source(spec: ModelSpec, bundled: dict[str, ModelSpec]) -> dict[str, Any]:
    """Where the model comes from, and which configuration named it."""
    origin = "bundled" if bundled.get(spec.name) == spec else "models file"
    if spec.backend == "remote":
        assert spec.base_url is not None
        return {
            "origin": origin,
            "base_url": _without_credentials(spec.base_url),
            "remote_model": spec.remote_model,
        }
    return {"origin": origin, "path": str(spec.path), "gguf_file": spec.gguf_file}


async def describe_models(
    dispatcher: Dispatcher, catalog: ModelCatalog
) -> list[dict[str, Any]]:
    """The registry: each model's kind, backend, source, limits, queues and
    the live workers serving it."""
    workers = [w for w in await list_workers(dispatcher) if w["alive"]]
    bundled = {spec.name: spec for spec in bundled_specs()}
    return [
        {
            "name": spec.name,
            "aliases": list(spec.aliases),
            "kind": spec.kind,
            "backend": spec.backend,
            "source": _source(spec, bundled),
            "device": spec.device,
            "context_length": spec.context_length,
            "max_tokens": spec.max_tokens,
            "workers": spec.workers,
            "max_workers": spec.max_workers,
            "max_batch_size": spec.max_batch_size,
            "queues": protocol.model_queues(dispatcher.namespace, spec.name),
            "live_workers": [w["id"] for w in workers if spec.name in w["models"]],
        }
        for spec in catalog
    ]
