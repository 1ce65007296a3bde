"""Fault tests with real processes: every accepted job ends succeeded
exactly once, with no loss and no duplicate effect, when a worker is
SIGKILLed amid running and queued jobs, and when the broker (the embedded
Valkey, with its append-only file) stops and restarts with jobs queued.

Each test starts its own API, workers and beat (the sweep recovers lost
work), on the machine's PostgreSQL and a Redis or Valkey of its own.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from pathlib import Path

import asyncpg
import httpx
import pytest
import redis

from server.embedded_valkey import valkey_binary
from tests.stackutil import Cluster, create_database, drop_database, free_port

pytestmark = pytest.mark.stack

SYSTEM_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
CHAT = "smollm2-135m-instruct"
EMBED = "all-minilm-l6-v2"
FAST_SWEEP = {
    "HEARTH_JOB_SWEEP_S": "1",
    "HEARTH_JOB_RESEND_AFTER_S": "5",
    "HEARTH_JOB_BACKOFF_S": "0.5",
}


@pytest.fixture
def database_url():
    url = create_database(SYSTEM_PG)
    yield url
    drop_database(url)


def _submit(url: str, request: dict, count: int) -> list[str]:
    ids = []
    for _ in range(count):
        reply = httpx.post(f"{url}/v1/jobs", json={"request": request}, timeout=60)
        assert reply.status_code == 202, reply.text
        ids.append(reply.json()["id"])
    return ids


def _states(url: str, ids: list[str]) -> dict[str, str]:
    return {
        job_id: httpx.get(f"{url}/v1/jobs/{job_id}", timeout=10).json()["state"]
        for job_id in ids
    }


def _wait_finished(url: str, ids: list[str], timeout: float = 480) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while True:
        states = _states(url, ids)
        active = [s for s in states.values() if s in ("queued", "running")]
        if not active or time.monotonic() > deadline:
            return states
        time.sleep(1)


def _effects(database_url: str, ids: list[str]) -> dict[str, int]:
    """How many times each job's result was written (its 'succeeded' event,
    written by the database itself on the state change)."""

    async def count() -> dict[str, int]:
        conn = await asyncpg.connect(database_url)
        try:
            rows = await conn.fetch(
                "SELECT job_id, count(*) AS n FROM job_events WHERE kind = 'state'"
                " AND data->>'state' = 'succeeded' AND job_id = ANY($1::text[])"
                " GROUP BY job_id",
                ids,
            )
        finally:
            await conn.close()
        return {r["job_id"]: r["n"] for r in rows}

    return asyncio.run(count())


def _assert_exactly_once(url: str, database_url: str, ids: list[str]) -> None:
    states = _wait_finished(url, ids)
    assert set(states.values()) == {"succeeded"}, states
    effects = _effects(database_url, ids)
    assert effects == {job_id: 1 for job_id in ids}


def test_sigkill_a_worker_amid_running_and_queued_jobs(tmp_path, database_url):
    broker = "redis://127.0.0.1:6379/10"
    cluster = Cluster.start(
        tmp_path, broker_url=broker, database_url=database_url, models=[CHAT],
        extra_env={**FAST_SWEEP, "HEARTH_WORKER_CONCURRENCY": "8"},
    )  # fmt: skip
    try:
        cluster.processes.start("beat", "beat")
        request = {
            "model": CHAT,
            "messages": [{"role": "user", "content": "Tell me about rivers."}],
            # Long enough that some jobs are still running and some still
            # queued when the worker is killed.
            "max_tokens": 48,
        }
        ids = _submit(cluster.url, request, 50)
        deadline = time.monotonic() + 300
        while "running" not in _states(cluster.url, ids).values():
            assert time.monotonic() < deadline, "nothing started"
            time.sleep(0.2)

        worker = next(
            p for p in cluster.processes.started if p.name.startswith("worker")
        )
        worker.stop(signal.SIGKILL)
        before = _states(cluster.url, ids)
        assert "running" in before.values() and "queued" in before.values()

        cluster.processes.start("worker-2", "worker", "--models", CHAT)
        _assert_exactly_once(cluster.url, database_url, ids)
        lost = [
            job
            for job in (
                httpx.get(f"{cluster.url}/v1/jobs/{i}", timeout=10).json() for i in ids
            )
            if job["attempts"] > 1
        ]
        assert lost, "no job was recovered from the killed worker"
        for job in lost:
            assert job["attempt_history"][0]["outcome"] == "worker_lost"
    finally:
        cluster.stop()
        _clean(broker, cluster.namespace)


def _clean(url: str, namespace: str) -> None:
    client = redis.Redis.from_url(url)
    try:
        for pattern in (f"{namespace}*", f"_kombu.binding*.{namespace}.*"):
            for key in client.scan_iter(match=pattern):
                client.delete(key)
        client.delete("unacked", "unacked_index", "unacked_mutex")
    finally:
        client.close()


class Valkey:
    """The embedded broker's own server binary, with its append-only file."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [str(valkey_binary()), "--bind", "127.0.0.1", "--port", str(self.port),
             "--dir", str(self.folder), "--appendonly", "yes", "--save", ""],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        client = redis.Redis.from_url(self.url)
        for _ in range(100):
            try:
                client.ping()
                return
            except redis.ConnectionError:
                time.sleep(0.1)
        raise RuntimeError("valkey did not start")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)


def test_broker_restart_keeps_the_queued_jobs(tmp_path, database_url):
    valkey = Valkey(tmp_path / "valkey")
    valkey.start()
    cluster = None
    try:
        cluster = Cluster.start(
            tmp_path / "stack", broker_url=valkey.url, database_url=database_url,
            models=[EMBED], extra_env=FAST_SWEEP,
        )  # fmt: skip
        cluster.processes.start("beat", "beat")
        worker = next(
            p for p in cluster.processes.started if p.name.startswith("worker")
        )
        worker.stop()  # warm shutdown: nothing in flight

        request = {"model": EMBED, "input": ["a queued text"]}
        ids = _submit(cluster.url, request, 50)
        queue = f"{cluster.namespace}.model.{EMBED}"
        assert redis.Redis.from_url(valkey.url).llen(queue) == 50

        valkey.stop()
        # Accepted while the broker is down: saved, sent when it is back.
        ids += _submit(cluster.url, request, 5)
        valkey.start()
        assert redis.Redis.from_url(valkey.url).llen(queue) >= 50

        cluster.processes.start("worker-2", "worker", "--models", EMBED)
        _assert_exactly_once(cluster.url, database_url, ids)
    finally:
        if cluster is not None:
            cluster.stop()
        valkey.stop()
