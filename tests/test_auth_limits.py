"""Per-key limits, counted in Redis: requests per minute, tokens per minute
and per day, requests in flight; and one limit shared by two API processes."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
import redis

from tests import authutil
from tests.authutil import CHAT, StandInWorker, bearer, running
from tests.stackutil import (
    Processes,
    base_env,
    create_database,
    drop_database,
    free_port,
    new_namespace,
)
from workers import protocol

database_url = authutil.database_url
settings = authutil.settings

# Real processes: a db of their own.
OTHER_REDIS = "redis://127.0.0.1:6379/9"

CHAT_BODY = {"model": CHAT, "messages": [{"role": "user", "content": "hi"}]}


def assert_429(reply: httpx.Response, *, limit: str) -> None:
    assert reply.status_code == 429, reply.text
    assert int(reply.headers["retry-after"]) >= 1
    error = reply.json()["error"]
    assert (error["type"], error["code"], error["param"]) == (
        "rate_limit_error",
        "rate_limit_exceeded",
        None,
    )
    assert limit in error["message"]


async def test_requests_per_minute(settings):
    async with running(settings) as api:
        key, _ = await api.key("acme", "read", requests_per_minute=3)
        other, _ = await api.key("acme", "read")
        for _ in range(3):
            assert (await api.client.get("/v1/models", headers=bearer(key))).is_success
        reply = await api.client.get("/v1/models", headers=bearer(key))
        assert_429(reply, limit="requests_per_minute is 3")
        # Another key of the same tenant is counted on its own.
        assert (await api.client.get("/v1/models", headers=bearer(other))).is_success


async def test_a_tenant_default_applies_to_its_keys(settings):
    async with running(settings) as api:
        key, key_id = await api.key("acme", "read")
        await api.pool.execute(
            "UPDATE tenants SET requests_per_minute = 1 WHERE name = 'acme'"
        )
        assert (await api.client.get("/v1/models", headers=bearer(key))).is_success
        assert_429(
            await api.client.get("/v1/models", headers=bearer(key)),
            limit="requests_per_minute is 1",
        )
        # A key's own value wins over its tenant's.
        await api.pool.execute(
            "UPDATE api_keys SET requests_per_minute = 5 WHERE id = $1", key_id
        )
        assert (await api.client.get("/v1/models", headers=bearer(key))).is_success


@pytest.mark.parametrize(
    "limit,name", [("tokens_per_minute", "tokens_per_minute is 10"),
                   ("tokens_per_day", "tokens_per_day is 10")],
)  # fmt: skip
async def test_token_quotas_refuse_once_spent(settings, limit, name):
    async with running(settings) as api, StandInWorker(settings):
        key, _ = await api.key("acme", "inference", **{limit: 10})
        # 7 + 5 tokens: under the quota when it starts, over it after.
        first = await api.client.post(
            "/v1/chat/completions", json=CHAT_BODY, headers=bearer(key)
        )
        assert first.status_code == 200
        assert first.json()["usage"]["total_tokens"] == 12
        second = await api.client.post(
            "/v1/chat/completions", json=CHAT_BODY, headers=bearer(key)
        )
        assert_429(second, limit=name)


async def test_concurrent_requests(settings):
    async with running(settings) as api:
        key, key_id = await api.key("acme", "inference", max_concurrent=1)
        live = protocol.live_key(settings.namespace, CHAT)
        r = redis.asyncio.Redis.from_url(settings.stream_url)
        await r.zadd(live, {"stand-in": time.time() + 60})
        inflight = f"{settings.namespace}:auth:inflight:{key_id}"

        # The first request waits for a worker, holding its slot.
        first = asyncio.create_task(
            api.client.post("/v1/chat/completions", json=CHAT_BODY, headers=bearer(key))
        )
        while not await r.zcard(inflight):
            await asyncio.sleep(0.01)
        second = await api.client.post(
            "/v1/chat/completions", json=CHAT_BODY, headers=bearer(key)
        )
        assert_429(second, limit="max_concurrent is 1")

        async with StandInWorker(settings):
            assert (await first).status_code == 200
            # Its slot is free again once the response is complete.
            third = await api.client.post(
                "/v1/chat/completions", json=CHAT_BODY, headers=bearer(key)
            )
            assert third.status_code == 200
        assert await r.zcard(inflight) == 0
        await r.aclose()


@pytest.fixture
def two_apis(tmp_path):
    """Two `hearth api` processes on one Redis and one database."""
    database = create_database(authutil.SYSTEM_PG)
    namespace = new_namespace()
    env = base_env(
        HEARTH_BROKER_URL=OTHER_REDIS,
        HEARTH_DATABASE_URL=database,
        HEARTH_NAMESPACE=namespace,
        HEARTH_DATA_DIR=str(tmp_path / "data"),
        HEARTH_JWT_SECRET="s" * 40,
    )
    processes = Processes(logdir=tmp_path, env=env)
    try:
        migrate = processes.start("migrate", "migrate")
        assert migrate.popen.wait(120) == 0, migrate.tail()
        processes.started.remove(migrate)
        urls = []
        for name in ("api-1", "api-2"):
            port = free_port()
            processes.start(name, "api", "--port", str(port))
            urls.append(f"http://127.0.0.1:{port}")
        yield processes, urls
    finally:
        processes.stop_all()
        drop_database(database)
        client = redis.Redis.from_url(OTHER_REDIS)
        for key in client.scan_iter(match=f"{namespace}:*"):
            client.delete(key)
        client.close()


def _wait_healthy(url: str, processes: Processes) -> None:
    for _ in range(600):
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        for process in processes.started:
            assert process.popen.poll() is None, processes.logs()
        time.sleep(0.1)
    raise AssertionError(f"{url} never became healthy\n{processes.logs()}")


def test_two_api_processes_share_one_requests_per_minute_limit(two_apis):
    from click.testing import CliRunner

    from server.cli import cli

    processes, urls = two_apis
    made = CliRunner().invoke(
        cli,
        ["keys", "create", "--database-url", processes.env["HEARTH_DATABASE_URL"],
         "--tenant", "acme", "--scopes", "read", "--rpm", "4"],
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    headers = bearer(made.stdout.strip())
    for url in urls:
        _wait_healthy(url, processes)

    statuses = [
        httpx.get(f"{url}/v1/models", headers=headers, timeout=10).status_code
        for url in [*urls, *urls, *urls]
    ]
    assert statuses == [200, 200, 200, 200, 429, 429], processes.logs()
