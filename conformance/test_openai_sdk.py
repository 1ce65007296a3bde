"""The official openai SDK against Hearth, unchanged."""

from __future__ import annotations

import base64

import httpx
import numpy as np
import openai
import pytest

HELLO = [{"role": "user", "content": "Say hello in one short sentence."}]


def test_models_list_and_retrieve(client, chat_model, embedding_model):
    ids = {m.id for m in client.models.list()}
    assert {chat_model, embedding_model} <= ids
    assert client.models.retrieve(chat_model).id == chat_model


def test_chat_completion(client, chat_model):
    reply = client.chat.completions.create(
        model=chat_model, messages=HELLO, max_tokens=24, temperature=0
    )
    choice = reply.choices[0]
    assert reply.object == "chat.completion"
    assert choice.message.role == "assistant"
    assert choice.message.content.strip()
    assert choice.finish_reason in {"stop", "length"}
    assert reply.usage.prompt_tokens > 0
    assert 0 < reply.usage.completion_tokens <= 24
    assert reply.usage.total_tokens == (
        reply.usage.prompt_tokens + reply.usage.completion_tokens
    )


def test_max_tokens_one_is_length(client, chat_model):
    reply = client.chat.completions.create(
        model=chat_model, messages=HELLO, max_tokens=1, temperature=0
    )
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage.completion_tokens == 1


def test_max_completion_tokens_and_null_max_tokens(client, chat_model):
    reply = client.chat.completions.create(
        model=chat_model, messages=HELLO, max_completion_tokens=2, temperature=0
    )
    assert reply.usage.completion_tokens <= 2
    reply = client.chat.completions.create(
        model=chat_model,
        messages=[{"role": "user", "content": "Reply with the word ok."}],
        max_tokens=None,
        temperature=0,
    )
    assert reply.choices[0].message.content


