"""Property-based requests from the app's own OpenAPI schema, through the
real app (in-process, real Redis and PostgreSQL) with an admin key: no
input may produce a 5xx.

Chat, completions and embeddings run with no model worker on purpose: they
must answer 503 ``model_unavailable`` at once, and /readyz 503 "not_ready".
The scratch database is the machine's PostgreSQL, which has no pgvector, so
document routes must answer 503 ``retrieval_unavailable``. Those are the only
5xx allowed.
"""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

from server.app import create_app
from server.settings import Settings
from tests.authutil import REDIS, bearer, clean_redis, running, scratch_database
from tests.stackutil import drop_database, new_namespace

# `make fuzz` raises this for the long run (HEARTH_FUZZ_EXAMPLES=500).
MAX_EXAMPLES = int(os.environ.get("HEARTH_FUZZ_EXAMPLES", "25"))
EXPECTED_503 = {"model_unavailable", "retrieval_unavailable"}

schema = schemathesis.openapi.from_dict(create_app(Settings()).openapi())


class AppThread:
    """The app on its own event loop, so hypothesis can drive it synchronously."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> AppThread:
        self.thread.start()
        self._stop = asyncio.run_coroutine_threadsafe(self._serve(), self.loop)
        self.ready.wait(60)
        return self

    async def _serve(self) -> None:
        self._done = asyncio.Event()
        async with running(self.settings) as api:
            self.api = api
            self.key, _ = await api.key("acme", "admin")
            self.ready.set()
            await self._done.wait()

    def request(self, **kwargs) -> httpx.Response:
        call = self.api.client.request(**kwargs)
        return asyncio.run_coroutine_threadsafe(call, self.loop).result(60)

    def __exit__(self, *exc) -> None:
        self.loop.call_soon_threadsafe(self._done.set)
        self._stop.result(60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(scope="module")
def app_thread(tmp_path_factory):
    url = scratch_database()
    settings = Settings(
        broker_url=REDIS,
        database_url=url,
        namespace=new_namespace(),
        data_dir=Path(tmp_path_factory.mktemp("schemathesis")),
    )
    try:
        with AppThread(settings) as running_app:
            yield running_app
    finally:
        drop_database(url)
        clean_redis(settings.namespace)


@schema.parametrize()
@hypothesis_settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
def test_no_input_makes_a_server_error(app_thread, case):
    kwargs = case.as_transport_kwargs(base_url="http://hearth.test")
    kwargs["headers"] = {**(kwargs.get("headers") or {}), **bearer(app_thread.key)}
    reply = app_thread.request(
        method=kwargs["method"],
        url=kwargs["url"],
        headers=kwargs["headers"],
        params=kwargs.get("params"),
        json=kwargs.get("json"),
        content=kwargs.get("data") if isinstance(kwargs.get("data"), bytes) else None,
    )
    if reply.status_code >= 500:
        body = reply.json()
        code = body.get("error", {}).get("code")
        not_ready = case.path == "/readyz" and body.get("status") == "not_ready"
        assert reply.status_code == 503 and (code in EXPECTED_503 or not_ready), (
            f"{case.method} {case.formatted_path}: {reply.status_code} {reply.text}"
        )
    assert reply.status_code != 401, reply.text
