"""The embedded Valkey and PostgreSQL, run for real on a temporary data dir."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import asyncpg
import psutil
import pytest
import redis

from server.child_registry import ChildRegistry
from server.embedded import embedded_services, start_broker, start_database
from server.errors import ConfigError


def _stop(registry: ChildRegistry) -> dict[str, int | None]:
    children = registry.children()
    registry.stop(["broker", "database"])
    return {child.name: child.poll() for child in children}


def test_valkey_answers_and_keeps_a_key_across_a_restart(tmp_path: Path) -> None:
    registry = ChildRegistry()
    url = start_broker(registry, data_dir=tmp_path)
    client = redis.Redis.from_url(url)
    assert client.ping() is True
    assert client.config_get("appendonly") == {"appendonly": "yes"}
    assert client.config_get("bind") == {"bind": "127.0.0.1"}
    client.set("survivor", "still here")
    client.close()
    assert _stop(registry) == {"valkey": 0}

    again = ChildRegistry()
    try:
        assert start_broker(again, data_dir=tmp_path) == url  # same port
        client = redis.Redis.from_url(url)
        assert client.get("survivor") == b"still here"
        client.close()
    finally:
        again.stop(["broker"])
    assert list((tmp_path / "valkey").glob("appendonlydir/*.aof"))


async def _query(url: str, *statements: str) -> list:
    conn = await asyncpg.connect(url)
    try:
        results = []
        for statement in statements:
            results.append(await conn.fetch(statement))
        return results
    finally:
        await conn.close()


def test_postgres_serves_pgvector_and_keeps_rows_across_a_restart(
    tmp_path: Path,
) -> None:
    registry = ChildRegistry()
    url = start_database(registry, data_dir=tmp_path)
    assert url.startswith("postgresql://postgres@127.0.0.1:")
    assert url.endswith("/hearth")

    first = asyncio.run(
        _query(
            url,
            "SELECT current_database() AS db",
            "CREATE EXTENSION vector",
            "CREATE TABLE notes (id int PRIMARY KEY, body text, v vector(3))",
            "INSERT INTO notes VALUES (1, 'kept', '[1,2,3]')",
            "SELECT v <-> '[1,2,4]' AS distance FROM notes",
        )
    )
    assert first[0][0]["db"] == "hearth"
    assert first[4][0]["distance"] == pytest.approx(1.0)
    assert _stop(registry) == {"postgres": 0}

    again = ChildRegistry()
    try:
        assert start_database(again, data_dir=tmp_path) == url  # same port
        rows = asyncio.run(_query(url, "SELECT id, body FROM notes"))[0]
        assert [tuple(row) for row in rows] == [(1, "kept")]
    finally:
        again.stop(["database"])


@pytest.mark.skipif(
    os.geteuid() != 0, reason="only root switches PostgreSQL to its own user"
)
def test_postgres_runs_as_its_own_user_when_we_are_root(tmp_path: Path) -> None:
    registry = ChildRegistry()
    try:
        start_database(registry, data_dir=tmp_path)
        (postgres,) = registry.children("database")
        assert psutil.Process(postgres.pid).username() == "embedded_postgres"
        assert (tmp_path / "postgres").owner() == "embedded_postgres"
    finally:
        registry.stop(["database"])


def test_a_second_user_of_the_data_dir_is_refused(tmp_path: Path) -> None:
    with embedded_services(tmp_path) as services:
        assert redis.Redis.from_url(services.broker_url).ping() is True
        with pytest.raises(ConfigError, match="another `hearth up`"):
            with embedded_services(tmp_path):
                pass
        # The refused attempt must not have disturbed the running services.
        assert all(child.running for child in services.registry.children())


_HOLD_SERVICES = """
import json, sys, time
from pathlib import Path
from server.embedded import embedded_services
from server.logs import configure_logging
configure_logging(level="INFO", json=True, process="test")  # logs to stderr
with embedded_services(Path(sys.argv[1])) as services:
    print(json.dumps([services.broker_url, services.database_url]), flush=True)
    time.sleep(600)
"""


def test_sigkilled_owner_leaves_no_service_running_and_data_restarts(
    tmp_path: Path,
) -> None:
    owner = subprocess.Popen(
        [sys.executable, "-c", _HOLD_SERVICES, str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        broker_url, database_url = json.loads(owner.stdout.readline())
        asyncio.run(
            _query(
                database_url,
                "CREATE TABLE t (x int)",
                "INSERT INTO t VALUES (42)",
            )
        )
        descendants = psutil.Process(owner.pid).children(recursive=True)
        users = {p.username() for p in descendants}
        assert any(p.name() == "postgres" for p in descendants)
        assert any("valkey" in p.name() for p in descendants)
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait()
        owner.stdout.close()

    _gone, alive = psutil.wait_procs(descendants, timeout=60)
    for orphan in alive:  # do not let a failure leak processes into the run
        orphan.kill()
    assert alive == [], f"orphans left behind: {alive}"
    if os.geteuid() == 0:
        assert "embedded_postgres" in users  # the death signal crossed the uid

    with embedded_services(tmp_path) as services:
        assert services.database_url == database_url
        assert services.broker_url == broker_url
        rows = asyncio.run(_query(database_url, "SELECT x FROM t"))[0]
        assert [row["x"] for row in rows] == [42]


def test_services_left_running_on_the_data_dir_are_replaced(tmp_path: Path) -> None:
    # A previous owner that vanished without stopping its services: their
    # processes still run on the data directory when the next start comes.
    previous = ChildRegistry()
    broker_url = start_broker(previous, data_dir=tmp_path)
    database_url = start_database(previous, data_dir=tmp_path)
    leftovers = previous.children()
    redis.Redis.from_url(broker_url).set("k", "v")

    registry = ChildRegistry()
    try:
        assert start_broker(registry, data_dir=tmp_path) == broker_url
        assert start_database(registry, data_dir=tmp_path) == database_url
        for old in leftovers:
            assert old.wait(timeout_s=30) is not None, f"{old.name} still runs"
        assert {c.pid for c in registry.children()}.isdisjoint(
            {c.pid for c in leftovers}
        )
        assert redis.Redis.from_url(broker_url).get("k") == b"v"
    finally:
        registry.stop(["broker", "database"])
        previous.stop(["broker", "database"])
