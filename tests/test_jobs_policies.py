"""What a job's lifetime promises, on a real stack: a deadline that passes
while the job waits expires it unrun (and calls its webhook); a batch past
its completion window is OpenAI's ``expired``, with what finished in its
output file; the completion webhook reaches a loopback server with the
final state, and a webhook to a metadata or private address is refused at
submission; and a batch backlog on a model neither fills its worker's
prefetch nor holds up an interactive request to the same model.

One stack for the module (API, a chat worker, beat) on a Redis broker of
its own, so that its unacknowledged messages can be counted.
"""

from __future__ import annotations

import asyncio
import io
import json
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import asyncpg
import httpx
import pytest
import redis

from tests.brokerutil import RedisServer
from tests.stackutil import Cluster, create_database, drop_database

pytestmark = pytest.mark.stack

SYSTEM_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
CHAT = "smollm2-135m-instruct"
BATCH_PREFETCH = 2
BATCH_DONE = {"completed", "failed", "expired", "cancelled"}


class Stack:
    def __init__(self, cluster: Cluster, broker: RedisServer, database_url: str):
        self.cluster = cluster
        self.url = cluster.url
        self.broker = broker
        self.database_url = database_url
        self.batch_queue = f"{cluster.namespace}.model.{CHAT}.batch"

    def sql(self, query: str, *args):
        async def run():
            conn = await asyncpg.connect(self.database_url)
            try:
                return await conn.fetch(query, *args)
            finally:
                await conn.close()

        return asyncio.run(run())

    def batch_messages(self) -> tuple[int, int]:
        """(waiting in the batch queue, taken by a worker but unacknowledged)."""
        client = redis.Redis.from_url(self.broker.url)
        try:
            waiting = client.llen(self.batch_queue)
            unacked = 0
            for raw in client.hvals("unacked"):
                _, exchange, routing_key = json.loads(raw)
                unacked += self.batch_queue in (exchange, routing_key)
            return waiting, unacked
        finally:
            client.close()

    def worker_log(self) -> str:
        worker = next(
            p for p in self.cluster.processes.started if p.name.startswith("worker")
        )
        return worker.log.read_text(errors="replace")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    root = tmp_path_factory.mktemp("policies")
    broker = RedisServer(root / "redis")
    broker.start()
    database_url = create_database(SYSTEM_PG)
    cluster = None
    try:
        cluster = Cluster.start(
            root / "stack", broker_url=broker.url, database_url=database_url,
            models=[CHAT],
            extra_env={
                "HEARTH_JOB_SWEEP_S": "1",
                "HEARTH_WORKER_BATCH_PREFETCH": str(BATCH_PREFETCH),
            },
        )  # fmt: skip
        cluster.processes.start("beat", "beat")
        yield Stack(cluster, broker, database_url)
    finally:
        if cluster is not None:
            cluster.stop()
        drop_database(database_url)
        broker.stop()


def _chat(text: str, max_tokens: int) -> dict:
    return {
        "model": CHAT,
        "messages": [{"role": "user", "content": text}],
        "max_tokens": max_tokens,
    }


def _job(stack: Stack, job_id: str) -> dict:
    return httpx.get(f"{stack.url}/v1/jobs/{job_id}", timeout=10).json()


def _wait_job(stack: Stack, job_id: str, states: set[str], timeout=120) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = _job(stack, job_id)
        if job["state"] in states or time.monotonic() > deadline:
            return job
        time.sleep(0.2)


def _batch(stack: Stack, lines: int, max_tokens: int, prefix: str) -> dict:
    """A batch of ``lines`` chat requests, in progress."""
    body = "".join(
        json.dumps(
            {
                "custom_id": f"{prefix}-{i}",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": _chat(f"Say {i}.", max_tokens),
            }
        )
        + "\n"
        for i in range(lines)
    ).encode()
    upload = httpx.post(
        f"{stack.url}/v1/files",
        files={"file": ("lines.jsonl", io.BytesIO(body))},
        data={"purpose": "batch"},
        timeout=30,
    )
    assert upload.status_code == 200, upload.text
    reply = httpx.post(
        f"{stack.url}/v1/batches",
        json={
            "input_file_id": upload.json()["id"],
            "endpoint": "/v1/chat/completions",
            "completion_window": "24h",
        },
        timeout=60,
    )
    assert reply.status_code == 200, reply.text
    return reply.json()


def _get_batch(stack: Stack, batch_id: str) -> dict:
    return httpx.get(f"{stack.url}/v1/batches/{batch_id}", timeout=10).json()


