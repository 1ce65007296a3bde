"""``hearth up``: every Hearth process on one machine, started in order,
watched, restarted when one dies, and stopped in order.

Start: broker and database (embedded unless their URLs are set), migrations,
API, one worker process per model worker, beat. While running, the loop also
scales workers with their queues (server.autoscale) and follows model
reloads (server.model_reload). Stop (SIGINT or SIGTERM): the
API first so no new work arrives, then workers (warm shutdown), beat, broker
(which writes its append-only file) and the database last.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import structlog

from server.autoscale import Autoscaler
from server.bind_policy import check_bind
from server.child_registry import ChildRegistry
from server.children import Child
from server.data_dir_lock import DataDirLock
from server.embedded import BROKER_GROUP, DATABASE_GROUP, start_broker, start_database
from server.errors import ServiceUnavailable
from server.logs import configure_logging
from server.model_reload import ModelReloader
from server.readiness import StartupInterrupted, log_tail, wait_until_ready
from server.settings import Settings
from server.stack import (
    API_GROUP,
    BEAT_GROUP,
    WORKER_GROUP,
    ServiceURLs,
    api_spec,
    beat_spec,
    child_env,
    migrate_spec,
    worker_specs,
)
from workers.specs import ModelCatalog

log = structlog.get_logger(__name__)

STOP_ORDER = [API_GROUP, WORKER_GROUP, BEAT_GROUP, BROKER_GROUP, DATABASE_GROUP]
API_READY_TIMEOUT_S = 120.0
MIGRATE_TIMEOUT_S = 300.0
WATCH_INTERVAL_S = 0.2


class ShutdownRequest(threading.Event):
    """Set by SIGINT or SIGTERM; remembers which one, for the log."""

    signal_name: str | None = None


@contextmanager
def shutdown_requested() -> Iterator[ShutdownRequest]:
    """A ShutdownRequest set by SIGINT or SIGTERM while the block runs."""
    request = ShutdownRequest()

    # Only record here: the handler may interrupt the main thread anywhere,
    # even inside a log call.
    def handler(signum: int, _frame: object) -> None:
        request.signal_name = request.signal_name or signal.Signals(signum).name
        request.set()

    previous = {
        sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield request
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def resolve_services(
    settings: Settings, registry: ChildRegistry, stopping: threading.Event
) -> ServiceURLs:
    """The broker, Redis and database URLs, starting embedded ones where the
    settings leave them empty."""
    broker_url, redis_url = settings.broker_url, settings.redis_url
    # The API's port is free until the API starts; services must not take it.
    reserved = frozenset({settings.port})
    # A RabbitMQ broker still needs a Redis for results and streams.
    if not broker_url or (not settings.uses_redis_broker and not redis_url):
        valkey = start_broker(
            registry,
            data_dir=settings.data_dir,
            should_stop=stopping.is_set,
            avoid=reserved,
        )
        broker_url = broker_url or valkey
        redis_url = redis_url or valkey

    database_url = settings.database_url or start_database(
        registry,
        data_dir=settings.data_dir,
        should_stop=stopping.is_set,
        avoid=reserved,
    )
    return ServiceURLs(
        broker_url=broker_url, redis_url=redis_url, database_url=database_url
    )


def run_migrations(
    settings: Settings, env: dict[str, str], stopping: threading.Event
) -> None:
    child = Child(migrate_spec(settings, env))
    child.start()
    deadline = time.monotonic() + MIGRATE_TIMEOUT_S
    code = None
    try:
        while code is None and not stopping.is_set():
            if time.monotonic() > deadline:
                break
            code = child.wait(WATCH_INTERVAL_S)
    finally:
        child.stop()

    if stopping.is_set():
        raise StartupInterrupted(child.name)
    if code != 0:
        outcome = "timed out" if code is None else f"exit {code}"
        raise ServiceUnavailable(
            f"database migrations failed ({outcome}); "
            f"{child.spec.log_path} says:{log_tail(child.spec.log_path)}"
        )


def local_url(settings: Settings) -> str:
    """How this machine reaches the API, whatever address it listens on."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(
        settings.host, settings.host
    )
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.port}"


def api_is_healthy(base_url: str) -> bool:
    try:
        return httpx.get(f"{base_url}/healthz", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def start_stack(
    settings: Settings,
    catalog: ModelCatalog,
    registry: ChildRegistry,
    stopping: threading.Event,
) -> dict[str, str]:
    """Start everything; the environment the children were given."""
    urls = resolve_services(settings, registry, stopping)
    env = child_env(settings, urls)
    run_migrations(settings, env, stopping)
    # Now the database is known, keys in it may allow a public address.
    check_bind(settings.model_copy(update={"database_url": urls.database_url}))

    api = registry.start(api_spec(env), group=API_GROUP)
    base_url = local_url(settings)
    wait_until_ready(
        api,
        lambda: api_is_healthy(base_url),
        timeout_s=API_READY_TIMEOUT_S,
        error=ServiceUnavailable,
        should_stop=stopping.is_set,
    )

    for spec in worker_specs(settings, catalog, env):
        registry.start(spec, group=WORKER_GROUP)
    registry.start(beat_spec(env), group=BEAT_GROUP)
    return env


def stack_is_ready(base_url: str) -> bool:
    """Every model has a live worker (what /readyz checks)."""
    try:
        return httpx.get(f"{base_url}/readyz", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def _public_url(settings: Settings) -> str:
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    return f"http://{host}:{settings.port}/v1"


def announce_loading(settings: Settings) -> None:
    # A first start converts the chat model (about 30 s): say why it waits.
    print(
        f"Hearth's API is up on {_public_url(settings)}; loading models "
        "(GET /readyz shows which are live)",
        flush=True,
    )


def announce_ready(settings: Settings) -> None:
    print(f"Hearth is ready on {_public_url(settings)}", flush=True)


def run_supervisor(settings: Settings) -> int:
    """Run the whole stack until SIGINT or SIGTERM; the process exit code.

    Configuration problems and services that cannot start raise a
    ``HearthError`` (after stopping whatever had started), which the CLI
    prints as ``Error: ...``.
    """
    configure_logging(
        level=settings.log_level, json=settings.log_json, process="supervisor"
    )
    if settings.database_url:
        # An external database can be asked now; the embedded one after start.
        check_bind(settings)
    catalog = ModelCatalog.load(
        models_file=settings.models_file, bundled=settings.bundled_models
    )

    registry = ChildRegistry()
    autoscaler: Autoscaler | None = None
    reloader: ModelReloader | None = None
    with DataDirLock(settings.data_dir), shutdown_requested() as stopping:
        log.info("starting", data_dir=str(settings.data_dir), models=len(catalog))
        try:
            env = start_stack(settings, catalog, registry, stopping)
            autoscaler = Autoscaler(
                settings=settings, catalog=catalog, registry=registry, env=env
            )
            reloader = ModelReloader(
                settings=settings, catalog=catalog, registry=registry, env=env,
                autoscaler=autoscaler,
            )  # fmt: skip
            announce_loading(settings)
            ready = False
            while not stopping.is_set():
                registry.check()
                autoscaler.tick()
                reloader.tick()
                if not ready and stack_is_ready(local_url(settings)):
                    announce_ready(settings)
                    ready = True
                stopping.wait(WATCH_INTERVAL_S)
        except StartupInterrupted:
            log.info("start interrupted")
        finally:
            log.info("stopping", signal=stopping.signal_name)
            if autoscaler is not None:
                autoscaler.stop()
            if reloader is not None:
                reloader.stop()
            registry.stop(STOP_ORDER)
    log.info("stopped")
    return 0
