"""What ``hearth up`` runs besides the services: API, model workers, beat.

Each child is the ``hearth`` command itself (``python -m server``, on this
interpreter), configured only through ``HEARTH_*`` variables, so a child sees
exactly the settings the supervisor resolved, embedded URLs included.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
from dataclasses import dataclass

from server.children import ChildSpec
from server.metrics_dir import ENV as METRICS_DIR_ENV
from server.metrics_dir import prepare_metrics_dir
from server.settings import Settings
from workers.specs import ModelCatalog, ModelSpec

API_GROUP = "api"
WORKER_GROUP = "worker"
BEAT_GROUP = "beat"

# Long enough for a warm shutdown to finish a typical generation; a task cut
# short is not lost, the broker hands it to the next worker.
WORKER_STOP_TIMEOUT_S = 30.0


@dataclass(frozen=True, kw_only=True)
class ServiceURLs:
    broker_url: str
    redis_url: str
    database_url: str


def hearth_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "server", *args]


def child_env(settings: Settings, urls: ServiceURLs) -> dict[str, str]:
    env = dict(os.environ)
    env.update(settings.export_env())
    env["HEARTH_BROKER_URL"] = urls.broker_url
    env["HEARTH_DATABASE_URL"] = urls.database_url
    if urls.redis_url:
        env["HEARTH_REDIS_URL"] = urls.redis_url
    # Every child records into one directory, so /metrics covers them all.
    env[METRICS_DIR_ENV] = str(prepare_metrics_dir(settings.data_dir))
    return env


def migrate_spec(settings: Settings, env: dict[str, str]) -> ChildSpec:
    return ChildSpec(
        name="migrate",
        argv=hearth_argv("migrate"),
        env=env,
        log_path=settings.data_dir / "logs" / "migrate.log",
    )


def api_spec(env: dict[str, str]) -> ChildSpec:
    # uvicorn drains open requests on SIGTERM.
    return ChildSpec(name="api", argv=hearth_argv("api"), env=env, stop_timeout_s=30.0)


def beat_spec(env: dict[str, str]) -> ChildSpec:
    return ChildSpec(name="beat", argv=hearth_argv("beat"), env=env)


def _torch_threads(settings: Settings, specs: list[ModelSpec]) -> int:
    """Share the CPUs between local model processes, so N workers do not each
    start one torch thread per core and slow each other down."""
    local = sum(spec.workers for spec in specs if spec.backend != "remote")
    return max(1, (os.cpu_count() or 1) // max(1, local))


def _worker_tag(spec: ModelSpec, index: int, generation: int) -> str:
    # Workers started for a model reload carry its generation, so they never
    # share a Celery node name or a heartbeat with the ones they replace.
    if generation:
        return f"{spec.name}-g{generation}-{index}"
    return f"{spec.name}-{index}"


def worker_hostname(spec: ModelSpec, index: int, generation: int = 0) -> str:
    """The Celery node name, and so the worker id in heartbeats."""
    return f"{_worker_tag(spec, index, generation)}@{socket.gethostname()}"


def worker_spec(
    settings: Settings,
    spec: ModelSpec,
    index: int,
    env: dict[str, str],
    threads: int,
    *,
    generation: int = 0,
) -> ChildSpec:
    worker_env = dict(env)
    if settings.torch_threads is None:
        worker_env["HEARTH_TORCH_THREADS"] = str(threads)
    hostname = worker_hostname(spec, index, generation)
    return ChildSpec(
        name=f"worker-{_worker_tag(spec, index, generation)}",
        argv=hearth_argv("worker", "--models", spec.name, "--hostname", hostname),
        env=worker_env,
        # SIGTERM is Celery's warm shutdown: finish running tasks.
        stop_signal=signal.SIGTERM,
        stop_timeout_s=WORKER_STOP_TIMEOUT_S,
        labels={"model": spec.name, "worker_id": hostname},
    )


def worker_threads(settings: Settings, catalog: ModelCatalog) -> int:
    return _torch_threads(settings, list(catalog))


def worker_specs(
    settings: Settings, catalog: ModelCatalog, env: dict[str, str]
) -> list[ChildSpec]:
    """One child per worker process each model asks for (``workers: N``)."""
    threads = worker_threads(settings, catalog)
    return [
        worker_spec(settings, spec, index, env, threads)
        for spec in catalog
        for index in range(1, spec.workers + 1)
    ]