def _wait_batch(stack: Stack, batch_id: str, done=lambda b: False, timeout=180):
    deadline = time.monotonic() + timeout
    while True:
        batch = _get_batch(stack, batch_id)
        if batch["status"] in BATCH_DONE or done(batch):
            return batch
        assert time.monotonic() < deadline, batch
        time.sleep(0.2)


def _lines(stack: Stack, file_id: str | None) -> list[dict]:
    if file_id is None:
        return []
    reply = httpx.get(f"{stack.url}/v1/files/{file_id}/content", timeout=10)
    return [json.loads(line) for line in reply.text.splitlines()]


def _drain(stack: Stack) -> None:
    """Wait until the worker has taken (and skipped) every message left for
    lines that will never run, so that the next test starts idle."""
    deadline = time.monotonic() + 120
    while stack.batch_messages() != (0, 0):
        assert time.monotonic() < deadline, stack.batch_messages()
        time.sleep(0.2)


def _cancel_and_drain(stack: Stack, batch_id: str) -> None:
    httpx.post(f"{stack.url}/v1/batches/{batch_id}/cancel", timeout=30)
    _wait_batch(stack, batch_id)
    _drain(stack)


class Hooks:
    """A loopback HTTP server that records the webhook calls it gets."""

    def __init__(self) -> None:
        calls = self.calls = []
        arrived = self.arrived = threading.Condition()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with arrived:
                    calls.append(
                        (self.path, self.headers["Content-Type"], json.loads(body))
                    )
                    arrived.notify_all()
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, count: int, timeout: float = 120) -> list:
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.calls) >= count, timeout)
            return list(self.calls)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hooks():
    server = Hooks()
    yield server
    server.close()


# --- deadlines -----------------------------------------------------------------


def test_a_job_whose_deadline_passes_while_queued_expires_and_never_runs(stack, hooks):
    backlog = _batch(stack, 40, max_tokens=16, prefix="ahead")
    # Behind the backlog on the batch queue, due a second from now.
    deadline = datetime.now(UTC) + timedelta(seconds=1)
    reply = httpx.post(
        f"{stack.url}/v1/jobs",
        json={
            "request": _chat("Too late.", 4),
            "priority": "background",
            "deadline": deadline.isoformat(),
            "webhook_url": f"{hooks.url}/late",
        },
        timeout=30,
    )
    assert reply.status_code == 202, reply.text
    job_id = reply.json()["id"]
    assert reply.json()["deadline"] == int(deadline.timestamp())

    expired = _wait_job(stack, job_id, {"expired", "running", "succeeded"})
    assert expired["state"] == "expired", expired
    # Its message is still in the queue; let the worker reach it.
    _cancel_and_drain(stack, backlog["id"])

    job = _job(stack, job_id)
    assert job["state"] == "expired"
    assert job["error"]["code"] == "expired"
    assert job["error"]["message"] == "The job did not start before its deadline."
    assert (job["attempts"], job["attempt_history"]) == (0, [])
    assert job["started_at"] is None and job["result"] is None
    states = [
        json.loads(r["data"])["state"]
        for r in stack.sql(
            "SELECT data FROM job_events WHERE job_id = $1 AND kind = 'state'"
            " ORDER BY id",
            job_id,
        )
    ]
    assert states == ["queued", "expired"]
    # The worker did receive the message, and dropped it.
    skipped = [
        json.loads(line)
        for line in stack.worker_log().splitlines()
        if job_id in line and "job message skipped" in line
    ]
    assert len(skipped) == 1 and skipped[0]["attempt"] == 1
    # Whoever expired it (the sweep, or the worker meeting its message)
    # called the webhook, once.
    assert hooks.wait(1) == [
        ("/late", "application/json",
         {"id": job_id, "object": "job.event", "state": "expired"}),
    ]  # fmt: skip


def test_a_batch_past_its_completion_window_is_expired_with_partial_output(stack):
    lines = 40
    batch = _batch(stack, lines, max_tokens=8, prefix="window")
    _wait_batch(stack, batch["id"], lambda b: b["request_counts"]["completed"] >= 3)

    # The window ends now rather than in 24 hours: the batch and its lines
    # share that end (their deadline), as when the batch was created.
    stack.sql(
        "WITH b AS (UPDATE batches SET expires_at = now() WHERE id = $1"
        " RETURNING expires_at)"
        " UPDATE jobs SET deadline = (SELECT expires_at FROM b) WHERE batch_id = $1",
        batch["id"],
    )
    batch = _wait_batch(stack, batch["id"])

    assert batch["status"] == "expired", batch
    assert batch["expired_at"] is not None and batch["completed_at"] is None
    counts = batch["request_counts"]
    assert counts["total"] == lines and counts["failed"] == 0
    assert 3 <= counts["completed"] < lines
    output = _lines(stack, batch["output_file_id"])
    errors = _lines(stack, batch["error_file_id"])
    assert len(output) == counts["completed"]
    assert {line["response"]["status_code"] for line in output} == {200}
    assert len(errors) == lines - counts["completed"]
    assert {line["response"] is None for line in errors} == {True}
    assert {line["error"]["code"] for line in errors} == {"batch_expired"}
    ids = sorted(line["custom_id"] for line in output + errors)
    assert ids == sorted(f"window-{i}" for i in range(lines))
    _drain(stack)


