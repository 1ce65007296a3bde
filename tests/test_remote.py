"""The remote backend against a small OpenAI-compatible server on loopback.

The server below is a stand-in written for these tests (a real engine is
out of reach here): it speaks OpenAI's chat, completions and embeddings
wire format, streams like vLLM does, and answers errors in the shapes
engines use. An end-to-end test elsewhere points this backend at a second
Hearth.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading

import numpy as np
import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from server.errors import (
    ConfigError,
    ContextLengthExceeded,
    InvalidRequest,
    QueueFull,
    RemoteEngineError,
)
from server.settings import Settings
from workers.backends import load_backend
from workers.backends.base import ChatInput, GenerationParams
from workers.specs import ModelSpec

KEY_ENV = "HEARTH_TEST_REMOTE_KEY"


def fake_engine() -> FastAPI:
    app = FastAPI()
    app.state.seen = []
    app.state.disconnected = threading.Event()

    def error(status, message, code=None, headers=None):
        body = {"error": {"message": message, "type": "error", "code": code}}
        return JSONResponse(body, status_code=status, headers=headers)

    def sse(chunks):
        return "".join(f"data: {json.dumps(c)}\n\n" for c in chunks)

    async def endless():
        try:
            for i in range(100_000):
                chunk = {"choices": [{"index": 0, "delta": {"content": f"w{i} "}}]}
                yield sse([chunk])
                await asyncio.sleep(0.005)
        finally:
            app.state.disconnected.set()

    @app.post("/v1/chat/completions")
    @app.post("/v1/completions")
    async def generate(request: Request):
        body = await request.json()
        app.state.seen.append((dict(request.headers), body))
        chat = "messages" in body
        said = body["messages"][-1]["content"] if chat else body["prompt"]
        if said == "overflow":
            return error(400, "This model's maximum context length is 100 tokens", 400)
        if said == "hearth-overflow":
            return error(400, "prompt too big for us", "context_length_exceeded")
        if said == "bad":
            return error(400, "temperature must be at most 2")
        if said == "crash":
            return error(500, "engine died")
        if said == "busy":
            return error(429, "slow down", headers={"Retry-After": "3"})
        if said == "endless":
            return StreamingResponse(endless(), media_type="text/event-stream")

        chunks = []
        for word in ["Hello", " world"]:
            for index in range(body.get("n", 1)):
                piece = {"delta": {"content": word}} if chat else {"text": word}
                chunks.append({"choices": [{"index": index, **piece}]})
        for index in range(body.get("n", 1)):
            chunks.append({"choices": [{"index": index, "finish_reason": "stop"}]})
        chunks.append(
            {"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 4}}
        )
        return StreamingResponse(
            sse(chunks) + "data: [DONE]\n\n", media_type="text/event-stream"
        )

    @app.post("/v1/embeddings")
    async def embeddings(request: Request):
        body = await request.json()
        app.state.seen.append((dict(request.headers), body))
        data = [
            {"object": "embedding", "index": i, "embedding": [float(i), float(len(t))]}
            for i, t in enumerate(body["input"])
        ]
        data.reverse()  # engines may answer out of order; index says where
        return {"data": data, "usage": {"prompt_tokens": 11, "total_tokens": 11}}

    return app


@pytest.fixture(scope="module")
def engine_server():
    app = fake_engine()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_level="warning", ws="none", lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(500):
        if server.started:
            break
        threading.Event().wait(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield app, f"http://127.0.0.1:{port}/v1"
    server.should_exit = True
    thread.join(10)


def remote(base_url, *, kind="chat", **extra):
    spec = ModelSpec(
        name="big-model", kind=kind, backend="remote", base_url=base_url, **extra
    )
    return load_backend(spec, Settings(request_timeout_s=30))


class Sink:
    def __init__(self, cancel_after=None):
        self.deltas: dict[int, list[str]] = {}
        self.ends: dict[int, str] = {}
        self.cancel_after = cancel_after

    def delta(self, index, text):
        self.deltas.setdefault(index, []).append(text)

    def choice_end(self, index, finish_reason):
        self.ends[index] = finish_reason

    def cancelled(self):
        count = sum(len(v) for v in self.deltas.values())
        return self.cancel_after is not None and count >= self.cancel_after


def generate(backend, said, *, prompt=False, sink=None, **params):
    sink = sink or Sink()
    chat = (
        ChatInput(prompt=said)
        if prompt
        else ChatInput(messages=[{"role": "user", "content": said}])
    )
    usage = backend.generate(
        request_id="req-1", chat=chat, params=GenerationParams(**params), sink=sink
    )
    return sink, usage


def test_chat_stream_is_relayed_per_choice(engine_server, monkeypatch):
    app, url = engine_server
    monkeypatch.setenv(KEY_ENV, "sk-remote")
    backend = remote(url, remote_model="served-name", api_key_env=KEY_ENV)

    sink, usage = generate(backend, "hi", n=2, max_tokens=9, stop=("x",), seed=4)

    assert {i: "".join(p) for i, p in sink.deltas.items()} == {
        0: "Hello world",
        1: "Hello world",
    }
    assert sink.ends == {0: "stop", 1: "stop"}
    assert (usage.prompt_tokens, usage.completion_tokens) == (7, 4)
    headers, body = app.state.seen[-1]
    assert headers["authorization"] == "Bearer sk-remote"
    assert body["model"] == "served-name" and body["stream"] is True
    assert (body["n"], body["max_tokens"], body["stop"], body["seed"]) == (
        2,
        9,
        ["x"],
        4,
    )
    backend.close()


def test_completion_prompt_goes_to_completions(engine_server):
    app, url = engine_server
    backend = remote(url)
    sink, _ = generate(backend, "Once upon", prompt=True)
    assert "".join(sink.deltas[0]) == "Hello world"
    assert app.state.seen[-1][1]["prompt"] == "Once upon"
    assert app.state.seen[-1][1]["model"] == "big-model"
    backend.close()


def test_embeddings_come_back_in_input_order(engine_server):
    _, url = engine_server
    backend = remote(url, kind="embedding")
    vectors, tokens = backend.embed(request_id="e", texts=["a", "bbb", "cc"])
    assert vectors.dtype == np.float32
    np.testing.assert_array_equal(vectors, [[0, 1], [1, 3], [2, 2]])
    assert tokens == 11
    backend.close()


@pytest.mark.parametrize(
    ("said", "error", "text"),
    [
        ("overflow", ContextLengthExceeded, "maximum context length is 100"),
        ("hearth-overflow", ContextLengthExceeded, "prompt too big for us"),
        ("bad", InvalidRequest, "temperature must be at most 2"),
        ("crash", RemoteEngineError, "failed with 500: engine died"),
        ("busy", QueueFull, "slow down"),
    ],
)
def test_remote_errors_are_mapped(engine_server, said, error, text):
    _, url = engine_server
    backend = remote(url)
    with pytest.raises(error, match=text) as caught:
        generate(backend, said)
    assert type(caught.value) is error
    if error is RemoteEngineError:
        assert url in caught.value.message
    if error is QueueFull:
        assert caught.value.retry_after == 3
    backend.close()


def test_wrong_path_names_base_url(engine_server):
    _, url = engine_server
    backend = remote(url.removesuffix("/v1"))
    with pytest.raises(RemoteEngineError, match="404.*check base_url"):
        generate(backend, "hi")
    backend.close()


def test_unreachable_engine_is_an_upstream_error():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    backend = remote(f"http://127.0.0.1:{port}/v1")  # nothing listens there now
    with pytest.raises(RemoteEngineError, match="ConnectError.*is running") as caught:
        generate(backend, "hi")
    assert caught.value.__cause__ is not None
    with pytest.raises(RemoteEngineError, match=f"127.0.0.1:{port}"):
        backend.embed(request_id="e", texts=["a"])
    backend.close()


def test_cancel_closes_the_remote_stream(engine_server):
    app, url = engine_server
    backend = remote(url)
    sink, _ = generate(backend, "endless", sink=Sink(cancel_after=3))
    assert sink.ends == {0: "stop"}
    assert len(sink.deltas[0]) == 3
    assert app.state.disconnected.wait(10)
    backend.close()


def test_missing_key_variable_is_a_config_error(monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(ConfigError, match=f"\\${KEY_ENV}"):
        remote("http://127.0.0.1:9/v1", api_key_env=KEY_ENV)
