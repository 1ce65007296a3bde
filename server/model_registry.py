"""The model catalog while Hearth runs: reload it, keep replicas in step.

``POST /admin/models/reload`` makes the API that receives it re-read the
models file, swap its catalog and bump a counter in Redis
(``<ns>:models:generation``). Everyone else follows the counter: the other
API replicas read it every second and re-read the file when it moved, and
the ``hearth up`` supervisor does the same and starts or stops worker
processes (server.model_reload). A counter rather than pub/sub, because a
process that is starting, restarting or reconnecting misses a published
message but still finds a counter that moved, so every reader converges.
The supervisor writes what it did under ``<ns>:models:applied``; the
reload's answer waits a few seconds for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import asdict, dataclass
from typing import Any

import anyio
import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

from server.errors import BrokerUnavailable, ConfigError, InvalidRequest
from server.settings import Settings
from workers import protocol
from workers.specs import ModelCatalog, ModelSpec

log = structlog.get_logger(__name__)

FOLLOW_INTERVAL_S = 1.0
# How long a reload's answer waits for the supervisor to report.
SUPERVISOR_WAIT_S = 10.0
# Fields only the API reads: changing them needs no new worker process.
API_ONLY_FIELDS = frozenset({"aliases", "owned_by"})


@dataclass(frozen=True, kw_only=True)
class CatalogChange:
    added: list[str]
    removed: list[str]
    changed: list[str]
    unchanged: list[str]

    def as_dict(self) -> dict[str, list[str]]:
        return asdict(self)


def diff(old: ModelCatalog, new: ModelCatalog) -> CatalogChange:
    before = {spec.name: spec for spec in old}
    after = {spec.name: spec for spec in new}
    return CatalogChange(
        added=[name for name in after if name not in before],
        removed=[name for name in before if name not in after],
        changed=[n for n in after if n in before and after[n] != before[n]],
        unchanged=[n for n in after if n in before and after[n] == before[n]],
    )


def needs_new_workers(old: ModelSpec, new: ModelSpec) -> bool:
    """Whether running workers of ``old`` cannot serve ``new`` as it is."""
    skip = set(API_ONLY_FIELDS)
    return old.model_dump(exclude=skip) != new.model_dump(exclude=skip)


def load_catalog(settings: Settings) -> ModelCatalog:
    return ModelCatalog.load(
        models_file=settings.models_file, bundled=settings.bundled_models
    )


class CatalogReloader:
    """The API's side: reload on request, follow reloads made elsewhere.

    The catalog lives in ``state.catalog`` (read by every route through
    ``CatalogDep``); a reload replaces the object whole, so a request sees
    either the old catalog or the new one, never a mix.
    """

    def __init__(self, *, state: Any, settings: Settings, redis: aioredis.Redis):
        self._state = state
        self._settings = settings
        self._redis = redis
        self._key = protocol.models_generation_key(settings.namespace)
        self._lock = anyio.Lock()
        self._seen = 0
        self.stopping = asyncio.Event()

    async def follow(self) -> None:
        """Run until cancelled: pick up reloads made through other replicas."""
        try:
            self._seen = await self._generation()
        except RedisError as exc:
            log.warning("cannot read the models generation", error=str(exc))
        while not self.stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), FOLLOW_INTERVAL_S)
                return
            try:
                generation = await self._generation()
            except RedisError:
                continue  # /readyz reports the broker; retry next time
            if generation != self._seen:
                await self._follow_to(generation)

    async def _generation(self) -> int:
        return int(await self._redis.get(self._key) or 0)

    async def _follow_to(self, generation: int) -> None:
        async with self._lock:
            if generation == self._seen:
                return
            self._seen = generation
            try:
                catalog = await anyio.to_thread.run_sync(load_catalog, self._settings)
            except ConfigError as exc:
                log.warning("models reload refused", error=exc.message)
                return
            change = diff(self._state.catalog, catalog)
            self._state.catalog = catalog
        log.info("models reloaded", generation=generation, **change.as_dict())

    async def reload(self) -> dict[str, Any]:
        """Re-read the models file here, tell the others, report the change."""
        async with self._lock:
            try:
                catalog = await anyio.to_thread.run_sync(load_catalog, self._settings)
            except ConfigError as exc:
                raise InvalidRequest(
                    f"{exc.message}. Nothing was changed: fix the file, then "
                    "reload again."
                ) from exc
            try:
                generation = await self._redis.incr(self._key)
            except RedisError as exc:
                raise BrokerUnavailable(
                    f"Redis is unreachable ({exc}); the models were not reloaded."
                ) from exc
            change = diff(self._state.catalog, catalog)
            self._state.catalog = catalog
            self._seen = generation
        log.info("models reloaded", generation=generation, **change.as_dict())
        models_file = self._settings.models_file
        return {
            "object": "models.reload",
            "generation": generation,
            "models_file": str(models_file) if models_file else None,
            **change.as_dict(),
            "workers": await self._supervisor_report(generation),
        }

    async def _supervisor_report(self, generation: int) -> dict[str, Any] | None:
        """What ``hearth up`` did about the reload; None without a supervisor
        (then starting and stopping workers is the operator's job)."""
        namespace = self._settings.namespace
        try:
            if not await self._redis.exists(protocol.supervisor_key(namespace)):
                return None
            deadline = time.monotonic() + SUPERVISOR_WAIT_S
            while time.monotonic() < deadline:
                raw = await self._redis.get(protocol.models_applied_key(namespace))
                report = json.loads(raw) if raw else {}
                if report.get("generation", 0) >= generation:
                    return {"managed_by": "hearth up", **report}
                await anyio.sleep(0.1)
        except RedisError as exc:
            log.warning("cannot read the supervisor's report", error=str(exc))
        return {"managed_by": "hearth up", "generation": generation, "pending": True}


def start_following(
    state: Any, settings: Settings, redis: aioredis.Redis
) -> asyncio.Task:
    """Install ``state.model_reloader`` and follow reloads in the background."""
    state.model_reloader = CatalogReloader(state=state, settings=settings, redis=redis)
    return asyncio.create_task(state.model_reloader.follow(), name="models-follow")


async def stop_following(state: Any, task: asyncio.Task) -> None:
    # A flag rather than Task.cancel(): a cancel that lands as redis-py's
    # read timeout fires can come out as a TimeoutError, which redis-py
    # retries, and the loop would go on.
    state.model_reloader.stopping.set()
    await task