# --- webhooks ------------------------------------------------------------------


def test_the_completion_webhook_gets_the_final_state(stack, hooks):
    good = httpx.post(
        f"{stack.url}/v1/jobs",
        json={"request": _chat("Hi.", 2), "webhook_url": f"{hooks.url}/done?n=1"},
        timeout=30,
    ).json()
    # Too long for the model: fails at once, without retries.
    bad = httpx.post(
        f"{stack.url}/v1/jobs",
        json={
            "request": _chat("word " * 12_000, 2),
            "webhook_url": f"{hooks.url}/done?n=2",
        },
        timeout=30,
    ).json()
    calls = hooks.wait(2)
    finished = {
        job_id: _wait_job(stack, job_id, {"succeeded", "failed"})
        for job_id in (good["id"], bad["id"])
    }

    assert finished[good["id"]]["state"] == "succeeded"
    assert finished[bad["id"]]["state"] == "failed"
    assert sorted(calls, key=lambda call: call[0]) == [
        ("/done?n=1", "application/json",
         {"id": good["id"], "object": "job.event", "state": "succeeded"}),
        ("/done?n=2", "application/json",
         {"id": bad["id"], "object": "job.event", "state": "failed"}),
    ]  # fmt: skip


@pytest.mark.parametrize(
    "url,why",
    [
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://[fe80::a9fe:a9fe]/", "link-local"),
        ("http://10.0.0.5/hook", "private range"),
        ("http://172.16.8.1:8080/hook", "private range"),
        ("http://192.168.1.20/hook", "private range"),
        ("http://metadata.google.internal/computeMetadata/v1/", "neither loopback"),
    ],
)
def test_a_webhook_to_a_disallowed_host_is_refused_at_submission(stack, url, why):
    before = stack.sql("SELECT count(*) AS n FROM jobs")[0]["n"]
    reply = httpx.post(
        f"{stack.url}/v1/jobs",
        json={"request": _chat("Hi.", 2), "webhook_url": url},
        timeout=30,
    )
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", "webhook_url")
    assert error["message"].startswith(f"Webhook URL {url!r} is not allowed: ")
    assert why in error["message"]
    assert "HEARTH_WEBHOOK_ALLOWED_HOSTS" in error["message"]
    assert stack.sql("SELECT count(*) AS n FROM jobs")[0]["n"] == before


# --- interactive work ahead of a batch backlog ----------------------------------


def test_a_batch_backlog_does_not_hold_up_interactive_requests(stack):
    lines = 60
    batch = _batch(stack, lines, max_tokens=16, prefix="backlog")
    batch = _wait_batch(stack, batch["id"], lambda b: b["request_counts"]["completed"])
    samples = [stack.batch_messages()]

    before = _get_batch(stack, batch["id"])["request_counts"]["completed"]
    reply: dict = {}

    def ask() -> None:
        reply["response"] = httpx.post(
            f"{stack.url}/v1/chat/completions", json=_chat("Hello!", 8), timeout=120
        )

    asking = threading.Thread(target=ask)
    asking.start()
    while asking.is_alive():
        samples.append(stack.batch_messages())
        time.sleep(0.05)
    asking.join()
    after = _get_batch(stack, batch["id"])["request_counts"]["completed"]
    samples.append(stack.batch_messages())

    assert reply["response"].status_code == 200, reply["response"].text
    assert reply["response"].json()["choices"][0]["message"]["content"]
    # The worker never took more of the backlog than its batch prefetch...
    assert max(unacked for _, unacked in samples) <= BATCH_PREFETCH, samples
    # ... so the rest stayed in the broker, for any worker of the model ...
    assert min(waiting for waiting, _ in samples) > 0, samples
    # ... and the interactive request was answered while no more than the
    # batch lines already running (and the next in line) finished.
    assert after - before <= 2 * BATCH_PREFETCH, (before, after)
    assert after < lines

    _cancel_and_drain(stack, batch["id"])
