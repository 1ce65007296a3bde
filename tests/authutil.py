"""Shared pieces of the tests/test_auth_*.py files: a scratch database, the
real app in-process on the machine's Redis, keys made straight in the
database, and a stand-in model worker.

The stand-in worker is the one fake here: it takes the real Celery message
off the real Redis queue and answers on the real event stream, so usage and
token quotas can be tested without loading a model.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import asyncpg
import httpx
import pytest
import redis

from auth import keys
from server.app import create_app
from server.db import migrate_database
from server.settings import Settings
from tests.stackutil import create_database, drop_database, new_namespace
from workers import protocol

SYSTEM_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
# The db test_admission uses too: Celery's app is process-wide and keeps its
# first broker connection, so in-process tests must agree on one broker.
REDIS_DB = 6
REDIS = f"redis://127.0.0.1:6379/{REDIS_DB}"
CHAT = "smollm2-135m-instruct"
EMBED = "all-minilm-l6-v2"


def scratch_database() -> str:
    url = create_database(SYSTEM_PG)
    asyncio.run(migrate_database(url))
    return url


def clean_redis(namespace: str) -> None:
    client = redis.Redis.from_url(REDIS)
    try:
        for key in client.scan_iter(match=f"{namespace}:*"):
            client.delete(key)
    finally:
        client.close()


@pytest.fixture
def database_url():
    url = scratch_database()
    yield url
    drop_database(url)


@pytest.fixture
def settings(database_url, tmp_path: Path):
    settings = Settings(
        broker_url=REDIS,
        database_url=database_url,
        namespace=new_namespace(),
        data_dir=tmp_path / "data",
        worker_heartbeat_s=1,
    )
    yield settings
    clean_redis(settings.namespace)


@dataclass
class Api:
    """The app in-process, with its pool for setting up state directly."""

    app: object
    client: httpx.AsyncClient
    pool: asyncpg.Pool
    settings: Settings

    async def key(
        self,
        tenant: str,
        scopes: tuple[str, ...] | str,
        *,
        expires_in: timedelta | None = None,
        **limits: int,
    ) -> tuple[str, str]:
        """Make a key in the database; returns (plaintext, id)."""
        if isinstance(scopes, str):
            scopes = tuple(scopes.split(","))
        async with self.pool.acquire() as conn:
            key, plaintext = await keys.create_key(
                conn, tenant=tenant, scopes=scopes, expires_in=expires_in,
                limits=limits,
            )  # fmt: skip
        return plaintext, key.id

    async def audit_rows(self, **where: str) -> list[asyncpg.Record]:
        clauses = " AND ".join(f"{k} = ${i}" for i, k in enumerate(where, start=1))
        return await self.pool.fetch(
            "SELECT * FROM audit_log" + (f" WHERE {clauses}" if where else ""),
            *where.values(),
        )


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[Api]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://hearth.test"
        ) as client:
            yield Api(app, client, app.state.pool, settings)


class StandInWorker:
    """Answers chat and embedding tasks on the real queues and streams."""

    def __init__(self, settings: Settings, *, prompt_tokens=7, completion_tokens=5):
        self.settings = settings
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = completion_tokens
        self.redis = redis.asyncio.Redis.from_url(settings.stream_url)
        self.seen: list[dict] = []

    async def __aenter__(self) -> StandInWorker:
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self._serve())
        return self

    async def __aexit__(self, *exc) -> None:
        # A flag, not Task.cancel(): a cancel that lands as redis-py's read
        # timeout fires can come out as a TimeoutError, which redis-py then
        # retries, so the loop would never see it.
        self._stop.set()
        await asyncio.wait_for(self._task, timeout=30)
        await self.redis.aclose()

    async def _serve(self) -> None:
        ns = self.settings.namespace
        queues = [protocol.queue_name(ns, m) for m in (CHAT, EMBED)]
        while not self._stop.is_set():
            now = time.time()
            for model in (CHAT, EMBED):
                await self.redis.zadd(protocol.live_key(ns, model), {"stand-in": now})
            popped = await self.redis.brpop(queues, timeout=0.2)
            if popped:
                await self._answer(json.loads(popped[1]))

    async def _answer(self, message: dict) -> None:
        args = json.loads(base64.b64decode(message["body"]))[0]
        payload = args[0]
        self.seen.append(payload)
        usage = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": 0 if "input" in payload else self.completion_tokens,
        }
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        if "input" in payload:
            rows = len(payload["input"])
            vectors = b"\x00\x00\x80\x3f" * 4 * rows
            events = [{"type": "embeddings", "rows": rows, "dim": 4,
                       "b64": base64.b64encode(vectors).decode()}]  # fmt: skip
        else:
            events = [
                {"type": "delta", "index": 0, "text": "hello"},
                {"type": "choice_end", "index": 0, "finish_reason": "stop"},
            ]
        key = protocol.events_key(self.settings.namespace, payload["request_id"])
        for event in [*events, {"type": "done", "usage": usage}]:
            await self.redis.xadd(key, protocol.encode_event(event))
