"""The pieces of durable jobs on their own: the streaming multipart reader,
the batch line checker, webhook address rules, backoff, and the guarded
claim/settle/sweep SQL on a scratch PostgreSQL database."""

from __future__ import annotations

import json

import asyncpg
import pytest

from server.errors import InvalidRequest
from server.jobs import outbox, recovery, states, store
from server.jobs.jsonl import BatchLineChecker
from server.jobs.multipart import MultipartReader, PartData, PartEnd, PartStart
from server.jobs.webhooks import check_url
from server.settings import Settings
from tests import authutil
from tests.authutil import bearer, running

database_url = authutil.database_url
settings = authutil.settings


def _form(boundary: str, parts: list[tuple[str, str | None, bytes]]) -> bytes:
    body = b""
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"'
        if filename:
            disposition += f'; filename="{filename}"'
        body += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode()
        body += data + b"\r\n"
    return body + f"--{boundary}--\r\n".encode()


@pytest.mark.parametrize("chunk", [1, 7, 4096])
def test_multipart_reader_finds_parts_across_any_chunking(chunk):
    payload = b"line one\r\n--almost-a-boundary\r\nline two\n"
    body = _form("BOUND", [("purpose", None, b"batch"), ("file", "a.jsonl", payload)])
    reader = MultipartReader(b"BOUND")
    events = []
    for start in range(0, len(body), chunk):
        events.extend(reader.feed(body[start : start + chunk]))
    assert reader.finished
    starts = [e for e in events if isinstance(e, PartStart)]
    assert starts == [PartStart("purpose", None), PartStart("file", "a.jsonl")]
    data: dict[str, bytes] = {}
    current = None
    for event in events:
        if isinstance(event, PartStart):
            current = event.name
            data[current] = b""
        elif isinstance(event, PartData):
            data[current] += event.data
    assert data == {"purpose": b"batch", "file": payload}
    assert sum(isinstance(e, PartEnd) for e in events) == 2


def _check(text: str) -> str | None:
    checker = BatchLineChecker(max_lines=10)
    for piece in (text[:5], text[5:]):
        checker.feed(piece.encode())
    checker.finish()
    return checker.error


GOOD = {"custom_id": "a", "method": "POST", "url": "/v1/embeddings",
        "body": {"model": "m", "input": "x"}}  # fmt: skip


@pytest.mark.parametrize(
    "lines,error",
    [
        ([GOOD], None),
        ([GOOD, "", {**GOOD, "custom_id": "b"}], None),
        ([GOOD, GOOD], "line 2: custom_id 'a' is used twice"),
        ([GOOD, [1]], "line 2: expected a JSON object, got list"),
        ([{**GOOD, "method": "GET"}], "line 1: 'method' must be \"POST\""),
        ([{**GOOD, "url": "/v1/images"}], "line 1: 'url' '/v1/images' is not one"),
        ([{**GOOD, "body": {"input": "x"}}], "line 1: 'body.model' must name"),
        ([], "the file holds no requests"),
    ],
)
def test_batch_lines_are_checked_one_by_one(lines, error):
    text = "\n".join(line if isinstance(line, str) else json.dumps(line)
                     for line in lines)  # fmt: skip
    found = _check(text)
    if error is None:
        assert found is None
    else:
        assert found is not None and found.startswith(error), found


def test_a_broken_json_line_is_named_with_its_column():
    assert _check(json.dumps(GOOD) + "\n{oops").startswith(
        "line 2: not valid JSON (Expecting property name"
    )


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:9/hook", "http://[::1]:9/hook", "https://localhost/h"],
)
def test_loopback_webhooks_are_allowed(url):
    assert check_url(url, Settings()) == url


@pytest.mark.parametrize(
    "url,why",
    [
        ("http://169.254.169.254/latest/meta-data", "link-local"),
        ("http://[fe80::1]/", "link-local"),
        ("http://[::ffff:169.254.169.254]/", "link-local"),
        ("http://10.0.0.5/hook", "private range"),
        ("http://192.168.1.2/hook", "private range"),
        ("http://[fd00::1]/hook", "private range"),
        ("http://0.0.0.0/hook", "link-local or reserved"),
        ("http://example.com/hook", "neither loopback nor allowed"),
        ("ftp://127.0.0.1/hook", "http or https"),
    ],
)
def test_other_webhooks_are_refused_by_default(url, why):
    with pytest.raises(InvalidRequest) as caught:
        check_url(url, Settings())
    assert why in caught.value.message and url in caught.value.message
    assert caught.value.param == "webhook_url"


