"""Cited answers end to end over HTTP against the session's `hearth up`:
POST .../answer whole and streamed, chat completions with collections
through the openai SDK's extra_body, and abstention. The model's wording
is not asserted (a 135M model); the citations and the protocol are."""

from __future__ import annotations

import json
import time
import uuid

import httpx
import pytest

pytestmark = pytest.mark.stack

ABSTAIN = "The documents in the selected collections do not say."
_KETTLES = (
    "# Kettles\n\n## Descaling\n\nThe blue kettle is descaled with citric acid "
    "every March. Vinegar leaves a smell that lingers for days.\n"
)
_BIKES = "Bicycle tyres are pumped to four bar before the Sunday ride."
_QUESTION = "How is the blue kettle descaled?"
_OFF_TOPIC = "Which orchestra premiered the symphony in Vienna in 1824?"


@pytest.fixture(scope="module")
def api(base_url: str, api_key: str):
    with httpx.Client(
        base_url=base_url, timeout=120, headers={"Authorization": f"Bearer {api_key}"}
    ) as client:
        yield client  # fmt: skip


@pytest.fixture(scope="module")
def collection(api):
    made = api.post("/collections", json={"name": f"ans-{uuid.uuid4().hex[:8]}"})
    assert made.status_code == 201, made.text
    collection_id = made.json()["id"]
    files = [("file", ("kettles.md", _KETTLES.encode())),
             ("file", ("bikes.txt", _BIKES.encode()))]  # fmt: skip
    reply = api.post(f"/collections/{collection_id}/documents", files=files)
    assert reply.status_code == 202, reply.text
    for doc in reply.json()["data"]:
        _wait_ready(api, collection_id, doc["id"])
    yield {"id": collection_id, "kettles": reply.json()["data"][0]["id"]}
    api.delete(f"/collections/{collection_id}")


def _wait_ready(api, collection_id: str, document_id: str) -> None:
    for _ in range(480):
        doc = api.get(f"/collections/{collection_id}/documents/{document_id}").json()
        if doc["state"] in ("ready", "failed"):
            assert doc["state"] == "ready", doc
            return
        time.sleep(0.25)
    raise AssertionError(f"document {document_id} never became ready")


def _ask(api, collection, question: str, chat_model: str, **extra) -> httpx.Response:
    body = {"question": question, "model": chat_model, "max_tokens": 8, **extra}
    return api.post(f"/collections/{collection['id']}/answer", json=body)


def _check_kettle_citation(citations: list[dict], kettles_id: str) -> None:
    assert citations and [c["index"] for c in citations] == list(
        range(1, len(citations) + 1)
    )
    first = citations[0]
    assert first["document_id"] == kettles_id and first["filename"] == "kettles.md"
    assert first["section"].startswith("Kettles")
    assert "citric acid" in first["quote"]
    assert first["quote_end"] - first["quote_start"] == len(first["quote"])


def test_answer_whole_cites_the_passage(api, collection, chat_model):
    reply = _ask(api, collection, _QUESTION, chat_model)

    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["object"] == "collection.answer" and not body["abstained"]
    assert isinstance(body["answer"], str) and body["usage"]["completion_tokens"] >= 1
    _check_kettle_citation(body["citations"], collection["kettles"])
    assert set(body["cited"]) <= {c["index"] for c in body["citations"]}


def test_answer_streamed_sends_citations_then_text(api, collection, chat_model):
    with api.stream("POST", f"/collections/{collection['id']}/answer", json={
        "question": _QUESTION, "model": chat_model, "max_tokens": 8, "stream": True,
    }) as reply:  # fmt: skip
        assert reply.status_code == 200
        assert reply.headers["content-type"].startswith("text/event-stream")
        lines = [x[6:] for x in reply.iter_lines() if x.startswith("data: ")]

    assert lines[-1] == "[DONE]"
    events = [json.loads(x) for x in lines[:-1]]
    assert events[0]["type"] == "citations" and events[-1]["type"] == "done"
    _check_kettle_citation(events[0]["citations"], collection["kettles"])
    deltas = "".join(e["text"] for e in events if e["type"] == "delta")
    assert events[-1]["answer"] == deltas


def test_answer_abstains_when_nothing_is_relevant(api, collection, chat_model):
    reply = _ask(api, collection, _OFF_TOPIC, chat_model)

    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["abstained"] and body["citations"] == []
    assert body["answer"] == ABSTAIN


def test_chat_completions_with_collections_through_the_sdk(
    client, collection, chat_model
):
    completion = client.chat.completions.create(
        model=chat_model, max_tokens=8,
        messages=[{"role": "user", "content": _QUESTION}],
        extra_body={"collections": [collection["id"]]},
    )  # fmt: skip
    assert isinstance(completion.choices[0].message.content, str)
    _check_kettle_citation(completion.model_extra["citations"], collection["kettles"])

    stream = client.chat.completions.create(
        model=chat_model, max_tokens=8, stream=True,
        messages=[{"role": "user", "content": _QUESTION}],
        extra_body={"collections": [collection["id"]], "retrieval": {"top_k": 2}},
    )  # fmt: skip
    chunks = list(stream)
    assert chunks[0].choices == []
    _check_kettle_citation(chunks[0].model_extra["citations"], collection["kettles"])
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")


def test_chat_completions_abstains_over_collections(client, collection, chat_model):
    completion = client.chat.completions.create(
        model=chat_model, max_tokens=8,
        messages=[{"role": "user", "content": _OFF_TOPIC}],
        extra_body={"collections": [collection["id"]]},
    )  # fmt: skip
    assert completion.choices[0].message.content == ABSTAIN
    assert completion.model_extra["citations"] == []


def test_answer_and_chat_reject_unknown_collections(api, chat_model):
    reply = api.post("/collections/col_missing/answer",
                     json={"question": _QUESTION, "model": chat_model})  # fmt: skip
    assert reply.status_code == 404, reply.text

    chat = api.post("/chat/completions", json={
        "model": chat_model, "messages": [{"role": "user", "content": _QUESTION}],
        "collections": ["col_missing"]})  # fmt: skip
    assert chat.status_code == 404, chat.text
    assert chat.json()["error"]["code"] == "not_found"
