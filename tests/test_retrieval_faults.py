"""A worker SIGKILLed in the middle of indexing a document, against the
session's real ``hearth up`` (whose supervisor restarts the worker and
whose beat sweeps lost jobs): nothing of the document is searchable while
it is redone, and the redelivered job indexes it once, with every chunk.

The kill is placed, not timed: the test waits until the job reports the
``embedding`` stage with one batch done and more to go, freezes the worker
(SIGSTOP), checks through the API that the frozen worker is still in that
stage with no chunk written, and only then sends SIGKILL.

``hearth up`` restarts a dead worker under the same name, so the sweep must
tell the new process from the one that claimed the job: the last test
checks that on a Valkey of its own.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid

import httpx
import pytest
import redis

from retrieval.pipeline import EMBED_BATCH
from server.embedded_valkey import valkey_binary
from tests.stackutil import free_port

# Many short chunks: several embedding batches, each quick on a CPU.
_SENTENCES = 320
_CHUNK_TOKENS = 32
_WORD = "quillwort"
# Each sentence names one of these, so that lexical searches of at most
# 100 hits each (the API's top_k limit) together list every chunk.
_GROUPS = ["amber", "birch", "cedar", "dune", "elm", "fern", "gorse", "heath"]


def _document() -> bytes:
    lines = [
        f"Observation {i} of the {_WORD} survey near the {_GROUPS[i % 8]} "
        f"marker: plot {i % 17} held {i % 23} plants beside stone {i % 11}."
        for i in range(_SENTENCES)
    ]
    return "\n".join(lines).encode()


def _wait_for(what: str, predicate, *, timeout: float, every: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def valkey(tmp_path):
    port = free_port()
    server = subprocess.Popen(
        [str(valkey_binary()), "--bind", "127.0.0.1", "--port", str(port),
         "--dir", str(tmp_path), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    client = redis.Redis(host="127.0.0.1", port=port)
    try:
        _wait_for("valkey", lambda: _pings(client), timeout=30)
        yield client
    finally:
        client.close()
        server.terminate()
        server.wait(10)


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


@pytest.fixture
def api(request, base_url, api_key):
    if request.config.getoption("--base-url"):
        pytest.skip(
            "freezes and kills a worker: runs only on the hearth up the test "
            "session starts, never on a server given with --base-url"
        )
    with httpx.Client(
        base_url=base_url, timeout=60, headers={"Authorization": f"Bearer {api_key}"}
    ) as client:
        yield client


@pytest.fixture
def collection(api):
    made = api.post("/collections", json={
        "name": f"kill-{uuid.uuid4().hex[:8]}", "chunk_tokens": _CHUNK_TOKENS,
        "chunk_overlap": 0,
    })  # fmt: skip
    assert made.status_code == 201, made.text
    yield made.json()["id"]
    api.delete(f"/collections/{made.json()['id']}")


def _embedding_worker(hearth_url: str, model: str) -> dict:
    workers = httpx.get(f"{hearth_url}/admin/workers", timeout=10).json()["data"]
    alive = [w for w in workers if model in w["models"] and w["alive"]]
    assert len(alive) == 1, workers
    return alive[0]


def _visible(api, collection: str, word: str = _WORD) -> list[dict]:
    reply = api.post(f"/collections/{collection}/search",
                     json={"query": word, "mode": "lexical", "top_k": 100})  # fmt: skip
    assert reply.status_code == 200, reply.text
    return reply.json()["data"]


def _all_chunks(api, collection: str) -> dict[str, int]:
    """Every searchable chunk of the collection: id -> ordinal."""
    found = {}
    for word in _GROUPS:
        hits = _visible(api, collection, word)
        assert len(hits) < 100, word
        found.update({hit["chunk_id"]: hit["ordinal"] for hit in hits})
    return found


def _freeze_mid_embedding(api, path: str, pid: int) -> None:
    """SIGSTOP the worker once the document has a batch embedded and more
    to go: nothing of it is written yet."""

    def mid_embedding():
        now = api.get(path).json()
        progress = now["progress"] or {}
        if now["stage"] == "embedding" and progress.get("embedded", 0) >= EMBED_BATCH:
            return now
        assert now["state"] not in ("ready", "failed"), now
        return None

    _wait_for("a batch of embeddings", mid_embedding, timeout=180)
    os.kill(pid, signal.SIGSTOP)


@pytest.mark.stack
def test_worker_killed_mid_document_leaves_nothing_then_indexes_once(
    api, collection, hearth_url, embedding_model
):
    worker = _embedding_worker(hearth_url, embedding_model)
    reply = api.post(f"/collections/{collection}/documents",
                     files={"file": ("survey.txt", _document())})  # fmt: skip
    assert reply.status_code == 202, reply.text
    doc = reply.json()["data"][0]
    path = f"/collections/{collection}/documents/{doc['id']}"

    _freeze_mid_embedding(api, path, worker["pid"])
    try:
        frozen = api.get(path).json()
        assert frozen["stage"] == "embedding", frozen
        chunks = frozen["progress"]["chunks"]
        assert EMBED_BATCH <= frozen["progress"]["embedded"] < chunks, frozen
        assert frozen["chunk_count"] == 0 and _visible(api, collection) == []
    finally:
        os.kill(worker["pid"], signal.SIGKILL)

    # Still running, or already requeued if the sweep saw the frozen worker
    # miss its heartbeats; either way its first attempt.
    job = api.get(f"/jobs/{doc['job_id']}").json()
    assert job["state"] in ("running", "queued") and job["attempts"] == 1, job
    deadline = time.monotonic() + 240
    while (now := api.get(path).json())["state"] not in ("ready", "failed"):
        # Until the redone attempt swaps its chunks in, none are visible.
        assert now["chunk_count"] == 0 and _visible(api, collection) == [], now
        assert time.monotonic() < deadline, f"never redone: {now}"
        time.sleep(0.2)

    assert now["state"] == "ready" and now["chunk_count"] == chunks, now
    ordinals = _all_chunks(api, collection)
    assert sorted(ordinals.values()) == list(range(chunks))
    job = api.get(f"/jobs/{doc['job_id']}").json()
    assert job["state"] == "succeeded" and job["result"]["chunks"] == chunks, job
    history = [(a["attempt"], a["outcome"]) for a in job["attempt_history"]]
    assert history[0] == (1, "worker_lost") and job["attempts"] == 2, job


@pytest.mark.stack
def test_a_job_cancelled_mid_document_writes_nothing_and_says_so(
    api, collection, hearth_url, embedding_model
):
    worker = _embedding_worker(hearth_url, embedding_model)
    reply = api.post(f"/collections/{collection}/documents",
                     files={"file": ("survey.txt", _document())})  # fmt: skip
    doc = reply.json()["data"][0]
    path = f"/collections/{collection}/documents/{doc['id']}"

    # Frozen between two batches, so that the cancel surely lands mid-run.
    _freeze_mid_embedding(api, path, worker["pid"])
    try:
        cancelled = api.post(f"/jobs/{doc['job_id']}/cancel")
        assert cancelled.status_code == 200, cancelled.text
    finally:
        os.kill(worker["pid"], signal.SIGCONT)

    def settled(path: str):
        now = api.get(path).json()
        return now if now["state"] in ("ready", "failed") else None

    final = _wait_for("the worker to stop", lambda: settled(path), timeout=120)
    assert final["state"] == "failed" and final["error"]["code"] == "cancelled"
    assert final["chunk_count"] == 0 and _visible(api, collection) == []
    assert api.get(f"/jobs/{doc['job_id']}").json()["state"] == "cancelled"

    # The worker goes on serving: the next document is indexed.
    reply = api.post(
        f"/collections/{collection}/documents",
        files={"file": ("next.txt", b"After the cancel comes a reply.")},
    )
    nxt = reply.json()["data"][0]
    path = f"/collections/{collection}/documents/{nxt['id']}"
    indexed = _wait_for("the next document", lambda: settled(path), timeout=120)
    assert indexed["state"] == "ready", indexed


def test_a_worker_restarted_under_its_name_does_not_keep_the_old_jobs(
    valkey, monkeypatch
):
    from workers import hosting, job_tasks

    def started(name: str) -> hosting.HostedModels:
        state = hosting.HostedModels(
            namespace="t", redis=valkey, worker_id=name, specs={"m": None}
        )
        hosting.Heartbeat(state, period_s=1, queues=[]).beat()
        monkeypatch.setattr(hosting, "_hosted", state)
        return state

    killed = started("embed-1@host").claimant
    assert job_tasks._worker_alive("m", killed)

    restarted = started("embed-1@host")
    assert not job_tasks._worker_alive("m", killed)
    assert job_tasks._worker_alive("m", restarted.claimant)
    # A job claimed before incarnations were recorded names the worker only.
    assert job_tasks._worker_alive("m", "embed-1@host")
    assert not job_tasks._worker_alive("m", "embed-2@host#0123456789ab")
