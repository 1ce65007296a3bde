"""The official openai SDK against Hearth, unchanged."""

from __future__ import annotations

import base64
import types

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


# Vector stores and the Responses API (file_search), on tiny documents.

KETTLES = (
    b"# Kettles\n\n## Descaling\n\nThe blue kettle is descaled with citric acid "
    b"every March.\n"
)
BIKES = b"Bicycle tyres are pumped to four bar before the Sunday ride."
QUESTION = "How is the blue kettle descaled?"


@pytest.fixture(scope="module")
def vector_store(client):
    kettles = client.files.create(file=("kettles.md", KETTLES), purpose="assistants")
    bikes = client.files.create(file=("bikes.txt", BIKES), purpose="assistants")
    store = client.vector_stores.create(name="household", metadata={"owner": "sdk"})
    attached = [
        client.vector_stores.files.create_and_poll(
            vector_store_id=store.id, file_id=upload.id, attributes={"room": room}
        )
        for upload, room in ((kettles, "kitchen"), (bikes, "garage"))
    ]
    yield types.SimpleNamespace(
        id=store.id, kettles=kettles.id, bikes=bikes.id, attached=attached
    )
    client.vector_stores.delete(store.id)
    for upload in (kettles, bikes):
        client.files.delete(upload.id)


def _file_search(store_id: str) -> list[dict]:
    return [{"type": "file_search", "vector_store_ids": [store_id]}]


def test_vector_store_files_are_indexed_and_counted(client, vector_store):
    for attached in vector_store.attached:
        assert attached.status == "completed" and attached.last_error is None
        assert attached.vector_store_id == vector_store.id
    assert vector_store.attached[0].attributes == {"room": "kitchen"}

    store = client.vector_stores.retrieve(vector_store.id)
    assert (store.object, store.name, store.status) == (
        "vector_store", "household", "completed"
    )  # fmt: skip
    counts = store.file_counts
    assert (counts.completed, counts.total, counts.in_progress) == (2, 2, 0)
    assert store.usage_bytes == len(KETTLES) + len(BIKES)
    assert store.metadata == {"owner": "sdk"}

    listed = client.vector_stores.files.list(
        vector_store_id=vector_store.id, filter="completed"
    )
    assert {f.id for f in listed} == {vector_store.kettles, vector_store.bikes}
    assert vector_store.id in {s.id for s in client.vector_stores.list(limit=100)}
    renamed = client.vector_stores.update(vector_store.id, name="home")
    assert renamed.name == "home" and renamed.file_counts.total == 2


def test_vector_store_search_finds_the_file(client, vector_store):
    results = client.vector_stores.search(
        vector_store_id=vector_store.id, query=QUESTION, max_num_results=2
    )
    top = results.data[0]
    assert (top.file_id, top.filename) == (vector_store.kettles, "kettles.md")
    assert top.content[0].type == "text" and "citric acid" in top.content[0].text
    assert top.attributes == {"room": "kitchen"} and 0 < top.score <= 1

    garage = client.vector_stores.search(
        vector_store_id=vector_store.id, query="kettle",
        filters={"type": "eq", "key": "room", "value": "garage"},
    )  # fmt: skip
    assert [r.file_id for r in garage] == [vector_store.bikes]


def test_responses_file_search_cites_the_file(client, chat_model, vector_store):
    response = client.responses.create(
        model=chat_model, input=QUESTION, tools=_file_search(vector_store.id),
        include=["file_search_call.results"], max_output_tokens=16, temperature=0,
    )  # fmt: skip
    call, message = response.output
    assert (call.type, call.status, call.queries) == (
        "file_search_call", "completed", [QUESTION]
    )  # fmt: skip
    assert call.results[0].file_id == vector_store.kettles
    assert "citric acid" in call.results[0].text

    assert (message.type, message.role) == ("message", "assistant")
    text = message.content[0]
    assert text.type == "output_text" and text.text == response.output_text
    assert text.annotations, "an answer from sources cites them"
    for annotation in text.annotations:
        assert annotation.type == "file_citation"
        assert (annotation.file_id, annotation.filename) == (
            vector_store.kettles, "kettles.md"
        )  # fmt: skip
        assert 0 <= annotation.index <= len(text.text)
    assert response.status in {"completed", "incomplete"}
    assert 0 < response.usage.output_tokens <= 16


def test_responses_file_search_streamed(client, chat_model, vector_store):
    request = {
        "model": chat_model, "input": QUESTION, "max_output_tokens": 16,
        "temperature": 0, "tools": _file_search(vector_store.id),
    }  # fmt: skip
    with client.responses.stream(**request) as stream:
        events = list(stream)
    kinds = [e.type for e in events]
    assert kinds[:7] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.file_search_call.in_progress",
        "response.file_search_call.searching",
        "response.file_search_call.completed",
        "response.output_item.done",
    ]
    assert kinds[-4:-1] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
    ]
    assert kinds[-1] in {"response.completed", "response.incomplete"}
    assert [e.sequence_number for e in events] == list(range(len(events)))

    final = events[-1].response
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    whole = client.responses.create(**request)
    assert deltas == final.output_text == whole.output_text
    marks = [e.annotation for e in events if e.type.endswith("annotation.added")]
    assert marks and {mark["file_id"] for mark in marks} == {vector_store.kettles}
    cited = final.output[1].content[0].annotations
    assert cited == whole.output[1].content[0].annotations


