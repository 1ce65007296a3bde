"""Durable jobs through HTTP against the session's real ``hearth up``:
202 and polling, server-sent events in order, idempotency keys, cancel
while running, retry of a failed job, the dead-letter view."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.opsutil import job_events

pytestmark = pytest.mark.stack

FINISHED = {"succeeded", "failed", "cancelled", "expired"}


def _chat(model: str, text: str = "Say hi.", max_tokens: int = 4) -> dict:
    return {
        "model": model,
        "messages": [{"role": "user", "content": text}],
        "max_tokens": max_tokens,
    }


def _wait(url: str, job_id: str, states=FINISHED, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = httpx.get(f"{url}/v1/jobs/{job_id}", timeout=10).json()
        if job["state"] in states or time.monotonic() > deadline:
            return job
        time.sleep(0.2)


def _events(url: str, job_id: str, **headers: str) -> list[tuple[int, str, dict]]:
    with httpx.stream(
        "GET", f"{url}/v1/jobs/{job_id}/events", headers=headers, timeout=120
    ) as reply:
        assert reply.status_code == 200
        assert reply.headers["content-type"].startswith("text/event-stream")
        return list(job_events(reply.iter_lines()))


def test_a_job_is_accepted_at_once_and_polled_to_its_result(hearth_url, chat_model):
    reply = httpx.post(
        f"{hearth_url}/v1/jobs", json={"request": _chat(chat_model)}, timeout=10
    )
    assert reply.status_code == 202, reply.text
    job = reply.json()
    assert job["state"] in ("queued", "running")
    assert reply.headers["location"] == f"/v1/jobs/{job['id']}"
    assert job["type"] == "chat" and job["model"] == chat_model

    done = _wait(hearth_url, job["id"])
    assert done["state"] == "succeeded", done
    assert done["attempts"] == 1
    assert done["attempt_history"][0]["outcome"] == "succeeded"
    result = done["result"]
    assert result["object"] == "chat.completion"
    assert result["choices"][0]["message"]["role"] == "assistant"
    assert result["usage"]["completion_tokens"] <= 4
    assert done["started_at"] <= done["finished_at"]


def test_an_embedding_job_returns_the_embeddings_body(hearth_url, embedding_model):
    body = {"request": {"model": embedding_model, "input": ["a", "b"]}}
    job = httpx.post(f"{hearth_url}/v1/jobs", json=body, timeout=10).json()
    assert job["type"] == "embedding" and job["endpoint"] == "/v1/embeddings"
    done = _wait(hearth_url, job["id"])
    assert done["state"] == "succeeded", done
    assert [len(row["embedding"]) for row in done["result"]["data"]] == [384, 384]


def test_events_arrive_in_order_and_resume_after_the_last_id(hearth_url, chat_model):
    body = {"request": _chat(chat_model, "Count to twenty.", max_tokens=48)}
    job = httpx.post(f"{hearth_url}/v1/jobs", json=body, timeout=10).json()

    events = _events(hearth_url, job["id"])
    ids = [event_id for event_id, _, _ in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    states = [data["state"] for _, kind, data in events if kind == "state"]
    assert states == ["queued", "running", "succeeded"]
    assert events[-1][1] == "state"
    progress = [data for _, kind, data in events if kind == "progress"]
    tokens = [p["completion_tokens"] for p in progress]
    assert tokens == sorted(tokens)

    # A client that reconnects with Last-Event-ID gets only what followed.
    again = _events(hearth_url, job["id"], **{"Last-Event-ID": str(ids[0])})
    assert [e[0] for e in again] == ids[1:]


def test_the_same_idempotency_key_returns_the_same_job(hearth_url, embedding_model):
    key = f"idem-{time.time_ns()}"
    body = {"request": {"model": embedding_model, "input": "x"}}
    first = httpx.post(
        f"{hearth_url}/v1/jobs", json={**body, "idempotency_key": key}, timeout=10
    )
    second = httpx.post(
        f"{hearth_url}/v1/jobs", json=body, headers={"Idempotency-Key": key},
        timeout=10,
    )  # fmt: skip
    assert (first.status_code, second.status_code) == (202, 200)
    assert first.json()["id"] == second.json()["id"]

    other = {"request": {"model": embedding_model, "input": "y"}}
    clash = httpx.post(
        f"{hearth_url}/v1/jobs", json={**other, "idempotency_key": key}, timeout=10
    )
    assert clash.status_code == 409
    assert clash.json()["error"]["code"] == "conflict"
    assert key in clash.json()["error"]["message"]


def test_cancel_while_running_stops_it_and_frees_the_worker(hearth_url, chat_model):
    long = _chat(chat_model, "Write a very long story about the sea.", 1000)
    job = httpx.post(
        f"{hearth_url}/v1/jobs",
        json={"request": {**long, "temperature": 0.0}},
        timeout=10,
    ).json()
    running = _wait(hearth_url, job["id"], states={"running", *FINISHED})
    assert running["state"] == "running", running

    reply = httpx.post(f"{hearth_url}/v1/jobs/{job['id']}/cancel", timeout=10)
    assert reply.status_code == 200, reply.text
    assert reply.json()["state"] == "cancelled"
    again = httpx.post(f"{hearth_url}/v1/jobs/{job['id']}/cancel", timeout=10)
    assert again.status_code == 409

    # The worker takes the next job at once, while the cancelled one's
    # generation would still have hundreds of tokens to go.
    quick = httpx.post(
        f"{hearth_url}/v1/jobs", json={"request": _chat(chat_model)}, timeout=10
    ).json()
    assert _wait(hearth_url, quick["id"])["state"] == "succeeded"
    cancelled = httpx.get(f"{hearth_url}/v1/jobs/{job['id']}", timeout=10).json()
    assert cancelled["state"] == "cancelled" and cancelled["result"] is None
    assert cancelled["attempt_history"][-1]["outcome"] == "cancelled"
    tokens = (cancelled["progress"] or {}).get("completion_tokens", 0)
    assert tokens < 1000


def test_a_failed_job_is_dead_lettered_and_can_be_retried(hearth_url, chat_model):
    # Too long for the model's context: bad input, so no automatic retry.
    body = {"request": _chat(chat_model, "word " * 12_000)}
    job = httpx.post(f"{hearth_url}/v1/jobs", json=body, timeout=10).json()
    failed = _wait(hearth_url, job["id"])
    assert failed["state"] == "failed", failed
    assert failed["error"]["code"] == "context_length_exceeded"
    assert failed["attempts"] == 1

    dead = httpx.get(
        f"{hearth_url}/v1/jobs", params={"state": "failed", "limit": 100}, timeout=10
    ).json()
    assert job["id"] in [row["id"] for row in dead["data"]]
    assert {row["state"] for row in dead["data"]} == {"failed"}

    reply = httpx.post(f"{hearth_url}/v1/jobs/{job['id']}/retry", timeout=10)
    assert reply.status_code == 200, reply.text
    assert reply.json()["state"] == "queued"
    again = _wait(hearth_url, job["id"])
    assert again["state"] == "failed" and again["attempts"] == 2
    outcomes = [a["outcome"] for a in again["attempt_history"]]
    assert outcomes == ["context_length_exceeded"] * 2

    succeeded = httpx.post(
        f"{hearth_url}/v1/jobs", json={"request": _chat(chat_model)}, timeout=10
    ).json()
    _wait(hearth_url, succeeded["id"])
    refused = httpx.post(f"{hearth_url}/v1/jobs/{succeeded['id']}/retry", timeout=10)
    assert refused.status_code == 409
    assert "only a failed job" in refused.json()["error"]["message"]


@pytest.mark.parametrize(
    "body,param",
    [
        ({"request": {"model": "nope", "messages": []}}, "messages"),
        ({"request": {"model": "nope", "input": "x"}}, "model"),
        ({"request": {"model": "smollm2-135m-instruct", "messages": [
            {"role": "user", "content": "x"}], "stream": True}}, "stream"),
        ({"request": {"model": "all-minilm-l6-v2", "input": "x"},
          "priority": "urgent"}, "priority"),
        ({"request": {"model": "all-minilm-l6-v2", "input": "x"},
          "webhook_url": "http://169.254.169.254/latest"}, "webhook_url"),
    ],
)  # fmt: skip
def test_bad_jobs_are_refused_at_submission(hearth_url, body, param):
    reply = httpx.post(f"{hearth_url}/v1/jobs", json=body, timeout=10)
    assert reply.status_code in (400, 404), reply.text
    assert reply.json()["error"]["param"] == param


def test_listing_filters_and_pages(hearth_url, embedding_model):
    body = {"request": {"model": embedding_model, "input": "page"}}
    made = [
        httpx.post(f"{hearth_url}/v1/jobs", json=body, timeout=10).json()["id"]
        for _ in range(3)
    ]
    for job_id in made:
        _wait(hearth_url, job_id)
    first = httpx.get(
        f"{hearth_url}/v1/jobs", params={"type": "embedding", "limit": 2}, timeout=10
    ).json()
    assert first["has_more"] and len(first["data"]) == 2
    assert {row["type"] for row in first["data"]} == {"embedding"}
    second = httpx.get(
        f"{hearth_url}/v1/jobs",
        params={"type": "embedding", "limit": 2, "after": first["last_id"]},
        timeout=10,
    ).json()
    seen = [row["id"] for row in first["data"] + second["data"]]
    assert seen[:3] == made[::-1]
    bad = httpx.get(f"{hearth_url}/v1/jobs", params={"state": "lost"}, timeout=10)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "state"