def test_streaming_chunks_and_no_usage_unless_asked(client, chat_model):
    chunks = list(
        client.chat.completions.create(
            model=chat_model, messages=HELLO, max_tokens=16, temperature=0, stream=True
        )
    )
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason in {"stop", "length"}
    assert all(c.usage is None for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip()


def test_stream_usage_chunk_when_asked(client, chat_model):
    chunks = list(
        client.chat.completions.create(
            model=chat_model,
            messages=HELLO,
            max_tokens=8,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    last = chunks[-1]
    assert last.choices == []
    assert last.usage.completion_tokens > 0
    assert all(c.usage is None for c in chunks[:-1])


def test_stream_equals_whole_at_temperature_zero(client, chat_model):
    messages = [{"role": "user", "content": "Name three colours."}]
    whole = client.chat.completions.create(
        model=chat_model, messages=messages, max_tokens=24, temperature=0, seed=7
    )
    streamed = client.chat.completions.create(
        model=chat_model,
        messages=messages,
        max_tokens=24,
        temperature=0,
        seed=7,
        stream=True,
    )
    text = "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
    assert text == whole.choices[0].message.content


def test_seed_reproduces_sampled_text(client, chat_model):
    def sample() -> str:
        reply = client.chat.completions.create(
            model=chat_model, messages=HELLO, max_tokens=16, temperature=1.0, seed=42
        )
        return reply.choices[0].message.content

    assert sample() == sample()


@pytest.mark.parametrize("stream", [False, True])
def test_stop_sequence_never_in_output(client, chat_model, stream):
    messages = [{"role": "user", "content": "Count from 1 to 10, separated by commas."}]
    whole = (
        client.chat.completions.create(
            model=chat_model, messages=messages, max_tokens=40, temperature=0
        )
        .choices[0]
        .message.content
    )
    assert "4" in whole, whole
    stop = "4"
    reply = client.chat.completions.create(
        model=chat_model,
        messages=messages,
        max_tokens=40,
        temperature=0,
        stop=[stop, "zzz"],
        stream=stream,
    )
    if stream:
        pieces = [c.choices[0].delta.content or "" for c in reply if c.choices]
        text = "".join(pieces)
    else:
        text = reply.choices[0].message.content
        assert reply.choices[0].finish_reason == "stop"
    assert stop not in text
    assert text == whole[: whole.index(stop)]


def test_unicode_arrives_whole_in_stream(client, chat_model):
    messages = [
        {"role": "user", "content": "Repeat exactly: 日本語のテキスト 🙂🙂 naïve café"}
    ]
    stream = client.chat.completions.create(
        model=chat_model, messages=messages, max_tokens=40, temperature=0, stream=True
    )
    pieces = [c.choices[0].delta.content or "" for c in stream if c.choices]
    assert pieces
    for piece in pieces:
        assert "\ufffd" not in piece
        piece.encode("utf-8")


def test_n_choices(client, chat_model):
    reply = client.chat.completions.create(
        model=chat_model, messages=HELLO, max_tokens=8, temperature=1.0, n=2, seed=1
    )
    assert sorted(c.index for c in reply.choices) == [0, 1]


def test_empty_assistant_turn_in_history(client, chat_model):
    messages = [*HELLO, {"role": "assistant", "content": ""}]
    reply = client.chat.completions.create(
        model=chat_model, messages=messages, max_tokens=4
    )
    assert reply.choices


def test_completions(client, chat_model):
    reply = client.completions.create(
        model=chat_model, prompt="The capital of France is", max_tokens=5, temperature=0
    )
    assert reply.object == "text_completion"
    assert reply.choices[0].text
    assert reply.usage.completion_tokens <= 5
    streamed = client.completions.create(
        model=chat_model,
        prompt="The capital of France is",
        max_tokens=5,
        temperature=0,
        stream=True,
    )
    text = "".join(c.choices[0].text for c in streamed if c.choices)
    assert text == reply.choices[0].text


def test_embeddings_one_and_many(client, embedding_model):
    one = client.embeddings.create(model=embedding_model, input="hello world")
    assert len(one.data) == 1 and len(one.data[0].embedding) == 384
    many = client.embeddings.create(
        model=embedding_model, input=["hello world", "bonjour", "こんにちは"]
    )
    assert [d.index for d in many.data] == [0, 1, 2]
    assert np.allclose(one.data[0].embedding, many.data[0].embedding, atol=1e-5)
    assert many.usage.prompt_tokens > one.usage.prompt_tokens


def test_embeddings_base64_equals_float(client, embedding_model, base_url, api_key):
    texts = ["alpha", "beta"]
    floats = client.embeddings.create(model=embedding_model, input=texts)
    raw = httpx.post(
        f"{base_url}/embeddings",
        json={"model": embedding_model, "input": texts, "encoding_format": "base64"},
        headers={"Authorization": f"Bearer {api_key}"},
    ).json()
    for got, want in zip(raw["data"], floats.data, strict=True):
        vector = np.frombuffer(base64.b64decode(got["embedding"]), dtype="<f4")
        assert np.array_equal(vector, np.asarray(want.embedding, dtype="<f4"))


def test_embeddings_token_ids(client, embedding_model):
    import tiktoken

    enc = tiktoken.get_encoding("cl100k_base")
    by_text = client.embeddings.create(model=embedding_model, input="hello world")
    by_ids = client.embeddings.create(
        model=embedding_model, input=[enc.encode("hello world")]
    )
    assert np.allclose(by_text.data[0].embedding, by_ids.data[0].embedding, atol=1e-5)


def _error(exc_info) -> dict:
    return exc_info.value.body if isinstance(exc_info.value.body, dict) else {}


def test_unknown_model_is_404(client):
    with pytest.raises(openai.NotFoundError) as exc_info:
        client.chat.completions.create(model="no-such-model", messages=HELLO)
    assert exc_info.value.code == "model_not_found"
    assert "no-such-model" in exc_info.value.message


@pytest.mark.parametrize(
    "body,param",
    [
        ({"messages": HELLO}, "model"),
        ({"model": "M", "messages": HELLO, "temperature": 9}, "temperature"),
        ({"model": "M", "messages": "hi"}, "messages"),
        ({"model": "M", "messages": HELLO, "max_tokens": 0}, "max_tokens"),
        ({"model": "M", "messages": HELLO, "stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ],
)
def test_invalid_fields_are_400(base_url, api_key, chat_model, body, param):
    if body.get("model") == "M":
        body = {**body, "model": chat_model}
    reply = httpx.post(
        f"{base_url}/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {api_key}"},
    )
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "invalid_request_error"
    assert error["param"] == param


def test_malformed_json_is_400(base_url, api_key):
    reply = httpx.post(
        f"{base_url}/chat/completions",
        content=b'{"model": "x", "messages": [',
        headers={
            "Authorization": f"Bearer {api_key}",
            "Content-Type": "application/json",
        },
    )
    assert reply.status_code == 400
    assert reply.json()["error"]["code"] == "invalid_request_error"


def test_context_length_exceeded(client, chat_model):
    huge = "word " * 20000
    with pytest.raises(openai.BadRequestError) as exc_info:
        client.chat.completions.create(
            model=chat_model, messages=[{"role": "user", "content": huge}]
        )
    assert exc_info.value.code == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError) as exc_info:
        client.chat.completions.create(
            model=chat_model, messages=[{"role": "user", "content": huge}], stream=True
        )
    assert exc_info.value.code == "context_length_exceeded"


@pytest.mark.parametrize("bad", ["", []])
def test_empty_embedding_input_is_400(client, embedding_model, bad):
    with pytest.raises(openai.BadRequestError) as exc_info:
        client.embeddings.create(model=embedding_model, input=bad)
    assert exc_info.value.code == "invalid_request_error"


def test_chat_model_on_embeddings_is_400(client, chat_model):
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model=chat_model, input="x")
