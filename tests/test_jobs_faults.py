"""Fault tests with real processes: every accepted job ends succeeded
exactly once, with no loss and no duplicate effect, when a worker is
SIGKILLed amid running and queued jobs (Redis and RabbitMQ brokers), when
the broker stops and restarts with jobs queued (a Valkey server, which is
the embedded broker's binary, and RabbitMQ), and when the API is killed
and restarted while clients follow jobs' events and submit new ones.

Each test starts its own API, workers and beat (the sweep recovers lost
work) on the machine's PostgreSQL, with a Redis of its own for results and
liveness. A broker that is stopped is the test's own too; the SIGKILL test
uses the machine's RabbitMQ, which it never stops.
"""

from __future__ import annotations

import asyncio
import re
import signal
import threading
import time

import asyncpg
import httpx
import pytest
import redis

from server.embedded_valkey import valkey_binary
from server.settings import Settings
from tests.brokerutil import (
    RabbitNode,
    RedisServer,
    drop_rabbit_queues,
)
from tests.opsutil import job_events
from tests.stackutil import Cluster, create_database, drop_database, wait_ready

pytestmark = pytest.mark.stack

SYSTEM_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
SYSTEM_RABBITMQ = "amqp://guest:guest@127.0.0.1:5672//"
CHAT = "smollm2-135m-instruct"
EMBED = "all-minilm-l6-v2"
FINISHED = {"succeeded", "failed", "cancelled", "expired"}
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