def test_configuration_allows_named_hosts_and_private_ranges_not_metadata():
    settings = Settings(
        webhook_allowed_hosts="hooks.internal, ci.example",
        webhook_allow_private=True,
    )
    assert check_url("https://hooks.internal/x", settings)
    assert check_url("http://10.1.2.3/x", settings)
    with pytest.raises(InvalidRequest):
        check_url("http://169.254.169.254/", settings)


def test_backoff_grows_exponentially_with_jitter_and_a_cap():
    for attempt, ceiling in [(1, 2.0), (2, 4.0), (3, 8.0), (10, 30.0)]:
        waits = [states.backoff_s(attempt, base=2.0, cap=30.0) for _ in range(50)]
        assert all(ceiling / 2 <= w <= ceiling for w in waits)
        assert len(set(waits)) > 1


def test_transient_errors_retry_and_bad_input_does_not():
    assert states.is_transient("worker_lost")
    assert states.is_transient("upstream_error")
    assert not states.is_transient("invalid_request_error")
    assert not states.is_transient("context_length_exceeded")


# --- the guarded SQL, on a scratch database --------------------------------


async def _new_job(conn, **fields) -> str:
    job = store.NewJob(
        tenant="t", key_id=None, endpoint=states.EMBEDDING, model="m",
        request={"model": "m", "input": "x"}, payload={"input": ["x"]},
        priority=5, queue="q", max_attempts=fields.pop("max_attempts", 3),
        **fields,
    )  # fmt: skip
    row, created = await store.insert_job(conn, job)
    assert created
    return row["id"]


async def test_a_redelivered_or_late_message_changes_nothing(database_url):
    conn = await asyncpg.connect(database_url)
    try:
        job_id = await _new_job(conn)
        first = await store.claim(conn, job_id=job_id, attempt=1, worker="w1")
        assert first["state"] == "running" and first["attempt"] == 1
        # The same message again (a redelivery) cannot start it twice.
        assert await store.claim(conn, job_id=job_id, attempt=1, worker="w2") is None

        done = await store.settle(conn, job_id=job_id, attempt=1, result={"ok": 1})
        assert done.state == "succeeded"
        # A second outcome for the same attempt is discarded.
        again = await store.settle(conn, job_id=job_id, attempt=1, result={"ok": 2})
        assert again is None
        row = await store.get_job(conn, tenant="t", job_id=job_id)
        assert row["result"] == {"ok": 1} and len(row["attempts"]) == 1
        kinds = [e["state"] for e in await store.events_after(
            conn, job_id=job_id, after=0)]  # fmt: skip
        assert kinds == ["queued", "running", "succeeded"]
    finally:
        await conn.close()


class _Probes:
    def __init__(self, alive: bool):
        self.alive = alive
        self.sent: list[outbox.Pending] = []

    def probes(self) -> recovery.Probes:
        def send(messages):
            self.sent.extend(messages)
            return [m.job_id for m in messages]

        return recovery.Probes(
            worker_alive=lambda model, worker: self.alive,
            queue_depth=lambda queue: 0,
            send=send,
        )


async def test_the_sweep_requeues_a_dead_workers_job_once(database_url, tmp_path):
    settings = Settings(worker_heartbeat_s=0.01, job_backoff_s=0.01)
    conn = await asyncpg.connect(database_url)
    try:
        job_id = await _new_job(conn)
        await store.claim(conn, job_id=job_id, attempt=1, worker="dead")
        await conn.execute("UPDATE jobs SET started_at = now() - interval '1 minute'")

        alive = _Probes(alive=True)
        await recovery.sweep(conn, settings=settings, probes=alive.probes(),
                             folder=tmp_path)  # fmt: skip
        assert (await store.job_state(conn, job_id)) == ("running", 1)

        dead = _Probes(alive=False)
        report = await recovery.sweep(
            conn, settings=settings, probes=dead.probes(), folder=tmp_path
        )
        assert report.requeued == 1
        row = await store.get_job(conn, tenant="t", job_id=job_id)
        assert row["state"] == "queued"
        assert row["attempts"][0]["outcome"] == "worker_lost"

        # The dead worker's result arrives late: discarded.
        late = await store.settle(conn, job_id=job_id, attempt=1, result={"x": 1})
        assert late is None

        await conn.execute("UPDATE jobs SET not_before = now() - interval '1 s'")
        report = await recovery.sweep(
            conn, settings=settings, probes=dead.probes(), folder=tmp_path
        )
        assert [(m.job_id, m.attempt) for m in dead.sent] == [(job_id, 2)]
        # The old message, redelivered, cannot start attempt 2.
        assert await store.claim(conn, job_id=job_id, attempt=1, worker="w") is None
        assert await store.claim(conn, job_id=job_id, attempt=2, worker="w")
    finally:
        await conn.close()


