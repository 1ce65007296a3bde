"""/metrics after a mixed workload: counters move by the right amounts, and
samples recorded by the workers show up in the API's one scrape."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.opsutil import eventually, scrape, value

pytestmark = pytest.mark.stack

PROMPT = [{"role": "user", "content": "Name three colours."}]


def _workload(client, chat_model, embedding_model):
    whole = client.chat.completions.create(
        model=chat_model, messages=PROMPT, max_tokens=8, temperature=0
    )
    stream = client.chat.completions.create(
        model=chat_model,
        messages=PROMPT,
        max_tokens=8,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    streamed_usage = [chunk.usage for chunk in stream if chunk.usage][-1]
    embedded = client.embeddings.create(
        model=embedding_model, input=["one", "two", "three"]
    )
    return [whole.usage, streamed_usage, embedded.usage]


def test_counters_move_by_the_workload(hearth_url, client, chat_model, embedding_model):
    before = scrape(hearth_url)
    usages = _workload(client, chat_model, embedding_model)
    prompt = sum(u.prompt_tokens for u in usages[:2])
    completion = sum(u.completion_tokens for u in usages[:2])

    def moved(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    def settled():
        nonlocal after
        after = scrape(hearth_url)
        chat_route = {"route": "/v1/chat/completions", "method": "POST"}
        assert moved("hearth_http_requests_total", status="200", **chat_route) == 2
        assert (
            moved("hearth_http_requests_total", route="/v1/embeddings", status="200")
            == 1
        )
        assert moved("hearth_prompt_tokens_total", model=chat_model) == prompt
        assert moved("hearth_completion_tokens_total", model=chat_model) == completion
        assert (
            moved("hearth_prompt_tokens_total", model=embedding_model)
            == usages[2].prompt_tokens
        )

    after: dict = {}
    eventually(settled)

    # Recorded in the worker processes, read through the same scrape.
    generate = {"task": "hearth.generate", "model": chat_model}
    assert moved("hearth_tasks_total", outcome="ok", **generate) == 2
    assert moved("hearth_task_duration_seconds_count", **generate) == 2
    assert moved("hearth_task_queue_wait_seconds_count", **generate) == 2
    assert moved("hearth_time_to_first_token_seconds_count", model=chat_model) == 2
    assert moved("hearth_inter_token_latency_seconds_count", model=chat_model) > 0
    assert moved("hearth_embedding_inputs_total", model=embedding_model) == 3
    assert moved("hearth_embedding_batch_size_sum", model=embedding_model) == 3
    assert value(after, "hearth_model_load_seconds_count", model=chat_model) >= 1
    assert value(after, "hearth_worker_starts_total", model=embedding_model) >= 1


def test_system_gauges_are_read_at_scrape_time(hearth_url, chat_model):
    samples = scrape(hearth_url)

    assert value(samples, "hearth_workers_live", model=chat_model) >= 1
    depth = [k for k in samples if k[0] == "hearth_queue_depth"]
    assert {dict(labels)["priority"] for _, labels in depth} == {
        "interactive",
        "batch",
    }
    assert ("hearth_queue_oldest_message_age_seconds", depth[0][1]) in samples


def test_unknown_paths_share_one_label(hearth_url):
    before = scrape(hearth_url)
    for path in ("/no/such/a", "/no/such/b"):
        assert httpx.get(f"{hearth_url}{path}").status_code == 404
    after = scrape(hearth_url)

    labels = {"route": "unmatched", "status": "404"}
    assert (
        value(after, "hearth_http_requests_total", **labels)
        - value(before, "hearth_http_requests_total", **labels)
        == 2
    )
    assert not any("/no/such" in str(labels) for _, labels in after)


def _finished_job(hearth_url: str, api_key: str, embedding_model: str) -> dict:
    headers = {"Authorization": f"Bearer {api_key}"}
    job = httpx.post(
        f"{hearth_url}/v1/jobs",
        headers=headers,
        json={
            "endpoint": "/v1/embeddings",
            "request": {"model": embedding_model, "input": ["one", "two"]},
        },
    ).json()

    def finished():
        state = httpx.get(f"{hearth_url}/v1/jobs/{job['id']}", headers=headers)
        assert state.json()["state"] == "succeeded", state.text
        return state.json()

    return eventually(finished, attempts=300)


def test_jobs_are_counted_by_state_and_type(hearth_url, api_key, embedding_model):
    before = scrape(hearth_url)
    _finished_job(hearth_url, api_key, embedding_model)
    after = scrape(hearth_url)

    succeeded = {"state": "succeeded", "type": "embedding"}
    assert (
        value(after, "hearth_jobs", **succeeded)
        - value(before, "hearth_jobs", **succeeded)
        == 1
    )
    runs = "hearth_task_duration_seconds_count"
    assert value(after, runs, task="hearth.job.run") > value(
        before, runs, task="hearth.job.run"
    )


_NOTE = (
    "# Lighthouse\n\n## Lamp\n\nThe lamp is lit at dusk and trimmed at midnight.\n\n"
    "## Fog\n\nIn fog the horn sounds twice a minute until the fog lifts.\n"
)


def test_ingestion_counts_documents_and_chunks(hearth_url, api_key, embedding_model):
    api = httpx.Client(
        base_url=f"{hearth_url}/v1",
        headers={"Authorization": f"Bearer {api_key}"},
        timeout=60,
    )
    made = api.post(
        "/collections",
        json={
            "name": f"metrics-{uuid.uuid4().hex[:8]}",
            "embedding_model": embedding_model,
            # Small chunks, so the one document makes several.
            "chunk_tokens": 32,
            "chunk_overlap": 0,
        },
    )
    assert made.status_code == 201, made.text
    collection = made.json()["id"]
    try:
        before = scrape(hearth_url)
        upload = api.post(
            f"/collections/{collection}/documents",
            files={"file": ("lighthouse.md", _NOTE.encode())},
        )
        assert upload.status_code == 202, upload.text
        document = upload.json()["data"][0]["id"]

        def ready():
            doc = api.get(f"/collections/{collection}/documents/{document}").json()
            assert doc["state"] == "ready", doc
            return doc

        chunks = eventually(ready, attempts=300)["chunk_count"]
        after = scrape(hearth_url)
    finally:
        api.delete(f"/collections/{collection}")
        api.close()

    def moved(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert chunks >= 2
    assert moved("hearth_documents_indexed_total", outcome="indexed") == 1
    assert moved("hearth_documents_indexed_total", outcome="failed") == 0
    assert moved("hearth_chunks_indexed_total", model=embedding_model) == chunks