@pytest.fixture
def redis_server(tmp_path):
    """A Redis of the test's own: results and liveness, or the broker."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


def _submit(url: str, request: dict, count: int, **fields) -> list[str]:
    ids = []
    for _ in range(count):
        body = {"request": request, **fields}
        reply = httpx.post(f"{url}/v1/jobs", json=body, timeout=60)
        assert reply.status_code == 202, reply.text
        ids.append(reply.json()["id"])
    return ids


def _jobs(url: str) -> dict[str, dict]:
    """Every job of the stack (its own database), read from the job list."""
    seen: dict[str, dict] = {}
    after = None
    while True:
        params = {"limit": 100, **({"after": after} if after else {})}
        reply = httpx.get(f"{url}/v1/jobs", params=params, timeout=10)
        assert reply.status_code == 200, reply.text
        page = reply.json()
        seen.update({row["id"]: row for row in page["data"]})
        if not page["has_more"]:
            return seen
        after = page["last_id"]


def _states(url: str, ids: list[str]) -> dict[str, str]:
    jobs = _jobs(url)
    return {job_id: jobs.get(job_id, {}).get("state", "missing") for job_id in ids}


def _wait_finished(url: str, ids: list[str], timeout: float = 480) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while True:
        states = _states(url, ids)
        active = [s for s in states.values() if s in ("queued", "running")]
        if not active or time.monotonic() > deadline:
            return states
        time.sleep(0.5)


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


def _assert_exactly_once(
    url: str, database_url: str, ids: list[str], timeout: float = 480
) -> None:
    states = _wait_finished(url, ids, timeout)
    assert set(states.values()) == {"succeeded"}, states
    effects = _effects(database_url, ids)
    assert effects == {job_id: 1 for job_id in ids}


# --- a worker SIGKILLed amid running and queued jobs -------------------------


def _wait_live(redis_url: str, namespace: str, model: str, count: int) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        deadline = time.monotonic() + 240
        while client.zcard(f"{namespace}:live:{model}") < count:
            assert time.monotonic() < deadline, "the workers did not start"
            time.sleep(0.5)
    finally:
        client.close()


def _by(attempt: dict, pid: int) -> bool:
    """Was ``attempt`` claimed by the worker process ``pid``? (Worker ids
    are ``models@host:pid``, maybe followed by ``#incarnation``.)"""
    return re.search(rf":{pid}(#|$)", attempt.get("worker") or "") is not None


@pytest.mark.parametrize("broker", ["redis", "rabbitmq"])
def test_sigkill_a_worker_amid_running_and_queued_jobs(
    tmp_path, database_url, redis_server, broker
):
    if broker == "redis":
        urls = {"broker_url": redis_server.url}
    else:
        urls = {"broker_url": SYSTEM_RABBITMQ, "redis_url": redis_server.url}
    cluster = Cluster.start(
        tmp_path / "stack", database_url=database_url, models=[],
        extra_env={**FAST_SWEEP, "HEARTH_WORKER_CONCURRENCY": "8"}, **urls,
    )  # fmt: skip
    try:
        cluster.processes.start("beat", "beat")
        # Two workers for the model, loading side by side: one is killed,
        # the other carries on with what it leaves.
        doomed = cluster.processes.start("worker-1", "worker", "--models", CHAT)
        cluster.processes.start("worker-2", "worker", "--models", CHAT)
        _wait_live(redis_server.url, cluster.namespace, CHAT, 2)
        request = {
            "model": CHAT,
            "messages": [{"role": "user", "content": "Tell me about rivers."}],
            # Short, but with eight at a time per worker some are always
            # running and others still queued when the worker is killed.
            "max_tokens": 6,
        }
        # Both of the model's queues: the interactive one and the batch one
        # (read on its own channel, see workers/batch_consumer.py).
        ids = []
        for _ in range(25):
            ids += _submit(cluster.url, request, 1)
            ids += _submit(cluster.url, request, 1, priority="background")
        pid = doomed.popen.pid
        deadline = time.monotonic() + 300
        while not any(
            job["state"] == "running" and _by(job["attempt_history"][-1], pid)
            for job in _jobs(cluster.url).values()
        ):
            assert time.monotonic() < deadline, "nothing started on worker-1"
            time.sleep(0.1)

        doomed.stop(signal.SIGKILL)
        before = _states(cluster.url, ids)
        assert "running" in before.values() and "queued" in before.values()

        _assert_exactly_once(cluster.url, database_url, ids)
        lost = [job for job in _jobs(cluster.url).values() if job["attempts"] > 1]
        assert lost, "no job was recovered from the killed worker"
        for job in lost:
            first = job["attempt_history"][0]
            assert first["outcome"] == "worker_lost" and _by(first, pid), job
    finally:
        cluster.stop()
        if broker == "rabbitmq":
            drop_rabbit_queues(SYSTEM_RABBITMQ, _queues(cluster.namespace, CHAT))


def _queues(namespace: str, model: str) -> list[str]:
    base = f"{namespace}.model.{model}"
    return [base, f"{base}.batch", f"{namespace}.maintenance"]


# --- the broker stopped and restarted with jobs queued -----------------------


def _broker(kind: str, tmp_path):
    if kind == "valkey":
        # The embedded broker's binary, run as an external Redis would be
        # (Debian's redis-server behaves the same to kombu, and serves the
        # SIGKILL test above).
        return RedisServer(tmp_path / "valkey", binary=valkey_binary())
    return RabbitNode(tmp_path / "rabbitmq")


def _depths(broker, queues: list[str], want: tuple[int, ...]) -> tuple[int, ...]:
    """The queues' depths once they reach ``want`` (RabbitMQ counts a
    message a moment after its publish returns), or after 10 s."""
    deadline = time.monotonic() + 10
    while True:
        depths = tuple(broker.depth(q) for q in queues)
        if all(d >= w for d, w in zip(depths, want, strict=True)):
            return depths
        if time.monotonic() > deadline:
            return depths
        time.sleep(0.1)


@pytest.mark.parametrize("kind", ["valkey", "rabbitmq"])
def test_broker_restart_keeps_the_queued_jobs(
    tmp_path, database_url, redis_server, kind
):
    broker = _broker(kind, tmp_path)
    broker.start()
    # RabbitMQ carries no results: those go to the test's other Redis.
    redis_url = redis_server.url if kind == "rabbitmq" else ""
    cluster = None
    try:
        # No worker yet: everything submitted stays queued in the broker.
        cluster = Cluster.start(
            tmp_path / "stack", broker_url=broker.url, redis_url=redis_url,
            database_url=database_url, models=[], extra_env=FAST_SWEEP,
        )  # fmt: skip
        cluster.processes.start("beat", "beat")

        request = {"model": EMBED, "input": ["a queued text"]}
        ids = _submit(cluster.url, request, 25)
        ids += _submit(cluster.url, request, 25, priority="background")
        queue = f"{cluster.namespace}.model.{EMBED}"
        assert _depths(broker, [queue, f"{queue}.batch"], (25, 25)) == (25, 25)

        broker.stop()
        # Accepted while the broker is down: saved, sent when it is back.
        ids += _submit(cluster.url, request, 1)
        broker.start()
        # The messages were on disk: the broker kept them (and the sweep
        # may have sent the new one already).
        depths = _depths(broker, [queue, f"{queue}.batch"], (25, 25))
        assert depths[0] >= 25 and depths[1] == 25

        cluster.processes.start("worker", "worker", "--models", EMBED)
        _assert_exactly_once(cluster.url, database_url, ids)

        # Again, with the worker up: it reconnects, to its queues and to the
        # batch queue's own channel alike.
        broker.stop()
        broker.start()
        more = _submit(cluster.url, request, 3)
        more += _submit(cluster.url, request, 3, priority="background")
        _assert_exactly_once(cluster.url, database_url, more, timeout=120)
        if kind == "rabbitmq":
            # The batch queue is read by a consumer of its own, with its own
            # small prefetch (HEARTH_WORKER_BATCH_PREFETCH).
            prefetch = Settings.model_fields["worker_batch_prefetch"].default
            assert broker.consumer_prefetch()[f"{queue}.batch"] == [prefetch]
    finally:
        if cluster is not None:
            cluster.stop()
        broker.stop()


# --- the API killed and restarted under watching clients ---------------------


class Watcher(threading.Thread):
    """Follows one job's events as a browser's EventSource does: when the
    connection drops it reconnects with Last-Event-ID, until the job's final
    state has arrived. An event counts only once its blank line is read."""

    def __init__(self, url: str, job_id: str, *, timeout: float = 300) -> None:
        super().__init__(daemon=True)
        self.url = f"{url}/v1/jobs/{job_id}/events"
        self.job_id = job_id
        self.deadline = time.monotonic() + timeout
        self.events: list[tuple[int, str, dict]] = []
        self.connections = 0
        self.error: BaseException | None = None

    def finished(self) -> bool:
        return bool(self.events) and (
            self.events[-1][1] == "state" and self.events[-1][2]["state"] in FINISHED
        )

    def run(self) -> None:
        try:
            while not self.finished():
                assert time.monotonic() < self.deadline, "events never ended"
                headers = {}
                if self.events:
                    headers["Last-Event-ID"] = str(self.events[-1][0])
                try:
                    self._read(headers)
                except httpx.TransportError:
                    time.sleep(0.1)  # the API is down: try again
        except BaseException as exc:  # reported by the test
            self.error = exc

    def _read(self, headers: dict[str, str]) -> None:
        timeout = httpx.Timeout(10, read=30)
        with httpx.stream("GET", self.url, headers=headers, timeout=timeout) as reply:
            if reply.status_code >= 500:
                return  # starting up: try again
            assert reply.status_code == 200, reply.read()
            self.connections += 1
            # Appended as they come: a cut connection keeps what it read.
            for event in job_events(reply.iter_lines()):
                self.events.append(event)


class KeyedSubmitter(threading.Thread):
    """Submits jobs one after another, each with its own idempotency key,
    retrying a key until it is answered: a request cut off by the restart
    may or may not have been saved, and the key makes that safe. It pauses
    after ``pause_after`` jobs until ``resume`` is set."""

    def __init__(self, url: str, request: dict, count: int, pause_after: int):
        super().__init__(daemon=True)
        self.url = url
        self.request = request
        self.keys = [f"restart-{i}" for i in range(count)]
        self.pause_after = pause_after
        self.resume = threading.Event()
        self.accepted: dict[str, str] = {}
        self.retries = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        deadline = time.monotonic() + 180
        try:
            for number, key in enumerate(self.keys):
                if number == self.pause_after:
                    assert self.resume.wait(120), "never resumed"
                while key not in self.accepted:
                    assert time.monotonic() < deadline, "submissions never answered"
                    try:
                        reply = httpx.post(
                            f"{self.url}/v1/jobs", timeout=10,
                            json={"request": self.request, "idempotency_key": key},
                        )  # fmt: skip
                    except httpx.TransportError:
                        self.retries += 1
                        time.sleep(0.1)
                        continue
                    if reply.status_code >= 500:
                        self.retries += 1
                        time.sleep(0.1)
                        continue
                    assert reply.status_code in (200, 202), reply.text
                    self.accepted[key] = reply.json()["id"]
        except BaseException as exc:  # reported by the test
            self.error = exc


def _events(url: str, job_id: str) -> list[tuple[int, str, dict]]:
    watcher = Watcher(url, job_id, timeout=30)
    watcher.run()
    assert watcher.error is None and watcher.connections == 1
    return watcher.events


def _last_event_id(database_url: str) -> int:
    async def fetch() -> int:
        conn = await asyncpg.connect(database_url)
        try:
            return await conn.fetchval("SELECT max(id) FROM job_events")
        finally:
            await conn.close()

    return asyncio.run(fetch())


def _all_job_ids(database_url: str) -> set[str]:
    async def fetch() -> set[str]:
        conn = await asyncpg.connect(database_url)
        try:
            return {r["id"] for r in await conn.fetch("SELECT id FROM jobs")}
        finally:
            await conn.close()

    return asyncio.run(fetch())


def test_api_restart_while_clients_watch_events(tmp_path, database_url, redis_server):
    cluster = Cluster.start(
        tmp_path / "stack", broker_url=redis_server.url, database_url=database_url,
        models=[CHAT],
        # Two at a time: some jobs finish while the API is down, others
        # only after it is back.
        extra_env={**FAST_SWEEP, "HEARTH_WORKER_CONCURRENCY": "2"},
    )  # fmt: skip
    try:
        cluster.processes.start("beat", "beat")
        story = {
            "model": CHAT,
            "messages": [{"role": "user", "content": "Tell me about the sea."}],
            "max_tokens": 24,
        }
        ids = _submit(cluster.url, story, 6)
        watchers = [Watcher(cluster.url, job_id) for job_id in ids]
        for watcher in watchers:
            watcher.start()
        submitter = KeyedSubmitter(
            cluster.url, {**story, "max_tokens": 2}, count=8, pause_after=2
        )
        submitter.start()

        deadline = time.monotonic() + 120
        while not (
            all(w.events for w in watchers)
            and any(e[2].get("state") == "running" for w in watchers for e in w.events)
            and len(submitter.accepted) >= 2
        ):
            assert time.monotonic() < deadline, "no job started"
            time.sleep(0.05)

        api = next(p for p in cluster.processes.started if p.name == "api")
        api.stop(signal.SIGKILL)
        # Events past this one were written while no API ran, or after.
        killed_at = _last_event_id(database_url)
        submitter.resume.set()  # and meets the API down
        cluster.processes.started.remove(api)
        time.sleep(1)  # down for a moment: work goes on without it
        cluster.processes.start("api-2", "api")
        wait_ready(cluster.url, cluster.processes, models=[CHAT])

        for thread in [*watchers, submitter]:
            thread.join(240)
            assert not thread.is_alive()
            assert thread.error is None, repr(thread.error)
        later = [w for w in watchers if w.events[-1][0] > killed_at]
        assert later, "every job ended before the API was killed"
        for watcher in later:
            assert watcher.connections >= 2, "a client did not reconnect"
        assert submitter.retries, "no submission met the restart"

        # Each client's events, across its connections, are the job's whole
        # log: in order, none missing, none twice.
        for watcher in watchers:
            assert watcher.events == _events(cluster.url, watcher.job_id)
            states = [d["state"] for _, kind, d in watcher.events if kind == "state"]
            assert states == ["queued", "running", "succeeded"], watcher.job_id

        keyed = list(submitter.accepted.values())
        assert len(set(keyed)) == len(submitter.keys)
        # Nothing was saved that no client holds an id for.
        assert _all_job_ids(database_url) == set(ids) | set(keyed)
        _assert_exactly_once(cluster.url, database_url, ids + keyed)
    finally:
        cluster.stop()