async def test_the_last_attempt_lost_leaves_the_job_failed(database_url, tmp_path):
    settings = Settings(worker_heartbeat_s=0.01)
    conn = await asyncpg.connect(database_url)
    try:
        hook = "http://127.0.0.1:9/hook"
        job_id = await _new_job(conn, max_attempts=1, webhook_url=hook)
        await store.claim(conn, job_id=job_id, attempt=1, worker="dead")
        await conn.execute("UPDATE jobs SET started_at = now() - interval '1 minute'")
        report = await recovery.sweep(
            conn, settings=settings, probes=_Probes(alive=False).probes(),
            folder=tmp_path,
        )  # fmt: skip
        assert report.failed == 1
        # Its webhook is the sweep's to call.
        assert [(e.job_id, e.state) for e in report.ended] == [(job_id, "failed")]
        row = await store.get_job(conn, tenant="t", job_id=job_id)
        assert row["state"] == "failed" and row["error"]["code"] == "worker_lost"
    finally:
        await conn.close()


async def test_a_job_past_its_deadline_is_never_started_and_expires_once(
    database_url, tmp_path
):
    conn = await asyncpg.connect(database_url)
    try:
        hook = "http://127.0.0.1:9/hook"
        late = await _new_job(conn, webhook_url=hook)
        later = await _new_job(conn)
        await conn.execute("UPDATE jobs SET deadline = now() - interval '1 s'")
        # Its message arrives after the deadline: the claim refuses it.
        assert await store.claim(conn, job_id=late, attempt=1, worker="w") is None
        assert await store.job_state(conn, late) == ("queued", 0)

        # The worker that met the message expires it, once.
        expired = await store.expire_due(conn, job_id=late)
        assert [(e.job_id, e.state, e.webhook_url) for e in expired] == [
            (late, "expired", hook)
        ]
        assert await store.expire_due(conn, job_id=late) == []
        # The sweep expires the rest; only a job with a webhook is reported.
        report = await recovery.sweep(
            conn, settings=Settings(), probes=_Probes(alive=True).probes(),
            folder=tmp_path,
        )  # fmt: skip
        assert report.expired == 1 and report.ended == []
        assert await store.job_state(conn, later) == ("expired", 0)
        assert "ended" not in report.summary()
    finally:
        await conn.close()


async def test_an_upload_is_stopped_at_the_size_limit_while_streaming(settings):
    settings = settings.model_copy(update={"file_max_bytes": 1000})
    line = json.dumps({**GOOD, "custom_id": "{}"}) + "\n"

    async def chunks():
        head = (
            b'--B\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch'
            b'\r\n--B\r\nContent-Disposition: form-data; name="file";'
            b' filename="big.jsonl"\r\n\r\n'
        )
        yield head
        for i in range(100):  # far past the limit, with no Content-Length
            yield line.replace("{}", str(i)).encode()
        yield b"\r\n--B--\r\n"

    async with running(settings) as api:
        key, _ = await api.key("acme", "inference")
        reply = await api.client.post(
            "/v1/files",
            content=chunks(),
            headers={"Content-Type": "multipart/form-data; boundary=B", **bearer(key)},
        )
    assert reply.status_code == 413, reply.text
    error = reply.json()["error"]
    assert error["code"] == "file_too_large" and "1000 bytes" in error["message"]
    folder = settings.data_dir / "files"
    assert not folder.exists() or list(folder.iterdir()) == []
