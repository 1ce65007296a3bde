"""``hearth up`` follows model reloads: workers start for added models and
stop, once idle, for removed ones.

The API bumps ``<ns>:models:generation`` in Redis when it reloads its
catalog (server.model_registry). The supervisor reads that counter from its
main loop twice a second, re-reads the models file when it moved, and
compares the two catalogs:

- an added model gets its ``workers`` processes at once;
- a removed model's workers leave the restart watch and get Celery's warm
  shutdown once their heartbeat shows no task running and the model's
  interactive queue is empty, so requests accepted before the reload are
  still answered; a busy worker is never stopped;
- a model whose workers would run differently (path, backend, limits,
  worker count...) is both: new workers start with the new spec at once,
  the old ones leave the same way once idle.

Workers started for a reload carry its generation in their names
(``<model>-g<N>-<i>``). The supervisor marks its presence under
``<ns>:supervisor`` and writes what it did under ``<ns>:models:applied``,
which the reload's answer reports.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis
import structlog

from server.autoscale import Autoscaler
from server.child_registry import ChildRegistry
from server.children import Child
from server.errors import ConfigError
from server.model_registry import diff, load_catalog, needs_new_workers
from server.settings import Settings
from server.stack import WORKER_GROUP, worker_spec, worker_threads
from workers import protocol
from workers.specs import ModelCatalog

log = structlog.get_logger(__name__)

POLL_S = 0.5
PRESENCE_TTL_S = 10


@dataclass(kw_only=True)
class _Leaving:
    child: Child
    worker_id: str
    model: str
    # A removed model's queue must drain first; a replaced one's new
    # workers read the same queue.
    removed: bool
    stopping: bool = False


class ModelReloader:
    def __init__(
        self,
        *,
        settings: Settings,
        catalog: ModelCatalog,
        registry: ChildRegistry,
        env: dict[str, str],
        autoscaler: Autoscaler,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._catalog = catalog
        self._registry = registry
        self._env = env
        self._autoscaler = autoscaler
        self._clock = clock
        self._ns = settings.namespace
        broker_url = env.get("HEARTH_BROKER_URL", "")
        redis_url = env.get("HEARTH_REDIS_URL") or broker_url
        # Short timeouts: this runs on the supervisor's watch loop.
        self._redis = redis.Redis.from_url(
            redis_url, socket_timeout=2, socket_connect_timeout=2
        )
        # The interactive queue's length; RabbitMQ's is not read here.
        self._broker = (
            redis.Redis.from_url(broker_url, socket_timeout=2, socket_connect_timeout=2)
            if broker_url.startswith(("redis", "valkey"))
            else None
        )
        self._leaving: list[_Leaving] = []
        self._next_at = 0.0
        self._failing = False
        # Reloads made before this start are already in the file just read.
        self._generation = self._read(self._current_generation, 0)
        self._tag = self._generation

    def _read(self, call: Callable, default):
        try:
            value = call()
        except redis.RedisError as exc:
            if not self._failing:
                log.warning("cannot follow model reloads", error=str(exc))
            self._failing = True
            return default
        self._failing = False
        return value

    def _current_generation(self) -> int:
        return int(self._redis.get(protocol.models_generation_key(self._ns)) or 0)

    def tick(self) -> None:
        """Called from the supervisor's loop (the main thread: it spawns)."""
        self._reap()
        now = self._clock()
        if now < self._next_at:
            return
        self._next_at = now + POLL_S
        self._read(self._announce, None)
        generation = self._read(self._current_generation, None)
        if generation is not None and generation != self._generation:
            self._apply(generation)
        self._stop_idle()

    def _announce(self) -> None:
        presence = json.dumps({"pid": os.getpid()})
        key = protocol.supervisor_key(self._ns)
        self._redis.set(key, presence, ex=PRESENCE_TTL_S)

    def _apply(self, generation: int) -> None:
        self._generation = generation
        try:
            catalog = load_catalog(self._settings)
        except ConfigError as exc:
            log.warning(
                "models reload refused", generation=generation, error=exc.message
            )
            self._report({"generation": generation, "error": exc.message})
            return

        # Names the new workers; above every earlier one even if Redis lost
        # the counter, so names are never reused while old workers leave.
        tag = self._tag = max(generation, self._tag + 1)
        change = diff(self._catalog, catalog)
        restarted = [
            name for name in change.changed
            if needs_new_workers(self._catalog.get(name), catalog.get(name))
        ]  # fmt: skip
        replaced = {name: tag for name in change.removed + restarted}
        stopping = self._retire(replaced, removed=set(change.removed))
        threads = worker_threads(self._settings, catalog)
        started = [
            self._registry.start(
                worker_spec(
                    self._settings, catalog.get(name), index, self._env, threads,
                    generation=tag,
                ),
                group=WORKER_GROUP,
            ).name
            for name in change.added + restarted
            for index in range(1, catalog.get(name).workers + 1)
        ]  # fmt: skip
        self._autoscaler.update(catalog, replaced=replaced)
        self._catalog = catalog
        log.info(
            "models reloaded",
            generation=generation,
            added=change.added,
            removed=change.removed,
            restarted=restarted,
            started=started,
            stopping=stopping,
        )
        self._report(
            {
                "generation": generation,
                "restarted": restarted,
                "started": started,
                "stopping": stopping,
            }
        )

    def _retire(self, replaced: dict[str, int], *, removed: set[str]) -> list[str]:
        """Take the workers of ``replaced`` models out of the restart watch;
        they stop in ``_stop_idle``. Their names."""
        names = []
        for child in self._registry.children(WORKER_GROUP):
            model = child.spec.labels.get("model", "")
            if model not in replaced:
                continue
            # Not the registry's any more: its exit is not a crash to restart.
            self._registry.forget(child)
            self._leaving.append(
                _Leaving(
                    child=child,
                    worker_id=child.spec.labels["worker_id"],
                    model=model,
                    removed=model in removed,
                )
            )
            names.append(child.name)
        return names

    def _report(self, report: dict) -> None:
        key = protocol.models_applied_key(self._ns)
        self._read(lambda: self._redis.set(key, json.dumps(report)), None)

    def _idle(self, leaving: _Leaving) -> bool:
        key = protocol.worker_key(self._ns, leaving.worker_id)
        # No heartbeat yet: still loading its model, consuming nothing. A
        # stale one that still counts tasks waits until its key expires.
        inflight = self._redis.hget(key, "inflight")
        if inflight is not None and int(inflight) > 0:
            return False
        if leaving.removed and self._broker is not None:
            queue = protocol.queue_name(self._ns, leaving.model)
            return self._broker.llen(queue) == 0
        return True

    def _stop_idle(self) -> None:
        for leaving in self._leaving:
            if leaving.stopping or leaving.child.poll() is not None:
                continue
            if not self._read(lambda w=leaving: self._idle(w), False):
                continue
            leaving.child.request_stop()
            leaving.stopping = True
            log.info(
                "stopping worker",
                child=leaving.child.name,
                model=leaving.model,
                reason="model removed" if leaving.removed else "model changed",
            )

    def _reap(self) -> None:
        for leaving in list(self._leaving):
            if leaving.child.poll() is not None:
                code = leaving.child.await_stop(0)
                self._leaving.remove(leaving)
                log.info("child stopped", child=leaving.child.name, exit_code=code)

    def stop(self) -> None:
        """Stop the workers still leaving (warm shutdown, with the usual
        timeout); the registry stops the rest."""
        for leaving in self._leaving:
            # A second SIGTERM would cut a warm shutdown short.
            if not leaving.stopping:
                leaving.child.request_stop()
        for leaving in self._leaving:
            code = leaving.child.await_stop()
            log.info("child stopped", child=leaving.child.name, exit_code=code)
        self._leaving.clear()
        self._read(lambda: self._redis.delete(protocol.supervisor_key(self._ns)), None)
        for client in (self._redis, self._broker):
            if client is not None:
                client.close()
