"""Serving behaviour end to end, over HTTP, against the session's `hearth up`."""

from __future__ import annotations

import concurrent.futures

import httpx
import openai
import pytest

from conftest import REMOTE_MODEL

pytestmark = pytest.mark.stack

PROMPT = [{"role": "user", "content": "Write a long story about a lighthouse."}]


def _chat(client, chat_model, i: int) -> openai.types.chat.ChatCompletion:
    return client.chat.completions.create(
        model=chat_model,
        messages=[{"role": "user", "content": f"Say a number bigger than {i}."}],
        max_tokens=12,
        temperature=0,
    )


def test_sixteen_concurrent_chats_all_complete(client, chat_model):
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        replies = list(pool.map(lambda i: _chat(client, chat_model, i), range(16)))
    assert len({r.id for r in replies}) == 16
    for reply in replies:
        assert reply.choices[0].message.content
        assert 0 < reply.usage.completion_tokens <= 12


def _worker_state(hearth_url: str, model: str) -> dict:
    readiness = httpx.get(f"{hearth_url}/readyz").json()
    assert readiness["checks"][f"model:{model}"] != "no worker"
    return readiness


def test_request_ids_come_back(base_url, chat_model):
    reply = httpx.post(
        f"{base_url}/chat/completions",
        json={"model": chat_model, "messages": PROMPT, "max_tokens": 2},
        headers={"X-Request-ID": "trace-me-123"},
        timeout=60,
    )
    assert reply.status_code == 200
    assert reply.headers["x-request-id"] == "trace-me-123"


def test_remote_backend_through_a_second_hop(client):
    reply = client.chat.completions.create(
        model=REMOTE_MODEL,
        messages=[{"role": "user", "content": "Say hi."}],
        max_tokens=8,
        temperature=0,
    )
    assert reply.choices[0].message.content
    assert reply.usage.completion_tokens > 0
    chunks = list(
        client.chat.completions.create(
            model=REMOTE_MODEL,
            messages=[{"role": "user", "content": "Say hi."}],
            max_tokens=8,
            temperature=0,
            stream=True,
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == reply.choices[0].message.content


def test_remote_backend_passes_errors_through(client):
    with pytest.raises(openai.BadRequestError) as exc_info:
        client.chat.completions.create(
            model=REMOTE_MODEL,
            messages=[{"role": "user", "content": "word " * 20000}],
        )
    assert exc_info.value.code == "context_length_exceeded"


@pytest.mark.parametrize(
    "method,path,kwargs",
    [
        ("GET", "/batches", {"params": {"after": "a\x00b"}}),
        ("POST", "/collections", {"json": {"name": "bad\x00name"}}),
    ],
)
def test_nul_characters_are_400_not_500(base_url, method, path, kwargs):
    # Found by the long schemathesis run: PostgreSQL refuses NUL in text.
    reply = httpx.request(method, f"{base_url}{path}", timeout=30, **kwargs)
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["code"] == "invalid_request_error"
