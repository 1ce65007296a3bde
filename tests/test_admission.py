"""Admission control through the real app, on the machine's Redis and
PostgreSQL: a model without a live worker fails fast with 503, a full queue
answers 429 with Retry-After, and neither leaves a message behind."""

from __future__ import annotations

import time

import httpx
import pytest
import redis

from server.app import create_app
from server.settings import Settings
from tests.stackutil import create_database, drop_database, new_namespace
from workers import protocol

SYSTEM_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS = "redis://127.0.0.1:6379/6"
CHAT = "smollm2-135m-instruct"
BODY = {"model": CHAT, "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def database_url():
    url = create_database(SYSTEM_PG)
    import asyncio

    from server.db import migrate_database

    asyncio.run(migrate_database(url))
    yield url
    drop_database(url)


@pytest.fixture
def settings(database_url):
    return Settings(
        broker_url=REDIS,
        database_url=database_url,
        namespace=new_namespace(),
        queue_max_depth=3,
        worker_heartbeat_s=1,
    )


@pytest.fixture
def sync_redis(settings):
    client = redis.Redis.from_url(REDIS)
    yield client
    for key in client.scan_iter(match=f"{settings.namespace}*"):
        client.delete(key)
    client.close()


async def _post(settings: Settings, path: str, body: dict) -> httpx.Response:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            return await c.post(path, json=body)


def _queue(settings: Settings) -> str:
    return protocol.queue_name(settings.namespace, CHAT)


async def test_no_live_worker_is_503_at_once(settings, sync_redis):
    reply = await _post(settings, "/v1/chat/completions", BODY)
    assert reply.status_code == 503
    assert reply.headers["retry-after"] == "5"
    error = reply.json()["error"]
    assert error["code"] == "model_unavailable"
    assert CHAT in error["message"] and "hearth worker --models" in error["message"]
    assert sync_redis.llen(_queue(settings)) == 0


async def test_stale_heartbeat_counts_as_no_worker(settings, sync_redis):
    key = protocol.live_key(settings.namespace, CHAT)
    sync_redis.zadd(key, {"old-worker": time.time() - 60})
    reply = await _post(settings, "/v1/chat/completions", BODY)
    assert reply.status_code == 503


async def test_full_queue_is_429_with_retry_after(settings, sync_redis):
    sync_redis.zadd(protocol.live_key(settings.namespace, CHAT), {"w": time.time()})
    for _ in range(settings.queue_max_depth):
        sync_redis.lpush(_queue(settings), "{}")
    reply = await _post(settings, "/v1/chat/completions", BODY)
    assert reply.status_code == 429
    assert int(reply.headers["retry-after"]) >= 1
    assert reply.json()["error"]["code"] == "queue_full"
    assert sync_redis.llen(_queue(settings)) == settings.queue_max_depth


async def test_queued_request_whose_worker_vanishes_is_503_and_cancelled(
    settings, sync_redis
):
    # A heartbeat that stops while the request waits: the API gives up with
    # 503 and marks the request cancelled, so a later worker skips it.
    sync_redis.zadd(protocol.live_key(settings.namespace, CHAT), {"w": time.time()})
    reply = await _post(settings, "/v1/chat/completions", BODY)
    assert reply.status_code == 503
    assert "went away" in reply.json()["error"]["message"]
    assert sync_redis.llen(_queue(settings)) == 1
    cancelled = list(sync_redis.scan_iter(match=f"{settings.namespace}:cancel:*"))
    assert len(cancelled) == 1
