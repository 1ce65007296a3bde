"""The OpenAI Batch API, driven by the official ``openai`` SDK unchanged,
against the session's real ``hearth up``: files, batches of chat and
embedding lines, malformed input, cancellation with partial output."""

from __future__ import annotations

import io
import json
import time

import openai
import pytest

pytestmark = pytest.mark.stack

DONE = {"completed", "failed", "expired", "cancelled"}


def _jsonl(lines: list[dict]) -> bytes:
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


def _chat_lines(model: str, count: int, max_tokens: int = 4) -> list[dict]:
    return [
        {
            "custom_id": f"chat-{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {
                "model": model,
                "messages": [{"role": "user", "content": f"Say {i}."}],
                "max_tokens": max_tokens,
            },
        }
        for i in range(count)
    ]


def _wait(client, batch_id: str, timeout: float = 240):
    deadline = time.monotonic() + timeout
    while True:
        batch = client.batches.retrieve(batch_id)
        if batch.status in DONE or time.monotonic() > deadline:
            return batch
        time.sleep(0.5)


def _lines(client, file_id: str | None) -> list[dict]:
    if file_id is None:
        return []
    text = client.files.content(file_id).text
    return [json.loads(line) for line in text.splitlines()]


def _run(client, lines: list[dict], endpoint: str):
    upload = client.files.create(
        file=("input.jsonl", io.BytesIO(_jsonl(lines))), purpose="batch"
    )
    assert upload.purpose == "batch" and upload.bytes == len(_jsonl(lines))
    batch = client.batches.create(
        input_file_id=upload.id,
        endpoint=endpoint,
        completion_window="24h",
        metadata={"suite": "hearth"},
    )
    assert batch.status == "in_progress"
    assert batch.request_counts.total == len(lines)
    return _wait(client, batch.id)


def test_a_batch_of_100_chat_lines(client, chat_model):
    lines = _chat_lines(chat_model, 100)
    batch = _run(client, lines, "/v1/chat/completions")

    assert batch.status == "completed", batch
    assert batch.request_counts.completed == 100 and batch.request_counts.failed == 0
    assert batch.metadata == {"suite": "hearth"}
    assert batch.completed_at >= batch.finalizing_at >= batch.in_progress_at
    output = _lines(client, batch.output_file_id)
    assert [line["custom_id"] for line in output] == [src["custom_id"] for src in lines]
    for line in output:
        assert line["error"] is None and line["id"].startswith("batch_req_")
        response = line["response"]
        assert response["status_code"] == 200
        assert response["body"]["object"] == "chat.completion"
        assert response["body"]["usage"]["completion_tokens"] <= 4
    assert batch.error_file_id is None


def test_a_batch_of_1000_embedding_lines(client, embedding_model):
    lines = [
        {
            "custom_id": f"emb-{i}",
            "method": "POST",
            "url": "/v1/embeddings",
            "body": {"model": embedding_model, "input": f"document number {i}"},
        }
        for i in range(1000)
    ]
    batch = _run(client, lines, "/v1/embeddings")

    assert batch.status == "completed", batch
    assert batch.request_counts.completed == 1000
    output = _lines(client, batch.output_file_id)
    assert [line["custom_id"] for line in output] == [src["custom_id"] for src in lines]
    vectors = [line["response"]["body"]["data"][0]["embedding"] for line in output]
    assert {len(v) for v in vectors} == {384}
    assert vectors[0] != vectors[1]


def test_bad_lines_fail_alone_into_the_error_file(client, chat_model):
    lines = _chat_lines(chat_model, 3)
    lines[1]["body"]["model"] = "no-such-model"
    batch = _run(client, lines, "/v1/chat/completions")

    assert batch.status == "completed"
    counts = batch.request_counts
    assert (counts.total, counts.completed, counts.failed) == (3, 2, 1)
    errors = _lines(client, batch.error_file_id)
    assert [e["custom_id"] for e in errors] == ["chat-1"]
    assert errors[0]["response"]["status_code"] == 404
    body = errors[0]["response"]["body"]["error"]
    assert body["code"] == "model_not_found" and "no-such-model" in body["message"]
    assert [o["custom_id"] for o in _lines(client, batch.output_file_id)] == [
        "chat-0",
        "chat-2",
    ]


def test_malformed_jsonl_is_refused_naming_its_first_bad_line(client, chat_model):
    good = _jsonl(_chat_lines(chat_model, 2))
    bad = good + b'{"custom_id": "x", "method": "POST", \n' + good
    with pytest.raises(openai.BadRequestError) as caught:
        client.files.create(file=("bad.jsonl", io.BytesIO(bad)), purpose="batch")
    error = caught.value.body
    assert error["param"] == "file"
    assert "line 3: not valid JSON" in error["message"]
    assert "bad.jsonl" in error["message"]

    dup = _jsonl(_chat_lines(chat_model, 2) + _chat_lines(chat_model, 1))
    with pytest.raises(openai.BadRequestError) as caught:
        client.files.create(file=("dup.jsonl", io.BytesIO(dup)), purpose="batch")
    assert "line 3: custom_id 'chat-0' is used twice" in caught.value.body["message"]


def test_cancel_mid_way_keeps_the_partial_output(client, chat_model):
    lines = _chat_lines(chat_model, 150, max_tokens=8)
    upload = client.files.create(
        file=("input.jsonl", io.BytesIO(_jsonl(lines))), purpose="batch"
    )
    batch = client.batches.create(
        input_file_id=upload.id,
        endpoint="/v1/chat/completions",
        completion_window="24h",
    )
    deadline = time.monotonic() + 120
    while client.batches.retrieve(batch.id).request_counts.completed < 5:
        assert time.monotonic() < deadline, "no line finished"
        time.sleep(0.2)

    cancelling = client.batches.cancel(batch.id)
    assert cancelling.status in ("cancelling", "cancelled")
    batch = _wait(client, batch.id)

    assert batch.status == "cancelled", batch
    assert batch.cancelled_at is not None and batch.cancelling_at is not None
    done = batch.request_counts.completed
    assert 5 <= done < 150
    output = _lines(client, batch.output_file_id)
    errors = _lines(client, batch.error_file_id)
    assert len(output) == done
    assert {e["error"]["code"] for e in errors} == {"batch_cancelled"}
    ids = sorted(line["custom_id"] for line in output + errors)
    assert ids == sorted(line["custom_id"] for line in lines)

    with pytest.raises(openai.ConflictError):
        client.batches.cancel(batch.id)


def test_files_are_listed_read_and_deleted(client, chat_model):
    data = _jsonl(_chat_lines(chat_model, 1))
    made = client.files.create(file=("one.jsonl", io.BytesIO(data)), purpose="batch")
    assert client.files.retrieve(made.id).filename == "one.jsonl"
    assert made.id in [f.id for f in client.files.list(purpose="batch")]
    assert client.files.content(made.id).content == data
    assert client.files.delete(made.id).deleted is True
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(made.id)