def test_responses_without_tools(client, chat_model):
    reply = client.responses.create(
        model=chat_model, input="Say hello.", max_output_tokens=8, temperature=0
    )
    assert [item.type for item in reply.output] == ["message"]
    assert reply.output_text.strip() and reply.usage.output_tokens <= 8
    if reply.status == "incomplete":
        assert reply.incomplete_details.reason == "max_output_tokens"

    stream = client.responses.create(
        model=chat_model, instructions="Answer in one short sentence.",
        input=[{"role": "user", "content": "Say hello."}], max_output_tokens=8,
        temperature=0, stream=True,
    )  # fmt: skip
    events = list(stream)
    assert events[0].type == "response.created"
    assert events[-1].type in {"response.completed", "response.incomplete"}
    assert events[-1].response.output_text.strip()


def test_responses_unsupported_tool_is_400(client, chat_model):
    with pytest.raises(openai.BadRequestError) as exc_info:
        client.responses.create(
            model=chat_model, input="hi",
            tools=[{"type": "function", "name": "f", "parameters": {}}],
        )  # fmt: skip
    assert exc_info.value.code == "unsupported_tool"
    assert exc_info.value.param == "tools[0].type"


SHORT = {"max_output_tokens": 8, "temperature": 0}


def _texts(items) -> list[str]:
    return [part.text for item in items for part in item.content]


def test_responses_are_stored_listed_and_deleted(client, chat_model):
    created = client.responses.create(
        model=chat_model, instructions="Be brief.",
        input=[{"role": "user", "content": "Name a colour."}], **SHORT,
    )  # fmt: skip
    assert created.store is True
    assert client.responses.retrieve(created.id) == created

    items = client.responses.input_items.list(created.id)
    assert _texts(items.data) == ["Name a colour."]
    assert items.data[0].role == "user" and items.has_more is False

    deleted = client.responses.delete(created.id)
    assert deleted is None  # the SDK drops the body; check it over HTTP below
    with pytest.raises(openai.NotFoundError) as exc_info:
        client.responses.retrieve(created.id)
    assert exc_info.value.code == "not_found"
    with pytest.raises(openai.NotFoundError):
        client.responses.delete(created.id)


def test_response_delete_body(client, chat_model, base_url, api_key):
    created = client.responses.create(model=chat_model, input="Hi.", **SHORT)
    answer = httpx.delete(
        f"{base_url}/responses/{created.id}",
        headers={"Authorization": f"Bearer {api_key}"},
    )
    assert answer.status_code == 200
    assert answer.json() == {"id": created.id, "object": "response", "deleted": True}


def test_previous_response_id_carries_the_conversation(client, chat_model):
    first = client.responses.create(
        model=chat_model, instructions="Answer in French.",
        input="My cat is called Tobermory.", **SHORT,
    )  # fmt: skip
    second = client.responses.create(
        model=chat_model, input="What is my cat called?",
        previous_response_id=first.id, **SHORT,
    )  # fmt: skip
    assert second.previous_response_id == first.id
    assert second.instructions is None

    items = client.responses.input_items.list(second.id, order="asc")
    assert _texts(items.data) == [
        "My cat is called Tobermory.",
        first.output_text,
        "What is my cat called?",
    ]
    assert [item.role for item in items.data] == ["user", "assistant", "user"]
    newest = client.responses.input_items.list(second.id, limit=1)
    assert _texts(newest.data) == ["What is my cat called?"] and newest.has_more


def test_unknown_previous_response_id_is_400(client, chat_model):
    with pytest.raises(openai.BadRequestError) as exc_info:
        client.responses.create(
            model=chat_model, input="hi", previous_response_id="resp_missing"
        )
    assert exc_info.value.code == "invalid_request_error"
    assert exc_info.value.param == "previous_response_id"


def test_store_false_stores_nothing(client, chat_model):
    created = client.responses.create(
        model=chat_model, input="Hi.", store=False, **SHORT
    )
    assert created.store is False
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(created.id)


def test_streamed_response_is_stored(client, chat_model):
    stream = client.responses.create(
        model=chat_model, input="Say hello.", stream=True, **SHORT
    )
    final = list(stream)[-1].response
    assert final.store is True
    assert client.responses.retrieve(final.id) == final
    items = client.responses.input_items.list(final.id)
    assert _texts(items.data) == ["Say hello."]


def test_vector_store_file_batch_failure_and_delete(client):
    store = client.vector_stores.create(name="scratch")
    batch = client.vector_stores.file_batches.upload_and_poll(
        vector_store_id=store.id,
        files=[("notes.txt", b"Ferns are watered on Fridays."),
               ("broken.pdf", b"%PDF-1.7\nnot really a pdf")],
    )  # fmt: skip
    assert (batch.object, batch.status) == ("vector_store.files_batch", "completed")
    counts = batch.file_counts
    assert (counts.completed, counts.failed, counts.total) == (1, 1, 2)
    store_counts = client.vector_stores.retrieve(store.id).file_counts
    assert store_counts.model_dump() == counts.model_dump()
    listed = client.vector_stores.file_batches.list_files(
        batch.id, vector_store_id=store.id
    )
    by_status = {f.status: f for f in listed}
    notes, broken = by_status["completed"], by_status["failed"]
    assert broken.last_error.code == "invalid_file"

    files = client.vector_stores.files
    deleted = files.delete(file_id=notes.id, vector_store_id=store.id)
    assert (deleted.id, deleted.deleted) == (notes.id, True)
    assert client.vector_stores.retrieve(store.id).file_counts.total == 1
    found = client.vector_stores.search(vector_store_id=store.id, query="ferns")
    assert found.data == []
    # Detaching a file, or deleting the store, leaves the upload in /v1/files.
    assert client.files.retrieve(notes.id).filename == "notes.txt"
    assert client.vector_stores.delete(store.id).deleted
    with pytest.raises(openai.NotFoundError):
        client.vector_stores.retrieve(store.id)
    assert client.files.retrieve(broken.id).filename == "broken.pdf"
    for upload in (notes, broken):
        client.files.delete(upload.id)
