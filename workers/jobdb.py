"""PostgreSQL for worker threads: one asyncpg pool on its own event loop.

Celery runs tasks on a thread pool and asyncpg is asyncio-only, so the
process keeps one small pool on a private loop in a daemon thread, and task
threads hand it coroutines. One pool per process (not one connection per
task thread) keeps a 32-thread worker to a handful of database connections.
The same SQL functions (``server.jobs.store``) serve the API and workers.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from typing import Any, TypeVar

import asyncpg
import structlog

from server.errors import DatabaseUnavailable

log = structlog.get_logger(__name__)

T = TypeVar("T")

_POOL_SIZE = 6
_CALL_TIMEOUT_S = 60.0


class WorkerDatabase:
    def __init__(self, url: str) -> None:
        self._url = url
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pool: asyncpg.Pool | None = None

    def _ensure(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                threading.Thread(
                    target=loop.run_forever, name="jobdb", daemon=True
                ).start()
                self._loop = loop
            return self._loop

    async def _acquire_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            self._pool = await asyncpg.create_pool(
                self._url, min_size=1, max_size=_POOL_SIZE, timeout=10
            )
        return self._pool

    async def _call(self, fn: Callable[..., Awaitable[T]], kwargs) -> T:
        pool = await self._acquire_pool()
        async with pool.acquire() as conn:
            return await fn(conn, **kwargs)

    def submit(self, fn: Callable[..., Awaitable[T]], **kwargs: Any) -> Future:
        """Start ``fn(conn, **kwargs)`` on the pool; do not wait for it."""
        return asyncio.run_coroutine_threadsafe(self._call(fn, kwargs), self._ensure())

    def run(self, fn: Callable[..., Awaitable[T]], **kwargs: Any) -> T:
        """Run ``fn(conn, **kwargs)`` and return its result."""
        try:
            return self.submit(fn, **kwargs).result(_CALL_TIMEOUT_S)
        except (
            OSError,
            TimeoutError,
            asyncpg.InterfaceError,
            asyncpg.PostgresConnectionError,
            asyncpg.CannotConnectNowError,
            asyncpg.AdminShutdownError,
        ) as exc:
            raise DatabaseUnavailable(
                f"cannot reach PostgreSQL ({exc or type(exc).__name__}); "
                "check HEARTH_DATABASE_URL"
            ) from exc


_database: WorkerDatabase | None = None
_database_lock = threading.Lock()


def worker_database() -> WorkerDatabase:
    global _database
    with _database_lock:
        if _database is None:
            from server.settings import get_settings

            _database = WorkerDatabase(get_settings().database_url)
        return _database
