"""The models a worker process hosts, loaded once when the process starts."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field

import redis
import structlog

from server.errors import ModelNotFound
from server.metrics import MODEL_LOAD
from server.settings import Settings
from workers import protocol
from workers.specs import ModelSpec
from workers.task_metrics import running_tasks

log = structlog.get_logger(__name__)


@dataclass
class HostedModels:
    namespace: str
    redis: redis.Redis
    worker_id: str
    specs: dict[str, ModelSpec] = field(default_factory=dict)
    backends: dict[str, object] = field(default_factory=dict)
    inflight: int = 0
    # This process, among all that ever ran as ``worker_id``: hearth up
    # restarts a dead worker under the same name.
    incarnation: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def claimant(self) -> str:
        """Who a job is running on: the worker id and this incarnation."""
        return f"{self.worker_id}#{self.incarnation}"

    def task_started(self) -> None:
        with self._lock:
            self.inflight += 1

    def task_finished(self) -> None:
        with self._lock:
            self.inflight -= 1

    def _backend(self, name: str, kind: str):
        backend = self.backends.get(name)
        spec = self.specs.get(name)
        if backend is None or spec is None:
            raise ModelNotFound(
                f"worker {self.worker_id} does not host {name!r}", param="model"
            )
        if spec.kind != kind:
            raise ModelNotFound(
                f"model {name!r} is a {spec.kind} model, not {kind}", param="model"
            )
        return backend

    def chat_backend(self, name: str):
        return self._backend(name, "chat")

    def embedding_backend(self, name: str):
        return self._backend(name, "embedding")


_hosted: HostedModels | None = None


def hosted() -> HostedModels:
    if _hosted is None:
        raise RuntimeError("no models are hosted in this process")
    return _hosted


def load_models(settings: Settings, specs: list[ModelSpec], *, worker_id: str):
    """Load every backend for ``specs`` and make them this process's models."""
    from workers.backends import load_backend

    global _hosted
    client = redis.Redis.from_url(settings.stream_url)
    state = HostedModels(
        namespace=settings.namespace, redis=client, worker_id=worker_id
    )
    for spec in specs:
        started = time.perf_counter()
        state.backends[spec.name] = load_backend(spec, settings)
        state.specs[spec.name] = spec
        MODEL_LOAD.labels(spec.name, spec.backend).observe(
            time.perf_counter() - started
        )
        log.info(
            "model loaded",
            model=spec.name,
            backend=spec.backend,
            load_s=round(time.perf_counter() - started, 2),
        )
    _hosted = state
    return state


def default_worker_id(models: list[str]) -> str:
    return f"{'+'.join(models)}@{socket.gethostname()}:{os.getpid()}"


class Heartbeat:
    """Tells the API which models this worker serves, every few seconds.

    The API treats a model whose last heartbeat is older than three periods
    as having no live worker, and fails fast with 503 instead of queueing.
    """

    def __init__(self, state: HostedModels, *, period_s: float, queues: list[str]):
        self._state = state
        self._period = period_s
        self._queues = queues
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._loop, name="heartbeat", daemon=True
        )
        self._started = time.time()

    def start(self) -> None:
        self.beat()
        self._thread.start()

    def beat(self) -> None:
        state = self._state
        now = time.time()
        pipe = state.redis.pipeline()
        for name in state.specs:
            pipe.zadd(protocol.live_key(state.namespace, name), {state.worker_id: now})
        pipe.hset(
            protocol.worker_key(state.namespace, state.worker_id),
            mapping={
                "models": ",".join(state.specs),
                "queues": ",".join(self._queues),
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "incarnation": state.incarnation,
                "started_at": self._started,
                "seen_at": now,
                "inflight": state.inflight,
                "tasks": json.dumps(running_tasks()[:8]),
            },
        )
        pipe.expire(protocol.worker_key(state.namespace, state.worker_id), 60)
        pipe.execute()

    def _loop(self) -> None:
        while not self._stop.wait(self._period):
            try:
                self.beat()
            except redis.RedisError as exc:
                log.warning("heartbeat failed", error=str(exc))

    def stop(self) -> None:
        self._stop.set()
        state = self._state
        try:
            pipe = state.redis.pipeline()
            for name in state.specs:
                pipe.zrem(protocol.live_key(state.namespace, name), state.worker_id)
            pipe.delete(protocol.worker_key(state.namespace, state.worker_id))
            pipe.execute()
        except redis.RedisError as exc:
            log.warning("could not withdraw heartbeat", error=str(exc))
