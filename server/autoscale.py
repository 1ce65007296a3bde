"""``hearth up`` scales each model's worker processes with its queue.

A model with ``max_workers`` above ``workers`` gets extra worker processes
when its queues back up: more messages waiting per worker than
``autoscale_queue_per_worker``, or an oldest message older than
``autoscale_wait_s``. Up is fast (as many workers as the backlog asks for,
at once); down is slow (one added worker at a time, newest first, after it
and the queues were idle for ``autoscale_idle_s``). A worker is stopped
only while its heartbeat says it runs nothing, and with Celery's warm
shutdown, so a task that slips in at the last moment still finishes.
Every decision is logged with its reason. It reads queue lengths from a
Redis broker; with RabbitMQ it stays off and says so.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis
import structlog

from server.child_registry import ChildRegistry
from server.children import Child
from server.settings import Settings
from server.stack import WORKER_GROUP, worker_hostname, worker_spec, worker_threads
from workers import protocol
from workers.specs import ModelCatalog, ModelSpec
from workers.task_metrics import message_age

log = structlog.get_logger(__name__)


@dataclass(kw_only=True)
class _Added:
    child: Child
    worker_id: str
    idle_since: float | None = None


class Autoscaler:
    def __init__(
        self,
        *,
        settings: Settings,
        catalog: ModelCatalog,
        registry: ChildRegistry,
        env: dict[str, str],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._registry = registry
        self._env = env
        self._clock = clock
        self._added: dict[str, list[_Added]] = {}
        self._serial: dict[str, int] = {}
        # Model -> the reload generation its base workers were started for
        # (0: at start), which names the workers added for it.
        self._generations: dict[str, int] = {}
        self._draining: list[Child] = []
        self._next_at = 0.0
        self._broker: redis.Redis | None = None
        self._streams: redis.Redis | None = None
        self._follow(catalog)

    def _follow(self, catalog: ModelCatalog) -> None:
        self._threads = worker_threads(self._settings, catalog)
        self._specs = [
            spec for spec in catalog
            if spec.max_workers is not None and spec.max_workers > spec.workers
        ]  # fmt: skip
        for spec in self._specs:
            self._added.setdefault(spec.name, [])
            self._serial.setdefault(spec.name, 0)

        broker_url = self._env.get("HEARTH_BROKER_URL", "")
        if self._specs and not broker_url.startswith(("redis", "valkey")):
            log.warning(
                "autoscaling off: it reads queue lengths from a Redis broker",
                models=[s.name for s in self._specs],
            )
            self._specs = []
        if self._specs and self._broker is None:
            self._broker = redis.Redis.from_url(broker_url)
            self._streams = redis.Redis.from_url(
                self._env.get("HEARTH_REDIS_URL") or broker_url
            )
        if self._specs:
            log.info(
                "autoscaling on",
                models={s.name: [s.workers, s.max_workers] for s in self._specs},
            )

    def update(self, catalog: ModelCatalog, *, replaced: dict[str, int]) -> None:
        """Follow a reloaded catalog. ``replaced`` maps each model whose
        workers the caller has taken away (removed, or restarted with a new
        spec) to the new reload generation; the workers added for those
        models are no longer this scaler's to stop."""
        for name, generation in replaced.items():
            self._added.pop(name, None)
            self._serial.pop(name, None)
            self._generations[name] = generation
        self._follow(catalog)

    def tick(self) -> None:
        """Called from the supervisor's loop (the main thread: it spawns)."""
        self._reap()
        now = self._clock()
        if not self._specs or now < self._next_at:
            return
        self._next_at = now + self._settings.autoscale_interval_s
        for spec in self._specs:
            try:
                self._scale(spec, now)
            except redis.RedisError as exc:
                log.warning("autoscale check failed", model=spec.name, error=str(exc))

    def _backlog(self, spec: ModelSpec) -> tuple[int, float]:
        """Messages waiting for ``spec`` and the oldest one's wait, seconds."""
        assert self._broker is not None
        depth, oldest = 0, 0.0
        for queue in protocol.model_queues(self._settings.namespace, spec.name):
            depth += self._broker.llen(queue)
            # Kombu pushes on the left and pops on the right.
            oldest = max(oldest, message_age(self._broker.lindex(queue, -1)))
        return depth, oldest

    def _scale(self, spec: ModelSpec, now: float) -> None:
        depth, waited = self._backlog(spec)
        added = self._added[spec.name]
        running = spec.workers + len(added)
        per_worker = self._settings.autoscale_queue_per_worker
        assert spec.max_workers is not None

        crowded = depth > per_worker * running
        slow = depth > 0 and waited >= self._settings.autoscale_wait_s
        if (crowded or slow) and running < spec.max_workers:
            target = max(running + 1, math.ceil(depth / per_worker))
            target = min(spec.max_workers, target)
            reason = (
                f"{depth} waiting for {running} worker(s), more than {per_worker} each"
                if crowded
                else f"oldest message waited {waited:.1f}s"
            )
            for _ in range(target - running):
                self._start(spec, reason=reason, depth=depth, waited=waited)
            return

        if depth:
            for worker in added:
                worker.idle_since = None
        elif added:
            self._maybe_remove(spec, added[-1], now, running)

    def _start(self, spec: ModelSpec, *, reason: str, depth: int, waited: float):
        self._serial[spec.name] += 1
        index = spec.workers + self._serial[spec.name]
        generation = self._generations.get(spec.name, 0)
        child = self._registry.start(
            worker_spec(
                self._settings, spec, index, self._env, self._threads,
                generation=generation,
            ),
            group=WORKER_GROUP,
        )  # fmt: skip
        added = self._added[spec.name]
        worker_id = worker_hostname(spec, index, generation)
        added.append(_Added(child=child, worker_id=worker_id))
        log.info(
            "scaling up",
            model=spec.name,
            workers=spec.workers + len(added),
            child=child.name,
            reason=reason,
            queue_depth=depth,
            oldest_wait_s=round(waited, 2),
        )

    def _inflight(self, worker_id: str) -> int | None:
        """Tasks the worker runs, from a fresh heartbeat; None if it has none
        (still loading its model, or gone)."""
        assert self._streams is not None
        key = protocol.worker_key(self._settings.namespace, worker_id)
        inflight, seen_at = self._streams.hmget(key, "inflight", "seen_at")
        if inflight is None or seen_at is None:
            return None
        if time.time() - float(seen_at) > 3 * self._settings.worker_heartbeat_s:
            return None
        return int(inflight)

    def _maybe_remove(
        self, spec: ModelSpec, worker: _Added, now: float, running: int
    ) -> None:
        if self._inflight(worker.worker_id) != 0:
            worker.idle_since = None
            return
        if worker.idle_since is None:
            worker.idle_since = now
            return
        idle = now - worker.idle_since
        if idle < self._settings.autoscale_idle_s:
            return

        self._added[spec.name].remove(worker)
        # Not the registry's any more: its exit is not a crash to restart.
        self._registry.forget(worker.child)
        worker.child.request_stop()
        self._draining.append(worker.child)
        log.info(
            "scaling down",
            model=spec.name,
            workers=running - 1,
            child=worker.child.name,
            reason=f"queues empty and worker idle for {idle:.0f}s",
        )

    def _reap(self) -> None:
        for child in list(self._draining):
            if child.poll() is not None:
                code = child.await_stop(0)
                self._draining.remove(child)
                log.info("child stopped", child=child.name, exit_code=code)

    def stop(self) -> None:
        """Wait for workers being scaled down; the registry stops the rest."""
        for child in self._draining:
            child.await_stop()
        self._draining.clear()
        for client in (self._broker, self._streams):
            if client is not None:
                client.close()
