"""Workers under stress: disconnecting clients and killed processes."""

from __future__ import annotations

import os
import signal
import time

import httpx
import pytest

pytestmark = pytest.mark.stack

COUNT = [{"role": "user", "content": "Count from 1 to 2000, separated by spaces."}]


def _workers(hearth_url: str, model: str) -> list[dict]:
    data = httpx.get(f"{hearth_url}/admin/workers", timeout=10).json()["data"]
    return [w for w in data if model in w["models"] and w["alive"]]


def _wait_for(predicate, *, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_disconnect_mid_stream_frees_the_worker(hearth_url, base_url, chat_model):
    body = {
        "model": chat_model,
        "messages": COUNT,
        "max_tokens": 2000,
        "temperature": 0,
        "stream": True,
    }
    with httpx.stream(
        "POST", f"{base_url}/chat/completions", json=body, timeout=60
    ) as reply:
        assert reply.status_code == 200
        lines = reply.iter_lines()
        received = [next(lines) for _ in range(8)]
        assert any(line.startswith("data: ") for line in received)
        # The heartbeat publishes the load once a period.
        _wait_for(
            lambda: sum(w["inflight"] for w in _workers(hearth_url, chat_model)),
            timeout=10,
            what="the worker to report the generation in flight",
        )
    # The client is gone; the generation must stop well before 2000 tokens.
    _wait_for(
        lambda: all(w["inflight"] == 0 for w in _workers(hearth_url, chat_model)),
        timeout=15,
        what="the worker to drop the cancelled generation",
    )


def test_killed_worker_is_restarted_by_supervisor(hearth_url, client, chat_model):
    before = _workers(hearth_url, chat_model)
    assert before, "no live chat worker to kill"
    victim = before[0]["pid"]
    os.kill(victim, signal.SIGKILL)

    def replaced():
        return [w for w in _workers(hearth_url, chat_model) if w["pid"] != victim]

    _wait_for(replaced, timeout=120, what="a restarted chat worker")
    reply = client.chat.completions.create(
        model=chat_model, messages=[{"role": "user", "content": "Hi"}], max_tokens=4
    )
    assert reply.choices[0].message.content
